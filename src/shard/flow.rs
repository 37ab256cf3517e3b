//! RFC 5626 §5.3: a request sent to a registered flow whose connection
//! has gone gets 430 Flow Failed, so that the caller (or an edge proxy
//! before it) can try another binding rather than wait for a timeout.
//! Only the connection's owner knows it has gone, and it learns it when
//! it tries to send: it answers then, in the flow's UA's place.

use std::net::{IpAddr, SocketAddr};

use super::answer::write_plain;
use super::counters::add;
use super::Shard;
use crate::io::{SendQueue, SEND_SLOT};
use crate::sip::{Host, Message, Method};
use crate::transport::Source;

impl Shard<'_> {
    /// Answers `forwarded`, a message this shard could not send because
    /// its connection had gone: 430 for a request (not an ACK), routed
    /// back along its Vias like a response from the flow's UA; nothing
    /// for the rest.
    pub(super) fn flow_failed<S: SendQueue>(&mut self, forwarded: &[u8], send: &mut S) {
        let Ok(msg) = Message::parse(forwarded) else {
            return;
        };
        if !msg.is_request() || msg.method() == Some(Method::Ack) {
            return;
        }
        // Our Via is on top: the 430 comes "from" the address it names,
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
        let Some(n) = write_plain(&msg, &src, 430, "Flow Failed", &mut buf) else {
            return;
        };
        add(&self.counters.flows_failed, 1);
        let _ = self.route_own_response(&buf[..n], &src, send);
    }
}
