//! [`TlsSettings`] -> a `rustls::ServerConfig`: reads the PEM files, checks
//! that key and certificate belong together, sets up client verification
//! and resumption. Runs at start-up and on a reload, off the shards' loops.
//! The PEM readers serve the client side (`client_config.rs`) too.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};

use super::{TlsError, TlsSettings, VerifyClient};

/// Largest PEM file read. A chain or a CA bundle is kilobytes (a full
/// public-root bundle about 200 KiB); a bigger file is a wrong path, and
/// the cap keeps a path such as `/dev/zero` from reading forever.
pub(super) const MAX_PEM_FILE: u64 = 4 << 20;

/// TLS 1.2 sessions (those of clients without ticket support) remembered
/// for resumption, for all shards together. An entry is a few hundred
/// bytes, so the full cache is a few MiB; a client pushed out does a full
/// handshake. TLS 1.3 resumes with tickets and needs no entry.
const SESSION_CACHE_ENTRIES: usize = 8192;

/// TLS 1.3 tickets sent after each handshake. A SIP peer keeps one
/// connection and reconnects one at a time, so one ticket covers its next
/// reconnection (a resumed handshake brings a fresh one); rustls's default
/// of 2 serves browsers racing parallel connections, at twice the
/// encryptions per handshake.
const TLS13_TICKETS: usize = 1;

/// The configuration a TLS listener accepts with, for every shard: the
/// certificate chain and key of `settings`, client verification as asked,
/// TLS 1.2 and 1.3 with the *ring* provider's suites (ECDHE, AEAD), no
/// ALPN (RFC 3261 defines none), and one ticketer and session cache that
/// every shard shares through the `Arc`, so that resumption works whatever
/// shard a reconnection lands on.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let certified = certified_key(&provider, &settings.cert, &settings.key)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match (settings.verify_client, &settings.client_ca) {
        (VerifyClient::None, _) => builder.with_no_client_auth(),
        (v, None) => return Err(TlsError::NeedsClientCa(v)),
        (v, Some(ca)) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match v {
                VerifyClient::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::Pem {
                path: ca.clone(),
                detail: format!("no usable CA certificate ({e})"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // Stateless tickets for TLS 1.3 and for TLS 1.2 clients that ask for
    // them: the keys live in the config, so any shard can open a ticket
    // another shard sealed (design note transports.md §3.4). Rotates its
    // keys every 6 hours.
    config.ticketer = ring::Ticketer::new().map_err(TlsError::Config)?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.send_tls13_tickets = TLS13_TICKETS;
    Ok(Arc::new(config))
}

/// The chain in `cert` and the key in `key`, loaded by `provider` and
/// checked to belong together, so that a wrong pair stops the server at
/// start-up rather than failing every handshake. Serves a listener's
/// certificate and the one presented to next hops that ask (mutual TLS).
pub(super) fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|error| TlsError::BadKey {
            path: key.to_path_buf(),
            error,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The provider could not say (a key type without a public half it
        // can derive): the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(error) => Err(TlsError::BadCertificate {
            path: cert.to_path_buf(),
            error,
        }),
    }
}

/// Every certificate in `path`, in file order (end-entity first in a
/// chain, as TLS sends them, RFC 8446 §4.4.2).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        certs.push(cert.map_err(|e| pem_error(path, e))?);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key in `path` (PKCS#8, PKCS#1 or SEC1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        e => pem_error(path, e),
    })
}

/// The CAs in `path` as trust anchors (client CAs for a listener, server
/// CAs for outbound connections); every certificate in it must parse, so
/// that a damaged bundle is noticed rather than half-trusted.
pub(super) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|error| TlsError::BadCertificate {
            path: path.to_path_buf(),
            error,
        })?;
    }
    Ok(roots)
}

/// The whole of a PEM file, refused past [`MAX_PEM_FILE`].
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

/// A PEM parse error in words an operator can act on.
fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    let detail = match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a {} section has no END line (cut short?)",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "bad section start line {:?}",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(e) => format!("bad base64 in a section: {e}"),
        e => e.to_string(),
    };
    TlsError::Pem {
        path: path.to_path_buf(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testpki::Pki;
    use super::*;

    /// The message of `server_config`'s error on `settings`.
    fn error(settings: &TlsSettings) -> String {
        match server_config(settings) {
            Ok(_) => panic!("{settings:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_chain_and_key_build_a_config_for_both_versions() {
        let pki = Pki::new("config-good");
        let cfg = server_config(&pki.settings()).unwrap();
        let versions: Vec<_> = cfg
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
        assert!(cfg.ticketer.enabled(), "tickets on, for every shard");
        assert!(cfg.alpn_protocols.is_empty());
    }

    #[test]
    fn a_missing_file_is_named() {
        let pki = Pki::new("config-missing");
        let mut s = pki.settings();
        s.key = pki.path("nowhere.pem");
        let e = error(&s);
        assert!(
            e.starts_with(&format!("tls: {}: cannot read", s.key.display())),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_a_certificate_is_named() {
        let pki = Pki::new("config-nocert");
        let mut s = pki.settings();
        s.cert = pki.write("empty.pem", "nothing here\n");
        assert_eq!(
            error(&s),
            format!("tls: {}: no certificate found", s.cert.display())
        );
        // A key file given as the certificate holds no certificate either.
        s.cert = s.key.clone();
        assert!(error(&s).ends_with("no certificate found"));
    }

    #[test]
    fn a_file_without_a_key_is_named() {
        let pki = Pki::new("config-nokey");
        let mut s = pki.settings();
        s.key = s.cert.clone();
        let e = error(&s);
        assert!(
            e.starts_with(&format!("tls: {}: no private key found", s.key.display())),
            "{e}"
        );
    }

    #[test]
    fn broken_pem_is_named() {
        let pki = Pki::new("config-badpem");
        let mut s = pki.settings();
        let cert = std::fs::read_to_string(&s.cert).unwrap();
        // Cut before the first END line.
        let cut = &cert[..cert.find("-----END").unwrap()];
        s.cert = pki.write("cut.pem", cut);
        let e = error(&s);
        assert!(
            e.starts_with(&format!("tls: {}: malformed PEM", s.cert.display())),
            "{e}"
        );
        assert!(
            e.ends_with("a CERTIFICATE section has no END line (cut short?)"),
            "{e}"
        );
        // Base64 that is not base64.
        s.cert = pki.write(
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = error(&s);
        assert!(e.contains("malformed PEM: bad base64"), "{e}");
        // A certificate section whose DER is not a certificate.
        s.cert = pki.write(
            "notx509.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let e = error(&s);
        assert!(
            e.starts_with(&format!("tls: {}: unusable certificate", s.cert.display())),
            "{e}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_named() {
        let pki = Pki::new("config-mismatch");
        let mut s = pki.settings();
        s.key = pki.client_key.clone();
        assert_eq!(
            error(&s),
            format!(
                "tls: {}: the private key does not match the certificate in {}",
                s.key.display(),
                s.cert.display()
            )
        );
    }

    #[test]
    fn a_key_the_provider_cannot_load_is_named() {
        let pki = Pki::new("config-badkey");
        let mut s = pki.settings();
        s.key = pki.write(
            "bad-key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let e = error(&s);
        assert!(
            e.starts_with(&format!("tls: {}: unusable private key", s.key.display())),
            "{e}"
        );
    }

    #[test]
    fn client_verification_needs_a_client_ca() {
        let pki = Pki::new("config-noca");
        for v in [VerifyClient::Optional, VerifyClient::Required] {
            let mut s = pki.settings();
            s.verify_client = v;
            s.client_ca = None;
            assert_eq!(
                error(&s),
                format!(
                    "tls: client certificate verification `{v}` needs a client CA file \
                     (--tls-client-ca)"
                )
            );
            s.client_ca = Some(pki.write("noca.pem", ""));
            assert!(error(&s).ends_with("noca.pem: no certificate found"));
            s.client_ca = Some(pki.client_ca.clone());
            assert!(server_config(&s).is_ok());
        }
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let pki = Pki::new("config-large");
        let mut s = pki.settings();
        let big = vec![b'A'; MAX_PEM_FILE as usize + 1];
        s.cert = pki.path("big.pem");
        std::fs::write(&s.cert, big).unwrap();
        let e = error(&s);
        assert!(e.contains("big.pem: larger than 4 MiB"), "{e}");
    }
}
