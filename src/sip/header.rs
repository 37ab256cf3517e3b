//! Header names: the ones sipshard knows by id, their compact forms, and a
//! case-insensitive lookup from the bytes on the wire (RFC 3261 §7.3.3, §20).
//!
//! Names are compared case-insensitively (§7.3.1). A name that is not in the
//! table is [`HeaderName::Other`]: it is kept in the header index and
//! forwarded untouched.

/// Every header sipshard can find by id. The discriminant indexes
/// per-message tables, so the list is dense and `Other` is last.
#[allow(missing_docs)] // each variant is the header of the same name
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    Expires,
    MinExpires,
    Path,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Allow,
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    ContentEncoding,
    ContentLanguage,
    ContentDisposition,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    UserAgent,
    Server,
    Date,
    Timestamp,
    Subject,
    Event,
    AllowEvents,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    IdentityInfo,
    AcceptContact,
    RejectContact,
    RequestDisposition,
    RetryAfter,
    Warning,
    /// Any header not listed above; its name stays in the raw bytes.
    Other,
}

/// Number of header ids, `Other` included: the length of per-id tables.
pub const HEADER_NAME_COUNT: usize = HeaderName::Other as usize + 1;

/// (full name, compact form, id). The compact letters are those of the IANA
/// "Header Fields" registry for SIP (RFC 3261 §7.3.3 and later RFCs).
const TABLE: &[(&str, Option<u8>, HeaderName)] = &[
    ("Via", Some(b'v'), HeaderName::Via),
    ("From", Some(b'f'), HeaderName::From),
    ("To", Some(b't'), HeaderName::To),
    ("Call-ID", Some(b'i'), HeaderName::CallId),
    ("CSeq", None, HeaderName::CSeq),
    ("Max-Forwards", None, HeaderName::MaxForwards),
    ("Content-Length", Some(b'l'), HeaderName::ContentLength),
    ("Content-Type", Some(b'c'), HeaderName::ContentType),
    ("Contact", Some(b'm'), HeaderName::Contact),
    ("Route", None, HeaderName::Route),
    ("Record-Route", None, HeaderName::RecordRoute),
    ("Expires", None, HeaderName::Expires),
    ("Min-Expires", None, HeaderName::MinExpires),
    ("Path", None, HeaderName::Path),
    ("Supported", Some(b'k'), HeaderName::Supported),
    ("Require", None, HeaderName::Require),
    ("Proxy-Require", None, HeaderName::ProxyRequire),
    ("Unsupported", None, HeaderName::Unsupported),
    ("Allow", None, HeaderName::Allow),
    ("Accept", None, HeaderName::Accept),
    ("Accept-Encoding", None, HeaderName::AcceptEncoding),
    ("Accept-Language", None, HeaderName::AcceptLanguage),
    ("Content-Encoding", Some(b'e'), HeaderName::ContentEncoding),
    ("Content-Language", None, HeaderName::ContentLanguage),
    ("Content-Disposition", None, HeaderName::ContentDisposition),
    ("Authorization", None, HeaderName::Authorization),
    ("Proxy-Authorization", None, HeaderName::ProxyAuthorization),
    ("WWW-Authenticate", None, HeaderName::WwwAuthenticate),
    ("Proxy-Authenticate", None, HeaderName::ProxyAuthenticate),
    ("Authentication-Info", None, HeaderName::AuthenticationInfo),
    ("User-Agent", None, HeaderName::UserAgent),
    ("Server", None, HeaderName::Server),
    ("Date", None, HeaderName::Date),
    ("Timestamp", None, HeaderName::Timestamp),
    ("Subject", Some(b's'), HeaderName::Subject),
    ("Event", Some(b'o'), HeaderName::Event),
    ("Allow-Events", Some(b'u'), HeaderName::AllowEvents),
    ("Refer-To", Some(b'r'), HeaderName::ReferTo),
    ("Referred-By", Some(b'b'), HeaderName::ReferredBy),
    ("Session-Expires", Some(b'x'), HeaderName::SessionExpires),
    ("Identity", Some(b'y'), HeaderName::Identity),
    ("Identity-Info", Some(b'n'), HeaderName::IdentityInfo),
    ("Accept-Contact", Some(b'a'), HeaderName::AcceptContact),
    ("Reject-Contact", Some(b'j'), HeaderName::RejectContact),
    (
        "Request-Disposition",
        Some(b'd'),
        HeaderName::RequestDisposition,
    ),
    ("Retry-After", None, HeaderName::RetryAfter),
    ("Warning", None, HeaderName::Warning),
    ("", None, HeaderName::Other),
];

/// The longest known full name ("Request-Disposition", "Proxy-Authorization").
const MAX_NAME_LEN: usize = 19;

/// (name length, first letter) -> up to two candidate ids. Four pairs of
/// names share a shape (Call-ID/Contact, Accept-Encoding/Accept-Language,
/// Content-Encoding/Content-Language, Referred-By/Retry-After); no shape has
/// three, which the table build checks.
static BY_SHAPE: [[[u8; 2]; 26]; MAX_NAME_LEN + 1] = by_shape();

const fn by_shape() -> [[[u8; 2]; 26]; MAX_NAME_LEN + 1] {
    let other = HeaderName::Other as u8;
    let mut t = [[[other; 2]; 26]; MAX_NAME_LEN + 1];
    let mut i = 0;
    while i < TABLE.len() - 1 {
        let n = TABLE[i].0.as_bytes();
        assert!(n.len() <= MAX_NAME_LEN && n[0].is_ascii_alphabetic());
        let slot = &mut t[n.len()][((n[0] | 0x20) - b'a') as usize];
        if slot[0] == other {
            slot[0] = i as u8;
        } else {
            assert!(slot[1] == other, "three header names share a shape");
            slot[1] = i as u8;
        }
        i += 1;
    }
    t
}

/// Compact form letter (lower case) -> id, for the one-byte names.
static COMPACT: [HeaderName; 26] = compact_table();

const fn compact_table() -> [HeaderName; 26] {
    let mut out = [HeaderName::Other; 26];
    let mut i = 0;
    while i < TABLE.len() {
        if let Some(c) = TABLE[i].1 {
            out[(c - b'a') as usize] = TABLE[i].2;
        }
        i += 1;
    }
    out
}

/// Case-insensitive equality of a known name with a wire name. Setting bit
/// 0x20 lower-cases letters and leaves `-` and digits alone; the only other
/// byte it could map onto a name byte is CR (onto `-`), and the wire name
/// has already been checked to be a token, which CR is not. Names of eight
/// bytes or more are compared as two or three overlapping 64-bit words.
#[inline]
fn eq_name(known: &[u8], wire: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    if known.len() != wire.len() {
        return false;
    }
    let n = known.len();
    if n < 8 {
        return known
            .iter()
            .zip(wire)
            .all(|(&k, &w)| (k | 0x20) == (w | 0x20));
    }
    let word = |s: &[u8], at: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(b) | FOLD
    };
    let mid = if n > 16 { 8 } else { 0 };
    word(known, 0) == word(wire, 0)
        && word(known, mid) == word(wire, mid)
        && word(known, n - 8) == word(wire, n - 8)
}

impl HeaderName {
    /// Finds the id of a header name as it appears on the wire: full or
    /// compact form, any letter case. Unknown names give `Other`.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        match name.len() {
            0 => HeaderName::Other,
            1 => {
                let c = name[0] | 0x20;
                if c.is_ascii_lowercase() {
                    COMPACT[(c - b'a') as usize]
                } else {
                    HeaderName::Other
                }
            }
            _ => Self::from_full(name),
        }
    }

    /// Full-name lookup: the name's length and first letter pick at most
    /// two candidates from a table built at compile time, and one
    /// case-insensitive compare confirms the match.
    #[inline]
    fn from_full(name: &[u8]) -> HeaderName {
        let first = name[0] | 0x20;
        if name.len() > MAX_NAME_LEN || !first.is_ascii_lowercase() {
            return HeaderName::Other;
        }
        for &id in &BY_SHAPE[name.len()][(first - b'a') as usize] {
            let id = HeaderName::from_index(id);
            if id == HeaderName::Other {
                break;
            }
            if eq_name(id.canonical().as_bytes(), name) {
                return id;
            }
        }
        HeaderName::Other
    }

    /// Inverts `id as u8`; out-of-range numbers give `Other`.
    #[inline]
    pub fn from_index(i: u8) -> HeaderName {
        TABLE.get(i as usize).map_or(HeaderName::Other, |e| e.2)
    }

    /// The name as RFC 3261 spells it; used when sipshard writes a header.
    /// `Other` has no name of its own and gives "".
    pub const fn canonical(self) -> &'static str {
        TABLE[self as usize].0
    }

    /// The compact form, if the header has one.
    pub const fn compact(self) -> Option<u8> {
        TABLE[self as usize].1
    }

    /// Headers whose value may be a comma-separated list of several values
    /// that mean the same as the header repeated once per value (§7.3.1).
    /// sipshard splits only these; other values, which may carry commas of
    /// their own (Date, WWW-Authenticate, unknown headers), stay whole.
    pub const fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Contact
                | HeaderName::Path
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Supported
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::AllowEvents
                | HeaderName::Accept
                | HeaderName::AcceptEncoding
                | HeaderName::AcceptLanguage
                | HeaderName::ContentEncoding
                | HeaderName::ContentLanguage
                | HeaderName::Warning
        )
    }

    /// Headers that a message may carry at most once (§7.3.1, §20): a second
    /// copy is reported by validation.
    pub const fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_discriminant_order() {
        for (i, entry) in TABLE.iter().enumerate() {
            assert_eq!(entry.2 as usize, i, "{}", entry.0);
        }
        assert_eq!(TABLE.len(), HEADER_NAME_COUNT);
    }

    #[test]
    fn every_full_name_is_found_in_any_case() {
        for entry in &TABLE[..TABLE.len() - 1] {
            assert_eq!(HeaderName::from_bytes(entry.0.as_bytes()), entry.2);
            let upper = entry.0.to_ascii_uppercase();
            assert_eq!(HeaderName::from_bytes(upper.as_bytes()), entry.2);
            let lower = entry.0.to_ascii_lowercase();
            assert_eq!(HeaderName::from_bytes(lower.as_bytes()), entry.2);
        }
    }

    #[test]
    fn compact_forms() {
        let cases: &[(&[u8], HeaderName)] = &[
            (b"i", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"e", HeaderName::ContentEncoding),
            (b"l", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"f", HeaderName::From),
            (b"s", HeaderName::Subject),
            (b"k", HeaderName::Supported),
            (b"t", HeaderName::To),
            (b"v", HeaderName::Via),
            (b"V", HeaderName::Via),
            (b"o", HeaderName::Event),
            (b"u", HeaderName::AllowEvents),
            (b"r", HeaderName::ReferTo),
            (b"b", HeaderName::ReferredBy),
            (b"x", HeaderName::SessionExpires),
            (b"y", HeaderName::Identity),
            (b"a", HeaderName::AcceptContact),
            (b"j", HeaderName::RejectContact),
            (b"d", HeaderName::RequestDisposition),
            (b"n", HeaderName::IdentityInfo),
            (b"z", HeaderName::Other),
            (b"1", HeaderName::Other),
        ];
        for (name, id) in cases {
            assert_eq!(HeaderName::from_bytes(name), *id, "{:?}", name);
        }
    }

    #[test]
    fn unknown_and_near_misses_are_other() {
        for name in [
            &b"X-Custom"[..],
            b"Vias",
            b"Call-I",
            b"Toe",
            b"P-Asserted-Identity",
            b"",
        ] {
            assert_eq!(HeaderName::from_bytes(name), HeaderName::Other);
        }
    }
}
