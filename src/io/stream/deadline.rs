//! The connections' deadlines, checked once a second on the shard's own
//! clock: a connect or handshake, a first byte, a message begun, silence.
//! Each is a flag (`--tcp-*-timeout`) and each closing is counted by the
//! deadline that fired: slowloris defences an operator can see.

use std::time::Duration;

use super::Streams;

/// How long a connection may take at each stage before it is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// A connect of ours, a TLS handshake or a WebSocket upgrade
    /// (`--tcp-handshake-timeout`).
    pub handshake: Duration,
    /// An accepted connection's first byte (`--tcp-first-byte-timeout`):
    /// a peer that connects and says nothing holds a descriptor and a
    /// slot of `--max-connections` for no SIP.
    pub first_byte: Duration,
    /// A message begun, to its last byte (`--tcp-message-timeout`): a
    /// slow sender holding a buffer.
    pub message: Duration,
    /// Silence, keep-alives aside (`--tcp-idle-timeout`).
    pub idle: Duration,
}

impl Default for Deadlines {
    /// 10 s to connect, handshake or say something; 32 s (64 x T1, what
    /// a UDP transaction gets, RFC 3261 §17.1.1.2) for a message; ten
    /// minutes of silence, well above the 2-minute CRLF keep-alive RFC
    /// 5626 §4.4.1 has UAs send on a registered flow.
    fn default() -> Self {
        Deadlines {
            handshake: Duration::from_secs(10),
            first_byte: Duration::from_secs(10),
            message: Duration::from_secs(32),
            idle: Duration::from_secs(600),
        }
    }
}

/// Which deadline closed a connection: the index in
/// [`super::StreamCounts::timed_out_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// A connect, TLS handshake or WebSocket upgrade not done in time.
    Handshake = 0,
    /// An accepted connection that sent nothing in time.
    FirstByte = 1,
    /// A message begun and not completed in time.
    Message = 2,
    /// Silence past the idle timeout.
    Idle = 3,
}

impl Deadline {
    /// Every deadline, in index order.
    pub const ALL: [Deadline; 4] = [
        Deadline::Handshake,
        Deadline::FirstByte,
        Deadline::Message,
        Deadline::Idle,
    ];

    /// Its name in metrics and the exit line.
    pub fn name(self) -> &'static str {
        match self {
            Deadline::Handshake => "handshake",
            Deadline::FirstByte => "first_byte",
            Deadline::Message => "message",
            Deadline::Idle => "idle",
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Streams {
    /// Sets the deadlines (the flags').
    pub fn set_deadlines(&mut self, d: Deadlines) {
        self.deadlines = d;
    }

    /// Advances the clock the deadlines run on (the shard's milliseconds)
    /// and, once a second, closes the connections past one of
    /// [`Deadlines`].
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        if now_ms < self.swept_ms + 1000 || self.conns.is_empty() {
            return;
        }
        self.swept_ms = now_ms;
        let d = self.deadlines;
        let (handshake, first_byte) = (ms(d.handshake), ms(d.first_byte));
        let (message, idle) = (ms(d.message), ms(d.idle));
        let mut expired = std::mem::take(&mut self.expired);
        for (id, c) in self.conns.iter() {
            let handshaking = c.connecting
                || c.tls.as_ref().is_some_and(|t| t.is_handshaking())
                || c.ws.as_ref().is_some_and(|w| !w.is_open());
            let past = |since: u64, limit: u64| now_ms >= since.saturating_add(limit);
            let why = if handshaking && past(c.since_ms, handshake) {
                Some(Deadline::Handshake)
            } else if !c.heard && c.opened_to.is_none() && past(c.since_ms, first_byte) {
                Some(Deadline::FirstByte)
            } else if !c.rx.is_empty() && past(c.partial_since_ms, message) {
                Some(Deadline::Message)
            } else if past(c.last_rx_ms, idle) {
                Some(Deadline::Idle)
            } else {
                None
            };
            if let Some(why) = why {
                expired.push((id, why));
            }
        }
        for &(id, why) in &expired {
            if let Some(c) = self.conns.get_mut(id) {
                if c.connecting {
                    self.counts.connect_failed += 1;
                    // What waited for the connect (plaintext: TLS holds
                    // it in its session) goes back to the shard.
                    if c.tls.is_none() {
                        let pending = std::mem::take(&mut c.tx);
                        self.keep_unreachable(&pending);
                    }
                }
            }
            self.counts.timed_out += 1;
            self.counts.timed_out_by[why as usize] += 1;
            self.close(id);
        }
        expired.clear();
        self.expired = expired;
    }
}
