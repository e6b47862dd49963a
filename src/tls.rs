//! TLS material: rustls server configs for listeners and client configs for `wss://`
//! upstreams.
//!
//! Owns: reading PEM files, the system root store plus configured CA files, ALPN.
//!
//! Must not touch: frames, sessions, sockets beyond building configs.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file held no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What was missing.
        what: &'static str,
    },
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: p.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: p,
            what: "no certificate found",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|source| TlsError::Read {
            path: p.clone(),
            source,
        })?
        .ok_or(TlsError::Pem {
            path: p,
            what: "no private key found",
        })
}

/// A server config for a listener.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert)?, read_key(key)?)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client config trusting the system roots plus `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a configured CA file may be all we need.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca_file {
        for cert in read_certs(ca)? {
            roots.add(cert)?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A listener's TLS config as a cell that reload swaps whole: each handshake takes the config
/// current when it starts, and an established session keeps the rustls state it negotiated,
/// so new certificates and keys reach new connections without dropping a session.
#[derive(Clone, Default)]
pub struct ServerTls(Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>);

impl ServerTls {
    /// A cell holding `cfg` (`None`: plain TCP).
    pub fn new(cfg: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self(Arc::new(arc_swap::ArcSwapOption::new(cfg)))
    }

    /// Replace the config for handshakes that start from now on.
    pub fn store(&self, cfg: Option<Arc<rustls::ServerConfig>>) {
        self.0.store(cfg);
    }

    /// An acceptor over the current config, `None` on a plain listener.
    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.0.load_full().map(tokio_rustls::TlsAcceptor::from)
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("tls", &self.0.load().is_some())
            .finish()
    }
}
