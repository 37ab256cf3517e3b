//! TCP peers for the end-to-end tests: a client connection, and a UAS
//! that takes the connections a proxy opens to it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A client connection to `addr`, reads timing out after 3 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

/// A UAS on TCP: the connections a proxy opened to it, read without
/// blocking.
pub struct TcpUas {
    pub listener: std::net::TcpListener,
    pub conns: Vec<(TcpStream, Vec<u8>)>,
}

impl TcpUas {
    pub fn new() -> TcpUas {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        TcpUas {
            listener,
            conns: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// The next whole message on any connection, and which one.
    pub fn next(&mut self) -> (Vec<u8>, usize) {
        self.next_within(3000)
            .expect("no request over TCP within 3 s")
    }

    /// The next whole message within `ms`, and its connection; None when
    /// none came.
    pub fn next_within(&mut self, ms: u64) -> Option<(Vec<u8>, usize)> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            while let Ok((c, _)) = self.listener.accept() {
                c.set_nonblocking(true).unwrap();
                self.conns.push((c, Vec::new()));
            }
            for (i, (c, buf)) in self.conns.iter_mut().enumerate() {
                let mut chunk = [0u8; 4096];
                if let Ok(n) = c.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    // The proxy's messages here have no body.
                    let msg: Vec<u8> = buf.drain(..end + 4).collect();
                    return Some((msg, i));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
