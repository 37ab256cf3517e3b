//! An address with its transport, as `--listen` and `--upstream` take
//! it: `tcp:192.0.2.1:5060`, `wss:[2001:db8::1]:443`, or a bare address
//! for UDP (as before transports were named, so existing command lines
//! keep working).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

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

impl FromStr for TransportAddr {
    type Err = TransportAddrError;

    fn from_str(s: &str) -> Result<TransportAddr, TransportAddrError> {
        // A prefix is letters before the first ':'. An IPv6 address starts
        // with '[', an IPv4 one with a digit: neither is a prefix.
        let (transport, addr) = match s.split_once(':') {
            Some((prefix, rest))
                if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphabetic()) =>
            {
                let t = Transport::from_token(prefix.as_bytes()).ok_or_else(|| {
                    TransportAddrError(format!(
                        "unknown transport {prefix:?} in {s:?}: use udp:, tcp:, tls:, ws: or wss: \
                         before the address"
                    ))
                })?;
                (t, rest)
            }
            _ => (Transport::Udp, s),
        };
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

    #[test]
    fn display_round_trips() {
        for s in ["udp:127.0.0.1:5060", "tcp:[::1]:5060", "wss:192.0.2.1:443"] {
            assert_eq!(spec(s).to_string(), s);
            assert_eq!(spec(&spec(s).to_string()), spec(s));
        }
    }
}
