//! Per-source rate limits against floods: a token bucket per source
//! IP address in each shard, and a ban for a source that empties its
//! bucket: it gets one 503 (when what tipped it over is a request that can
//! be answered) and then is dropped unread for `--ban-time`.
//!
//! The table is fixed in size and direct-mapped by a hash of the address:
//! nothing is allocated after start, and the cost per datagram is one hash
//! and one cache line. Two sources that share a slot evict each other; a
//! newcomer starts with a full bucket. So a flood from many spoofed sources
//! cannot grow memory, but can push a banned source out of the table early
//! (it is banned again as soon as it floods again).

use std::net::IpAddr;

use crate::hash::Hash64;

/// Slots per shard: 65,536 sources at 40 bytes each, 2.5 MiB.
pub const SLOTS: usize = 1 << 16;

/// The limits (`--rate-limit`, `--rate-burst`, `--ban-time`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Datagrams per second a source may send on average.
    pub per_second: u32,
    /// How many it may send at once.
    pub burst: u32,
    /// How long a source that went over is dropped, in milliseconds.
    pub ban_ms: u64,
}

impl Limits {
    /// Each shard's share when a source's datagrams are spread over
    /// `shards` shards (`--steer call-id` or `shared`): the rate and burst
    /// divided, rounded up, so that a source flooding with many Call-IDs
    /// gets about the limit in total rather than the limit on every shard.
    /// A flood of one Call-ID lands on one shard and gets that share only.
    pub fn spread_over(self, shards: usize) -> Limits {
        let n = shards.max(1) as u32;
        Limits {
            per_second: self.per_second.div_ceil(n),
            burst: self.burst.div_ceil(n),
            ban_ms: self.ban_ms,
        }
    }
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within its limit.
    Pass,
    /// It just went over: answer 503 if it is a request, then drop.
    JustBanned,
    /// Banned: drop unread.
    Banned,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The source, as a 128-bit number (IPv4 mapped) in two halves (so the
    /// slot needs 8-byte alignment, not 16); 0: empty.
    ip: [u64; 2],
    /// Tokens, in thousandths, so that refills need no floating point.
    milli_tokens: u64,
    /// When the bucket was last refilled, ms.
    refilled_ms: u64,
    /// Dropped until then, ms; 0: not banned.
    banned_until_ms: u64,
}

/// One shard's table.
pub struct RateLimiter {
    limits: Limits,
    slots: Box<[Slot]>,
}

fn key(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    // Never 0 (the empty marker): `::` cannot send anyway; map it to 1.
    let n = u128::from(v6).max(1);
    [(n >> 64) as u64, n as u64]
}

impl RateLimiter {
    /// A table enforcing `limits`.
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        }
    }

    fn slot_of(k: [u64; 2]) -> usize {
        (Hash64::default()
            .add(&k[0].to_le_bytes())
            .add(&k[1].to_le_bytes())
            .finish() as usize)
            & (SLOTS - 1)
    }

    /// True while `ip` is banned, without counting anything.
    pub fn is_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        let k = key(ip);
        let s = &self.slots[Self::slot_of(k)];
        s.ip == k && now_ms < s.banned_until_ms
    }

    /// Bans `ip` from `now_ms` for the ban time, as if it had gone over
    /// here: another shard decided it.
    pub fn ban(&mut self, ip: IpAddr, now_ms: u64) {
        let k = key(ip);
        self.slots[Self::slot_of(k)] = Slot {
            ip: k,
            milli_tokens: 0,
            refilled_ms: now_ms,
            banned_until_ms: now_ms + self.limits.ban_ms.max(1),
        };
    }

    /// Counts one datagram from `ip` at `now_ms` (a monotonic clock).
    pub fn check(&mut self, ip: IpAddr, now_ms: u64) -> Verdict {
        let k = key(ip);
        let i = Self::slot_of(k);
        let l = self.limits;
        let full = u64::from(l.burst.max(1)) * 1000;
        let s = &mut self.slots[i];
        if s.ip != k {
            *s = Slot {
                ip: k,
                milli_tokens: full,
                refilled_ms: now_ms,
                banned_until_ms: 0,
            };
        }
        if s.banned_until_ms != 0 {
            if now_ms < s.banned_until_ms {
                return Verdict::Banned;
            }
            // The ban is over: start again with a full bucket.
            s.banned_until_ms = 0;
            s.milli_tokens = full;
            s.refilled_ms = now_ms;
        }
        // Refill: per_second tokens a second = per_second thousandths a ms.
        let elapsed = now_ms.saturating_sub(s.refilled_ms);
        s.milli_tokens = s
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(l.per_second)))
            .min(full);
        s.refilled_ms = now_ms;
        if s.milli_tokens >= 1000 {
            s.milli_tokens -= 1000;
            Verdict::Pass
        } else {
            s.banned_until_ms = now_ms.saturating_add(l.ban_ms).max(1);
            Verdict::JustBanned
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spreading_divides_rate_and_burst_rounding_up() {
        let l = Limits {
            per_second: 20,
            burst: 11,
            ban_ms: 5,
        };
        let s = l.spread_over(4);
        assert_eq!((s.per_second, s.burst, s.ban_ms), (5, 3, 5));
        assert_eq!(l.spread_over(1), l);
        assert_eq!(l.spread_over(0), l);
    }

    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(Limits {
            per_second: 10,
            burst: 5,
            ban_ms: 1000,
        })
    }

    #[test]
    fn burst_then_ban_then_release() {
        let mut r = limiter();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(r.check(a, 0), Verdict::Pass);
        }
        assert_eq!(r.check(a, 0), Verdict::JustBanned);
        assert_eq!(r.check(a, 500), Verdict::Banned);
        assert_eq!(r.check(a, 999), Verdict::Banned);
        assert_eq!(r.check(a, 1000), Verdict::Pass, "ban over, full bucket");
    }

    #[test]
    fn refills_at_the_rate_and_sources_are_apart() {
        let mut r = limiter();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        // 10/s: one every 100 ms is sustainable forever.
        for t in 0..100 {
            assert_eq!(r.check(a, t * 100), Verdict::Pass, "t={t}");
        }
        for _ in 0..6 {
            r.check(b, 10_000);
        }
        assert_eq!(r.check(b, 10_000), Verdict::Banned);
        assert_eq!(r.check(a, 10_000), Verdict::Pass, "a is not b");
    }

    #[test]
    fn mapped_and_plain_v4_are_one_source() {
        let mut r = limiter();
        for _ in 0..5 {
            r.check("192.0.2.9".parse().unwrap(), 0);
        }
        assert_eq!(
            r.check("::ffff:192.0.2.9".parse().unwrap(), 0),
            Verdict::JustBanned
        );
    }
}
