//! Bindings of the multi-host pieces: the coordinator (in the main's process, or reached over
//! TCP when it runs standalone), the bridge loop (run in the bridge process a node forks), and
//! the auth token helpers.

use crate::{Ring, Store};
use mproc_bridge::{BridgeConfig, READY_WORD};
use mproc_core::auth;
use mproc_core::coordinator::{Coordinator as CoreCoordinator, Entry, MainLink, MainSink, RemoteMain, EVENT_TAG};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

fn resolve(host: &str, port: u16) -> PyResult<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| PyValueError::new_err(format!("cannot resolve {host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| PyValueError::new_err(format!("cannot resolve {host}:{port}: no address")))
}

/// The main's handle on the run's coordinator: serving in this process (`listen`, `listen_fd`)
/// or running standalone elsewhere (`connect`). Node results and events arrive in `results`.
#[pyclass(module = "pytest_mproc._core", frozen)]
struct Coordinator {
    link: Box<dyn MainLink>,
    port: Option<u16>,
}

impl Coordinator {
    fn serving(c: CoreCoordinator) -> Coordinator {
        Coordinator { port: Some(c.port()), link: Box::new(c) }
    }
}

#[pymethods]
impl Coordinator {
    /// Serves on an already listening socket (its fd is taken over).
    #[staticmethod]
    fn listen_fd(fd: i32, token: &[u8], collection: Vec<String>, results: &Ring) -> PyResult<Coordinator> {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller hands over ownership of a listening TCP socket (socket.detach()).
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let c = CoreCoordinator::from_listener(listener, token.to_vec(), Some(collection), MainSink::Ring(results.ring.clone()))
            .map_err(|e| PyOSError::new_err(format!("cannot serve on fd {fd}: {e}")))?;
        Ok(Coordinator::serving(c))
    }

    /// Connects to a standalone coordinator (`pytest_mproc.orchestration.main`) as its main.
    #[staticmethod]
    fn connect(py: Python<'_>, host: &str, port: u16, token: &[u8], collection: Vec<String>, results: &Ring, timeout: f64) -> PyResult<Coordinator> {
        let addr = resolve(host, port)?;
        let ring = results.ring.clone();
        let token = token.to_vec();
        let r = py.detach(move || RemoteMain::connect(addr, &token, collection, ring, Duration::from_secs_f64(timeout)));
        Ok(Coordinator { link: Box::new(r.map_err(PyOSError::new_err)?), port: None })
    }

    /// The port it listens on (None for a remote coordinator).
    #[getter]
    fn port(&self) -> Option<u16> {
        self.port
    }

    /// Queues entries (a unit, or a SINGLE_NODE block of units); `front` for re-queued work.
    #[pyo3(signature = (entries, front=false))]
    fn submit(&self, entries: Vec<Entry>, front: bool) {
        self.link.submit(entries, front)
    }

    fn publish(&self, key: String, value: &[u8]) {
        self.link.publish(key, value.to_vec())
    }

    fn stop(&self) {
        self.link.stop()
    }

    /// Every node reports what its workers run, with their stacks (SIGQUIT on the main).
    fn request_reports(&self) {
        self.link.request_reports()
    }

    /// Entries not yet handed to a node (None when the coordinator runs elsewhere).
    fn queued(&self) -> Option<usize> {
        self.link.queued()
    }

    /// What each node last said it was running: [(node name, [test index])] (empty when the
    /// coordinator runs elsewhere).
    fn running(&self) -> Vec<(String, Vec<u32>)> {
        self.link.running()
    }

    fn finish(&self) {
        self.link.finish()
    }

    /// Waits (GIL released) until every node has left; False on timeout. Remote: True at once.
    fn wait_nodes_gone(&self, py: Python<'_>, timeout: f64) -> bool {
        py.detach(|| self.link.wait_nodes_gone(Duration::from_secs_f64(timeout)))
    }

    fn close(&self) {
        self.link.close()
    }
}

/// Runs a standalone coordinator on host:port until a main has connected and left.
#[pyfunction]
fn serve_orchestration(py: Python<'_>, host: &str, port: u16, token: &[u8]) -> PyResult<()> {
    let c = CoreCoordinator::listen(&format!("{host}:{port}"), token.to_vec(), None, MainSink::Pending(Vec::new()))
        .map_err(|e| PyOSError::new_err(format!("cannot listen on {host}:{port}: {e}")))?;
    loop {
        if py.detach(|| c.main_gone_within(Duration::from_millis(100))) {
            return Ok(());
        }
        py.check_signals()?;
    }
}

/// The bridge loop of a worker node (blocks, GIL released). Returns (exit code, message):
/// 0 finished, 10 unreachable, 11 refused, 12 lost the main.
#[pyfunction]
#[pyo3(signature = (host, port, token, name, workers, collection, tasks, results, store, connect_timeout))]
#[allow(clippy::too_many_arguments)]
fn run_bridge(
    py: Python<'_>,
    host: &str,
    port: u16,
    token: &[u8],
    name: String,
    workers: u32,
    collection: Vec<String>,
    tasks: &Ring,
    results: &Ring,
    store: &Store,
    connect_timeout: f64,
) -> PyResult<(i32, String)> {
    let cfg = BridgeConfig {
        addr: resolve(host, port)?,
        token: token.to_vec(),
        name,
        workers,
        collection,
        tasks: tasks.ring.clone(),
        results: results.ring.clone(),
        store: store.store.clone(),
        connect_timeout: Duration::from_secs_f64(connect_timeout),
    };
    let outcome = py.detach(move || mproc_bridge::run(cfg));
    Ok((outcome.exit_code(), outcome.message()))
}

/// A fresh random run token.
#[pyfunction]
fn random_token(py: Python<'_>) -> Bound<'_, PyBytes> {
    PyBytes::new(py, &auth::random_token())
}

/// Parses a hex token (PTMPROC_AUTH_TOKEN); ValueError with a one-line reason.
#[pyfunction]
fn token_from_hex<'py>(py: Python<'py>, s: &str) -> PyResult<Bound<'py, PyBytes>> {
    auth::token_from_hex(s).map(|t| PyBytes::new(py, &t)).map_err(PyValueError::new_err)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Coordinator>()?;
    m.add_function(wrap_pyfunction!(serve_orchestration, m)?)?;
    m.add_function(wrap_pyfunction!(run_bridge, m)?)?;
    m.add_function(wrap_pyfunction!(random_token, m)?)?;
    m.add_function(wrap_pyfunction!(token_from_hex, m)?)?;
    m.add("BRIDGE_READY_WORD", READY_WORD)?;
    m.add("BRIDGE_REPORT_WORD", mproc_bridge::run::REPORT_WORD)?;
    m.add("EVENT_TAG", EVENT_TAG)?;
    Ok(())
}
