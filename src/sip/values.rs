//! The single-valued headers a proxy and registrar read: CSeq (§20.16),
//! Call-ID (§20.8), Max-Forwards (§20.22), Expires (§20.19), Min-Expires
//! (§20.23) and Content-Type (§20.15).

use memchr::memchr;

use super::error::ParseError;
use super::header::HeaderName;
use super::method::Method;
use super::parse::Message;
use super::scan::{all_in, class, find_byte, is_lws, is_token, parse_u32, trim, ParamIter};

/// `CSeq: 4711 INVITE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number, below 2^31 (§8.1.1.5).
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        let bad = ParseError::Invalid(HeaderName::CSeq);
        let s = trim(s);
        let sp = s.iter().position(|&b| is_lws(b)).ok_or(bad)?;
        let number = parse_u32(&s[..sp]).filter(|&n| n < 1 << 31).ok_or(bad)?;
        let method = trim(&s[sp..]);
        if !is_token(method) {
            return Err(bad);
        }
        Ok(CSeq {
            number,
            method: Method::from_bytes(method),
        })
    }
}

/// `type/subtype;params` of Content-Type (§20.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// `application`, `multipart`... as written.
    pub kind: &'a [u8],
    /// `sdp`, `mixed`... as written.
    pub subtype: &'a [u8],
    /// Parameters starting at the first `;`, or empty.
    pub params: &'a [u8],
}

impl<'a> MediaType<'a> {
    /// Parses `m-type SLASH m-subtype *(SEMI m-parameter)`.
    pub fn parse(s: &'a [u8]) -> Result<MediaType<'a>, ParseError> {
        let bad = ParseError::Invalid(HeaderName::ContentType);
        let s = trim(s);
        let slash = memchr(b'/', s).ok_or(bad)?;
        let end = memchr(b';', s).unwrap_or(s.len());
        if end < slash {
            return Err(bad);
        }
        let kind = trim(&s[..slash]);
        let subtype = trim(&s[slash + 1..end]);
        if !is_token(kind) || !is_token(subtype) {
            return Err(bad);
        }
        Ok(MediaType {
            kind,
            subtype,
            params: &s[end..],
        })
    }

    /// The parameters.
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.params)
    }

    /// True for `application/sdp` in any letter case.
    pub fn is_sdp(&self) -> bool {
        self.kind.eq_ignore_ascii_case(b"application") && self.subtype.eq_ignore_ascii_case(b"sdp")
    }
}

/// `callid = word [ "@" word ]` (§25.1), with `word` bytes from the class
/// table.
pub fn is_valid_call_id(s: &[u8]) -> bool {
    let Some(at) = find_byte(s, b'@') else {
        return all_in(s, class::WORD) && !s.is_empty();
    };
    let (host, local) = (&s[at + 1..], &s[..at]);
    !local.is_empty() && !host.is_empty() && all_in(local, class::WORD) && all_in(host, class::WORD)
}

impl<'a> Message<'a> {
    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let v = self
            .header(HeaderName::CSeq)
            .ok_or(ParseError::Missing(HeaderName::CSeq))?;
        CSeq::parse(v)
    }

    /// The Call-ID, checked against its grammar.
    pub fn call_id(&self) -> Result<&'a [u8], ParseError> {
        let v = self
            .header(HeaderName::CallId)
            .ok_or(ParseError::Missing(HeaderName::CallId))?;
        if is_valid_call_id(v) {
            Ok(v)
        } else {
            Err(ParseError::Invalid(HeaderName::CallId))
        }
    }

    /// Max-Forwards (0..=255); Ok(None) when the header is absent, which a
    /// proxy answers by adding `Max-Forwards: 70` (§16.6 step 3).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.small_number(HeaderName::MaxForwards)
            .map(|n| n.map(|n| n as u8))
    }

    /// The Expires header in seconds; Ok(None) when absent.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::Expires)
    }

    /// The Min-Expires header in seconds; Ok(None) when absent.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::MinExpires)
    }

    /// The Content-Type header; Ok(None) when absent.
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, ParseError> {
        self.header(HeaderName::ContentType)
            .map(MediaType::parse)
            .transpose()
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        match self.header(name) {
            None => Ok(None),
            Some(v) => parse_u32(v).map(Some).ok_or(ParseError::Invalid(name)),
        }
    }

    fn small_number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        match self.number(name)? {
            Some(n) if n > 255 => Err(ParseError::Invalid(name)),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        let c = CSeq::parse(b"4711 INVITE").unwrap();
        assert_eq!(c.number, 4711);
        assert_eq!(c.method, Method::Invite);
        let c = CSeq::parse(b"  1 \t NEWMETHOD ").unwrap();
        assert_eq!(c.method, Method::Extension(b"NEWMETHOD"));
        for bad in [
            &b"INVITE"[..],
            b"1",
            b"-1 INVITE",
            b"2147483648 INVITE",
            b"1 INV ITE",
            b"x INVITE",
        ] {
            assert!(
                CSeq::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn media_type() {
        let m = MediaType::parse(b"application/sdp").unwrap();
        assert!(m.is_sdp());
        let m = MediaType::parse(b"multipart/mixed ; boundary=unique-boundary-1").unwrap();
        assert_eq!(m.subtype, b"mixed");
        assert_eq!(
            m.params().next().unwrap().value,
            Some(&b"unique-boundary-1"[..])
        );
        assert!(MediaType::parse(b"application").is_err());
        assert!(MediaType::parse(b"a;b/c").is_err());
    }

    #[test]
    fn call_ids() {
        assert!(is_valid_call_id(b"a84b4c76e66710@pc33.atlanta.com"));
        assert!(is_valid_call_id(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6"));
        assert!(!is_valid_call_id(b""));
        assert!(!is_valid_call_id(b"a b"));
        assert!(!is_valid_call_id(b"a@b@c"));
        assert!(!is_valid_call_id(b"@b"));
        assert!(!is_valid_call_id(b"a@"));
        assert!(!is_valid_call_id(b"a;b,c"));
        assert!(is_valid_call_id(b"{a}[b]<c>:d/e?f\"g\"@h"));
    }
}
