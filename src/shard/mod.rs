//! A shard: one thread, one socket, one loop. Receive a batch, handle each
//! datagram in place (parse, route, write the outgoing copy straight into a
//! send buffer), send the batch. Between batches it reads its inbox: REGISTERs
//! for AORs it owns, replica updates from other owners, and answers to send.
//! It shares nothing mutable with other shards but its counters, which only
//! it writes, and the lock-free inboxes.
//!
//! This file is the shard's state and its loop; each step has a file:
//! - `pipeline`: one datagram through admit, parse, authenticate, route
//!   and emit, returning its [`Outcome`];
//! - `answer`: the responses the shard writes itself;
//! - `registration`: REGISTER hand-off to the AOR's owner and its answer;
//! - `auth_gate`: which requests need credentials, and the challenges;
//! - `drain` and [`mail`]: shard-to-shard mail and its wake-up;
//! - [`counters`] and [`drop_log`]: what the shard counts and logs.

mod answer;
mod auth_gate;
pub mod counters;
mod drain;
pub mod drop_log;
mod flow;
pub mod mail;
pub mod outcome;
mod pipeline;
mod registration;
mod sends;
mod shared;
mod stateful;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::admit::failures::FailureLimiter;
use crate::admit::Admission;
use crate::auth::NonceCounts;
use crate::io::stream::{Outgoing, Received, Streams};
use crate::io::{Backend, SendQueue};
use crate::location::owner::Owner;
use crate::proxy::{DropReason, Scratch};
use crate::transport::Source;
use counters::{add, ShardCounters};
use drop_log::DropLog;
use mail::{Mail, Outbox};
pub use outcome::Outcome;
use sends::{Post, Sends};
pub use shared::Shared;
pub use stateful::Stateful;

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
    pub location: Owner,
    /// Its changes as owner that wait for room in another shard's inbox.
    outbox: Outbox,
    /// Unix seconds, read once per loop iteration.
    pub now: u64,
    /// Mail taken out of the inbox by [`Shard::apply_updates`] that is not a
    /// replica update, in arrival order.
    set_aside: VecDeque<Mail>,
    /// Allow/deny, rate limits, scanners and size, before routing.
    admission: Admission,
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
    /// Its socket's IP family and the shard that sends the other's
    /// ([`Shared::families`]).
    families: (Option<bool>, Option<usize>),
    /// Its transactions and their timers (`--mode stateful`).
    stateful: Option<Box<Stateful>>,
    /// Its part of the location service shared with other nodes
    /// (`--cluster`).
    cluster: Option<crate::cluster::Side>,
}

impl<'a> Shard<'a> {
    /// Shard `index` of `shared`, with its location state.
    pub fn new(
        index: usize,
        shared: &'a Shared,
        counters: &'a ShardCounters,
        location: Owner,
    ) -> Shard<'a> {
        Shard {
            index,
            shared,
            counters,
            // Under --mode stateful our branches name the shard (a
            // connection id names it in 8 bits too).
            scratch: match shared.transactions {
                Some(_) => Scratch::for_shard(index as u8),
                None => Scratch::default(),
            },
            location,
            outbox: Outbox::new(shared.shards()),
            now: unix_now(),
            set_aside: VecDeque::new(),
            admission: Admission::new(&shared.guard),
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
            families: shared.families(index),
            stateful: shared
                .transactions
                .map(|cfg| Box::new(Stateful::new(cfg, 0))),
            cluster: None,
        }
    }

    /// Shares this shard's AORs with other nodes through `side`
    /// (`--cluster`): its registrar's changes go to the link, and other
    /// nodes' changes come in as [`Mail::Cluster`].
    pub fn set_cluster(&mut self, side: crate::cluster::Side) {
        self.location.node = side.node().into();
        self.cluster = Some(side);
    }

    /// What its sends need to reach other shards.
    fn post(&self) -> Post<'a> {
        Post {
            me: self.index,
            inboxes: &self.shared.inboxes,
            counters: self.counters,
            ipv4: self.families.0,
            other_family: self.families.1,
        }
    }

    /// Shard 0 of `shared` with its registrations in memory: for tests,
    /// fuzzing and benchmarks of the per-datagram path.
    pub fn alone(shared: &'a Shared, counters: &'a ShardCounters) -> Shard<'a> {
        let now = unix_now();
        let location = shared.registrar.owner(0, shared.shards(), now, None);
        Shard::new(0, shared, counters, location)
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
        let (outbox, inboxes, index) = (&mut self.outbox, &self.shared.inboxes, self.index);
        outbox.retry(inboxes);
        let expired = self
            .location
            .tick(self.now, &mut |op| outbox.broadcast(inboxes, index, op));
        if expired > 0 {
            add(&self.counters.bindings_expired, expired);
        }
        if let Some(side) = &mut self.cluster {
            side.flush();
            side.sweep(self.now);
        }
        self.commit_log();
        self.counters
            .aors
            .store(self.location.replica.len() as u64, Ordering::Relaxed);
        self.counters
            .updates_waiting
            .store(self.outbox.waiting() as u64, Ordering::Relaxed);
    }
}

/// Runs the shard loop until `stop` is set, then sends what is queued.
/// `streams` are the shard's TCP listeners and connections, if any: the
/// backend wakes for them, and the loop polls them after each batch.
pub fn run<B: Backend>(
    mut io: B,
    mut streams: Option<Streams>,
    shard: &mut Shard<'_>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let counters = shard.counters;
    let post = shard.post();
    let me = shard.index;
    let mut out = Outgoing::default();
    // The backend waits on the streams once there is something to wait
    // for (a listener, or a first connection to a next hop): a shard
    // that never uses TCP keeps its datagram loop as it was.
    let mut watching = false;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        shard.now = unix_now();
        shard.now_ms = started.elapsed().as_millis() as u64;
        let mut failed = 0;
        let mut sends = Sends::new(io.send_queue(), &mut out, post);
        shard.drain_inbox(&mut sends);
        // Before the datagrams: the queue is emptiest now, and a
        // retransmission is due already.
        shard.run_timers(&mut sends);
        failed += sends.failed;
        if shard.timers_waiting() {
            io.skip_next_wait();
        }
        // io_uring submits queued sends inside `poll`: log first.
        shard.commit_log();
        // Before the wait, from the first one on: a connection may be
        // waiting already (its peer's connect completes in the kernel
        // before this loop runs), and must not sleep the wake interval.
        if let Some(s) = streams.as_mut() {
            if watching || !s.is_idle() {
                io.watch_streams(s);
                if !watching && io.name() == "uring" && !s.in_ring() {
                    tracing::warn!(
                        "shard {me}: io_uring refused the connections' receive buffers; \
                         they run on epoll (the portable path)"
                    );
                }
                watching = true;
            }
        }
        // Messages held for want of a send slot are announced by no
        // descriptor: do not sleep on them.
        if streams.as_ref().is_some_and(Streams::has_stalled) {
            io.skip_next_wait();
        }
        let mut first = true;
        io.poll(|d, send| {
            if std::mem::take(&mut first) {
                shard.apply_updates();
            }
            add(&counters.received, 1);
            let Some(src) = d.source else {
                counters.dropped(DropReason::Malformed);
                return shard.log_drop(DropReason::Malformed, None, d.bytes);
            };
            if d.truncated {
                counters.dropped(DropReason::Oversize);
                return shard.log_drop(DropReason::Oversize, Some(src), d.bytes);
            }
            let mut sends = Sends::new(send, &mut out, post);
            let _ = shard.handle(d.bytes, &Source::udp(src, d.local), &mut sends);
            failed += sends.failed;
        })?;
        match streams.as_mut() {
            Some(s) => {
                s.tick(shard.now_ms);
                // Once watched, always asked: in ring mode the completions
                // (buffers among them) come back through here.
                let ready = watching && io.streams_ready(s);
                if ready || s.has_stalled() {
                    failed += poll_streams(s, shard, io.send_queue(), &mut out);
                }
                s.send_all(&mut out);
                // Messages whose connection had gone: a request to a flow
                // gets 430 (RFC 5626 §5.3), a response goes over a new
                // connection (§18.2.2); one whose next hop could not be
                // connected to is a 503 to its transaction (§16.9).
                for (why, forwarded) in s.take_gone() {
                    let mut sends = Sends::new(io.send_queue(), &mut out, post);
                    shard.connection_gone(why, &forwarded, &mut sends);
                    failed += sends.failed;
                }
                s.send_all(&mut out);
                counters.count_streams(s.take_counts(), s.open_by());
            }
            None => failed += out.clear(),
        }
        shard.after_batch();
        // The next poll follows: io_uring submits these with its wait.
        add(
            &counters.send_failed,
            (failed + io.flush_before_poll()) as u64,
        );
    }
    shard.after_batch();
    add(&counters.send_failed, io.flush() as u64);
    if let Some(s) = streams.as_mut() {
        s.send_all(&mut out);
    }
    // The ring first: in ring mode it reads into the streams' buffers.
    drop(io);
    drop(streams);
    Ok(())
}

/// Handles what the shard's connections delivered, while there is a send
/// slot to answer into; returns the messages for connections that could
/// not be queued.
fn poll_streams<Q: SendQueue>(
    streams: &mut Streams,
    shard: &mut Shard<'_>,
    queue: &mut Q,
    out: &mut Outgoing,
) -> usize {
    let post = shard.post();
    let mut failed = 0;
    let mut first = true;
    streams.poll(|received, src| {
        let mut sends = Sends::new(&mut *queue, &mut *out, post);
        if sends.slot().is_none() {
            return false;
        }
        if std::mem::take(&mut first) {
            shard.apply_updates();
        }
        match received {
            Received::Message(bytes) => {
                add(&shard.counters.received, 1);
                let _ = shard.handle(bytes, src, &mut sends);
            }
            Received::Unframeable(bytes, e) => {
                let _ = shard.refuse_unframeable(bytes, src, e, &mut sends);
            }
        }
        failed += sends.failed;
        true
    });
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mmsg::{Mmsg, SendBatch};
    use crate::io::stream::bind_listener;
    use crate::io::Datagram;
    use crate::proxy::ProxyConfig;
    use crate::registrar::RegistrarConfig;
    use crate::transport::Transport;
    use std::net::UdpSocket;

    /// The recvmmsg backend, with what the loop asked of it in order.
    struct Recording<'a> {
        io: Mmsg,
        calls: &'a std::cell::RefCell<Vec<&'static str>>,
        stop: &'a AtomicBool,
    }

    impl Backend for Recording<'_> {
        type Send = SendBatch;

        fn poll<F>(&mut self, handle: F) -> io::Result<()>
        where
            F: FnMut(Datagram<'_>, &mut SendBatch),
        {
            self.calls.borrow_mut().push("poll");
            // One turn is enough to see the order.
            self.stop.store(true, Ordering::Relaxed);
            self.io.poll(handle)
        }

        fn send_queue(&mut self) -> &mut SendBatch {
            self.io.send_queue()
        }

        fn flush(&mut self) -> usize {
            Backend::flush(&mut self.io)
        }

        fn watch_streams(&mut self, streams: &mut Streams) {
            self.calls.borrow_mut().push("watch");
            self.io.watch_streams(streams);
        }

        fn streams_ready(&mut self, streams: &mut Streams) -> bool {
            self.io.streams_ready(streams)
        }

        fn skip_next_wait(&mut self) {
            self.io.skip_next_wait();
        }

        fn name(&self) -> &'static str {
            "recording"
        }
    }

    /// Before 2026-12-04 the loop first waited the whole wake interval
    /// (100 ms) on the datagram socket alone: a TCP peer whose connect the
    /// kernel had completed sent into a shard that did not look.
    #[test]
    fn a_shard_with_listeners_watches_them_before_its_first_wait() {
        let proxy = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
        let shared = Shared::new(proxy, RegistrarConfig::default(), vec![0]).unwrap();
        let counters = ShardCounters::default();
        let mut shard = Shard::alone(&shared, &counters);
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let streams = Streams::new(0, vec![(l, Transport::Tcp)], 8, 4096).unwrap();
        let stop = AtomicBool::new(false);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        // As the shard's socket has it (`bind_shard_socket`).
        udp.set_read_timeout(Some(crate::io::socket::WAKE_INTERVAL))
            .unwrap();
        let io = Mmsg::new(udp);
        let calls = std::cell::RefCell::new(Vec::new());
        let rec = Recording {
            io,
            calls: &calls,
            stop: &stop,
        };
        run(rec, Some(streams), &mut shard, &stop).unwrap();
        let calls = calls.into_inner();
        assert_eq!(calls.first(), Some(&"watch"), "{calls:?}");
    }
}
