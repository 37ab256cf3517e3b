//! What is turned away before routing: sources outside `--allow` or inside
//! `--deny`, sources over `--rate-limit`, requests from known scanners
//! (`--drop-scanners`), messages over `--max-message-size`; and, for the
//! shard's digest checks, sources that failed authentication too often
//! (`--auth-fail-limit`, [`failures`]). Allocation-free: short lists and
//! fixed tables.
//!
//! [`Admission`] is a shard's whole check, in two halves around the parse:
//! what the source address alone decides comes first, so that a flood of
//! garbage from a denied or banned source costs a table lookup per
//! datagram and no parsing; what needs the message (its User-Agent, and
//! whether it is a request that can be answered) comes after.

pub mod failures;
pub mod guard;
pub mod ratelimit;

use std::net::IpAddr;

pub use guard::{Cidr, Guard};
use ratelimit::{RateLimiter, Verdict};

use crate::sip::{HeaderName, Message};

/// Why a message is turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A source outside `--allow` or inside `--deny`.
    Denied,
    /// A source banned for going over `--rate-limit`.
    RateLimited,
    /// The message that took its source over `--rate-limit`: a request
    /// that can be answered gets one 503 with Retry-After (the ban's
    /// length); later ones are [`Refusal::RateLimited`].
    JustBanned,
    /// A request with a known scanner's User-Agent.
    Scanner,
    /// Larger than `--max-message-size`: a request that can be answered
    /// gets 513 (§21.5.14).
    TooLarge,
}

/// What the source check leaves for the message check to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct SourceAdmitted {
    just_banned: bool,
}

/// One shard's admission: the policy every shard shares and this shard's
/// own per-source rate limits (each shard counts what it sees).
pub struct Admission {
    limiter: Option<RateLimiter>,
}

impl Admission {
    /// A shard's admission under `policy`.
    pub fn new(policy: &Guard) -> Admission {
        Admission {
            limiter: policy.rate.map(RateLimiter::new),
        }
    }

    /// Before parsing: may anything from `ip` be read at `now_ms`? Spends
    /// a rate-limit token.
    #[inline]
    pub fn source(
        &mut self,
        policy: &Guard,
        ip: IpAddr,
        now_ms: u64,
    ) -> Result<SourceAdmitted, Refusal> {
        if !policy.admits(ip) {
            return Err(Refusal::Denied);
        }
        let just_banned = match self.limiter.as_mut().map(|l| l.check(ip, now_ms)) {
            None | Some(Verdict::Pass) => false,
            Some(Verdict::Banned) => return Err(Refusal::RateLimited),
            Some(Verdict::JustBanned) => true,
        };
        Ok(SourceAdmitted { just_banned })
    }

    /// Bans `ip` from `now_ms` for `--ban-time`: another shard found it
    /// over the rate limit. Nothing when rate limits are off.
    pub fn ban(&mut self, ip: IpAddr, now_ms: u64) {
        if let Some(l) = &mut self.limiter {
            l.ban(ip, now_ms);
        }
    }

    /// After parsing: the rest of the checks, on the message `len` bytes
    /// long from a source [`Admission::source`] let through.
    #[inline]
    pub fn message(
        policy: &Guard,
        source: SourceAdmitted,
        msg: &Message<'_>,
        len: usize,
    ) -> Result<(), Refusal> {
        if source.just_banned {
            return Err(Refusal::JustBanned);
        }
        if policy.drop_scanners
            && msg.is_request()
            && msg
                .header(HeaderName::UserAgent)
                .is_some_and(Guard::is_scanner)
        {
            return Err(Refusal::Scanner);
        }
        if len > policy.max_message_size {
            return Err(Refusal::TooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratelimit::Limits;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
User-Agent: friendly-scanner\r\n\r\n";

    #[test]
    fn the_source_is_judged_before_the_message() {
        let policy = Guard {
            deny: vec!["192.0.2.0/24".parse().unwrap()],
            rate: Some(Limits {
                per_second: 1,
                burst: 2,
                ban_ms: 60_000,
            }),
            ..Guard::default()
        };
        let mut adm = Admission::new(&policy);
        let denied: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(adm.source(&policy, denied, 0), Err(Refusal::Denied));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let msg = Message::parse(OPTIONS).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(
                adm.source(&policy, ip, 0)
                    .and_then(|s| Admission::message(&policy, s, &msg, OPTIONS.len())),
            );
        }
        assert_eq!(
            seen,
            [
                Ok(()),
                Ok(()),
                Err(Refusal::JustBanned),
                Err(Refusal::RateLimited)
            ],
            "a burst of 2, then one 503, then silence"
        );
    }

    #[test]
    fn scanners_and_size_need_the_message() {
        let open = Guard::default();
        let msg = Message::parse(OPTIONS).unwrap();
        let ok = SourceAdmitted { just_banned: false };
        assert_eq!(Admission::message(&open, ok, &msg, OPTIONS.len()), Ok(()));
        let strict = Guard {
            drop_scanners: true,
            max_message_size: 100,
            ..Guard::default()
        };
        assert_eq!(
            Admission::message(&strict, ok, &msg, OPTIONS.len()),
            Err(Refusal::Scanner)
        );
        let big = Guard {
            max_message_size: 100,
            ..Guard::default()
        };
        assert_eq!(
            Admission::message(&big, ok, &msg, OPTIONS.len()),
            Err(Refusal::TooLarge)
        );
    }
}
