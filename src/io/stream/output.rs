//! What goes to the connections: the queued messages after a batch, this
//! shard's own connections to next hops (opened on first use), TLS and
//! WebSocket framing on the way out, the write queues and closing.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::conn::{Conn, Tls};
use super::outgoing::To;
use super::ws;
use super::{Gone, Outgoing, Streams, GONE_KEPT, TX_LIMIT};
use crate::transport::tls::TlsClientSession;
use crate::transport::{ConnId, Transport};

impl Streams {
    /// Hands every queued message to its connection (each of this shard).
    pub fn send_all(&mut self, out: &mut Outgoing) {
        for k in 0..out.items.len() {
            let (to, start, len) = out.items[k];
            let data = &out.bytes[start..start + len];
            let id = match to {
                To::Conn(id) if self.conns.get(id).is_none() => {
                    self.counts.sends_to_gone += 1;
                    // Kept for the shard to answer (a 430 for a request
                    // to a flow), a bounded number per batch.
                    if self.gone.len() < GONE_KEPT {
                        self.gone.push((Gone::Closed, data.to_vec()));
                    }
                    continue;
                }
                To::Conn(id) => id,
                To::Peer(peer, transport) => match self.connection_to(peer, transport) {
                    Some(id) => id,
                    None => {
                        self.counts.connect_failed += 1;
                        if self.gone.len() < GONE_KEPT {
                            self.gone.push((Gone::Unreachable, data.to_vec()));
                        }
                        continue;
                    }
                },
            };
            if !self.send(id, data) {
                self.close(id);
            }
        }
        out.items.clear();
        out.bytes.clear();
        // Connections that end after their answers (framing lost, a TLS
        // close_notify or failure, a WebSocket Close): their answers are
        // written (or were refused by the kernel); now they close.
        for id in std::mem::take(&mut self.closing) {
            if let Some(conn) = self.conns.get_mut(id) {
                let _ = conn.sock.write(&conn.tx);
            }
            self.close(id);
        }
        if out.bytes.capacity() > 4 * TX_LIMIT {
            out.bytes = Vec::new();
        }
    }

    /// This shard's connection to `peer`: the open one, or a new one whose
    /// connect is under way (what is sent meanwhile waits for it). None
    /// when the table is full or the socket cannot be made.
    pub(super) fn connection_to(
        &mut self,
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<ConnId> {
        if let Some(&id) = self.outbound.get(&(peer, transport)) {
            if self.conns.get(id).is_some() {
                return Some(id);
            }
        }
        // TLS toward the next hop's address: its certificate must name
        // the upstream's name, if it has one, else that IP (a URI host
        // here is an IP).
        let tls = match transport {
            Transport::Tcp => None,
            Transport::Tls => {
                let cfg = self.tls_client.clone()?;
                let name = match self.tls_names.get(&(peer, transport)) {
                    Some(name) => name.clone(),
                    None => rustls::pki_types::ServerName::from(peer.ip()),
                };
                Some(Box::new(Tls::Client(
                    TlsClientSession::new(cfg, name).ok()?,
                )))
            }
            _ => return None,
        };
        let socket =
            Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP)).ok()?;
        socket.set_nonblocking(true).ok()?;
        let _ = socket.set_nodelay(true);
        match socket.connect(&peer.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return None,
        }
        let sock: TcpStream = socket.into();
        let local = sock.local_addr().ok()?;
        let fd = sock.as_raw_fd();
        let mut conn = Conn::new(sock, transport, peer, local, self.now_ms);
        conn.writing = true;
        conn.connecting = true;
        conn.opened_to = Some(peer);
        conn.tls = tls;
        // The ClientHello waits for the connect with what follows.
        if let Some(tls) = conn.tls.as_mut() {
            tls.take_outgoing(&mut conn.tx);
        }
        let id = self.conns.insert(conn).ok()?;
        // Read once connected (in ring mode; epoll waits on both anyway).
        if !self.watch_new(id, fd, false, true) {
            self.conns.remove(id);
            return None;
        }
        self.outbound.insert((peer, transport), id);
        self.counts.opened += 1;
        self.open_by[transport as usize] += 1;
        Some(id)
    }

    /// Sends one SIP message to `id`: in a frame of its own on an open
    /// WebSocket (RFC 7118 §5), then as [`Streams::send_stream`] does.
    pub(super) fn send(&mut self, id: ConnId, data: &[u8]) -> bool {
        let framed = self
            .conns
            .get(id)
            .and_then(|c| c.ws.as_ref())
            .is_some_and(|w| w.is_open());
        if !framed {
            return self.send_stream(id, data);
        }
        let mut frame = std::mem::take(&mut self.ws_frame);
        frame.clear();
        ws::frame_message(data, &mut frame);
        let sent = self.send_stream(id, &frame);
        self.ws_frame = frame;
        sent
    }

    /// Sends `data` (plaintext) to `id`: encrypted first on a TLS
    /// connection. False when the connection must close.
    pub(super) fn send_stream(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(tls) = self.conns.get_mut(id).and_then(|c| c.tls.as_mut()) else {
            return self.send_raw(id, data);
        };
        let mut cipher = std::mem::take(&mut self.cipher);
        cipher.clear();
        let ok = tls.send(data).is_ok();
        tls.take_outgoing(&mut cipher);
        let sent = self.send_raw(id, &cipher);
        self.cipher = cipher;
        ok && sent
    }

    /// Writes `data` to `id` as it is, or queues what the kernel does not
    /// take. False when the connection must close (an error, or over
    /// `--max-write-queue`); true also when it is gone (counted).
    pub(super) fn send_raw(&mut self, id: ConnId, data: &[u8]) -> bool {
        let limit = self.tx_limit;
        let Some(conn) = self.conns.get_mut(id) else {
            self.counts.sends_to_gone += 1;
            return true;
        };
        if !conn.tx.is_empty() || conn.connecting {
            if conn.tx.len() + data.len() > limit {
                self.counts.overflows += 1;
                return false;
            }
            conn.tx.extend_from_slice(data);
            return true;
        }
        let mut sent = 0;
        while sent < data.len() {
            match conn.sock.write(&data[sent..]) {
                Ok(0) => return false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if sent == data.len() {
            return true;
        }
        conn.tx.extend_from_slice(&data[sent..]);
        let fd = conn.sock.as_raw_fd();
        conn.writing = true;
        self.watch_writable(id, fd)
    }

    /// Writes what `id` has waiting; false when it must close. The first
    /// call on a connection of ours is the end of its connect.
    pub(super) fn write_out(&mut self, id: ConnId) -> bool {
        let in_ring = self.in_ring();
        let Some(conn) = self.conns.get_mut(id) else {
            return true;
        };
        if conn.connecting {
            // Refused, unreachable, timed out: what waited goes back to
            // the shard (plaintext only: TLS holds it in its session).
            if !matches!(conn.sock.take_error(), Ok(None)) {
                self.counts.connect_failed += 1;
                if conn.tls.is_none() {
                    let pending = std::mem::take(&mut conn.tx);
                    self.keep_unreachable(&pending);
                }
                return false;
            }
            conn.connecting = false;
            conn.local = conn.sock.local_addr().unwrap_or(conn.local);
            let fd = conn.sock.as_raw_fd();
            self.connected(id, fd);
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return true;
        };
        let mut sent = 0;
        while sent < conn.tx.len() {
            match conn.sock.write(&conn.tx[sent..]) {
                Ok(0) => return false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        conn.tx.drain(..sent);
        let fd = conn.sock.as_raw_fd();
        if !conn.tx.is_empty() {
            // Ring mode: the one-shot poll that brought us here has ended.
            if in_ring && !conn.writing {
                conn.writing = true;
                return self.watch_writable(id, fd);
            }
            return true;
        }
        conn.tx = Vec::new();
        if in_ring {
            conn.writing = false;
            return true;
        }
        if !conn.writing {
            return true;
        }
        conn.writing = false;
        self.unwatch_writable(id, fd)
    }

    /// Closes `id`: the socket is closed (and so leaves the epoll set).
    pub(super) fn close(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(id) {
            self.release(&conn.sock);
            self.counts.closed += 1;
            self.counts.closed_by[conn.transport as usize] += 1;
            let open = &mut self.open_by[conn.transport as usize];
            *open = open.saturating_sub(1);
            if let Some(peer) = conn.opened_to {
                let key = (peer, conn.transport);
                if self.outbound.get(&key) == Some(&id) {
                    self.outbound.remove(&key);
                }
            } else {
                // An accepted connection: its address has one fewer.
                let ip = conn.peer.ip().to_canonical();
                if let Some(n) = self.per_ip.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_ip.remove(&ip);
                    }
                }
            }
        }
    }
}
