//! Whole messages of real-life shapes (tests/data/*.sip): each parses,
//! validates, reads back the values a proxy and registrar need, and is
//! written back byte for byte with no edits.

use std::net::Ipv6Addr;

use sipshard::sip::{Contact, Edits, HeaderName, Host, Message, Method, Rport, StartLine, Uri};

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fuzzer input with its NULs and bare CRs replaced, which the parser
/// (rightly) refuses since they were found: the inputs are kept for the
/// header-count edge they hit, not for those bytes.
fn sanitized(mut data: Vec<u8>) -> Vec<u8> {
    for i in 0..data.len() {
        let bare_cr = data[i] == b'\r' && data.get(i + 1) != Some(&b'\n');
        if data[i] == 0 || bare_cr {
            data[i] = b'x';
        }
    }
    data
}

fn unchanged(msg: &Message<'_>, data: &[u8]) {
    let mut out = vec![0u8; data.len()];
    let n = Edits::new().write(msg, &mut out).unwrap();
    assert_eq!(&out[..n], data);
}

#[test]
fn softphone_invite_with_sdp() {
    let data = load("invite_softphone.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    let Ok(Uri::Sip(ruri)) = m.request_uri() else {
        panic!("R-URI")
    };
    assert_eq!(ruri.user, Some(&b"bob"[..]));
    assert_eq!(ruri.host, Host::Name(b"biloxi.example.com"));
    let via = m.via().unwrap();
    assert_eq!(via.rport, Rport::Requested);
    assert_eq!(via.port, Some(5062));
    assert!(via.has_rfc3261_branch());
    let from = m.from().unwrap();
    assert_eq!(from.display_name, Some(&b"\"Alice Liddell\""[..]));
    assert_eq!(from.tag(), Some(&b"9fxced76sl"[..]));
    assert_eq!(m.to().unwrap().tag(), None);
    assert!(m.content_type().unwrap().unwrap().is_sdp());
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert!(m.body().ends_with(b"a=rtcp-mux\r\n"));
    assert_eq!(m.body().len() as u32, m.content_length().unwrap());
    assert_eq!(m.max_forwards(), Ok(Some(70)));
    let allow = m.header(HeaderName::Allow).unwrap();
    assert!(allow.starts_with(b"INVITE, ACK"));
    assert!(data.len() > 850 && data.len() < 1100, "typical INVITE size");
    unchanged(&m, &data);
}

#[test]
fn register_with_several_contacts() {
    let data = load("register_contacts.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    let contacts: Vec<Contact<'_>> = m.contacts().map(Result::unwrap).collect();
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[0].q(), Some(700));
    assert_eq!(contacts[0].expires(), Some(3600));
    assert_eq!(contacts[1].q(), Some(1000));
    assert_eq!(contacts[1].expires(), None);
    let Contact::Addr(second) = contacts[1] else {
        panic!()
    };
    let Ok(Uri::Sip(u)) = second.parsed_uri() else {
        panic!()
    };
    assert_eq!(u.host, Host::V6("2001:db8::4".parse::<Ipv6Addr>().unwrap()));
    assert_eq!(u.port, Some(5070));
    let Contact::Addr(third) = contacts[2] else {
        panic!()
    };
    assert_eq!(third.display_name, Some(&b"\"Bob's desk\""[..]));
    assert_eq!(contacts[2].expires(), Some(60));
    assert_eq!(m.expires(), Ok(Some(7200)));
    assert_eq!(m.cseq().unwrap().number, 1826);
    unchanged(&m, &data);
}

#[test]
fn ok_with_record_route() {
    let data = load("ok_record_route.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(
        *m.start_line(),
        StartLine::Response {
            code: 200,
            reason: b"OK"
        }
    );
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].received, Some(&b"192.0.2.3"[..]));
    assert_eq!(vias[2].host, Host::Name(b"pc33.atlanta.example.com"));
    let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        rr,
        vec![
            &b"sip:server10.biloxi.example.com;lr"[..],
            b"sip:bigbox3.site3.atlanta.example.com;lr"
        ]
    );
    assert_eq!(m.to().unwrap().tag(), Some(&b"a6c85cf"[..]));
    assert_eq!(m.cseq().unwrap().method, Method::Invite);
    unchanged(&m, &data);
}

#[test]
fn cancel() {
    let data = load("cancel.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Cancel));
    assert_eq!(m.cseq().unwrap().method, Method::Cancel);
    assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bK776asdhds"[..]));
    unchanged(&m, &data);
}

#[test]
fn ack_with_route_set() {
    let data = load("ack.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Ack));
    let (top, place) = m.top_route().unwrap();
    assert_eq!(top.uri, b"sip:bigbox3.site3.atlanta.example.com;lr");
    assert_eq!(
        &data[place.offset..place.offset + place.text.len()],
        place.text
    );
    let Ok(Uri::Sip(u)) = top.parsed_uri() else {
        panic!()
    };
    assert!(u.is_loose_router());
    assert_eq!(m.routes().count(), 2);
    unchanged(&m, &data);
}

#[test]
fn odd_but_valid() {
    let data = load("odd_but_valid.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    let Ok(Uri::Sip(ruri)) = m.request_uri() else {
        panic!()
    };
    assert_eq!(ruri.host, Host::V6("2001:db8::1".parse().unwrap()));
    let mut user = [0u8; 16];
    assert_eq!(ruri.user_unescaped(&mut user), Some(&b"alice"[..]));
    let branches: Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
    assert_eq!(
        branches,
        vec![&b"z9hG4bKodd1"[..], b"z9hG4bKodd2", b"z9hG4bKodd3"]
    );
    assert_eq!(m.max_forwards(), Ok(Some(68)));
    assert_eq!(m.to().unwrap().display_name, Some(&br#""Al \"ice\"""#[..]));
    assert_eq!(m.from().unwrap().tag(), Some(&b"xyz"[..]));
    assert_eq!(m.cseq().unwrap().number, 9);
    assert_eq!(
        m.other_header(b"x-custom-header"),
        Some(&b"keep, this; exactly"[..])
    );
    assert!(m
        .header(HeaderName::Subject)
        .unwrap()
        .ends_with(b"that continues"));
    assert_eq!(m.header(HeaderName::Supported), Some(&b"timer"[..]));
    assert_eq!(m.body(), b"v=0\r\n");
    unchanged(&m, &data);
}

#[test]
fn options_with_max_forwards_zero() {
    let data = load("options_keepalive.sip");
    let m = Message::parse(&data).unwrap();
    m.validate().unwrap();
    assert_eq!(m.max_forwards(), Ok(Some(0)));
    let Ok(Uri::Sip(u)) = m.request_uri() else {
        panic!()
    };
    assert_eq!(u.user, None);
    unchanged(&m, &data);
}

/// Found by the fuzzer: a message with a full header index (64 lines)
/// parses, and forwarding it adds lines the index can no
/// longer hold, which a re-parse reports as TooManyHeaders rather than
/// anything worse.
#[test]
fn fuzz_full_header_index() {
    use sipshard::sip::{ParseError, MAX_HEADERS};
    let data = sanitized(load("fuzz/full_header_index.bin"));
    let m = Message::parse(&data).unwrap();
    assert!(m.header_count() + 3 > MAX_HEADERS);
    let mut e = Edits::new();
    e.insert_top_via(&m, b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx")
        .unwrap();
    e.set_max_forwards(&m, 69).unwrap();
    e.add_record_route(&m, b"<sip:127.0.0.1;lr>").unwrap();
    let mut out = vec![0u8; data.len() + 256];
    let n = e.write(&m, &mut out).unwrap();
    let again = Message::parse(&out[..n]);
    if m.header_count() + 2 > MAX_HEADERS {
        assert_eq!(again.err(), Some(ParseError::TooManyHeaders));
    }
}

/// Found by the fuzzer: a request whose 64 lines are mostly Via lines.
/// A response copies every Via and adds Content-Length, one line more than
/// the index holds: the builder writes it, and re-parsing it says
/// TooManyHeaders instead of failing in any other way.
#[test]
fn fuzz_response_of_full_index() {
    use sipshard::sip::{ParseError, ResponseWriter, MAX_HEADERS};
    let data = sanitized(load("fuzz/response_of_full_index.bin"));
    let m = Message::parse(&data).unwrap();
    assert_eq!(m.header_count(), MAX_HEADERS);
    let mut out = vec![0u8; data.len() + 256];
    let n = ResponseWriter::new(&m, 404, &[b"Not Found"], Some(b"t"), &mut out)
        .unwrap()
        .finish()
        .unwrap();
    match Message::parse(&out[..n]) {
        Ok(r) => assert_eq!(r.status(), Some(404)),
        Err(e) => assert_eq!(e, ParseError::TooManyHeaders),
    }
}
