//! The bytes of a state file's entries (see the module doc of
//! [`super`]): encoding, the checksum, and decoding with the bounds checks
//! that let a torn or corrupt tail stop replay instead of panicking.

use super::{AorRecord, ENTRY_HEAD, KIND_REMOVE, KIND_SET, OLDEST_READ, VERSION};

pub(super) fn fnv1a(h: u64, data: &[u8]) -> u64 {
    data.iter().fold(h, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn checksum(len_field: [u8; 4], body: &[u8]) -> u64 {
    fnv1a(fnv1a(0xcbf2_9ce4_8422_2325, &len_field), body)
}

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    debug_assert!(u32::try_from(b.len()).is_ok());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends one entry: the len and checksum fields, then the stamp and
/// whatever `body` writes.
pub(super) fn encode_entry(out: &mut Vec<u8>, stamp: u64, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; ENTRY_HEAD]);
    out.extend_from_slice(&stamp.to_le_bytes());
    body(out);
    let body_start = start + ENTRY_HEAD;
    let len = ((out.len() - body_start) as u32).to_le_bytes();
    let sum = checksum(len, &out[body_start..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..body_start].copy_from_slice(&sum.to_le_bytes());
}

pub(super) fn encode_set(out: &mut Vec<u8>, stamp: u64, rec: &AorRecord) {
    encode_entry(out, stamp, |out| {
        out.push(KIND_SET);
        put_bytes(out, rec.as_bytes());
    });
}

pub(super) fn encode_remove(out: &mut Vec<u8>, stamp: u64, aor: &[u8]) {
    encode_entry(out, stamp, |out| {
        out.push(KIND_REMOVE);
        put_bytes(out, aor);
    });
}

// ---- decoding: never panics, whatever the bytes ----

/// One decoded change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Set(AorRecord),
    Remove(Box<[u8]>),
}

/// A cursor over untrusted bytes: every read is checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.buf.get(..n)?;
        self.buf = self.buf.get(n..)?;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<Box<[u8]>> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n).map(Box::from)
    }
}

/// Decodes an entry's body (after the checksum) of a file of format
/// `version`: its stamp and change, a Set's record in today's layout.
pub(super) fn decode_body(body: &[u8], version: u32) -> Option<(u64, Entry)> {
    let mut r = Reader { buf: body };
    let stamp = r.u64()?;
    let kind = r.u8()?;
    let bytes = r.bytes()?;
    let record = match version {
        2 => AorRecord::from_v2_bytes,
        3 => AorRecord::from_v3_bytes,
        _ => AorRecord::from_bytes,
    };
    let entry = match kind {
        KIND_SET => Entry::Set(record(&bytes)?),
        KIND_REMOVE => Entry::Remove(bytes),
        _ => return None,
    };
    r.buf.is_empty().then_some((stamp, entry))
}

/// The first entry of `buf`, in a file of format `version`, and the bytes
/// it took; None when it is torn or corrupt.
pub(super) fn decode_entry(buf: &[u8], version: u32) -> Option<(u64, Entry, usize)> {
    let mut r = Reader { buf };
    let len_field = r.array::<4>()?;
    let sum = r.u64()?;
    let len = usize::try_from(u32::from_le_bytes(len_field)).ok()?;
    let body = r.take(len)?;
    if checksum(len_field, body) != sum {
        return None;
    }
    let (stamp, entry) = decode_body(body, version)?;
    Some((stamp, entry, ENTRY_HEAD + len))
}

/// A file whose header [`load`] does not read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadHeader {
    /// Neither ours nor a torn prefix of ours.
    Foreign,
    /// Ours, of a format version this build does not read.
    Version(u32),
}

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BadHeader::Foreign => f.write_str("not a sipshard state file"),
            BadHeader::Version(v) if v < OLDEST_READ => write!(
                f,
                "a sipshard state file of format version {v}, which this sipshard does not \
                 read (it reads versions {OLDEST_READ} to {VERSION}; version 1 came only from a \
                 development build): move the directory's files aside and let the UAs \
                 register again"
            ),
            BadHeader::Version(v) => write!(
                f,
                "a sipshard state file of format version {v}, from a newer sipshard (this one \
                 reads versions {OLDEST_READ} to {VERSION})"
            ),
        }
    }
}
