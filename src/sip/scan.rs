//! Byte classes and the small scanners every header view shares: trimming
//! linear white space, splitting comma lists and `;param` lists while
//! respecting quoted strings and `<...>`, and overflow-checked numbers.
//!
//! All of it is safe code over slices. A folded header value still holds its
//! CRLF and leading SP/HT (the header index keeps the original bytes), so
//! every scanner here treats CR and LF as white space, which is exactly what
//! LWS means in RFC 3261 §25.1.

/// Byte class bits, one table for every grammar the views check, so each
/// check is one load and one mask per byte (RFC 3261 §25.1).
pub mod class {
    /// `token`: alphanum and `-.!%*_+`'~`.
    pub const TOKEN: u8 = 1;
    /// A host name byte: alphanum, `-`, `.`, and `_` (seen in the wild).
    pub const HOST: u8 = 2;
    /// `user`: unreserved / escaped (`%`) / user-unreserved.
    pub const USER: u8 = 4;
    /// `password`: unreserved / escaped / `&=+$,`.
    pub const PASSWORD: u8 = 8;
    /// URI parameter and header bytes: visible ASCII except `<`, `>`, `"`.
    pub const URIC: u8 = 16;
    /// A digit or `.`: a host made only of these must be an IPv4 address.
    pub const DIGIT_DOT: u8 = 32;
    /// Call-ID `word` (§25.1): alphanum and `-.!%*_+`'~()<>:\"/[]?{}`.
    pub const WORD: u8 = 64;
}

/// The class bits of every byte value.
pub static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mark = matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let mut bits = 0;
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            bits |= class::TOKEN;
        }
        if alnum || matches!(b, b'-' | b'.' | b'_') {
            bits |= class::HOST;
        }
        if alnum
            || mark
            || matches!(
                b,
                b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
            )
        {
            bits |= class::USER;
        }
        if alnum || mark || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',') {
            bits |= class::PASSWORD;
        }
        if b > b' ' && b < 0x7f && !matches!(b, b'<' | b'>' | b'"') {
            bits |= class::URIC;
        }
        if b.is_ascii_digit() || b == b'.' {
            bits |= class::DIGIT_DOT;
        }
        if alnum
            || matches!(
                b,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            bits |= class::WORD;
        }
        t[c] = bits;
        c += 1;
    }
    t
};

/// True when every byte of `s` has all the class bits in `bits`.
#[inline]
pub fn all_in(s: &[u8], bits: u8) -> bool {
    // A fold with no early exit: one load and one AND per byte, no branch.
    s.iter().fold(bits, |acc, &b| acc & CLASS[b as usize]) == bits
}

/// True for a byte of an RFC 3261 `token`.
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    CLASS[b as usize] & class::TOKEN != 0
}

/// True when `s` is a non-empty `token`.
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && all_in(s, class::TOKEN)
}

/// True for linear white space as it can appear inside a stored header
/// value: SP, HT, and the CR/LF of a folded line.
#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Strips leading and trailing LWS.
#[inline]
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Strips leading LWS.
#[inline]
pub fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    &s[start..]
}

/// Parses a non-empty run of ASCII digits into a u32; None on any other
/// byte or on overflow (RFC 4475 §3.1.2.9 sends overlarge values on purpose).
#[inline]
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    // 1*DIGIT allows leading zeros; drop them before the length check.
    let zeros = s.iter().take_while(|&&b| b == b'0').count();
    let s = if zeros == s.len() {
        &s[s.len().saturating_sub(1)..]
    } else {
        &s[zeros..]
    };
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses digits into a u16 (ports); None on any other byte or overflow.
#[inline]
pub fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_u32(s).and_then(|n| u16::try_from(n).ok())
}

/// Index of the first `needle` in `s` that lies outside a quoted string and
/// outside `<...>`. Backslash escapes inside quotes are skipped (§25.1
/// quoted-pair).
pub fn find_top_level(s: &[u8], needle: u8) -> Option<usize> {
    let mut i = 0;
    loop {
        // Jump to the next byte that matters; most values hold no quotes
        // or brackets, so this is one vectorised search.
        i += memchr::memchr3(needle, b'"', b'<', &s[i..])?;
        match s[i] {
            b'"' => i += quoted_string_len(&s[i..]).unwrap_or(s.len() - i),
            b'<' if needle != b'<' => {
                i += memchr::memchr(b'>', &s[i..]).map_or(s.len() - i, |n| n + 1)
            }
            _ => return Some(i),
        }
        if i >= s.len() {
            return None;
        }
    }
}

/// One element of a comma-separated header value, with its place in the
/// value so that an editor can cut it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListItem<'a> {
    /// The element, trimmed of LWS.
    pub text: &'a [u8],
    /// Offset of `text` in the value it came from.
    pub start: usize,
}

/// Splits a header value at top-level commas (§7.3.1), skipping empty
/// elements, yielding each trimmed element and its offset.
#[derive(Clone, Debug)]
pub struct ListIter<'a> {
    value: &'a [u8],
    pos: usize,
}

impl<'a> ListIter<'a> {
    /// Iterates the elements of `value`.
    pub fn new(value: &'a [u8]) -> Self {
        ListIter { value, pos: 0 }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = ListItem<'a>;

    fn next(&mut self) -> Option<ListItem<'a>> {
        while self.pos < self.value.len() {
            let rest = &self.value[self.pos..];
            let len = find_top_level(rest, b',').unwrap_or(rest.len());
            let raw = &rest[..len];
            let lead = raw.iter().position(|&b| !is_lws(b)).unwrap_or(raw.len());
            let start = self.pos + lead;
            self.pos += len + 1;
            let text = trim(raw);
            if !text.is_empty() {
                return Some(ListItem { text, start });
            }
        }
        None
    }
}

/// One `;name[=value]` parameter. `value` keeps its quotes if it had them;
/// see [`unquote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter name as written (compare case-insensitively).
    pub name: &'a [u8],
    /// The value after `=`, trimmed; `None` for a bare flag such as `lr`.
    pub value: Option<&'a [u8]>,
}

/// Iterates a parameter list of the form `;a=1;b;c="x;y"`. The input starts
/// at (or before) the first `;`. Quoted values may hold `;`.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a [u8],
}

impl<'a> ParamIter<'a> {
    /// Iterates the parameters in `s`.
    pub fn new(s: &'a [u8]) -> Self {
        ParamIter { rest: s }
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let s = self.rest;
        let mut i = 0;
        while i < s.len() && (is_lws(s[i]) || s[i] == b';') {
            i += 1;
        }
        if i == s.len() {
            self.rest = &s[i..];
            return None;
        }
        let start = i;
        i += s[i..]
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .unwrap_or(s.len() - i);
        let name = trim(&s[start..i]);
        if i == s.len() || s[i] == b';' {
            self.rest = &s[i..];
            return Some(Param { name, value: None });
        }
        i += 1; // '='
        while i < s.len() && is_lws(s[i]) {
            i += 1;
        }
        let value_start = i;
        if s.get(i) == Some(&b'"') {
            // A quoted value may hold ';'.
            i += quoted_string_len(&s[i..]).unwrap_or(s.len() - i);
        }
        i += find_byte(&s[i..], b';').unwrap_or(s.len() - i);
        self.rest = &s[i..];
        Some(Param {
            name,
            value: Some(trim(&s[value_start..i])),
        })
    }
}

/// Index of the first `b` in a short slice. A plain loop beats memchr's
/// dispatch on the few-byte strings of URIs and parameters.
#[inline]
pub fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Finds a parameter by name (case-insensitive). `Some(None)` means present
/// without a value.
pub fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    ParamIter::new(params)
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value)
}

/// Strips the surrounding quotes of a quoted-string, leaving escapes in
/// place; a value without quotes comes back unchanged.
pub fn unquote(s: &[u8]) -> &[u8] {
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// True when `s` is one complete quoted-string: opening quote, qdtext or
/// quoted-pairs, closing quote, nothing after (§25.1).
pub fn is_quoted_string(s: &[u8]) -> bool {
    quoted_string_len(s) == Some(s.len())
}

/// Length of the quoted-string at the start of `s`, quotes included.
pub fn quoted_string_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                // quoted-pair: "\" followed by any byte except CR and LF
                match s.get(i + 1) {
                    Some(b'\r') | Some(b'\n') | None => return None,
                    _ => i += 2,
                }
            }
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_class() {
        assert!(is_token(b"INVITE"));
        assert!(is_token(b"x-a.b!%*_+`'~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"a\"b"));
    }

    #[test]
    fn trims_folded_white_space() {
        assert_eq!(trim(b" \t a b \r\n "), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    #[test]
    fn numbers_refuse_overflow_and_signs() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"000000000005"), Some(5));
        assert_eq!(parse_u32(b"0000"), Some(0));
        assert_eq!(parse_u32(b"00004294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"+1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"1 "), None);
        assert_eq!(parse_u16(b"65535"), Some(65535));
        assert_eq!(parse_u16(b"65536"), None);
    }

    #[test]
    fn list_split_respects_quotes_and_angles() {
        let v = b"\"Doe, John\" <sip:a@b;x=1,2>;q=0.5 , <sip:c@d>,,sip:e@f";
        let items: Vec<_> = ListIter::new(v).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].text, &b"\"Doe, John\" <sip:a@b;x=1,2>;q=0.5"[..]);
        assert_eq!(items[0].start, 0);
        assert_eq!(items[1].text, &b"<sip:c@d>"[..]);
        assert_eq!(&v[items[1].start..items[1].start + 9], b"<sip:c@d>");
        assert_eq!(items[2].text, &b"sip:e@f"[..]);
    }

    #[test]
    fn list_split_handles_escaped_quote() {
        let v = br#""a\", b" <sip:x@y>, <sip:z@w>"#;
        let items: Vec<_> = ListIter::new(v).map(|i| i.text).collect();
        assert_eq!(
            items,
            vec![&br#""a\", b" <sip:x@y>"#[..], &b"<sip:z@w>"[..]]
        );
    }

    #[test]
    fn params() {
        let p: Vec<_> = ParamIter::new(b";branch=z9hG4bK1 ; rport;q = 0.7;x=\"a;b\"").collect();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[0],
            Param {
                name: b"branch",
                value: Some(b"z9hG4bK1")
            }
        );
        assert_eq!(
            p[1],
            Param {
                name: b"rport",
                value: None
            }
        );
        assert_eq!(
            p[2],
            Param {
                name: b"q",
                value: Some(b"0.7")
            }
        );
        assert_eq!(p[3].value, Some(&b"\"a;b\""[..]));
        assert_eq!(find_param(b";lr;TAG=9", b"tag"), Some(Some(&b"9"[..])));
        assert_eq!(find_param(b";lr;tag=9", b"lr"), Some(None));
        assert_eq!(find_param(b";lr", b"maddr"), None);
    }

    #[test]
    fn quoted_strings() {
        assert!(is_quoted_string(br#""a b""#));
        assert!(is_quoted_string(br#""a \"q\" b""#));
        assert!(!is_quoted_string(br#""unterminated"#));
        assert!(!is_quoted_string(br#""a" b"#));
        assert_eq!(quoted_string_len(br#""x" <sip:a>"#), Some(3));
        assert_eq!(unquote(br#""x""#), b"x");
    }
}
