//! The DNS hot path, checked byte-wise at the header and section level.

use std::net::IpAddr;

use dnsmesh::dnswire::{rcode, Disposition, HostAddrs, NameState, ZoneConfig, ZoneView};

const TXT: u16 = 16;
const A: u16 = 1;
const NS: u16 = 2;
const SOA: u16 = 6;
const MX: u16 = 15;
const AAAA: u16 = 28;
const ANY: u16 = 255;

// ---------- query builders ----------

fn name_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Header with the given ID, flag bytes and counts.
fn header(id: u16, flags: [u8; 2], counts: [u16; 4]) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&flags);
    for c in counts {
        q.extend_from_slice(&c.to_be_bytes());
    }
    q
}

fn opt_rr(payload: u16, version: u8, dnssec_ok: bool) -> Vec<u8> {
    let mut o = vec![0, 0, 41];
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    o
}

/// A plain query (RD set) with an optional OPT (payload, version).
fn query(id: u16, name: &str, qtype: u16, edns: Option<(u16, u8)>) -> Vec<u8> {
    let mut q = header(id, [0x01, 0x00], [1, 0, 0, u16::from(edns.is_some())]);
    q.extend_from_slice(&name_wire(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if let Some((payload, version)) = edns {
        q.extend_from_slice(&opt_rr(payload, version, false));
    }
    q
}

// ---------- response parser ----------

#[derive(Debug, Clone)]
struct Rr {
    name: String,
    /// Wire length of the owner as written (2 for a bare pointer).
    owner_len: usize,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Vec<u8>,
    rdata_at: usize,
}

#[derive(Debug)]
struct Resp {
    raw: Vec<u8>,
    id: u16,
    flags: u16,
    counts: [u16; 4],
    question: Vec<u8>,
    answers: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
}

impl Resp {
    fn qr(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    fn rcode(&self) -> u16 {
        self.flags & 0x000F
    }
    fn opt(&self) -> Option<&Rr> {
        self.additional.iter().find(|r| r.rtype == 41)
    }
}

/// Read a possibly compressed name; returns it (case kept) and the bytes it took in place.
fn read_name(msg: &[u8], mut pos: usize) -> (String, usize) {
    let start = pos;
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = msg[pos] as usize;
        if len & 0xC0 == 0xC0 {
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | msg[pos + 1] as usize;
            continue;
        }
        if len == 0 {
            end.get_or_insert(pos + 1);
            break;
        }
        labels.push(String::from_utf8_lossy(&msg[pos + 1..pos + 1 + len]).into_owned());
        pos += 1 + len;
    }
    (labels.join("."), end.unwrap() - start)
}

fn read_rr(msg: &[u8], pos: &mut usize) -> Rr {
    let (name, owner_len) = read_name(msg, *pos);
    let p = *pos + owner_len;
    let be16 = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let rdlen = be16(p + 8) as usize;
    let rr = Rr {
        name,
        owner_len,
        rtype: be16(p),
        class: be16(p + 2),
        ttl: u32::from_be_bytes([msg[p + 4], msg[p + 5], msg[p + 6], msg[p + 7]]),
        rdata: msg[p + 10..p + 10 + rdlen].to_vec(),
        rdata_at: p + 10,
    };
    *pos = p + 10 + rdlen;
    rr
}

fn parse(msg: &[u8]) -> Resp {
    let be16 = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let counts = [be16(4), be16(6), be16(8), be16(10)];
    assert_eq!(counts[0], 1, "responses echo exactly one question");
    let (_, qlen) = read_name(msg, 12);
    let question = msg[12..12 + qlen + 4].to_vec();
    let mut pos = 12 + qlen + 4;
    let mut section = |n: u16| (0..n).map(|_| read_rr(msg, &mut pos)).collect::<Vec<_>>();
    let answers = section(counts[1]);
    let authority = section(counts[2]);
    let additional = section(counts[3]);
    assert_eq!(pos, msg.len(), "no bytes after the last record");
    Resp {
        raw: msg.to_vec(),
        id: be16(0),
        flags: be16(2),
        counts,
        question,
        answers,
        authority,
        additional,
    }
}

/// TXT RDATA split into its character-strings.
fn strings(rdata: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rdata.len() {
        let n = rdata[i] as usize;
        out.push(rdata[i + 1..i + 1 + n].to_vec());
        i += 1 + n;
    }
    out
}

struct Soa {
    mname: String,
    rname: String,
    serial: u32,
    refresh: u32,
    retry: u32,
    expire: u32,
    minimum: u32,
}

fn soa(resp: &Resp, rr: &Rr) -> Soa {
    let msg = &resp.raw;
    let (mname, ml) = read_name(msg, rr.rdata_at);
    let (rname, rl) = read_name(msg, rr.rdata_at + ml);
    let p = rr.rdata_at + ml + rl;
    let u32_at =
        |i: usize| u32::from_be_bytes([msg[p + i], msg[p + i + 1], msg[p + i + 2], msg[p + i + 3]]);
    assert_eq!(p + 20, rr.rdata_at + rr.rdata.len(), "SOA rdata length");
    Soa {
        mname,
        rname,
        serial: u32_at(0),
        refresh: u32_at(4),
        retry: u32_at(8),
        expire: u32_at(12),
        minimum: u32_at(16),
    }
}

// ---------- fixtures ----------

fn config() -> ZoneConfig {
    let mut cfg = ZoneConfig::new(
        "mesh.test",
        "ns1.mesh.test",
        "hostmaster@mesh.test",
        &["ns1.mesh.test", "ns2.example.net"],
    );
    cfg.apex_addrs = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    cfg.hosts = vec![HostAddrs {
        name: "ns1.mesh.test".into(),
        addrs: vec!["192.0.2.53".parse().unwrap()],
    }];
    cfg
}

fn view() -> ZoneView {
    ZoneView::new(&config()).unwrap()
}

fn ask(v: &ZoneView, q: &[u8]) -> Resp {
    let mut out = Vec::new();
    let d = v.answer(q, &mut out, false);
    let resp = parse(&out);
    assert_eq!(
        d,
        Disposition::Reply { rcode: resp.rcode() },
        "disposition carries the header rcode"
    );
    resp
}

fn ask_ok(v: &ZoneView, name: &str, qtype: u16) -> Resp {
    ask(v, &query(0x1234, name, qtype, None))
}

/// Common checks of every answer from the zone: QR, AA, ID, RD, question echo.
fn check_common(resp: &Resp, q: &[u8]) {
    assert!(resp.qr(), "QR set");
    assert_eq!(resp.id, u16::from_be_bytes([q[0], q[1]]), "ID copied");
    assert_eq!(resp.rd(), q[2] & 1 != 0, "RD copied");
    assert_eq!(resp.flags & 0x7800, 0, "opcode QUERY");
    assert_eq!(resp.flags & 0x0080, 0, "RA never set");
    let qlen = resp.question.len();
    assert_eq!(resp.question, q[12..12 + qlen], "question echoed byte for byte");
}

fn check_soa_authority(v: &ZoneView, resp: &Resp) {
    assert_eq!(resp.authority.len(), 1, "one SOA in authority");
    let rr = &resp.authority[0];
    assert_eq!((rr.rtype, rr.class, rr.ttl), (SOA, 1, 60));
    assert_eq!(rr.name.to_ascii_lowercase(), "mesh.test", "SOA owner is the zone");
    assert_eq!(rr.owner_len, 2, "SOA owner compressed against the question");
    let s = soa(resp, rr);
    assert_eq!(s.mname.to_ascii_lowercase(), "ns1.mesh.test");
    assert_eq!(s.rname.to_ascii_lowercase(), "hostmaster.mesh.test");
    assert_eq!(s.serial, v.serial(), "current serial");
    assert_eq!((s.refresh, s.retry, s.expire, s.minimum), (3600, 600, 604_800, 60));
}

// ---------- positive answers ----------

#[test]
fn txt_hit_single_value() {
    let v = view();
    assert!(v.set_txt("a.mesh.test", &[b"hello"]));
    let q = query(0xBEEF, "a.mesh.test", TXT, None);
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert!(r.aa() && !r.tc());
    assert_eq!(r.rcode(), 0);
    assert_eq!(r.counts, [1, 1, 0, 0]);
    let rr = &r.answers[0];
    assert_eq!((rr.rtype, rr.class, rr.ttl), (TXT, 1, 60));
    assert_eq!(rr.name, "a.mesh.test");
    assert_eq!(&r.raw[q.len()..q.len() + 2], &[0xC0, 0x0C], "owner points at the question");
    assert_eq!(rr.rdata, b"\x05hello");
    assert_eq!(r.raw.len(), q.len() + 12 + 6, "answer is exactly one compressed RR");
}

#[test]
fn txt_hit_multi_value_and_long_split() {
    let v = view();
    let long: Vec<u8> = (0..600u32).map(|i| b'a' + (i % 26) as u8).collect();
    let exact = vec![b'z'; 255];
    v.set_txt("m.mesh.test", &[&long, b"", &exact, b"x"]);
    let r = ask(&v, &query(2, "m.mesh.test", TXT, Some((4096, 0))));
    assert_eq!(r.counts[1], 4, "one RR per value");
    let got: Vec<Vec<Vec<u8>>> = r.answers.iter().map(|rr| strings(&rr.rdata)).collect();
    assert_eq!(
        got[0].iter().map(Vec::len).collect::<Vec<_>>(),
        vec![255, 255, 90],
        "600 bytes → 255+255+90"
    );
    assert_eq!(got[0].concat(), long);
    assert_eq!(got[1], vec![Vec::<u8>::new()], "empty value is one empty string");
    assert_eq!(got[2], vec![exact.clone()], "255 bytes stay one string");
    assert_eq!(got[3], vec![b"x".to_vec()]);
    assert!(r.answers.iter().all(|rr| rr.owner_len == 2 && rr.name == "m.mesh.test"));
    assert_eq!(v.txt("m.mesh.test"), NameState::Txt(vec![long, vec![], exact, b"x".to_vec()]));
}

#[test]
fn mixed_case_is_echoed() {
    let v = view();
    v.set_txt("slot-1.mb-abc.mesh.test", &[b"v"]);
    let q = query(7, "SlOt-1.Mb-AbC.MeSh.TeSt", TXT, None);
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert_eq!(r.counts[1], 1);
    assert_eq!(r.answers[0].name, "SlOt-1.Mb-AbC.MeSh.TeSt", "owner follows the question's case");
    // Negative answers point the SOA owner at the question's own zone suffix.
    let r = ask(&v, &query(8, "NoPe.MESH.test", TXT, None));
    assert_eq!(r.rcode(), rcode::NXDOMAIN);
    assert_eq!(r.authority[0].name, "MESH.test");
}

#[test]
fn flags_rd_cd_and_id() {
    let v = view();
    v.set_txt("a.mesh.test", &[b"x"]);
    let mut q = query(0xA55A, "a.mesh.test", TXT, None);
    q[2] = 0x00; // RD clear
    q[3] = 0x10; // CD set
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert!(!r.rd());
    assert_eq!(r.flags & 0x0010, 0x0010, "CD copied");
    assert_eq!(r.flags & 0x0020, 0, "AD clear");
}

// ---------- negative answers ----------

#[test]
fn nxdomain_vs_empty_non_terminal() {
    let v = view();
    v.set_txt("slot-1.mb-xyz.mesh.test", &[b"m"]);
    let q = query(1, "mb-xyz.mesh.test", TXT, None);
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert!(r.aa());
    assert_eq!((r.rcode(), r.counts), (0, [1, 0, 1, 0]), "ENT is NODATA");
    check_soa_authority(&v, &r);

    let r = ask_ok(&v, "nope.mesh.test", TXT);
    assert!(r.aa());
    assert_eq!((r.rcode(), r.counts), (rcode::NXDOMAIN, [1, 0, 1, 0]));
    check_soa_authority(&v, &r);

    // A name below a TXT name, and a sibling of the ENT, do not exist.
    assert_eq!(ask_ok(&v, "x.slot-1.mb-xyz.mesh.test", TXT).rcode(), rcode::NXDOMAIN);
    assert_eq!(ask_ok(&v, "mb-xy.mesh.test", TXT).rcode(), rcode::NXDOMAIN);

    // Another type at an existing name (and at the ENT) is NODATA.
    for (name, t) in [
        ("slot-1.mb-xyz.mesh.test", A),
        ("slot-1.mb-xyz.mesh.test", MX),
        ("mb-xyz.mesh.test", AAAA),
    ] {
        let r = ask_ok(&v, name, t);
        assert_eq!((r.rcode(), r.counts), (0, [1, 0, 1, 0]), "{name} type {t} is NODATA");
        check_soa_authority(&v, &r);
    }
    // ANY: TXT names answer their TXT set, ENTs get NODATA.
    let r = ask_ok(&v, "slot-1.mb-xyz.mesh.test", ANY);
    assert_eq!((r.counts[1], r.answers[0].rtype), (1, TXT));
    assert_eq!(ask_ok(&v, "mb-xyz.mesh.test", ANY).counts, [1, 0, 1, 0]);
    assert_eq!(ask_ok(&v, "nope.mesh.test", ANY).rcode(), rcode::NXDOMAIN);

    assert_eq!(v.txt("mb-xyz.mesh.test"), NameState::EmptyNonTerminal);
    assert_eq!(v.txt("nope.mesh.test"), NameState::NxDomain);
}

#[test]
fn removal_makes_name_and_parent_ent_disappear() {
    let v = view();
    v.set_txt("slot-1.mb-xyz.mesh.test", &[b"one"]);
    v.set_txt("slot-2.mb-xyz.mesh.test", &[b"two"]);
    assert_eq!(v.len(), 2);
    assert!(v.set_txt("slot-1.mb-xyz.mesh.test", &[]));
    assert_eq!(ask_ok(&v, "slot-1.mb-xyz.mesh.test", TXT).rcode(), rcode::NXDOMAIN, "removed name");
    assert_eq!(ask_ok(&v, "mb-xyz.mesh.test", TXT).rcode(), 0, "still an ENT via slot-2");
    assert!(v.set_txt("slot-2.mb-xyz.mesh.test", &[]));
    assert_eq!(ask_ok(&v, "mb-xyz.mesh.test", TXT).rcode(), rcode::NXDOMAIN, "ENT gone");
    assert_eq!(v.txt("mb-xyz.mesh.test"), NameState::NxDomain);
    assert_eq!((v.len(), v.approx_bytes()), (0, 0), "nothing left behind");

    // A name that is both a TXT holder and an ENT keeps existing when its TXT goes.
    v.set_txt("p.mesh.test", &[b"parent"]);
    v.set_txt("c.p.mesh.test", &[b"child"]);
    v.set_txt("p.mesh.test", &[]);
    let r = ask_ok(&v, "p.mesh.test", TXT);
    assert_eq!((r.rcode(), r.counts[1]), (0, 0), "parent now an ENT");
    v.set_txt("c.p.mesh.test", &[]);
    assert_eq!(ask_ok(&v, "p.mesh.test", TXT).rcode(), rcode::NXDOMAIN);
    assert_eq!((v.len(), v.approx_bytes()), (0, 0));
}

// ---------- apex and hosts ----------

#[test]
fn apex_records() {
    let v = view();
    let r = ask_ok(&v, "mesh.test", SOA);
    assert!(r.aa());
    assert_eq!((r.rcode(), r.counts), (0, [1, 1, 0, 0]));
    let rr = &r.answers[0];
    assert_eq!((rr.rtype, rr.ttl, rr.owner_len, rr.name.as_str()), (SOA, 60, 2, "mesh.test"));
    let s = soa(&r, rr);
    assert_eq!(
        (s.mname.as_str(), s.rname.as_str(), s.serial),
        ("ns1.mesh.test", "hostmaster.mesh.test", v.serial())
    );

    let r = ask_ok(&v, "Mesh.Test", NS);
    assert_eq!((r.rcode(), r.counts), (0, [1, 2, 0, 1]), "two NS, one glue A");
    let targets: Vec<String> =
        r.answers.iter().map(|rr| read_name(&r.raw, rr.rdata_at).0).collect();
    assert_eq!(targets, vec!["ns1.Mesh.Test", "ns2.example.net"]);
    assert!(r.answers.iter().all(|rr| rr.rtype == NS && rr.name == "Mesh.Test"));
    let glue = &r.additional[0];
    assert_eq!(
        (glue.rtype, glue.name.as_str(), glue.rdata.as_slice()),
        (A, "ns1.Mesh.Test", &[192, 0, 2, 53][..])
    );

    let r = ask_ok(&v, "mesh.test", A);
    assert_eq!((r.counts[1], r.answers[0].rdata.as_slice()), (1, &[192, 0, 2, 1][..]));
    let r = ask_ok(&v, "mesh.test", AAAA);
    let want: IpAddr = "2001:db8::1".parse().unwrap();
    let IpAddr::V6(want) = want else { unreachable!() };
    assert_eq!((r.counts[1], r.answers[0].rdata.as_slice()), (1, &want.octets()[..]));

    // TXT and other types at the apex: NODATA, never NXDOMAIN.
    for t in [TXT, MX] {
        let r = ask_ok(&v, "mesh.test", t);
        assert_eq!((r.rcode(), r.counts), (0, [1, 0, 1, 0]), "apex type {t}");
        check_soa_authority(&v, &r);
    }
    let r = ask_ok(&v, "mesh.test", ANY);
    assert_eq!((r.counts[1], r.answers[0].rtype), (1, SOA), "ANY at apex → SOA");
    assert_eq!(v.txt("mesh.test"), NameState::EmptyNonTerminal);

    // TXT at the apex itself is served like any name.
    v.set_txt("mesh.test", &[b"apex"]);
    assert_eq!(ask_ok(&v, "mesh.test", TXT).answers[0].rdata, b"\x04apex");
    assert_eq!(v.txt("mesh.test."), NameState::Txt(vec![b"apex".to_vec()]));
}

#[test]
fn host_glue_names() {
    let v = view();
    let r = ask_ok(&v, "ns1.mesh.test", A);
    assert_eq!((r.rcode(), r.counts), (0, [1, 1, 0, 0]));
    assert_eq!(
        (r.answers[0].name.as_str(), r.answers[0].rdata.as_slice()),
        ("ns1.mesh.test", &[192, 0, 2, 53][..])
    );
    for t in [AAAA, TXT] {
        let r = ask_ok(&v, "ns1.mesh.test", t);
        assert_eq!((r.rcode(), r.counts), (0, [1, 0, 1, 0]), "host type {t} is NODATA");
    }
    assert_eq!(v.txt("ns1.mesh.test"), NameState::EmptyNonTerminal);
    // A TXT can also live at a host name.
    v.set_txt("ns1.mesh.test", &[b"t"]);
    assert_eq!(ask_ok(&v, "ns1.mesh.test", TXT).counts[1], 1);
    assert_eq!(ask_ok(&v, "ns1.mesh.test", A).counts[1], 1);

    // A host below an otherwise empty name makes that name an ENT.
    let mut cfg = config();
    cfg.hosts = vec![HostAddrs {
        name: "a.ns.mesh.test".into(),
        addrs: vec!["192.0.2.9".parse().unwrap()],
    }];
    let v = ZoneView::new(&cfg).unwrap();
    assert_eq!(ask_ok(&v, "ns.mesh.test", TXT).rcode(), 0);
    assert_eq!(v.txt("ns.mesh.test"), NameState::EmptyNonTerminal);
    // No glue in NS answers when the target has none.
    assert_eq!(ask_ok(&v, "mesh.test", NS).counts, [1, 2, 0, 0]);
}

#[test]
fn config_is_checked() {
    let mut cfg = config();
    cfg.hosts = vec![HostAddrs { name: "ns.example.net".into(), addrs: vec![] }];
    assert!(ZoneView::new(&cfg).is_err(), "glue outside the zone");
    let mut cfg = config();
    cfg.origin = String::new();
    assert!(ZoneView::new(&cfg).is_err(), "empty origin");
    let mut cfg = config();
    cfg.soa_mname = "a..b".into();
    assert!(ZoneView::new(&cfg).is_err(), "bad mname");
    // TTL and MINIMUM follow the config.
    let mut cfg = config();
    cfg.ttl = 300;
    cfg.soa_minimum = Some(30);
    let v = ZoneView::new(&cfg).unwrap();
    v.set_txt("a.mesh.test", &[b"x"]);
    assert_eq!(ask_ok(&v, "a.mesh.test", TXT).answers[0].ttl, 300);
    let r = ask_ok(&v, "b.mesh.test", TXT);
    assert_eq!(r.authority[0].ttl, 30, "negative SOA TTL = min(TTL, MINIMUM)");
    assert_eq!(soa(&r, &r.authority[0]).minimum, 30);
}

// ---------- out of zone ----------

#[test]
fn refused_outside_zone() {
    let v = view();
    let mut tricky = header(9, [0x01, 0x00], [1, 0, 0, 0]);
    // One label "a\x04mesh" followed by "test": its last 11 bytes look like the origin.
    tricky.extend_from_slice(b"\x06a\x04mesh\x04test\x00\x00\x10\x00\x01");
    let mut cases = vec![
        query(1, "example.com", TXT, None),
        query(2, "xmesh.test", TXT, None),
        query(3, "test", SOA, None),
        query(4, "mesh.test.evil", TXT, None),
        query(5, "", TXT, None),
    ];
    cases.push(tricky);
    for q in cases {
        let r = ask(&v, &q);
        check_common(&r, &q);
        assert_eq!(r.rcode(), rcode::REFUSED, "{q:?}");
        assert!(!r.aa(), "no AA outside the zone");
        assert_eq!(r.counts, [1, 0, 0, 0]);
    }
    assert_eq!(v.txt("example.com"), NameState::OutOfZone);
    assert!(!v.set_txt("a.example.com", &[b"x"]), "names outside the origin are ignored");
    assert_eq!(v.len(), 0);
}

// ---------- EDNS and sizes ----------

fn check_opt(r: &Resp, ext_rcode: u8) {
    let opt = r.opt().expect("OPT present");
    assert_eq!((opt.name.as_str(), opt.owner_len), ("", 1), "root owner");
    assert_eq!(opt.class, 1232, "our payload");
    // Version 0; the DO bit echoes the query's (RFC 3225 §3), checked in node_conformance.
    assert_eq!(opt.ttl & !0x8000, u32::from(ext_rcode) << 24, "version 0");
    assert!(opt.rdata.is_empty(), "no options");
    assert_eq!(r.additional.last().unwrap().rtype, 41, "OPT last");
}

#[test]
fn edns_echo_and_payload() {
    let v = view();
    v.set_txt("a.mesh.test", &[b"x"]);
    let mut q = query(3, "a.mesh.test", TXT, Some((4096, 0)));
    // DO set and an unknown option: both ignored.
    let n = q.len();
    q[n - 4] = 0x80;
    q[n - 2..].copy_from_slice(&[0, 6]);
    q.extend_from_slice(&[0xFD, 0xE9, 0, 2, 0xAB, 0xCD]);
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert_eq!(r.counts, [1, 1, 0, 1]);
    check_opt(&r, 0);
    // Negative answers carry it too.
    let r = ask(&v, &query(4, "b.mesh.test", TXT, Some((1232, 0))));
    assert_eq!((r.rcode(), r.counts), (rcode::NXDOMAIN, [1, 0, 1, 1]));
    check_opt(&r, 0);
    let r = ask(&v, &query(4, "b.example", TXT, Some((1232, 0))));
    assert_eq!((r.rcode(), r.counts), (rcode::REFUSED, [1, 0, 0, 1]));

    // A ~700-byte answer: fits 1000, not 600; payloads below 512 count as 512.
    v.set_txt("big.mesh.test", &[&[b'b'; 650]]);
    let full = ask(&v, &query(5, "big.mesh.test", TXT, Some((1000, 0))));
    assert!(!full.tc() && full.counts[1] == 1 && full.raw.len() > 600 && full.raw.len() <= 1000);
    for payload in [600, 100, 0] {
        let q = query(6, "big.mesh.test", TXT, Some((payload, 0)));
        let r = ask(&v, &q);
        check_common(&r, &q);
        assert!(r.tc() && r.aa(), "payload {payload}: TC");
        assert_eq!(r.counts, [1, 0, 0, 1], "payload {payload}: question and OPT only");
        check_opt(&r, 0);
    }
    v.set_txt("mid.mesh.test", &[&[b'm'; 400]]);
    let r = ask(&v, &query(7, "mid.mesh.test", TXT, Some((100, 0))));
    assert!(!r.tc() && r.counts[1] == 1, "floor of 512");
}

#[test]
fn badvers() {
    let v = view();
    v.set_txt("a.mesh.test", &[b"x"]);
    for name in ["a.mesh.test", "example.com"] {
        let q = query(11, name, TXT, Some((1232, 1)));
        let mut out = Vec::new();
        assert_eq!(v.answer(&q, &mut out, false), Disposition::Reply { rcode: rcode::BADVERS });
        let r = parse(&out);
        check_common(&r, &q);
        assert_eq!(r.rcode(), 0, "low bits of BADVERS (16) are 0");
        assert_eq!(r.counts, [1, 0, 0, 1], "no answer");
        check_opt(&r, 1);
    }
}

#[test]
fn udp_reply_capped_at_max_udp_payload_whatever_the_client_asks() {
    // Amplification (issue 12): EDNS 65535 does not draw more than the cap (default 1232).
    let v = view();
    v.set_txt("big.mesh.test", &[&[b'b'; 1500]]);
    let q = query(20, "big.mesh.test", TXT, Some((65535, 0)));
    let r = ask(&v, &q);
    assert!(r.tc() && r.counts[1] == 0 && r.raw.len() <= 1232, "TC stub under the default cap");
    check_opt(&r, 0);
    let mut out = Vec::new();
    assert_eq!(v.answer(&q, &mut out, true), Disposition::Reply { rcode: 0 });
    assert!(!parse(&out).tc(), "TCP is not capped");
    // A larger configured cap lets it through; a smaller client payload still wins.
    let mut cfg = config();
    cfg.max_udp_payload = 4096;
    let v = ZoneView::new(&cfg).unwrap();
    v.set_txt("big.mesh.test", &[&[b'b'; 1500]]);
    let r = ask(&v, &q);
    assert!(!r.tc() && r.counts[1] == 1 && r.raw.len() > 1500);
    assert!(ask(&v, &query(21, "big.mesh.test", TXT, Some((1232, 0)))).tc());
    assert!(ask(&v, &query(22, "big.mesh.test", TXT, None)).tc(), "512 without EDNS");
}

#[test]
fn truncation_without_edns_and_tcp_limit() {
    let v = view();
    v.set_txt("big.mesh.test", &[&[b'b'; 600]]);
    let q = query(12, "big.mesh.test", TXT, None);
    let r = ask(&v, &q);
    check_common(&r, &q);
    assert!(r.tc() && r.aa());
    assert_eq!(r.counts, [1, 0, 0, 0]);
    assert_eq!(r.raw.len(), q.len(), "header and question only");
    // Over TCP the same answer is sent whole.
    let mut out = Vec::new();
    assert_eq!(v.answer(&q, &mut out, true), Disposition::Reply { rcode: 0 });
    let r = parse(&out);
    assert!(!r.tc());
    assert_eq!(strings(&r.answers[0].rdata).concat(), vec![b'b'; 600]);
    // 300 × 250 bytes do not fit even 65535: TC over TCP as well.
    let vals: Vec<Vec<u8>> = (0..300).map(|i| vec![b'a' + (i % 26) as u8; 250]).collect();
    let refs: Vec<&[u8]> = vals.iter().map(Vec::as_slice).collect();
    v.set_txt("huge.mesh.test", &refs);
    let q = query(13, "huge.mesh.test", TXT, None);
    assert_eq!(v.answer(&q, &mut out, true), Disposition::Reply { rcode: 0 });
    assert!(parse(&out).tc());
    assert_eq!(v.txt("huge.mesh.test"), NameState::Txt(vals));
}

// ---------- slow path and drops ----------

#[test]
fn slow_and_drop() {
    let v = view();
    v.set_txt("a.mesh.test", &[b"x"]);
    let base = query(1, "a.mesh.test", TXT, None);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut q = base.clone();
        f(&mut q);
        q
    };
    let mut tsig = base.clone();
    tsig[11] = 1;
    tsig.extend_from_slice(b"\x03key\x00\x00\xFA\x00\xFF\x00\x00\x00\x00\x00\x00");
    let mut opt_and_tsig = query(1, "a.mesh.test", TXT, Some((1232, 0)));
    opt_and_tsig[11] = 2;
    opt_and_tsig.extend_from_slice(b"\x03key\x00\x00\xFA\x00\xFF\x00\x00\x00\x00\x00\x00");
    let mut compressed = header(1, [1, 0], [1, 0, 0, 0]);
    compressed.extend_from_slice(b"\xC0\x0C\x00\x10\x00\x01");
    let mut opt_bad_owner = query(1, "a.mesh.test", TXT, Some((1232, 0)));
    let at = opt_bad_owner.len() - 11;
    opt_bad_owner.splice(at..at + 1, *b"\x01x\x00");
    let mut opt_bad_option = query(1, "a.mesh.test", TXT, Some((1232, 0)));
    let n = opt_bad_option.len();
    opt_bad_option[n - 2..].copy_from_slice(&[0, 3]);
    opt_bad_option.extend_from_slice(&[0, 1, 0]);
    let slow_cases: Vec<(&str, Vec<u8>)> = vec![
        ("UPDATE", with(&|q| q[2] = 5 << 3)),
        ("NOTIFY", with(&|q| q[2] = 4 << 3)),
        ("STATUS", with(&|q| q[2] = 2 << 3)),
        ("IQUERY", with(&|q| q[2] = 1 << 3)),
        ("QDCOUNT 0", with(&|q| q[5] = 0)),
        ("QDCOUNT 2", with(&|q| q[5] = 2)),
        ("ANCOUNT 1", with(&|q| q[7] = 1)),
        ("NSCOUNT 1", with(&|q| q[9] = 1)),
        ("ARCOUNT 2", with(&|q| q[11] = 2)),
        ("TSIG", tsig),
        ("OPT + TSIG", opt_and_tsig),
        ("AXFR", query(1, "mesh.test", 252, None)),
        ("IXFR", query(1, "mesh.test", 251, None)),
        ("class CH", with(&|q| *q.last_mut().unwrap() = 3)),
        ("class ANY", with(&|q| *q.last_mut().unwrap() = 255)),
        ("trailing byte", with(&|q| q.push(0))),
        ("cut question", with(&|q| q.truncate(q.len() - 1))),
        ("compressed qname", compressed),
        ("OPT owner not root", opt_bad_owner),
        ("OPT options malformed", opt_bad_option),
        ("header only", base[..12].to_vec()),
    ];
    let mut out = Vec::new();
    for (what, q) in slow_cases {
        assert_eq!(v.answer(&q, &mut out, false), Disposition::Slow, "{what}");
    }
    assert_eq!(v.answer(&base[..11], &mut out, false), Disposition::Drop, "runt");
    assert_eq!(v.answer(&[], &mut out, false), Disposition::Drop, "empty");
    assert_eq!(
        v.answer(&with(&|q| q[2] |= 0x80), &mut out, false),
        Disposition::Drop,
        "a response"
    );
}

// ---------- serial ----------

#[test]
fn serial_changes_only_on_change() {
    let v = view();
    let s0 = v.serial();
    let t = u64::from(s0);
    assert!(!v.set_txt_at("a.mesh.test", &[], t + 10), "removing nothing is no change");
    assert_eq!(v.serial(), s0);
    assert!(v.set_txt_at("a.mesh.test", &[b"x"], t + 100));
    assert_eq!(v.serial(), s0 + 100);
    assert!(!v.set_txt_at("a.mesh.test", &[b"x"], t + 200), "same values");
    assert_eq!(v.serial(), s0 + 100);
    assert!(!v.set_txt_at("A.Mesh.Test.", &[b"x"], t + 250), "same name, other spelling");
    assert_eq!(v.serial(), s0 + 100);
    assert!(v.set_txt_at("a.mesh.test", &[b"x", b"y"], t + 300));
    assert_eq!(v.serial(), s0 + 300);
    assert!(v.set_txt_at("a.mesh.test", &[b"y"], t + 300), "same second");
    assert_eq!(v.serial(), s0 + 300, "no bump within one second");
    assert!(v.set_txt_at("a.mesh.test", &[], t + 50), "clock went back");
    assert_eq!(v.serial(), s0 + 300, "monotonic");
    assert!(!v.set_txt_at("x.example.com", &[b"x"], t + 400));
    assert_eq!(v.serial(), s0 + 300, "out-of-zone writes change nothing");
    v.set_serial_floor(s0 + 5000);
    assert_eq!(v.serial(), s0 + 5000);
    v.set_serial_floor(7);
    assert_eq!(v.serial(), s0 + 5000, "floor never lowers");
    let r = ask_ok(&v, "nope.mesh.test", TXT);
    assert_eq!(soa(&r, &r.authority[0]).serial, s0 + 5000);
}

#[test]
fn len_and_bytes() {
    let v = view();
    let base = v.approx_bytes();
    v.set_txt("x.y.mesh.test", &[&[1u8; 250]]);
    v.set_txt("z.y.mesh.test", &[&[2u8; 250], b"b"]);
    assert_eq!(v.len(), 2);
    assert!(!v.is_empty());
    assert!(v.approx_bytes() > base + 500);
    v.set_txt("Z.Y.MESH.TEST.", &[]);
    v.set_txt("x.y.mesh.test", &[]);
    assert_eq!((v.len(), v.approx_bytes()), (0, base));
}

// ---------- real socket (the UDP loop is I/O: feature `net`) ----------

#[cfg(feature = "net")]
mod real_socket {
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use dnsmesh::dnswire::udp;

    use super::*;

    fn recv_parsed(sock: &UdpSocket) -> Resp {
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("reply");
        parse(&buf[..n])
    }

    type SlowRx = mpsc::Receiver<(Vec<u8>, SocketAddr)>;

    fn serve(bind: &str) -> (udp::UdpServer, Arc<AtomicBool>, SlowRx) {
        let sock = UdpSocket::bind(bind).expect("bind server");
        let v = Arc::new(view());
        v.set_txt("a.mesh.test", &[b"hello"]);
        for i in 0..100 {
            v.set_txt(&format!("n{i}.mesh.test"), &[format!("value-{i}").as_bytes()]);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let slow: udp::SlowHandoff = Box::new(move |pkt, src, _verdict| {
            let _ = tx.send((pkt, src));
        });
        let server = udp::spawn(sock, v, slow, stop.clone()).expect("spawn");
        (server, stop, rx)
    }

    fn exercise(bind: &str, client_bind: &str) {
        let (server, stop, rx) = serve(bind);
        let addr = server.local_addr();
        let client = UdpSocket::bind(client_bind).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        client.send_to(&query(42, "A.mesh.test", TXT, None), addr).unwrap();
        let r = recv_parsed(&client);
        assert_eq!((r.id, r.rcode(), r.counts[1]), (42, 0, 1));
        assert_eq!(r.answers[0].rdata, b"\x05hello");

        // A batch of 100: every one answered, IDs matching the names asked.
        for i in 0..100u16 {
            client.send_to(&query(1000 + i, &format!("n{i}.mesh.test"), TXT, None), addr).unwrap();
        }
        let mut seen = [false; 100];
        for _ in 0..100 {
            let r = recv_parsed(&client);
            let i = usize::from(r.id - 1000);
            assert_eq!(
                strings(&r.answers[0].rdata),
                vec![format!("value-{i}").into_bytes()],
                "reply {i}"
            );
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));

        client.send_to(&query(50, "nope.mesh.test", TXT, None), addr).unwrap();
        assert_eq!(recv_parsed(&client).rcode(), rcode::NXDOMAIN);
        client.send_to(&query(51, "example.com", TXT, None), addr).unwrap();
        assert_eq!(recv_parsed(&client).rcode(), rcode::REFUSED);

        // UPDATE goes to the slow path with the client's address; a runt is dropped.
        let mut update = query(60, "mesh.test", SOA, None);
        update[2] = 5 << 3;
        client.send_to(&update, addr).unwrap();
        client.send_to(&[1, 2, 3], addr).unwrap();
        let (pkt, src) = rx.recv_timeout(Duration::from_secs(5)).expect("slow path called");
        assert_eq!(pkt, update);
        assert_eq!(src, client.local_addr().unwrap());

        let stats = server.stats().clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.dropped.load(Ordering::Relaxed) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stats.queries.load(Ordering::Relaxed), 105);
        assert_eq!(stats.noerror.load(Ordering::Relaxed), 101);
        assert_eq!(stats.nxdomain.load(Ordering::Relaxed), 1);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.slow.load(Ordering::Relaxed), 1);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.truncated.load(Ordering::Relaxed), 0);

        let t = Instant::now();
        stop.store(true, Ordering::Relaxed);
        server.join().expect("thread ended cleanly");
        assert!(t.elapsed() < Duration::from_secs(2), "stop honoured within the read timeout");
    }

    #[test]
    fn udp_loop_ipv4() {
        exercise("127.0.0.1:0", "127.0.0.1:0");
    }

    #[test]
    fn udp_loop_ipv6() {
        exercise("[::1]:0", "[::1]:0");
    }
}

#[test]
fn view_is_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ZoneView>();
    #[cfg(feature = "net")]
    send_sync::<dnsmesh::dnswire::udp::UdpStats>();
}
