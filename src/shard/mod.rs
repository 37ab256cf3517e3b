//! A shard: one thread, one socket, one loop. Receive a batch, handle each
//! datagram in place (parse, route, write the outgoing copy straight into a
//! send buffer), send the batch. Between batches it reads its inbox: REGISTERs
//! for AORs it owns, replica updates from other owners, and answers to send.
//! It shares nothing mutable with other shards but its counters, which only
//! it writes, and the lock-free inboxes.

pub mod counters;
pub mod drop_log;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::auth::failures::FailureLimiter;
use crate::auth::{write_challenge, AuthConfig, Claim, NonceCounts, Outcome};
use crate::guard::Guard;
use crate::io::{Backend, SendQueue, SEND_SLOT};
use crate::location::inbox::{Inbox, Mail, INBOX_CAPACITY};
use crate::location::shard::LocationShard;
use crate::location::{owner_of, AorRecord, LocationOp};
use crate::proxy::branch::local_to_tag;
use crate::proxy::{
    nat_params, reply_address, route, Action, DropReason, Lookup, ProxyConfig, Scratch,
};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::registrar::register::{aor_of, RegisterError, RegistrarConfig};
use crate::registrar::reply::{contacts, ok_headers};
use crate::sip::{
    Edits, HeaderName, Message, Method, ParseError, ResponseWriter, SipUri, Uri, ViaEdit,
    WriteError,
};
use crate::transport::Dest;
use counters::{add, ShardCounters, HANDLE_SAMPLE_EVERY};
use drop_log::DropLog;

/// Methods a stateless proxy passes on, for `Allow` in answers to OPTIONS.
const ALLOW: &[u8] =
    b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE";

/// Inbox REGISTERs one loop iteration answers at most, so that received
/// datagrams keep their share of the send slots.
const REGISTERS_PER_LOOP: usize = 16;

/// What every shard reads and nobody writes after start-up, plus the
/// inboxes (which are lock-free).
pub struct Shared {
    /// Routing configuration.
    pub proxy: ProxyConfig,
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// One inbox per shard, indexed like the shards.
    pub inboxes: Box<[Inbox]>,
    /// Per shard, the index of the listen address its socket is bound to:
    /// an answer must leave from the address the request came to.
    pub listen_of: Box<[usize]>,
    /// Access control and size limits (`--allow`, `--deny`,
    /// `--max-message-size`, `--drop-scanners`).
    pub guard: Guard,
    /// Digest authentication (`--auth-file`), when on.
    pub auth: Option<AuthConfig>,
}

impl Shared {
    /// State for `shards` shards, `listen_of[i]` giving shard i's listen
    /// address index.
    pub fn new(
        proxy: ProxyConfig,
        registrar: RegistrarConfig,
        listen_of: Vec<usize>,
    ) -> io::Result<Shared> {
        Shared::with_inbox_capacity(proxy, registrar, listen_of, INBOX_CAPACITY)
    }

    /// As [`Shared::new`], with inboxes of `capacity` mails.
    pub fn with_inbox_capacity(
        proxy: ProxyConfig,
        registrar: RegistrarConfig,
        listen_of: Vec<usize>,
        capacity: usize,
    ) -> io::Result<Shared> {
        let inboxes = (0..listen_of.len())
            .map(|_| Inbox::new(capacity))
            .collect::<io::Result<_>>()?;
        Ok(Shared {
            proxy,
            registrar,
            inboxes,
            listen_of: listen_of.into_boxed_slice(),
            guard: Guard::default(),
            auth: None,
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.listen_of.len()
    }
}

/// Unix time in seconds (the clock bindings expire by).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One shard's state: everything its loop touches.
pub struct Shard<'a> {
    /// This shard's index.
    pub index: usize,
    shared: &'a Shared,
    counters: &'a ShardCounters,
    scratch: Scratch,
    /// Its replica and owner duties.
    pub location: LocationShard,
    /// Unix seconds, read once per loop iteration.
    pub now: u64,
    /// Mail taken out of the inbox by [`Shard::apply_updates`] that is not a
    /// replica update, in arrival order.
    set_aside: VecDeque<Mail>,
    /// Per-source token buckets (`--rate-limit`).
    limiter: Option<RateLimiter>,
    /// Milliseconds since the shard started (a monotonic clock), read once
    /// per loop iteration: the rate limits run on it.
    pub now_ms: u64,
    /// Nonce-counts seen, when authentication is on.
    nonce_counts: Option<NonceCounts>,
    /// Failed authentications per source (`--auth-fail-limit`).
    auth_failures: Option<FailureLimiter>,
    /// Makes each challenge's nonce differ from the others of its second.
    nonce_salt: u32,
    /// Rate limits for the lines about drops and bans.
    drop_log: DropLog,
    /// Datagrams handled, wrapping: every [`HANDLE_SAMPLE_EVERY`]th is
    /// timed.
    handled: u32,
}

/// A request that did not pass authentication, and what it gets.
#[derive(Clone, Copy)]
struct AuthRefusal<'r> {
    /// 401 (REGISTER), 407 (proxied request) or 403 (another user's
    /// credentials); [`UNANSWERED`] for a source banned by
    /// `--auth-fail-limit`.
    code: u16,
    /// A challenge with `stale=true`.
    stale: bool,
    /// The realm challenged for.
    realm: &'r [u8],
    /// The algorithms offered.
    algorithms: &'r [crate::auth::Algorithm],
}

/// The "status" of an authentication refusal that gets no answer at all.
const UNANSWERED: u16 = 0;

impl<'a> Shard<'a> {
    /// Shard `index` of `shared`, with its location state.
    pub fn new(
        index: usize,
        shared: &'a Shared,
        counters: &'a ShardCounters,
        location: LocationShard,
    ) -> Shard<'a> {
        Shard {
            index,
            shared,
            counters,
            scratch: Scratch::default(),
            location,
            now: unix_now(),
            set_aside: VecDeque::new(),
            limiter: shared.guard.rate.map(RateLimiter::new),
            now_ms: 0,
            nonce_counts: shared.auth.as_ref().map(|_| NonceCounts::default()),
            auth_failures: shared
                .auth
                .as_ref()
                .and_then(|a| a.failure_limit)
                .map(|(per_minute, ban_ms)| FailureLimiter::new(per_minute, ban_ms)),
            nonce_salt: (index as u32) << 24,
            drop_log: DropLog::new(index),
            handled: 0,
        }
    }

    /// Shard 0 of `shared` with its registrations in memory: for tests,
    /// fuzzing and benchmarks of the per-datagram path.
    pub fn alone(shared: &'a Shared, counters: &'a ShardCounters) -> Shard<'a> {
        let now = unix_now();
        let location = LocationShard::new(0, shared.shards(), now, &shared.registrar, None);
        Shard::new(0, shared, counters, location)
    }

    /// Handles one datagram: never panics; allocates nothing unless it is
    /// a REGISTER (whose new record is built here or in the owner). A drop
    /// may write a log line (at most one per reason a second); one datagram
    /// in [`HANDLE_SAMPLE_EVERY`] is timed for the handling-time histogram.
    pub fn handle<S: SendQueue>(&mut self, bytes: &[u8], src: SocketAddr, send: &mut S) {
        // A drop left over from the inbox is not this datagram's.
        self.counters.take_last_drop();
        self.handled = self.handled.wrapping_add(1);
        let timed = self
            .handled
            .is_multiple_of(HANDLE_SAMPLE_EVERY)
            .then(Instant::now);
        self.handle_datagram(bytes, src, send);
        if let Some(t) = timed {
            self.counters.handle_time.record(t.elapsed());
        }
        self.log_drop(Some(src), bytes);
    }

    /// Writes a line about the datagram just handled if it was dropped
    /// and its reason had no line in the last second.
    #[inline]
    pub fn log_drop(&mut self, src: Option<SocketAddr>, bytes: &[u8]) {
        if let Some(r) = self.counters.take_last_drop() {
            self.drop_log
                .dropped(r, self.counters, self.now_ms, src, bytes);
        }
    }

    fn handle_datagram<S: SendQueue>(&mut self, bytes: &[u8], src: SocketAddr, send: &mut S) {
        let counters = self.counters;
        let drop = |r: DropReason| counters.dropped(r);
        let shared = self.shared;
        let guard = &shared.guard;
        if !guard.admits(src.ip()) {
            return drop(DropReason::Denied);
        }
        let mut just_banned = false;
        if let Some(limiter) = &mut self.limiter {
            match limiter.check(src.ip(), self.now_ms) {
                Verdict::Pass => {}
                Verdict::Banned => return drop(DropReason::RateLimited),
                Verdict::JustBanned => {
                    add(&counters.sources_banned, 1);
                    let ban_s = guard.rate.map_or(0, |r| r.ban_ms / 1000);
                    self.drop_log.banned(counters, self.now_ms, src, ban_s);
                    just_banned = true;
                }
            }
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(ParseError::Empty) => return drop(DropReason::KeepAlive),
            Err(_) => {
                add(&counters.parse_errors, 1);
                return drop(DropReason::Malformed);
            }
        };
        match (msg.method(), msg.status()) {
            (Some(m), _) => add(&counters.requests[m.index()], 1),
            (None, Some(code)) => add(&counters.responses[usize::from(code / 100).min(6)], 1),
            (None, None) => {}
        }
        if just_banned {
            // It went over just now: one 503 with Retry-After, if this is
            // a request that can be answered; dropped from now on.
            return self.refuse_flood(&msg, src, send);
        }
        if guard.drop_scanners
            && msg.is_request()
            && msg
                .header(HeaderName::UserAgent)
                .is_some_and(Guard::is_scanner)
        {
            return drop(DropReason::Scanner);
        }
        if bytes.len() > guard.max_message_size {
            // §21.5.14: a request we can answer gets 513; the rest (responses,
            // ACK, no Via) is dropped.
            return self.too_large(&msg, src, send);
        }
        if let Some(refusal) = self.authenticate_invite(&msg, src) {
            if refusal.code == UNANSWERED {
                return drop(DropReason::AuthBanned);
            }
            return self.refuse_auth(&msg, src, refusal, send);
        }
        let mut edits = Edits::new();
        let loc = Lookup {
            replica: &self.location.replica,
            now: self.now,
        };
        let action = route(
            &msg,
            src,
            &self.shared.proxy,
            loc,
            &mut self.scratch,
            &mut edits,
        );
        let Some(slot) = send.slot() else {
            return drop(DropReason::WriteFailed);
        };
        match action {
            Action::Forward(to) => match edits.write(&msg, slot) {
                Ok(n) => {
                    send.commit(n, Dest::udp(to));
                    let c = if msg.is_request() {
                        &counters.forwarded_requests
                    } else {
                        &counters.forwarded_responses
                    };
                    add(c, 1);
                }
                Err(_) => drop(DropReason::WriteFailed),
            },
            Action::Reply { code, reason, to } => {
                let written = start_reply(&msg, src, code, reason, slot).and_then(|mut w| {
                    if code == 200 && msg.method() == Some(Method::Options) {
                        w.header("Allow", ALLOW).ok()?;
                        w.header("Accept", b"application/sdp").ok()?;
                        w.header("Supported", b"").ok()?;
                    }
                    finish(w)
                });
                commit_reply(send, written, code, to, counters);
            }
            Action::Redirect { record, to } => {
                let written = write_redirect(&msg, src, record, self.now, slot);
                commit_reply(send, written, 302, to, counters);
            }
            Action::Drop(r) => drop(r),
            Action::Register => self.register(&msg, bytes, src, send),
        }
    }

    /// The one 503 a source gets when it is banned for flooding.
    fn refuse_flood<S: SendQueue>(&mut self, msg: &Message<'_>, src: SocketAddr, send: &mut S) {
        let counters = self.counters;
        let ban_s = self
            .shared
            .guard
            .rate
            .map_or(0, |r| u32::try_from(r.ban_ms / 1000).unwrap_or(u32::MAX));
        if !msg.is_request() || msg.method() == Some(Method::Ack) || msg.via().is_err() {
            return counters.dropped(DropReason::RateLimited);
        }
        self.answer_plain(
            msg,
            src,
            503,
            Some(ban_s.max(1)),
            DropReason::WriteFailed,
            send,
        );
    }

    /// 513 Message Too Large for a request over `--max-message-size`.
    fn too_large<S: SendQueue>(&mut self, msg: &Message<'_>, src: SocketAddr, send: &mut S) {
        let counters = self.counters;
        if !msg.is_request() || msg.method() == Some(Method::Ack) || msg.via().is_err() {
            return counters.dropped(DropReason::Oversize);
        }
        self.answer_plain(msg, src, 513, None, DropReason::WriteFailed, send);
    }

    /// A local answer with no body and at most a Retry-After (513, or 503
    /// for floods, full inboxes and a failing log); `no_slot` is what is
    /// counted when there is no send slot to write it into.
    fn answer_plain<S: SendQueue>(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        code: u16,
        retry_after: Option<u32>,
        no_slot: DropReason,
        send: &mut S,
    ) {
        let Some(slot) = send.slot() else {
            return self.counters.dropped(no_slot);
        };
        let reason = if code == 513 {
            "Message Too Large"
        } else {
            "Service Unavailable"
        };
        let written = start_reply(msg, src, code, (reason, ""), slot).and_then(|mut w| {
            if let Some(secs) = retry_after {
                w.header_u32("Retry-After", secs).ok()?;
            }
            finish(w)
        });
        commit_reply(send, written, code, reply_to(msg, src), self.counters);
    }

    /// A REGISTER for a local domain: applied here when this shard owns the
    /// AOR, else passed to the owner's inbox (503 when it is full).
    fn register<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: SocketAddr,
        send: &mut S,
    ) {
        // §10.3 step 3: the To must be an AOR of a domain we serve.
        let to = match msg.to_uri() {
            Ok(Uri::Sip(u)) => Some(u),
            _ => None, // aor_of answers 400 below
        };
        if to.is_some_and(|u| !self.shared.proxy.is_local_domain(&u)) {
            return self.answer_error(msg, src, RegisterError::NotOurDomain, send);
        }
        let owner = match aor_of(msg) {
            Ok(aor) => owner_of(&aor, self.shared.shards()),
            Err(e) => return self.answer_error(msg, src, e, send),
        };
        // §22.1 (and step 2 of §10.3): a REGISTER without credentials is
        // challenged here, sparing the owner's inbox; credentials are
        // checked by the owner, whose nonce-count table sees every
        // REGISTER of the AOR.
        if let (Some(_), Some(to)) = (&self.shared.auth, to) {
            if msg.header(HeaderName::Authorization).is_none() {
                add(&self.counters.auth_challenges, 1);
                let refusal = self.refusal(401, false, &to);
                return self.refuse_auth(msg, src, refusal, send);
            }
        }
        if owner == self.index {
            return self.answer_register(msg, src, self.index, send);
        }
        let mail = Mail::Register {
            data: bytes.into(),
            src,
            arrived_on: self.index,
        };
        match self.shared.inboxes.get(owner).map(|i| i.push(mail)) {
            Some(Ok(())) => add(&self.counters.handed_off, 1),
            _ => {
                add(&self.counters.registers_refused, 1);
                self.answer_plain(msg, src, 503, Some(1), DropReason::InboxFull, send);
            }
        }
    }

    /// Applies a REGISTER this shard owns and answers it, from this shard's
    /// socket or, when it came in on another listen address, through the
    /// inbox of the shard it arrived on.
    fn answer_register<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        arrived_on: usize,
        send: &mut S,
    ) {
        if self.location.log_failing() {
            add(&self.counters.registers_refused, 1);
            return self.answer_plain(msg, src, 503, Some(5), DropReason::WriteFailed, send);
        }
        if let Some(refusal) = self.authenticate_register(msg, src) {
            let code = refusal.code;
            if code == UNANSWERED {
                return self.counters.dropped(DropReason::AuthBanned);
            }
            let nonce = self.next_nonce(refusal.realm);
            return self.deliver(msg, src, arrived_on, code, send, |out| {
                write_auth_refusal(msg, src, refusal, &nonce, out)
            });
        }
        let result = self.location.register(
            msg,
            src,
            self.now,
            &self.shared.registrar,
            &self.shared.inboxes,
        );
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.status().0,
        };
        if let Ok((_, Some(change))) = result {
            let c = self.counters;
            add(&c.registered, 1);
            add(&c.bindings_created, change.created.into());
            add(&c.bindings_refreshed, change.refreshed.into());
            add(&c.bindings_removed, change.removed.into());
        }
        let result = result.map(|(rec, _)| rec);
        let now = self.now;
        self.deliver(msg, src, arrived_on, code, send, |out| {
            write_register_answer(msg, src, &result, now, out)
        });
    }

    /// Sends an owner's answer to a REGISTER: from this shard's socket
    /// when it is bound to the address the request arrived on, else
    /// through the inbox of the shard it arrived on.
    fn deliver<S: SendQueue>(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        arrived_on: usize,
        code: u16,
        send: &mut S,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        let to = reply_to(msg, src);
        let same_socket_address =
            self.shared.listen_of.get(arrived_on) == self.shared.listen_of.get(self.index);
        if same_socket_address {
            let Some(slot) = send.slot() else {
                return self.counters.dropped(DropReason::WriteFailed);
            };
            let written = write(slot);
            commit_reply(send, written, code, to, self.counters);
            return;
        }
        let mut buf = vec![0u8; SEND_SLOT];
        let Some(n) = write(&mut buf) else {
            return self.counters.dropped(DropReason::WriteFailed);
        };
        buf.truncate(n);
        let mail = Mail::Send {
            data: buf.into_boxed_slice(),
            to,
        };
        match self.shared.inboxes.get(arrived_on).map(|i| i.push(mail)) {
            Some(Ok(())) => add(&self.counters.replies[usize::from(code / 100).min(6)], 1),
            _ => self.counters.dropped(DropReason::InboxFull),
        }
    }

    /// §22, RFC 7616: the REGISTER's Authorization checked against the To
    /// user; None when it may go on.
    fn authenticate_register(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
    ) -> Option<AuthRefusal<'a>> {
        self.shared.auth.as_ref()?;
        let to = match msg.to_uri() {
            Ok(Uri::Sip(u)) => u,
            // aor_of refuses these before a hand-off; never let one by.
            _ => {
                return Some(AuthRefusal {
                    code: 403,
                    stale: false,
                    realm: b"",
                    algorithms: &[],
                })
            }
        };
        self.authenticate(msg, src, HeaderName::Authorization, 401, &to)
    }

    /// With `--auth-invite`: an initial INVITE from a user of ours must
    /// carry Proxy-Authorization of that user (§22.3); None when it may go
    /// on.
    fn authenticate_invite(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
    ) -> Option<AuthRefusal<'a>> {
        if !self.shared.auth.as_ref()?.invite || msg.method() != Some(Method::Invite) {
            return None;
        }
        if msg.to().ok()?.tag().is_some() {
            return None; // a re-INVITE inside a dialog
        }
        let from = match msg.from().ok()?.parsed_uri() {
            Ok(Uri::Sip(u)) if self.shared.proxy.is_local_domain(&u) => u,
            _ => return None,
        };
        self.authenticate(msg, src, HeaderName::ProxyAuthorization, 407, &from)
    }

    fn authenticate(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        header: HeaderName,
        challenge: u16,
        claimed: &SipUri<'_>,
    ) -> Option<AuthRefusal<'a>> {
        let auth = self.shared.auth.as_ref()?;
        let realm = self.shared.proxy.realm_for(claimed)?;
        let now_ms = self.now_ms;
        if let Some(f) = &self.auth_failures {
            if f.banned(src.ip(), now_ms) {
                return Some(AuthRefusal {
                    code: UNANSWERED,
                    stale: false,
                    realm,
                    algorithms: &[],
                });
            }
        }
        let counts = self.nonce_counts.as_mut()?;
        let proxy = &self.shared.proxy;
        let uri_is_ours = |u: &[u8]| matches!(SipUri::parse(u), Ok(s) if s.user.is_none() && proxy.is_local_domain(&s));
        let claim = Claim {
            header,
            realm,
            user: Some(claimed.user.unwrap_or_default()),
            uri_is_ours: &uri_is_ours,
        };
        let outcome = auth.check(msg, &claim, self.now, counts);
        let c = self.counters;
        let (code, stale) = match outcome {
            Outcome::Accepted => {
                add(&c.auth_accepted, 1);
                return None;
            }
            Outcome::Missing => (challenge, false),
            Outcome::Stale => (challenge, true),
            Outcome::Failed(_) => (challenge, false),
            Outcome::WrongUser => (403, false),
        };
        if matches!(outcome, Outcome::Failed(_) | Outcome::WrongUser) {
            add(&c.auth_failures, 1);
            if let Some(f) = &mut self.auth_failures {
                if f.failed(src.ip(), now_ms) {
                    add(&c.auth_bans, 1);
                }
            }
        }
        if code != 403 {
            add(&c.auth_challenges, 1);
        }
        Some(AuthRefusal {
            code,
            stale,
            realm,
            algorithms: &auth.algorithms,
        })
    }

    /// A challenge for a request about `claimed` (not yet counted).
    fn refusal(&self, code: u16, stale: bool, claimed: &SipUri<'_>) -> AuthRefusal<'a> {
        let shared: &'a Shared = self.shared;
        AuthRefusal {
            code,
            stale,
            realm: shared.proxy.realm_for(claimed).unwrap_or_default(),
            algorithms: shared.auth.as_ref().map_or(&[], |a| &a.algorithms),
        }
    }

    /// A fresh nonce for a challenge in `realm`.
    fn next_nonce(&mut self, realm: &[u8]) -> [u8; crate::auth::NONCE_LEN] {
        self.nonce_salt = self.nonce_salt.wrapping_add(1);
        match &self.shared.auth {
            Some(auth) => auth.key.mint(self.now, self.nonce_salt, realm),
            None => [b'0'; crate::auth::NONCE_LEN],
        }
    }

    /// Answers a refused request from this shard's socket.
    fn refuse_auth<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        refusal: AuthRefusal<'_>,
        send: &mut S,
    ) {
        let nonce = self.next_nonce(refusal.realm);
        let Some(slot) = send.slot() else {
            return self.counters.dropped(DropReason::WriteFailed);
        };
        let written = write_auth_refusal(msg, src, refusal, &nonce, slot);
        commit_reply(
            send,
            written,
            refusal.code,
            reply_to(msg, src),
            self.counters,
        );
    }

    fn answer_error<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        e: RegisterError,
        send: &mut S,
    ) {
        let Some(slot) = send.slot() else {
            return self.counters.dropped(DropReason::WriteFailed);
        };
        let written = write_register_answer(msg, src, &Err(e), self.now, slot);
        commit_reply(
            send,
            written,
            e.status().0,
            reply_to(msg, src),
            self.counters,
        );
    }

    /// Applies every replica update waiting in the inbox, setting other
    /// mail aside for [`Self::drain_inbox`]. Called when a batch of
    /// datagrams has arrived and before the first is handled: an owner
    /// publishes a change before its 200 leaves, so a request sent by
    /// anyone who saw that 200 finds the change here, whichever shard it
    /// lands on.
    pub fn apply_updates(&mut self) {
        let shared = self.shared;
        let Some(inbox) = shared.inboxes.get(self.index) else {
            return;
        };
        inbox.arm();
        while let Some(mail) = inbox.pop() {
            match mail {
                Mail::Location(op, at) => self.apply_update(op, at),
                other => self.set_aside.push_back(other),
            }
        }
    }

    fn apply_update(&mut self, op: LocationOp, at: Instant) {
        self.location.replica.apply(op);
        let us = at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let max = &self.counters.replica_delay_max_us;
        if us > max.load(Ordering::Relaxed) {
            max.store(us, Ordering::Relaxed);
        }
    }

    /// Reads the inbox (after what [`Self::apply_updates`] set aside):
    /// replica updates, REGISTERs to apply (at most [`REGISTERS_PER_LOOP`],
    /// and only while a send slot is free), and answers to send.
    pub fn drain_inbox<S: SendQueue>(&mut self, send: &mut S) {
        let shared = self.shared;
        let Some(inbox) = shared.inboxes.get(self.index) else {
            return;
        };
        inbox.arm();
        let mut registers = 0;
        while registers < REGISTERS_PER_LOOP && send.slot().is_some() {
            let Some(mail) = self.set_aside.pop_front().or_else(|| inbox.pop()) else {
                break;
            };
            match mail {
                Mail::Location(op, at) => self.apply_update(op, at),
                Mail::Register {
                    data,
                    src,
                    arrived_on,
                } => {
                    registers += 1;
                    // The arrival shard parsed it already; a failure here
                    // would be a bug, and costs only this datagram.
                    match Message::parse(&data) {
                        Ok(msg) => self.answer_register(&msg, src, arrived_on, send),
                        Err(_) => self.counters.dropped(DropReason::Malformed),
                    }
                }
                Mail::Send { data, to } => {
                    if let Some(slot) = send.slot() {
                        if let Some(dst) = slot.get_mut(..data.len()) {
                            dst.copy_from_slice(&data);
                            send.commit(data.len(), Dest::udp(to));
                        }
                    }
                }
            }
        }
        // A wake-up may have been consumed with mail left behind (the
        // per-loop limits): make sure the next loop looks again soon.
        if !inbox.is_empty() || !self.set_aside.is_empty() {
            inbox.wake();
        } else if self.set_aside.capacity() > 1024 {
            // A burst is over: give its memory back.
            self.set_aside = VecDeque::new();
        }
    }

    /// Writes what this loop changed to the log (`--state-dir`); must run
    /// before the answers to those changes are handed to the kernel.
    pub fn commit_log(&mut self) {
        if self.location.commit().is_err() {
            add(&self.counters.store_errors, 1);
        }
    }

    /// The per-loop chores after a batch: expiry, retries of replica
    /// updates, the log commit (before the 200s are flushed), gauges.
    pub fn after_batch(&mut self) {
        let expired = self.location.tick(self.now, &self.shared.inboxes);
        if expired > 0 {
            add(&self.counters.bindings_expired, expired);
        }
        self.commit_log();
        self.counters
            .aors
            .store(self.location.replica.len() as u64, Ordering::Relaxed);
        self.counters
            .updates_waiting
            .store(self.location.waiting() as u64, Ordering::Relaxed);
    }
}

/// Runs the shard loop until `stop` is set, then sends what is queued.
pub fn run<B: Backend>(mut io: B, shard: &mut Shard<'_>, stop: &AtomicBool) -> io::Result<()> {
    let counters = shard.counters;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        shard.now = unix_now();
        shard.now_ms = started.elapsed().as_millis() as u64;
        shard.drain_inbox(io.send_queue());
        // io_uring submits queued sends inside `poll`: log first.
        shard.commit_log();
        let mut first = true;
        io.poll(|d, send| {
            if std::mem::take(&mut first) {
                shard.apply_updates();
            }
            add(&counters.received, 1);
            let Some(src) = d.source else {
                counters.dropped(DropReason::Malformed);
                return shard.log_drop(None, d.bytes);
            };
            if d.truncated {
                counters.dropped(DropReason::Oversize);
                return shard.log_drop(Some(src), d.bytes);
            }
            shard.handle(d.bytes, src, send);
        })?;
        shard.after_batch();
        add(&counters.send_failed, io.flush() as u64);
    }
    shard.after_batch();
    add(&counters.send_failed, io.flush() as u64);
    Ok(())
}

/// Where a local answer to `msg` goes (see [`reply_address`]); the source
/// when the request has no readable Via.
fn reply_to(msg: &Message<'_>, src: SocketAddr) -> SocketAddr {
    msg.via().map_or(src, |v| reply_address(&v, src))
}

fn commit_reply<S: SendQueue>(
    send: &mut S,
    written: Option<usize>,
    code: u16,
    to: SocketAddr,
    counters: &ShardCounters,
) {
    match written {
        Some(n) => {
            send.commit(n, Dest::udp(to));
            add(&counters.replies[usize::from(code / 100).min(6)], 1);
        }
        None => counters.dropped(DropReason::WriteFailed),
    }
}

/// Starts a local response: status line, the request's headers that a
/// response copies (§8.2.6.2), the Via with what we saw (RFC 3581 §4) and a
/// To tag derived from the transaction, so that a retransmitted request
/// gets the very same response (we keep no state).
fn start_reply<'o>(
    msg: &Message<'_>,
    src: SocketAddr,
    code: u16,
    reason: (&str, &str),
    out: &'o mut [u8],
) -> Option<ResponseWriter<'o>> {
    let tag = local_to_tag(msg);
    let mut nat = [0u8; 512];
    let via_edit = nat_params(msg, src, &mut nat).map(|n| ViaEdit {
        start: n.start,
        end: n.end,
        text: &nat[..n.len],
    });
    ResponseWriter::with_via_edit(
        msg,
        code,
        &[reason.0.as_bytes(), reason.1.as_bytes()],
        Some(&tag),
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
fn write_register_answer(
    msg: &Message<'_>,
    src: SocketAddr,
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
fn write_auth_refusal(
    msg: &Message<'_>,
    src: SocketAddr,
    refusal: AuthRefusal<'_>,
    nonce: &[u8; crate::auth::NONCE_LEN],
    out: &mut [u8],
) -> Option<usize> {
    let (reason, header) = match refusal.code {
        401 => ("Unauthorized", "WWW-Authenticate"),
        407 => ("Proxy Authentication Required", "Proxy-Authenticate"),
        _ => ("Forbidden", ""),
    };
    let mut w = start_reply(msg, src, refusal.code, (reason, ""), out)?;
    if !header.is_empty() {
        write_challenge(
            &mut w,
            refusal.algorithms,
            header,
            refusal.realm,
            nonce,
            refusal.stale,
        )
        .ok()?;
    }
    finish(w)
}

/// 302 Moved Temporarily with every live binding as a Contact (§8.3).
fn write_redirect(
    msg: &Message<'_>,
    src: SocketAddr,
    record: &AorRecord,
    now: u64,
    out: &mut [u8],
) -> Option<usize> {
    let mut w = start_reply(msg, src, 302, ("Moved Temporarily", ""), out)?;
    contacts(&mut w, record, now, false).ok()?;
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::owner_of;

    /// Collects what a shard sends.
    #[derive(Default)]
    struct Sent(Vec<(Vec<u8>, SocketAddr)>, Vec<u8>);

    impl SendQueue for Sent {
        fn slot(&mut self) -> Option<&mut [u8]> {
            self.1.resize(SEND_SLOT, 0);
            Some(&mut self.1[..])
        }
        fn commit(&mut self, len: usize, dest: Dest) {
            let to = dest.peer().expect("a datagram");
            self.0.push((self.1[..len].to_vec(), to));
        }
    }

    fn register(user: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK{user}\r\n\
To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\nCall-ID: {user}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@192.0.2.5>\r\n\r\n"
        )
        .into_bytes()
    }

    /// Users whose AOR shard 1 of 2 owns.
    fn owned_by_1() -> Vec<String> {
        (0..100)
            .map(|i| format!("u{i}"))
            .filter(|u| owner_of(format!("sip:{u}@example.com").as_bytes(), 2) == 1)
            .collect()
    }

    fn shared(listen_of: Vec<usize>, capacity: usize) -> Shared {
        let mut proxy = ProxyConfig::at("192.0.2.1:5060".parse().unwrap());
        proxy.domains = vec![b"example.com"[..].into()];
        Shared::with_inbox_capacity(proxy, RegistrarConfig::default(), listen_of, capacity).unwrap()
    }

    fn status(data: &[u8]) -> u16 {
        Message::parse(data).unwrap().status().unwrap()
    }

    /// Shard `i` of 2, its registrations in memory.
    fn shard<'a>(i: usize, shared: &'a Shared, counters: &'a ShardCounters) -> Shard<'a> {
        Shard::new(
            i,
            shared,
            counters,
            LocationShard::new(i, 2, 0, &shared.registrar, None),
        )
    }

    #[test]
    fn a_full_owner_inbox_answers_503_and_the_owner_answers_what_it_took() {
        let shared = shared(vec![0, 0], 1);
        let (c0, c1) = (ShardCounters::default(), ShardCounters::default());
        let (mut s0, mut s1) = (shard(0, &shared, &c0), shard(1, &shared, &c1));
        let users = owned_by_1();
        let src: SocketAddr = "192.0.2.5:5060".parse().unwrap();
        let mut out0 = Sent::default();
        s0.handle(&register(&users[0]), src, &mut out0);
        assert!(out0.0.is_empty(), "handed to the owner, not answered here");
        s0.handle(&register(&users[1]), src, &mut out0);
        let (busy, to) = &out0.0[0];
        assert_eq!(status(busy), 503);
        assert_eq!(*to, src);
        let m = Message::parse(busy).unwrap();
        assert_eq!(
            m.header(crate::sip::HeaderName::RetryAfter),
            Some(&b"1"[..])
        );
        assert_eq!(c0.handed_off.load(Ordering::Relaxed), 1);
        assert_eq!(c0.registers_refused.load(Ordering::Relaxed), 1);

        let mut out1 = Sent::default();
        s1.drain_inbox(&mut out1);
        assert_eq!(status(&out1.0[0].0), 200);
        assert_eq!(c1.registered.load(Ordering::Relaxed), 1);
        // The owner's change reached shard 0's replica through its inbox.
        s0.drain_inbox(&mut out0);
        let aor = format!("sip:{}@example.com", users[0]);
        assert!(s0.location.replica.lookup(aor.as_bytes()).is_some());
    }

    #[test]
    fn an_answer_for_another_listen_address_goes_back_to_the_arrival_shard() {
        let shared = shared(vec![0, 1], 16);
        let (c0, c1) = (ShardCounters::default(), ShardCounters::default());
        let (mut s0, mut s1) = (shard(0, &shared, &c0), shard(1, &shared, &c1));
        let user = &owned_by_1()[0];
        let src: SocketAddr = "192.0.2.5:5060".parse().unwrap();
        let (mut out0, mut out1) = (Sent::default(), Sent::default());
        s0.handle(&register(user), src, &mut out0);
        s1.drain_inbox(&mut out1);
        assert!(out1.0.is_empty(), "not sent from the owner's address");
        s0.drain_inbox(&mut out0);
        assert_eq!(out0.0.len(), 1);
        assert_eq!(status(&out0.0[0].0), 200);
        assert_eq!(out0.0[0].1, src);
    }

    #[test]
    fn a_log_that_cannot_be_written_turns_registers_away_with_503() {
        let dir = std::env::temp_dir().join(format!("sipshard-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut stores = crate::location::store::adopt(
            &dir,
            crate::location::store::Fsync::Never,
            &[Vec::new()],
        )
        .unwrap();
        if stores[0].write_to_dev_full().is_err() {
            return; // no /dev/full here
        }
        let shared = shared(vec![0], 16);
        let counters = ShardCounters::default();
        let loc = LocationShard::new(0, 1, 0, &shared.registrar, stores.pop());
        let mut shard = Shard::new(0, &shared, &counters, loc);
        let src: SocketAddr = "192.0.2.5:5060".parse().unwrap();
        let mut out = Sent::default();
        shard.handle(&register("a"), src, &mut out);
        shard.after_batch();
        assert_eq!(counters.store_errors.load(Ordering::Relaxed), 1);
        shard.handle(&register("b"), src, &mut out);
        assert_eq!(status(&out.0[1].0), 503, "refused while the log fails");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
