//! The auth actor: owns credentials (bearer tokens, TSIG keys) and registration
//! challenges, in its own sled database (`data_dir/auth`: trees `tokens` and `tsig`).
//!
//! - Bearer tokens are stored only as `sha256hex(token)`.
//! - TSIG secrets are sealed at rest (XChaCha20-Poly1305 under the node key file).
//! - Every change to TSIG keys is pushed to the DNS actor as a fresh keyring, so a
//!   revocation takes effect on the next UPDATE without a restart.

use std::collections::HashMap;

use actix::prelude::*;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use serde::{Deserialize, Serialize};

use super::dns::{KeyEntry, Keyring, KeyringChanged};
use super::store::{Apply, StoreActor, StoreError};
use super::supervisor::{Lifecycle, LifecycleEvent, SupervisorActor};
use crate::clock::Clock;
use crate::policy::limits::TokenBuckets;
use crate::proto::{keys, registration, seal};

/// A refusal with the HTTP status it maps to and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct AuthError {
    pub status: u16,
    pub message: String,
}

fn err(status: u16, message: impl Into<String>) -> AuthError {
    AuthError { status, message: message.into() }
}

/// Settings the auth actor needs.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    pub zone: String,
    pub hostname: String,
    pub mode: String,
    pub operator_token: String,
    pub registration: bool,
    pub tsig_enabled: bool,
    pub allowlist: Vec<String>,
    pub token_ttl_secs: u64,
    pub token_rate: f64,
    pub token_burst: f64,
    /// Per (credential, recipient mailbox) bucket for shared mailbox writes.
    pub mailbox_rate: f64,
    pub mailbox_burst: f64,
    /// Subject domains treated as the zone (`[auth] zone_aliases`).
    pub zone_aliases: Vec<String>,
}

/// A stored bearer token (only its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRow {
    pub token_hash: String,
    pub subject: String,
    pub registered_spk: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub revoked: bool,
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// `self-service`, `admin` or `admin:rotate` (empty in rows of older versions).
    #[serde(default)]
    pub issuer: String,
}

/// A stored TSIG key; the secret sealed under the node key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TsigRow {
    pub name: String,
    pub sealed_secret_hex: String,
    pub allowed_suffixes: Vec<String>,
    pub subject: String,
    pub registered_spk: String,
    pub registered_x25519_pub: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked: bool,
}

impl TokenRow {
    fn live(&self, now: u64) -> bool {
        !self.revoked && (self.expires_at == 0 || self.expires_at > now)
    }
}

impl TsigRow {
    fn live(&self, now: u64) -> bool {
        !self.revoked && (self.expires_at == 0 || self.expires_at > now)
    }
}

/// `GET /v1/registration/challenge`.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, AuthError>")]
pub struct NewChallenge;

/// `POST /v1/registration/confirm` (`tsig = false`) or `/tsig-confirm` (`tsig = true`).
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, AuthError>")]
pub struct Register {
    pub body: serde_json::Value,
    pub tsig: bool,
}

/// May the bearer `authorization` header write (or delete) `name`?
#[derive(Message)]
#[rtype(result = "Result<(), AuthError>")]
pub struct AuthorizeWrite {
    pub authorization: Option<String>,
    pub name: String,
    pub delete: bool,
}

/// [`AuthorizeWrite`], and when allowed, `apply` handed to `store` from here: the HTTP
/// write path in one hop from the HTTP worker (auth and store both run on the System
/// thread, so the forward costs no thread switch). `Ok(None)`: the store did not answer.
#[derive(Message)]
#[rtype(result = "Result<Option<Result<usize, StoreError>>, AuthError>")]
pub struct AuthorizeApply {
    pub authorization: Option<String>,
    pub name: String,
    pub delete: bool,
    pub apply: Apply,
    pub store: Addr<StoreActor>,
}

/// Is the header the operator token (reads of records and metrics)?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsOperator(pub Option<String>);

/// Is the header exactly the configured operator token (false when none is set)?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsOperatorStrict(pub Option<String>);

/// List credentials (admin).
#[derive(Message)]
#[rtype(result = "Credentials")]
pub struct ListCredentials;

/// Credential listing (no secrets, token hashes shortened).
#[derive(Debug, Clone, serde::Serialize, actix::MessageResponse)]
pub struct Credentials(pub serde_json::Value);

/// Revoke tokens and TSIG keys matching a subject, token-hash prefix or key name.
#[derive(Message)]
#[rtype(result = "Result<usize, AuthError>")]
pub struct Revoke(pub String);

/// `dnsmesh-node admin token issue|rotate`: mint a bearer token for `subject` (rate and
/// burst default to `[limits] token_rate/burst`, `expires_in` 0 = never). With `rotate`,
/// the subject's live tokens are revoked first.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, AuthError>")]
pub struct IssueToken {
    pub subject: String,
    pub rate: Option<f64>,
    pub burst: Option<f64>,
    pub expires_in: u64,
    pub rotate: bool,
}

/// Reload: replace the options (registration allowlist, token and mailbox limits, …).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetOptions(pub AuthOptions);

/// Where to push keyrings.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetKeyringSink(pub Recipient<KeyringChanged>);

/// Test-only fault.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

struct Challenge {
    expires_at: u64,
    server_secret: [u8; 32],
}

/// The auth actor.
pub struct AuthActor {
    opts: AuthOptions,
    db: sled::Db,
    tokens: sled::Tree,
    tsig: sled::Tree,
    node_key: [u8; 32],
    challenges: HashMap<[u8; 32], Challenge>,
    /// Which names of the zone a subject may hold (zone + aliases).
    policy: registration::SubjectPolicy,
    token_buckets: TokenBuckets<String>,
    mailbox_buckets: TokenBuckets<(String, String)>,
    sink: Option<Recipient<KeyringChanged>>,
    supervisor: Option<Addr<SupervisorActor>>,
    clock: Clock,
}

/// Load an existing node key (32 bytes); never creates one.
pub fn load_node_key(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    std::fs::read(path)?.try_into().map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "node key must be 32 bytes")
    })
}

/// Load the node key (32 bytes, mode 0600), creating it on first start.
pub fn load_or_create_node_key(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path) {
        return bytes.try_into().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "node key must be 32 bytes")
        });
    }
    let key = keys::random_32();
    crate::files::private_dir::write_private_atomic(path, &key)?;
    Ok(key)
}

fn hexfield<const N: usize>(body: &serde_json::Value, field: &str) -> Result<[u8; N], AuthError> {
    let s = body
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(400, format!("missing or non-string field: {field}")))?;
    let b = hex::decode(s).map_err(|_| err(400, format!("{field}: not valid hex")))?;
    let n = b.len();
    b.try_into().map_err(|_| err(400, format!("{field}: expected {N} bytes, got {n}")))
}

impl AuthActor {
    /// Open the credential trees in `db` (this actor's own database, see
    /// [`super::actor_db`]) and the node key at `key_path`.
    pub fn open(
        opts: AuthOptions,
        db: sled::Db,
        key_path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let tokens = db.open_tree("tokens")?;
        let tsig = db.open_tree("tsig")?;
        let node_key = load_or_create_node_key(key_path)
            .with_context(|| format!("node key {}", key_path.display()))?;
        let policy = registration::SubjectPolicy::new(&opts.zone, &opts.zone_aliases);
        Ok(AuthActor {
            policy,
            opts,
            db,
            tokens,
            tsig,
            node_key,
            challenges: HashMap::new(),
            token_buckets: TokenBuckets::new(100_000),
            mailbox_buckets: TokenBuckets::new(100_000),
            sink: None,
            supervisor: None,
            clock: Clock::system(),
        })
    }

    /// Read time from `clock` (token, key and challenge expiry) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Report lifecycle to `sup`.
    pub fn with_supervisor(mut self, sup: Addr<SupervisorActor>) -> Self {
        self.supervisor = Some(sup);
        self
    }

    fn registration_enabled(&self) -> bool {
        self.opts.registration && self.opts.mode == "multi-tenant"
    }

    fn keyring(&self) -> Keyring {
        let now = self.clock.now_secs();
        let mut ring = Keyring::new();
        for item in self.tsig.iter() {
            let Ok((_, v)) = item else { continue };
            let Ok(row) = serde_json::from_slice::<TsigRow>(&v) else {
                continue;
            };
            if !row.live(now) {
                continue;
            }
            let Ok(sealed) = hex::decode(&row.sealed_secret_hex) else {
                continue;
            };
            let Ok(secret) = seal::open(&self.node_key, &sealed, row.name.as_bytes()) else {
                tracing::error!(key = %row.name, "cannot unseal TSIG secret (wrong node key?)");
                continue;
            };
            let Ok(name) = Name::from_ascii(&row.name) else {
                continue;
            };
            let Ok(signer) = TSigner::new(secret, TsigAlgorithm::HmacSha256, name, 300) else {
                continue;
            };
            ring.insert(
                row.name.clone(),
                KeyEntry {
                    signer,
                    // Keys stored by older versions lose local-part names they should not hold.
                    scope: self.policy.restrict_scope(&row.subject, &row.allowed_suffixes),
                    expires_at: row.expires_at,
                },
            );
        }
        ring
    }

    fn push_keyring(&self) {
        if let Some(s) = &self.sink {
            s.do_send(KeyringChanged(self.keyring()));
        }
    }

    /// Reply with `r` once this actor's database is durable (a credential is never handed
    /// out, nor a revocation confirmed, before its flush). The flush runs on sled's own
    /// thread pool, never blocking the System thread.
    fn durable<T: Send + 'static>(
        &self,
        r: Result<T, AuthError>,
    ) -> ResponseFuture<Result<T, AuthError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let v = r?;
            db.flush_async().await.map_err(|e| err(500, format!("storage failure: {e}")))?;
            Ok(v)
        })
    }

    fn challenge(&mut self) -> Result<serde_json::Value, AuthError> {
        if !self.registration_enabled() {
            return Err(err(404, "not found"));
        }
        let now = self.clock.now_secs();
        self.challenges.retain(|_, c| c.expires_at > now);
        if self.challenges.len() >= 10_000 {
            if let Some(k) =
                self.challenges.iter().min_by_key(|(_, c)| c.expires_at).map(|(k, _)| *k)
            {
                self.challenges.remove(&k);
            }
        }
        let challenge = keys::random_32();
        let server_secret = keys::random_32();
        let expires_at = now + 60;
        self.challenges.insert(challenge, Challenge { expires_at, server_secret });
        Ok(serde_json::json!({
            "challenge": hex::encode(challenge),
            "node": self.opts.hostname,
            "expires_at": expires_at,
            "server_x25519_pub": hex::encode(keys::x25519_public(&server_secret)),
            "version": 1,
        }))
    }

    fn register(
        &mut self,
        body: serde_json::Value,
        tsig: bool,
    ) -> Result<serde_json::Value, AuthError> {
        if !self.registration_enabled() {
            return Err(err(404, "not found"));
        }
        if tsig && !self.opts.tsig_enabled {
            return Err(err(404, "tsig registration disabled"));
        }
        if !body.is_object() {
            return Err(err(400, "invalid body"));
        }
        for f in ["subject", "ed25519_spk", "challenge", "signature"] {
            if !body.get(f).map(|v| v.is_string()).unwrap_or(false) {
                return Err(err(400, format!("missing or non-string field: {f}")));
            }
        }
        let raw_subject = body["subject"].as_str().unwrap_or_default();
        let subject = registration::canonicalize_subject(raw_subject)
            .map_err(|e| err(400, format!("subject invalid: {e}")))?;
        let spk: [u8; 32] = hexfield(&body, "ed25519_spk")?;
        let challenge: [u8; 32] = hexfield(&body, "challenge")?;
        let signature: [u8; 64] = hexfield(&body, "signature")?;
        let now = self.clock.now_secs();
        let ch = match self.challenges.remove(&challenge) {
            Some(c) if c.expires_at > now => c,
            _ => return Err(err(400, "challenge expired or unknown")),
        };
        let payload = registration::signing_payload(&challenge, &subject, &self.opts.hostname);
        if !keys::verify(&spk, &payload, &signature) {
            return Err(err(401, "signature verification failed"));
        }
        let domain = subject.split_once('@').map(|(_, d)| d).unwrap_or("");
        if !self.opts.allowlist.is_empty()
            && !self.opts.allowlist.iter().any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Err(err(403, "subject not in registration allowlist"));
        }
        let spk_hex = hex::encode(spk);
        let mut x25519: Option<[u8; 32]> = None;
        if tsig {
            let pub_s = body.get("x25519_pub").and_then(|v| v.as_str());
            let pop_s = body.get("x25519_pop").and_then(|v| v.as_str());
            if let (Some(_), Some(_)) = (pub_s, pop_s) {
                let xpub: [u8; 32] = hexfield(&body, "x25519_pub")?;
                let pop: [u8; 32] = hexfield(&body, "x25519_pop")?;
                let ok = registration::verify_x25519_pop(
                    &ch.server_secret,
                    &xpub,
                    &challenge,
                    &subject,
                    &pop,
                );
                if !ok {
                    return Err(err(
                        401,
                        "x25519_pop verification failed: registrant did not prove possession of the claimed X25519 key",
                    ));
                }
                x25519 = Some(xpub);
            }
        }
        // Anti-takeover: a local part is bound to one key here, whatever the subject's
        // domain (a live self-service credential of any subject with this local part
        // under another key blocks); the same key may re-register.
        let live_tokens: Vec<TokenRow> = self
            .tokens
            .iter()
            .filter_map(|i| i.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<TokenRow>(&v).ok())
            .filter(|t| t.live(now))
            .collect();
        let live_keys: Vec<TsigRow> = self
            .tsig
            .iter()
            .filter_map(|i| i.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<TsigRow>(&v).ok())
            .filter(|t| t.live(now))
            .collect();
        let bound = live_tokens
            .iter()
            .map(|t| (t.subject.as_str(), t.registered_spk.as_str()))
            .chain(live_keys.iter().map(|t| (t.subject.as_str(), t.registered_spk.as_str())));
        match registration::binding_conflict(&subject, &spk_hex, bound) {
            None => {}
            Some(registration::BindingConflict::SameSubject) => {
                return Err(err(
                    409,
                    "subject already has a live token; re-registration must be signed with the previously-registered Ed25519 key",
                ))
            }
            Some(registration::BindingConflict::SameLocalPart) => {
                let local = subject.split_once('@').map_or(subject.as_str(), |(l, _)| l);
                tracing::info!(subject = %subject, "registration refused: local part bound to another key");
                return Err(err(
                    409,
                    format!(
                        "local part {local:?} is already registered on this node (zone {}) under another Ed25519 key; re-registration must be signed with that key",
                        self.opts.zone
                    ),
                ));
            }
        }
        let expires_at =
            if self.opts.token_ttl_secs == 0 { 0 } else { now + self.opts.token_ttl_secs };
        if tsig {
            let key_name =
                registration::tsig_key_name(&subject, &spk, &self.opts.zone).map_err(|_| {
                    err(400, "subject local part too long for TSIG key label (max 47 chars)")
                })?;
            let mut scope = self.policy.scope_for(
                &subject,
                &spk,
                x25519.as_ref(),
                registration::ScopeMode::Default,
            );
            scope.sort();
            scope.dedup();
            let secret = keys::random_32();
            let sealed = seal::seal(&self.node_key, &secret, key_name.as_bytes());
            let row = TsigRow {
                name: key_name.clone(),
                sealed_secret_hex: hex::encode(sealed),
                allowed_suffixes: scope.clone(),
                subject: subject.clone(),
                registered_spk: spk_hex,
                registered_x25519_pub: x25519.map(hex::encode).unwrap_or_default(),
                created_at: now,
                expires_at,
                revoked: false,
            };
            let v = serde_json::to_vec(&row).map_err(|e| err(500, e.to_string()))?;
            self.tsig.insert(key_name.as_bytes(), v).map_err(|e| err(500, e.to_string()))?;
            self.push_keyring();
            tracing::info!(subject = %subject, key = %key_name, "minted TSIG key");
            Ok(serde_json::json!({
                "tsig_key_name": key_name,
                "tsig_secret_hex": hex::encode(secret),
                "tsig_algorithm": "hmac-sha256",
                "allowed_suffixes": scope,
                "subject": subject,
                "zone": self.opts.zone,
                "expires_at": expires_at,
            }))
        } else {
            // Rotate: revoke earlier self-service tokens of this subject.
            let olds: Vec<(sled::IVec, TokenRow)> = self
                .tokens
                .iter()
                .filter_map(|i| i.ok())
                .filter_map(|(k, v)| serde_json::from_slice::<TokenRow>(&v).ok().map(|t| (k, t)))
                .filter(|(_, t)| t.subject == subject && !t.revoked && !t.registered_spk.is_empty())
                .collect();
            for (k, mut t) in olds {
                t.revoked = true;
                let v = serde_json::to_vec(&t).map_err(|e| err(500, e.to_string()))?;
                self.tokens.insert(k, v).map_err(|e| err(500, e.to_string()))?;
            }
            let token =
                format!("dmp_v1_{}", data_encoding::BASE32_NOPAD.encode(&keys::random_32()));
            let token_hash = hex::encode(keys::sha256(token.as_bytes()));
            let row = TokenRow {
                token_hash: token_hash.clone(),
                subject: subject.clone(),
                registered_spk: spk_hex,
                issued_at: now,
                expires_at,
                revoked: false,
                rate_per_sec: self.opts.token_rate,
                rate_burst: self.opts.token_burst,
                issuer: "self-service".into(),
            };
            let v = serde_json::to_vec(&row).map_err(|e| err(500, e.to_string()))?;
            self.tokens.insert(token_hash.as_bytes(), v).map_err(|e| err(500, e.to_string()))?;
            tracing::info!(subject = %subject, "minted bearer token");
            Ok(serde_json::json!({
                "token": token,
                "subject": subject,
                "expires_at": expires_at,
                "rate_per_sec": self.opts.token_rate,
                "rate_burst": self.opts.token_burst,
            }))
        }
    }

    fn is_operator(&self, header: Option<&str>) -> bool {
        let op = &self.opts.operator_token;
        if op.is_empty() {
            return false;
        }
        let want = format!("Bearer {op}");
        header.map(|h| constant_time_eq(h.as_bytes(), want.as_bytes())).unwrap_or(false)
    }

    fn authorize(
        &mut self,
        header: Option<&str>,
        name: &str,
        delete: bool,
    ) -> Result<(), AuthError> {
        if self.is_operator(header) {
            return Ok(());
        }
        match self.opts.mode.as_str() {
            "open" => return Ok(()),
            "legacy" => return Err(err(401, "unauthorized")),
            _ => {}
        }
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(err(401, "unauthorized"));
        };
        let hash = hex::encode(keys::sha256(token.trim().as_bytes()));
        let now = self.clock.now_secs();
        let row = match self.tokens.get(hash.as_bytes()) {
            Ok(Some(v)) => {
                serde_json::from_slice::<TokenRow>(&v).map_err(|_| err(401, "unauthorized"))?
            }
            _ => return Err(err(401, "unauthorized")),
        };
        if !row.live(now) {
            return Err(err(401, "unauthorized"));
        }
        let class = registration::classify_name(name);
        let allowed = match class {
            registration::NameClass::SharedPool => !delete,
            ref c => self.policy.owns(c, &row.subject, None),
        };
        if !allowed {
            if let Some(why) = self.policy.refusal(&row.subject, name) {
                return Err(err(403, why));
            }
            return Err(err(401, "unauthorized"));
        }
        if let Some(mb) = crate::policy::limits::mailbox_of(name) {
            let key = (hash.clone(), mb.to_string());
            if !self.mailbox_buckets.take(key, self.opts.mailbox_rate, self.opts.mailbox_burst) {
                return Err(err(
                    429,
                    "per-recipient write limit exceeded for this mailbox; retry later",
                ));
            }
        }
        if !self.token_buckets.take(hash, row.rate_per_sec, row.rate_burst) {
            return Err(err(429, "per-token rate limit exceeded"));
        }
        Ok(())
    }

    fn list(&self) -> serde_json::Value {
        let tokens: Vec<serde_json::Value> = self
            .tokens
            .iter()
            .filter_map(|i| i.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<TokenRow>(&v).ok())
            .map(|t| {
                serde_json::json!({"token_hash_prefix": &t.token_hash[..12], "subject": t.subject,
                "issued_at": t.issued_at, "expires_at": t.expires_at, "revoked": t.revoked,
                "issuer": t.issuer, "rate_per_sec": t.rate_per_sec, "rate_burst": t.rate_burst})
            })
            .collect();
        let keys: Vec<serde_json::Value> = self
            .tsig
            .iter()
            .filter_map(|i| i.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<TsigRow>(&v).ok())
            .map(|t| serde_json::json!({"name": t.name, "subject": t.subject, "allowed_suffixes": self.policy.restrict_scope(&t.subject, &t.allowed_suffixes),
                "created_at": t.created_at, "expires_at": t.expires_at, "revoked": t.revoked}))
            .collect();
        serde_json::json!({"tokens": tokens, "tsig_keys": keys})
    }

    fn revoke(&mut self, what: &str) -> Result<usize, AuthError> {
        let what_l = what.trim().to_ascii_lowercase();
        if what_l.is_empty() {
            return Err(err(400, "say which subject, token hash prefix or key name to revoke"));
        }
        let mut n = 0;
        for (k, v) in self.tokens.iter().filter_map(|i| i.ok()) {
            let Ok(mut t) = serde_json::from_slice::<TokenRow>(&v) else {
                continue;
            };
            if !t.revoked
                && (t.subject == what_l || (what_l.len() >= 8 && t.token_hash.starts_with(&what_l)))
            {
                t.revoked = true;
                self.tokens
                    .insert(k, serde_json::to_vec(&t).unwrap_or_default())
                    .map_err(|e| err(500, e.to_string()))?;
                n += 1;
            }
        }
        let key_q = if what_l.ends_with('.') { what_l.clone() } else { format!("{what_l}.") };
        for (k, v) in self.tsig.iter().filter_map(|i| i.ok()) {
            let Ok(mut t) = serde_json::from_slice::<TsigRow>(&v) else {
                continue;
            };
            if !t.revoked && (t.subject == what_l || t.name == key_q) {
                t.revoked = true;
                self.tsig
                    .insert(k, serde_json::to_vec(&t).unwrap_or_default())
                    .map_err(|e| err(500, e.to_string()))?;
                n += 1;
            }
        }
        self.push_keyring();
        Ok(n)
    }

    fn issue(&mut self, m: IssueToken) -> Result<serde_json::Value, AuthError> {
        let subject = registration::canonicalize_subject(&m.subject)
            .map_err(|e| err(400, format!("subject invalid: {e}")))?;
        let rate = m.rate.unwrap_or(self.opts.token_rate);
        let burst = m.burst.unwrap_or(self.opts.token_burst);
        if !(rate.is_finite() && rate > 0.0 && burst.is_finite() && burst >= 1.0) {
            return Err(err(400, "rate must be > 0 and burst >= 1"));
        }
        let now = self.clock.now_secs();
        let mut revoked = vec![];
        if m.rotate {
            for (k, v) in self.tokens.iter().filter_map(|i| i.ok()) {
                let Ok(mut t) = serde_json::from_slice::<TokenRow>(&v) else { continue };
                if t.subject == subject && t.live(now) {
                    t.revoked = true;
                    let v = serde_json::to_vec(&t).map_err(|e| err(500, e.to_string()))?;
                    self.tokens.insert(k, v).map_err(|e| err(500, e.to_string()))?;
                    revoked.push(t.token_hash[..12].to_string());
                }
            }
            if revoked.is_empty() {
                return Err(err(404, format!("no live token of {subject} to rotate")));
            }
        }
        let token = format!("dmp_v1_{}", data_encoding::BASE32_NOPAD.encode(&keys::random_32()));
        let token_hash = hex::encode(keys::sha256(token.as_bytes()));
        let expires_at = if m.expires_in == 0 { 0 } else { now.saturating_add(m.expires_in) };
        let row = TokenRow {
            token_hash: token_hash.clone(),
            subject: subject.clone(),
            registered_spk: String::new(),
            issued_at: now,
            expires_at,
            revoked: false,
            rate_per_sec: rate,
            rate_burst: burst,
            issuer: if m.rotate { "admin:rotate" } else { "admin" }.into(),
        };
        let v = serde_json::to_vec(&row).map_err(|e| err(500, e.to_string()))?;
        self.tokens.insert(token_hash.as_bytes(), v).map_err(|e| err(500, e.to_string()))?;
        tracing::info!(subject = %subject, rotate = m.rotate, "operator issued a bearer token");
        Ok(serde_json::json!({
            "token": token,
            "token_hash_prefix": &token_hash[..12],
            "subject": subject,
            "issued_at": now,
            "expires_at": expires_at,
            "rate_per_sec": rate,
            "rate_burst": burst,
            "revoked": revoked,
        }))
    }

    fn report(&self, event: LifecycleEvent) {
        if let Some(s) = &self.supervisor {
            s.do_send(Lifecycle { actor: "auth", event });
        }
    }
}

/// Compare secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Actor for AuthActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.push_keyring();
        self.report(LifecycleEvent::Started);
    }
}

impl Supervised for AuthActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.report(LifecycleEvent::Restarting);
    }
}

impl Handler<NewChallenge> for AuthActor {
    type Result = Result<serde_json::Value, AuthError>;
    fn handle(&mut self, _: NewChallenge, _: &mut Context<Self>) -> Self::Result {
        self.challenge()
    }
}

impl Handler<Register> for AuthActor {
    type Result = ResponseFuture<Result<serde_json::Value, AuthError>>;
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let r = self.register(msg.body, msg.tsig);
        self.durable(r)
    }
}

impl Handler<AuthorizeWrite> for AuthActor {
    type Result = Result<(), AuthError>;
    fn handle(&mut self, msg: AuthorizeWrite, _: &mut Context<Self>) -> Self::Result {
        self.authorize(msg.authorization.as_deref(), &msg.name, msg.delete)
    }
}

impl Handler<AuthorizeApply> for AuthActor {
    type Result = ResponseFuture<Result<Option<Result<usize, StoreError>>, AuthError>>;
    fn handle(&mut self, msg: AuthorizeApply, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.authorize(msg.authorization.as_deref(), &msg.name, msg.delete) {
            return Box::pin(async move { Err(e) });
        }
        let applied = msg.store.send(msg.apply);
        Box::pin(async move { Ok(applied.await.ok()) })
    }
}

impl Handler<IsOperator> for AuthActor {
    type Result = bool;
    fn handle(&mut self, msg: IsOperator, _: &mut Context<Self>) -> bool {
        self.opts.operator_token.is_empty() || self.is_operator(msg.0.as_deref())
    }
}

impl Handler<IsOperatorStrict> for AuthActor {
    type Result = bool;
    fn handle(&mut self, msg: IsOperatorStrict, _: &mut Context<Self>) -> bool {
        self.is_operator(msg.0.as_deref())
    }
}

impl Handler<ListCredentials> for AuthActor {
    type Result = Credentials;
    fn handle(&mut self, _: ListCredentials, _: &mut Context<Self>) -> Credentials {
        Credentials(self.list())
    }
}

impl Handler<Revoke> for AuthActor {
    type Result = ResponseFuture<Result<usize, AuthError>>;
    fn handle(&mut self, msg: Revoke, _: &mut Context<Self>) -> Self::Result {
        let r = self.revoke(&msg.0);
        self.durable(r)
    }
}

impl Handler<IssueToken> for AuthActor {
    type Result = ResponseFuture<Result<serde_json::Value, AuthError>>;
    fn handle(&mut self, msg: IssueToken, _: &mut Context<Self>) -> Self::Result {
        // The token is handed out only once it is durable.
        let r = self.issue(msg);
        self.durable(r)
    }
}

impl Handler<SetOptions> for AuthActor {
    type Result = ();
    fn handle(&mut self, msg: SetOptions, _: &mut Context<Self>) {
        self.policy = registration::SubjectPolicy::new(&msg.0.zone, &msg.0.zone_aliases);
        self.opts = msg.0;
        self.push_keyring();
    }
}

impl Handler<SetKeyringSink> for AuthActor {
    type Result = ();
    fn handle(&mut self, msg: SetKeyringSink, _: &mut Context<Self>) {
        self.sink = Some(msg.0);
        self.push_keyring();
    }
}

impl Handler<Fail> for AuthActor {
    type Result = ();
    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!("auth actor: injected failure, stopping for restart");
        ctx.stop();
    }
}

impl Handler<super::actor_db::ExportTrees> for AuthActor {
    type Result = Result<Vec<crate::files::backup::TreeDump>, String>;
    fn handle(&mut self, _: super::actor_db::ExportTrees, _: &mut Context<Self>) -> Self::Result {
        crate::files::backup::TreeDump::all("auth", &self.db).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! The auth actor driven by its messages alone, in process, with a manual clock.
    use super::*;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000;
    const ZONE: &str = "mesh.test";

    fn opts() -> AuthOptions {
        AuthOptions {
            zone: ZONE.into(),
            hostname: "node1".into(),
            mode: "multi-tenant".into(),
            operator_token: "op".into(),
            registration: true,
            tsig_enabled: true,
            allowlist: vec![],
            token_ttl_secs: 1000,
            token_rate: 1000.0,
            token_burst: 1000.0,
            mailbox_rate: 1000.0,
            mailbox_burst: 1000.0,
            zone_aliases: vec![],
        }
    }

    fn start(dir: &std::path::Path, clock: &Clock) -> Addr<AuthActor> {
        let db = crate::actors::actor_db::open(dir, "auth").unwrap();
        AuthActor::open(opts(), db, &dir.join("node.key"))
            .unwrap()
            .with_clock(clock.clone())
            .start()
    }

    /// Collects the keyrings the actor pushes.
    struct Sink(tokio::sync::mpsc::UnboundedSender<Vec<String>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<KeyringChanged> for Sink {
        type Result = ();
        fn handle(&mut self, k: KeyringChanged, _: &mut Context<Self>) {
            let mut names: Vec<String> = k.0.into_keys().collect();
            names.sort();
            let _ = self.0.send(names);
        }
    }

    /// Register `subject` under `key` through the challenge/confirm messages.
    async fn register(
        auth: &Addr<AuthActor>,
        key: &ed25519_dalek::SigningKey,
        subject: &str,
        tsig: bool,
    ) -> Result<serde_json::Value, AuthError> {
        let ch = auth.send(NewChallenge).await.unwrap()?;
        let challenge: [u8; 32] =
            hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
        let sig = keys::sign(key, &registration::signing_payload(&challenge, subject, "node1"));
        let body = serde_json::json!({
            "subject": subject,
            "ed25519_spk": hex::encode(key.verifying_key().to_bytes()),
            "challenge": hex::encode(challenge),
            "signature": hex::encode(sig),
        });
        auth.send(Register { body, tsig }).await.unwrap()
    }

    async fn authorize(auth: &Addr<AuthActor>, token: &str, name: &str) -> Result<(), u16> {
        auth.send(AuthorizeWrite {
            authorization: Some(format!("Bearer {token}")),
            name: name.into(),
            delete: false,
        })
        .await
        .unwrap()
        .map_err(|e| e.status)
    }

    fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    /// The HTTP write path's one hop: the auth actor applies what the credential allows
    /// and hands nothing to the store for a refused write.
    #[test]
    fn authorize_apply_forwards_only_allowed_writes_to_the_store() {
        use crate::actors::store::{Get, Op, Origin};
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let auth = start(dir.path(), &clock);
            let store = StoreActor::open(&dir.path().join("store"), Duration::from_secs(3600))
                .unwrap()
                .with_clock(clock.clone())
                .start();
            let r = register(&auth, &signing_key(1), &format!("alice@{ZONE}"), false).await;
            let token = r.unwrap()["token"].as_str().unwrap().to_string();
            let write = |name: &str| AuthorizeApply {
                authorization: Some(format!("Bearer {token}")),
                name: name.into(),
                delete: false,
                apply: Apply {
                    ops: vec![Op::Add { name: name.into(), value: "v".into(), ttl: 60 }],
                    max_values: 0,
                    origin: Origin::Local,
                },
                store: store.clone(),
            };
            let (own, other) = (format!("dmp.alice.{ZONE}"), format!("dmp.bob.{ZONE}"));
            let applied = auth.send(write(&own)).await.unwrap().unwrap();
            assert!(matches!(applied, Some(Ok(_))), "allowed write applied: {applied:?}");
            let refused = auth.send(write(&other)).await.unwrap();
            assert_eq!(refused.unwrap_err().status, 401);
            assert_eq!(store.send(Get { name: own }).await.unwrap().unwrap().len(), 1);
            assert!(store.send(Get { name: other }).await.unwrap().unwrap().is_empty());
        });
    }

    #[test]
    fn register_authorize_revoke_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let auth = start(dir.path(), &clock);
            let alice = signing_key(1);
            let r = register(&auth, &alice, &format!("alice@{ZONE}"), false).await.unwrap();
            let token = r["token"].as_str().unwrap().to_string();
            assert_eq!(r["expires_at"], T0 + 1000);
            // The token writes its subject's names, not someone else's.
            assert_eq!(authorize(&auth, &token, &format!("dmp.alice.{ZONE}")).await, Ok(()));
            assert!(authorize(&auth, &token, &format!("dmp.bob.{ZONE}")).await.is_err());
            assert_eq!(
                authorize(&auth, "dmp_v1_nope", &format!("dmp.alice.{ZONE}")).await,
                Err(401)
            );
            // Another key cannot take the local part (409); the same key re-registers.
            let mallory = signing_key(2);
            let e = register(&auth, &mallory, &format!("alice@{ZONE}"), false).await.unwrap_err();
            assert_eq!(e.status, 409);
            // Revoked: refused at once.
            let n = auth.send(Revoke(format!("alice@{ZONE}"))).await.unwrap().unwrap();
            assert_eq!(n, 1);
            assert_eq!(authorize(&auth, &token, &format!("dmp.alice.{ZONE}")).await, Err(401));
            // A new token expires with the clock.
            let r = register(&auth, &alice, &format!("alice@{ZONE}"), false).await.unwrap();
            let token = r["token"].as_str().unwrap().to_string();
            clock.advance(Duration::from_secs(999));
            assert_eq!(authorize(&auth, &token, &format!("dmp.alice.{ZONE}")).await, Ok(()));
            clock.advance(Duration::from_secs(1));
            assert_eq!(authorize(&auth, &token, &format!("dmp.alice.{ZONE}")).await, Err(401));
            // Operator token and the strict check.
            assert!(auth.send(IsOperatorStrict(Some("Bearer op".into()))).await.unwrap());
            assert!(!auth.send(IsOperatorStrict(Some("Bearer x".into()))).await.unwrap());
        });
    }

    #[test]
    fn challenges_expire_with_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let auth = start(dir.path(), &clock);
            let ch = auth.send(NewChallenge).await.unwrap().unwrap();
            assert_eq!(ch["expires_at"], T0 + 60);
            let challenge: [u8; 32] =
                hex::decode(ch["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
            let key = signing_key(3);
            let subject = format!("carol@{ZONE}");
            let sig =
                keys::sign(&key, &registration::signing_payload(&challenge, &subject, "node1"));
            clock.advance(Duration::from_secs(60));
            let body = serde_json::json!({
                "subject": subject,
                "ed25519_spk": hex::encode(key.verifying_key().to_bytes()),
                "challenge": hex::encode(challenge),
                "signature": hex::encode(sig),
            });
            let e = auth.send(Register { body, tsig: false }).await.unwrap().unwrap_err();
            assert_eq!(e.status, 400, "{e}");
        });
    }

    #[test]
    fn tsig_keys_reach_the_keyring_sink_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let key_name = actix::System::new().block_on(async {
            let auth = start(dir.path(), &clock);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            auth.do_send(SetKeyringSink(Sink(tx).start().recipient()));
            assert_eq!(rx.recv().await.unwrap(), Vec::<String>::new());
            let r = register(&auth, &signing_key(4), &format!("dave@{ZONE}"), true).await.unwrap();
            let key_name = r["tsig_key_name"].as_str().unwrap().to_string();
            assert_eq!(r["tsig_secret_hex"].as_str().unwrap().len(), 64);
            assert_eq!(rx.recv().await.unwrap(), vec![key_name.clone()]);
            let listed = auth.send(ListCredentials).await.unwrap().0;
            assert_eq!(listed["tsig_keys"][0]["name"], key_name.as_str());
            key_name
        });
        // The reply came after the flush: a fresh actor on the same database has the key,
        // and a revocation empties the keyring it pushes.
        actix::System::new().block_on(async {
            let auth = start(dir.path(), &clock);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            auth.do_send(SetKeyringSink(Sink(tx).start().recipient()));
            assert_eq!(rx.recv().await.unwrap(), vec![key_name.clone()]);
            assert_eq!(auth.send(Revoke(key_name.clone())).await.unwrap(), Ok(1));
            assert_eq!(rx.recv().await.unwrap(), Vec::<String>::new());
        });
    }
}
