//! Where a handler's output goes: a datagram to the backend's send queue,
//! a message for a connection to the shard that owns the connection
//! (ARCHITECTURE.md, "Ownership"): this shard's own connections get it
//! after the batch ([`Outgoing`]), another shard's through its inbox; and
//! a message for a next hop over TCP or TLS to this shard's own connection
//! to it.
//! The handlers write every message into a backend send slot first, so
//! that forwarding and answering stay one code path whatever the
//! transport; a connection's message is copied out of that slot, which
//! stays free.

use std::sync::atomic::AtomicU64;

use super::counters::add;
use super::mail::{Inbox, Mail};
use crate::io::stream::Outgoing;
use crate::io::SendQueue;
use crate::transport::{Dest, Transport};

/// A shard's send queue with its connections behind it.
pub struct Sends<'s, Q> {
    queue: &'s mut Q,
    out: &'s mut Outgoing,
    me: usize,
    inboxes: &'s [Inbox],
    /// Counts the messages mailed to another shard's connection.
    crossed: &'s AtomicU64,
    /// Messages for a connection that could not be queued: no such shard,
    /// or its inbox full.
    pub failed: usize,
}

impl<'s, Q: SendQueue> Sends<'s, Q> {
    /// Shard `me`'s sends: datagrams to `queue`, its own connections'
    /// messages to `out`, other shards' to their `inboxes` (counted in
    /// `crossed`).
    pub fn new(
        queue: &'s mut Q,
        out: &'s mut Outgoing,
        me: usize,
        inboxes: &'s [Inbox],
        crossed: &'s AtomicU64,
    ) -> Self {
        Sends {
            queue,
            out,
            me,
            inboxes,
            crossed,
            failed: 0,
        }
    }
}

impl<Q: SendQueue> SendQueue for Sends<'_, Q> {
    fn slot(&mut self) -> Option<&mut [u8]> {
        self.queue.slot()
    }

    fn commit(&mut self, len: usize, dest: Dest) {
        let conn = match dest {
            Dest::Udp { .. } => return self.queue.commit(len, dest),
            Dest::Conn(conn) => conn,
            Dest::Outbound { peer, transport } => {
                // The slot `slot` gave is the one written: it stays
                // uncommitted.
                match self.queue.slot().and_then(|s| s.get(..len)) {
                    // WebSocket next hops are not built (a proxy reaches
                    // WebSocket clients only over their own connections).
                    Some(data) if matches!(transport, Transport::Tcp | Transport::Tls) => {
                        self.out.push_to(peer, transport, data)
                    }
                    _ => self.failed += 1,
                }
                return;
            }
        };
        let Some(data) = self.queue.slot().and_then(|s| s.get(..len)) else {
            self.failed += 1;
            return;
        };
        if conn.shard() == self.me {
            return self.out.push(conn, data);
        }
        // One allocation per message that crosses shards: a response whose
        // request came on another shard's connection.
        let mail = Mail::Send {
            data: data.into(),
            to: dest,
        };
        match self.inboxes.get(conn.shard()).map(|i| i.push(mail)) {
            Some(Ok(())) => add(self.crossed, 1),
            _ => self.failed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ConnId;

    /// A queue of one slot that records its commits.
    #[derive(Default)]
    struct One {
        buf: Vec<u8>,
        commits: Vec<(Vec<u8>, Dest)>,
    }

    impl SendQueue for One {
        fn slot(&mut self) -> Option<&mut [u8]> {
            self.buf.resize(64, 0);
            Some(&mut self.buf)
        }
        fn commit(&mut self, len: usize, dest: Dest) {
            self.commits.push((self.buf[..len].to_vec(), dest));
        }
    }

    fn write(s: &mut impl SendQueue, text: &[u8], dest: Dest) {
        s.slot().unwrap()[..text.len()].copy_from_slice(text);
        s.commit(text.len(), dest);
    }

    #[test]
    fn each_message_goes_to_its_owner() {
        let inboxes = [Inbox::new(4).unwrap(), Inbox::new(4).unwrap()];
        let (mut q, mut out) = (One::default(), Outgoing::default());
        let crossed = AtomicU64::new(0);
        let mut s = Sends::new(&mut q, &mut out, 0, &inboxes, &crossed);
        let udp = Dest::udp("127.0.0.1:5060".parse().unwrap());
        write(&mut s, b"datagram", udp);
        write(&mut s, b"mine", Dest::Conn(ConnId::new(0, 1, 1)));
        write(&mut s, b"theirs", Dest::Conn(ConnId::new(1, 2, 1)));
        write(&mut s, b"nobody's", Dest::Conn(ConnId::new(7, 2, 1)));
        assert_eq!(s.failed, 1, "no shard 7");
        assert_eq!(crossed.into_inner(), 1, "one to shard 1");
        assert_eq!(q.commits, vec![(b"datagram".to_vec(), udp)]);
        assert!(!out.is_empty());
        match inboxes[1].pop() {
            Some(Mail::Send { data, to }) => {
                assert_eq!(&data[..], b"theirs");
                assert_eq!(to, Dest::Conn(ConnId::new(1, 2, 1)));
            }
            _ => panic!("shard 1 got no mail"),
        }
        assert!(inboxes[0].pop().is_none());
    }
}
