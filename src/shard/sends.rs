//! Where a handler's output goes: a datagram to the backend's send queue,
//! a message for a connection to the shard that owns the connection
//! (ARCHITECTURE.md, "Ownership"): this shard's own connections get it
//! after the batch ([`Outgoing`]), another shard's through its inbox; and
//! a message for a next hop over TCP or TLS to this shard's own connection
//! to it; a datagram for an address of the other IP family than this
//! shard's socket to a shard whose socket has that family (a dual-stack
//! edge: a request from an IPv4 client to an IPv6 next hop, and its
//! responses).
//! The handlers write every message into a backend send slot first, so
//! that forwarding and answering stay one code path whatever the
//! transport; a connection's message is copied out of that slot, which
//! stays free.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

use super::counters::{add, ShardCounters};
use super::mail::{Inbox, Mail};
use crate::io::stream::Outgoing;
use crate::io::SendQueue;
use crate::transport::{Dest, Transport};

/// What a shard needs to hand a message to another: its index, the
/// inboxes, its counters, and which shard sends its datagrams of the other
/// IP family.
#[derive(Clone, Copy)]
pub struct Post<'s> {
    /// This shard.
    pub me: usize,
    /// Every shard's inbox.
    pub inboxes: &'s [Inbox],
    /// This shard's counters (the crossings are counted there).
    pub counters: &'s ShardCounters,
    /// The family of this shard's UDP socket (true for IPv4); None when
    /// unknown (unit tests): every datagram then goes to its own socket.
    pub ipv4: Option<bool>,
    /// The shard whose socket sends to the other family, when some listen
    /// address has it.
    pub other_family: Option<usize>,
}

/// A shard's send queue with its connections behind it.
pub struct Sends<'s, Q> {
    queue: &'s mut Q,
    out: &'s mut Outgoing,
    post: Post<'s>,
    /// Messages that could not be queued: a connection of no shard, an
    /// inbox full, a datagram for a family no listen address has.
    pub failed: usize,
}

impl<'s, Q: SendQueue> Sends<'s, Q> {
    /// A shard's sends: datagrams to `queue`, its own connections'
    /// messages to `out`, the rest through `post`.
    pub fn new(queue: &'s mut Q, out: &'s mut Outgoing, post: Post<'s>) -> Self {
        Sends {
            queue,
            out,
            post,
            failed: 0,
        }
    }

    /// Mails `len` bytes of the slot, for `to`, to shard `shard`, counted
    /// in `crossed` when it went.
    fn mail(
        &mut self,
        len: usize,
        to: Dest,
        shard: usize,
        crossed: fn(&ShardCounters) -> &AtomicU64,
    ) {
        let Some(data) = self.queue.slot().and_then(|s| s.get(..len)) else {
            self.failed += 1;
            return;
        };
        // One allocation per message that crosses shards: the hop the
        // design keeps rare.
        let mail = Mail::Send {
            data: data.into(),
            to,
        };
        match self.post.inboxes.get(shard).map(|i| i.push(mail)) {
            Some(Ok(())) => add(crossed(self.post.counters), 1),
            _ => self.failed += 1,
        }
    }
}

impl<Q: SendQueue> SendQueue for Sends<'_, Q> {
    fn slot(&mut self) -> Option<&mut [u8]> {
        self.queue.slot()
    }

    fn free(&self) -> usize {
        self.queue.free()
    }

    fn commit(&mut self, len: usize, dest: Dest) {
        let conn = match dest {
            Dest::Udp { peer, from } => {
                if self.post.ipv4.is_none_or(|v4| v4 == peer.is_ipv4()) {
                    return self.queue.commit(len, dest);
                }
                // The other family: from a shard whose socket has it, from
                // its own address unless `from` is of that family.
                let Some(other) = self.post.other_family else {
                    self.failed += 1;
                    return;
                };
                let from = from.filter(|ip| same_family(*ip, peer.ip()));
                let to = Dest::Udp { peer, from };
                return self.mail(len, to, other, |c| &c.family_crossed);
            }
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
        if conn.shard() != self.post.me {
            // A response whose request came on another shard's
            // connection, a call to a flow another shard holds.
            return self.mail(len, dest, conn.shard(), |c| &c.conn_msgs_crossed);
        }
        match self.queue.slot().and_then(|s| s.get(..len)) {
            Some(data) => self.out.push(conn, data),
            None => self.failed += 1,
        }
    }
}

/// True when `a` and `b` are both IPv4 or both IPv6.
fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
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

    fn post<'s>(inboxes: &'s [Inbox], counters: &'s ShardCounters) -> Post<'s> {
        Post {
            me: 0,
            inboxes,
            counters,
            ipv4: Some(true),
            other_family: Some(1),
        }
    }

    #[test]
    fn each_message_goes_to_its_owner() {
        let inboxes = [Inbox::new(4).unwrap(), Inbox::new(4).unwrap()];
        let counters = ShardCounters::default();
        let (mut q, mut out) = (One::default(), Outgoing::default());
        let mut s = Sends::new(&mut q, &mut out, post(&inboxes, &counters));
        let udp = Dest::udp("127.0.0.1:5060".parse().unwrap());
        write(&mut s, b"datagram", udp);
        write(&mut s, b"mine", Dest::Conn(ConnId::new(0, 1, 1)));
        write(&mut s, b"theirs", Dest::Conn(ConnId::new(1, 2, 1)));
        write(&mut s, b"nobody's", Dest::Conn(ConnId::new(7, 2, 1)));
        assert_eq!(s.failed, 1, "no shard 7");
        assert_eq!(counters.conn_msgs_crossed.into_inner(), 1, "one to shard 1");
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

    #[test]
    fn a_datagram_of_the_other_family_goes_to_that_familys_shard() {
        let inboxes = [Inbox::new(4).unwrap(), Inbox::new(4).unwrap()];
        let counters = ShardCounters::default();
        let (mut q, mut out) = (One::default(), Outgoing::default());
        let mut s = Sends::new(&mut q, &mut out, post(&inboxes, &counters));
        let v6 = "[::1]:5060".parse().unwrap();
        // Our IPv4 arrival address cannot be its source: dropped from it.
        let from_v4 = Dest::Udp {
            peer: v6,
            from: Some("127.0.0.1".parse().unwrap()),
        };
        write(&mut s, b"to v6", from_v4);
        let from_v6 = Dest::Udp {
            peer: v6,
            from: Some("::1".parse().unwrap()),
        };
        write(&mut s, b"to v6 from v6", from_v6);
        assert_eq!(s.failed, 0);
        assert!(q.commits.is_empty(), "not from this shard's IPv4 socket");
        assert_eq!(counters.family_crossed.into_inner(), 2);
        for (text, to) in [(&b"to v6"[..], Dest::udp(v6)), (b"to v6 from v6", from_v6)] {
            match inboxes[1].pop() {
                Some(Mail::Send { data, to: got }) => {
                    assert_eq!(&data[..], text);
                    assert_eq!(got, to);
                }
                _ => panic!("shard 1 got no mail"),
            }
        }
    }

    #[test]
    fn a_datagram_for_a_family_nobody_listens_on_fails() {
        let inboxes = [Inbox::new(4).unwrap()];
        let counters = ShardCounters::default();
        let (mut q, mut out) = (One::default(), Outgoing::default());
        let mut p = post(&inboxes, &counters);
        p.other_family = None;
        let mut s = Sends::new(&mut q, &mut out, p);
        write(&mut s, b"x", Dest::udp("[::1]:5060".parse().unwrap()));
        assert_eq!(s.failed, 1);
        assert!(q.commits.is_empty());
        // Unknown families (as in the per-datagram tests): its own socket.
        p.ipv4 = None;
        let mut s = Sends::new(&mut q, &mut out, p);
        write(&mut s, b"y", Dest::udp("[::1]:5060".parse().unwrap()));
        assert_eq!((s.failed, q.commits.len()), (0, 1));
    }
}
