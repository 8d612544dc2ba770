//! The sleep/wake pairing of blocking pops and pushes, apart from where its words live and
//! which futex implementation sleeps, so that the loom model (tests/loom_wakeup.rs) checks this
//! very code: with a model futex there, with the kernel's futex in the ring.
//!
//! A waiter announces itself in `waiters`, then re-checks its condition, then sleeps on `epoch`
//! while it still holds the value read before its last attempt. A notifier makes its change
//! visible, then looks at `waiters` and, only if someone waits, bumps `epoch` and wakes. With
//! sequentially consistent accesses on both sides (a Dekker pairing), either the waiter sees
//! the change or the notifier sees the waiter: no wake-up is lost, and a notifier with nobody
//! waiting pays no system call.

use crate::sync::{fence, AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Wait {
    /// Woken, or the word no longer held the expected value, or a signal arrived.
    Woken,
    TimedOut,
}

/// Sleeping on a 32-bit word and waking its sleepers.
pub trait Futex {
    /// Sleeps while `*word == expected`, at most `timeout` (forever if None).
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wait;
    /// Wakes up to `n` sleepers of `word`.
    fn wake(&self, word: &AtomicU32, n: u32);
}

/// One condition's pair of words (e.g. "not empty": its epoch and its waiter count).
pub struct WaitPair<'a> {
    pub epoch: &'a AtomicU32,
    pub waiters: &'a AtomicU32,
}

impl WaitPair<'_> {
    /// Read before an attempt; pass it to `sleep_unless` if the attempt fails.
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Sleeps (at most `timeout`) unless `ready()` holds once we are announced as a waiter, or
    /// the epoch moved since `seen`.
    pub fn sleep_unless(&self, futex: &impl Futex, seen: u32, timeout: Option<Duration>, ready: impl Fn() -> bool) -> Wait {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let r = if ready() { Wait::Woken } else { futex.wait(self.epoch, seen, timeout) };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Call after making the change a waiter waits for visible.
    pub fn notify(&self, futex: &impl Futex) {
        self.notify_n(futex, 1);
    }

    /// `notify` after `n` changes at once (a batch of pops frees `n` cells): up to `n`
    /// sleepers can go on, one wake-up call for all of them.
    pub fn notify_n(&self, futex: &impl Futex, n: u32) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            futex.wake(self.epoch, n);
        }
    }

    /// Wakes every sleeper (close, abort, heal): they re-check their state.
    pub fn wake_all(&self, futex: &impl Futex) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        futex.wake(self.epoch, u32::MAX);
    }
}
