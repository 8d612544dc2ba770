//! A shared-memory file mapped read-write: an anonymous memfd (gone with the last process that
//! holds it, so a crash leaves nothing behind) or a named file under /dev/shm.

use crate::error::{Error, Result};
use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct Segment {
    map: MmapMut,
    // Kept open: for a memfd, other processes attach through /proc/<pid>/fd/<fd>. A forked
    // child that only uses the mapping it inherited closes it (`close_fd`).
    file: std::sync::Mutex<Option<File>>,
    path: PathBuf,
    unlink_on_drop: bool,
}

impl Segment {
    /// Creates a segment of `len` bytes. `path = None` makes an anonymous memfd.
    /// A named file (on a tmpfs such as /dev/shm, which has a size limit) is allocated up front,
    /// so a full /dev/shm fails here with ENOSPC instead of killing a process with SIGBUS on
    /// first touch later. A memfd lives on the kernel's internal shmem mount, which has no size
    /// limit (so no SIGBUS), and is only sized: its pages cost memory when first written, and
    /// creating a ring with a large, mostly unused blob arena stays cheap (~0.35 ms/MiB saved).
    pub fn create(path: Option<&Path>, len: usize) -> Result<Segment> {
        let (file, path, unlink) = match path {
            None => {
                let fd = nix::sys::memfd::memfd_create(
                    c"pytest-mproc-ring",
                    nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
                )
                .map_err(|e| Error::io("memfd_create", e))?;
                let file = File::from(fd);
                let path = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()));
                (file, path, false)
            }
            Some(p) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
                (file, p.to_path_buf(), true)
            }
        };
        let seg_err = |e: nix::Error| {
            if unlink {
                let _ = std::fs::remove_file(&path);
            }
            Error::io(format!("allocating {} bytes of shared memory for {}", len, path.display()), e)
        };
        if unlink {
            nix::fcntl::fallocate(file.as_raw_fd(), nix::fcntl::FallocateFlags::empty(), 0, len as i64)
                .map_err(seg_err)?;
        } else {
            nix::unistd::ftruncate(&file, len as i64).map_err(seg_err)?;
        }
        // SAFETY: memmap2 calls mapping unsafe because another process may change the file under
        // the map. That is the point of a segment: it is never exposed as a `&[u8]`, only through
        // the checked, atomic accessors of `view::Shm` (and the fixture store's immutable values).
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
        Ok(Segment { map, file: std::sync::Mutex::new(Some(file)), path, unlink_on_drop: unlink })
    }

    /// Maps an existing segment (a /dev/shm path or /proc/<pid>/fd/<fd> of a memfd).
    pub fn attach(path: &Path) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(format!("opening ring segment {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len() as usize;
        if len < crate::layout::HEADER_LEN {
            return Err(Error::BadHeader(format!("{} is only {len} bytes", path.display())));
        }
        // SAFETY: as in `create`; the caller validates the header before it computes any offset.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
        Ok(Segment { map, file: std::sync::Mutex::new(Some(file)), path: path.to_path_buf(), unlink_on_drop: false })
    }

    /// Closes this process's file descriptor of the segment; the mapping stays valid. For a
    /// forked child, which inherited the mapping and must not leave the descriptor visible to
    /// the code it runs (a test, and whatever that test starts). Other processes can no longer
    /// attach through this process's /proc/<pid>/fd path afterwards.
    pub fn close_fd(&self) {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Removes a named segment's file now (mappings stay valid). No-op for a memfd.
    pub fn unlink(&mut self) {
        if self.unlink_on_drop {
            let _ = std::fs::remove_file(&self.path);
            self.unlink_on_drop = false;
        }
    }
    /// Stops this handle from unlinking the file on drop (another process owns it now).
    pub fn keep(&mut self) {
        self.unlink_on_drop = false;
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Only the creating process unlinks; a forked child inherits the flag, so the ring
        // clears it after fork (see Ring::forget_ownership_after_fork).
        if self.unlink_on_drop && self.creator_is_me() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Segment {
    fn creator_is_me(&self) -> bool {
        // SAFETY: the mapping is `self.len()` bytes and outlives this call.
        let shm = unsafe { crate::view::Shm::new(self.base(), self.len()) };
        shm.fits(crate::layout::H_CREATOR, 4) && shm.read_u32(crate::layout::H_CREATOR) == std::process::id()
    }
}
