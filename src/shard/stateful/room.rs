//! Keeping the tables bounded without refusing calls for want of room
//! (`--max-transactions`). A transaction that has sent its final answer
//! lingers only to absorb retransmissions (over UDP: Timers I, J, K, L,
//! M, up to 64*T1, 32 s by default), so:
//! - at its final it lets go of the bytes it will not send again (the
//!   request as received, the forks not started, a client's request
//!   unless an ACK may have to be built from it again);
//! - when the table is full, the oldest finished one is ended early to
//!   make room for a new request, with those of its client transactions
//!   that have finished too; only a table of transactions all still
//!   waiting for their final answer refuses a request (503).
//!
//! Ending a finished transaction early loses only the absorbing of a late
//! retransmission: the caller's goes on as a new request, which the next
//! hop's own transaction absorbs (Kamailio's tm keeps them 5 s, its
//! `wait_timer`, for the same trade).

use super::*;

impl Stateful {
    /// Makes room for one more server transaction when the table is
    /// full, ending the oldest finished ones; false when every one is
    /// still waiting for its final answer.
    pub fn make_room(&mut self, counters: &ShardCounters) -> bool {
        while self.is_full() {
            let Some(sid) = self.finished.pop_front() else {
                return false;
            };
            if self.evict(sid) {
                add(&counters.tx_evicted, 1);
            }
        }
        true
    }

    /// Ends server transaction `sid` (when it is still there: the queue
    /// keeps ids of ended ones until they reach its front), its timers,
    /// and its client transactions that have their final.
    fn evict(&mut self, sid: TxId) -> bool {
        let Some(s) = self.servers.remove(sid) else {
            return false;
        };
        disarm_all(&mut self.wheel, &s.timers);
        if let Some(id) = s.timer_c {
            self.wheel.disarm(id);
        }
        let forks = s.branches.iter().flat_map(|b| b.clients.iter().flatten());
        for &cid in s.client.iter().chain(forks) {
            let done = self.clients.get(cid).is_some_and(|c| {
                matches!(c.tx.state(), ClientState::Completed | ClientState::Accepted)
            });
            if done {
                if let Some(c) = self.clients.remove(cid) {
                    disarm_all(&mut self.wheel, &c.timers);
                }
            }
        }
        true
    }

    /// Notes that server transaction `sid` has sent its final: it keeps
    /// only what it may send again, and joins the queue of those that
    /// may be ended early. Once only.
    pub(super) fn server_finished(&mut self, sid: TxId) {
        let Some(s) = self.servers.get_mut(sid) else {
            return;
        };
        let finished = matches!(
            s.tx.state(),
            ServerState::Completed | ServerState::Confirmed | ServerState::Accepted
        );
        if !finished || s.finished {
            return;
        }
        s.finished = true;
        // Our own answers are written from it; there will be no other.
        s.request = Box::default();
        if let Some(b) = s.branches.as_mut() {
            b.template = None;
            b.requests.iter_mut().for_each(|r| *r = None);
            b.finals.iter_mut().for_each(|f| *f = None);
        }
        // Ended ones at the front go (they mostly end in the order they
        // finished); the rest, past twice the table, in one sweep.
        while let Some(&front) = self.finished.front() {
            if self.servers.get(front).is_some() {
                break;
            }
            self.finished.pop_front();
        }
        if self.finished.len() >= self.cfg.max_per_shard.saturating_mul(2) {
            let servers = &self.servers;
            self.finished.retain(|&id| servers.get(id).is_some());
        }
        self.finished.push_back(sid);
    }
}

/// A client transaction that has its final keeps its request only for an
/// INVITE answered non-2xx (§17.1.1.3: each retransmission of that final
/// is ACKed again, built from the request).
pub(super) fn client_finished(c: &mut ClientEntry) {
    let keep = match c.tx.state() {
        ClientState::Completed => c.tx.kind() == Kind::Invite,
        ClientState::Accepted => false,
        _ => true,
    };
    if !keep && !c.request.is_empty() {
        c.request = Box::default();
    }
}
