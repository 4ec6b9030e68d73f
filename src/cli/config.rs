//! `config.yaml` under the config home (default `~/.dmp`): the non-secret settings, with
//! the reference CLI's key names where a key means the same thing, so a user moving
//! between the two recognises them. Unknown keys are kept on rewrite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::store::write_atomic;

/// Public resolvers used when the user names none.
pub const DEFAULT_RESOLVERS: [&str; 2] = ["1.1.1.1", "8.8.8.8"];
/// The node's default TXT value cap (bytes); a manifest must fit in it.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 2048;

/// The settings file. Field names follow the reference where they mean the same.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Config {
    /// Local part of the user's address.
    pub username: String,
    /// The user's home zone (mailbox, identity and prekeys live here).
    pub domain: String,
    /// Base URL of the home node's HTTP API.
    pub endpoint: String,
    /// Resolver pool: `host`, `host:port`, `[v6]:port` or `https://…/dns-query`.
    #[serde(default)]
    pub dns_resolvers: Vec<String>,
    /// 32 random bytes (64 hex) salting the Argon2id passphrase derivation.
    pub kdf_salt: String,
    /// Hex Ed25519 key of the first derivation: a typo tripwire for the passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_pubkey: Option<String>,
    /// File (mode 0400/0600) holding the passphrase, used when `DMP_PASSPHRASE` is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Accept messages from unpinned senders when no contact is pinned (off by default).
    #[serde(default)]
    pub allow_tofu: bool,
    /// Extra claim provider: its HTTP URL (the claim goes by DNS UPDATE to its host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_provider_override: Option<String>,
    /// Zone of `claim_provider_override` (default: the URL's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_provider_zone: Option<String>,
    /// DNS port for claim UPDATEs to other zones' nodes (`DMP_PROVIDER_DNS_PORT` wins; 53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_dns_port: Option<u16>,
    /// Largest TXT value the home node accepts; bigger messages are refused before sending.
    #[serde(default = "default_max_value")]
    pub max_value_bytes: usize,
    /// Message TTL in seconds (the reference's default 300).
    #[serde(default = "default_message_ttl")]
    pub message_ttl: u64,
    /// Cluster mode: the cluster's base domain (its manifest lives at `cluster.<base>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_base_domain: Option<String>,
    /// Cluster mode: the pinned operator Ed25519 key (64 hex) that signs the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_operator_spk: Option<String>,
    /// Cluster mode is on (set by `cluster enable` after a manifest verified).
    #[serde(default)]
    pub cluster_enabled: bool,
    /// Seconds a fetched cluster manifest is used before it is fetched again.
    #[serde(default = "default_cluster_refresh")]
    pub cluster_refresh_interval: u64,
    /// Single resolver host used when `dns_resolvers` is empty (the reference's
    /// `--dns-host`); empty too = the system resolver (`/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_host: Option<String>,
    /// Port for `dns_host` (default 53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_port: Option<u16>,
    /// Static bearer token for the home node's HTTP API (operator-issued), used when no
    /// token from `dnsmesh register` is saved for the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_token: Option<String>,
    /// Cluster mode: bearer token for every cluster node without a saved token of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_node_token: Option<String>,
    /// A zone the user controls: the identity is also published at `dmp.<identity_domain>`
    /// and the DMPv2 `from` label is `username@identity_domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_domain: Option<String>,
    /// Drop DNS answers the resolver did not DNSSEC-validate (no AD flag).
    #[serde(default)]
    pub dnssec_required: bool,
    /// Bootstrap trust anchor: the user domain whose `_dmp.<domain>` record is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_user_domain: Option<String>,
    /// Bootstrap trust anchor: the zone operator's Ed25519 key (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_signer_spk: Option<String>,
    /// Claim provider used besides discovered ones: its HTTP URL (unset = none; the
    /// reference always adds https://dnsmesh.io — see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_provider_seed: Option<String>,
    /// Zone of `claim_provider_seed` (default: the URL's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_provider_seed_zone: Option<String>,
    /// Follow pinned contacts' key rotations (`rotate.*` records); on by default.
    #[serde(default = "default_true")]
    pub rotation_chain_enabled: bool,
    /// `recv --watch` subscribes to the home node's `/v1/watch/mb-<hash>` stream and reads
    /// at once when it names a change (polling stays the fallback); `false` = poll only.
    /// Unset = on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_stream: Option<bool>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_norway::Value>,
}

fn default_max_value() -> usize {
    DEFAULT_MAX_VALUE_BYTES
}

fn default_true() -> bool {
    true
}

fn default_message_ttl() -> u64 {
    300
}

/// The reference's manifest refresh interval (seconds).
pub const DEFAULT_CLUSTER_REFRESH: u64 = 3600;

fn default_cluster_refresh() -> u64 {
    DEFAULT_CLUSTER_REFRESH
}

/// A pinned cluster: base domain (lower-case, no trailing dot) and operator key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPin {
    pub base: String,
    pub operator_spk: [u8; 32],
}

/// Check and normalise a cluster base domain and a 64-hex operator key.
pub fn parse_pin(base: &str, spk_hex: &str) -> Result<ClusterPin> {
    let base = crate::proto::dnsname::validate(base.trim())
        .ok_or_else(|| anyhow::anyhow!("cluster base domain `{base}` is not a valid DNS name"))?
        .to_ascii_lowercase();
    let mut operator_spk = [0u8; 32];
    hex::decode_to_slice(spk_hex.trim(), &mut operator_spk).map_err(|_| {
        anyhow::anyhow!(
            "cluster operator key must be 64 hex characters (32 bytes), got `{spk_hex}`"
        )
    })?;
    Ok(ClusterPin { base, operator_spk })
}

/// Path of `config.yaml` in a config home.
pub fn config_path(home: &Path) -> PathBuf {
    home.join("config.yaml")
}

/// The default config home: `$DMP_CONFIG_HOME`, else `~/.dmp`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DMP_CONFIG_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".dmp")
}

impl Config {
    /// Read and check `config.yaml`.
    pub fn load(home: &Path) -> Result<Config> {
        let path = config_path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no configuration at {} — run `dnsmesh init NAME --domain ZONE --endpoint URL` first \
                 (or pass --config-home DIR)",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let cfg: Config = serde_norway::from_str(&text).with_context(|| {
            format!("{} is not valid configuration YAML — fix the file or re-run `dnsmesh init --force`", path.display())
        })?;
        cfg.check().with_context(|| format!("bad configuration in {}", path.display()))?;
        Ok(cfg)
    }

    /// Validate the fields every command relies on.
    pub fn check(&self) -> Result<()> {
        if self.username.is_empty() || self.username.len() > 64 {
            bail!("`username` must be 1..64 bytes");
        }
        if self.domain.trim_end_matches('.').is_empty() {
            bail!("`domain` is empty");
        }
        self.salt()?;
        if self.cluster_pin()?.is_none() && self.cluster_enabled {
            bail!("`cluster_enabled` is set but `cluster_base_domain` / `cluster_operator_spk` are not — run `dnsmesh cluster pin OPERATOR_SPK BASE_DOMAIN` or `dnsmesh cluster disable`");
        }
        Ok(())
    }

    /// The pinned cluster, if both keys are set (whether or not cluster mode is on); an
    /// empty string counts as unset, as the reference writes unset keys that way.
    pub fn cluster_pin(&self) -> Result<Option<ClusterPin>> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        match (set(&self.cluster_base_domain), set(&self.cluster_operator_spk)) {
            (Some(b), Some(k)) => parse_pin(&b, &k)
                .map(Some)
                .context("`cluster_base_domain` / `cluster_operator_spk`"),
            (None, None) => Ok(None),
            _ => bail!("`cluster_base_domain` and `cluster_operator_spk` must be set together"),
        }
    }

    /// The cluster in force: pinned and `cluster_enabled`.
    pub fn cluster(&self) -> Result<Option<ClusterPin>> {
        if !self.cluster_enabled {
            return Ok(None);
        }
        self.cluster_pin()
    }

    /// The decoded KDF salt.
    pub fn salt(&self) -> Result<Vec<u8>> {
        let s = hex::decode(&self.kdf_salt).context("`kdf_salt` is not hex")?;
        if s.len() < 8 {
            bail!("`kdf_salt` is shorter than 8 bytes");
        }
        Ok(s)
    }

    /// The zone without trailing dots, lower-cased.
    pub fn zone(&self) -> String {
        self.domain.trim_end_matches('.').to_ascii_lowercase()
    }

    /// `username@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.username, self.zone())
    }

    /// The zone-anchored identity domain, if set (lower-case, no trailing dot).
    pub fn anchor(&self) -> Option<String> {
        self.identity_domain
            .as_deref()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }

    /// The address others know us by: `username@identity_domain` when anchored, else
    /// `username@domain` (the DMPv2 `from` label and the rotation subject).
    pub fn public_address(&self) -> String {
        match self.anchor() {
            Some(d) => format!("{}@{d}", self.username),
            None => self.address(),
        }
    }

    /// A non-empty string option.
    pub fn opt(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// Write atomically (temp file, fsync, rename).
    pub fn save(&self, home: &Path) -> Result<()> {
        let text = serde_norway::to_string(self).context("serialising the configuration")?;
        write_atomic(&config_path(home), text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", config_path(home).display()))
    }
}
