//! DNS UPDATE planning (RFC 2136), pure: the zone and the prerequisites checked against
//! the view, the update section turned into store ops under the size caps, then the TSIG
//! key's scope (signed) or the unsigned-claim rules (node.md §4.6). No buckets, budgets or
//! store here: the DNS actor charges those for the plan this returns
//! (`actors/dns/update.rs`), and the `dns_slow` fuzz target calls [`plan`] directly.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::ops::Op;
use crate::dnswire::{NameState, ZoneView};

/// The node's UPDATE settings the plan depends on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The zone, lower-case, without the trailing dot.
    pub zone: String,
    /// The same zone as a hickory name (for `zone_of`).
    pub origin: Name,
    /// `[dns] update`: accept UPDATE at all.
    pub enabled: bool,
    pub max_value_bytes: usize,
    pub max_ttl: u64,
    /// Unsigned claims for any recipient (`claim_provider`) or only for recipients
    /// registered here (`receiver_claims`).
    pub claim_provider: bool,
    pub receiver_claims: bool,
    pub claim_max_ttl: u64,
}

/// Who sent the UPDATE.
#[derive(Debug, Clone, Copy)]
pub enum Sender<'a> {
    /// A verified TSIG key with this scope.
    Signed { scope: &'a [String] },
    /// No TSIG; `registered` maps the recipients registered here (mailbox hash) to the
    /// latest expiry of their keys (0 = none).
    Unsigned { registered: &'a HashMap<String, u64> },
}

/// The unsigned claim a plan admits (the actor charges its budgets and bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The recipient's 12-hex mailbox hash (from the owner name).
    pub hash: String,
    /// The claim's sender key.
    pub sender_spk: [u8; 32],
}

/// What to apply: the ops (all or nothing) and, for an unsigned UPDATE, its claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub claim: Option<Claim>,
}

/// Why an UPDATE is refused: the rcode, and the counter to bump (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub rcode: ResponseCode,
    pub counter: Option<&'static str>,
}

impl From<ResponseCode> for Refusal {
    fn from(rcode: ResponseCode) -> Self {
        Refusal { rcode, counter: None }
    }
}

fn claim_refused() -> Refusal {
    Refusal { rcode: ResponseCode::Refused, counter: Some("claim_refused") }
}

/// Plan an UPDATE: `zone` is the name of its zone section's first entry (None when the
/// section is empty), `prereqs` its prerequisite section, `updates` its update section, checked against `view` at time `now`.
pub fn plan(
    view: &ZoneView,
    rules: &Rules,
    zone: Option<&str>,
    prereqs: &[Record],
    updates: &[Record],
    sender: Sender<'_>,
    now: u64,
) -> Result<Plan, Refusal> {
    let o = rules;
    if !o.enabled {
        return Err(ResponseCode::Refused.into());
    }
    let Some(zone) = zone else {
        return Err(ResponseCode::FormErr.into());
    };
    let zname = zone.to_ascii_lowercase();
    if zname.trim_end_matches('.') != o.zone {
        return Err(ResponseCode::NotAuth.into());
    }
    // RFC 2136 §3.2 prerequisites, evaluated against the view.
    for pr in prereqs {
        check_prerequisite(view, rules, pr)?;
    }
    let mut ops = Vec::new();
    for rr in updates {
        let owner = rr.name.to_lowercase().to_string();
        let owner = owner.trim_end_matches('.').to_string();
        if !o.origin.zone_of(&rr.name.to_lowercase()) {
            return Err(ResponseCode::NotZone.into());
        }
        if !owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ResponseCode::Refused.into());
        }
        let rtype = rr.record_type();
        match rr.dns_class {
            DNSClass::IN => {
                if rtype != RecordType::TXT {
                    continue;
                }
                let RData::TXT(txt) = &rr.data else {
                    return Err(ResponseCode::FormErr.into());
                };
                let joined = crate::proto::txt::join(&txt.txt_data);
                let value = String::from_utf8(joined).map_err(|_| ResponseCode::FormErr)?;
                let ttl = if rr.ttl == 0 { 60 } else { rr.ttl as u64 };
                if value.len() > o.max_value_bytes || ttl > o.max_ttl {
                    return Err(ResponseCode::Refused.into());
                }
                ops.push(Op::Add { name: owner, value, ttl });
            }
            DNSClass::NONE => {
                if rtype != RecordType::TXT {
                    continue;
                }
                let RData::TXT(txt) = &rr.data else {
                    return Err(ResponseCode::FormErr.into());
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
            _ => return Err(ResponseCode::FormErr.into()),
        }
    }
    match sender {
        Sender::Signed { scope } => {
            for op in &ops {
                let (name, delete) = match op {
                    Op::Add { name, .. } => (name, false),
                    Op::DeleteValue { name, .. } | Op::DeleteName { name } => (name, true),
                };
                if !super::auth::scope_allows(scope, name, delete) {
                    return Err(ResponseCode::Refused.into());
                }
            }
            Ok(Plan { ops, claim: None })
        }
        Sender::Unsigned { registered } => {
            let claim = unsigned_claim(rules, registered, &mut ops, now)?;
            Ok(Plan { ops, claim: Some(claim) })
        }
    }
}

/// The unsigned-claim rules (node.md §4.6): exactly one add, of a valid claim at
/// `claim-<n>.mb-<H12>.<zone>` (for a recipient registered here in receiver-only mode),
/// living at most `claim_max_ttl` (the record's TTL is clamped to it).
fn unsigned_claim(
    o: &Rules,
    registered: &HashMap<String, u64>,
    ops: &mut [Op],
    now: u64,
) -> Result<Claim, Refusal> {
    if !(o.claim_provider || o.receiver_claims) {
        return Err(ResponseCode::Refused.into());
    }
    // One claim per unsigned UPDATE: each costs a signature check and a budget slot.
    let [Op::Add { name, value, ttl }] = ops else {
        return Err(claim_refused());
    };
    let Some(hash) = claim_owner_hash(name, &o.zone) else {
        return Err(ResponseCode::Refused.into());
    };
    if o.receiver_claims && registered.get(hash).is_none_or(|exp| *exp <= now) {
        return Err(claim_refused());
    }
    let claim = crate::proto::records::claim::ClaimRecord::parse_and_verify(value, now)
        .ok_or(ResponseCode::Refused)?;
    if claim.exp.saturating_sub(now) > o.claim_max_ttl {
        return Err(claim_refused());
    }
    *ttl = (*ttl).min(o.claim_max_ttl);
    Ok(Claim { hash: hash.to_string(), sender_spk: claim.sender_spk })
}

fn check_prerequisite(view: &ZoneView, rules: &Rules, pr: &Record) -> Result<(), ResponseCode> {
    let name = pr.name.to_lowercase().to_string();
    let name = name.trim_end_matches('.');
    if !rules.origin.zone_of(&pr.name.to_lowercase()) {
        return Err(ResponseCode::NotZone);
    }
    let state = view.txt(name);
    let is_apex = name == rules.zone;
    let name_in_use = is_apex || matches!(state, NameState::Txt(_));
    let rtype = pr.record_type();
    let rrset_exists = |t: RecordType| match t {
        RecordType::TXT => matches!(state, NameState::Txt(_)),
        RecordType::SOA | RecordType::NS => is_apex,
        _ => false,
    };
    match (pr.dns_class, rtype) {
        (DNSClass::ANY, RecordType::ANY) => name_in_use.then_some(()).ok_or(ResponseCode::NXDomain),
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

/// `claim-<digits>.mb-<12 lowercase hex>.<zone>` → the 12-hex recipient hash.
pub fn claim_owner_hash<'a>(name: &'a str, zone: &str) -> Option<&'a str> {
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
