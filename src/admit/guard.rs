//! The access policy, applied before routing: sources
//! outside `--allow` or inside `--deny` (checked before parsing), messages
//! over `--max-message-size`, and, with `--drop-scanners`, requests from
//! the User-Agents of known SIP scanners. All checks are allocation-free
//! scans of short lists.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block, `192.0.2.0/24` or `2001:db8::/32`; a bare address is
/// a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A `--allow`/`--deny` value that is not an address block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: give an address or ADDRESS/PREFIX (192.0.2.0/24, 2001:db8::/32)",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr {
            net: unmap(net),
            prefix: if net.is_ipv6() && unmap(net).is_ipv4() {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
/// socket reports for IPv4 peers) as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// True when `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmap(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// User-Agent substrings of SIP scanners and war-diallers (compared without
/// regard to case). Legitimate test tools (SIPp, sipsak) are not listed.
pub const SCANNER_AGENTS: &[&[u8]] = &[
    b"friendly-scanner",
    b"sipvicious",
    b"sipcli",
    b"sip-scan",
    b"vaxsipuseragent",
    b"sundayddr",
    b"iwar",
    b"sivus",
    b"smap",
    b"pplsip",
];

/// The checks, as configured.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Only these sources, when not empty (`--allow`).
    pub allow: Vec<Cidr>,
    /// Never these sources (`--deny`; wins over `--allow`).
    pub deny: Vec<Cidr>,
    /// Larger datagrams get 513 or are dropped (`--max-message-size`).
    pub max_message_size: usize,
    /// Drop requests from [`SCANNER_AGENTS`] (`--drop-scanners`).
    pub drop_scanners: bool,
    /// Per-source rate limits (`--rate-limit`), if on.
    pub rate: Option<crate::admit::ratelimit::Limits>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            allow: Vec::new(),
            deny: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            drop_scanners: false,
            rate: None,
        }
    }
}

/// UDP messages larger than this are refused by default: RFC 3261 §18.1.1
/// moves requests within 200 bytes of the path MTU to TCP, so a UDP SIP
/// message of more than 8 KiB is almost always an attack or a mistake.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8192;

impl Guard {
    /// True when a datagram from `ip` may be looked at (deny wins; an empty
    /// allow list allows all).
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// True when this User-Agent value is a known scanner's.
    pub fn is_scanner(user_agent: &[u8]) -> bool {
        SCANNER_AGENTS.iter().any(|s| {
            user_agent
                .windows(s.len())
                .any(|w| w.eq_ignore_ascii_case(s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(c.contains(ip("192.0.2.200")));
        assert!(!c.contains(ip("192.0.3.1")));
        assert!(c.contains(ip("::ffff:192.0.2.9")), "mapped v4");
        let one: Cidr = "198.51.100.7".parse().unwrap();
        assert!(one.contains(ip("198.51.100.7")) && !one.contains(ip("198.51.100.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.0.2.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let mapped: Cidr = "::ffff:192.0.2.0/120".parse().unwrap();
        assert!(mapped.contains(ip("192.0.2.77")));
        for bad in [
            "192.0.2.0/33",
            "x",
            "10.0.0.0/",
            "2001:db8::/129",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let mut g = Guard::default();
        assert!(g.admits(ip("203.0.113.9")));
        g.allow = vec!["192.0.2.0/24".parse().unwrap()];
        g.deny = vec!["192.0.2.66".parse().unwrap()];
        assert!(g.admits(ip("192.0.2.1")));
        assert!(!g.admits(ip("192.0.2.66")));
        assert!(!g.admits(ip("203.0.113.9")));
    }

    #[test]
    fn scanners() {
        assert!(Guard::is_scanner(b"friendly-scanner"));
        assert!(Guard::is_scanner(b"SIPVicious 0.3"));
        assert!(!Guard::is_scanner(b"SIPp/v3.7"));
        assert!(!Guard::is_scanner(b""));
    }
}
