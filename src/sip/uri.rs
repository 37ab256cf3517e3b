//! URIs: SIP and SIPS (RFC 3261 §19.1, §25.1), tel (RFC 3966), and any
//! other absolute URI kept as scheme plus opaque rest.
//!
//! Views borrow the message. User parts keep their %-escapes; compare them
//! with [`eq_unescaped`] or decode into a caller buffer with [`unescape`],
//! neither of which allocates.

use std::net::{Ipv4Addr, Ipv6Addr};

use memchr::memchr;

use super::error::ParseError;
use super::scan::{all_in, class, find_byte, find_param, parse_u16, ParamIter};

/// The host part of a SIP URI or Via sent-by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as written (compare case-insensitively).
    Name(&'a [u8]),
    /// A dotted-quad IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference, written `[...]` on the wire.
    V6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses `host` (§25.1: hostname / IPv4address / IPv6reference).
    pub fn parse(s: &'a [u8]) -> Result<Host<'a>, ParseError> {
        match s.first() {
            None => Err(ParseError::BadUri),
            Some(b'[') => {
                if s.len() < 3 || s[s.len() - 1] != b']' {
                    return Err(ParseError::BadUri);
                }
                let inner =
                    core::str::from_utf8(&s[1..s.len() - 1]).map_err(|_| ParseError::BadUri)?;
                inner.parse().map(Host::V6).map_err(|_| ParseError::BadUri)
            }
            // Only digits and dots: it must be an IPv4 address, since a
            // toplabel starts with a letter (§25.1).
            Some(_) if all_in(s, class::DIGIT_DOT) => {
                parse_ipv4(s).map(Host::V4).ok_or(ParseError::BadUri)
            }
            Some(&first) => {
                if !all_in(s, class::HOST) || first == b'.' || first == b'-' {
                    return Err(ParseError::BadUri);
                }
                Ok(Host::Name(s))
            }
        }
    }

    /// Splits `hostport` into host and optional port.
    pub fn parse_hostport(s: &'a [u8]) -> Result<(Host<'a>, &'a [u8], Option<u16>), ParseError> {
        let (host, port) = if s.first() == Some(&b'[') {
            let close = memchr(b']', s).ok_or(ParseError::BadUri)?;
            match s.get(close + 1) {
                None => (s, None),
                Some(b':') => (&s[..close + 1], Some(&s[close + 2..])),
                Some(_) => return Err(ParseError::BadUri),
            }
        } else {
            match find_byte(s, b':') {
                Some(c) => (&s[..c], Some(&s[c + 1..])),
                None => (s, None),
            }
        };
        let port = match port {
            Some(p) => Some(parse_u16(p).ok_or(ParseError::BadUri)?),
            None => None,
        };
        Ok((Host::parse(host)?, host, port))
    }
}

/// A `sip:` or `sips:` URI (§19.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// True for `sips:`.
    pub secure: bool,
    /// The user part, still %-escaped; None when the URI has no `@`.
    pub user: Option<&'a [u8]>,
    /// The password after `user:`, still escaped (deprecated, §19.1.1).
    pub password: Option<&'a [u8]>,
    /// The host, typed.
    pub host: Host<'a>,
    /// The host as written (with brackets for IPv6).
    pub host_raw: &'a [u8],
    /// The port, if written.
    pub port: Option<u16>,
    /// `;name=value` parameters, starting with `;`, or empty.
    pub params: &'a [u8],
    /// `?name=value&...` headers, without the `?`, or empty.
    pub headers: &'a [u8],
}

impl<'a> SipUri<'a> {
    /// Parses a SIP or SIPS URI.
    pub fn parse(s: &'a [u8]) -> Result<SipUri<'a>, ParseError> {
        let colon = find_byte(s, b':').ok_or(ParseError::BadUri)?;
        let secure = match &s[..colon] {
            sch if sch.eq_ignore_ascii_case(b"sip") => false,
            sch if sch.eq_ignore_ascii_case(b"sips") => true,
            _ => return Err(ParseError::BadUri),
        };
        let rest = &s[colon + 1..];
        // An unescaped '@' can only end the userinfo: hostport, params and
        // headers have no '@' in their grammar (§25.1).
        let (user, password, rest) = match memchr(b'@', rest) {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match find_byte(userinfo, b':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !all_in(user, class::USER) || !valid_escapes(user) {
                    return Err(ParseError::BadUri);
                }
                if let Some(pw) = password {
                    if !all_in(pw, class::PASSWORD) || !valid_escapes(pw) {
                        return Err(ParseError::BadUri);
                    }
                }
                (Some(user), password, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let hp_end = rest
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(rest.len());
        let (host, host_raw, port) = Host::parse_hostport(&rest[..hp_end])?;
        let tail = &rest[hp_end..];
        let (params, headers) = match find_byte(tail, b'?') {
            Some(q) => (&tail[..q], &tail[q + 1..]),
            None => (tail, &tail[tail.len()..]),
        };
        let uri_chars_ok = |t: &[u8]| all_in(t, class::URIC) && valid_escapes(t);
        if !uri_chars_ok(params) || !uri_chars_ok(headers) {
            return Err(ParseError::BadUri);
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            host_raw,
            port,
            params,
            headers,
        })
    }

    /// Iterates the URI parameters.
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.params)
    }

    /// Looks up one URI parameter by name; `Some(None)` for a flag like `lr`.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// Iterates the `?` headers as (name, value) pairs, still escaped.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let h = self.headers;
        h.split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(|p| match memchr(b'=', p) {
                Some(eq) => (&p[..eq], &p[eq + 1..]),
                None => (p, &p[p.len()..]),
            })
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param(b"transport").flatten()
    }

    /// True when the URI carries `;lr` (a loose router, §19.1.1).
    pub fn is_loose_router(&self) -> bool {
        self.param(b"lr").is_some()
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param(b"maddr").flatten()
    }

    /// The user part with escapes decoded into `out`; None when there is no
    /// user part or `out` is too small.
    pub fn user_unescaped<'o>(&self, out: &'o mut [u8]) -> Option<&'o [u8]> {
        unescape(self.user?, out)
    }
}

/// A `tel:` URI (RFC 3966).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number as written, visual separators included.
    pub number: &'a [u8],
    /// True for a global number (starts with `+`).
    pub global: bool,
    /// `;name=value` parameters, starting with `;`, or empty.
    pub params: &'a [u8],
}

impl<'a> TelUri<'a> {
    /// Parses a tel URI.
    pub fn parse(s: &'a [u8]) -> Result<TelUri<'a>, ParseError> {
        if s.len() < 4 || !s[..4].eq_ignore_ascii_case(b"tel:") {
            return Err(ParseError::BadUri);
        }
        let rest = &s[4..];
        let end = memchr(b';', rest).unwrap_or(rest.len());
        let number = &rest[..end];
        let params = &rest[end..];
        let visual = |b: u8| matches!(b, b'-' | b'.' | b'(' | b')');
        let (global, ok) = match number.first() {
            Some(b'+') => (
                true,
                number.len() > 1
                    && number[1..].iter().any(u8::is_ascii_digit)
                    && number[1..].iter().all(|&b| b.is_ascii_digit() || visual(b)),
            ),
            Some(_) => (
                false,
                number
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#' || visual(b))
                    && number
                        .iter()
                        .any(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#'),
            ),
            None => (false, false),
        };
        if !ok {
            return Err(ParseError::BadUri);
        }
        // RFC 3966 §5.1.5: a local number needs phone-context.
        let tel = TelUri {
            number,
            global,
            params,
        };
        if !global && tel.param(b"phone-context").is_none() {
            return Err(ParseError::BadUri);
        }
        Ok(tel)
    }

    /// Looks up a parameter by name.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// The digits of the number without visual separators, into `out`.
    pub fn digits<'o>(&self, out: &'o mut [u8]) -> Option<&'o [u8]> {
        let mut n = 0;
        for &b in self.number {
            if matches!(b, b'-' | b'.' | b'(' | b')') {
                continue;
            }
            *out.get_mut(n)? = b;
            n += 1;
        }
        Some(&out[..n])
    }
}

/// Any URI that can appear in a Request-URI or a name-addr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Another absolute URI (`mailto:`, `urn:`...): scheme and the rest.
    Other {
        /// The scheme, without the colon.
        scheme: &'a [u8],
        /// Everything after the colon.
        rest: &'a [u8],
    },
}

impl<'a> Uri<'a> {
    /// Parses any absolute URI, with SIP and tel typed (§19.1, §25.1).
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        let colon = find_byte(s, b':').ok_or(ParseError::BadUri)?;
        let scheme = &s[..colon];
        if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
            return SipUri::parse(s).map(Uri::Sip);
        }
        if scheme.eq_ignore_ascii_case(b"tel") {
            return TelUri::parse(s).map(Uri::Tel);
        }
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        let rest = &s[colon + 1..];
        if !scheme_ok || rest.is_empty() || !rest.iter().all(|&b| b > b' ' && b < 0x7f) {
            return Err(ParseError::BadUri);
        }
        Ok(Uri::Other { scheme, rest })
    }

    /// The SIP URI inside, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

/// IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT (§25.1),
/// each part at most 255.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for octet in octets.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 {
            return None;
        }
        let n = part.iter().try_fold(0u16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
        })?;
        *octet = u8::try_from(n).ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// True when every `%` in `s` starts a two-hex-digit escape.
#[inline]
fn valid_escapes(s: &[u8]) -> bool {
    if !s.contains(&b'%') {
        return true;
    }
    let mut i = 0;
    while let Some(p) = memchr(b'%', &s[i..]) {
        let at = i + p;
        match (s.get(at + 1), s.get(at + 2)) {
            (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i = at + 3,
            _ => return false,
        }
    }
    true
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Decodes %-escapes of `s` into `out`; None if `out` is too small or an
/// escape is malformed.
pub fn unescape<'o>(s: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let mut n = 0;
    for b in (UnescapedBytes { s, i: 0 }) {
        *out.get_mut(n)? = b?;
        n += 1;
    }
    Some(&out[..n])
}

/// Compares two escaped strings by the bytes they decode to, as §19.1.4
/// asks for user parts (`sip:%61lice@x` equals `sip:alice@x`).
pub fn eq_unescaped(a: &[u8], b: &[u8]) -> bool {
    let mut x = UnescapedBytes { s: a, i: 0 };
    let mut y = UnescapedBytes { s: b, i: 0 };
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(Some(p)), Some(Some(q))) if p == q => {}
            _ => return false,
        }
    }
}

/// Yields decoded bytes; `Some(None)` for a malformed escape.
struct UnescapedBytes<'a> {
    s: &'a [u8],
    i: usize,
}

impl Iterator for UnescapedBytes<'_> {
    type Item = Option<u8>;

    fn next(&mut self) -> Option<Option<u8>> {
        let b = *self.s.get(self.i)?;
        if b != b'%' {
            self.i += 1;
            return Some(Some(b));
        }
        match (self.s.get(self.i + 1), self.s.get(self.i + 2)) {
            (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                self.i += 3;
                Some(Some(hex(h) << 4 | hex(l)))
            }
            _ => {
                self.i = self.s.len();
                Some(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        SipUri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn full_sip_uri() {
        let u = sip(
            "sip:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project&priority=urgent",
        );
        assert!(!u.secure);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, Host::Name(b"atlanta.com"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.is_loose_router());
        let h: Vec<_> = u.headers().collect();
        assert_eq!(
            h,
            vec![
                (&b"subject"[..], &b"project"[..]),
                (&b"priority"[..], &b"urgent"[..])
            ]
        );
    }

    #[test]
    fn host_only_and_sips() {
        let u = sip("SIPS:proxy.example.net");
        assert!(u.secure);
        assert_eq!(u.user, None);
        assert_eq!(u.port, None);
        assert_eq!(u.params, b"");
    }

    #[test]
    fn ipv4_host() {
        let u = sip("sip:bob@192.0.2.4:5060");
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(u.port, Some(5060));
    }

    #[test]
    fn ipv6_reference() {
        let u = sip("sip:[2001:db8::10]:5070;maddr=[2001:db8::1]");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.host_raw, b"[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.maddr(), Some(&b"[2001:db8::1]"[..]));
        let u = sip("sip:user@[::1]");
        assert_eq!(u.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port, None);
    }

    #[test]
    fn escapes_in_user() {
        let u = sip("sip:%61lice%20x@example.com");
        let mut out = [0u8; 32];
        assert_eq!(u.user_unescaped(&mut out), Some(&b"alice x"[..]));
        assert!(eq_unescaped(b"%61lice", b"alice"));
        assert!(eq_unescaped(b"%4A", b"%4a"));
        assert!(!eq_unescaped(b"alice", b"alicf"));
        assert!(!eq_unescaped(b"alice", b"alic"));
    }

    #[test]
    fn user_with_telephone_subscriber_params() {
        let u = sip("sip:+1-212-555-1212;phone-context=x@gw.example.com;user=phone");
        assert_eq!(u.user, Some(&b"+1-212-555-1212;phone-context=x"[..]));
        assert_eq!(u.param(b"user"), Some(Some(&b"phone"[..])));
    }

    #[test]
    fn invalid_sip_uris() {
        for bad in [
            "sip:",
            "sip:@example.com",
            "sip:alice@",
            "sip:alice@exa mple.com",
            "sip:alice@example.com:99999",
            "sip:alice@example.com:5x",
            "sip:al<ice@example.com",
            "sip:%zzalice@example.com",
            "sip:[::1",
            "sip:[zz::1]",
            "sip:1.2.3.400",
            "sip:1.2.3",
            "sip:1.2.3.4.5",
            "sip:1..3.4",
            "sip:1.2.3.0004",
            "http://example.com",
            "sipx:a@b",
            "sip:a@b;x=\"q\"",
        ] {
            assert!(SipUri::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tel_uris() {
        let t = TelUri::parse(b"tel:+1-201-555-0123;ext=12").unwrap();
        assert!(t.global);
        assert_eq!(t.number, b"+1-201-555-0123");
        assert_eq!(t.param(b"ext"), Some(Some(&b"12"[..])));
        let mut out = [0u8; 20];
        assert_eq!(t.digits(&mut out), Some(&b"+12015550123"[..]));
        let t = TelUri::parse(b"tel:7042;phone-context=example.com").unwrap();
        assert!(!t.global);
        assert!(
            TelUri::parse(b"tel:7042").is_err(),
            "local number without context"
        );
        assert!(TelUri::parse(b"tel:+").is_err());
        assert!(TelUri::parse(b"tel:+12x").is_err());
    }

    #[test]
    fn any_uri() {
        assert!(matches!(Uri::parse(b"sip:a@b"), Ok(Uri::Sip(_))));
        assert!(matches!(Uri::parse(b"tel:+123"), Ok(Uri::Tel(_))));
        assert_eq!(
            Uri::parse(b"urn:service:sos").unwrap(),
            Uri::Other {
                scheme: b"urn",
                rest: b"service:sos"
            }
        );
        assert!(Uri::parse(b"no-colon").is_err());
        assert!(Uri::parse(b"1x:abc").is_err());
    }
}
