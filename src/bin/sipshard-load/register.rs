//! `register`: REGISTERs for `--users` distinct AORs `uNNNNNNN@DOMAIN`
//! (u0000000, u0000001, ...), each with a Contact at our sink socket, at
//! `--rate` per second over `--flows` source ports; then `--refreshes` more
//! rounds over every user with the same Call-ID and a higher CSeq. Each
//! message is a per-flow [`Template`] copied into a send slot with its
//! fixed-width fields (user, CSeq, send time) patched in place; answers
//! are matched by the Via branch, which carries user, CSeq and send time.
//! Report: sent, 200s, 503s, other statuses, unanswered, offered and
//! achieved rate, latency p50/p99/p99.9.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipshard::io::mmsg::Mmsg;
use sipshard::io::BATCH;
use sipshard::sip::Message;
use sipshard::transport::Dest;

use crate::net::{bind_loopback, receive_until};
use crate::report::{RegReport, Round};
use crate::sink::Sink;
use crate::templates::{parse_branch, register_call_id, Template, CSEQ_BASE, MAX_USERS};
use sipshard::hash::call_id_shard;
use sipshard::location::owner_of;

#[derive(clap::Args)]
pub struct Args {
    /// The registrar.
    #[arg(long)]
    target: SocketAddr,
    /// Distinct AORs uNNNNNNN@DOMAIN, one binding each (at most 10^7).
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Domain of the AORs (the Request-URI is `sip:DOMAIN`).
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// REGISTERs per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Source sockets (ports) to spread the REGISTERs over.
    #[arg(long, default_value_t = 8)]
    flows: usize,
    /// Address of the sink socket every Contact points at (it answers
    /// requests 200 while this runs); a fixed port lets a later
    /// `run --users N --no-register --sink ADDR` reach the users.
    #[arg(long, default_value = "127.0.0.1:0")]
    sink: SocketAddr,
    /// After every user has registered, register them all this many
    /// more times (same Call-ID, higher CSeq).
    #[arg(long, default_value_t = 0)]
    refreshes: u32,
    /// The Expires header of every REGISTER.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// After all rounds, re-send (higher CSeq) to users whose last
    /// REGISTER got no 200, up to this many times; the main figures
    /// exclude these, `bound=` counts users with a 200 in the end.
    #[arg(long, default_value_t = 0)]
    retry_missing: u32,
    /// Give each user a Call-ID that `--steer call-id` steers to the shard
    /// owning its AOR among this many shards, so that no REGISTER is
    /// handed to another shard: what steering REGISTERs by AOR in the
    /// kernel would achieve (docs/decisions.md). 0: plain Call-IDs.
    #[arg(long, default_value_t = 0)]
    call_id_to_owner: u32,
    /// Print one machine-readable line (key=value) instead of prose.
    #[arg(long)]
    kv: bool,
}

pub fn main(args: Args) -> std::io::Result<()> {
    let sink = Sink::start(args.sink)?;
    let cfg = RegConfig {
        target: args.target,
        users: args.users,
        domain: args.domain,
        rate: args.rate,
        flows: args.flows.max(1),
        contact: sink.addr,
        refreshes: args.refreshes,
        expires: args.expires,
        retries: args.retry_missing,
        call_id_to_owner: args.call_id_to_owner,
    };
    let rep = register_users(&cfg)?;
    drop(sink);
    if args.kv {
        println!("{} sink={}", rep.kv(), cfg.contact);
    } else {
        println!("{}; Contacts at {}", rep.prose(), cfg.contact);
    }
    Ok(())
}

/// What to register.
pub struct RegConfig {
    pub target: SocketAddr,
    pub users: u32,
    pub domain: String,
    pub rate: u64,
    pub flows: usize,
    /// Host and port of every Contact.
    pub contact: SocketAddr,
    pub refreshes: u32,
    pub expires: u32,
    pub retries: u32,
    /// Salt Call-IDs so that `--steer call-id` over this many shards puts
    /// each REGISTER on its AOR's owner; 0: no salt.
    pub call_id_to_owner: u32,
}

/// Per user, the Call-ID salt that steers its REGISTER to the owner of
/// its AOR among `shards` (all zero when `shards` is 0).
fn owner_salts(users: u32, domain: &str, tag: u32, shards: u32) -> Vec<u8> {
    (0..users)
        .map(|user| {
            if shards == 0 {
                return 0;
            }
            let aor = format!("sip:u{user:07}@{}", domain.to_ascii_lowercase());
            let owner = owner_of(aor.as_bytes(), shards as usize) as u32;
            (0..100u8)
                .find(|&salt| {
                    call_id_shard(register_call_id(user, salt, tag).as_bytes(), shards) == owner
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Registers `cfg.users` users, then refreshes them, then retries the
/// missing ones; the sockets are its own.
pub fn register_users(cfg: &RegConfig) -> std::io::Result<RegReport> {
    if cfg.users > MAX_USERS {
        return Err(std::io::Error::other(format!(
            "--users is at most {MAX_USERS}"
        )));
    }
    let rounds = 1 + u64::from(cfg.refreshes) + u64::from(cfg.retries);
    if rounds >= u64::from(9_999_999 - CSEQ_BASE) {
        return Err(std::io::Error::other("too many rounds"));
    }
    let mut session = Session::open(cfg)?;
    let st = session.st.clone();
    let mut rep = RegReport {
        users: cfg.users,
        flows: cfg.flows,
        ..RegReport::default()
    };
    rep.initial = session.round(CSEQ_BASE, &mut (0..cfg.users));
    for k in 1..=cfg.refreshes {
        let r = session.round(CSEQ_BASE + k, &mut (0..cfg.users));
        rep.refresh.sent += r.sent;
        rep.refresh.ok += r.ok;
        rep.refresh.send_secs += r.send_secs;
        rep.refresh.active_secs += r.active_secs;
    }
    rep.sent = rep.initial.sent + rep.refresh.sent;
    rep.ok = st.ok.load(Ordering::Relaxed);
    rep.s503 = st.s503.load(Ordering::Relaxed);
    rep.other = st.other.load(Ordering::Relaxed);
    // Retries: users whose latest REGISTER got no 200.
    let mut cseq = st.last_main_cseq;
    let mut missing = still_missing(&st.ok_cseq, 0..cfg.users, cseq);
    for _ in 0..cfg.retries {
        if missing.is_empty() {
            break;
        }
        cseq += 1;
        let r = session.round(cseq, &mut missing.iter().copied());
        rep.retry_sent += r.sent;
        rep.retry_rounds += 1;
        // Only the users just retried were sent this CSeq.
        missing = still_missing(&st.ok_cseq, missing.into_iter(), cseq);
    }
    rep.lat = session.close()?;
    rep.lat.sort_unstable();
    rep.unmatched = st.unmatched.load(Ordering::Relaxed);
    rep.bound = st
        .ok_cseq
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) != 0)
        .count() as u64;
    Ok(rep)
}

/// Of `users`, those whose 200s (`ok_cseq`, the highest CSeq answered 200
/// per user) do not yet include CSeq `sent`, the one they were last sent.
fn still_missing(ok_cseq: &[AtomicU32], users: impl Iterator<Item = u32>, sent: u32) -> Vec<u32> {
    users
        .filter(|&u| ok_cseq[u as usize].load(Ordering::Relaxed) < sent)
        .collect()
}

/// The flows of one registration run: their sockets and templates, and
/// the receiver thread that matches the answers.
struct Session<'a> {
    cfg: &'a RegConfig,
    senders: Vec<Mmsg>,
    templates: Vec<Template>,
    /// Each user's Call-ID salt.
    salts: Vec<u8>,
    st: Arc<RegState>,
    start: Instant,
    /// The flow the next batch leaves from.
    flow: usize,
    /// REGISTERs sent so far, all rounds.
    total_sent: u64,
    receiver: std::thread::JoinHandle<Vec<u32>>,
}

impl<'a> Session<'a> {
    fn open(cfg: &'a RegConfig) -> std::io::Result<Session<'a>> {
        let socks = bind_loopback(cfg.flows)?;
        // A tag that differs between runs, so that a new run's Call-IDs are new.
        let tag = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
        };
        let templates: Vec<Template> = socks
            .iter()
            .map(|s| {
                let via = s.local_addr()?;
                Ok(Template::new(
                    &cfg.domain,
                    cfg.contact,
                    cfg.expires,
                    via,
                    tag,
                ))
            })
            .collect::<std::io::Result<_>>()?;
        let salts = owner_salts(cfg.users, &cfg.domain, tag, cfg.call_id_to_owner);
        let n = cfg.users as usize;
        let st = Arc::new(RegState {
            stop: AtomicBool::new(false),
            answers: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            s503: AtomicU64::new(0),
            other: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            answered_cseq: (0..n).map(|_| AtomicU32::new(0)).collect(),
            ok_cseq: (0..n).map(|_| AtomicU32::new(0)).collect(),
            last_main_cseq: CSEQ_BASE + cfg.refreshes,
        });
        let start = Instant::now();
        let receiver = {
            let ios: Vec<Mmsg> = socks
                .iter()
                .map(|s| s.try_clone().map(Mmsg::new))
                .collect::<Result<_, _>>()?;
            let st = st.clone();
            let capacity = (n * (1 + cfg.refreshes as usize)).min(1 << 27);
            std::thread::spawn(move || receive_answers(ios, st, start, capacity))
        };
        Ok(Session {
            cfg,
            senders: socks.into_iter().map(Mmsg::new).collect(),
            templates,
            salts,
            st,
            start,
            flow: 0,
            total_sent: 0,
            receiver,
        })
    }

    /// Sends `cseq` to every user of `users` and waits for the answers.
    fn round(&mut self, cseq: u32, users: &mut dyn Iterator<Item = u32>) -> Round {
        let ok_before = self.st.ok.load(Ordering::Relaxed);
        let begin_us = self.start.elapsed().as_micros() as u64;
        let (sent, send_secs) = self.send_round(users, cseq);
        self.total_sent += sent;
        let st = &self.st;
        await_answers(st, self.total_sent);
        let last = st.last_us.load(Ordering::Relaxed);
        Round {
            sent,
            ok: st.ok.load(Ordering::Relaxed) - ok_before,
            send_secs,
            active_secs: last.saturating_sub(begin_us) as f64 / 1e6,
        }
    }

    /// Sends one round: `cseq` to every user `users` yields, paced at the
    /// rate from now, round-robin over the flows a batch at a time.
    /// Returns how many, and the seconds it took.
    fn send_round(&mut self, users: &mut dyn Iterator<Item = u32>, cseq: u32) -> (u64, f64) {
        let round_start = Instant::now();
        let rate = self.cfg.rate;
        let mut sent: u64 = 0;
        let mut done = false;
        while !done {
            let due = if rate == 0 {
                sent + BATCH as u64
            } else {
                (round_start.elapsed().as_secs_f64() * rate as f64) as u64
            };
            if due <= sent {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            let n = (due - sent).min(BATCH as u64);
            let io = &mut self.senders[self.flow];
            let template = &self.templates[self.flow];
            let ts = self.start.elapsed().as_micros() as u64;
            for _ in 0..n {
                let Some(user) = users.next() else {
                    done = true;
                    break;
                };
                let Some(slot) = io.send.slot() else { break };
                let salt = self.salts.get(user as usize).copied().unwrap_or(0);
                let len = template.write(slot, user, salt, cseq, ts);
                io.send.commit(len, Dest::udp(self.cfg.target));
                sent += 1;
            }
            io.flush();
            self.flow = (self.flow + 1) % self.senders.len();
        }
        (sent, round_start.elapsed().as_secs_f64())
    }

    /// Stops the receiver: the latencies of the main rounds' answers, µs.
    fn close(self) -> std::io::Result<Vec<u32>> {
        self.st.stop.store(true, Ordering::Relaxed);
        self.receiver
            .join()
            .map_err(|_| std::io::Error::other("receiver panicked"))
    }
}

/// Waits until `expected` answers have come, or none came for a second
/// (at most 30 s in all).
fn await_answers(st: &RegState, expected: u64) {
    let begin = Instant::now();
    let mut seen = st.answers.load(Ordering::Relaxed);
    let mut progress = Instant::now();
    while begin.elapsed() < Duration::from_secs(30) {
        let now = st.answers.load(Ordering::Relaxed);
        if now >= expected {
            return;
        }
        if now != seen {
            seen = now;
            progress = Instant::now();
        } else if progress.elapsed() >= Duration::from_secs(1) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the receiver thread and the sender share.
struct RegState {
    stop: AtomicBool,
    /// Answers matched to a REGISTER of ours, any status (duplicates not).
    answers: AtomicU64,
    ok: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
    /// Datagrams that were not an answer to one of our REGISTERs.
    unmatched: AtomicU64,
    /// Microseconds since start when the latest answer came.
    last_us: AtomicU64,
    /// Per user: the CSeq of the latest answer (0: none yet), so that a
    /// duplicate is not counted twice.
    answered_cseq: Vec<AtomicU32>,
    /// Per user: the CSeq of the latest 200 (0: never registered).
    ok_cseq: Vec<AtomicU32>,
    /// Latencies are kept for answers to CSeqs up to this (main rounds).
    last_main_cseq: u32,
}

/// The receiver thread: matches every answer to its REGISTER by the Via
/// branch and counts it in `st`; returns the latencies of the main rounds.
fn receive_answers(
    mut ios: Vec<Mmsg>,
    st: Arc<RegState>,
    start: Instant,
    capacity: usize,
) -> Vec<u32> {
    let mut lat: Vec<u32> = Vec::with_capacity(capacity);
    let users = st.ok_cseq.len();
    receive_until(&st.stop, &mut ios, start, |bytes, now| {
        let matched = Message::parse(bytes).ok().and_then(|m| {
            let status = m.status()?;
            let (user, cseq, ts) = parse_branch(m.via().ok()?.branch?)?;
            ((user as usize) < users).then_some((status, user, cseq, ts))
        });
        let Some((status, user, cseq, ts)) = matched else {
            st.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if (100..200).contains(&status) {
            return; // provisional: wait for the final one
        }
        let slot = &st.answered_cseq[user as usize];
        if slot.load(Ordering::Relaxed) == cseq {
            return; // duplicate
        }
        slot.store(cseq, Ordering::Relaxed);
        st.answers.fetch_add(1, Ordering::Relaxed);
        st.last_us.store(now, Ordering::Relaxed);
        match status {
            200 => {
                st.ok.fetch_add(1, Ordering::Relaxed);
                st.ok_cseq[user as usize].store(cseq, Ordering::Relaxed);
            }
            503 => {
                st.s503.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                st.other.fetch_add(1, Ordering::Relaxed);
            }
        }
        if cseq <= st.last_main_cseq {
            lat.push(now.saturating_sub(ts).min(u64::from(u32::MAX)) as u32);
        }
    });
    lat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_round_resends_only_to_the_users_it_retried() {
        // Users 0..4 were sent CSeq 10; 1 and 3 got no 200, so the first
        // retry sends them CSeq 11, and only 3 misses that one too.
        let ok: Vec<AtomicU32> = [10, 0, 10, 0].into_iter().map(AtomicU32::new).collect();
        let first = still_missing(&ok, 0..4, 10);
        assert_eq!(first, vec![1, 3]);
        ok[1].store(11, Ordering::Relaxed);
        // The users answered for CSeq 10 are not missing CSeq 11: they were
        // never sent it (the old loop re-sent to every user here).
        assert_eq!(still_missing(&ok, first.into_iter(), 11), vec![3]);
    }
}
