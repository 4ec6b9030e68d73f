//! Key rotation and revocation (protocol.md §7): `identity rotate` publishes a rotation
//! record co-signed by the old and new keys, the new identity, and for a compromised or
//! lost key a revocation self-signed by the old key. Fetchers walk rotation chains from
//! a pinned key (`chain`, at most `chain::MAX_HOPS` hops) and refuse revoked keys.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::chain::reason_name;
use super::state::{self, PrekeySecret, Published};
use super::store::Store;
use super::{derive, ident, now, read_passphrase_file, Ctx};
use crate::proto::names;
use crate::proto::records::identity::IdentityRecord;
use crate::proto::records::revocation::{RevocationReason, RevocationRecord};
use crate::proto::records::rotation::{RotationRecord, SubjectType};

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
