//! Who we are: the addresses that name this proxy, the domains it is
//! registrar for, the digest realm, and the policy it routes by.

use std::net::{IpAddr, SocketAddr};

use crate::sip::{Host, SipUri};

/// What the proxy needs to know about itself and its neighbours.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address in our Via sent-by and Record-Route (`--advertise`,
    /// default the first listen address).
    pub advertise: SocketAddr,
    /// Every address that means "this proxy" (listen addresses and the
    /// advertised one), for loop detection and Route processing.
    pub local: Vec<SocketAddr>,
    /// Where requests go when nothing else names a next hop (`--upstream`).
    pub upstreams: Vec<SocketAddr>,
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
}

impl ProxyConfig {
    /// A proxy at `addr` with no upstream and no record-routing.
    pub fn at(addr: SocketAddr) -> Self {
        ProxyConfig {
            advertise: addr,
            local: vec![addr],
            upstreams: Vec::new(),
            record_route: false,
            domains: Vec::new(),
            redirect: false,
            nat: false,
        }
    }

    /// True when host:port (port default 5060) is one of our addresses.
    /// A wildcard bind (0.0.0.0) is not an address peers write: with one,
    /// the advertised address is what names us.
    pub fn is_us(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        let ip = match host {
            Host::V4(a) => IpAddr::V4(*a),
            Host::V6(a) => IpAddr::V6(*a),
            Host::Name(_) => return false,
        };
        let port = port.unwrap_or(5060);
        self.local
            .iter()
            .chain(std::iter::once(&self.advertise))
            .any(|a| a.port() == port && a.ip() == ip)
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
    /// own addresses (what Kamailio calls "myself").
    pub fn is_local_domain(&self, uri: &SipUri<'_>) -> bool {
        !self.domains.is_empty()
            && (self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(uri.host_raw))
                || self.is_us(&uri.host, uri.port))
    }
}
