//! Per-shard counters. Each shard writes only its own block (one cache
//! line apart from the others, so no line bounces between cores) with plain
//! relaxed load+store, never a locked read-modify-write; the stats reader
//! sums all blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::io::stream::StreamCounts;
use crate::proxy::DropReason;

/// Number of [`DropReason`] values, for the drop counter array.
pub const DROP_REASONS: usize = DropReason::ALL.len();

/// One shard's counters.
#[derive(Default, Debug)]
pub struct ShardCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Requests forwarded.
    pub forwarded_requests: AtomicU64,
    /// Responses forwarded.
    pub forwarded_responses: AtomicU64,
    /// Local replies by status class: index 1 for 1xx ... 6 for 6xx.
    pub replies: [AtomicU64; 7],
    /// Responses received (to be forwarded) by status class, indexed like
    /// `replies`.
    pub responses: [AtomicU64; 7],
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DROP_REASONS],
    /// Datagrams that did not tokenize as SIP (also counted as a drop).
    pub parse_errors: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_failed: AtomicU64,
    /// Requests received, by method (index: `Method::index`).
    pub requests: [AtomicU64; 15],
    /// Bindings created by REGISTERs this shard owns.
    pub bindings_created: AtomicU64,
    /// Bindings refreshed (re-registered) by REGISTERs this shard owns.
    pub bindings_refreshed: AtomicU64,
    /// Bindings removed by REGISTERs (expires=0, `*`, replaced by max-contacts).
    pub bindings_removed: AtomicU64,
    /// Bindings that lapsed and were removed by this shard's expiry wheel.
    pub bindings_expired: AtomicU64,
    /// Other nodes' changes that changed this shard's AORs (`--cluster`).
    pub cluster_applied: AtomicU64,
    /// REGISTERs this shard applied as owner that changed bindings (not
    /// queries, not retransmissions).
    pub registered: AtomicU64,
    /// Sources that went over `--rate-limit` and were banned.
    pub sources_banned: AtomicU64,
    /// REGISTERs passed to their owner shard's inbox.
    pub handed_off: AtomicU64,
    /// REGISTERs answered 503 because the owner's inbox was full or the
    /// log could not be written.
    pub registers_refused: AtomicU64,
    /// Log writes or syncs that failed (`--state-dir`).
    pub store_errors: AtomicU64,
    /// Requests whose digest credentials were accepted (`--auth-file`).
    pub auth_accepted: AtomicU64,
    /// 401/407 challenges sent (no credentials, stale or failed ones).
    pub auth_challenges: AtomicU64,
    /// Credentials that did not hold (wrong password, unknown user, forged
    /// nonce, replay) or belonged to another user (403).
    pub auth_failures: AtomicU64,
    /// Sources banned for failing authentication too often
    /// (`--auth-fail-limit`).
    pub auth_bans: AtomicU64,
    /// AORs in this shard's replica (a gauge).
    pub aors: AtomicU64,
    /// Replica updates waiting for room in other shards' inboxes (a gauge).
    pub updates_waiting: AtomicU64,
    /// The longest an owner's change took to reach this shard's replica,
    /// in microseconds (publish to apply).
    pub replica_delay_max_us: AtomicU64,
    /// Time spent handling sampled datagrams.
    pub handle_time: HandleTime,
    /// TCP connections accepted.
    pub conns_accepted: AtomicU64,
    /// TCP connections refused at accept (`--max-connections`).
    pub conns_refused: AtomicU64,
    /// TCP connections closed at accept because their IP address had
    /// `--max-connections-per-ip` open already.
    pub conns_refused_per_ip: AtomicU64,
    /// TCP connections closed, for any reason.
    pub conns_closed: AtomicU64,
    /// TCP connections closed because their bytes could not be framed
    /// (§18.3), or their WebSocket handshake or frame stream was broken,
    /// after their answer (an orderly TLS or WebSocket end is not one).
    pub conns_unframeable: AtomicU64,
    /// TCP connections closed because the peer did not read its
    /// responses.
    pub conns_overflowed: AtomicU64,
    /// Messages for a connection that had gone.
    pub conn_sends_gone: AtomicU64,
    /// Messages for a connection owned by another shard, mailed to it
    /// (a response that reached this shard, a call to a flow): the
    /// cross-shard hop the design wants rare.
    pub conn_msgs_crossed: AtomicU64,
    /// Transactions opened (`--mode stateful`): a server transaction and
    /// its branch's client transaction.
    pub tx_created: AtomicU64,
    /// Retransmissions absorbed by a transaction: a request again (its
    /// last response sent again, if any), an ACK of our non-2xx final, a
    /// response again.
    pub tx_absorbed: AtomicU64,
    /// Retransmissions we made: a request the next hop did not answer in
    /// time (Timers A, E), a final the caller did not ACK (Timer G).
    pub tx_resent: AtomicU64,
    /// New requests answered 503 because the shard held
    /// `--max-transactions`.
    pub tx_refused: AtomicU64,
    /// Finished transactions ended before their linger timer to make
    /// room for a new one at `--max-transactions`.
    pub tx_evicted: AtomicU64,
    /// Branches that got no final answer in time (Timers B, F, C): the
    /// caller got 408 or the best answer so far.
    pub tx_timeouts: AtomicU64,
    /// Responses mailed to the shard whose branch they carry.
    pub tx_responses_mailed: AtomicU64,
    /// Transactions open (server side), a gauge.
    pub tx_open: AtomicU64,
    /// Datagrams for an address of the other IP family than this shard's
    /// socket, mailed to a shard whose socket has it (a dual-stack edge).
    pub family_crossed: AtomicU64,
    /// Responses whose connection had gone, sent over a new connection to
    /// the client's Via address (§18.2.2).
    pub conn_responses_resent: AtomicU64,
    /// Requests for a registered flow whose connection had gone,
    /// answered 430 (RFC 5626 §5.3).
    pub flows_failed: AtomicU64,
    /// TCP connections closed at a deadline: a connect not done in 10 s,
    /// a message begun and not completed in 32 s, or silence past
    /// `--tcp-idle-timeout`.
    pub conns_timed_out: AtomicU64,
    /// TLS connections closed for a failed handshake or a TLS error
    /// (an alert sent).
    pub conns_tls_failed: AtomicU64,
    /// TCP connections opened to next hops.
    pub conns_opened: AtomicU64,
    /// Messages to a next hop whose TCP connection could not be made.
    pub connect_failed: AtomicU64,
    /// Connections accepted, by transport (`Transport as usize`).
    pub conns_accepted_by: [AtomicU64; 5],
    /// Connections closed, by transport.
    pub conns_closed_by: [AtomicU64; 5],
    /// Connections refused at accept (`--max-connections`), by transport.
    pub conns_refused_by: [AtomicU64; 5],
    /// Connections refused at accept for their address, by transport.
    pub conns_refused_per_ip_by: [AtomicU64; 5],
    /// TLS connections closed for a TLS error, by transport.
    pub conns_tls_failed_by: [AtomicU64; 5],
    /// Connections open, by transport (gauges).
    pub conns_open_by: [AtomicU64; 5],
    /// TLS handshakes completed (TLS and WSS, accepted and opened).
    pub tls_handshakes: AtomicU64,
    /// Connections closed at a deadline, by the one that fired
    /// (`Deadline as usize`).
    pub conns_timed_out_by: [AtomicU64; 4],
}

impl ShardCounters {
    /// Adds what the shard's connections did since the last call.
    pub fn count_streams(&self, c: StreamCounts, open_by: [usize; 5]) {
        for (counter, n) in [
            (&self.conns_accepted, c.accepted),
            (&self.conns_refused, c.refused),
            (&self.conns_refused_per_ip, c.refused_per_ip),
            (&self.conns_closed, c.closed),
            (&self.conns_unframeable, c.frame_errors),
            (&self.conns_overflowed, c.overflows),
            (&self.conn_sends_gone, c.sends_to_gone),
            (&self.conns_opened, c.opened),
            (&self.conns_timed_out, c.timed_out),
            (&self.conns_tls_failed, c.tls_failed),
            (&self.connect_failed, c.connect_failed),
            (&self.tls_handshakes, c.tls_handshakes),
        ] {
            if n > 0 {
                add(counter, n);
            }
        }
        for (counter, &n) in self.conns_timed_out_by.iter().zip(&c.timed_out_by) {
            if n > 0 {
                add(counter, n);
            }
        }
        for (i, &open) in open_by.iter().enumerate() {
            for (counter, n) in [
                (&self.conns_accepted_by[i], c.accepted_by[i]),
                (&self.conns_closed_by[i], c.closed_by[i]),
                (&self.conns_refused_by[i], c.refused_by[i]),
                (&self.conns_refused_per_ip_by[i], c.refused_per_ip_by[i]),
                (&self.conns_tls_failed_by[i], c.tls_failed_by[i]),
            ] {
                if n > 0 {
                    add(counter, n);
                }
            }
            self.conns_open_by[i].store(open as u64, Relaxed);
        }
    }

    /// Counts one drop.
    #[inline]
    pub fn dropped(&self, r: DropReason) {
        add(&self.drops[r as usize], 1);
    }
}

/// The index of a status code's class in `replies` and `responses`: 1 for
/// 1xx ... 6 for 6xx (a code above 699 counts as 6xx).
#[inline]
pub fn status_class(code: u16) -> usize {
    usize::from(code / 100).min(6)
}

/// One datagram in this many is timed for [`HandleTime`]: two clock reads
/// (about 20 ns each, vDSO) per 64 datagrams cost well under a nanosecond
/// per datagram, and a busy shard still gives thousands of samples a
/// second.
pub const HANDLE_SAMPLE_EVERY: u32 = 64;

/// Upper bounds of the [`HandleTime`] buckets, in microseconds. A
/// forwarded request takes about a microsecond (release build), so the low
/// buckets tell normal from slow; the top ones catch a shard that stalls
/// (a page fault, a preempted thread, a log fsync).
pub const HANDLE_BUCKETS_US: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

/// A histogram of the time from just before a datagram is handled to just
/// after its answer or forwarded copy is queued (or it is dropped), for
/// one datagram in [`HANDLE_SAMPLE_EVERY`]. Written only by its shard,
/// with relaxed load+store like the other counters; no lock, no
/// allocation.
#[derive(Default, Debug)]
pub struct HandleTime {
    /// Samples per bucket, not cumulative: index i counts those above
    /// bound i-1 and at most bound i of [`HANDLE_BUCKETS_US`]; the last,
    /// those above every bound.
    pub buckets: [AtomicU64; HANDLE_BUCKETS_US.len() + 1],
    /// The samples' sum, in nanoseconds.
    pub sum_ns: AtomicU64,
}

impl HandleTime {
    /// The bucket a sample of `ns` nanoseconds falls in.
    #[inline]
    pub fn bucket_of(ns: u64) -> usize {
        HANDLE_BUCKETS_US
            .iter()
            .position(|&us| ns <= us * 1000)
            .unwrap_or(HANDLE_BUCKETS_US.len())
    }

    /// Adds one sample.
    #[inline]
    pub fn record(&self, elapsed: std::time::Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(Self::bucket_of(ns)) {
            add(b, 1);
        }
        add(&self.sum_ns, ns);
    }

    /// Samples so far (the sum of the buckets).
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

/// Adds `n` to a counter only this shard writes.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counters for every shard, each on its own cache line.
pub type AllCounters = Vec<CachePadded<ShardCounters>>;

/// Sum of one counter over all shards.
pub fn total(all: &[CachePadded<ShardCounters>], f: impl Fn(&ShardCounters) -> &AtomicU64) -> u64 {
    all.iter().map(|c| f(c).load(Relaxed)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_land_in_the_bucket_whose_bound_is_the_first_at_or_above() {
        assert_eq!(HandleTime::bucket_of(0), 0);
        assert_eq!(HandleTime::bucket_of(1000), 0, "bounds are inclusive");
        assert_eq!(HandleTime::bucket_of(1001), 1);
        assert_eq!(HandleTime::bucket_of(2000), 1);
        assert_eq!(HandleTime::bucket_of(4999), 2);
        assert_eq!(HandleTime::bucket_of(999_999), 9);
        assert_eq!(HandleTime::bucket_of(5_000_000), 10);
        assert_eq!(HandleTime::bucket_of(5_000_001), 11, "above every bound");
        assert_eq!(HandleTime::bucket_of(u64::MAX), 11);
        // Every bound maps to its own bucket.
        for (i, us) in HANDLE_BUCKETS_US.iter().enumerate() {
            assert_eq!(HandleTime::bucket_of(us * 1000), i);
            assert_eq!(HandleTime::bucket_of(us * 1000 + 1), i + 1);
        }
    }

    #[test]
    fn record_counts_and_sums() {
        let h = HandleTime::default();
        h.record(Duration::from_nanos(700));
        h.record(Duration::from_nanos(1500));
        h.record(Duration::from_micros(3));
        h.record(Duration::from_secs(1));
        let got: Vec<u64> = h.buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!(got, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns.load(Relaxed), 700 + 1500 + 3000 + 1_000_000_000);
    }
}
