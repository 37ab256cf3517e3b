//! Fuzz the parser and everything reachable from a parsed message: every
//! typed view, validation, the writer with a proxy's edits, and the
//! response builder. Oracles: nothing panics; a message written with no
//! edits is byte-identical to its framed input; a message written with
//! well-formed edits, and any response built from it, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipshard::sip::{Edits, HeaderName, Message, ParseError, ResponseWriter, MAX_HEADERS};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    for h in msg.headers() {
        let _ = msg.values(h.name).count();
    }
    let _ = msg.validate();
    let _ = msg.request_uri();
    let _ = msg.vias().count();
    let _ = msg.from().map(|a| (a.tag(), a.parsed_uri()));
    let _ = msg.to().map(|a| a.tag());
    msg.contacts().for_each(|c| {
        let _ = c.map(|c| (c.q(), c.expires()));
    });
    let _ = msg.routes().count();
    let _ = msg.record_routes().count();
    let _ = (
        msg.cseq(),
        msg.call_id(),
        msg.max_forwards(),
        msg.expires(),
        msg.content_type(),
    );

    let mut out = vec![0u8; data.len() + 512];
    let n = Edits::new()
        .write(&msg, &mut out)
        .expect("no-edit write fits");
    assert_eq!(&out[..n], msg.framed());

    let mut edits = Edits::new();
    edits
        .insert_top_via(&msg, b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz")
        .unwrap();
    edits.set_max_forwards(&msg, 69).unwrap();
    if msg.values(HeaderName::Route).next().is_some() {
        edits.remove_first_route(&msg).unwrap();
    }
    edits.add_record_route(&msg, b"<sip:127.0.0.1;lr>").unwrap();
    if msg.is_request() {
        edits.set_request_uri(&msg, b"sip:x@127.0.0.1").unwrap();
    }
    let n = edits.write(&msg, &mut out).expect("edited write fits");
    match Message::parse(&out[..n]) {
        Ok(again) => {
            assert_eq!(again.max_forwards().ok().flatten(), Some(69));
            assert_eq!(again.body(), msg.body());
        }
        // Up to three added lines can push a full header index over.
        Err(ParseError::TooManyHeaders) => assert!(msg.header_count() + 3 > MAX_HEADERS),
        Err(e) => panic!("edited message does not parse: {e}"),
    }

    if msg.is_request() {
        let mut resp = vec![0u8; data.len() + 512];
        let r = ResponseWriter::new(&msg, 404, &[b"Not Found"], Some(b"t1"), &mut resp)
            .and_then(|w| w.finish())
            .expect("response fits");
        match Message::parse(&resp[..r]) {
            Ok(parsed) => assert_eq!(parsed.status(), Some(404)),
            // The response copies up to every header line and adds one.
            Err(ParseError::TooManyHeaders) => assert!(msg.header_count() + 1 > MAX_HEADERS),
            Err(e) => panic!("response does not parse: {e}"),
        }
    }
});
