//! What the HTTP ingress shares with the node's reloader (`node::reload`): the live HTTP
//! limits, the swappable TLS certificate resolver and the channel a `POST
//! /v1/admin/reload` asks the process through. Here, below the node, so the ingress
//! never reaches into the node's wiring.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate resolver whose pair can be swapped while the listener runs.
#[derive(Debug)]
pub struct SwapCert(ArcSwap<CertifiedKey>);

impl SwapCert {
    /// Load `cert` (PEM chain) and `key` (PEM) into a resolver.
    pub fn load(cert: &str, key: &str) -> anyhow::Result<Arc<SwapCert>> {
        Ok(Arc::new(SwapCert(ArcSwap::from_pointee(certified_key(cert, key)?))))
    }

    /// Replace the pair (only once the new one loads).
    pub fn reload(&self, cert: &str, key: &str) -> anyhow::Result<()> {
        self.0.store(Arc::new(certified_key(cert, key)?));
        Ok(())
    }
}

impl ResolvesServerCert for SwapCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn certified_key(cert: &str, key: &str) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context as _;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading http.tls_cert {cert}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing http.tls_cert {cert}"))?;
    if certs.is_empty() {
        anyhow::bail!("http.tls_cert {cert}: no certificate");
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading http.tls_key {key}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .context("http.tls_cert / http.tls_key do not form a usable key pair")?;
    Ok(ck)
}

/// HTTP per-IP limits that a reload can change.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub http_rate: f64,
    pub http_burst: f64,
    pub registration_rate: f64,
    pub registration_burst: f64,
}

/// A reload asked for over HTTP: the reply channel gets a summary or the error.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// What the HTTP ingress shares with the reloader.
#[derive(Clone)]
pub struct Hooks {
    /// The live HTTP limits (read per request).
    pub http_limits: Arc<ArcSwap<HttpLimits>>,
    /// The TLS resolver, when the listener speaks HTTPS.
    pub tls: Option<Arc<SwapCert>>,
    /// `POST /v1/admin/reload` asks the process (which knows its configuration sources).
    pub requests: tokio::sync::mpsc::Sender<ReloadRequest>,
}
