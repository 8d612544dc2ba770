//! Bindings of the fleet mode (`--remote-worker`): packing bundles and running the hosts
//! (mproc_bridge::deploy). The plan arrives as JSON built by `pytest_mproc/fleet.py`.

use mproc_bridge::deploy::{bundle, plan::{HostPlan, Plan}, Fleet as CoreFleet, Stop};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Writes a deterministic tar of `files` (relative to `root`) to `out`; returns its SHA-256.
#[pyfunction]
fn pack_bundle(py: Python<'_>, root: PathBuf, files: Vec<String>, out: PathBuf) -> PyResult<String> {
    py.detach(|| bundle::pack(&root, &files, &out)).map_err(|e| PyOSError::new_err(e.to_string()))
}

/// The hosts of a fleet run, each deployed and run on its own task.
#[pyclass(module = "pytest_mproc._core", frozen)]
struct Fleet {
    inner: Mutex<CoreFleet>,
}

#[pymethods]
impl Fleet {
    #[new]
    fn new(plan_json: &str) -> PyResult<Fleet> {
        let plan: Plan = serde_json::from_str(plan_json).map_err(|e| PyValueError::new_err(format!("fleet plan: {e}")))?;
        let fleet = CoreFleet::start(plan).map_err(|e| PyOSError::new_err(format!("cannot start the fleet: {e}")))?;
        Ok(Fleet { inner: Mutex::new(fleet) })
    }

    /// Starts one more host (JSON of one entry of the plan's `hosts`).
    fn add_host(&self, host_json: &str) -> PyResult<()> {
        let host: HostPlan = serde_json::from_str(host_json).map_err(|e| PyValueError::new_err(format!("fleet host: {e}")))?;
        self.inner.lock().expect("fleet lock").add(host);
        Ok(())
    }

    /// Progress lines (JSON) reported since the last call, waiting up to `timeout` s for one.
    fn events(&self, py: Python<'_>, timeout: f64) -> Vec<String> {
        let d = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.inner.lock().expect("fleet lock").events(d))
    }

    /// Winds the fleet down: hosts not running a node yet never start one; with
    /// `everything`, running nodes are ended too (finalize_script still runs where the host was
    /// set up).
    #[pyo3(signature = (everything=true))]
    fn stop(&self, everything: bool) {
        self.inner.lock().expect("fleet lock").stop(if everything { Stop::Everything } else { Stop::NoNewNodes })
    }

    /// True once every host is done, waiting up to `timeout` s.
    fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let d = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.inner.lock().expect("fleet lock").wait(d))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Fleet>()?;
    m.add_function(wrap_pyfunction!(pack_bundle, m)?)?;
    Ok(())
}
