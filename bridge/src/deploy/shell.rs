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
/// `reach yes|no ...` for the main's address when nodes are to connect directly.
pub fn probe(plan: &Plan) -> String {
    let mut s = format!("set -e\nC={}\nmkdir -p \"$C/blobs\"\n", cache_dir(plan));
    for blob in [&plan.runtime, &plan.bundle] {
        s += &format!("if [ -f \"$C/blobs/{h}.tar\" ]; then echo have {h}; fi\n", h = blob.hash);
    }
    s += "python3 -c 'import sys; print(\"python %d.%d\" % sys.version_info[:2])'\n";
    if let Some(main) = &plan.main {
        // No host given (the main serves on 0.0.0.0): the address this ssh connection came from.
        if main.host.is_empty() {
            s += "h=${SSH_CONNECTION%% *}\n";
        } else {
            s += &format!("h={}\n", quote(&main.host));
        }
        s += &format!(
            "echo \"mainhost $h\"\npython3 -c 'import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close(); print(\"reach yes\")\nexcept OSError as e:\n    print(\"reach no\", e)' \"$h\" {}\n",
            main.port
        );
    }
    s
}

/// Stores stdin as the blob `hash` in the cache (atomically: concurrent senders are fine).
pub fn upload(plan: &Plan, hash: &str) -> String {
    format!(
        "set -e; C={}; mkdir -p \"$C/blobs\"; f=\"$C/blobs/{hash}.tar\"; cat > \"$f.$$.part\"; mv \"$f.$$.part\" \"$f\"",
        cache_dir(plan)
    )
}

/// Unpacks the run directory and makes sure the cached venv exists (one installer at a time
/// per cache directory); prints `@@venv cached` or `@@venv installed`.
pub fn setup(plan: &Plan, host: &HostPlan, python: &str) -> String {
    let end = format!("PTMPROC_SELECTION_{}", plan.run_id);
    let mut s = String::from("set -e\n");
    s += &vars(plan, host, python);
    s += "rm -rf \"$R\"\nmkdir -p \"$W\" \"$A\"\n";
    s += &format!("tar -xf \"$C/blobs/{}.tar\" -C \"$R\"\n", plan.bundle.hash);
    s += &format!("RUNTIME=\"$C/blobs/{}.tar\"\n", plan.runtime.hash);
    s += &format!("cat > \"$R/.ptmproc/selection\" <<'{end}'\n{}\n{end}\n", plan.selection.trim_end());
    s += &format!("MPROC_REQ={}\n", quote(&plan.mproc_requirement));
    s += &format!("REQDIR={}\n", quote(plan.requirements_dir.as_deref().unwrap_or("")));
    s += "export C R V W MPROC_REQ REQDIR RUNTIME\n";
    // The lock is the cache directory's, so hosts sharing it (NFS, one machine) install once.
    s += r#"python3 -c 'import fcntl, subprocess, sys
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
"#;
    s
}

fn environment(plan: &Plan, host: &HostPlan) -> String {
    let mut s = String::from("export PTMPROC_WORKER_ARTIFACTS_DIR=\"$A\"\n");
    for (k, v) in &host.env {
        s += &format!("{k}={}\nexport {k}\n", quote(v));
    }
    let _ = plan;
    s
}

/// Runs a project script (`prepare_script` / `finalize_script`) in the run directory.
pub fn script(plan: &Plan, host: &HostPlan, python: &str, script: &str) -> String {
    let mut s = String::from("exec 2>&1\n");
    s += &vars(plan, host, python);
    s += "cd \"$R\"\n";
    s += &environment(plan, host);
    s += &format!("p={}\nif [ -x \"$p\" ]; then exec \"./$p\"; else exec sh \"./$p\"; fi\n", quote(script));
    s
}

/// Starts the worker node: prints `@@pid N`, then becomes `pytest --as-worker ...`. The token
/// travels in this text (stdin), never in a command line.
pub fn start(plan: &Plan, host: &HostPlan, python: &str, address: &str) -> String {
    let mut s = String::from("exec 2>&1\n");
    s += &vars(plan, host, python);
    s += "cd \"$R\"\n";
    s += &environment(plan, host);
    s += &format!("PTMPROC_AUTH_TOKEN={}\nexport PTMPROC_AUTH_TOKEN\n", quote(&plan.token_hex));
    s += "VIRTUAL_ENV=\"$V\"; PATH=\"$V/bin:$PATH\"; export VIRTUAL_ENV PATH\n";
    s += "echo \"@@pid $$\"\n";
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
    s += "exec \"$V/bin/python\" -m pytest --mproc-selection \"$R/.ptmproc/selection\"";
    for a in argv {
        s += " ";
        s += &quote(&a);
    }
    s += " </dev/null\n";
    s
}

/// Ends what is left of the run on the host and removes its run directory.
pub fn cleanup(plan: &Plan, host: &HostPlan, pid: Option<u32>) -> String {
    let mut s = String::new();
    if let Some(pid) = pid {
        // The node's pytest; its fork server, workers and bridge die with it (parent-death signal).
        s += &format!(
            "if kill -TERM {pid} 2>/dev/null; then i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL {pid} 2>/dev/null || true; fi\n"
        );
    }
    s += &format!("rm -rf {}\n", run_dir(plan, host));
    s
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
