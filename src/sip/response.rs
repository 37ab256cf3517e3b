//! Building a response to a request (RFC 3261 §8.2.6): status line, the
//! request's Via list, From, To (with a tag when needed), Call-ID and CSeq
//! copied as they came, then whatever headers the caller adds, then
//! `Content-Length: 0`.

use super::header::HeaderName;
use super::name_addr::NameAddr;
use super::parse::Message;
use super::write::{Cursor, Piece, WriteError};

/// A change to the top Via of the copied request, by offsets in the
/// request's bytes: how a server fills `received` and `rport` into the
/// response's Via (§18.2.1, RFC 3581 §4).
#[derive(Clone, Copy, Debug)]
pub struct ViaEdit<'x> {
    /// First byte replaced.
    pub start: usize,
    /// One past the last byte replaced (equal to `start` for an insert).
    pub end: usize,
    /// The new text.
    pub text: &'x [u8],
}

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
        Self::with_via_edit(req, code, reason, to_tag, None, out)
    }

    /// Like [`new`](Self::new), applying `via_edit` to the first Via line
    /// as it is copied (it must lie inside that line's value).
    pub fn with_via_edit(
        req: &Message<'_>,
        code: u16,
        reason: &[&[u8]],
        to_tag: Option<&[u8]>,
        via_edit: Option<ViaEdit<'_>>,
        out: &'b mut [u8],
    ) -> Result<Self, WriteError> {
        let reason_ok = reason
            .iter()
            .all(|part| !part.iter().any(|&b| b == b'\r' || b == b'\n'));
        if !(100..=699).contains(&code) || !reason_ok {
            return Err(WriteError::BadStatusLine);
        }
        let mut w = Cursor { out, len: 0 };
        w.put(b"SIP/2.0 ")?;
        w.piece(&Piece::U32(u32::from(code)))?;
        w.put(b" ")?;
        for part in reason {
            w.put(part)?;
        }
        w.put(b"\r\n")?;
        let buf = req.bytes();
        let mut via_edit = via_edit;
        let mut copy = |w: &mut Cursor<'_>, name: HeaderName| -> Result<(), WriteError> {
            for e in req.entries().iter().filter(|e| e.name == name as u8) {
                let (ls, ve) = (e.line_start as usize, e.value_end as usize);
                match via_edit.take() {
                    Some(v) if name == HeaderName::Via => {
                        if v.start < e.value_start() as usize || v.start > v.end || v.end > ve {
                            return Err(WriteError::OutOfRange);
                        }
                        w.put(&buf[ls..v.start])?;
                        w.put(v.text)?;
                        w.put(&buf[v.end..ve])?;
                    }
                    other => {
                        via_edit = other;
                        w.put(&buf[ls..ve])?;
                    }
                }
                if name == HeaderName::To && code > 100 {
                    if let Some(tag) = to_tag {
                        let value = &buf[e.value_start() as usize..e.value_end as usize];
                        // The first To is the one `Message::to` parsed
                        // already (a REGISTER's 200 reads it a fourth
                        // time otherwise).
                        let first = req.header(HeaderName::To).map(<[u8]>::as_ptr);
                        let parsed = if first == Some(value.as_ptr()) {
                            req.to()
                        } else {
                            NameAddr::parse(value)
                        };
                        let has_tag = parsed.map_or(true, |a| a.tag().is_some());
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

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKr1;rport\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr0\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Timestamp: 54\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\r\n";

    fn build(code: u16, reason: &[&[u8]], tag: Option<&[u8]>, extra: bool) -> Vec<u8> {
        let req = Message::parse(REGISTER).unwrap();
        let mut out = vec![0u8; 1024];
        let mut w = ResponseWriter::new(&req, code, reason, tag, &mut out).unwrap();
        if extra {
            w.header_pieces(
                "Contact",
                &[
                    Piece::Bytes(b"<sip:bob@192.0.2.4>;expires="),
                    Piece::U32(3600),
                ],
            )
            .unwrap()
            .header_u32("Min-Expires", 60)
            .unwrap()
            .header("Allow", b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER")
            .unwrap();
        }
        let n = w.finish().unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn ok_with_contacts_and_tag() {
        let out = build(200, &[b"OK"], Some(b"srv1"), true);
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.status(), Some(200));
        let branches: Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(branches, vec![&b"z9hG4bKr1"[..], b"z9hG4bKr0"]);
        assert_eq!(m.to().unwrap().tag(), Some(&b"srv1"[..]));
        assert_eq!(m.from().unwrap().tag(), Some(&b"456248"[..]));
        assert_eq!(m.cseq().unwrap().number, 1826);
        assert_eq!(m.call_id().unwrap(), b"843817637684230@998sdasdh09");
        assert_eq!(m.contacts().next().unwrap().unwrap().expires(), Some(3600));
        assert_eq!(m.min_expires(), Ok(Some(60)));
        assert_eq!(m.content_length(), Some(0));
        assert_eq!(m.header(HeaderName::Timestamp), None);
        assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn reason_from_pieces() {
        let out = build(400, &[b"Missing ", b"Call-ID"], Some(b"x"), false);
        assert!(out.starts_with(b"SIP/2.0 400 Missing Call-ID\r\n"));
    }

    #[test]
    fn trying_has_no_tag_but_timestamp() {
        let out = build(100, &[b"Trying"], Some(b"srv1"), false);
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.header(HeaderName::Timestamp), Some(&b"54"[..]));
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let req = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=old\r\nFrom: <sip:c@d>;tag=f\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n";
        let req = Message::parse(req).unwrap();
        let mut out = [0u8; 512];
        let n = ResponseWriter::new(&req, 481, &[b"Call Does Not Exist"], Some(b"new"), &mut out)
            .unwrap()
            .finish()
            .unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        assert_eq!(m.to().unwrap().tag(), Some(&b"old"[..]));
    }

    #[test]
    fn bad_status_lines_are_refused() {
        let req = Message::parse(REGISTER).unwrap();
        let mut out = [0u8; 1024];
        for (code, reason) in [
            (99, &b"Low"[..]),
            (700, b"High"),
            (200, b"OK\r\nX: injected"),
        ] {
            assert_eq!(
                ResponseWriter::new(&req, code, &[reason], None, &mut out).err(),
                Some(WriteError::BadStatusLine)
            );
        }
    }

    #[test]
    fn empty_values_are_copied_cleanly() {
        let req = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTimestamp:\r\nCall-ID: c\r\n\r\n";
        let req = Message::parse(req).unwrap();
        let mut out = [0u8; 512];
        let n = ResponseWriter::new(&req, 100, &[b"Trying"], None, &mut out)
            .unwrap()
            .finish()
            .unwrap();
        let text = &out[..n];
        assert!(text.windows(11).any(|w| w == b"Timestamp:\r"));
        assert!(!text.windows(2).any(|w| w == b"\r\r"));
    }

    #[test]
    fn top_via_gets_received_and_rport() {
        let req = Message::parse(REGISTER).unwrap();
        let top = req.top_via_value().unwrap();
        let rport = top.offset + top.text.len() - "rport".len();
        let edit = ViaEdit {
            start: rport,
            end: top.offset + top.text.len(),
            text: b"rport=4000;received=203.0.113.9",
        };
        let mut out = [0u8; 1024];
        let n =
            ResponseWriter::with_via_edit(&req, 200, &[b"OK"], Some(b"t"), Some(edit), &mut out)
                .unwrap()
                .finish()
                .unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias[0].rport, crate::sip::Rport::Value(4000));
        assert_eq!(vias[0].received, Some(&b"203.0.113.9"[..]));
        assert_eq!(vias[1].received, None, "only the top Via changes");
        let bad = ViaEdit {
            start: 0,
            end: 1,
            text: b"x",
        };
        assert_eq!(
            ResponseWriter::with_via_edit(&req, 200, &[b"OK"], None, Some(bad), &mut out).err(),
            Some(WriteError::OutOfRange)
        );
    }

    #[test]
    fn small_buffer_is_an_error() {
        let req = Message::parse(REGISTER).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            ResponseWriter::new(&req, 200, &[b"OK"], None, &mut out).err(),
            Some(WriteError::BufferTooSmall)
        );
    }
}
