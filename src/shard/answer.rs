//! Local answers: the responses the server writes itself rather than
//! forwards (§8.2.6): 400-class refusals, 503 and 513, the registrar's
//! 200/423, digest challenges, 302 redirects, the answer to OPTIONS. They
//! all start the same way (the request's headers a response copies, our
//! To tag, the RFC 3581 Via edit) and end the same way.

use super::auth_gate::AuthRefusal;
use super::counters::{add, status_class, ShardCounters};
use super::outcome::Outcome;
use super::Shard;
use crate::auth::write_challenge;
use crate::io::SendQueue;
use crate::location::AorRecord;
use crate::proxy::branch::local_to_tag;
use crate::proxy::{nat_params, reply_dest, unsupported, DropReason, PROXY_SUPPORTED};
use crate::registrar::reply::{contacts, ok_headers};
use crate::registrar::RegisterError;
use crate::sip::{HeaderName, Message, Method, ResponseWriter, ViaEdit, WriteError};
use crate::transport::stream::FrameError;
use crate::transport::{Dest, Source};

/// Methods a stateless proxy passes on, for `Allow` in answers to OPTIONS.
const ALLOW: &[u8] =
    b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE";

/// A plain refusal the shard answers on its own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// 503, with Retry-After.
    Unavailable {
        /// Seconds.
        retry_after: u32,
    },
    /// 513 (§21.5.14).
    TooLarge,
    /// 400 or 513: a connection's bytes cannot be framed (§18.3).
    Unframeable(FrameError),
}

impl Refused {
    fn status(self) -> (u16, &'static str) {
        match self {
            Refused::Unavailable { .. } => (503, "Service Unavailable"),
            Refused::TooLarge => (513, "Message Too Large"),
            Refused::Unframeable(e) => (e.status(), e.reason()),
        }
    }
}

/// True for a message that can be answered: a request, not an ACK (§17),
/// with a Via to answer along.
fn answerable(msg: &Message<'_>) -> bool {
    msg.is_request() && msg.method() != Some(Method::Ack) && msg.via().is_ok()
}

impl<'a> Shard<'a> {
    /// The one 503 a source gets when it is banned for flooding.
    pub(super) fn refuse_flood<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        if !answerable(msg) {
            return self.drop(DropReason::RateLimited);
        }
        let ban_s = self
            .shared
            .guard
            .rate
            .map_or(0, |r| u32::try_from(r.ban_ms / 1000).unwrap_or(u32::MAX));
        let retry_after = ban_s.max(1);
        self.answer_plain(msg, src, Refused::Unavailable { retry_after }, send)
    }

    /// 513 Message Too Large for a request over `--max-message-size`.
    pub(super) fn too_large<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        if !answerable(msg) {
            return self.drop(DropReason::Oversize);
        }
        self.answer_plain(msg, src, Refused::TooLarge, send)
    }

    /// The answer to bytes a connection sent that cannot be framed
    /// (§18.3): 400 with the reason (513 when too large) if their header
    /// block parses as a request; the connection closes either way.
    pub fn refuse_unframeable<S: SendQueue>(
        &mut self,
        bytes: &[u8],
        src: &Source,
        e: FrameError,
        send: &mut S,
    ) -> Outcome {
        add(&self.counters.received, 1);
        let reason = match e {
            FrameError::TooLarge => DropReason::Oversize,
            _ => DropReason::Malformed,
        };
        // The header block alone: its body, if any, is what is in doubt,
        // and so is its Content-Length (a copy without it, on this path
        // that ends a connection).
        let Some(end) = memchr::memmem::find(bytes, b"\r\n\r\n") else {
            return self.drop(reason);
        };
        let head = without_content_length(&bytes[..end + 4]);
        match Message::parse(&head) {
            Ok(msg) if answerable(&msg) => {
                self.answer_plain(&msg, src, Refused::Unframeable(e), send)
            }
            _ => self.drop(reason),
        }
    }

    /// 503 for a REGISTER the shard cannot take now (a full owner inbox,
    /// a failing log), with Retry-After; `no_slot` is counted when there is
    /// no send slot to write it into.
    pub(super) fn unavailable<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        retry_after: u32,
        no_slot: DropReason,
        send: &mut S,
    ) -> Outcome {
        if send.slot().is_none() {
            return self.drop(no_slot);
        }
        self.answer_plain(msg, src, Refused::Unavailable { retry_after }, send)
    }

    /// A local answer with no body and at most a Retry-After.
    fn answer_plain<S: SendQueue>(
        &self,
        msg: &Message<'_>,
        src: &Source,
        refused: Refused,
        send: &mut S,
    ) -> Outcome {
        let Some(slot) = send.slot() else {
            return self.drop(DropReason::WriteFailed);
        };
        let (code, reason) = refused.status();
        let written = start_reply(msg, src, code, (reason, ""), slot).and_then(|mut w| {
            if let Refused::Unavailable { retry_after } = refused {
                w.header_u32("Retry-After", retry_after).ok()?;
            }
            finish(w)
        });
        commit_reply(send, written, code, reply_to(msg, src), self.counters)
    }

    /// The registrar's refusal of a REGISTER (§10.3).
    pub(super) fn answer_error<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        e: RegisterError,
        send: &mut S,
    ) -> Outcome {
        let Some(slot) = send.slot() else {
            return self.drop(DropReason::WriteFailed);
        };
        let written = write_register_answer(msg, src, &Err(e), self.now, slot);
        let to = reply_to(msg, src);
        commit_reply(send, written, e.status().0, to, self.counters)
    }
}

/// Writes `code reason` in answer to `msg` as a UAS at `src` would (no
/// body), into `out`; the length, or None when it does not fit.
pub(super) fn write_plain(
    msg: &Message<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    out: &mut [u8],
) -> Option<usize> {
    start_reply(msg, src, code, (reason, ""), out).and_then(finish)
}

/// A header block without its Content-Length lines (long or compact
/// form, §7.3.3), so that it parses as a message with no body.
fn without_content_length(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    for line in head.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        let is_length =
            name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l");
        if !(is_length && line.contains(&b':')) {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Where a local answer to `msg` goes (see [`reply_dest`]).
pub(super) fn reply_to(msg: &Message<'_>, src: &Source) -> Dest {
    reply_dest(msg.via().ok().as_ref(), src)
}

/// Queues a written answer (counted by status class), or counts the
/// failure to write it.
pub(super) fn commit_reply<S: SendQueue>(
    send: &mut S,
    written: Option<usize>,
    code: u16,
    to: Dest,
    counters: &ShardCounters,
) -> Outcome {
    match written {
        Some(n) => {
            send.commit(n, to);
            add(&counters.replies[status_class(code)], 1);
            Outcome::Answered(code)
        }
        None => {
            counters.dropped(DropReason::WriteFailed);
            Outcome::Dropped(DropReason::WriteFailed)
        }
    }
}

/// 420 Bad Extension (§16.3 step 5, §8.2.2.3): one `Unsupported` line per
/// option-tag of `header` that is not in `supported`, each a slice of the
/// request.
pub(super) fn write_bad_extension(
    msg: &Message<'_>,
    src: &Source,
    header: HeaderName,
    supported: &'static [u8],
    out: &mut [u8],
) -> Option<usize> {
    let mut w = start_reply(msg, src, 420, ("Bad Extension", ""), out)?;
    for tag in unsupported(msg, header, supported) {
        w.header("Unsupported", tag).ok()?;
    }
    finish(w)
}

/// The answer routing chose (§16.3: 400, 404, 482, 483...; 200 to OPTIONS
/// for us, with what we allow, accept and support, §11.2).
pub(super) fn write_local_answer(
    msg: &Message<'_>,
    src: &Source,
    code: u16,
    reason: (&str, &str),
    out: &mut [u8],
) -> Option<usize> {
    let mut w = start_reply(msg, src, code, reason, out)?;
    if code == 200 && msg.method() == Some(Method::Options) {
        w.header("Allow", ALLOW).ok()?;
        w.header("Accept", b"application/sdp").ok()?;
        w.header("Supported", PROXY_SUPPORTED).ok()?;
    }
    finish(w)
}

/// Starts a local response: status line, the request's headers that a
/// response copies (§8.2.6.2), the Via with what we saw (RFC 3581 §4) and a
/// To tag derived from the transaction, so that a retransmitted request
/// gets the very same response (we keep no state).
fn start_reply<'o>(
    msg: &Message<'_>,
    src: &Source,
    code: u16,
    reason: (&str, &str),
    out: &'o mut [u8],
) -> Option<ResponseWriter<'o>> {
    // §8.2.6.2: every response but 100 Trying gets a To tag.
    let tag = local_to_tag(msg);
    let tag = (code != 100).then_some(&tag[..]);
    let mut nat = [0u8; 512];
    let via_edit = nat_params(msg, src.peer, &mut nat).map(|n| ViaEdit {
        start: n.start,
        end: n.end,
        text: &nat[..n.len],
    });
    ResponseWriter::with_via_edit(
        msg,
        code,
        &[reason.0.as_bytes(), reason.1.as_bytes()],
        tag,
        via_edit,
        out,
    )
    .ok()
}

fn finish(mut w: ResponseWriter<'_>) -> Option<usize> {
    w.header("Server", b"sipshard").ok()?;
    w.finish().ok()
}

/// The answer to a REGISTER (§10.3 step 8): 200 with the bindings, 423
/// with Min-Expires, or the error's status.
pub(super) fn write_register_answer(
    msg: &Message<'_>,
    src: &Source,
    result: &Result<AorRecord, RegisterError>,
    now: u64,
    out: &mut [u8],
) -> Option<usize> {
    let (code, reason) = match result {
        Ok(_) => (200, "OK"),
        Err(e) => e.status(),
    };
    let mut w = start_reply(msg, src, code, (reason, ""), out)?;
    let ok: Result<(), WriteError> = match result {
        Ok(rec) => ok_headers(&mut w, msg, rec, now),
        Err(RegisterError::IntervalTooBrief { min }) => {
            w.header_u32("Min-Expires", *min).map(|_| ())
        }
        Err(_) => Ok(()),
    };
    ok.ok()?;
    finish(w)
}

/// 401 or 407 with a challenge per algorithm (§22.1, RFC 8760), or 403
/// for credentials of another user.
pub(super) fn write_auth_refusal(
    msg: &Message<'_>,
    src: &Source,
    refusal: AuthRefusal<'_>,
    nonce: &[u8; crate::auth::NONCE_LEN],
    out: &mut [u8],
) -> Option<usize> {
    match refusal {
        AuthRefusal::Challenge {
            code,
            stale,
            realm,
            algorithms,
        } => {
            let (reason, header) = if code == 401 {
                ("Unauthorized", "WWW-Authenticate")
            } else {
                ("Proxy Authentication Required", "Proxy-Authenticate")
            };
            let mut w = start_reply(msg, src, code, (reason, ""), out)?;
            write_challenge(&mut w, algorithms, header, realm, nonce, stale).ok()?;
            finish(w)
        }
        AuthRefusal::Forbidden => finish(start_reply(msg, src, 403, ("Forbidden", ""), out)?),
        AuthRefusal::Banned => None,
    }
}

/// 302 Moved Temporarily with every live binding as a Contact (§8.3).
pub(super) fn write_redirect(
    msg: &Message<'_>,
    src: &Source,
    record: &AorRecord,
    now: u64,
    out: &mut [u8],
) -> Option<usize> {
    let mut w = start_reply(msg, src, 302, ("Moved Temporarily", ""), out)?;
    contacts(&mut w, record, now, false).ok()?;
    finish(w)
}
