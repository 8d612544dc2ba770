//! Futex wait/wake on a word in shared memory. Never FUTEX_PRIVATE_FLAG: the waiters live in
//! different processes, and for a MAP_SHARED mapping the kernel keys the futex on
//! (inode, offset), so each process may map the segment at a different address.

use crate::sync::AtomicU32;
use crate::wakeup::Wait;
use std::time::Duration;

/// The kernel's futex, for `wakeup::WaitPair`.
pub struct Kernel;

impl crate::wakeup::Futex for Kernel {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wait {
        wait(word, expected, timeout)
    }
    fn wake(&self, word: &AtomicU32, n: u32) {
        wake(word, n)
    }
}

/// Sleeps while `*word == expected`, at most `timeout` (forever if None).
#[cfg(not(loom))]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32 as *const u32,
            libc::FUTEX_WAIT,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wait::TimedOut
    } else {
        // 0, EAGAIN (value changed) and EINTR (a signal: Python must get to run its handler)
        // all mean "go and look again".
        Wait::Woken
    }
}

/// Wakes up to `n` processes sleeping on `word`.
#[cfg(not(loom))]
pub fn wake(word: &AtomicU32, n: u32) {
    // SAFETY: as above; FUTEX_WAKE does not dereference beyond the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32 as *const u32,
            libc::FUTEX_WAKE,
            n.min(i32::MAX as u32),
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}
