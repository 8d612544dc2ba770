//! `pytest_mproc._core`: the Python face of the Rust core. Thin by design: argument
//! conversion, GIL release around blocking calls, and exceptions with one-line messages.
#![deny(clippy::undocumented_unsafe_blocks)]

use mproc_core::{Error, Ring as CoreRing, RingOptions, Store as CoreStore};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod fleet;
mod multihost;

create_exception!(_core, RingClosed, PyException, "The ring was closed and is drained (or aborted).");
create_exception!(_core, RingFull, PyException, "The ring (or its blob arena) has no free space.");

/// Longest stretch spent blocked without the GIL before looking for Python signals (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

fn to_py(e: Error) -> PyErr {
    match e {
        Error::Closed => RingClosed::new_err("ring is closed"),
        Error::Full => RingFull::new_err("ring is full"),
        Error::Timeout => PyTimeoutError::new_err("timed out"),
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t >= 0.0 && t.is_finite() => Ok(Some(Instant::now() + Duration::from_secs_f64(t))),
        Some(t) => Err(PyValueError::new_err(format!("timeout must be a non-negative number, got {t}"))),
    }
}

/// Time left to `deadline`, capped at the signal slice; None when it has passed.
fn slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SIGNAL_SLICE),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|r| !r.is_zero()).map(|r| r.min(SIGNAL_SLICE)),
    }
}

/// A shared-memory ring of byte messages shared by the processes of one node.
#[pyclass(module = "pytest_mproc._core", frozen)]
pub(crate) struct Ring {
    pub(crate) ring: Arc<CoreRing>,
    /// An error `try_pop_batch` met after it had popped items: raised by its next call, so
    /// neither the items nor the error are lost.
    deferred: std::sync::Mutex<Option<Error>>,
}

#[pymethods]
impl Ring {
    /// Creates a ring: an anonymous memfd when `path` is None, else a new file (e.g. under /dev/shm).
    #[staticmethod]
    #[pyo3(signature = (path=None, capacity=1024, slot_size=256, leases=256, arena_bytes=16<<20, chunk_size=4096))]
    fn create(
        path: Option<std::path::PathBuf>,
        capacity: u32,
        slot_size: u32,
        leases: u32,
        arena_bytes: usize,
        chunk_size: u32,
    ) -> PyResult<Ring> {
        let opts = RingOptions { capacity, slot_size, leases, arena_bytes, chunk_size };
        Ok(Ring { ring: Arc::new(CoreRing::create(path.as_deref(), &opts).map_err(to_py)?), deferred: Default::default() })
    }

    /// Maps an existing ring by path (a /dev/shm file or /proc/<pid>/fd/<n> of a memfd).
    #[staticmethod]
    fn attach(path: std::path::PathBuf) -> PyResult<Ring> {
        Ok(Ring { ring: Arc::new(CoreRing::attach(&path).map_err(to_py)?), deferred: Default::default() })
    }

    #[getter]
    fn path(&self) -> String {
        self.ring.path().display().to_string()
    }
    #[getter]
    fn capacity(&self) -> u32 {
        self.ring.capacity()
    }
    #[getter]
    fn inline_max(&self) -> usize {
        self.ring.inline_max()
    }

    /// Pushes without waiting; False when full.
    fn try_push(&self, data: &[u8]) -> PyResult<bool> {
        match self.ring.try_push(data) {
            Ok(()) => Ok(true),
            Err(Error::Full) => Ok(false),
            Err(e) => Err(to_py(e)),
        }
    }

    /// Pushes, waiting for space up to `timeout` seconds (None: forever; TimeoutError after).
    #[pyo3(signature = (data, timeout=None))]
    fn push(&self, py: Python<'_>, data: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline(timeout)?;
        loop {
            let Some(s) = slice(deadline) else { return Err(to_py(Error::Timeout)) };
            match py.detach(|| self.ring.push(data, Some(s))) {
                Ok(()) => return Ok(()),
                Err(Error::Timeout) => py.check_signals()?,
                Err(e) => return Err(to_py(e)),
            }
        }
    }

    /// Pops without waiting; None when empty. Raises RingClosed when closed and drained.
    fn try_pop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.ring.try_pop().map_err(to_py)?.map(|v| PyBytes::new(py, &v)))
    }

    /// Pops up to `max` items without waiting (an empty list when there is none), waking
    /// producers blocked on a full ring once per batch. Raises RingClosed when closed and
    /// drained; an error met after some items were popped is raised by the next call.
    #[pyo3(signature = (max=64))]
    fn try_pop_batch<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = deferred.take() {
            return Err(to_py(e));
        }
        let (items, stopped) = self.ring.try_pop_batch(max);
        match stopped {
            Some(e) if items.is_empty() => return Err(to_py(e)),
            Some(e) => *deferred = Some(e),
            None => {}
        }
        Ok(items.iter().map(|v| PyBytes::new(py, v)).collect())
    }

    /// Pops, waiting up to `timeout` seconds (None: forever). None on timeout; RingClosed when
    /// closed and drained. The GIL is released while waiting and signals are checked every 100 ms.
    #[pyo3(signature = (timeout=None))]
    fn pop<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.wait_pop(py, None, timeout)
    }

    /// Pops like `pop`, keeping a copy in lease entry `slot` until `ack(slot)` or the next
    /// leased pop, so `heal` can hand it back if this process dies in between.
    #[pyo3(signature = (slot, timeout=None))]
    fn pop_leased<'py>(&self, py: Python<'py>, slot: u32, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.wait_pop(py, Some(slot), timeout)
    }

    /// Drops the copy held by lease entry `slot`.
    fn ack(&self, slot: u32) -> PyResult<()> {
        self.ring.ack(slot).map_err(to_py)
    }

    /// Polls before a blocking pop sleeps on the futex (0: never spin).
    fn set_spin(&self, polls: u32) {
        self.ring.set_spin(polls)
    }

    fn close(&self) {
        self.ring.close()
    }
    fn abort(&self) {
        self.ring.abort()
    }
    #[getter]
    fn closed(&self) -> bool {
        self.ring.is_closed()
    }
    #[getter]
    fn aborted(&self) -> bool {
        self.ring.is_aborted()
    }
    fn __len__(&self) -> usize {
        self.ring.len()
    }
    #[getter]
    fn arena_used_chunks(&self) -> usize {
        self.ring.arena_used_chunks()
    }
    #[getter]
    fn pop_waiters(&self) -> u32 {
        self.ring.pop_waiters()
    }

    /// A 64-bit counter word in the segment header (0..8) for the layers above.
    fn user_get(&self, i: usize) -> PyResult<u64> {
        check_word(i)?;
        Ok(self.ring.user_word(i).load(std::sync::atomic::Ordering::Acquire))
    }
    fn user_set(&self, i: usize, value: u64) -> PyResult<()> {
        check_word(i)?;
        self.ring.user_word(i).store(value, std::sync::atomic::Ordering::Release);
        Ok(())
    }
    /// Atomically adds `delta` and returns the previous value.
    fn user_add(&self, i: usize, delta: u64) -> PyResult<u64> {
        check_word(i)?;
        Ok(self.ring.user_word(i).fetch_add(delta, std::sync::atomic::Ordering::AcqRel))
    }

    /// Takes a lease entry for this process; returns its slot number.
    fn lease_claim(&self) -> PyResult<u32> {
        self.ring.lease_claim().map_err(to_py)
    }
    /// Records that this process now runs item `key` (None: nothing).
    #[pyo3(signature = (slot, key=None))]
    fn lease_set(&self, slot: u32, key: Option<u64>) -> PyResult<()> {
        self.ring.lease_set(slot, key).map_err(to_py)
    }
    fn lease_release(&self, slot: u32) -> PyResult<()> {
        self.ring.lease_release(slot).map_err(to_py)
    }

    /// Closes this process's descriptor of the ring's segment (the mapping stays). A forked
    /// worker calls it so the code it runs sees no descriptor of ours.
    fn close_fd(&self) {
        self.ring.close_fd()
    }
    /// Live lease entries as (slot, pid, key or None, started_ns).
    fn leases(&self) -> Vec<(u32, u32, Option<u64>, u64)> {
        self.ring.leases().into_iter().map(|l| (l.slot, l.pid, l.key, l.started_ns)).collect()
    }

    /// Hands back what dead process `pid` held. Returns (items, leases, tombstones, chunks_freed):
    /// items it had popped but not finished taking, and its lease entries as in `leases()`.
    #[allow(clippy::type_complexity)]
    fn heal<'py>(
        &self,
        py: Python<'py>,
        pid: u32,
    ) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<(u32, u32, Option<u64>, u64)>, usize, usize)> {
        if pid == 0 || pid >= 1 << 24 {
            return Err(PyValueError::new_err(format!("pid {pid} out of range")));
        }
        let rep = self.ring.heal(pid);
        Ok((
            rep.items.iter().map(|v| PyBytes::new(py, v)).collect(),
            rep.leases.into_iter().map(|l| (l.slot, l.pid, l.key, l.started_ns)).collect(),
            rep.tombstones,
            rep.chunks_freed,
        ))
    }
}

/// The node's fixture store: named immutable byte values in shared memory, written by the
/// node's coordinating process and read by its workers without a round trip.
#[pyclass(module = "pytest_mproc._core", frozen)]
pub(crate) struct Store {
    pub(crate) store: Arc<CoreStore>,
}

#[pymethods]
impl Store {
    #[staticmethod]
    #[pyo3(signature = (entries=1024, capacity=4usize<<30))]
    fn create(entries: usize, capacity: usize) -> PyResult<Store> {
        Ok(Store { store: Arc::new(CoreStore::create(entries, capacity).map_err(to_py)?) })
    }
    #[staticmethod]
    fn attach(path: std::path::PathBuf) -> PyResult<Store> {
        Ok(Store { store: Arc::new(CoreStore::attach(&path).map_err(to_py)?) })
    }
    #[getter]
    fn path(&self) -> String {
        self.store.path().display().to_string()
    }
    /// Publishes `value` under `name` (once per name).
    fn put(&self, name: &str, value: &[u8]) -> PyResult<()> {
        self.store.put(name, value).map_err(to_py)
    }
    /// The value published under `name`, or None.
    fn get<'py>(&self, py: Python<'py>, name: &str) -> Option<Bound<'py, PyBytes>> {
        self.store.get(name).map(|v| PyBytes::new(py, v))
    }
    fn names(&self) -> Vec<String> {
        self.store.names()
    }
    /// Closes this process's descriptor of the store's segment (see Ring.close_fd).
    fn close_fd(&self) {
        self.store.close_fd()
    }
    fn __contains__(&self, name: &str) -> bool {
        self.store.get(name).is_some()
    }
}

impl Ring {
    /// A pop without waiting first; then waits in GIL-free slices, checking for signals between.
    fn wait_pop<'py>(&self, py: Python<'py>, lease: Option<u32>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let now = match lease {
            Some(slot) => self.ring.try_pop_leased(slot),
            None => self.ring.try_pop(),
        };
        if let Some(v) = now.map_err(to_py)? {
            return Ok(Some(PyBytes::new(py, &v)));
        }
        let deadline = deadline(timeout)?;
        loop {
            let Some(s) = slice(deadline) else { return Ok(None) };
            let got = py.detach(|| match lease {
                Some(slot) => self.ring.pop_leased(slot, Some(s)),
                None => self.ring.pop(Some(s)),
            });
            match got.map_err(to_py)? {
                Some(v) => return Ok(Some(PyBytes::new(py, &v))),
                None => py.check_signals()?,
            }
        }
    }
}

fn check_word(i: usize) -> PyResult<()> {
    if i < mproc_core::layout::USER_WORDS {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("user word {i} out of range 0..{}", mproc_core::layout::USER_WORDS)))
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of lease timestamps.
#[pyfunction]
fn monotonic_ns() -> u64 {
    mproc_core::lease::monotonic_ns()
}

/// Asks the kernel to send `sig` to this process when its parent dies, so no worker or fork
/// server outlives a killed main process. Returns the parent pid seen afterwards: if it is not
/// the expected parent, the parent died before the request took effect.
#[pyfunction]
fn set_parent_death_signal(sig: i32) -> PyResult<u32> {
    let sig = nix::sys::signal::Signal::try_from(sig).map_err(|e| PyValueError::new_err(e.to_string()))?;
    nix::sys::prctl::set_pdeathsig(sig).map_err(|e| PyOSError::new_err(e.to_string()))?;
    Ok(nix::unistd::getppid().as_raw() as u32)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Ring>()?;
    m.add_class::<Store>()?;
    m.add("RingClosed", m.py().get_type::<RingClosed>())?;
    m.add("RingFull", m.py().get_type::<RingFull>())?;
    m.add_function(wrap_pyfunction!(monotonic_ns, m)?)?;
    m.add_function(wrap_pyfunction!(set_parent_death_signal, m)?)?;
    multihost::register(m)?;
    fleet::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
