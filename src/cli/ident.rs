//! `identity publish|show|refresh-prekeys|fetch` and `contacts list|remove`.

use anyhow::{anyhow, bail, Result};

use super::dns::Pool;
use super::state::{self, Contact, Contacts, PrekeySecret, Published};
use super::{chain, dns, now, Ctx};
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

/// `identity publish`: `id-<hash>.<zone>`, and `dmp.<identity_domain>` when anchored.
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
    let anchored = ctx.cfg.anchor().map(|d| names::identity_anchored(&d));
    let writer = ctx.writer()?;
    let mut published: Published = ctx.store.load(state::PUBLISHED)?;
    let mut recs = vec![(name.clone(), txt.clone(), ttl)];
    if let Some(a) = &anchored {
        recs.push((a.clone(), txt.clone(), ttl));
    }
    writer
        .publish(&recs, now())
        .map_err(|e| anyhow!("publishing the identity via {}: {e:#}", writer.describe()))?;
    // Withdraw the previous values so fetchers see one current record (best effort).
    for (old_name, old) in published.identity.take().into_iter().chain(published.anchored.take()) {
        if old != txt {
            if let Err(e) = writer.delete(&old_name, &old, now()) {
                eprintln!("warning: could not withdraw the previous identity value: {e:#}");
            }
        }
    }
    published.identity = Some((name.clone(), txt.clone()));
    published.anchored = anchored.clone().map(|a| (a, txt));
    ctx.store.save(state::PUBLISHED, &published)?;
    println!("published identity to {name}");
    if let Some(a) = anchored {
        println!(
            "published identity to {a} (zone-anchored: others reach you as {})",
            ctx.cfg.public_address()
        );
    }
    if advertise_v2 {
        println!("advertising protocol versions 1, 2");
    }
    Ok(())
}

/// `identity show [--json]`.
pub fn show(ctx: &Ctx, json: bool) -> Result<()> {
    let zone = ctx.cfg.zone();
    if json {
        let v = serde_json::json!({
            "username": ctx.cfg.username,
            "domain": zone,
            "public_key": hex::encode(ctx.id.x25519_public()),
            "signing_public_key": hex::encode(ctx.id.ed25519_public()),
            "user_id": hex::encode(ctx.id.user_id()),
            "fingerprint": ctx.id.fingerprint(),
            "address": ctx.cfg.public_address(),
            "identity_domain": ctx.cfg.anchor(),
            "identity_name": names::identity(&ctx.cfg.username, &zone),
            "prekeys_name": names::prekeys(&ctx.cfg.username, &zone),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("address:     {}", ctx.cfg.public_address());
    println!("ed25519:     {}", hex::encode(ctx.id.ed25519_public()));
    println!("x25519:      {}", hex::encode(ctx.id.x25519_public()));
    println!("fingerprint: {}", ctx.id.fingerprint());
    println!("user id:     {}", hex::encode(ctx.id.user_id()));
    println!("identity:    {}", names::identity(&ctx.cfg.username, &zone));
    if let Some(d) = ctx.cfg.anchor() {
        println!("anchored:    {}", names::identity_anchored(&d));
    }
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

/// Arguments of `identity fetch`.
pub struct FetchArgs<'a> {
    pub addr: &'a str,
    pub domain: Option<&'a str>,
    pub add: bool,
    pub accept_fp: Option<&'a str>,
    pub json: bool,
    pub via_bootstrap: bool,
}

fn contact_from(user: &str, zone: &str, rec: &IdentityRecord, added_at: u64) -> Contact {
    Contact {
        username: user.to_string(),
        domain: zone.to_string(),
        x25519_hex: hex::encode(rec.x25519_pk),
        ed25519_hex: hex::encode(rec.ed25519_spk),
        versions: rec.versions.clone(),
        added_at,
    }
}

/// `identity fetch ADDR [--domain Z] [--add] [--accept-fingerprint FP] [--json]
/// [--via-bootstrap]`: verified records, revoked keys dropped, rotated-away keys dropped
/// when one current key remains; a pinned contact who rotated is followed along the
/// chain, a revoked pin is refused.
pub fn fetch(ctx: &Ctx, home: &std::path::Path, a: &FetchArgs) -> Result<()> {
    let (user, addr_zone) = split_addr(a.addr);
    let mut anchored = addr_zone.is_some();
    let mut zone = match (a.domain, addr_zone) {
        (Some(d), _) => d.trim_end_matches('.').to_ascii_lowercase(),
        (None, Some(z)) => z,
        (None, None) => ctx.cfg.zone(),
    };
    let boot_pool;
    let pool: &dns::Pool = if a.via_bootstrap {
        let (_, m, _) = super::groups::discover_cluster(
            &ctx.pool,
            &zone,
            &super::groups::parse_spk(
                ctx.cfg
                    .bootstrap_signer_spk
                    .as_deref()
                    .filter(|_| {
                        ctx.cfg
                            .bootstrap_user_domain
                            .as_deref()
                            .is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(&zone))
                    })
                    .ok_or_else(|| anyhow!("{zone} has no bootstrap pin — run `dnsmesh bootstrap pin {zone} SIGNER_SPK` first"))?,
                "bootstrap_signer_spk",
            )?,
        )?;
        let mut p = dns::Pool::from_config(&ctx.cfg, home)?;
        p.set_union(dns::Union::new(&m, &p));
        // The identity lives under the cluster base the host's bootstrap names.
        zone = m.cluster_name.trim_end_matches('.').to_ascii_lowercase();
        anchored = false;
        boot_pool = p;
        &boot_pool
    } else {
        &ctx.pool
    };
    let mut recs = lookup_identity(pool, &user, &zone, anchored)?;
    let chain = if ctx.cfg.rotation_chain_enabled {
        super::chain::Chain::load(pool, &user, &zone, anchored)?
    } else {
        super::chain::Chain::default()
    };
    if let Some(fp) = a.accept_fp {
        recs.retain(|r| fingerprint(&r.x25519_pk, &r.ed25519_spk).eq_ignore_ascii_case(fp));
    }
    let key = format!("{user}@{zone}");
    let mut contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    // A contact added without a signing key has nothing to follow: re-pin it freely.
    let pinned = contacts.get(&key).filter(|c| !c.ed25519_hex.is_empty()).cloned();
    // A pinned contact: follow its chain.
    let mut followed = None;
    if let Some(old) = &pinned {
        let spk = old.ed25519()?;
        match chain.walk(&spk) {
            super::chain::Walk::Revoked(r) => bail!(
                "{key}'s pinned key (fingerprint {}) is REVOKED (reason {}) — do not trust it; confirm the new fingerprint with its owner out of band, then `dnsmesh contacts remove {key}` and `dnsmesh identity fetch {key} --add --accept-fingerprint FP`",
                fingerprint(&old.x25519()?, &spk),
                super::chain::reason_name(r)
            ),
            super::chain::Walk::Head(h) => {
                if let Some(r) = recs.iter().find(|r| r.ed25519_spk == h) {
                    followed = Some(r.clone());
                }
            }
            super::chain::Walk::Broken(why) => {
                eprintln!("warning: {key}'s rotation chain is unusable ({why}); not following it")
            }
            super::chain::Walk::Unchanged => {}
        }
    }
    let (live, revoked) = super::chain::current_identities(recs, &chain);
    let rec = match (&followed, live.as_slice()) {
        (Some(r), _) => r.clone(),
        (None, []) if !revoked.is_empty() => bail!(
            "every identity published for {key} is revoked — they must publish a new one"
        ),
        (None, []) => bail!(
            "no verifiable identity for {key} (looked at {}) — check the spelling and that they ran `dnsmesh identity publish`",
            names::identity(&user, &zone)
        ),
        (None, [one]) => one.clone(),
        (None, many) => {
            // With a pin, the pinned key among several is the answer.
            match pinned.as_ref().and_then(|p| {
                many.iter().find(|r| hex::encode(r.ed25519_spk) == p.ed25519_hex)
            }) {
                Some(r) => r.clone(),
                None => bail!(
                    "several different identities for {key}: {} — confirm the right one with its owner and pass --accept-fingerprint FP",
                    many.iter().map(|r| fingerprint(&r.x25519_pk, &r.ed25519_spk)).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let fp = fingerprint(&rec.x25519_pk, &rec.ed25519_spk);
    if a.json {
        let v = serde_json::json!({
            "username": user,
            "domain": zone,
            "address": key,
            "public_key": hex::encode(rec.x25519_pk),
            "signing_public_key": hex::encode(rec.ed25519_spk),
            "fingerprint": fp,
            "versions": rec.versions,
            "ts": rec.ts,
            "rotated_from": followed.as_ref().and(pinned.as_ref()).map(|p| p.ed25519_hex.clone()),
            "revoked_keys": revoked.iter().map(|r| hex::encode(r.ed25519_spk)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{key}");
        println!("  fingerprint: {fp}");
        println!("  ed25519:     {}", hex::encode(rec.ed25519_spk));
        println!("  x25519:      {}", hex::encode(rec.x25519_pk));
        println!("  versions:    {:?}", rec.versions);
        for r in &revoked {
            println!("  revoked:     {} (not used)", fingerprint(&r.x25519_pk, &r.ed25519_spk));
        }
    }
    if let (Some(_), Some(old)) = (&followed, &pinned) {
        contacts.insert(key.clone(), contact_from(&user, &zone, &rec, old.added_at));
        ctx.store.save(state::CONTACTS, &contacts)?;
        let say = format!(
            "followed {key}'s key rotation: {} → {fp}",
            fingerprint(&old.x25519()?, &old.ed25519()?)
        );
        if a.json {
            eprintln!("{say}")
        } else {
            println!("{say}")
        }
        return Ok(());
    }
    if a.add {
        let c = contact_from(&user, &zone, &rec, now());
        if let Some(old) = contacts.get(&key).filter(|c| !c.ed25519_hex.is_empty()) {
            if old.ed25519_hex != c.ed25519_hex || old.x25519_hex != c.x25519_hex {
                bail!(
                    "{key} is pinned with a different key (fingerprint {}) and no valid rotation leads from it; if they really changed keys, run `dnsmesh contacts remove {key}` and fetch again",
                    fingerprint(&old.x25519()?, &old.ed25519()?)
                );
            }
        }
        contacts.insert(key.clone(), c);
        ctx.store.save(state::CONTACTS, &contacts)?;
        if a.json {
            eprintln!("pinned {key}")
        } else {
            println!("pinned {key}")
        }
    }
    Ok(())
}

/// `contacts add NAME PUBKEY [--signing-key SPK]`.
pub fn contacts_add(ctx: &Ctx, name: &str, pubkey: &str, signing_key: Option<&str>) -> Result<()> {
    let (user, zone) = split_addr(name);
    let zone = zone.unwrap_or_else(|| ctx.cfg.zone());
    if user.is_empty() {
        bail!("NAME must be `user` or `user@zone`");
    }
    let x = super::groups::parse_spk(pubkey, "PUBKEY (X25519)")?;
    let ed = match signing_key {
        Some(k) => hex::encode(super::groups::parse_spk(k, "--signing-key")?),
        None => String::new(),
    };
    let mut contacts: Contacts = ctx.store.load(state::CONTACTS)?;
    let key = format!("{user}@{zone}");
    contacts.insert(
        key.clone(),
        Contact {
            username: user,
            domain: zone,
            x25519_hex: hex::encode(x),
            ed25519_hex: ed.clone(),
            versions: vec![1],
            added_at: now(),
        },
    );
    ctx.store.save(state::CONTACTS, &contacts)?;
    println!("added contact {key}");
    if ed.is_empty() {
        println!("note: no --signing-key — messages from {key} are not recognised as theirs (they go to the intro queue); `dnsmesh identity fetch {key} --add` pins both keys");
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
            match c.ed25519() {
                Ok(ed) => fingerprint(&c.x25519()?, &ed),
                Err(_) => "(no signing key pinned)".to_string(),
            },
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

/// The identity a pinned key leads to, for following a rotated contact: `Ok(Some(rec))`
/// when the chain from `pinned` ends at a key with a published identity.
pub fn follow(
    pool: &Pool,
    user: &str,
    zone: &str,
    anchored: bool,
    pinned: &[u8; 32],
) -> Result<(chain::Walk, Option<IdentityRecord>)> {
    let w = chain::Chain::load(pool, user, zone, anchored)?.walk(pinned);
    if let chain::Walk::Head(h) = &w {
        let recs = lookup_identity(pool, user, zone, anchored)?;
        return Ok((w.clone(), recs.into_iter().find(|r| r.ed25519_spk == *h)));
    }
    Ok((w, None))
}
