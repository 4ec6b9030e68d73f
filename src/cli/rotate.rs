//! Key rotation and revocation (protocol.md §7): `identity rotate` publishes a rotation
//! record co-signed by the old and new keys, the new identity, and for a compromised or
//! lost key a revocation self-signed by the old key. Fetchers walk rotation chains from
//! a pinned key (at most [`MAX_HOPS`] hops) and refuse revoked keys.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::dns::Pool;
use super::state::{self, PrekeySecret, Published};
use super::store::Store;
use super::{derive, ident, now, read_passphrase_file, Ctx};
use crate::proto::names;
use crate::proto::records::identity::IdentityRecord;
use crate::proto::records::revocation::{RevocationReason, RevocationRecord};
use crate::proto::records::rotation::{RotationRecord, SubjectType};

/// Longest rotation chain followed from a pinned key (the reference's `max_hops`).
pub const MAX_HOPS: usize = 4;

/// Verified rotations and revocations for one user subject.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    pub rotations: Vec<RotationRecord>,
    pub revocations: Vec<RevocationRecord>,
}

/// Where a pinned key leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// No rotation from the pinned key.
    Unchanged,
    /// The chain ends at this key.
    Head([u8; 32]),
    /// The pinned key (or a key on the chain) is revoked: trust ends.
    Revoked(RevocationReason),
    /// The chain is unusable (fork, non-increasing seq, loop, too long).
    Broken(String),
}

/// The rotation names of `user@zone`: zone-anchored (when `anchored`) then hashed.
pub fn names_for(user: &str, zone: &str, anchored: bool) -> Vec<String> {
    let mut v = Vec::new();
    if anchored {
        v.push(names::rotation_anchored(zone));
    }
    v.push(names::rotation_hashed(user, zone));
    v
}

impl Chain {
    /// Fetch and verify the rotation RRsets of `user@zone` (records for other subjects
    /// and unverifiable ones are ignored).
    pub fn load(pool: &Pool, user: &str, zone: &str, anchored: bool) -> Result<Chain> {
        let subject = format!("{user}@{zone}");
        let t = now();
        let mut c = Chain::default();
        for n in names_for(user, zone, anchored) {
            for v in pool.txt(&n)? {
                if let Some(r) = RotationRecord::parse_and_verify(&v, None, Some(&subject), t) {
                    if r.subject_type == SubjectType::UserIdentity && !c.rotations.contains(&r) {
                        c.rotations.push(r);
                    }
                } else if let Some(r) =
                    RevocationRecord::parse_and_verify(&v, None, Some(&subject), None, t)
                {
                    if r.subject_type == SubjectType::UserIdentity && !c.revocations.contains(&r) {
                        c.revocations.push(r);
                    }
                }
            }
        }
        Ok(c)
    }

    /// Is `spk` revoked? (The reason of the first revocation found.)
    pub fn revoked(&self, spk: &[u8; 32]) -> Option<RevocationReason> {
        self.revocations.iter().find(|r| r.revoked_spk == *spk).map(|r| r.reason)
    }

    /// Does some rotation move away from `spk`?
    pub fn rotated_away(&self, spk: &[u8; 32]) -> bool {
        self.rotations.iter().any(|r| r.old_spk == *spk)
    }

    /// Follow the chain from `pinned` (§7 walk).
    pub fn walk(&self, pinned: &[u8; 32]) -> Walk {
        if let Some(r) = self.revoked(pinned) {
            return Walk::Revoked(r);
        }
        let mut cur = *pinned;
        let mut prev_seq: Option<u64> = None;
        let mut visited = vec![cur];
        for hop in 0..=MAX_HOPS {
            let next: Vec<&RotationRecord> =
                self.rotations.iter().filter(|r| r.old_spk == cur).collect();
            if next.is_empty() {
                return if hop == 0 { Walk::Unchanged } else { Walk::Head(cur) };
            }
            if hop == MAX_HOPS {
                return Walk::Broken(format!("longer than {MAX_HOPS} rotations"));
            }
            let first = next[0].new_spk;
            if next.iter().any(|r| r.new_spk != first) {
                return Walk::Broken("two different rotations from one key (fork)".into());
            }
            let Some(r) = next.iter().min_by_key(|r| r.seq) else {
                return Walk::Broken("no rotation".into());
            };
            if prev_seq.is_some_and(|p| r.seq <= p) {
                return Walk::Broken("rotation seq does not increase".into());
            }
            if let Some(reason) = self.revoked(&r.new_spk) {
                return Walk::Revoked(reason);
            }
            if visited.contains(&r.new_spk) {
                return Walk::Broken("rotation loop".into());
            }
            prev_seq = Some(r.seq);
            cur = r.new_spk;
            visited.push(cur);
        }
        Walk::Broken(format!("longer than {MAX_HOPS} rotations"))
    }
}

/// Human name of a revocation reason.
pub fn reason_name(r: RevocationReason) -> &'static str {
    match r {
        RevocationReason::Compromise => "compromise",
        RevocationReason::Routine => "routine",
        RevocationReason::LostKey => "lost_key",
        RevocationReason::Other => "other",
    }
}

/// Arguments of `identity rotate`.
pub struct RotateArgs {
    pub reason: String,
    pub new_passphrase_file: Option<PathBuf>,
    pub ttl: u32,
    pub exp_seconds: u64,
    pub yes: bool,
    pub advertise_v2: bool,
}

fn new_passphrase(a: &RotateArgs) -> Result<String> {
    if let Some(f) = &a.new_passphrase_file {
        return read_passphrase_file(f);
    }
    if let Ok(p) = std::env::var("DMP_NEW_PASSPHRASE") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new passphrase: set DMP_NEW_PASSPHRASE or pass --new-passphrase-file FILE");
    }
    let p = rpassword::prompt_password("new passphrase: ").context("reading the passphrase")?;
    let q =
        rpassword::prompt_password("new passphrase again: ").context("reading the passphrase")?;
    if p != q {
        bail!("the two new passphrases differ");
    }
    if p.is_empty() {
        bail!("empty passphrase");
    }
    Ok(p)
}

/// `identity rotate`: publish rotation (+ revocation), the new identity and fresh
/// prekeys; re-seal local state under the new key; record the new key in config.
pub fn rotate(ctx: Ctx, home: &Path, a: RotateArgs) -> Result<()> {
    let reason = match a.reason.as_str() {
        "routine" => None,
        "compromise" => Some(RevocationReason::Compromise),
        "lost_key" => Some(RevocationReason::LostKey),
        r => bail!("--reason must be routine, compromise or lost_key, got `{r}`"),
    };
    if a.exp_seconds == 0 || a.exp_seconds > 5 * 365 * 86_400 {
        bail!("--exp-seconds must be 1 .. 5 years");
    }
    let pass = new_passphrase(&a)?;
    let new_id = derive(&ctx.cfg, &pass)?;
    let old = &ctx.id;
    if new_id.ed25519_public() == old.ed25519_public() {
        bail!("the new passphrase derives the same key — choose a different passphrase");
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("rotation replaces your published key; pass --yes to confirm");
        }
        eprint!(
            "rotate {} from {} to {} (reason {})? type yes: ",
            ctx.cfg.address(),
            old.fingerprint(),
            new_id.fingerprint(),
            a.reason
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != "yes" {
            bail!("not confirmed; nothing changed");
        }
    }
    let t = now();
    let zone = ctx.cfg.zone();
    let user = ctx.cfg.username.clone();
    let writer = ctx.writer()?;
    // (rotation name, subject) pairs: hashed under the zone, and zone-anchored.
    let mut targets = vec![(names::rotation_hashed(&user, &zone), format!("{user}@{zone}"))];
    if let Some(d) = ctx.cfg.anchor() {
        targets.push((names::rotation_anchored(&d), format!("{user}@{d}")));
    }
    let mut records = Vec::new();
    for (name, subject) in &targets {
        let rot = RotationRecord {
            subject_type: SubjectType::UserIdentity,
            subject: subject.clone(),
            old_spk: old.ed25519_public(),
            new_spk: new_id.ed25519_public(),
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(t * 1000),
            ts: t,
            exp: t + a.exp_seconds,
        };
        let wire = rot
            .sign(old.signing_key(), new_id.signing_key())
            .map_err(|e| anyhow!("signing the rotation record: {e}"))?;
        records.push((name.clone(), wire, a.ttl));
        if let Some(r) = reason {
            let rev = RevocationRecord {
                subject_type: SubjectType::UserIdentity,
                subject: subject.clone(),
                revoked_spk: old.ed25519_public(),
                reason: r,
                ts: t,
            };
            let wire =
                rev.sign(old.signing_key()).map_err(|e| anyhow!("signing the revocation: {e}"))?;
            records.push((name.clone(), wire, a.ttl));
        }
    }
    // The new identity record(s).
    let rec = IdentityRecord {
        username: user.clone(),
        x25519_pk: new_id.x25519_public(),
        ed25519_spk: new_id.ed25519_public(),
        ts: t,
        versions: if a.advertise_v2 { vec![1, 2] } else { vec![1] },
    };
    let id_txt = rec.sign(&new_id).map_err(|e| anyhow!("building the identity record: {e}"))?;
    let mut id_names = vec![names::identity(&user, &zone)];
    if let Some(d) = ctx.cfg.anchor() {
        id_names.push(names::identity_anchored(&d));
    }
    for n in &id_names {
        records.push((n.clone(), id_txt.clone(), a.ttl));
    }
    writer.publish(&records, t).map_err(|e| {
        anyhow!(
            "publishing the rotation via {}: {e:#} (nothing changed locally; retry)",
            writer.describe()
        )
    })?;
    for (n, _, _) in &records {
        if n.starts_with("rotate.") {
            println!(
                "published {} to {n}",
                if records.iter().filter(|r| &r.0 == n).count() > 1 {
                    "rotation + revocation"
                } else {
                    "rotation"
                }
            );
        }
    }
    // Withdraw the old identity and prekeys (best effort; fetchers also filter them).
    let mut published: Published = ctx.store.load(state::PUBLISHED)?;
    for (n, v) in published.identity.take().into_iter().chain(published.anchored.take()) {
        if let Err(e) = writer.delete(&n, &v, t) {
            eprintln!("warning: could not withdraw the old identity at {n}: {e:#}");
        }
    }
    published.identity = Some((id_names[0].clone(), id_txt.clone()));
    published.anchored = id_names.get(1).map(|n| (n.clone(), id_txt.clone()));
    let mut prekeys: Vec<PrekeySecret> = ctx.store.load(state::PREKEYS)?;
    for p in prekeys.iter_mut().filter(|p| p.published) {
        if writer.delete(&p.name, &p.txt, t).is_ok() {
            p.published = false;
        }
    }
    ctx.store.save(state::PREKEYS, &prekeys)?;
    ctx.store.save(state::PUBLISHED, &published)?;
    // Re-seal local state under the new key, then record the new key.
    let new_store = Store::open(home, &new_id)?;
    ctx.store.rekey(&new_store)?;
    let mut cfg = ctx.cfg.clone();
    let mut file_cfg = super::config::Config::load(home)?;
    file_cfg.verify_pubkey = Some(hex::encode(new_id.ed25519_public()));
    if let Some(f) = &a.new_passphrase_file {
        file_cfg.passphrase_file =
            Some(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()).display().to_string());
    }
    file_cfg.save(home)?;
    cfg.verify_pubkey = file_cfg.verify_pubkey.clone();
    println!("published the new identity to {}", id_names.join(", "));
    println!("rotated {}: {} → {}", ctx.cfg.address(), ctx.id.fingerprint(), new_id.fingerprint());
    if let Some(r) = reason {
        println!("revoked the old key (reason {})", reason_name(r));
    }
    // Fresh prekeys under the new key.
    let Ctx { pool, cluster, _lock, .. } = ctx;
    let nctx = Ctx { cfg, id: new_id, store: new_store, pool, cluster, _lock };
    if let Err(e) = ident::refresh_prekeys(&nctx, 25, 86_400) {
        eprintln!("warning: {e:#} — run `dnsmesh identity refresh-prekeys`");
    }
    if a.new_passphrase_file.is_none() && nctx.cfg.passphrase_file.is_some() {
        eprintln!("note: config.yaml's passphrase_file still holds the OLD passphrase — update it");
    }
    println!("from now on use the new passphrase (DMP_PASSPHRASE)");
    Ok(())
}

/// Verified identity records of `user@zone` after the §7 filters: revoked keys dropped;
/// when several remain, those rotated away from are dropped if exactly one is left.
pub fn current_identities(
    recs: Vec<IdentityRecord>,
    chain: &Chain,
) -> (Vec<IdentityRecord>, Vec<IdentityRecord>) {
    let (revoked, live): (Vec<_>, Vec<_>) =
        recs.into_iter().partition(|r| chain.revoked(&r.ed25519_spk).is_some());
    if live.len() > 1 {
        let fresh: Vec<IdentityRecord> =
            live.iter().filter(|r| !chain.rotated_away(&r.ed25519_spk)).cloned().collect();
        if fresh.len() == 1 {
            return (fresh, revoked);
        }
    }
    (live, revoked)
}

/// The identity a pinned key leads to, for following a rotated contact: `Ok(Some(rec))`
/// when the chain from `pinned` ends at a key with a published identity.
pub fn follow(
    pool: &Pool,
    user: &str,
    zone: &str,
    anchored: bool,
    pinned: &[u8; 32],
) -> Result<(Walk, Option<IdentityRecord>)> {
    let chain = Chain::load(pool, user, zone, anchored)?;
    let w = chain.walk(pinned);
    if let Walk::Head(h) = &w {
        let recs = ident::lookup_identity(pool, user, zone, anchored)?;
        return Ok((w.clone(), recs.into_iter().find(|r| r.ed25519_spk == *h)));
    }
    Ok((w, None))
}
