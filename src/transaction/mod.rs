//! The transaction layer of the stateful proxy (RFC 3261 §17, updated by
//! RFC 6026): client and server transactions as pure state machines, the
//! response context that forks, fails over and picks the answer (§16.7),
//! and the millisecond timer wheel that drives them.
//!
//! Nothing here sends, reads a clock or locks: an event goes in (a
//! response, a retransmitted request, an ACK, a timer, a transport error)
//! and [`Effects`] come out, which the shard that owns the transaction
//! carries out. That keeps every RFC rule testable with a fake clock, one
//! named case per rule, and keeps a transaction on its shard
//! (`../shared/ARCHITECTURE.md`: the shard that received the request owns
//! it).
//!
//! RFC 6026 is followed rather than RFC 3261's original text for 2xx
//! responses to INVITE: both sides move to Accepted instead of ending, so
//! that retransmitted 2xx and the 2xx of other forks are still matched
//! and forwarded, and retransmitted INVITEs are absorbed (RFC 3261 had a
//! proxy forward those as new requests).

pub mod client;
pub mod context;
pub mod server;
pub mod table;
pub mod timer;
pub mod wheel;

pub use client::{ClientState, ClientTx};
pub use context::{Advance, BranchSet, Decision, Final, ResponseContext, MAX_BRANCHES};
pub use server::{ServerState, ServerTx};
pub use table::{Full, Key, Table, TxId};
pub use timer::{Durations, Timer, TimerSet};
pub use wheel::{TimerId, Wheel};

/// The transaction layer's settings (`--mode stateful`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionConfig {
    /// T1, T2, T4 (`--t1`, `--t2`, `--t4`).
    pub durations: Durations,
    /// Transactions a shard holds at most (`--max-transactions`).
    pub max_per_shard: usize,
    /// Timers B and F (`--fr-timeout`); None: 64*T1.
    pub fr_timeout_ms: Option<u64>,
    /// Timer C (`--fr-inv-timeout`).
    pub fr_inv_timeout_ms: u64,
    /// Upstreams a request may fail over to after the first
    /// (`--max-failover`).
    pub max_failover: usize,
}

/// INVITE transactions differ from all others (§17): a three-way
/// handshake, a hop-by-hop ACK for non-2xx finals, no retransmission
/// cap at T2 for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An INVITE transaction.
    Invite,
    /// Any other request's (ACK never has one of its own: it belongs to
    /// the INVITE's, or, for a 2xx, to none).
    NonInvite,
}

/// What to send for a transaction, the bytes being the shard's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// Client: the request again.
    Request,
    /// Client: an ACK for a non-2xx final (§17.1.1.3), built from the
    /// request and that response.
    Ack,
    /// Server: the response just given, or the last one again.
    Response,
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its work is done (its last timer ran out, or there was none to
    /// run over a reliable transport).
    Done,
    /// No answer in time (B, F) or no ACK in time (H): the proxy core is
    /// told, and counts a client's as a 408 from that branch.
    Timeout,
    /// The transport failed (§17.1.4, §17.2.4): for a client, a 503 from
    /// that branch (§16.9).
    TransportError,
}

/// What the shard does after one event of a transaction: at most one
/// send, whether the message goes on to the proxy core, the timers to
/// arm and to disarm, and whether (and how) the transaction ended.
/// A plain value, so that a step allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// What to send now.
    pub send: Option<Send>,
    /// Client: hand the response to the proxy core (§16.7). Server: hand
    /// the ACK of a 2xx on (RFC 6026 §8.7).
    pub pass_up: bool,
    /// Timers to arm, each with its wait in milliseconds.
    pub start: [Option<(Timer, u64)>; 2],
    /// Timers to disarm.
    pub stop: TimerSet,
    /// Set when the transaction has ended: the shard drops it (and its
    /// timers).
    pub ended: Option<End>,
}

impl Effects {
    /// Arms `t` for `wait` ms in the first free place of `start`.
    fn arm(&mut self, t: Timer, wait: u64) {
        if let Some(slot) = self.start.iter_mut().find(|s| s.is_none()) {
            *slot = Some((t, wait));
        }
    }
}
