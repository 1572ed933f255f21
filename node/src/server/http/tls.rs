//! HTTPS on the HTTP listeners: the certificate chain and key of `http.tls_cert` and
//! `http.tls_key` (PEM), re-read when either file changes (its mtime is checked every
//! [`RELOAD_CHECK`]) and on SIGHUP. A new pair that does not load is logged and the pair in use stays, so a
//! half-copied renewal never takes HTTPS down. New connections get the new pair; open ones keep
//! theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use parking_lot::{Mutex, RwLock};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

/// How often the files' modification times are compared with the loaded ones.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The TLS pair in use and where it comes from.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<TlsAcceptor>,
    /// Modification times of (cert, key) last tried, loaded or not.
    tried: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl TlsFiles {
    /// Loads the pair; an error here stops the node from starting.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let stamps = (modified(cert), modified(key));
        let config = server_config(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(TlsAcceptor::from(Arc::new(config))),
            tried: Mutex::new(stamps),
        }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }

    /// Re-reads the pair if a file changed since the last try, or always when `force`d.
    pub fn reload(&self, force: bool) {
        let stamps = (modified(&self.cert), modified(&self.key));
        {
            let mut tried = self.tried.lock();
            if *tried == stamps && !force {
                return;
            }
            *tried = stamps;
        }
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write() = TlsAcceptor::from(Arc::new(config));
                tracing::info!(cert = %self.cert.display(), key = %self.key.display(), "https: new certificate loaded");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "https: the changed certificate or key does not load; still using the previous pair (fix the files, they are checked again when they change)");
            }
        }
    }

    /// Checks the files every [`RELOAD_CHECK`] and re-reads them on SIGHUP, for as long as
    /// the node runs.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hangup = signal(SignalKind::hangup())
            .inspect_err(|e| tracing::warn!(error = %e, "https: no SIGHUP reload (the files are still checked)"))
            .ok();
        loop {
            let hung_up = async {
                match hangup.as_mut() {
                    Some(signals) => signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {
                    self.reload(false);
                }
                Some(()) = hung_up => {
                    tracing::info!("https: SIGHUP, re-reading the certificate and key");
                    self.reload(true);
                }
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read http.tls_cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("http.tls_cert {} is not valid PEM", cert.display()))?;
    if chain.is_empty() {
        bail!("http.tls_cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "http.tls_key {} holds no readable PEM private key",
            key.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("http.tls_cert and http.tls_key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
