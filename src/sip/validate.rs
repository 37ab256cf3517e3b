//! Checks that go beyond tokenizing (RFC 3261 §8.1.1, §8.2, §16.3 step 1):
//! mandatory headers, single-valued headers seen twice, the CSeq method of a
//! request, and whether the headers a proxy reads parse at all.
//!
//! Kept apart from [`Message::parse`](super::Message::parse) so that a
//! proxy can choose between answering 400 and forwarding what it does not
//! need to understand.

use super::error::ParseError;
use super::header::{HeaderName, HEADER_NAME_COUNT};
use super::name_addr::{Contact, NameAddr};
use super::parse::{memoized, Message};
use super::uri::Uri;

/// Headers every request and response carries (§8.1.1; Max-Forwards is
/// added by a proxy when it is missing, so it is not on this list).
pub const MANDATORY: [HeaderName; 5] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

/// More Via values than this is refused: a UAC starts Max-Forwards at 70
/// (§8.1.1.6), so a longer Via stack is a loop, a forgery or an attack on
/// the proxy's time, not a route.
pub const MAX_VIAS: usize = 70;

/// True when a display name (a quoted string or tokens) is valid UTF-8, as
/// §25.1's UTF8-NONASCII requires.
fn display_name_ok(na: &NameAddr<'_>) -> bool {
    na.display_name
        .is_none_or(|d| std::str::from_utf8(d).is_ok())
}

/// Validates a message; the first problem found is returned, in the order
/// mandatory headers, duplicates, then each header's own grammar.
pub fn validate(msg: &Message<'_>) -> Result<(), ParseError> {
    let mut seen = [0u8; HEADER_NAME_COUNT];
    for h in msg.headers() {
        let n = &mut seen[h.name as usize];
        *n = n.saturating_add(1);
    }
    for name in MANDATORY {
        if seen[name as usize] == 0 {
            return Err(ParseError::Missing(name));
        }
    }
    for (i, &n) in seen.iter().enumerate() {
        let name = HeaderName::from_index(i as u8);
        if n > 1 && name.is_single() {
            return Err(ParseError::Duplicate(name));
        }
    }
    for name in [HeaderName::From, HeaderName::To] {
        // The same errors as parsing the header here, from the memo.
        let na = if name == HeaderName::From {
            msg.from()?
        } else {
            msg.to()?
        };
        if !display_name_ok(&na) {
            return Err(ParseError::Invalid(name));
        }
    }
    for c in msg.contacts().flatten() {
        if let Contact::Addr(a) = c {
            if !display_name_ok(&a) {
                return Err(ParseError::Invalid(HeaderName::Contact));
            }
        }
    }
    // Every Via, not only the top one: a response goes back along all of
    // them (§18.2.2), and one that does not parse, or is not
    // SIP/2.0/<transport> (§20.42), would be forwarded to where it cannot
    // be answered. (The bound is counted in the same pass.)
    for (i, via) in msg.vias().enumerate() {
        if i == MAX_VIAS {
            return Err(ParseError::TooManyVias);
        }
        if !via?.is_sip_2_0() {
            return Err(ParseError::BadViaProtocol);
        }
    }
    msg.call_id()?;
    let cseq = msg.cseq()?;
    msg.via()?;
    msg.max_forwards()?;
    msg.expires()?;
    if let Some(method) = msg.method() {
        if cseq.method != method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        msg.request_uri()?;
    }
    Ok(())
}

impl<'a> Message<'a> {
    /// The Request-URI, typed; for a response, [`ParseError::BadRequestUri`].
    /// Parsed once per message, then read from the message's memo.
    pub fn request_uri(&self) -> Result<Uri<'a>, ParseError> {
        memoized(&self.ruri, || {
            self.request_uri_bytes()
                .ok_or(ParseError::BadRequestUri)
                .and_then(|uri| Uri::parse(uri).map_err(|_| ParseError::BadRequestUri))
        })
    }

    /// Runs [`validate`] on this message.
    pub fn validate(&self) -> Result<(), ParseError> {
        validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &str) -> Result<(), ParseError> {
        let data = format!("INVITE sip:bob@example.com SIP/2.0\r\n{headers}\r\n");
        Message::parse(data.as_bytes()).unwrap().validate()
    }

    const GOOD: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n";

    #[test]
    fn good_request() {
        assert_eq!(check(GOOD), Ok(()));
    }

    fn check_bytes(headers: &[u8]) -> Result<(), ParseError> {
        let mut data = b"INVITE sip:bob@example.com SIP/2.0\r\n".to_vec();
        data.extend_from_slice(headers);
        data.extend_from_slice(b"\r\n");
        Message::parse(&data).unwrap().validate()
    }

    #[test]
    fn display_names_must_be_utf8() {
        let ok = GOOD.replace("From: <", "From: \"Jos\u{e9} \u{2603}\" <");
        assert_eq!(check(&ok), Ok(()));
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("From: <").unwrap() + "From: ".len();
        bytes.splice(at..at, b"\"\xc3\x28\" ".iter().copied());
        assert_eq!(
            check_bytes(&bytes),
            Err(ParseError::Invalid(HeaderName::From))
        );
        let mut contact = GOOD.as_bytes().to_vec();
        contact.extend_from_slice(b"Contact: \"\xff\xfe\" <sip:a@192.0.2.1>\r\n");
        assert_eq!(
            check_bytes(&contact),
            Err(ParseError::Invalid(HeaderName::Contact))
        );
    }

    #[test]
    fn via_stacks_are_bounded() {
        let vias = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{i}"))
                .collect();
            GOOD.replace(
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
                &format!("Via: {}", list.join(", ")),
            )
        };
        assert_eq!(check(&vias(MAX_VIAS)), Ok(()));
        assert_eq!(check(&vias(MAX_VIAS + 1)), Err(ParseError::TooManyVias));
    }

    #[test]
    fn every_via_must_be_sip_2_0_over_a_transport() {
        let top = "Via: SIP/2.0/UDP h;branch=z9hG4bK1";
        for (bad, err) in [
            ("SIP/3.0/UDP h", ParseError::BadViaProtocol),
            ("FOO/2.0/UDP h", ParseError::BadViaProtocol),
            ("SIP/2.0 h", ParseError::Invalid(HeaderName::Via)),
        ] {
            let as_top = GOOD.replace(top, &format!("Via: {bad};branch=z9hG4bK1"));
            assert_eq!(check(&as_top), Err(err), "top {bad}");
            let below = GOOD.replace(top, &format!("{top}, {bad};branch=z9hG4bK0"));
            assert_eq!(check(&below), Err(err), "below {bad}");
            let own_line = format!("{GOOD}Via: {bad};branch=z9hG4bK0\r\n");
            assert_eq!(check(&own_line), Err(err), "own line {bad}");
        }
        let lower_case = GOOD.replace("SIP/2.0/UDP", "sip/2.0/udp");
        assert_eq!(check(&lower_case), Ok(()));
        assert_eq!(ParseError::BadViaProtocol.status(), 400);
    }

    #[test]
    fn each_mandatory_header_is_required() {
        for (line, name) in GOOD.split("\r\n").zip(MANDATORY) {
            let without = GOOD.replace(&format!("{line}\r\n"), "");
            assert_eq!(check(&without), Err(ParseError::Missing(name)), "{line}");
        }
    }

    #[test]
    fn single_valued_headers_twice() {
        assert_eq!(
            check(&format!("{GOOD}i: c2\r\n")),
            Err(ParseError::Duplicate(HeaderName::CallId))
        );
        assert_eq!(
            check(&format!("{GOOD}Max-Forwards: 70\r\nMax-Forwards: 69\r\n")),
            Err(ParseError::Duplicate(HeaderName::MaxForwards))
        );
        assert_eq!(
            check(&format!("{GOOD}Via: SIP/2.0/UDP x;branch=z9hG4bK2\r\n")),
            Ok(())
        );
    }

    #[test]
    fn cseq_method_must_match() {
        let bad = GOOD.replace("1 INVITE", "1 ACK");
        assert_eq!(check(&bad), Err(ParseError::CSeqMethodMismatch));
    }

    #[test]
    fn broken_values() {
        let cases = [
            (
                "1 INVITE",
                "x INVITE",
                ParseError::Invalid(HeaderName::CSeq),
            ),
            (
                "Call-ID: c1",
                "Call-ID: a b",
                ParseError::Invalid(HeaderName::CallId),
            ),
            (
                "<sip:bob@example.com>",
                "<sip:bob@example.com",
                ParseError::Invalid(HeaderName::To),
            ),
            (
                "SIP/2.0/UDP h;",
                "SIP/2.0 h;",
                ParseError::Invalid(HeaderName::Via),
            ),
        ];
        for (from, to, err) in cases {
            assert_eq!(check(&GOOD.replace(from, to)), Err(err), "{to}");
        }
        assert_eq!(
            check(&format!("{GOOD}Max-Forwards: 300\r\n")),
            Err(ParseError::Invalid(HeaderName::MaxForwards))
        );
        assert_eq!(
            check(&format!("{GOOD}Expires: 4294967296\r\n")),
            Err(ParseError::Invalid(HeaderName::Expires))
        );
    }

    #[test]
    fn bad_request_uri() {
        let data = format!("INVITE sip:bob@exa<mple SIP/2.0\r\n{GOOD}\r\n");
        let msg = Message::parse(data.as_bytes()).unwrap();
        assert_eq!(msg.validate(), Err(ParseError::BadRequestUri));
    }

    #[test]
    fn responses_need_no_request_uri_or_method_match() {
        let data = format!(
            "SIP/2.0 200 OK\r\n{}\r\n",
            GOOD.replace("1 INVITE", "1 BYE")
        );
        assert_eq!(Message::parse(data.as_bytes()).unwrap().validate(), Ok(()));
    }
}
