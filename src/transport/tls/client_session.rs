//! One outbound TLS connection's state (a trunk, a `sips:` next hop, a
//! `tls:` upstream), driven over byte slices by the shard that opened the
//! connection, as [`TlsSession`](super::TlsSession) is for an accepted one:
//! ciphertext read from the socket goes in ([`TlsClientSession::receive`]),
//! plaintext SIP comes out for the stream framer (RFC 3261 §18.3), and
//! ciphertext to write comes out of [`TlsClientSession::take_outgoing`],
//! the ClientHello first.
//!
//! The server's certificate is checked against the name the session is
//! made with ([`server_name_for`] the next hop's host): a DNS name or an
//! IP address in its subjectAltName (RFC 5922 §7.2 for SIP; `sip:` URI
//! SANs are not matched, rustls knows only DNS and IP names).
//!
//! Invariants: as [`TlsSession`](super::TlsSession)'s (`driver.rs`); in
//! particular what is sent before the handshake ends leaves after it, in
//! order, and at most 64 KiB of it waits.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use rustls::pki_types::{DnsName, ServerName};
use rustls::{ClientConfig, ClientConnection};

use super::driver::Driver;
use super::TlsError;

/// Longest host kept in [`TlsError::BadServerName`]: a DNS name is at most
/// 253 characters (RFC 1035 §2.3.4), so anything longer is cut, and a
/// hostile URI cannot make the error message large.
const MAX_HOST_SHOWN: usize = 253;

/// The name a next hop's certificate must carry, from the host part of its
/// URI or address: a DNS name (one trailing dot allowed, as in an absolute
/// name), an IPv4 address, or an IPv6 address with or without the
/// brackets of a SIP URI (RFC 3261 §25.1 `IPv6reference`). A `SocketAddr`
/// upstream can use `ServerName::from(addr.ip())` directly.
///
/// A DNS name is also sent as SNI; an IP address is not (RFC 6066 §3),
/// and must be in the certificate as an IP subjectAltName.
pub fn server_name_for(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bad = || TlsError::BadServerName(cut(host).to_string());
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| bad())?;
        return Ok(ServerName::from(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    let name = DnsName::try_from(host).map_err(|_| bad())?;
    Ok(ServerName::DnsName(name.to_owned()))
}

/// `host` cut to [`MAX_HOST_SHOWN`] bytes, at a character boundary.
fn cut(host: &str) -> &str {
    let mut end = host.len().min(MAX_HOST_SHOWN);
    while !host.is_char_boundary(end) {
        end -= 1;
    }
    &host[..end]
}

/// A client-side TLS connection without a socket.
pub struct TlsClientSession {
    driver: Driver<ClientConnection>,
}

impl std::fmt::Debug for TlsClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.driver.debug(f, "TlsClientSession")
    }
}

impl TlsClientSession {
    /// A session for a connection being opened to the next hop named
    /// `server_name`, whose certificate must be for that name. The
    /// ClientHello is queued at once: take it with
    /// [`TlsClientSession::take_outgoing`] when the TCP connection is up.
    /// A resumable session for that name in `cfg`'s store is offered.
    pub fn new(cfg: Arc<ClientConfig>, server_name: ServerName<'static>) -> Result<Self, TlsError> {
        let conn = ClientConnection::new(cfg, server_name).map_err(TlsError::Config)?;
        Ok(TlsClientSession {
            driver: Driver::new(conn),
        })
    }

    /// Feeds ciphertext read from the socket; appends the plaintext it yields to `plain`.
    /// On a fatal error the alert to send is queued (take it with take_outgoing) and Err returned.
    ///
    /// A server certificate that is not for the name, or not from a
    /// trusted CA, fails here as [`TlsError::Handshake`] with rustls's
    /// reason (`invalid peer certificate: ...`). A server that refuses our
    /// certificate (or its absence) tells us with an alert; in TLS 1.3 that
    /// alert comes after our side of the handshake is done, so it is a
    /// [`TlsError::Protocol`] there, and what was sent with it is lost.
    pub fn receive(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        self.driver.receive(cipher, plain)
    }

    /// Encrypts plaintext to send. Before the handshake ends it is held
    /// and goes out, in order, as soon as it can: a request can be
    /// handed over as soon as the connection is opened. At most 64 KiB is
    /// held ([`TlsError::HandshakeBacklog`], nothing queued, past that);
    /// after the handshake the connection's write queue bounds what
    /// [`TlsClientSession::take_outgoing`] hands it.
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

    /// The server's end-entity certificate (DER), once received, for
    /// policy beyond the name check (RFC 5922 `sip:` URI SANs).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.driver.peer_certificate()
    }
}

#[cfg(test)]
mod tests {
    use super::super::client_config::{build, client_config};
    use super::super::driver::MAX_QUEUED_IN_HANDSHAKE;
    use super::super::testpki::{Pki, REQUEST, RESPONSE, SERVER_NAME};
    use super::super::{server_config, TlsSession, TlsSettings, VerifyClient};
    use super::*;
    use proptest::prelude::*;
    use rustls::version::{TLS12, TLS13};
    use rustls::{
        AlertDescription, CertificateError, HandshakeKind, ProtocolVersion, ServerConfig,
        SupportedProtocolVersion,
    };

    /// Each version alone.
    const VERSIONS: [&[&SupportedProtocolVersion]; 2] = [&[&TLS13], &[&TLS12]];

    /// What a run of [`pump`] ended with.
    #[derive(Debug, Default)]
    struct Run {
        client: Option<TlsError>,
        server: Option<TlsError>,
        at_client: Vec<u8>,
        at_server: Vec<u8>,
    }

    /// Moves ciphertext both ways, `chunk` bytes per receive, until
    /// neither side has anything left to send. A side that failed receives
    /// nothing more, but its alert still goes out.
    fn pump(c: &mut TlsClientSession, s: &mut TlsSession, chunk: usize) -> Run {
        let mut run = Run::default();
        for _ in 0..100 {
            let mut to_server = Vec::new();
            c.take_outgoing(&mut to_server);
            if run.server.is_none() {
                for piece in to_server.chunks(chunk.max(1)) {
                    if let Err(e) = s.receive(piece, &mut run.at_server) {
                        run.server = Some(e);
                        break;
                    }
                }
            }
            let mut to_client = Vec::new();
            s.take_outgoing(&mut to_client);
            if run.client.is_none() {
                for piece in to_client.chunks(chunk.max(1)) {
                    if let Err(e) = c.receive(piece, &mut run.at_client) {
                        run.client = Some(e);
                        break;
                    }
                }
            }
            if to_server.is_empty() && to_client.is_empty() {
                return run;
            }
        }
        panic!("no end to the exchange after 100 rounds");
    }

    /// A client configuration trusting `pki`'s server CA, speaking
    /// `versions`, with `pki`'s client certificate when `with_cert`.
    fn client_cfg(
        pki: &Pki,
        versions: &[&'static SupportedProtocolVersion],
        with_cert: bool,
    ) -> Arc<ClientConfig> {
        let identity = with_cert.then_some((pki.client_cert.as_path(), pki.client_key.as_path()));
        build(versions, Some(&pki.server_ca), identity).unwrap()
    }

    fn new_client(cfg: &Arc<ClientConfig>, host: &str) -> TlsClientSession {
        TlsClientSession::new(cfg.clone(), server_name_for(host).unwrap()).unwrap()
    }

    fn server(settings: &TlsSettings) -> TlsSession {
        TlsSession::new(server_config(settings).unwrap()).unwrap()
    }

    /// Handshakes, `chunk` bytes per receive; panics if a side fails.
    fn connect(c: &mut TlsClientSession, s: &mut TlsSession, chunk: usize) {
        let run = pump(c, s, chunk);
        assert!(run.client.is_none() && run.server.is_none(), "{run:?}");
        assert!(run.at_client.is_empty() && run.at_server.is_empty());
        assert!(!c.is_handshaking() && !s.is_handshaking());
    }

    /// A request out and its response back, whole.
    fn exchange(c: &mut TlsClientSession, s: &mut TlsSession, chunk: usize) {
        c.send(REQUEST).unwrap();
        let run = pump(c, s, chunk);
        assert!(run.client.is_none() && run.server.is_none(), "{run:?}");
        assert_eq!(run.at_server, REQUEST);
        s.send(RESPONSE).unwrap();
        let run = pump(c, s, chunk);
        assert_eq!(run.at_client, RESPONSE);
        assert!(c.driver.yielded() <= c.driver.fed());
    }

    /// The handshake error the client ended with, as rustls's.
    fn client_handshake_error(run: &Run) -> &rustls::Error {
        match &run.client {
            Some(TlsError::Handshake(e)) => e,
            other => panic!("not a client handshake error: {other:?} ({run:?})"),
        }
    }

    /// `needle` appears in `hay`.
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn both_versions_handshake_then_a_message_each_way() {
        let pki = Pki::new("client-versions");
        for (versions, expected) in VERSIONS
            .iter()
            .zip([ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2])
        {
            let cfg = client_cfg(&pki, versions, false);
            for chunk in [usize::MAX, 1] {
                let mut c = new_client(&cfg, SERVER_NAME);
                assert!(c.is_handshaking());
                let mut s = server(&pki.settings());
                connect(&mut c, &mut s, chunk);
                assert_eq!(c.driver.conn().protocol_version(), Some(expected));
                assert_eq!(s.server_name(), Some(SERVER_NAME), "SNI sent");
                assert_eq!(c.peer_certificate(), Some(pki.cert_der.as_ref()));
                assert_eq!(s.peer_certificate(), None, "not asked, none shown");
                exchange(&mut c, &mut s, chunk);
                exchange(&mut c, &mut s, chunk);
            }
        }
    }

    #[test]
    fn the_public_config_speaks_tls13_to_a_server_that_has_it() {
        let pki = Pki::new("client-public");
        let cfg = client_config(Some(&pki.server_ca), None).unwrap();
        // DNS names match without regard to case (RFC 4343).
        let mut c = new_client(&cfg, "LocalHost");
        let mut s = server(&pki.settings());
        connect(&mut c, &mut s, usize::MAX);
        assert_eq!(
            c.driver.conn().protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        exchange(&mut c, &mut s, usize::MAX);
    }

    #[test]
    fn sends_before_the_handshake_ends_arrive_after_it_in_order() {
        let pki = Pki::new("client-early");
        for versions in VERSIONS {
            let cfg = client_cfg(&pki, versions, false);
            let mut c = new_client(&cfg, SERVER_NAME);
            let mut s = server(&pki.settings());
            // Before a single byte went out.
            c.send(REQUEST).unwrap();
            let mut hello = Vec::new();
            c.take_outgoing(&mut hello);
            assert!(!contains(&hello, b"OPTIONS"), "nothing in the clear");
            let mut at_server = Vec::new();
            s.receive(&hello, &mut at_server).unwrap();
            let mut flight = Vec::new();
            s.take_outgoing(&mut flight);
            // Between the ClientHello and the server's answer.
            assert!(c.is_handshaking());
            c.send(b"second\r\n").unwrap();
            c.receive(&flight, &mut Vec::new()).unwrap();
            // TLS 1.2: still waiting for the server's Finished; TLS 1.3:
            // done, and this one leaves with the rest.
            c.send(b"third\r\n").unwrap();
            let run = pump(&mut c, &mut s, usize::MAX);
            assert!(run.client.is_none() && run.server.is_none(), "{run:?}");
            at_server.extend(run.at_server);
            let expected = [REQUEST, b"second\r\n", b"third\r\n"].concat();
            assert_eq!(at_server, expected, "{versions:?}");
            exchange(&mut c, &mut s, usize::MAX);
        }
    }

    #[test]
    fn what_waits_for_the_handshake_is_bounded() {
        let pki = Pki::new("client-backlog");
        let cfg = client_cfg(&pki, &[&TLS13], false);
        let mut c = new_client(&cfg, SERVER_NAME);
        let first = vec![b'a'; MAX_QUEUED_IN_HANDSHAKE - 10];
        c.send(&first).unwrap();
        // Refused whole, not cut to what fits.
        let e = c.send(&[b'b'; 11]).unwrap_err();
        assert!(matches!(e, TlsError::HandshakeBacklog), "{e:?}");
        assert!(e.to_string().contains("64 KiB"), "{e}");
        c.send(&[b'c'; 10]).unwrap();
        assert!(matches!(c.send(b"d"), Err(TlsError::HandshakeBacklog)));
        let mut s = server(&pki.settings());
        let run = pump(&mut c, &mut s, usize::MAX);
        assert!(run.client.is_none() && run.server.is_none(), "{run:?}");
        assert_eq!(run.at_server, [&first[..], &[b'c'; 10]].concat());
        // After the handshake the write queue is the bound, not this.
        let big = vec![b'e'; 2 * MAX_QUEUED_IN_HANDSHAKE];
        c.send(&big).unwrap();
        assert_eq!(pump(&mut c, &mut s, usize::MAX).at_server, big);
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let pki = Pki::new("client-name");
        let other = pki.settings_for(&["other.example.test"]);
        for versions in VERSIONS {
            let cfg = client_cfg(&pki, versions, false);
            let mut c = new_client(&cfg, SERVER_NAME);
            c.send(REQUEST).unwrap();
            let mut s = server(&other);
            let run = pump(&mut c, &mut s, usize::MAX);
            let e = client_handshake_error(&run);
            assert!(
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                            | CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{e:?}"
            );
            let text = run.client.as_ref().map(|e| e.to_string()).unwrap();
            assert!(
                text.starts_with("tls: handshake failed: invalid peer certificate: "),
                "{text}"
            );
            assert!(text.contains("localhost"), "names what was asked: {text}");
            assert!(
                text.contains("other.example.test"),
                "and what was shown: {text}"
            );
            // The server hears why, and the request never left.
            assert!(
                matches!(
                    run.server,
                    Some(TlsError::Handshake(rustls::Error::AlertReceived(
                        AlertDescription::BadCertificate
                    )))
                ),
                "{run:?}"
            );
            assert!(run.at_server.is_empty());
        }
    }

    #[test]
    fn a_certificate_from_an_untrusted_ca_is_refused() {
        let pki = Pki::new("client-untrusted");
        let stranger = Pki::new("client-untrusted-other");
        let mut configs = vec![];
        for versions in VERSIONS {
            configs.push(build(versions, Some(&stranger.server_ca), None).unwrap());
        }
        // The system store does not know the test CA either.
        match client_config(None, None) {
            Ok(cfg) => configs.push(cfg),
            Err(TlsError::NoSystemRoots(d)) => eprintln!("no system trust store here: {d}"),
            Err(e) => panic!("{e:?}"),
        }
        for cfg in configs {
            let mut c = new_client(&cfg, SERVER_NAME);
            let mut s = server(&pki.settings());
            let run = pump(&mut c, &mut s, usize::MAX);
            let e = client_handshake_error(&run);
            assert!(
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                ),
                "{e:?}"
            );
            let text = run.client.as_ref().map(|e| e.to_string());
            assert_eq!(
                text.as_deref(),
                Some("tls: handshake failed: invalid peer certificate: UnknownIssuer")
            );
            assert!(run.server.is_some(), "the server got the alert");
        }
    }

    #[test]
    fn an_ip_address_subject_alt_name_works() {
        let pki = Pki::new("client-ip");
        let by_ip = pki.settings_for(&["192.0.2.7", "2001:db8::7"]);
        for versions in VERSIONS {
            let cfg = client_cfg(&pki, versions, false);
            for host in ["192.0.2.7", "[2001:db8::7]", "2001:db8::7"] {
                let mut c = new_client(&cfg, host);
                let mut s = server(&by_ip);
                connect(&mut c, &mut s, usize::MAX);
                assert_eq!(s.server_name(), None, "no SNI for an address");
                exchange(&mut c, &mut s, usize::MAX);
            }
            // An address not in the certificate, and a DNS-name
            // certificate for an address: refused.
            for (settings, host) in [(&by_ip, "192.0.2.8"), (&pki.settings(), "127.0.0.1")] {
                let mut c = new_client(&cfg, host);
                let mut s = server(settings);
                let run = pump(&mut c, &mut s, usize::MAX);
                let e = client_handshake_error(&run);
                assert!(
                    matches!(e, rustls::Error::InvalidCertificate(_)),
                    "{host}: {e:?}"
                );
            }
        }
    }

    /// A server configuration that requires a client certificate from
    /// `client_ca`.
    fn requiring(pki: &Pki, client_ca: &std::path::Path) -> Arc<ServerConfig> {
        let mut settings = pki.settings();
        settings.verify_client = VerifyClient::Required;
        settings.client_ca = Some(client_ca.to_path_buf());
        server_config(&settings).unwrap()
    }

    #[test]
    fn mutual_tls_with_a_client_certificate_gets_in() {
        let pki = Pki::new("client-mtls");
        let scfg = requiring(&pki, &pki.client_ca);
        for versions in VERSIONS {
            let mut c = new_client(&client_cfg(&pki, versions, true), SERVER_NAME);
            let mut s = TlsSession::new(scfg.clone()).unwrap();
            connect(&mut c, &mut s, usize::MAX);
            assert_eq!(s.peer_certificate(), Some(pki.client_der.as_ref()));
            exchange(&mut c, &mut s, usize::MAX);
        }
    }

    #[test]
    fn mutual_tls_without_a_client_certificate_is_refused() {
        let pki = Pki::new("client-mtls-none");
        let scfg = requiring(&pki, &pki.client_ca);
        for versions in VERSIONS {
            let mut c = new_client(&client_cfg(&pki, versions, false), SERVER_NAME);
            c.send(REQUEST).unwrap();
            let mut s = TlsSession::new(scfg.clone()).unwrap();
            let run = pump(&mut c, &mut s, usize::MAX);
            assert!(
                matches!(
                    run.server,
                    Some(TlsError::Handshake(rustls::Error::NoCertificatesPresented))
                ),
                "{run:?}"
            );
            assert!(run.at_server.is_empty(), "no SIP got through");
            // TLS 1.3: the alert comes after the client's Finished, so it
            // is a failure of an established connection (see receive).
            let alert = match (&run.client, versions[0].version) {
                (Some(TlsError::Protocol(e)), ProtocolVersion::TLSv1_3) => e,
                (Some(TlsError::Handshake(e)), ProtocolVersion::TLSv1_2) => e,
                other => panic!("{versions:?}: {other:?}"),
            };
            assert!(
                matches!(
                    alert,
                    rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
                ),
                "{alert:?}"
            );
        }
    }

    #[test]
    fn a_server_certificate_shown_as_a_client_certificate_is_refused() {
        // The listener's certificate presented outbound (what --tls-cert
        // gives both sides) carries the server-auth key usage only, as
        // public CAs now issue them; a server that checks client
        // certificates refuses it. docs/tls.md says so.
        let pki = Pki::new("client-mtls-eku");
        let scfg = requiring(&pki, &pki.server_ca);
        let identity = Some((pki.cert.as_path(), pki.key.as_path()));
        let cfg = build(&[&TLS12], Some(&pki.server_ca), identity).unwrap();
        let mut c = new_client(&cfg, SERVER_NAME);
        let mut s = TlsSession::new(scfg).unwrap();
        let run = pump(&mut c, &mut s, usize::MAX);
        assert!(
            matches!(
                run.server,
                Some(TlsError::Handshake(rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose
                        | CertificateError::InvalidPurposeContext { .. }
                )))
            ),
            "{run:?}"
        );
        assert!(run.client.is_some());
    }

    #[test]
    fn a_second_session_from_the_same_config_resumes_on_another_shard() {
        let pki = Pki::new("client-resume");
        let scfg = server_config(&pki.settings()).unwrap();
        for versions in VERSIONS {
            let cfg = client_cfg(&pki, versions, false);
            let mut first = new_client(&cfg, SERVER_NAME);
            let mut shard_a = TlsSession::new(scfg.clone()).unwrap();
            connect(&mut first, &mut shard_a, usize::MAX);
            assert_eq!(
                first.driver.conn().handshake_kind(),
                Some(HandshakeKind::Full)
            );
            // TLS 1.3 tickets come after the handshake, with data.
            exchange(&mut first, &mut shard_a, usize::MAX);

            let mut second = new_client(&cfg, SERVER_NAME);
            let mut shard_b = TlsSession::new(scfg.clone()).unwrap();
            connect(&mut second, &mut shard_b, usize::MAX);
            assert_eq!(
                second.driver.conn().handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{versions:?}"
            );
            exchange(&mut second, &mut shard_b, usize::MAX);
        }
    }

    #[test]
    fn close_notify_both_ways() {
        let pki = Pki::new("client-close");
        let cfg = client_cfg(&pki, &[&TLS13], false);
        let mut c = new_client(&cfg, SERVER_NAME);
        let mut s = server(&pki.settings());
        connect(&mut c, &mut s, usize::MAX);
        c.send(REQUEST).unwrap();
        c.close();
        assert!(matches!(c.send(REQUEST), Err(TlsError::SendRefused)));
        let run = pump(&mut c, &mut s, usize::MAX);
        assert_eq!(run.at_server, REQUEST, "data before close_notify arrives");
        assert!(s.peer_closed() && !c.peer_closed());

        let mut c = new_client(&cfg, SERVER_NAME);
        let mut s = server(&pki.settings());
        connect(&mut c, &mut s, usize::MAX);
        s.close();
        pump(&mut c, &mut s, usize::MAX);
        assert!(c.peer_closed());
    }

    #[test]
    fn server_names_from_uri_hosts() {
        let dns = |h: &str| match server_name_for(h).unwrap() {
            ServerName::DnsName(n) => n.as_ref().to_string(),
            other => panic!("{h}: {other:?}"),
        };
        let ip = |h: &str| match server_name_for(h).unwrap() {
            ServerName::IpAddress(a) => IpAddr::from(a),
            other => panic!("{h}: {other:?}"),
        };
        assert_eq!(dns("sip.example.com"), "sip.example.com");
        assert_eq!(dns("sip.example.com."), "sip.example.com", "absolute name");
        assert_eq!(dns("localhost"), "localhost");
        assert_eq!(
            dns("SIP.Example.com"),
            "SIP.Example.com",
            "case kept, compared without"
        );
        assert_eq!(ip("192.0.2.1"), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            ip("[2001:db8::1]"),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ip("2001:db8::1"), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            server_name_for("::ffff:192.0.2.1").unwrap(),
            ServerName::from("::ffff:192.0.2.1".parse::<IpAddr>().unwrap())
        );

        let long = "a".repeat(1000);
        for bad in [
            "",
            ".",
            "a b.example",
            "sip:example.com",
            "example.com:5061",
            "[example.com]",
            "[2001:db8::1",
            "[192.0.2.1]",
            "[fe80::1%25eth0]",
            "1.2.3.4.5",
            long.as_str(),
            "é.example",
        ] {
            match server_name_for(bad) {
                Err(TlsError::BadServerName(shown)) => {
                    assert!(shown.len() <= 253, "{}", shown.len());
                    assert!(bad.starts_with(&shown));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = server_name_for("a b").unwrap_err().to_string();
        assert_eq!(
            e,
            "tls: \"a b\" is not a DNS name or an IP address to check a server \
             certificate against"
        );
        // A multi-byte character across the cut is not split.
        let wide = "é".repeat(200);
        assert!(matches!(
            server_name_for(&wide),
            Err(TlsError::BadServerName(s)) if s.len() == 252
        ));
    }

    #[test]
    fn sessions_can_move_between_threads() {
        fn movable<T: Send>() {}
        movable::<TlsClientSession>();
        fn shareable<T: Send + Sync>() {}
        shareable::<Arc<ClientConfig>>();
    }

    #[test]
    fn debug_shows_the_state() {
        let pki = Pki::new("client-debug");
        let c = new_client(&client_cfg(&pki, &[&TLS13], false), SERVER_NAME);
        let text = format!("{c:?}");
        assert!(text.starts_with("TlsClientSession {"), "{text}");
        assert!(text.contains("handshaking: true"), "{text}");
    }

    proptest! {
        /// Whatever bytes a server sends, in whatever pieces, receive
        /// returns without panicking and hands out no plaintext.
        #[test]
        fn any_bytes_never_panic(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..8),
        ) {
            let (cfg, _) = SHARED.with(|c| c.clone());
            let mut c = new_client(&cfg, SERVER_NAME);
            let mut out = Vec::new();
            c.take_outgoing(&mut out);
            let mut plain = Vec::new();
            for p in &pieces {
                if c.receive(p, &mut plain).is_err() {
                    break;
                }
            }
            c.take_outgoing(&mut out);
            prop_assert!(plain.is_empty());
        }

        /// The same after a real server flight cut anywhere: garbage in
        /// the middle of a handshake is no more dangerous.
        #[test]
        fn any_bytes_after_part_of_a_server_flight_never_panic(
            cut in 0usize..8000,
            tail in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let (ccfg, scfg) = SHARED.with(|c| c.clone());
            let mut c = new_client(&ccfg, SERVER_NAME);
            let mut s = TlsSession::new(scfg).unwrap();
            let mut hello = Vec::new();
            c.take_outgoing(&mut hello);
            s.receive(&hello, &mut Vec::new()).unwrap();
            let mut flight = Vec::new();
            s.take_outgoing(&mut flight);
            let cut = cut.min(flight.len());
            let mut plain = Vec::new();
            if c.receive(&flight[..cut], &mut plain).is_ok() {
                let _ = c.receive(&tail, &mut plain);
            }
            c.take_outgoing(&mut Vec::new());
            prop_assert!(plain.is_empty());
        }
    }

    thread_local! {
        /// A client and a server configuration for all proptest cases
        /// (certificates are slow to make); the files may go, the configs
        /// hold the DER.
        static SHARED: (Arc<ClientConfig>, Arc<ServerConfig>) = {
            let pki = Pki::new("client-prop");
            let mut settings = pki.settings();
            settings.verify_client = VerifyClient::Optional;
            (
                build(&[&TLS13, &TLS12], Some(&pki.server_ca), None).unwrap(),
                server_config(&settings).unwrap(),
            )
        };
    }
}
