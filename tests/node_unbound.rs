//! A real caching resolver in front of the node: unbound on loopback with a stub zone,
//! 0x20 case randomisation and QNAME minimisation on, resolves identity and mailbox
//! records through to our node and caches negative answers per our SOA.
#![cfg(feature = "net")]

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "operator-secret";

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    drop(s);
    p
}

struct Unbound {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_unbound(node_dns: std::net::SocketAddr, zone: &str) -> Unbound {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = format!(
        r#"server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-ip6: no
  module-config: "iterator"
  domain-insecure: "{zone}"
  local-zone: "test." nodefault
  do-not-query-localhost: no
  qname-minimisation: yes
  use-caps-for-id: yes
  access-control: 127.0.0.0/8 allow
stub-zone:
  name: "{zone}"
  stub-addr: {ip}@{nport}
"#,
        dir = dir.path().display(),
        ip = node_dns.ip(),
        nport = node_dns.port(),
    );
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new("unbound")
        .arg("-d")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unbound (Debian package, installed by .ci/run)");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // Ready when it answers a query for the zone apex (bounded number of tries).
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let q = query(&format!("{zone}."), RecordType::SOA, None);
    for _ in 0..100 {
        let _ = sock.send_to(&q, addr);
        let mut buf = [0u8; 1500];
        if sock.recv_from(&mut buf).is_ok() {
            return Unbound { child, addr, _dir: dir };
        }
    }
    panic!("unbound did not come up on {addr}");
}

fn resolve(addr: std::net::SocketAddr, name: &str) -> hickory_proto::op::Message {
    let mut q = query(name, RecordType::TXT, Some(1232));
    q[2] |= 0x01; // RD: ask the resolver to recurse
    parse(&udp_exchange(addr, &q))
}

fn txts(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::TXT(t) => Some(
                String::from_utf8(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect())
                    .unwrap(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn unbound_resolves_through_to_the_node_and_caches_negatives() {
    let n = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let id_name = dnsmesh::proto::names::identity("alice", "mesh.test");
    let long_manifest = format!("v=dmp1;t=manifest;d={}", "B".repeat(700));
    let slot = "slot-4.mb-0123456789ab.mesh.test";
    assert_eq!(publish(&n, OP, &id_name, "v=dmp1;t=identity;d=AAAA", 3600), 201);
    assert_eq!(publish(&n, OP, slot, &long_manifest, 3600), 201);
    let ub = start_unbound(n.dns[0], "mesh.test");

    let r = resolve(ub.addr, &format!("{id_name}."));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(txts(&r), vec!["v=dmp1;t=identity;d=AAAA".to_string()]);
    // A multi-string mailbox value (through QNAME minimisation: mb-… is an empty non-terminal).
    let r = resolve(ub.addr, &format!("{slot}."));
    assert_eq!(txts(&r), vec![long_manifest]);

    // Negative answer, cached per our SOA: the name stays NXDOMAIN at the resolver after it
    // appears at the node (within the SOA minimum of 60 s).
    let later = "later.mesh.test";
    let r = resolve(ub.addr, &format!("{later}."));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.authorities.iter().any(|a| matches!(a.data, RData::SOA(_))), "SOA in authority");
    assert_eq!(publish(&n, OP, later, "now-here", 3600), 201);
    let direct =
        parse(&udp_exchange(n.dns[0], &query(&format!("{later}."), RecordType::TXT, None)));
    assert_eq!(txts(&direct), vec!["now-here".to_string()]);
    let r = resolve(ub.addr, &format!("{later}."));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NXDomain,
        "negative answer served from cache"
    );
}
