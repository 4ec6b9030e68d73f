//! `identity publish|show|refresh-prekeys|fetch` and `contacts list|remove`.

use anyhow::{anyhow, bail, Result};

use super::state::{self, Contact, Contacts, PrekeySecret, Published};
use super::{dns, now, Ctx};
use crate::proto::keys::{self, fingerprint, random_32};
use crate::proto::names;
use crate::proto::records::identity::IdentityRecord;
use crate::proto::records::prekey::Prekey;

/// Split `user` / `user@zone` (zone lower-cased, trailing dots stripped).
pub fn split_addr(addr: &str) -> (String, Option<String>) {
    match addr.trim().split_once('@') {
        Some((u, h)) => (u.to_string(), Some(h.trim_end_matches('.').to_ascii_lowercase())),
        None => (addr.trim().to_string(), None),
    }
}

/// Verified identity records for `user` at `zone`: `dmp.<zone>` (zone-anchored, only
/// when the address named the zone; username must match) then `id-<U16>.<zone>`,
/// deduplicated by keys, newest first.
pub fn lookup_identity(
    pool: &dns::Pool,
    user: &str,
    zone: &str,
    anchored: bool,
) -> Result<Vec<IdentityRecord>> {
    let mut names_to_try = Vec::new();
    if anchored {
        names_to_try.push(names::identity_anchored(zone));
    }
    names_to_try.push(names::identity(user, zone));
    let mut found: Vec<IdentityRecord> = Vec::new();
    for n in names_to_try {
        for v in pool.txt(&n)? {
            if let Some(r) = IdentityRecord::parse_and_verify(&v) {
                if r.username != user {
                    continue;
                }
                match found
                    .iter_mut()
                    .find(|f| f.x25519_pk == r.x25519_pk && f.ed25519_spk == r.ed25519_spk)
                {
                    Some(f) if f.ts < r.ts => *f = r,
                    Some(_) => {}
                    None => found.push(r),
                }
            }
        }
    }
    found.sort_by_key(|r| std::cmp::Reverse(r.ts));
    Ok(found)
}

/// Find a pinned contact by `user` or `user@zone`.
pub fn find_contact<'c>(contacts: &'c Contacts, addr: &str, own_zone: &str) -> Result<&'c Contact> {
    let (user, zone) = split_addr(addr);
    if let Some(z) = zone {
        return contacts.get(&format!("{user}@{z}")).ok_or_else(|| {
            anyhow!("{user}@{z} is not a pinned contact — run `dnsmesh identity fetch {user}@{z} --add`")
        });
    }
    let matches: Vec<&Contact> = contacts.values().filter(|c| c.username == user).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("{user} is not a pinned contact — run `dnsmesh identity fetch {user} --add` (or `{user}@ZONE` for another zone)"),
        many => {
            if let Some(c) = many.iter().find(|c| c.domain == own_zone) {
                return Ok(c);
            }
            bail!(
                "`{user}` is ambiguous: {} — name the zone as user@zone",
                many.iter().map(|c| c.address()).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// `identity publish`.
pub fn publish(ctx: &Ctx, advertise_v2: bool, ttl: u32) -> Result<()> {
    let zone = ctx.cfg.zone();
    let rec = IdentityRecord {
        username: ctx.cfg.username.clone(),
        x25519_pk: ctx.id.x25519_public(),
        ed25519_spk: ctx.id.ed25519_public(),
        ts: now(),
        versions: if advertise_v2 { vec![1, 2] } else { vec![1] },
    };
    let txt = rec.sign(&ctx.id).map_err(|e| anyhow!("building the identity record: {e}"))?;
    let name = names::identity(&ctx.cfg.username, &zone);
    let writer = ctx.writer()?;
    let mut published: Published = ctx.store.load(state::PUBLISHED)?;
    writer
        .publish(&[(name.clone(), txt.clone(), ttl)], now())
        .map_err(|e| anyhow!("publishing the identity via {}: {e:#}", writer.describe()))?;
    // Withdraw the previous value so fetchers see one current record (best effort).
    if let Some((old_name, old)) = published.identity.take() {
        if old != txt {
            if let Err(e) = writer.delete(&old_name, &old, now()) {
                eprintln!("warning: could not withdraw the previous identity value: {e:#}");
            }
        }
    }
    published.identity = Some((name.clone(), txt));
    ctx.store.save(state::PUBLISHED, &published)?;
    println!("published identity to {name}");
    if advertise_v2 {
        println!("advertising protocol versions 1, 2");
    }
    Ok(())
}

/// `identity show`.
pub fn show(ctx: &Ctx) -> Result<()> {
    let zone = ctx.cfg.zone();
    println!("address:     {}", ctx.cfg.address());
    println!("ed25519:     {}", hex::encode(ctx.id.ed25519_public()));
    println!("x25519:      {}", hex::encode(ctx.id.x25519_public()));
    println!("fingerprint: {}", ctx.id.fingerprint());
    println!("user id:     {}", hex::encode(ctx.id.user_id()));
    println!("identity:    {}", names::identity(&ctx.cfg.username, &zone));
    println!("prekeys:     {}", names::prekeys(&ctx.cfg.username, &zone));
    println!("mailbox:     slot-N.mb-{}.{zone}", names::mailbox_hash(&ctx.id.user_id()));
    match ctx.writer() {
        Ok(w) => println!("writer:      {}", w.describe()),
        Err(e) => println!("writer:      none ({e:#})"),
    }
    Ok(())
}

/// `identity refresh-prekeys`: withdraw our published unconsumed prekeys (secrets are
/// kept until they expire, for messages already in flight) and publish a fresh pool.
pub fn refresh_prekeys(ctx: &Ctx, count: u32, ttl: u32) -> Result<()> {
    if count == 0 || count > 64 {
        bail!("--count must be 1..64 (the node keeps at most 64 values per name)");
    }
    let t = now();
    let writer = ctx.writer()?;
    let name = names::prekeys(&ctx.cfg.username, &ctx.cfg.zone());
    let mut pool: Vec<PrekeySecret> = ctx.store.load(state::PREKEYS)?;
    pool.retain(|p| p.exp >= t);
    for p in pool.iter_mut().filter(|p| p.published) {
        match writer.delete(&p.name, &p.txt, t) {
            Ok(()) => p.published = false,
            Err(e) => eprintln!("warning: could not withdraw prekey {}: {e:#}", p.id),
        }
    }
    let mut fresh = Vec::new();
    while fresh.len() < count as usize {
        let mut idb = [0u8; 4];
        keys::random_fill(&mut idb);
        let id = u32::from_be_bytes(idb);
        if id == 0 || pool.iter().chain(fresh.iter()).any(|p: &PrekeySecret| p.id == id) {
            continue;
        }
        let private = random_32();
        let rec = Prekey {
            prekey_id: id,
            public_key: keys::x25519_public(&private),
            exp: t + ttl as u64,
        };
        let txt = rec.sign(&ctx.id).map_err(|e| anyhow!("signing a prekey: {e}"))?;
        fresh.push(PrekeySecret {
            id,
            private_hex: hex::encode(private),
            name: name.clone(),
            txt,
            exp: rec.exp,
            published: false,
        });
    }
    // Save the secrets before publishing: a published prekey without its secret would
    // make messages undecryptable.
    pool.extend(fresh.iter().cloned());
    ctx.store.save(state::PREKEYS, &pool)?;
    let mut ok = 0usize;
    let mut last_err = None;
    for p in &fresh {
        match writer.publish(&[(p.name.clone(), p.txt.clone(), ttl)], t) {
            Ok(()) => {
                ok += 1;
                if let Some(s) = pool.iter_mut().find(|s| s.id == p.id) {
                    s.published = true;
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    pool.retain(|p| p.published || fresh.iter().all(|f| f.id != p.id));
    ctx.store.save(state::PREKEYS, &pool)?;
    println!("published {ok}/{count} prekeys to {name}");
    if let Some(e) = last_err {
        bail!("{} prekey(s) were not published: {e:#}", count as usize - ok);
    }
    Ok(())
}

/// `identity fetch ADDR [--add]`.
pub fn fetch(ctx: &Ctx, addr: &str, add: bool, accept_fp: Option<&str>) -> Result<()> {
    let (user, zone) = split_addr(addr);
    let anchored = zone.is_some();
    let zone = zone.unwrap_or_else(|| ctx.cfg.zone());
    let mut recs = lookup_identity(&ctx.pool, &user, &zone, anchored)?;
    if let Some(fp) = accept_fp {
        recs.retain(|r| fingerprint(&r.x25519_pk, &r.ed25519_spk).eq_ignore_ascii_case(fp));
    }
    let rec = match recs.as_slice() {
        [] => bail!(
            "no verifiable identity for {user}@{zone} (looked at {}) — check the spelling and that they ran `dnsmesh identity publish`",
            names::identity(&user, &zone)
        ),
        [one] => one.clone(),
        many => bail!(
            "several different identities for {user}@{zone}: {} — confirm the right one with its owner and pass --accept-fingerprint FP",
            many.iter().map(|r| fingerprint(&r.x25519_pk, &r.ed25519_spk)).collect::<Vec<_>>().join(", ")
        ),
    };
    let fp = fingerprint(&rec.x25519_pk, &rec.ed25519_spk);
    println!("{user}@{zone}");
    println!("  fingerprint: {fp}");
    println!("  ed25519:     {}", hex::encode(rec.ed25519_spk));
    println!("  x25519:      {}", hex::encode(rec.x25519_pk));
    println!("  versions:    {:?}", rec.versions);
    if add {
        let mut contacts: Contacts = ctx.store.load(state::CONTACTS)?;
        let key = format!("{user}@{zone}");
        let c = Contact {
            username: user.clone(),
            domain: zone.clone(),
            x25519_hex: hex::encode(rec.x25519_pk),
            ed25519_hex: hex::encode(rec.ed25519_spk),
            versions: rec.versions.clone(),
            added_at: now(),
        };
        if let Some(old) = contacts.get(&key) {
            if old.ed25519_hex != c.ed25519_hex || old.x25519_hex != c.x25519_hex {
                bail!(
                    "{key} is pinned with a different key (fingerprint {}); if they really changed keys, run `dnsmesh contacts remove {key}` and fetch again",
                    fingerprint(&old.x25519()?, &old.ed25519()?)
                );
            }
        }
        contacts.insert(key.clone(), c);
        ctx.store.save(state::CONTACTS, &contacts)?;
        println!("pinned {key}");
    }
    Ok(())
}

/// `contacts list`.
pub fn contacts_list(ctx: &Ctx) -> Result<()> {
    let contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    if contacts.is_empty() {
        println!("no contacts — add one with `dnsmesh identity fetch USER[@ZONE] --add`");
    }
    for c in contacts.values() {
        println!(
            "{}  fingerprint {}  versions {:?}",
            c.address(),
            fingerprint(&c.x25519()?, &c.ed25519()?),
            c.versions
        );
    }
    Ok(())
}

/// `contacts remove ADDR`.
pub fn contacts_remove(ctx: &Ctx, addr: &str) -> Result<()> {
    let mut contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    let key = find_contact(&contacts, addr, &ctx.cfg.zone())?.address();
    contacts.remove(&key);
    ctx.store.save(state::CONTACTS, &contacts)?;
    println!("removed {key}");
    Ok(())
}
