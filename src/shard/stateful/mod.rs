//! The stateful proxy on a shard (`--mode stateful`, RFC 3261 §16-17):
//! the shard's transaction tables and timer wheel, and the carrying out
//! of what the pure layer (`crate::transaction`) decides: which bytes go
//! again, which are forwarded, which answers we write.
//!
//! A request with an RFC 3261 branch that is forwarded opens a server
//! transaction (found by §17.2.3) and a client transaction per branch
//! (found by §17.1.3: our branch, which names this shard), joined by a
//! response context (§16.7): one branch, or its forks, or its failover.
//! Over a connection the transport retransmits, so the transaction on
//! that side does not (its `reliable` flag). An RFC 2543 request and the
//! ACK of a 2xx take the stateless path as before. Both transactions live on
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
//! This file takes the messages and carries out the transactions'
//! effects; `respond` what a response context decided and our CANCELs,
//! `branches` the forks and the failover, `timers` the wheel's side,
//! `room` what a finished transaction keeps and eviction.
//!
//! Timers run on the shard's wheel, looked at once per loop. The loop
//! wakes at least every 100 ms, so a timer fires up to about 100 ms late
//! (T1 is 500 ms by default).

use std::collections::VecDeque;

use super::answer::{commit_reply, reply_to, write_local_answer, write_plain};
use super::counters::{add, status_class, ShardCounters};
use super::mail::Mail;
use super::outcome::Outcome;
use super::Shard;
use crate::io::{SendQueue, MOST_SENDS_PER_MESSAGE};
use crate::proxy::branch::{name_branch, shard_of};
use crate::proxy::{route, Action, DropReason, Lookup, ProxyConfig};
use crate::sip::{write_ack, write_cancel, Edits, Message, Method};
use crate::transaction::{
    Advance, ClientState, ClientTx, Decision, Effects, End, Final, Kind, ResponseContext, Send,
    ServerState, ServerTx, Table, Timer, TimerId, TransactionConfig, TxId, Wheel, MAX_BRANCHES,
};
use crate::transport::{Dest, Source, Transport, TransportAddr};

/// The wheel: 4,096 slots of 10 ms (41 s a turn); a later deadline waits
/// in its slot for its turn.
const WHEEL_SLOTS: usize = 4096;
const WHEEL_TICK_MS: u64 = 10;

/// Seconds a request refused at `--max-transactions` is told to wait.
const RETRY_AFTER_S: u32 = 5;

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
    /// The other forks, or the next upstreams to try when one is
    /// unavailable; None for a request with one target (the common case
    /// costs nothing more).
    branches: Option<Box<Branches>>,
    /// Its final is sent: it lingers, and may be ended early ([`room`]).
    finished: bool,
}

impl ServerEntry {
    /// The client transaction of `branch`, once started.
    fn client_of(&self, branch: usize) -> Option<TxId> {
        match (branch, &self.branches) {
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
    /// A CANCEL is owed once the branch sends a provisional, a 100 too
    /// (§9.1: not before one).
    cancel_when_ringing: bool,
    /// Its CANCEL has been sent (once: a second would take the first's
    /// place in the table while the first's timers still run).
    cancel_sent: bool,
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
    /// Server transactions that have sent their final, oldest first: the
    /// ones to end early when the table is full ([`room`]).
    finished: VecDeque<TxId>,
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
            finished: VecDeque::new(),
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

    /// True when it holds `--max-transactions` ([`Stateful::make_room`]
    /// may end finished ones).
    pub fn is_full(&self) -> bool {
        self.servers.len() >= self.cfg.max_per_shard
    }

    /// True when `msg` (not a retransmission: [`Shard::before_route`]
    /// took those) opens a transaction when it is forwarded: a request
    /// but an ACK or a CANCEL, with an RFC 3261 branch.
    pub fn opens(&self, msg: &Message<'_>) -> bool {
        msg.is_request()
            && !matches!(msg.method(), Some(Method::Ack | Method::Cancel))
            && self.servers.server_key(msg).is_some()
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
        // A branch's answer whose copy was lost: by class.
        300..=399 => "Redirection",
        400..=499 => "Request Failure",
        501..=599 => "Server Failure",
        600..=699 => "Global Failure",
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
        match msg.method()? {
            Method::Ack => self.ack_arrived(msg, send),
            Method::Cancel => self.cancel_arrived(msg, src, send),
            _ => self.request_again(msg, send),
        }
    }

    /// Opens the transactions of a request that was just forwarded as
    /// `sent` to `to`: its server transaction, its first branch's client
    /// transaction, for an INVITE 100 Trying at once (§16.2) and Timer C
    /// (§16.6 step 11); then starts its other forks of the same q.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_in_transaction<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        sent: Box<[u8]>,
        to: Dest,
        forks: Option<Forks>,
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
        // §16.7: the forks by q, or one group per upstream (the next is
        // tried only when this one is unavailable: 408, 500, 503).
        let plan = Plan::new(&shared.proxy, &sent, to, forks, st.cfg.max_failover);
        let (ctx, first) = ResponseContext::new(invite, plan.advance, &plan.groups);
        let mut server = ServerEntry {
            // §17.2: over a connection nothing is retransmitted, and the
            // transaction ends with its final (Timers G, I, J: none).
            tx: ServerTx::new(kind, src.conn.is_some(), durations),
            request: bytes.into(),
            src: *src,
            reply_to: answers_to,
            last: None,
            ctx,
            client: None,
            timers: Armed::default(),
            timer_c: None,
            branches: plan.branches,
            finished: false,
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
        // The client side's key before the server side opens: neither
        // opens without the other.
        let Some(ckey) = our_branch(&sent)
            .and_then(|(at, len)| sent.get(at..at + len))
            .map(|b| st.clients.sent_key(b, method))
        else {
            return;
        };
        let Ok(sid) = st.servers.insert(key, server) else {
            return;
        };
        add(&counters.tx_created, 1);
        counters.tx_open.store(
            st.servers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let Stateful {
            servers,
            clients,
            wheel,
            cfg,
            ..
        } = st;
        let server = Some((sid, 0));
        let Some(cid) = open_client(clients, wheel, cfg, ckey, kind, sent, to, server, now) else {
            // No room for its client side (many forks): the request went
            // on statelessly, and a server side without one would wait
            // for answers it is never told of.
            servers.remove(sid);
            return;
        };
        if let Some(s) = servers.get_mut(sid) {
            s.client = Some(cid);
            if invite {
                s.timer_c = Some(wheel.arm(now + cfg.fr_inv_timeout_ms, Due::TimerC(sid)));
            }
        }
        // The first group's other forks (equal q: in parallel).
        for b in first.start.iter().filter(|&b| b != 0) {
            self.start_branch(sid, b, send);
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
        let invite_2xx = c.tx.kind() == Kind::Invite && (200..300).contains(&code);
        let owed = c.cancel_when_ringing && (100..200).contains(&code);
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
            // Its server transaction has ended (or was ended early): a
            // 2xx to an INVITE goes on statelessly (each makes a dialog,
            // RFC 6026); any other final came after the caller's.
            if invite_2xx {
                return None;
            }
            add(&self.counters.tx_absorbed, 1);
            return Some(Outcome::Absorbed);
        };
        let d = s.ctx.on_response(branch, code);
        // A branch's failure that may be chosen later (§16.7 step 6), once
        // the others have ended: kept as it came.
        if code >= 300 && d.send_final != Some(Final::Branch(branch)) {
            if let Some(slot) = s.branches.as_mut().and_then(|f| f.finals.get_mut(branch)) {
                *slot = Some((bytes.into(), *src));
            }
        }
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
        } else {
            st.server_finished(sid);
        }
        self.counters.tx_open.store(
            st.servers.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
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
        client_finished(c);
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
}

mod branches;
mod respond;
mod room;
mod timers;

pub(super) use branches::Forks;
use branches::{our_branch, Branches, Plan};
use room::client_finished;
use timers::{disarm_all, open_client, set_timers, Armed, Due};

#[cfg(test)]
mod tests;
