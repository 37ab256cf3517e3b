//! `--metrics-listen ADDR`: Prometheus text exposition of every shard's
//! counters at `GET /metrics`, from one thread off the hot path. The shards keep writing their relaxed counters; a scrape
//! only reads them, so it never slows a shard.
//!
//! The exposition format comes from `prometheus-client` (the Prometheus
//! project's Rust client) through a collector that reads the counters at
//! scrape time, and HTTP from `tiny_http` (a small synchronous server: one
//! thread, no async runtime for a once-in-15-seconds request).
//!
//! Every series carries a `shard` label; totals are `sum without (shard)`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::io::stream::Deadline;
use crate::proxy::DropReason;
use crate::shard::counters::{ShardCounters, HANDLE_BUCKETS_US};
use crate::shard::Shared;
use crate::sip::Method;
use crate::transport::Transport;

/// The counters a scrape reads, the inboxes, and what the server is.
struct ShardCollector {
    counters: Arc<Vec<CachePadded<ShardCounters>>>,
    shared: Arc<Shared>,
    backend: &'static str,
}

impl std::fmt::Debug for ShardCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCollector")
            .field("shards", &self.counters.len())
            .field("backend", &self.backend)
            .finish()
    }
}

type Pick = fn(&ShardCounters) -> &AtomicU64;

/// Picks the `i`th counter of a labelled family from a shard's counters.
type PickNth = fn(&ShardCounters, usize) -> &AtomicU64;

/// Counters: name (without `_total`), help, field.
const COUNTERS: &[(&str, &str, Pick)] = &[
    ("sipshard_received", "Datagrams received.", |c| &c.received),
    ("sipshard_forwarded_requests", "Requests forwarded.", |c| {
        &c.forwarded_requests
    }),
    (
        "sipshard_forwarded_responses",
        "Responses forwarded.",
        |c| &c.forwarded_responses,
    ),
    (
        "sipshard_parse_errors",
        "Datagrams that did not parse as SIP.",
        |c| &c.parse_errors,
    ),
    (
        "sipshard_send_failed",
        "Datagrams the kernel refused to send.",
        |c| &c.send_failed,
    ),
    (
        "sipshard_registrations",
        "REGISTERs that changed bindings (applied by the owner shard).",
        |c| &c.registered,
    ),
    (
        "sipshard_bindings_created",
        "Bindings created by REGISTERs the shard owns.",
        |c| &c.bindings_created,
    ),
    (
        "sipshard_bindings_refreshed",
        "Bindings written again by REGISTERs the shard owns.",
        |c| &c.bindings_refreshed,
    ),
    (
        "sipshard_bindings_removed",
        "Bindings removed by REGISTERs (expires=0, *, over --max-contacts).",
        |c| &c.bindings_removed,
    ),
    (
        "sipshard_bindings_expired",
        "Bindings that lapsed and were removed by the expiry wheel.",
        |c| &c.bindings_expired,
    ),
    (
        "sipshard_cluster_applied",
        "Other nodes' changes of bindings that changed this node's (--cluster).",
        |c| &c.cluster_applied,
    ),
    (
        "sipshard_registers_handed_off",
        "REGISTERs passed to their AOR's owner shard.",
        |c| &c.handed_off,
    ),
    (
        "sipshard_registers_refused",
        "REGISTERs answered 503 (owner inbox full or log failing).",
        |c| &c.registers_refused,
    ),
    (
        "sipshard_store_errors",
        "Registration log writes or syncs that failed.",
        |c| &c.store_errors,
    ),
    (
        "sipshard_auth_accepted",
        "Requests whose digest credentials were accepted.",
        |c| &c.auth_accepted,
    ),
    (
        "sipshard_auth_challenges",
        "401/407 digest challenges sent.",
        |c| &c.auth_challenges,
    ),
    (
        "sipshard_auth_failures",
        "Credentials refused: wrong password, unknown user, forged or replayed nonce, or another user's (403).",
        |c| &c.auth_failures,
    ),
    (
        "sipshard_auth_bans",
        "Sources banned for failing authentication too often (--auth-fail-limit).",
        |c| &c.auth_bans,
    ),
    (
        "sipshard_sources_banned",
        "Sources banned for going over --rate-limit.",
        |c| &c.sources_banned,
    ),
    (
        "sipshard_connections_opened",
        "Connections (TCP or TLS) the shard opened to next hops.",
        |c| &c.conns_opened,
    ),
    (
        "sipshard_connect_failed",
        "Messages to a next hop whose TCP connection could not be made.",
        |c| &c.connect_failed,
    ),
    (
        "sipshard_connection_messages_crossed",
        "Messages for a connection another shard owns, mailed to that shard.",
        |c| &c.conn_msgs_crossed,
    ),
    (
        "sipshard_datagrams_crossed_family",
        "Datagrams for an address of the other IP family than the shard's socket, mailed to a shard whose socket has it.",
        |c| &c.family_crossed,
    ),
    (
        "sipshard_flows_failed",
        "Requests for a registered flow whose connection had gone, answered 430 (RFC 5626).",
        |c| &c.flows_failed,
    ),
    (
        "sipshard_tls_handshakes",
        "TLS handshakes completed (TLS and WSS connections, accepted and opened).",
        |c| &c.tls_handshakes,
    ),
    (
        "sipshard_connections_unframeable",
        "Connections closed because their bytes could not be framed (RFC 3261 18.3), or their WebSocket handshake or frames were broken.",
        |c| &c.conns_unframeable,
    ),
    (
        "sipshard_connections_overflowed",
        "Connections closed because the peer did not read its responses.",
        |c| &c.conns_overflowed,
    ),
    (
        "sipshard_connection_sends_gone",
        "Messages for a connection that had closed.",
        |c| &c.conn_sends_gone,
    ),
    (
        "sipshard_transactions_created",
        "Transactions opened by the stateful proxy (a server transaction and its branch's client transaction).",
        |c| &c.tx_created,
    ),
    (
        "sipshard_retransmissions_absorbed",
        "Retransmitted requests, ACKs and responses absorbed by their transaction.",
        |c| &c.tx_absorbed,
    ),
    (
        "sipshard_retransmissions_sent",
        "Requests and final responses the stateful proxy sent again (RFC 3261 Timers A, E, G).",
        |c| &c.tx_resent,
    ),
    (
        "sipshard_transactions_refused",
        "New requests answered 503 because the shard held --max-transactions.",
        |c| &c.tx_refused,
    ),
    (
        "sipshard_transactions_evicted",
        "Finished transactions ended early (before Timers I, J, K, L, M) to make room for a new one at --max-transactions.",
        |c| &c.tx_evicted,
    ),
    (
        "sipshard_transaction_timeouts",
        "Branches that got no final response in time (Timers B, F and C).",
        |c| &c.tx_timeouts,
    ),
    (
        "sipshard_transaction_responses_mailed",
        "Responses mailed to the shard that holds their client transaction.",
        |c| &c.tx_responses_mailed,
    ),
    (
        "sipshard_connection_responses_resent",
        "Responses whose connection had closed, sent over a new one to the client's Via address (RFC 3261 18.2.2).",
        |c| &c.conn_responses_resent,
    ),
];

/// Gauges: name, help, field.
const GAUGES: &[(&str, &str, Pick)] = &[
    (
        "sipshard_aors",
        "AORs in the shard's location replica.",
        |c| &c.aors,
    ),
    (
        "sipshard_transactions_open",
        "Transactions the shard holds (--mode stateful; at most --max-transactions).",
        |c| &c.tx_open,
    ),
    (
        "sipshard_replica_updates_waiting",
        "Replica updates waiting for room in other shards' inboxes.",
        |c| &c.updates_waiting,
    ),
    (
        "sipshard_replica_delay_max_microseconds",
        "Longest publish-to-apply delay of a replica update seen by the shard.",
        |c| &c.replica_delay_max_us,
    ),
];

impl Collector for ShardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let shard_labels: Vec<[(&str, String); 1]> = (0..self.counters.len())
            .map(|i| [("shard", i.to_string())])
            .collect();
        for (name, help, pick) in COUNTERS {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (c, labels) in self.counters.iter().zip(&shard_labels) {
                ConstCounter::new(read(pick(c))).encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, pick) in GAUGES {
            let probe = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (c, labels) in self.counters.iter().zip(&shard_labels) {
                let v = i64::try_from(read(pick(c))).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(family.encode_family(labels)?)?;
            }
        }
        let classes: Vec<String> = (1..7).map(|c| format!("{c}xx")).collect();
        let methods: Vec<String> = Method::COUNTED.iter().map(|m| m.to_string()).collect();
        let reasons: Vec<String> = DropReason::ALL
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        // Connections by transport: every stream transport (not UDP).
        let transports: Vec<String> = Transport::ALL[1..]
            .iter()
            .map(|t| t.via_token().to_ascii_lowercase())
            .collect();
        let deadlines: Vec<String> = Deadline::ALL.iter().map(|d| d.name().to_string()).collect();
        let families: [(&str, &str, &str, &[String], PickNth); 10] = [
            (
                "sipshard_connections_refused",
                "Connections closed at accept: over the shard's share of --max-connections (or TLS without a configuration), by transport.",
                "transport",
                &transports,
                |c, i| &c.conns_refused_by[i + 1],
            ),
            (
                "sipshard_connections_refused_per_ip",
                "Connections closed at accept: their IP address had its share of --max-connections-per-ip, by transport.",
                "transport",
                &transports,
                |c, i| &c.conns_refused_per_ip_by[i + 1],
            ),
            (
                "sipshard_connections_tls_failed",
                "TLS connections closed for a failed handshake or a TLS error (an alert sent), by transport (tls, wss).",
                "transport",
                &transports,
                |c, i| &c.conns_tls_failed_by[i + 1],
            ),
            (
                "sipshard_connections_timed_out",
                "Connections closed at a deadline, by the one that fired: handshake (connect, TLS, WebSocket upgrade), first_byte, message, idle (the --tcp-*-timeout flags).",
                "deadline",
                &deadlines,
                |c, i| &c.conns_timed_out_by[i],
            ),
            (
                "sipshard_connections_accepted",
                "Connections accepted, by transport.",
                "transport",
                &transports,
                |c, i| &c.conns_accepted_by[i + 1],
            ),
            (
                "sipshard_connections_closed",
                "Connections closed for any reason, ours to next hops included, by transport.",
                "transport",
                &transports,
                |c, i| &c.conns_closed_by[i + 1],
            ),
            (
                "sipshard_replies",
                "Local replies, by status class.",
                "class",
                &classes,
                |c, i| &c.replies[i + 1],
            ),
            (
                "sipshard_responses",
                "Responses received, by status class.",
                "class",
                &classes,
                |c, i| &c.responses[i + 1],
            ),
            (
                "sipshard_requests",
                "Requests received, by method.",
                "method",
                &methods,
                |c, i| &c.requests[i],
            ),
            (
                "sipshard_drops",
                "Datagrams dropped, by reason.",
                "reason",
                &reasons,
                |c, i| &c.drops[DropReason::ALL[i] as usize],
            ),
        ];
        for (name, help, label, values, pick) in families {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (c, labels) in self.counters.iter().zip(&shard_labels) {
                for (i, v) in values.iter().enumerate() {
                    let l = [labels[0].clone(), (label, v.clone())];
                    ConstCounter::new(read(pick(c, i))).encode(family.encode_family(&l)?)?;
                }
            }
        }
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "sipshard_connections_open",
            "Connections the shard owns, ours to next hops included, by transport.",
            None,
            probe.metric_type(),
        )?;
        for (c, labels) in self.counters.iter().zip(&shard_labels) {
            for (i, t) in transports.iter().enumerate() {
                let l = [labels[0].clone(), ("transport", t.clone())];
                let v = i64::try_from(read(&c.conns_open_by[i + 1])).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(family.encode_family(&l)?)?;
            }
        }
        // Read live, not published by the shard: a shard that stalls
        // shows its mail piling up.
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "sipshard_inbox_depth",
            "Mails waiting in the shard's inbox (REGISTERs for AORs it owns, replica updates, answers to send).",
            None,
            probe.metric_type(),
        )?;
        for (inbox, labels) in self.shared.inboxes.iter().zip(&shard_labels) {
            let v = i64::try_from(inbox.len()).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sipshard_inbox_capacity",
            "Mails the shard's inbox holds at most (a REGISTER beyond it is answered 503).",
            None,
            probe.metric_type(),
        )?;
        for (inbox, labels) in self.shared.inboxes.iter().zip(&shard_labels) {
            let v = i64::try_from(inbox.capacity()).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sipshard_handle",
            "Time from just before a datagram is handled to just after its answer or forwarded copy is queued, for one datagram in 64.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (c, labels) in self.counters.iter().zip(&shard_labels) {
            let h = &c.handle_time;
            let mut buckets: Vec<(f64, u64)> = HANDLE_BUCKETS_US
                .iter()
                .zip(&h.buckets)
                .map(|(&us, b)| (us as f64 / 1e6, read(b)))
                .collect();
            // The encoder writes f64::MAX as "+Inf".
            buckets.push((f64::MAX, h.buckets.last().map_or(0, read)));
            let count = buckets.iter().map(|b| b.1).sum();
            let sum = read(&h.sum_ns) as f64 / 1e9;
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "sipshard_info",
            "The running server: version and I/O backend.",
            None,
            info.metric_type(),
        )?;
        let l = [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("io", self.backend.to_string()),
        ];
        info.encode(family.encode_family(&l)?)?;
        self.encode_upstreams(&mut encoder)?;
        self.encode_cluster(&mut encoder)
    }
}

impl ShardCollector {
    /// Each `--upstream`'s health (`--probe-interval`): in the rotation or
    /// not, probes missed, the last answered probe's round trip.
    /// The cluster link's series (`--cluster`), without a shard label: the
    /// link is the node's.
    fn encode_cluster(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(st) = &self.shared.cluster else {
            return Ok(());
        };
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "sipshard_cluster_link_up",
            "1 while the link's connection to Redis is up, by side (writer, tailer).",
            None,
            gauge.metric_type(),
        )?;
        for (side, up) in [("writer", &st.writer_up), ("tailer", &st.tailer_up)] {
            let v = i64::from(up.load(Ordering::Relaxed));
            ConstGauge::new(v).encode(family.encode_family(&[("side", side)])?)?;
        }
        let gauges: [(&str, &str, u64); 3] = [
            (
                "sipshard_cluster_queued",
                "Changes waiting to be written to Redis (one per binding).",
                read(&st.queued),
            ),
            (
                "sipshard_cluster_loaded_aors",
                "AORs read from Redis by the current or last load.",
                read(&st.loaded_aors),
            ),
            (
                "sipshard_cluster_synced",
                "1 once the first load from Redis is done.",
                u64::from(st.synced.load(Ordering::Relaxed)),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            let family = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(family)?;
        }
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("sipshard_cluster_written", "Changes written to Redis.", &st.written),
            (
                "sipshard_cluster_superseded",
                "Changes Redis held a later one of (another node's won).",
                &st.superseded,
            ),
            (
                "sipshard_cluster_dropped",
                "Changes dropped because --cluster-queue bindings already waited.",
                &st.dropped,
            ),
            (
                "sipshard_cluster_errors",
                "Round trips to Redis that failed.",
                &st.errors,
            ),
            (
                "sipshard_cluster_received",
                "Other nodes' changes read from the stream.",
                &st.received,
            ),
            (
                "sipshard_cluster_refused",
                "Values read from Redis that were not changes of this format.",
                &st.refused,
            ),
            (
                "sipshard_cluster_loads",
                "Loads of every AOR from Redis (at start, and after the stream lost entries unread).",
                &st.loads,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(read(v));
            let family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(family)?;
        }
        let mut family = encoder.encode_descriptor(
            "sipshard_cluster_delay",
            "From a change's entry in the Redis stream to its reading here (propagation).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let mut buckets: Vec<(f64, u64)> = crate::cluster::link::DELAY_BUCKETS_MS
            .iter()
            .zip(&st.delay)
            .map(|(&ms, b)| (ms as f64 / 1e3, read(b)))
            .collect();
        buckets.push((f64::MAX, st.delay.last().map_or(0, read)));
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = read(&st.delay_sum_ms) as f64 / 1e3;
        family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        Ok(())
    }

    fn encode_upstreams(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let proxy = &self.shared.proxy;
        if proxy.upstreams.is_empty() {
            return Ok(());
        }
        let labels: Vec<[(&str, String); 1]> = proxy
            .upstreams
            .iter()
            .map(|u| [("upstream", u.to_string())])
            .collect();
        let states: Vec<(bool, u64, u64)> = (0..labels.len())
            .map(|i| proxy.health.snapshot(i).unwrap_or((true, 0, 0)))
            .collect();
        let probe = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "sipshard_upstream_up",
            "1 while the upstream is in the rotation; 0 once it missed --probe-threshold probes in a row, until it answers again.",
            None,
            probe.metric_type(),
        )?;
        for (l, s) in labels.iter().zip(&states) {
            ConstGauge::new(i64::from(s.0)).encode(family.encode_family(l)?)?;
        }
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "sipshard_upstream_probes_missed",
            "OPTIONS probes the upstream did not answer (or answered 503) before the next was due.",
            None,
            counter.metric_type(),
        )?;
        for (l, s) in labels.iter().zip(&states) {
            ConstCounter::new(s.1).encode(family.encode_family(l)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sipshard_upstream_probe_rtt",
            "Round trip of the upstream's last answered probe (0 before any answer).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (l, s) in labels.iter().zip(&states) {
            ConstGauge::new(s.2 as f64 / 1e6).encode(family.encode_family(l)?)?;
        }
        Ok(())
    }
}

/// The exposition text for these counters and inboxes (what `/metrics`
/// serves).
pub fn render(
    counters: &Arc<Vec<CachePadded<ShardCounters>>>,
    shared: &Arc<Shared>,
    backend: &'static str,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ShardCollector {
        counters: counters.clone(),
        shared: shared.clone(),
        backend,
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The metrics endpoint, serving until `stop` is set.
pub struct MetricsServer {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from its own thread.
    pub fn start(
        addr: SocketAddr,
        counters: Arc<Vec<CachePadded<ShardCounters>>>,
        shared: Arc<Shared>,
        backend: &'static str,
        stop: Arc<AtomicBool>,
    ) -> io::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr).map_err(io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("metrics listener has no IP address"))?;
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) else {
                        continue;
                    };
                    let response = if req.url() == "/metrics" {
                        let body = render(&counters, &shared, backend);
                        let ct = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                        );
                        let mut r = tiny_http::Response::from_string(body);
                        if let Ok(h) = ct {
                            r = r.with_header(h);
                        }
                        r
                    } else {
                        tiny_http::Response::from_string("not found: try /metrics\n")
                            .with_status_code(404)
                    };
                    // A client that went away is no concern of ours.
                    let _ = req.respond(response);
                }
            })?;
        Ok(MetricsServer {
            addr,
            thread: Some(thread),
        })
    }

    /// Waits for the thread (after `stop` was set).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyConfig;
    use crate::registrar::RegistrarConfig;
    use crate::shard::counters::add;
    use crate::shard::mail::Mail;

    fn shared(shards: usize) -> Arc<Shared> {
        let proxy = ProxyConfig::at("192.0.2.1:5060".parse().unwrap());
        let listen_of = vec![0; shards];
        Arc::new(
            Shared::with_inbox_capacity(proxy, RegistrarConfig::default(), listen_of, 8).unwrap(),
        )
    }

    #[test]
    fn exposition_has_per_shard_series() {
        let counters: Arc<Vec<CachePadded<ShardCounters>>> = Arc::new(
            (0..2)
                .map(|_| CachePadded::new(ShardCounters::default()))
                .collect(),
        );
        add(&counters[1].received, 7);
        counters[0].dropped(DropReason::Denied);
        add(&counters[0].replies[4], 3);
        add(&counters[1].responses[1], 5);
        let shared = shared(2);
        let text = render(&counters, &shared, "mmsg");
        assert!(
            text.contains("sipshard_received_total{shard=\"1\"} 7"),
            "{text}"
        );
        assert!(text.contains("sipshard_drops_total{shard=\"0\",reason=\"denied\"} 1"));
        assert!(text.contains("sipshard_replies_total{shard=\"0\",class=\"4xx\"} 3"));
        assert!(text.contains("sipshard_responses_total{shard=\"1\",class=\"1xx\"} 5"));
        assert!(text.contains("sipshard_info{version="));
        add(&counters[1].requests[0], 2);
        let text = render(&counters, &shared, "mmsg");
        assert!(text.contains("sipshard_requests_total{shard=\"1\",method=\"INVITE\"} 2"));
        assert!(text.contains("io=\"mmsg\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn inbox_depth_and_the_handle_time_histogram() {
        use std::time::Duration;
        let counters: Arc<Vec<CachePadded<ShardCounters>>> = Arc::new(
            (0..2)
                .map(|_| CachePadded::new(ShardCounters::default()))
                .collect(),
        );
        let shared = shared(2);
        for _ in 0..3 {
            let mail = Mail::Send {
                data: Box::new([]),
                to: crate::transport::Dest::udp("192.0.2.9:5060".parse().unwrap()),
            };
            assert!(shared.inboxes[1].push(mail).is_ok());
        }
        let h = &counters[0].handle_time;
        h.record(Duration::from_nanos(800));
        h.record(Duration::from_nanos(1800));
        h.record(Duration::from_micros(40));
        h.record(Duration::from_millis(7));
        let text = render(&counters, &shared, "mmsg");
        assert!(
            text.contains("sipshard_inbox_depth{shard=\"0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("sipshard_inbox_depth{shard=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sipshard_inbox_capacity{shard=\"1\"} 8\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sipshard_handle_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT sipshard_handle_seconds seconds"),
            "{text}"
        );
        assert!(text.contains("sipshard_handle_seconds_count{shard=\"0\"} 4\n"));
        assert!(text.contains("sipshard_handle_seconds_count{shard=\"1\"} 0\n"));
        assert!(text.contains("sipshard_handle_seconds_sum{shard=\"0\"} 0.0070426"));
        // Cumulative buckets: le is in seconds.
        let bucket = |le: &str| -> u64 {
            let head = format!("sipshard_handle_seconds_bucket{{le=\"{le}\",shard=\"0\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(head.as_str()))
                .unwrap_or_else(|| panic!("no bucket le={le}: {text}"))
                .parse()
                .unwrap()
        };
        let lines = text
            .lines()
            .filter(|l| {
                l.starts_with("sipshard_handle_seconds_bucket{") && l.contains("shard=\"0\"")
            })
            .count();
        assert_eq!(lines, HANDLE_BUCKETS_US.len() + 1, "{text}");
        assert_eq!(bucket("+Inf"), 4);
        let les: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("sipshard_handle_seconds_bucket{") && l.contains("shard=\"0\"")
            })
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        let counts: Vec<u64> = les.iter().map(|le| bucket(le)).collect();
        // 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000 µs, +Inf.
        assert_eq!(counts, [1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4], "{les:?}");
        let first: f64 = les[0].parse().unwrap();
        assert!((first - 1e-6).abs() < 1e-12, "{les:?}");
    }
}
