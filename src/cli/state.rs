//! The documents kept sealed in the store (see `store`): plain data, no I/O. The writer
//! chosen from the saved credentials is in `writer`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

/// Store document names.
pub const CONTACTS: &str = "contacts";
pub const REPLAY: &str = "replay";
pub const PREKEYS: &str = "prekeys";
pub const CREDENTIALS: &str = "credentials";
pub const OUTBOX: &str = "outbox";
pub const INTROS: &str = "intros";
/// Next intro number (intros keep their number while queued).
pub const INTRO_SEQ: &str = "intro_seq";
/// Sender keys blocked with `intro block` (honoured on the claim and slot paths).
pub const BLOCKED: &str = "blocked";
pub const PUBLISHED: &str = "published";
/// Prekeys we already used per contact (`user@domain` → [(prekey id, forget after)]):
/// a prekey is one-time, and the recipient deletes it only once it reads our message.
pub const USED_PREKEYS: &str = "used_prekeys";

/// The contents of [`USED_PREKEYS`].
pub type UsedPrekeys = std::collections::BTreeMap<String, Vec<(u32, u64)>>;

/// A pinned contact: the keys we accept messages from and encrypt to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub username: String,
    /// The contact's home zone (where their mailbox, identity and prekeys live).
    pub domain: String,
    pub x25519_hex: String,
    pub ed25519_hex: String,
    /// Protocol versions their identity record advertised when pinned.
    pub versions: Vec<u8>,
    pub added_at: u64,
}

impl Contact {
    /// `user@domain`, the key of the contacts map.
    pub fn address(&self) -> String {
        format!("{}@{}", self.username, self.domain)
    }
    /// Decoded X25519 key.
    pub fn x25519(&self) -> Result<[u8; 32]> {
        hex32(&self.x25519_hex)
    }
    /// Decoded Ed25519 key.
    pub fn ed25519(&self) -> Result<[u8; 32]> {
        hex32(&self.ed25519_hex)
    }
}

/// Decode 64 hex characters.
pub fn hex32(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| anyhow!("stored key `{s}` is not 64 hex"))?;
    Ok(out)
}

/// Contacts keyed by `user@domain`.
pub type Contacts = BTreeMap<String, Contact>;

/// A prekey we published: its secret and the exact TXT value (to DELETE it later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrekeySecret {
    pub id: u32,
    pub private_hex: String,
    pub name: String,
    pub txt: String,
    pub exp: u64,
    /// Still published (not yet withdrawn by a refresh or consumed).
    pub published: bool,
}

/// A bearer token from `register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub token: String,
    pub subject: String,
    pub node: String,
    pub expires_at: u64,
}

/// A TSIG key from `tsig register`, with where to send UPDATEs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TsigCred {
    pub key_name: String,
    pub secret_hex: String,
    pub algorithm: String,
    pub zone: String,
    pub server: String,
    pub allowed_suffixes: Vec<String>,
    pub expires_at: u64,
}

/// Write credentials. `mode` is the writer the last registration chose.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Credentials {
    /// Bearer tokens keyed by the node's `host:port`.
    pub tokens: BTreeMap<String, Token>,
    pub tsig: Option<TsigCred>,
    /// `http` or `tsig`; absent = HTTP without a token (an open node).
    pub mode: Option<String>,
}

/// A message waiting to be published (the node was unreachable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: String,
    /// Contact key (`user@domain`).
    pub to: String,
    pub body: String,
    pub ttl: u64,
    pub created: u64,
    pub attempts: u32,
    pub next_attempt: u64,
    pub last_error: String,
    /// The composed wires, republished unchanged (same msg id) while unexpired, so a
    /// retry after a partial publish never makes a second copy.
    #[serde(default)]
    pub wires: Option<Wires>,
}

/// One composed message: everything its publication writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wires {
    pub msg_id: String,
    pub prekey_id: u32,
    pub v2: bool,
    pub chunks: usize,
    /// Chunks in order, then the manifest: `(name, value, ttl)`.
    pub records: Vec<(String, String, u32)>,
    /// Claim notifications: `(zone, name, value)`.
    pub claims: Vec<(String, String, String)>,
    /// The manifest's expiry (Unix seconds); after it the message is recomposed.
    pub exp: u64,
    pub ttl: u32,
}

/// A decrypted first-contact message from a sender we have not pinned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intro {
    /// Number shown by `intro list` (0 in queues written before numbering).
    #[serde(default)]
    pub id: u64,
    pub sender_spk_hex: String,
    pub msg_id_hex: String,
    pub sender_zone: String,
    /// The DMPv2 `from` address, if any (verified against the sender's identity or not).
    pub claimed_from: Option<String>,
    pub from_verified: bool,
    pub body: String,
    pub ts: u64,
    pub exp: u64,
}

/// A blocked sender key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    pub spk_hex: String,
    /// Who it claimed to be, for the listing.
    pub label: String,
    pub note: String,
    pub at: u64,
}

/// What we published ourselves (so a republish can withdraw the old value).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Published {
    pub identity: Option<(String, String)>,
    /// The zone-anchored copy at `dmp.<identity_domain>`.
    #[serde(default)]
    pub anchored: Option<(String, String)>,
}

/// `host:port` of a URL (default port by scheme), the key of saved tokens.
pub fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let hp = rest.split('/').next().unwrap_or(rest);
    if hp.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !hp.ends_with(']') {
        hp.to_ascii_lowercase()
    } else {
        format!("{}:{}", hp.to_ascii_lowercase(), if scheme == "http" { 80 } else { 443 })
    }
}
