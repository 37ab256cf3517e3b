//! The transactions' timers: what a wheel entry names, the timers a
//! transaction has armed, carrying out a step's timers, and running the
//! ones due (once per loop, before the datagrams).

use super::*;

/// What a wheel entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// A timer of a server transaction.
    Server(TxId, Timer),
    /// A timer of a client transaction.
    Client(TxId, Timer),
    /// The proxy's Timer C of an INVITE (§16.6 step 11,
    /// `--fr-inv-timeout`).
    TimerC(TxId),
    /// 64*T1 after the CANCEL of a client INVITE (§9.1).
    CancelDeadline(TxId),
}

/// The timers a transaction has armed: at most two at a time in §17's
/// states, three for room.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Armed([Option<(Timer, TimerId)>; 3]);

/// Carries out `fx`'s timers for a transaction whose armed timers are
/// `armed`: disarms what it stops (everything when it ended), arms what
/// it starts (Timers B and F for `--fr-timeout` when given).
pub(super) fn set_timers(
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

/// Opens a client transaction of `kind` for `request`, just sent to
/// `to` (for `server`'s branch `branch`, or for a CANCEL of ours when
/// `server` is None), under `key`, and arms its first timers; None when
/// the table is full (the request went out without one).
#[allow(clippy::too_many_arguments)]
pub(super) fn open_client(
    clients: &mut Table<ClientEntry>,
    wheel: &mut Wheel<Due>,
    cfg: &TransactionConfig,
    key: crate::transaction::Key,
    kind: Kind,
    request: Box<[u8]>,
    to: Dest,
    server: Option<(TxId, usize)>,
    now_ms: u64,
) -> Option<TxId> {
    // §17.1: over a connection (or toward one) the transport retransmits:
    // no Timer A or E, and no lingering (Timers D, K: none).
    let reliable = !matches!(to, Dest::Udp { .. });
    let (tx, fx) = ClientTx::start(kind, reliable, cfg.durations);
    let client = ClientEntry {
        tx,
        request,
        to,
        server: server.map(|(sid, _)| sid),
        timers: Armed::default(),
        cancel_when_ringing: false,
        cancel_sent: false,
        branch: server.map_or(0, |(_, b)| b),
    };
    let cid = clients.insert(key, client).ok()?;
    if let Some(c) = clients.get_mut(cid) {
        set_timers(wheel, cfg, &mut c.timers, &fx, now_ms, |t| {
            Due::Client(cid, t)
        });
    }
    Some(cid)
}

/// Disarms every timer in `armed` (its transaction is ended early).
pub(super) fn disarm_all(wheel: &mut Wheel<Due>, armed: &Armed) {
    for (_, id) in armed.0.iter().flatten() {
        wheel.disarm(*id);
    }
}

/// Forgets that `t` is armed in `armed` (it fired).
pub(super) fn fired(armed: &mut Armed, t: Timer) {
    for slot in &mut armed.0 {
        if slot.is_some_and(|(old, _)| old == t) {
            *slot = None;
        }
    }
}

impl Shard<'_> {
    /// Runs the transaction timers due by now, while the send queue has
    /// room for what one may send; the rest stay due for the next loop
    /// ([`Shard::timers_waiting`]).
    pub(in crate::shard) fn run_timers<S: SendQueue>(&mut self, send: &mut S) {
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
    pub(in crate::shard) fn timers_waiting(&self) -> bool {
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
            Due::CancelDeadline(cid) => {
                let Some(c) = st.clients.get_mut(cid) else {
                    return;
                };
                let fx = c.tx.on_cancel_deadline();
                self.client_effects(cid, fx, send);
            }
            Due::TimerC(sid) => {
                // §16.8: Timer C fired. Each branch still out counts as
                // a 408 from it, and each is cancelled (once it answered).
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
