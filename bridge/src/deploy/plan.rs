//! What the main asks the fleet to do (built by `pytest_mproc/fleet.py`, sent as JSON): the
//! hosts, how to reach them, what to ship, and what to run there.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
pub struct Plan {
    /// Unique per run: names the run directories on the hosts.
    pub run_id: String,
    /// Local directory (mode 0700) for the ssh control sockets and the askpass helper.
    pub control_dir: PathBuf,
    /// `ssh -F FILE` (else the user's own ~/.ssh/config applies).
    pub ssh_config: Option<PathBuf>,
    pub user: Option<String>,
    /// Given to ssh through SSH_ASKPASS, never in argv or a file.
    pub password: Option<String>,
    /// Per-project cache on the hosts (None: ~/.cache/pytest_mproc).
    pub cached_dir: Option<String>,
    /// Where run directories are made on the hosts (None: /tmp).
    pub tmp_root: Option<String>,
    pub project_name: String,
    /// Files shipped once per content hash (the runtime wheels, the project bundle).
    pub runtime: Blob,
    pub bundle: Blob,
    /// pip requirement naming this exact pytest-mproc (installed from the runtime wheels).
    pub mproc_requirement: String,
    /// Cache key of the venv, without the host's Python version (added there).
    pub venv_key: String,
    /// Directory (in the bundle) holding the requirements.txt to install, if any.
    pub requirements_dir: Option<String>,
    pub prepare_script: Option<String>,
    pub finalize_script: Option<String>,
    /// The main's exact selection, one node id per line (the node runs exactly these).
    pub selection: String,
    /// Where nodes connect directly (`--as-main`); None: through a reverse tunnel.
    pub main: Option<Address>,
    /// The main's queue as reachable from this machine (the end of reverse tunnels).
    pub main_local: Address,
    pub token_hex: String,
    /// The main's pytest arguments meant for the hosts.
    pub pytest_args: Vec<String>,
    /// `--cores` for hosts that do not set their own (evaluated on the host: `auto*2` works).
    pub default_cores: String,
    /// Local directory of the per-host logs: `<log_dir>/Worker-<n>/`.
    pub log_dir: PathBuf,
    /// Seconds for ssh to connect (ssh's ConnectTimeout).
    pub connect_timeout: u32,
    /// Seconds `finalize_script` may take after an abort.
    pub finalize_timeout: u32,
    pub hosts: Vec<HostPlan>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Blob {
    pub path: PathBuf,
    pub hash: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HostPlan {
    /// Numbers hosts in the order they were given: `Worker-<index>`.
    pub index: usize,
    pub host: String,
    pub port: Option<u16>,
    pub jump_host: Option<String>,
    pub cores: Option<String>,
    /// UPPER_CASE arguments: environment of pytest and of the scripts there.
    pub env: Vec<(String, String)>,
    /// Other arguments, as `--name value` pytest options there.
    pub options: Vec<String>,
}

impl HostPlan {
    /// How the host is named in messages: `host[:port]`.
    pub fn label(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
}
