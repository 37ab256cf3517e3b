//! The link's tailer: every AOR loaded from Redis in bounded batches,
//! then the stream of changes followed into the owner shards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::{Client, Connection, Value};

use super::{connect, unix_ms, LinkConfig, LinkStats, Retry, BUSY, LINGER};
use crate::cluster::wire::Change;

/// AOR keys loaded per round trip.
pub const LOAD_BATCH: usize = 500;

/// Stream entries read per round trip.
const READ_BATCH: usize = 1000;

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

pub(super) fn tail_loop(
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
            if crate::cluster::wire::node_of(value) == Some(&cfg.node[..]) {
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

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(parse_id("1000-0") > parse_id("999-7"));
        assert!(parse_id("1000-10") > parse_id("1000-9"));
        assert_eq!(parse_id("x"), None);
    }
}
