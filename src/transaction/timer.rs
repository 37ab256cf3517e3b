//! The transaction timers of RFC 3261 §17 (table 4 of Appendix A) and
//! RFC 6026's L and M, with the durations T1, T2 and T4 give them. A
//! timer that is zero over a reliable transport (D, I, J, K) ends its
//! transaction at once instead: nothing is armed for it.

/// One of the transaction timers, named as the RFC names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Timer {
    /// INVITE client: retransmit the request (UDP only), doubling from T1.
    A,
    /// INVITE client: give up waiting for any response, 64*T1.
    B,
    /// INVITE client: absorb retransmitted non-2xx finals, 32 s over UDP.
    D,
    /// Non-INVITE client: retransmit the request (UDP only), doubling
    /// from T1 up to T2.
    E,
    /// Non-INVITE client: give up waiting for a final response, 64*T1.
    F,
    /// INVITE server: retransmit the non-2xx final (UDP only), doubling
    /// from T1 up to T2.
    G,
    /// INVITE server: give up waiting for the ACK, 64*T1.
    H,
    /// INVITE server: absorb retransmitted ACKs, T4 over UDP.
    I,
    /// Non-INVITE server: absorb retransmitted requests, 64*T1 over UDP.
    J,
    /// Non-INVITE client: absorb retransmitted responses, T4 over UDP.
    K,
    /// INVITE server after a 2xx (RFC 6026 §8.7): absorb retransmitted
    /// INVITEs, 64*T1.
    L,
    /// INVITE client after a 2xx (RFC 6026 §8.4): pass up retransmitted
    /// and forked 2xx, 64*T1.
    M,
}

impl Timer {
    /// The bit of this timer in a [`TimerSet`].
    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// A set of timers (a bit each): the ones a step stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSet(u16);

impl TimerSet {
    /// No timer.
    pub const EMPTY: TimerSet = TimerSet(0);

    /// This set with `t` in it.
    #[must_use]
    pub const fn with(self, t: Timer) -> TimerSet {
        TimerSet(self.0 | t.bit())
    }

    /// True when `t` is in the set.
    pub const fn contains(self, t: Timer) -> bool {
        self.0 & t.bit() != 0
    }

    /// True when the set holds no timer.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// T1, T2 and T4 (§17.1.1.1, `--t1`/`--t2`/`--t4`), in milliseconds; every
/// other duration is derived from them as §17 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durations {
    /// The round-trip estimate: the first retransmission interval.
    pub t1: u64,
    /// The longest retransmission interval of non-INVITE requests and of
    /// INVITE responses.
    pub t2: u64,
    /// How long a message may stay in the network.
    pub t4: u64,
}

impl Default for Durations {
    /// The RFC's values: 500 ms, 4 s, 5 s.
    fn default() -> Self {
        Durations {
            t1: 500,
            t2: 4_000,
            t4: 5_000,
        }
    }
}

impl Durations {
    /// 64*T1: how long a transaction waits for an answer (B, F, H, J, L,
    /// M; 32 s with the default T1).
    pub const fn timeout(&self) -> u64 {
        64 * self.t1
    }

    /// The first wait of `t` over a transport that is `reliable` or not;
    /// 0 for one that then does not run (A, E and G are retransmissions,
    /// D, I, J and K absorb retransmissions, neither of which happens over
    /// a reliable transport).
    pub const fn first(&self, t: Timer, reliable: bool) -> u64 {
        match (t, reliable) {
            (Timer::A | Timer::E | Timer::G, true) => 0,
            (Timer::D | Timer::I | Timer::J | Timer::K, true) => 0,
            (Timer::A | Timer::E | Timer::G, false) => self.t1,
            // §17.1.1.2: "at least 32 seconds for unreliable transports".
            (Timer::D, false) => {
                if self.timeout() > 32_000 {
                    self.timeout()
                } else {
                    32_000
                }
            }
            (Timer::I | Timer::K, false) => self.t4,
            (Timer::B | Timer::F | Timer::H | Timer::J | Timer::L | Timer::M, _) => self.timeout(),
        }
    }

    /// The retransmission interval after `interval`: doubled, and for
    /// every timer but A capped at T2 (§17.1.1.2: Timer A doubles without
    /// a cap; §17.1.2.2 and §17.2.1 cap E and G).
    pub fn next_interval(&self, t: Timer, interval: u64) -> u64 {
        let doubled = interval.saturating_mul(2);
        match t {
            Timer::A => doubled,
            _ => doubled.min(self.t2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_rfcs() {
        let d = Durations::default();
        assert_eq!((d.t1, d.t2, d.t4), (500, 4_000, 5_000));
        assert_eq!(d.timeout(), 32_000, "64*T1");
        for t in [Timer::B, Timer::F, Timer::H, Timer::J, Timer::L, Timer::M] {
            assert_eq!(d.first(t, false), 32_000, "{t:?}");
        }
        assert_eq!(d.first(Timer::A, false), 500);
        assert_eq!(d.first(Timer::D, false), 32_000);
        assert_eq!(d.first(Timer::I, false), 5_000);
        assert_eq!(d.first(Timer::K, false), 5_000);
    }

    #[test]
    fn reliable_transports_neither_retransmit_nor_linger() {
        let d = Durations::default();
        for t in [
            Timer::A,
            Timer::E,
            Timer::G,
            Timer::D,
            Timer::I,
            Timer::J,
            Timer::K,
        ] {
            assert_eq!(d.first(t, true), 0, "{t:?}");
        }
        // The transaction timeouts run whatever the transport.
        for t in [Timer::B, Timer::F, Timer::H, Timer::L, Timer::M] {
            assert_eq!(d.first(t, true), 32_000, "{t:?}");
        }
    }

    #[test]
    fn timer_d_is_at_least_32_s_and_follows_a_longer_t1() {
        let d = Durations {
            t1: 100,
            ..Durations::default()
        };
        assert_eq!(d.first(Timer::D, false), 32_000);
        let d = Durations {
            t1: 1_000,
            ..Durations::default()
        };
        assert_eq!(d.first(Timer::D, false), 64_000);
    }

    #[test]
    fn a_doubles_without_cap_e_and_g_stop_at_t2() {
        let d = Durations::default();
        assert_eq!(d.next_interval(Timer::A, 4_000), 8_000);
        assert_eq!(d.next_interval(Timer::E, 500), 1_000);
        assert_eq!(d.next_interval(Timer::E, 4_000), 4_000);
        assert_eq!(d.next_interval(Timer::G, 2_000), 4_000);
        assert_eq!(d.next_interval(Timer::G, 4_000), 4_000);
    }

    #[test]
    fn a_timer_set_holds_what_was_put_in() {
        let s = TimerSet::EMPTY.with(Timer::A).with(Timer::M);
        assert!(s.contains(Timer::A) && s.contains(Timer::M));
        assert!(!s.contains(Timer::B));
        assert!(TimerSet::EMPTY.is_empty() && !s.is_empty());
    }
}
