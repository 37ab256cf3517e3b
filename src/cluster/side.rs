//! An owner shard's part of the cluster: what it hands the link when its
//! registrar changes a binding, and how it folds in the changes other
//! nodes made (ARCHITECTURE.md, "Location"). The shard never waits on
//! the network: a change goes into a bounded queue that the link thread
//! drains.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use super::link::{LinkStats, Pending, Write};
use super::merge::{merge, Merged, Tombstones, TOMBSTONE_SECS};
use super::wire::{Change, Kind, OrderKey};
use crate::location::binding::{stamp_after, Binding};
use crate::location::owner::Owner;
use crate::location::record::AorRecord;
use crate::location::{aor_hash, LocationOp};
use crate::proxy::conn_param::{nat_value, ConnKey, CID_PARAM, FLOW_TRANSPORT_PARAM, NAT_PARAM};
use crate::registrar::save::same_contact;

/// How other nodes reach a binding through this one.
#[derive(Clone, Debug)]
pub struct Routes {
    /// This node's address as other nodes reach it (`--node-addr`).
    pub addr: SocketAddr,
    /// The key of the `cid` flow tokens this node reads back.
    pub conn_key: ConnKey,
    /// `--nat`: UDP bindings are reached at the address their REGISTER
    /// came from, which only this node's socket may pass a NAT to.
    pub nat: bool,
}

impl Routes {
    /// The Route value for `b`, or empty when other nodes reach it as
    /// this node would (its Path, or its contact).
    pub fn route_for(&self, b: &Binding) -> Vec<u8> {
        if !b.path.is_empty() {
            return Vec::new();
        }
        let mut out = format!("<sip:{};lr", self.addr).into_bytes();
        if let Some(id) = b.source.conn {
            out.extend_from_slice(b";");
            out.extend_from_slice(CID_PARAM);
            out.push(b'=');
            out.extend_from_slice(&self.conn_key.write(id));
            out.extend_from_slice(b";");
            out.extend_from_slice(FLOW_TRANSPORT_PARAM);
            out.push(b'=');
            out.extend_from_slice(
                b.source
                    .transport
                    .via_token()
                    .to_ascii_lowercase()
                    .as_bytes(),
            );
        } else if self.nat {
            out.extend_from_slice(b";");
            out.extend_from_slice(NAT_PARAM);
            out.push(b'=');
            out.extend_from_slice(&nat_value(b.source.peer));
        } else {
            return Vec::new();
        }
        out.push(b'>');
        out
    }
}

/// An owner shard's cluster state.
pub struct Side {
    node: Box<[u8]>,
    queue: SyncSender<Write>,
    stats: Arc<LinkStats>,
    routes: Routes,
    tombs: Tombstones,
    max_contacts: usize,
    /// Changes the writer's channel had no room for (it is busy with a
    /// slow Redis), one per binding, sent first when it has room again.
    overflow: Pending,
    /// Bound of `overflow` (`--cluster-queue`).
    max_overflow: usize,
    /// `--state-dir`: this node's own bindings as its files gave them are
    /// the truth, so one of its own that a load brings and that it does not
    /// hold was removed here before Redis heard (a kill in between).
    own_state: bool,
}

impl Side {
    /// The side of node `node` that hands its writes to `queue`.
    pub fn new(
        node: Box<[u8]>,
        queue: SyncSender<Write>,
        stats: Arc<LinkStats>,
        routes: Routes,
        max_contacts: usize,
        own_state: bool,
    ) -> Side {
        Side {
            node,
            queue,
            stats,
            routes,
            tombs: Tombstones::default(),
            max_contacts,
            overflow: Pending::default(),
            max_overflow: 100_000,
            own_state,
        }
    }

    /// At most `n` changes wait in this shard when the writer's channel is
    /// full (`--cluster-queue`).
    pub fn with_overflow(mut self, n: usize) -> Side {
        self.max_overflow = n;
        self
    }

    /// This node's id.
    pub fn node(&self) -> &[u8] {
        &self.node
    }

    /// How other nodes reach this node's bindings.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// This node's registrar changed `after`'s AOR, which was `before`:
    /// every binding it wrote or removed goes to the link. (Bindings
    /// that lapsed are not written: every node expires them at the same
    /// absolute time, and Redis drops a field at the next write of its
    /// key and the key after its last binding.)
    pub fn registered(&mut self, before: Option<&AorRecord>, after: &AorRecord, now: u64) {
        let old: Vec<Binding> = before.map_or_else(Vec::new, AorRecord::to_bindings);
        let aor = after.aor();
        for b in after.bindings() {
            let b = b.to_binding();
            if old.contains(&b) {
                continue; // untouched by this REGISTER
            }
            let route = self.routes.route_for(&b).into_boxed_slice();
            let at_ms = b.expires_at.saturating_mul(1000);
            self.send(
                aor,
                Change {
                    kind: Kind::Live,
                    route,
                    binding: b,
                },
                at_ms,
            );
        }
        let hash = aor_hash(aor);
        let now_ms = now.saturating_mul(1000);
        for o in old.iter().filter(|o| o.expires_at > now) {
            if after
                .bindings()
                .any(|b| same_contact(b.contact, &o.contact))
            {
                continue;
            }
            let mut gone = o.clone();
            gone.stamp = stamp_after(o.stamp);
            gone.node = self.node.clone();
            self.tombs
                .put(hash, &gone.contact, OrderKey::of(&gone), now);
            let until = now_ms + TOMBSTONE_SECS * 1000;
            let change = Change {
                kind: Kind::Removed,
                route: Box::default(),
                binding: gone,
            };
            self.send(aor, change, until);
        }
    }

    fn send(&mut self, aor: &[u8], change: Change, expire_at_ms: u64) {
        let w = Write {
            aor: aor.into(),
            contact: change.binding.contact.clone(),
            value: change.encode(),
            expire_at_ms,
        };
        // Behind what waits already, so that a binding's changes stay in
        // order; a waiting change of the same binding is replaced.
        let w = match self.overflow.len() {
            0 => match self.queue.try_send(w) {
                Ok(()) => return,
                Err(TrySendError::Full(w)) | Err(TrySendError::Disconnected(w)) => w,
            },
            _ => w,
        };
        if !self.overflow.put(w, self.max_overflow) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands the writer what waited for room in its channel; every loop.
    pub fn flush(&mut self) {
        while self.overflow.len() > 0 {
            let Some(w) = self.overflow.take(1).pop() else {
                break;
            };
            match self.queue.try_send(w) {
                Ok(()) => {}
                Err(TrySendError::Full(w)) => {
                    self.overflow.put_back(w);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Folds another node's `change` of `aor` into this owner's record
    /// and publishes the result to every replica of this node (not to
    /// the link: it came from there). Returns true when it changed
    /// something.
    pub fn apply(
        &mut self,
        owner: &mut Owner,
        aor: &[u8],
        change: &Change,
        loaded: bool,
        now: u64,
        fanout: &mut dyn FnMut(&LocationOp),
    ) -> bool {
        let hash = aor_hash(aor);
        let current: Vec<Binding> = owner.current(aor).map_or_else(Vec::new, |r| {
            r.bindings()
                .filter(|b| b.expires_at > now)
                .map(|b| b.to_binding())
                .collect()
        });
        let contact = &change.binding.contact;
        let held = current.iter().any(|b| same_contact(&b.contact, contact));
        // One of ours that Redis still has and our files do not: removed
        // here (or replaced) after Redis last heard of it, by a REGISTER
        // whose change a kill took from the queue. Redis hears of the
        // removal now.
        if loaded && self.own_state && *change.binding.node == *self.node && !held {
            if change.kind == Kind::Live && self.tombs.get(hash, contact).is_none() {
                let mut gone = change.binding.clone();
                gone.stamp = stamp_after(gone.stamp);
                self.tombs.put(hash, contact, OrderKey::of(&gone), now);
                let until = now.saturating_mul(1000) + TOMBSTONE_SECS * 1000;
                let removal = Change {
                    kind: Kind::Removed,
                    route: Box::default(),
                    binding: gone,
                };
                self.send(aor, removal, until);
            }
            return false;
        }
        // A change that lapsed already counts as its binding's removal:
        // if it is the greater, the binding held here (older, longer) goes.
        let lapsed;
        let change = if change.kind == Kind::Live && change.binding.expires_at <= now {
            lapsed = Change {
                kind: Kind::Removed,
                route: Box::default(),
                binding: change.binding.clone(),
            };
            &lapsed
        } else {
            change
        };
        let tomb = self.tombs.get(hash, contact).cloned();
        if change.kind == Kind::Removed {
            self.tombs.put(hash, contact, change.key(), now);
        }
        match merge(
            &current,
            change,
            &self.node,
            tomb.as_ref(),
            self.max_contacts,
        ) {
            Merged::Unchanged => false,
            Merged::Changed(next) => {
                owner.publish(LocationOp::Set(AorRecord::new(aor, &next)), now, fanout);
                true
            }
        }
    }

    /// Forgets removals past their time.
    pub fn sweep(&mut self, now: u64) {
        self.tombs.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::conn_param::parse_nat_value;
    use crate::transport::{ConnId, Source, Transport};

    fn routes(nat: bool) -> Routes {
        Routes {
            addr: "192.0.2.2:5060".parse().unwrap(),
            conn_key: ConnKey::default(),
            nat,
        }
    }

    fn binding() -> Binding {
        Binding {
            contact: b"sip:a@10.0.0.9:5060"[..].into(),
            params: Box::default(),
            q: None,
            expires_at: 2_000_000_000,
            call_id: 1,
            cseq: 1,
            path: Box::default(),
            source: Source::udp(
                "203.0.113.9:40000".parse().unwrap(),
                "192.0.2.2:5060".parse().unwrap(),
            ),
            created_at: 1,
            stamp: 1,
            node: b"b"[..].into(),
        }
    }

    #[test]
    fn a_route_only_where_only_this_node_reaches_the_binding() {
        let b = binding();
        assert!(routes(false).route_for(&b).is_empty(), "plain UDP: direct");
        let nat = routes(true).route_for(&b);
        assert_eq!(nat, b"<sip:192.0.2.2:5060;lr;nat=cb007109-9c40>");
        assert_eq!(
            parse_nat_value(b"cb007109-9c40"),
            Some("203.0.113.9:40000".parse().unwrap())
        );
        let v6: SocketAddr = "[2001:db8::7]:5062".parse().unwrap();
        assert_eq!(parse_nat_value(&nat_value(v6)), Some(v6));
        assert_eq!(parse_nat_value(b"zz-1"), None);
        let mut tcp = binding();
        tcp.source.transport = Transport::Tcp;
        let id = ConnId::new(1, 4, 2);
        tcp.source.conn = Some(id);
        let r = routes(false);
        let route = String::from_utf8(r.route_for(&tcp)).unwrap();
        let token = String::from_utf8(r.conn_key.write(id).to_vec()).unwrap();
        assert_eq!(route, format!("<sip:192.0.2.2:5060;lr;cid={token};ft=tcp>"));
        let mut pathed = tcp.clone();
        pathed.path = b"<sip:edge;lr>"[..].into();
        assert!(r.route_for(&pathed).is_empty(), "its Path leads the way");
    }

    fn side(queue: SyncSender<Write>, own_state: bool) -> Side {
        Side::new(
            b"a"[..].into(),
            queue,
            Arc::new(LinkStats::default()),
            routes(false),
            10,
            own_state,
        )
    }

    fn live(b: Binding) -> Change {
        Change {
            kind: Kind::Live,
            route: Box::default(),
            binding: b,
        }
    }

    #[test]
    fn a_full_channel_keeps_the_latest_change_per_binding_for_later() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut s = side(tx, false);
        let mut b = binding();
        s.send(b"sip:x@h", live(b.clone()), 0);
        for stamp in [2, 3, 4] {
            b.stamp = stamp;
            s.send(b"sip:x@h", live(b.clone()), 0);
        }
        let mut other = binding();
        other.contact = b"sip:a@10.0.0.10"[..].into();
        s.send(b"sip:x@h", live(other), 0);
        assert_eq!(s.overflow.len(), 2, "one waiting change per binding");
        let stamp_of = |w: Write| Change::decode(&w.value).unwrap().binding.stamp;
        assert_eq!(stamp_of(rx.recv().unwrap()), 1);
        s.flush();
        assert_eq!(stamp_of(rx.recv().unwrap()), 4, "the latest of the three");
        s.flush();
        assert_eq!(rx.recv().unwrap().contact.as_ref(), b"sip:a@10.0.0.10");
        assert_eq!(s.overflow.len(), 0);
    }

    #[test]
    fn a_loaded_binding_of_ours_that_our_files_lack_is_removed_in_redis() {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let mut owner = Owner::new(0, 1, 1_000, 0, 86_400, None);
        let mut mine = binding();
        mine.node = b"a"[..].into();
        // With --state-dir: not held here, so removed here before a kill.
        let mut s = side(tx.clone(), true);
        assert!(!s.apply(
            &mut owner,
            b"sip:x@h",
            &live(mine.clone()),
            true,
            1_000,
            &mut |_| {}
        ));
        let w = rx.try_recv().expect("a removal for Redis");
        let c = Change::decode(&w.value).unwrap();
        assert_eq!(c.kind, Kind::Removed);
        assert!(c.key() > OrderKey::of(&mine));
        assert!(owner.current(b"sip:x@h").is_none());
        // Without --state-dir, Redis is this node's memory: loaded back.
        let mut s = side(tx, false);
        assert!(s.apply(
            &mut owner,
            b"sip:x@h",
            &live(mine),
            true,
            1_000,
            &mut |_| {}
        ));
        assert_eq!(owner.current(b"sip:x@h").map(|r| r.len()), Some(1));
        assert!(rx.try_recv().is_err(), "nothing written back");
    }

    #[test]
    fn a_greater_change_that_lapsed_removes_the_binding() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(8);
        let mut owner = Owner::new(0, 1, 1_000, 0, 86_400, None);
        let mut s = side(tx, false);
        let mut b = binding();
        b.expires_at = 5_000;
        assert!(s.apply(
            &mut owner,
            b"sip:x@h",
            &live(b.clone()),
            false,
            1_000,
            &mut |_| {}
        ));
        b.stamp += 1;
        b.expires_at = 2_000;
        assert!(s.apply(&mut owner, b"sip:x@h", &live(b), false, 3_000, &mut |_| {}));
        assert_eq!(owner.current(b"sip:x@h").map(|r| r.len()), Some(0));
    }
}
