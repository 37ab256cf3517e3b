//! An address with its transport, as `--listen` takes it:
//! `tcp:192.0.2.1:5060`, `wss:[2001:db8::1]:443`, or a bare address for
//! UDP (as before transports were named, so existing command lines keep
//! working). `--upstream` takes the same, or a DNS name in place of the
//! address ([`UpstreamAddr`]: `tls:sbc.example.net:5061`).
//!
//! # Trade-offs
//! - A name is a type of its own rather than an optional field of
//!   [`TransportAddr`]: that one is `Copy` and travels with every
//!   forwarded message (a next hop, a flow), where a name would cost an
//!   allocation and a clone and be unused (names are resolved once, at
//!   start-up). A listen address stays an IP: a name is refused there.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rustls::pki_types::DnsName;

use super::Transport;

/// An address and the transport to reach it or listen on it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportAddr {
    /// The transport.
    pub transport: Transport,
    /// The address (to bind: port 0 picks a free one).
    pub addr: SocketAddr,
}

impl TransportAddr {
    /// `addr` over UDP.
    pub fn udp(addr: SocketAddr) -> TransportAddr {
        TransportAddr {
            transport: Transport::Udp,
            addr,
        }
    }
}

/// Why a value was refused; the message names what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportAddrError(String);

impl fmt::Display for TransportAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportAddrError {}

/// `s`'s transport prefix and the rest; UDP and all of `s` without one.
/// A prefix is letters before the first ':'. An IPv6 address starts with
/// '[', an IPv4 one with a digit: neither is a prefix. With `names`, the
/// letters are a prefix only when a ':' follows later (`tls:HOST:PORT`),
/// so that `sbc.example.net:5060` is a host and its port.
fn split_transport(s: &str, names: bool) -> Result<(Transport, &str), TransportAddrError> {
    match s.split_once(':') {
        Some((prefix, rest))
            if !prefix.is_empty()
                && prefix.bytes().all(|b| b.is_ascii_alphabetic())
                && (!names || rest.contains(':')) =>
        {
            let t = Transport::from_token(prefix.as_bytes()).ok_or_else(|| {
                TransportAddrError(format!(
                    "unknown transport {prefix:?} in {s:?}: use udp:, tcp:, tls:, ws: or wss: \
                     before the address"
                ))
            })?;
            Ok((t, rest))
        }
        _ => Ok((Transport::Udp, s)),
    }
}

impl FromStr for TransportAddr {
    type Err = TransportAddrError;

    fn from_str(s: &str) -> Result<TransportAddr, TransportAddrError> {
        let (transport, addr) = split_transport(s, false)?;
        let addr = addr.parse::<SocketAddr>().map_err(|_| {
            TransportAddrError(format!(
                "{s:?} is not [TRANSPORT:]IP:PORT (IPv6 in brackets: tcp:[::1]:5060)"
            ))
        })?;
        Ok(TransportAddr { transport, addr })
    }
}

impl fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.transport.via_token().to_ascii_lowercase();
        write!(f, "{prefix}:{}", self.addr)
    }
}

/// A next hop as `--upstream` takes it: an address, as [`TransportAddr`]
/// reads it, or a DNS name and a port (`tls:sbc.example.net:5061`,
/// `sbc.example.net:5060` for UDP), which start-up resolves once and, over
/// TLS, checks the certificate against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// An IP address and port.
    Addr(TransportAddr),
    /// A DNS name and port.
    Name {
        /// The transport.
        transport: Transport,
        /// The name, as given (a valid DNS name; one trailing dot allowed).
        host: String,
        /// The port.
        port: u16,
    },
}

impl UpstreamAddr {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            UpstreamAddr::Addr(a) => a.transport,
            UpstreamAddr::Name { transport, .. } => *transport,
        }
    }
}

impl FromStr for UpstreamAddr {
    type Err = TransportAddrError;

    fn from_str(s: &str) -> Result<UpstreamAddr, TransportAddrError> {
        let (transport, rest) = split_transport(s, true)?;
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            return Ok(UpstreamAddr::Addr(TransportAddr { transport, addr }));
        }
        let bad = || {
            TransportAddrError(format!(
                "{s:?} is not [TRANSPORT:]HOST:PORT, HOST an IP address or a DNS name \
                 (IPv6 in brackets: tls:[::1]:5061)"
            ))
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        // An address that did not parse with its port (`::1:5060`
        // without brackets) is not a name either.
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return Err(bad());
        }
        DnsName::try_from(host).map_err(|_| bad())?;
        Ok(UpstreamAddr::Name {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Addr(a) => a.fmt(f),
            UpstreamAddr::Name {
                transport,
                host,
                port,
            } => {
                let prefix = transport.via_token().to_ascii_lowercase();
                write!(f, "{prefix}:{host}:{port}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> TransportAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bare_address_is_udp() {
        assert_eq!(
            spec("127.0.0.1:5060"),
            TransportAddr::udp("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(spec("[::1]:5060").transport, Transport::Udp);
        assert!(spec("[::1]:5060").addr.is_ipv6());
    }

    #[test]
    fn every_transport_has_a_prefix_in_any_case() {
        for (text, t) in [
            ("udp", Transport::Udp),
            ("tcp", Transport::Tcp),
            ("TLS", Transport::Tls),
            ("ws", Transport::Ws),
            ("Wss", Transport::Wss),
        ] {
            let s = spec(&format!("{text}:192.0.2.1:5061"));
            assert_eq!(s.transport, t, "{text}");
            assert_eq!(s.addr, "192.0.2.1:5061".parse().unwrap());
        }
        assert_eq!(spec("tls:[2001:db8::1]:5061").addr.port(), 5061);
    }

    #[test]
    fn an_unknown_prefix_or_a_bad_address_is_refused_with_the_forms_allowed() {
        let e = "sctp:192.0.2.1:5060".parse::<TransportAddr>().unwrap_err();
        assert!(e.to_string().contains("unknown transport \"sctp\""), "{e}");
        let e = "tcp:nonsense".parse::<TransportAddr>().unwrap_err();
        assert!(e.to_string().contains("[TRANSPORT:]IP:PORT"), "{e}");
        assert!("nonsense".parse::<TransportAddr>().is_err());
        assert!("tcp:".parse::<TransportAddr>().is_err());
        assert!(":5060".parse::<TransportAddr>().is_err());
        assert!("tcp:[::1]".parse::<TransportAddr>().is_err());
    }

    fn upstream(s: &str) -> UpstreamAddr {
        s.parse().unwrap()
    }

    fn name(transport: Transport, host: &str, port: u16) -> UpstreamAddr {
        UpstreamAddr::Name {
            transport,
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn an_upstream_is_an_address_as_before_or_a_name() {
        for s in [
            "127.0.0.1:5060",
            "tcp:192.0.2.1:5060",
            "tls:[2001:db8::1]:5061",
            "TLS:192.0.2.1:5061",
        ] {
            assert_eq!(upstream(s), UpstreamAddr::Addr(spec(s)), "{s}");
        }
        assert_eq!(
            upstream("tls:sbc.example.net:5061"),
            name(Transport::Tls, "sbc.example.net", 5061)
        );
        assert_eq!(
            upstream("localhost:5060"),
            name(Transport::Udp, "localhost", 5060),
            "a bare name is udp, not a transport"
        );
        assert_eq!(
            upstream("tcp:SBC-1.example.net.:5060"),
            name(Transport::Tcp, "SBC-1.example.net.", 5060)
        );
        assert_eq!(upstream("tls:localhost:5061").transport(), Transport::Tls);
        assert_eq!(upstream("[::1]:5060").transport(), Transport::Udp);
    }

    #[test]
    fn a_bad_upstream_is_refused_with_the_forms_allowed() {
        let e = "sctp:sbc.example.net:5060"
            .parse::<UpstreamAddr>()
            .unwrap_err();
        assert!(e.to_string().contains("unknown transport \"sctp\""), "{e}");
        for bad in [
            "sbc.example.net",
            "tls:sbc.example.net",
            "tls:sbc.example.net:",
            "tls:sbc.example.net:70000",
            "tls:sbc example.net:5061",
            "tls:-sbc.example.net:5061",
            "tls:192.0.2.300:5061",
            "tls:192.0.2:5061",
            "::1:5060",
            "tls:[::1:5061",
            ":5060",
            "",
        ] {
            let e = bad.parse::<UpstreamAddr>().unwrap_err();
            assert!(
                e.to_string().contains("[TRANSPORT:]HOST:PORT"),
                "{bad}: {e}"
            );
        }
        // --listen keeps requiring an address.
        let e = "tcp:localhost:5060".parse::<TransportAddr>().unwrap_err();
        assert!(e.to_string().contains("[TRANSPORT:]IP:PORT"), "{e}");
        assert!("localhost:5060".parse::<TransportAddr>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["udp:127.0.0.1:5060", "tcp:[::1]:5060", "wss:192.0.2.1:443"] {
            assert_eq!(spec(s).to_string(), s);
            assert_eq!(spec(&spec(s).to_string()), spec(s));
            assert_eq!(upstream(s).to_string(), s, "an address upstream as before");
        }
        for s in ["udp:localhost:5060", "tls:sbc.example.net:5061"] {
            assert_eq!(upstream(s).to_string(), s);
            assert_eq!(upstream(&upstream(s).to_string()), upstream(s));
        }
    }
}
