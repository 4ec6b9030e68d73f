//! Reload without a restart (SIGHUP, `dnsmesh-node admin reload`): the parts of the
//! configuration that can change under a running node, and the handles that apply them.
//! Applied: the TLS certificate and key (new handshakes get the new pair; a pair that
//! does not load leaves the old one in place), the HTTP per-IP limits, the auth options
//! (registration allowlist, token and mailbox limits, operator token), and the sync peers
//! (watermarks of peers that stay are kept). DNS listeners and the zone need a restart.

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

/// The HTTP limits of `settings`.
pub fn http_limits(settings: &crate::node::config::Settings) -> HttpLimits {
    HttpLimits {
        http_rate: settings.limits.http_rate,
        http_burst: settings.limits.http_burst,
        registration_rate: settings.limits.registration_rate,
        registration_burst: settings.limits.registration_burst,
    }
}

/// Applies a re-read configuration to the running node.
pub struct Reloader {
    pub hooks: Hooks,
    pub auth: actix::Addr<crate::actors::auth::AuthActor>,
    pub sync: actix::Addr<crate::actors::sync::SyncActor>,
    /// The settings the node started with (what cannot change is compared against them).
    pub started_with: crate::node::config::Settings,
    /// Peers come from the cluster manifest (then a reload leaves them alone while
    /// `[cluster] peers` stays empty).
    pub manifest_peers: bool,
}

impl Reloader {
    /// Apply `new`: everything or nothing (the TLS pair is loaded first; a pair that does
    /// not load, or a change that needs a restart, refuses the whole reload). Returns a
    /// summary of what was applied.
    pub fn apply(&self, new: &crate::node::config::Settings) -> Result<String, String> {
        let old = &self.started_with;
        if new.node.zone != old.node.zone
            || new.node.data_dir != old.node.data_dir
            || new.dns.listen != old.dns.listen
            || new.http.listen != old.http.listen
        {
            return Err(
                "node.zone, node.data_dir, dns.listen and http.listen need a restart".into()
            );
        }
        if new.http.tls_cert.is_empty() != old.http.tls_cert.is_empty() {
            return Err("turning HTTPS on or off (http.tls_cert) needs a restart".into());
        }
        let mut applied = vec![];
        if let Some(tls) = &self.hooks.tls {
            tls.reload(&new.http.tls_cert, &new.http.tls_key).map_err(|e| format!("{e:#}"))?;
            applied.push("tls");
        }
        self.hooks.http_limits.store(Arc::new(http_limits(new)));
        applied.push("http limits");
        self.auth.do_send(crate::actors::auth::SetOptions(crate::node::auth_options(new)));
        applied.push("auth (registration allowlist, token limits)");
        if !(self.manifest_peers && new.cluster.peers.is_empty()) {
            self.sync.do_send(crate::actors::sync::SetPeers(new.cluster.peers.clone()));
            applied.push("cluster peers");
        }
        let summary = applied.join(", ");
        tracing::info!(applied = %summary, "configuration reloaded");
        Ok(summary)
    }
}
