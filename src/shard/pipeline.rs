//! The per-message pipeline: admit, parse, authenticate, route, emit. One
//! datagram in, one [`Outcome`] out; the loop in `mod.rs` calls it for each
//! datagram of a batch, and so do the fuzzer, the property tests and the
//! callgrind harness.

use std::net::SocketAddr;

use crate::transport::Source;
use std::time::Instant;

use super::answer::{commit_reply, write_bad_extension, write_local_answer, write_redirect};
use super::auth_gate::AuthRefusal;
use super::counters::{add, status_class, ShardCounters, HANDLE_SAMPLE_EVERY};
use super::mail::Ban;
use super::outcome::Outcome;
use super::Shard;
use crate::admit::{Admission, Refusal};
use crate::io::SendQueue;
use crate::proxy::{check_request, route, Action, DropReason, Lookup};
use crate::registrar::lookup::fork_order;
use crate::sip::{Edits, Message, ParseError};

impl<'a> Shard<'a> {
    /// Handles one datagram: never panics; allocates nothing unless it is
    /// a REGISTER (whose new record is built here or in the owner). A drop
    /// may write a log line (at most one per reason a second); one datagram
    /// in [`HANDLE_SAMPLE_EVERY`] is timed for the handling-time histogram.
    pub fn handle<S: SendQueue>(&mut self, bytes: &[u8], src: &Source, send: &mut S) -> Outcome {
        self.handled = self.handled.wrapping_add(1);
        let timed = self
            .handled
            .is_multiple_of(HANDLE_SAMPLE_EVERY)
            .then(Instant::now);
        let outcome = self.handle_datagram(bytes, src, send);
        if let Some(t) = timed {
            self.counters.handle_time.record(t.elapsed());
        }
        if let Outcome::Dropped(r) = outcome {
            self.log_drop(r, Some(src.peer), bytes);
        }
        outcome
    }

    /// Writes a line about a dropped datagram if its reason had no line in
    /// the last second.
    #[inline]
    pub fn log_drop(&mut self, r: DropReason, src: Option<SocketAddr>, bytes: &[u8]) {
        self.drop_log
            .dropped(r, self.counters, self.now_ms, src, bytes);
    }

    /// Counts a drop and says so.
    #[inline]
    pub(super) fn drop(&self, r: DropReason) -> Outcome {
        self.counters.dropped(r);
        Outcome::Dropped(r)
    }

    fn handle_datagram<S: SendQueue>(
        &mut self,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        let policy = &self.shared.guard;
        let source = match self.admission.source(policy, src.peer.ip(), self.now_ms) {
            Ok(s) => s,
            Err(r) => return self.refuse(None, src, r, send),
        };
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(ParseError::Empty) => return self.drop(DropReason::KeepAlive),
            Err(_) => {
                add(&self.counters.parse_errors, 1);
                return self.drop(DropReason::Malformed);
            }
        };
        self.count_received(&msg);
        if let Err(r) = Admission::message(policy, source, &msg, bytes.len()) {
            return self.refuse(Some(&msg), src, r, send);
        }
        if let Some(claimant) = self.invite_claimant(&msg, src) {
            // §16.3: steps 1-5 (syntax, Max-Forwards, loops, Proxy-Require)
            // answer before step 6 asks for credentials.
            if let Some(answer) = check_request(&msg, src, &self.shared.proxy) {
                return emit(
                    self.counters,
                    self.now,
                    &msg,
                    src,
                    answer,
                    &Edits::new(),
                    send,
                );
            }
            match self.authenticate_invite(&msg, src, &claimant) {
                None => {}
                Some(AuthRefusal::Banned) => return self.drop(DropReason::AuthBanned),
                Some(refusal) => return self.refuse_auth(&msg, src, refusal, send),
            }
        }
        self.route_and_emit(&msg, bytes, src, send)
    }

    /// §16 routing of a message past admission, then what it decided:
    /// the forwarded copy or a local answer, or the registrar for a
    /// REGISTER for one of our domains.
    fn route_and_emit<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        if let Some(outcome) = self.before_route(msg, bytes, src, send) {
            return outcome;
        }
        // A new request that will leave in a transaction.
        let transaction = self.stateful.as_deref().is_some_and(|st| st.opens(msg));
        let mut edits = Edits::new();
        let loc = Lookup::best(&self.location.replica, self.now);
        let action = route(
            msg,
            src,
            &self.shared.proxy,
            loc,
            &mut self.scratch,
            &mut edits,
        );
        if action == Action::Register {
            return self.register(msg, bytes, src, send);
        }
        let in_transaction = match action {
            Action::Forward(to) if transaction => Some((to, None)),
            Action::Fork { to, record } if transaction => {
                Some((to, Some(fork_order(record, self.now))))
            }
            _ => None,
        };
        if let Some((to, order)) = in_transaction {
            let counters = self.counters;
            let room = self
                .stateful
                .as_deref_mut()
                .is_none_or(|st| st.make_room(counters));
            if !room {
                return self.refuse_transaction(msg, src, send);
            }
            // Forwarded as the stateless proxy does, with a copy kept for
            // the client transaction's retransmissions.
            let written = send.slot().and_then(|slot| {
                let n = edits.write(msg, slot).ok()?;
                Some((Box::<[u8]>::from(slot.get(..n)?), n))
            });
            let Some((sent, n)) = written else {
                return self.drop(DropReason::WriteFailed);
            };
            send.commit(n, to);
            add(&self.counters.forwarded_requests, 1);
            // §16.6: the AOR's other bindings are forked to as well.
            let forks = order.and_then(|o| self.fork_requests(msg, src, &o, send));
            self.forward_in_transaction(msg, bytes, src, sent, to, forks, send);
            return Outcome::Forwarded;
        }
        emit(self.counters, self.now, msg, src, action, &edits, send)
    }

    /// Counts a parsed message by method or status class.
    fn count_received(&self, msg: &Message<'_>) {
        let c = self.counters;
        match (msg.method(), msg.status()) {
            (Some(m), _) => add(&c.requests[m.index()], 1),
            (None, Some(code)) => add(&c.responses[status_class(code)], 1),
            (None, None) => {}
        }
    }

    /// What admission turned away: a 503 for the request that tipped its
    /// source over the rate limit, 513 for a request over the size limit
    /// (each only when it can be answered), a counted drop otherwise.
    fn refuse<S: SendQueue>(
        &mut self,
        msg: Option<&Message<'_>>,
        src: &Source,
        refusal: Refusal,
        send: &mut S,
    ) -> Outcome {
        match (refusal, msg) {
            (Refusal::Denied, _) => self.drop(DropReason::Denied),
            (Refusal::RateLimited, _) => self.drop(DropReason::RateLimited),
            (Refusal::Scanner, _) => self.drop(DropReason::Scanner),
            (Refusal::JustBanned, Some(msg)) => {
                let c = self.counters;
                add(&c.sources_banned, 1);
                self.tell_others_of_ban(src.peer.ip(), Ban::Flood);
                let ban_ms = self.shared.guard.rate.map_or(0, |r| r.ban_ms);
                self.drop_log
                    .banned(c, self.now_ms, src.peer, ban_ms / 1000);
                self.refuse_flood(msg, src, send)
            }
            (Refusal::TooLarge, Some(msg)) => self.too_large(msg, src, send),
            // Both come from the message check: never without a message.
            (Refusal::JustBanned, None) => {
                self.tell_others_of_ban(src.peer.ip(), Ban::Flood);
                self.drop(DropReason::RateLimited)
            }
            (Refusal::TooLarge, None) => self.drop(DropReason::Oversize),
        }
    }
}

impl Shard<'_> {
    /// Routes a response the shard wrote itself as if it had arrived from
    /// `src` (its top Via ours): no admission (the source is us), the
    /// rest as for any response.
    pub(super) fn route_own_response<S: SendQueue>(
        &mut self,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        let Ok(msg) = Message::parse(bytes) else {
            return self.drop(DropReason::Malformed);
        };
        self.route_and_emit(&msg, bytes, src, send)
    }
}

/// Sends what routing decided: the edited message, or a local answer.
fn emit<S: SendQueue>(
    counters: &ShardCounters,
    now: u64,
    msg: &Message<'_>,
    src: &Source,
    action: Action<'_>,
    edits: &Edits<'_>,
    send: &mut S,
) -> Outcome {
    let drop = |r: DropReason| {
        counters.dropped(r);
        Outcome::Dropped(r)
    };
    let Some(slot) = send.slot() else {
        return drop(DropReason::WriteFailed);
    };
    match action {
        // A stateless proxy does not fork: the best binding only.
        Action::Forward(to) | Action::Fork { to, .. } => match edits.write(msg, slot) {
            Ok(n) => {
                send.commit(n, to);
                let c = if msg.is_request() {
                    &counters.forwarded_requests
                } else {
                    &counters.forwarded_responses
                };
                add(c, 1);
                Outcome::Forwarded
            }
            Err(_) => drop(DropReason::WriteFailed),
        },
        Action::Reply { code, reason, to } => {
            let written = write_local_answer(msg, src, code, reason, slot);
            commit_reply(send, written, code, to, counters)
        }
        Action::BadExtension {
            header,
            supported,
            to,
        } => {
            let written = write_bad_extension(msg, src, header, supported, slot);
            commit_reply(send, written, 420, to, counters)
        }
        Action::Redirect { record, to } => {
            let written = write_redirect(msg, src, record, now, slot);
            commit_reply(send, written, 302, to, counters)
        }
        Action::Drop(r) => drop(r),
        // Taken by handle_datagram before a send slot is claimed.
        Action::Register => drop(DropReason::WriteFailed),
    }
}
