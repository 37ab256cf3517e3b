//! The stats reporter: a thread off the hot path that sums the shards'
//! counters every `--stats-interval` seconds and prints one line with
//! totals and rates. Shards never wait for it: it only reads their relaxed
//! counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::io::stream::Deadline;
use crate::proxy::DropReason;
use crate::shard::counters::{total, ShardCounters};
use crate::transport::Transport;

/// A snapshot of the summed counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams received.
    pub received: u64,
    /// Requests forwarded.
    pub forwarded_requests: u64,
    /// Responses forwarded.
    pub forwarded_responses: u64,
    /// Local replies, all classes.
    pub replies: u64,
    /// Drops, all reasons.
    pub drops: u64,
    /// Datagrams that were not SIP.
    pub parse_errors: u64,
    /// Sends the kernel refused.
    pub send_failed: u64,
}

impl Totals {
    /// Sums every shard's counters.
    pub fn read(all: &[CachePadded<ShardCounters>]) -> Totals {
        Totals {
            received: total(all, |s| &s.received),
            forwarded_requests: total(all, |s| &s.forwarded_requests),
            forwarded_responses: total(all, |s| &s.forwarded_responses),
            replies: (1..7).map(|k| total(all, |s| &s.replies[k])).sum(),
            drops: (0..DropReason::ALL.len())
                .map(|k| total(all, |s| &s.drops[k]))
                .sum(),
            parse_errors: total(all, |s| &s.parse_errors),
            send_failed: total(all, |s| &s.send_failed),
        }
    }
}

/// One report line: totals, and per-second rates since `prev`.
pub fn line(now: &Totals, prev: &Totals, secs: f64) -> String {
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs.max(1e-9);
    let mut s = String::new();
    let _ = write!(
        s,
        "stats: in {} ({:.0}/s) fwd_req {} ({:.0}/s) fwd_resp {} ({:.0}/s) replies {} drops {} parse_errors {} send_failed {}",
        now.received,
        rate(now.received, prev.received),
        now.forwarded_requests,
        rate(now.forwarded_requests, prev.forwarded_requests),
        now.forwarded_responses,
        rate(now.forwarded_responses, prev.forwarded_responses),
        now.replies,
        now.drops,
        now.parse_errors,
        now.send_failed,
    );
    s
}

/// The line printed at exit: every total, drops by reason, and datagrams
/// received per shard (which shows how `--steer` spread the traffic).
pub fn exit_line(all: &[CachePadded<ShardCounters>]) -> String {
    let t = Totals::read(all);
    let mut s = String::new();
    let _ = write!(
        s,
        "stopped; received={} forwarded_requests={} forwarded_responses={} replies={} parse_errors={} send_failed={}",
        t.received, t.forwarded_requests, t.forwarded_responses, t.replies, t.parse_errors, t.send_failed,
    );
    let _ = write!(
        s,
        " sources_banned={} registered={} handed_off={} registers_refused={} store_errors={} aors={} replica_delay_max_us={} auth_accepted={} auth_challenges={} auth_failures={} auth_bans={}",
        total(all, |c| &c.sources_banned),
        total(all, |c| &c.registered),
        total(all, |c| &c.handed_off),
        total(all, |c| &c.registers_refused),
        total(all, |c| &c.store_errors),
        all.iter()
            .map(|c| c.aors.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        all.iter()
            .map(|c| c.replica_delay_max_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        total(all, |c| &c.auth_accepted),
        total(all, |c| &c.auth_challenges),
        total(all, |c| &c.auth_failures),
        total(all, |c| &c.auth_bans),
    );
    let _ = write!(
        s,
        " conns_accepted={} conns_opened={} connect_failed={} conns_refused={} conns_refused_per_ip={} conns_closed={} conns_unframeable={} conns_overflowed={} conns_timed_out={} conns_tls_failed={} tls_handshakes={} conn_msgs_crossed={} conn_sends_gone={} conn_responses_resent={} flows_failed={} family_crossed={}",
        total(all, |c| &c.conns_accepted),
        total(all, |c| &c.conns_opened),
        total(all, |c| &c.connect_failed),
        total(all, |c| &c.conns_refused),
        total(all, |c| &c.conns_refused_per_ip),
        total(all, |c| &c.conns_closed),
        total(all, |c| &c.conns_unframeable),
        total(all, |c| &c.conns_overflowed),
        total(all, |c| &c.conns_timed_out),
        total(all, |c| &c.conns_tls_failed),
        total(all, |c| &c.tls_handshakes),
        total(all, |c| &c.conn_msgs_crossed),
        total(all, |c| &c.conn_sends_gone),
        total(all, |c| &c.conn_responses_resent),
        total(all, |c| &c.flows_failed),
        total(all, |c| &c.family_crossed),
    );
    let _ = write!(
        s,
        " tx_created={} tx_absorbed={} tx_resent={} tx_refused={} tx_evicted={} tx_timeouts={} tx_mailed={}",
        total(all, |c| &c.tx_created),
        total(all, |c| &c.tx_absorbed),
        total(all, |c| &c.tx_resent),
        total(all, |c| &c.tx_refused),
        total(all, |c| &c.tx_evicted),
        total(all, |c| &c.tx_timeouts),
        total(all, |c| &c.tx_responses_mailed),
    );
    // Accepted and closed by each stream transport, as tcp=A/C.
    s.push_str(" conns_by_transport:");
    for t in &Transport::ALL[1..] {
        let i = *t as usize;
        let _ = write!(
            s,
            " {}={}/{}",
            t.via_token().to_ascii_lowercase(),
            total(all, |c| &c.conns_accepted_by[i]),
            total(all, |c| &c.conns_closed_by[i]),
        );
    }
    s.push_str(" conns_timed_out_by:");
    for d in Deadline::ALL {
        let _ = write!(
            s,
            " {}={}",
            d.name(),
            total(all, |c| &c.conns_timed_out_by[d as usize])
        );
    }
    s.push_str(" drops:");
    for r in DropReason::ALL {
        let _ = write!(s, " {}={}", r.name(), total(all, |c| &c.drops[r as usize]));
    }
    s.push_str(" per_shard_received=[");
    for (i, c) in all.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(s, "{sep}{}", c.received.load(Ordering::Relaxed));
    }
    s.push(']');
    s
}

/// Hands `print` the totals and their line every `interval` until `stop`
/// is set.
pub fn spawn(
    all: Arc<Vec<CachePadded<ShardCounters>>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    mut print: impl FnMut(&Totals, &str) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut prev = Totals::read(&all);
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // Sleep in short steps so that shutdown is not held up.
                let until = last + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100).min(interval));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = Totals::read(&all);
                let t = Instant::now();
                print(
                    &now,
                    &line(&now, &prev, t.duration_since(last).as_secs_f64()),
                );
                prev = now;
                last = t;
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::counters::add;

    #[test]
    fn sums_and_rates() {
        let all: Vec<CachePadded<ShardCounters>> = (0..3)
            .map(|_| CachePadded::new(ShardCounters::default()))
            .collect();
        for (i, c) in all.iter().enumerate() {
            add(&c.received, 10 * (i as u64 + 1));
            add(&c.drops[1], 1);
            add(&c.replies[4], 2);
        }
        let t = Totals::read(&all);
        assert_eq!(t.received, 60);
        assert_eq!(t.drops, 3);
        assert_eq!(t.replies, 6);
        let l = line(&t, &Totals::default(), 2.0);
        assert!(l.starts_with("stats: in 60 (30/s)"), "{l}");
    }

    #[test]
    fn reporter_prints_and_stops() {
        let all = Arc::new(vec![CachePadded::new(ShardCounters::default())]);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let t = spawn(all, Duration::from_millis(50), stop.clone(), move |_, l| {
            let _ = tx.send(l.to_owned());
        })
        .unwrap();
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(first.starts_with("stats: in 0"));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
