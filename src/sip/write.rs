//! Building an outgoing message from an incoming one by splicing: an
//! ordered list of [`Edits`] (remove a span, insert bytes, or both) over the
//! original datagram, applied in one pass into a caller-owned buffer.
//!
//! # Invariants
//! - Nothing here allocates; edits borrow their inserted text and a message
//!   with no edits is written back byte for byte (from its start line to the
//!   end of its Content-Length-framed body).
//! - Edits never overlap. Insertions at the same offset keep the order they
//!   were added in. A buffer that is too small is an error, never a
//!   truncated message.
//! - The body is never edited, so Content-Length stays true.

use core::fmt;

use super::header::HeaderName;
use super::parse::Message;
use super::scan::ListIter;

/// Edits one outgoing message may carry. A stateless proxy needs at most
/// five (Via in, Route out, R-URI, Max-Forwards, Record-Route); a few more
/// leave room for received/rport on the incoming Via.
pub const MAX_EDITS: usize = 8;

/// Pieces one edit may insert: a header needs name, value and CRLF, plus
/// one for a number or parameter.
const MAX_PIECES: usize = 4;

/// A piece of inserted text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'e> {
    /// Bytes copied as they are.
    Bytes(&'e [u8]),
    /// A number written in decimal.
    U32(u32),
}

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The output buffer cannot hold the message.
    BufferTooSmall,
    /// More than [`MAX_EDITS`] edits, or more pieces than one edit holds.
    TooManyEdits,
    /// Two edits touch the same bytes.
    Overlap,
    /// An edit lies outside the message.
    OutOfRange,
    /// The edit needs a header the message does not have.
    NoSuchHeader(HeaderName),
    /// The edit applies to requests only.
    NotARequest,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::BufferTooSmall => f.write_str("output buffer too small"),
            WriteError::TooManyEdits => f.write_str("too many edits"),
            WriteError::Overlap => f.write_str("overlapping edits"),
            WriteError::OutOfRange => f.write_str("edit outside the message"),
            WriteError::NoSuchHeader(h) => write!(f, "no {} header to edit", h.canonical()),
            WriteError::NotARequest => f.write_str("edit applies to requests only"),
        }
    }
}

impl std::error::Error for WriteError {}

#[derive(Clone, Copy, Debug)]
struct Edit<'e> {
    start: u32,
    end: u32,
    pieces: [Piece<'e>; MAX_PIECES],
    count: u8,
}

const EMPTY_EDIT: Edit<'static> = Edit {
    start: 0,
    end: 0,
    pieces: [Piece::Bytes(b""); MAX_PIECES],
    count: 0,
};

/// An ordered set of splices over one message's bytes (the Kamailio "lumps"
/// idea, without a heap). Offsets index [`Message::bytes`].
#[derive(Clone, Debug)]
pub struct Edits<'e> {
    items: [Edit<'e>; MAX_EDITS],
    len: usize,
}

impl Default for Edits<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'e> Edits<'e> {
    /// No edits: writing gives the message back unchanged.
    pub fn new() -> Self {
        Edits {
            items: [EMPTY_EDIT; MAX_EDITS],
            len: 0,
        }
    }

    /// Number of edits recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no edit is recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces bytes `start..end` of the datagram with `pieces`.
    pub fn replace(
        &mut self,
        start: usize,
        end: usize,
        pieces: &[Piece<'e>],
    ) -> Result<(), WriteError> {
        if self.len == MAX_EDITS || pieces.len() > MAX_PIECES {
            return Err(WriteError::TooManyEdits);
        }
        if start > end {
            return Err(WriteError::OutOfRange);
        }
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
            return Err(WriteError::OutOfRange);
        };
        let mut edit = Edit {
            start,
            end,
            ..EMPTY_EDIT
        };
        edit.pieces[..pieces.len()].copy_from_slice(pieces);
        edit.count = pieces.len() as u8;
        self.items[self.len] = edit;
        self.len += 1;
        Ok(())
    }

    /// Inserts `pieces` before byte `at`.
    pub fn insert(&mut self, at: usize, pieces: &[Piece<'e>]) -> Result<(), WriteError> {
        self.replace(at, at, pieces)
    }

    /// Removes bytes `start..end`.
    pub fn remove(&mut self, start: usize, end: usize) -> Result<(), WriteError> {
        self.replace(start, end, &[])
    }

    /// Adds `Via: <value>` above every other Via (§16.6 step 8). `value` is
    /// a whole via-parm such as `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK..`.
    pub fn insert_top_via(&mut self, msg: &Message<'_>, value: &'e [u8]) -> Result<(), WriteError> {
        let at = match msg.first_entry(HeaderName::Via) {
            Some(e) => e.line_start as usize,
            None => first_header_offset(msg),
        };
        self.insert(
            at,
            &[
                Piece::Bytes(b"Via: "),
                Piece::Bytes(value),
                Piece::Bytes(b"\r\n"),
            ],
        )
    }

    /// Removes the top Via value (§16.7 step 3): the whole line when it
    /// holds one value, else just the first value and its comma.
    pub fn remove_top_via(&mut self, msg: &Message<'_>) -> Result<(), WriteError> {
        self.remove_first_value(msg, HeaderName::Via)
    }

    /// Removes the first Route value (§16.4, a loose route naming us).
    pub fn remove_first_route(&mut self, msg: &Message<'_>) -> Result<(), WriteError> {
        self.remove_first_value(msg, HeaderName::Route)
    }

    /// Removes the first value of a list header, sharing a line or not.
    pub fn remove_first_value(
        &mut self,
        msg: &Message<'_>,
        name: HeaderName,
    ) -> Result<(), WriteError> {
        let first = msg
            .values(name)
            .next()
            .ok_or(WriteError::NoSuchHeader(name))?;
        let e = msg.entries()[first.line];
        let value = &msg.bytes()[e.value_start as usize..e.value_end as usize];
        let mut items = ListIter::new(value);
        items.next();
        match items.next() {
            Some(second) => self.remove(first.offset, e.value_start as usize + second.start),
            None => self.remove(e.line_start as usize, e.line_end as usize),
        }
    }

    /// Replaces the Request-URI (§16.6 step 2, or a location lookup).
    pub fn set_request_uri(&mut self, msg: &Message<'_>, uri: &'e [u8]) -> Result<(), WriteError> {
        let (start, end) = msg.uri_span().ok_or(WriteError::NotARequest)?;
        self.replace(start, end, &[Piece::Bytes(uri)])
    }

    /// Sets Max-Forwards to `n`, replacing the value or adding the header
    /// when it is absent (§16.6 step 3).
    pub fn set_max_forwards(&mut self, msg: &Message<'_>, n: u32) -> Result<(), WriteError> {
        match msg.first_entry(HeaderName::MaxForwards) {
            Some(e) => self.replace(
                e.value_start as usize,
                e.value_end as usize,
                &[Piece::U32(n)],
            ),
            None => self.insert(
                msg.headers_end(),
                &[
                    Piece::Bytes(b"Max-Forwards: "),
                    Piece::U32(n),
                    Piece::Bytes(b"\r\n"),
                ],
            ),
        }
    }

    /// Adds `Record-Route: <value>` above any other Record-Route (§16.6
    /// step 4). `value` is a name-addr such as `<sip:192.0.2.1;lr>`.
    pub fn add_record_route(
        &mut self,
        msg: &Message<'_>,
        value: &'e [u8],
    ) -> Result<(), WriteError> {
        let at = match msg.first_entry(HeaderName::RecordRoute) {
            Some(e) => e.line_start as usize,
            None => msg.headers_end(),
        };
        self.insert(
            at,
            &[
                Piece::Bytes(b"Record-Route: "),
                Piece::Bytes(value),
                Piece::Bytes(b"\r\n"),
            ],
        )
    }

    /// Appends a header after the last one.
    pub fn add_header(
        &mut self,
        msg: &Message<'_>,
        name: &'e [u8],
        value: &'e [u8],
    ) -> Result<(), WriteError> {
        self.insert(
            msg.headers_end(),
            &[
                Piece::Bytes(name),
                Piece::Bytes(b": "),
                Piece::Bytes(value),
                Piece::Bytes(b"\r\n"),
            ],
        )
    }

    /// Writes `msg` with these edits into `out`; returns the length written.
    pub fn write(&self, msg: &Message<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
        let mut order = [0u8; MAX_EDITS];
        for (i, o) in order.iter_mut().enumerate().take(self.len) {
            *o = i as u8;
        }
        let order = &mut order[..self.len];
        // Insertion sort by (start, end): stable, so insertions at one offset
        // keep their order, and an insertion sorts before a removal that
        // starts where it is.
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && self.key(order[j - 1]) > self.key(order[j]) {
                order.swap(j - 1, j);
                j -= 1;
            }
        }
        let buf = msg.bytes();
        let end = msg.body_end();
        let mut w = Cursor { out, len: 0 };
        let mut pos = msg.msg_start();
        for &i in order.iter() {
            let e = &self.items[i as usize];
            let (s, t) = (e.start as usize, e.end as usize);
            if s < msg.msg_start() || t > end {
                return Err(WriteError::OutOfRange);
            }
            if s < pos {
                return Err(WriteError::Overlap);
            }
            w.put(&buf[pos..s])?;
            for piece in &e.pieces[..e.count as usize] {
                w.piece(piece)?;
            }
            pos = t;
        }
        w.put(&buf[pos..end])?;
        Ok(w.len)
    }

    fn key(&self, i: u8) -> (u32, u32) {
        let e = &self.items[i as usize];
        (e.start, e.end)
    }
}

fn first_header_offset(msg: &Message<'_>) -> usize {
    msg.entries()
        .first()
        .map_or(msg.headers_end(), |e| e.line_start as usize)
}

/// A bounded write position in a caller's buffer.
pub(crate) struct Cursor<'b> {
    pub(crate) out: &'b mut [u8],
    pub(crate) len: usize,
}

impl Cursor<'_> {
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let end = self.len + bytes.len();
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(WriteError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    #[inline]
    pub(crate) fn piece(&mut self, piece: &Piece<'_>) -> Result<(), WriteError> {
        match *piece {
            Piece::Bytes(b) => self.put(b),
            Piece::U32(n) => {
                let mut digits = [0u8; 10];
                self.put(write_u32(n, &mut digits))
            }
        }
    }
}

/// Formats `n` in decimal into `buf` and returns the digits, no allocation.
pub fn write_u32(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}
