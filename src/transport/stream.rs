//! Framing SIP on a byte stream (TCP, TLS): given the bytes a connection
//! has buffered, say what is at the front: a whole message, an RFC 5626
//! keep-alive, a stray line end to skip, or not enough bytes yet. On a
//! stream only Content-Length says where a message ends (RFC 3261 §18.3).
//!
//! # Invariants
//! - Pure: no I/O, no clock, no allocation, no panic on any input. The
//!   caller owns the buffer, consumes [`Frame::consumed`] bytes from its
//!   front after handling a frame, and calls again.
//! - Splitting a stream anywhere never changes what it frames as: a prefix
//!   of the bytes gives [`Frame::Incomplete`] or the frame (or error) the
//!   whole would give, never another one.
//! - Only the first `max_message` bytes are ever scanned, so a peer that
//!   sends an endless header (slowloris) is refused with
//!   [`FrameError::TooLarge`] once the caller holds `max_message` bytes,
//!   and the buffer never needs to grow past that.
//! - Where the framer reads a Content-Length, [`Message::parse`] reads the
//!   same one, so the two agree on where the body ends.
//!
//! # Trade-offs
//! Each call scans the header block from the start: O(n) per call, and a
//! message that trickles in byte by byte costs O(n²) over its calls. Header
//! blocks are a few hundred bytes and bounded by `max_message`, so a
//! resume offset kept per connection is not worth its state yet.
//!
//! [`Message::parse`]: crate::sip::Message::parse

use core::fmt;

use memchr::{memchr, memmem};

use crate::sip::scan;

/// The answer to a ping: a single CRLF (RFC 5626 §3.5.1).
pub const PONG: &[u8] = b"\r\n";

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message of `len` bytes (start line, headers, empty
    /// line and Content-Length bytes of body): hand `buf[..len]` to the
    /// parser.
    Message {
        /// Bytes of the message, from the start line to its body's end.
        len: usize,
    },
    /// A double CRLF keep-alive ping: answer with [`PONG`] (RFC 5626
    /// §3.5.1).
    Ping {
        /// Always 4.
        len: usize,
    },
    /// A lone CRLF (an RFC 5626 pong) or a stray CR or LF between
    /// messages: nothing to answer (RFC 3261 §7.5 says to ignore line ends
    /// before a start line).
    Skip {
        /// 1 or 2.
        len: usize,
    },
    /// Not enough bytes yet to tell; consume nothing and read more.
    Incomplete,
}

impl Frame {
    /// How many bytes to drop from the front of the buffer once the frame
    /// is handled; 0 for [`Frame::Incomplete`].
    pub fn consumed(&self) -> usize {
        match *self {
            Frame::Message { len } | Frame::Ping { len } | Frame::Skip { len } => len,
            Frame::Incomplete => 0,
        }
    }
}

/// Why the stream cannot be framed. Each one loses the framing for good:
/// answer a request if the caller can (see [`FrameError::status`]), then
/// close the connection (RFC 3261 §18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The headers carry no Content-Length, which a stream requires
    /// (§18.3): where the message ends is unknown.
    NoContentLength,
    /// A Content-Length is not a decimal that fits in 32 bits, or two give
    /// different lengths (§20.14).
    BadContentLength,
    /// The header block, or the header block and body together, would be
    /// longer than `max_message`.
    TooLarge,
    /// The headers end at an empty line written with a bare LF before the
    /// first CRLF CRLF. RFC 3261 §7 wants CRLF; the parser would end the
    /// headers at the bare LF, so framer and parser would disagree on
    /// where the body starts: refused rather than guessed.
    BadHeaderEnd,
}

impl FrameError {
    /// A reason phrase for the answer and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::NoContentLength => "Missing Content-Length",
            FrameError::BadContentLength => "Bad Content-Length",
            FrameError::TooLarge => "Message Too Large",
            FrameError::BadHeaderEnd => "Bad Header End",
        }
    }

    /// The status code to answer a request with: 513 for a message too
    /// large (§21.4.27), 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            FrameError::TooLarge => 513,
            _ => 400,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for FrameError {}

/// What the front of `buf` holds, for a peer whose messages may be at most
/// `max_message` bytes (`--max-message-size`).
pub fn next_frame(buf: &[u8], max_message: usize) -> Result<Frame, FrameError> {
    frame_from(buf, max_message, &mut 0)
}

/// One connection's framing: [`next_frame`] that remembers how far the
/// buffer has been searched for the end of a header block, so that a peer
/// sending its headers a byte at a time costs work in proportion to what
/// it sends, not to its square (16 KiB sent one byte per segment would
/// otherwise cost about 128 MiB of scanning). Give it the connection's
/// buffer each time, the same front with new bytes after it, and drop
/// `consumed()` bytes after every frame it returns.
#[derive(Clone, Debug, Default)]
pub struct Framer {
    /// No header block end starts before this offset of the buffer.
    searched: usize,
}

impl Framer {
    /// As [`next_frame`], searching only the bytes not searched before.
    pub fn next(&mut self, buf: &[u8], max_message: usize) -> Result<Frame, FrameError> {
        let frame = frame_from(buf, max_message, &mut self.searched);
        if !matches!(frame, Ok(Frame::Incomplete)) {
            // The caller takes the frame (or the connection) away: the
            // next search starts at the new front.
            self.searched = 0;
        }
        frame
    }
}

/// [`next_frame`], with the header-end search starting at `searched`.
fn frame_from(buf: &[u8], max_message: usize, searched: &mut usize) -> Result<Frame, FrameError> {
    match buf {
        [] => Ok(Frame::Incomplete),
        // RFC 5626 §3.5.1: a double CRLF is a ping.
        [b'\r', b'\n', b'\r', b'\n', ..] => Ok(Frame::Ping { len: 4 }),
        // A start of one that more bytes may complete.
        [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => Ok(Frame::Incomplete),
        // RFC 5626 §3.5.1 pong, or a CRLF before a start line (RFC 3261
        // §7.5): ignored.
        [b'\r', b'\n', ..] => Ok(Frame::Skip { len: 2 }),
        // A stray CR or LF: the parser skips any of them before a start
        // line, so skipping it here keeps the message's first line the
        // same for both.
        [b'\r' | b'\n', ..] => Ok(Frame::Skip { len: 1 }),
        _ => message(buf, max_message, searched),
    }
}

/// Frames a message that starts at `buf[0]` (a byte other than CR or LF).
fn message(buf: &[u8], max_message: usize, searched: &mut usize) -> Result<Frame, FrameError> {
    // Search only where a header block that fits could end, and only what
    // was not searched before.
    let window = &buf[..buf.len().min(max_message)];
    let from = (*searched).min(window.len());
    let Some(at) = memmem::find(&window[from..], b"\r\n\r\n") else {
        // An end may still start in the last 3 bytes.
        *searched = window.len().saturating_sub(3);
        return if buf.len() >= max_message {
            Err(FrameError::TooLarge)
        } else {
            Ok(Frame::Incomplete)
        };
    };
    let end = from + at;
    *searched = end;
    // The block keeps the last header's CRLF, so every line ends in LF.
    let body = content_length(&buf[..end + 2])?;
    // RFC 3261 §18.3: the body is exactly Content-Length bytes.
    let len = (end + 4)
        .checked_add(body)
        .filter(|&len| len <= max_message)
        .ok_or(FrameError::TooLarge)?;
    Ok(if buf.len() >= len {
        Frame::Message { len }
    } else {
        Frame::Incomplete
    })
}

/// The Content-Length of a header block (start line, then header lines,
/// each ending in LF), read as [`Message::parse`] reads it: full or compact
/// name in any case, white space before the colon, a value that may be
/// folded onto the next lines (§7.3.1), repeats allowed when they agree.
///
/// [`Message::parse`]: crate::sip::Message::parse
fn content_length(block: &[u8]) -> Result<usize, FrameError> {
    // The start line is not a header.
    let mut pos = line_end(block, 0);
    let mut found = None;
    while pos < block.len() {
        let start = pos;
        pos = line_end(block, pos);
        let line = &block[start..pos];
        if matches!(line, b"\n" | b"\r\n") {
            return Err(FrameError::BadHeaderEnd);
        }
        let Some(value) = content_length_value(line) else {
            continue;
        };
        // §7.3.1: a line that starts with SP or HT continues the value.
        while matches!(block.get(pos), Some(b' ' | b'\t')) {
            pos = line_end(block, pos);
        }
        let n = scan::parse_u32(scan::trim(&block[start + value..pos]))
            .ok_or(FrameError::BadContentLength)?;
        match found {
            Some(prev) if prev != n => return Err(FrameError::BadContentLength),
            _ => found = Some(n),
        }
    }
    let n = found.ok_or(FrameError::NoContentLength)?;
    usize::try_from(n).map_err(|_| FrameError::TooLarge)
}

/// One past the LF that ends the line starting at `pos`, or the block's
/// end when no LF follows.
fn line_end(block: &[u8], pos: usize) -> usize {
    let rest = block.get(pos..).unwrap_or_default();
    memchr(b'\n', rest).map_or(block.len(), |i| pos + i + 1)
}

/// Where the value starts in `line` when it is a Content-Length line
/// (`Content-Length` or compact `l`, any case, SP/HT before the colon,
/// §7.3.3, §20.14); None for any other line.
fn content_length_value(line: &[u8]) -> Option<usize> {
    // Most lines are rejected by their first byte.
    if !matches!(line.first(), Some(b'c' | b'C' | b'l' | b'L')) {
        return None;
    }
    let colon = memchr(b':', line)?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    (name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l"))
        .then_some(colon + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;
    use proptest::prelude::*;

    /// The `max_message` of the named cases.
    const MAX: usize = 1024;

    /// One named test per buffer: `frame_case!(name, bytes, result)` with
    /// `max_message` = [`MAX`], or `frame_case!(name, bytes, max, result)`.
    macro_rules! frame_case {
        ($name:ident, $bytes:expr, $want:expr) => {
            frame_case!($name, $bytes, MAX, $want);
        };
        ($name:ident, $bytes:expr, $max:expr, $want:expr) => {
            #[test]
            fn $name() {
                let data: &[u8] = $bytes;
                assert_eq!(
                    next_frame(data, $max),
                    $want,
                    "{:?}",
                    String::from_utf8_lossy(data)
                );
            }
        };
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:p.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: <sip:p.example.com>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

    const MESSAGE: &[u8] = b"MESSAGE sip:b@example.com SIP/2.0\r\nl: 5\r\n\r\nhello";

    fn msg(len: usize) -> Result<Frame, FrameError> {
        Ok(Frame::Message { len })
    }

    // Keep-alives (RFC 5626 §3.5.1) and line ends before a start line
    // (RFC 3261 §7.5).
    frame_case!(empty_buffer_waits, b"", Ok(Frame::Incomplete));
    frame_case!(ping, b"\r\n\r\n", Ok(Frame::Ping { len: 4 }));
    frame_case!(
        ping_before_a_message,
        b"\r\n\r\nOPTIONS",
        Ok(Frame::Ping { len: 4 })
    );
    frame_case!(
        ping_then_crlf_is_one_ping,
        b"\r\n\r\n\r\n",
        Ok(Frame::Ping { len: 4 })
    );
    frame_case!(lone_crlf_may_become_a_ping, b"\r\n", Ok(Frame::Incomplete));
    frame_case!(lone_cr_may_become_a_ping, b"\r", Ok(Frame::Incomplete));
    frame_case!(
        three_quarters_of_a_ping_waits,
        b"\r\n\r",
        Ok(Frame::Incomplete)
    );
    frame_case!(
        pong_before_a_message_is_skipped,
        b"\r\nOPTIONS",
        Ok(Frame::Skip { len: 2 })
    );
    frame_case!(
        pong_then_stray_cr_is_skipped,
        b"\r\n\rO",
        Ok(Frame::Skip { len: 2 })
    );
    frame_case!(
        stray_lf_is_skipped,
        b"\nOPTIONS",
        Ok(Frame::Skip { len: 1 })
    );
    frame_case!(
        stray_cr_is_skipped,
        b"\rOPTIONS",
        Ok(Frame::Skip { len: 1 })
    );

    // Messages (RFC 3261 §18.3).
    frame_case!(whole_message, OPTIONS, msg(OPTIONS.len()));
    frame_case!(compact_length_and_body, MESSAGE, msg(MESSAGE.len()));
    frame_case!(
        body_holding_crlf_crlf_and_a_length,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Length: 27\r\n\r\n\r\n\r\nContent-Length: 99\r\n\r\nX",
        msg(72)
    );
    frame_case!(
        message_with_the_next_one_behind_it,
        b"MESSAGE sip:b SIP/2.0\r\nl: 2\r\n\r\nhiOPTIONS sip:x SIP/2.0\r\n",
        msg(33)
    );
    frame_case!(
        odd_case_and_space_before_colon,
        b"MESSAGE sip:b SIP/2.0\r\ncOnTeNt-LeNgTh \t:  \t2 \r\n\r\nhi",
        msg(51)
    );
    frame_case!(
        upper_case_compact_form,
        b"MESSAGE sip:b SIP/2.0\r\nL:2\r\n\r\nhi",
        msg(32)
    );
    frame_case!(
        folded_value,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nhi",
        msg(48)
    );
    frame_case!(
        agreeing_repeats,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Length: 2\r\nl: 02\r\n\r\nhi",
        msg(53)
    );
    frame_case!(
        length_in_the_start_line_is_not_a_header,
        b"l: 2 SIP/2.0\r\nContent-Length: 0\r\n\r\nhi",
        msg(35)
    );
    frame_case!(
        lookalike_names_are_other_headers,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Lengthy: 9\r\nlx: 9\r\nl: 0\r\n\r\n",
        msg(58)
    );
    frame_case!(
        indented_length_belongs_to_the_header_above,
        b"MESSAGE sip:b SIP/2.0\r\nSubject: a\r\n l: 9\r\nl: 0\r\n\r\n",
        msg(50)
    );

    // Waiting for more.
    frame_case!(
        half_a_start_line_waits,
        b"OPTIONS sip:p.exa",
        Ok(Frame::Incomplete)
    );
    frame_case!(
        headers_without_their_end_wait,
        b"MESSAGE sip:b SIP/2.0\r\nl: 5\r\n\r",
        Ok(Frame::Incomplete)
    );
    frame_case!(
        short_body_waits,
        b"MESSAGE sip:b SIP/2.0\r\nl: 5\r\n\r\nhell",
        Ok(Frame::Incomplete)
    );

    // Errors: the framing is lost.
    frame_case!(
        missing_length,
        b"MESSAGE sip:b SIP/2.0\r\nCall-ID: a\r\n\r\nhello",
        Err(FrameError::NoContentLength)
    );
    frame_case!(
        no_headers_at_all,
        b"OPTIONS sip:b SIP/2.0\r\n\r\n",
        Err(FrameError::NoContentLength)
    );
    frame_case!(
        negative_length,
        b"MESSAGE sip:b SIP/2.0\r\nl: -1\r\n\r\n",
        Err(FrameError::BadContentLength)
    );
    frame_case!(
        empty_length,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Length:\r\n\r\n",
        Err(FrameError::BadContentLength)
    );
    frame_case!(
        length_with_junk,
        b"MESSAGE sip:b SIP/2.0\r\nl: 5x\r\n\r\nhello",
        Err(FrameError::BadContentLength)
    );
    frame_case!(
        overflowing_length,
        b"MESSAGE sip:b SIP/2.0\r\nl: 99999999999999999999\r\n\r\n",
        Err(FrameError::BadContentLength)
    );
    frame_case!(
        conflicting_lengths,
        b"MESSAGE sip:b SIP/2.0\r\nContent-Length: 5\r\nl: 4\r\n\r\nhello",
        Err(FrameError::BadContentLength)
    );
    frame_case!(
        bare_lf_end_before_crlf_crlf,
        b"MESSAGE sip:b SIP/2.0\nCall-ID: a\n\nl: 0\r\n\r\n",
        Err(FrameError::BadHeaderEnd)
    );
    frame_case!(
        endless_header_at_the_limit,
        &[b'X'; 64],
        64,
        Err(FrameError::TooLarge)
    );
    frame_case!(
        endless_header_below_the_limit_waits,
        &[b'X'; 63],
        64,
        Ok(Frame::Incomplete)
    );
    frame_case!(
        header_block_ending_past_the_limit,
        b"MESSAGE sip:b SIP/2.0\r\nl: 0\r\n\r\n",
        30,
        Err(FrameError::TooLarge)
    );
    frame_case!(
        header_block_exactly_at_the_limit,
        b"MESSAGE sip:b SIP/2.0\r\nl: 0\r\n\r\n",
        31,
        msg(31)
    );
    frame_case!(
        body_past_the_limit_before_it_arrives,
        b"MESSAGE sip:b SIP/2.0\r\nl: 4294967295\r\n\r\n",
        Err(FrameError::TooLarge)
    );
    frame_case!(
        body_one_past_the_limit,
        b"MESSAGE sip:b SIP/2.0\r\nl: 3\r\n\r\nabc",
        33,
        Err(FrameError::TooLarge)
    );
    frame_case!(
        body_exactly_at_the_limit,
        b"MESSAGE sip:b SIP/2.0\r\nl: 3\r\n\r\nabc",
        34,
        msg(34)
    );
    frame_case!(zero_limit, b"O", 0, Err(FrameError::TooLarge));

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(FrameError::TooLarge.status(), 513);
        assert_eq!(FrameError::NoContentLength.status(), 400);
        assert_eq!(
            FrameError::BadContentLength.to_string(),
            "Bad Content-Length"
        );
        assert_eq!(Frame::Incomplete.consumed(), 0);
        assert_eq!(Frame::Ping { len: 4 }.consumed(), 4);
    }

    #[test]
    fn a_ping_between_two_messages_loses_neither() {
        let stream = [MESSAGE, b"\r\n\r\n", OPTIONS, b"\r\n"].concat();
        let (frames, rest) = feed(&stream, &[], MAX);
        assert_eq!(
            frames,
            vec![
                msg(MESSAGE.len()),
                Ok(Frame::Ping { len: 4 }),
                msg(OPTIONS.len())
            ]
        );
        assert_eq!(rest, b"\r\n", "a trailing CRLF may still become a ping");
    }

    /// A slow peer's headers are searched once: each call looks only at
    /// what came since the last (and 3 bytes before it).
    #[test]
    fn a_framer_searches_each_byte_once_however_slowly_it_comes() {
        let mut framer = Framer::default();
        let mut buf = b"OPTIONS sip:x SIP/2.0\r\nSubject: ".to_vec();
        for _ in 0..4000 {
            buf.push(b'x');
            assert_eq!(framer.next(&buf, 16_384), Ok(Frame::Incomplete));
            assert_eq!(framer.searched, buf.len() - 3);
        }
        buf.extend_from_slice(b"\r\nl: 2\r\n\r\nhi");
        let len = buf.len();
        assert_eq!(framer.next(&buf, 16_384), Ok(Frame::Message { len }));
        assert_eq!(framer.searched, 0, "the next frame starts afresh");
        // The body arriving after the headers does not rescan them.
        let mut framer = Framer::default();
        let head = b"MESSAGE sip:b SIP/2.0\r\nl: 3\r\n\r\n";
        assert_eq!(framer.next(head, 16_384), Ok(Frame::Incomplete));
        assert_eq!(framer.searched, head.len() - 4);
    }

    /// Feeds `stream` into a growing buffer in pieces cut at `cuts`, taking
    /// every frame off the front as it comes, until an error or the end:
    /// the frames (and the error), and what stays buffered. With cuts, a
    /// [`Framer`] frames it; without, [`next_frame`].
    fn feed(
        stream: &[u8],
        cuts: &[usize],
        max: usize,
    ) -> (Vec<Result<Frame, FrameError>>, Vec<u8>) {
        let mut frames = Vec::new();
        let mut buf = Vec::new();
        let mut from = 0;
        // A split stream goes through a Framer, as a connection's bytes
        // will; the whole one through next_frame, the reference.
        let mut framer = Framer::default();
        for to in cuts.iter().copied().chain(std::iter::once(stream.len())) {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            loop {
                let frame = if cuts.is_empty() {
                    next_frame(&buf, max)
                } else {
                    framer.next(&buf, max)
                };
                match frame {
                    Ok(Frame::Incomplete) => break,
                    Ok(f) => {
                        assert!(f.consumed() > 0 && f.consumed() <= buf.len());
                        buf.drain(..f.consumed());
                        frames.push(Ok(f));
                    }
                    Err(e) => {
                        frames.push(Err(e));
                        return (frames, buf);
                    }
                }
            }
        }
        (frames, buf)
    }

    /// One item of a generated stream.
    #[derive(Clone, Debug)]
    enum Item {
        Ping,
        Pong,
        /// A message, given its Content-Length spelling and its body.
        Message {
            name: &'static str,
            space: &'static str,
            body: Vec<u8>,
        },
    }

    const LENGTH_NAMES: &[&str] = &["Content-Length", "content-length", "l", "L"];
    const SPACES: &[&str] = &["", " ", " \t ", "\t"];

    fn item() -> impl Strategy<Value = Item> {
        // Bodies rich in the bytes that framing looks at.
        let body = prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                Just(b'\r'),
                Just(b'\n'),
                Just(b'l'),
                Just(b':')
            ],
            0..80,
        );
        prop_oneof![
            Just(Item::Ping),
            Just(Item::Pong),
            (
                prop::sample::select(LENGTH_NAMES),
                prop::sample::select(SPACES),
                body
            )
                .prop_map(|(name, space, body)| Item::Message { name, space, body }),
        ]
    }

    fn render(item: &Item) -> Vec<u8> {
        match item {
            Item::Ping => b"\r\n\r\n".to_vec(),
            Item::Pong => b"\r\n".to_vec(),
            Item::Message { name, space, body } => {
                let mut m = format!(
                    "MESSAGE sip:b@example.com SIP/2.0\r\n\
                     Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
                     {name}{space}:{space}{}\r\nCall-ID: x\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                m.extend_from_slice(body);
                m
            }
        }
    }

    /// A message the framer must refuse, by number: no Content-Length,
    /// conflicting ones, a body over the limit, a bare-LF header end, and
    /// an endless header.
    fn refused(which: usize) -> Vec<u8> {
        match which {
            0 => b"MESSAGE sip:b SIP/2.0\r\nCall-ID: a\r\n\r\nhi".to_vec(),
            1 => b"MESSAGE sip:b SIP/2.0\r\nl: 2\r\nl: 3\r\n\r\nhi".to_vec(),
            2 => b"MESSAGE sip:b SIP/2.0\r\nl: 9999\r\n\r\nhi".to_vec(),
            3 => b"MESSAGE sip:b SIP/2.0\nX: 1\n\nl: 0\r\n\r\n".to_vec(),
            _ => format!("MESSAGE sip:b SIP/2.0\r\nSubject: {}", "a".repeat(600)).into_bytes(),
        }
    }

    /// The cut points `picks` name in a stream of `len` bytes, in order.
    fn cuts_of(picks: &[prop::sample::Index], len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = picks.iter().map(|p| p.index(len + 1)).collect();
        cuts.sort_unstable();
        cuts
    }

    /// Parts of near-SIP messages: what may come before a start line, start
    /// lines, header names, separators, values, line ends (CRLF most
    /// often, then bare LF and folding), header ends and body pieces.
    const LEADS: &[&str] = &["", "", "", "\r\n", "\r\n\r\n", "\n"];
    const START_LINES: &[&str] = &[
        "MESSAGE sip:b SIP/2.0\r\n",
        "MESSAGE sip:b SIP/2.0\r\n",
        "SIP/2.0 200 OK\r\n",
        "MESSAGE sip:b SIP/2.0\n",
    ];
    const NAMES: &[&str] = &[
        "l",
        "L",
        "Content-Length",
        "content-LENGTH",
        "Call-ID",
        "To",
        "Via",
        " l",
        "Content-Length-X",
    ];
    const SEPARATORS: &[&str] = &[":", ": ", ": ", " :", "\t: "];
    /// `#` stands for the body's length.
    const VALUES: &[&str] = &["#", "#", "#", "#", "0", "02", " # ", "x", "", "4294967296"];
    const LINE_ENDS: &[&str] = &[
        "\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r\n ", "\r\n\t",
    ];
    const HEADER_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\r\n", "\n", ""];
    const BODY: &[&str] = &["a", "\r", "\n", "\r\n", "l: 1"];

    /// A few near-SIP messages in a row: many get framed, and many of
    /// those parse, with a Content-Length spelt, repeated or folded in
    /// many ways.
    fn sip_like() -> impl Strategy<Value = Vec<u8>> {
        use prop::sample::select;
        let line = (
            select(NAMES),
            select(SEPARATORS),
            select(VALUES),
            select(LINE_ENDS),
        )
            .prop_map(|(n, s, v, e)| format!("{n}{s}{v}{e}"));
        let message = (
            select(LEADS),
            select(START_LINES),
            prop::collection::vec(line, 1..5),
            select(HEADER_ENDS),
            prop::collection::vec(select(BODY), 0..4),
        )
            .prop_map(|(lead, start, lines, end, body)| {
                let body = body.concat();
                let lines = lines.concat().replace('#', &body.len().to_string());
                format!("{lead}{start}{lines}{end}{body}")
            });
        prop::collection::vec(message, 1..6).prop_map(|m| m.concat().into_bytes())
    }

    /// The limit of the generated streams: room for every generated
    /// message, not for the refused ones.
    const STREAM_MAX: usize = 512;

    proptest! {
        /// Any split of a stream of messages and keep-alives frames as the
        /// whole does, and the messages come out in order, byte for byte.
        #[test]
        fn any_split_frames_as_the_whole(
            items in prop::collection::vec(item(), 0..8),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let stream: Vec<u8> = items.iter().flat_map(render).collect();
            let (whole, rest) = feed(&stream, &[], STREAM_MAX);
            let (split, split_rest) = feed(&stream, &cuts_of(&picks, stream.len()), STREAM_MAX);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(&split_rest, &rest);

            let mut at = 0;
            let mut messages = Vec::new();
            for f in &whole {
                let f = f.expect("a valid stream frames without error");
                if let Frame::Message { len } = f {
                    messages.push(stream[at..at + len].to_vec());
                }
                at += f.consumed();
            }
            let sent: Vec<Vec<u8>> = items
                .iter()
                .filter(|i| matches!(i, Item::Message { .. }))
                .map(render)
                .collect();
            prop_assert_eq!(messages, sent);
            // Only the start of a keep-alive may stay behind.
            prop_assert!(matches!(&rest[..], b"" | b"\r\n"), "{:?}", rest);
        }

        /// A stream that ends in a message the framer must refuse gives the
        /// same frames and the same error however it is split.
        #[test]
        fn any_split_fails_as_the_whole(
            items in prop::collection::vec(item(), 0..4),
            which in 0usize..5,
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let mut stream: Vec<u8> = items.iter().flat_map(render).collect();
            stream.extend_from_slice(&refused(which));
            let (whole, _) = feed(&stream, &[], STREAM_MAX);
            let (split, _) = feed(&stream, &cuts_of(&picks, stream.len()), STREAM_MAX);
            prop_assert_eq!(&split, &whole);
            prop_assert!(matches!(whole.last(), Some(Err(_))), "{:?}", whole);
        }

        /// No input panics; every frame fits the buffer and the limit; and
        /// where the parser accepts a framed message, it reads the same
        /// Content-Length and ends the body at the same byte.
        #[test]
        fn no_input_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            max in 0usize..400,
        ) {
            check_any(&bytes, max);
        }

        /// The same over near-SIP messages, so that many inputs get as far
        /// as a Content-Length and the parser.
        #[test]
        fn sip_like_input_frames_as_the_parser_reads(
            input in sip_like(),
            max in prop_oneof![Just(4096usize), 0usize..200],
        ) {
            check_any(&input, max);
        }
    }

    /// Frames `bytes` to the end or the first error, checking each frame:
    /// it fits the buffer and the limit; every prefix of what is left
    /// frames as the whole or waits; and a message the parser accepts
    /// carries the Content-Length the framer read and ends where it said.
    fn check_any(bytes: &[u8], max: usize) {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            let frame = next_frame(rest, max);
            let seen = match frame {
                Ok(Frame::Incomplete) | Err(_) => rest.len(),
                Ok(f) => f.consumed(),
            };
            for cut in 0..seen {
                let part = next_frame(&rest[..cut], max);
                assert!(
                    part == Ok(Frame::Incomplete) || part == frame,
                    "{cut}: {part:?} vs {frame:?}"
                );
            }
            match frame {
                Ok(Frame::Message { len }) => {
                    assert!(len <= rest.len() && len <= max);
                    if let Ok(m) = Message::parse(&rest[..len]) {
                        assert_eq!(m.framed().len(), len);
                        assert_eq!(m.content_length().map(|n| n as usize), Some(m.body().len()));
                    }
                }
                Ok(Frame::Ping { len }) => assert!(len == 4 && rest.starts_with(b"\r\n\r\n")),
                Ok(Frame::Skip { len }) => assert!(len <= 2 && len <= rest.len()),
                Ok(Frame::Incomplete) | Err(_) => return,
            }
            at += seen;
        }
    }
}
