//! Test certificates made at test time (rcgen), written as PEM files into
//! a fresh directory removed on drop, an in-memory rustls client to drive
//! a [`TlsSession`] with, and SIP messages to carry. Test code only.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};

use super::{TlsError, TlsSession, TlsSettings, VerifyClient};

/// The name the server certificate is for, and clients ask for (SNI).
pub(crate) const SERVER_NAME: &str = "localhost";

/// A CA with a server certificate, a second CA for clients with one client
/// certificate, all as files in a directory of their own.
pub(crate) struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    /// The server CA's certificate, which clients trust.
    pub ca_der: CertificateDer<'static>,
    /// The server CA's certificate file (what `--tls-ca` names).
    pub server_ca: PathBuf,
    /// Server certificate chain (leaf, then CA) and key files.
    pub cert: PathBuf,
    /// The server key file.
    pub key: PathBuf,
    /// The server leaf certificate.
    pub cert_der: CertificateDer<'static>,
    /// The client CA's certificate file.
    pub client_ca: PathBuf,
    /// The client certificate.
    pub client_der: CertificateDer<'static>,
    /// The client certificate file.
    pub client_cert: PathBuf,
    /// The client key file (also a key that matches no server certificate).
    pub client_key: PathBuf,
    client_key_der: PrivateKeyDer<'static>,
}

/// A CA's parameters and key: its own certificate is self-signed.
fn new_ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().unwrap())
}

/// A leaf for `names` (DNS names or IP addresses, as subjectAltNames; the
/// first is also the common name) with the extended key usage `eku`,
/// signed by `issuer`.
fn leaf(
    names: &[&str],
    eku: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("none"));
    params.extended_key_usages = vec![eku];
    let key = KeyPair::generate().unwrap();
    (params.signed_by(&key, issuer).unwrap(), key)
}

impl Pki {
    /// Fresh certificates in a fresh directory; `name` tells the test.
    pub(crate) fn new(name: &str) -> Pki {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sipshard-tls-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();

        // CA names differ between Pkis, as real CAs' do: a verifier looks
        // issuers up by name, and two CAs of one name would fail on the
        // signature instead of as an unknown issuer.
        let (ca_params, ca_key) = new_ca(&format!("sipshard test server CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let (server, server_key) = leaf(&[SERVER_NAME], ExtendedKeyUsagePurpose::ServerAuth, &ca);

        let (client_ca_params, client_ca_key) = new_ca(&format!("sipshard test client CA {name}"));
        let client_ca_cert = client_ca_params.self_signed(&client_ca_key).unwrap();
        let client_issuer = Issuer::new(client_ca_params, client_ca_key);
        let (client, client_key) = leaf(
            &["trunk.example.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &client_issuer,
        );

        let write = |file: &str, text: String| {
            let p = dir.join(file);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            cert: write("cert.pem", server.pem() + &ca_cert.pem()),
            key: write("key.pem", server_key.serialize_pem()),
            server_ca: write("ca.pem", ca_cert.pem()),
            client_ca: write("client-ca.pem", client_ca_cert.pem()),
            client_cert: write("client-cert.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            ca_der: ca_cert.der().clone(),
            cert_der: server.der().clone(),
            client_der: client.der().clone(),
            client_key_der: PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
            ca,
            dir,
        }
    }

    /// Settings for the server certificate, no client verification.
    pub(crate) fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: Some(self.client_ca.clone()),
            verify_client: VerifyClient::None,
            ca: None,
        }
    }

    /// Settings as [`Pki::settings`], but with a certificate from the same
    /// CA for `names` (DNS names or IP addresses) instead of
    /// [`SERVER_NAME`], written to files of its own.
    pub(crate) fn settings_for(&self, names: &[&str]) -> TlsSettings {
        let (cert, key) = leaf(names, ExtendedKeyUsagePurpose::ServerAuth, &self.ca);
        let stem: String = names
            .join("+")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        TlsSettings {
            cert: self.write(&format!("{stem}-cert.pem"), &cert.pem()),
            key: self.write(&format!("{stem}-key.pem"), &key.serialize_pem()),
            ..self.settings()
        }
    }

    /// `file` in the directory.
    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes `text` to `file` in the directory.
    pub(crate) fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes a new server certificate (same CA and name) and key over the
    /// configured files; returns the new leaf.
    pub(crate) fn renew_server_cert(&self) -> CertificateDer<'static> {
        let (cert, key) = leaf(
            &[SERVER_NAME],
            ExtendedKeyUsagePurpose::ServerAuth,
            &self.ca,
        );
        std::fs::write(&self.cert, cert.pem()).unwrap();
        std::fs::write(&self.key, key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// A client that trusts the server CA, speaks only `versions`, and
    /// shows the client certificate when `with_cert`. Connections made from
    /// one config share its session store (resumption).
    pub(crate) fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        with_cert: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_cert {
            builder
                .with_client_auth_cert(
                    vec![self.client_der.clone()],
                    self.client_key_der.clone_key(),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A SIP request, as a client sends it (RFC 3261 §11.1 OPTIONS).
pub(crate) const REQUEST: &[u8] = b"OPTIONS sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\nTo: <sip:localhost>\r\nFrom: <sip:alice@example.test>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// Its response.
pub(crate) const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776asdhds\r\n\
To: <sip:localhost>;tag=a6c85cf\r\nFrom: <sip:alice@example.test>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// Both TLS versions.
pub(crate) const BOTH: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client connection to [`SERVER_NAME`].
pub(crate) fn client(config: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config.clone(), ServerName::try_from(SERVER_NAME).unwrap()).unwrap()
}

/// Hands `bytes` to the client, chunk by chunk as it takes them; returns
/// the plaintext they carried.
pub(crate) fn feed_client(
    client: &mut ClientConnection,
    bytes: &[u8],
) -> Result<Vec<u8>, rustls::Error> {
    let mut plain = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if client.read_tls(&mut rest).unwrap() == 0 {
            break;
        }
        client.process_new_packets()?;
        match client.reader().read_to_end(&mut plain) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
    }
    Ok(plain)
}

/// What a run of [`shuttle`] ended with.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The server's first error, if any.
    pub server: Result<(), TlsError>,
    /// The client's first error, if any.
    pub client: Result<(), rustls::Error>,
    /// Bytes the server sent after its error (the alert).
    pub sent_after_error: usize,
    /// The plaintext the client received.
    pub client_plain: Vec<u8>,
}

/// Moves bytes both ways until neither side has any left to send or one
/// side fails; the plaintext the server receives is appended to `plain`.
/// The server's ciphertext is fed to it in chunks of `chunk` bytes.
pub(crate) fn shuttle(
    client: &mut ClientConnection,
    server: &mut TlsSession,
    plain: &mut Vec<u8>,
    chunk: usize,
) -> Outcome {
    let mut outcome = Outcome {
        server: Ok(()),
        client: Ok(()),
        sent_after_error: 0,
        client_plain: Vec::new(),
    };
    for _ in 0..100 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        for piece in to_server.chunks(chunk.max(1)) {
            if let Err(e) = server.receive(piece, plain) {
                outcome.server = Err(e);
                break;
            }
        }
        let mut to_client = Vec::new();
        server.take_outgoing(&mut to_client);
        if outcome.server.is_err() {
            outcome.sent_after_error = to_client.len();
        }
        match feed_client(client, &to_client) {
            Ok(plain) => outcome.client_plain.extend(plain),
            Err(e) => outcome.client = Err(e),
        }
        if outcome.server.is_err() || outcome.client.is_err() {
            return outcome;
        }
        if to_server.is_empty() && to_client.is_empty() {
            return outcome;
        }
    }
    panic!("no end to the exchange after 100 rounds");
}
