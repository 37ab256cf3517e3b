//! One binding's change as the nodes of a cluster exchange it: the value
//! of its field in the AOR's Redis hash and of its entry in the stream
//! (docs/cluster.md, "What Redis holds").
//!
//! # Layout
//! ```text
//! "S1"                    magic and format version
//! 16 hex digits           stamp (ms, the change's clock)
//! 2 hex digits, bytes     node id: its length, then the id
//! 16 hex digits           Call-ID hash
//! 8 hex digits            CSeq
//! 'L' or 'R'              a live binding, or its removal
//! 16 hex digits           the binding's expiry (Unix s), for the script
//!                         to drop lapsed fields
//! u16 LE, bytes           route: how another node reaches the binding
//!                         through this one (a Route value), or empty
//! bytes                   the binding, as a record of one binding with
//!                         an empty AOR ([`AorRecord::as_bytes`])
//! ```
//! Everything from the stamp to the CSeq is the change's [`OrderKey`]: of
//! two changes of one binding, the one whose key is greater byte by byte
//! wins, here and in the Redis script alike, so both agree with no
//! arithmetic; the text form keeps the script free of binary decoding. A
//! value of another magic or version is refused ([`WireError::Version`]),
//! never guessed at: a later format gets a new version and both are read
//! during an upgrade.

use crate::location::binding::Binding;
use crate::location::record::AorRecord;

/// The magic and version that start every value.
pub const MAGIC: &[u8; 2] = b"S1";

/// Longest node id (`--node-id`): its length is two hex digits.
pub const MAX_NODE_ID: usize = 64;

/// The part of a value that orders two changes of one binding: stamp,
/// node, Call-ID hash and CSeq, as text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey(pub Box<[u8]>);

impl OrderKey {
    /// The key of `b`'s last change.
    pub fn of(b: &Binding) -> OrderKey {
        let mut out = Vec::with_capacity(44 + b.node.len());
        put_key(&mut out, b);
        OrderKey(out.into())
    }
}

fn put_key(out: &mut Vec<u8>, b: &Binding) {
    let node = &b.node[..b.node.len().min(MAX_NODE_ID)];
    put_hex(out, b.stamp, 16);
    put_hex(out, node.len() as u64, 2);
    out.extend_from_slice(node);
    put_hex(out, b.call_id, 16);
    put_hex(out, u64::from(b.cseq), 8);
}

/// What a change does to its binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The binding is (now) this.
    Live,
    /// The binding is gone (a REGISTER removed it); the binding carried
    /// is the one removed, with the removal's stamp.
    Removed,
}

/// One binding's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Live or removed.
    pub kind: Kind,
    /// The Route value another node puts in front of the binding's Path
    /// to reach it through the node it registered on (a connection or a
    /// NAT binding of that node), or empty.
    pub route: Box<[u8]>,
    /// The binding, its stamp and node included.
    pub binding: Binding,
}

/// Why a value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Not of this magic and version (another program, or a sipshard of
    /// another format).
    Version,
    /// Cut short, or a field that does not read.
    Malformed,
}

/// The node id a value names, read from its head alone: the tailer skips
/// its own node's changes (every node reads the whole stream) without
/// decoding them.
pub fn node_of(v: &[u8]) -> Option<&[u8]> {
    let rest = v.strip_prefix(MAGIC)?;
    let n = usize::try_from(parse_hex(rest.get(16..18)?)?).ok()?;
    rest.get(18..18 + n)
}

impl Change {
    /// The order key of this change.
    pub fn key(&self) -> OrderKey {
        OrderKey::of(&self.binding)
    }

    /// The value's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let rec = AorRecord::new(b"", std::slice::from_ref(&self.binding));
        let mut out = Vec::with_capacity(64 + self.route.len() + rec.as_bytes().len());
        out.extend_from_slice(MAGIC);
        put_key(&mut out, &self.binding);
        out.push(match self.kind {
            Kind::Live => b'L',
            Kind::Removed => b'R',
        });
        put_hex(&mut out, self.binding.expires_at, 16);
        let route = &self.route[..self.route.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(route.len() as u16).to_le_bytes());
        out.extend_from_slice(route);
        out.extend_from_slice(rec.as_bytes());
        out
    }

    /// Reads a value; every field is checked, and the key must be the
    /// binding's own (a value whose text and binding disagree is refused).
    pub fn decode(v: &[u8]) -> Result<Change, WireError> {
        let rest = v.strip_prefix(MAGIC).ok_or(WireError::Version)?;
        let n = rest
            .get(16..18)
            .and_then(parse_hex)
            .ok_or(WireError::Malformed)? as usize;
        let key_len = 16 + 2 + n + 16 + 8;
        let key = rest.get(..key_len).ok_or(WireError::Malformed)?;
        let kind = match rest.get(key_len) {
            Some(b'L') => Kind::Live,
            Some(b'R') => Kind::Removed,
            _ => return Err(WireError::Malformed),
        };
        let expires = rest
            .get(key_len + 1..key_len + 17)
            .and_then(parse_hex)
            .ok_or(WireError::Malformed)?;
        let rest = rest.get(key_len + 17..).ok_or(WireError::Malformed)?;
        let len = rest
            .get(..2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or(WireError::Malformed)?;
        let route = rest.get(2..2 + len).ok_or(WireError::Malformed)?;
        let rec = rest
            .get(2 + len..)
            .and_then(AorRecord::from_bytes)
            .ok_or(WireError::Malformed)?;
        if !rec.aor().is_empty() || rec.len() != 1 {
            return Err(WireError::Malformed);
        }
        let binding = rec
            .bindings()
            .next()
            .ok_or(WireError::Malformed)?
            .to_binding();
        if *OrderKey::of(&binding).0 != *key || binding.expires_at != expires {
            return Err(WireError::Malformed);
        }
        Ok(Change {
            kind,
            route: route.into(),
            binding,
        })
    }
}

fn put_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xf) as usize]);
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ConnId, Source, Transport};

    pub(crate) fn binding(contact: &str, stamp: u64, node: &str) -> Binding {
        Binding {
            contact: contact.as_bytes().into(),
            params: b";+sip.instance=\"<urn:uuid:1>\""[..].into(),
            q: Some(500),
            expires_at: 1_900_000_000,
            call_id: 0x0123_4567_89ab_cdef,
            cseq: 7,
            path: b"<sip:edge;lr>"[..].into(),
            source: Source::udp(
                "192.0.2.1:5060".parse().unwrap(),
                "198.51.100.1:5060".parse().unwrap(),
            ),
            created_at: 1_800_000_000,
            stamp,
            node: node.as_bytes().into(),
        }
    }

    #[test]
    fn round_trip_of_both_kinds_and_every_source() {
        let mut b = binding("sip:a@192.0.2.1", 1_764_000_000_123, "edge-a");
        for (kind, route) in [
            (Kind::Live, "<sip:10.0.0.1;lr;cid=ab>"),
            (Kind::Removed, ""),
        ] {
            let c = Change {
                kind,
                route: route.as_bytes().into(),
                binding: b.clone(),
            };
            assert_eq!(Change::decode(&c.encode()), Ok(c));
        }
        b.source.transport = Transport::Wss;
        b.source.conn = Some(ConnId::new(2, 9, 3));
        b.source.peer = "[2001:db8::1]:5062".parse().unwrap();
        let c = Change {
            kind: Kind::Live,
            route: Box::default(),
            binding: b,
        };
        assert_eq!(Change::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn the_key_orders_by_stamp_then_node_then_call_id_and_cseq() {
        let a = binding("sip:a@h", 1_000, "n1");
        let mut later = a.clone();
        later.stamp = 1_001;
        assert!(OrderKey::of(&later) > OrderKey::of(&a));
        let mut other_node = a.clone();
        other_node.node = b"n2"[..].into();
        assert!(OrderKey::of(&other_node) > OrderKey::of(&a));
        let mut next_cseq = a.clone();
        next_cseq.cseq = 8;
        assert!(OrderKey::of(&next_cseq) > OrderKey::of(&a));
        // Numbers compare as numbers: fixed width, lower-case hex.
        let mut big = a.clone();
        big.stamp = 0x10_0000;
        let mut small = a.clone();
        small.stamp = 0xf_ffff;
        assert!(OrderKey::of(&big) > OrderKey::of(&small));
        // The value starts with the magic then the key, so the Redis
        // script compares the same bytes.
        let c = Change {
            kind: Kind::Live,
            route: Box::default(),
            binding: a.clone(),
        };
        let v = c.encode();
        assert_eq!(&v[2..2 + c.key().0.len()], &*c.key().0);
        assert_eq!(node_of(&v), Some(&b"n1"[..]));
        assert_eq!(node_of(b"S1"), None);
        assert_eq!(&v[..2], b"S1");
        assert_eq!(&v[2..18], b"00000000000003e8");
    }

    #[test]
    fn other_versions_are_refused_and_bad_bytes_never_panic() {
        let c = Change {
            kind: Kind::Live,
            route: b"<sip:n;lr>"[..].into(),
            binding: binding("sip:a@h", 5, "n1"),
        };
        let v = c.encode();
        let mut other = v.clone();
        other[1] = b'2';
        assert_eq!(Change::decode(&other), Err(WireError::Version));
        assert_eq!(Change::decode(b"hello"), Err(WireError::Version));
        for cut in 0..v.len() {
            assert!(Change::decode(&v[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert!(Change::decode(&longer).is_err());
        // A key that does not match the binding it carries.
        let mut lying = v.clone();
        lying[17] = if lying[17] == b'0' { b'1' } else { b'0' };
        assert_eq!(Change::decode(&lying), Err(WireError::Malformed));
        for i in 0..v.len() {
            for x in [0u8, 0xff, b'z'] {
                let mut m = v.clone();
                m[i] = x;
                let _ = Change::decode(&m);
            }
        }
    }
}
