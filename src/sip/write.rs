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
use super::parse::{HeaderValue, Message};
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
    /// A status code outside 100..=699, or a reason phrase with CR or LF.
    BadStatusLine,
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
            WriteError::BadStatusLine => f.write_str("bad status code or reason phrase"),
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
    fn remove_first_value(
        &mut self,
        msg: &Message<'_>,
        name: HeaderName,
    ) -> Result<(), WriteError> {
        let first = msg
            .values(name)
            .next()
            .ok_or(WriteError::NoSuchHeader(name))?;
        self.remove_value(msg, first)
    }

    /// Removes the last Route value (§16.4: a strict router's route set
    /// moves its last value into the Request-URI).
    pub fn remove_last_route(&mut self, msg: &Message<'_>) -> Result<(), WriteError> {
        let last = msg
            .values(HeaderName::Route)
            .last()
            .ok_or(WriteError::NoSuchHeader(HeaderName::Route))?;
        self.remove_value(msg, last)
    }

    /// Removes the first two values of a list header (our own Route and
    /// the one after it), which may share a line: one edit, so that the
    /// two removals cannot overlap.
    pub fn remove_first_two_values(
        &mut self,
        msg: &Message<'_>,
        name: HeaderName,
    ) -> Result<(), WriteError> {
        let mut vals = msg.values(name);
        let (Some(a), Some(b)) = (vals.next(), vals.next()) else {
            return Err(WriteError::NoSuchHeader(name));
        };
        if a.line != b.line {
            self.remove_value(msg, a)?;
            return self.remove_value(msg, b);
        }
        match vals.next() {
            // A third value on the same line: cut up to it.
            Some(c) if c.line == a.line => self.remove(a.offset, c.offset),
            // The two were the whole line.
            _ => {
                let e = *msg.entries().get(a.line).ok_or(WriteError::OutOfRange)?;
                self.remove(e.line_start as usize, e.line_end as usize)
            }
        }
    }

    /// Removes the first `n` values of a list header (§16.4: every Route
    /// value naming us at the top, RFC 5658 double Record-Route, and maybe
    /// a strict router's after them), however they share lines: a line
    /// whose values all go is cut whole, adjacent such lines in one edit,
    /// and a line that keeps some loses the ones before them, so that no
    /// two edits overlap.
    pub fn remove_first_values(
        &mut self,
        msg: &Message<'_>,
        name: HeaderName,
        n: usize,
    ) -> Result<(), WriteError> {
        let mut vals = msg.values(name);
        // The first value removed from the line being removed.
        let mut first: Option<HeaderValue<'_>> = None;
        // Whole lines to cut, not yet recorded: start..end.
        let mut cut: Option<(usize, usize)> = None;
        for _ in 0..n {
            let v = vals.next().ok_or(WriteError::NoSuchHeader(name))?;
            match first {
                Some(f) if f.line == v.line => {}
                Some(f) => {
                    cut = self.cut_line(msg, f.line, cut)?;
                    first = Some(v);
                }
                None => first = Some(v),
            }
        }
        let Some(f) = first else {
            return Ok(());
        };
        match vals.next() {
            Some(next) if next.line == f.line => {
                if let Some((s, e)) = cut {
                    self.remove(s, e)?;
                }
                self.remove(f.offset, next.offset)
            }
            _ => match self.cut_line(msg, f.line, cut)? {
                Some((s, e)) => self.remove(s, e),
                None => Ok(()),
            },
        }
    }

    /// Adds header line `line` to the whole lines being cut, `cut`:
    /// joined to it when adjacent, else `cut` is recorded and the line
    /// starts a new range.
    fn cut_line(
        &mut self,
        msg: &Message<'_>,
        line: usize,
        cut: Option<(usize, usize)>,
    ) -> Result<Option<(usize, usize)>, WriteError> {
        let e = *msg.entries().get(line).ok_or(WriteError::OutOfRange)?;
        let (s, t) = (e.line_start as usize, e.line_end as usize);
        match cut {
            Some((a, b)) if b == s => Ok(Some((a, t))),
            Some((a, b)) => {
                self.remove(a, b)?;
                Ok(Some((s, t)))
            }
            None => Ok(Some((s, t))),
        }
    }

    /// Removes one value of a list header (Via, Route, ...) as found by
    /// [`Message::values`]: the whole line when it is alone there, else the
    /// value and the comma that joins it to its neighbour.
    pub fn remove_value(
        &mut self,
        msg: &Message<'_>,
        v: HeaderValue<'_>,
    ) -> Result<(), WriteError> {
        let e = *msg.entries().get(v.line).ok_or(WriteError::OutOfRange)?;
        let vs = e.value_start() as usize;
        let value = &msg.bytes()[vs..e.value_end as usize];
        let mut prev_end = None;
        let mut items = ListIter::new(value);
        for item in &mut items {
            if vs + item.start == v.offset {
                break;
            }
            prev_end = Some(vs + item.start + item.text.len());
        }
        let end = v.offset + v.text.len();
        match (prev_end, items.next()) {
            // Not the last on its line: cut up to the next value.
            (_, Some(next)) => self.remove(v.offset, vs + next.start),
            // Last after others: cut from the end of the one before it.
            (Some(p), None) => self.remove(p, end),
            // Alone on its line.
            (None, None) => self.remove(e.line_start as usize, e.line_end as usize),
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
                e.value_start() as usize,
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
            // Edits stay within the start line and headers: the body is
            // never touched, so Content-Length stays true.
            if s < msg.msg_start() || t > msg.headers_end() {
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

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP c.example.com;branch=z9hG4bK0\r\n\
Via: SIP/2.0/UDP d.example.com;branch=z9hG4bKd\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@b.example.com>\r\n\
From: <sip:alice@a.example.com>;tag=1\r\n\
Call-ID: w1@a.example.com\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 5\r\n\
\r\n\
v=0\r\n";

    fn apply(msg: &Message<'_>, edits: &Edits<'_>) -> Vec<u8> {
        let mut out = vec![0u8; 2048];
        let n = edits.write(msg, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn lines(b: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(b)
            .split("\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn no_edits_is_identity() {
        let msg = Message::parse(INVITE).unwrap();
        assert_eq!(apply(&msg, &Edits::new()), INVITE);
    }

    #[test]
    fn no_edits_drops_leading_crlf_and_excess_body() {
        let data = b"\r\nMESSAGE sip:x SIP/2.0\r\nContent-Length: 2\r\n\r\nhiextra";
        let msg = Message::parse(data).unwrap();
        assert_eq!(
            apply(&msg, &Edits::new()),
            b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn insert_top_via() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.insert_top_via(&msg, b"SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKnew")
            .unwrap();
        let out = apply(&msg, &e);
        let l = lines(&out);
        assert_eq!(l[1], "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKnew");
        assert!(l[2].starts_with("Via: SIP/2.0/UDP a.example.com"));
        let again = Message::parse(&out).unwrap();
        assert_eq!(again.via().unwrap().branch, Some(&b"z9hG4bKnew"[..]));
        assert_eq!(again.vias().count(), 4);
    }

    #[test]
    fn insert_top_via_without_any_via() {
        let data = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.insert_top_via(&msg, b"SIP/2.0/UDP h;branch=z9hG4bK1")
            .unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: a\r\n\r\n"
        );
    }

    #[test]
    fn remove_top_via_sharing_a_line() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.remove_top_via(&msg).unwrap();
        let out = apply(&msg, &e);
        assert_eq!(
            lines(&out)[1],
            "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK0"
        );
        let again = Message::parse(&out).unwrap();
        let branches: Vec<_> = again.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(branches, vec![&b"z9hG4bK0"[..], b"z9hG4bKd"]);
    }

    #[test]
    fn remove_top_via_alone_on_its_line() {
        let data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKp\r\nv: SIP/2.0/UDP a;branch=z9hG4bKa\r\nCall-ID: x\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.remove_top_via(&msg).unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bKa\r\nCall-ID: x\r\n\r\n"
        );
    }

    #[test]
    fn remove_top_via_when_missing() {
        let msg = Message::parse(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n").unwrap();
        assert_eq!(
            Edits::new().remove_top_via(&msg),
            Err(WriteError::NoSuchHeader(HeaderName::Via))
        );
    }

    #[test]
    fn replace_request_uri() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.set_request_uri(&msg, b"sip:bob@192.0.2.4:5062").unwrap();
        let out = apply(&msg, &e);
        assert!(out.starts_with(b"INVITE sip:bob@192.0.2.4:5062 SIP/2.0\r\nVia:"));
        let resp = Message::parse(b"SIP/2.0 200 OK\r\n\r\n").unwrap();
        assert_eq!(
            Edits::new().set_request_uri(&resp, b"sip:x"),
            Err(WriteError::NotARequest)
        );
    }

    #[test]
    fn set_max_forwards_replaces_or_adds() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.set_max_forwards(&msg, 69).unwrap();
        let out = apply(&msg, &e);
        assert!(lines(&out).contains(&"Max-Forwards: 69".to_owned()));
        assert_eq!(out.len(), INVITE.len());

        let data = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\nbody";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.set_max_forwards(&msg, 70).unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\nMax-Forwards: 70\r\n\r\nbody"
        );
    }

    #[test]
    fn remove_first_route_line_and_shared() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.remove_first_route(&msg).unwrap();
        let again_bytes = apply(&msg, &e);
        let again = Message::parse(&again_bytes).unwrap();
        let routes: Vec<_> = again.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, vec![&b"sip:p2.example.com;lr"[..]]);

        let data = b"ACK sip:x SIP/2.0\r\nRoute: <sip:p1;lr>,<sip:p2;lr>\r\nCall-ID: a\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.remove_first_route(&msg).unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"ACK sip:x SIP/2.0\r\nRoute: <sip:p2;lr>\r\nCall-ID: a\r\n\r\n"
        );
    }

    #[test]
    fn remove_first_values_over_lines() {
        let data = b"ACK sip:x SIP/2.0\r\nRoute: <sip:p1;lr>\r\nRoute: <sip:p2;lr>, <sip:p3;lr>,<sip:p4;lr>\r\nCall-ID: a\r\nRoute: <sip:p5;lr>\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let cases: [(usize, &[u8], usize); 6] = [
            (0, &data[..], 0),
            (1, b"ACK sip:x SIP/2.0\r\nRoute: <sip:p2;lr>, <sip:p3;lr>,<sip:p4;lr>\r\nCall-ID: a\r\nRoute: <sip:p5;lr>\r\n\r\n", 1),
            (2, b"ACK sip:x SIP/2.0\r\nRoute: <sip:p3;lr>,<sip:p4;lr>\r\nCall-ID: a\r\nRoute: <sip:p5;lr>\r\n\r\n", 2),
            (3, b"ACK sip:x SIP/2.0\r\nRoute: <sip:p4;lr>\r\nCall-ID: a\r\nRoute: <sip:p5;lr>\r\n\r\n", 2),
            // Two adjacent whole lines: one edit.
            (4, b"ACK sip:x SIP/2.0\r\nCall-ID: a\r\nRoute: <sip:p5;lr>\r\n\r\n", 1),
            (5, b"ACK sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n", 2),
        ];
        for (n, want, count) in cases {
            let mut e = Edits::new();
            e.remove_first_values(&msg, HeaderName::Route, n).unwrap();
            assert_eq!(apply(&msg, &e), want, "{n}");
            assert_eq!(e.len(), count, "{n}");
        }
        let mut e = Edits::new();
        assert_eq!(
            e.remove_first_values(&msg, HeaderName::Route, 6),
            Err(WriteError::NoSuchHeader(HeaderName::Route))
        );
    }

    #[test]
    fn remove_last_route_and_middle_values() {
        let data = b"ACK sip:x SIP/2.0\r\nRoute: <sip:p1;lr>, <sip:p2;lr>,<sip:p3;lr>\r\nCall-ID: a\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.remove_last_route(&msg).unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"ACK sip:x SIP/2.0\r\nRoute: <sip:p1;lr>, <sip:p2;lr>\r\nCall-ID: a\r\n\r\n"
        );
        let middle = msg.values(HeaderName::Route).nth(1).unwrap();
        let mut e = Edits::new();
        e.remove_value(&msg, middle).unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"ACK sip:x SIP/2.0\r\nRoute: <sip:p1;lr>, <sip:p3;lr>\r\nCall-ID: a\r\n\r\n"
        );
        // The last Route alone on its line goes with its line.
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.remove_last_route(&msg).unwrap();
        let out = apply(&msg, &e);
        let again = Message::parse(&out).unwrap();
        let routes: Vec<_> = again.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, vec![&b"sip:p1.example.com;lr"[..]]);
    }

    #[test]
    fn add_record_route_above_others() {
        let data = b"INVITE sip:x SIP/2.0\r\nRecord-Route: <sip:p2;lr>\r\nCall-ID: a\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        let mut e = Edits::new();
        e.add_record_route(&msg, b"<sip:192.0.2.1;lr>").unwrap();
        let out = apply(&msg, &e);
        let again = Message::parse(&out).unwrap();
        let rr: Vec<_> = again.record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(rr, vec![&b"sip:192.0.2.1;lr"[..], b"sip:p2;lr"]);

        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.add_record_route(&msg, b"<sip:192.0.2.1;lr>").unwrap();
        let out = apply(&msg, &e);
        assert!(lines(&out).contains(&"Record-Route: <sip:192.0.2.1;lr>".to_owned()));
    }

    #[test]
    fn a_whole_forward() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.insert_top_via(&msg, b"SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKf")
            .unwrap();
        e.remove_first_route(&msg).unwrap();
        e.set_max_forwards(&msg, 69).unwrap();
        e.add_record_route(&msg, b"<sip:192.0.2.9;lr>").unwrap();
        e.set_request_uri(&msg, b"sip:bob@192.0.2.4").unwrap();
        let out = apply(&msg, &e);
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@192.0.2.4"[..]));
        assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bKf"[..]));
        assert_eq!(m.max_forwards(), Ok(Some(69)));
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.record_routes().count(), 1);
        assert_eq!(m.body(), b"v=0\r\n");
        assert_eq!(m.call_id(), Ok(&b"w1@a.example.com"[..]));
    }

    #[test]
    fn buffer_too_small_is_an_error() {
        let msg = Message::parse(INVITE).unwrap();
        let mut out = vec![0u8; INVITE.len() - 1];
        assert_eq!(
            Edits::new().write(&msg, &mut out),
            Err(WriteError::BufferTooSmall)
        );
        let mut e = Edits::new();
        e.insert_top_via(&msg, b"SIP/2.0/UDP h;branch=z9hG4bK1")
            .unwrap();
        let mut out = vec![0u8; INVITE.len() + 5];
        assert_eq!(e.write(&msg, &mut out), Err(WriteError::BufferTooSmall));
    }

    #[test]
    fn overlapping_and_out_of_range_edits_are_refused() {
        let msg = Message::parse(INVITE).unwrap();
        let mut e = Edits::new();
        e.remove_top_via(&msg).unwrap();
        e.remove_top_via(&msg).unwrap();
        let mut out = [0u8; 2048];
        assert_eq!(e.write(&msg, &mut out), Err(WriteError::Overlap));
        let mut e = Edits::new();
        e.remove(0, INVITE.len() + 1).unwrap();
        assert_eq!(e.write(&msg, &mut out), Err(WriteError::OutOfRange));
        let mut e = Edits::new();
        e.insert(INVITE.len() - 2, &[Piece::Bytes(b"x")]).unwrap();
        assert_eq!(
            e.write(&msg, &mut out),
            Err(WriteError::OutOfRange),
            "no body edits"
        );
        assert_eq!(Edits::new().remove(5, 4), Err(WriteError::OutOfRange));
    }

    #[test]
    fn too_many_edits() {
        let mut e = Edits::new();
        for _ in 0..MAX_EDITS {
            e.insert(0, &[]).unwrap();
        }
        assert_eq!(e.insert(0, &[]), Err(WriteError::TooManyEdits));
        let p = Piece::Bytes(b"x");
        assert_eq!(
            Edits::new().insert(0, &[p, p, p, p, p]),
            Err(WriteError::TooManyEdits)
        );
    }

    #[test]
    fn insertions_at_one_offset_keep_their_order() {
        let msg = Message::parse(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        let mut e = Edits::new();
        let at = msg.headers_end();
        e.insert(at, &[Piece::Bytes(b"A: 1\r\n")]).unwrap();
        e.insert(
            at,
            &[
                Piece::Bytes(b"B: "),
                Piece::U32(4_294_967_295),
                Piece::Bytes(b"\r\n"),
            ],
        )
        .unwrap();
        assert_eq!(
            apply(&msg, &e),
            b"OPTIONS sip:x SIP/2.0\r\nA: 1\r\nB: 4294967295\r\n\r\n"
        );
    }

    #[test]
    fn u32_formatting() {
        let mut b = [0u8; 10];
        assert_eq!(write_u32(0, &mut b), b"0");
        assert_eq!(write_u32(70, &mut b), b"70");
        assert_eq!(write_u32(u32::MAX, &mut b), b"4294967295");
    }
}
