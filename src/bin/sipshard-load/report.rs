//! What `run` and `register` measured, as one line: prose, or key=value
//! pairs for scripts (`--kv`).

/// The value at fraction `p` of a sorted sample (0 when empty).
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        0
    } else {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// What a `run` measured.
pub struct RunReport<'a> {
    pub sent: u64,
    /// Requests that reached the sink.
    pub forwarded: u64,
    /// Seconds spent sending.
    pub secs: f64,
    /// Sorted latencies of the answers, µs (one per answer).
    pub lat: Vec<u32>,
    pub flows: usize,
    pub users: u32,
    pub domain: &'a str,
    /// With the UAC on connections (`--transport` not udp).
    pub stream: Option<StreamReport>,
}

/// What a `run` over connections adds.
pub struct StreamReport {
    /// The Via token of the caller's transport (`TCP`, `TLS`, `WS`, `WSS`).
    pub transport: &'static str,
    /// Requests not queued (connection gone or not taking bytes).
    pub unsent: u64,
    /// Messages received that were not a 200 to one of ours.
    pub other: u64,
    /// Connections lost during the run.
    pub lost_conns: u64,
    /// Their faults, `name:count,...` or `none`.
    pub faults: String,
}

impl RunReport<'_> {
    fn answered(&self) -> u64 {
        self.lat.len() as u64
    }

    fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            (self.sent - self.answered().min(self.sent)) as f64 * 100.0 / self.sent as f64
        }
    }

    pub fn kv(&self) -> String {
        let (sent, secs, pct) = (self.sent, self.secs, |p| percentile(&self.lat, p));
        let mut line = format!(
            "sent={sent} forwarded={} answered={} loss_pct={:.4} offered_per_s={:.0} achieved_per_s={:.0} p50_us={} p90_us={} p99_us={} p999_us={} flows={} users={}",
            self.forwarded,
            self.answered(),
            self.loss(),
            sent as f64 / secs,
            self.answered() as f64 / secs,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999),
            self.flows,
            self.users,
        );
        if let Some(s) = &self.stream {
            line += &format!(
                " transport={} unsent={} other_answers={} conns_lost={} faults={}",
                s.transport.to_ascii_lowercase(),
                s.unsent,
                s.other,
                s.lost_conns,
                s.faults
            );
        }
        line
    }

    pub fn prose(&self) -> String {
        let (sent, secs, pct) = (self.sent, self.secs, |p| percentile(&self.lat, p));
        let mut line = format!(
            "sent {sent} requests in {secs:.2} s ({:.0}/s) over {} flows{}; sink got {}; answered {} ({:.0}/s); loss {:.3}%; latency p50 {} us, p99 {} us, p99.9 {} us",
            sent as f64 / secs,
            self.flows,
            if self.users > 0 {
                format!(" to {} users @{}", self.users, self.domain)
            } else {
                String::new()
            },
            self.forwarded,
            self.answered(),
            self.answered() as f64 / secs,
            self.loss(),
            pct(0.5),
            pct(0.99),
            pct(0.999),
        );
        if let Some(s) = &self.stream {
            line += &format!(
                "; over {}: {} not sent, {} other answers, {} connections lost ({})",
                s.transport, s.unsent, s.other, s.lost_conns, s.faults
            );
        }
        line
    }
}

/// One round of REGISTERs' outcome.
#[derive(Clone, Copy, Default)]
pub struct Round {
    pub sent: u64,
    pub ok: u64,
    /// Seconds spent sending.
    pub send_secs: f64,
    /// Seconds from the first send to the last answer.
    pub active_secs: f64,
}

impl Round {
    /// 200s per second while the round was active.
    fn rate(&self) -> f64 {
        self.ok as f64 / self.active_secs.max(1e-9)
    }
}

/// What a registration run measured.
#[derive(Default)]
pub struct RegReport {
    pub users: u32,
    pub flows: usize,
    /// Main rounds (initial + refreshes).
    pub sent: u64,
    pub ok: u64,
    pub s503: u64,
    pub other: u64,
    pub unmatched: u64,
    pub initial: Round,
    pub refresh: Round,
    /// Sorted latencies of the main rounds' answers, µs.
    pub lat: Vec<u32>,
    /// REGISTERs re-sent to users missing a 200, and how many rounds.
    pub retry_sent: u64,
    pub retry_rounds: u32,
    /// Users with a 200 in the end.
    pub bound: u64,
}

impl RegReport {
    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.ok + self.s503 + self.other)
    }

    fn pct(&self, n: u64) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            n as f64 * 100.0 / self.sent as f64
        }
    }

    fn main_rate(&self) -> (f64, f64) {
        let send = self.initial.send_secs + self.refresh.send_secs;
        let active = self.initial.active_secs + self.refresh.active_secs;
        (
            self.sent as f64 / send.max(1e-9),
            self.ok as f64 / active.max(1e-9),
        )
    }

    pub fn kv(&self) -> String {
        let (offered, achieved) = self.main_rate();
        format!(
            "sent={} ok={} s503={} other={} lost={} unmatched={} loss_pct={:.4} fail_pct={:.4} offered_per_s={:.0} achieved_per_s={:.0} initial_sent={} initial_ok={} initial_per_s={:.0} refresh_sent={} refresh_ok={} refresh_per_s={:.0} p50_us={} p90_us={} p99_us={} p999_us={} users={} flows={} retry_sent={} retry_rounds={} bound={} send_s={:.3} active_s={:.3}",
            self.sent,
            self.ok,
            self.s503,
            self.other,
            self.lost(),
            self.unmatched,
            self.pct(self.lost()),
            self.pct(self.sent - self.ok.min(self.sent)),
            offered,
            achieved,
            self.initial.sent,
            self.initial.ok,
            self.initial.rate(),
            self.refresh.sent,
            self.refresh.ok,
            self.refresh.rate(),
            percentile(&self.lat, 0.5),
            percentile(&self.lat, 0.9),
            percentile(&self.lat, 0.99),
            percentile(&self.lat, 0.999),
            self.users,
            self.flows,
            self.retry_sent,
            self.retry_rounds,
            self.bound,
            self.initial.send_secs + self.refresh.send_secs,
            self.initial.active_secs + self.refresh.active_secs,
        )
    }

    pub fn prose(&self) -> String {
        let (offered, achieved) = self.main_rate();
        let mut s = format!(
            "sent {} REGISTERs for {} users over {} flows ({offered:.0}/s offered); 200 {}, 503 {}, other {}, unanswered {} (loss {:.3}%, not 200 {:.3}%); {achieved:.0} 200s/s (initial {:.0}/s",
            self.sent,
            self.users,
            self.flows,
            self.ok,
            self.s503,
            self.other,
            self.lost(),
            self.pct(self.lost()),
            self.pct(self.sent - self.ok.min(self.sent)),
            self.initial.rate(),
        );
        if self.refresh.sent > 0 {
            s += &format!(", refreshes {:.0}/s", self.refresh.rate());
        }
        s += &format!(
            "); latency p50 {} us, p99 {} us, p99.9 {} us",
            percentile(&self.lat, 0.5),
            percentile(&self.lat, 0.99),
            percentile(&self.lat, 0.999),
        );
        if self.unmatched > 0 {
            s += &format!("; {} unmatched datagrams", self.unmatched);
        }
        if self.retry_rounds > 0 {
            s += &format!(
                "; {} retries in {} rounds",
                self.retry_sent, self.retry_rounds
            );
        }
        s += &format!("; {} users bound", self.bound);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_report_counts_loss_from_the_answers() {
        let r = RunReport {
            sent: 4,
            forwarded: 4,
            secs: 2.0,
            lat: vec![10, 20, 30],
            flows: 8,
            users: 0,
            domain: "example.com",
            stream: None,
        };
        assert_eq!(
            r.kv(),
            "sent=4 forwarded=4 answered=3 loss_pct=25.0000 offered_per_s=2 achieved_per_s=2 p50_us=20 p90_us=30 p99_us=30 p999_us=30 flows=8 users=0"
        );
        assert_eq!(
            r.prose(),
            "sent 4 requests in 2.00 s (2/s) over 8 flows; sink got 4; answered 3 (2/s); loss 25.000%; latency p50 20 us, p99 30 us, p99.9 30 us"
        );
    }

    #[test]
    fn a_run_over_connections_says_what_it_lost() {
        let r = RunReport {
            sent: 10,
            forwarded: 9,
            secs: 1.0,
            lat: vec![5; 8],
            flows: 2,
            users: 0,
            domain: "example.com",
            stream: Some(StreamReport {
                transport: "TLS",
                unsent: 1,
                other: 0,
                lost_conns: 1,
                faults: "reset:1".into(),
            }),
        };
        assert!(r.kv().ends_with(
            "flows=2 users=0 transport=tls unsent=1 other_answers=0 conns_lost=1 faults=reset:1"
        ));
        assert!(r
            .prose()
            .ends_with("; over TLS: 1 not sent, 0 other answers, 1 connections lost (reset:1)"));
    }
}
