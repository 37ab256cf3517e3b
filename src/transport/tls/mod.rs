//! SIP over TLS (RFC 3261 §26.2.1, §26.3.1), over bytes the caller owns.
//! Server side: the configuration built from PEM files
//! ([`server_config`]), its reload on SIGHUP ([`TlsReloader`]), and one
//! accepted connection's TLS state ([`TlsSession`]). Client side, for
//! connections to next hops (trunks, `sips:` URIs, a `tls:` upstream): the
//! configuration ([`client_config`]), the name a server's certificate is
//! checked against ([`server_name_for`]), and one outbound connection's
//! state ([`TlsClientSession`]). No socket, no clock: a shard's event loop
//! feeds ciphertext in and takes ciphertext out; both sessions share one
//! record loop (`driver.rs`).
//!
//! rustls with the *ring* provider: TLS 1.2 and 1.3, ECDHE key exchange and
//! AEAD suites only. RFC 3261 §26.2.1's mandatory
//! `TLS_RSA_WITH_AES_128_CBC_SHA` is not among them (rustls has no CBC and
//! no RSA key exchange), so a peer that offers nothing else cannot connect;
//! `docs/tls.md` lists what is offered.
//!
//! One [`rustls::ServerConfig`] serves every shard through its `Arc`, with
//! one ticketer and one session cache inside, so a client that reconnects
//! and lands on another shard (a new source port hashes anywhere) still
//! resumes its session.
//!
//! # Trade-offs
//! - The buffered `ServerConnection` and `ClientConnection` copy records
//!   into their own deframer and plaintext buffers (rustls's `unbuffered`
//!   API would decrypt in place). It is the well-trodden API, and a SIP
//!   message is a record or two; the copy can go when a measurement says
//!   it matters.
//! - A reload builds a new ticketer and cache: sessions from before it do
//!   not resume, so a client CA removed from the file cannot be bypassed by
//!   resuming a session it verified.

mod client_config;
mod client_session;
mod config;
mod driver;
mod reload;
mod session;
#[cfg(test)]
pub(crate) mod testpki;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use client_config::client_config;
pub use client_session::{server_name_for, TlsClientSession};
pub use config::server_config;
pub use reload::TlsReloader;
pub use session::TlsSession;

/// What the TLS flags ask for; the files are read by [`server_config`],
/// at start-up and on each reload, never on a shard's loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain (PEM), end-entity certificate first.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs whose client certificates are accepted (PEM), for mutual TLS.
    pub client_ca: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    pub verify_client: VerifyClient,
    /// Roots for verifying servers we connect to (PEM), read by
    /// [`client_config`]; `None` trusts the system store.
    pub ca: Option<PathBuf>,
}

/// Whether a client must show a certificate (mutual TLS, RFC 3261
/// §26.3.1: proxies and registrars support mutual and one-way
/// authentication).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyClient {
    /// Never ask: user agents rarely have certificates.
    #[default]
    None,
    /// Ask, and check any certificate sent against the client CA, but let
    /// a client without one in (mixed UAs and trunks on one listener).
    Optional,
    /// Refuse a client without a certificate from the client CA (trunks,
    /// e.g. Microsoft Teams Direct Routing).
    Required,
}

impl fmt::Display for VerifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyClient::None => "none",
            VerifyClient::Optional => "optional",
            VerifyClient::Required => "required",
        })
    }
}

/// Why a TLS configuration could not be built or a connection failed. The
/// file errors name the file, so that an operator can fix it from the
/// message alone.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// A file is larger than any certificate or key file (a wrong path such
    /// as a device or an archive).
    TooLarge(PathBuf),
    /// A file's PEM is malformed.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A certificate file holds no `CERTIFICATE` section.
    NoCertificate(PathBuf),
    /// A key file holds no private key section.
    NoKey(PathBuf),
    /// A certificate that rustls cannot use (not X.509, or not a CA
    /// certificate where one is needed).
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// A private key that the crypto provider cannot load.
    BadKey {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// The private key is not the certificate's.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Client verification asked for without a client CA file.
    NeedsClientCa(VerifyClient),
    /// No CA file was given for outbound TLS, and the system trust store
    /// yielded no usable root (no ca-certificates package, a container
    /// without /etc/ssl): the reasons the store gave.
    NoSystemRoots(String),
    /// rustls refused the configuration (or could not start a connection
    /// with it).
    Config(rustls::Error),
    /// A handshake failed (bad or missing client certificate, no common
    /// suite or version, not TLS at all).
    Handshake(rustls::Error),
    /// A connection failed after its handshake (a bad record, an alert).
    Protocol(rustls::Error),
    /// rustls refused the bytes given to it (too large a handshake message
    /// to buffer, data after an error).
    Receive(io::Error),
    /// The peer's plaintext would outgrow its ciphertext, which TLS
    /// without compression cannot do: a defect, refused so that no bug
    /// lets a peer grow our buffers past what it sent.
    Amplified,
    /// Plaintext could not be queued: close_notify was sent, or the keys
    /// reached their use limit.
    SendRefused,
    /// More plaintext than a handshake may hold back was sent before the
    /// handshake ended (a next hop that is slow to answer); the message
    /// was not queued, and the connection carries on.
    HandshakeBacklog,
    /// A next hop's host (from a URI or an upstream address) that is not a
    /// DNS name or an IP address, so no certificate can be checked against
    /// it; the host, cut to the length of the longest DNS name.
    BadServerName(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, error } => {
                write!(f, "tls: {}: cannot read: {error}", path.display())
            }
            TlsError::TooLarge(path) => write!(
                f,
                "tls: {}: larger than {} MiB, not a certificate or key file",
                path.display(),
                config::MAX_PEM_FILE >> 20
            ),
            TlsError::Pem { path, detail } => {
                write!(f, "tls: {}: malformed PEM: {detail}", path.display())
            }
            TlsError::NoCertificate(path) => {
                write!(f, "tls: {}: no certificate found", path.display())
            }
            TlsError::NoKey(path) => write!(
                f,
                "tls: {}: no private key found (PKCS#8, PKCS#1 or SEC1 PEM)",
                path.display()
            ),
            TlsError::BadCertificate { path, error } => {
                write!(f, "tls: {}: unusable certificate: {error}", path.display())
            }
            TlsError::BadKey { path, error } => {
                write!(f, "tls: {}: unusable private key: {error}", path.display())
            }
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "tls: {}: the private key does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::NeedsClientCa(v) => write!(
                f,
                "tls: client certificate verification `{v}` needs a client CA file \
                 (--tls-client-ca)"
            ),
            TlsError::NoSystemRoots(detail) => write!(
                f,
                "tls: no usable CA certificate in the system trust store ({detail}); \
                 give one with --tls-ca"
            ),
            TlsError::Config(e) => write!(f, "tls: cannot build the configuration: {e}"),
            TlsError::Handshake(e) => write!(f, "tls: handshake failed: {e}"),
            TlsError::Protocol(e) => write!(f, "tls: connection failed: {e}"),
            TlsError::Receive(e) => write!(f, "tls: cannot take the records: {e}"),
            TlsError::Amplified => {
                f.write_str("tls: more plaintext than ciphertext received (refused)")
            }
            TlsError::SendRefused => f.write_str("tls: cannot send: the connection is closing"),
            TlsError::HandshakeBacklog => write!(
                f,
                "tls: cannot send: more than {} KiB already waits for the handshake",
                driver::MAX_QUEUED_IN_HANDSHAKE >> 10
            ),
            TlsError::BadServerName(host) => write!(
                f,
                "tls: {host:?} is not a DNS name or an IP address to check a server \
                 certificate against"
            ),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { error, .. } | TlsError::Receive(error) => Some(error),
            TlsError::BadCertificate { error, .. }
            | TlsError::BadKey { error, .. }
            | TlsError::Config(error)
            | TlsError::Handshake(error)
            | TlsError::Protocol(error) => Some(error),
            _ => None,
        }
    }
}
