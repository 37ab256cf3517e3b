//! sipshard-load: an open-loop SIP load generator that plays UAC and UAS
//! at once, and a bare UDP relay to measure the floor against.
//!
//! `run`: UAC flows send OPTIONS requests (R-URI = the sink) through the
//! proxy at `--rate` per second (0 = as fast as the sockets take them) for
//! `--duration` seconds; the sink answers each with 200 to its top Via; the
//! UAC matches answers by the sequence number and send time stamped in the
//! Via branch. Traffic is spread over `--flows` source ports so the
//! kernel's 4-tuple hash reaches every shard. Report: sent, forwarded
//! (reached the sink), answered, loss, achieved rate, latency p50/p99/p99.9.
//! With `--users N --domain D` the R-URIs cycle over `sip:uNNNNNNN@D` (N
//! users the server's location service knows): the run first registers
//! them with the sink as Contact (unless `--no-register`, when an earlier
//! `register` with the same `--sink` did), so every request is a lookup.
//!
//! `register`: REGISTERs for `--users` distinct AORs `uNNNNNNN@DOMAIN`
//! (u0000000, u0000001, ...), each with a Contact at our sink socket, at
//! `--rate` per second over `--flows` source ports; then `--refreshes` more
//! rounds over every user with the same Call-ID and a higher CSeq. Each
//! message is a per-flow template copied into a send slot with its
//! fixed-width fields (user, CSeq, send time) patched in place; answers
//! are matched by the Via branch, which carries user, CSeq and send time.
//! Report: sent, 200s, 503s, other statuses, unanswered, offered and
//! achieved rate, latency p50/p99/p99.9.
//!
//! `relay`: forwards every datagram it receives to `--to`, doing no SIP
//! work at all: the floor a proxy's CPU cost per message is compared with.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sipshard::io::mmsg::Mmsg;
use sipshard::io::{Backend, BATCH};
use sipshard::sip::{Message, ResponseWriter};
use sipshard::transport::Dest;

#[derive(Parser)]
#[command(
    name = "sipshard-load",
    version,
    about = "SIP load generator (UAC + UAS sink, registrations) and bare UDP relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send requests through a proxy to our own sink and measure.
    Run {
        /// The proxy to send through.
        #[arg(long)]
        target: SocketAddr,
        /// Requests per second; 0 sends as fast as possible.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of sending (answers are awaited one more second).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// UAC source sockets (ports) to spread the traffic over.
        #[arg(long, default_value_t = 8)]
        flows: usize,
        /// Address of the sink (UAS) socket.
        #[arg(long, default_value = "127.0.0.1:0")]
        sink: SocketAddr,
        /// Address requests to N registered users `sip:uNNNNNNN@DOMAIN` in
        /// turn (0: to the sink's address directly, a plain proxy run).
        #[arg(long, default_value_t = 0)]
        users: u32,
        /// Domain of the users (with --users).
        #[arg(long, default_value = "example.com")]
        domain: String,
        /// With --users: do not register them first (an earlier `register`
        /// with the same --sink did).
        #[arg(long)]
        no_register: bool,
        /// With --users: REGISTERs per second when registering them first
        /// (0 = as fast as possible); users missing a 200 are retried up
        /// to 5 times, and the run stops if any is still missing.
        #[arg(long, default_value_t = 20_000)]
        register_rate: u64,
        /// With --users: the Expires the users register with.
        #[arg(long, default_value_t = 3600)]
        expires: u32,
        /// Print one machine-readable line (key=value) instead of prose.
        #[arg(long)]
        kv: bool,
    },
    /// Register users at a registrar and measure.
    Register {
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
        /// Print one machine-readable line (key=value) instead of prose.
        #[arg(long)]
        kv: bool,
    },
    /// Relay every datagram to --to, untouched (the floor).
    Relay {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to send everything.
        #[arg(long)]
        to: SocketAddr,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600.0)]
        duration: f64,
    },
}

fn main() {
    let result = match Cli::parse().cmd {
        Cmd::Run {
            target,
            rate,
            duration,
            flows,
            sink,
            users,
            domain,
            no_register,
            register_rate,
            expires,
            kv,
        } => run(RunConfig {
            target,
            rate,
            duration,
            flows: flows.max(1),
            sink,
            users,
            domain,
            no_register,
            register_rate,
            expires,
            kv,
        }),
        Cmd::Register {
            target,
            users,
            domain,
            rate,
            flows,
            sink,
            refreshes,
            expires,
            retry_missing,
            kv,
        } => register_cmd(
            RegConfig {
                target,
                users,
                domain,
                rate,
                flows: flows.max(1),
                contact: sink,
                refreshes,
                expires,
                retries: retry_missing,
            },
            sink,
            kv,
        ),
        Cmd::Relay {
            listen,
            to,
            duration,
        } => relay(listen, to, duration),
    };
    if let Err(e) = result {
        eprintln!("sipshard-load: {e}");
        std::process::exit(1);
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let b = sipshard::io::socket::bind_shard_socket(
        addr,
        &sipshard::io::socket::SocketOptions {
            recv_buffer: Some(8 << 20),
            send_buffer: Some(8 << 20),
        },
    )?;
    Ok(b.socket)
}

/// The sink: answers every request with 200 to its top Via.
fn sink_loop(socket: UdpSocket, stop: Arc<AtomicBool>, received: Arc<AtomicU64>) {
    let mut io = Mmsg::new(socket);
    while !stop.load(Ordering::Relaxed) {
        let mut n = 0;
        let r = io.poll(|d, send| {
            n += 1;
            let Ok(msg) = Message::parse(d.bytes) else {
                return;
            };
            if !msg.is_request() {
                return;
            }
            let Ok(via) = msg.via() else { return };
            let to = match (via.host, via.port) {
                (sipshard::sip::Host::V4(ip), p) => SocketAddr::from((ip, p.unwrap_or(5060))),
                (sipshard::sip::Host::V6(ip), p) => SocketAddr::from((ip, p.unwrap_or(5060))),
                _ => return,
            };
            if let Some(slot) = send.slot() {
                let len = ResponseWriter::new(&msg, 200, &[b"OK"], Some(b"sink"), slot)
                    .and_then(|w| w.finish());
                if let Ok(len) = len {
                    send.commit(len, Dest::udp(to));
                }
            }
        });
        if r.is_err() {
            break;
        }
        received.fetch_add(n, Ordering::Relaxed);
        io.flush();
    }
}

/// A sink socket answering on its own thread until dropped.
struct Sink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(addr: SocketAddr) -> std::io::Result<Sink> {
        let sock = bind(addr)?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || sink_loop(sock, stop, received))
        };
        Ok(Sink {
            addr,
            received,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `pollfd`s for a set of sockets, waiting for input.
fn pollfds(ios: &[Mmsg]) -> Vec<libc::pollfd> {
    ios.iter()
        .map(|io| libc::pollfd {
            fd: io.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

/// Waits up to 50 ms for input on `fds`; false on timeout.
fn wait_input(fds: &mut [libc::pollfd]) -> bool {
    // SAFETY: fds is a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
    n > 0
}

/// Receives on `ios` until `stop` is set, calling `on(datagram, now)` for
/// every datagram (`now`: microseconds since `start`, per batch). One
/// batch per readiness: a second recvmmsg on an emptied socket would block
/// for its timeout.
fn receive_until(
    stop: &AtomicBool,
    ios: &mut [Mmsg],
    start: Instant,
    mut on: impl FnMut(&[u8], u64),
) {
    let mut fds = pollfds(ios);
    while !stop.load(Ordering::Relaxed) {
        if !wait_input(&mut fds) {
            continue;
        }
        for (i, f) in fds.iter_mut().enumerate() {
            if f.revents & libc::POLLIN == 0 {
                continue;
            }
            f.revents = 0;
            let now = start.elapsed().as_micros() as u64;
            let _ = ios[i].poll(|d, _| on(d.bytes, now));
        }
    }
}

/// The value at fraction `p` of a sorted sample (0 when empty).
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        0
    } else {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }
}

struct RunConfig {
    target: SocketAddr,
    rate: u64,
    duration: f64,
    flows: usize,
    sink: SocketAddr,
    users: u32,
    domain: String,
    no_register: bool,
    register_rate: u64,
    expires: u32,
    kv: bool,
}

fn run(cfg: RunConfig) -> std::io::Result<()> {
    let RunConfig {
        target,
        rate,
        duration,
        flows,
        ..
    } = cfg;
    if cfg.users > MAX_USERS {
        return Err(std::io::Error::other(format!(
            "--users is at most {MAX_USERS}"
        )));
    }
    let sink = Sink::start(cfg.sink)?;
    let sink_addr = sink.addr;
    if cfg.users > 0 && !cfg.no_register {
        let reg = register_users(&RegConfig {
            target,
            users: cfg.users,
            domain: cfg.domain.clone(),
            rate: cfg.register_rate,
            flows,
            contact: sink_addr,
            refreshes: 0,
            expires: cfg.expires,
            retries: 5,
        })?;
        eprintln!(
            "registered {} of {} users at {} (Contact {sink_addr}): {}",
            reg.bound,
            cfg.users,
            target,
            reg.prose()
        );
        if reg.bound < u64::from(cfg.users) {
            return Err(std::io::Error::other(format!(
                "only {} of {} users registered; not running",
                reg.bound, cfg.users
            )));
        }
    }
    let uac: Vec<UdpSocket> = (0..flows)
        .map(|_| bind("127.0.0.1:0".parse().expect("literal")))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();

    // Receiver: answers come back on the flow sockets.
    let recv_socks: Vec<UdpSocket> = uac
        .iter()
        .map(|s| s.try_clone())
        .collect::<Result<_, _>>()?;
    let recv_stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let recv_stop = recv_stop.clone();
        std::thread::spawn(move || {
            let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 20);
            let mut ios: Vec<Mmsg> = recv_socks.into_iter().map(Mmsg::new).collect();
            receive_until(&recv_stop, &mut ios, start, |bytes, now| {
                if let Some(sent) = stamp_of(bytes) {
                    lat_us.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                }
            });
            lat_us
        })
    };

    // Sender: open loop, round-robin over flows, batches of BATCH.
    let mut senders: Vec<Mmsg> = uac.into_iter().map(Mmsg::new).collect();
    let mut sent: u64 = 0;
    let mut flow = 0;
    let until = Duration::from_secs_f64(duration);
    let mut msg = Vec::with_capacity(512);
    let users = (cfg.users > 0).then_some((cfg.users, cfg.domain.as_str()));
    loop {
        let elapsed = start.elapsed();
        if elapsed >= until {
            break;
        }
        let due = if rate == 0 {
            sent + BATCH as u64
        } else {
            (elapsed.as_secs_f64() * rate as f64) as u64
        };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let io = &mut senders[flow];
        let port = io.local_addr()?.port();
        let n = (due - sent).min(BATCH as u64);
        for _ in 0..n {
            let ts = start.elapsed().as_micros() as u64;
            msg.clear();
            request(&mut msg, sent, ts, port, sink_addr, users);
            if let Some(slot) = io.send.slot() {
                slot[..msg.len()].copy_from_slice(&msg);
                io.send.commit(msg.len(), Dest::udp(target));
            }
            sent += 1;
        }
        io.flush();
        flow = (flow + 1) % senders.len();
    }
    let send_time = start.elapsed();
    // Let the last answers arrive.
    std::thread::sleep(Duration::from_secs(1));
    recv_stop.store(true, Ordering::Relaxed);
    let mut lat = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))?;
    let forwarded = sink.received.load(Ordering::Relaxed);
    drop(sink);

    let answered = lat.len() as u64;
    lat.sort_unstable();
    let pct = |p: f64| percentile(&lat, p);
    let secs = send_time.as_secs_f64();
    let loss = if sent == 0 {
        0.0
    } else {
        (sent - answered.min(sent)) as f64 * 100.0 / sent as f64
    };
    if cfg.kv {
        println!(
            "sent={sent} forwarded={forwarded} answered={answered} loss_pct={loss:.4} offered_per_s={:.0} achieved_per_s={:.0} p50_us={} p90_us={} p99_us={} p999_us={} flows={flows} users={}",
            sent as f64 / secs,
            answered as f64 / secs,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999),
            cfg.users,
        );
    } else {
        println!(
            "sent {sent} requests in {secs:.2} s ({:.0}/s) over {flows} flows{}; sink got {forwarded}; answered {answered} ({:.0}/s); loss {loss:.3}%; latency p50 {} us, p99 {} us, p99.9 {} us",
            sent as f64 / secs,
            if cfg.users > 0 {
                format!(" to {} users @{}", cfg.users, cfg.domain)
            } else {
                String::new()
            },
            answered as f64 / secs,
            pct(0.5),
            pct(0.99),
            pct(0.999),
        );
    }
    Ok(())
}

/// An OPTIONS request to the sink (or, with `users`, to user `seq % N` of
/// the domain), stamped with its sequence number and send time
/// (microseconds since start) in the Via branch.
fn request(
    out: &mut Vec<u8>,
    seq: u64,
    ts_us: u64,
    port: u16,
    sink: SocketAddr,
    users: Option<(u32, &str)>,
) {
    use std::io::Write;
    let user = users.map(|(n, domain)| (seq % u64::from(n), domain));
    let _ = match user {
        Some((u, domain)) => write!(out, "OPTIONS sip:u{u:07}@{domain} SIP/2.0\r\n"),
        None => write!(out, "OPTIONS sip:load@{sink} SIP/2.0\r\n"),
    };
    let _ = write!(
        out,
        "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{seq}-{ts_us};rport\r\n\
Max-Forwards: 70\r\n"
    );
    let _ = match user {
        Some((u, domain)) => write!(out, "To: <sip:u{u:07}@{domain}>\r\n"),
        None => write!(out, "To: <sip:load@{sink}>\r\n"),
    };
    let _ = write!(
        out,
        "From: <sip:uac@127.0.0.1:{port}>;tag=l{port}\r\n\
Call-ID: {seq}-{port}@sipshard-load\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    );
}

/// The send time stamped in the top Via branch of an answer.
fn stamp_of(bytes: &[u8]) -> Option<u64> {
    let msg = Message::parse(bytes).ok()?;
    if msg.status() != Some(200) {
        return None;
    }
    let branch = msg.via().ok()?.branch?;
    let ts = branch.rsplit(|&b| b == b'-').next()?;
    std::str::from_utf8(ts).ok()?.parse().ok()
}

// ---------------------------------------------------------------------
// Registrations.

/// Users are numbered in 7 digits.
const MAX_USERS: u32 = 10_000_000;
const USER_DIGITS: usize = 7;
/// CSeq of the first REGISTER of a run; every later round adds one. Seven
/// digits with no leading zero.
const CSEQ_BASE: u32 = 1_000_000;
const CSEQ_DIGITS: usize = 7;
/// Send time in microseconds since the start of the run.
const TS_DIGITS: usize = 12;
const BRANCH_MAGIC: &[u8] = b"z9hG4bK";
/// `z9hG4bK` USER `.` CSEQ `.` TS
const BRANCH_LEN: usize = BRANCH_MAGIC.len() + USER_DIGITS + 1 + CSEQ_DIGITS + 1 + TS_DIGITS;

/// What to register.
struct RegConfig {
    target: SocketAddr,
    users: u32,
    domain: String,
    rate: u64,
    flows: usize,
    /// Host and port of every Contact.
    contact: SocketAddr,
    refreshes: u32,
    expires: u32,
    retries: u32,
}

/// A REGISTER for one flow with its variable fields at known offsets,
/// built once; a send copies it and overwrites the digits.
struct Template {
    bytes: Vec<u8>,
    user_at: Vec<usize>,
    cseq_at: Vec<usize>,
    ts_at: usize,
}

impl Template {
    fn new(cfg: &RegConfig, via: SocketAddr, tag: u32) -> Template {
        let mut t = Template {
            bytes: Vec::with_capacity(512),
            user_at: Vec::new(),
            cseq_at: Vec::new(),
            ts_at: 0,
        };
        let d = &cfg.domain;
        let user = |t: &mut Template| {
            t.user_at.push(t.bytes.len());
            t.bytes.extend_from_slice(&[b'0'; USER_DIGITS]);
        };
        let cseq = |t: &mut Template| {
            t.cseq_at.push(t.bytes.len());
            t.bytes.extend_from_slice(&[b'1'; CSEQ_DIGITS]);
        };
        let s = |t: &mut Template, text: &str| t.bytes.extend_from_slice(text.as_bytes());
        s(
            &mut t,
            &format!("REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch="),
        );
        s(&mut t, "z9hG4bK");
        user(&mut t);
        s(&mut t, ".");
        cseq(&mut t);
        s(&mut t, ".");
        t.ts_at = t.bytes.len();
        t.bytes.extend_from_slice(&[b'0'; TS_DIGITS]);
        s(&mut t, ";rport\r\nMax-Forwards: 70\r\nTo: <sip:u");
        user(&mut t);
        s(&mut t, &format!("@{d}>\r\nFrom: <sip:u"));
        user(&mut t);
        s(&mut t, &format!("@{d}>;tag=r"));
        user(&mut t);
        s(&mut t, "\r\nCall-ID: ");
        user(&mut t);
        s(&mut t, &format!("-{tag:08x}@sipshard-load\r\nCSeq: "));
        cseq(&mut t);
        s(&mut t, " REGISTER\r\nContact: <sip:u");
        user(&mut t);
        s(
            &mut t,
            &format!(
                "@{}>\r\nExpires: {}\r\nContent-Length: 0\r\n\r\n",
                cfg.contact, cfg.expires
            ),
        );
        t
    }

    /// Writes the REGISTER of `user` with `cseq`, sent at `ts_us`, into
    /// `out`; returns its length (0 if it does not fit).
    fn write(&self, out: &mut [u8], user: u32, cseq: u32, ts_us: u64) -> usize {
        let n = self.bytes.len();
        let Some(out) = out.get_mut(..n) else {
            return 0;
        };
        out.copy_from_slice(&self.bytes);
        for &at in &self.user_at {
            put_digits(&mut out[at..at + USER_DIGITS], u64::from(user));
        }
        for &at in &self.cseq_at {
            put_digits(&mut out[at..at + CSEQ_DIGITS], u64::from(cseq));
        }
        put_digits(&mut out[self.ts_at..self.ts_at + TS_DIGITS], ts_us);
        n
    }
}

/// Writes `v` in decimal into all of `out`, zero-padded on the left.
fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Reads a run of decimal digits.
fn digits(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// (user, CSeq, send time) from a branch we wrote.
fn parse_branch(b: &[u8]) -> Option<(u32, u32, u64)> {
    if b.len() != BRANCH_LEN || !b.starts_with(BRANCH_MAGIC) {
        return None;
    }
    let b = &b[BRANCH_MAGIC.len()..];
    let (user, rest) = b.split_at(USER_DIGITS);
    let (cseq, rest) = rest.get(1..)?.split_at(CSEQ_DIGITS);
    let ts = rest.get(1..)?;
    Some((digits(user)? as u32, digits(cseq)? as u32, digits(ts)?))
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

/// One round's outcome.
#[derive(Clone, Copy, Default)]
struct Round {
    sent: u64,
    ok: u64,
    /// Seconds spent sending.
    send_secs: f64,
    /// Seconds from the first send to the last answer.
    active_secs: f64,
}

/// What a registration run measured.
#[derive(Default)]
struct RegReport {
    users: u32,
    flows: usize,
    /// Main rounds (initial + refreshes).
    sent: u64,
    ok: u64,
    s503: u64,
    other: u64,
    unmatched: u64,
    initial: Round,
    refresh: Round,
    /// Sorted latencies of the main rounds' answers, µs.
    lat: Vec<u32>,
    /// REGISTERs re-sent to users missing a 200, and how many rounds.
    retry_sent: u64,
    retry_rounds: u32,
    /// Users with a 200 in the end.
    bound: u64,
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

    fn kv(&self) -> String {
        let (offered, achieved) = self.main_rate();
        let rate = |r: &Round| r.ok as f64 / r.active_secs.max(1e-9);
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
            rate(&self.initial),
            self.refresh.sent,
            self.refresh.ok,
            rate(&self.refresh),
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

    fn prose(&self) -> String {
        let (offered, achieved) = self.main_rate();
        let rate = |r: &Round| r.ok as f64 / r.active_secs.max(1e-9);
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
            rate(&self.initial),
        );
        if self.refresh.sent > 0 {
            s += &format!(", refreshes {:.0}/s", rate(&self.refresh));
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

/// Sends one round: `cseq` to every user `users` yields, paced at `rate`
/// from now, round-robin over the flows a batch at a time.
#[allow(clippy::too_many_arguments)]
fn send_round(
    senders: &mut [Mmsg],
    templates: &[Template],
    mut users: impl Iterator<Item = u32>,
    cseq: u32,
    rate: u64,
    target: SocketAddr,
    start: Instant,
    flow: &mut usize,
) -> (u64, f64) {
    let round_start = Instant::now();
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
        let io = &mut senders[*flow];
        let template = &templates[*flow];
        let ts = start.elapsed().as_micros() as u64;
        for _ in 0..n {
            let Some(user) = users.next() else {
                done = true;
                break;
            };
            let Some(slot) = io.send.slot() else { break };
            let len = template.write(slot, user, cseq, ts);
            io.send.commit(len, Dest::udp(target));
            sent += 1;
        }
        io.flush();
        *flow = (*flow + 1) % senders.len();
    }
    (sent, round_start.elapsed().as_secs_f64())
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

/// Registers `cfg.users` users, then refreshes them, then retries the
/// missing ones; the sockets are its own.
fn register_users(cfg: &RegConfig) -> std::io::Result<RegReport> {
    if cfg.users > MAX_USERS {
        return Err(std::io::Error::other(format!(
            "--users is at most {MAX_USERS}"
        )));
    }
    let rounds = 1 + u64::from(cfg.refreshes) + u64::from(cfg.retries);
    if rounds >= u64::from(9_999_999 - CSEQ_BASE) {
        return Err(std::io::Error::other("too many rounds"));
    }
    let socks: Vec<UdpSocket> = (0..cfg.flows)
        .map(|_| bind("127.0.0.1:0".parse().expect("literal")))
        .collect::<Result<_, _>>()?;
    // A tag that differs between runs, so that a new run's Call-IDs are new.
    let tag = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
    };
    let templates: Vec<Template> = socks
        .iter()
        .map(|s| Ok(Template::new(cfg, s.local_addr()?, tag)))
        .collect::<std::io::Result<_>>()?;
    let n = cfg.users as usize;
    let last_main_cseq = CSEQ_BASE + cfg.refreshes;
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
        last_main_cseq,
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
    let mut senders: Vec<Mmsg> = socks.into_iter().map(Mmsg::new).collect();
    let mut flow = 0;
    let mut rep = RegReport {
        users: cfg.users,
        flows: cfg.flows,
        ..RegReport::default()
    };
    let mut total_sent = 0;
    let mut one_round = |cseq: u32, users: &mut dyn Iterator<Item = u32>| -> Round {
        let ok_before = st.ok.load(Ordering::Relaxed);
        let begin_us = start.elapsed().as_micros() as u64;
        let (sent, send_secs) = send_round(
            &mut senders,
            &templates,
            users,
            cseq,
            cfg.rate,
            cfg.target,
            start,
            &mut flow,
        );
        total_sent += sent;
        await_answers(&st, total_sent);
        let last = st.last_us.load(Ordering::Relaxed);
        Round {
            sent,
            ok: st.ok.load(Ordering::Relaxed) - ok_before,
            send_secs,
            active_secs: last.saturating_sub(begin_us) as f64 / 1e6,
        }
    };
    rep.initial = one_round(CSEQ_BASE, &mut (0..cfg.users));
    for k in 1..=cfg.refreshes {
        let r = one_round(CSEQ_BASE + k, &mut (0..cfg.users));
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
    let mut cseq = last_main_cseq;
    let mut missing = still_missing(&st.ok_cseq, 0..cfg.users, cseq);
    for _ in 0..cfg.retries {
        if missing.is_empty() {
            break;
        }
        cseq += 1;
        let r = one_round(cseq, &mut missing.iter().copied());
        rep.retry_sent += r.sent;
        rep.retry_rounds += 1;
        // Only the users just retried were sent this CSeq.
        missing = still_missing(&st.ok_cseq, missing.into_iter(), cseq);
    }
    st.stop.store(true, Ordering::Relaxed);
    rep.lat = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))?;
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

fn register_cmd(mut cfg: RegConfig, sink: SocketAddr, kv: bool) -> std::io::Result<()> {
    let sink = Sink::start(sink)?;
    cfg.contact = sink.addr;
    let rep = register_users(&cfg)?;
    drop(sink);
    if kv {
        println!("{} sink={}", rep.kv(), cfg.contact);
    } else {
        println!("{}; Contacts at {}", rep.prose(), cfg.contact);
    }
    Ok(())
}

fn relay(listen: SocketAddr, to: SocketAddr, duration: f64) -> std::io::Result<()> {
    let mut io = Mmsg::new(bind(listen)?);
    eprintln!("relay listening on {} -> {to}", io.local_addr()?);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < duration {
        io.poll(|d, send| {
            if let Some(slot) = send.slot() {
                slot[..d.bytes.len()].copy_from_slice(d.bytes);
                send.commit(d.bytes.len(), Dest::udp(to));
            }
        })?;
        io.flush();
    }
    Ok(())
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

    #[test]
    fn template_writes_a_valid_register_and_its_branch_reads_back() {
        let cfg = RegConfig {
            target: "127.0.0.1:5060".parse().unwrap(),
            users: 10,
            domain: "example.com".into(),
            rate: 0,
            flows: 1,
            contact: "127.0.0.1:5070".parse().unwrap(),
            refreshes: 0,
            expires: 600,
            retries: 0,
        };
        let t = Template::new(&cfg, "127.0.0.1:4000".parse().unwrap(), 0xabc);
        let mut out = [0u8; 1024];
        let n = t.write(&mut out, 1234, CSEQ_BASE + 3, 987_654);
        let m = Message::parse(&out[..n]).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:example.com"[..]));
        assert_eq!(m.cseq().unwrap().number, CSEQ_BASE + 3);
        assert_eq!(m.call_id().unwrap(), b"0001234-00000abc@sipshard-load");
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.contains("To: <sip:u0001234@example.com>\r\n"),
            "{text}"
        );
        assert!(text.contains("Contact: <sip:u0001234@127.0.0.1:5070>\r\n"));
        assert!(text.contains("Expires: 600\r\n"));
        let branch = m.via().unwrap().branch.unwrap();
        assert_eq!(parse_branch(branch), Some((1234, CSEQ_BASE + 3, 987_654)));
        assert_eq!(parse_branch(b"z9hG4bK1-2"), None);
    }
}
