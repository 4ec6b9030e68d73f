//! DNS UPDATE (RFC 2136) on the slow path: TSIG and replay check, write limits,
//! prerequisites against the view, the update section to store ops, TSIG scope or the
//! unsigned-claim rules, then one all-or-nothing `Apply` to the store.

use super::*;

impl SlowPath {
    pub(super) async fn handle_update<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        let now = self.inner.clock.now_secs();
        let mut meta = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Update);
        let tsig = self.check_tsig(request, now);
        let (scope, ctx) = match tsig {
            TsigCheck::Failed(ctx) => {
                meta.response_code = ResponseCode::NotAuth;
                self.inner.counters.bump("tsig_failed");
                return self.respond(request, rh, meta, vec![], vec![], Some(ctx)).await;
            }
            TsigCheck::Verified { scope, ctx } => (Some(scope), Some(ctx)),
            TsigCheck::Unsigned => (None, None),
        };
        // A signed UPDATE is applied once: a captured copy sent again within the fudge
        // window is refused (REFUSED, signed: the MAC is valid, the policy says no).
        if let (Some(_), Some(sig)) = (&scope, request.signature.as_ref()) {
            let key = sig.name.to_lowercase().to_string();
            let verdict = self.inner.replay.lock().check(&key, &sig.data.mac, now);
            if verdict != crate::policy::replay::ReplayVerdict::Fresh {
                self.inner.counters.bump(
                    if verdict == crate::policy::replay::ReplayVerdict::Replay {
                        "tsig_replay"
                    } else {
                        "rate_limited"
                    },
                );
                meta.response_code = ResponseCode::Refused;
                return self.respond(request, rh, meta, vec![], vec![], ctx).await;
            }
        }
        // Per-client and per-key write limits, charged per record of the update section:
        // REFUSED (the client may retry later).
        let o = &self.inner.opts;
        let records = u32::try_from(request.authorities.len()).unwrap_or(u32::MAX);
        let ip = request.src().ip();
        let ip_ok = (ip.is_loopback() && !o.limit_loopback)
            || self.inner.ip_buckets.lock().take_n(ip, records, o.update_rate, o.update_burst);
        let key_ok = match (&scope, request.signature.as_ref()) {
            (Some(_), Some(sig)) => self.inner.key_buckets.lock().take_n(
                sig.name.to_lowercase().to_string(),
                records,
                o.key_rate,
                o.key_burst,
            ),
            _ => true,
        };
        if !ip_ok || !key_ok {
            self.inner.counters.bump("rate_limited");
            meta.response_code = ResponseCode::Refused;
            return self.respond(request, rh, meta, vec![], vec![], ctx).await;
        }
        let rcode = match self.plan_update(request, scope.as_deref(), now).await {
            Ok(()) => ResponseCode::NoError,
            Err(code) => code,
        };
        meta.response_code = rcode;
        self.respond(request, rh, meta, vec![], vec![], ctx).await
    }

    /// Check and apply an UPDATE; `scope` is the verified key's scope (None = unsigned).
    async fn plan_update(
        &self,
        request: &Request,
        scope: Option<&[String]>,
        now: u64,
    ) -> Result<(), ResponseCode> {
        let o = &self.inner.opts;
        if !o.update {
            return Err(ResponseCode::Refused);
        }
        let zones = request.queries.queries();
        let Some(zone) = zones.first() else {
            return Err(ResponseCode::FormErr);
        };
        let zname = zone.name().to_string().to_ascii_lowercase();
        if zname.trim_end_matches('.') != o.zone {
            return Err(ResponseCode::NotAuth);
        }
        // RFC 2136 §3.2 prerequisites, evaluated against the view.
        for pr in &request.answers {
            self.check_prerequisite(pr)?;
        }
        let key_name = request.signature.as_ref().map(|s| s.name.to_lowercase().to_string());
        let mut admitted = None;
        let mut ops = Vec::new();
        for rr in &request.authorities {
            let owner = rr.name.to_lowercase().to_string();
            let owner = owner.trim_end_matches('.').to_string();
            if !self.inner.origin.zone_of(&rr.name.to_lowercase()) {
                return Err(ResponseCode::NotZone);
            }
            if !owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(ResponseCode::Refused);
            }
            let rtype = rr.record_type();
            match rr.dns_class {
                DNSClass::IN => {
                    if rtype != RecordType::TXT {
                        continue;
                    }
                    let RData::TXT(txt) = &rr.data else {
                        return Err(ResponseCode::FormErr);
                    };
                    let joined = crate::proto::txt::join(&txt.txt_data);
                    let value = String::from_utf8(joined).map_err(|_| ResponseCode::FormErr)?;
                    let ttl = if rr.ttl == 0 { 60 } else { rr.ttl as u64 };
                    if value.len() > o.max_value_bytes || ttl > o.max_ttl {
                        return Err(ResponseCode::Refused);
                    }
                    ops.push(Op::Add { name: owner, value, ttl });
                }
                DNSClass::NONE => {
                    if rtype != RecordType::TXT {
                        continue;
                    }
                    let RData::TXT(txt) = &rr.data else {
                        return Err(ResponseCode::FormErr);
                    };
                    let value = String::from_utf8(crate::proto::txt::join(&txt.txt_data))
                        .map_err(|_| ResponseCode::FormErr)?;
                    ops.push(Op::DeleteValue { name: owner, value });
                }
                DNSClass::ANY => {
                    if rtype == RecordType::TXT || rtype == RecordType::ANY {
                        ops.push(Op::DeleteName { name: owner });
                    }
                }
                _ => return Err(ResponseCode::FormErr),
            }
        }
        match scope {
            Some(scope) => {
                // Deletes leave tombstones: each key has a budget of them.
                let deletes = ops.iter().filter(|op| !matches!(op, Op::Add { .. })).count();
                if let (true, Some(key)) = (deletes > 0, key_name.as_ref()) {
                    let burst = o.tombstones_per_key as f64;
                    if !self.inner.delete_buckets.lock().take_n(
                        key.clone(),
                        u32::try_from(deletes).unwrap_or(u32::MAX),
                        burst / o.max_ttl.max(1) as f64,
                        burst,
                    ) {
                        self.inner.counters.bump("rate_limited");
                        return Err(ResponseCode::Refused);
                    }
                }
                for op in &ops {
                    let (name, delete) = match op {
                        Op::Add { name, .. } => (name, false),
                        Op::DeleteValue { name, .. } | Op::DeleteName { name } => (name, true),
                    };
                    if !crate::policy::auth::scope_allows(scope, name, delete) {
                        return Err(ResponseCode::Refused);
                    }
                    // One registrant cannot fill another's mailbox slots.
                    if let (false, Some(mb), Some(key)) =
                        (delete, crate::policy::limits::mailbox_of(name), key_name.as_ref())
                    {
                        let k = (key.clone(), mb.to_string());
                        if !self.inner.mailbox_buckets.lock().take(
                            k,
                            o.mailbox_rate,
                            o.mailbox_burst,
                        ) {
                            return Err(ResponseCode::Refused);
                        }
                    }
                }
            }
            None => {
                admitted = Some(self.check_unsigned_claim(request, &mut ops, now)?);
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        // An admitted claim counts against its budgets only if it is stored.
        let release = match (&admitted, ops.first()) {
            (Some(true), Some(Op::Add { name, value, .. })) => Some((name.clone(), value.clone())),
            _ => None,
        };
        let res = match self
            .inner
            .store
            .send(Apply { ops, max_values: o.max_values_per_name, origin: Origin::Local })
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(StoreError::TooManyValues { .. })) => Err(ResponseCode::Refused),
            _ => Err(ResponseCode::ServFail),
        };
        if let (Err(_), Some((name, value))) = (&res, release) {
            self.inner.claims.lock().release(&name, &value);
        }
        res
    }

    /// The unsigned-claim rules (node.md §4.6, plus budgets): exactly one add, of a valid
    /// claim at `claim-<n>.mb-<H12>.<zone>` (for a recipient registered here in
    /// receiver-only mode), living at most `claim_max_ttl`, within the per-recipient rate
    /// and the live-claim budgets. `Ok(true)` when the claim took a new budget slot.
    fn check_unsigned_claim(
        &self,
        request: &Request,
        ops: &mut [Op],
        now: u64,
    ) -> Result<bool, ResponseCode> {
        let o = &self.inner.opts;
        if !(o.claim_provider || o.receiver_claims) {
            return Err(ResponseCode::Refused);
        }
        // One claim per unsigned UPDATE: each costs a signature check and a budget slot.
        let [Op::Add { name, value, ttl }] = ops else {
            self.inner.counters.bump("claim_refused");
            return Err(ResponseCode::Refused);
        };
        let Some(hash) = claim_owner_hash(name, &o.zone) else {
            return Err(ResponseCode::Refused);
        };
        if o.receiver_claims {
            let registered = self.inner.registered.load();
            if registered.get(hash).is_none_or(|exp| *exp <= now) {
                self.inner.counters.bump("claim_refused");
                return Err(ResponseCode::Refused);
            }
        }
        let claim = crate::proto::records::claim::ClaimRecord::parse_and_verify(value, now)
            .ok_or(ResponseCode::Refused)?;
        if claim.exp.saturating_sub(now) > o.claim_max_ttl {
            self.inner.counters.bump("claim_refused");
            return Err(ResponseCode::Refused);
        }
        *ttl = (*ttl).min(o.claim_max_ttl);
        let ip = request.src().ip();
        let net =
            (!ip.is_loopback() || o.limit_loopback).then(|| crate::policy::claims::net_of(ip));
        let admitted = self
            .inner
            .claims
            .lock()
            .admit(name, value, claim.sender_spk, net, now, &o.claim_limits)
            .map_err(|why| {
                tracing::debug!(%why, name = %name, "unsigned claim refused");
                self.inner.counters.bump("claim_budget");
                ResponseCode::Refused
            })?;
        // The reference's per-recipient bucket (SERVFAIL = retry later), charged only for
        // claims within the budgets and kept per client network, so a sender refused by
        // its budgets cannot drain it for everyone else.
        let bucket = match net {
            Some(n) => format!("{hash}/{n:?}"),
            None => hash.to_string(),
        };
        if !self.inner.claim_buckets.lock().take(bucket, o.claim_rate, o.claim_burst) {
            if admitted {
                self.inner.claims.lock().release(name, value);
            }
            return Err(ResponseCode::ServFail);
        }
        Ok(admitted)
    }

    /// Keep the claim book in step with the zone (every change of a claim name).
    pub(super) fn note_claims(&self, changes: &[(String, Vec<String>)]) {
        let zone = &self.inner.opts.zone;
        let mut book = None;
        let now = self.inner.clock.now_secs();
        for (name, values) in changes {
            if claim_owner_hash(name, zone).is_some() {
                book.get_or_insert_with(|| self.inner.claims.lock()).sync_name(name, values, now);
            }
        }
    }

    /// Mailbox hashes of recipients registered here, from the keyring's scopes.
    pub(super) fn note_keyring(&self, ring: &Keyring) {
        let mut reg: HashMap<String, u64> = HashMap::new();
        for e in ring.values() {
            let exp = if e.expires_at == 0 { u64::MAX } else { e.expires_at };
            for h in crate::policy::claims::registered_mailboxes(&e.scope, &self.inner.opts.zone) {
                let cur = reg.entry(h).or_insert(0);
                *cur = (*cur).max(exp);
            }
        }
        self.inner.registered.store(Arc::new(reg));
    }

    fn check_prerequisite(&self, pr: &Record) -> Result<(), ResponseCode> {
        let name = pr.name.to_lowercase().to_string();
        let name = name.trim_end_matches('.');
        if !self.inner.origin.zone_of(&pr.name.to_lowercase()) {
            return Err(ResponseCode::NotZone);
        }
        let state = self.inner.view.txt(name);
        let is_apex = name == self.inner.opts.zone;
        let name_in_use = is_apex || matches!(state, NameState::Txt(_));
        let rtype = pr.record_type();
        let rrset_exists = |t: RecordType| match t {
            RecordType::TXT => matches!(state, NameState::Txt(_)),
            RecordType::SOA | RecordType::NS => is_apex,
            _ => false,
        };
        match (pr.dns_class, rtype) {
            (DNSClass::ANY, RecordType::ANY) => {
                name_in_use.then_some(()).ok_or(ResponseCode::NXDomain)
            }
            (DNSClass::ANY, t) => rrset_exists(t).then_some(()).ok_or(ResponseCode::NXRRSet),
            (DNSClass::NONE, RecordType::ANY) => {
                (!name_in_use).then_some(()).ok_or(ResponseCode::YXDomain)
            }
            (DNSClass::NONE, t) => (!rrset_exists(t)).then_some(()).ok_or(ResponseCode::YXRRSet),
            (DNSClass::IN, RecordType::TXT) => {
                let RData::TXT(txt) = &pr.data else {
                    return Err(ResponseCode::FormErr);
                };
                let want = crate::proto::txt::join(&txt.txt_data);
                match state {
                    NameState::Txt(values) if values.contains(&want) => Ok(()),
                    _ => Err(ResponseCode::NXRRSet),
                }
            }
            // Value-dependent prerequisites on other types cannot hold here.
            (DNSClass::IN, _) => Err(ResponseCode::NXRRSet),
            _ => Err(ResponseCode::FormErr),
        }
    }
}

/// `claim-<digits>.mb-<12 lowercase hex>.<zone>` → the 12-hex recipient hash.
fn claim_owner_hash<'a>(name: &'a str, zone: &str) -> Option<&'a str> {
    let rest = name.strip_suffix(zone)?.strip_suffix('.')?;
    let (first, second) = rest.split_once('.')?;
    let digits = first.strip_prefix("claim-")?;
    let hash = second.strip_prefix("mb-")?;
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 12
        && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(hash)
}
