//! The requests `run` and `register` send, and the stamps they read back
//! from the answers: the Via branch carries what an answer is matched by.

use std::net::SocketAddr;

use sipshard::sip::Message;

/// Whom an OPTIONS is for: its Request-URI and To.
#[derive(Clone, Copy, Debug)]
pub enum ReqTo<'a> {
    /// `sip:load@ADDR`: the sink, through the proxy.
    Sink(SocketAddr),
    /// `sip:uNNNNNNN@DOMAIN`: user `seq % N` of the domain, found by the
    /// server's location service.
    Users(u32, &'a str),
    /// `sip:ADDR`: the server itself, which answers it (RFC 3261 §11.2).
    Server(SocketAddr),
}

/// An OPTIONS request sent over `transport` (the Via token: `UDP`,
/// `TCP`, ...) from `local`, stamped with its sequence number and send
/// time (microseconds since start) in the Via branch.
pub fn options(
    out: &mut Vec<u8>,
    seq: u64,
    ts_us: u64,
    transport: &str,
    local: SocketAddr,
    to: ReqTo<'_>,
) {
    use std::io::Write;
    let port = local.port();
    let uri = |out: &mut Vec<u8>| match to {
        ReqTo::Sink(sink) => write!(out, "sip:load@{sink}"),
        ReqTo::Users(n, domain) => write!(out, "sip:u{:07}@{domain}", seq % u64::from(n)),
        ReqTo::Server(addr) => write!(out, "sip:{addr}"),
    };
    let _ = out.write_all(b"OPTIONS ");
    let _ = uri(out);
    let _ = write!(
        out,
        " SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch=z9hG4bK{seq}-{ts_us};rport\r\n\
Max-Forwards: 70\r\n\
To: <"
    );
    let _ = uri(out);
    let _ = write!(
        out,
        ">\r\n\
From: <sip:uac@{local}>;tag=l{port}\r\n\
Call-ID: {seq}-{port}@sipshard-load\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    );
}

/// The send time stamped in the top Via branch of a 200 to [`options`].
pub fn options_stamp(bytes: &[u8]) -> Option<u64> {
    let msg = Message::parse(bytes).ok()?;
    if msg.status() != Some(200) {
        return None;
    }
    let branch = msg.via().ok()?.branch?;
    let ts = branch.rsplit(|&b| b == b'-').next()?;
    std::str::from_utf8(ts).ok()?.parse().ok()
}

/// Users are numbered in 7 digits.
pub const MAX_USERS: u32 = 10_000_000;
const USER_DIGITS: usize = 7;
/// CSeq of the first REGISTER of a run; every later round adds one. Seven
/// digits with no leading zero.
pub const CSEQ_BASE: u32 = 1_000_000;
const CSEQ_DIGITS: usize = 7;
/// Send time in microseconds since the start of the run.
const TS_DIGITS: usize = 12;
const BRANCH_MAGIC: &[u8] = b"z9hG4bK";
/// `z9hG4bK` USER `.` CSEQ `.` TS
const BRANCH_LEN: usize = BRANCH_MAGIC.len() + USER_DIGITS + 1 + CSEQ_DIGITS + 1 + TS_DIGITS;

/// A REGISTER for one flow with its variable fields at known offsets,
/// built once; a send copies it and overwrites the digits.
pub struct Template {
    bytes: Vec<u8>,
    user_at: Vec<usize>,
    cseq_at: Vec<usize>,
    ts_at: usize,
    salt_at: usize,
}

/// Decimal digits of the salt in a REGISTER's Call-ID (after the user).
pub const SALT_DIGITS: usize = 2;

/// The Call-ID a [`Template`] with `tag` gives `user` with `salt`.
pub fn register_call_id(user: u32, salt: u8, tag: u32) -> String {
    format!("{user:07}{salt:02}-{tag:08x}@sipshard-load")
}

impl Template {
    /// REGISTERs of `uNNNNNNN@domain` sent from `via`, with their Contact
    /// at `contact`, `Expires: expires`, and `tag` in every Call-ID.
    pub fn new(
        domain: &str,
        contact: SocketAddr,
        expires: u32,
        via: SocketAddr,
        tag: u32,
    ) -> Template {
        let mut t = Template {
            bytes: Vec::with_capacity(512),
            user_at: Vec::new(),
            cseq_at: Vec::new(),
            ts_at: 0,
            salt_at: 0,
        };
        let d = domain;
        let user = |t: &mut Template| {
            t.user_at.push(t.bytes.len());
            t.bytes.extend_from_slice(&[b'0'; USER_DIGITS]);
        };
        let cseq = |t: &mut Template| {
            t.cseq_at.push(t.bytes.len());
            t.bytes.extend_from_slice(&[b'1'; CSEQ_DIGITS]);
        };
        let s = |t: &mut Template, text: &str| t.bytes.extend_from_slice(text.as_bytes());
        s(
            &mut t,
            &format!("REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch="),
        );
        s(&mut t, "z9hG4bK");
        user(&mut t);
        s(&mut t, ".");
        cseq(&mut t);
        s(&mut t, ".");
        t.ts_at = t.bytes.len();
        t.bytes.extend_from_slice(&[b'0'; TS_DIGITS]);
        s(&mut t, ";rport\r\nMax-Forwards: 70\r\nTo: <sip:u");
        user(&mut t);
        s(&mut t, &format!("@{d}>\r\nFrom: <sip:u"));
        user(&mut t);
        s(&mut t, &format!("@{d}>;tag=r"));
        user(&mut t);
        s(&mut t, "\r\nCall-ID: ");
        user(&mut t);
        t.salt_at = t.bytes.len();
        t.bytes.extend_from_slice(&[b'0'; SALT_DIGITS]);
        s(&mut t, &format!("-{tag:08x}@sipshard-load\r\nCSeq: "));
        cseq(&mut t);
        s(&mut t, " REGISTER\r\nContact: <sip:u");
        user(&mut t);
        s(
            &mut t,
            &format!("@{contact}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"),
        );
        t
    }

    /// Writes the REGISTER of `user` with `cseq` and Call-ID `salt`, sent
    /// at `ts_us`, into `out`; returns its length (0 if it does not fit).
    pub fn write(&self, out: &mut [u8], user: u32, salt: u8, cseq: u32, ts_us: u64) -> usize {
        let n = self.bytes.len();
        let Some(out) = out.get_mut(..n) else {
            return 0;
        };
        out.copy_from_slice(&self.bytes);
        for &at in &self.user_at {
            put_digits(&mut out[at..at + USER_DIGITS], u64::from(user));
        }
        for &at in &self.cseq_at {
            put_digits(&mut out[at..at + CSEQ_DIGITS], u64::from(cseq));
        }
        put_digits(&mut out[self.ts_at..self.ts_at + TS_DIGITS], ts_us);
        put_digits(
            &mut out[self.salt_at..self.salt_at + SALT_DIGITS],
            u64::from(salt),
        );
        n
    }
}

/// Writes `v` in decimal into all of `out`, zero-padded on the left.
fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Reads a run of decimal digits.
fn digits(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// (user, CSeq, send time) from a branch a [`Template`] wrote.
pub fn parse_branch(b: &[u8]) -> Option<(u32, u32, u64)> {
    if b.len() != BRANCH_LEN || !b.starts_with(BRANCH_MAGIC) {
        return None;
    }
    let b = &b[BRANCH_MAGIC.len()..];
    let (user, rest) = b.split_at(USER_DIGITS);
    let (cseq, rest) = rest.get(1..)?.split_at(CSEQ_DIGITS);
    let ts = rest.get(1..)?;
    Some((digits(user)? as u32, digits(cseq)? as u32, digits(ts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_their_transport_and_read_back_their_stamp() {
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let sink: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut out = Vec::new();
        options(&mut out, 7, 123_456, "UDP", local, ReqTo::Sink(sink));
        // The UDP request as it always was.
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "OPTIONS sip:load@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK7-123456;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:load@127.0.0.1:5070>\r\n\
From: <sip:uac@127.0.0.1:4000>;tag=l4000\r\n\
Call-ID: 7-4000@sipshard-load\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
        );
        for (token, to) in [
            ("TCP", ReqTo::Users(10, "example.com")),
            ("WS", ReqTo::Server(sink)),
        ] {
            out.clear();
            options(&mut out, 12, 99, token, local, to);
            let m = Message::parse(&out).unwrap();
            m.validate().unwrap();
            let via = m.via().unwrap();
            assert_eq!(via.transport, token.as_bytes());
            let mut buf = [0u8; 1024];
            let n = sipshard::sip::ResponseWriter::new(&m, 200, &[b"OK"], None, &mut buf)
                .and_then(|w| w.finish())
                .unwrap();
            assert_eq!(options_stamp(&buf[..n]), Some(99));
        }
        out.clear();
        options(&mut out, 12, 99, "TLS", local, ReqTo::Server(sink));
        assert!(out.starts_with(b"OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\n"));
        out.clear();
        options(
            &mut out,
            12,
            99,
            "TLS",
            local,
            ReqTo::Users(10, "example.com"),
        );
        assert!(out.starts_with(b"OPTIONS sip:u0000002@example.com SIP/2.0\r\n"));
    }

    #[test]
    fn template_writes_a_valid_register_and_its_branch_reads_back() {
        let contact = "127.0.0.1:5070".parse().unwrap();
        let t = Template::new(
            "example.com",
            contact,
            600,
            "127.0.0.1:4000".parse().unwrap(),
            0xabc,
        );
        let mut out = [0u8; 1024];
        let n = t.write(&mut out, 1234, 7, CSEQ_BASE + 3, 987_654);
        let m = Message::parse(&out[..n]).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:example.com"[..]));
        assert_eq!(m.cseq().unwrap().number, CSEQ_BASE + 3);
        assert_eq!(m.call_id().unwrap(), b"000123407-00000abc@sipshard-load");
        assert_eq!(
            register_call_id(1234, 7, 0xabc).as_bytes(),
            m.call_id().unwrap()
        );
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.contains("To: <sip:u0001234@example.com>\r\n"),
            "{text}"
        );
        assert!(text.contains("Contact: <sip:u0001234@127.0.0.1:5070>\r\n"));
        assert!(text.contains("Expires: 600\r\n"));
        let branch = m.via().unwrap().branch.unwrap();
        assert_eq!(parse_branch(branch), Some((1234, CSEQ_BASE + 3, 987_654)));
        assert_eq!(parse_branch(b"z9hG4bK1-2"), None);
    }
}
