//! What a message came in on and goes out on: the transport (RFC 3261
//! §18), the source of a received message and the destination of one to
//! send. Only UDP carries traffic today; the types already name streams
//! and connections so that TCP, TLS and WebSocket add variants and files
//! here instead of changing every signature on the send path.
//!
//! A connection belongs to the shard that accepted or opened it, for its
//! whole life (ARCHITECTURE.md, "Ownership"); a [`ConnId`] names that shard,
//! so bytes for a connection can be mailed to its owner from anywhere.
//! [`stream`] frames the messages on a connection's bytes (§18.3); [`tls`]
//! turns a TLS connection's records into those bytes and back (§26.2.1).

pub mod addr;
pub mod stream;
pub mod table;
pub mod tls;
pub mod websocket;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use addr::{TransportAddr, UpstreamAddr};
pub use table::ConnTable;

/// A SIP transport, as named in a Via's sent-protocol (§18, §20.42) and in
/// a URI's `transport` parameter (RFC 7118 adds WS and WSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Datagrams (§18.1.1): one message per datagram.
    #[default]
    Udp,
    /// A byte stream; messages framed by Content-Length (§18.3).
    Tcp,
    /// TCP with TLS.
    Tls,
    /// WebSocket (RFC 7118): one message per WebSocket message.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Every transport, in the order of their codes.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The token a Via's sent-protocol carries (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The transport a Via token or `transport=` parameter names
    /// (case-insensitive, §7.1), or None for one we do not speak (SCTP).
    pub fn from_token(token: &[u8]) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| token.eq_ignore_ascii_case(t.via_token().as_bytes()))
    }

    /// True for a transport that is a connection (everything but UDP).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// A small code for storage formats (`--state-dir`); stable.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The transport a stored code names, None for an unknown code.
    pub fn from_code(code: u8) -> Option<Transport> {
        Transport::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// A connection, named so that any shard can find it: the owner shard in
/// the top 8 bits, a slot in the owner's connection table in the next 24,
/// and a generation in the low 32, so that an id outlives its connection
/// harmlessly (a reused slot has a new generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The id of `slot` (below 2^24) of `shard`'s table at `generation`.
    pub fn new(shard: u8, slot: u32, generation: u32) -> ConnId {
        debug_assert!(slot < 1 << 24, "a slot has 24 bits");
        ConnId(u64::from(shard) << 56 | u64::from(slot & 0xff_ffff) << 32 | u64::from(generation))
    }

    /// The shard that owns the connection.
    pub fn shard(self) -> usize {
        (self.0 >> 56) as usize
    }

    /// Its slot in the owner's table.
    pub fn slot(self) -> u32 {
        ((self.0 >> 32) & 0xff_ffff) as u32
    }

    /// Its generation.
    pub fn generation(self) -> u32 {
        self.0 as u32
    }
}

/// Where a received message came from and what it arrived on (quinn-udp's
/// `RecvMeta`): the peer, our address it was sent to (from `IP_PKTINFO`
/// for a wildcard socket), the transport, and the connection for streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The peer's address (for UDP, the datagram's source).
    pub peer: SocketAddr,
    /// Our address the message arrived at.
    pub local: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
    /// The connection it came on; None for UDP.
    pub conn: Option<ConnId>,
}

impl Source {
    /// A datagram from `peer` to our `local` address.
    pub fn udp(peer: SocketAddr, local: SocketAddr) -> Source {
        Source {
            peer,
            local,
            transport: Transport::Udp,
            conn: None,
        }
    }

    /// Where an answer to this source goes (§18.2.2: back on the
    /// connection, or to the peer from the address it reached).
    pub fn reply_dest(&self) -> Dest {
        match self.conn {
            Some(c) => Dest::Conn(c),
            None => Dest::Udp {
                peer: self.peer,
                from: Some(self.local.ip()),
            },
        }
    }
}

/// Where an outgoing message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// A datagram to `peer`, sent from our address `from` (`IP_PKTINFO`), or
    /// from whatever the socket's binding picks when None.
    Udp {
        /// The receiver.
        peer: SocketAddr,
        /// Our source address for it.
        from: Option<IpAddr>,
    },
    /// Bytes for a connection, sent by the shard that owns it.
    Conn(ConnId),
    /// Bytes for the sending shard's own connection to `peer` over a
    /// stream `transport`, opened if it has none (each shard keeps its
    /// own, so the responses come back to the shard that sent).
    Outbound {
        /// The next hop.
        peer: SocketAddr,
        /// Its transport (not UDP).
        transport: Transport,
    },
}

impl Dest {
    /// A datagram to `peer` from the socket's own address.
    pub fn udp(peer: SocketAddr) -> Dest {
        Dest::Udp { peer, from: None }
    }

    /// The peer's address, None for a connection named by its id.
    pub fn peer(&self) -> Option<SocketAddr> {
        match *self {
            Dest::Udp { peer, .. } | Dest::Outbound { peer, .. } => Some(peer),
            Dest::Conn(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_case_insensitively() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_token(t.via_token().as_bytes()), Some(t));
            let lower = t.via_token().to_ascii_lowercase();
            assert_eq!(Transport::from_token(lower.as_bytes()), Some(t));
            assert_eq!(Transport::from_code(t.code()), Some(t));
        }
        assert_eq!(Transport::from_token(b"SCTP"), None);
        assert_eq!(Transport::from_code(5), None);
    }

    #[test]
    fn a_conn_id_keeps_its_three_parts() {
        let id = ConnId::new(200, 0xab_cdef, 0xdead_beef);
        assert_eq!(id.shard(), 200);
        assert_eq!(id.slot(), 0xab_cdef);
        assert_eq!(id.generation(), 0xdead_beef);
        assert_ne!(ConnId::new(1, 2, 3), ConnId::new(1, 2, 4));
    }

    #[test]
    fn an_answer_goes_back_the_way_the_request_came() {
        let peer: SocketAddr = "192.0.2.1:5062".parse().unwrap();
        let local: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let src = Source::udp(peer, local);
        assert_eq!(
            src.reply_dest(),
            Dest::Udp {
                peer,
                from: Some(local.ip())
            }
        );
        let conn = Source {
            conn: Some(ConnId::new(3, 9, 1)),
            transport: Transport::Tls,
            ..src
        };
        assert_eq!(conn.reply_dest(), Dest::Conn(ConnId::new(3, 9, 1)));
        assert_eq!(Dest::Conn(ConnId::new(3, 9, 1)).peer(), None);
    }
}
