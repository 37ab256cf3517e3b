//! The link's writer: the shards' changes to Redis, one pending change
//! per binding, in pipelined batches through [`SCRIPT`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redis::{Client, Connection};

use super::{connect, unix_ms, LinkConfig, LinkStats, Retry, Write, BUSY, LINGER};
use crate::cluster::side::Routes;
use crate::cluster::wire::Change;
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

/// Changes written per pipelined round trip.
const WRITE_BATCH: usize = 512;

/// This node's own bindings from `--state-dir`, written to Redis once the
/// writer first connects: those a kill took before they reached Redis
/// get there now (the script keeps anything greater Redis holds).
#[derive(Default)]
pub(super) struct Replay {
    pub(super) records: Vec<AorRecord>,
    pub(super) next: usize,
    pub(super) routes: Option<Routes>,
    pub(super) node: Box<[u8]>,
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
                    kind: crate::cluster::wire::Kind::Live,
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

/// A binding: its AOR and contact.
type BindingKey = (Box<[u8]>, Box<[u8]>);

/// Changes waiting, one per binding, oldest first: in the writer for
/// Redis, and in an owner shard for the writer's channel when it is full.
#[derive(Default)]
pub(crate) struct Pending {
    by_key: HashMap<BindingKey, Write>,
    order: VecDeque<BindingKey>,
}

impl Pending {
    /// Queues `w`, replacing a waiting change of its binding; false when
    /// it is a new binding and `max` wait already.
    pub(crate) fn put(&mut self, w: Write, max: usize) -> bool {
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
    pub(crate) fn put_back(&mut self, w: Write) {
        let key = (w.aor.clone(), w.contact.clone());
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_key.entry(key.clone()) {
            e.insert(w);
            self.order.push_front(key);
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Vec<Write> {
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

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// A connection and the script's digest on it.
struct Session {
    con: Connection,
    sha: String,
}

fn open_session(client: &Client) -> redis::RedisResult<Session> {
    let mut con = connect(client, Duration::from_secs(5))?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query(&mut con)?;
    Ok(Session { con, sha })
}

pub(super) fn write_loop(
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
                .arg(crate::cluster::merge::TOMBSTONE_SECS * 1000);
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
}
