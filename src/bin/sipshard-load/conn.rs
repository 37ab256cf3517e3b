//! The caller's side of a SIP connection over TCP, TLS, WebSocket or
//! secure WebSocket, non-blocking, for `run`, `handshakes` and `hold`:
//! connect, the TLS handshake, the WebSocket upgrade, then SIP messages
//! out and in.
//!
//! Made of sipshard's own pieces where they exist: the TLS session is the
//! lib's socketless [`TlsClientSession`] (what the proxy itself uses for
//! next hops), messages on a stream are framed by its Content-Length
//! [`Framer`] (RFC 3261 §18.3), and WebSocket frames by its header
//! writer with the client's half in [`crate::ws`]. A connection only
//! moves forward, [`Phase::Connecting`] to [`Phase::Ready`]; anything
//! wrong on it (an error, bad input, the peer closing) is a [`Fault`]
//! that ends it and is counted under its name. Nothing read from the
//! network is trusted: no input panics.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sipshard::transport::stream::{Framer, PONG};
use sipshard::transport::tls::TlsClientSession;
use sipshard::transport::websocket::Opcode;
use sipshard::transport::Transport;
use socket2::{Domain, Protocol, Socket, Type};

use crate::ws::{check_answer, next_server_frame, push_frame, upgrade_request};

/// Longest message read back (a 200 is a few hundred bytes).
const MAX_MESSAGE: usize = 65_535;
/// Bytes waiting to be written to one connection past which a new message
/// is not queued (counted as unsent): the server is not reading.
const OUT_CAP: usize = 4 << 20;
/// Reads from one connection per readiness, at most, so one busy
/// connection cannot starve the others.
const READS_PER_WAKE: usize = 8;

/// `--transport`: one of sipshard's transport names, any case.
pub fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::from_token(s.as_bytes())
        .ok_or_else(|| format!("{s:?}: not udp, tcp, tls, ws or wss"))
}

/// A client configuration trusting the CA certificates in `ca` (PEM),
/// offering TLS 1.3 only, so that a server that cannot speak it fails
/// rather than quietly measuring TLS 1.2. With `resume` false no session
/// is remembered, so every handshake is a full one. (sipshard's
/// `client_config` for next hops offers 1.2 as well and always resumes.)
pub fn tls_config(ca: &Path, resume: bool) -> io::Result<Arc<ClientConfig>> {
    let bad = |e: &dyn std::fmt::Display| io::Error::other(format!("{}: {e}", ca.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Where and how connections are made.
#[derive(Clone)]
pub struct Dialer {
    pub target: SocketAddr,
    pub transport: Transport,
    /// For TLS and WSS; the server's certificate must name the target's
    /// address (an IP subjectAltName).
    pub tls: Option<Arc<ClientConfig>>,
}

impl Dialer {
    /// A dialer for `transport` (not UDP); TLS and WSS need `tls`.
    pub fn new(
        target: SocketAddr,
        transport: Transport,
        tls: Option<Arc<ClientConfig>>,
    ) -> io::Result<Dialer> {
        if !transport.is_stream() {
            return Err(io::Error::other("a connection is TCP, TLS, WS or WSS"));
        }
        if matches!(transport, Transport::Tls | Transport::Wss) && tls.is_none() {
            return Err(io::Error::other("TLS needs --tls-ca"));
        }
        Ok(Dialer {
            target,
            transport,
            tls,
        })
    }

    /// Starts a connection from `source` (an address of this host; port
    /// chosen by the kernel), or from the kernel's choice.
    pub fn start(&self, source: Option<IpAddr>) -> Result<Conn, Fault> {
        let sock = Socket::new(
            Domain::for_address(self.target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(|e| Fault::io("socket", &e))?;
        sock.set_nonblocking(true)
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| Fault::io("socket", &e))?;
        if let Some(ip) = source {
            sock.bind(&SocketAddr::new(ip, 0).into())
                .map_err(|e| Fault::io("bind", &e))?;
        }
        match sock.connect(&self.target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(Fault::io("connect", &e)),
        }
        let tls = match (&self.tls, self.transport) {
            (Some(cfg), Transport::Tls | Transport::Wss) => Some(
                TlsClientSession::new(cfg.clone(), ServerName::from(self.target.ip()))
                    .map_err(|_| Fault::named("tls"))?,
            ),
            _ => None,
        };
        Ok(Conn {
            sock: sock.into(),
            local: None,
            host: self.target.to_string(),
            tls,
            transport: self.transport,
            ws: matches!(self.transport, Transport::Ws | Transport::Wss),
            phase: Phase::Connecting,
            out: Vec::new(),
            plain: Vec::new(),
            framer: Framer::default(),
            mask: 0x9e37_79b9,
            frame: Vec::new(),
            started: Instant::now(),
            eof: false,
        })
    }
}

/// How far a connection has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect is under way.
    Connecting,
    /// The TLS handshake is under way.
    Tls,
    /// The WebSocket upgrade was sent; its answer is awaited.
    Upgrade,
    /// SIP messages go both ways.
    Ready,
}

/// What ended a connection, by name (`connect`, `tls`, `closed`, ...),
/// for the counts a run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault(pub &'static str);

impl Fault {
    fn named(name: &'static str) -> Fault {
        Fault(name)
    }

    /// An I/O error while doing `what`; a refused or reset connection
    /// gets its own name.
    fn io(what: &'static str, e: &io::Error) -> Fault {
        match e.kind() {
            ErrorKind::ConnectionRefused => Fault("refused"),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Fault("reset"),
            _ if e.raw_os_error() == Some(libc::EMFILE) => Fault("no_fds"),
            _ if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Fault("no_ports"),
            _ => Fault(what),
        }
    }
}

/// Counts of [`Fault`]s by name.
#[derive(Default, Debug)]
pub struct Faults(BTreeMap<&'static str, u64>);

impl Faults {
    pub fn add(&mut self, f: Fault) {
        *self.0.entry(f.0).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `name:count,...`, or `none`.
    pub fn list(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        parts.join(",")
    }
}

/// One connection to the server.
pub struct Conn {
    sock: TcpStream,
    /// Our address, once connected.
    local: Option<SocketAddr>,
    /// The Host of the WebSocket upgrade.
    host: String,
    tls: Option<TlsClientSession>,
    transport: Transport,
    ws: bool,
    phase: Phase,
    /// Bytes for the socket (ciphertext with TLS) not written yet.
    out: Vec<u8>,
    /// Bytes read (plaintext with TLS) not yet taken as messages.
    plain: Vec<u8>,
    framer: Framer,
    /// The next WebSocket masking key (a counter stepped per frame).
    mask: u32,
    /// A WebSocket frame being made.
    frame: Vec<u8>,
    /// When [`Dialer::start`] made it.
    pub started: Instant,
    /// The server closed its side (end of stream, close_notify or a
    /// WebSocket Close).
    eof: bool,
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Conn {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Our address (zero until connected).
    pub fn local(&self) -> SocketAddr {
        self.local
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The server has closed its side.
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// True when poll should wait for the socket to take bytes.
    pub fn wants_write(&self) -> bool {
        self.phase == Phase::Connecting || !self.out.is_empty()
    }

    /// The socket alone, for a connection held open and idle: the TLS
    /// state and buffers are dropped (nothing more is sent or read on it).
    pub fn into_socket(self) -> TcpStream {
        self.sock
    }

    /// Moves on from [`Phase::Connecting`] once the socket is writable:
    /// the connect finished, or failed.
    fn connected(&mut self) -> Result<(), Fault> {
        if let Some(e) = self
            .sock
            .take_error()
            .map_err(|e| Fault::io("connect", &e))?
        {
            return Err(Fault::io("connect", &e));
        }
        match self.sock.local_addr() {
            Ok(a) => self.local = Some(a),
            Err(e) => return Err(Fault::io("connect", &e)),
        }
        match self.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(Fault::io("connect", &e)),
        }
        if let Some(tls) = &mut self.tls {
            tls.take_outgoing(&mut self.out);
            self.phase = Phase::Tls;
        } else {
            self.after_handshake();
        }
        Ok(())
    }

    /// After the TLS handshake (or the connect, without TLS): the
    /// WebSocket upgrade, or ready.
    fn after_handshake(&mut self) {
        if self.ws {
            let req = upgrade_request(&self.host);
            self.wire(req.as_bytes()).ok();
            self.phase = Phase::Upgrade;
        } else {
            self.phase = Phase::Ready;
        }
    }

    /// Queues bytes for the wire, encrypted when over TLS.
    fn wire(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        match &mut self.tls {
            Some(tls) => {
                tls.send(bytes).map_err(|_| Fault::named("tls"))?;
                tls.take_outgoing(&mut self.out);
            }
            None => self.out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Queues one SIP message (in a WebSocket frame over WS); false,
    /// with nothing queued, when the connection is not ready or already
    /// holds [`OUT_CAP`] bytes the server has not taken.
    pub fn send(&mut self, msg: &[u8]) -> Result<bool, Fault> {
        if self.phase != Phase::Ready || self.out.len() >= OUT_CAP || self.eof {
            return Ok(false);
        }
        if self.ws {
            self.frame_out(Opcode::Text, msg);
            let frame = std::mem::take(&mut self.frame);
            let r = self.wire(&frame);
            self.frame = frame;
            r?;
        } else {
            self.wire(msg)?;
        }
        Ok(true)
    }

    /// Makes a client frame in `self.frame`, with the next mask.
    fn frame_out(&mut self, opcode: Opcode, payload: &[u8]) {
        self.mask = self
            .mask
            .wrapping_mul(0x0019_660d)
            .wrapping_add(0x3c6e_f35f);
        self.frame.clear();
        push_frame(&mut self.frame, opcode, payload, self.mask.to_be_bytes());
    }

    /// Queues TLS close_notify (RFC 8446 §6.1), so that the server ends
    /// the connection in order; without TLS, shuts our side down.
    pub fn close(&mut self) {
        match &mut self.tls {
            Some(tls) => {
                tls.close();
                tls.take_outgoing(&mut self.out);
            }
            None => {
                let _ = self.sock.shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Writes what is queued, as much as the socket takes.
    pub fn flush(&mut self) -> Result<(), Fault> {
        if self.phase == Phase::Connecting {
            return Ok(());
        }
        let mut done = 0;
        while done < self.out.len() {
            match self.sock.write(&self.out[done..]) {
                Ok(0) => return Err(Fault::named("write")),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::io("write", &e)),
            }
        }
        self.out.drain(..done);
        Ok(())
    }

    /// Handles readiness from poll (`revents`): finishes the connect,
    /// reads what has come, moves through the handshakes, and calls
    /// `on(message)` for every SIP message received once ready. Then
    /// writes what that queued. `scratch` is a read buffer shared by all
    /// connections. Returns the messages handed to `on`.
    pub fn ready(
        &mut self,
        revents: i16,
        scratch: &mut [u8],
        on: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, Fault> {
        if self.phase == Phase::Connecting {
            if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
                return Ok(0);
            }
            self.connected()?;
            if self.phase == Phase::Connecting {
                return Ok(0);
            }
        }
        let mut got = 0;
        if revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
            self.read(scratch)?;
            got = self.take(on)?;
        }
        self.flush()?;
        Ok(got)
    }

    /// Reads what the socket has (bounded per call) into `plain`,
    /// through TLS when there is TLS.
    fn read(&mut self, scratch: &mut [u8]) -> Result<(), Fault> {
        for _ in 0..READS_PER_WAKE {
            let n = match self.sock.read(scratch) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fault::io("read", &e)),
            };
            match &mut self.tls {
                Some(tls) => {
                    let r = tls.receive(&scratch[..n], &mut self.plain);
                    // An alert to send (on error) or a key update.
                    tls.take_outgoing(&mut self.out);
                    if r.is_err() {
                        let _ = self.flush();
                        return Err(Fault::named(if self.phase == Phase::Tls {
                            "tls_handshake"
                        } else {
                            "tls"
                        }));
                    }
                    if tls.peer_closed() {
                        self.eof = true;
                    }
                }
                None => self.plain.extend_from_slice(&scratch[..n]),
            }
            if n < scratch.len() {
                break;
            }
        }
        Ok(())
    }

    /// Moves through the phases on what has been read, then hands every
    /// whole message to `on`; bytes of a message not whole yet stay.
    fn take(&mut self, on: &mut dyn FnMut(&[u8])) -> Result<usize, Fault> {
        if self.phase == Phase::Tls && self.tls.as_ref().is_some_and(|t| !t.is_handshaking()) {
            self.after_handshake();
        }
        if self.phase == Phase::Upgrade {
            match check_answer(&self.plain) {
                Ok(Some(len)) => {
                    self.plain.drain(..len);
                    self.phase = Phase::Ready;
                }
                Ok(None) => {}
                Err(e) => return Err(Fault(e.as_str())),
            }
        }
        if self.phase != Phase::Ready {
            return Ok(0);
        }
        let r = if self.ws {
            self.take_frames(on)
        } else {
            self.take_stream(on)
        };
        let (got, used) = r?;
        self.plain.drain(..used);
        Ok(got)
    }

    /// Messages framed by Content-Length (§18.3); a ping is answered.
    fn take_stream(&mut self, on: &mut dyn FnMut(&[u8])) -> Result<(usize, usize), Fault> {
        use sipshard::transport::stream::Frame;
        let (mut got, mut at) = (0, 0);
        let mut pings = 0;
        loop {
            let frame = self
                .framer
                .next(&self.plain[at..], MAX_MESSAGE)
                .map_err(|_| Fault::named("framing"))?;
            match frame {
                Frame::Message { len } => {
                    on(&self.plain[at..at + len]);
                    got += 1;
                }
                Frame::Ping { .. } => pings += 1,
                Frame::Skip { .. } => {}
                Frame::Incomplete => break,
            }
            at += frame.consumed();
        }
        for _ in 0..pings {
            self.wire(PONG)?;
        }
        Ok((got, at))
    }

    /// One SIP message per text or binary frame (RFC 7118 §5); a ping
    /// gets its pong, a Close ends the connection.
    fn take_frames(&mut self, on: &mut dyn FnMut(&[u8])) -> Result<(usize, usize), Fault> {
        let (mut got, mut at) = (0, 0);
        let mut pongs: Vec<Vec<u8>> = Vec::new();
        while let Some(f) =
            next_server_frame(&self.plain[at..], MAX_MESSAGE).map_err(|e| Fault(e.as_str()))?
        {
            let payload = at + f.payload.start..at + f.payload.end;
            match f.opcode {
                Opcode::Text | Opcode::Binary => {
                    on(&self.plain[payload]);
                    got += 1;
                }
                Opcode::Ping => pongs.push(self.plain[payload].to_vec()),
                Opcode::Close => self.eof = true,
                Opcode::Pong | Opcode::Continuation => {}
            }
            at += f.len;
        }
        for p in pongs {
            self.frame_out(Opcode::Pong, &p);
            let frame = std::mem::take(&mut self.frame);
            let r = self.wire(&frame);
            self.frame = frame;
            r?;
        }
        Ok((got, at))
    }
}

/// `pollfd`s for `conns`: input always, output while connecting or with
/// bytes queued.
pub fn poll_set<'a>(conns: impl Iterator<Item = &'a Conn>, fds: &mut Vec<libc::pollfd>) {
    fds.clear();
    fds.extend(conns.map(|c| libc::pollfd {
        fd: c.as_raw_fd(),
        events: libc::POLLIN | if c.wants_write() { libc::POLLOUT } else { 0 },
        revents: 0,
    }));
}

/// Waits for `fds` up to `timeout_us` microseconds (ppoll: finer than
/// poll's milliseconds); the number of descriptors with events.
pub fn wait(fds: &mut [libc::pollfd], timeout_us: u64) -> usize {
    let ts = libc::timespec {
        tv_sec: (timeout_us / 1_000_000) as libc::time_t,
        tv_nsec: ((timeout_us % 1_000_000) * 1000) as libc::c_long,
    };
    // SAFETY: fds is a valid array of pollfd of the given length; ts lives
    // across the call; no signal mask is passed.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    n.max(0) as usize
}

/// Raises this process's open-file limit to its hard limit (a script
/// raises the hard one with `ulimit -n`); the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill / read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// True for a loopback address: `handshakes` and `hold` open connections
/// by the thousand and only ever to this host.
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use sipshard::transport::websocket::{decode, encode_header, write_accept, MAX_HEADER_LEN};

    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1-7\r\nContent-Length: 0\r\n\r\n";

    /// A connection of `transport` to a listener of this test, and the
    /// server's end of it (the WebSocket upgrade left to the caller).
    fn pair(transport: Transport) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = Dialer::new(listener.local_addr().unwrap(), transport, None).unwrap();
        let conn = dialer.start(None).unwrap();
        let (server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        (conn, server)
    }

    /// Polls `conn` until `done`, for at most 2 s; the messages it gave
    /// and the fault that ended it, if any.
    fn drive(
        conn: &mut Conn,
        done: impl Fn(&Conn, usize) -> bool,
    ) -> (Vec<Vec<u8>>, Option<Fault>) {
        let (mut fds, mut scratch, mut got) = (Vec::new(), vec![0u8; 1 << 16], Vec::new());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !done(conn, got.len()) {
            poll_set(std::iter::once(&*conn), &mut fds);
            wait(&mut fds, 10_000);
            if fds[0].revents != 0 {
                if let Err(f) =
                    conn.ready(fds[0].revents, &mut scratch, &mut |m| got.push(m.to_vec()))
                {
                    return (got, Some(f));
                }
            }
        }
        (got, None)
    }

    #[test]
    fn tcp_messages_are_framed_by_content_length_whatever_the_segments() {
        let (mut conn, mut server) = pair(Transport::Tcp);
        drive(&mut conn, |c, _| c.phase() == Phase::Ready);
        assert_eq!(conn.phase(), Phase::Ready);
        assert!(conn.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap());
        conn.flush().unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        // Two messages and a ping, cut across three writes.
        let mut stream = OK.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(OK);
        for part in [
            &stream[..10],
            &stream[10..OK.len() + 2],
            &stream[OK.len() + 2..],
        ] {
            server.write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let (got, fault) = drive(&mut conn, |_, n| n == 2);
        assert_eq!(fault, None);
        assert_eq!(got, vec![OK.to_vec(), OK.to_vec()]);
        // The ping got its pong.
        drive(&mut conn, |c, _| !c.wants_write());
        let n = server.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], PONG);
    }

    #[test]
    fn bad_input_ends_a_connection_with_a_named_fault() {
        let (mut conn, mut server) = pair(Transport::Tcp);
        drive(&mut conn, |c, _| c.phase() == Phase::Ready);
        server
            .write_all(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
            .unwrap();
        assert_eq!(drive(&mut conn, |_, _| false).1, Some(Fault("framing")));
        // A server that closes: the end of the stream is seen.
        let (mut conn, server) = pair(Transport::Tcp);
        drop(server);
        drive(&mut conn, |c, _| c.eof());
        assert!(conn.eof());
    }

    #[test]
    fn websocket_upgrade_then_one_message_per_frame_and_pings_answered() {
        let (mut conn, mut server) = pair(Transport::Ws);
        drive(&mut conn, |c, _| c.phase() == Phase::Upgrade);
        let mut req = vec![0u8; 1024];
        let n = server.read(&mut req).unwrap();
        let req = String::from_utf8_lossy(&req[..n]).into_owned();
        assert!(req.starts_with("GET / HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Sec-WebSocket-Protocol: sip\r\n"), "{req}");
        // sipshard's own 101, then two frames and a ping in one write.
        let mut answer = vec![0u8; 512];
        let n = write_accept(crate::ws::KEY.as_bytes(), &mut answer);
        answer.truncate(n);
        for (op, payload) in [
            (Opcode::Text, OK),
            (Opcode::Ping, &b"hi"[..]),
            (Opcode::Binary, OK),
        ] {
            let mut head = [0u8; MAX_HEADER_LEN];
            let h = encode_header(op, true, payload.len(), &mut head);
            answer.extend_from_slice(&head[..h]);
            answer.extend_from_slice(payload);
        }
        server.write_all(&answer).unwrap();
        let (got, fault) = drive(&mut conn, |_, n| n == 2);
        assert_eq!(fault, None);
        assert_eq!(conn.phase(), Phase::Ready);
        assert_eq!(got, vec![OK.to_vec(), OK.to_vec()]);
        // Our message and the pong arrive as masked frames sipshard reads.
        assert!(conn.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap());
        drive(&mut conn, |c, _| !c.wants_write());
        let mut buf = vec![0u8; 1024];
        let mut have = 0;
        let mut frames = Vec::new();
        while frames.len() < 2 {
            have += server.read(&mut buf[have..]).unwrap();
            let mut at = 0;
            frames.clear();
            let mut copy = buf[..have].to_vec();
            while let Ok(Some((f, used))) = decode(&mut copy[at..], 4096) {
                frames.push((f.opcode, f.bytes(&copy[at..]).to_vec()));
                at += used;
            }
        }
        assert_eq!(frames[0], (Opcode::Pong, b"hi".to_vec()));
        assert_eq!(
            frames[1],
            (Opcode::Text, b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec())
        );
    }

    #[test]
    fn a_refused_upgrade_is_a_fault() {
        let (mut conn, mut server) = pair(Transport::Ws);
        drive(&mut conn, |c, _| c.phase() == Phase::Upgrade);
        server
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .unwrap();
        assert_eq!(
            drive(&mut conn, |_, _| false).1,
            Some(Fault("ws_handshake"))
        );
    }
}
