//! A shard's read replica of the location table: a hashbrown map from the
//! 64-bit hash of an AOR to an `Arc` of its immutable record. Every replica
//! points at the same records, so memory grows by one entry per shard, not
//! by a copy; a record holds its AOR so that a lookup confirms the match.
//!
//! Lookups take no lock and allocate nothing: the AOR is canonicalised into
//! a caller's stack buffer and hashed. Writes come only as [`LocationOp`]s
//! from the AOR's owner shard.
//!
//! # Trade-offs
//! Two AORs whose 64-bit hashes collide would share an entry (the later
//! write wins); the stored AOR turns such a lookup into a miss rather than
//! a wrong answer. At a million AORs the chance of any collision is about
//! 3 in 100 million.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::proxy::branch::Hash64;
use crate::registrar::register::Binding;
use crate::sip::{unescape, Host, SipUri};

/// One AOR's bindings, immutable once published.
#[derive(Debug, PartialEq, Eq)]
pub struct AorRecord {
    /// The canonical AOR (see [`canonical_aor`]).
    pub aor: Box<[u8]>,
    /// Its bindings; empty when the AOR is known but has none (480).
    pub bindings: Box<[Binding]>,
}

/// A change from the owner shard to every replica.
#[derive(Clone, Debug)]
pub enum LocationOp {
    /// The AOR now has this record.
    Set(Arc<AorRecord>),
    /// The AOR is gone.
    Remove(Box<[u8]>),
}

/// The keys are already hashes: pass them through.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A shard's replica.
#[derive(Default)]
pub struct Replica {
    map: HashMap<u64, Arc<AorRecord>, BuildHasherDefault<IdentityHasher>>,
}

/// The hash replicas and owner selection use.
pub fn aor_hash(aor: &[u8]) -> u64 {
    Hash64::default().add(aor).finish()
}

/// The owner shard of an AOR among `shards`.
pub fn owner_of(aor: &[u8], shards: usize) -> usize {
    (aor_hash(aor) % shards.max(1) as u64) as usize
}

/// Writes the canonical AOR of a SIP URI into `out` (§10.3 step 5):
/// `sip:user@host`, user unescaped, host in lower case, no port or
/// parameters. None when it does not fit.
pub fn canonical_aor<'o>(uri: &SipUri<'_>, out: &'o mut [u8]) -> Option<&'o [u8]> {
    let scheme: &[u8] = if uri.secure { b"sips:" } else { b"sip:" };
    let mut n = scheme.len();
    out.get_mut(..n)?.copy_from_slice(scheme);
    if let Some(user) = uri.user {
        let written = unescape(user, out.get_mut(n..)?)?.len();
        n += written;
        *out.get_mut(n)? = b'@';
        n += 1;
    }
    let host = uri.host_raw;
    let dst = out.get_mut(n..n + host.len())?;
    dst.copy_from_slice(host);
    if let Host::Name(_) = uri.host {
        dst.make_ascii_lowercase();
    }
    n += host.len();
    Some(&out[..n])
}

impl Replica {
    /// Applies one change from an owner.
    pub fn apply(&mut self, op: LocationOp) {
        match op {
            LocationOp::Set(rec) => {
                self.map.insert(aor_hash(&rec.aor), rec);
            }
            LocationOp::Remove(aor) => {
                let h = aor_hash(&aor);
                if self.map.get(&h).is_some_and(|r| r.aor == aor) {
                    self.map.remove(&h);
                }
            }
        }
    }

    /// The record of a canonical AOR, if this replica has it.
    #[inline]
    pub fn lookup(&self, aor: &[u8]) -> Option<&Arc<AorRecord>> {
        self.map.get(&aor_hash(aor)).filter(|r| *r.aor == *aor)
    }

    /// The record stored under an AOR hash (the owner's timer wheel keeps
    /// hashes, not AORs).
    pub fn by_hash(&self, hash: u64) -> Option<&Arc<AorRecord>> {
        self.map.get(&hash)
    }

    /// Every record (for compaction and for handing over at start-up).
    pub fn records(&self) -> impl Iterator<Item = &Arc<AorRecord>> + '_ {
        self.map.values()
    }

    /// Number of AORs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no AOR.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(aor: &str, contacts: &[&str]) -> Arc<AorRecord> {
        Arc::new(AorRecord {
            aor: aor.as_bytes().into(),
            bindings: contacts
                .iter()
                .map(|c| Binding {
                    contact: c.as_bytes().into(),
                    q: None,
                    expires_at: 100,
                    call_id: b"c"[..].into(),
                    cseq: 1,
                    path: b""[..].into(),
                    source: "192.0.2.1:5060".parse().unwrap(),
                    created_at: 0,
                })
                .collect(),
        })
    }

    #[test]
    fn set_lookup_remove() {
        let mut r = Replica::default();
        r.apply(LocationOp::Set(record(
            "sip:bob@example.com",
            &["sip:bob@192.0.2.4"],
        )));
        let got = r.lookup(b"sip:bob@example.com").unwrap();
        assert_eq!(&*got.bindings[0].contact, b"sip:bob@192.0.2.4");
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
        assert_eq!(Arc::strong_count(&rec), 17, "one record, sixteen pointers");
        for r in &replicas {
            assert!(Arc::ptr_eq(r.lookup(b"sip:bob@example.com").unwrap(), &rec));
        }
    }

    #[test]
    fn canonical_forms() {
        let mut buf = [0u8; 64];
        let u = SipUri::parse(b"sip:%62ob@EXAMPLE.com:5070;transport=tcp").unwrap();
        assert_eq!(
            canonical_aor(&u, &mut buf),
            Some(&b"sip:bob@example.com"[..])
        );
        let u = SipUri::parse(b"sips:Bob@[2001:db8::1]").unwrap();
        assert_eq!(
            canonical_aor(&u, &mut buf),
            Some(&b"sips:Bob@[2001:db8::1]"[..])
        );
        let mut small = [0u8; 8];
        assert_eq!(canonical_aor(&u, &mut small), None);
    }

    #[test]
    fn owners_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[owner_of(format!("sip:user{i}@example.com").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
