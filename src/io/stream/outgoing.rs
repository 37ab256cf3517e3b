//! Messages for a shard's connections, queued during a batch.

use std::net::SocketAddr;

use crate::transport::{ConnId, Transport};

/// Messages for this shard's connections, queued while the shard handles
/// a batch and handed to the connections after it ([`Streams::send_all`]),
/// so that a handler can answer on the connection it is reading.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub(super) bytes: Vec<u8>,
    pub(super) items: Vec<(To, usize, usize)>,
}

/// Where a queued message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum To {
    /// A connection of this shard.
    Conn(ConnId),
    /// This shard's own connection to a next hop over a transport (TCP
    /// or TLS), opened if absent.
    Peer(SocketAddr, Transport),
}

impl Outgoing {
    /// Queues `data` for connection `conn`.
    pub fn push(&mut self, conn: ConnId, data: &[u8]) {
        self.queue(To::Conn(conn), data);
    }

    /// Queues `data` for this shard's connection to `peer` over
    /// `transport` (TCP or TLS), which is opened if the shard has none.
    pub fn push_to(&mut self, peer: SocketAddr, transport: Transport, data: &[u8]) {
        self.queue(To::Peer(peer, transport), data);
    }

    fn queue(&mut self, to: To, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.items.push((to, start, data.len()));
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops what is queued (a shard with no connections); returns how
    /// many messages that was.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        self.bytes.clear();
        n
    }
}
