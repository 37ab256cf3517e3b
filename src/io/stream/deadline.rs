//! The connections' deadlines, checked once a second on the shard's own
//! clock: a connect or handshake, a message begun, silence.

use super::{Streams, CONNECT_MS, MESSAGE_MS};

impl Streams {
    /// Advances the clock the deadlines run on (the shard's milliseconds)
    /// and, once a second, closes the connections past one: a connect
    /// not done in [`CONNECT_MS`], a partial message not completed in
    /// [`MESSAGE_MS`] (a slow sender holding a buffer), and a connection
    /// silent for the idle timeout.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        if now_ms < self.swept_ms + 1000 || self.conns.is_empty() {
            return;
        }
        self.swept_ms = now_ms;
        let mut expired = std::mem::take(&mut self.expired);
        for (id, c) in self.conns.iter() {
            let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
            let late_connect = (c.connecting || handshaking) && now_ms >= c.since_ms + CONNECT_MS;
            let slow_message = !c.rx.is_empty() && now_ms >= c.partial_since_ms + MESSAGE_MS;
            let idle = now_ms >= c.last_rx_ms + self.idle_ms;
            if late_connect || slow_message || idle {
                expired.push(id);
            }
        }
        for &id in &expired {
            if let Some(c) = self.conns.get(id) {
                if c.connecting {
                    self.counts.connect_failed += 1;
                }
            }
            self.counts.timed_out += 1;
            self.close(id);
        }
        expired.clear();
        self.expired = expired;
    }
}
