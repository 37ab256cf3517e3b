//! Checks that go beyond tokenizing (RFC 3261 §8.1.1, §8.2, §16.3 step 1):
//! mandatory headers, single-valued headers seen twice, the CSeq method of a
//! request, and whether the headers a proxy reads parse at all.
//!
//! Kept apart from [`Message::parse`](super::Message::parse) so that a
//! proxy can choose between answering 400 and forwarding what it does not
//! need to understand.

use super::error::ParseError;
use super::header::{HeaderName, HEADER_NAME_COUNT};
use super::name_addr::NameAddr;
use super::parse::Message;
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
        let v = msg.header(name).ok_or(ParseError::Missing(name))?;
        NameAddr::parse(v).map_err(|_| ParseError::Invalid(name))?;
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
        let uri = msg.request_uri_bytes().ok_or(ParseError::BadRequestUri)?;
        Uri::parse(uri).map_err(|_| ParseError::BadRequestUri)?;
    }
    Ok(())
}

impl<'a> Message<'a> {
    /// The Request-URI, typed; for a response, [`ParseError::BadRequestUri`].
    pub fn request_uri(&self) -> Result<Uri<'a>, ParseError> {
        let uri = self.request_uri_bytes().ok_or(ParseError::BadRequestUri)?;
        Uri::parse(uri).map_err(|_| ParseError::BadRequestUri)
    }

    /// Runs [`validate`] on this message.
    pub fn validate(&self) -> Result<(), ParseError> {
        validate(self)
    }
}
