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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Client, Connection, Value};

use super::side::Routes;
use super::wire::Change;
use crate::location::record::AorRecord;

/// The script every write goes through. KEYS: the AOR's hash, the
/// stream. ARGV: the contact (field), the value, when the key may lapse
/// (Unix ms), now (Unix ms), the stream's length, the AOR, how long a
/// removal is kept (ms). It writes the value only if it is a greater
/// change than the field's (the same [`super::wire::OrderKey`] bytes,
/// compared byte by byte), extends the key's life to cover it, drops
/// lapsed fields once the hash has grown, and appends the change to the
/// stream; 1 when written, 0 when an equal or greater change was there.
pub const SCRIPT: &str = r#"
local function key_of(v)
  if string.sub(v, 1, 2) ~= 'S1' then return nil end
  local n = tonumber(string.sub(v, 19, 20), 16)
  if not n then return nil end
  return string.sub(v, 3, 44 + n)
end
local function greater(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return la > lb
end
local new = key_of(ARGV[2])
if not new then return redis.error_reply('sipshard: not a change') end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ck = key_of(cur)
  if ck and not greater(new, ck) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[1]) > 16 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local k = key_of(v)
    if k then
      local n = tonumber(string.sub(v, 19, 20), 16)
      local kind = string.sub(v, 45 + n, 45 + n)
      local stamp = tonumber(string.sub(v, 3, 18), 16)
      local expires = tonumber(string.sub(v, 46 + n, 61 + n), 16)
      if (kind == 'R' and stamp + tonumber(ARGV[7]) < now)
        or (kind == 'L' and expires and expires * 1000 < now) then
        redis.call('HDEL', KEYS[1], all[i])
      end
    end
  end
end
local at = tonumber(ARGV[3])
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 or now + pttl < at then redis.call('PEXPIREAT', KEYS[1], at) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'a', ARGV[6], 'c', ARGV[1], 'v', ARGV[2])
return 1
"#;

/// AOR keys loaded per round trip.
pub const LOAD_BATCH: usize = 500;

/// Changes written per pipelined round trip.
const WRITE_BATCH: usize = 512;

/// Stream entries read per round trip.
const READ_BATCH: usize = 1000;

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

/// This node's own bindings from `--state-dir`, written to Redis once the
/// writer first connects: those a kill took before they reached Redis
/// get there now (the script keeps anything greater Redis holds).
#[derive(Default)]
struct Replay {
    records: Vec<AorRecord>,
    next: usize,
    routes: Option<Routes>,
    node: Box<[u8]>,
}

impl Replay {
    fn is_empty(&self) -> bool {
        self.next >= self.records.len()
    }

    /// The writes of the next records, about `n` bindings' worth.
    fn take(&mut self, n: usize, now: u64) -> Vec<Write> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(rec) = self.records.get(self.next) else {
                break;
            };
            self.next += 1;
            for b in rec.bindings() {
                if *b.node != *self.node || b.expires_at <= now {
                    continue;
                }
                let binding = b.to_binding();
                let route = self
                    .routes
                    .as_ref()
                    .map_or_else(Vec::new, |r| r.route_for(&binding));
                let change = Change {
                    kind: super::wire::Kind::Live,
                    route: route.into(),
                    binding,
                };
                out.push(Write {
                    aor: rec.aor().into(),
                    contact: change.binding.contact.clone(),
                    value: change.encode(),
                    expire_at_ms: change.binding.expires_at.saturating_mul(1000),
                });
            }
        }
        if self.is_empty() {
            self.records = Vec::new();
        }
        out
    }
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

/// A binding: its AOR and contact.
type BindingKey = (Box<[u8]>, Box<[u8]>);

/// Changes waiting, one per binding, oldest first: in the writer for
/// Redis, and in an owner shard for the writer's channel when it is full.
#[derive(Default)]
pub(super) struct Pending {
    by_key: HashMap<BindingKey, Write>,
    order: VecDeque<BindingKey>,
}

impl Pending {
    /// Queues `w`, replacing a waiting change of its binding; false when
    /// it is a new binding and `max` wait already.
    pub(super) fn put(&mut self, w: Write, max: usize) -> bool {
        let key = (w.aor.clone(), w.contact.clone());
        if let Some(slot) = self.by_key.get_mut(&key) {
            *slot = w;
            return true;
        }
        if self.by_key.len() >= max {
            return false;
        }
        self.order.push_back(key.clone());
        self.by_key.insert(key, w);
        true
    }

    /// Puts back a change that could not be written, unless a later one
    /// of its binding came meanwhile.
    pub(super) fn put_back(&mut self, w: Write) {
        let key = (w.aor.clone(), w.contact.clone());
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_key.entry(key.clone()) {
            e.insert(w);
            self.order.push_front(key);
        }
    }

    pub(super) fn take(&mut self, n: usize) -> Vec<Write> {
        let mut out = Vec::with_capacity(n.min(self.by_key.len()));
        while out.len() < n {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(w) = self.by_key.remove(&key) {
                out.push(w);
            }
        }
        out
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// A connection and the script's digest on it.
struct Session {
    con: Connection,
    sha: String,
}

fn connect(client: &Client, read_timeout: Duration) -> redis::RedisResult<Connection> {
    let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(read_timeout))?;
    con.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

fn open_session(client: &Client) -> redis::RedisResult<Session> {
    let mut con = connect(client, Duration::from_secs(5))?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query(&mut con)?;
    Ok(Session { con, sha })
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

fn write_loop(
    client: &Client,
    cfg: &LinkConfig,
    rx: &Receiver<Write>,
    mut replay: Replay,
    stats: &LinkStats,
) {
    if !replay.is_empty() {
        tracing::info!(
            "cluster: {} AOR(s) from --state-dir to write to Redis once it is reached",
            replay.records.len()
        );
    }
    let mut pending = Pending::default();
    let mut last_batch = 0;
    let mut session: Option<Session> = None;
    let mut retry = Retry::new();
    let mut last_drop_log = Instant::now() - Duration::from_secs(60);
    let stream = cfg.stream_key();
    // Set once every sender is gone (the shards have stopped): what
    // waits is written for a second at most, then the writer ends.
    let mut stopping_since: Option<Instant> = None;
    loop {
        if let Some(since) = stopping_since {
            if (pending.len() == 0 && replay.is_empty()) || since.elapsed() > Duration::from_secs(1)
            {
                break;
            }
        }
        let idle = pending.len() == 0 && replay.is_empty();
        if !idle && session.is_some() && last_batch >= BUSY && pending.len() < WRITE_BATCH {
            std::thread::sleep(LINGER);
        }
        let wait = if idle {
            Duration::from_millis(100)
        } else if session.is_none() {
            Duration::from_millis(20)
        } else {
            Duration::ZERO
        };
        let mut take = |w: Write, pending: &mut Pending| {
            if !pending.put(w, cfg.queue) {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                if last_drop_log.elapsed() > Duration::from_secs(10) {
                    last_drop_log = Instant::now();
                    tracing::warn!(
                        "cluster: {} changes wait for Redis (--cluster-queue); changes of further \
                         bindings are dropped until it returns (they reach it at their next refresh)",
                        cfg.queue
                    );
                }
            }
        };
        match rx.recv_timeout(wait) {
            Ok(w) => take(w, &mut pending),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if idle => break,
            Err(RecvTimeoutError::Disconnected) => {
                stopping_since.get_or_insert_with(Instant::now);
                if session.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        while let Ok(w) = rx.try_recv() {
            take(w, &mut pending);
        }
        stats.queued.store(pending.len() as u64, Ordering::Relaxed);
        if pending.len() == 0 && replay.is_empty() {
            continue;
        }
        if session.is_none() && retry.due() {
            match open_session(client) {
                Ok(s) => {
                    retry.succeeded("writer");
                    session = Some(s);
                }
                Err(e) => retry.failed("writer", &e),
            }
        }
        stats.writer_up.store(session.is_some(), Ordering::Relaxed);
        let Some(s) = session.as_mut() else {
            continue;
        };
        let now = unix_ms();
        let batch = match replay.is_empty() {
            true => pending.take(WRITE_BATCH),
            false => replay.take(WRITE_BATCH, now / 1000),
        };
        let mut pipe = redis::pipe();
        for w in &batch {
            pipe.cmd("EVALSHA")
                .arg(&s.sha)
                .arg(2)
                .arg(cfg.aor_key(&w.aor))
                .arg(&stream)
                .arg(&*w.contact)
                .arg(&w.value)
                .arg(w.expire_at_ms)
                .arg(now)
                .arg(cfg.stream_max)
                .arg(&*w.aor)
                .arg(super::merge::TOMBSTONE_SECS * 1000);
        }
        match pipe.query::<Vec<i64>>(&mut s.con) {
            Ok(results) => {
                last_batch = results.len();
                let won = results.iter().filter(|&&r| r == 1).count() as u64;
                stats.written.fetch_add(won, Ordering::Relaxed);
                stats
                    .superseded
                    .fetch_add(results.len() as u64 - won, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let retriable = e.code() == Some("NOSCRIPT")
                    || e.code() == Some("READONLY")
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout();
                if !retriable {
                    // Refused for what it is (a key of another type that
                    // another program wrote): retrying cannot help. The
                    // batch's other writes ran (a pipeline goes on past an
                    // error); the batch is not tried again.
                    tracing::warn!("cluster writer: Redis refused a write ({e}); batch dropped");
                    stats
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    continue;
                }
                for w in batch.into_iter().rev() {
                    pending.put_back(w);
                }
                // Over the bound only after a replay batch failed.
                while pending.len() > cfg.queue {
                    let _ = pending.take(1);
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                if e.code() == Some("NOSCRIPT") {
                    // Redis restarted (scripts are not persisted): load
                    // it again on the same connection.
                    match redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(SCRIPT)
                        .query(&mut s.con)
                    {
                        Ok(sha) => s.sha = sha,
                        Err(_) => session = None,
                    }
                } else {
                    // Away, or a replica now (READONLY after a failover):
                    // a new connection may reach the primary.
                    retry.failed("writer", &e);
                    session = None;
                }
            }
        }
        stats.queued.store(pending.len() as u64, Ordering::Relaxed);
    }
    stats.writer_up.store(false, Ordering::Relaxed);
}

/// A stream entry id, as (ms, sequence).
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn tail_loop(
    client: &Client,
    cfg: &LinkConfig,
    deliver: &(dyn Fn(&[u8], &Change, bool) -> bool + Send + Sync),
    stats: &LinkStats,
    stop: &AtomicBool,
) {
    let stream = cfg.stream_key();
    let mut con: Option<Connection> = None;
    let mut retry = Retry::new();
    // None: load before reading the stream.
    let mut last: Option<String> = None;
    // After a (re)connect or a load, before reading on: the stream may
    // have been trimmed past `last` meanwhile (a busy cluster's reads are
    // never empty, so the idle check alone would not see it).
    let mut check_gap = false;
    while !stop.load(Ordering::Relaxed) {
        if con.is_none() {
            if !retry.due() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match connect(client, Duration::from_secs(5)) {
                Ok(c) => {
                    retry.succeeded("tailer");
                    con = Some(c);
                    check_gap = true;
                }
                Err(e) => {
                    retry.failed("tailer", &e);
                    continue;
                }
            }
        }
        stats.tailer_up.store(con.is_some(), Ordering::Relaxed);
        let Some(c) = con.as_mut() else { continue };
        let step = match &last {
            None => load(c, cfg, deliver, stats, stop).map(Some),
            Some(id) if check_gap => gap_check(c, &stream, id, cfg.stream_max),
            Some(id) => {
                let mut got = 0;
                let r = read(c, id, cfg, deliver, stats, stop, &mut got);
                if got >= BUSY {
                    std::thread::sleep(LINGER);
                }
                r
            }
        };
        match step {
            Ok(Some(id)) => {
                check_gap = last.is_none();
                last = Some(id);
            }
            Ok(None) => last = None,
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                retry.failed("tailer", &e);
                con = None;
                stats.tailer_up.store(false, Ordering::Relaxed);
            }
        }
    }
    stats.tailer_up.store(false, Ordering::Relaxed);
}

/// Hands a change to its owner, waiting while the owner's inbox is full
/// (that wait is what bounds a load's memory).
fn hand_over(
    deliver: &(dyn Fn(&[u8], &Change, bool) -> bool + Send + Sync),
    aor: &[u8],
    change: &Change,
    loading: bool,
    stop: &AtomicBool,
) {
    while !deliver(aor, change, loading) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Loads every AOR, noting the stream's last entry first: returns the id
/// to read the stream from.
fn load(
    con: &mut Connection,
    cfg: &LinkConfig,
    deliver: &(dyn Fn(&[u8], &Change, bool) -> bool + Send + Sync),
    stats: &LinkStats,
    stop: &AtomicBool,
) -> redis::RedisResult<String> {
    let stream = cfg.stream_key();
    let newest: Value = redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    let from = match &newest {
        Value::Array(entries) => entries
            .first()
            .and_then(|e| match e {
                Value::Array(parts) => parts.first().and_then(text),
                _ => None,
            })
            .map(|id| String::from_utf8_lossy(id).into_owned()),
        _ => None,
    }
    .unwrap_or_else(|| "0-0".to_string());
    stats.loads.fetch_add(1, Ordering::Relaxed);
    stats.loaded_aors.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut said = Instant::now();
    let pattern = format!("{}:aor:*", cfg.prefix);
    let prefix_len = cfg.prefix.len() + 5;
    let mut cursor: u64 = 0;
    let (mut aors, mut bindings) = (0u64, 0u64);
    tracing::info!("cluster: loading the location service from Redis");
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(LOAD_BATCH)
            .query(con)?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HGETALL").arg(k);
            }
            let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query(con)?;
            for (k, fields) in keys.iter().zip(hashes) {
                let Some(aor) = k.get(prefix_len..) else {
                    continue;
                };
                for (_, v) in fields {
                    match Change::decode(&v) {
                        Ok(change) => {
                            bindings += 1;
                            hand_over(deliver, aor, &change, true, stop);
                        }
                        Err(_) => {
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                aors += 1;
            }
            stats.loaded_aors.store(aors, Ordering::Relaxed);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(from);
        }
        if said.elapsed() > Duration::from_secs(1) {
            said = Instant::now();
            tracing::info!("cluster: loading: {aors} AORs, {bindings} bindings so far");
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    stats.synced.store(true, Ordering::Relaxed);
    tracing::info!(
        "cluster: loaded {aors} AORs ({bindings} bindings and removals) in {:.1} s; following the stream from {from}",
        started.elapsed().as_secs_f64()
    );
    Ok(from)
}

/// Reads the stream after `after`; the id to read from next, or None when
/// entries were lost to the stream's trimming (a reload is due).
fn read(
    con: &mut Connection,
    after: &str,
    cfg: &LinkConfig,
    deliver: &(dyn Fn(&[u8], &Change, bool) -> bool + Send + Sync),
    stats: &LinkStats,
    stop: &AtomicBool,
    got: &mut usize,
) -> redis::RedisResult<Option<String>> {
    let stream = cfg.stream_key();
    let stream = stream.as_str();
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_BATCH)
        .arg("BLOCK")
        .arg(500)
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query(con)?;
    let entries = match reply {
        Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
            Value::Array(mut s) if s.len() == 2 => s.swap_remove(1),
            _ => Value::Nil,
        },
        Value::Map(mut m) if !m.is_empty() => m.swap_remove(0).1,
        _ => Value::Nil,
    };
    let Value::Array(entries) = entries else {
        // Nothing new within the wait: check that nothing was trimmed
        // away unread (after an outage), then go on.
        return gap_check(con, stream, after, cfg.stream_max);
    };
    let mut last = after.to_string();
    let now = unix_ms();
    *got = entries.len();
    for e in entries {
        let Value::Array(mut parts) = e else { continue };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let Some(id) = parts.first().and_then(text) else {
            continue;
        };
        let id = String::from_utf8_lossy(id).into_owned();
        let Value::Array(fields) = fields else {
            last = id;
            continue;
        };
        let mut aor = None;
        let mut value = None;
        for pair in fields.chunks(2) {
            match (pair.first().and_then(text), pair.get(1).and_then(text)) {
                (Some(b"a"), Some(v)) => aor = Some(v),
                (Some(b"v"), Some(v)) => value = Some(v),
                _ => {}
            }
        }
        if let (Some(aor), Some(value)) = (aor, value) {
            // Our own change, back from the stream: nothing to do.
            if super::wire::node_of(value) == Some(&cfg.node[..]) {
                last = id;
                continue;
            }
            match Change::decode(value) {
                Ok(change) => {
                    if let Some((ms, _)) = parse_id(&id) {
                        stats.observe_delay(now.saturating_sub(ms));
                    }
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    hand_over(deliver, aor, &change, false, stop);
                }
                Err(_) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        last = id;
    }
    Ok(Some(last))
}

/// After a (re)connect, a load or an idle read: None when the stream's
/// oldest entry is past `after` (entries after it may have been trimmed
/// unread: reload), else `after`.
fn gap_check(
    con: &mut Connection,
    stream: &str,
    after: &str,
    stream_max: usize,
) -> redis::RedisResult<Option<String>> {
    if after == "0-0" {
        // The stream was empty when the load began: entries were lost
        // only if it has since been trimmed, which it is not below its
        // length.
        let len: usize = redis::cmd("XLEN").arg(stream).query(con)?;
        if len < stream_max {
            return Ok(Some(after.to_string()));
        }
        tracing::warn!(
            "cluster: the stream was trimmed since this node's load; loading everything again"
        );
        return Ok(None);
    }
    let first: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    let first_id = match &first {
        Value::Array(es) => es.first().and_then(|e| match e {
            Value::Array(p) => p
                .first()
                .and_then(text)
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            _ => None,
        }),
        _ => None,
    };
    match (first_id.as_deref().and_then(parse_id), parse_id(after)) {
        (Some(first), Some(ours)) if first > ours => {
            tracing::warn!(
                "cluster: the stream no longer holds the changes after {after} (it starts at \
                 {first:?}); loading everything again"
            );
            Ok(None)
        }
        _ => Ok(Some(after.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(aor: &str, contact: &str, v: u8) -> Write {
        Write {
            aor: aor.as_bytes().into(),
            contact: contact.as_bytes().into(),
            value: vec![v],
            expire_at_ms: 0,
        }
    }

    #[test]
    fn pending_keeps_one_change_per_binding_in_order_and_a_bound() {
        let mut p = Pending::default();
        assert!(p.put(w("a", "1", 1), 2));
        assert!(p.put(w("b", "1", 2), 2));
        assert!(p.put(w("a", "1", 3), 2), "replaces, even when full");
        assert!(
            !p.put(w("c", "1", 4), 2),
            "a third binding is over the bound"
        );
        let got: Vec<u8> = p.take(10).iter().map(|w| w.value[0]).collect();
        assert_eq!(got, vec![3, 2]);
        // A failed write goes back unless a later change came.
        p.put(w("a", "1", 5), 2);
        p.put_back(w("a", "1", 3));
        p.put_back(w("b", "1", 2));
        let got: Vec<u8> = p.take(10).iter().map(|w| w.value[0]).collect();
        assert_eq!(got, vec![2, 5]);
    }

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(parse_id("1000-0") > parse_id("999-7"));
        assert!(parse_id("1000-10") > parse_id("1000-9"));
        assert_eq!(parse_id("x"), None);
    }

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
