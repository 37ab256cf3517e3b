//! The stateful proxy on a shard (`--mode stateful`, RFC 3261 §16-17):
//! the shard's transaction tables and timer wheel, and the carrying out
//! of what the pure layer (`crate::transaction`) decides: which bytes go
//! again, which are forwarded, which answers we write.
//!
//! A request that arrives over UDP with an RFC 3261 branch and leaves
//! over UDP opens a server transaction (found by §17.2.3) and a client
//! transaction (found by §17.1.3: our branch, which names this shard),
//! joined by a one-branch response context (§16.7). Everything else
//! (an RFC 2543 request, a request from or to a connection, the ACK of a
//! 2xx) takes the stateless path as before. Both transactions live on
//! the shard that received the request and no other touches them
//! (ARCHITECTURE.md, "Ownership"): a response that reaches another shard
//! is mailed to the shard its branch names.
//!
//! What a transaction keeps: the request as received (to write our own
//! answers to it: 100, 408, 500, 487), the request as sent (to send it
//! again, and to build its CANCEL and its ACK), and the last response
//! sent upstream (to send it again). One allocation each; the server
//! table holds at most `--max-transactions`, and a new request beyond it
//! gets 503 with Retry-After.
//!
//! Timers run on the shard's wheel, looked at once per loop. The loop
//! wakes at least every 100 ms, so a timer fires up to about 100 ms late
//! (T1 is 500 ms by default).

use super::answer::{commit_reply, reply_to, write_local_answer, write_plain};
use super::counters::{add, status_class};
use super::mail::Mail;
use super::outcome::Outcome;
use super::Shard;
use crate::io::{SendQueue, MOST_SENDS_PER_MESSAGE};
use crate::proxy::branch::{name_branch, shard_of};
use crate::proxy::{route, Action, DropReason, Lookup, ProxyConfig};
use crate::sip::{write_ack, write_cancel, Edits, Message, Method};
use crate::transaction::{
    Advance, ClientState, ClientTx, Decision, Effects, End, Final, Kind, ResponseContext, Send,
    ServerTx, Table, Timer, TimerId, TransactionConfig, TxId, Wheel,
};
use crate::transport::{Dest, Source, Transport, TransportAddr};

/// The wheel: 4,096 slots of 10 ms (41 s a turn); a later deadline waits
/// in its slot for its turn.
const WHEEL_SLOTS: usize = 4096;
const WHEEL_TICK_MS: u64 = 10;

/// Seconds a request refused at `--max-transactions` is told to wait.
const RETRY_AFTER_S: u32 = 5;

/// What a wheel entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// A timer of a server transaction.
    Server(TxId, Timer),
    /// A timer of a client transaction.
    Client(TxId, Timer),
    /// The proxy's Timer C of an INVITE (§16.6 step 11,
    /// `--fr-inv-timeout`).
    TimerC(TxId),
}

/// The timers a transaction has armed: at most two at a time in §17's
/// states, three for room.
#[derive(Clone, Copy, Debug, Default)]
struct Armed([Option<(Timer, TimerId)>; 3]);

/// A server transaction and what it answers with.
struct ServerEntry {
    tx: ServerTx,
    /// The request as received, to write our own answers to it.
    request: Box<[u8]>,
    src: Source,
    /// Where its answers go (§18.2.2).
    reply_to: Dest,
    /// The last response sent upstream, and where, for retransmissions.
    last: Option<(Box<[u8]>, Dest)>,
    /// The response context of its one branch.
    ctx: ResponseContext,
    /// The first branch's client transaction.
    client: Option<TxId>,
    timers: Armed,
    /// Timer C, for an INVITE.
    timer_c: Option<TimerId>,
    /// The next upstreams to try when one is unavailable; None for a
    /// request with one target (the common case costs nothing more).
    failover: Option<Box<Failover>>,
}

/// What starting another branch of a request needs: the request as first
/// sent (its branch is renamed for each), where each branch goes, and
/// each branch's client transaction once started.
struct Failover {
    template: Box<[u8]>,
    targets: Box<[Dest]>,
    clients: Box<[Option<TxId>]>,
}

impl ServerEntry {
    /// The client transaction of `branch`, once started.
    fn client_of(&self, branch: usize) -> Option<TxId> {
        match (branch, &self.failover) {
            (0, _) => self.client,
            (b, Some(f)) => f.clients.get(b).copied().flatten(),
            (_, None) => None,
        }
    }
}

/// A client transaction: the request as we sent it, and where.
struct ClientEntry {
    tx: ClientTx,
    /// The request as sent (our Via on top).
    request: Box<[u8]>,
    to: Dest,
    /// The server transaction it serves; None for a CANCEL we sent.
    server: Option<TxId>,
    timers: Armed,
    /// A CANCEL is owed once the branch rings (§9.1: not before a
    /// provisional).
    cancel_when_ringing: bool,
    /// Its index in its server transaction's response context.
    branch: usize,
}

/// A shard's transactions and their timers.
pub struct Stateful {
    cfg: TransactionConfig,
    servers: Table<ServerEntry>,
    clients: Table<ClientEntry>,
    wheel: Wheel<Due>,
    /// The timers due in this loop, gathered before they are handled.
    due: Vec<Due>,
}

impl Stateful {
    /// A shard's empty tables, its wheel's clock starting at `now_ms`.
    pub fn new(cfg: TransactionConfig, now_ms: u64) -> Stateful {
        Stateful {
            cfg,
            servers: Table::new(cfg.max_per_shard),
            // A CANCEL we send has a client transaction of its own.
            clients: Table::new(cfg.max_per_shard.saturating_mul(2)),
            wheel: {
                // Two timers a transaction, for both sides, and Timer C.
                let mut w = Wheel::new(WHEEL_TICK_MS, WHEEL_SLOTS, now_ms);
                w.reserve(cfg.max_per_shard.saturating_mul(5));
                w
            },
            due: Vec::new(),
        }
    }

    /// Transactions open (server side).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// True when it holds `--max-transactions`.
    pub fn is_full(&self) -> bool {
        self.servers.len() >= self.cfg.max_per_shard
    }

    /// True when `msg` (not a retransmission: [`Shard::before_route`]
    /// took those) opens a transaction if it leaves over UDP: a request
    /// but an ACK or a CANCEL, from a datagram, with an RFC 3261 branch.
    pub fn opens(&self, msg: &Message<'_>, src: &Source) -> bool {
        msg.is_request()
            && src.conn.is_none()
            && !matches!(msg.method(), Some(Method::Ack | Method::Cancel))
            && self.servers.server_key(msg).is_some()
    }
}

/// Carries out `fx`'s timers for a transaction whose armed timers are
/// `armed`: disarms what it stops (everything when it ended), arms what
/// it starts (Timers B and F for `--fr-timeout` when given).
fn set_timers(
    wheel: &mut Wheel<Due>,
    cfg: &TransactionConfig,
    armed: &mut Armed,
    fx: &Effects,
    now_ms: u64,
    due: impl Fn(Timer) -> Due,
) {
    for slot in &mut armed.0 {
        if let Some((t, id)) = *slot {
            if fx.stop.contains(t) || fx.ended.is_some() {
                wheel.disarm(id);
                *slot = None;
            }
        }
    }
    if fx.ended.is_some() {
        return;
    }
    for (t, wait) in fx.start.into_iter().flatten() {
        let wait = match (t, cfg.fr_timeout_ms) {
            (Timer::B | Timer::F, Some(fr)) => fr,
            _ => wait,
        };
        let id = wheel.arm(now_ms.saturating_add(wait), due(t));
        // A timer armed again (A, E, G) takes its old place.
        let place = armed
            .0
            .iter()
            .position(|s| s.is_some_and(|(old, _)| old == t))
            .or_else(|| armed.0.iter().position(Option::is_none));
        if let Some(p) = place {
            armed.0[p] = Some((t, id));
        }
    }
}

/// Forgets that `t` is armed in `armed` (it fired).
fn fired(armed: &mut Armed, t: Timer) {
    for slot in &mut armed.0 {
        if slot.is_some_and(|(old, _)| old == t) {
            *slot = None;
        }
    }
}

/// Queues `bytes` for `to`; false when there was no room.
fn queue<S: SendQueue>(send: &mut S, bytes: &[u8], to: Dest) -> bool {
    match send.slot().and_then(|s| s.get_mut(..bytes.len())) {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            send.commit(bytes.len(), to);
            true
        }
        None => false,
    }
}

/// The reason phrase of an answer we write for a transaction.
fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Server Internal Error",
    }
}

impl Shard<'_> {
    /// What the transactions make of `msg` before it is routed: a
    /// retransmission absorbed, an ACK of our final absorbed, a CANCEL
    /// answered, a response matched to its client transaction (or mailed
    /// to the shard that holds it). None: route it as the stateless proxy
    /// does (and, for a new request, [`Shard::forward_in_transaction`]).
    pub(super) fn before_route<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Option<Outcome> {
        self.stateful.as_ref()?;
        if !msg.is_request() {
            return self.response_arrived(msg, bytes, src, send);
        }
        if src.conn.is_some() {
            return None;
        }
        match msg.method()? {
            Method::Ack => self.ack_arrived(msg, send),
            Method::Cancel => self.cancel_arrived(msg, src, send),
            _ => self.request_again(msg, send),
        }
    }

    /// Opens the transactions of a request that was just forwarded as
    /// `sent` to `to` (our branch in the shard's scratch): its server
    /// transaction, its branch's client transaction, and for an INVITE
    /// 100 Trying at once (§16.2... §16.6 step 11: and Timer C).
    pub(super) fn forward_in_transaction<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        sent: Box<[u8]>,
        to: Dest,
        send: &mut S,
    ) {
        let now = self.now_ms;
        let invite = msg.method() == Some(Method::Invite);
        let kind = if invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let answers_to = reply_to(msg, src);
        let Some(method) = msg.method() else {
            return;
        };
        let Shard {
            stateful,
            scratch,
            counters,
            shared,
            ..
        } = self;
        let Some(st) = stateful.as_deref_mut() else {
            return;
        };
        let Some(key) = st.servers.server_key(msg) else {
            return;
        };
        let durations = st.cfg.durations;
        // §16.7 with one group per upstream: the next is tried only when
        // this one is unavailable (408, 500, 503, a timeout).
        let targets = failover_targets(&shared.proxy, to, st.cfg.max_failover);
        let groups: Vec<u16> = (0..targets.len().max(1) as u16).collect();
        let (ctx, _) = ResponseContext::new(invite, Advance::OnUnavailable, &groups);
        let failover = (targets.len() > 1).then(|| {
            Box::new(Failover {
                template: sent.clone(),
                clients: vec![None; targets.len()].into(),
                targets: targets.into(),
            })
        });
        let mut server = ServerEntry {
            tx: ServerTx::new(kind, false, durations),
            request: bytes.into(),
            src: *src,
            reply_to: answers_to,
            last: None,
            ctx,
            client: None,
            timers: Armed::default(),
            timer_c: None,
            failover,
        };
        if invite {
            // §16.2: a stateful proxy answers an INVITE with 100 Trying
            // itself, so the caller stops retransmitting it (§17.1.1.2).
            let fx = server.tx.on_respond(100);
            if fx.send.is_some() {
                if let Some(slot) = send.slot() {
                    if let Some(n) = write_local_answer(msg, src, 100, (reason(100), ""), slot) {
                        server.last = slot.get(..n).map(|b| (b.into(), answers_to));
                        send.commit(n, answers_to);
                        add(&counters.replies[status_class(100)], 1);
                    }
                }
            }
        }
        let Ok(sid) = st.servers.insert(key, server) else {
            return;
        };
        add(&counters.tx_created, 1);
        counters.tx_open.store(
            st.servers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let (tx, fx) = ClientTx::start(kind, false, durations);
        let client = ClientEntry {
            tx,
            request: sent,
            to,
            server: Some(sid),
            timers: Armed::default(),
            cancel_when_ringing: false,
            branch: 0,
        };
        let ckey = st.clients.sent_key(scratch.branch(), method);
        let Ok(cid) = st.clients.insert(ckey, client) else {
            return;
        };
        let Stateful {
            servers,
            clients,
            wheel,
            cfg,
            ..
        } = st;
        if let Some(c) = clients.get_mut(cid) {
            set_timers(wheel, cfg, &mut c.timers, &fx, now, |t| Due::Client(cid, t));
        }
        if let Some(s) = servers.get_mut(sid) {
            s.client = Some(cid);
            if invite {
                s.timer_c = Some(wheel.arm(now + cfg.fr_inv_timeout_ms, Due::TimerC(sid)));
            }
        }
    }

    /// A new request when the shard holds `--max-transactions`: 503 with
    /// Retry-After, counted.
    pub(super) fn refuse_transaction<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        add(&self.counters.tx_refused, 1);
        self.unavailable(msg, src, RETRY_AFTER_S, DropReason::WriteFailed, send)
    }

    /// Writes our answer `code` to `msg` and queues it.
    fn answer<S: SendQueue>(
        &self,
        msg: &Message<'_>,
        src: &Source,
        code: u16,
        send: &mut S,
    ) -> Outcome {
        let to = reply_to(msg, src);
        let written = send
            .slot()
            .and_then(|slot| write_plain(msg, src, code, reason(code), slot));
        commit_reply(send, written, code, to, self.counters)
    }

    /// §17.2.3: a request that matches a server transaction is a
    /// retransmission: the last response goes again where there is one.
    fn request_again<S: SendQueue>(&mut self, msg: &Message<'_>, send: &mut S) -> Option<Outcome> {
        let st = self.stateful.as_deref_mut()?;
        let sid = st
            .servers
            .server_key(msg)
            .and_then(|k| st.servers.find(k))?;
        let fx = st.servers.get_mut(sid)?.tx.on_request();
        self.server_effects(sid, fx, send);
        add(&self.counters.tx_absorbed, 1);
        Some(Outcome::Absorbed)
    }

    /// An ACK that matches an INVITE server transaction acknowledges our
    /// non-2xx final (§17.2.1) and ends here; one for a 2xx (RFC 6026
    /// §8.7, Accepted) goes on statelessly, as any other ACK.
    fn ack_arrived<S: SendQueue>(&mut self, msg: &Message<'_>, send: &mut S) -> Option<Outcome> {
        let st = self.stateful.as_deref_mut()?;
        let sid = st
            .servers
            .server_key(msg)
            .and_then(|k| st.servers.find(k))?;
        let fx = st.servers.get_mut(sid)?.tx.on_ack();
        if fx.pass_up {
            return None;
        }
        self.server_effects(sid, fx, send);
        add(&self.counters.tx_absorbed, 1);
        Some(Outcome::Absorbed)
    }

    /// §16.10: a CANCEL that matches an INVITE server transaction is
    /// answered 200 at once and cancels the pending branch (whose 487
    /// then comes back up); one that matches nothing gets 481. A CANCEL
    /// without an RFC 3261 branch goes on statelessly.
    fn cancel_arrived<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> Option<Outcome> {
        let st = self.stateful.as_deref_mut()?;
        let key = st.servers.cancelled_key(msg)?;
        let Some(sid) = st.servers.find(key) else {
            return Some(self.answer(msg, src, 481, send));
        };
        let d = st.servers.get_mut(sid)?.ctx.on_cancel();
        let outcome = self.answer(msg, src, 200, send);
        self.carry_out(sid, d, None, send);
        Some(outcome)
    }

    /// §17.1.3: a response that matches a client transaction: its ACK
    /// when it is a non-2xx final to an INVITE, then, when the
    /// transaction passes it up, the response context's decision. One
    /// that matches none here but whose branch names another shard is
    /// mailed there; the rest go on statelessly.
    fn response_arrived<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Option<Outcome> {
        let code = msg.status()?;
        let now = self.now_ms;
        let st = self.stateful.as_deref_mut()?;
        let key = st.clients.client_key(msg)?;
        let Some(cid) = st.clients.find(key) else {
            return self.mail_response(msg, bytes, src);
        };
        let c = st.clients.get_mut(cid)?;
        let fx = c.tx.on_response(code);
        let (server, branch) = (c.server, c.branch);
        let owed = c.cancel_when_ringing && (101..200).contains(&code);
        if fx.send == Some(Send::Ack) {
            // §17.1.1.3: the ACK of a non-2xx final, hop by hop.
            let to = c.to;
            let written = Message::parse(&c.request).ok().and_then(|req| {
                let slot = send.slot()?;
                write_ack(&req, msg, slot).ok()
            });
            if let Some(n) = written {
                send.commit(n, to);
            }
        }
        self.client_effects(cid, fx, send);
        if owed {
            self.send_cancel(cid, send);
        }
        let Some(sid) = server.filter(|_| fx.pass_up) else {
            add(&self.counters.tx_absorbed, 1);
            return Some(Outcome::Absorbed);
        };
        let st = self.stateful.as_deref_mut()?;
        let Some(s) = st.servers.get_mut(sid) else {
            // Its server transaction has ended (a 2xx retransmitted
            // after Timer L): on statelessly.
            return None;
        };
        let d = s.ctx.on_response(branch, code);
        if (101..200).contains(&code) {
            // §16.7 step 2: a provisional restarts Timer C.
            if let Some(id) = s.timer_c.take() {
                st.wheel.disarm(id);
                let at = now + st.cfg.fr_inv_timeout_ms;
                if let Some(s) = st.servers.get_mut(sid) {
                    s.timer_c = Some(st.wheel.arm(at, Due::TimerC(sid)));
                }
            }
        }
        Some(if self.carry_out(sid, d, Some((branch, msg, src)), send) {
            Outcome::Forwarded
        } else {
            Outcome::Absorbed
        })
    }

    /// A response for a client transaction this shard does not hold,
    /// mailed to the shard its branch names, when that is another.
    fn mail_response(&self, msg: &Message<'_>, bytes: &[u8], src: &Source) -> Option<Outcome> {
        let owner = msg.via().ok()?.branch.and_then(shard_of)?;
        if owner == self.index {
            return None;
        }
        let inbox = self.shared.inboxes.get(owner)?;
        let mail = Mail::Response {
            data: bytes.into(),
            src: *src,
        };
        Some(match inbox.push(mail) {
            Ok(()) => {
                add(&self.counters.tx_responses_mailed, 1);
                Outcome::HandedOff
            }
            Err(_) => self.drop(DropReason::InboxFull),
        })
    }

    /// A response another shard mailed here (its branch names this one).
    pub(super) fn mailed_response<S: SendQueue>(
        &mut self,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) {
        match Message::parse(bytes) {
            Ok(msg) => {
                let handled = self.response_arrived(&msg, bytes, src, send);
                if handled.is_none() {
                    // Not (or no longer) a transaction's: on statelessly.
                    let _ = self.route_own_response(bytes, src, send);
                }
            }
            Err(_) => self.counters.dropped(DropReason::Malformed),
        }
    }

    /// Does what a response context decided for server transaction `sid`:
    /// forwards `response` (the one just received, with its branch) or
    /// writes our own final, cancels branches and starts the next ones.
    /// True when something went upstream.
    fn carry_out<S: SendQueue>(
        &mut self,
        sid: TxId,
        d: Decision,
        response: Option<(usize, &Message<'_>, &Source)>,
        send: &mut S,
    ) -> bool {
        let mut went = false;
        let this = response.map(|(b, _, _)| b);
        if d.forward {
            if let Some((_, msg, src)) = response {
                went |= self.respond_with(sid, msg, src, send);
            }
        }
        match d.send_final {
            Some(Final::Branch(b)) if Some(b) == this => {
                if let Some((_, msg, src)) = response {
                    went |= self.respond_with(sid, msg, src, send);
                }
            }
            // An earlier branch's answer, chosen now that the others have
            // ended: written again from its status (the message is gone).
            Some(Final::Branch(b)) => {
                let code = self
                    .stateful
                    .as_deref()
                    .and_then(|st| st.servers.get(sid))
                    .and_then(|s| s.ctx.final_of(b));
                went |= self.respond_ourselves(sid, code.unwrap_or(500), send);
            }
            Some(Final::Rewritten(_, code) | Final::Generated(code)) => {
                went |= self.respond_ourselves(sid, code, send);
            }
            None => {}
        }
        for b in d.cancel.iter() {
            let client = self
                .stateful
                .as_deref()
                .and_then(|st| st.servers.get(sid))
                .and_then(|s| s.client_of(b));
            if let Some(cid) = client {
                self.send_cancel(cid, send);
            }
        }
        for b in d.start.iter() {
            self.start_branch(sid, b, send);
        }
        went
    }

    /// Sends branch `b` of server transaction `sid` (failover to the next
    /// upstream): the request as first sent, its branch renamed, in a
    /// client transaction of its own.
    fn start_branch<S: SendQueue>(&mut self, sid: TxId, b: usize, send: &mut S) {
        let now = self.now_ms;
        let counters = self.counters;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Stateful {
            servers,
            clients,
            wheel,
            cfg,
            ..
        } = st;
        let Some(s) = servers.get_mut(sid) else {
            return;
        };
        let kind = if s.ctx.is_invite() {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let Some(f) = s.failover.as_mut() else {
            return;
        };
        let (Some(&to), Ok(index)) = (f.targets.get(b), u8::try_from(b)) else {
            return;
        };
        let mut request = f.template.clone();
        let Some((at, len)) = our_branch(&request) else {
            return;
        };
        let Some(branch) = request.get_mut(at..at + len) else {
            return;
        };
        name_branch(branch, index);
        let Some(key) = Message::parse(&request)
            .ok()
            .and_then(|m| Some(clients.sent_key(request.get(at..at + len)?, m.method()?)))
        else {
            return;
        };
        if !queue(send, &request, to) {
            return;
        }
        add(&counters.forwarded_requests, 1);
        let (tx, fx) = ClientTx::start(kind, false, cfg.durations);
        let client = ClientEntry {
            tx,
            request,
            to,
            server: Some(sid),
            timers: Armed::default(),
            cancel_when_ringing: false,
            branch: b,
        };
        let Ok(cid) = clients.insert(key, client) else {
            return;
        };
        if let Some(slot) = f.clients.get_mut(b) {
            *slot = Some(cid);
        }
        if let Some(c) = clients.get_mut(cid) {
            set_timers(wheel, cfg, &mut c.timers, &fx, now, |t| Due::Client(cid, t));
        }
    }

    /// Forwards `msg`, a branch's response, upstream in server
    /// transaction `sid` (§16.7 step 9: our Via removed), keeping a copy
    /// for its retransmissions.
    fn respond_with<S: SendQueue>(
        &mut self,
        sid: TxId,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> bool {
        let Some(code) = msg.status() else {
            return false;
        };
        let Shard {
            stateful,
            scratch,
            location,
            shared,
            counters,
            now,
            ..
        } = self;
        let Some(s) = stateful
            .as_deref_mut()
            .and_then(|st| st.servers.get_mut(sid))
        else {
            return false;
        };
        let fx = s.tx.on_respond(code);
        let mut went = false;
        if fx.send.is_some() {
            let mut edits = Edits::new();
            let loc = Lookup {
                replica: &location.replica,
                now: *now,
            };
            match route(msg, src, &shared.proxy, loc, scratch, &mut edits) {
                Action::Forward(to) => {
                    let written = send.slot().and_then(|slot| {
                        let n = edits.write(msg, slot).ok()?;
                        Some((slot.get(..n)?.into(), n))
                    });
                    match written {
                        Some((copy, n)) => {
                            send.commit(n, to);
                            add(&counters.forwarded_responses, 1);
                            s.last = Some((copy, to));
                            went = true;
                        }
                        None => counters.dropped(DropReason::WriteFailed),
                    }
                }
                Action::Drop(r) => counters.dropped(r),
                _ => {}
            }
        }
        self.server_timers(sid, fx);
        went
    }

    /// Writes our own final `code` (408 when the branch never answered,
    /// 500 for its 503, §16.7 step 6) to the request of server
    /// transaction `sid`, and sends it.
    fn respond_ourselves<S: SendQueue>(&mut self, sid: TxId, code: u16, send: &mut S) -> bool {
        let counters = self.counters;
        let Some(s) = self
            .stateful
            .as_deref_mut()
            .and_then(|st| st.servers.get_mut(sid))
        else {
            return false;
        };
        let fx = s.tx.on_respond(code);
        let mut went = false;
        if fx.send.is_some() {
            let to = s.reply_to;
            let written = Message::parse(&s.request).ok().and_then(|req| {
                let slot = send.slot()?;
                let n = write_local_answer(&req, &s.src, code, (reason(code), ""), slot)?;
                Some((slot.get(..n)?.into(), n))
            });
            if let Some((copy, n)) = written {
                send.commit(n, to);
                add(&counters.replies[status_class(code)], 1);
                s.last = Some((copy, to));
                went = true;
            }
        }
        self.server_timers(sid, fx);
        went
    }

    /// Sends the CANCEL of client transaction `cid`'s INVITE (§9.1),
    /// in a client transaction of its own; owed until the branch rings
    /// when it has not yet.
    fn send_cancel<S: SendQueue>(&mut self, cid: TxId, send: &mut S) {
        let now = self.now_ms;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Some(c) = st.clients.get_mut(cid) else {
            return;
        };
        match c.tx.state() {
            ClientState::Calling => {
                c.cancel_when_ringing = true;
                return;
            }
            ClientState::Proceeding => c.cancel_when_ringing = false,
            // Answered already: nothing to cancel.
            _ => return,
        }
        let to = c.to;
        let Ok(req) = Message::parse(&c.request) else {
            return;
        };
        // Our branch, copied out of the request the table holds.
        let mut branch = [0u8; 64];
        let Some(ours) = req.via().ok().and_then(|v| v.branch) else {
            return;
        };
        let len = ours.len().min(branch.len());
        branch[..len].copy_from_slice(&ours[..len]);
        let Some(slot) = send.slot() else {
            return;
        };
        let Ok(n) = write_cancel(&req, slot) else {
            return;
        };
        let Some(copy) = slot.get(..n).map(Box::<[u8]>::from) else {
            return;
        };
        send.commit(n, to);
        let key = st.clients.sent_key(&branch[..len], Method::Cancel);
        let (tx, fx) = ClientTx::start(Kind::NonInvite, false, st.cfg.durations);
        let cancel = ClientEntry {
            tx,
            request: copy,
            to,
            server: None,
            timers: Armed::default(),
            cancel_when_ringing: false,
            branch: 0,
        };
        if let Ok(id) = st.clients.insert(key, cancel) {
            let Stateful {
                clients,
                wheel,
                cfg,
                ..
            } = st;
            if let Some(c) = clients.get_mut(id) {
                set_timers(wheel, cfg, &mut c.timers, &fx, now, |t| Due::Client(id, t));
            }
        }
    }

    /// A server transaction's effects: its last response again when
    /// asked, then its timers.
    fn server_effects<S: SendQueue>(&mut self, sid: TxId, fx: Effects, send: &mut S) {
        if fx.send == Some(Send::Response) {
            let last = self
                .stateful
                .as_deref()
                .and_then(|st| st.servers.get(sid))
                .and_then(|s| s.last.as_ref());
            if let Some((bytes, to)) = last {
                if queue(send, bytes, *to) {
                    add(&self.counters.tx_resent, 1);
                }
            }
        }
        self.server_timers(sid, fx);
    }

    /// A server transaction's timers; at its end, it is dropped with
    /// them (and with Timer C).
    fn server_timers(&mut self, sid: TxId, fx: Effects) {
        let now = self.now_ms;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Stateful {
            servers,
            wheel,
            cfg,
            ..
        } = st;
        let Some(s) = servers.get_mut(sid) else {
            return;
        };
        set_timers(wheel, cfg, &mut s.timers, &fx, now, |t| Due::Server(sid, t));
        if fx.ended.is_some() {
            if let Some(id) = s.timer_c.take() {
                wheel.disarm(id);
            }
            servers.remove(sid);
        }
        self.counters
            .tx_open
            .store(servers.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// A client transaction's effects: its request again when asked, its
    /// timers; at its end, it is dropped, and a timeout is told to its
    /// response context (a 408 from the branch, §16.7 step 2).
    fn client_effects<S: SendQueue>(&mut self, cid: TxId, fx: Effects, send: &mut S) {
        let now = self.now_ms;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Stateful {
            clients,
            wheel,
            cfg,
            ..
        } = st;
        let Some(c) = clients.get_mut(cid) else {
            return;
        };
        if fx.send == Some(Send::Request) && queue(send, &c.request, c.to) {
            add(&self.counters.tx_resent, 1);
        }
        set_timers(wheel, cfg, &mut c.timers, &fx, now, |t| Due::Client(cid, t));
        let (server, branch) = (c.server, c.branch);
        if fx.ended.is_none() {
            return;
        }
        clients.remove(cid);
        if fx.ended != Some(End::Timeout) {
            return;
        }
        let Some(sid) = server else {
            return;
        };
        add(&self.counters.tx_timeouts, 1);
        let d = st.servers.get_mut(sid).map(|s| s.ctx.on_timeout(branch));
        if let Some(d) = d {
            self.carry_out(sid, d, None, send);
        }
    }

    /// Runs the transaction timers due by now, while the send queue has
    /// room for what one may send; the rest stay due for the next loop
    /// ([`Shard::timers_waiting`]).
    pub(super) fn run_timers<S: SendQueue>(&mut self, send: &mut S) {
        let now = self.now_ms;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let mut due = std::mem::take(&mut st.due);
        st.wheel.expire(now, |d| due.push(d));
        let mut done = 0;
        while done < due.len() && send.free() >= MOST_SENDS_PER_MESSAGE {
            self.timer_fired(due[done], send);
            done += 1;
        }
        due.drain(..done);
        if let Some(st) = self.stateful.as_deref_mut() {
            st.due = due;
        }
    }

    /// True when timers that came due wait for room to send.
    pub(super) fn timers_waiting(&self) -> bool {
        self.stateful
            .as_deref()
            .is_some_and(|st| !st.due.is_empty())
    }

    fn timer_fired<S: SendQueue>(&mut self, due: Due, send: &mut S) {
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        match due {
            Due::Client(cid, t) => {
                let Some(c) = st.clients.get_mut(cid) else {
                    return;
                };
                fired(&mut c.timers, t);
                let fx = c.tx.on_timer(t);
                self.client_effects(cid, fx, send);
            }
            Due::Server(sid, t) => {
                let Some(s) = st.servers.get_mut(sid) else {
                    return;
                };
                fired(&mut s.timers, t);
                let fx = s.tx.on_timer(t);
                self.server_effects(sid, fx, send);
            }
            Due::TimerC(sid) => {
                // §16.8: Timer C fired. Each branch still out counts as
                // a 408 from it, and one that has rung is cancelled.
                let Some(s) = st.servers.get_mut(sid) else {
                    return;
                };
                s.timer_c = None;
                let out: Vec<(usize, TxId)> = (0..s.ctx.len())
                    .filter_map(|b| Some((b, s.client_of(b)?)))
                    .filter(|&(_, cid)| {
                        st.clients.get(cid).is_some_and(|c| {
                            matches!(c.tx.state(), ClientState::Calling | ClientState::Proceeding)
                        })
                    })
                    .collect();
                add(&self.counters.tx_timeouts, 1);
                for (b, cid) in out {
                    self.send_cancel(cid, send);
                    let d = self
                        .stateful
                        .as_deref_mut()
                        .and_then(|st| st.servers.get_mut(sid))
                        .map(|s| s.ctx.on_timeout(b));
                    if let Some(d) = d {
                        self.carry_out(sid, d, None, send);
                    }
                }
            }
        }
    }
}

/// Where a request forwarded to `to` may go when that is unavailable:
/// `to` first, then, when `to` is one of the `--upstream`s over UDP, the
/// next ones in their order (wrapping) that are over UDP and in the
/// rotation, at most `max` of them.
fn failover_targets(cfg: &ProxyConfig, to: Dest, max: usize) -> Vec<Dest> {
    let mut targets = vec![to];
    let Dest::Udp { peer, from } = to else {
        return targets;
    };
    let udp = |u: &TransportAddr| u.transport == Transport::Udp;
    let Some(first) = cfg.upstreams.iter().position(|u| udp(u) && u.addr == peer) else {
        return targets;
    };
    let n = cfg.upstreams.len();
    for i in (1..n).map(|k| (first + k) % n) {
        if targets.len() > max {
            break;
        }
        let Some(u) = cfg.upstreams.get(i) else {
            continue;
        };
        if udp(u) && cfg.health.is_up(i) && u.addr != peer {
            let from = from.filter(|ip| ip.is_ipv4() == u.addr.is_ipv4());
            targets.push(Dest::Udp { peer: u.addr, from });
        }
    }
    targets
}

/// Where our branch is in `request` (a request as we sent it): its
/// offset and length.
fn our_branch(request: &[u8]) -> Option<(usize, usize)> {
    let m = Message::parse(request).ok()?;
    let branch = m.via().ok()?.branch?;
    let at = (branch.as_ptr() as usize).checked_sub(request.as_ptr() as usize)?;
    Some((at, branch.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SEND_SLOT;
    use crate::proxy::ProxyConfig;
    use crate::registrar::RegistrarConfig;
    use crate::shard::counters::ShardCounters;
    use crate::shard::Shared;
    use crate::transaction::Durations;
    use std::net::SocketAddr;

    /// What the shard sends, with where to.
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

    impl Sent {
        /// The status or method of each message sent, in order, cleared.
        fn take(&mut self) -> Vec<String> {
            self.0
                .drain(..)
                .map(|(m, _)| {
                    let m = Message::parse(&m).unwrap();
                    match (m.status(), m.method()) {
                        (Some(code), _) => code.to_string(),
                        (None, Some(method)) => format!("{method:?}"),
                        _ => "?".into(),
                    }
                })
                .collect()
        }
    }

    const PROXY: &str = "192.0.2.1:5060";
    const UAC: &str = "192.0.2.10:5060";
    const UAS: &str = "192.0.2.20:5060";

    fn shared(max: usize) -> Shared {
        let mut s = Shared::new(
            ProxyConfig::at(PROXY.parse().unwrap()),
            RegistrarConfig::default(),
            vec![0],
        )
        .unwrap();
        s.transactions = Some(TransactionConfig {
            durations: Durations::default(),
            max_per_shard: max,
            fr_timeout_ms: None,
            fr_inv_timeout_ms: 181_000,
            max_failover: 2,
        });
        s
    }

    fn request(method: &str, call: &str) -> Vec<u8> {
        format!(
            "{method} sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK{call}\r\n\
To: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// The response of the UAS to `fwd` (a request as we forwarded it).
    fn answer(fwd: &[u8], code: u16) -> Vec<u8> {
        let m = Message::parse(fwd).unwrap();
        let mut out = format!("SIP/2.0 {code} X\r\n");
        for v in m.values(crate::sip::HeaderName::Via) {
            out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
        }
        out.push_str(&format!(
            "To: <sip:bob@b>;tag=u\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(m.header(crate::sip::HeaderName::CallId).unwrap()),
            String::from_utf8_lossy(m.header(crate::sip::HeaderName::CSeq).unwrap()),
        ));
        out.into_bytes()
    }

    fn from_uac() -> Source {
        Source::udp(UAC.parse().unwrap(), PROXY.parse().unwrap())
    }

    fn from_uas() -> Source {
        Source::udp(UAS.parse().unwrap(), PROXY.parse().unwrap())
    }

    /// §17.1.1.2: Timer A doubles from T1 until a provisional; Timer B
    /// (64*T1) then ends the branch and the caller gets 408, which it
    /// gets again (Timer G) until it ACKs.
    #[test]
    fn timer_a_doubles_and_timer_b_gives_408() {
        let shared = shared(10);
        let counters = ShardCounters::default();
        let mut shard = Shard::alone(&shared, &counters);
        let mut sent = Sent::default();
        shard.now_ms = 0;
        let invite = request("INVITE", "ta");
        shard.handle(&invite, &from_uac(), &mut sent);
        assert_eq!(sent.take(), ["Invite", "100"]);
        let mut at = Vec::new();
        for ms in (0..32_000).step_by(10) {
            shard.now_ms = ms;
            shard.run_timers(&mut sent);
            for m in sent.take() {
                at.push((ms, m));
            }
        }
        let invites: Vec<u64> = at
            .iter()
            .filter(|(_, m)| m == "Invite")
            .map(|&(t, _)| t)
            .collect();
        assert_eq!(invites, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        assert!(at.iter().all(|(_, m)| m == "Invite"), "{at:?}");
        shard.now_ms = 32_000;
        shard.run_timers(&mut sent);
        assert_eq!(sent.take(), ["408"]);
        shard.now_ms = 32_500;
        shard.run_timers(&mut sent);
        assert_eq!(sent.take(), ["408"], "Timer G");
        let ack = request("ACK", "ta");
        assert_eq!(
            shard.handle(&ack, &from_uac(), &mut sent),
            Outcome::Absorbed
        );
        shard.now_ms = 40_000;
        shard.run_timers(&mut sent);
        assert!(sent.take().is_empty(), "no 408 after the ACK");
        assert_eq!(
            counters
                .tx_timeouts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    /// Every transaction ends: after a 2xx, Timers L and M (64*T1) drop
    /// both sides; after a non-INVITE's final, Timers J and K.
    #[test]
    fn finished_transactions_are_dropped_by_their_timers() {
        let shared = shared(10);
        let counters = ShardCounters::default();
        let mut shard = Shard::alone(&shared, &counters);
        let mut sent = Sent::default();
        shard.now_ms = 0;
        shard.handle(&request("INVITE", "end1"), &from_uac(), &mut sent);
        shard.handle(&request("MESSAGE", "end2"), &from_uac(), &mut sent);
        let fwd: Vec<Vec<u8>> = sent
            .0
            .drain(..)
            .map(|(m, _)| m)
            .filter(|m| m.starts_with(b"INVITE") || m.starts_with(b"MESSAGE"))
            .collect();
        assert_eq!(fwd.len(), 2);
        for f in &fwd {
            shard.handle(&answer(f, 200), &from_uas(), &mut sent);
        }
        assert_eq!(sent.take(), ["200", "200"]);
        let st = shard.stateful.as_deref().unwrap();
        assert_eq!((st.servers.len(), st.clients.len()), (2, 2));
        shard.now_ms = 33_000;
        shard.run_timers(&mut sent);
        let st = shard.stateful.as_deref().unwrap();
        assert_eq!((st.servers.len(), st.clients.len()), (0, 0));
        assert!(st.wheel.is_empty(), "and no timer is left");
    }

    /// Failover goes through the `--upstream`s after the chosen one, in
    /// order and wrapping, over UDP and in the rotation only, at most
    /// `--max-failover` of them; a next hop that is not an upstream has
    /// none.
    #[test]
    fn failover_targets_follow_the_upstreams_in_order() {
        let mut cfg = ProxyConfig::at(PROXY.parse().unwrap());
        cfg.upstreams = [
            "192.0.2.1:5060",
            "tcp:192.0.2.2:5060",
            "192.0.2.3:5060",
            "192.0.2.4:5060",
        ]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
        cfg.health = std::sync::Arc::new(crate::proxy::Health::new(4));
        let udp = |a: &str| Dest::udp(a.parse().unwrap());
        let peers = |t: Vec<Dest>| {
            t.iter()
                .map(|d| d.peer().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let to = udp("192.0.2.3:5060");
        assert_eq!(
            peers(failover_targets(&cfg, to, 5)),
            ["192.0.2.3:5060", "192.0.2.4:5060", "192.0.2.1:5060"],
            "the TCP one skipped"
        );
        assert_eq!(
            peers(failover_targets(&cfg, to, 1)),
            ["192.0.2.3:5060", "192.0.2.4:5060"]
        );
        assert_eq!(peers(failover_targets(&cfg, to, 0)), ["192.0.2.3:5060"]);
        for _ in 0..3 {
            cfg.health.missed(3, 3);
        }
        assert_eq!(
            peers(failover_targets(&cfg, to, 5)),
            ["192.0.2.3:5060", "192.0.2.1:5060"],
            "one out of the rotation skipped"
        );
        assert_eq!(
            peers(failover_targets(&cfg, udp("198.51.100.1:5060"), 5)),
            ["198.51.100.1:5060"]
        );
    }

    /// Run as the loop runs it (every 10 ms), a non-INVITE's transactions
    /// end by Timers J and K, and the table empties.
    #[test]
    fn a_loop_clock_ends_every_transaction() {
        let shared = shared(100);
        let counters = ShardCounters::default();
        let mut shard = Shard::alone(&shared, &counters);
        let mut sent = Sent::default();
        for k in 0..20u64 {
            shard.now_ms = k * 100;
            shard.run_timers(&mut sent);
            shard.handle(
                &request("MESSAGE", &format!("loop{k}")),
                &from_uac(),
                &mut sent,
            );
            let fwd = sent
                .0
                .drain(..)
                .map(|(m, _)| m)
                .find(|m| m.starts_with(b"MESSAGE"))
                .unwrap();
            shard.handle(&answer(&fwd, 200), &from_uas(), &mut sent);
            sent.0.clear();
        }
        let st = shard.stateful.as_deref().unwrap();
        assert_eq!(st.servers.len(), 20);
        for ms in (2_000..40_000).step_by(7) {
            shard.now_ms = ms;
            shard.run_timers(&mut sent);
        }
        let st = shard.stateful.as_deref().unwrap();
        assert_eq!((st.servers.len(), st.clients.len()), (0, 0), "all ended");
    }

    /// A response for a transaction another shard holds goes to that
    /// shard's inbox, named by our branch.
    #[test]
    fn a_response_for_another_shards_branch_is_mailed_there() {
        let mut shared = shared(10);
        shared = Shared {
            inboxes: (0..2)
                .map(|_| crate::shard::mail::Inbox::new(8).unwrap())
                .collect(),
            listen_of: vec![0, 0].into(),
            ..shared
        };
        let counters = ShardCounters::default();
        let location = shared.registrar.owner(1, 2, 0, None);
        let mut one = Shard::new(1, &shared, &counters, location);
        let mut sent = Sent::default();
        one.handle(&request("MESSAGE", "m1"), &from_uac(), &mut sent);
        let fwd = sent.0.drain(..).map(|(m, _)| m).next().unwrap();
        let mut zero = Shard::alone(&shared, &counters);
        let got = zero.handle(&answer(&fwd, 200), &from_uas(), &mut sent);
        assert_eq!(got, Outcome::HandedOff);
        assert!(sent.0.is_empty());
        match shared.inboxes[1].pop() {
            Some(Mail::Response { data, .. }) => {
                one.mailed_response(&data, &from_uas(), &mut sent);
                assert_eq!(sent.take(), ["200"]);
            }
            other => panic!("shard 1 got {other:?}"),
        }
    }
}
