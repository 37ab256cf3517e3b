//! The `Digest` credentials of an Authorization or Proxy-Authorization
//! header (RFC 3261 §25.1 `credentials`, RFC 7616 §3.4), read in place.
//!
//! Quoted values keep their escapes: usernames with `\"` in them are not
//! unescaped, they are compared as written, which is what a UA that wrote
//! the same bytes into its hash also did.

use crate::sip::scan::{is_lws, is_token_byte, quoted_string_len};

/// The parameters of one `Digest` credentials value that sipshard uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: &'a [u8],
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`: the one we issued, if the UA is honest.
    pub nonce: &'a [u8],
    /// `uri`: the digest-uri, which must be the Request-URI.
    pub uri: &'a [u8],
    /// `response`: the hex digest to check.
    pub response: &'a [u8],
    /// `algorithm`, absent meaning MD5 (RFC 7616 §3.4).
    pub algorithm: Option<&'a [u8]>,
    /// `cnonce`.
    pub cnonce: Option<&'a [u8]>,
    /// `qop`.
    pub qop: Option<&'a [u8]>,
    /// `nc`: 8 hex digits.
    pub nc: Option<&'a [u8]>,
}

/// Why a credentials value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Another scheme (Basic, AKA, ...), not `Digest`.
    NotDigest,
    /// Broken syntax: a missing `=`, an unclosed quote, a stray byte.
    Syntax,
    /// A parameter given twice.
    Duplicate,
    /// One of username, realm, nonce, uri, response is missing.
    Missing,
}

/// The parameter names read, in the order of `found` in
/// [`Credentials::parse`].
const PARAMS: [&[u8]; 9] = [
    b"username",
    b"realm",
    b"nonce",
    b"uri",
    b"response",
    b"algorithm",
    b"cnonce",
    b"qop",
    b"nc",
];

impl<'a> Credentials<'a> {
    /// Reads `Digest name=value, ...`; scheme and parameter names are
    /// case-insensitive (RFC 7616 §3.4, RFC 3261 §25.1).
    pub fn parse(value: &'a [u8]) -> Result<Credentials<'a>, DigestError> {
        let s = skip_lws(value);
        let scheme_len = s.iter().take_while(|&&b| is_token_byte(b)).count();
        if !s[..scheme_len].eq_ignore_ascii_case(b"Digest") {
            return Err(DigestError::NotDigest);
        }
        let mut rest = &s[scheme_len..];
        if rest.first().is_some_and(|&b| !is_lws(b)) {
            return Err(DigestError::NotDigest);
        }
        let mut found: [Option<&'a [u8]>; 9] = [None; 9];
        loop {
            rest = skip_lws(rest);
            if rest.is_empty() {
                break;
            }
            let name_len = rest.iter().take_while(|&&b| is_token_byte(b)).count();
            if name_len == 0 {
                return Err(DigestError::Syntax);
            }
            let name = &rest[..name_len];
            rest = skip_lws(&rest[name_len..]);
            rest = match rest.split_first() {
                Some((b'=', r)) => skip_lws(r),
                _ => return Err(DigestError::Syntax),
            };
            let (value, used) = if rest.first() == Some(&b'"') {
                let n = quoted_string_len(rest).ok_or(DigestError::Syntax)?;
                (&rest[1..n - 1], n)
            } else {
                let n = rest.iter().take_while(|&&b| is_token_byte(b)).count();
                if n == 0 {
                    return Err(DigestError::Syntax);
                }
                (&rest[..n], n)
            };
            rest = skip_lws(&rest[used..]);
            match rest.split_first() {
                None => {}
                Some((b',', r)) => rest = r,
                Some(_) => return Err(DigestError::Syntax),
            }
            let Some(i) = PARAMS.iter().position(|p| p.eq_ignore_ascii_case(name)) else {
                continue; // opaque, userhash, auth-param: not used
            };
            if found[i].replace(value).is_some() {
                return Err(DigestError::Duplicate);
            }
        }
        let [username, realm, nonce, uri, response, algorithm, cnonce, qop, nc] = found;
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) =
            (username, realm, nonce, uri, response)
        else {
            return Err(DigestError::Missing);
        };
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            qop,
            nc,
        })
    }
}
fn skip_lws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_lws(b)).count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_typical_sip_ua_value() {
        let v = b"Digest username=\"bob\", realm=\"example.com\",\r\n nonce=\"abc\", \
uri=\"sip:example.com\", response=\"0123\", algorithm=MD5, cnonce=\"x y\", qop=auth, nc=00000001";
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.username, b"bob");
        assert_eq!(c.realm, b"example.com");
        assert_eq!(c.nonce, b"abc");
        assert_eq!(c.uri, b"sip:example.com");
        assert_eq!(c.response, b"0123");
        assert_eq!(c.algorithm, Some(&b"MD5"[..]));
        assert_eq!(c.cnonce, Some(&b"x y"[..]));
        assert_eq!(c.qop, Some(&b"auth"[..]));
        assert_eq!(c.nc, Some(&b"00000001"[..]));
    }

    #[test]
    fn names_and_scheme_are_case_insensitive_and_unknown_params_are_skipped() {
        let v = b"digest USERNAME=\"a\",Realm=\"r\",opaque=\"o\",Nonce=n,URI=\"u\",Response=\"f\"";
        let c = Credentials::parse(v).unwrap();
        assert_eq!(
            (c.username, c.nonce, c.response),
            (&b"a"[..], &b"n"[..], &b"f"[..])
        );
        assert_eq!(c.algorithm, None);
    }

    #[test]
    fn broken_values_are_errors_not_panics() {
        for (v, e) in [
            (&b"Basic dXNlcjpwYXNz"[..], DigestError::NotDigest),
            (b"Digestusername=\"a\"", DigestError::NotDigest),
            (b"", DigestError::NotDigest),
            (b"Digest username=\"a", DigestError::Syntax),
            (b"Digest username", DigestError::Syntax),
            (b"Digest username=", DigestError::Syntax),
            (b"Digest =\"a\"", DigestError::Syntax),
            (b"Digest username=\"a\" realm=\"r\"", DigestError::Syntax),
            (
                b"Digest username=\"a\", username=\"b\"",
                DigestError::Duplicate,
            ),
            (b"Digest username=\"a\", realm=\"r\"", DigestError::Missing),
            (b"Digest ", DigestError::Missing),
        ] {
            assert_eq!(
                Credentials::parse(v),
                Err(e),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn escapes_stay_as_written() {
        let v = b"Digest username=\"a\\\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"f\"";
        assert_eq!(Credentials::parse(v).unwrap().username, b"a\\\"b");
    }
}
