//! The registrar's and redirect server's header sets: the 200 OK to a
//! REGISTER (RFC 3261 §10.3 step 8: every current binding as a Contact with
//! the header parameters its UA registered, its remaining `expires` and its
//! `q`; a Date; the REGISTER's Path with `Supported: path`, RFC 3327 §5.3),
//! and the 302's Contacts (§8.3, §21.3.3). RFC 5626 and RFC 5627 UAs find
//! their own binding in the 200 by its `+sip.instance` (and `reg-id`), so
//! the parameters come back as the UA sent them.
//! The caller starts the response (status line, Via, To tag) so that every
//! local response is addressed the same way.

use crate::location::AorRecord;
use crate::sip::{HeaderName, Message, Piece, ResponseWriter, WriteError};

/// The option-tags the registrar supports, as its 200's `Supported`
/// value: `path` (RFC 3327 §5.3). A REGISTER whose Require names another
/// gets 420 (§10.3 step 2).
pub const SUPPORTED: &[u8] = b"path";

/// Adds the headers of a REGISTER's `200 OK`: `bindings` still alive at
/// `now` (Unix seconds), the REGISTER's Path, `Supported: path` and Date.
pub fn ok_headers(
    w: &mut ResponseWriter<'_>,
    req: &Message<'_>,
    record: &AorRecord,
    now: u64,
) -> Result<(), WriteError> {
    contacts(w, record, now, true)?;
    for v in req.values(HeaderName::Path) {
        w.header("Path", v.text)?;
    }
    w.header("Supported", SUPPORTED)?;
    let mut date = [0u8; 40];
    let len = http_date(now, &mut date);
    w.header("Date", &date[..len])?;
    Ok(())
}

/// Adds a Contact per binding alive at `now`, with its `q`; with
/// `expires` (the 200 to a REGISTER), also the header parameters its UA
/// registered and its remaining lifetime. The 302 leaves the parameters
/// out, as before: `+sip.instance` names a device, for its registrar.
pub fn contacts(
    w: &mut ResponseWriter<'_>,
    record: &AorRecord,
    now: u64,
    expires: bool,
) -> Result<(), WriteError> {
    for b in record.bindings().filter(|b| b.expires_at > now) {
        let mut q_buf = [0u8; 16];
        let q = match b.q {
            Some(q) => format_q(q, &mut q_buf),
            None => &[][..],
        };
        let left = u32::try_from(b.expires_at - now).unwrap_or(u32::MAX);
        if expires {
            w.header_pieces(
                "Contact",
                &[
                    Piece::Bytes(b"<"),
                    Piece::Bytes(b.contact),
                    Piece::Bytes(b">"),
                    Piece::Bytes(b.params),
                    Piece::Bytes(b";expires="),
                    Piece::U32(left),
                    Piece::Bytes(q),
                ],
            )?;
        } else {
            w.header_pieces(
                "Contact",
                &[
                    Piece::Bytes(b"<"),
                    Piece::Bytes(b.contact),
                    Piece::Bytes(b">"),
                    Piece::Bytes(q),
                ],
            )?;
        }
    }
    Ok(())
}

/// `;q=0.7` for 700 thousandths, `;q=1` for 1000 (trailing zeros dropped).
fn format_q(q: u16, out: &mut [u8; 16]) -> &[u8] {
    if q >= 1000 {
        out[..4].copy_from_slice(b";q=1");
        return &out[..4];
    }
    let digits = [
        b'0' + (q / 100) as u8,
        b'0' + (q / 10 % 10) as u8,
        b'0' + (q % 10) as u8,
    ];
    let mut n = 3;
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    out[..5].copy_from_slice(b";q=0.");
    out[5..5 + n].copy_from_slice(&digits[..n]);
    &out[..5 + n]
}

/// RFC 1123 date (§20.17, `Sat, 13 Nov 2010 23:29:00 GMT`) for a Unix time;
/// returns the length written.
pub fn http_date(unix: u64, out: &mut [u8; 40]) -> usize {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    // Byte by byte rather than through `write!`, which was 4% of a
    // REGISTER's instructions (callgrind, perf/RESULTS.md, "Profiling the
    // hot path").
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let mut n = 0;
    let mut put = |b: &[u8]| {
        let end = (n + b.len()).min(out.len());
        out[n..end].copy_from_slice(&b[..end - n]);
        n = end;
    };
    put(DAYS[(days % 7) as usize].as_bytes());
    put(b", ");
    put(&two(u64::from(d)));
    put(b" ");
    put(MONTHS[(m - 1) as usize].as_bytes());
    put(b" ");
    // A year past 9999 needs more digits; u64 seconds reach year ~5.8e11.
    let mut year = [0u8; 20];
    let mut at = year.len();
    let mut y = y.unsigned_abs();
    loop {
        at -= 1;
        year[at] = b'0' + (y % 10) as u8;
        y /= 10;
        if y == 0 {
            break;
        }
    }
    put(&year[at..]);
    put(b" ");
    put(&two(secs / 3600));
    put(b":");
    put(&two(secs / 60 % 60));
    put(b":");
    put(&two(secs % 60));
    put(b" GMT");
    n
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian: shift to a March-based year so that the leap day is last,
/// then count 400-year eras.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::save::apply;
    use crate::registrar::RegistrarConfig;
    use crate::sip::Contact;
    use crate::transport::Source;

    /// The byte-by-byte writer against the `write!` it replaced.
    #[test]
    fn dates_match_formatted_text() {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for unix in [
            0,
            59,
            86_399,
            951_868_799,
            1_700_000_000,
            4_102_444_800,
            253_402_300_800,
            u64::MAX / 1_000,
        ] {
            let days = unix / 86_400;
            let secs = unix % 86_400;
            let (y, m, d) = civil_from_days(days as i64);
            let want = format!(
                "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
                DAYS[(days % 7) as usize],
                d,
                MONTHS[(m - 1) as usize],
                y,
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            let mut out = [0u8; 40];
            let n = http_date(unix, &mut out);
            assert_eq!(&out[..n], want.as_bytes(), "{unix}");
        }
    }

    #[test]
    fn dates() {
        let mut out = [0u8; 40];
        let n = http_date(0, &mut out);
        assert_eq!(&out[..n], b"Thu, 01 Jan 1970 00:00:00 GMT");
        let n = http_date(1_289_690_940, &mut out);
        assert_eq!(&out[..n], b"Sat, 13 Nov 2010 23:29:00 GMT");
        let n = http_date(951_782_400, &mut out);
        assert_eq!(&out[..n], b"Tue, 29 Feb 2000 00:00:00 GMT", "leap day");
    }

    #[test]
    fn q_values() {
        let mut out = [0u8; 16];
        assert_eq!(format_q(1000, &mut out), b";q=1");
        assert_eq!(format_q(700, &mut out), b";q=0.7");
        assert_eq!(format_q(125, &mut out), b";q=0.125");
        assert_eq!(format_q(50, &mut out), b";q=0.05");
        assert_eq!(format_q(0, &mut out), b";q=0.0");
    }

    #[test]
    fn ok_lists_bindings_with_remaining_expires() {
        let data = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKr\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=f\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.7:5062>;q=0.7, <sip:bob@192.0.2.8>;expires=120\r\nPath: <sip:edge;lr>\r\n\r\n";
        let req = Message::parse(data).unwrap();
        let b = apply(
            &[],
            &req,
            Source::udp(
                "192.0.2.7:5060".parse().unwrap(),
                "192.0.2.100:5060".parse().unwrap(),
            ),
            1000,
            &RegistrarConfig::default(),
        )
        .unwrap();
        let b = AorRecord::new(b"sip:bob@example.com", &b);
        let mut out = [0u8; 2048];
        let mut w = ResponseWriter::new(&req, 200, &[b"OK"], Some(b"reg1"), &mut out).unwrap();
        ok_headers(&mut w, &req, &b, 1100).unwrap();
        let n = w.finish().unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        m.validate().unwrap();
        assert_eq!(m.status(), Some(200));
        let c: Vec<_> = m.contacts().map(Result::unwrap).collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].expires(), Some(3500));
        assert_eq!(c[0].q(), Some(700));
        assert_eq!(c[1].expires(), Some(20));
        assert_eq!(c[1].q(), None);
        assert_eq!(m.header(HeaderName::Path), Some(&b"<sip:edge;lr>"[..]));
        assert_eq!(m.header(HeaderName::Supported), Some(&b"path"[..]));
        assert!(m.header(HeaderName::Date).unwrap().ends_with(b"GMT"));
        assert_eq!(m.to().unwrap().tag(), Some(&b"reg1"[..]));

        let mut w =
            ResponseWriter::new(&req, 302, &[b"Moved Temporarily"], None, &mut out).unwrap();
        contacts(&mut w, &b, 1100, false).unwrap();
        let n = w.finish().unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        let c: Vec<_> = m.contacts().map(Result::unwrap).collect();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].q(), c[0].expires()), (Some(700), None));
    }

    /// The 200 used to drop every parameter but expires and q, so an RFC
    /// 5626/5627 UA could not find its binding.
    #[test]
    fn ok_gives_back_the_contacts_parameters() {
        let data = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKr\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=f\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.7:5062;ob>;q=0.5;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=600;+sip.ice\r\n\
Contact: <sip:bob@192.0.2.8>\r\n\r\n";
        let req = Message::parse(data).unwrap();
        let src = Source::udp(
            "192.0.2.7:5060".parse().unwrap(),
            "192.0.2.100:5060".parse().unwrap(),
        );
        let b = apply(&[], &req, src, 1000, &RegistrarConfig::default()).unwrap();
        let b = AorRecord::new(b"sip:bob@example.com", &b);
        let mut out = [0u8; 2048];
        let mut w = ResponseWriter::new(&req, 200, &[b"OK"], Some(b"reg1"), &mut out).unwrap();
        ok_headers(&mut w, &req, &b, 1100).unwrap();
        let n = w.finish().unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.contains(
                "\r\nContact: <sip:bob@192.0.2.7:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;+sip.ice;expires=500;q=0.5\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\r\nContact: <sip:bob@192.0.2.8>;expires=3500\r\n"),
            "{text}"
        );
        let m = Message::parse(&out[..n]).unwrap();
        let c: Vec<_> = m.contacts().map(Result::unwrap).collect();
        let Contact::Addr(first) = c[0] else {
            panic!("not an address")
        };
        assert_eq!(first.param(b"reg-id"), Some(Some(&b"1"[..])));
        assert_eq!(first.param(b"+sip.ice"), Some(None));
        assert_eq!((c[0].expires(), c[0].q()), (Some(500), Some(500)));

        // The 302 stays as it was: URI and q.
        let mut w =
            ResponseWriter::new(&req, 302, &[b"Moved Temporarily"], None, &mut out).unwrap();
        contacts(&mut w, &b, 1100, false).unwrap();
        let n = w.finish().unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.contains("\r\nContact: <sip:bob@192.0.2.7:5062;ob>;q=0.5\r\n"),
            "{text}"
        );
    }
}
