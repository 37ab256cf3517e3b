//! `name-addr` and `addr-spec` (RFC 3261 §20.10, §25.1) and the headers
//! built from them: From, To, Contact, Route, Record-Route, Path.
//!
//! In the `addr-spec` form (no angle brackets) everything after the first
//! `;` is a header parameter, not a URI parameter (§20.10): that is why a
//! URI holding `;`, `,` or `?` must be written inside `<...>`.

use memchr::memchr;

use super::error::ParseError;
use super::header::HeaderName;
use super::parse::{memoized, HeaderValue, Message};
use super::scan::{find_param, is_lws, is_token_byte, quoted_string_len, trim, ParamIter};
use super::uri::Uri;

/// An address with optional display name and header parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: a quoted string with its quotes and
    /// escapes, or a run of tokens. None when absent or empty.
    pub display_name: Option<&'a [u8]>,
    /// The URI (checked against the SIP, tel or absolute URI grammar).
    pub uri: &'a [u8],
    /// Header parameters (`;tag=...;q=...`), starting with `;`, or empty.
    pub params: &'a [u8],
    /// True when the URI was written inside `<...>`.
    pub bracketed: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses `( name-addr / addr-spec ) *( SEMI generic-param )`.
    pub fn parse(s: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        let s = trim(s);
        let (display_name, after_name) = if s.first() == Some(&b'"') {
            let n = quoted_string_len(s).ok_or(ParseError::BadUri)?;
            (Some(&s[..n]), &s[n..])
        } else {
            match memchr(b'<', s) {
                Some(lt) => {
                    let name = trim(&s[..lt]);
                    // display-name = *(token LWS): tokens and white space only
                    if !name.iter().all(|&b| is_token_byte(b) || is_lws(b)) {
                        return Err(ParseError::BadUri);
                    }
                    ((!name.is_empty()).then_some(name), &s[lt..])
                }
                None => (None, s),
            }
        };
        let rest = trim(after_name);
        if rest.first() == Some(&b'<') {
            let gt = memchr(b'>', rest).ok_or(ParseError::BadUri)?;
            let uri = trim(&rest[1..gt]);
            let params = trim(&rest[gt + 1..]);
            if !(params.is_empty() || params[0] == b';') {
                return Err(ParseError::BadUri);
            }
            Uri::parse(uri)?;
            return Ok(NameAddr {
                display_name,
                uri,
                params,
                bracketed: true,
            });
        }
        if display_name.is_some() {
            // A quoted display name must be followed by <uri>.
            return Err(ParseError::BadUri);
        }
        let end = memchr(b';', rest).unwrap_or(rest.len());
        let uri = trim(&rest[..end]);
        if uri.iter().any(|&b| is_lws(b) || b == b'>') {
            return Err(ParseError::BadUri);
        }
        Uri::parse(uri)?;
        Ok(NameAddr {
            display_name: None,
            uri,
            params: &rest[end..],
            bracketed: false,
        })
    }

    /// The display name as text: quotes removed and quoted-pairs (`\"`,
    /// `\\`) decoded into `out`; token display names come back as written.
    /// None when there is no display name or `out` is too small.
    pub fn display_name_text<'o>(&self, out: &'o mut [u8]) -> Option<&'o [u8]> {
        let raw = self.display_name?;
        let quoted = raw.len() >= 2 && raw[0] == b'"';
        let inner = if quoted { &raw[1..raw.len() - 1] } else { raw };
        let mut n = 0;
        let mut i = 0;
        while i < inner.len() {
            if quoted && inner[i] == b'\\' && i + 1 < inner.len() {
                i += 1;
            }
            *out.get_mut(n)? = inner[i];
            n += 1;
            i += 1;
        }
        Some(&out[..n])
    }

    /// The URI, typed.
    pub fn parsed_uri(&self) -> Result<Uri<'a>, ParseError> {
        Uri::parse(self.uri)
    }

    /// The header parameters.
    pub fn params(&self) -> ParamIter<'a> {
        ParamIter::new(self.params)
    }

    /// One header parameter by name; `Some(None)` for a flag.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// The `tag` parameter of From and To (§19.3).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }
}

/// One Contact value: `*` or an address (§20.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *`, only valid in a REGISTER with Expires: 0 (§10.2.2).
    Star,
    /// A contact address.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(s: &'a [u8]) -> Result<Contact<'a>, ParseError> {
        if trim(s) == b"*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(s).map(Contact::Addr)
        }
    }

    /// The `q` value in thousandths (0..=1000); None when absent or not a
    /// valid qvalue (§25.1: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]).
    pub fn q(&self) -> Option<u16> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => parse_qvalue(a.param(b"q")??),
        }
    }

    /// The `expires` parameter in seconds; None when absent or invalid.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => super::scan::parse_u32(a.param(b"expires")??),
        }
    }
}

/// Parses a qvalue into thousandths.
pub fn parse_qvalue(s: &[u8]) -> Option<u16> {
    let (int, frac) = match memchr(b'.', s) {
        Some(d) => (&s[..d], &s[d + 1..]),
        None => (s, &s[s.len()..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |&d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

impl<'a> Message<'a> {
    /// The From header (§20.20).
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        self.single_name_addr(HeaderName::From)
    }

    /// The To header (§20.39).
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        self.single_name_addr(HeaderName::To)
    }

    /// The URI of the To header: the error of [`Message::to`], or that of
    /// parsing its URI. Parsed once per message (the registrar reads it
    /// three times), then read from the message's memo.
    pub fn to_uri(&self) -> Result<Uri<'a>, ParseError> {
        memoized(&self.to_uri, || self.to().and_then(|t| t.parsed_uri()))
    }

    /// Parsed once per message, then read from the message's memo.
    fn single_name_addr(&self, name: HeaderName) -> Result<NameAddr<'a>, ParseError> {
        memoized(&self.from_to[usize::from(name == HeaderName::To)], || {
            self.header(name)
                .ok_or(ParseError::Missing(name))
                .and_then(|v| NameAddr::parse(v).map_err(|_| ParseError::Invalid(name)))
        })
    }

    /// Every Contact value across all Contact lines, in order.
    /// The first is parsed once per message (validation and the registrar
    /// both read a REGISTER's Contacts, nearly always one), then read from
    /// the message's memo.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        let parse =
            |v: &'a [u8]| Contact::parse(v).map_err(|_| ParseError::Invalid(HeaderName::Contact));
        self.values(HeaderName::Contact)
            .enumerate()
            .map(move |(i, v)| {
                if i > 0 {
                    parse(v.text)
                } else {
                    memoized(&self.first_contact, || parse(v.text))
                }
            })
    }

    /// Every Route value, in order (§20.34).
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Route)
    }

    /// Every Record-Route value, in order (§20.30).
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Every Path value, in order (RFC 3327).
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Path)
    }

    /// The first Route value with its place in the datagram, so that a proxy
    /// can both read and remove it (§16.4).
    pub fn top_route(&self) -> Option<(NameAddr<'a>, HeaderValue<'a>)> {
        let v = self.values(HeaderName::Route).next()?;
        NameAddr::parse(v.text).ok().map(|a| (a, v))
    }

    fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.values(name)
            .map(move |v| NameAddr::parse(v.text).map_err(|_| ParseError::Invalid(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr<'_> {
        NameAddr::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn quoted_display_name_with_escapes() {
        let a = na(r#""Alice \"Al\" <A>" <sip:alice@atlanta.com>;tag=1928301774"#);
        assert_eq!(a.display_name, Some(&br#""Alice \"Al\" <A>""#[..]));
        assert_eq!(a.uri, b"sip:alice@atlanta.com");
        assert_eq!(a.tag(), Some(&b"1928301774"[..]));
        assert!(a.bracketed);
        let mut out = [0u8; 32];
        assert_eq!(
            a.display_name_text(&mut out),
            Some(&br#"Alice "Al" <A>"#[..])
        );
        let mut small = [0u8; 4];
        assert_eq!(a.display_name_text(&mut small), None);
    }

    #[test]
    fn token_display_name() {
        let a = na("Bob Smith <sip:bob@biloxi.com>");
        assert_eq!(a.display_name, Some(&b"Bob Smith"[..]));
        let mut out = [0u8; 32];
        assert_eq!(a.display_name_text(&mut out), Some(&b"Bob Smith"[..]));
        assert_eq!(na("<sip:bob@biloxi.com>").display_name_text(&mut out), None);
        assert_eq!(a.tag(), None);
    }

    #[test]
    fn quoted_name_without_space() {
        let a = na(r#""Bob"<sips:bob@biloxi.com> ;tag=a48s"#);
        assert_eq!(a.display_name, Some(&br#""Bob""#[..]));
        assert_eq!(a.tag(), Some(&b"a48s"[..]));
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        let a = na("sip:+12125551212@server.phone2net.com;tag=887s");
        assert_eq!(a.uri, b"sip:+12125551212@server.phone2net.com");
        assert_eq!(a.tag(), Some(&b"887s"[..]));
        assert!(!a.bracketed);
    }

    #[test]
    fn uri_params_inside_brackets_stay_in_uri() {
        let a = na("<sip:p1.example.com;lr>;foo=bar");
        assert_eq!(a.uri, b"sip:p1.example.com;lr");
        assert_eq!(a.param(b"foo"), Some(Some(&b"bar"[..])));
        assert_eq!(a.param(b"lr"), None);
    }

    #[test]
    fn tel_and_other_schemes() {
        assert_eq!(na("<tel:+1-555-0100>").uri, b"tel:+1-555-0100");
        assert_eq!(na("<urn:service:sos>").uri, b"urn:service:sos");
    }

    #[test]
    fn invalid_name_addrs() {
        for bad in [
            "",
            "\"unterminated <sip:a@b>",
            "\"Name\" sip:a@b",
            "<sip:a@b",
            "<sip:a@b> junk",
            "Bad@Name <sip:a@b>",
            "sip:a@b c",
            "<not a uri>",
            "<>",
        ] {
            assert!(NameAddr::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contacts_with_q_and_expires() {
        let c = Contact::parse(b"<sip:a@10.0.0.1>;q=0.7;expires=3600").unwrap();
        assert_eq!(c.q(), Some(700));
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(Contact::parse(b" * ").unwrap(), Contact::Star);
        let c = Contact::parse(b"sip:a@b;q=1;expires=99999999999").unwrap();
        assert_eq!(c.q(), Some(1000));
        assert_eq!(c.expires(), None, "overflowing expires is invalid");
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.123"), Some(123));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"1.5"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b"2"), None);
        assert_eq!(parse_qvalue(b""), None);
    }
}
