//! `ZoneView::answer` never panics, and every reply it builds is a well-formed DNS
//! message answering the query's ID.

use dnsmesh::dnswire::{Disposition, HostAddrs, ZoneConfig, ZoneView};
use proptest::prelude::*;

fn view() -> ZoneView {
    let mut cfg =
        ZoneConfig::new("mesh.test", "ns1.mesh.test", "hostmaster.mesh.test", &["ns1.mesh.test"]);
    cfg.apex_addrs = vec!["192.0.2.1".parse().unwrap()];
    cfg.hosts = vec![HostAddrs {
        name: "ns1.mesh.test".into(),
        addrs: vec!["192.0.2.53".parse().unwrap()],
    }];
    let v = ZoneView::new(&cfg).unwrap();
    v.set_txt("a.mesh.test", &[b"hello"]);
    v.set_txt("slot-1.mb-x.mesh.test", &[&[b'm'; 700], b"second"]);
    v
}

fn name_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    q.extend_from_slice(&name_wire(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        query("a.mesh.test", 16, false),
        query("A.MESH.test", 16, true),
        query("slot-1.mb-x.mesh.test", 16, false),
        query("slot-1.mb-x.mesh.test", 16, true),
        query("mb-x.mesh.test", 16, true),
        query("nope.mesh.test", 1, false),
        query("mesh.test", 2, true),
        query("mesh.test", 6, false),
        query("ns1.mesh.test", 1, true),
        query("example.com", 16, false),
    ]
}

/// Skip a possibly compressed name; `None` if it runs off the end.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        if len & 0xC0 == 0xC0 {
            msg.get(pos + 1)?;
            return Some(pos + 2);
        }
        pos += 1 + len;
        if len == 0 {
            return Some(pos);
        }
    }
}

/// Check a reply's structure: header, echoed question, every counted record present.
fn check_reply(query: &[u8], out: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(out.len() >= 12);
    prop_assert_eq!(&out[..2], &query[..2], "ID copied");
    prop_assert!(out[2] & 0x80 != 0, "QR set");
    let count = |i: usize| u16::from_be_bytes([out[4 + 2 * i], out[5 + 2 * i]]);
    prop_assert_eq!(count(0), 1);
    let qend = skip_name(out, 12).map(|p| p + 4);
    prop_assert!(
        qend.is_some_and(|q| q <= out.len() && out[12..q] == query[12..q]),
        "question echoed"
    );
    let mut pos = qend.unwrap_or(0);
    for _ in 0..(count(1) + count(2) + count(3)) {
        let p = skip_name(out, pos);
        prop_assert!(p.is_some(), "owner");
        let p = p.unwrap_or(0);
        let rdlen = out.get(p + 8..p + 10).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
        prop_assert!(rdlen.is_some(), "RR header");
        pos = p + 10 + rdlen.unwrap_or(0);
        prop_assert!(pos <= out.len(), "RDATA inside the message");
    }
    prop_assert_eq!(pos, out.len(), "nothing after the counted records");
    Ok(())
}

fn run(v: &ZoneView, q: &[u8], out: &mut Vec<u8>) -> Result<(), TestCaseError> {
    for max_tcp in [false, true] {
        if let Disposition::Reply { .. } = v.answer(q, out, max_tcp) {
            check_reply(q, out)?;
            prop_assert!(out.len() <= 65535);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(q: &mut Vec<u8>, m: &Mutation) {
    let n = q.len().max(1);
    match *m {
        Mutation::Set(i, b) => {
            if let Some(x) = q.get_mut(i % n) {
                *x = b;
            }
        }
        Mutation::Flip(i, bit) => {
            if let Some(x) = q.get_mut(i % n) {
                *x ^= 1 << bit;
            }
        }
        Mutation::Truncate(i) => q.truncate(i % n),
        Mutation::Insert(i, b) => q.insert(i % (q.len() + 1), b),
        Mutation::Remove(i) => {
            if !q.is_empty() {
                q.remove(i % n);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let v = view();
        let mut out = Vec::new();
        run(&v, &bytes, &mut out)?;
    }

    #[test]
    fn arbitrary_header_on_valid_question(header in proptest::array::uniform12(any::<u8>()), seed in 0usize..10) {
        let v = view();
        let mut q = seeds()[seed].clone();
        q[..12].copy_from_slice(&header);
        let mut out = Vec::new();
        run(&v, &q, &mut out)?;
    }

    #[test]
    fn mutated_queries_never_panic(seed in 0usize..10, muts in proptest::collection::vec(mutation(), 1..6)) {
        let v = view();
        let mut q = seeds()[seed].clone();
        for m in &muts {
            apply(&mut q, m);
        }
        let mut out = Vec::new();
        run(&v, &q, &mut out)?;
    }
}

#[test]
fn seeds_are_answered() {
    let v = view();
    let mut out = Vec::new();
    for q in seeds() {
        assert!(matches!(v.answer(&q, &mut out, false), Disposition::Reply { .. }), "{q:?}");
        check_reply(&q, &out).unwrap();
    }
}
