//! A real caching resolver in front of the node: unbound on loopback with a stub zone,
//! 0x20 case randomisation and QNAME minimisation on, resolves identity and mailbox
//! records through to our node and caches negative answers per our SOA.
#![cfg(feature = "net")]

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "operator-secret";

fn resolve(addr: std::net::SocketAddr, name: &str) -> hickory_proto::op::Message {
    let mut q = query(name, RecordType::TXT, Some(1232));
    q[2] |= 0x01; // RD: ask the resolver to recurse
    parse(&udp_exchange(addr, &q))
}

#[test]
fn unbound_resolves_through_to_the_node_and_caches_negatives() {
    let n = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let id_name = dnsmesh::proto::names::identity("alice", "mesh.test");
    let long_manifest = format!("v=dmp1;t=manifest;d={}", "B".repeat(700));
    let slot = "slot-4.mb-0123456789ab.mesh.test";
    assert_eq!(publish(&n, OP, &id_name, "v=dmp1;t=identity;d=AAAA", 3600), 201);
    assert_eq!(publish(&n, OP, slot, &long_manifest, 3600), 201);
    let ub = start_unbound(&[("mesh.test", n.dns[0])]);

    let r = resolve(ub.addr, &format!("{id_name}."));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(txt_values(&r), vec!["v=dmp1;t=identity;d=AAAA".to_string()]);
    // A multi-string mailbox value (through QNAME minimisation: mb-… is an empty non-terminal).
    let r = resolve(ub.addr, &format!("{slot}."));
    assert_eq!(txt_values(&r), vec![long_manifest]);

    // Negative answer, cached per our SOA: the name stays NXDOMAIN at the resolver after it
    // appears at the node (within the SOA minimum of 60 s).
    let later = "later.mesh.test";
    let r = resolve(ub.addr, &format!("{later}."));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.authorities.iter().any(|a| matches!(a.data, RData::SOA(_))), "SOA in authority");
    assert_eq!(publish(&n, OP, later, "now-here", 3600), 201);
    let direct =
        parse(&udp_exchange(n.dns[0], &query(&format!("{later}."), RecordType::TXT, None)));
    assert_eq!(txt_values(&direct), vec!["now-here".to_string()]);
    let r = resolve(ub.addr, &format!("{later}."));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NXDomain,
        "negative answer served from cache"
    );
}
