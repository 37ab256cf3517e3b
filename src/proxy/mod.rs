//! The stateless proxy (RFC 3261 §16, §16.11; RFC 3581): a pure function
//! from a parsed message, its source address and the configuration to an
//! [`Action`], with the [`Edits`] that turn the incoming datagram into the
//! outgoing one. No sockets, no clock, no allocation, so every rule is
//! unit-tested here and the shard loop only moves bytes.
//!
//! One file per step of §16:
//! - [`local`]: who we are (our addresses, our domains, the realm);
//! - [`checks`]: §16.3 request validation, and 420 for option-tags;
//! - [`route_set`]: §16.4 our Route values, strict and loose routers;
//! - [`target`]: §16.5 the next hop (Route, Request-URI, location,
//!   upstream);
//! - [`edits`]: §16.6 the edits of a forwarded request (our Via and
//!   branch, Max-Forwards, Record-Route, Route and Request-URI);
//! - [`nat`]: RFC 3581 `received`/`rport` and where answers go;
//! - [`response`]: §16.7 responses along the Via path;
//! - [`branch`]: the §16.11 stateless branch and loop detection;
//! - [`request`]: the steps above in order for one request.
//!
//! # Next hop
//! The top Route (after removing ours), else the Request-URI, else the
//! first `--upstream` chosen by a hash of Call-ID so that a dialog always
//! reaches the same upstream. Only IP literals are resolved here; a host
//! name goes to the upstreams when there are some and is dropped otherwise
//! (DNS never runs on the forwarding path; a resolver thread is future work).

pub mod branch;
pub mod checks;
pub mod conn_param;
pub mod edits;
pub mod health;
pub mod local;
pub mod nat;
mod request;
pub mod response;
pub mod route_set;
pub mod target;
#[cfg(test)]
mod tests;

use crate::location::{AorRecord, Replica};
use crate::sip::{Edits, HeaderName, Message, Method};
use crate::transport::{Dest, Source};
use branch::local_to_tag;

pub use checks::{unsupported, PROXY_SUPPORTED};
pub use edits::Scratch;
pub use health::{Change, Health};
pub use local::ProxyConfig;
pub use nat::{nat_params, reply_address, reply_dest, NatEdit};
pub use request::check_request;

/// A shard's view of the location service for one routing decision: its
/// replica and the time (Unix seconds) against which bindings are live.
#[derive(Clone, Copy)]
pub struct Lookup<'r> {
    /// The shard's replica.
    pub replica: &'r Replica,
    /// Now, in Unix seconds.
    pub now: u64,
    /// The binding to target instead of the best, by its index in the
    /// AOR's record ([`fork_order`](crate::registrar::lookup::fork_order)
    /// names them): a stateful proxy's other forks. None for the best.
    pub pick: Option<usize>,
}

impl<'r> Lookup<'r> {
    /// The lookup of the best binding in `replica` at `now`.
    pub fn best(replica: &'r Replica, now: u64) -> Lookup<'r> {
        Lookup {
            replica,
            now,
            pick: None,
        }
    }
}

/// Why a datagram was dropped; each reason is a counter, indexed by
/// `reason as usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Only line ends (an RFC 5626 keep-alive).
    KeepAlive,
    /// Not SIP, or a request so broken that no reply can be addressed.
    Malformed,
    /// A response whose top Via is not ours (§18.1.2: a response goes to
    /// the element named by its top Via).
    NotOurVia,
    /// A response with no Via left after ours.
    NoNextVia,
    /// The next hop is a host name and there is no upstream to use.
    Unresolved,
    /// The outgoing message did not fit its buffer or its edits.
    WriteFailed,
    /// A datagram larger than the receive buffer, cut by the kernel.
    Oversize,
    /// An ACK that would have been answered locally (an ACK gets no
    /// response, §17): dropped instead.
    AckNotAnswered,
    /// A REGISTER for a local domain whose owner shard's inbox was full and
    /// that could not be answered 503 either.
    InboxFull,
    /// A source outside `--allow` or inside `--deny`.
    Denied,
    /// A request from a known scanner's User-Agent (`--drop-scanners`).
    Scanner,
    /// A source over `--rate-limit`, banned for `--ban-time`.
    RateLimited,
    /// A request to authenticate from a source over `--auth-fail-limit`,
    /// banned for `--ban-time`.
    AuthBanned,
}

impl DropReason {
    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; 13] = [
        DropReason::KeepAlive,
        DropReason::Malformed,
        DropReason::NotOurVia,
        DropReason::NoNextVia,
        DropReason::Unresolved,
        DropReason::WriteFailed,
        DropReason::Oversize,
        DropReason::AckNotAnswered,
        DropReason::InboxFull,
        DropReason::Denied,
        DropReason::Scanner,
        DropReason::RateLimited,
        DropReason::AuthBanned,
    ];

    /// The name in reports and the exit line.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::KeepAlive => "keepalive",
            DropReason::Malformed => "malformed",
            DropReason::NotOurVia => "not_our_via",
            DropReason::NoNextVia => "no_next_via",
            DropReason::Unresolved => "unresolved",
            DropReason::WriteFailed => "write_failed",
            DropReason::Oversize => "oversize",
            DropReason::AckNotAnswered => "ack_not_answered",
            DropReason::InboxFull => "inbox_full",
            DropReason::Denied => "denied",
            DropReason::Scanner => "scanner",
            DropReason::RateLimited => "rate_limited",
            DropReason::AuthBanned => "auth_banned",
        }
    }
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'r> {
    /// Send the edited message there.
    Forward(Dest),
    /// Send the edited message to `to`, the best of the AOR's live
    /// bindings; `record` has others, which a stateful proxy forks the
    /// request to as well (§16.6) and a stateless one leaves alone.
    Fork {
        /// Where the best binding is reached.
        to: Dest,
        /// The AOR's record, with two live bindings or more.
        record: &'r AorRecord,
    },
    /// Answer the request locally with this status, sent to `to`.
    Reply {
        /// Status code.
        code: u16,
        /// Reason phrase in two pieces (see [`ParseError::reason`]).
        reason: (&'static str, &'static str),
        /// Where the response goes (§18.2.2, RFC 3581).
        to: Dest,
    },
    /// Answer 420 Bad Extension, sent to `to`, with an `Unsupported`
    /// header listing the option-tags of `header` that are not in
    /// `supported` (see [`unsupported`]; §8.2.2.3, §16.3 step 5).
    BadExtension {
        /// Require or Proxy-Require.
        header: HeaderName,
        /// What we support there, as a `Supported` value.
        supported: &'static [u8],
        /// Where the response goes.
        to: Dest,
    },
    /// Drop it and count why.
    Drop(DropReason),
    /// A REGISTER for a local domain: the AOR's owner shard applies it
    /// (§10.3) and answers.
    Register,
    /// Answer 302 listing these bindings (`--mode redirect`, §8.3).
    Redirect {
        /// The AOR's record (its live bindings become Contacts).
        record: &'r AorRecord,
        /// Where the response goes.
        to: Dest,
    },
}

/// Routes one message. `edits` is filled when the action is `Forward`.
pub fn route<'e, 'r: 'e>(
    msg: &Message<'_>,
    src: &Source,
    cfg: &ProxyConfig,
    loc: Lookup<'r>,
    scratch: &'e mut Scratch,
    edits: &mut Edits<'e>,
) -> Action<'r> {
    if msg.is_request() {
        if msg.method() == Some(Method::Ack) && acks_local_answer(msg) {
            // §17.1.1.3: the ACK of a non-2xx answer we gave (a 404, a
            // 407...) ends here; forwarded, it would reach a callee that
            // never saw the INVITE.
            return Action::Drop(DropReason::AckNotAnswered);
        }
        match request::route_request(msg, src, cfg, loc, scratch, edits) {
            // §17: an ACK gets no response, whatever is wrong with it.
            Action::Reply { .. } | Action::Redirect { .. } | Action::BadExtension { .. }
                if msg.method() == Some(Method::Ack) =>
            {
                Action::Drop(DropReason::AckNotAnswered)
            }
            action => action,
        }
    } else {
        response::route_response(msg, src, cfg, edits)
    }
}

/// True when `ack`'s To tag is the one our own answers carry
/// ([`local_to_tag`]) for its transaction.
fn acks_local_answer(ack: &Message<'_>) -> bool {
    ack.to()
        .ok()
        .and_then(|t| t.tag())
        .is_some_and(|tag| tag == local_to_tag(ack))
}

pub(crate) fn reply(code: u16, reason: (&'static str, &'static str), to: Dest) -> Action<'static> {
    Action::Reply { code, reason, to }
}
