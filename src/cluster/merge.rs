//! How a node folds another node's change of a binding into an AOR's
//! bindings (docs/cluster.md, "Conflicts").
//!
//! Per binding (one contact of one AOR), the change with the greater
//! [`OrderKey`] wins: the later stamp, then the node id, then the Call-ID
//! hash and the CSeq. A registrar stamps a change past every change of
//! that binding it has seen, so §10.3's rule (the same Call-ID with a
//! higher CSeq replaces, a lower one is refused) holds across nodes
//! whenever the node applying the later REGISTER had seen the earlier one;
//! the registrar itself refuses the out-of-order REGISTER before any stamp
//! is given. Two changes that raced through two nodes within the link's
//! delay are ordered by their stamps, then node ids: last writer wins, the
//! same on every node and in Redis, whatever order they arrive in.
//!
//! A removal wins the same way and leaves a [`Tombstone`] for a while, so
//! that an older change still on its way cannot bring the binding back.

use std::collections::HashMap;

use super::wire::{Change, Kind, OrderKey};
use crate::location::binding::Binding;
use crate::registrar::save::same_contact;

/// How long a removal is remembered against older changes still on their
/// way (seconds): far longer than the link's delay, short enough that a
/// node's memory of removals stays small.
pub const TOMBSTONE_SECS: u64 = 600;

/// A removal remembered: its key and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The removal's order key.
    pub key: OrderKey,
    /// Unix second after which it is forgotten.
    pub until: u64,
}

/// One owner shard's removals of the last [`TOMBSTONE_SECS`], by AOR hash
/// and contact.
#[derive(Default)]
pub struct Tombstones {
    map: HashMap<(u64, Box<[u8]>), Tombstone>,
    swept: u64,
}

impl Tombstones {
    /// The removal remembered for `contact` of the AOR hashed `aor`.
    pub fn get(&self, aor: u64, contact: &[u8]) -> Option<&Tombstone> {
        self.map.get(&(aor, contact.into()))
    }

    /// Remembers a removal unless a greater one is remembered already.
    pub fn put(&mut self, aor: u64, contact: &[u8], key: OrderKey, now: u64) {
        let until = now + TOMBSTONE_SECS;
        let slot = self.map.entry((aor, contact.into()));
        let t = slot.or_insert(Tombstone {
            key: key.clone(),
            until,
        });
        if key >= t.key {
            *t = Tombstone { key, until };
        }
    }

    /// Forgets what is past its time; cheap to call every loop (it looks
    /// once a second).
    pub fn sweep(&mut self, now: u64) {
        if now == self.swept {
            return;
        }
        self.swept = now;
        self.map.retain(|_, t| t.until > now);
        if self.map.is_empty() && self.map.capacity() > 1024 {
            self.map = HashMap::new();
        }
    }

    /// Removals remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a change did.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// It lost (or was already in): the bindings stay as they are.
    Unchanged,
    /// The bindings after it, and whether it was a removal that won (to
    /// remember as a tombstone).
    Changed(Vec<Binding>),
}

/// Folds `change` into `current` (an AOR's live bindings) on node `me`.
/// `tombstone` is the removal remembered for the change's contact, if
/// any. A live binding from another node that is reached through it
/// (`change.route`) gets that route in front of its Path. At most
/// `max_contacts` remain: the oldest (by creation, then key) go, which
/// every node decides alike.
pub fn merge(
    current: &[Binding],
    change: &Change,
    me: &[u8],
    tombstone: Option<&Tombstone>,
    max_contacts: usize,
) -> Merged {
    let key = change.key();
    if tombstone.is_some_and(|t| t.key >= key) {
        return Merged::Unchanged;
    }
    let found = current
        .iter()
        .position(|b| same_contact(&b.contact, &change.binding.contact));
    if let Some(i) = found {
        if OrderKey::of(&current[i]) >= key {
            return Merged::Unchanged;
        }
    }
    let mut next = current.to_vec();
    match change.kind {
        Kind::Removed => match found {
            Some(i) => {
                next.remove(i);
            }
            None => return Merged::Unchanged,
        },
        Kind::Live => {
            let b = imported(change, me);
            match found {
                Some(i) => next[i] = b,
                None => next.push(b),
            }
        }
    }
    if next.len() > max_contacts {
        next.sort_by_cached_key(|b| (b.created_at, OrderKey::of(b)));
        let extra = next.len() - max_contacts;
        next.drain(..extra);
    }
    Merged::Changed(next)
}

/// The binding as this node keeps it: another node's, reached through
/// that node, has its route first in its Path (RFC 3327 §5.1: the first
/// Path value is the next hop, as a registrar-side proxy's Path would be).
pub fn imported(change: &Change, me: &[u8]) -> Binding {
    let mut b = change.binding.clone();
    if *b.node != *me && !change.route.is_empty() {
        let mut path = change.route.to_vec();
        if !b.path.is_empty() {
            path.extend_from_slice(b", ");
            path.extend_from_slice(&b.path);
        }
        b.path = path.into();
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Source;

    fn binding(contact: &str, stamp: u64, node: &str) -> Binding {
        Binding {
            contact: contact.as_bytes().into(),
            params: Box::default(),
            q: None,
            expires_at: 2_000_000_000,
            call_id: 1,
            cseq: 1,
            path: Box::default(),
            source: Source::udp(
                "192.0.2.1:5060".parse().unwrap(),
                "198.51.100.1:5060".parse().unwrap(),
            ),
            created_at: stamp / 1000,
            stamp,
            node: node.as_bytes().into(),
        }
    }

    fn live(b: Binding) -> Change {
        Change {
            kind: Kind::Live,
            route: Box::default(),
            binding: b,
        }
    }

    fn removed(b: Binding) -> Change {
        Change {
            kind: Kind::Removed,
            route: Box::default(),
            binding: b,
        }
    }

    fn bindings(m: Merged) -> Vec<Binding> {
        match m {
            Merged::Changed(b) => b,
            Merged::Unchanged => panic!("unchanged"),
        }
    }

    #[test]
    fn the_later_stamp_wins_in_either_order() {
        let old = binding("sip:a@192.0.2.1", 1_000, "b");
        let new = binding("sip:a@192.0.2.1", 2_000, "c");
        let after = bindings(merge(
            std::slice::from_ref(&old),
            &live(new.clone()),
            b"a",
            None,
            10,
        ));
        assert_eq!(after, vec![new.clone()]);
        assert_eq!(
            merge(std::slice::from_ref(&new), &live(old), b"a", None, 10),
            Merged::Unchanged
        );
        assert_eq!(
            merge(
                std::slice::from_ref(&new),
                &live(new.clone()),
                b"a",
                None,
                10
            ),
            Merged::Unchanged
        );
    }

    #[test]
    fn equal_stamps_are_broken_by_node_then_call_id_and_cseq() {
        let from_b = binding("sip:a@h", 1_000, "b");
        let from_c = binding("sip:a@h", 1_000, "c");
        for (current, incoming) in [(&from_b, &from_c), (&from_c, &from_b)] {
            let got = match merge(
                std::slice::from_ref(current),
                &live(incoming.clone()),
                b"a",
                None,
                10,
            ) {
                Merged::Changed(b) => b,
                Merged::Unchanged => vec![current.clone()],
            };
            assert_eq!(got, vec![from_c.clone()], "node c wins either way");
        }
        let mut higher_cseq = from_b.clone();
        higher_cseq.cseq = 2;
        let got = bindings(merge(
            std::slice::from_ref(&from_b),
            &live(higher_cseq.clone()),
            b"a",
            None,
            10,
        ));
        assert_eq!(got, vec![higher_cseq]);
    }

    #[test]
    fn three_nodes_converge_whatever_the_order() {
        // The same four changes of two contacts, applied in every order,
        // leave the same bindings.
        let changes = [
            live(binding("sip:a@h1", 1_000, "a")),
            live(binding("sip:a@h1", 1_500, "b")),
            removed(binding("sip:a@h1", 1_200, "c")),
            live(binding("sip:a@h2", 900, "c")),
        ];
        let mut results = Vec::new();
        let orders = [
            [0, 1, 2, 3],
            [3, 2, 1, 0],
            [2, 0, 3, 1],
            [1, 3, 0, 2],
            [2, 1, 0, 3],
        ];
        for order in orders {
            let mut state: Vec<Binding> = Vec::new();
            let mut tombs = Tombstones::default();
            for i in order {
                let c = &changes[i];
                let t = tombs.get(7, &c.binding.contact).cloned();
                if let Merged::Changed(next) = merge(&state, c, b"x", t.as_ref(), 10) {
                    state = next;
                }
                if c.kind == Kind::Removed {
                    tombs.put(7, &c.binding.contact, c.key(), 0);
                }
            }
            state.sort_by(|x, y| x.contact.cmp(&y.contact));
            results.push(state);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        let contacts: Vec<_> = results[0].iter().map(|b| b.stamp).collect();
        assert_eq!(
            contacts,
            vec![1_500, 900],
            "b's later change beats c's removal"
        );
    }

    #[test]
    fn a_removal_leaves_a_tombstone_that_older_changes_do_not_pass() {
        let b = binding("sip:a@h", 1_000, "b");
        let gone = removed(binding("sip:a@h", 2_000, "c"));
        assert_eq!(
            bindings(merge(std::slice::from_ref(&b), &gone, b"a", None, 10)),
            vec![]
        );
        let mut tombs = Tombstones::default();
        tombs.put(7, b"sip:a@h", gone.key(), 100);
        let t = tombs.get(7, b"sip:a@h");
        assert_eq!(merge(&[], &live(b.clone()), b"a", t, 10), Merged::Unchanged);
        let newer = binding("sip:a@h", 3_000, "b");
        assert_eq!(
            bindings(merge(&[], &live(newer.clone()), b"a", t, 10)),
            vec![newer]
        );
        tombs.sweep(100 + TOMBSTONE_SECS);
        assert!(tombs.is_empty(), "forgotten after its time");
    }

    #[test]
    fn another_nodes_binding_gets_its_route_first_and_ours_does_not() {
        let mut b = binding("sip:a@10.0.0.9", 1_000, "b");
        b.path = b"<sip:edge;lr>"[..].into();
        let c = Change {
            kind: Kind::Live,
            route: b"<sip:192.0.2.2:5060;lr;cid=x>"[..].into(),
            binding: b,
        };
        assert_eq!(
            &*imported(&c, b"a").path,
            b"<sip:192.0.2.2:5060;lr;cid=x>, <sip:edge;lr>"
        );
        assert_eq!(&*imported(&c, b"b").path, b"<sip:edge;lr>");
    }

    #[test]
    fn max_contacts_keeps_the_newest_on_every_node() {
        let current: Vec<_> = (0..3)
            .map(|i| binding(&format!("sip:a@h{i}"), 1_000 * (i + 1), "a"))
            .collect();
        let got = bindings(merge(
            &current,
            &live(binding("sip:a@h9", 9_000, "b")),
            b"a",
            None,
            3,
        ));
        let stamps: Vec<_> = got.iter().map(|b| b.stamp).collect();
        assert_eq!(stamps, vec![2_000, 3_000, 9_000]);
    }
}
