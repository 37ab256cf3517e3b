//! Why a datagram is not acceptable SIP, in words a 400 reason phrase can carry.
//!
//! Errors on the packet path are `Copy` and carry no heap data: the parser
//! never allocates or formats. A proxy turns one into a status line with
//! [`ParseError::status`] and [`ParseError::reason`].

use core::fmt;

use super::header::HeaderName;

/// What is wrong with a message, found while tokenizing, while reading a
/// typed header view, or by [`validate`](super::validate::validate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The datagram holds nothing but line ends (an RFC 5626 keep-alive).
    Empty,
    /// The first line is neither a Request-Line nor a Status-Line (§7.1, §7.2).
    BadStartLine,
    /// The method is not a token (§25.1).
    BadMethod,
    /// The Request-URI is empty or holds a character no URI may hold.
    BadRequestUri,
    /// The SIP-Version is well formed but not SIP/2.0 (answered with 505).
    UnsupportedVersion,
    /// The Status-Code is not three digits from 100 to 699 (§7.2).
    BadStatusCode,
    /// A header line has no colon, or its name is not a token (§7.3).
    BadHeaderName,
    /// A header line begins with white space where no header came before it.
    BadFolding,
    /// More headers than the fixed header index holds.
    TooManyHeaders,
    /// More Via values than [`MAX_VIAS`](super::validate::MAX_VIAS).
    TooManyVias,
    /// A Via whose sent-protocol is not `SIP/2.0/<transport>` (§20.42).
    BadViaProtocol,
    /// The datagram ends before the empty line that closes the headers.
    MissingEmptyLine,
    /// The headers hold a NUL or a CR not followed by LF (§7.3.1, §25.1).
    BadHeaderValue,
    /// Content-Length is not a non-negative decimal that fits in 32 bits.
    BadContentLength,
    /// Two Content-Length headers give different lengths.
    ConflictingContentLength,
    /// Content-Length says more body than the datagram carries (§18.3).
    BodyTruncated,
    /// A mandatory header is absent (§8.1.1).
    Missing(HeaderName),
    /// A header that may appear once appears more than once (§7.3.1).
    Duplicate(HeaderName),
    /// A typed header view could not parse the value of this header.
    Invalid(HeaderName),
    /// The CSeq method differs from the Request-Line method (§8.1.1.5).
    CSeqMethodMismatch,
    /// The datagram is larger than the parser's offsets can address.
    TooLarge,
    /// A URI does not follow the SIP, SIPS or tel grammar (§19.1, RFC 3966).
    BadUri,
}

impl ParseError {
    /// The two pieces of a reason phrase: a fixed text and, for errors about
    /// one header, that header's name. Joined with nothing between them they
    /// read as "Missing Call-ID", "Bad Via", "Bad Start Line".
    pub fn reason(&self) -> (&'static str, &'static str) {
        match self {
            ParseError::Empty => ("Empty Message", ""),
            ParseError::BadStartLine => ("Bad Start Line", ""),
            ParseError::BadMethod => ("Bad Method", ""),
            ParseError::BadRequestUri => ("Bad Request-URI", ""),
            ParseError::UnsupportedVersion => ("Version Not Supported", ""),
            ParseError::BadStatusCode => ("Bad Status Code", ""),
            ParseError::BadHeaderName => ("Bad Header Name", ""),
            ParseError::BadFolding => ("Bad Header Folding", ""),
            ParseError::TooManyHeaders => ("Too Many Headers", ""),
            ParseError::TooManyVias => ("Too Many Via Values", ""),
            ParseError::BadViaProtocol => ("Via Not SIP/2.0", ""),
            ParseError::MissingEmptyLine => ("Missing Empty Line After Headers", ""),
            ParseError::BadHeaderValue => ("Bad Header Value", ""),
            ParseError::BadContentLength => ("Bad Content-Length", ""),
            ParseError::ConflictingContentLength => ("Conflicting Content-Length", ""),
            ParseError::BodyTruncated => ("Body Shorter Than Content-Length", ""),
            ParseError::Missing(h) => ("Missing ", h.canonical()),
            ParseError::Duplicate(h) => ("Duplicate ", h.canonical()),
            ParseError::Invalid(h) => ("Bad ", h.canonical()),
            ParseError::CSeqMethodMismatch => ("CSeq Method Does Not Match", ""),
            ParseError::BadUri => ("Bad URI", ""),
            ParseError::TooLarge => ("Message Too Large", ""),
        }
    }

    /// The status code a server answers a request with when it fails this
    /// way: 505 for an unknown SIP version (§21.5.21), 513 for a message too
    /// large to handle (§21.4.27), 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.reason();
        f.write_str(a)?;
        f.write_str(b)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_the_header() {
        assert_eq!(
            ParseError::Missing(HeaderName::CallId).to_string(),
            "Missing Call-ID"
        );
        assert_eq!(ParseError::Invalid(HeaderName::Via).to_string(), "Bad Via");
        assert_eq!(ParseError::BadStartLine.to_string(), "Bad Start Line");
    }

    #[test]
    fn version_maps_to_505() {
        assert_eq!(ParseError::UnsupportedVersion.status(), 505);
        assert_eq!(ParseError::BadContentLength.status(), 400);
    }
}
