//! Building a response to a request (RFC 3261 §8.2.6): status line, the
//! request's Via list, From, To (with a tag when needed), Call-ID and CSeq
//! copied as they came, then whatever headers the caller adds, then
//! `Content-Length: 0`.

use super::header::HeaderName;
use super::name_addr::NameAddr;
use super::parse::Message;
use super::write::{Cursor, Piece, WriteError};

/// A response being written into a caller-owned buffer.
pub struct ResponseWriter<'b> {
    w: Cursor<'b>,
}

impl<'b> ResponseWriter<'b> {
    /// Starts a response to `req` with `code` and a reason phrase given in
    /// pieces (so a [`ParseError`](super::ParseError) reason needs no
    /// formatting). `to_tag` is added to To when the request's To has no tag
    /// and the response is not 100 Trying (§8.2.6.2); for a 100, a
    /// Timestamp header is copied back (§8.2.6.1).
    pub fn new(
        req: &Message<'_>,
        code: u16,
        reason: &[&[u8]],
        to_tag: Option<&[u8]>,
        out: &'b mut [u8],
    ) -> Result<Self, WriteError> {
        let mut w = Cursor { out, len: 0 };
        w.put(b"SIP/2.0 ")?;
        w.piece(&Piece::U32(u32::from(code)))?;
        w.put(b" ")?;
        for part in reason {
            w.put(part)?;
        }
        w.put(b"\r\n")?;
        let buf = req.bytes();
        let copy = |w: &mut Cursor<'_>, name: HeaderName| -> Result<(), WriteError> {
            for e in req.entries().iter().filter(|e| e.name == name as u8) {
                w.put(&buf[e.line_start as usize..e.value_end as usize])?;
                if name == HeaderName::To && code > 100 {
                    if let Some(tag) = to_tag {
                        let value = &buf[e.value_start as usize..e.value_end as usize];
                        let has_tag = NameAddr::parse(value).map_or(true, |a| a.tag().is_some());
                        if !has_tag {
                            w.put(b";tag=")?;
                            w.put(tag)?;
                        }
                    }
                }
                w.put(b"\r\n")?;
            }
            Ok(())
        };
        copy(&mut w, HeaderName::Via)?;
        copy(&mut w, HeaderName::From)?;
        copy(&mut w, HeaderName::To)?;
        copy(&mut w, HeaderName::CallId)?;
        copy(&mut w, HeaderName::CSeq)?;
        if code == 100 {
            copy(&mut w, HeaderName::Timestamp)?;
        }
        Ok(ResponseWriter { w })
    }

    /// Adds `name: value`.
    pub fn header(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, WriteError> {
        self.header_pieces(name, &[Piece::Bytes(value)])
    }

    /// Adds `name: n`.
    pub fn header_u32(&mut self, name: &str, n: u32) -> Result<&mut Self, WriteError> {
        self.header_pieces(name, &[Piece::U32(n)])
    }

    /// Adds a header whose value is built from pieces, e.g. a Contact with
    /// its remaining expires.
    pub fn header_pieces(
        &mut self,
        name: &str,
        value: &[Piece<'_>],
    ) -> Result<&mut Self, WriteError> {
        self.w.put(name.as_bytes())?;
        self.w.put(b": ")?;
        for p in value {
            self.w.piece(p)?;
        }
        self.w.put(b"\r\n")?;
        Ok(self)
    }

    /// Ends the headers with `Content-Length: 0` and the empty line; returns
    /// the length of the response.
    pub fn finish(mut self) -> Result<usize, WriteError> {
        self.w.put(b"Content-Length: 0\r\n\r\n")?;
        Ok(self.w.len)
    }
}
