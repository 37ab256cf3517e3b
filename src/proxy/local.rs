//! Who we are: the addresses that name this proxy, the domains it is
//! registrar for, the digest realm, and the policy it routes by.

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use super::conn_param::ConnKey;
use super::health::Health;
use crate::sip::{Host, SipUri};
use crate::transport::TransportAddr;

/// What the proxy needs to know about itself and its neighbours.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address in our Via sent-by and Record-Route (`--advertise`,
    /// default the first listen address).
    pub advertise: SocketAddr,
    /// Per IP family (IPv4, IPv6), the address our Via and Record-Route
    /// name for a request that leaves over UDP to that family from the
    /// other (a dual-stack edge); None where no concrete address is known
    /// (a wildcard listen and no `--advertise` of that family).
    pub advertise_of: [Option<SocketAddr>; 2],
    /// Every address that means "this proxy" (listen addresses and the
    /// advertised one), for loop detection and Route processing.
    pub local: Vec<SocketAddr>,
    /// Where requests go when nothing else names a next hop (`--upstream`).
    pub upstreams: Vec<TransportAddr>,
    /// Add `Record-Route: <sip:advertise;lr>` to requests that can create
    /// a dialog (`--record-route`).
    pub record_route: bool,
    /// Domains we are registrar for (`--domain`), lower case. Empty: no
    /// registrar, and REGISTER is forwarded like anything else.
    pub domains: Vec<Box<[u8]>>,
    /// Answer requests for local users with 302 (`--mode redirect`).
    pub redirect: bool,
    /// Send to a binding's registered source address (`--nat`).
    pub nat: bool,
    /// No `--advertise` and a wildcard listen address: our Via and
    /// Record-Route name the address each request arrived at (from
    /// `IP_PKTINFO`), and that address is us, so a host with a public
    /// address works without `--advertise`.
    pub advertise_arrival: bool,
    /// The key of the `cid` our Via carries for a request that came on a
    /// connection (see `conn_param.rs`).
    pub conn_key: ConnKey,
    /// Which upstreams answer their probes (`--probe-interval`), by index
    /// in `upstreams`; all of them without probing.
    pub health: Arc<Health>,
}

impl ProxyConfig {
    /// A proxy at `addr` with no upstream and no record-routing.
    pub fn at(addr: SocketAddr) -> Self {
        ProxyConfig {
            advertise: addr,
            advertise_of: [None, None],
            local: vec![addr],
            upstreams: Vec::new(),
            record_route: false,
            domains: Vec::new(),
            redirect: false,
            nat: false,
            advertise_arrival: false,
            conn_key: ConnKey::default(),
            health: Arc::default(),
        }
    }

    /// The address our Via and Record-Route name for a message that
    /// arrived at `local`: the arrival address under a wildcard listen
    /// address with no `--advertise`, else the advertised one.
    pub fn advertised(&self, local: SocketAddr) -> SocketAddr {
        if self.advertise_arrival && !local.ip().is_unspecified() {
            SocketAddr::new(local.ip().to_canonical(), local.port())
        } else {
            self.advertise
        }
    }

    /// The address our Via names for a request that arrived at `local`
    /// and leaves over UDP to `to`: the [advertised](Self::advertised)
    /// one, or, when that is of the other IP family, ours of `to`'s
    /// family (None when we have none to name).
    pub fn leaving_for(&self, local: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let here = self.advertised(local);
        if here.is_ipv4() == to.is_ipv4() {
            return Some(here);
        }
        self.advertise_of[usize::from(to.is_ipv6())]
    }

    /// True when host:port (port default 5060) is one of our addresses,
    /// for a message that arrived at `local`. A wildcard bind (0.0.0.0) is
    /// not an address peers write: with one, the advertised address and,
    /// without `--advertise`, the address the message arrived at name us.
    pub fn is_us(&self, host: &Host<'_>, port: Option<u16>, local: SocketAddr) -> bool {
        let ip = match host {
            Host::V4(a) => IpAddr::V4(*a),
            Host::V6(a) => IpAddr::V6(*a),
            Host::Name(_) => return false,
        };
        let port = port.unwrap_or(5060);
        let names = |a: &SocketAddr| a.port() == port && a.ip() == ip;
        self.local.iter().any(names)
            || names(&self.advertise)
            || (self.advertise_arrival && names(&self.advertised(local)))
    }

    /// The digest realm for a request about `uri` (the To of a REGISTER,
    /// the From of an INVITE): its domain as configured when it is one of
    /// ours, else the first `--domain` (a UA that used our address).
    pub fn realm_for(&self, uri: &SipUri<'_>) -> Option<&[u8]> {
        self.domains
            .iter()
            .find(|d| d.eq_ignore_ascii_case(uri.host_raw))
            .or(self.domains.first())
            .map(|d| &d[..])
    }

    /// True when we are registrar for this URI's host (§10.3 step 1,
    /// §16.5): one of the `--domain`s, or, when there is any, one of our
    /// own addresses (what Kamailio calls "myself"), for a message that
    /// arrived at `local`.
    pub fn is_local_domain(&self, uri: &SipUri<'_>, local: SocketAddr) -> bool {
        !self.domains.is_empty()
            && (self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(uri.host_raw))
                || self.is_us(&uri.host, uri.port, local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_wildcard_the_arrival_address_is_us_and_is_advertised() {
        let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
        let arrived: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let host = Host::parse(b"198.51.100.7").unwrap();
        assert!(
            !cfg.is_us(&host, Some(5060), arrived),
            "not without the flag"
        );
        assert_eq!(cfg.advertised(arrived), cfg.advertise);
        cfg.advertise_arrival = true;
        assert!(cfg.is_us(&host, Some(5060), arrived));
        assert!(cfg.is_us(&host, None, arrived), "5060 by default");
        assert!(
            !cfg.is_us(&host, Some(5070), arrived),
            "another port is not"
        );
        assert_eq!(cfg.advertised(arrived), arrived);
        let unknown: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        assert_eq!(cfg.advertised(unknown), cfg.advertise, "no arrival address");
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:5060".parse().unwrap();
        assert!(
            cfg.is_us(&host, Some(5060), mapped),
            "v4-mapped on a dual-stack socket"
        );
    }
}
