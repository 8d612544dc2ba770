//! Packing what is shipped to the hosts: a tar of given files, byte-for-byte the same for the
//! same contents (sorted entries, no times or owners), named by its SHA-256 so a host that has
//! it already is sent nothing.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

/// Writes a tar of `files` (paths relative to `root`) to `out`; returns its SHA-256 (hex).
/// A path that is absolute or climbs out of `root` is an error naming it.
pub fn pack(root: &Path, files: &[String], out: &Path) -> io::Result<String> {
    let mut names: Vec<&String> = files.iter().collect();
    names.sort();
    names.dedup();
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for name in names {
        let rel = Path::new(name.as_str());
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: not a path below the project directory")));
        }
        let path = root.join(rel);
        let data = fs::read(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let executable = fs::metadata(&path)?.permissions().mode() & 0o111 != 0;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, rel, data.as_slice())?;
    }
    let bytes = builder.into_inner()?;
    let hash = hex(&Sha256::digest(&bytes));
    // Several mains may pack the same file at once (same runtime): each writes its own temporary.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = out.with_extension(format!("{}.{nanos}.part", std::process::id()));
    fs::File::create(&tmp)?.write_all(&bytes)?;
    fs::rename(&tmp, out)?;
    Ok(hash)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_files_same_hash_and_paths_stay_inside() {
        let dir = std::env::temp_dir().join(format!("mproc-bundle-{}", std::process::id()));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a.py"), b"x = 1\n").unwrap();
        fs::write(dir.join("sub/b.py"), b"y = 2\n").unwrap();
        let files = vec!["sub/b.py".to_string(), "a.py".to_string()];
        let h1 = pack(&dir, &files, &dir.join("1.tar")).unwrap();
        let h2 = pack(&dir, &[files[1].clone(), files[0].clone()], &dir.join("2.tar")).unwrap();
        assert_eq!(h1, h2);
        fs::write(dir.join("a.py"), b"x = 3\n").unwrap();
        assert_ne!(pack(&dir, &files, &dir.join("3.tar")).unwrap(), h1);
        let mut names: Vec<String> = tar::Archive::new(fs::File::open(dir.join("3.tar")).unwrap())
            .entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        names.sort();
        assert_eq!(names, ["a.py", "sub/b.py"]);
        let err = pack(&dir, &["../etc/passwd".to_string()], &dir.join("4.tar")).unwrap_err();
        assert!(err.to_string().contains("not a path below"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
