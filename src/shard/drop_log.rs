//! Log lines about dropped datagrams and banned sources, rate-limited per
//! shard: at most one line per [`LOG_INTERVAL_MS`] for each drop reason,
//! and one for bans. A line says how many were dropped (or banned) since
//! the last line of its kind, so nothing goes unaccounted, and shows at
//! most [`DUMP_BYTES`] of the datagram, escaped (Kamailio's habit: enough
//! to recognise a scanner or a broken peer, never a whole message).
//!
//! The check runs on the shard's clock (`now_ms`, read once per loop), so a
//! drop that writes no line costs a comparison: no system call, no
//! allocation, no formatting. The counts come from the shard's counters,
//! which the drop sites bump anyway.
//!
//! Drops are logged at INFO (keep-alives, which are normal traffic, at
//! DEBUG) and bans at WARN: rate-limited lines, never one per message.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::counters::{ShardCounters, DROP_REASONS};
use crate::proxy::DropReason;

/// At most one line per reason (and one for bans) per shard this often.
pub const LOG_INTERVAL_MS: u64 = 1000;

/// Bytes of a dropped datagram a line shows, at most.
pub const DUMP_BYTES: usize = 128;

/// One shard's rate limits for drop and ban lines.
#[derive(Debug)]
pub struct DropLog {
    shard: usize,
    /// Per reason: no line before this shard time (ms).
    next_ms: [u64; DROP_REASONS],
    /// Per reason: the drop counter when its last line was written.
    logged: [u64; DROP_REASONS],
    /// No ban line before this shard time (ms).
    next_ban_ms: u64,
    /// `sources_banned` when the last ban line was written.
    logged_bans: u64,
}

impl DropLog {
    /// Nothing logged yet: the first drop of each reason, and the first
    /// ban, get a line.
    pub fn new(shard: usize) -> DropLog {
        DropLog {
            shard,
            next_ms: [0; DROP_REASONS],
            logged: [0; DROP_REASONS],
            next_ban_ms: 0,
            logged_bans: 0,
        }
    }

    /// A datagram (`bytes`, from `src` when known) was just dropped for
    /// `reason` and counted in `counters`: writes a line unless one was
    /// written for this reason in the last interval. Returns whether it
    /// wrote one.
    #[inline]
    pub fn dropped(
        &mut self,
        reason: DropReason,
        counters: &ShardCounters,
        now_ms: u64,
        src: Option<SocketAddr>,
        bytes: &[u8],
    ) -> bool {
        let i = reason as usize;
        let Some(next) = self.next_ms.get_mut(i) else {
            return false;
        };
        if now_ms < *next {
            return false;
        }
        *next = now_ms.saturating_add(LOG_INTERVAL_MS);
        let total = counters.drops[i].load(Relaxed);
        let count = total.wrapping_sub(std::mem::replace(&mut self.logged[i], total));
        self.write_drop(reason, count, src, bytes);
        true
    }

    #[cold]
    #[inline(never)]
    fn write_drop(&self, reason: DropReason, count: u64, src: Option<SocketAddr>, bytes: &[u8]) {
        let shard = self.shard;
        let reason = reason.name();
        let src = Source(src);
        let len = bytes.len();
        let data = Escaped(bytes);
        // Keep-alives are normal traffic: not worth a line at INFO.
        if reason == DropReason::KeepAlive.name() {
            tracing::debug!(
                shard,
                reason,
                src = %src,
                count,
                len,
                data = %data,
                "sipshard: drop shard={shard} reason={reason} src={src} count={count} len={len} data=\"{data}\""
            );
        } else {
            tracing::info!(
                shard,
                reason,
                src = %src,
                count,
                len,
                data = %data,
                "sipshard: drop shard={shard} reason={reason} src={src} count={count} len={len} data=\"{data}\""
            );
        }
    }

    /// `src` was just banned for `ban_s` seconds (and counted in
    /// `sources_banned`): writes a line unless one was written in the last
    /// interval. Returns whether it wrote one.
    pub fn banned(
        &mut self,
        counters: &ShardCounters,
        now_ms: u64,
        src: SocketAddr,
        ban_s: u64,
    ) -> bool {
        if now_ms < self.next_ban_ms {
            return false;
        }
        self.next_ban_ms = now_ms.saturating_add(LOG_INTERVAL_MS);
        let total = counters.sources_banned.load(Relaxed);
        let count = total.wrapping_sub(std::mem::replace(&mut self.logged_bans, total));
        let shard = self.shard;
        let ip = src.ip();
        tracing::warn!(
            shard,
            src = %ip,
            ban_s,
            count,
            "sipshard: ban shard={shard} src={ip} ban_s={ban_s} count={count}"
        );
        true
    }
}

/// A source address, or `-` when the kernel gave none.
struct Source(Option<SocketAddr>);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}

/// The first [`DUMP_BYTES`] of a datagram as text: printable ASCII as it
/// is, `\` and `"` as `\\` and `\"`, every other byte (line ends included)
/// as `\xNN`. Formats straight into the writer: nothing is allocated.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(DUMP_BYTES)];
        let mut start = 0;
        for (i, &b) in shown.iter().enumerate() {
            let plain = (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"';
            if plain {
                continue;
            }
            // Runs of plain bytes are ASCII, so valid UTF-8.
            f.write_str(std::str::from_utf8(&shown[start..i]).map_err(|_| fmt::Error)?)?;
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'"' => f.write_str("\\\"")?,
                _ => write!(f, "\\x{b:02x}")?,
            }
            start = i + 1;
        }
        f.write_str(std::str::from_utf8(&shown[start..]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::counters::add;

    fn src() -> Option<SocketAddr> {
        "192.0.2.7:5060".parse().ok()
    }

    #[test]
    fn one_line_per_reason_per_interval_with_the_count_since_the_last() {
        let c = ShardCounters::default();
        let mut log = DropLog::new(3);
        let mut lines = 0;
        for t in 0..2500u64 {
            // One malformed datagram a millisecond, one denied every 10.
            c.dropped(DropReason::Malformed);
            lines += usize::from(log.dropped(DropReason::Malformed, &c, t, src(), b"x"));
            if t % 10 == 0 {
                c.dropped(DropReason::Denied);
                lines += usize::from(log.dropped(DropReason::Denied, &c, t, src(), b"x"));
            }
        }
        // At 0, 1000 and 2000 ms, for each of the two reasons.
        assert_eq!(lines, 6);
        assert_eq!(log.logged[DropReason::Malformed as usize], 2001);
        assert_eq!(log.logged[DropReason::Denied as usize], 201);
        // The next line's count covers everything since the last one.
        for _ in 0..5 {
            c.dropped(DropReason::Malformed);
        }
        assert!(log.dropped(DropReason::Malformed, &c, 3000, src(), b"x"));
        assert_eq!(log.logged[DropReason::Malformed as usize], 2505);
    }

    #[test]
    fn a_line_names_the_reason_source_count_and_at_most_128_escaped_bytes() {
        use crate::telemetry::logging::testing::capture;
        use tracing_subscriber::filter::LevelFilter;
        let c = ShardCounters::default();
        let mut log = DropLog::new(1);
        let mut packet = b"\x00junk\r\n".to_vec();
        packet.resize(300, b'z');
        let text = capture(LevelFilter::INFO, false, || {
            for t in 0..3 {
                c.dropped(DropReason::Malformed);
                log.dropped(DropReason::Malformed, &c, t * 600, src(), &packet);
                c.dropped(DropReason::KeepAlive);
                log.dropped(DropReason::KeepAlive, &c, t * 600, src(), b"\r\n\r\n");
            }
        });
        let lines: Vec<&str> = text.lines().collect();
        // At 0 and 1200 ms; keep-alives are DEBUG, below INFO.
        assert_eq!(lines.len(), 2, "{text}");
        let want = format!(
            "INFO sipshard: drop shard=1 reason=malformed src=192.0.2.7:5060 count=1 len=300 \
             data=\"\\x00junk\\x0d\\x0a{}\"",
            "z".repeat(DUMP_BYTES - 7)
        );
        assert!(lines[0].ends_with(&want), "{}", lines[0]);
        assert!(lines[1].contains(" count=2 "), "{}", lines[1]);

        let json = capture(LevelFilter::DEBUG, true, || {
            c.dropped(DropReason::KeepAlive);
            log.dropped(DropReason::KeepAlive, &c, 5000, None, b"\r\n\r\n");
        });
        assert!(json.contains(r#""level":"DEBUG""#), "{json}");
        assert!(json.contains(r#""reason":"keepalive""#), "{json}");
        assert!(json.contains(r#""src":"-""#), "{json}");
        assert!(json.contains(r#""count":1"#), "{json}");
        assert!(json.contains(r#""data":"\\x0d\\x0a\\x0d\\x0a""#), "{json}");
    }

    #[test]
    fn bans_are_rate_limited_per_shard() {
        let c = ShardCounters::default();
        let mut log = DropLog::new(0);
        let ip: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let mut lines = 0;
        for t in 0..100 {
            add(&c.sources_banned, 1);
            lines += usize::from(log.banned(&c, t * 50, ip, 60));
        }
        // 100 bans over 5 s: a line at 0, 1000, 2000, 3000, 4000 ms.
        assert_eq!(lines, 5);
        assert_eq!(log.logged_bans, 81);
    }

    #[test]
    fn escaping_and_the_128_byte_cap() {
        assert_eq!(
            Escaped(b"OPTIONS sip:x SIP/2.0\r\n").to_string(),
            "OPTIONS sip:x SIP/2.0\\x0d\\x0a"
        );
        assert_eq!(
            Escaped(b"\x00a\"b\\c\xff~\x7f").to_string(),
            "\\x00a\\\"b\\\\c\\xff~\\x7f"
        );
        assert_eq!(Escaped(b"").to_string(), "");
        let long = vec![b'a'; 1000];
        assert_eq!(Escaped(&long).to_string(), "a".repeat(DUMP_BYTES));
        let binary = vec![0u8; 1000];
        assert_eq!(Escaped(&binary).to_string(), "\\x00".repeat(DUMP_BYTES));
        assert_eq!(Source(None).to_string(), "-");
    }
}
