//! Which `--upstream`s answer their OPTIONS probes (`--probe-interval`):
//! written by the prober thread alone, read by every shard when it picks
//! an upstream, one relaxed atomic load per candidate, no lock. An
//! upstream that missed `--probe-threshold` probes in a row is out of the
//! rotation until it answers again; without probing every upstream stays
//! in.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// One upstream's state.
#[derive(Debug)]
struct State {
    up: AtomicBool,
    /// Probes missed in a row.
    missed: AtomicU32,
    /// Every probe missed, for the metric.
    missed_total: AtomicU64,
    /// The last answered probe's round trip, in microseconds (0: none).
    rtt_us: AtomicU64,
}

/// What a probe's result changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: it stays as it was.
    None,
    /// It had missed its threshold and answers again: back in.
    Up,
    /// It just missed its threshold: out of the rotation.
    Down,
}

/// The upstreams' states, indexed like `ProxyConfig::upstreams`.
#[derive(Debug, Default)]
pub struct Health {
    states: Box<[State]>,
}

impl Health {
    /// `n` upstreams, all in the rotation.
    pub fn new(n: usize) -> Health {
        Health {
            states: (0..n)
                .map(|_| State {
                    up: AtomicBool::new(true),
                    missed: AtomicU32::new(0),
                    missed_total: AtomicU64::new(0),
                    rtt_us: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// True while upstream `i` is in the rotation (an index out of range
    /// is: there is nothing to say against it).
    #[inline]
    pub fn is_up(&self, i: usize) -> bool {
        self.states
            .get(i)
            .is_none_or(|s| s.up.load(Ordering::Relaxed))
    }

    /// Upstream `i` answered a probe after `rtt_us` microseconds.
    pub fn answered(&self, i: usize, rtt_us: u64) -> Change {
        let Some(s) = self.states.get(i) else {
            return Change::None;
        };
        s.missed.store(0, Ordering::Relaxed);
        s.rtt_us.store(rtt_us.max(1), Ordering::Relaxed);
        if s.up.swap(true, Ordering::Relaxed) {
            Change::None
        } else {
            Change::Up
        }
    }

    /// Upstream `i` did not answer a probe; at `threshold` misses in a row
    /// it leaves the rotation.
    pub fn missed(&self, i: usize, threshold: u32) -> Change {
        let Some(s) = self.states.get(i) else {
            return Change::None;
        };
        s.missed_total.fetch_add(1, Ordering::Relaxed);
        let missed = s.missed.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if missed >= threshold && s.up.swap(false, Ordering::Relaxed) {
            Change::Down
        } else {
            Change::None
        }
    }

    /// For the metrics, per upstream: in the rotation, probes missed in
    /// all, the last answered probe's round trip in microseconds (0:
    /// none yet).
    pub fn snapshot(&self, i: usize) -> Option<(bool, u64, u64)> {
        let s = self.states.get(i)?;
        Some((
            s.up.load(Ordering::Relaxed),
            s.missed_total.load(Ordering::Relaxed),
            s.rtt_us.load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_leaves_at_the_threshold_and_returns_on_one_answer() {
        let h = Health::new(2);
        assert!(h.is_up(0) && h.is_up(1));
        assert_eq!(h.missed(0, 3), Change::None);
        assert_eq!(h.missed(0, 3), Change::None);
        assert!(h.is_up(0), "two misses of three");
        assert_eq!(h.missed(0, 3), Change::Down);
        assert!(!h.is_up(0) && h.is_up(1));
        assert_eq!(h.missed(0, 3), Change::None, "down already");
        assert_eq!(h.answered(0, 800), Change::Up);
        assert!(h.is_up(0));
        assert_eq!(h.snapshot(0), Some((true, 4, 800)));
    }

    #[test]
    fn an_answer_resets_the_run_of_misses() {
        let h = Health::new(1);
        h.missed(0, 2);
        assert_eq!(h.answered(0, 10), Change::None);
        assert_eq!(h.missed(0, 2), Change::None, "the run starts again");
        assert_eq!(h.missed(0, 2), Change::Down);
    }

    #[test]
    fn without_states_everything_is_up() {
        let h = Health::default();
        assert!(h.is_up(0));
        assert_eq!(h.missed(0, 1), Change::None);
    }
}
