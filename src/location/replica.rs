//! A shard's read replica of the location table: every AOR's record,
//! found by the 64-bit hash of the AOR. Every replica points at the same
//! immutable records (shared, reference-counted), so memory grows by one slot per shard, not by
//! a copy; a record holds its AOR, so a lookup confirms the match.
//!
//! Lookups take no lock and allocate nothing: the AOR is canonicalised into
//! a caller's stack buffer and hashed. Writes come only as [`LocationOp`]s
//! from the AOR's owner shard.
//!
//! # Why not a hashbrown map
//! With 16 shards a slot is paid 16 times per AOR. A `HashMap<u64, Arc<_>>`
//! costs 17 bytes per bucket at 47-87% load (power-of-two growth), 20 to
//! 36 bytes per AOR per shard, which alone broke the 400 bytes per binding
//! aim at 16 shards (803 bytes measured with the old layout, see
//! perf/RESULTS.md). This table keeps a 1-byte tag array beside an array of
//! record pointers (8 bytes: the hash lives in the record), grows by an
//! eighth (any size, indexed by multiply-shift) and stays 80-90% full:
//! 10 to 11.3 bytes per AOR per shard. Linear probing scans the tags, a
//! contiguous byte array, and follows a pointer only when a tag matches
//! (1 in 255 for a stranger).
//!
//! # Trade-offs
//! - Two AORs whose 64-bit hashes collide would share a slot (the later
//!   write wins); the stored AOR turns such a lookup into a miss rather than
//!   a wrong answer. At a million AORs the chance of any collision is about
//!   3 in 100 million.
//! - Growing re-reads every record's hash (one pointer per AOR): tens of
//!   milliseconds per shard at a million AORs, once per 12.5% growth; the
//!   shard's socket buffer holds the datagrams meanwhile, and their answers
//!   wait (the REGISTER p99 at 100,000 users, perf/RESULTS.md, "The p99 at
//!   100,000 users").
//!   `--expected-aors` sizes the table up front so that it does not grow.

use std::hash::{BuildHasherDefault, Hasher};

use super::pages::Pages;
use crate::hash::Hash64;

pub use super::record::AorRecord;

/// A change from the owner shard to every replica.
#[derive(Clone, Debug)]
pub enum LocationOp {
    /// The AOR now has this record.
    Set(AorRecord),
    /// The AOR is gone.
    Remove(Box<[u8]>),
}

/// The keys are already hashes: pass them through (for callers that keep
/// their own maps keyed by AOR hash).
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by AOR hash.
pub type ByHash<V> = hashbrown::HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// A shard's replica.
///
/// A slot holds a record's pointer as a word ([`AorRecord::into_word`];
/// 0: empty): the table owns one reference per filled slot and gives it
/// back when the slot is overwritten or emptied, or the table dropped. Slots are plain words so
/// that the arrays can live in pages from `mmap` (see [`super::pages`]).
#[derive(Default)]
pub struct Replica {
    /// 0: empty; else a byte of the hash (never 0).
    tags: Pages<u8>,
    slots: Pages<usize>,
    len: usize,
}

impl Drop for Replica {
    fn drop(&mut self) {
        for &p in self.slots.as_slice() {
            if p != 0 {
                // SAFETY: a filled slot owns one reference of the record it
                // points to (see the type's comment); nothing uses the slot
                // after this.
                drop(unsafe { AorRecord::from_word(p) });
            }
        }
    }
}

/// The record a slot word (or a copy of one) points to, borrowed with it.
fn record_at(word: &usize) -> Option<&AorRecord> {
    // SAFETY: non-zero slot words come from `AorRecord::into_word` and the
    // table owns their reference until it overwrites or empties the slot,
    // which needs `&mut self` and so ends every borrow first.
    unsafe { AorRecord::borrow_word(word) }
}

/// Most full a table gets before it grows (90%): linear probing then
/// scans about 5 tags for a hit and 50 (one cache line) for a miss.
const MAX_LOAD_NUM: usize = 90;
const SMALLEST: usize = 64;

fn tag_of(hash: u64) -> u8 {
    // The low byte: the slot index comes from the high bits.
    (hash as u8).max(1)
}

/// The hash replicas and owner selection use.
pub fn aor_hash(aor: &[u8]) -> u64 {
    Hash64::default().add(aor).finish()
}

/// The owner shard of an AOR among `shards`.
pub fn owner_of(aor: &[u8], shards: usize) -> usize {
    (aor_hash(aor) % shards.max(1) as u64) as usize
}

impl Replica {
    /// A replica with room for `aors` before it first grows.
    pub fn with_capacity(aors: usize) -> Replica {
        let size = (aors * 100 / MAX_LOAD_NUM + 1).max(SMALLEST);
        Replica {
            tags: Pages::zeroed(size),
            slots: Pages::zeroed(size),
            len: 0,
        }
    }

    /// The slot where a hash's probe starts (multiply-shift: any size).
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding `hash`, or None.
    fn find(&self, hash: u64) -> Option<usize> {
        let (tags, slots) = (self.tags.as_slice(), self.slots.as_slice());
        if slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        for _ in 0..slots.len() {
            match tags[i] {
                0 => return None,
                t if t == tag && record_at(&slots[i]).is_some_and(|r| r.hash() == hash) => {
                    return Some(i);
                }
                _ => {}
            }
            i = self.next(i);
        }
        None
    }

    /// Applies one change from an owner.
    pub fn apply(&mut self, op: LocationOp) {
        match op {
            LocationOp::Set(rec) => self.insert(rec),
            LocationOp::Remove(aor) => {
                let h = aor_hash(&aor);
                if let Some(i) = self.find(h) {
                    if record_at(&self.slots.as_slice()[i]).is_some_and(|r| r.aor() == &*aor) {
                        self.remove_at(i);
                    }
                }
            }
        }
    }

    fn insert(&mut self, rec: AorRecord) {
        let hash = rec.hash();
        let raw = rec.into_word();
        if let Some(i) = self.find(hash) {
            let old = std::mem::replace(&mut self.slots.as_mut_slice()[i], raw);
            // SAFETY: the slot owned one reference of `old`; it owns `raw`
            // now.
            drop(unsafe { AorRecord::from_word(old) });
            return;
        }
        if (self.len + 1) * 100 > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        self.place(hash, raw);
        self.len += 1;
    }

    /// Puts a pointer in the first free slot of its probe run.
    fn place(&mut self, hash: u64, raw: usize) {
        let mut i = self.home(hash);
        while self.tags.as_slice()[i] != 0 {
            i = self.next(i);
        }
        self.tags.as_mut_slice()[i] = tag_of(hash);
        self.slots.as_mut_slice()[i] = raw;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() + self.slots.len() / 8).max(SMALLEST);
        let old = std::mem::replace(&mut self.slots, Pages::zeroed(size));
        self.tags = Pages::zeroed(size);
        for raw in old.as_slice() {
            if let Some(rec) = record_at(raw) {
                let hash = rec.hash();
                self.place(hash, *raw);
            }
        }
        // `old` only held words now owned by the new slots: unmapping it
        // gives back no count.
    }

    /// Empties slot `i` and shifts back the entries of its probe run that
    /// would no longer be found (deletion without tombstones).
    fn remove_at(&mut self, mut i: usize) {
        let old = std::mem::take(&mut self.slots.as_mut_slice()[i]);
        self.tags.as_mut_slice()[i] = 0;
        self.len -= 1;
        // SAFETY: the slot owned one reference of `old`, now emptied.
        drop(unsafe { AorRecord::from_word(old) });
        let mut j = self.next(i);
        while self.tags.as_slice()[j] != 0 {
            let raw = self.slots.as_slice()[j];
            let home = record_at(&raw).map_or(j, |r| self.home(r.hash()));
            // Move j back to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                let tag = self.tags.as_slice()[j];
                self.tags.as_mut_slice()[i] = tag;
                self.slots.as_mut_slice()[i] = raw;
                self.tags.as_mut_slice()[j] = 0;
                self.slots.as_mut_slice()[j] = 0;
                i = j;
            }
            j = self.next(j);
        }
    }

    /// The record of a canonical AOR, if this replica has it.
    #[inline]
    pub fn lookup(&self, aor: &[u8]) -> Option<&AorRecord> {
        let i = self.find(aor_hash(aor))?;
        record_at(&self.slots.as_slice()[i]).filter(|r| r.aor() == aor)
    }

    /// The same, as a shared pointer the caller keeps (the owner's next
    /// change starts from it).
    pub fn lookup_shared(&self, aor: &[u8]) -> Option<AorRecord> {
        self.lookup(aor).cloned()
    }

    /// The record stored under an AOR hash (the owner's timer wheel keeps
    /// hashes, not AORs).
    pub fn by_hash(&self, hash: u64) -> Option<AorRecord> {
        record_at(&self.slots.as_slice()[self.find(hash)?]).cloned()
    }

    /// Every record (for compaction and for handing over at start-up).
    pub fn records(&self) -> impl Iterator<Item = &AorRecord> + '_ {
        self.slots.as_slice().iter().filter_map(record_at)
    }

    /// Number of AORs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no AOR.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the table itself takes (not the shared records).
    pub fn table_bytes(&self) -> usize {
        self.tags.len() + self.slots.len() * size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::binding::Binding;
    use proptest::prelude::*;

    fn record(aor: &str, contacts: &[&str]) -> AorRecord {
        let bindings: Vec<Binding> = contacts
            .iter()
            .map(|c| Binding {
                contact: c.as_bytes().into(),
                q: None,
                expires_at: 100,
                call_id: 1,
                cseq: 1,
                path: b""[..].into(),
                params: b""[..].into(),
                source: crate::transport::Source::udp(
                    "192.0.2.1:5060".parse().unwrap(),
                    "192.0.2.100:5060".parse().unwrap(),
                ),
                created_at: 0,
                stamp: 0,
                node: Box::default(),
            })
            .collect();
        AorRecord::new(aor.as_bytes(), &bindings)
    }

    #[test]
    fn aors_that_once_collided_keep_their_own_records() {
        // These pairs had one hash under the old multiply hash, and the
        // second REGISTER replaced the first user's record (found by
        // scripts/attack.sh).
        let mut r = Replica::default();
        let users = [
            "10002", "10089", "10003", "10008", "10009", "97403", "97488",
        ];
        for u in users {
            let aor = format!("sip:{u}@example.test");
            r.apply(LocationOp::Set(record(&aor, &["sip:x@192.0.2.1"])));
        }
        assert_eq!(r.len(), users.len());
        for u in users {
            let aor = format!("sip:{u}@example.test");
            assert_eq!(
                r.lookup(aor.as_bytes()).map(|x| x.aor()),
                Some(aor.as_bytes())
            );
        }
    }

    #[test]
    fn set_lookup_remove() {
        let mut r = Replica::default();
        r.apply(LocationOp::Set(record(
            "sip:bob@example.com",
            &["sip:bob@192.0.2.4"],
        )));
        let got = r.lookup(b"sip:bob@example.com").unwrap();
        assert_eq!(got.bindings().next().unwrap().contact, b"sip:bob@192.0.2.4");
        assert!(r.lookup(b"sip:alice@example.com").is_none());
        r.apply(LocationOp::Remove(b"sip:bob@example.com"[..].into()));
        assert!(r.is_empty());
    }

    #[test]
    fn replicas_share_one_record() {
        let rec = record("sip:bob@example.com", &["sip:bob@192.0.2.4"]);
        let mut replicas: Vec<Replica> = (0..16).map(|_| Replica::default()).collect();
        for r in &mut replicas {
            r.apply(LocationOp::Set(rec.clone()));
        }
        assert_eq!(rec.holders(), 17, "one record, sixteen pointers");
        for r in &replicas {
            assert!(r.lookup(b"sip:bob@example.com").unwrap().same_block(&rec));
        }
        drop(replicas);
        assert_eq!(
            rec.holders(),
            1,
            "dropping the tables gives every reference back"
        );
    }

    #[test]
    fn owners_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[owner_of(format!("sip:user{i}@example.com").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    proptest! {
        /// The table against a plain map: random inserts, replacements and
        /// removals (which shift probe runs back) over a small key space,
        /// so runs collide and wrap around the end of the table.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((0u16..300, any::<bool>()), 1..2000)) {
            let mut table = Replica::default();
            let mut model = std::collections::HashMap::new();
            for (k, insert) in ops {
                let aor = format!("sip:u{k}@example.com");
                if insert {
                    let rec = record(&aor, &["sip:x@192.0.2.1"]);
                    model.insert(aor.clone(), rec.clone());
                    table.apply(LocationOp::Set(rec));
                } else {
                    model.remove(&aor);
                    table.apply(LocationOp::Remove(aor.as_bytes().into()));
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for k in 0u16..300 {
                let aor = format!("sip:u{k}@example.com");
                let got = table.lookup(aor.as_bytes());
                let want = model.get(&aor);
                prop_assert_eq!(got.is_some(), want.is_some());
                if let (Some(g), Some(w)) = (got, want) {
                    prop_assert!(g.same_block(w));
                }
            }
            prop_assert_eq!(table.records().count(), model.len());
        }
    }

    #[test]
    fn a_table_stays_between_80_and_90_percent_full() {
        let mut t = Replica::default();
        for i in 0..100_000 {
            t.apply(LocationOp::Set(record(&format!("sip:u{i}@e"), &[])));
            if i > 1000 {
                let load = t.len() as f64 / t.slots.len() as f64;
                assert!((0.79..=0.901).contains(&load), "{i}: {load}");
            }
        }
    }
}
