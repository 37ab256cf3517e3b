//! SIP request methods (RFC 3261 §7.1, §27.4). Method names are
//! case-sensitive tokens: `INVITE` is a method, `invite` is an extension.

use core::fmt;

/// A request method: the RFC 3261 six, the common extensions, or any other
/// token, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// RFC 3261: initiates a session.
    Invite,
    /// RFC 3261: confirms a final response to INVITE.
    Ack,
    /// RFC 3261: ends a session.
    Bye,
    /// RFC 3261: cancels a pending request.
    Cancel,
    /// RFC 3261: binds an address-of-record to contacts.
    Register,
    /// RFC 3261: asks for capabilities.
    Options,
    /// RFC 3262: provisional response acknowledgement.
    Prack,
    /// RFC 6665: event subscription.
    Subscribe,
    /// RFC 6665: event notification.
    Notify,
    /// RFC 3903: event state publication.
    Publish,
    /// RFC 6086: mid-session information.
    Info,
    /// RFC 3515: call transfer.
    Refer,
    /// RFC 3428: instant message.
    Message,
    /// RFC 3311: session update.
    Update,
    /// Any other token.
    Extension(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token. The caller has checked that it is a token.
    #[inline]
    pub fn from_bytes(s: &'a [u8]) -> Method<'a> {
        match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            other => Method::Extension(other),
        }
    }

    /// The methods [`Method::index`] counts, by index (the last is every
    /// extension method).
    pub const COUNTED: [&'static str; 15] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "REGISTER",
        "OPTIONS",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
        "other",
    ];

    /// A small index for per-method counters (see [`Method::COUNTED`]).
    pub fn index(&self) -> usize {
        match self {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Bye => 2,
            Method::Cancel => 3,
            Method::Register => 4,
            Method::Options => 5,
            Method::Prack => 6,
            Method::Subscribe => 7,
            Method::Notify => 8,
            Method::Publish => 9,
            Method::Info => 10,
            Method::Refer => 11,
            Method::Message => 12,
            Method::Update => 13,
            Method::Extension(_) => 14,
        }
    }

    /// The method as it is written on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Register => b"REGISTER",
            Method::Options => b"OPTIONS",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Update => b"UPDATE",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_names_match_their_index() {
        for (i, name) in Method::COUNTED.iter().enumerate().take(14) {
            assert_eq!(Method::from_bytes(name.as_bytes()).index(), i);
        }
        assert_eq!(Method::from_bytes(b"FOO").index(), 14);
    }

    #[test]
    fn known_methods_round_trip() {
        for m in &Method::COUNTED[..14] {
            let method = Method::from_bytes(m.as_bytes());
            assert!(!matches!(method, Method::Extension(_)), "{m}");
            assert_eq!(method.as_bytes(), m.as_bytes());
        }
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_bytes(b"invite"), Method::Extension(b"invite"));
        assert_eq!(
            Method::from_bytes(b"NEWMETHOD"),
            Method::Extension(b"NEWMETHOD")
        );
    }
}
