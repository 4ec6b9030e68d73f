//! `intro list|accept|trust|block`: the queue of decrypted first-contact messages from
//! senders we have not pinned (filled by `recv`). Intros keep their number while queued;
//! the queue and the block list are sealed state.

use anyhow::{anyhow, bail, Result};

use super::ident::{lookup_identity, split_addr};
use super::mail::{print_intro, print_message, verify_from, Delivered};
use super::state::{self, Blocked, Contact, Contacts, Intro};
use super::{now, Ctx};
use crate::proto::keys::fingerprint;

fn load(ctx: &Ctx) -> Result<Vec<Intro>> {
    let mut v: Vec<Intro> = ctx.store.load(state::INTROS)?;
    let t = now();
    v.retain(|i| i.exp >= t);
    Ok(v)
}

fn take(ctx: &Ctx, n: u64) -> Result<(Intro, Vec<Intro>)> {
    let mut all = load(ctx)?;
    let pos = all.iter().position(|i| i.id == n).ok_or_else(|| {
        anyhow!("no pending intro #{n} — `dnsmesh intro list` shows the queue (run `dnsmesh recv` to fetch new ones)")
    })?;
    let i = all.remove(pos);
    Ok((i, all))
}

fn deliver(i: &Intro, from: String) {
    let mut msg_id = [0u8; 16];
    let _ = hex::decode_to_slice(&i.msg_id_hex, &mut msg_id);
    let mut spk = [0u8; 32];
    let _ = hex::decode_to_slice(&i.sender_spk_hex, &mut spk);
    print_message(
        &Delivered {
            from,
            sender_spk: spk,
            msg_id,
            ts: i.ts,
            zone: i.sender_zone.clone(),
            prekey_id: 0,
            body: i.body.clone(),
            claimed_from: i.claimed_from.clone(),
        },
        false,
    );
}

fn label(i: &Intro) -> String {
    match (&i.claimed_from, i.from_verified) {
        (Some(f), true) => f.clone(),
        (Some(f), false) => format!("{f} (unverified claim)"),
        (None, _) => format!("unknown key {}", i.sender_spk_hex.get(..16).unwrap_or("?")),
    }
}

/// `intro list`.
pub fn list(ctx: &Ctx, json: bool) -> Result<()> {
    let v = load(ctx)?;
    if v.is_empty() && !json {
        println!("(no pending intros)");
    }
    for i in &v {
        print_intro(i, json);
    }
    Ok(())
}

/// `intro accept N`: deliver without pinning.
pub fn accept(ctx: &Ctx, n: u64) -> Result<()> {
    let (i, rest) = take(ctx, n)?;
    deliver(&i, label(&i));
    ctx.store.save(state::INTROS, &rest)?;
    println!("accepted intro #{n} (sender not pinned)");
    Ok(())
}

/// `intro trust N [--username U]`: verify the sender's published identity carries the
/// intro's key, pin it, deliver.
pub fn trust(ctx: &Ctx, n: u64, username: Option<&str>) -> Result<()> {
    let (i, rest) = take(ctx, n)?;
    let mut spk = [0u8; 32];
    hex::decode_to_slice(&i.sender_spk_hex, &mut spk)
        .map_err(|_| anyhow!("intro #{n} has a malformed sender key"))?;
    let addr = match (username, &i.claimed_from) {
        (Some(u), _) if u.contains('@') => u.to_string(),
        (Some(u), _) => format!("{u}@{}", i.sender_zone),
        (None, Some(f)) => f.clone(),
        (None, None) => bail!(
            "intro #{n} does not say who sent it — pass --username NAME (their name in zone {}) so their identity can be checked",
            i.sender_zone
        ),
    };
    if !verify_from(&ctx.pool, &addr, &spk) {
        bail!(
            "the identity published for {addr} does not carry intro #{n}'s signing key {} — not pinned (use `intro accept {n}` to read it anyway, or `intro block {n}`)",
            &i.sender_spk_hex[..16]
        );
    }
    let (user, zone) = split_addr(&addr);
    let zone = zone.unwrap_or_else(|| i.sender_zone.clone());
    let rec = lookup_identity(&ctx.pool, &user, &zone, true)?
        .into_iter()
        .find(|r| r.ed25519_spk == spk)
        .ok_or_else(|| anyhow!("identity for {addr} vanished"))?;
    let mut contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    let key = format!("{user}@{zone}");
    if let Some(old) = contacts.get(&key) {
        if old.ed25519_hex != i.sender_spk_hex && !old.ed25519_hex.is_empty() {
            bail!("{key} is already pinned with another key — `dnsmesh contacts remove {key}` first if they changed keys");
        }
    }
    contacts.insert(
        key.clone(),
        Contact {
            username: user,
            domain: zone,
            x25519_hex: hex::encode(rec.x25519_pk),
            ed25519_hex: hex::encode(rec.ed25519_spk),
            versions: rec.versions.clone(),
            added_at: now(),
        },
    );
    ctx.store.save(state::CONTACTS, &contacts)?;
    deliver(&i, key.clone());
    ctx.store.save(state::INTROS, &rest)?;
    println!("pinned {key} (fingerprint {})", fingerprint(&rec.x25519_pk, &rec.ed25519_spk));
    Ok(())
}

/// `intro block N [--note TEXT]`: drop it (and every queued intro from that key) and
/// block the key on the claim and slot paths.
pub fn block(ctx: &Ctx, n: u64, note: Option<&str>) -> Result<()> {
    let (i, mut rest) = take(ctx, n)?;
    rest.retain(|r| r.sender_spk_hex != i.sender_spk_hex);
    let mut blocked: Vec<Blocked> = ctx.store.load(state::BLOCKED)?;
    if !blocked.iter().any(|b| b.spk_hex == i.sender_spk_hex) {
        blocked.push(Blocked {
            spk_hex: i.sender_spk_hex.clone(),
            label: label(&i),
            note: note.unwrap_or("").to_string(),
            at: now(),
        });
    }
    ctx.store.save(state::BLOCKED, &blocked)?;
    ctx.store.save(state::INTROS, &rest)?;
    println!(
        "blocked {} (key {}); its messages are dropped from now on",
        label(&i),
        &i.sender_spk_hex[..16]
    );
    Ok(())
}

/// `intro blocked`: the block list.
pub fn blocked(ctx: &Ctx) -> Result<()> {
    let b: Vec<Blocked> = ctx.store.load(state::BLOCKED)?;
    if b.is_empty() {
        println!("(no blocked senders)");
    }
    for x in &b {
        println!("{}  {}  {}", x.spk_hex, x.label, x.note);
    }
    Ok(())
}

/// `intro unblock KEY`: remove a key (or a unique hex prefix) from the block list.
pub fn unblock(ctx: &Ctx, key: &str) -> Result<()> {
    let mut b: Vec<Blocked> = ctx.store.load(state::BLOCKED)?;
    let k = key.trim().to_ascii_lowercase();
    let hits: Vec<usize> =
        b.iter().enumerate().filter(|(_, x)| x.spk_hex.starts_with(&k)).map(|(i, _)| i).collect();
    match hits.as_slice() {
        [one] => {
            let x = b.remove(*one);
            ctx.store.save(state::BLOCKED, &b)?;
            println!("unblocked {}", x.spk_hex);
            Ok(())
        }
        [] => bail!("{key} is not blocked"),
        _ => bail!("{key} matches several blocked keys — give more hex digits"),
    }
}
