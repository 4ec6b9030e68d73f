//! `send`, `recv` and `outbox`: the message pipeline of `proto::message` wired to the
//! resolver pool (reads), the home-node writer (chunks, manifest, prekey deletes) and
//! unsigned claim UPDATEs to the recipient's zone node.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::dns::{self, UpdateOp};
use super::ident::{self, find_contact, lookup_identity, split_addr};
use super::state::{self, Contact, Contacts, Intro, OutboxItem, PrekeySecret, Wires};
use super::store::HomeLock;
use super::writer::{is_retryable, Writer};
use super::{chain, now, Ctx};
use crate::proto::envelope;
use crate::proto::erasure;
use crate::proto::keys;
use crate::proto::message::{self, Header, Outgoing, ReplayGuard};
use crate::proto::names;
use crate::proto::records::claim::ClaimRecord;
use crate::proto::records::manifest::SlotManifest;
use crate::proto::records::prekey::Prekey;
use crate::proto::records::revocation::RevocationReason;

/// Manifest TXT length for `n` chunks: `20 + b64len(172 + 32n)`.
fn manifest_len(n: usize) -> usize {
    20 + 4 * (172 + 32 * n).div_ceil(3)
}

/// Largest AEAD plaintext (bytes) whose manifest fits in `cap` bytes, for a header with
/// this `ts`/`ttl` (the header's decimal widths change the overhead slightly).
pub fn max_plaintext(cap: usize, ts: u64, ttl: u64) -> usize {
    let hlen = Header::data([0; 16], [0; 32], [0; 32], ts, ttl).to_json().len();
    // outer = 2 + header + eph 32 + nonce 12 + (pt + tag 16) + trailer 32
    let overhead = 2 + hlen + 32 + 12 + 16 + 32;
    let mut best = 0;
    let (mut lo, mut hi) = (0usize, 200_000usize);
    while lo <= hi {
        let mid = (lo + hi) / 2;
        let (_, n) = erasure::choose_kn(overhead + mid);
        if n <= erasure::MAX_SHARES && manifest_len(n) <= cap {
            best = mid;
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    best
}

/// Pick a random verified, unexpired prekey of a pinned contact (`None` = long-term key).
fn choose_prekey(ctx: &Ctx, c: &Contact, t: u64) -> Option<(u32, [u8; 32])> {
    let spk = c.ed25519().ok()?;
    let vals = ctx.pool.txt(&names::prekeys(&c.username, &c.domain)).ok()?;
    // Never pick a prekey we already used for this contact: a second message on the same
    // one-time key would be undecryptable once the first consumes it.
    let used: state::UsedPrekeys = ctx.store.load(state::USED_PREKEYS).unwrap_or_default();
    let used = used.get(&c.address()).cloned().unwrap_or_default();
    let ok: Vec<Prekey> = vals
        .iter()
        .filter_map(|v| Prekey::parse_and_verify(v, &spk, t))
        .filter(|p| !p.is_expired(t))
        .filter(|p| !used.iter().any(|(id, _)| *id == p.prekey_id))
        .collect();
    if ok.is_empty() {
        return None;
    }
    let mut r = [0u8; 4];
    keys::random_fill(&mut r);
    let p = &ok[u32::from_be_bytes(r) as usize % ok.len()];
    Some((p.prekey_id, p.public_key))
}

/// Where unsigned claim UPDATEs for `zone` go: the cluster's nodes when it is the
/// cluster's zone, else a pool resolver authoritative for it (the zone's node listed
/// directly), else the zone's A/AAAA at the provider port.
fn claim_targets(ctx: &Ctx, zone: &str) -> Vec<SocketAddr> {
    if let Some(servers) = ctx.pool.cluster_servers(zone) {
        return servers;
    }
    if let Some(a) = ctx.pool.authoritative_for(zone) {
        return vec![a];
    }
    let port = std::env::var("DMP_PROVIDER_DNS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .or(ctx.cfg.provider_dns_port)
        .unwrap_or(53);
    ctx.pool.addresses(zone).into_iter().map(|ip| SocketAddr::new(ip, port)).collect()
}

fn publish_claim(
    ctx: &Ctx,
    targets: &[SocketAddr],
    zone: &str,
    claim: (String, String),
    ttl: u64,
) -> Result<()> {
    let ops = [UpdateOp::Add { name: claim.0, value: claim.1, ttl: ttl.min(86400) as u32 }];
    let mut errs = Vec::new();
    for t in targets {
        match dns::update(*t, zone, &ops, None, now()) {
            Ok(()) => return Ok(()),
            Err(e) => errs.push(format!("{t}: {e:#}")),
        }
    }
    let _ = ctx;
    bail!(
        "no claim target accepted it ({})",
        if errs.is_empty() { "no DNS server found for the zone".into() } else { errs.join("; ") }
    )
}

/// Result of one send attempt.
struct Sent {
    msg_id: [u8; 16],
    chunks: usize,
    prekey_id: u32,
    v2: bool,
    claims: Vec<String>,
}

/// Compose one message (prekey chosen and marked used, claims built) without
/// publishing anything.
fn compose(ctx: &Ctx, c: &Contact, body: &str, ttl: u64) -> Result<Wires> {
    let t = now();
    let zone = ctx.cfg.zone();
    let recipient = c.x25519()?;
    let v2 = c.versions.contains(&2);
    let plaintext = if v2 {
        envelope::encode(body.as_bytes(), Some(&ctx.cfg.public_address()))
    } else {
        body.as_bytes().to_vec()
    };
    let cap = ctx.cfg.max_value_bytes;
    let limit = max_plaintext(cap, t, ttl);
    if plaintext.len() > limit {
        bail!(
            "message too large: {} bytes{}, but the node's {cap}-byte value cap allows at most {limit} bytes of (encoded) plaintext per message — shorten it or split it into several messages",
            plaintext.len(),
            if v2 { " with the DMPv2 envelope" } else { "" }
        );
    }
    let prekey = choose_prekey(ctx, c, t);
    let out = Outgoing {
        sender: &ctx.id,
        sender_zone: &zone,
        recipient_x25519: recipient,
        prekey,
        plaintext: &plaintext,
        ttl,
        now: t,
    };
    let composed = message::compose(&out).map_err(|e| anyhow!("composing the message: {e}"))?;
    if composed.manifest.1.len() > cap {
        bail!(
            "message too large for the node's {cap}-byte value cap (manifest {} bytes)",
            composed.manifest.1.len()
        );
    }
    // A prekey is one-time: mark it used now, so no other message composed before this
    // one is published picks it too.
    if let Some((id, _)) = prekey {
        let mut used: state::UsedPrekeys = ctx.store.load(state::USED_PREKEYS).unwrap_or_default();
        for list in used.values_mut() {
            list.retain(|(_, until)| *until > t);
        }
        used.retain(|_, l| !l.is_empty());
        used.entry(c.address()).or_default().push((id, t + 7 * 86_400));
        ctx.store.save(state::USED_PREKEYS, &used)?;
    }
    let ttl32 = ttl.min(u32::MAX as u64) as u32;
    let mut records: Vec<(String, String, u32)> =
        composed.chunks.iter().map(|(n, v)| (n.clone(), v.clone(), ttl32)).collect();
    records.push((composed.manifest.0.clone(), composed.manifest.1.clone(), ttl32));
    let mut claims = Vec::new();
    for pz in claim_zones(ctx, &c.domain) {
        match composed.claim(&ctx.id, &pz) {
            Ok((n, v)) => claims.push((pz, n, v)),
            Err(e) => eprintln!("warning: no claim for {pz}: {e}"),
        }
    }
    Ok(Wires {
        msg_id: hex::encode(composed.msg_id),
        prekey_id: composed.prekey_id,
        v2,
        chunks: composed.chunks.len(),
        records,
        claims,
        exp: t + ttl,
        ttl: ttl32,
    })
}

/// The zones a claim for a message to `recipient_zone` goes to: the recipient's zone,
/// then the claim providers.
fn claim_zones(ctx: &Ctx, recipient_zone: &str) -> Vec<String> {
    let mut zones = vec![recipient_zone.to_string()];
    for (zone, _) in super::providers::claim_providers(ctx) {
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    zones
}

/// Publish composed wires (chunks, then the manifest), then the claims (best effort).
/// Errors wrapping [`super::writer::Retryable`] mean "queue it".
fn publish_wires(ctx: &Ctx, writer: &Writer, w: &Wires) -> Result<Sent> {
    let t = now();
    let (chunks, manifest) = w.records.split_at(w.records.len().saturating_sub(1));
    writer
        .publish(chunks, t)
        .with_context(|| format!("publishing chunks via {}", writer.describe()))?;
    writer
        .publish(manifest, t)
        .with_context(|| format!("publishing the manifest via {}", writer.describe()))?;
    let mut claims = Vec::new();
    for (pz, n, v) in &w.claims {
        let targets = claim_targets(ctx, pz);
        match publish_claim(ctx, &targets, pz, (n.clone(), v.clone()), w.ttl as u64) {
            Ok(()) => claims.push(pz.clone()),
            Err(e) => eprintln!("warning: claim notification to {pz} not delivered (the recipient still finds the message by polling your zone): {e:#}"),
        }
    }
    let mut msg_id = [0u8; 16];
    let _ = hex::decode_to_slice(&w.msg_id, &mut msg_id);
    Ok(Sent { msg_id, chunks: w.chunks, prekey_id: w.prekey_id, v2: w.v2, claims })
}

fn report_sent(to: &str, s: &Sent) {
    println!(
        "sent to {to}: msg {} ({} chunks, {}{}{})",
        hex::encode(s.msg_id),
        s.chunks,
        if s.prekey_id == 0 {
            "long-term key".to_string()
        } else {
            format!("prekey {}", s.prekey_id)
        },
        if s.v2 { ", DMPv2" } else { "" },
        if s.claims.is_empty() {
            String::new()
        } else {
            format!(", claim in {}", s.claims.join(", "))
        }
    );
}

/// Backoff after `attempts` failures: 5 s, 10 s, 20 s … capped at 10 min.
fn backoff(attempts: u32) -> u64 {
    (5u64 << attempts.saturating_sub(1).min(7)).min(600)
}

/// Retry pending outbox items (`all` ignores the backoff). Returns how many remain.
fn flush_outbox(ctx: &Ctx, all: bool) -> Result<usize> {
    let mut items: Vec<OutboxItem> = ctx.store.load(state::OUTBOX)?;
    if items.is_empty() {
        return Ok(0);
    }
    let contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    let writer = ctx.writer()?;
    let t = now();
    let mut keep = Vec::new();
    for mut it in items.drain(..) {
        if !all && it.next_attempt > t {
            keep.push(it);
            continue;
        }
        let Some(c) = contacts.get(&it.to) else {
            eprintln!("outbox: dropping message {} to {}: no longer a contact", it.id, it.to);
            continue;
        };
        // Same wires while the message is live (a retry after a partial publish must
        // not make a second copy); recompose only once they expired.
        let live = it.wires.as_ref().is_some_and(|w| w.exp > t);
        if !live {
            match compose(ctx, c, &it.body, it.ttl) {
                Ok(w) => it.wires = Some(w),
                Err(e) => {
                    eprintln!("outbox: dropping message {} to {}: {e:#}", it.id, it.to);
                    continue;
                }
            }
        }
        let wires = it.wires.clone().expect("composed above");
        match publish_wires(ctx, &writer, &wires) {
            Ok(s) => {
                print!("outbox: ");
                report_sent(&it.to, &s);
            }
            Err(e) if is_retryable(&e) => {
                it.attempts += 1;
                it.next_attempt = now() + backoff(it.attempts);
                it.last_error = format!("{e:#}");
                keep.push(it);
            }
            Err(e) => {
                eprintln!("outbox: dropping message {} to {}: {e:#}", it.id, it.to);
            }
        }
    }
    ctx.store.save(state::OUTBOX, &keep)?;
    Ok(keep.len())
}

/// `send ADDR TEXT`.
pub fn send(ctx: &Ctx, addr: &str, body: &str, ttl: Option<u64>) -> Result<()> {
    let contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    let c = find_contact(&contacts, addr, &ctx.cfg.zone())?.clone();
    let writer = ctx.writer()?;
    let pending = flush_outbox(ctx, false)?;
    if pending > 0 {
        eprintln!("note: {pending} earlier message(s) still in the outbox (see `dnsmesh outbox`)");
    }
    let ttl = ttl.unwrap_or(ctx.cfg.message_ttl);
    let wires = compose(ctx, &c, body, ttl)?;
    match publish_wires(ctx, &writer, &wires) {
        Ok(s) => {
            report_sent(&c.address(), &s);
            Ok(())
        }
        Err(e) if is_retryable(&e) => {
            let mut items: Vec<OutboxItem> = ctx.store.load(state::OUTBOX)?;
            let mut idb = [0u8; 8];
            keys::random_fill(&mut idb);
            let it = OutboxItem {
                id: hex::encode(idb),
                to: c.address(),
                body: body.to_string(),
                ttl,
                created: now(),
                attempts: 1,
                next_attempt: now() + backoff(1),
                last_error: format!("{e:#}"),
                wires: Some(wires),
            };
            println!("queued {} for {} in the outbox: {e:#}", it.id, it.to);
            println!("it is retried on the next send/recv, or now with `dnsmesh outbox --retry`");
            items.push(it);
            ctx.store.save(state::OUTBOX, &items)?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `outbox [--retry]`.
pub fn outbox(ctx: &Ctx, retry: bool) -> Result<()> {
    if retry {
        let left = flush_outbox(ctx, true)?;
        if left > 0 {
            let items: Vec<OutboxItem> = ctx.store.load(state::OUTBOX)?;
            list_outbox(&items);
            bail!("{left} message(s) still pending — the node is still unreachable? check with `dnsmesh doctor`");
        }
        println!("outbox empty");
        return Ok(());
    }
    let items: Vec<OutboxItem> = ctx.store.load(state::OUTBOX)?;
    if items.is_empty() {
        println!("outbox empty");
    }
    list_outbox(&items);
    Ok(())
}

fn list_outbox(items: &[OutboxItem]) {
    let t = now();
    for it in items {
        println!(
            "{}  to {}  msg {}  {} bytes  queued {} s ago  {} attempt(s)  next retry in {} s\n    last error: {}",
            it.id,
            it.to,
            it.wires.as_ref().map_or("-", |w| w.msg_id.as_str()),
            it.body.len(),
            t.saturating_sub(it.created),
            it.attempts,
            it.next_attempt.saturating_sub(t),
            it.last_error
        );
    }
}

/// A delivered message.
pub(super) struct Delivered {
    pub from: String,
    pub sender_spk: [u8; 32],
    pub msg_id: [u8; 16],
    pub ts: u64,
    pub zone: String,
    pub prekey_id: u32,
    pub body: String,
    pub claimed_from: Option<String>,
}

/// The contact (if any) whose pinned key signs in `zone`: the own zone accepts any
/// pinned key, another zone only contacts homed there (§5.2 sender gate).
fn pinned_sender<'c>(
    contacts: &'c Contacts,
    spk: &[u8; 32],
    zone: &str,
    own_zone: &str,
) -> Option<&'c Contact> {
    let h = hex::encode(spk);
    contacts.values().find(|c| c.ed25519_hex == h && (zone == own_zone || c.domain == zone))
}

/// Per-pass receive state, saved at the end.
struct Pass<'a> {
    ctx: &'a Ctx,
    contacts: Contacts,
    contacts_changed: bool,
    /// Blocked sender keys (hex).
    blocked: Vec<String>,
    /// Per-contact rotation lookups done this pass: address → (walk, new identity).
    follows: std::collections::HashMap<
        String,
        (chain::Walk, Option<crate::proto::records::identity::IdentityRecord>),
    >,
    /// Per-contact revocation checks done this pass: address → revoked?
    revoked: std::collections::HashMap<String, Option<RevocationReason>>,
    notes: Vec<String>,
    next_intro: u64,
    replay: ReplayGuard,
    prekeys: Vec<PrekeySecret>,
    intros: Vec<Intro>,
    new_intros: Vec<Intro>,
    delivered: Vec<Delivered>,
    consumed: Vec<PrekeySecret>,
    warnings: Vec<String>,
    now: u64,
}

impl Pass<'_> {
    fn txt(&mut self, name: &str) -> Vec<String> {
        match self.ctx.pool.txt(name) {
            Ok(v) => v,
            Err(e) => {
                if self.warnings.len() < 3 {
                    self.warnings.push(format!("{e:#}"));
                }
                Vec::new()
            }
        }
    }

    /// Assemble and decrypt a manifest's message from `zone`.
    fn open(&mut self, m: &SlotManifest, zone: &str) -> Result<message::Opened> {
        let msg_key = names::message_key(&m.msg_id, &m.recipient_id, &m.sender_spk);
        let ctx = self.ctx;
        let outer = message::assemble(m, |i| {
            ctx.pool.txt(&names::chunk(i, &msg_key, zone)).unwrap_or_default()
        })
        .ok_or_else(|| anyhow!("chunks missing or corrupt"))?;
        let secret = if m.prekey_id != 0 {
            let p = self
                .prekeys
                .iter()
                .find(|p| p.id == m.prekey_id && p.exp >= self.now)
                .ok_or_else(|| anyhow!("prekey {} is unknown or expired", m.prekey_id))?;
            Some(state::hex32(&p.private_hex)?)
        } else {
            None
        };
        message::open(&outer, m, &ctx.id, secret.as_ref(), self.now).map_err(|e| anyhow!("{e}"))
    }

    /// A pinned contact whose rotation chain (from the pinned key) ends at `spk`: the pin
    /// is moved to the new key and the contact returned.
    fn follow_rotation(&mut self, spk: &[u8; 32], zone: &str, own_zone: &str) -> Option<Contact> {
        if !self.ctx.cfg.rotation_chain_enabled {
            return None;
        }
        let cands: Vec<Contact> = self
            .contacts
            .values()
            .filter(|c| !c.ed25519_hex.is_empty() && (zone == own_zone || c.domain == zone))
            .cloned()
            .collect();
        for c in cands {
            let Ok(pinned) = c.ed25519() else { continue };
            let key = c.address();
            let (walk, rec) = match self.follows.get(&key) {
                Some(x) => x.clone(),
                None => {
                    let r = ident::follow(&self.ctx.pool, &c.username, &c.domain, true, &pinned)
                        .unwrap_or((chain::Walk::Unchanged, None));
                    self.follows.insert(key.clone(), r.clone());
                    r
                }
            };
            if let (chain::Walk::Head(h), Some(rec)) = (walk, rec) {
                if h == *spk {
                    let mut n = c.clone();
                    n.x25519_hex = hex::encode(rec.x25519_pk);
                    n.ed25519_hex = hex::encode(rec.ed25519_spk);
                    n.versions = rec.versions.clone();
                    self.contacts.insert(key.clone(), n.clone());
                    self.contacts_changed = true;
                    self.notes.push(format!(
                        "followed {key}'s key rotation to {}",
                        keys::fingerprint(&rec.x25519_pk, &rec.ed25519_spk)
                    ));
                    return Some(n);
                }
            }
        }
        None
    }

    /// Has the pinned contact's key been revoked? (One lookup per contact per pass.)
    fn pinned_revoked(&mut self, c: &Contact) -> Option<RevocationReason> {
        if !self.ctx.cfg.rotation_chain_enabled {
            return None;
        }
        let key = c.address();
        if let Some(r) = self.revoked.get(&key) {
            return *r;
        }
        let r = c.ed25519().ok().and_then(|spk| {
            chain::Chain::load(&self.ctx.pool, &c.username, &c.domain, true)
                .ok()
                .and_then(|ch| ch.revoked(&spk))
        });
        self.revoked.insert(key, r);
        r
    }

    /// Gate, dedupe, decrypt and file one verified manifest found in `zone`.
    fn handle(&mut self, m: &SlotManifest, zone: &str, own_zone: &str, via_claim: bool) {
        let spk_hex = hex::encode(m.sender_spk);
        if self.blocked.contains(&spk_hex) {
            return;
        }
        if self.replay.is_seen(&m.sender_spk, &m.msg_id, self.now) {
            return;
        }
        let mut pinned = pinned_sender(&self.contacts, &m.sender_spk, zone, own_zone).cloned();
        if pinned.is_none() {
            pinned = self.follow_rotation(&m.sender_spk, zone, own_zone);
        }
        if let Some(c) = &pinned {
            if let Some(r) = self.pinned_revoked(c) {
                if self.replay.claim(&m.sender_spk, &m.msg_id, self.now) {
                    self.replay.commit(&m.sender_spk, &m.msg_id, m.exp);
                    self.warnings.push(format!(
                        "refused a message from {}: its key is REVOKED (reason {}) — run `dnsmesh identity fetch {}` to see the current key",
                        c.address(),
                        chain::reason_name(r),
                        c.address()
                    ));
                }
                return;
            }
        }
        let no_pins = self.contacts.is_empty();
        if pinned.is_none() && !via_claim && !(self.ctx.cfg.allow_tofu && no_pins) {
            return;
        }
        let id_hex = hex::encode(m.msg_id);
        if self.intros.iter().any(|i| i.sender_spk_hex == spk_hex && i.msg_id_hex == id_hex) {
            return;
        }
        if !self.replay.claim(&m.sender_spk, &m.msg_id, self.now) {
            return;
        }
        let opened = match self.open(m, zone) {
            Ok(o) => o,
            Err(e) => {
                self.replay.release(&m.sender_spk, &m.msg_id);
                self.warnings.push(format!("message {id_hex} from {zone} not readable yet: {e:#}"));
                return;
            }
        };
        self.replay.commit(&m.sender_spk, &m.msg_id, m.exp);
        if opened.prekey_id != 0 {
            if let Some(pos) = self.prekeys.iter().position(|p| p.id == opened.prekey_id) {
                self.consumed.push(self.prekeys.remove(pos));
            }
        }
        let (body, from) = envelope::decode(&opened.plaintext);
        let body = String::from_utf8_lossy(&body).into_owned();
        match pinned {
            Some(c) => self.delivered.push(Delivered {
                from: c.address(),
                sender_spk: m.sender_spk,
                msg_id: m.msg_id,
                ts: opened.header.ts,
                zone: zone.to_string(),
                prekey_id: opened.prekey_id,
                body,
                claimed_from: from,
            }),
            None if self.ctx.cfg.allow_tofu && no_pins && !via_claim => {
                self.delivered.push(Delivered {
                    from: from
                        .clone()
                        .unwrap_or_else(|| format!("unknown sender {}", &spk_hex[..16])),
                    sender_spk: m.sender_spk,
                    msg_id: m.msg_id,
                    ts: opened.header.ts,
                    zone: zone.to_string(),
                    prekey_id: opened.prekey_id,
                    body,
                    claimed_from: from,
                })
            }
            None => {
                let verified = from.as_deref().is_some_and(|f| self.verify_from(f, &m.sender_spk));
                self.next_intro += 1;
                let intro = Intro {
                    id: self.next_intro,
                    sender_spk_hex: spk_hex,
                    msg_id_hex: id_hex,
                    sender_zone: zone.to_string(),
                    claimed_from: from,
                    from_verified: verified,
                    body,
                    ts: opened.header.ts,
                    exp: m.exp,
                };
                self.intros.push(intro.clone());
                self.new_intros.push(intro);
            }
        }
    }

    /// Does the identity published for `addr` carry `spk`?
    fn verify_from(&self, addr: &str, spk: &[u8; 32]) -> bool {
        verify_from(&self.ctx.pool, addr, spk)
    }
}

/// Does the identity published for `addr` carry `spk`?
pub(super) fn verify_from(pool: &dns::Pool, addr: &str, spk: &[u8; 32]) -> bool {
    let (user, zone) = split_addr(addr);
    let Some(zone) = zone else { return false };
    lookup_identity(pool, &user, &zone, true)
        .map(|recs| recs.iter().any(|r| r.ed25519_spk == *spk))
        .unwrap_or(false)
}

/// Which receive phases run (`recv --primary-only` / `--skip-primary`).
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Phase 1: claims in the own zone and at the claim providers.
    pub claims: bool,
    /// Phase 2: the slot walk over the own zone and the contacts' zones.
    pub slots: bool,
}

/// What one receive pass found.
struct PassResult {
    delivered: Vec<Delivered>,
    new_intros: Vec<Intro>,
    pending_intros: usize,
    warnings: Vec<String>,
}

/// One receive pass over claims and slots.
fn pass(ctx: &Ctx, phases: Phases) -> Result<PassResult> {
    let t = now();
    let own_zone = ctx.cfg.zone();
    let uid = ctx.id.user_id();
    let replay_json: String = ctx.store.load(state::REPLAY)?;
    let mut replay = if replay_json.is_empty() {
        ReplayGuard::new()
    } else {
        ReplayGuard::from_json(&replay_json).map_err(|e| anyhow!("replay cache: {e}"))?
    };
    replay.prune(t);
    let blocked: Vec<state::Blocked> = ctx.store.load(state::BLOCKED)?;
    let mut p = Pass {
        ctx,
        contacts: ctx.store.load(state::CONTACTS)?,
        contacts_changed: false,
        blocked: blocked.into_iter().map(|b| b.spk_hex).collect(),
        follows: Default::default(),
        revoked: Default::default(),
        notes: Vec::new(),
        next_intro: ctx.store.load(state::INTRO_SEQ)?,
        replay,
        prekeys: ctx.store.load(state::PREKEYS)?,
        intros: ctx.store.load(state::INTROS)?,
        new_intros: Vec::new(),
        delivered: Vec::new(),
        consumed: Vec::new(),
        warnings: Vec::new(),
        now: t,
    };
    p.intros.retain(|i| i.exp >= t && !p.blocked.contains(&i.sender_spk_hex));
    // Number intros queued before numbering existed.
    for i in p.intros.iter_mut().filter(|i| i.id == 0) {
        p.next_intro += 1;
        i.id = p.next_intro;
    }
    // Intros whose sender has since been pinned become messages.
    let mut still = Vec::new();
    for i in std::mem::take(&mut p.intros) {
        let spk = state::hex32(&i.sender_spk_hex)?;
        match pinned_sender(&p.contacts, &spk, &i.sender_zone, &own_zone) {
            Some(c) => p.delivered.push(Delivered {
                from: c.address(),
                sender_spk: spk,
                msg_id: <[u8; 16]>::try_from(
                    hex::decode(&i.msg_id_hex).unwrap_or_default().as_slice(),
                )
                .unwrap_or([0; 16]),
                ts: i.ts,
                zone: i.sender_zone.clone(),
                prekey_id: 0,
                body: i.body.clone(),
                claimed_from: i.claimed_from.clone(),
            }),
            None => still.push(i),
        }
    }
    p.intros = still;
    // Phase 1: claims in the own zone, a configured provider zone, and the claim
    // providers (override, discovered, seed).
    let mut claim_zones = vec![own_zone.clone()];
    if let Some(z) = &ctx.cfg.claim_provider_zone {
        if !claim_zones.contains(z) {
            claim_zones.push(z.clone());
        }
    }
    for (z, _) in super::providers::claim_providers(ctx) {
        if !claim_zones.contains(&z) {
            claim_zones.push(z);
        }
    }
    if !phases.claims {
        claim_zones.clear();
    }
    for cz in &claim_zones {
        for s in 0..names::SLOT_COUNT {
            for v in p.txt(&names::claim(s, &uid, cz)) {
                let Some(c) = ClaimRecord::parse_and_verify(&v, t) else {
                    continue;
                };
                if p.blocked.contains(&hex::encode(c.sender_spk)) {
                    continue;
                }
                if p.replay.is_seen(&c.sender_spk, &c.msg_id, t) {
                    continue;
                }
                let zone = c.sender_mailbox_domain.trim_end_matches('.').to_ascii_lowercase();
                let mut found = None;
                'slots: for s2 in 0..names::SLOT_COUNT {
                    for mv in p.txt(&names::slot(s2, &uid, &zone)) {
                        if let Some(m) = message::accept_manifest(&mv, &uid, t) {
                            if m.msg_id == c.msg_id && m.sender_spk == c.sender_spk {
                                found = Some(m);
                                break 'slots;
                            }
                        }
                    }
                }
                if let Some(m) = found {
                    p.handle(&m, &zone, &own_zone, true);
                }
            }
        }
    }
    // Phase 2: slot walk over the own zone and every contact's zone.
    let mut zones = vec![own_zone.clone()];
    for c in p.contacts.values() {
        if !zones.contains(&c.domain) {
            zones.push(c.domain.clone());
        }
    }
    if !phases.slots {
        zones.clear();
    }
    for zone in &zones {
        for s in 0..names::SLOT_COUNT {
            for v in p.txt(&names::slot(s, &uid, zone)) {
                if let Some(m) = message::accept_manifest(&v, &uid, t) {
                    p.handle(&m, zone, &own_zone, false);
                }
            }
        }
    }
    // Persist before touching the network again, so a crash never redelivers.
    ctx.store.save(state::REPLAY, &p.replay.to_json())?;
    ctx.store.save(state::PREKEYS, &p.prekeys)?;
    ctx.store.save(state::INTROS, &p.intros)?;
    ctx.store.save(state::INTRO_SEQ, &p.next_intro)?;
    if p.contacts_changed {
        ctx.store.save(state::CONTACTS, &p.contacts)?;
    }
    p.warnings.append(&mut p.notes);
    if !p.consumed.is_empty() {
        match ctx.writer() {
            Ok(w) => {
                for k in &p.consumed {
                    if k.published {
                        if let Err(e) = w.delete(&k.name, &k.txt, t) {
                            p.warnings.push(format!(
                                "used prekey {} not withdrawn from the node: {e:#}",
                                k.id
                            ));
                        }
                    }
                }
            }
            Err(e) => p.warnings.push(format!("used prekeys not withdrawn: {e:#}")),
        }
    }
    let pending = p.intros.len();
    Ok(PassResult {
        delivered: p.delivered,
        new_intros: p.new_intros,
        pending_intros: pending,
        warnings: p.warnings,
    })
}

pub(super) fn print_message(d: &Delivered, json: bool) {
    if json {
        let v = serde_json::json!({
            "kind": "message",
            "from": d.from,
            "sender_spk": hex::encode(d.sender_spk),
            "msg_id": hex::encode(d.msg_id),
            "ts": d.ts,
            "zone": d.zone,
            "prekey_id": d.prekey_id,
            "claimed_from": d.claimed_from,
            "text": d.body,
        });
        println!("{v}");
    } else {
        let when =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.ts));
        println!(
            "from {} at {} (msg {}{}):",
            d.from,
            when,
            hex::encode(&d.msg_id[..4]),
            if d.prekey_id != 0 { ", forward secret" } else { "" }
        );
        for line in d.body.split('\n') {
            println!("  {line}");
        }
    }
}

pub(super) fn print_intro(i: &Intro, json: bool) {
    let who = match (&i.claimed_from, i.from_verified) {
        (Some(f), true) => f.clone(),
        (Some(f), false) => format!("{f} (unverified claim)"),
        (None, _) => format!("unknown key {}", i.sender_spk_hex.get(..16).unwrap_or("?")),
    };
    if json {
        let v = serde_json::json!({
            "kind": "intro",
            "intro_id": i.id,
            "from": who,
            "sender_spk": i.sender_spk_hex,
            "msg_id": i.msg_id_hex,
            "ts": i.ts,
            "zone": i.sender_zone,
            "claimed_from": i.claimed_from,
            "from_verified": i.from_verified,
            "text": i.body,
        });
        println!("{v}");
    } else {
        println!(
            "intro #{} from {who} in zone {} (sender not pinned; not delivered to the inbox):",
            i.id, i.sender_zone
        );
        for line in i.body.split('\n') {
            println!("  | {line}");
        }
        println!(
            "  `dnsmesh intro accept {n}` delivers it, `intro trust {n}` also pins the sender, `intro block {n}` drops it and blocks the sender",
            n = i.id
        );
    }
}

/// `recv [--watch] [--json]`.
pub fn recv(
    home: &Path,
    watch: bool,
    json: bool,
    interval: u64,
    max_polls: Option<u64>,
    phases: Phases,
) -> Result<()> {
    let ctx = Ctx::open_with(home, false)?;
    let mut polls = 0u64;
    let mut total = 0usize;
    // With --watch, the streams of changed mailbox names (the home node's, and each claim
    // provider's, where senders' claims arrive) wake the loop at once; the poll every
    // `interval` seconds stays as the fallback (reference nodes have no stream, a stream
    // can drop). `watch_stream: false` in config.yaml turns them off.
    let mut streams = (watch && ctx.cfg.watch_stream != Some(false)).then(|| {
        let mailbox = names::mailbox_hash(&ctx.id.user_id());
        let mut bases: Vec<String> = Vec::new();
        if !ctx.cfg.endpoint.is_empty() {
            bases.push(ctx.cfg.endpoint.clone());
        }
        bases.extend(super::providers::claim_providers(&ctx).into_iter().map(|(_, url)| url));
        let urls = bases
            .iter()
            .map(|b| format!("{}/v1/watch/mb-{mailbox}", b.trim_end_matches('/')))
            .collect();
        super::watch::Watches::start(urls)
    });
    let mut stream_state =
        streams.as_ref().map(|w| w.describe()).unwrap_or_else(|| "polling".to_string());
    loop {
        polls += 1;
        let (delivered, intros, pending_intros, warnings, outbox_left) = {
            let _lock = HomeLock::acquire(home)?;
            let outbox_left = flush_outbox(&ctx, false).unwrap_or_else(|e| {
                eprintln!("warning: outbox: {e:#}");
                0
            });
            let r = pass(&ctx, phases)?;
            (r.delivered, r.new_intros, r.pending_intros, r.warnings, outbox_left)
        };
        if watch {
            eprint!("\r\x1b[2K");
        }
        for d in &delivered {
            print_message(d, json);
        }
        for i in &intros {
            print_intro(i, json);
        }
        total += delivered.len();
        let _ = std::io::stdout().flush();
        if !watch {
            if delivered.is_empty() && intros.is_empty() && !json {
                println!("no new messages");
            }
            if pending_intros > 0 && !json {
                eprintln!("{pending_intros} intro(s) from unpinned senders pending");
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if outbox_left > 0 {
                eprintln!("note: {outbox_left} message(s) waiting in the outbox");
            }
            return Ok(());
        }
        let status = format!(
            "watching {} ({stream_state}): pass {polls}, {total} message(s), {pending_intros} intro(s), outbox {outbox_left}{} — next poll in {interval}s (Ctrl-C stops)",
            ctx.cfg.address(),
            warnings.first().map(|w| format!(", last error: {}", w.chars().take(60).collect::<String>())).unwrap_or_default()
        );
        eprint!("\r\x1b[2K{status}");
        let _ = std::io::stderr().flush();
        if max_polls.is_some_and(|m| polls >= m) {
            eprintln!();
            return Ok(());
        }
        let wait = std::time::Duration::from_secs(interval.max(1));
        let Some(w) = streams.as_mut() else {
            std::thread::sleep(wait);
            continue;
        };
        // Until the next poll is due, a change named by a stream starts a pass at once.
        w.wait(wait, |state| {
            stream_state = state.to_string();
            eprint!("\r\x1b[2Kwatching {} ({stream_state})", ctx.cfg.address());
            let _ = std::io::stderr().flush();
        });
    }
}
