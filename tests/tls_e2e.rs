//! SIP over TLS end to end: the real binary with a `tls:` listen and
//! certificates made at test time (rcgen), rustls clients written here,
//! a UDP UAS. Every test runs on both I/O backends.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned,
    SupportedProtocolVersion,
};

use common::metrics::{get, metrics_addr, sum_of};
use common::process::{counter, nothing_arrives, port, recv, socket, stream_addr, Proxy};
use common::sip::{call_ids_on_both_shards, read_message, response_to};
use common::ws::{read_frame, read_http, send_text, upgrade_request};

use sipshard::sip::{HeaderName, Message};

/// A CA and a server certificate for 127.0.0.1 and localhost, as files;
/// more leaves from the same CA on demand ([`Pki::leaf`]).
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca: CertificateDer<'static>,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The server leaf in `cert`.
    cert_der: CertificateDer<'static>,
}

/// A leaf certificate of a [`Pki`]: its chain and key files, and its DER.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sipshard-tls-e2e-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {name}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem() + &ca_cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        Pki {
            issuer,
            ca: ca_cert.der().clone(),
            ca_file,
            cert: cert_path,
            key: key_path,
            cert_der: cert.der().clone(),
            dir,
        }
    }

    /// A leaf for `sans` with the extended key usages `eku` (none: any
    /// use), written as `{stem}.pem` (leaf, then CA) and `{stem}-key.pem`.
    fn leaf(&self, stem: &str, sans: Vec<SanType>, eku: Vec<ExtendedKeyUsagePurpose>) -> Leaf {
        self.leaf_from(stem, leaf_params(stem, sans, eku))
    }

    /// A leaf signed by this CA with `params`, written as [`Pki::leaf`]
    /// writes its files.
    fn leaf_from(&self, stem: &str, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
            der: cert.der().clone(),
        };
        let ca = std::fs::read_to_string(&self.ca_file).unwrap();
        std::fs::write(&leaf.cert, cert.pem() + &ca).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A server with the certificate in `cert` and `key` (PEM files)
    /// that requires a client certificate from this CA (mutual TLS, as
    /// a trunk does).
    fn server_requiring_client_certs(&self, cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    /// A server with this certificate.
    fn server(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    /// A client trusting this CA only, showing `leaf` (of this CA or
    /// another) as its certificate.
    fn client_showing(&self, leaf: &Leaf) -> Arc<ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        Arc::new(cfg)
    }

    /// A client trusting this CA only.
    fn client(&self) -> Arc<ClientConfig> {
        Arc::new(self.client_for(rustls::DEFAULT_VERSIONS))
    }

    /// A client trusting this CA only, offering `versions`; rustls's
    /// default resumption (an in-memory session store).
    fn client_for(&self, versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

/// The parameters of a leaf for `sans` with the extended key usages
/// `eku` (none: any use), named `stem`.
fn leaf_params(
    stem: &str,
    sans: Vec<SanType>,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, stem);
    params.subject_alt_names = sans;
    params.extended_key_usages = eku;
    params
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// sipshard with UDP and TLS listens; None when io_uring is refused.
fn start(io: &str, pki: &Pki, extra: &[&str]) -> Option<(Proxy, SocketAddr)> {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        "tls:127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(io, &args)?;
    let tls = stream_addr(&proxy.banner, "tls");
    Some((proxy, tls))
}

fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    StreamOwned::new(ClientConnection::new(cfg, name).unwrap(), tcp)
}

fn request(method: &str, uri: &str, c: &Tls, call: &str) -> String {
    let me = c.sock.local_addr().unwrap();
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn status(m: &[u8]) -> u16 {
    Message::parse(m).unwrap().status().unwrap()
}

/// A TLS client's requests: OPTIONS for us answered on the connection,
/// INVITEs forwarded over UDP with their responses back on it from
/// either shard (some reach the shard that does not own the connection
/// and are mailed to the one that does, counted), a keep-alive ping
/// answered, all encrypted.
fn requests_over_tls_are_answered_and_forwarded(io: &str) {
    let pki = Pki::new("forward");
    let Some((proxy, tls)) = start(io, &pki, &["--record-route"]) else {
        return;
    };
    let mut c = connect(tls, pki.client());
    let mut buf = Vec::new();
    let options = request("OPTIONS", &format!("sip:{}", proxy.addr), &c, "tls-opt");
    c.write_all(options.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut c, &mut buf)), 200);
    assert_eq!(c.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    // Responses on both shards, whichever owns the connection: Call-IDs
    // that `--steer call-id` spreads over both, and each call's UAS a new
    // socket, a new draw of the kernel's 4-tuple hash under `flow` (where
    // eBPF is refused; all 32 on the connection's shard once in 2^32
    // runs).
    for call in call_ids_on_both_shards("tls-call", 32) {
        let uas = socket();
        let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
        c.write_all(request("INVITE", &uri, &c, &call).as_bytes())
            .unwrap();
        let fwd = recv(&uas);
        let rr = Message::parse(&fwd)
            .unwrap()
            .header(HeaderName::RecordRoute)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap();
        assert!(rr.contains(";transport=tls;lr;cid="), "{rr}");
        uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
            .unwrap();
        let got = read_message(&mut c, &mut buf);
        assert_eq!(status(&got), 200);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.header(HeaderName::CallId).unwrap(), call.as_bytes());
    }
    c.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_accepted=1 "), "{report}");
    assert!(report.contains(" tls_handshakes=1 "), "{report}");
    assert!(counter(&report, "conn_msgs_crossed") > 0, "{report}");
    // Accepted/closed by transport: the one TLS connection, still open
    // at the stop.
    assert!(
        report.contains(" conns_by_transport: tcp=0/0 tls=1/0 ws=0/0 wss=0/0 "),
        "{report}"
    );
}

/// Bytes that are not TLS close their connection with an alert, counted
/// and logged with the reason at debug; the next client is served.
fn a_client_that_does_not_speak_tls_is_closed(io: &str) {
    let pki = Pki::new("garbage");
    let Some((proxy, tls)) = start(io, &pki, &["--log-level", "debug"]) else {
        return;
    };
    let mut plain = TcpStream::connect(tls).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    plain
        .write_all(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    match plain.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    assert_eq!(got.first(), Some(&0x15), "a TLS alert record: {got:?}");
    let mut c = connect(tls, pki.client());
    let options = request("OPTIONS", &format!("sip:{}", proxy.addr), &c, "after");
    c.write_all(options.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut c, &mut Vec::new())), 200);
    let me = plain.local_addr().unwrap();
    let log = proxy.stop_and_read();
    let report = log.lines().find(|l| l.contains("stopped;")).unwrap_or("");
    assert!(report.contains(" conns_tls_failed=1 "), "{log}");
    let why = format!("connection with {me} (TLS) closed: tls: handshake failed:");
    assert!(log.contains(&why), "{log}");
}

/// `--tls-verify-client required`: a client that shows no certificate
/// fails its handshake (the server's certificate_required alert, counted)
/// and is served nothing; one showing a certificate from the
/// `--tls-client-ca` CA (not the server's own) is then served on the same
/// listener.
fn a_client_without_a_certificate_is_refused_when_one_is_required(io: &str) {
    let pki = Pki::new("mtls");
    let clients = Pki::new("mtls-clients");
    let alice = clients.leaf(
        "alice",
        vec![SanType::DnsName("alice.example.net".try_into().unwrap())],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let client_ca = clients.ca_file.to_str().unwrap();
    let required = [
        "--tls-client-ca",
        client_ca,
        "--tls-verify-client",
        "required",
    ];
    let Some((proxy, tls)) = start(io, &pki, &required) else {
        return;
    };
    let mut anonymous = connect(tls, pki.client());
    let options = request(
        "OPTIONS",
        &format!("sip:{}", proxy.addr),
        &anonymous,
        "anon",
    );
    // Under TLS 1.3 the client's side of the handshake ends with its
    // (empty) certificate: the refusal is the alert read after it.
    let outcome = anonymous
        .write_all(options.as_bytes())
        .and_then(|()| anonymous.read(&mut [0u8; 4096]));
    let e = outcome.expect_err("the handshake fails");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    let mut alice_c = connect(tls, pki.client_showing(&alice));
    let options = request("OPTIONS", &format!("sip:{}", proxy.addr), &alice_c, "alice");
    alice_c.write_all(options.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut alice_c, &mut Vec::new())), 200);
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_accepted=2 "), "{report}");
    assert!(report.contains(" conns_tls_failed=1 "), "{report}");
    assert!(report.contains(" tls_handshakes=1 "), "{report}");
}

/// SIGHUP reloads the certificate: a client trusting only the new CA gets
/// in afterwards; one already connected keeps its connection.
fn sighup_reloads_the_certificate_for_new_connections(io: &str) {
    let old = Pki::new("reload-old");
    let Some((proxy, tls)) = start(io, &old, &[]) else {
        return;
    };
    let mut before = connect(tls, old.client());
    let ping = |c: &mut Tls| {
        c.write_all(b"\r\n\r\n").unwrap();
        let mut pong = [0u8; 2];
        c.read_exact(&mut pong).unwrap();
    };
    ping(&mut before);
    let new = Pki::new("reload-new");
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    // SAFETY: kill(2) on the PID of a child we started and still own.
    unsafe { libc::kill(proxy.child.id() as libc::pid_t, libc::SIGHUP) };
    let mut served = false;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let mut c = connect(tls, new.client());
        c.write_all(b"\r\n\r\n").ok();
        let mut pong = [0u8; 2];
        if c.read_exact(&mut pong).is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "the new certificate is served after SIGHUP");
    ping(&mut before);
    drop(proxy);
}

fn header(m: &[u8], h: HeaderName) -> String {
    String::from_utf8_lossy(Message::parse(m).unwrap().header(h).unwrap()).into_owned()
}

/// RFC 5626 over TLS: a UA registered over TLS is reached over the
/// connection it registered on (not at its Contact's address), whichever
/// shard each call's Call-ID steers it to, and its 200 reaches the UDP
/// caller; once that connection has gone, a call gets 430 Flow Failed
/// (counted).
fn a_ua_registered_over_tls_is_called_over_its_connection(io: &str) {
    let pki = Pki::new("flow");
    let Some((proxy, tls)) = start(io, &pki, &["--domain", "example.com"]) else {
        return;
    };
    let mut ua = connect(tls, pki.client());
    let me = ua.sock.local_addr().unwrap();
    // A Contact nothing listens at: only the flow reaches the UA.
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKreg1\r\n\
To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=r1\r\nCall-ID: tls-reg-flow\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:9;transport=tls>\r\nExpires: 600\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ua.write_all(register.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let ok = read_message(&mut ua, &mut buf);
    assert_eq!(status(&ok), 200, "{}", String::from_utf8_lossy(&ok));
    let caller = socket();
    let invite = |call: &str| {
        format!(
            "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bK{call}\r\n\
To: <sip:alice@example.com>\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            c = port(&caller)
        )
    };
    // Calls whose Call-IDs `--steer call-id` sends to both shards: some
    // reach the shard that does not own the connection.
    for call in call_ids_on_both_shards("tls-flow", 8) {
        caller
            .send_to(invite(&call).as_bytes(), proxy.addr)
            .unwrap();
        let got = read_message(&mut ua, &mut buf);
        let m = Message::parse(&got).unwrap();
        assert_eq!(
            m.request_uri_bytes().unwrap(),
            b"sip:alice@127.0.0.1:9;transport=tls",
            "the Request-URI is the Contact"
        );
        assert_eq!(header(&got, HeaderName::CallId), call);
        let via = header(&got, HeaderName::Via);
        assert!(via.starts_with("SIP/2.0/TLS "), "{via}");
        ua.write_all(&response_to(&got, 200, "OK")).unwrap();
        let answer = recv(&caller);
        assert_eq!(status(&answer), 200);
        assert_eq!(header(&answer, HeaderName::CallId), call);
    }
    drop(ua);
    std::thread::sleep(Duration::from_millis(300));
    caller
        .send_to(invite("tls-after-close").as_bytes(), proxy.addr)
        .unwrap();
    let answer = recv(&caller);
    assert!(
        answer.starts_with(b"SIP/2.0 430 Flow Failed\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(header(&answer, HeaderName::CallId), "tls-after-close");
    let report = proxy.stop_and_report();
    assert!(report.contains(" flows_failed=1 "), "{report}");
}

/// sipshard with UDP and wss listens; None when io_uring is refused.
fn start_wss(io: &str, pki: &Pki, extra: &[&str]) -> Option<(Proxy, SocketAddr)> {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        "wss:127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(io, &args)?;
    let wss: SocketAddr = stream_addr(&proxy.banner, "wss");
    Some((proxy, wss))
}

/// A wss connection with its TLS and WebSocket handshakes done.
fn open_wss(addr: SocketAddr, pki: &Pki) -> Tls {
    let mut c = connect(addr, pki.client());
    c.write_all(upgrade_request("Sec-WebSocket-Protocol: sip\r\n").as_bytes())
        .unwrap();
    let answer = read_http(&mut c);
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    c
}

/// wss: WebSocket over TLS: the handshake and SIP frames inside TLS.
fn websocket_over_tls(io: &str) {
    let pki = Pki::new("wss");
    let Some((proxy, wss)) = start_wss(io, &pki, &[]) else {
        return;
    };
    let mut c = open_wss(wss, &pki);
    let options = request("OPTIONS", &format!("sip:{}", proxy.addr), &c, "wss-opt")
        .replace("SIP/2.0/TLS", "SIP/2.0/WSS");
    send_text(&mut c, options.as_bytes());
    let (opcode, answer) = read_frame(&mut c);
    assert_eq!(opcode, 0x1);
    assert_eq!(status(&answer), 200);
}

/// RFC 7118 over TLS: a wss client's INVITEs leave over UDP with its
/// WSS Via under ours, and each UAS's 200 comes back to it as a text
/// frame inside TLS, from either shard (Call-IDs steered to both; those
/// reaching the shard that does not own the connection are mailed to the
/// one that does, counted).
fn invites_over_wss_are_forwarded_and_answered_in_frames(io: &str) {
    let pki = Pki::new("wss-fwd");
    let Some((proxy, wss)) = start_wss(io, &pki, &[]) else {
        return;
    };
    let mut c = open_wss(wss, &pki);
    for call in call_ids_on_both_shards("wss-call", 32) {
        let uas = socket();
        let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
        let invite = request("INVITE", &uri, &c, &call).replace(
            &format!("SIP/2.0/TLS {}", c.sock.local_addr().unwrap()),
            "SIP/2.0/WSS df7jal23ls0d.invalid",
        );
        send_text(&mut c, invite.as_bytes());
        let fwd = recv(&uas);
        let m = Message::parse(&fwd).unwrap();
        let vias: Vec<_> = m.values(HeaderName::Via).collect();
        assert_eq!(vias.len(), 2, "{}", String::from_utf8_lossy(&fwd));
        assert!(vias[0]
            .text
            .starts_with(format!("SIP/2.0/UDP {};", proxy.addr).as_bytes()));
        assert!(vias[1]
            .text
            .starts_with(b"SIP/2.0/WSS df7jal23ls0d.invalid;"));
        uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
            .unwrap();
        let (opcode, got) = read_frame(&mut c);
        assert_eq!(opcode, 0x1, "a text frame");
        assert_eq!(status(&got), 200);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.header(HeaderName::CallId).unwrap(), call.as_bytes());
        assert_eq!(m.count_of(HeaderName::Via), 1, "our Via removed");
    }
    let report = proxy.stop_and_report();
    assert!(report.contains(" tls_handshakes=1 "), "{report}");
    assert!(counter(&report, "conn_msgs_crossed") > 0, "{report}");
    assert!(
        report.contains(" conns_by_transport: tcp=0/0 tls=0/0 ws=0/0 wss=1/0 "),
        "{report}"
    );
}

/// What a TLS UAS saw of a request: its top Via, and the client
/// certificate (end-entity, DER) of the connection it came on.
#[derive(Debug)]
struct Seen {
    via: String,
    client_cert: Option<Vec<u8>>,
}

/// The outcomes a TLS UAS reports: a request seen, or why its connection
/// failed.
type UasReport = std::sync::mpsc::Receiver<Result<Seen, String>>;

/// A UAS on TLS on 127.0.0.1 with `pki`'s server certificate
/// ([`tls_uas_at`]).
fn tls_uas(pki: &Pki) -> (u16, UasReport) {
    tls_uas_at("127.0.0.1:0".parse().unwrap(), pki.server())
}

/// A UAS on TLS at `addr` (port 0 picks one) with `cfg`, in a thread:
/// answers 200 to each request, on at most two connections (one per
/// shard); its handshakes' outcomes and what it saw of each request come
/// back on the channel.
fn tls_uas_at(addr: SocketAddr, cfg: Arc<rustls::ServerConfig>) -> (u16, UasReport) {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One connection per shard at most.
        for _ in 0..2 {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let (cfg, tx) = (cfg.clone(), tx.clone());
            std::thread::spawn(move || serve_tls(tcp, cfg, tx));
        }
    });
    (port, rx)
}

fn serve_tls(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    tx: std::sync::mpsc::Sender<Result<Seen, String>>,
) {
    {
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let req: Vec<u8> = buf.drain(..end + 4).collect();
                let m = Message::parse(&req).unwrap();
                let via = String::from_utf8_lossy(m.values(HeaderName::Via).next().unwrap().text);
                let client_cert = s.conn.peer_certificates().map(|c| c[0].to_vec());
                let _ = tx.send(Ok(Seen {
                    via: via.into_owned(),
                    client_cert,
                }));
                s.write_all(&response_to(&req, 200, "OK")).unwrap();
            }
        }
    }
}

fn invite_for_upstream(client: &std::net::UdpSocket, call: &str) -> String {
    format!(
        "INVITE sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bK{call}\r\n\
To: <sip:bob@example.net>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        c = port(client)
    )
}

/// `--upstream tls:` with `--tls-ca`: requests leave over a TLS
/// connection (the server's certificate checked against the CA and the
/// upstream's IP), with our Via saying TLS; responses come back on it.
fn requests_leave_over_tls_to_an_upstream(io: &str) {
    let pki = Pki::new("upstream");
    let (uas_port, seen) = tls_uas(&pki);
    let upstream = format!("tls:127.0.0.1:{uas_port}");
    let ca = pki.ca_file.to_str().unwrap();
    let Some(proxy) = Proxy::start(io, &["--upstream", &upstream, "--tls-ca", ca]) else {
        return;
    };
    let client = socket();
    for k in 0..3 {
        let call = format!("up-tls-{k}");
        client
            .send_to(invite_for_upstream(&client, &call).as_bytes(), proxy.addr)
            .unwrap();
        let via = seen
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .via;
        assert!(
            via.starts_with(&format!("SIP/2.0/TLS {};", proxy.addr)),
            "{via}"
        );
        let got = recv(&client);
        assert_eq!(status(&got), 200);
    }
    let report = proxy.stop_and_report();
    assert!(
        report.contains(" conns_opened=1 ") || report.contains(" conns_opened=2 "),
        "one connection per shard at most: {report}"
    );
}

/// The cross-transport pair TCP→TLS: a TCP client's INVITEs leave for
/// `--upstream tls:` over a TLS connection (the upstream's certificate
/// checked against `--tls-ca`), our Via saying TLS, and each 200 comes
/// back on the client's TCP connection with our Via removed, the
/// client's own on top. (All on the shard that owns the TCP connection:
/// it opens its own connection to the upstream.)
fn a_tcp_clients_requests_go_to_a_tls_upstream_and_come_back(io: &str) {
    let pki = Pki::new("tcp-to-tls");
    let (uas_port, seen) = tls_uas(&pki);
    let upstream = format!("tls:127.0.0.1:{uas_port}");
    let ca = pki.ca_file.to_str().unwrap();
    let args = [
        "--listen",
        "tcp:127.0.0.1:0",
        "--upstream",
        &upstream,
        "--tls-ca",
        ca,
    ];
    let Some(proxy) = Proxy::start(io, &args) else {
        return;
    };
    let tcp: SocketAddr = stream_addr(&proxy.banner, "tcp");
    let mut client = TcpStream::connect(tcp).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = client.local_addr().unwrap();
    let mut buf = Vec::new();
    for k in 0..4 {
        let call = format!("tcp-tls-{k}");
        let invite = format!(
            "INVITE sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK{call}\r\n\
To: <sip:bob@example.net>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        client.write_all(invite.as_bytes()).unwrap();
        let via = seen
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .via;
        assert!(
            via.starts_with(&format!("SIP/2.0/TLS {};", proxy.addr)),
            "{via}"
        );
        let got = read_message(&mut client, &mut buf);
        assert_eq!(status(&got), 200);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.header(HeaderName::CallId).unwrap(), call.as_bytes());
        let vias: Vec<_> = m.values(HeaderName::Via).collect();
        assert_eq!(vias.len(), 1, "our Via removed");
        assert!(vias[0]
            .text
            .starts_with(format!("SIP/2.0/TCP {me};").as_bytes()));
    }
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_accepted=1 "), "{report}");
    assert!(
        report.contains(" conns_opened=1 ") || report.contains(" conns_opened=2 "),
        "one connection per shard at most: {report}"
    );
}

/// A next hop whose certificate our CA did not sign: the handshake fails
/// (counted), nothing is sent in clear, the server goes on.
fn an_untrusted_upstream_certificate_fails_the_handshake(io: &str) {
    let (trusted, other) = (Pki::new("trusted"), Pki::new("untrusted"));
    let (uas_port, seen) = tls_uas(&other);
    let upstream = format!("tls:127.0.0.1:{uas_port}");
    let ca = trusted.ca_file.to_str().unwrap();
    let Some(proxy) = Proxy::start(io, &["--upstream", &upstream, "--tls-ca", ca]) else {
        return;
    };
    let client = socket();
    client
        .send_to(
            invite_for_upstream(&client, "untrusted").as_bytes(),
            proxy.addr,
        )
        .unwrap();
    let outcome = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        outcome.is_err(),
        "the UAS saw the handshake fail: {outcome:?}"
    );
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_tls_failed=1 "), "{report}");
}

/// The client certificate a next hop that requires one sees: the
/// `--tls-client-cert` pair when given, even beside `--tls-cert` (here a
/// server-only certificate, as public CAs issue them, which the next hop
/// would refuse); else the `--tls-cert` pair. Requests are forwarded and
/// answered either way.
fn the_client_pair_is_shown_to_a_next_hop_else_the_server_pair(io: &str) {
    let pki = Pki::new("client-pair");
    let ip = || vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let server_only = pki.leaf(
        "server-only",
        ip(),
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let client = pki.leaf("client", ip(), vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let with_client_pair = [
        "--tls-cert".to_string(),
        s(&server_only.cert),
        "--tls-key".to_string(),
        s(&server_only.key),
        "--tls-client-cert".to_string(),
        s(&client.cert),
        "--tls-client-key".to_string(),
        s(&client.key),
    ];
    // pki.cert has no extended key usage: good for either end.
    let server_pair_only = [
        "--tls-cert".to_string(),
        s(&pki.cert),
        "--tls-key".to_string(),
        s(&pki.key),
    ];
    for (flags, shown) in [
        (&with_client_pair[..], &client.der),
        (&server_pair_only[..], &pki.cert_der),
    ] {
        let (uas_port, seen) = tls_uas_at(
            "127.0.0.1:0".parse().unwrap(),
            pki.server_requiring_client_certs(&pki.cert, &pki.key),
        );
        let upstream = format!("tls:127.0.0.1:{uas_port}");
        let mut args = vec![
            "--upstream",
            &upstream,
            "--tls-ca",
            pki.ca_file.to_str().unwrap(),
        ];
        args.extend(flags.iter().map(String::as_str));
        let Some(proxy) = Proxy::start(io, &args) else {
            return;
        };
        let client_sock = socket();
        let call = format!("client-pair-{}", flags.len());
        client_sock
            .send_to(
                invite_for_upstream(&client_sock, &call).as_bytes(),
                proxy.addr,
            )
            .unwrap();
        let got = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        let got = got.unwrap_or_else(|e| panic!("{flags:?}: the UAS failed: {e}"));
        assert_eq!(
            got.client_cert.as_deref(),
            Some(shown.as_ref()),
            "{flags:?}"
        );
        assert_eq!(status(&recv(&client_sock)), 200);
        let report = proxy.stop_and_report();
        assert!(report.contains(" conns_tls_failed=0 "), "{report}");
    }
    assert_ne!(client.der, server_only.der);
}

/// The address sipshard uses for `--upstream tls:localhost:PORT`: the
/// first the system resolver gives (127.0.0.1 or ::1, as /etc/hosts and
/// gai.conf order them), looked up the same way here.
fn localhost() -> std::net::IpAddr {
    use std::net::ToSocketAddrs;
    ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("localhost resolves")
        .ip()
}

/// Flags for an upstream that requires client certificates and whose
/// certificate names only "localhost" (a DNS subjectAltName, no IP one),
/// as a trunk's SBC's does: our listener's certificate is for servers only
/// (which that upstream would refuse as a client's), and the client pair
/// is the one to show. The leaves: (upstream, ours as a server, ours as a
/// client).
fn named_upstream_pki(pki: &Pki) -> (Leaf, Leaf, Leaf) {
    let upstream = pki.leaf(
        "localhost-only",
        vec![SanType::DnsName("localhost".try_into().unwrap())],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let ours = pki.leaf(
        "ours",
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let client = pki.leaf(
        "ours-client",
        vec![SanType::DnsName("proxy.example.net".try_into().unwrap())],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    (upstream, ours, client)
}

/// sipshard with `--upstream UPSTREAM`, trusting `pki`'s CA, serving
/// `ours` on a tls: listen and showing `client` to next hops.
fn start_with_client_pair(
    io: &str,
    pki: &Pki,
    upstream: &str,
    ours: &Leaf,
    client: &Leaf,
) -> Option<Proxy> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "--upstream".to_string(),
        upstream.to_string(),
        "--tls-ca".to_string(),
        s(&pki.ca_file),
        "--listen".to_string(),
        "tls:127.0.0.1:0".to_string(),
        "--tls-cert".to_string(),
        s(&ours.cert),
        "--tls-key".to_string(),
        s(&ours.key),
        "--tls-client-cert".to_string(),
        s(&client.cert),
        "--tls-client-key".to_string(),
        s(&client.key),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(io, &args)
}

/// `--upstream tls:localhost:PORT` toward a trunk-like upstream (client
/// certificates required, its own certificate naming only "localhost"):
/// the name is resolved at start-up (the banner says to what), the
/// certificate is checked against the name, and the upstream sees our
/// client certificate, not our server one; requests are forwarded over
/// TLS and answered.
fn a_tls_upstream_given_by_name_is_checked_against_the_name(io: &str) {
    let pki = Pki::new("named-upstream");
    let (upstream, ours, client) = named_upstream_pki(&pki);
    // Where sipshard will connect: the upstream listens there.
    let at = SocketAddr::new(localhost(), 0);
    let (uas_port, seen) = tls_uas_at(
        at,
        pki.server_requiring_client_certs(&upstream.cert, &upstream.key),
    );
    let spec = format!("tls:localhost:{uas_port}");
    let Some(proxy) = start_with_client_pair(io, &pki, &spec, &ours, &client) else {
        return;
    };
    let resolved = SocketAddr::new(at.ip(), uas_port);
    assert!(
        proxy
            .banner
            .contains(&format!("upstreams [{spec} (resolved to {resolved})]")),
        "{}",
        proxy.banner
    );
    let client_sock = socket();
    for k in 0..3 {
        let call = format!("named-up-{k}");
        client_sock
            .send_to(
                invite_for_upstream(&client_sock, &call).as_bytes(),
                proxy.addr,
            )
            .unwrap();
        let got = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        let got = got.unwrap_or_else(|e| panic!("the upstream failed: {e}"));
        assert!(
            got.via.starts_with(&format!("SIP/2.0/TLS {};", proxy.addr)),
            "{}",
            got.via
        );
        assert_eq!(got.client_cert.as_deref(), Some(client.der.as_ref()));
        assert_ne!(got.client_cert.as_deref(), Some(ours.der.as_ref()));
        assert_eq!(status(&recv(&client_sock)), 200);
    }
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_tls_failed=0 "), "{report}");
}

/// The same upstream given by its address: its certificate names no IP,
/// so the handshake fails (our side sends bad_certificate, counted) and
/// nothing is forwarded.
fn a_tls_upstream_given_by_address_fails_when_its_certificate_names_a_host(io: &str) {
    let pki = Pki::new("address-upstream");
    let (upstream, ours, client) = named_upstream_pki(&pki);
    let (uas_port, seen) = tls_uas_at(
        "127.0.0.1:0".parse().unwrap(),
        pki.server_requiring_client_certs(&upstream.cert, &upstream.key),
    );
    let spec = format!("tls:127.0.0.1:{uas_port}");
    let Some(proxy) = start_with_client_pair(io, &pki, &spec, &ours, &client) else {
        return;
    };
    let client_sock = socket();
    client_sock
        .send_to(
            invite_for_upstream(&client_sock, "by-address").as_bytes(),
            proxy.addr,
        )
        .unwrap();
    let outcome = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    let e = outcome.expect_err("the handshake fails");
    assert!(e.contains("BadCertificate"), "the name check failed: {e}");
    assert!(nothing_arrives(&client_sock), "nothing was forwarded");
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_tls_failed=1 "), "{report}");
}

/// The same trunk-like upstream at its address, with a certificate that
/// names it and chains to our CA but whose validity ended yesterday: the
/// handshake fails (our side sends certificate_expired, counted), nothing
/// is forwarded, and the server goes on answering.
fn an_upstream_whose_certificate_has_expired_fails_the_handshake(io: &str) {
    let pki = Pki::new("expired-upstream");
    let (_, ours, client) = named_upstream_pki(&pki);
    let mut params = leaf_params(
        "expired",
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let day = Duration::from_secs(24 * 3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    (params.not_before, params.not_after) = (epoch + now - 2 * day, epoch + now - day);
    let expired = pki.leaf_from("expired", params);
    let (uas_port, seen) = tls_uas_at(
        "127.0.0.1:0".parse().unwrap(),
        pki.server_requiring_client_certs(&expired.cert, &expired.key),
    );
    let spec = format!("tls:127.0.0.1:{uas_port}");
    let Some(proxy) = start_with_client_pair(io, &pki, &spec, &ours, &client) else {
        return;
    };
    let client_sock = socket();
    client_sock
        .send_to(
            invite_for_upstream(&client_sock, "expired").as_bytes(),
            proxy.addr,
        )
        .unwrap();
    let outcome = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    let e = outcome.expect_err("the handshake fails");
    assert!(
        e.contains("CertificateExpired"),
        "the validity check failed: {e}"
    );
    assert!(nothing_arrives(&client_sock), "nothing was forwarded");
    // Still serving: an OPTIONS for us is answered.
    let options = invite_for_upstream(&client_sock, "after-expired")
        .replace(
            "INVITE sip:bob@example.net",
            &format!("OPTIONS sip:{}", proxy.addr),
        )
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    client_sock.send_to(options.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&client_sock)), 200);
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_tls_failed=1 "), "{report}");
}

/// A client pair that cannot be used stops the server at start-up with
/// the file named, as a bad --tls-cert does: the pair serves outbound TLS
/// alone, and a server that quietly showed no certificate would only fail
/// later, at each trunk's handshake.
#[test]
fn a_client_pair_that_does_not_match_stops_the_server() {
    let pki = Pki::new("client-pair-bad");
    let client = pki.leaf(
        "client",
        Vec::new(),
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let (mut child, line, _) = common::process::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-ca",
        pki.ca_file.to_str().unwrap(),
        "--tls-client-cert",
        client.cert.to_str().unwrap(),
        "--tls-client-key",
        pki.key.to_str().unwrap(),
    ]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{line}");
    let says = format!(
        "tls: {}: the private key does not match the certificate in {}",
        pki.key.display(),
        client.cert.display()
    );
    assert!(line.contains(&says), "{line}");
}

/// Connections accepted so far by shard 0 and by shard 1 (`--shards 2`),
/// from the metrics at `addr`.
fn accepted_per_shard(addr: SocketAddr) -> [u64; 2] {
    let (_, body) = get(addr, "/metrics");
    [0, 1].map(|i| {
        sum_of(
            &body,
            &format!("sipshard_connections_accepted_total{{shard=\"{i}\","),
        )
    })
}

/// One client (one session store) reconnecting from a new source port
/// each time, so the kernel's 4-tuple hash spreads its connections over
/// both shards: the first handshake is full, every later one resumes,
/// including the first on the shard that did not make the session, which
/// could only resume with the ticket keys or session cache the shards
/// share. At least 16 connections, more (at most 64) until both shards
/// have had one; which shard took each comes from the per-shard accept
/// counter, read after it.
fn resumes_across_shards(
    io: &str,
    name: &str,
    version: &'static SupportedProtocolVersion,
    resumption: Resumption,
) {
    let pki = Pki::new(name);
    let Some((mut proxy, tls)) = start(io, &pki, &["--metrics-listen", "127.0.0.1:0"]) else {
        return;
    };
    let metrics = metrics_addr(&mut proxy);
    let mut client = pki.client_for(&[version]);
    client.resumption = resumption;
    let client = Arc::new(client);
    let mut seen = Vec::new();
    let mut before = accepted_per_shard(metrics);
    for k in 0..64 {
        let mut c = connect(tls, client.clone());
        let call = format!("resume-{k}");
        let options = request("OPTIONS", &format!("sip:{}", proxy.addr), &c, &call);
        c.write_all(options.as_bytes()).unwrap();
        assert_eq!(status(&read_message(&mut c, &mut Vec::new())), 200);
        assert_eq!(c.conn.protocol_version(), Some(version.version));
        let kind = c.conn.handshake_kind().unwrap();
        c.conn.send_close_notify();
        c.flush().unwrap();
        drop(c);
        let after = accepted_per_shard(metrics);
        let shard = match (after[0] - before[0], after[1] - before[1]) {
            (1, 0) => 0,
            (0, 1) => 1,
            d => panic!("connection {k}: accepts per shard went up by {d:?}"),
        };
        before = after;
        seen.push((shard, kind));
        if seen.len() >= 16 && before.iter().all(|&n| n > 0) {
            break;
        }
    }
    assert!(
        before.iter().all(|&n| n > 0),
        "{} connections, all on one shard: {seen:?}",
        seen.len()
    );
    assert_eq!(seen[0].1, HandshakeKind::Full, "{seen:?}");
    for (k, &(_, kind)) in seen.iter().enumerate().skip(1) {
        assert_eq!(kind, HandshakeKind::Resumed, "connection {k}: {seen:?}");
    }
    // Spelled out: the first connection on the other shard resumed a
    // session made on the first one's.
    let other = seen.iter().position(|&(s, _)| s != seen[0].0).unwrap();
    assert_eq!(seen[other].1, HandshakeKind::Resumed, "{seen:?}");
    let report = proxy.stop_and_report();
    assert!(
        report.contains(&format!(" conns_accepted={} ", seen.len())),
        "{report}"
    );
    assert!(report.contains(" conns_tls_failed=0 "), "{report}");
    // Each ended with close_notify: an orderly end, not a framing error.
    assert!(report.contains(" conns_unframeable=0 "), "{report}");
}

/// TLS 1.3: resumption with the tickets the server sends after each
/// handshake (PSK, RFC 8446 §2.2).
fn tls13_sessions_resume_on_either_shard(io: &str) {
    let version = &rustls::version::TLS13;
    resumes_across_shards(io, "resume13", version, Resumption::default());
}

/// TLS 1.2 with rustls's default resumption: the client asks for a
/// session ticket (RFC 5077), which the server's ticketer seals.
fn tls12_tickets_resume_on_either_shard(io: &str) {
    let version = &rustls::version::TLS12;
    resumes_across_shards(io, "resume12", version, Resumption::default());
}

/// TLS 1.2 with session IDs only (a client without ticket support):
/// resumption from the server's session cache.
fn tls12_session_ids_resume_on_either_shard(io: &str) {
    let ids_only = Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOnly);
    resumes_across_shards(io, "resume12id", &rustls::version::TLS12, ids_only);
}

on_both_backends!(
    a_ua_registered_over_tls_is_called_over_its_connection,
    requests_leave_over_tls_to_an_upstream,
    a_tcp_clients_requests_go_to_a_tls_upstream_and_come_back,
    the_client_pair_is_shown_to_a_next_hop_else_the_server_pair,
    a_tls_upstream_given_by_name_is_checked_against_the_name,
    a_tls_upstream_given_by_address_fails_when_its_certificate_names_a_host,
    an_upstream_whose_certificate_has_expired_fails_the_handshake,
    an_untrusted_upstream_certificate_fails_the_handshake,
    websocket_over_tls,
    invites_over_wss_are_forwarded_and_answered_in_frames,
    requests_over_tls_are_answered_and_forwarded,
    a_client_that_does_not_speak_tls_is_closed,
    a_client_without_a_certificate_is_refused_when_one_is_required,
    sighup_reloads_the_certificate_for_new_connections,
    tls13_sessions_resume_on_either_shard,
    tls12_tickets_resume_on_either_shard,
    tls12_session_ids_resume_on_either_shard,
);
