//! One accepted TLS connection's state, driven over byte slices by the
//! shard that owns the connection: ciphertext read from the socket goes in
//! ([`TlsSession::receive`]), plaintext SIP comes out for the stream
//! framer (RFC 3261 §18.3), and ciphertext to write comes out of
//! [`TlsSession::take_outgoing`].
//!
//! Invariants: `receive` never hands out more plaintext than the peer has
//! sent ciphertext, over the connection's life (TLS 1.2 and 1.3 have no
//! compression; checked, see [`TlsError::Amplified`]); after an `Err` the
//! session is finished: write what `take_outgoing` gives (the alert), then
//! close. The loop that keeps these lives in `driver.rs`, shared with the
//! client side.

use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::driver::Driver;
use super::TlsError;

/// A server-side TLS connection without a socket.
pub struct TlsSession {
    driver: Driver<ServerConnection>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.driver.debug(f, "TlsSession")
    }
}

impl TlsSession {
    /// A session for a connection just accepted, with the configuration
    /// current at accept time (a reload later does not change it).
    pub fn new(cfg: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(cfg).map_err(TlsError::Config)?;
        Ok(TlsSession {
            driver: Driver::new(conn),
        })
    }

    /// Feeds ciphertext read from the socket; appends the plaintext it yields to `plain`.
    /// On a fatal error the alert to send is queued (take it with take_outgoing) and Err returned.
    ///
    /// A partial record waits inside for the rest. Bytes after the peer's
    /// close_notify are ignored (RFC 8446 §6.1); [`TlsSession::peer_closed`]
    /// tells.
    pub fn receive(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        self.driver.receive(cipher, plain)
    }

    /// Encrypts plaintext to send (queues it if the handshake is not done yet).
    ///
    /// A server connection's first message comes from the peer, after the
    /// handshake, and the connection's write queue bounds what
    /// [`TlsSession::take_outgoing`] hands it; before the handshake ends at
    /// most 64 KiB is held back ([`TlsError::HandshakeBacklog`] past that).
    pub fn send(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        self.driver.send(plain)
    }

    /// Appends ciphertext waiting to be written (handshake records, alerts, data) to `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        self.driver.take_outgoing(out)
    }

    /// Queues close_notify (RFC 8446 §6.1), for a connection closed on
    /// purpose (idle, shutdown): the peer can tell it from a truncation.
    /// Nothing more can be sent after it.
    pub fn close(&mut self) {
        self.driver.close()
    }

    /// True until the handshake is complete; a shard applies its handshake
    /// deadline while it is.
    pub fn is_handshaking(&self) -> bool {
        self.driver.is_handshaking()
    }

    /// The peer sent close_notify: it sends nothing more, and the
    /// connection can be closed once our queue is written.
    pub fn peer_closed(&self) -> bool {
        self.driver.peer_closed()
    }

    /// The peer's end-entity certificate (DER) when it sent one (mutual TLS).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.driver.peer_certificate()
    }

    /// The SNI the client asked for.
    pub fn server_name(&self) -> Option<&str> {
        self.driver.conn().server_name()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testpki::{client, feed_client, shuttle, Pki, BOTH, REQUEST, RESPONSE};
    use super::super::{server_config, VerifyClient};
    use super::*;
    use proptest::prelude::*;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConnection, HandshakeKind, ProtocolVersion, SupportedProtocolVersion};
    use std::io::{Read, Write};

    /// A client of `pki` speaking `versions`, handshaken with a new server
    /// session on `cfg`, ciphertext fed to the server `chunk` bytes at a
    /// time; panics if either side fails.
    fn connect(
        pki: &Pki,
        cfg: &Arc<ServerConfig>,
        versions: &[&'static SupportedProtocolVersion],
        with_cert: bool,
        chunk: usize,
    ) -> (ClientConnection, TlsSession) {
        let mut c = client(&pki.client_config(versions, with_cert));
        let mut s = TlsSession::new(cfg.clone()).unwrap();
        let mut plain = Vec::new();
        let out = shuttle(&mut c, &mut s, &mut plain, chunk);
        out.server.unwrap();
        out.client.unwrap();
        assert!(plain.is_empty());
        assert!(!c.is_handshaking() && !s.is_handshaking());
        (c, s)
    }

    /// A SIP request from the client reaches the server whole, and a
    /// response goes back, the server's input cut into `chunk`-byte pieces.
    fn exchange(c: &mut ClientConnection, s: &mut TlsSession, chunk: usize) {
        c.writer().write_all(REQUEST).unwrap();
        let mut plain = Vec::new();
        let out = shuttle(c, s, &mut plain, chunk);
        out.server.unwrap();
        assert_eq!(plain, REQUEST);
        s.send(RESPONSE).unwrap();
        let mut back = Vec::new();
        s.take_outgoing(&mut back);
        assert_eq!(feed_client(c, &back).unwrap(), RESPONSE);
        assert!(s.driver.yielded() <= s.driver.fed());
    }

    fn config(pki: &Pki, verify: VerifyClient) -> Arc<ServerConfig> {
        let mut settings = pki.settings();
        settings.verify_client = verify;
        server_config(&settings).unwrap()
    }

    #[test]
    fn tls13_handshake_then_a_message_each_way() {
        let pki = Pki::new("session-13");
        let cfg = config(&pki, VerifyClient::None);
        let (mut c, mut s) = connect(&pki, &cfg, &[&TLS13], false, usize::MAX);
        assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(s.server_name(), Some("localhost"), "SNI");
        assert_eq!(s.peer_certificate(), None);
        let chain = c.peer_certificates().unwrap();
        assert_eq!(chain[0], pki.cert_der, "the configured certificate");
        exchange(&mut c, &mut s, usize::MAX);
    }

    #[test]
    fn tls12_handshake_then_a_message_each_way() {
        let pki = Pki::new("session-12");
        let cfg = config(&pki, VerifyClient::None);
        let (mut c, mut s) = connect(&pki, &cfg, &[&TLS12], false, usize::MAX);
        assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_2));
        let suite = c.negotiated_cipher_suite().unwrap().suite();
        assert!(format!("{suite:?}").contains("GCM"), "{suite:?}");
        exchange(&mut c, &mut s, usize::MAX);
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_plaintext() {
        let pki = Pki::new("session-bytes");
        let cfg = config(&pki, VerifyClient::None);
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let (mut c, mut s) = connect(&pki, &cfg, versions, false, 1);
            exchange(&mut c, &mut s, 1);
            // Several messages in one write, cut at every byte, come out
            // in order and whole.
            let many: Vec<u8> = REQUEST
                .iter()
                .chain(RESPONSE)
                .chain(REQUEST)
                .copied()
                .collect();
            c.writer().write_all(&many).unwrap();
            let mut plain = Vec::new();
            shuttle(&mut c, &mut s, &mut plain, 1).server.unwrap();
            assert_eq!(plain, many);
        }
    }

    #[test]
    fn more_than_rustls_buffers_in_one_call_comes_out_whole() {
        // 200 KiB in one receive: read_tls takes a few KiB at a time and
        // rustls keeps at most 16 KiB of plaintext, so this only works if
        // receive loops and drains as it goes.
        let pki = Pki::new("session-big");
        let cfg = config(&pki, VerifyClient::None);
        let (mut c, mut s) = connect(&pki, &cfg, BOTH, false, usize::MAX);
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        c.set_buffer_limit(None);
        c.writer().write_all(&big).unwrap();
        let mut cipher = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut cipher).unwrap();
        }
        let mut plain = Vec::new();
        s.receive(&cipher, &mut plain).unwrap();
        assert_eq!(plain, big);
        assert!(
            plain.len() < cipher.len(),
            "no more plaintext than ciphertext"
        );
        // And back: a large send is taken whole (no 64 KiB cap).
        s.send(&big).unwrap();
        let mut back = Vec::new();
        s.take_outgoing(&mut back);
        assert_eq!(feed_client(&mut c, &back).unwrap(), big);
    }

    #[test]
    fn a_send_before_the_handshake_ends_leaves_after_it() {
        let pki = Pki::new("session-early");
        let cfg = config(&pki, VerifyClient::None);
        let mut c = client(&pki.client_config(BOTH, false));
        let mut s = TlsSession::new(cfg).unwrap();
        s.send(RESPONSE).unwrap();
        let mut plain = Vec::new();
        let out = shuttle(&mut c, &mut s, &mut plain, usize::MAX);
        out.server.unwrap();
        out.client.unwrap();
        assert_eq!(out.client_plain, RESPONSE);
    }

    #[test]
    fn required_client_certificates() {
        let pki = Pki::new("session-mtls");
        let cfg = config(&pki, VerifyClient::Required);
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            // Without a certificate: the server fails, names it, and has an
            // alert for the client, which sees it.
            let mut c = client(&pki.client_config(versions, false));
            let mut s = TlsSession::new(cfg.clone()).unwrap();
            let out = shuttle(&mut c, &mut s, &mut Vec::new(), usize::MAX);
            let e = out.server.unwrap_err();
            assert!(matches!(e, TlsError::Handshake(_)), "{e:?}");
            assert!(e.to_string().starts_with("tls: handshake failed: "), "{e}");
            assert!(out.sent_after_error > 0, "an alert is sent");
            assert!(
                matches!(out.client, Err(rustls::Error::AlertReceived(_))),
                "{:?}",
                out.client
            );
            assert_eq!(s.peer_certificate(), None);

            // With one from the client CA: in, and the shard can see who.
            let (mut c, mut s) = connect(&pki, &cfg, versions, true, usize::MAX);
            assert_eq!(s.peer_certificate(), Some(pki.client_der.as_ref()));
            exchange(&mut c, &mut s, usize::MAX);
        }
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        // The server CA issued the server certificate, not client ones: a
        // client showing the server's own certificate is not trusted.
        let pki = Pki::new("session-wrongca");
        let mut settings = pki.settings();
        settings.verify_client = VerifyClient::Optional;
        settings.client_ca = Some(pki.write("other-ca.pem", &{
            let other = Pki::new("session-wrongca-other");
            std::fs::read_to_string(&other.client_ca).unwrap()
        }));
        let cfg = server_config(&settings).unwrap();
        let mut c = client(&pki.client_config(&[&TLS13], true));
        let mut s = TlsSession::new(cfg).unwrap();
        let out = shuttle(&mut c, &mut s, &mut Vec::new(), usize::MAX);
        assert!(matches!(out.server, Err(TlsError::Handshake(_))), "{out:?}");
        assert!(out.sent_after_error > 0);
    }

    #[test]
    fn optional_client_certificates() {
        let pki = Pki::new("session-optional");
        let cfg = config(&pki, VerifyClient::Optional);
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let (mut c, mut s) = connect(&pki, &cfg, versions, false, usize::MAX);
            assert_eq!(s.peer_certificate(), None);
            exchange(&mut c, &mut s, usize::MAX);
            let (mut c, mut s) = connect(&pki, &cfg, versions, true, usize::MAX);
            assert_eq!(s.peer_certificate(), Some(pki.client_der.as_ref()));
            exchange(&mut c, &mut s, usize::MAX);
        }
    }

    #[test]
    fn a_session_resumes_on_another_shard() {
        // Two sessions from one Arc config stand for two shards: the
        // reconnection lands on the second and still resumes, with the
        // ticket (TLS 1.3, and 1.2 with tickets) or the shared cache.
        let pki = Pki::new("session-resume");
        let cfg = config(&pki, VerifyClient::None);
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let client_cfg = pki.client_config(versions, false);
            let mut first = client(&client_cfg);
            let mut shard_a = TlsSession::new(cfg.clone()).unwrap();
            let out = shuttle(&mut first, &mut shard_a, &mut Vec::new(), usize::MAX);
            out.server.unwrap();
            out.client.unwrap();
            assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
            // TLS 1.3 tickets travel after the handshake, with data.
            let mut c = first;
            exchange(&mut c, &mut shard_a, usize::MAX);

            let mut second = client(&client_cfg);
            let mut shard_b = TlsSession::new(cfg.clone()).unwrap();
            let out = shuttle(&mut second, &mut shard_b, &mut Vec::new(), usize::MAX);
            out.server.unwrap();
            out.client.unwrap();
            assert_eq!(
                second.handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{versions:?}"
            );
            exchange(&mut second, &mut shard_b, usize::MAX);
        }
    }

    #[test]
    fn close_notify_is_seen_and_sent() {
        let pki = Pki::new("session-close");
        let cfg = config(&pki, VerifyClient::None);
        let (mut c, mut s) = connect(&pki, &cfg, BOTH, false, usize::MAX);
        c.writer().write_all(REQUEST).unwrap();
        c.send_close_notify();
        let mut plain = Vec::new();
        shuttle(&mut c, &mut s, &mut plain, usize::MAX)
            .server
            .unwrap();
        assert_eq!(plain, REQUEST, "data before close_notify arrives");
        assert!(s.peer_closed());
        // Bytes after close_notify are ignored, not an error, not looped on.
        s.receive(b"\x17\x03\x03\x00\x05hello", &mut plain).unwrap();
        assert_eq!(plain, REQUEST);

        let (mut c, mut s) = connect(&pki, &cfg, BOTH, false, usize::MAX);
        s.close();
        let mut out = Vec::new();
        s.take_outgoing(&mut out);
        feed_client(&mut c, &out).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.reader().read(&mut buf).unwrap(), 0, "clean end");
        assert!(matches!(s.send(REQUEST), Err(TlsError::SendRefused)));
        let mut more = Vec::new();
        s.take_outgoing(&mut more);
        assert!(more.is_empty(), "nothing after close_notify");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let pki = Pki::new("session-garbage");
        let cfg = config(&pki, VerifyClient::None);
        let inputs: [&[u8]; 4] = [
            REQUEST,                               // plain SIP on a TLS port
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  // HTTP
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01], // a record too long
            &[
                0x17, 0x03, 0x03, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ];
        for input in inputs {
            let mut s = TlsSession::new(cfg.clone()).unwrap();
            let mut plain = Vec::new();
            let e = s.receive(input, &mut plain).unwrap_err();
            assert!(matches!(e, TlsError::Handshake(_)), "{input:?}: {e:?}");
            assert!(plain.is_empty());
            let mut alert = Vec::new();
            s.take_outgoing(&mut alert);
            assert_eq!(alert.first(), Some(&0x15), "an alert record: {alert:?}");
            // The session stays failed.
            assert!(s.receive(input, &mut plain).is_err());
        }
        // Garbage after a good handshake.
        let (_c, mut s) = connect(&pki, &cfg, BOTH, false, usize::MAX);
        let mut plain = Vec::new();
        let e = s
            .receive(&[0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3], &mut plain)
            .and_then(|()| s.receive(&[7; 29], &mut plain))
            .unwrap_err();
        assert!(matches!(e, TlsError::Protocol(_)), "{e:?}");
        assert!(e.to_string().starts_with("tls: connection failed: "), "{e}");
    }

    /// A TLS 1.2 ClientHello offering only `suites` (two-byte codes),
    /// with signature_algorithms and, when `groups`, supported_groups
    /// (x25519, secp256r1): an RSA-key-exchange-only client sends none.
    fn legacy_client_hello(suites: &[u16], groups: bool) -> Vec<u8> {
        let mut ext = Vec::new();
        // signature_algorithms: rsa_pkcs1_sha256, ecdsa_secp256r1_sha256.
        ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x01, 0x04, 0x03]);
        if groups {
            ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
            // ec_point_formats: uncompressed.
            ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]); // random
        body.push(0); // no session id
        body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]); // null compression only
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn rfc3261s_cbc_suite_alone_gets_handshake_failure() {
        // RFC 3261 §26.2.1 names TLS_RSA_WITH_AES_128_CBC_SHA (0x002f);
        // rustls has no CBC and no RSA key exchange. A peer offering only
        // such suites is refused with a handshake_failure alert (RFC 5246
        // §7.2.2: level fatal 2, description 40).
        let pki = Pki::new("session-cbc");
        let cfg = config(&pki, VerifyClient::None);
        let refused = |hello: Vec<u8>| {
            let mut s = TlsSession::new(cfg.clone()).unwrap();
            let e = s.receive(&hello, &mut Vec::new()).unwrap_err();
            let mut alert = Vec::new();
            s.take_outgoing(&mut alert);
            assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 2, 40], "{e:?}");
            e
        };
        for suites in [
            &[0x002f][..],             // TLS_RSA_WITH_AES_128_CBC_SHA
            &[0x002f, 0x0035, 0x000a], // + AES_256_CBC_SHA, 3DES_EDE_CBC_SHA
            &[0xc013, 0xc014, 0x009c], // ECDHE_RSA with CBC, RSA key exchange with GCM
        ] {
            let e = refused(legacy_client_hello(suites, true));
            assert!(
                matches!(
                    e,
                    TlsError::Handshake(rustls::Error::PeerIncompatible(
                        rustls::PeerIncompatible::NoCipherSuitesInCommon
                    ))
                ),
                "{suites:x?}: {e:?}"
            );
        }
        // Without supported_groups (no ECDHE offered) rustls stops at the
        // key exchange, with the same alert.
        let e = refused(legacy_client_hello(&[0x002f], false));
        assert!(e.to_string().starts_with("tls: handshake failed: "), "{e}");
        // The same hello with a suite rustls has goes on with the handshake.
        let mut s = TlsSession::new(cfg).unwrap();
        s.receive(
            &legacy_client_hello(&[0x002f, 0xc02b], true),
            &mut Vec::new(),
        )
        .unwrap();
        let mut reply = Vec::new();
        s.take_outgoing(&mut reply);
        assert_eq!(reply.first(), Some(&0x16), "a ServerHello");
    }

    proptest! {
        /// Whatever bytes arrive, in whatever pieces, receive returns
        /// without panicking and hands out no plaintext (nothing can be
        /// decrypted without a handshake).
        #[test]
        fn any_bytes_never_panic(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..8),
        ) {
            let cfg = SHARED.with(|c| c.clone());
            let mut s = TlsSession::new(cfg).unwrap();
            let mut plain = Vec::new();
            for p in &pieces {
                if s.receive(p, &mut plain).is_err() {
                    break;
                }
            }
            let mut out = Vec::new();
            s.take_outgoing(&mut out);
            prop_assert!(plain.is_empty());
        }

        /// The same after a real ClientHello: garbage in the middle of a
        /// handshake is no more dangerous.
        #[test]
        fn any_bytes_after_a_client_hello_never_panic(
            tail in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let (cfg, hello) = SHARED_HELLO.with(|c| c.clone());
            let mut s = TlsSession::new(cfg).unwrap();
            let mut plain = Vec::new();
            if s.receive(&hello, &mut plain).is_ok() {
                let _ = s.receive(&tail, &mut plain);
            }
            let mut out = Vec::new();
            s.take_outgoing(&mut out);
            prop_assert!(plain.is_empty());
        }
    }

    thread_local! {
        /// One configuration for all proptest cases (certificates are slow
        /// to make); its files may go, the config holds the DER.
        static SHARED: Arc<ServerConfig> = {
            let pki = Pki::new("session-prop");
            config(&pki, VerifyClient::Optional)
        };

        /// A configuration and a ClientHello for it.
        static SHARED_HELLO: (Arc<ServerConfig>, Vec<u8>) = {
            let pki = Pki::new("session-prop-hello");
            let cfg = config(&pki, VerifyClient::Optional);
            let mut c = client(&pki.client_config(BOTH, true));
            let mut hello = Vec::new();
            c.write_tls(&mut hello).unwrap();
            (cfg, hello)
        };
    }
}
