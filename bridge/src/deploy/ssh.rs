//! One multiplexed ssh connection per host. The master is the user's own `ssh` (their
//! ~/.ssh/config or `-F FILE`, agent and known_hosts apply; host keys are checked as `ssh`
//! checks them, never turned off); every command of the run then goes over it through the
//! `openssh` crate (`Session::resume`).

use super::plan::{HostPlan, Plan};
use openssh::Session;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The askpass helper: prints the password ssh asks for from its own environment, so the
/// password is in no argv and no file.
const ASKPASS: &str = "#!/bin/sh\nprintf '%s\\n' \"$PTMPROC_SSH_SECRET\"\n";

pub struct Connection {
    pub session: Session,
    control: PathBuf,
}

/// Writes the askpass helper into the (private) control directory once; its path.
pub fn askpass_helper(control_dir: &Path) -> std::io::Result<PathBuf> {
    let path = control_dir.join("askpass");
    if !path.exists() {
        let tmp = control_dir.join(format!("askpass.{}", std::process::id()));
        std::fs::write(&tmp, ASKPASS)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

impl Connection {
    /// Opens the master connection; Err is ssh's own message (its last lines).
    pub async fn open(plan: &Plan, host: &HostPlan) -> Result<Connection, String> {
        let control = plan.control_dir.join(format!("h{}", host.index));
        let _ = std::fs::remove_file(&control);
        let log = plan.control_dir.join(format!("h{}.log", host.index));
        let _ = std::fs::remove_file(&log);
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd.arg("-E").arg(&log).arg("-S").arg(&control).args(["-M", "-f", "-N"]);
        // Ends by itself once idle (no command, no tunnel) for a while, should the main die.
        cmd.args(["-o", "ControlPersist=60s", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]);
        cmd.arg("-o").arg(format!("ConnectTimeout={}", plan.connect_timeout));
        cmd.args(["-o", "ExitOnForwardFailure=yes"]);
        if let Some(cfg) = &plan.ssh_config {
            cmd.arg("-F").arg(cfg);
        }
        if let Some(user) = &plan.user {
            cmd.arg("-l").arg(user);
        }
        if let Some(port) = host.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(jump) = &host.jump_host {
            cmd.arg("-J").arg(jump);
        }
        match &plan.password {
            Some(pw) => {
                let helper = askpass_helper(&plan.control_dir).map_err(|e| format!("askpass helper: {e}"))?;
                cmd.env("SSH_ASKPASS", helper).env("SSH_ASKPASS_REQUIRE", "force").env("PTMPROC_SSH_SECRET", pw);
                cmd.args(["-o", "NumberOfPasswordPrompts=1"]);
            }
            None => {
                // Never wait for a prompt nobody answers.
                cmd.args(["-o", "BatchMode=yes"]);
            }
        }
        cmd.arg("--").arg(&host.host);
        let status = cmd.status().await.map_err(|e| format!("cannot run ssh: {e}"))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let last: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let msg = last.iter().rev().take(2).rev().cloned().collect::<Vec<_>>().join(" / ");
            return Err(if msg.is_empty() { format!("ssh exited with {status}") } else { msg });
        }
        let session = Session::resume(control.clone().into_boxed_path(), Some(log.into_boxed_path()));
        Ok(Connection { session, control })
    }

    /// Ends the master connection (and with it any tunnel).
    pub async fn close(self) {
        let _ = self.session.close().await;
        let _ = std::fs::remove_file(&self.control);
    }
}
