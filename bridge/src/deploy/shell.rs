//! The shell text run on the hosts (POSIX sh; the host needs sh, tar and python3 with venv).
//! Everything that comes from the user is quoted here, in one place.

use super::plan::{HostPlan, Plan};

/// `s` as one single-quoted sh word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A host path as a sh word: `~/x` is under the remote user's $HOME.
pub fn path(p: &str) -> String {
    match p.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
        None if p == "~" => "\"$HOME\"".to_string(),
        None => quote(p),
    }
}

/// The project's cache directory on the host (`C`).
pub fn cache_dir(plan: &Plan) -> String {
    let root = plan.cached_dir.as_deref().unwrap_or("~/.cache/pytest_mproc");
    format!("{}/{}", path(root), quote(&plan.project_name))
}

/// This host's run directory (`R`): its own, also when hosts share a machine or a cache.
pub fn run_dir(plan: &Plan, host: &HostPlan) -> String {
    let root = plan.tmp_root.as_deref().unwrap_or("/tmp");
    format!("{}/{}", path(root), quote(&format!("ptmproc-{}-{}", plan.run_id, host.index)))
}

fn vars(plan: &Plan, host: &HostPlan, python: &str) -> String {
    format!(
        "C={}\nR={}\nV=\"$C\"/{}\nW=\"$R/.ptmproc/wheels\"\nA=\"$R/.ptmproc/artifacts\"\n",
        cache_dir(plan),
        run_dir(plan, host),
        quote(&format!("venv-{}-py{}", plan.venv_key, python)),
    )
}

/// What the host has and can do: prints `have <hash>` per cached blob, `python X.Y`, and
/// (when nodes are to connect directly) `mainhost H` and `reach yes|no ...` for the main's
/// address. One python3 start: a login shell and an interpreter start are the costly part.
pub fn probe(plan: &Plan) -> String {
    let mut s = format!("set -e\nC={}\nmkdir -p \"$C/blobs\"\n", cache_dir(plan));
    for blob in [&plan.runtime, &plan.bundle] {
        s += &format!("if [ -f \"$C/blobs/{h}.tar\" ]; then echo have {h}; fi\n", h = blob.hash);
    }
    let mut py = String::from("import sys\nprint(\"python %d.%d\" % sys.version_info[:2])\n");
    let mut py_args = String::new();
    if let Some(main) = &plan.main {
        // No host given (the main serves on 0.0.0.0): the address this ssh connection came from.
        if main.host.is_empty() {
            s += "h=${SSH_CONNECTION%% *}\n";
        } else {
            s += &format!("h={}\n", quote(&main.host));
        }
        s += "echo \"mainhost $h\"\n";
        py += "import socket\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n    print(\"reach yes\")\nexcept OSError as e:\n    print(\"reach no\", e)\n";
        py_args = format!(" \"$h\" {}", main.port);
    }
    s += &format!("python3 -c {}{}\n", quote(&py), py_args);
    s
}

/// Stores stdin as the blob `hash` in the cache (atomically: concurrent senders are fine).
pub fn upload(plan: &Plan, hash: &str) -> String {
    format!(
        "set -e; C={}; mkdir -p \"$C/blobs\"; f=\"$C/blobs/{hash}.tar\"; cat > \"$f.$$.part\"; mv \"$f.$$.part\" \"$f\"",
        cache_dir(plan)
    )
}

fn environment(host: &HostPlan) -> String {
    let mut s = String::new();
    for (k, v) in &host.env {
        s += &format!("{k}={}\nexport {k}\n", quote(v));
    }
    // Fixed by the plugin: a value the user set is overridden.
    s += "PTMPROC_WORKER_ARTIFACTS_DIR=\"$A\"\nexport PTMPROC_WORKER_ARTIFACTS_DIR\n";
    s
}

/// Runs a project script in the run directory (its output is the caller's).
fn project_script(script: &str) -> String {
    format!("p={}\nif [ -x \"$p\" ]; then \"./$p\"; else sh \"./$p\"; fi\n", quote(script))
}

/// The whole life of the node on the host, as one session (one login shell): prints
/// `@@pid PID PGID` first, then sets up the run directory and the cached venv (`@@venv cached`
/// or `@@venv installed`, one installer at a time per cache directory), `@@setup-done`, runs
/// `prepare_script` between `@@prepare-begin` and `@@prepare-end CODE` (exit 97 if it failed),
/// prints `@@exec` and runs `pytest --as-worker ...` (`@@node-exit CODE`), then
/// `finalize_script` (`@@finalize-begin`, `@@finalize-end CODE`) and removes the run directory
/// (`@@cleaned`). The token travels in this text (stdin), never in a command line.
pub fn run(plan: &Plan, host: &HostPlan, python: &str, address: &str) -> String {
    let end = format!("PTMPROC_SELECTION_{}", plan.run_id);
    let mut s = String::from("exec 2>&1\nset -- $(cat /proc/$$/stat 2>/dev/null)\necho \"@@pid $$ $5\"\nset -e\n");
    s += &vars(plan, host, python);
    s += "rm -rf \"$R\"\nmkdir -p \"$W\" \"$A\"\n";
    s += &format!("tar -xf \"$C/blobs/{}.tar\" -C \"$R\"\ntouch \"$C/blobs/{}.tar\"\n", plan.bundle.hash, plan.bundle.hash);
    s += &format!("RUNTIME=\"$C/blobs/{}.tar\"\n", plan.runtime.hash);
    s += &format!("cat > \"$R/.ptmproc/selection\" <<'{end}'\n{}\n{end}\n", plan.selection.trim_end());
    s += &format!("MPROC_REQ={}\n", quote(&plan.mproc_requirement));
    s += &format!("REQDIR={}\n", quote(plan.requirements_dir.as_deref().unwrap_or("")));
    s += "export C R V W MPROC_REQ REQDIR RUNTIME\n";
    // Fast path without the lock; the lock is the cache directory's, so hosts sharing it (NFS,
    // one machine) install once and the others wait and reuse.
    s += r#"if [ -f "$V/.complete" ]; then echo "@@venv cached"; else
python3 -c 'import fcntl, subprocess, sys
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
sys.exit(subprocess.call(["sh", "-ec", sys.argv[2]]))' "$C/.lock" '
if [ -f "$V/.complete" ]; then echo "@@venv cached"; exit 0; fi
rm -rf "$V"
tar -xf "$RUNTIME" -C "$W"
python3 -m venv "$V"
"$V/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$W" "$MPROC_REQ"
if [ -n "$REQDIR" ]; then cd "$R/$REQDIR"; "$V/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt; fi
touch "$V/.complete"
echo "@@venv installed"'
fi
touch "$RUNTIME" "$V/.last_used" 2>/dev/null || true
# What no run used for 14 days goes (other projects' caches are theirs).
find "$C/blobs" -name '*.tar' -mtime +14 -delete 2>/dev/null || true
for old in "$C"/venv-*; do
  if [ -f "$old/.last_used" ] && [ -n "$(find "$old/.last_used" -mtime +14 2>/dev/null)" ]; then rm -rf "$old"; fi
done
echo "@@setup-done"
set +e
cd "$R"
"#;
    s += &environment(host);
    if let Some(script) = &plan.prepare_script {
        s += "echo \"@@prepare-begin\"\n";
        s += &project_script(script);
        s += "c=$?\necho \"@@prepare-end $c\"\nif [ $c -ne 0 ]; then exit 97; fi\n";
    }
    s += &format!("PTMPROC_AUTH_TOKEN={}\nexport PTMPROC_AUTH_TOKEN\n", quote(&plan.token_hex));
    s += "VIRTUAL_ENV=\"$V\"; PATH=\"$V/bin:$PATH\"; export VIRTUAL_ENV PATH\n";
    let cores = host.cores.as_deref().unwrap_or(&plan.default_cores);
    let mut argv: Vec<String> = vec![
        "--as-worker".into(),
        address.into(),
        "--cores".into(),
        cores.into(),
        format!("--mproc-node-name=Worker-{}", host.index),
    ];
    argv.extend(plan.pytest_args.iter().cloned());
    argv.extend(host.options.iter().cloned());
    s += "echo \"@@exec\"\n";
    // Not exec: when the node ends, this session runs finalize_script and removes the run
    // directory itself (no further login shell on the host in the normal case).
    s += "\"$V/bin/python\" -m pytest --mproc-selection \"$R/.ptmproc/selection\"";
    for a in argv {
        s += " ";
        s += &quote(&a);
    }
    s += " </dev/null\nc=$?\necho \"@@node-exit $c\"\n";
    if let Some(script) = &plan.finalize_script {
        s += "echo \"@@finalize-begin\"\n";
        s += &project_script(script);
        s += "echo \"@@finalize-end $?\"\n";
    }
    s += &artifacts();
    s += "cd /\nrm -rf \"$R\"\necho \"@@cleaned\"\nexit $c\n";
    s
}

/// When the tests (or scripts) left files in the artifacts directory: prints them as one zip,
/// base64 between `@@artifacts-begin` and `@@artifacts-end` (the main writes it to
/// `Worker-<n>/artifacts.zip`).
fn artifacts() -> String {
    let py = r#"import base64, os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            z.write(p, os.path.relpath(p, src))
with open(out, "rb") as f:
    base64.encode(f, sys.stdout.buffer)
"#;
    format!(
        "if [ -d \"$A\" ] && [ -n \"$(ls -A \"$A\" 2>/dev/null)\" ]; then\necho \"@@artifacts-begin\"\npython3 -c {} \"$A\" \"$R/.ptmproc/artifacts.zip\" 2>/dev/null\necho \"@@artifacts-end $?\"\nfi\n",
        quote(py)
    )
}

/// The end of the run on the host when the run session could not finish it (cut short, or its
/// connection lost): what is left of the session's process group is ended (`pid`, `pgid` from
/// `@@pid`), `finalize_script` runs (when the host was set up and it did not run yet) between
/// `@@finalize-begin` and `@@finalize-end CODE`, and the run directory is removed.
pub fn end(plan: &Plan, host: &HostPlan, python: &str, node: Option<(u32, u32)>, finalize: bool) -> String {
    let mut s = String::from("exec 2>&1\n");
    s += &vars(plan, host, python);
    if let Some((pid, pgid)) = node {
        // The session's group: its sh, a prepare_script cut short, the node's pytest (whose fork
        // server, workers and bridge die with it: parent-death signal).
        s += &format!(
            "if kill -0 {pid} 2>/dev/null; then kill -TERM -{pgid} {pid} 2>/dev/null; i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL -{pgid} {pid} 2>/dev/null; fi\n"
        );
    }
    if let (true, Some(script)) = (finalize, &plan.finalize_script) {
        s += "if cd \"$R\" 2>/dev/null; then\n";
        s += &environment(host);
        s += "echo \"@@finalize-begin\"\n";
        s += &project_script(script);
        s += "echo \"@@finalize-end $?\"\nfi\n";
    }
    s += &artifacts();
    s += "cd /\nrm -rf \"$R\"\n";
    s
}

/// Ends the run session's process group now (its sh, a script, the node's pytest).
pub fn terminate(pid: u32, pgid: u32) -> String {
    format!("kill -TERM -{pgid} {pid} 2>/dev/null || true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_home() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
        assert_eq!(path("~/x y"), "\"$HOME\"/'x y'");
        assert_eq!(path("/abs"), "'/abs'");
    }
}
