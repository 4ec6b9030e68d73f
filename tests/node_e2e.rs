//! The whole node as a real process: HTTP API statuses, DNS answers over real UDP and
//! TCP sockets, durability across restart and `kill -9`, and actor fault recovery.
#![cfg(feature = "net")]

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const OP: &str = "operator-secret";

fn node() -> Node {
    Node::start(
        "mesh.test",
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP), ("DNSMESH_DEBUG__FAULT_INJECTION", "true")],
    )
}

#[test]
fn http_api_statuses_follow_the_reference() {
    let n = node();
    let url = n.url();
    assert_eq!(http(&url, "GET", "/health", None, "").unwrap().0, 200);
    // Unauthenticated write in multi-tenant mode.
    assert_eq!(
        http(&url, "POST", "/v1/records/a.mesh.test", None, r#"{"value":"x","ttl":60}"#).unwrap().0,
        401
    );
    assert_eq!(publish(&n, OP, "a.mesh.test", "x", 60), 201);
    assert_eq!(
        http(&url, "POST", "/v1/records/a.mesh.test", Some(OP), "{not json").unwrap().0,
        400
    );
    assert_eq!(
        http(&url, "POST", "/v1/records/a.mesh.test", Some(OP), r#"{"value":"x","ttl":0}"#)
            .unwrap()
            .0,
        400
    );
    assert_eq!(
        http(&url, "POST", "/v1/records/a.mesh.test", Some(OP), r#"{"value":"x","ttl":999999}"#)
            .unwrap()
            .0,
        400
    );
    let big = "v".repeat(2049);
    assert_eq!(publish(&n, OP, "a.mesh.test", &big, 60), 400);
    assert_eq!(publish(&n, OP, "bad_name!.mesh.test", "x", 60), 400);
    assert_eq!(publish(&n, OP, "a.mesh.test", "quote\"d", 60), 400);
    let (s, body) = http(&url, "GET", "/v1/records/A.mesh.test", Some(OP), "").unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"x\""), "{body}");
    // The 64-values cap answers 413, a re-publish of a present value is allowed.
    for i in 0..63 {
        assert_eq!(publish(&n, OP, "a.mesh.test", &format!("v{i}"), 60), 201);
    }
    assert_eq!(publish(&n, OP, "a.mesh.test", "one-too-many", 60), 413);
    assert_eq!(publish(&n, OP, "a.mesh.test", "v3", 60), 201);
    let (s, _) =
        http(&url, "DELETE", "/v1/records/a.mesh.test", Some(OP), r#"{"value":"v3"}"#).unwrap();
    assert_eq!(s, 204);
    let (s, _) =
        http(&url, "DELETE", "/v1/records/a.mesh.test", Some(OP), r#"{"value":"v3"}"#).unwrap();
    assert_eq!(s, 404);
    assert_eq!(http(&url, "DELETE", "/v1/records/a.mesh.test", Some(OP), "").unwrap().0, 204);
    assert_eq!(http(&url, "GET", "/v1/records/a.mesh.test", Some(OP), "").unwrap().0, 404);
    assert_eq!(publish(&n, OP, "b.mesh.test", "one", 60), 201);
    assert_eq!(publish(&n, OP, "b.mesh.test", "two", 60), 201);
    assert_eq!(publish(&n, OP, "b.mesh.test", "two", 60), 201, "a refresh is not a new row");
    assert_eq!(http(&url, "GET", "/stats", None, "").unwrap().1, r#"{"records":2}"#);
    let (s, m) = http(&url, "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    assert!(m.contains("dmp_http_requests_total{method=\"POST\",status=\"201\"}"), "{m}");
    assert!(m.contains("dmp_records "), "{m}");
    assert!(m.contains("dmp_dns_response_seconds_bucket{le=\"+Inf\"}"), "{m}");
    assert!(m.contains("dmp_actor_restarts_total{actor=\"store\"} 0"), "{m}");
    assert_eq!(http(&url, "GET", "/nope", None, "").unwrap().0, 404);
}

#[test]
fn dns_answers_are_right_for_strict_resolvers() {
    let n = Node::start_on(
        "mesh.test",
        &["127.0.0.1:0", "[::1]:0"],
        &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)],
    );
    let (v4, v6) = (n.dns[0], n.dns[1]);
    let long = "L".repeat(600);
    assert_eq!(publish(&n, OP, "slot-1.mb-abcdefabcdef.mesh.test", &long, 300), 201);
    assert_eq!(publish(&n, OP, "slot-1.mb-abcdefabcdef.mesh.test", "second", 300), 201);

    // Hit over UDP with EDNS, mixed case echoed, values joined from ≤255-byte strings.
    let r = parse(&udp_exchange(
        v4,
        &query("SLOT-1.Mb-AbCdEfAbCdEf.mesh.TEST.", RecordType::TXT, Some(4096)),
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.queries[0].name().to_string(), "SLOT-1.Mb-AbCdEfAbCdEf.mesh.TEST.");
    let mut vals = txt_values(&r);
    vals.sort();
    assert_eq!(vals, vec![long.clone(), "second".to_string()]);
    for a in &r.answers {
        if let RData::TXT(t) = &a.data {
            assert!(t.txt_data.iter().all(|s| s.len() <= 255));
        }
    }
    assert!(r.edns.is_some(), "OPT echoed");

    // Without EDNS the 600-byte answer does not fit 512: TC=1, then the full answer over TCP.
    let q = query("slot-1.mb-abcdefabcdef.mesh.test.", RecordType::TXT, None);
    let r = parse(&udp_exchange(v4, &q));
    assert!(r.metadata.truncation, "TC set");
    assert!(r.answers.is_empty());
    let q2 = query("mesh.test.", RecordType::SOA, None);
    let replies = tcp_exchange(v4, &[q.clone(), q2]);
    let r = parse(&replies[0]);
    assert_eq!(txt_values(&r).len(), 2, "full answer over TCP");
    assert!(r.metadata.authoritative);
    let r = parse(&replies[1]);
    assert!(matches!(r.answers[0].data, RData::SOA(_)), "second query on the same TCP connection");

    // Empty non-terminal: NODATA with SOA; unknown name: NXDOMAIN with SOA.
    let r = parse(&udp_exchange(v4, &query("mb-abcdefabcdef.mesh.test.", RecordType::TXT, None)));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
    let r = parse(&udp_exchange(v4, &query("nothing.mesh.test.", RecordType::TXT, None)));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(r.authorities[0].data, RData::SOA(_)));
    // Apex: SOA, NS, A; TXT miss at the apex is NODATA.
    for t in [RecordType::SOA, RecordType::NS, RecordType::A] {
        let r = parse(&udp_exchange(v4, &query("mesh.test.", t, None)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.answers.is_empty(), "apex {t}");
    }
    let r = parse(&udp_exchange(v4, &query("mesh.test.", RecordType::TXT, None)));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // Existing name, other type: NODATA.
    let r =
        parse(&udp_exchange(v4, &query("slot-1.mb-abcdefabcdef.mesh.test.", RecordType::A, None)));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // Outside the zone: REFUSED, not authoritative.
    let r = parse(&udp_exchange(v4, &query("example.com.", RecordType::TXT, None)));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    // Unknown EDNS version: BADVERS.
    let mut q = query("mesh.test.", RecordType::SOA, Some(1232));
    let n_ = q.len();
    q[n_ - 5] = 1; // OPT TTL = ext-rcode, VERSION (= 1), flags
    let r = udp_exchange(v4, &q);
    let m = parse(&r);
    assert_eq!(m.edns.as_ref().map(|e| e.rcode_high()), Some(1), "BADVERS (16) via OPT");
    // IPv6 listener answers too.
    let r = parse(&udp_exchange(
        v6,
        &query("slot-1.mb-abcdefabcdef.mesh.test.", RecordType::TXT, Some(4096)),
    ));
    assert_eq!(txt_values(&r).len(), 2);
    // Garbage never crashes: the node still answers afterwards.
    for junk in [&b"\x00"[..], &[0xff; 40][..], &[0u8; 12][..]] {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(junk, v4).unwrap();
    }
    // SOA serial stays put without changes, moves on a change.
    let serial = |n: &Node| match &parse(&udp_exchange(
        n.dns[0],
        &query("mesh.test.", RecordType::SOA, None),
    ))
    .answers[0]
        .data
    {
        RData::SOA(s) => s.serial,
        _ => panic!("no SOA"),
    };
    let s1 = serial(&n);
    assert_eq!(serial(&n), s1);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // the serial is in seconds
    assert_eq!(publish(&n, OP, "x.mesh.test", "change", 300), 201);
    assert!(serial(&n) > s1);
}

#[test]
fn acknowledged_writes_survive_restart_and_kill_9() {
    let mut n = node();
    let mut acked = vec![];
    for i in 0..200 {
        let name = format!("k{i}.mesh.test");
        assert_eq!(publish(&n, OP, &name, &format!("value-{i}"), 3600), 201);
        acked.push(name);
    }
    n.kill9();
    n.restart();
    assert_eq!(
        http(&n.url(), "GET", "/stats", None, "").unwrap().1,
        r#"{"records":200}"#,
        "row count kept"
    );
    for (i, name) in acked.iter().enumerate() {
        let r = parse(&udp_exchange(n.dns[0], &query(&format!("{name}."), RecordType::TXT, None)));
        assert_eq!(txt_values(&r), vec![format!("value-{i}")], "{name} after kill -9");
    }
    // Graceful stop then restart keeps them as well.
    assert!(n.term().success(), "clean exit on SIGTERM");
    n.restart();
    let r = parse(&udp_exchange(n.dns[0], &query("k7.mesh.test.", RecordType::TXT, None)));
    assert_eq!(txt_values(&r), vec!["value-7".to_string()]);
}

#[test]
fn a_failed_actor_is_restarted_and_the_node_keeps_serving() {
    let n = node();
    let url = n.url();
    assert_eq!(publish(&n, OP, "before.mesh.test", "v", 300), 201);
    // An actor's row on the health board: (restarts, healthy).
    let row = |actor: &str| -> (u64, bool) {
        let (_, status) = http(&url, "GET", "/status.json", None, "").unwrap();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let a = v["actors"].as_array().unwrap().iter().find(|a| a["name"] == actor).cloned();
        let a = a.unwrap_or_else(|| panic!("no {actor} row: {v}"));
        (a["restarts"].as_u64().unwrap(), a["healthy"].as_bool().unwrap())
    };
    for actor in ["dns", "store", "auth", "sync"] {
        let before = row(actor).0;
        let (s, _) = http(&url, "POST", &format!("/debug/fail/{actor}"), Some(OP), "").unwrap();
        assert_eq!(s, 202, "{actor}");
        // `Fail` is fire-and-forget: wait until the restart is on the board (the count
        // went up and the actor reported `Started` again) before checking anything.
        let restarted = eventually(400, std::time::Duration::from_millis(25), || {
            let (r, healthy) = row(actor);
            r > before && healthy
        });
        assert!(restarted, "{actor} restarted: {:?}", row(actor));
        // DNS answers after the restart.
        let r = parse(&udp_exchange(n.dns[0], &query("before.mesh.test.", RecordType::TXT, None)));
        assert_eq!(txt_values(&r), vec!["v".to_string()], "after failing {actor}");
        // Writes go through again (the store's address survives its restart).
        let name = format!("after-{actor}.mesh.test");
        assert_eq!(publish(&n, OP, &name, "w", 300), 201, "write after failing {actor}");
        let r = parse(&udp_exchange(n.dns[0], &query(&format!("{name}."), RecordType::TXT, None)));
        assert_eq!(txt_values(&r), vec!["w".to_string()]);
    }
    let (_, status) = http(&url, "GET", "/status.json", None, "").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    for a in v["actors"].as_array().unwrap() {
        assert_eq!(a["healthy"], true, "{a}");
        // The http row is reported by the server's workers once they serve.
        assert!(a["since"].as_u64().unwrap() > 0, "{a}");
        if a["name"] != "http" {
            assert!(a["restarts"].as_u64().unwrap() >= 1, "{a}");
        } else {
            assert_eq!(a["restarts"], 0, "{a}");
        }
    }
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"),
            "--dns-listen",
            "not-an-address",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dns.listen"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsmesh-node"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dnsmesh.toml"),
            "--http-listen",
            "0.0.0.0:0",
        ])
        .env("DNSMESH_AUTH__MODE", "open")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "open mode on a public address is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.mode"));
}

#[test]
fn https_with_rustls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let n = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_HTTP__TLS_CERT", cert.to_str().unwrap()),
            ("DNSMESH_HTTP__TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert)
        .arg(format!("https://{}/health", n.http))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
    // Plain HTTP on the TLS port is refused (no silent downgrade).
    assert!(http(&n.url(), "GET", "/health", None, "").map(|(s, _)| s != 200).unwrap_or(true));
}

#[test]
fn per_ip_limits_trust_forwarded_headers_only_from_configured_proxies() {
    let limits = [
        ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
        ("DNSMESH_LIMITS__LIMIT_LOOPBACK", "true"),
        ("DNSMESH_LIMITS__HTTP_RATE", "0.0001"),
        ("DNSMESH_LIMITS__HTTP_BURST", "2"),
    ];
    let post = |n: &Node, xff: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(n.http).unwrap();
        let body = r#"{"value":"v","ttl":60}"#;
        write!(
            s,
            "POST /v1/records/x.mesh.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {OP}\r\n\
             X-Forwarded-For: {xff}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r.split_whitespace().nth(1).unwrap().parse::<u16>().unwrap()
    };
    // Behind a trusted proxy: each forwarded client has its own bucket.
    let mut env = limits.to_vec();
    env.push(("DNSMESH_HTTP__TRUSTED_PROXIES", "127.0.0.1"));
    let n = Node::start("mesh.test", &env);
    assert_eq!((post(&n, "198.51.100.1"), post(&n, "198.51.100.1")), (201, 201));
    assert_eq!(post(&n, "198.51.100.1"), 429);
    assert_eq!(post(&n, "198.51.100.2"), 201, "another client behind the proxy is not throttled");
    // Not a trusted proxy: the header is ignored and the peer address is limited.
    let n = Node::start("mesh.test", &limits);
    assert_eq!((post(&n, "198.51.100.1"), post(&n, "198.51.100.2")), (201, 201));
    assert_eq!(
        post(&n, "198.51.100.3"),
        429,
        "spoofed X-Forwarded-For does not buy a fresh bucket"
    );
}
