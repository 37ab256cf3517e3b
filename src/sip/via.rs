//! The Via header (RFC 3261 §20.42, §18.2.1) with the RFC 3581 `rport`
//! parameter: what a stateless proxy reads to detect loops, to build its own
//! branch and to send responses back.

use super::error::ParseError;
use super::header::HeaderName;
use super::parse::{memoized, HeaderValue, Message};
use super::scan::{
    find_byte, is_lws, is_token, parse_u16, parse_u32, trim, trim_start as trim_lws_start,
    ParamIter,
};
use super::uri::Host;

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &[u8] = b"z9hG4bK";

/// The RFC 3581 `rport` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    /// No `rport` parameter.
    Absent,
    /// `rport` without a value: the client asks to be answered at the
    /// source port.
    Requested,
    /// `rport=N`, as a proxy or server filled it in.
    Value(u16),
}

/// One Via value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name and version, normally `SIP` and `2.0`.
    pub protocol: (&'a [u8], &'a [u8]),
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`... as written.
    pub transport: &'a [u8],
    /// sent-by host, typed.
    pub host: Host<'a>,
    /// sent-by host as written.
    pub host_raw: &'a [u8],
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// All parameters, starting at the first `;`, or empty.
    pub params: &'a [u8],
    /// `branch`, if present.
    pub branch: Option<&'a [u8]>,
    /// `received`, if present.
    pub received: Option<&'a [u8]>,
    /// `rport` (RFC 3581).
    pub rport: Rport,
    /// `maddr`, if present.
    pub maddr: Option<&'a [u8]>,
    /// `ttl`, if present (0..=255).
    pub ttl: Option<u8>,
}

impl<'a> Via<'a> {
    /// Parses one via-parm:
    /// `sent-protocol LWS sent-by *( SEMI via-params )`, where the slashes of
    /// sent-protocol may have white space around them.
    pub fn parse(s: &'a [u8]) -> Result<Via<'a>, ParseError> {
        let bad = ParseError::Invalid(HeaderName::Via);
        let s = trim(s);
        // Nearly every Via starts "SIP/2.0/": skip the general split then.
        let (protocol, rest) = if s.len() > 8 && s[..8].eq_ignore_ascii_case(b"SIP/2.0/") {
            ((&s[..3], &s[4..7]), &s[8..])
        } else {
            let (name, rest) = split_slash(s).ok_or(bad)?;
            let (version, rest) = split_slash(rest).ok_or(bad)?;
            if !is_token(name) || !is_token(version) {
                return Err(bad);
            }
            ((name, version), rest)
        };
        let rest = trim_lws_start(rest);
        let t_end = rest.iter().position(|&b| is_lws(b)).ok_or(bad)?;
        let transport = &rest[..t_end];
        if !is_token(transport) {
            return Err(bad);
        }
        let rest = trim_lws_start(&rest[t_end..]);
        let sb_end = rest
            .iter()
            .position(|&b| b == b';' || b == b'(')
            .unwrap_or(rest.len());
        let (host, host_raw, port) = parse_sent_by(trim(&rest[..sb_end])).ok_or(bad)?;
        let params = &rest[sb_end..];
        if params.first() == Some(&b'(') {
            return Err(bad);
        }
        let mut via = Via {
            protocol,
            transport,
            host,
            host_raw,
            port,
            params,
            branch: None,
            received: None,
            rport: Rport::Absent,
            maddr: None,
            ttl: None,
        };
        for p in ParamIter::new(params) {
            let n = p.name;
            if n.eq_ignore_ascii_case(b"branch") {
                via.branch = Some(p.value.filter(|v| is_token(v)).ok_or(bad)?);
            } else if n.eq_ignore_ascii_case(b"received") {
                via.received = Some(p.value.filter(|v| !v.is_empty()).ok_or(bad)?);
            } else if n.eq_ignore_ascii_case(b"rport") {
                via.rport = match p.value {
                    None => Rport::Requested,
                    Some(v) => Rport::Value(
                        parse_u32(v)
                            .and_then(|n| u16::try_from(n).ok())
                            .ok_or(bad)?,
                    ),
                };
            } else if n.eq_ignore_ascii_case(b"maddr") {
                via.maddr = Some(p.value.filter(|v| !v.is_empty()).ok_or(bad)?);
            } else if n.eq_ignore_ascii_case(b"ttl") {
                let ttl = p.value.and_then(parse_u32).ok_or(bad)?;
                via.ttl = Some(u8::try_from(ttl).map_err(|_| bad)?);
            } else if !is_token(n) {
                return Err(bad);
            }
        }
        Ok(via)
    }

    /// True when sent-protocol is `SIP/2.0/<transport>` (§20.42, §25.1:
    /// protocol-name `SIP`, case-insensitive, and version `2.0`). The
    /// grammar lets any token stand there, but a Via of another protocol
    /// or version is not one a SIP/2.0 element can answer along.
    pub fn is_sip_2_0(&self) -> bool {
        self.protocol.0.eq_ignore_ascii_case(b"SIP") && self.protocol.1 == b"2.0"
    }

    /// True when the branch starts with the RFC 3261 magic cookie, so it is
    /// unique per transaction and a proxy may hash it alone (§16.11).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| {
            b.len() >= BRANCH_COOKIE.len() && b[..BRANCH_COOKIE.len()] == *BRANCH_COOKIE
        })
    }

    /// Iterates every parameter, the typed ones included.
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.params)
    }
}

/// sent-by = host [ COLON port ], where COLON = SWS ":" SWS (§25.1).
fn parse_sent_by(s: &[u8]) -> Option<(Host<'_>, &[u8], Option<u16>)> {
    let search_from = if s.first() == Some(&b'[') {
        find_byte(s, b']')?
    } else {
        0
    };
    let (host_raw, port) = match find_byte(&s[search_from..], b':') {
        Some(c) => {
            let c = search_from + c;
            (trim(&s[..c]), Some(parse_u16(trim(&s[c + 1..]))?))
        }
        None => (s, None),
    };
    Some((Host::parse(host_raw).ok()?, host_raw, port))
}

/// Splits `a SWS "/" SWS rest` into `a` and `rest`.
fn split_slash(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let slash = find_byte(s, b'/')?;
    Some((trim(&s[..slash]), trim_lws_start(&s[slash + 1..])))
}

impl<'a> Message<'a> {
    /// The top Via value (the first value of the first Via line), parsed
    /// once per message and then read from the message's memo.
    pub fn via(&self) -> Result<Via<'a>, ParseError> {
        memoized(&self.top_via, || {
            self.values(HeaderName::Via)
                .next()
                .ok_or(ParseError::Missing(HeaderName::Via))
                .and_then(|v| Via::parse(v.text))
        })
    }

    /// The top Via value with its place in the datagram.
    pub fn top_via_value(&self) -> Option<HeaderValue<'a>> {
        self.values(HeaderName::Via).next()
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        // The top one from the memo that `via` keeps.
        self.values(HeaderName::Via).enumerate().map(|(i, v)| {
            if i == 0 {
                self.via()
            } else {
                Via::parse(v.text)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn via(s: &str) -> Via<'_> {
        Via::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn typical() {
        let v = via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds");
        assert_eq!(v.protocol, (&b"SIP"[..], &b"2.0"[..]));
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::Name(b"pc33.atlanta.com"));
        assert_eq!(v.port, None);
        assert_eq!(v.branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport, Rport::Absent);
    }

    #[test]
    fn spaces_around_slashes_and_params() {
        let v = via("SIP / 2.0 / UDP 192.0.2.1:5060 ; branch = z9hG4bKabc ; rport");
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some(&b"z9hG4bKabc"[..]));
        assert_eq!(v.rport, Rport::Requested);
    }

    #[test]
    fn received_rport_maddr_ttl() {
        let v = via("SIP/2.0/UDP [2001:db8::9]:5070;received=203.0.113.7;rport=40000;maddr=224.2.0.1;ttl=16;branch=z9hG4bK1;x-other=1");
        assert_eq!(v.host, Host::V6("2001:db8::9".parse().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received, Some(&b"203.0.113.7"[..]));
        assert_eq!(v.rport, Rport::Value(40000));
        assert_eq!(v.maddr, Some(&b"224.2.0.1"[..]));
        assert_eq!(v.ttl, Some(16));
        assert!(v.params().any(|p| p.name == b"x-other"));
    }

    #[test]
    fn white_space_around_the_port_colon() {
        let v = via("SIP/2.0/UDP host.example.com : 5060;branch=z9hG4bK1");
        assert_eq!(v.host_raw, b"host.example.com");
        assert_eq!(v.port, Some(5060));
        let v = via("SIP/2.0/UDP [::1] :5070");
        assert_eq!(v.host, Host::V6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(v.port, Some(5070));
    }

    #[test]
    fn rfc2543_branch_and_no_branch() {
        let v = via("SIP/2.0/UDP host.example.com;branch=1");
        assert!(!v.has_rfc3261_branch());
        let v = via("SIP/2.0/TCP host.example.com");
        assert_eq!(v.branch, None);
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn sent_protocol_other_than_sip_2_0() {
        assert!(via("SIP/2.0/UDP h").is_sip_2_0());
        assert!(via("sip/2.0/tcp h").is_sip_2_0());
        assert!(via("SIP / 2.0 / WS h").is_sip_2_0());
        for other in [
            "SIP/3.0/UDP h",
            "FOO/2.0/UDP h",
            "SIP/2.00/UDP h",
            "SIPS/2.0/TLS h",
        ] {
            assert!(!via(other).is_sip_2_0(), "{other}");
        }
    }

    #[test]
    fn invalid_vias() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;ttl=256",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;rport=70000",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host;branch=a\"b\"",
            "SIP/2.0/UDP host;received",
            "SIP/2.0/UDP ho st",
            "SIP/2.0/U:DP host",
        ] {
            assert!(Via::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
