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
//!
//! `relay`: forwards every datagram it receives to `--to`, doing no SIP
//! work at all: the floor a proxy's CPU cost per message is compared with.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sipshard::io::mmsg::Mmsg;
use sipshard::io::{Backend, BATCH};
use sipshard::sip::{Message, ResponseWriter};

#[derive(Parser)]
#[command(
    name = "sipshard-load",
    version,
    about = "SIP load generator (UAC + UAS sink) and bare UDP relay"
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
    match Cli::parse().cmd {
        Cmd::Run {
            target,
            rate,
            duration,
            flows,
            sink,
            kv,
        } => {
            if let Err(e) = run(target, rate, duration, flows.max(1), sink, kv) {
                eprintln!("sipshard-load: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Relay {
            listen,
            to,
            duration,
        } => {
            if let Err(e) = relay(listen, to, duration) {
                eprintln!("sipshard-load: {e}");
                std::process::exit(1);
            }
        }
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
                    send.commit(len, to);
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

fn run(
    target: SocketAddr,
    rate: u64,
    duration: f64,
    flows: usize,
    sink: SocketAddr,
    kv: bool,
) -> std::io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let sink_sock = bind(sink)?;
    let sink_addr = sink_sock.local_addr()?;
    let sink_received = Arc::new(AtomicU64::new(0));
    let sink_thread = {
        let (stop, received) = (stop.clone(), sink_received.clone());
        std::thread::spawn(move || sink_loop(sink_sock, stop, received))
    };
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
            let mut fds: Vec<libc::pollfd> = ios
                .iter()
                .map(|_| libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            for (f, io) in fds.iter_mut().zip(&ios) {
                f.fd = io.as_raw_fd();
            }
            while !recv_stop.load(Ordering::Relaxed) {
                // SAFETY: fds is a valid array of pollfd of the given length.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
                if n <= 0 {
                    continue;
                }
                for (i, f) in fds.iter_mut().enumerate() {
                    if f.revents & libc::POLLIN == 0 {
                        continue;
                    }
                    f.revents = 0;
                    let now = start.elapsed().as_micros() as u64;
                    let _ = ios[i].poll(|d, _| {
                        if let Some(sent) = stamp_of(d.bytes) {
                            lat_us.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                        }
                    });
                }
            }
            lat_us
        })
    };

    // Sender: open loop, round-robin over flows, batches of BATCH.
    let mut senders: Vec<Mmsg> = uac.into_iter().map(Mmsg::new).collect();
    let mut sent: u64 = 0;
    let mut flow = 0;
    let until = Duration::from_secs_f64(duration);
    let mut msg = Vec::with_capacity(512);
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
            request(&mut msg, sent, ts, port, sink_addr);
            if let Some(slot) = io.send.slot() {
                slot[..msg.len()].copy_from_slice(&msg);
                io.send.commit(msg.len(), target);
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
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();

    let answered = lat.len() as u64;
    let forwarded = sink_received.load(Ordering::Relaxed);
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    let secs = send_time.as_secs_f64();
    let loss = if sent == 0 {
        0.0
    } else {
        (sent - answered.min(sent)) as f64 * 100.0 / sent as f64
    };
    if kv {
        println!(
            "sent={sent} forwarded={forwarded} answered={answered} loss_pct={loss:.4} offered_per_s={:.0} achieved_per_s={:.0} p50_us={} p99_us={} p999_us={} flows={flows}",
            sent as f64 / secs,
            answered as f64 / secs,
            pct(0.5),
            pct(0.99),
            pct(0.999),
        );
    } else {
        println!(
            "sent {sent} requests in {secs:.2} s ({:.0}/s) over {flows} flows; sink got {forwarded}; answered {answered} ({:.0}/s); loss {loss:.3}%; latency p50 {} us, p99 {} us, p99.9 {} us",
            sent as f64 / secs,
            answered as f64 / secs,
            pct(0.5),
            pct(0.99),
            pct(0.999),
        );
    }
    Ok(())
}

/// An OPTIONS request to the sink, stamped with its sequence number and
/// send time (microseconds since start) in the Via branch.
fn request(out: &mut Vec<u8>, seq: u64, ts_us: u64, port: u16, sink: SocketAddr) {
    use std::io::Write;
    let _ = write!(
        out,
        "OPTIONS sip:load@{sink} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{seq}-{ts_us};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:load@{sink}>\r\n\
From: <sip:uac@127.0.0.1:{port}>;tag=l{port}\r\n\
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

fn relay(listen: SocketAddr, to: SocketAddr, duration: f64) -> std::io::Result<()> {
    let mut io = Mmsg::new(bind(listen)?);
    eprintln!("relay listening on {} -> {to}", io.local_addr()?);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < duration {
        io.poll(|d, send| {
            if let Some(slot) = send.slot() {
                slot[..d.bytes.len()].copy_from_slice(d.bytes);
                send.commit(d.bytes.len(), to);
            }
        })?;
        io.flush();
    }
    Ok(())
}
