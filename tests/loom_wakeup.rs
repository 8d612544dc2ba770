//! Model check of the sleep/wake pairing (`mproc_core::wakeup`, the code the ring runs) with a
//! model futex: in every interleaving of a waiter and notifiers, no wake-up is lost (loom
//! reports a deadlock if a waiter could sleep through the change it waits for). Run with:
//!   RUSTFLAGS="--cfg loom" cargo test --release --test loom_wakeup
#![cfg(loom)]

mod loom_common;

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom_common::model;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use mproc_core::wakeup::{Futex, Wait, WaitPair};
use std::time::Duration;

/// A futex: the value check and the sleep are atomic with respect to `wake` (the kernel's hash
/// bucket lock; a mutex here).
#[derive(Default)]
struct ModelFutex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Futex for ModelFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Wait {
        let g = self.lock.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Wait::Woken;
        }
        drop(self.cv.wait(g).unwrap());
        Wait::Woken
    }
    /// Wakes one sleeper for n == 1 (as the kernel would), every sleeper otherwise (the
    /// models have at most two, so that is "up to n").
    fn wake(&self, _word: &AtomicU32, n: u32) {
        let _g = self.lock.lock().unwrap();
        if n == 1 {
            self.cv.notify_one();
        } else {
            self.cv.notify_all();
        }
    }
}

#[derive(Default)]
struct Cond {
    epoch: AtomicU32,
    waiters: AtomicU32,
    futex: ModelFutex,
}

impl Cond {
    fn pair(&self) -> WaitPair<'_> {
        WaitPair { epoch: &self.epoch, waiters: &self.waiters }
    }
}


/// The ring's blocking pop: read the epoch, try, sleep unless ready; the producer: make the
/// item visible, notify.
#[test]
fn a_waiter_never_sleeps_through_a_notify() {
    model(|| {
        let c = Arc::new(Cond::default());
        let item = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (c, item) = (c.clone(), item.clone());
            thread::spawn(move || loop {
                let seen = c.pair().epoch();
                if item.load(Ordering::SeqCst) {
                    return;
                }
                c.pair().sleep_unless(&c.futex, seen, None, || item.load(Ordering::SeqCst));
            })
        };
        item.store(true, Ordering::SeqCst);
        c.pair().notify(&c.futex);
        consumer.join().unwrap();
    });
}

/// Two waiters and one wake-all (close): both wake.
#[test]
fn wake_all_wakes_every_waiter() {
    model(|| {
        let c = Arc::new(Cond::default());
        let closed = Arc::new(AtomicBool::new(false));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (c, closed) = (c.clone(), closed.clone());
                thread::spawn(move || loop {
                    let seen = c.pair().epoch();
                    if closed.load(Ordering::SeqCst) {
                        return;
                    }
                    c.pair().sleep_unless(&c.futex, seen, None, || closed.load(Ordering::SeqCst));
                })
            })
            .collect();
        closed.store(true, Ordering::SeqCst);
        c.pair().wake_all(&c.futex);
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// A batch of pops frees two cells at once and notifies once for both (`notify_n`, the ring's
/// `try_pop_batch`): two pushers waiting for room both get one (a notify that woke only one
/// would leave the other asleep: loom reports the deadlock).
#[test]
fn a_batch_notify_wakes_as_many_waiters_as_it_freed() {
    model(|| {
        let c = Arc::new(Cond::default());
        let free = Arc::new(AtomicU32::new(0));
        let pushers: Vec<_> = (0..2)
            .map(|_| {
                let (c, free) = (c.clone(), free.clone());
                thread::spawn(move || loop {
                    let seen = c.pair().epoch();
                    let f = free.load(Ordering::SeqCst);
                    if f > 0 && free.compare_exchange(f, f - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        return;
                    }
                    c.pair().sleep_unless(&c.futex, seen, None, || free.load(Ordering::SeqCst) > 0);
                })
            })
            .collect();
        free.store(2, Ordering::SeqCst);
        c.pair().notify_n(&c.futex, 2);
        for p in pushers {
            p.join().unwrap();
        }
    });
}
