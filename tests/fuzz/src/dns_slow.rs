//! Fuzz harness for the DNS slow path. This harness decodes with the same
//! `hickory_server::server::Request::from_bytes` the node's listeners use; an UPDATE then
//! goes through the node's own planner, `dnsmesh::policy::update::plan` (zone and
//! prerequisites against the view, the update section to ops, TSIG scope coverage, the
//! unsigned-claim rules), the function `actors/dns/update.rs` calls; queries run the
//! slow path's pure steps (lower-casing and zone check, `ZoneView::txt`, TXT joining). It also checks the fast path
//! against hickory: every fast-path reply must decode, and for plain LDH queries the
//! fast and slow paths must agree on the rcode.

use std::str::FromStr;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{DNSClass, Name};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use crate::harness::{zone, NOW, ZONE};
use dnsmesh::dnswire::{rcode, Disposition, NameState};
use dnsmesh::policy::ops::Op;
use dnsmesh::policy::update;
use dnsmesh::proto::records::claim::ClaimRecord;
use dnsmesh::proto::registration::{self as reg, ScopeMode};
use dnsmesh::proto::txt;

/// The fixture zone's NS names that are served with addresses by the slow path.
const NS: [&str; 2] = ["ns1.mesh.test", "ns2.mesh.test"];

/// Decode `data` as the slow path does and run its pure steps; compare with the fast
/// path's answer where both apply.
pub fn dns_slow(data: &[u8]) {
    let mut out = Vec::new();
    let fast = zone().answer(data, &mut out, false);
    if let Disposition::Reply { .. } = fast {
        reply_decodes(&out);
    }
    let src = "192.0.2.7:5353".parse().expect("constant address");
    let Ok(req) = Request::from_bytes(data.to_vec(), src, Protocol::Udp) else {
        if let Disposition::Reply { .. } = fast {
            // The fast path answers only well-formed plain queries; hickory refusing one
            // it answered is only acceptable for EDNS option content it validates.
            assert!(data[10..12] != [0, 0], "fast path answered what hickory cannot decode");
        }
        return;
    };
    let origin = Name::from_str(&format!("{ZONE}.")).expect("fixture zone");
    match req.metadata.op_code {
        OpCode::Query => query(&req, &origin, fast),
        OpCode::Update => update(&req, &origin),
        _ => {}
    }
}

/// Every fast-path reply must be a DNS message a real resolver library can read, with
/// as many records in each section as its header counts.
fn reply_decodes(out: &[u8]) {
    let msg = Message::from_vec(out).expect("fast-path reply decodes with hickory");
    let count = |i: usize| usize::from(u16::from_be_bytes([out[6 + 2 * i], out[7 + 2 * i]]));
    assert_eq!(msg.answers.len(), count(0), "answer count");
    assert_eq!(msg.authorities.len(), count(1), "authority count");
    let opt = usize::from(msg.edns.is_some());
    assert_eq!(msg.additionals.len() + opt, count(2), "additional count");
}

/// Only LDH-ish labels print the same in hickory's text form and the wire form.
fn plain_name(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn query(req: &Request, origin: &Name, fast: Disposition) {
    let queries = req.queries.queries();
    let [q] = queries else {
        return;
    };
    let lname = q.name().to_string().to_ascii_lowercase();
    let lname = lname.trim_end_matches('.');
    let in_zone = origin.zone_of(&Name::from(q.name().clone()));
    let state = zone().txt(lname);
    if let NameState::Txt(values) = &state {
        for v in values {
            let parts = txt::split(v);
            let rdata = hickory_proto::rr::rdata::TXT::from_bytes(parts);
            assert_eq!(txt::join(&rdata.txt_data), *v, "TXT value survives hickory");
        }
    }
    let Disposition::Reply { rcode: fast_rcode } = fast else {
        return;
    };
    let edns_v0 = req.edns.as_ref().is_none_or(|e| e.version() == 0);
    if !edns_v0 || q.query_class() != DNSClass::IN || !plain_name(lname) {
        return;
    }
    let addr_owner = lname == ZONE || NS.contains(&lname);
    let exists = addr_owner || matches!(state, NameState::Txt(_) | NameState::EmptyNonTerminal);
    let slow_rcode = if !in_zone {
        rcode::REFUSED
    } else if exists {
        rcode::NOERROR
    } else {
        rcode::NXDOMAIN
    };
    assert_eq!(fast_rcode, slow_rcode, "fast and slow path disagree on {lname:?}");
}

/// UPDATE: the node's own planner (`dnsmesh::policy::update::plan`, the function the DNS
/// actor calls), signed under a user's scope and unsigned, plus what must hold of a plan.
fn update(req: &Request, origin: &Name) {
    let zone_name = req.queries.queries().first().map(|q| q.name().to_string());
    let rules = update::Rules {
        zone: ZONE.to_string(),
        origin: origin.clone(),
        enabled: true,
        max_value_bytes: 4096,
        max_ttl: 86_400,
        claim_provider: true,
        receiver_claims: false,
        claim_max_ttl: 3600,
    };
    let scope =
        reg::default_scope("alice@mesh.test", &[7; 32], Some(&[8; 32]), ZONE, ScopeMode::Default);
    let registered = std::collections::HashMap::new();
    for sender in [
        update::Sender::Signed { scope: scope.as_slice() },
        update::Sender::Unsigned { registered: &registered },
    ] {
        let Ok(plan) = update::plan(
            zone(),
            &rules,
            zone_name.as_deref(),
            &req.answers,
            &req.authorities,
            sender,
            NOW,
        ) else {
            continue;
        };
        for op in &plan.ops {
            let (name, delete) = match op {
                Op::Add { name, value, ttl } => {
                    assert!(value.len() <= rules.max_value_bytes && *ttl <= rules.max_ttl);
                    crate::harness::parse_txt(value, NOW);
                    (name, false)
                }
                Op::DeleteValue { name, .. } | Op::DeleteName { name } => (name, true),
            };
            assert_eq!(*name, name.to_ascii_lowercase(), "planned names are lower-case");
            assert!(plain_name(name), "planned name {name:?}");
            assert!(name == ZONE || name.ends_with(&format!(".{ZONE}")), "{name:?} in zone");
            if let update::Sender::Signed { scope } = sender {
                assert!(reg::coverage(scope, name).allows(delete), "{name:?} outside the scope");
            }
        }
        if let update::Sender::Unsigned { .. } = sender {
            // An unsigned UPDATE stores exactly one verified claim, its TTL clamped.
            let claim = plan.claim.expect("unsigned plans carry their claim");
            let [Op::Add { value, ttl, .. }] = plan.ops.as_slice() else {
                panic!("unsigned plan with other than one add: {:?}", plan.ops);
            };
            let rec = ClaimRecord::parse_and_verify(value, NOW).expect("planned claim verifies");
            assert_eq!(rec.sender_spk, claim.sender_spk);
            assert!(*ttl <= rules.claim_max_ttl && rec.exp > NOW);
        }
    }
}
