//! The sink: a UAS on its own thread that answers every request 200.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sipshard::io::mmsg::Mmsg;
use sipshard::io::Backend;
use sipshard::sip::{Host, Message, ResponseWriter};
use sipshard::transport::Dest;

use crate::net::bind;

/// A sink socket answering on its own thread until dropped.
pub struct Sink {
    pub addr: SocketAddr,
    /// Datagrams received so far.
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    pub fn start(addr: SocketAddr) -> std::io::Result<Sink> {
        let sock = bind(addr)?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || answer_until(sock, &stop, &received))
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

/// Answers every request with 200 to its top Via until `stop` is set.
fn answer_until(socket: UdpSocket, stop: &AtomicBool, received: &AtomicU64) {
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
                (Host::V4(ip), p) => SocketAddr::from((ip, p.unwrap_or(5060))),
                (Host::V6(ip), p) => SocketAddr::from((ip, p.unwrap_or(5060))),
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
