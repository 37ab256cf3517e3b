//! Requests built from a request the proxy sent: the CANCEL of a branch
//! (RFC 3261 §9.1) and the ACK of a non-2xx final response
//! (§17.1.1.3), which a stateful proxy sends hop by hop itself. Both
//! copy what identifies the branch's transaction (its Request-URI, its
//! one Via, so the same branch, Call-ID, From, CSeq number) and its
//! Route values, so they follow the request's path.

use super::header::HeaderName;
use super::parse::Message;
use super::write::{Cursor, Piece, WriteError};

/// Writes the CANCEL of `req` (a request as we sent it: our Via on top)
/// into `out`; its length. §9.1: same Request-URI, Call-ID, To, From and
/// CSeq number, method CANCEL, a single Via equal to the request's top
/// one, and the request's Route values.
pub fn write_cancel(req: &Message<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    let to = req.header(HeaderName::To).ok_or(WriteError::OutOfRange)?;
    write_for(req, b"CANCEL", to, out)
}

/// Writes the ACK of `resp`, a 300-699 final answer to the INVITE `req`
/// (as we sent it), into `out`; its length. §17.1.1.3: the request's
/// Request-URI, Call-ID, From, CSeq number and Route values, its top Via
/// only, and the response's To (with the tag the answering UAS added).
pub fn write_ack(
    req: &Message<'_>,
    resp: &Message<'_>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let to = resp.header(HeaderName::To).ok_or(WriteError::OutOfRange)?;
    write_for(req, b"ACK", to, out)
}

fn write_for(
    req: &Message<'_>,
    method: &[u8],
    to: &[u8],
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let missing = WriteError::OutOfRange;
    let uri = req.request_uri_bytes().ok_or(missing)?;
    let via = req.top_via_value().ok_or(missing)?;
    let from = req.header(HeaderName::From).ok_or(missing)?;
    let call_id = req.header(HeaderName::CallId).ok_or(missing)?;
    let cseq = req.cseq().map_err(|_| missing)?;
    let mut w = Cursor { out, len: 0 };
    w.put(method)?;
    w.put(b" ")?;
    w.put(uri)?;
    w.put(b" SIP/2.0\r\nVia: ")?;
    w.put(via.text)?;
    w.put(b"\r\nMax-Forwards: 70\r\n")?;
    for route in req.values(HeaderName::Route) {
        w.put(b"Route: ")?;
        w.put(route.text)?;
        w.put(b"\r\n")?;
    }
    for (name, value) in [
        (&b"From: "[..], from),
        (b"To: ", to),
        (b"Call-ID: ", call_id),
    ] {
        w.put(name)?;
        w.put(value)?;
        w.put(b"\r\n")?;
    }
    w.put(b"CSeq: ")?;
    w.piece(&Piece::U32(cseq.number))?;
    w.put(b" ")?;
    w.put(method)?;
    w.put(b"\r\nContent-Length: 0\r\n\r\n")?;
    Ok(w.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Method;

    const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.9:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n\
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKuac1;received=192.0.2.4\r\n\
Max-Forwards: 69\r\n\
Route: <sip:edge.example.net;lr>, <sip:core.example.net;lr>\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=a1\r\n\
Call-ID: c1@192.0.2.4\r\n\
CSeq: 314 INVITE\r\n\
Contact: <sip:alice@192.0.2.4>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\n\
v=0\n";

    const BUSY: &[u8] = b"SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n\
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKuac1;received=192.0.2.4\r\n\
To: Bob <sip:bob@example.com>;tag=b9\r\n\
From: Alice <sip:alice@example.com>;tag=a1\r\n\
Call-ID: c1@192.0.2.4\r\n\
CSeq: 314 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    fn text(m: &Message<'_>, h: HeaderName) -> String {
        String::from_utf8_lossy(m.header(h).unwrap()).into_owned()
    }

    /// What §9.1 and §17.1.1.3 share: the branch's identity and path.
    fn same_branch_and_path(m: &Message<'_>) {
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes().unwrap(), b"sip:bob@192.0.2.9:5062");
        assert_eq!(m.count_of(HeaderName::Via), 1, "only our Via");
        assert_eq!(m.via().unwrap().branch.unwrap(), b"z9hG4bKproxy1");
        let routes: Vec<_> = m.values(HeaderName::Route).map(|v| v.text).collect();
        assert_eq!(
            routes,
            [
                &b"<sip:edge.example.net;lr>"[..],
                b"<sip:core.example.net;lr>"
            ]
        );
        assert_eq!(
            text(m, HeaderName::From),
            "Alice <sip:alice@example.com>;tag=a1"
        );
        assert_eq!(text(m, HeaderName::CallId), "c1@192.0.2.4");
        assert_eq!(m.body(), b"");
    }

    #[test]
    fn s9_1_a_cancel_matches_its_request_but_for_the_method() {
        let req = Message::parse(INVITE).unwrap();
        let mut out = [0u8; 1024];
        let n = write_cancel(&req, &mut out).unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        assert_eq!(m.method(), Some(Method::Cancel));
        same_branch_and_path(&m);
        assert_eq!(
            text(&m, HeaderName::To),
            "Bob <sip:bob@example.com>",
            "no tag"
        );
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (314, Method::Cancel));
    }

    #[test]
    fn s17_1_1_3_the_ack_takes_the_responses_to_tag() {
        let req = Message::parse(INVITE).unwrap();
        let resp = Message::parse(BUSY).unwrap();
        let mut out = [0u8; 1024];
        let n = write_ack(&req, &resp, &mut out).unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        assert_eq!(m.method(), Some(Method::Ack));
        same_branch_and_path(&m);
        assert_eq!(text(&m, HeaderName::To), "Bob <sip:bob@example.com>;tag=b9");
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (314, Method::Ack));
    }

    #[test]
    fn a_buffer_too_small_is_an_error_not_a_truncated_request() {
        let req = Message::parse(INVITE).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            write_cancel(&req, &mut out),
            Err(WriteError::BufferTooSmall)
        );
    }
}
