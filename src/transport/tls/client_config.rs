//! The `rustls::ClientConfig` for outbound connections to next hops
//! (trunks, `sips:` URIs, a `tls:` upstream): the roots that servers are
//! checked against, the certificate shown to servers that ask for one,
//! and the session store for resumption. Built once at start-up, off the
//! shards' loops.
//!
//! # Trade-offs
//! - One `ClientConfig` for the whole process, shared by every shard
//!   through its `Arc`, rather than one per shard (design note §6.6): a
//!   TLS 1.3 ticket is single-use and a reconnection to a trunk may be
//!   opened by any shard, so one store lets a ticket got on one shard
//!   resume on another. The store (rustls's `ClientSessionMemoryCache`) is
//!   a `std::sync::Mutex` around a small map, taken a handful of times per
//!   handshake (key-share hint, ticket take, ticket insert) and never per
//!   record; a handshake costs milliseconds of CPU, the lock well under a
//!   microsecond, so contention is not measurable at handshake rates. A
//!   panic inside rustls while it holds the lock would poison it, and
//!   rustls unwraps the lock: every later handshake would panic too. The
//!   code under the lock is map operations only.
//! - System roots are read once, when the configuration is built: a CA
//!   added to the system store later needs a restart.

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

use super::config::{certified_key, load_roots};
use super::TlsError;

/// Next hops whose resumption data is kept, for all shards together.
/// rustls's default store remembers 32 servers (it counts 8 entries per
/// server, room for 8 TLS 1.3 tickets), fewer than an edge proxy may have
/// trunks; past the limit the oldest server is forgotten and its next
/// connection does a full handshake. An entry holds a ticket and the
/// server's certificate chain, a few KiB, so 256 servers cost at most a
/// few MiB, and much less in practice: sipshard's own servers send one
/// ticket per handshake and each resumption uses one up.
const NEXT_HOPS_REMEMBERED: usize = 256;

/// rustls's entries per remembered server (`MAX_TLS13_TICKETS_PER_SERVER`
/// in its `client/handy.rs`): its store's size is counted in these.
const ENTRIES_PER_SERVER: usize = 8;

/// Errors from the system store shown in [`TlsError::NoSystemRoots`]: the
/// first few say what is wrong, a full list of unreadable files would
/// bury it.
const ROOT_ERRORS_SHOWN: usize = 3;

/// The configuration every outbound TLS connection is made with: TLS 1.3
/// and 1.2 with the *ring* provider's suites (ECDHE, AEAD), as the
/// listener speaks; servers checked against the CAs in `ca` (PEM), or the
/// system's trust store when `ca` is `None`; and, when `client_identity`
/// (certificate chain, key; PEM) is given, that certificate shown to a
/// server that asks for one (mutual TLS toward trunks, RFC 3261 §26.3.1).
/// No early data (0-RTT): a replayed INVITE would be acted on twice.
pub fn client_config(
    ca: Option<&Path>,
    client_identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    build(
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        ca,
        client_identity,
    )
}

/// [`client_config`] for chosen protocol versions (tests pin one).
pub(super) fn build(
    versions: &[&'static SupportedProtocolVersion],
    ca: Option<&Path>,
    client_identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let roots = match ca {
        Some(path) => load_roots(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Config)?
        // webpki checks the chain, the validity dates, the server-auth key
        // usage and the name asked for against the certificate's
        // subjectAltName, DNS or IP (RFC 5922 §7.2 relies on the same).
        .with_root_certificates(roots);
    let mut config = match client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certified = certified_key(&provider, cert, key)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
    };
    config.resumption = Resumption::in_memory_sessions(NEXT_HOPS_REMEMBERED * ENTRIES_PER_SERVER);
    config.enable_early_data = false;
    Ok(Arc::new(config))
}

/// The trust anchors of the system store (the OpenSSL locations probed on
/// Linux, `SSL_CERT_FILE`/`SSL_CERT_DIR` when set).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    roots_from_store(found.certs, &found.errors)
}

/// `certs` as trust anchors. A system store is many files kept by
/// others, and often holds a certificate webpki cannot parse (an old root
/// with a negative serial, say): those are skipped, as are files that
/// could not be read, and only a store that yields no anchor at all is an
/// error, with the reasons it gave.
fn roots_from_store(
    certs: Vec<CertificateDer<'static>>,
    errors: &[impl std::fmt::Display],
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if !roots.is_empty() {
        return Ok(roots);
    }
    let detail = match errors.len() {
        0 => "no certificate found".to_string(),
        n => {
            let shown: Vec<String> = errors
                .iter()
                .take(ROOT_ERRORS_SHOWN)
                .map(|e| e.to_string())
                .collect();
            let more = n.saturating_sub(ROOT_ERRORS_SHOWN);
            let mut text = shown.join("; ");
            if more > 0 {
                text.push_str(&format!("; and {more} more"));
            }
            text
        }
    };
    Err(TlsError::NoSystemRoots(detail))
}

#[cfg(test)]
mod tests {
    use super::super::testpki::Pki;
    use super::*;

    #[test]
    fn a_ca_file_and_an_identity_build_a_config_for_both_versions() {
        let pki = Pki::new("client-config-good");
        let cfg = client_config(
            Some(&pki.server_ca),
            Some((&pki.client_cert, &pki.client_key)),
        )
        .unwrap();
        let versions: Vec<_> = cfg
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
        assert!(cfg.client_auth_cert_resolver.has_certs());
        assert!(!cfg.enable_early_data);
        let plain = client_config(Some(&pki.server_ca), None).unwrap();
        assert!(!plain.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn bad_files_are_named() {
        let pki = Pki::new("client-config-bad");
        let missing = pki.path("missing.pem");
        let e = client_config(Some(&missing), None).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        // A key file as the CA file: no certificate in it.
        let e = client_config(Some(&pki.client_key), None).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e:?}");

        // The client certificate with the server's key.
        let e =
            client_config(Some(&pki.server_ca), Some((&pki.client_cert, &pki.key))).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("client-cert.pem"), "{e}");

        let broken = pki.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAA");
        let e = client_config(Some(&pki.server_ca), Some((&broken, &pki.client_key))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("tls: {}: malformed PEM", broken.display())),
            "{e}"
        );
    }

    #[test]
    fn the_system_store_is_used_without_a_ca_file() {
        // The machine's store: present on the machines this project runs
        // on (Debian's ca-certificates); a machine without one gets the
        // error that says so, not a config that trusts nothing.
        match client_config(None, None) {
            Ok(cfg) => assert!(!cfg.client_auth_cert_resolver.has_certs()),
            Err(TlsError::NoSystemRoots(detail)) => {
                eprintln!("no system trust store here: {detail}")
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_store_with_nothing_usable_is_an_error_with_its_reasons() {
        let pki = Pki::new("client-config-store");
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let reasons = ["/etc/ssl/certs/a.pem: denied", "b", "c", "d", "e"];
        let e = roots_from_store(vec![junk.clone()], &reasons).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, TlsError::NoSystemRoots(_)), "{e:?}");
        assert!(text.contains("a.pem: denied; b; c; and 2 more"), "{text}");
        assert!(text.contains("--tls-ca"), "says what to do: {text}");
        let none: [&str; 0] = [];
        let e = roots_from_store(Vec::new(), &none).unwrap_err();
        assert!(e.to_string().contains("no certificate found"), "{e}");

        // One good anchor among junk and errors is enough.
        let roots = roots_from_store(vec![junk, pki.ca_der.clone()], &reasons).unwrap();
        assert_eq!(roots.len(), 1);
    }
}
