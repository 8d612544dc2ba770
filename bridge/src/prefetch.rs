//! How many units a node keeps queued in its ring beyond what its workers are running: enough
//! to cover the refill round trip at the node's observed pace, few enough that the end of the
//! run still balances across nodes (a unit queued here is a unit no other node can take).

use std::time::Duration;

pub struct Prefetch {
    workers: u32,
    /// Mean time between two results on this node (EWMA), seconds.
    interval: Option<f64>,
    /// Mean time from sending a credit to receiving units (EWMA), seconds.
    rtt: f64,
}

/// Slack added to the measured round trip (scheduling noise on a busy node).
const SLACK: f64 = 0.002;
const ALPHA: f64 = 0.1;

impl Prefetch {
    pub fn new(workers: u32, handshake_rtt: Duration) -> Prefetch {
        Prefetch { workers: workers.max(1), interval: None, rtt: handshake_rtt.as_secs_f64() }
    }

    /// `n` results arrived, `elapsed` after the previous ones.
    pub fn results(&mut self, n: usize, elapsed: Duration) {
        if n == 0 {
            return;
        }
        let x = elapsed.as_secs_f64() / n as f64;
        self.interval = Some(match self.interval {
            None => x,
            Some(m) => m + ALPHA * (x - m),
        });
    }

    /// A credit was answered after `rtt`.
    pub fn round_trip(&mut self, rtt: Duration) {
        self.rtt += ALPHA * (rtt.as_secs_f64() - self.rtt);
    }

    /// Units to keep queued in the ring.
    pub fn target(&self) -> u32 {
        let cap = (4 * self.workers).max(2);
        match self.interval {
            // Nothing measured yet: one spare unit per worker.
            None => self.workers.min(cap),
            Some(interval) => {
                let during_refill = ((self.rtt + SLACK) / interval.max(1e-6)).ceil() as u32;
                (during_refill + 1).clamp(1, cap)
            }
        }
    }

    /// Ask for more once the shortfall is worth a frame.
    pub fn credit(&self, queued: u32, requested: u32) -> u32 {
        let target = self.target();
        let have = queued + requested;
        if have >= target {
            return 0;
        }
        let short = target - have;
        if short >= (target / 4).max(1) {
            short
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tests_prefetch_more_long_tests_less_and_both_are_capped() {
        let mut fast = Prefetch::new(2, Duration::from_micros(300));
        for _ in 0..100 {
            fast.results(1, Duration::from_micros(200));
        }
        let mut slow = Prefetch::new(2, Duration::from_micros(300));
        for _ in 0..100 {
            slow.results(1, Duration::from_millis(50));
        }
        assert_eq!(fast.target(), 8, "capped at 4 x workers");
        assert_eq!(slow.target(), 2, "one test in flight covers the round trip, plus one");
        assert!(Prefetch::new(3, Duration::ZERO).target() == 3);
    }

    #[test]
    fn credit_waits_for_a_worthwhile_shortfall() {
        let p = Prefetch::new(4, Duration::ZERO);
        assert_eq!(p.credit(0, 0), 4);
        assert_eq!(p.credit(4, 0), 0);
        assert_eq!(p.credit(2, 1), 1);
    }
}
