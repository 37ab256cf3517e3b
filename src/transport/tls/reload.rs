//! The TLS configuration new connections get, swapped on SIGHUP without a
//! restart: certificates are renewed (ACME, every 60-90 days) while calls
//! are up.
//!
//! A shard reads the current `Arc` once per accepted connection, never per
//! message; a connection keeps the configuration it started with for its
//! whole life, so a reload never disturbs one in progress.
//!
//! # Trade-offs
//! - A `std::sync::RwLock` around the `Arc`: an accept takes the read lock
//!   for an `Arc` clone, a few nanoseconds next to a handshake's
//!   milliseconds, so nothing cleverer (an epoch-based swap) is needed.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;

use super::{server_config, TlsError, TlsSettings};

/// The settings a configuration is built from, and the configuration
/// built last time it worked.
#[derive(Debug)]
pub struct TlsReloader {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsReloader {
    /// Builds the first configuration; fails as [`server_config`] does, so
    /// that the server refuses to start on a bad file.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let current = RwLock::new(server_config(&settings)?);
        Ok(TlsReloader { settings, current })
    }

    /// The configuration for a connection being accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A writer that panicked left the old or the new Arc, both whole.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again (on SIGHUP). On success new connections get
    /// the new configuration; on failure the old one stays and the error
    /// says which file is wrong, so a bad renewal does not take TLS down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.settings)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// What the configuration is built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::super::testpki::{client, shuttle, Pki, BOTH};
    use super::super::TlsSession;
    use super::*;

    /// The certificate a new connection on `reloader`'s current config
    /// sees, and the session (still open).
    fn seen(pki: &Pki, reloader: &TlsReloader) -> (Vec<u8>, rustls::ClientConnection, TlsSession) {
        let mut c = client(&pki.client_config(BOTH, false));
        let mut s = TlsSession::new(reloader.current()).unwrap();
        let out = shuttle(&mut c, &mut s, &mut Vec::new(), usize::MAX);
        out.server.unwrap();
        out.client.unwrap();
        let leaf = c.peer_certificates().unwrap()[0].to_vec();
        (leaf, c, s)
    }

    #[test]
    fn a_reload_changes_what_new_connections_see() {
        let pki = Pki::new("reload-new");
        let reloader = TlsReloader::new(pki.settings()).unwrap();
        let (before, mut old_client, mut old_session) = seen(&pki, &reloader);
        assert_eq!(before, pki.cert_der.as_ref());

        let renewed = pki.renew_server_cert();
        reloader.reload().unwrap();
        let (after, _, _) = seen(&pki, &reloader);
        assert_eq!(after, renewed.as_ref(), "the new certificate");
        assert_ne!(after, before);

        // The connection made before the reload carries on with its own.
        use std::io::Write;
        old_client.writer().write_all(b"\r\n\r\n").unwrap();
        let mut plain = Vec::new();
        shuttle(&mut old_client, &mut old_session, &mut plain, usize::MAX)
            .server
            .unwrap();
        assert_eq!(plain, b"\r\n\r\n");
    }

    #[test]
    fn a_failed_reload_keeps_the_old_config() {
        let pki = Pki::new("reload-broken");
        let reloader = TlsReloader::new(pki.settings()).unwrap();
        let old = reloader.current();
        let good = std::fs::read(&pki.cert).unwrap();
        std::fs::write(&pki.cert, "-----BEGIN CERTIFICATE-----\nAAA").unwrap();
        let e = reloader.reload().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("tls: {}: malformed PEM", pki.cert.display())),
            "{e}"
        );
        assert!(Arc::ptr_eq(&old, &reloader.current()), "kept");
        let (leaf, _, _) = seen(&pki, &reloader);
        assert_eq!(leaf, pki.cert_der.as_ref(), "still served");

        std::fs::write(&pki.cert, good).unwrap();
        std::fs::remove_file(&pki.key).unwrap();
        assert!(matches!(reloader.reload(), Err(TlsError::Read { .. })));
        assert!(Arc::ptr_eq(&old, &reloader.current()), "kept");
    }

    #[test]
    fn sessions_from_before_a_reload_do_not_resume() {
        // A reload brings a new ticketer: a client CA taken out of the file
        // cannot be bypassed by resuming a session it let in.
        let pki = Pki::new("reload-resume");
        let reloader = TlsReloader::new(pki.settings()).unwrap();
        let client_cfg = pki.client_config(&[&rustls::version::TLS13], false);
        let handshake = |cfg: Arc<ServerConfig>| {
            let mut c = client(&client_cfg);
            let mut s = TlsSession::new(cfg).unwrap();
            shuttle(&mut c, &mut s, &mut Vec::new(), usize::MAX)
                .server
                .unwrap();
            c.handshake_kind()
        };
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(handshake(reloader.current()), Some(Full));
        assert_eq!(handshake(reloader.current()), Some(Resumed));
        reloader.reload().unwrap();
        assert_eq!(handshake(reloader.current()), Some(Full));
    }

    #[test]
    fn a_bad_start_is_refused() {
        let pki = Pki::new("reload-start");
        let mut settings = pki.settings();
        settings.key = pki.client_key.clone();
        assert!(matches!(
            TlsReloader::new(settings),
            Err(TlsError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn shards_share_the_reloader() {
        fn shareable<T: Send + Sync>() {}
        fn movable<T: Send>() {}
        shareable::<TlsReloader>();
        movable::<TlsSession>();
    }
}
