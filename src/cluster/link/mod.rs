//! The node's link to Redis: two threads, so that no shard ever waits on
//! the network (docs/cluster.md).
//!
//! - The **writer** drains the shards' queue into its pending changes,
//!   one per binding (a later change of a binding replaces the one
//!   waiting), and writes them in pipelined batches through a script that
//!   keeps a binding's greater change ([`SCRIPT`]). While Redis is away
//!   the changes wait, up to `--cluster-queue` bindings; past that a
//!   change is dropped, counted and logged, and reaches Redis with its
//!   binding's next refresh.
//! - The **tailer** loads every AOR from Redis in batches of
//!   [`LOAD_BATCH`] keys (at start, and whenever it finds that the stream
//!   lost entries it had not read), handing each binding to its owner
//!   shard through a bounded inbox, so memory stays bounded whatever the
//!   table's size; then it reads the stream from the position it noted
//!   before loading, so nothing written meanwhile is missed.

mod tailer;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Client, Connection};

use super::side::Routes;
use super::wire::Change;
use crate::location::record::AorRecord;
use tailer::tail_loop;
use writer::{write_loop, Replay};

pub use tailer::LOAD_BATCH;
pub(crate) use writer::Pending;
pub use writer::SCRIPT;

/// Under load (the last round trip carried at least [`BUSY`] changes or
/// entries), the writer and the tailer wait this long before the next
/// one, so that it carries more: fewer wake-ups and system calls per
/// change, for up to this much more delay. At light load they do not
/// wait.
const LINGER: Duration = Duration::from_millis(1);

/// See [`LINGER`].
const BUSY: usize = 16;

/// The longest wait between two tries to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One binding's change for Redis, from an owner shard.
#[derive(Debug)]
pub struct Write {
    /// The AOR.
    pub aor: Box<[u8]>,
    /// The binding's contact (the hash field).
    pub contact: Box<[u8]>,
    /// The encoded change ([`Change::encode`]).
    pub value: Vec<u8>,
    /// When the key may lapse for this change (Unix ms).
    pub expire_at_ms: u64,
}

/// Upper bounds (ms) of the propagation delay histogram's buckets.
pub const DELAY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/// What the link did, for metrics and tests.
#[derive(Default)]
pub struct LinkStats {
    /// The writer's connection is up.
    pub writer_up: AtomicBool,
    /// The tailer's connection is up.
    pub tailer_up: AtomicBool,
    /// Changes waiting to be written.
    pub queued: AtomicU64,
    /// Changes dropped (the queue was full).
    pub dropped: AtomicU64,
    /// Changes written.
    pub written: AtomicU64,
    /// Changes Redis already had a greater one of (another node won).
    pub superseded: AtomicU64,
    /// Round trips that failed (Redis away or refusing).
    pub errors: AtomicU64,
    /// Changes from other nodes read from the stream.
    pub received: AtomicU64,
    /// Values refused (another format, or malformed).
    pub refused: AtomicU64,
    /// AOR keys loaded by the current or last load.
    pub loaded_aors: AtomicU64,
    /// Loads started (the first, and every reload after a gap).
    pub loads: AtomicU64,
    /// The first load is done (this node has every node's bindings).
    pub synced: AtomicBool,
    /// Milliseconds between a change's entry in the stream and its
    /// reading here, by [`DELAY_BUCKETS_MS`] (the last one counts
    /// everything longer).
    pub delay: [AtomicU64; 13],
    /// Sum of those delays, in ms.
    pub delay_sum_ms: AtomicU64,
}

impl LinkStats {
    fn observe_delay(&self, ms: u64) {
        let i = DELAY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(DELAY_BUCKETS_MS.len());
        self.delay[i].fetch_add(1, Ordering::Relaxed);
        self.delay_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// What the link needs to know.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// `--cluster`: `redis://` or `rediss://`, with a password if any.
    pub url: String,
    /// `--node-id`.
    pub node: Box<[u8]>,
    /// Prefix of every key (`PREFIX:aor:AOR`, `PREFIX:changes`).
    pub prefix: String,
    /// `--cluster-queue`: changes that wait for Redis at most.
    pub queue: usize,
    /// `--cluster-stream-max`: the stream's length (approximate trim).
    pub stream_max: usize,
    /// `--cluster-ca`: the roots a `rediss://` server is checked against
    /// (PEM), else the system's.
    pub ca: Option<std::path::PathBuf>,
}

impl LinkConfig {
    /// The key of `aor`'s hash.
    pub fn aor_key(&self, aor: &[u8]) -> Vec<u8> {
        let mut k = format!("{}:aor:", self.prefix).into_bytes();
        k.extend_from_slice(aor);
        k
    }

    /// The stream's key.
    pub fn stream_key(&self) -> String {
        format!("{}:changes", self.prefix)
    }
}

/// Hands a change of an AOR to its owner shard, saying whether it comes
/// from a load of the whole table; false when the owner's inbox is full
/// (the tailer waits and tries again).
pub type Deliver = Arc<dyn Fn(&[u8], &Change, bool) -> bool + Send + Sync>;

/// The link: the shards' queue at once, its threads once started.
pub struct Link {
    /// Where owner shards put their changes.
    pub queue: SyncSender<Write>,
    /// What it did.
    pub stats: Arc<LinkStats>,
    waiting: Option<Waiting>,
    threads: Vec<JoinHandle<()>>,
}

/// What the threads take when they start.
struct Waiting {
    client: Client,
    cfg: LinkConfig,
    rx: Receiver<Write>,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
    replay: Replay,
}

/// Prepares the link: the URL is checked and the shards' queue made; the
/// threads start with [`Link::start`] (after the start-up lines, which
/// their log lines must not come before). Redis itself may be away: the
/// node then serves from its own state and the link keeps trying.
pub fn prepare(
    cfg: LinkConfig,
    stats: Arc<LinkStats>,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
) -> Result<Link, String> {
    let client = match &cfg.ca {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("--cluster-ca {}: {e}", path.display()))?;
            let roots = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(cfg.url.as_str(), roots)
        }
        None => Client::open(cfg.url.as_str()),
    }
    .map_err(|e| format!("--cluster: {e}"))?;
    // The channel holds a burst; the writer's own pending map holds the
    // bound (one change per binding).
    let (queue, rx) = mpsc::sync_channel(cfg.queue.clamp(1, 65_536));
    Ok(Link {
        queue,
        stats,
        waiting: Some(Waiting {
            client,
            cfg,
            rx,
            deliver,
            stop,
            replay: Replay::default(),
        }),
        threads: Vec::new(),
    })
}

impl Link {
    /// Has the writer write this node's bindings among `records` (from
    /// `--state-dir`) once it reaches Redis; before [`Link::start`].
    pub fn replay(&mut self, records: Vec<AorRecord>, routes: Routes) {
        if let Some(w) = &mut self.waiting {
            w.replay = Replay {
                records,
                next: 0,
                routes: Some(routes),
                node: w.cfg.node.clone(),
            };
        }
    }

    /// Starts the writer and the tailer (once).
    pub fn start(&mut self) -> std::io::Result<()> {
        let Some(w) = self.waiting.take() else {
            return Ok(());
        };
        let Waiting {
            client,
            cfg,
            rx,
            deliver,
            stop,
            replay,
        } = w;
        // The writer ends when every sender is gone (the shards stopped),
        // not on the stop flag: what they queued last is still written.
        let (c, s, cl) = (cfg.clone(), self.stats.clone(), client.clone());
        self.threads.push(
            std::thread::Builder::new()
                .name("cluster-writer".into())
                .spawn(move || write_loop(&cl, &c, &rx, replay, &s))?,
        );
        let s = self.stats.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name("cluster-tailer".into())
                .spawn(move || tail_loop(&client, &cfg, &*deliver, &s, &stop))?,
        );
        Ok(())
    }

    /// Waits for the threads (after the stop flag is set; the writer
    /// writes what waits, for a second at most).
    pub fn join(self) {
        drop(self.queue);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn connect(client: &Client, read_timeout: Duration) -> redis::RedisResult<Connection> {
    let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(read_timeout))?;
    con.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Tries to reach Redis again after a growing pause.
struct Retry {
    next: Instant,
    pause: Duration,
    down_since: Option<Instant>,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            next: Instant::now(),
            pause: Duration::from_millis(100),
            down_since: None,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// A failure: says so once per outage, waits longer next time.
    fn failed(&mut self, who: &str, e: &redis::RedisError) {
        if self.down_since.is_none() {
            tracing::warn!("cluster {who}: Redis unreachable ({e}); serving from this node's state and retrying");
            self.down_since = Some(Instant::now());
        }
        self.next = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
    }

    fn succeeded(&mut self, who: &str) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                "cluster {who}: Redis reachable again after {:.1} s",
                since.elapsed().as_secs_f64()
            );
        }
        self.pause = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_fall_in_their_buckets() {
        let s = LinkStats::default();
        for ms in [0, 1, 3, 7000] {
            s.observe_delay(ms);
        }
        assert_eq!(s.delay[0].load(Ordering::Relaxed), 2);
        assert_eq!(s.delay[2].load(Ordering::Relaxed), 1);
        assert_eq!(s.delay[12].load(Ordering::Relaxed), 1);
        assert_eq!(s.delay_sum_ms.load(Ordering::Relaxed), 7004);
    }
}
