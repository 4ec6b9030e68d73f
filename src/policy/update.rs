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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::TXT;

    use super::*;
    use crate::dnswire::ZoneConfig;
    use crate::proto::keys::Identity;
    use crate::proto::records::claim::ClaimRecord;
    use crate::proto::registration::{self as reg, ScopeMode};

    const NOW: u64 = 1_800_000_000;
    const ZONE: &str = "mesh.test";

    fn view() -> ZoneView {
        let cfg =
            ZoneConfig::new(ZONE, "ns1.mesh.test", "hostmaster@mesh.test", &["ns1.mesh.test"]);
        let v = ZoneView::new(&cfg).expect("zone");
        v.set_txt_at("a.mesh.test", &[b"hello"], NOW);
        v
    }

    fn rules() -> Rules {
        Rules {
            zone: ZONE.into(),
            origin: Name::from_str("mesh.test.").expect("name"),
            enabled: true,
            max_value_bytes: 1000,
            max_ttl: 86_400,
            claim_provider: true,
            receiver_claims: false,
            claim_max_ttl: 600,
        }
    }

    fn txt(name: &str, class: DNSClass, value: &str, ttl: u32) -> Record {
        let mut r = Record::from_rdata(
            Name::from_str(name).expect("name"),
            ttl,
            RData::TXT(TXT::new(vec![value.to_string()])),
        );
        r.dns_class = class;
        r
    }

    fn alice_scope() -> Vec<String> {
        reg::default_scope("alice@mesh.test", &[7; 32], Some(&[8; 32]), ZONE, ScopeMode::Default)
    }

    fn plan_signed(prereqs: &[Record], updates: &[Record]) -> Result<Plan, Refusal> {
        let scope = alice_scope();
        let sender = Sender::Signed { scope: &scope };
        plan(&view(), &rules(), Some("Mesh.Test."), prereqs, updates, sender, NOW)
    }

    /// A name alice's default scope covers (her mailbox slots), lower-cased by the plan.
    fn alice_owned() -> String {
        let scope = alice_scope();
        let owned = scope.iter().find(|s| s.starts_with("slot-")).expect("a slot pattern");
        owned.replace('*', "1")
    }

    #[test]
    fn zone_section_and_switch() {
        let v = view();
        let reg = HashMap::new();
        let s = Sender::Unsigned { registered: &reg };
        let r = |z: Option<&str>, o: &Rules| plan(&v, o, z, &[], &[], s, NOW).map_err(|e| e.rcode);
        assert_eq!(r(None, &rules()), Err(ResponseCode::FormErr));
        assert_eq!(r(Some("other.test."), &rules()), Err(ResponseCode::NotAuth));
        let off = Rules { enabled: false, ..rules() };
        assert_eq!(r(Some("mesh.test."), &off), Err(ResponseCode::Refused));
    }

    #[test]
    fn signed_ops_follow_the_scope() {
        let owned = alice_owned();
        let add = txt(&format!("{}.", owned.to_ascii_uppercase()), DNSClass::IN, "v", 0);
        let p = plan_signed(&[], &[add]).expect("in scope");
        assert_eq!(p.ops, vec![Op::Add { name: owned.clone(), value: "v".into(), ttl: 60 }]);
        assert_eq!(p.claim, None);
        // Someone else's name, a name outside the zone, a value over the cap: refused.
        let other = txt("id-bob.mesh.test.", DNSClass::IN, "v", 60);
        assert_eq!(plan_signed(&[], &[other]).map_err(|e| e.rcode), Err(ResponseCode::Refused));
        let outside = txt("a.other.test.", DNSClass::IN, "v", 60);
        assert_eq!(plan_signed(&[], &[outside]).map_err(|e| e.rcode), Err(ResponseCode::NotZone));
        let big = txt(&format!("{owned}."), DNSClass::IN, &"x".repeat(1001), 60);
        assert_eq!(plan_signed(&[], &[big]).map_err(|e| e.rcode), Err(ResponseCode::Refused));
    }

    #[test]
    fn prerequisites_are_checked_against_the_view() {
        let owned = alice_owned();
        let add = txt(&format!("{owned}."), DNSClass::IN, "v", 60);
        let holds = txt("a.mesh.test.", DNSClass::IN, "hello", 0);
        assert!(plan_signed(&[holds], std::slice::from_ref(&add)).is_ok());
        let fails = txt("a.mesh.test.", DNSClass::IN, "other", 0);
        let r = plan_signed(&[fails], std::slice::from_ref(&add)).map_err(|e| e.rcode);
        assert_eq!(r, Err(ResponseCode::NXRRSet));
    }

    #[test]
    fn unsigned_is_one_verified_claim_with_its_ttl_clamped() {
        let id = Identity::from_private_bytes([5; 32]);
        let claim = ClaimRecord {
            msg_id: [1; 16],
            sender_spk: id.ed25519_public(),
            sender_mailbox_domain: "b.test".into(),
            slot: 0,
            ts: NOW,
            exp: NOW + 300,
        };
        let value = claim.sign(&id).expect("sign");
        let name = "claim-1.mb-0123456789ab.mesh.test.";
        let reg = HashMap::new();
        let s = Sender::Unsigned { registered: &reg };
        let one = [txt(name, DNSClass::IN, &value, 3600)];
        let p = plan(&view(), &rules(), Some("mesh.test."), &[], &one, s, NOW).expect("claim");
        let Op::Add { ttl, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
        assert_eq!((p.ops.len(), *ttl), (1, 600));
        let c = p.claim.expect("claim");
        assert_eq!((c.hash.as_str(), c.sender_spk), ("0123456789ab", id.ed25519_public()));
        // Two adds, a forged value, or a recipient not registered here in receiver-only mode.
        let two = [one[0].clone(), one[0].clone()];
        let r = plan(&view(), &rules(), Some("mesh.test."), &[], &two, s, NOW);
        assert_eq!(
            r,
            Err(Refusal { rcode: ResponseCode::Refused, counter: Some("claim_refused") })
        );
        let forged = [txt(name, DNSClass::IN, &value.replace('A', "B"), 60)];
        let r = plan(&view(), &rules(), Some("mesh.test."), &[], &forged, s, NOW);
        assert_eq!(r.map_err(|e| e.rcode), Err(ResponseCode::Refused));
        let recv = Rules { claim_provider: false, receiver_claims: true, ..rules() };
        let r = plan(&view(), &recv, Some("mesh.test."), &[], &one, s, NOW);
        assert_eq!(r.map_err(|e| e.counter), Err(Some("claim_refused")));
    }
}
