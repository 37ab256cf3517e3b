//! What the connections deliver: accepting, reading (decrypting), framing
//! and handing each message to the shard, and what a read calls for.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use super::conn::{frame_all, source_of, Conn, Next, Tls};
use super::ws::{self, WsConn};
use super::{listener_token, Received, Streams, ACCEPTS_PER_POLL, EVENTS, READ_CHUNK, TX_LIMIT};
use crate::transport::stream::PONG;
use crate::transport::tls::TlsSession;
use crate::transport::{ConnId, Source, Transport};

impl Streams {
    /// Accepts, reads and writes what is ready, without waiting. `handle`
    /// gets each message with its source and returns false when it has no
    /// room to handle it (no free send slot): the message and those after
    /// it stay buffered for the next poll.
    pub fn poll(&mut self, mut handle: impl FnMut(Received<'_>, &Source) -> bool) {
        // Messages left over from last time go first, in arrival order.
        let stalled = std::mem::take(&mut self.stalled);
        for (k, &id) in stalled.iter().enumerate() {
            match self.handle_buffered(id, &mut handle) {
                Next::Stalled => {
                    // Still no room: keep the rest for the next poll.
                    self.stalled.extend_from_slice(&stalled[k..]);
                    return;
                }
                next => self.after(id, next),
            }
        }
        if self.ring.is_some() {
            return self.poll_ring(&mut handle);
        }
        // SAFETY: `events` is a live array of EVENTS epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                EVENTS as libc::c_int,
                0,
            )
        };
        for k in 0..usize::try_from(n).unwrap_or(0) {
            let libc::epoll_event { events, u64: token } = self.events[k];
            if token > listener_token(self.listeners.len()) {
                self.accept((u64::MAX - token) as usize);
                continue;
            }
            let id = ConnId(token);
            if events & libc::EPOLLOUT as u32 != 0 && !self.write_out(id) {
                self.close(id);
                continue;
            }
            let readable = libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP;
            if events & readable as u32 != 0 && !self.stalled.contains(&id) {
                let next = self.read(id, &mut handle);
                self.after(id, next);
            }
        }
    }

    /// Acts on how a connection's handling ended; arms EPOLLOUT when it
    /// left bytes for the kernel (a pong).
    pub(super) fn after(&mut self, id: ConnId, next: Next) {
        let pongs = self
            .conns
            .get_mut(id)
            .map_or(0, |c| std::mem::take(&mut c.pongs_due));
        for _ in 0..pongs {
            if !matches!(next, Next::Close) && !self.send(id, PONG) {
                return self.close(id);
            }
        }
        match next {
            Next::Idle => {}
            Next::Stalled => self.stalled.push(id),
            Next::Close => return self.close(id),
            Next::CloseAfterSend | Next::Unframeable => {
                if matches!(next, Next::Unframeable) {
                    self.counts.frame_errors += 1;
                }
                // Read no more from it; `send_all` closes it.
                self.closing.push(id);
                if let Some(fd) = self.conns.get(id).map(|c| c.sock.as_raw_fd()) {
                    self.stop_reading(fd);
                }
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.tx.is_empty() || conn.writing {
            return;
        }
        conn.writing = true;
        let fd = conn.sock.as_raw_fd();
        if !self.watch_writable(id, fd) {
            self.close(id);
        }
    }

    pub(super) fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPTS_PER_POLL {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let (sock, peer) = match l.sock.accept() {
                Ok(a) => a,
                // WouldBlock: the backlog is empty. Anything else (EMFILE,
                // a connection reset before it was taken) ends this round.
                Err(_) => return,
            };
            self.adopt(i, sock, peer);
        }
    }

    /// Takes `sock`, just accepted from `peer` on listener `i`, as a
    /// connection of this shard, or closes it (over a limit, no TLS
    /// configuration, no room).
    pub(super) fn adopt(&mut self, i: usize, sock: TcpStream, peer: SocketAddr) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let (transport, local) = (l.transport, l.local);
        // One host may not take every connection: over its share it
        // is closed (dropped) here, before any buffer is given.
        let ip = peer.ip().to_canonical();
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && from_ip >= self.max_per_ip {
            self.counts.refused_per_ip += 1;
            self.counts.refused_per_ip_by[transport as usize] += 1;
            return;
        }
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        // SIP messages are whole writes; waiting for an ACK to
        // coalesce them only adds latency.
        let _ = sock.set_nodelay(true);
        let local = sock.local_addr().unwrap_or(local);
        let fd = sock.as_raw_fd();
        let mut conn = Conn::new(sock, transport, peer, local, self.now_ms);
        if matches!(transport, Transport::Ws | Transport::Wss) {
            conn.ws = Some(Box::new(WsConn::new(self.max_message)));
        }
        if matches!(transport, Transport::Tls | Transport::Wss) {
            // The configuration current at accept: a reload (SIGHUP)
            // applies to the connections that follow.
            let session = self.tls.as_ref().map(|r| TlsSession::new(r.current()));
            match session {
                Some(Ok(s)) => conn.tls = Some(Box::new(Tls::Server(s))),
                _ => {
                    self.counts.refused(transport);
                    return;
                }
            }
        }
        let Ok(id) = self.conns.insert(conn) else {
            // Full: the connection is dropped (closed) at once.
            self.counts.refused(transport);
            return;
        };
        if !self.watch_new(id, fd, true, false) {
            self.conns.remove(id);
            self.counts.refused(transport);
            return;
        }
        self.per_ip.insert(ip, from_ip + 1);
        self.counts.accepted += 1;
        self.counts.accepted_by[transport as usize] += 1;
        self.open_by[transport as usize] += 1;
    }

    /// Reads once from `id` and handles the messages now whole.
    pub(super) fn read(
        &mut self,
        id: ConnId,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        let n = match conn.sock.read(&mut self.scratch) {
            Ok(0) => return Next::Close,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Idle,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Next::Idle,
            Err(_) => return Next::Close,
        };
        conn.last_rx_ms = self.now_ms;
        conn.heard = true;
        let scratch = std::mem::take(&mut self.scratch);
        let next = self.input(id, &scratch[..n], handle);
        self.scratch = scratch;
        next
    }

    /// Handles `bytes` that `id` delivered (read here, or received by the
    /// ring): decrypted first on TLS, then framed and handed over.
    pub(super) fn input(
        &mut self,
        id: ConnId,
        bytes: &[u8],
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get(id) else {
            return Next::Idle;
        };
        if conn.tls.is_none() {
            return self.handle_plain(id, bytes, handle);
        }
        let mut plain = std::mem::take(&mut self.plain);
        let next = match self.decrypt(id, bytes, &mut plain) {
            Ok(peer_closed) => match self.handle_plain(id, &plain, handle) {
                Next::Idle if peer_closed => Next::CloseAfterSend,
                next => next,
            },
            Err(next) => next,
        };
        self.plain = plain;
        next
    }

    /// Keeps `bytes` that `id` delivered while its earlier messages wait
    /// for room (in ring mode the kernel reads on meanwhile): decrypted
    /// first on TLS, since `rx` holds what the TLS layer gave, and
    /// appended behind them. `Next::Stalled` while it stays open.
    pub(super) fn input_held(&mut self, id: ConnId, bytes: &[u8]) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if conn.tls.is_none() {
            return self.hold(id, bytes);
        }
        let mut plain = std::mem::take(&mut self.plain);
        // A close_notify read here closes it later, at the TCP end that
        // follows it: its messages are handled first.
        let next = match self.decrypt(id, bytes, &mut plain) {
            Ok(_) => self.hold(id, &plain),
            Err(next) => next,
        };
        self.plain = plain;
        next
    }

    /// Appends `bytes` to `id`'s `rx` behind stalled messages, or closes
    /// it as a peer that sends far more than it lets us answer.
    fn hold(&mut self, id: ConnId, bytes: &[u8]) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if conn.rx.len() + bytes.len() > TX_LIMIT {
            self.counts.overflows += 1;
            return Next::Close;
        }
        conn.rx.extend_from_slice(bytes);
        Next::Stalled
    }

    /// Decrypts `cipher` from TLS connection `id` into `plain` (cleared
    /// first) and writes what the TLS layer sends back (handshake
    /// records, alerts). Ok(true) when the peer sent close_notify; the
    /// `Next` to act on when it must close.
    fn decrypt(&mut self, id: ConnId, cipher_in: &[u8], plain: &mut Vec<u8>) -> Result<bool, Next> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Err(Next::Idle);
        };
        let (peer, transport) = (conn.peer, conn.transport);
        let Some(tls) = conn.tls.as_mut() else {
            return Err(Next::Idle);
        };
        let mut cipher = std::mem::take(&mut self.cipher);
        plain.clear();
        cipher.clear();
        let handshaking = tls.is_handshaking();
        let received = tls.receive(cipher_in, plain);
        let handshaken = handshaking && received.is_ok() && !tls.is_handshaking();
        tls.take_outgoing(&mut cipher);
        let peer_closed = tls.peer_closed();
        let sent = cipher.is_empty() || self.send_raw(id, &cipher);
        self.cipher = cipher;
        if handshaken {
            self.counts.tls_handshakes += 1;
        }
        if let Err(e) = received {
            // The alert is queued or written; the framing is lost. Why,
            // for the operator of a trunk that fails (counted always,
            // told at debug: a scanner must not fill the log).
            tracing::debug!(
                "connection with {peer} ({}) closed: {e}",
                transport.via_token()
            );
            self.counts.tls_failed += 1;
            self.counts.tls_failed_by[transport as usize] += 1;
            return Err(Next::CloseAfterSend);
        }
        if !sent {
            return Err(Next::Close);
        }
        Ok(peer_closed)
    }

    /// Frames and handles `bytes`, plaintext that `id` delivered after
    /// what its `rx` holds.
    pub(super) fn handle_plain(
        &mut self,
        id: ConnId,
        bytes: &[u8],
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if !conn.rx.is_empty() || conn.ws.is_some() {
            conn.rx.extend_from_slice(bytes);
            return self.handle_buffered(id, handle);
        }
        // The common case: whole messages straight from the read buffer;
        // only a partial tail is copied.
        let max = self.max_message;
        let (used, next) = frame_all(id, conn, bytes, max, handle);
        if used < bytes.len() {
            conn.partial_since_ms = self.now_ms;
        }
        conn.rx.extend_from_slice(&bytes[used..]);
        next
    }

    /// Handles the whole messages in `id`'s `rx`.
    pub(super) fn handle_buffered(
        &mut self,
        id: ConnId,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let max = self.max_message;
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if conn.ws.is_some() {
            return self.handle_ws(id, handle);
        }
        let rx = std::mem::take(&mut conn.rx);
        let (used, next) = frame_all(id, conn, &rx, max, handle);
        conn.rx = rx;
        conn.rx.drain(..used);
        if used > 0 && !conn.rx.is_empty() {
            // A new partial message starts its own clock.
            conn.partial_since_ms = self.now_ms;
        }
        if conn.rx.is_empty() && conn.rx.capacity() > READ_CHUNK {
            // A large message is done: give its memory back.
            conn.rx = Vec::new();
        }
        next
    }

    /// Handles what a WebSocket connection has buffered (see `ws.rs`) and
    /// writes back what that calls for.
    pub(super) fn handle_ws(
        &mut self,
        id: ConnId,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        let Some(mut ws) = conn.ws.take() else {
            return Next::Idle;
        };
        let src = source_of(id, conn);
        let mut rx = std::mem::take(&mut conn.rx);
        let before = rx.len();
        let mut replies = std::mem::take(&mut self.ws_replies);
        replies.clear();
        let next = ws::input(
            &mut ws,
            &mut rx,
            &src,
            &self.ws_origins,
            &mut replies,
            handle,
        );
        if let Some(conn) = self.conns.get_mut(id) {
            if !rx.is_empty() && rx.len() != before {
                conn.partial_since_ms = self.now_ms;
            }
            conn.rx = rx;
            conn.ws = Some(ws);
        }
        let sent = replies.is_empty() || self.send_stream(id, &replies);
        self.ws_replies = replies;
        if sent {
            next
        } else {
            Next::Close
        }
    }
}
