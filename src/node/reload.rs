//! Reload without a restart (SIGHUP, `dnsmesh-node admin reload`): the parts of the
//! configuration that can change under a running node, and the handles that apply them.
//! Applied: the TLS certificate and key (new handshakes get the new pair; a pair that
//! does not load leaves the old one in place), the HTTP per-IP limits, the auth options
//! (registration allowlist, token and mailbox limits, operator token), and the sync peers
//! (watermarks of peers that stay are kept). DNS listeners and the zone need a restart.

use std::sync::Arc;

pub use crate::actors::http::hooks::{Hooks, HttpLimits, ReloadRequest, SwapCert};

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
