//! Tokenizing a datagram into a [`Message`]: the start line, then a
//! fixed-capacity index of headers, then the body framed as RFC 3261 §18.3
//! says for UDP.
//!
//! # Invariants
//! - `Message<'a>` borrows the datagram and never copies it; every span is
//!   an offset into that one buffer, so the writer can splice the original
//!   bytes.
//! - Parsing allocates nothing and cannot panic: every index is checked
//!   against the buffer, and all failures are [`ParseError`] values.
//! - Only what framing needs is interpreted here (start line, header names,
//!   Content-Length). Header values are parsed on demand by the typed views
//!   in the sibling modules, and the checks a proxy may want to skip live in
//!   [`validate`](super::validate).

use memchr::memchr;

use super::error::ParseError;
use super::header::{HeaderName, HEADER_NAME_COUNT};
use super::method::Method;
use super::scan::{self, is_lws, is_token_byte, ListIter};

/// How many header lines a message may have. Real SIP traffic carries 10 to
/// 30; 64 leaves room for long Via and Record-Route stacks. Raising it costs
/// 16 bytes per entry in every parsed message, and a message with more lines
/// is refused with [`ParseError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

const NONE: u8 = u8::MAX;

/// The first line of a message (§7.1, §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP-Version`.
    Request {
        /// The method token.
        method: Method<'a>,
        /// The Request-URI exactly as written; parse it with
        /// [`Message::request_uri`].
        uri: &'a [u8],
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// 100..=699.
        code: u16,
        /// The reason phrase, possibly empty.
        reason: &'a [u8],
    },
}

/// Where one header line sits in the datagram, in 16 bytes so that the
/// whole index of a message stays within a kilobyte. Offsets fit in u32
/// because a datagram longer than 4 GiB is refused up front; the name and
/// the gap before the value are short by construction (a longer one is
/// refused as [`ParseError::BadHeaderName`] / [`ParseError::TooLarge`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Entry {
    pub(crate) name: u8,
    /// Length of the name as written.
    name_len: u8,
    /// Offset of the value (trimmed) from `line_start`.
    value_off: u16,
    /// First byte of the header name.
    pub(crate) line_start: u32,
    /// One past the value's last byte; the value may span folded lines.
    pub(crate) value_end: u32,
    /// One past the LF that ends the (last folded) line.
    pub(crate) line_end: u32,
}

impl Entry {
    #[inline]
    pub(crate) fn value_start(&self) -> u32 {
        self.line_start + u32::from(self.value_off)
    }

    #[inline]
    fn name_end(&self) -> u32 {
        self.line_start + u32::from(self.name_len)
    }
}

/// One header as a caller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The id of the name; `Other` for names sipshard does not know.
    pub name: HeaderName,
    /// The name as written on the wire (any case, maybe compact).
    pub raw_name: &'a [u8],
    /// The whole value, trimmed; folded lines keep their CRLF and indent.
    pub value: &'a [u8],
}

/// One element of a (possibly comma-separated) header, with the position of
/// its text in the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderValue<'a> {
    /// The element, trimmed.
    pub text: &'a [u8],
    /// Index of the header line it came from, as in [`Message::headers`].
    pub line: usize,
    /// Offset of `text` in the datagram.
    pub offset: usize,
}

/// A parsed SIP message borrowing its datagram.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    start_line: StartLine<'a>,
    /// Offset of the start line (after any leading CRLFs).
    msg_start: u32,
    /// Offsets of the Request-URI (requests only).
    uri_start: u32,
    /// Offset of the empty line that ends the headers.
    headers_end: u32,
    body_start: u32,
    body_end: u32,
    content_length: Option<u32>,
    count: u8,
    /// Index of the first line of each known header, `NONE` when absent.
    first: [u8; HEADER_NAME_COUNT],
    entries: [Entry; MAX_HEADERS],
    /// The top Via once [`Message::via`] has parsed it: routing, the
    /// branch hash, the NAT parameters and a local answer all read it, and
    /// parsing it is the dearest field read on the packet path (callgrind,
    /// perf/RESULTS.md, "Profiling the hot path"). Unset until first asked for.
    pub(crate) top_via: std::cell::Cell<Option<Result<crate::sip::Via<'a>, ParseError>>>,
    /// From and To once [`Message::from`] and [`Message::to`] have parsed
    /// them: validation, both branch hashes, the registrar and a local
    /// answer read them (callgrind, perf/RESULTS.md, "Profiling the hot path").
    pub(crate) from_to: [NameAddrMemo<'a>; 2],
    /// The Request-URI and the To URI once parsed: validation, routing
    /// and the registrar each read them.
    pub(crate) ruri: UriMemo<'a>,
    pub(crate) to_uri: UriMemo<'a>,
    /// The first Contact value once [`Message::contacts`] has parsed it.
    pub(crate) first_contact: std::cell::Cell<Option<Result<crate::sip::Contact<'a>, ParseError>>>,
}

/// A memo of a parsed URI (unset until first asked for).
pub(crate) type UriMemo<'a> = std::cell::Cell<Option<Result<crate::sip::Uri<'a>, ParseError>>>;

/// A memo of a parsed From or To (unset until first asked for).
pub(crate) type NameAddrMemo<'a> =
    std::cell::Cell<Option<Result<crate::sip::NameAddr<'a>, ParseError>>>;

/// What `memo` holds, or else `parse`'s result, kept there for the next
/// reader: every per-message memo of [`Message`] is read this way.
pub(crate) fn memoized<T: Copy>(memo: &std::cell::Cell<Option<T>>, parse: impl FnOnce() -> T) -> T {
    if let Some(r) = memo.get() {
        return r;
    }
    let r = parse();
    memo.set(Some(r));
    r
}

impl<'a> Message<'a> {
    /// Tokenizes one datagram (RFC 3261 §7). Leading CRLFs are skipped
    /// (§7.5); a datagram that holds only line ends is [`ParseError::Empty`].
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if u32::try_from(buf.len()).is_err() {
            return Err(ParseError::TooLarge);
        }
        let mut pos = 0;
        while pos < buf.len() && matches!(buf[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos == buf.len() {
            return Err(ParseError::Empty);
        }
        let msg_start = pos;
        let lf = memchr(b'\n', &buf[pos..]).ok_or(ParseError::BadStartLine)? + pos;
        let line_end = if buf[lf - 1] == b'\r' { lf - 1 } else { lf };
        let (start_line, uri_start) = parse_start_line(buf, msg_start, line_end)?;

        let mut msg = Message {
            buf,
            start_line,
            msg_start: msg_start as u32,
            uri_start: uri_start as u32,
            headers_end: 0,
            body_start: 0,
            body_end: 0,
            content_length: None,
            count: 0,
            first: [NONE; HEADER_NAME_COUNT],
            entries: [Entry::default(); MAX_HEADERS],
            top_via: std::cell::Cell::new(None),
            from_to: Default::default(),
            ruri: Default::default(),
            to_uri: Default::default(),
            first_contact: Default::default(),
        };
        msg.parse_headers(lf + 1)?;
        Ok(msg)
    }

    /// The header loop: one entry per header line, folded lines joined,
    /// Content-Length read as it goes by, then the body framed (§18.3).
    /// Each line is scanned once: the name byte by byte against the token
    /// table, then memchr from the colon to the LF.
    #[inline]
    fn parse_headers(&mut self, mut pos: usize) -> Result<(), ParseError> {
        let buf = self.buf;
        let mut count = 0usize;
        loop {
            let line = &buf[pos..];
            let name_len = line
                .iter()
                .position(|&b| !is_token_byte(b))
                .unwrap_or(line.len());
            if name_len == 0 {
                let body_start = match line {
                    [b'\r', b'\n', ..] => pos + 2,
                    [b'\n', ..] => pos + 1,
                    // A continuation line with no header above it (§7.3.1).
                    [b' ' | b'\t', ..] => return Err(ParseError::BadFolding),
                    [] | [b'\r'] => return Err(ParseError::MissingEmptyLine),
                    _ => return Err(ParseError::BadHeaderName),
                };
                self.headers_end = pos as u32;
                self.body_start = body_start as u32;
                break;
            }
            let mut colon = name_len;
            while matches!(line.get(colon), Some(b' ' | b'\t')) {
                colon += 1;
            }
            match line.get(colon) {
                Some(b':') => {}
                None => return Err(ParseError::MissingEmptyLine),
                Some(_) => return Err(ParseError::BadHeaderName),
            }
            let mut lf = colon
                + 1
                + memchr(b'\n', &line[colon + 1..]).ok_or(ParseError::MissingEmptyLine)?;
            // Join folded lines: a line that starts with SP or HT continues
            // the value above it.
            while matches!(line.get(lf + 1), Some(b' ' | b'\t')) {
                lf += 1 + memchr(b'\n', &line[lf + 1..]).ok_or(ParseError::MissingEmptyLine)?;
            }
            // Trim the end first, so that an empty value is an empty span
            // right after the colon and never lands between CR and LF.
            let mut value_end = lf;
            while value_end > colon + 1 && is_lws(line[value_end - 1]) {
                value_end -= 1;
            }
            let mut value_start = colon + 1;
            while value_start < value_end && is_lws(line[value_start]) {
                value_start += 1;
            }
            if count == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            let name = HeaderName::from_bytes(&line[..name_len]);
            if name == HeaderName::ContentLength {
                let n = scan::parse_u32(&line[value_start..value_end])
                    .ok_or(ParseError::BadContentLength)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
                    _ => self.content_length = Some(n),
                }
            }
            let name_len = u8::try_from(name_len).map_err(|_| ParseError::BadHeaderName)?;
            let value_off = u16::try_from(value_start).map_err(|_| ParseError::TooLarge)?;
            self.entries[count] = Entry {
                name: name as u8,
                name_len,
                value_off,
                line_start: pos as u32,
                value_end: (pos + value_end) as u32,
                line_end: (pos + lf + 1) as u32,
            };
            if self.first[name as usize] == NONE {
                self.first[name as usize] = count as u8;
            }
            count += 1;
            pos += lf + 1;
        }
        self.count = count as u8;
        let first_header = self.entries[..count]
            .first()
            .map_or(self.headers_end as usize, |e| e.line_start as usize);
        if has_bare_cr_or_nul(&buf[first_header..self.body_start as usize]) {
            return Err(ParseError::BadHeaderValue);
        }
        let body_start = self.body_start as usize;
        let len = buf.len();
        let available = len - body_start;
        self.body_end = match self.content_length {
            None => len as u32,
            Some(n) if n as usize > available => return Err(ParseError::BodyTruncated),
            Some(n) => (body_start + n as usize) as u32,
        };
        Ok(())
    }

    /// The start line.
    #[inline]
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start_line
    }

    /// True for a request.
    #[inline]
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The method of a request; None for a response.
    #[inline]
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start_line {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response; None for a request.
    #[inline]
    pub fn status(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI bytes of a request.
    #[inline]
    pub fn request_uri_bytes(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The whole datagram this message borrows.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The message as framed: from the start line to the end of the body,
    /// without leading CRLFs or bytes past Content-Length.
    #[inline]
    pub fn framed(&self) -> &'a [u8] {
        &self.buf[self.msg_start as usize..self.body_end as usize]
    }

    /// The body, cut to Content-Length when the header is present (§18.3).
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body_start as usize..self.body_end as usize]
    }

    /// The Content-Length header's value, if the message carried one.
    #[inline]
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Number of header lines.
    #[inline]
    pub fn header_count(&self) -> usize {
        self.count as usize
    }

    /// Every header line in order, unknown ones included.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + '_ {
        self.entries[..self.count as usize]
            .iter()
            .map(move |e| self.header_at(e))
    }

    fn header_at(&self, e: &Entry) -> Header<'a> {
        Header {
            name: HeaderName::from_index(e.name),
            raw_name: &self.buf[e.line_start as usize..e.name_end() as usize],
            value: &self.buf[e.value_start() as usize..e.value_end as usize],
        }
    }

    /// The value of the first line of a known header. For
    /// [`HeaderName::Other`] this is the first unknown header, whatever its
    /// name: use [`Message::other_header`] to find one by name.
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.first_entry(name)
            .map(|e| &self.buf[e.value_start() as usize..e.value_end as usize])
    }

    /// How many lines carry this header.
    pub fn count_of(&self, name: HeaderName) -> usize {
        self.entries[..self.count as usize]
            .iter()
            .filter(|e| e.name == name as u8)
            .count()
    }

    /// The first line of a header not in the known table, by its exact
    /// name compared case-insensitively (e.g. `P-Asserted-Identity`).
    pub fn other_header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers()
            .find(|h| h.name == HeaderName::Other && h.raw_name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every value of a header across all its lines, in order. List headers
    /// (Via, Route, Record-Route, Contact, Path) are split at commas, so
    /// `Via: a, b` and two Via lines give the same values (§7.3.1).
    pub fn values(&self, name: HeaderName) -> Values<'a, '_> {
        let start = self.first[name as usize];
        Values {
            msg: self,
            name: name as u8,
            split: name.is_list(),
            line: if start == NONE {
                self.count as usize
            } else {
                start as usize
            },
            items: None,
        }
    }

    pub(crate) fn first_entry(&self, name: HeaderName) -> Option<&Entry> {
        match self.first[name as usize] {
            NONE => None,
            i => self.entries.get(i as usize),
        }
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries[..self.count as usize]
    }

    pub(crate) fn msg_start(&self) -> usize {
        self.msg_start as usize
    }

    pub(crate) fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    pub(crate) fn body_end(&self) -> usize {
        self.body_end as usize
    }

    pub(crate) fn uri_span(&self) -> Option<(usize, usize)> {
        self.request_uri_bytes()
            .map(|u| (self.uri_start as usize, self.uri_start as usize + u.len()))
    }
}

/// Iterator over the values of one header; see [`Message::values`].
#[derive(Clone, Debug)]
pub struct Values<'a, 'm> {
    msg: &'m Message<'a>,
    name: u8,
    split: bool,
    line: usize,
    items: Option<(ListIter<'a>, usize)>,
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = HeaderValue<'a>;

    fn next(&mut self) -> Option<HeaderValue<'a>> {
        loop {
            if let Some((items, value_start)) = &mut self.items {
                if let Some(item) = items.next() {
                    return Some(HeaderValue {
                        text: item.text,
                        line: self.line - 1,
                        offset: *value_start + item.start,
                    });
                }
                self.items = None;
            }
            let count = self.msg.count as usize;
            while self.line < count && self.msg.entries[self.line].name != self.name {
                self.line += 1;
            }
            if self.line >= count {
                return None;
            }
            let e = &self.msg.entries[self.line];
            self.line += 1;
            let (vs, ve) = (e.value_start() as usize, e.value_end as usize);
            let value = &self.msg.buf[vs..ve];
            if self.split {
                self.items = Some((ListIter::new(value), vs));
            } else {
                return Some(HeaderValue {
                    text: value,
                    line: self.line - 1,
                    offset: vs,
                });
            }
        }
    }
}

/// True when `head` holds a NUL or a CR that is not followed by LF. Lines
/// end only at LF here, so a bare CR would reach the next hop inside a
/// value, where a parser that ends lines at CR sees a header we never
/// checked (header injection). Written as one fold over byte pairs with no
/// early exit, so it vectorises; `head` ends with the empty line's LF.
fn has_bare_cr_or_nul(head: &[u8]) -> bool {
    let Some((&last, _)) = head.split_last() else {
        return false;
    };
    let bad = head.iter().zip(&head[1..]).fold(false, |bad, (&a, &b)| {
        bad | (a == 0) | ((a == b'\r') & (b != b'\n'))
    });
    bad | (last == 0) | (last == b'\r')
}

/// Parses the first line; returns it and the offset of the Request-URI.
fn parse_start_line(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<(StartLine<'_>, usize), ParseError> {
    let line = &buf[start..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)
        let sp = memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        check_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatusCode);
        }
        let code = rest[..3]
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        let reason = match rest.get(3) {
            None => &rest[3..],
            Some(b' ') => &rest[4..],
            Some(_) => return Err(ParseError::BadStatusCode),
        };
        if reason.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(ParseError::BadStartLine);
        }
        return Ok((StartLine::Response { code, reason }, 0));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF (§7.1)
    let sp1 = memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    let method = &line[..sp1];
    if !scan::is_token(method) {
        return Err(ParseError::BadMethod);
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr(b' ', rest).ok_or(ParseError::BadStartLine)?;
    let uri = &rest[..sp2];
    if uri.is_empty() || !uri.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Err(ParseError::BadRequestUri);
    }
    check_version(&rest[sp2 + 1..])?;
    Ok((
        StartLine::Request {
            method: Method::from_bytes(method),
            uri,
        },
        start + sp1 + 1,
    ))
}

/// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (§25.1); only 2.0 is spoken.
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4 && v[..4].eq_ignore_ascii_case(b"SIP/") && {
        let num = &v[4..];
        match memchr(b'.', num) {
            Some(dot) => {
                let (major, minor) = (&num[..dot], &num[dot + 1..]);
                !major.is_empty()
                    && !minor.is_empty()
                    && major.iter().all(u8::is_ascii_digit)
                    && minor.iter().all(u8::is_ascii_digit)
            }
            None => false,
        }
    };
    if well_formed {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One named test per message: `sip_case!(name, "bytes", |msg| { .. })`
    /// for messages that parse, `sip_case!(name, "bytes", Err(e))` for
    /// messages that must fail with error `e`.
    macro_rules! sip_case {
        ($name:ident, $bytes:expr, |$msg:ident| $body:block) => {
            #[test]
            fn $name() {
                let data: &[u8] = $bytes;
                let $msg = Message::parse(data)
                    .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(data)));
                $body
            }
        };
        ($name:ident, $bytes:expr, Err($err:expr)) => {
            #[test]
            fn $name() {
                let data: &[u8] = $bytes;
                assert_eq!(Message::parse(data).err(), Some($err));
            }
        };
    }

    const MIN: &[u8] = b"OPTIONS sip:p.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: <sip:p.example.com>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

    sip_case!(request_line, MIN, |m| {
        assert_eq!(m.method(), Some(Method::Options));
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:p.example.com"[..]));
        assert_eq!(m.header_count(), 7);
        assert_eq!(m.body(), b"");
        assert_eq!(m.content_length(), Some(0));
        assert_eq!(m.framed(), MIN);
        assert!(m.validate().is_ok());
    });

    sip_case!(
        extension_method,
        b"FOO.BAR-1 sip:x@y SIP/2.0\r\nCSeq: 1 FOO.BAR-1\r\n\r\n",
        |m| {
            assert_eq!(m.method(), Some(Method::Extension(b"FOO.BAR-1")));
        }
    );

    sip_case!(
        status_line,
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\n\r\n",
        |m| {
            assert_eq!(
                *m.start_line(),
                StartLine::Response {
                    code: 180,
                    reason: b"Ringing"
                }
            );
            assert_eq!(m.status(), Some(180));
            assert_eq!(m.method(), None);
        }
    );

    sip_case!(
        status_line_utf8_reason_and_empty_reason,
        "SIP/2.0 200 Très bien\r\n\r\n".as_bytes(),
        |m| {
            assert_eq!(m.status(), Some(200));
            let StartLine::Response { reason, .. } = *m.start_line() else {
                panic!()
            };
            assert_eq!(reason, "Très bien".as_bytes());
            let m = Message::parse(b"SIP/2.0 486 \r\n\r\n").unwrap();
            assert_eq!(
                *m.start_line(),
                StartLine::Response {
                    code: 486,
                    reason: b""
                }
            );
        }
    );

    sip_case!(
        bad_status_code,
        b"SIP/2.0 99 Low\r\n\r\n",
        Err(ParseError::BadStatusCode)
    );
    sip_case!(
        status_code_700,
        b"SIP/2.0 700 High\r\n\r\n",
        Err(ParseError::BadStatusCode)
    );
    sip_case!(
        status_code_letters,
        b"SIP/2.0 2xx OK\r\n\r\n",
        Err(ParseError::BadStatusCode)
    );
    sip_case!(
        unknown_version_request,
        b"INVITE sip:x@y SIP/7.0\r\n\r\n",
        Err(ParseError::UnsupportedVersion)
    );
    sip_case!(
        unknown_version_response,
        b"SIP/3.0 200 OK\r\n\r\n",
        Err(ParseError::UnsupportedVersion)
    );
    sip_case!(
        garbage_version,
        b"INVITE sip:x@y HTTP/1.1\r\n\r\n",
        Err(ParseError::BadStartLine)
    );
    sip_case!(
        lowercase_version_is_fine,
        b"INVITE sip:x@y sip/2.0\r\n\r\n",
        |m| {
            assert_eq!(m.method(), Some(Method::Invite));
        }
    );
    sip_case!(
        extra_space_in_request_line,
        b"INVITE  sip:x@y SIP/2.0\r\n\r\n",
        Err(ParseError::BadRequestUri)
    );
    sip_case!(
        space_in_request_uri,
        b"INVITE sip:x@y z SIP/2.0\r\n\r\n",
        Err(ParseError::BadStartLine)
    );
    sip_case!(
        bad_method,
        b"INV(ITE sip:x@y SIP/2.0\r\n\r\n",
        Err(ParseError::BadMethod)
    );
    sip_case!(no_spaces, b"INVITE\r\n\r\n", Err(ParseError::BadStartLine));
    sip_case!(
        no_line_end,
        b"INVITE sip:x@y SIP/2.0",
        Err(ParseError::BadStartLine)
    );
    sip_case!(only_crlf, b"\r\n\r\n", Err(ParseError::Empty));
    sip_case!(empty, b"", Err(ParseError::Empty));

    sip_case!(
        leading_crlf_skipped,
        b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n",
        |m| {
            assert_eq!(m.method(), Some(Method::Options));
            assert!(m.framed().starts_with(b"OPTIONS"));
        }
    );

    sip_case!(
        bare_lf_line_ends,
        b"OPTIONS sip:x SIP/2.0\nCall-ID: a\nCSeq: 1 OPTIONS\n\nbody",
        |m| {
            assert_eq!(m.header(HeaderName::CallId), Some(&b"a"[..]));
            assert_eq!(m.header(HeaderName::CSeq), Some(&b"1 OPTIONS"[..]));
            assert_eq!(m.body(), b"body");
        }
    );

    sip_case!(
        case_insensitive_names_and_compact_forms,
        b"OPTIONS sip:x SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCALL-id: abc\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\nl: 0\r\n\r\n",
        |m| {
            assert_eq!(m.header(HeaderName::Via), Some(&b"SIP/2.0/UDP h;branch=z9hG4bK1"[..]));
            assert_eq!(m.header(HeaderName::CallId), Some(&b"abc"[..]));
            assert!(m.header(HeaderName::From).is_some());
            assert!(m.header(HeaderName::To).is_some());
            assert_eq!(m.content_length(), Some(0));
        }
    );

    sip_case!(
        odd_whitespace_around_colon,
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID \t:   abc  \t\r\nCSeq:1 OPTIONS\r\nX-Empty:\r\n\r\n",
        |m| {
            assert_eq!(m.header(HeaderName::CallId), Some(&b"abc"[..]));
            assert_eq!(m.header(HeaderName::CSeq), Some(&b"1 OPTIONS"[..]));
            assert_eq!(m.other_header(b"x-empty"), Some(&b""[..]));
        }
    );

    sip_case!(
        folded_header,
        b"OPTIONS sip:x SIP/2.0\r\nSubject: I know you're there,\r\n     pick up the phone\r\n\tand talk to me!\r\nCall-ID: a\r\n\r\n",
        |m| {
            let v = m.header(HeaderName::Subject).unwrap();
            assert!(v.starts_with(b"I know you're there,\r\n"));
            assert!(v.ends_with(b"and talk to me!"));
            assert_eq!(m.header(HeaderName::CallId), Some(&b"a"[..]));
            assert_eq!(m.header_count(), 2);
        }
    );

    sip_case!(
        folded_value_starting_on_next_line,
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID:\r\n abc\r\n\r\n",
        |m| {
            assert_eq!(m.header(HeaderName::CallId), Some(&b"abc"[..]));
        }
    );

    sip_case!(
        fold_without_header,
        b"OPTIONS sip:x SIP/2.0\r\n continued\r\n\r\n",
        Err(ParseError::BadFolding)
    );
    sip_case!(
        header_without_colon,
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID abc\r\n\r\n",
        Err(ParseError::BadHeaderName)
    );
    sip_case!(
        header_with_bad_name,
        b"OPTIONS sip:x SIP/2.0\r\nCall(ID): abc\r\n\r\n",
        Err(ParseError::BadHeaderName)
    );
    sip_case!(
        header_with_empty_name,
        b"OPTIONS sip:x SIP/2.0\r\n: abc\r\n\r\n",
        Err(ParseError::BadHeaderName)
    );
    sip_case!(
        missing_empty_line,
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID: abc\r\n",
        Err(ParseError::MissingEmptyLine)
    );
    sip_case!(
        truncated_mid_header,
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID: ab",
        Err(ParseError::MissingEmptyLine)
    );

    sip_case!(
        unknown_headers_kept_in_order,
        b"OPTIONS sip:x SIP/2.0\r\nX-A: 1\r\nP-Asserted-Identity: <sip:a@b>\r\nx-a: 2\r\n\r\n",
        |m| {
            let hs: Vec<_> = m.headers().collect();
            assert_eq!(hs.len(), 3);
            assert!(hs.iter().all(|h| h.name == HeaderName::Other));
            assert_eq!(hs[2].raw_name, b"x-a");
            assert_eq!(m.other_header(b"X-A"), Some(&b"1"[..]));
            assert_eq!(
                m.other_header(b"p-asserted-identity"),
                Some(&b"<sip:a@b>"[..])
            );
        }
    );

    sip_case!(
        comma_list_and_repeated_lines_give_same_values,
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\r\n",
        |m| {
            let joined: Vec<_> = m.values(HeaderName::Via).map(|v| v.text).collect();
            let other = Message::parse(
                b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\r\n",
            )
            .unwrap();
            let split: Vec<_> = other.values(HeaderName::Via).map(|v| v.text).collect();
            assert_eq!(joined, split);
            assert_eq!(joined.len(), 3);
            let first = m.values(HeaderName::Via).nth(1).unwrap();
            assert_eq!(&m.bytes()[first.offset..first.offset + first.text.len()], first.text);
            assert_eq!(first.line, 0);
        }
    );

    sip_case!(
        non_list_header_with_comma_stays_whole,
        b"OPTIONS sip:x SIP/2.0\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n\r\n",
        |m| {
            let v: Vec<_> = m.values(HeaderName::Date).collect();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].text, b"Sat, 13 Nov 2010 23:29:00 GMT");
        }
    );

    sip_case!(
        no_content_length_takes_rest,
        b"MESSAGE sip:x SIP/2.0\r\nCall-ID: a\r\n\r\nhello\r\n",
        |m| {
            assert_eq!(m.body(), b"hello\r\n");
            assert_eq!(m.content_length(), None);
        }
    );
    sip_case!(
        shorter_content_length_truncates,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nhello",
        |m| {
            assert_eq!(m.body(), b"hel");
            assert!(m.framed().ends_with(b"\r\n\r\nhel"));
        }
    );
    sip_case!(
        longer_content_length_is_error,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 6\r\n\r\nhello",
        Err(ParseError::BodyTruncated)
    );
    sip_case!(
        conflicting_content_lengths,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 5\r\nl: 4\r\n\r\nhello",
        Err(ParseError::ConflictingContentLength)
    );
    sip_case!(
        agreeing_content_lengths,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 5\r\nl: 5\r\n\r\nhello",
        |m| {
            assert_eq!(m.body(), b"hello");
        }
    );
    sip_case!(
        negative_content_length,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        Err(ParseError::BadContentLength)
    );
    sip_case!(
        overflowing_content_length,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
        Err(ParseError::BadContentLength)
    );

    sip_case!(
        bare_cr_in_value_is_refused,
        b"OPTIONS sip:x SIP/2.0\r\nSubject: x\rVia: SIP/2.0/UDP evil;branch=z9hG4bKx\r\n\r\n",
        Err(ParseError::BadHeaderValue)
    );
    sip_case!(
        nul_in_value_is_refused,
        b"OPTIONS sip:x SIP/2.0\r\nSubject: a\0b\r\n\r\n",
        Err(ParseError::BadHeaderValue)
    );
    sip_case!(
        bare_cr_in_reason_is_refused,
        b"SIP/2.0 200 OK\rX: y\r\n\r\n",
        Err(ParseError::BadStartLine)
    );
    sip_case!(
        nul_in_body_is_fine,
        b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\na\0\r",
        |m| {
            assert_eq!(m.body(), b"a\0\r");
        }
    );
    sip_case!(
        empty_value_is_an_empty_span_after_the_colon,
        b"OPTIONS sip:x SIP/2.0\r\nMax-Forwards: \r\nX-A:\r\n\r\n",
        |m| {
            assert_eq!(m.header(HeaderName::MaxForwards), Some(&b""[..]));
            let e = m.first_entry(HeaderName::MaxForwards).unwrap();
            assert_eq!(
                &m.bytes()[e.line_start as usize..e.value_end as usize],
                b"Max-Forwards:"
            );
        }
    );

    #[test]
    fn too_many_headers() {
        let mut m = b"OPTIONS sip:x SIP/2.0\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            m.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        let mut full = m.clone();
        full.extend_from_slice(b"\r\n");
        assert_eq!(Message::parse(&full).unwrap().header_count(), MAX_HEADERS);
        m.extend_from_slice(b"X-last: 1\r\n\r\n");
        assert_eq!(Message::parse(&m).err(), Some(ParseError::TooManyHeaders));
    }

    #[test]
    fn no_panic_on_every_prefix_of_a_real_message() {
        for n in 0..MIN.len() {
            let _ = Message::parse(&MIN[..n]);
        }
    }
}
