//! Drives one buffered rustls connection, server or client, over byte
//! slices: the receive loop, the plaintext drain, the amplification guard,
//! the bound on what waits for the handshake, and close_notify. Both
//! [`TlsSession`](super::TlsSession) and
//! [`TlsClientSession`](super::TlsClientSession) are this plus what only
//! their side has, so a fix to the loop lands on both.
//!
//! Invariants: plaintext handed out never exceeds ciphertext taken in, over
//! the connection's life (TLS 1.2 and 1.3 have no compression; checked, see
//! [`TlsError::Amplified`]); at most [`MAX_QUEUED_IN_HANDSHAKE`] plaintext
//! bytes wait for the handshake; after an `Err` from `receive` the
//! connection is finished.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::DerefMut;

use rustls::{ConnectionCommon, SideData};

use super::TlsError;

/// Plaintext that may wait inside rustls for the handshake to end (a
/// client's first requests to a next hop it is still connecting to). Past
/// the handshake, what `take_outgoing` hands over is bounded by the
/// connection's write queue, which cannot see this part. 64 KiB is
/// rustls's own default buffer limit: four messages of the largest size
/// `--max-message-size` allows (16 KiB), dozens of typical ones, for the
/// one or two round trips a handshake takes. Raising it lets a next hop
/// that never finishes its handshake hold more memory per connection.
pub(super) const MAX_QUEUED_IN_HANDSHAKE: usize = 64 << 10;

/// A rustls connection (`ServerConnection` or `ClientConnection`) and the
/// counts that guard it.
pub(super) struct Driver<C> {
    conn: C,
    /// Ciphertext bytes the peer has sent so far.
    fed: u64,
    /// Plaintext bytes handed out so far; never above `fed`.
    yielded: u64,
    /// Plaintext bytes queued while the handshake was running; meaningful
    /// only while it still is (rustls flushes them when it ends).
    queued_in_handshake: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// We queued close_notify: nothing more may be sent (rustls would
    /// still encrypt it).
    closed: bool,
}

impl<C, D> Driver<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData + 'static,
{
    /// Takes over a connection just made.
    pub(super) fn new(mut conn: C) -> Self {
        // rustls would cap queued ciphertext at 64 KiB and take only part
        // of a larger send; the connection's write queue is the one bound
        // (it sees everything `take_outgoing` hands over), so none here.
        conn.set_buffer_limit(None);
        Driver {
            conn,
            fed: 0,
            yielded: 0,
            queued_in_handshake: 0,
            peer_closed: false,
            closed: false,
        }
    }

    /// The rustls connection, for what only one side has.
    pub(super) fn conn(&self) -> &C {
        &self.conn
    }

    /// Ciphertext bytes taken in so far.
    #[cfg(test)]
    pub(super) fn fed(&self) -> u64 {
        self.fed
    }

    /// Plaintext bytes handed out so far.
    #[cfg(test)]
    pub(super) fn yielded(&self) -> u64 {
        self.yielded
    }

    /// See `TlsSession::receive`.
    pub(super) fn receive(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut rest = cipher;
        // Never call read_tls with nothing: rustls takes a 0-byte read as
        // the end of the stream.
        while !rest.is_empty() {
            let handshaking = self.conn.is_handshaking();
            // read_tls takes what its buffer has room for (a few KiB at a
            // time), so loop until everything given is in.
            let took = self.conn.read_tls(&mut rest).map_err(TlsError::Receive)?;
            if took == 0 {
                // rustls reads nothing after close_notify.
                self.peer_closed = true;
                break;
            }
            self.fed += took as u64;
            // rustls queues the fatal alert before it returns the error.
            let state = self.conn.process_new_packets().map_err(|e| {
                if handshaking {
                    TlsError::Handshake(e)
                } else {
                    TlsError::Protocol(e)
                }
            })?;
            self.drain(state.plaintext_bytes_to_read(), plain)?;
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    /// Moves all the decrypted plaintext into `plain`, so that rustls's
    /// own plaintext buffer (16 KiB, which read_tls refuses to pass) is
    /// empty before the next chunk.
    fn drain(&mut self, available: usize, plain: &mut Vec<u8>) -> Result<(), TlsError> {
        if available == 0 {
            return Ok(());
        }
        let start = plain.len();
        plain.reserve(available);
        // Ok: close_notify came after the data (peer_has_closed says so);
        // WouldBlock: everything decrypted so far is read, which is the
        // normal end, not an error.
        let result = self.conn.reader().read_to_end(plain);
        self.yielded += (plain.len() - start) as u64;
        if self.yielded > self.fed {
            plain.truncate(start);
            return Err(TlsError::Amplified);
        }
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(TlsError::Receive(e)),
        }
    }

    /// See `TlsSession::send`. During the handshake a send is taken whole
    /// or not at all, so that a refusal never leaves half a message queued.
    pub(super) fn send(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        if self.closed {
            return Err(TlsError::SendRefused);
        }
        if self.conn.is_handshaking() {
            let queued = self.queued_in_handshake.saturating_add(plain.len());
            if queued > MAX_QUEUED_IN_HANDSHAKE {
                return Err(TlsError::HandshakeBacklog);
            }
            self.queued_in_handshake = queued;
        } else {
            self.queued_in_handshake = 0;
        }
        let mut rest = plain;
        while !rest.is_empty() {
            // With no buffer limit rustls takes everything, except after a
            // close_notify or when the keys are used up (then 0); a TLS 1.3
            // key update midway takes the rest on the next call. Before
            // the handshake ends it keeps the plaintext and encrypts it as
            // soon as the traffic keys exist, in the order written.
            match self.conn.writer().write(rest) {
                Ok(0) | Err(_) => return Err(TlsError::SendRefused),
                Ok(n) => rest = &rest[n..],
            }
        }
        Ok(())
    }

    /// See `TlsSession::take_outgoing`.
    pub(super) fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail, and each call moves at
            // least one queued record, so the loop ends.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// See `TlsSession::close`.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.conn.send_close_notify();
    }

    /// True until the handshake is complete.
    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent close_notify.
    pub(super) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The peer's end-entity certificate (DER), when it sent one.
    pub(super) fn peer_certificate(&self) -> Option<&[u8]> {
        self.conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref())
    }

    /// Writes the state as a struct named `name`, for the sessions' Debug.
    pub(super) fn debug(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        f.debug_struct(name)
            .field("handshaking", &self.conn.is_handshaking())
            .field("fed", &self.fed)
            .field("yielded", &self.yielded)
            .field("peer_closed", &self.peer_closed)
            .field("closed", &self.closed)
            .finish()
    }
}
