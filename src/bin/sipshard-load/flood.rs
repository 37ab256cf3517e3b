//! `flood`: the "botnet" of the attack test. Binds `--sockets` UDP
//! sockets (kernel-chosen ports) on each of `--source-count` consecutive
//! loopback addresses from `--sources`, and sends requests round-robin over
//! them at `--rate` per second, the `--methods` in turn: INVITEs for users
//! that are not registered (`sip:bot<N>@DOMAIN`) and REGISTERs of new
//! users (`sip:bot<ADDR>x<N>@DOMAIN`, Contact at the sending socket). Each
//! source address stays under a per-source rate limit when RATE /
//! SOURCE-COUNT is below it: this is the flood a per-address limit does
//! not stop.
//!
//! Stops after `--count` requests (default RATE x DURATION) or
//! `--duration` seconds, whichever comes first, reads every answer that
//! arrives meanwhile and for a second afterwards, and prints one line:
//!
//! ```text
//! flood: sent=N answers=M codes=401:n,404:m,503:k seconds=S sources=A sockets=B send_buffer_full=F
//! ```
//!
//! Only loopback targets and sources are accepted (127.0.0.0/8, ::1).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::net::{pollfds, wait_input};

/// At most this many sockets in all (SOURCE-COUNT x SOCKETS).
const MAX_SOCKETS: u64 = 4096;
/// How long answers are read after the last request.
const LINGER: Duration = Duration::from_secs(1);
/// Datagrams read from one socket per readiness, at most.
const READS_PER_WAKE: usize = 256;

#[derive(clap::Args)]
pub struct Args {
    /// The server to flood (a loopback address).
    #[arg(long)]
    target: SocketAddr,
    /// Domain of the requests' users.
    #[arg(long)]
    domain: String,
    /// First source address (IPv4 loopback); the others follow it.
    #[arg(long, default_value = "127.0.1.1")]
    sources: Ipv4Addr,
    /// Consecutive source addresses.
    #[arg(long, default_value_t = 100)]
    source_count: u32,
    /// Sockets (source ports, chosen by the kernel) per address.
    #[arg(long, default_value_t = 4)]
    sockets: u32,
    /// Requests per second, all sources together.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds of sending, at most.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests in all (default RATE x DURATION), at most.
    #[arg(long)]
    count: Option<u64>,
    /// Methods sent in turn, comma separated; REGISTERs register new
    /// users, any other method goes to a user that is not registered.
    #[arg(long, default_value = "INVITE,REGISTER", value_delimiter = ',')]
    methods: Vec<String>,
}

pub fn main(args: Args) -> std::io::Result<()> {
    let summary = flood(&args)?;
    println!("{}", summary.line());
    Ok(())
}

/// What a flood did and what came back.
#[derive(Debug, Default)]
struct Summary {
    sent: u64,
    answers: u64,
    /// Answers by status code ("other": not a SIP response).
    codes: BTreeMap<String, u64>,
    /// Seconds of sending.
    seconds: f64,
    sources: u32,
    sockets: usize,
    /// Requests the kernel refused for a full send buffer.
    send_buffer_full: u64,
}

impl Summary {
    fn line(&self) -> String {
        let codes: Vec<String> = self.codes.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!(
            "flood: sent={} answers={} codes={} seconds={:.1} sources={} sockets={} send_buffer_full={}",
            self.sent,
            self.answers,
            if codes.is_empty() {
                "-".to_string()
            } else {
                codes.join(",")
            },
            self.seconds,
            self.sources,
            self.sockets,
            self.send_buffer_full,
        )
    }

    /// Counts one datagram that came back.
    fn answer(&mut self, datagram: &[u8]) {
        self.answers += 1;
        let mut parts = datagram.splitn(3, |&b| b == b' ');
        let code = match (parts.next(), parts.next()) {
            (Some(b"SIP/2.0"), Some(code)) => String::from_utf8_lossy(code).into_owned(),
            _ => "other".to_string(),
        };
        *self.codes.entry(code).or_default() += 1;
    }
}

/// Checks the arguments; the sources' addresses.
fn sources(args: &Args) -> std::io::Result<Vec<Ipv4Addr>> {
    let bad = |why: &str| {
        Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            why.to_string(),
        ))
    };
    if args.rate < 1 || args.duration.is_nan() || args.duration <= 0.0 {
        return bad("--rate and --duration must be positive");
    }
    if args.source_count < 1 || args.sockets < 1 {
        return bad("--source-count and --sockets must be positive");
    }
    if u64::from(args.source_count) * u64::from(args.sockets) > MAX_SOCKETS {
        return bad("--source-count x --sockets is at most 4096");
    }
    if args.methods.iter().all(|m| m.trim().is_empty()) {
        return bad("--methods names no method");
    }
    let first = u32::from(args.sources);
    let addrs: Vec<Ipv4Addr> = (0..args.source_count)
        .map(|i| first.checked_add(i).map(Ipv4Addr::from))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !args.target.ip().is_loopback() || addrs.is_empty() || !addrs.iter().all(|a| a.is_loopback())
    {
        return bad("target and sources must be loopback addresses");
    }
    Ok(addrs)
}

fn flood(args: &Args) -> std::io::Result<Summary> {
    let addrs = sources(args)?;
    let methods: Vec<String> = args
        .methods
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    let count = args
        .count
        .unwrap_or((args.rate as f64 * args.duration) as u64);
    let mut socks = Vec::with_capacity(addrs.len() * args.sockets as usize);
    for ip in &addrs {
        for _ in 0..args.sockets {
            let s = UdpSocket::bind((*ip, 0))?;
            s.set_nonblocking(true)?;
            let SocketAddr::V4(local) = s.local_addr()? else {
                unreachable!("bound to an IPv4 address")
            };
            socks.push((s, local));
        }
    }
    let mut fds = pollfds(socks.iter().map(|(s, _)| s.as_raw_fd()));
    let mut sum = Summary {
        sources: args.source_count,
        sockets: socks.len(),
        ..Summary::default()
    };
    let mut buf = vec![0u8; 65535];
    let mut msg = Vec::with_capacity(512);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    while sum.sent < count {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due =
            count.min((now.duration_since(start).as_secs_f64() * args.rate as f64) as u64 + 1);
        while sum.sent < due {
            let n = sum.sent;
            let (sock, local) = &socks[(n % socks.len() as u64) as usize];
            msg.clear();
            request(
                &mut msg,
                n,
                &methods[(n % methods.len() as u64) as usize],
                &args.domain,
                *local,
            );
            match sock.send_to(&msg, args.target) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => sum.send_buffer_full += 1,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            sum.sent += 1;
        }
        receive(&mut fds, &socks, 1, &mut buf, &mut sum);
    }
    sum.seconds = start.elapsed().as_secs_f64();
    let linger = Instant::now() + LINGER;
    loop {
        let left = linger.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        receive(
            &mut fds,
            &socks,
            left.as_millis().max(1) as i32,
            &mut buf,
            &mut sum,
        );
    }
    Ok(sum)
}

/// Waits up to `timeout_ms` for answers, then reads what is there.
fn receive(
    fds: &mut [libc::pollfd],
    socks: &[(UdpSocket, SocketAddrV4)],
    timeout_ms: i32,
    buf: &mut [u8],
    sum: &mut Summary,
) {
    if !wait_input(fds, timeout_ms) {
        return;
    }
    for (f, (sock, _)) in fds.iter_mut().zip(socks) {
        if f.revents == 0 {
            continue;
        }
        f.revents = 0;
        for _ in 0..READS_PER_WAKE {
            match sock.recv(buf) {
                Ok(n) => sum.answer(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(_) => break,
            }
        }
    }
}

/// Request `n` of the flood, `method`, sent from `local`: a REGISTER of a
/// new user with its Contact at `local`, or any other method to a user
/// that is not registered.
fn request(out: &mut Vec<u8>, n: u64, method: &str, domain: &str, local: SocketAddrV4) {
    use std::io::Write;
    let (lip, lport) = (local.ip(), local.port());
    let tag = format!("{}x{n}", lip.to_string().replace('.', "-"));
    let (user, extra) = if method == "REGISTER" {
        let user = format!("bot{tag}");
        let extra = format!("Contact: <sip:{user}@{lip}:{lport}>\r\nExpires: 3600\r\n");
        (user, extra)
    } else {
        (
            format!("bot{n}"),
            format!("Contact: <sip:caller@{lip}:{lport}>\r\n"),
        )
    };
    let ruri = if method == "REGISTER" {
        format!("sip:{domain}")
    } else {
        format!("sip:{user}@{domain}")
    };
    let _ = write!(
        out,
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK-fl{n};rport\r\n\
From: <sip:caller{n}@{domain}>;tag=fl{n}\r\n\
To: <sip:{user}@{domain}>\r\n\
Call-ID: flood-{tag}\r\n\
CSeq: 1 {method}\r\n\
{extra}\
Max-Forwards: 70\r\n\
User-Agent: Grandstream GXP2170\r\n\
Content-Length: 0\r\n\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipshard::sip::Message;
    use std::collections::BTreeSet;

    fn args(target: SocketAddr) -> Args {
        Args {
            target,
            domain: "example.test".into(),
            sources: Ipv4Addr::new(127, 0, 0, 1),
            source_count: 1,
            sockets: 2,
            rate: 2000,
            duration: 5.0,
            count: Some(20),
            methods: vec!["INVITE".into(), "register".into()],
        }
    }

    #[test]
    fn requests_are_valid_sip_for_unregistered_and_new_users() {
        let local = SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 7), 4000);
        let mut out = Vec::new();
        request(&mut out, 12, "INVITE", "example.test", local);
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:bot12@example.test"[..]));
        assert_eq!(m.call_id().unwrap(), b"flood-127-0-1-7x12");
        out.clear();
        request(&mut out, 13, "REGISTER", "example.test", local);
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:example.test"[..]));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("To: <sip:bot127-0-1-7x13@example.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("Contact: <sip:bot127-0-1-7x13@127.0.1.7:4000>\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 127.0.1.7:4000;branch=z9hG4bK-fl13;rport\r\n"));
    }

    #[test]
    fn only_loopback_targets_and_sources_are_accepted() {
        let mut a = args("192.0.2.1:5060".parse().unwrap());
        assert!(sources(&a).is_err());
        a.target = "127.0.0.1:5060".parse().unwrap();
        assert_eq!(sources(&a).unwrap(), vec![Ipv4Addr::new(127, 0, 0, 1)]);
        // 127.255.255.254 and the next one stay in 127.0.0.0/8; a third
        // would leave it.
        a.sources = Ipv4Addr::new(127, 255, 255, 254);
        a.source_count = 2;
        assert!(sources(&a).is_ok());
        a.source_count = 3;
        assert!(sources(&a).is_err());
        a.source_count = 4097;
        a.sources = Ipv4Addr::new(127, 0, 1, 1);
        assert!(sources(&a).is_err(), "too many sockets");
    }

    #[test]
    fn a_flood_sends_count_requests_over_every_socket_and_tallies_the_answers() {
        // A server on loopback that answers every request 404, or with a
        // datagram that is not SIP when it is the 5th.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let target = server.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            let until = Instant::now() + Duration::from_secs(10);
            while seen.len() < 20 && Instant::now() < until {
                let Ok((n, from)) = server.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply: &[u8] = if seen.len() == 4 {
                    b"hello"
                } else {
                    b"SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                };
                server.send_to(reply, from).unwrap();
                seen.push((from, text));
            }
            seen
        });
        let sum = flood(&args(target)).unwrap();
        let seen = thread.join().unwrap();
        assert_eq!(sum.sent, 20);
        assert_eq!(sum.sockets, 2);
        assert_eq!(sum.answers, 20);
        assert_eq!(
            sum.codes,
            BTreeMap::from([("404".to_string(), 19), ("other".to_string(), 1)])
        );
        assert_eq!(seen.len(), 20);
        let ports: BTreeSet<u16> = seen.iter().map(|(a, _)| a.port()).collect();
        assert_eq!(ports.len(), 2, "both sockets sent");
        assert!(seen[0].1.starts_with("INVITE sip:bot0@example.test "));
        assert!(seen[1].1.starts_with("REGISTER sip:example.test "));
        assert!(sum
            .line()
            .starts_with("flood: sent=20 answers=20 codes=404:19,other:1 seconds="));
        assert!(sum
            .line()
            .ends_with(" sources=1 sockets=2 send_buffer_full=0"));
    }
}
