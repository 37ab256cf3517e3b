//! What becomes of a message whose connection has gone. Only the
//! connection's owner knows it has gone, and it learns it when it tries
//! to send:
//! - a request sent to a registered flow gets 430 Flow Failed (RFC 5626
//!   §5.3), answered in the flow's UA's place, so that the caller (or an
//!   edge proxy before it) can try another binding rather than wait for a
//!   timeout;
//! - a response goes over a new connection to the address the client's
//!   Via names (RFC 3261 §18.2.2), as a UAS's transport layer would send
//!   it;
//! - under `--mode stateful`, a request whose next hop could not be
//!   connected to is answered 503 in the next hop's place, to its own
//!   client transaction (§16.9: "as if the forwarded request received a
//!   503"), which fails over or gives the caller the best answer. The
//!   stateless mode drops it, as a datagram to that address would be
//!   lost.

use std::net::{IpAddr, SocketAddr};

use super::answer::write_plain;
use super::counters::add;
use super::Shard;
use crate::io::stream::Gone;
use crate::io::{SendQueue, SEND_SLOT};
use crate::sip::{Host, Message, Method, Via};
use crate::transport::{Dest, Source, Transport};

impl Shard<'_> {
    /// Deals with `forwarded`, a message this shard could not send: when
    /// its connection had gone, a response is sent again over a new
    /// connection ([`resend_address`]) and a request (not an ACK) gets
    /// 430, routed back along its Vias like a response from the flow's
    /// UA; when its next hop could not be connected to, a request gets
    /// 503 under `--mode stateful` (§16.9) and nothing otherwise. An ACK
    /// is dropped.
    pub(super) fn connection_gone<S: SendQueue>(
        &mut self,
        why: Gone,
        forwarded: &[u8],
        send: &mut S,
    ) {
        let Ok(msg) = Message::parse(forwarded) else {
            return;
        };
        if !msg.is_request() {
            if why == Gone::Closed {
                self.resend_response(&msg, forwarded, send);
            }
            return;
        }
        if msg.method() == Some(Method::Ack) {
            return;
        }
        let (code, reason) = match why {
            Gone::Closed => (430, "Flow Failed"),
            Gone::Unreachable if self.stateful.is_some() => (503, "Service Unavailable"),
            Gone::Unreachable => return,
        };
        // Our Via is on top: the answer comes "from" the address it names,
        // which is us.
        let Ok(via) = msg.via() else {
            return;
        };
        let ip = match via.host {
            Host::V4(a) => IpAddr::V4(a),
            Host::V6(a) => IpAddr::V6(a),
            Host::Name(_) => return,
        };
        let us = SocketAddr::new(ip, via.port.unwrap_or(5060));
        let src = Source::udp(us, us);
        // One allocation per failed flow: a rare event.
        let mut buf = vec![0u8; SEND_SLOT];
        let Some(n) = write_plain(&msg, &src, code, reason, &mut buf) else {
            return;
        };
        if why == Gone::Closed {
            add(&self.counters.flows_failed, 1);
        }
        let _ = self.route_own_response(&buf[..n], &src, send);
    }

    /// §18.2.2: the connection a response was to go back on has gone;
    /// it goes over this shard's connection to the client's Via address
    /// (opened if absent). Counted as resent, or as dropped when the Via
    /// names no transport a server can connect to (UDP has no
    /// connection to lose; a WebSocket client cannot be connected to).
    fn resend_response<S: SendQueue>(&mut self, msg: &Message<'_>, bytes: &[u8], send: &mut S) {
        let Some((peer, transport)) = msg.via().ok().and_then(|v| resend_address(&v)) else {
            return;
        };
        let Some(slot) = send.slot().and_then(|s| s.get_mut(..bytes.len())) else {
            return;
        };
        slot.copy_from_slice(bytes);
        send.commit(bytes.len(), Dest::Outbound { peer, transport });
        add(&self.counters.conn_responses_resent, 1);
    }
}

/// Where §18.2.2 sends a response over a new connection: the IP address
/// in the Via's `received` (which we set when the request's source
/// differed from sent-by, so this is where the request came from), else
/// its sent-by IP, at the sent-by port or the transport's default (5060,
/// 5061 for TLS). None for a transport we cannot connect to, or a sent-by
/// name with no `received` (not resolved here).
pub fn resend_address(via: &Via<'_>) -> Option<(SocketAddr, Transport)> {
    let transport = Transport::from_token(via.transport)?;
    let default_port = match transport {
        Transport::Tcp => 5060,
        Transport::Tls => 5061,
        _ => return None,
    };
    let ip = match (via.received, &via.host) {
        (Some(r), _) => std::str::from_utf8(r)
            .ok()?
            .trim_matches(['[', ']'])
            .parse()
            .ok()?,
        (None, Host::V4(a)) => IpAddr::V4(*a),
        (None, Host::V6(a)) => IpAddr::V6(*a),
        (None, Host::Name(_)) => return None,
    };
    Some((
        SocketAddr::new(ip, via.port.unwrap_or(default_port)),
        transport,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(via: &str) -> Option<(SocketAddr, Transport)> {
        resend_address(&Via::parse(via.as_bytes()).unwrap())
    }

    #[test]
    fn a_response_is_resent_to_received_at_the_sent_by_port() {
        assert_eq!(
            address("SIP/2.0/TCP client.example.com:5070;branch=z9hG4bK1;received=192.0.2.7"),
            Some(("192.0.2.7:5070".parse().unwrap(), Transport::Tcp))
        );
        // rport names the old connection's source port: not used.
        assert_eq!(
            address("SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bK1;rport=40000"),
            Some(("192.0.2.7:5070".parse().unwrap(), Transport::Tcp))
        );
        assert_eq!(
            address("SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK1"),
            Some(("[2001:db8::1]:5061".parse().unwrap(), Transport::Tls))
        );
        assert_eq!(
            address("SIP/2.0/tcp h.example;branch=z9hG4bK1;received=[2001:db8::2]"),
            Some(("[2001:db8::2]:5060".parse().unwrap(), Transport::Tcp))
        );
    }

    #[test]
    fn nothing_to_connect_to_means_no_resend() {
        assert_eq!(
            address("SIP/2.0/TCP client.example.com;branch=z9hG4bK1"),
            None
        );
        assert_eq!(address("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1"), None);
        assert_eq!(
            address("SIP/2.0/WSS abc.invalid;branch=z9hG4bK1;received=192.0.2.7"),
            None
        );
        assert_eq!(address("SIP/2.0/SCTP 192.0.2.7;branch=z9hG4bK1"), None);
        assert_eq!(
            address("SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1;received=junk"),
            None
        );
    }
}
