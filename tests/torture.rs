//! Hard cases in the spirit of RFC 4475 (our own messages, one per trap):
//! each either parses and validates to the stated meaning, or fails with
//! the stated error at the stated step (tokenizing or validation), which is
//! what lets a proxy pick between 400, 505 and forwarding.

use sipshard::sip::{Contact, HeaderName, Message, ParseError, Uri};

/// The headers every request needs, with a CSeq method to fill in.
fn base(method: &str) -> String {
    format!(
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKt1\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
Call-ID: torture-1@example.com\r\n\
CSeq: 1 {method}\r\n\
Max-Forwards: 70\r\n"
    )
}

fn request(line: &str, extra: &str, body: &str) -> Vec<u8> {
    let method = line.split(' ').next().unwrap_or("");
    format!("{line}\r\n{}{extra}\r\n{body}", base(method)).into_bytes()
}

fn validate(data: &[u8]) -> Result<(), ParseError> {
    Message::parse(data)?.validate()
}

#[test]
fn valid_but_strange() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "escaped user and %00",
            request("INVITE sip:bob%00x%41@example.com SIP/2.0", "", ""),
        ),
        (
            "unknown URI scheme in R-URI",
            request("OPTIONS urn:service:sos SIP/2.0", "", ""),
        ),
        (
            "tel R-URI",
            request("INVITE tel:+1-555-0100;phone-context=example.com SIP/2.0", "", ""),
        ),
        (
            "extension method",
            request("NEWMETHOD sip:bob@example.com SIP/2.0", "", ""),
        ),
        (
            "many folds and tabs",
            request(
                "OPTIONS sip:bob@example.com SIP/2.0",
                "Subject:\r\n \r\n\tfolded\r\n   twice\r\nX-Empty-Folded:\r\n \r\n",
                "",
            ),
        ),
        (
            "IPv6 everywhere",
            request(
                "INVITE sip:[2001:db8::10]:5070 SIP/2.0",
                "Contact: <sip:[2001:db8::11]>\r\nRoute: <sip:[::1];lr>\r\n",
                "",
            ),
        ),
        (
            "semicolons in user part",
            request("INVITE sip:+1555;isub=12;postd=pp22@example.com;user=phone SIP/2.0", "", ""),
        ),
        (
            "long header value",
            request(
                "OPTIONS sip:bob@example.com SIP/2.0",
                &format!("X-Long: {}\r\n", "a".repeat(4000)),
                "",
            ),
        ),
        (
            "body with extra octets after Content-Length",
            request("MESSAGE sip:bob@example.com SIP/2.0", "Content-Length: 2\r\n", "hi and more"),
        ),
        (
            "lower-case and compact names for mandatory headers",
            b"BYE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKc\r\nt: <sip:bob@example.com>;tag=x\r\nf: <sip:a@example.com>;tag=y\r\ni: c@h\r\ncseq: 2 BYE\r\n\r\n".to_vec(),
        ),
        (
            "Via with no branch (RFC 2543 peer)",
            b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP oldhost.example.com\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=y\r\nCall-ID: c@h\r\nCSeq: 2 OPTIONS\r\n\r\n".to_vec(),
        ),
    ];
    for (name, data) in cases {
        assert_eq!(validate(&data), Ok(()), "{name}");
    }
}

#[test]
fn strange_values_read_back() {
    let data = request("INVITE sip:bob%00x%41@example.com SIP/2.0", "", "");
    let m = Message::parse(&data).unwrap();
    let Ok(Uri::Sip(u)) = m.request_uri() else {
        panic!()
    };
    let mut out = [0u8; 16];
    assert_eq!(u.user_unescaped(&mut out), Some(&b"bob\0xA"[..]));

    let data = request(
        "OPTIONS sip:bob@example.com SIP/2.0",
        "Subject:\r\n \r\n\tfolded\r\n   twice\r\n",
        "",
    );
    let m = Message::parse(&data).unwrap();
    let subject = m.header(HeaderName::Subject).unwrap();
    assert!(subject.starts_with(b"folded") && subject.ends_with(b"twice"));

    let data = request(
        "REGISTER sip:example.com SIP/2.0",
        "Contact: <sip:a@h>;expires=280297596632815;q=0.5\r\n",
        "",
    );
    let m = Message::parse(&data).unwrap();
    let c: Contact<'_> = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.expires(),
        None,
        "overlarge contact expires is not a number"
    );
    assert_eq!(c.q(), Some(500));
}

#[test]
fn broken_at_tokenizing() {
    let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
        (
            "Content-Length larger than the body",
            request(
                "MESSAGE sip:bob@example.com SIP/2.0",
                "Content-Length: 500\r\n",
                "short",
            ),
            ParseError::BodyTruncated,
        ),
        (
            "negative Content-Length",
            request(
                "MESSAGE sip:bob@example.com SIP/2.0",
                "Content-Length: -3\r\n",
                "",
            ),
            ParseError::BadContentLength,
        ),
        (
            "two Content-Lengths that disagree",
            request(
                "MESSAGE sip:bob@example.com SIP/2.0",
                "Content-Length: 2\r\nl: 3\r\n",
                "abc",
            ),
            ParseError::ConflictingContentLength,
        ),
        (
            "unknown SIP version",
            request("INVITE sip:bob@example.com SIP/7.0", "", ""),
            ParseError::UnsupportedVersion,
        ),
        (
            "spaces inside the Request-URI",
            request("INVITE sip:bob@exam ple.com SIP/2.0", "", ""),
            ParseError::BadStartLine,
        ),
        (
            "two spaces after the method",
            request("INVITE  sip:bob@example.com SIP/2.0", "", ""),
            ParseError::BadRequestUri,
        ),
        (
            "header name with a space inside",
            request("OPTIONS sip:bob@example.com SIP/2.0", "Bad Name: x\r\n", ""),
            ParseError::BadHeaderName,
        ),
        (
            "NUL in a header name",
            request("OPTIONS sip:bob@example.com SIP/2.0", "X-\0: x\r\n", ""),
            ParseError::BadHeaderName,
        ),
        (
            "datagram cut inside the headers",
            b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;bra".to_vec(),
            ParseError::MissingEmptyLine,
        ),
        (
            "response with a four-digit status",
            b"SIP/2.0 2000 OK\r\n\r\n".to_vec(),
            ParseError::BadStatusCode,
        ),
    ];
    for (name, data, err) in cases {
        assert_eq!(Message::parse(&data).err(), Some(err), "{name}");
        assert!(err.status() == 400 || err.status() == 505, "{name}");
    }
}

#[test]
fn broken_at_validation() {
    let dup_call_id = request(
        "OPTIONS sip:bob@example.com SIP/2.0",
        "Call-ID: other@example.com\r\n",
        "",
    );
    let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
        (
            "R-URI in angle brackets",
            request("INVITE <sip:bob@example.com> SIP/2.0", "", ""),
            ParseError::BadRequestUri,
        ),
        (
            "overlarge CSeq",
            b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 36893488147419103232 OPTIONS\r\n\r\n".to_vec(),
            ParseError::Invalid(HeaderName::CSeq),
        ),
        (
            "overlarge Max-Forwards",
            String::from_utf8(request("OPTIONS sip:bob@example.com SIP/2.0", "", ""))
                .unwrap()
                .replace("Max-Forwards: 70", "Max-Forwards: 300")
                .into_bytes(),
            ParseError::Invalid(HeaderName::MaxForwards),
        ),
        (
            "overlarge Expires",
            request("REGISTER sip:example.com SIP/2.0", "Expires: 10000000000\r\n", ""),
            ParseError::Invalid(HeaderName::Expires),
        ),
        (
            "unterminated quoted display name",
            String::from_utf8(request("OPTIONS sip:bob@example.com SIP/2.0", "", ""))
                .unwrap()
                .replace("From: <sip:alice", "From: \"Alice <sip:alice")
                .into_bytes(),
            ParseError::Invalid(HeaderName::From),
        ),
        (
            "CSeq method differs from the request method",
            String::from_utf8(request("OPTIONS sip:bob@example.com SIP/2.0", "", ""))
                .unwrap()
                .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")
                .into_bytes(),
            ParseError::CSeqMethodMismatch,
        ),
        ("two Call-IDs", dup_call_id, ParseError::Duplicate(HeaderName::CallId)),
        (
            "no Via",
            String::from_utf8(request("OPTIONS sip:bob@example.com SIP/2.0", "", ""))
                .unwrap()
                .replace("Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKt1\r\n", "")
                .into_bytes(),
            ParseError::Missing(HeaderName::Via),
        ),
        (
            "Via without a transport",
            String::from_utf8(request("OPTIONS sip:bob@example.com SIP/2.0", "", ""))
                .unwrap()
                .replace("SIP/2.0/UDP host1", "SIP/2.0 host1")
                .into_bytes(),
            ParseError::Invalid(HeaderName::Via),
        ),
    ];
    for (name, data, err) in cases {
        let msg =
            Message::parse(&data).unwrap_or_else(|e| panic!("{name}: tokenizing failed: {e}"));
        assert_eq!(msg.validate(), Err(err), "{name}");
        let (a, b) = err.reason();
        assert!(
            !a.is_empty() && (a.len() + b.len()) < 64,
            "{name}: reason fits a status line"
        );
    }
}
