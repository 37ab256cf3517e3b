//! One AOR's bindings as one immutable, packed, shared allocation.
//!
//! Every replica points at the same record, so its size is paid once per
//! AOR, but it is paid for every AOR: a million registered users make a
//! million records. The owner therefore packs the AOR and all its bindings
//! into one byte string, keeps Call-IDs only as 64-bit hashes (the
//! registrar only compares them), and readers walk the bytes through
//! [`BindingView`] without copying. The string, its length, its AOR hash
//! and the reference count share one heap block behind a thin pointer
//! (`triomphe::ThinArc`): a `std::sync::Arc<[u8]>` would be a fat pointer,
//! doubling every replica slot, and `Arc<struct with a Box<[u8]>>` is two
//! blocks (48 + 96 bytes for a typical one-binding record, against 112).
//!
//! # Layout (little-endian)
//! ```text
//! u16 aor length, aor bytes, u16 binding count, then per binding:
//!   u16 contact length, contact bytes, u16 path length, path bytes,
//!   u16 params length, params bytes (the Contact's header parameters),
//!   u16 q (0xFFFF: none), u64 expires_at, u64 created_at, u32 cseq,
//!   u64 call_id hash,
//!   peer:  u8 family (4 or 6), 4 or 16 address bytes, u16 port,
//!   u8 transport ([`Transport::code`]),
//!   local: u8 family (4 or 6), 4 or 16 address bytes, u16 port,
//!   u64 connection id (0: none; a [`ConnId`]'s generation starts at 1),
//!   u64 stamp (the change's clock, ms), u16 node length, node bytes
//! ```
//! A binding takes 69 bytes besides its four strings with IPv4 peer and
//! local addresses, 93 with IPv6 ones. This is the layout of state-file
//! format version 4. [`AorRecord::from_v3_bytes`] reads version 3's, whose
//! bindings ended at the connection id (no stamp, no node: 10 bytes
//! fewer); [`AorRecord::from_v2_bytes`] reads version 2's, whose bindings
//! had no parameters, transport, local address or connection either (they
//! ended at the peer's port: 41 or 53 bytes besides two strings).
//!
//! Only [`AorRecord::new`] writes this, and [`AorRecord::from_bytes`]
//! checks bytes from elsewhere (the state files) before trusting them, so
//! a reader never meets a malformed record; it still stops quietly rather
//! than panic if it did.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use triomphe::ThinArc;

use super::aor_hash;
use super::binding::Binding;
use crate::transport::{ConnId, Source, Transport};

/// An AOR and its bindings, immutable once built; cloning shares it (a
/// reference count), so every replica points at the same block.
#[derive(Clone)]
#[repr(transparent)]
pub struct AorRecord(ThinArc<u64, u8>);

impl PartialEq for AorRecord {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for AorRecord {}

// A record is one pointer, so that a replica slot can hold it as a word.
const _: () = assert!(size_of::<AorRecord>() == size_of::<usize>());

impl std::fmt::Debug for AorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AorRecord")
            .field("aor", &String::from_utf8_lossy(self.aor()))
            .field("bindings", &self.len())
            .finish()
    }
}

/// A binding read in place from a record. The strings and numbers are
/// fields; where the REGISTER came from is read on demand through
/// [`BindingView::source`] and its parts, which the forwarding path only
/// needs under `--nat`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BindingView<'a> {
    /// The contact URI.
    pub contact: &'a [u8],
    /// The Path values joined by ", ", or empty.
    pub path: &'a [u8],
    /// The Contact's header parameters as the UA sent them (without
    /// `expires` and `q`), or empty.
    pub params: &'a [u8],
    /// q in thousandths.
    pub q: Option<u16>,
    /// Unix second the binding lapses.
    pub expires_at: u64,
    /// Unix second it was created.
    pub created_at: u64,
    /// CSeq of the REGISTER that last wrote it.
    pub cseq: u32,
    /// Hash of that REGISTER's Call-ID.
    pub call_id: u64,
    /// The change's clock in milliseconds (see [`Binding::stamp`]).
    pub stamp: u64,
    /// The node it registered through (see [`Binding::node`]).
    pub node: &'a [u8],
    /// The packed peer, transport, local address and connection, checked
    /// when the record was built or read.
    addrs: &'a [u8],
}

impl std::fmt::Debug for BindingView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingView")
            .field("contact", &String::from_utf8_lossy(self.contact))
            .field("path", &String::from_utf8_lossy(self.path))
            .field("params", &String::from_utf8_lossy(self.params))
            .field("q", &self.q)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("cseq", &self.cseq)
            .field("call_id", &self.call_id)
            .field("stamp", &self.stamp)
            .field("node", &String::from_utf8_lossy(self.node))
            .field("source", &self.source())
            .finish()
    }
}

impl BindingView<'_> {
    /// Where the REGISTER that last wrote it came from.
    pub fn source(&self) -> Source {
        Source {
            peer: self.peer(),
            local: self.local(),
            transport: self.transport(),
            conn: self.conn(),
        }
    }

    /// The peer that REGISTER came from (`--nat` sends there).
    pub fn peer(&self) -> SocketAddr {
        read_addr(self.addrs).0
    }

    /// The transport it came on.
    pub fn transport(&self) -> Transport {
        let at = read_addr(self.addrs).1;
        self.addrs
            .get(at)
            .and_then(|&c| Transport::from_code(c))
            .unwrap_or_default()
    }

    /// Our address it arrived at.
    pub fn local(&self) -> SocketAddr {
        let at = read_addr(self.addrs).1 + 1;
        read_addr(self.addrs.get(at..).unwrap_or_default()).0
    }

    /// The connection it came on (RFC 5626: the flow the UA is reached
    /// over); None for UDP.
    pub fn conn(&self) -> Option<ConnId> {
        let id = self
            .addrs
            .last_chunk::<8>()
            .map_or(0, |b| u64::from_le_bytes(*b));
        (id != 0).then_some(ConnId(id))
    }

    /// An owned copy, for the owner to build the next record from.
    pub fn to_binding(&self) -> Binding {
        Binding {
            contact: self.contact.into(),
            params: self.params.into(),
            q: self.q,
            expires_at: self.expires_at,
            call_id: self.call_id,
            cseq: self.cseq,
            path: self.path.into(),
            source: self.source(),
            created_at: self.created_at,
            stamp: self.stamp,
            node: self.node.into(),
        }
    }
}

/// The address at the start of `b` (family, address, port) and the bytes
/// it took; the unspecified IPv4 address for bytes that hold none, which a
/// checked record never has.
fn read_addr(b: &[u8]) -> (SocketAddr, usize) {
    let mut r = Reader { buf: b };
    match r.addr() {
        Some(a) => (a, b.len() - r.buf.len()),
        None => (SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0), b.len()),
    }
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_le_bytes());
}

const NO_Q: u16 = u16::MAX;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&b[..len]);
}

impl AorRecord {
    /// Packs `aor` and `bindings` (at most 65,535 of them, each string at
    /// most 65,535 bytes: a REGISTER fits in 16 KiB, so both hold).
    pub fn new<'b>(aor: &[u8], bindings: impl IntoIterator<Item = &'b Binding>) -> AorRecord {
        let mut out = Vec::with_capacity(aor.len() + 128);
        put_bytes(&mut out, aor);
        out.extend_from_slice(&[0, 0]);
        let mut count: u16 = 0;
        for b in bindings {
            if count == u16::MAX {
                break;
            }
            count += 1;
            put_bytes(&mut out, &b.contact);
            put_bytes(&mut out, &b.path);
            put_bytes(&mut out, &b.params);
            out.extend_from_slice(&b.q.unwrap_or(NO_Q).to_le_bytes());
            out.extend_from_slice(&b.expires_at.to_le_bytes());
            out.extend_from_slice(&b.created_at.to_le_bytes());
            out.extend_from_slice(&b.cseq.to_le_bytes());
            out.extend_from_slice(&b.call_id.to_le_bytes());
            put_addr(&mut out, b.source.peer);
            out.push(b.source.transport.code());
            put_addr(&mut out, b.source.local);
            out.extend_from_slice(&b.source.conn.map_or(0, |c| c.0).to_le_bytes());
            out.extend_from_slice(&b.stamp.to_le_bytes());
            put_bytes(&mut out, &b.node);
        }
        let at = 2 + aor.len().min(usize::from(u16::MAX));
        out[at..at + 2].copy_from_slice(&count.to_le_bytes());
        AorRecord(ThinArc::from_header_and_slice(aor_hash(&out[2..at]), &out))
    }

    /// Checks bytes read back from a state file: a record only if every
    /// binding decodes and nothing trails.
    pub fn from_bytes(data: &[u8]) -> Option<AorRecord> {
        let mut r = Reader { buf: data };
        let aor = r.bytes()?;
        let count = r.u16()?;
        let mut seen = 0;
        let mut it = Bindings {
            r: Reader { buf: r.buf },
            left: count,
        };
        for _ in it.by_ref() {
            seen += 1;
        }
        (seen == count && it.r.buf.is_empty())
            .then(|| AorRecord(ThinArc::from_header_and_slice(aor_hash(aor), data)))
    }

    /// Reads a record of the version 3 layout (state files of format
    /// version 3) into today's: its bindings have stamp 0 (older than any
    /// change a cluster writes) and no node. None unless every binding
    /// decodes and nothing trails.
    pub fn from_v3_bytes(data: &[u8]) -> Option<AorRecord> {
        let mut r = Reader { buf: data };
        let aor = r.bytes()?;
        let count = r.u16()?;
        let mut bindings = Vec::new();
        for _ in 0..count {
            bindings.push(r.binding_of(false)?.to_binding());
        }
        r.buf.is_empty().then(|| AorRecord::new(aor, &bindings))
    }

    /// This record in the version 3 layout (today's without the stamps
    /// and the nodes), as the code of format version 3 wrote it: for the
    /// tests of its reading.
    #[cfg(test)]
    pub(crate) fn to_v3_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, self.aor());
        out.extend_from_slice(&(self.len() as u16).to_le_bytes());
        for b in self.bindings() {
            put_bytes(&mut out, b.contact);
            put_bytes(&mut out, b.path);
            put_bytes(&mut out, b.params);
            out.extend_from_slice(&b.q.unwrap_or(NO_Q).to_le_bytes());
            out.extend_from_slice(&b.expires_at.to_le_bytes());
            out.extend_from_slice(&b.created_at.to_le_bytes());
            out.extend_from_slice(&b.cseq.to_le_bytes());
            out.extend_from_slice(&b.call_id.to_le_bytes());
            out.extend_from_slice(b.addrs);
        }
        out
    }

    /// Reads a record of the version 2 layout (state files of format
    /// version 2) into today's: each binding came over UDP to an unknown
    /// local address and has no parameters. None unless every binding
    /// decodes and nothing trails.
    pub fn from_v2_bytes(data: &[u8]) -> Option<AorRecord> {
        let mut r = Reader { buf: data };
        let aor = r.bytes()?;
        let count = r.u16()?;
        let mut bindings = Vec::new();
        for _ in 0..count {
            bindings.push(r.v2_binding()?);
        }
        r.buf.is_empty().then(|| AorRecord::new(aor, &bindings))
    }

    /// The packed form (what the state files store).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// The canonical AOR.
    pub fn aor(&self) -> &[u8] {
        Reader {
            buf: self.as_bytes(),
        }
        .bytes()
        .unwrap_or_default()
    }

    /// The hash replicas file it under ([`aor_hash`] of the AOR).
    pub fn hash(&self) -> u64 {
        self.0.header.header
    }

    /// True when both are the same shared block (not merely equal).
    pub fn same_block(&self, other: &AorRecord) -> bool {
        self.0.as_ptr() == other.0.as_ptr()
    }

    /// How many holders share this block (replicas, mail, callers).
    pub fn holders(&self) -> usize {
        ThinArc::strong_count(&self.0)
    }

    /// The pointer, as a word a replica slot keeps (never 0); the slot now
    /// owns this reference.
    pub(crate) fn into_word(self) -> usize {
        self.0.into_raw() as usize
    }

    /// Takes back the reference a slot owned.
    ///
    /// # Safety
    /// `word` must come from [`Self::into_word`] and its reference must not
    /// be taken back twice.
    pub(crate) unsafe fn from_word(word: usize) -> AorRecord {
        // SAFETY: per the contract, a pointer from `ThinArc::into_raw` whose
        // count we own.
        AorRecord(unsafe { ThinArc::from_raw(word as *const std::ffi::c_void) })
    }

    /// The record a slot word points to, borrowed from the slot.
    ///
    /// # Safety
    /// A non-zero `word` must come from [`Self::into_word`] and its
    /// reference must stay owned (not taken back) while the borrow lives.
    pub(crate) unsafe fn borrow_word(word: &usize) -> Option<&AorRecord> {
        // SAFETY: `AorRecord` is a transparent wrapper around `ThinArc`,
        // itself a transparent wrapper around a non-null pointer (checked
        // to be one word above), so a word holding such a pointer is an
        // `AorRecord` in place; the slot's count keeps the block alive.
        (*word != 0).then(|| unsafe { &*(word as *const usize).cast::<AorRecord>() })
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.bindings().left.into()
    }

    /// True when the AOR is known but has no binding (480).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bindings, read in place.
    pub fn bindings(&self) -> Bindings<'_> {
        let mut r = Reader {
            buf: self.as_bytes(),
        };
        let ok = r.bytes().is_some();
        let left = if ok { r.u16().unwrap_or(0) } else { 0 };
        Bindings { r, left }
    }

    /// Owned copies of the bindings (for the owner's next change).
    pub fn to_bindings(&self) -> Vec<Binding> {
        self.bindings().map(|b| b.to_binding()).collect()
    }
}

/// Iterator over a record's bindings.
pub struct Bindings<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Iterator for Bindings<'a> {
    type Item = BindingView<'a>;

    fn next(&mut self) -> Option<BindingView<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = self.r.binding();
        if v.is_none() {
            self.left = 0;
        }
        v
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.buf.get(..n)?, self.buf.get(n..)?);
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n.into())
    }

    fn addr(&mut self) -> Option<SocketAddr> {
        let ip = match self.array::<1>()?[0] {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.u16()?))
    }

    /// Skips an address; None when its family is unknown or it is cut.
    fn skip_addr(&mut self) -> Option<()> {
        let n = match self.array::<1>()?[0] {
            4 => 4,
            6 => 16,
            _ => return None,
        };
        self.take(n + 2).map(|_| ())
    }

    fn binding(&mut self) -> Option<BindingView<'a>> {
        self.binding_of(true)
    }

    /// A binding of today's layout, or of version 3's without `origin`
    /// (the stamp and node).
    fn binding_of(&mut self, origin: bool) -> Option<BindingView<'a>> {
        let contact = self.bytes()?;
        let path = self.bytes()?;
        let params = self.bytes()?;
        let q = self.u16()?;
        let expires_at = u64::from_le_bytes(self.array()?);
        let created_at = u64::from_le_bytes(self.array()?);
        let cseq = u32::from_le_bytes(self.array()?);
        let call_id = u64::from_le_bytes(self.array()?);
        let start = self.buf;
        self.skip_addr()?;
        Transport::from_code(self.array::<1>()?[0])?;
        self.skip_addr()?;
        self.take(8)?;
        let addrs = &start[..start.len() - self.buf.len()];
        let (stamp, node) = match origin {
            true => (u64::from_le_bytes(self.array()?), self.bytes()?),
            false => (0, &[][..]),
        };
        Some(BindingView {
            contact,
            path,
            params,
            q: (q != NO_Q).then_some(q),
            expires_at,
            created_at,
            cseq,
            call_id,
            stamp,
            node,
            addrs,
        })
    }

    /// One binding of the version 2 layout, as a binding of today's: it
    /// came over UDP, to a local address nobody recorded (the unspecified
    /// address of the peer's family, port 0), with no parameters.
    fn v2_binding(&mut self) -> Option<Binding> {
        let contact = self.bytes()?;
        let path = self.bytes()?;
        let q = self.u16()?;
        let expires_at = u64::from_le_bytes(self.array()?);
        let created_at = u64::from_le_bytes(self.array()?);
        let cseq = u32::from_le_bytes(self.array()?);
        let call_id = u64::from_le_bytes(self.array()?);
        let peer = self.addr()?;
        let unspecified: IpAddr = match peer {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        Some(Binding {
            contact: contact.into(),
            params: Box::default(),
            q: (q != NO_Q).then_some(q),
            expires_at,
            call_id,
            cseq,
            path: path.into(),
            source: Source::udp(peer, SocketAddr::new(unspecified, 0)),
            created_at,
            stamp: 0,
            node: Box::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str, q: Option<u16>, source: &str) -> Binding {
        Binding {
            contact: contact.as_bytes().into(),
            params: b";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1"
                [..]
                .into(),
            q,
            expires_at: 1_000,
            call_id: 0xfeed,
            cseq: 7,
            path: b"<sip:edge;lr>"[..].into(),
            source: Source::udp(
                source.parse().unwrap(),
                "198.51.100.1:5060".parse().unwrap(),
            ),
            created_at: 10,
            stamp: 1_700_000_000_123,
            node: b"edge-a"[..].into(),
        }
    }

    #[test]
    fn round_trip() {
        let mut bs = vec![
            binding("sip:a@192.0.2.1", Some(500), "192.0.2.1:5060"),
            binding("sip:a@[2001:db8::1]", None, "[2001:db8::1]:5062"),
            binding("sip:a@h3", None, "192.0.2.3:5060"),
        ];
        bs[1].params = Box::default();
        bs[1].source.local = "[2001:db8::100]:5061".parse().unwrap();
        bs[2].source.transport = Transport::Wss;
        bs[2].source.conn = Some(ConnId::new(3, 77, 9));
        let rec = AorRecord::new(b"sip:a@example.com", &bs);
        assert_eq!(rec.aor(), b"sip:a@example.com");
        assert_eq!(rec.hash(), aor_hash(b"sip:a@example.com"));
        assert_eq!(rec.len(), 3);
        assert_eq!(rec.to_bindings(), bs);
        let views: Vec<_> = rec.bindings().collect();
        assert_eq!(views[0].peer(), "192.0.2.1:5060".parse().unwrap());
        assert_eq!(views[0].transport(), Transport::Udp);
        assert_eq!(views[0].conn(), None);
        assert_eq!(views[1].local(), "[2001:db8::100]:5061".parse().unwrap());
        assert_eq!(views[1].params, b"");
        assert_eq!(views[2].source(), bs[2].source);
        let again = AorRecord::from_bytes(rec.as_bytes()).unwrap();
        assert_eq!(again, rec);
        let empty = AorRecord::new(b"sip:b@example.com", &[]);
        assert!(empty.is_empty());
    }

    #[test]
    fn bytes_per_binding() {
        // The fixed part of a binding (see the layout): 69 bytes with IPv4
        // addresses, 93 with IPv6 ones.
        let mut b = binding("", None, "192.0.2.1:5060");
        b.params = Box::default();
        b.path = Box::default();
        b.node = Box::default();
        let size = |bs: &[Binding]| AorRecord::new(b"", bs).as_bytes().len();
        assert_eq!(size(std::slice::from_ref(&b)) - size(&[]), 69);
        b.source = Source::udp("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap());
        assert_eq!(size(std::slice::from_ref(&b)) - size(&[]), 93);
    }

    #[test]
    fn bad_bytes_are_refused_and_never_panic() {
        let rec = AorRecord::new(
            b"sip:a@example.com",
            &[binding("sip:a@h", None, "192.0.2.1:5060")],
        );
        let data = rec.as_bytes();
        for cut in 0..data.len() {
            assert!(AorRecord::from_bytes(&data[..cut]).is_none(), "cut {cut}");
        }
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(AorRecord::from_bytes(&longer).is_none());
        // From the end: node 2 + 6, stamp 8, conn 8, local port 2, address
        // 4, family 1, then the transport, then the peer's port 2, address
        // 4, family 1.
        let local_family = data.len() - 8 - 8 - 8 - 2 - 4 - 1;
        let transport = local_family - 1;
        let peer_family = transport - 2 - 4 - 1;
        for (at, bad) in [(local_family, 5), (transport, 5), (peer_family, 0)] {
            let mut bytes = data.to_vec();
            bytes[at] = bad;
            assert!(AorRecord::from_bytes(&bytes).is_none(), "byte {at}");
        }
    }

    fn v3_record(aor: &[u8], bindings: &[Binding]) -> Vec<u8> {
        AorRecord::new(aor, bindings).to_v3_bytes()
    }

    #[test]
    fn version_3_records_read_with_stamp_0_and_no_node() {
        let mut bs = vec![
            binding("sip:a@192.0.2.1", Some(500), "192.0.2.1:5060"),
            binding("sip:a@[2001:db8::1]", None, "[2001:db8::1]:5062"),
        ];
        bs[1].source.transport = Transport::Tls;
        bs[1].source.conn = Some(ConnId::new(1, 5, 2));
        let v3 = v3_record(b"sip:a@example.com", &bs);
        let rec = AorRecord::from_v3_bytes(&v3).unwrap();
        for b in &mut bs {
            b.stamp = 0;
            b.node = Box::default();
        }
        assert_eq!(rec.to_bindings(), bs);
        assert_eq!(rec.hash(), aor_hash(b"sip:a@example.com"));
        for cut in 0..v3.len() {
            assert!(AorRecord::from_v3_bytes(&v3[..cut]).is_none(), "cut {cut}");
        }
        let mut longer = v3.clone();
        longer.push(0);
        assert!(AorRecord::from_v3_bytes(&longer).is_none());
        // The two layouts do not pass for each other.
        assert!(AorRecord::from_bytes(&v3).is_none());
        assert!(AorRecord::from_v3_bytes(rec.as_bytes()).is_none());
    }

    /// A record of the version 2 layout, written as the code of format
    /// version 2 wrote it.
    fn v2_record(aor: &[u8], bindings: &[Binding]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, aor);
        out.extend_from_slice(&(bindings.len() as u16).to_le_bytes());
        for b in bindings {
            put_bytes(&mut out, &b.contact);
            put_bytes(&mut out, &b.path);
            out.extend_from_slice(&b.q.unwrap_or(NO_Q).to_le_bytes());
            out.extend_from_slice(&b.expires_at.to_le_bytes());
            out.extend_from_slice(&b.created_at.to_le_bytes());
            out.extend_from_slice(&b.cseq.to_le_bytes());
            out.extend_from_slice(&b.call_id.to_le_bytes());
            put_addr(&mut out, b.source.peer);
        }
        out
    }

    #[test]
    fn version_2_records_read_as_udp_bindings_without_parameters() {
        let mut bs = vec![
            binding("sip:a@192.0.2.1", Some(500), "192.0.2.1:5060"),
            binding("sip:a@[2001:db8::1]", None, "[2001:db8::1]:5062"),
        ];
        let v2 = v2_record(b"sip:a@example.com", &bs);
        assert_eq!(v2.len(), 2 + 17 + 2 + (41 + 15 + 13) + (53 + 19 + 13));
        let rec = AorRecord::from_v2_bytes(&v2).unwrap();
        bs[0].source.local = "0.0.0.0:0".parse().unwrap();
        bs[1].source.local = "[::]:0".parse().unwrap();
        for b in &mut bs {
            b.params = Box::default();
            b.stamp = 0;
            b.node = Box::default();
        }
        assert_eq!(rec.to_bindings(), bs);
        assert_eq!(rec, AorRecord::new(b"sip:a@example.com", &bs));
        assert_eq!(rec.hash(), aor_hash(b"sip:a@example.com"));
        assert!(AorRecord::from_v2_bytes(&v2_record(b"sip:e@h", &[])).is_some_and(|r| r.is_empty()));
        for cut in 0..v2.len() {
            assert!(AorRecord::from_v2_bytes(&v2[..cut]).is_none(), "cut {cut}");
        }
        let mut longer = v2.clone();
        longer.push(0);
        assert!(AorRecord::from_v2_bytes(&longer).is_none());
        // The two layouts do not pass for each other.
        assert!(AorRecord::from_bytes(&v2).is_none());
        assert!(AorRecord::from_v2_bytes(rec.as_bytes()).is_none());
    }
}
