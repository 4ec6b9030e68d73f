//! DNS UPDATE (RFC 2136) on the slow path: TSIG and replay check, write limits,
//! prerequisites against the view, the update section to store ops, TSIG scope or the
//! unsigned-claim rules (planned by the pure `policy::update::plan`), then the write
//! limits and claim budgets charged and one all-or-nothing `Apply` to the store.

use super::*;
use crate::policy::update::{self, claim_owner_hash};

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

    /// The UPDATE settings the pure planner needs.
    fn update_rules(&self) -> update::Rules {
        let o = &self.inner.opts;
        update::Rules {
            zone: o.zone.clone(),
            origin: self.inner.origin.clone(),
            enabled: o.update,
            max_value_bytes: o.max_value_bytes,
            max_ttl: o.max_ttl,
            claim_provider: o.claim_provider,
            receiver_claims: o.receiver_claims,
            claim_max_ttl: o.claim_max_ttl,
        }
    }

    /// Plan an UPDATE (`policy::update::plan`, pure), charge its limits and apply it;
    /// `scope` is the verified key's scope (None = unsigned).
    async fn plan_update(
        &self,
        request: &Request,
        scope: Option<&[String]>,
        now: u64,
    ) -> Result<(), ResponseCode> {
        let o = &self.inner.opts;
        let registered = self.inner.registered.load();
        let sender = match scope {
            Some(scope) => update::Sender::Signed { scope },
            None => update::Sender::Unsigned { registered: &registered },
        };
        let zone = request.queries.queries().first().map(|q| q.name().to_string());
        let plan = update::plan(
            &self.inner.view,
            &self.update_rules(),
            zone.as_deref(),
            &request.answers,
            &request.authorities,
            sender,
            now,
        )
        .map_err(|r| {
            if let Some(c) = r.counter {
                self.inner.counters.bump(c);
            }
            r.rcode
        })?;
        let ops = plan.ops;
        let key_name = request.signature.as_ref().map(|s| s.name.to_lowercase().to_string());
        let mut admitted = None;
        match &plan.claim {
            None => {
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
                    // One registrant cannot fill another's mailbox slots.
                    if let (Op::Add { name, .. }, Some(key)) = (op, key_name.as_ref()) {
                        let Some(mb) = crate::policy::limits::mailbox_of(name) else {
                            continue;
                        };
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
            Some(claim) => {
                admitted = Some(self.charge_unsigned_claim(request, &ops, claim, now)?);
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

    /// An unsigned claim the planner admitted, against the live-claim budgets and the
    /// per-recipient rate. `Ok(true)` when the claim took a new budget slot.
    fn charge_unsigned_claim(
        &self,
        request: &Request,
        ops: &[Op],
        claim: &update::Claim,
        now: u64,
    ) -> Result<bool, ResponseCode> {
        let o = &self.inner.opts;
        let [Op::Add { name, value, .. }] = ops else {
            return Err(ResponseCode::Refused);
        };
        let hash = &claim.hash;
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
}
