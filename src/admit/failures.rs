//! Password guessing (`--auth-fail-limit`): failed authentications per
//! source address, a token bucket per minute in each shard; a source that
//! empties it is banned for `--ban-time`, and its requests to authenticate
//! are dropped unanswered (`auth_banned`) until then.
//!
//! It reuses the rate limiter's fixed, direct-mapped table (no allocation
//! after start, one hash per failure) on a clock that runs 60 times slower,
//! so that its per-second rate reads per minute. It counts only failures:
//! a UA that answers its challenges correctly never spends a token.
//!
//! Where it is kept: a REGISTER's credentials are checked by the AOR's
//! owner shard, so a guesser aiming at one user meets one table whatever
//! shard its datagrams arrive on; an INVITE's by the shard it arrives on.
//! A guesser spreading over many users meets each owner's table: at most
//! the limit times the shards before it is banned. A ban decided by one
//! shard is mailed to every other shard, which applies it to its own table
//! before it handles its next batch: banned on one, banned on all.

use std::net::IpAddr;

use crate::admit::ratelimit::{Limits, RateLimiter, Verdict};

/// Milliseconds of real time per tick of the table's clock.
const SLOWER: u64 = 60;

/// One shard's table of failed authentications per source.
pub struct FailureLimiter {
    table: RateLimiter,
}

impl FailureLimiter {
    /// Allows `per_minute` failures a minute per source (and as many at
    /// once), then bans for `ban_ms`.
    pub fn new(per_minute: u32, ban_ms: u64) -> FailureLimiter {
        FailureLimiter {
            table: RateLimiter::new(Limits {
                per_second: per_minute.max(1),
                burst: per_minute.max(1),
                ban_ms: (ban_ms / SLOWER).max(1),
            }),
        }
    }

    /// True while `ip` is banned for failing too often.
    pub fn banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.table.is_banned(ip, now_ms / SLOWER)
    }

    /// Bans `ip` for the ban time from `now_ms`: another shard saw it
    /// fail too often (a guesser's datagrams reach every shard under
    /// `--steer call-id`, so a ban decided on one is applied on all).
    pub fn ban(&mut self, ip: IpAddr, now_ms: u64) {
        self.table.ban(ip, now_ms / SLOWER);
    }

    /// Counts one failure of `ip`; true when it has just been banned.
    pub fn failed(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        self.table.check(ip, now_ms / SLOWER) == Verdict::JustBanned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_from_elsewhere_holds_for_the_ban_time() {
        let mut f = FailureLimiter::new(3, 60_000);
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        f.ban(a, 120_000);
        assert!(f.banned(a, 120_000));
        assert!(f.banned(a, 179_000));
        assert!(!f.banned(a, 181_000));
        assert!(!f.banned("192.0.2.10".parse().unwrap(), 120_000));
    }

    #[test]
    fn the_limit_is_per_minute_and_the_ban_ends() {
        let mut f = FailureLimiter::new(3, 60_000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!f.failed(a, 0));
        assert!(!f.failed(a, 1_000));
        assert!(!f.failed(a, 2_000));
        assert!(!f.banned(a, 2_000));
        assert!(f.failed(a, 3_000), "the fourth failure within a minute");
        assert!(f.banned(a, 3_000));
        assert!(!f.banned(b, 3_000), "another source");
        assert!(f.banned(a, 62_000));
        assert!(!f.banned(a, 63_100), "the ban is over");
        // Three a minute can go on for ever: one every 20 s.
        let mut g = FailureLimiter::new(3, 60_000);
        for i in 0..30 {
            assert!(!g.failed(a, i * 20_000), "failure {i}");
        }
    }
}
