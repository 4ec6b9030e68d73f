//! Node configuration: `dnsmesh.toml`, then `DNSMESH_<SECTION>__<KEY>` environment
//! variables, then command-line flags, in rising priority. The key names are a fixed
//! contract (tools outside the repo rely on them).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be loaded. The message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, an environment variable or a flag could not be read or typed.
    #[error("{0}")]
    Load(String),
    /// A key has a value the node cannot use.
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// Everything the node reads at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub node: NodeSection,
    pub dns: DnsSection,
    pub http: HttpSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub cluster: ClusterSection,
    pub heartbeat: HeartbeatSection,
    pub debug: DebugSection,
    pub transfer: TransferSection,
    pub dnssec: DnssecSection,
    pub log: LogSection,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (human-readable lines) or `json` (one JSON object per line:
    /// timestamp, level, target, message, fields).
    pub format: String,
}

/// `[transfer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// CIDRs allowed to AXFR/IXFR without TSIG.
    pub allow: Vec<String>,
    /// Operator transfer keys, `name:hmac-sha256:BASE64SECRET`.
    pub tsig_keys: Vec<String>,
    /// Secondaries to NOTIFY, `IP:PORT`.
    pub notify: Vec<String>,
    /// Most RR changes kept in the IXFR journal.
    pub journal_max_changes: usize,
}

/// `[heartbeat]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    pub enabled: bool,
    /// This node's public HTTP base URL, signed into its heartbeat.
    pub self_endpoint: String,
    /// Ed25519 seed (32 raw bytes or 64 hex); empty = `<data_dir>/operator.key`, created.
    pub operator_key_file: String,
    /// Zones to harvest: `zone` (through `resolvers`) or `zone@ip:port` (asked directly).
    pub seeds: Vec<String>,
    /// Resolvers (`ip:port`) for harvesting; empty = the system's (/etc/resolv.conf).
    pub resolvers: Vec<String>,
    pub interval_secs: u64,
    pub ttl_secs: u64,
    /// A peer not heard from for this long is down; 0 = 2 × interval + 60 s.
    pub peer_timeout_secs: u64,
    pub max_zones: usize,
    /// Accept loopback/private endpoints (tests on one machine only).
    pub allow_private_endpoints: bool,
    /// Version string in our heartbeat; empty = this build's version.
    pub version: String,
    /// Opt-in public seed lists fetched over HTTPS (no redirects, ≤ 64 KiB, public hosts).
    pub seed_urls: Vec<String>,
    /// Seconds between seed-list refreshes.
    pub seed_refresh_secs: u64,
    /// Most rows in the seen set (the reference keeps at most 10,000).
    pub seen_max_rows: usize,
    /// Most new peers one seed zone can add per tick.
    pub max_new_per_seed: usize,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The one zone this node is authoritative for (lower-cased, no trailing dot).
    pub zone: String,
    /// Where sled and the node key live.
    pub data_dir: PathBuf,
    /// Host name clients use to reach this node; signed into registration challenges.
    pub hostname: String,
    /// Seconds between expiry sweeps.
    pub sweep_interval_secs: u64,
    /// Group-commit window in microseconds: writes arriving within it share one flush.
    pub commit_delay_us: u64,
    /// Compact the records database online when its directory exceeds this many times
    /// the live bytes (names + values); 0 = never.
    pub compact_ratio: f64,
    /// No compaction while the records database directory is smaller than this (bytes).
    pub compact_min_bytes: u64,
    /// zstd-compress the records database (smaller on disk under churn, fewer writes/s);
    /// switching it copies the database once at the next start.
    pub store_compression: bool,
}

/// `[dns]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// UDP+TCP listen addresses (`ADDR:PORT`, IPv4 or `[IPv6]:PORT`).
    pub listen: Vec<String>,
    /// TTL of every answer RR and the SOA minimum.
    pub ttl: u32,
    /// Apex NS host names; the first is also the SOA MNAME.
    pub ns: Vec<String>,
    /// SOA RNAME (mailbox as a domain name).
    pub soa_rname: String,
    /// Addresses served for the apex A/AAAA (and for NS hosts inside the zone).
    pub apex_addresses: Vec<String>,
    /// Accept RFC 2136 UPDATE (TSIG-signed, plus unsigned claims when enabled).
    pub update: bool,
    /// Accept unsigned, signature-verified claim UPDATEs for any recipient (M8.3).
    pub claim_provider: bool,
    /// Response-rate limiting: responses per second per client prefix (0 = off).
    pub rrl_rate: f64,
    pub rrl_burst: f64,
    /// Past the limit, every `rrl_slip`-th response is a TC stub (0 = drop them all).
    pub rrl_slip: u32,
    /// Idle timeout of a DNS-over-TCP connection, seconds.
    pub tcp_timeout_secs: u64,
    /// Largest UDP reply in bytes, whatever the client's EDNS payload (512..=65535).
    pub max_udp_payload: u16,
    /// Most DNS-over-TCP connections held at once; 0 = min(1024, soft fd limit / 4).
    pub tcp_max_connections: usize,
    /// Most DNS-over-TCP connections per client address (IPv6: per /64).
    pub tcp_max_per_ip: usize,
    /// Total lifetime of a DNS-over-TCP connection, seconds.
    pub tcp_lifetime_secs: u64,
    /// Longest life of an unsigned claim (`exp - now`, and its stored TTL), seconds
    /// (the reference's `DMP_CLAIM_MAX_TTL`).
    pub claim_max_ttl: u64,
    /// Accept unsigned claims only for recipients registered on this node (the
    /// reference's `DMP_RECEIVER_CLAIM_NOTIFICATIONS`).
    pub receiver_claim_notifications: bool,
    /// DNS-over-TLS listen addresses (certificate: `[http] tls_cert` / `tls_key`).
    pub tls_listen: Vec<String>,
    /// UDP receive threads per listen address (0 = one per core), each on its own
    /// `SO_REUSEPORT` socket.
    pub udp_threads: usize,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS.
    pub tls_cert: String,
    /// PEM private key.
    pub tls_key: String,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Number of actix-web worker threads (0 = one per core).
    pub workers: usize,
    /// Seconds a client has to send a request's head (slow clients are cut off).
    pub request_timeout_secs: u64,
    /// Most open connections per worker.
    pub max_connections: usize,
    /// Seconds a client has to send a request's body once its head is in (slow bodies
    /// are answered 408 and the connection closed).
    pub body_timeout_secs: u64,
    /// Most `/v1/watch/*` streams open at once from one client address.
    pub watch_max_per_ip: usize,
    /// Most `/v1/watch/*` streams open at once in all (0 = the route is off: 404).
    pub watch_max_total: usize,
    /// A watch stream with no event for this many seconds is closed.
    pub watch_idle_secs: u64,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `open`, `legacy` or `multi-tenant` (as the reference's `DMP_AUTH_MODE`).
    pub mode: String,
    /// Operator bearer token; empty = none.
    pub operator_token: String,
    /// Self-service registration (`/v1/registration/*`).
    pub registration: bool,
    /// Subject domains allowed to register; empty = any.
    pub registration_allowlist: Vec<String>,
    /// Lifetime of minted tokens and TSIG keys, seconds (0 = never expire).
    pub token_ttl_secs: u64,
    /// Allow `open` mode on a non-loopback HTTP address.
    pub allow_open_public_bind: bool,
    /// Subject domains treated as the served zone: their users hold the zone's
    /// local-part names (`id-…`, `prekeys.id-…`, `dmp.<user>.<zone>`) like `<user>@<zone>`.
    pub zone_aliases: Vec<String>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_ttl: u64,
    pub max_value_bytes: usize,
    pub max_values_per_name: usize,
    pub max_body_bytes: usize,
    /// Per-IP HTTP write bucket (requests per second, burst).
    pub http_rate: f64,
    pub http_burst: f64,
    /// Per-IP registration bucket.
    pub registration_rate: f64,
    pub registration_burst: f64,
    /// Per-token bucket written into minted tokens.
    pub token_rate: f64,
    pub token_burst: f64,
    /// Per-recipient (and client network) bucket for unsigned claim UPDATEs.
    pub claim_rate: f64,
    pub claim_burst: f64,
    /// Per-client-IP bucket for DNS UPDATE messages.
    pub update_rate: f64,
    pub update_burst: f64,
    /// Per (credential, recipient mailbox) bucket for shared mailbox writes.
    pub mailbox_rate: f64,
    pub mailbox_burst: f64,
    /// Whether per-IP limits apply to loopback clients.
    pub limit_loopback: bool,
    /// Most live claim records in the zone; past it unsigned claims are refused.
    pub unsigned_claims_max: usize,
    /// Most live unsigned claims from one client network (IPv4 /24, IPv6 /56).
    pub unsigned_claims_per_net: usize,
    /// Most live unsigned claims one sender key, and one client network, may hold at one
    /// recipient claim name.
    pub claim_share_per_sender: usize,
    /// Most tombstones (deleted values remembered for sync) in the store.
    pub max_tombstones: usize,
    /// Per-TSIG-key budget of deletes (each may leave a tombstone), refilled over
    /// `max_ttl` (the longest a tombstone lives).
    pub tombstones_per_key: usize,
    /// Per-TSIG-key UPDATE bucket, charged per record (refill per second, burst).
    pub update_key_rate: f64,
    pub update_key_burst: f64,
    /// Failed operator/sync-token authentications allowed per client IP: refill per
    /// second and burst; past them, authenticated routes answer 429 to that IP.
    pub auth_failure_rate: f64,
    pub auth_failure_burst: f64,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub peers: Vec<String>,
    pub sync_token: String,
    pub sync_interval_secs: u64,
    pub node_id: String,
    /// Cluster base domain (`cluster.<base>` holds the signed manifest).
    pub base_domain: String,
    /// Pinned operator Ed25519 key (64 hex) that signs cluster manifests.
    pub operator_spk: String,
    /// A signed manifest wire (or `{"wire": …}`) to verify and publish at start.
    pub manifest_file: String,
}

/// `[debug]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugSection {
    /// Enables `POST /debug/fail/{actor}` (operator token), used by fault tests.
    pub fault_injection: bool,
}

/// `[dnssec]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecSection {
    /// Sign the zone (keys are created in the data dir on first start).
    pub enabled: bool,
    /// 13 = ECDSA P-256 SHA-256, 15 = Ed25519.
    pub algorithm: u8,
    /// Validity of every RRSIG, days; signatures are remade after half of it.
    pub signature_validity_days: u64,
    /// Days a ZSK signs before the pre-published successor takes over.
    pub zsk_lifetime_days: u64,
    /// Testing only: ZSK lifetime in seconds, overriding `zsk_lifetime_days` when > 0.
    pub zsk_lifetime_secs: u64,
}

impl DnssecSection {
    /// The effective ZSK lifetime in seconds.
    pub fn zsk_lifetime(&self) -> u64 {
        if self.zsk_lifetime_secs > 0 {
            self.zsk_lifetime_secs
        } else {
            self.zsk_lifetime_days.saturating_mul(86_400)
        }
    }
}

/// Most UDP receive threads per listen address (`[dns] udp_threads`).
pub const MAX_UDP_THREADS: usize = 256;

/// The defaults: exactly the shipped `dnsmesh.toml`, which is embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../../dnsmesh.toml");

/// Command-line overrides (highest priority).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub zone: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub dns_listen: Vec<String>,
    pub http_listen: Option<String>,
}

impl Settings {
    /// Load: embedded defaults ← file (if it exists, or required when `path_required`)
    /// ← environment ← overrides; then validate.
    pub fn load(path: &Path, path_required: bool, ov: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, path_required, ov, true)
    }

    /// As [`Settings::load`], optionally ignoring the environment (tests).
    pub fn load_with_env(
        path: &Path,
        path_required: bool,
        ov: &Overrides,
        use_env: bool,
    ) -> Result<Settings, ConfigError> {
        use config::{Config, Environment, File, FileFormat};
        let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if path.exists() || path_required {
            b = b.add_source(File::new(&path.to_string_lossy(), FileFormat::Toml).required(true));
        }
        if use_env {
            b = b.add_source(
                Environment::with_prefix("DNSMESH")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("dns.listen")
                    .with_list_parse_key("dns.ns")
                    .with_list_parse_key("dns.apex_addresses")
                    .with_list_parse_key("http.trusted_proxies")
                    .with_list_parse_key("auth.registration_allowlist")
                    .with_list_parse_key("auth.zone_aliases")
                    .with_list_parse_key("cluster.peers")
                    .with_list_parse_key("heartbeat.seeds")
                    .with_list_parse_key("heartbeat.resolvers")
                    .with_list_parse_key("heartbeat.seed_urls")
                    .with_list_parse_key("dns.tls_listen")
                    .with_list_parse_key("transfer.allow")
                    .with_list_parse_key("transfer.tsig_keys")
                    .with_list_parse_key("transfer.notify"),
            );
        }
        let e = |e: config::ConfigError| ConfigError::Load(e.to_string());
        b = b.set_override_option("node.zone", ov.zone.clone()).map_err(e)?;
        b = b
            .set_override_option(
                "node.data_dir",
                ov.data_dir.as_ref().map(|p| p.to_string_lossy().into_owned()),
            )
            .map_err(e)?;
        if !ov.dns_listen.is_empty() {
            b = b.set_override("dns.listen", ov.dns_listen.clone()).map_err(e)?;
        }
        b = b.set_override_option("http.listen", ov.http_listen.clone()).map_err(e)?;
        let mut s: Settings = b.build().map_err(e)?.try_deserialize().map_err(e)?;
        s.normalise_and_validate()?;
        Ok(s)
    }

    fn normalise_and_validate(&mut self) -> Result<(), ConfigError> {
        self.node.zone = self.node.zone.trim().trim_end_matches('.').to_ascii_lowercase();
        if self.node.zone.is_empty() || crate::proto::dnsname::validate(&self.node.zone).is_none() {
            return Err(invalid("node.zone", format!("{:?} is not a DNS name", self.node.zone)));
        }
        if self.node.hostname.trim().is_empty() {
            self.node.hostname = self.node.zone.clone();
        }
        if self.dns.listen.is_empty() {
            return Err(invalid("dns.listen", "at least one address is needed"));
        }
        for l in &self.dns.listen {
            l.parse::<SocketAddr>()
                .map_err(|_| invalid("dns.listen", format!("{l:?} is not ADDR:PORT")))?;
        }
        self.http.listen.parse::<SocketAddr>().map_err(|_| {
            invalid("http.listen", format!("{:?} is not ADDR:PORT", self.http.listen))
        })?;
        for a in &self.dns.apex_addresses {
            a.parse::<IpAddr>().map_err(|_| {
                invalid("dns.apex_addresses", format!("{a:?} is not an IP address"))
            })?;
        }
        for p in &self.http.trusted_proxies {
            p.parse::<IpAddr>().map_err(|_| {
                invalid("http.trusted_proxies", format!("{p:?} is not an IP address"))
            })?;
        }
        for n in &self.dns.ns {
            if crate::proto::dnsname::validate(n).is_none() {
                return Err(invalid("dns.ns", format!("{n:?} is not a DNS name")));
            }
        }
        if self.dns.ns.is_empty() {
            self.dns.ns.push(format!("ns1.{}", self.node.zone));
        }
        if self.dns.soa_rname.trim().is_empty() {
            self.dns.soa_rname = format!("hostmaster.{}", self.node.zone);
        }
        if !matches!(self.dnssec.algorithm, 13 | 15) {
            return Err(invalid(
                "dnssec.algorithm",
                format!("{}: expected 13 (ECDSA P-256) or 15 (Ed25519)", self.dnssec.algorithm),
            ));
        }
        if !(1..=365).contains(&self.dnssec.signature_validity_days) {
            return Err(invalid("dnssec.signature_validity_days", "must be 1..=365 (days)"));
        }
        if self.dnssec.zsk_lifetime_days == 0 {
            return Err(invalid("dnssec.zsk_lifetime_days", "must be > 0 (days)"));
        }
        if self.dnssec.zsk_lifetime_secs != 0 && self.dnssec.zsk_lifetime_secs < 3 {
            return Err(invalid("dnssec.zsk_lifetime_secs", "must be 0 (unset) or >= 3"));
        }
        if self.dns.max_udp_payload < 512 {
            return Err(invalid("dns.max_udp_payload", "must be at least 512 (bytes)"));
        }
        if self.dns.tcp_max_per_ip == 0 {
            return Err(invalid("dns.tcp_max_per_ip", "must be > 0"));
        }
        if self.dns.tcp_lifetime_secs == 0 {
            return Err(invalid("dns.tcp_lifetime_secs", "must be > 0"));
        }
        if self.dns.ttl == 0 {
            return Err(invalid("dns.ttl", "must be > 0"));
        }
        if self.dns.udp_threads > MAX_UDP_THREADS {
            return Err(invalid(
                "dns.udp_threads",
                format!("must be 0 (one per core) ..= {MAX_UDP_THREADS}"),
            ));
        }
        if self.http.tls_cert.is_empty() != self.http.tls_key.is_empty() {
            return Err(invalid("http.tls_key", "tls_cert and tls_key go together"));
        }
        match self.auth.mode.as_str() {
            "open" | "legacy" | "multi-tenant" => {}
            other => {
                return Err(invalid(
                    "auth.mode",
                    format!("{other:?}: expected open, legacy or multi-tenant"),
                ))
            }
        }
        if self.auth.mode == "legacy" && self.auth.operator_token.is_empty() {
            return Err(invalid("auth.operator_token", "legacy mode needs an operator token"));
        }
        if self.auth.mode == "open" && !self.auth.allow_open_public_bind && !self.http_is_loopback()
        {
            return Err(invalid(
                "auth.mode",
                "refusing an unauthenticated write API on a non-loopback address \
                 (set auth.allow_open_public_bind = true to insist)",
            ));
        }
        for a in &mut self.auth.zone_aliases {
            *a = a.trim().trim_end_matches('.').to_ascii_lowercase();
            let two_labels = a.split('.').count() >= 2;
            if crate::proto::dnsname::validate(a).is_none() || !two_labels {
                return Err(invalid(
                    "auth.zone_aliases",
                    format!("{a:?} is not a subject domain (a DNS name of two or more labels)"),
                ));
            }
        }
        if self.limits.max_ttl == 0 || self.limits.max_value_bytes == 0 {
            return Err(invalid("limits.max_ttl", "caps must be > 0"));
        }
        if !self.cluster.operator_spk.is_empty() && self.operator_spk().is_none() {
            return Err(invalid("cluster.operator_spk", "must be 64 hex characters"));
        }
        self.cluster.base_domain =
            self.cluster.base_domain.trim().trim_end_matches('.').to_ascii_lowercase();
        for p in &mut self.cluster.peers {
            *p = p.trim().trim_end_matches('/').to_string();
            if !(p.starts_with("http://") || p.starts_with("https://")) {
                return Err(invalid(
                    "cluster.peers",
                    format!("{p:?} is not an http(s):// base URL"),
                ));
            }
        }
        if self.heartbeat.enabled {
            if self.heartbeat.self_endpoint.trim().is_empty() {
                return Err(invalid(
                    "heartbeat.self_endpoint",
                    "required when heartbeat.enabled = true",
                ));
            }
            crate::proto::records::heartbeat::validate_endpoint(
                &self.heartbeat.self_endpoint,
                self.heartbeat.allow_private_endpoints,
            )
            .map_err(|e| invalid("heartbeat.self_endpoint", e.to_string()))?;
            if self.heartbeat.interval_secs == 0 || self.heartbeat.ttl_secs == 0 {
                return Err(invalid("heartbeat.interval_secs", "interval and ttl must be > 0"));
            }
            if self.heartbeat.seen_max_rows == 0 {
                return Err(invalid("heartbeat.seen_max_rows", "must be > 0"));
            }
            if self.heartbeat.max_new_per_seed == 0 {
                return Err(invalid("heartbeat.max_new_per_seed", "must be > 0"));
            }
            for r in &self.heartbeat.resolvers {
                r.parse::<SocketAddr>()
                    .map_err(|_| invalid("heartbeat.resolvers", format!("{r:?} is not IP:PORT")))?;
            }
        }
        if self.http.body_timeout_secs == 0 {
            return Err(invalid("http.body_timeout_secs", "must be > 0"));
        }
        let r = self.node.compact_ratio;
        if !r.is_finite() || !(r == 0.0 || r >= 1.5) {
            return Err(invalid("node.compact_ratio", "must be 0 (off) or at least 1.5"));
        }
        if self.http.watch_max_per_ip == 0 {
            return Err(invalid("http.watch_max_per_ip", "must be > 0"));
        }
        if self.http.watch_idle_secs == 0 {
            return Err(invalid("http.watch_idle_secs", "must be > 0"));
        }
        let r = self.limits.auth_failure_rate;
        if !r.is_finite() || r <= 0.0 {
            return Err(invalid("limits.auth_failure_rate", "must be > 0"));
        }
        let b = self.limits.auth_failure_burst;
        if !b.is_finite() || b < 1.0 {
            return Err(invalid("limits.auth_failure_burst", "must be >= 1"));
        }
        if self.cluster.sync_interval_secs == 0 {
            return Err(invalid("cluster.sync_interval_secs", "must be > 0"));
        }
        if self.dns.claim_max_ttl == 0 {
            return Err(invalid("dns.claim_max_ttl", "must be > 0"));
        }
        for (key, v) in [
            ("limits.unsigned_claims_max", self.limits.unsigned_claims_max),
            ("limits.unsigned_claims_per_net", self.limits.unsigned_claims_per_net),
            ("limits.claim_share_per_sender", self.limits.claim_share_per_sender),
            ("limits.max_tombstones", self.limits.max_tombstones),
            ("limits.tombstones_per_key", self.limits.tombstones_per_key),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        if !(self.limits.update_key_rate > 0.0 && self.limits.update_key_burst >= 1.0) {
            return Err(invalid(
                "limits.update_key_rate",
                "update_key_rate must be > 0 and update_key_burst >= 1",
            ));
        }
        if self.node.sweep_interval_secs == 0 {
            return Err(invalid("node.sweep_interval_secs", "must be > 0"));
        }
        for l in &self.dns.tls_listen {
            l.parse::<SocketAddr>()
                .map_err(|_| invalid("dns.tls_listen", format!("{l:?} is not ADDR:PORT")))?;
        }
        if !self.dns.tls_listen.is_empty() && self.http.tls_cert.is_empty() {
            return Err(invalid(
                "dns.tls_listen",
                "DNS-over-TLS needs a certificate: set http.tls_cert and http.tls_key",
            ));
        }
        crate::policy::transfer::parse_allow(&self.transfer.allow)
            .map_err(|e| invalid("transfer.allow", e))?;
        crate::policy::transfer::parse_keys(&self.transfer.tsig_keys)
            .map_err(|e| invalid("transfer.tsig_keys", e))?;
        for n in &self.transfer.notify {
            n.parse::<SocketAddr>()
                .map_err(|_| invalid("transfer.notify", format!("{n:?} is not IP:PORT")))?;
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("{:?}: expected \"text\" or \"json\"", self.log.format),
            ));
        }
        Ok(())
    }

    /// Parsed DNS listen addresses (validated at load).
    pub fn dns_listen(&self) -> Vec<SocketAddr> {
        self.dns.listen.iter().filter_map(|l| l.parse().ok()).collect()
    }

    /// Parsed HTTP listen address (validated at load).
    pub fn http_listen(&self) -> SocketAddr {
        self.http.listen.parse().expect("validated at load")
    }

    /// True when the HTTP listener is on a loopback address.
    pub fn http_is_loopback(&self) -> bool {
        self.http.listen.parse::<SocketAddr>().map(|a| a.ip().is_loopback()).unwrap_or(false)
    }

    /// The pinned cluster operator key, if configured.
    pub fn operator_spk(&self) -> Option<[u8; 32]> {
        hex::decode(self.cluster.operator_spk.trim()).ok()?.try_into().ok()
    }

    /// Parsed DNS-over-TLS listen addresses (validated at load).
    pub fn dns_tls_listen(&self) -> Vec<SocketAddr> {
        self.dns.tls_listen.iter().filter_map(|l| l.parse().ok()).collect()
    }

    /// Parsed trusted proxies.
    pub fn trusted_proxies(&self) -> Vec<IpAddr> {
        self.http.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_load_and_overrides_win() {
        let ov = Overrides {
            zone: Some("Example.TEST.".into()),
            dns_listen: vec!["127.0.0.1:0".into(), "[::1]:0".into()],
            ..Default::default()
        };
        let s = Settings::load_with_env(Path::new("/nonexistent.toml"), false, &ov, false).unwrap();
        assert_eq!(s.node.zone, "example.test");
        assert_eq!(s.dns_listen().len(), 2);
        assert_eq!(s.http.listen, "127.0.0.1:8053");
        assert!(s.dns.update);
    }

    #[test]
    fn dnssec_defaults_and_bad_values() {
        let none = Path::new("/nonexistent.toml");
        let s = Settings::load_with_env(none, false, &Overrides::default(), false).unwrap();
        let d = &s.dnssec;
        assert!(!d.enabled);
        assert_eq!((d.algorithm, d.signature_validity_days, d.zsk_lifetime_days), (13, 14, 90));
        assert_eq!(d.zsk_lifetime(), 90 * 86_400);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (body, key) in [
            ("algorithm = 8", "dnssec.algorithm"),
            ("signature_validity_days = 0", "dnssec.signature_validity_days"),
            ("zsk_lifetime_days = 0", "dnssec.zsk_lifetime_days"),
        ] {
            std::fs::write(&p, format!("[dnssec]\nenabled = true\n{body}\n")).unwrap();
            let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let ov = Overrides { dns_listen: vec!["nonsense".into()], ..Default::default() };
        let err = Settings::load_with_env(Path::new("/nonexistent.toml"), false, &ov, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dns.listen"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[node]\nzonee = \"x\"\n").unwrap();
        let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zonee"), "{err}");
    }

    #[test]
    fn transfer_and_tls_keys_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let ok = "[transfer]\nallow = [\"127.0.0.0/8\", \"::1\"]\nnotify = [\"127.0.0.1:53\"]\n\
                  tsig_keys = [\"k:hmac-sha256:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"]\n";
        std::fs::write(&p, ok).unwrap();
        let s = Settings::load_with_env(&p, true, &Overrides::default(), false).unwrap();
        assert_eq!(s.transfer.journal_max_changes, 100_000);
        assert!(s.dns.tls_listen.is_empty());
        for (toml, key) in [
            ("[transfer]\nallow = [\"10.0.0.0/40\"]\n", "transfer.allow"),
            ("[transfer]\nnotify = [\"nowhere\"]\n", "transfer.notify"),
            (
                "[transfer]\ntsig_keys = [\"k:hmac-md5:c2VjcmV0c2VjcmV0c2VjcmV0\"]\n",
                "transfer.tsig_keys",
            ),
            ("[dns]\ntls_listen = [\"127.0.0.1:853\"]\n", "dns.tls_listen"),
        ] {
            std::fs::write(&p, toml).unwrap();
            let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
            assert!(!err.contains("c2VjcmV0"), "{err}");
        }
    }

    #[test]
    fn log_format_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let s = Settings::load_with_env(&p, false, &Overrides::default(), false).unwrap();
        assert_eq!(s.log.format, "text");
        std::fs::write(&p, "[log]\nformat = \"json\"\n").unwrap();
        let s = Settings::load_with_env(&p, true, &Overrides::default(), false).unwrap();
        assert_eq!(s.log.format, "json");
        std::fs::write(&p, "[log]\nformat = \"xml\"\n").unwrap();
        let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.format"), "{err}");
    }

    #[test]
    fn zone_aliases_are_normalised_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[auth]\nzone_aliases = [\"Example.COM.\"]\n").unwrap();
        let s = Settings::load_with_env(&p, true, &Overrides::default(), false).unwrap();
        assert_eq!(s.auth.zone_aliases, ["example.com"]);
        for bad in ["com", "a..b", "x_y.com", ""] {
            std::fs::write(&p, format!("[auth]\nzone_aliases = [{bad:?}]\n")).unwrap();
            let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("auth.zone_aliases"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn udp_threads_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let s = Settings::load_with_env(&p, false, &Overrides::default(), false).unwrap();
        assert_eq!(s.dns.udp_threads, 0, "default: one per core");
        std::fs::write(&p, "[dns]\nudp_threads = 2\n").unwrap();
        let s = Settings::load_with_env(&p, true, &Overrides::default(), false).unwrap();
        assert_eq!(s.dns.udp_threads, 2);
        std::fs::write(&p, "[dns]\nudp_threads = 100000\n").unwrap();
        let err = Settings::load_with_env(&p, true, &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dns.udp_threads"), "{err}");
    }
}
