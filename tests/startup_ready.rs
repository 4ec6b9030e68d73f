//! Start-up readiness with many records (issue 18): the view is loaded from the store on
//! a loader thread, and the node prints its ready line only once every stored record is
//! in it. Right after a restart every stored name answers with exactly its values (never
//! NXDOMAIN), and a deleted one does not come back.

#![cfg(feature = "net")]

mod common;

use std::collections::BTreeMap;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const OP: &str = "operator-secret";
/// Names written: each under its own `mb-…` parent (an empty non-terminal), as DMP
/// mailboxes are; every 7th holds a second value.
const NAMES: usize = 3000;
const WRITERS: usize = 8;

fn name(i: usize) -> String {
    format!("slot-{}.mb-{:012x}.mesh.test", i % 10, i * 7919)
}

#[test]
fn every_stored_name_answers_right_after_a_restart() {
    let mut n = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let url = n.url();
    let expected: BTreeMap<String, Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let url = url.clone();
                s.spawn(move || {
                    let mut mine = BTreeMap::new();
                    for i in (w..NAMES).step_by(WRITERS) {
                        let mut values = vec![format!("v=dmp1;t=manifest;d={i}")];
                        if i % 7 == 0 {
                            values.push(format!("second-{i}"));
                        }
                        for v in &values {
                            let body = serde_json::json!({"value": v, "ttl": 3600}).to_string();
                            let path = format!("/v1/records/{}", name(i));
                            let st = http(&url, "POST", &path, Some(OP), &body).unwrap().0;
                            assert_eq!(st, 201, "{}", name(i));
                        }
                        values.sort();
                        mine.insert(name(i), values);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    // One name deleted before the restart: it must stay gone.
    let gone = name(NAMES - 1);
    let st = http(&url, "DELETE", &format!("/v1/records/{gone}"), Some(OP), "").unwrap().0;
    assert_eq!(st, 204);

    assert!(n.term().success(), "clean exit on SIGTERM");
    n.restart();
    // No waiting: the ready line means the whole store is in the view.
    let mut wrong = Vec::new();
    for (name, values) in &expected {
        let r = parse(&udp_exchange(n.dns[0], &query(&format!("{name}."), RecordType::TXT, None)));
        let mut got = txt_values(&r);
        got.sort();
        if *name == gone {
            if r.metadata.response_code != ResponseCode::NXDomain {
                wrong.push(format!("{name}: deleted, got {:?} {got:?}", r.metadata.response_code));
            }
        } else if got != *values {
            wrong.push(format!("{name}: {:?} {got:?}", r.metadata.response_code));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {NAMES} names wrong right after ready: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // The parents exist (NODATA, not NXDOMAIN).
    let parent = name(3).split_once('.').unwrap().1.to_string();
    let r = parse(&udp_exchange(n.dns[0], &query(&format!("{parent}."), RecordType::TXT, None)));
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0), "{parent}");
}

fn from_image(n: &Node) -> bool {
    let (s, m) = http(&n.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    let line = m.lines().find(|l| l.starts_with("dmp_dns_view_from_image ")).expect("gauge");
    line.ends_with(" 1")
}

fn answers(n: &Node, name: &str) -> (ResponseCode, Vec<String>) {
    let r = parse(&udp_exchange(n.dns[0], &query(&format!("{name}."), RecordType::TXT, None)));
    let mut got = txt_values(&r);
    got.sort();
    (r.metadata.response_code, got)
}

fn put(n: &Node, name: &str, value: &str, ttl: u64) {
    let body = serde_json::json!({"value": value, "ttl": ttl}).to_string();
    let st = http(&n.url(), "POST", &format!("/v1/records/{name}"), Some(OP), &body).unwrap().0;
    assert_eq!(st, 201, "{name}");
}

/// The view image (issue 18): a graceful stop writes it, the next start reads it (and
/// brings names whose rows expired meanwhile up to date), and it is never trusted again:
/// not after records changed and the node was killed (a stale image put back), not when
/// a byte of it is damaged. Every start answers exactly the stored records.
#[test]
fn the_view_image_is_used_once_and_only_while_it_matches_the_store() {
    let mut n = Node::start("mesh.test", &[("DNSMESH_AUTH__OPERATOR_TOKEN", OP)]);
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..300 {
        let mut values = vec![format!("v=dmp1;t=manifest;d={i}")];
        if i % 5 == 0 {
            values.push(format!("second-{i}"));
        }
        for v in &values {
            put(&n, &name(i), v, 3600);
        }
        values.sort();
        expected.insert(name(i), values);
    }
    // Short-lived rows: one name only short-lived, one with a long-lived value beside.
    let short = "slot-1.mb-00000000abcd.mesh.test";
    put(&n, short, "short-lived", 2);
    put(&n, &name(5), "short-lived", 2);
    let written = std::time::SystemTime::now();
    let check = |n: &Node, expected: &BTreeMap<String, Vec<String>>| {
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(name, values)| answers(n, name) != (ResponseCode::NoError, (*values).clone()))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            wrong.is_empty(),
            "{} names wrong: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    };

    assert!(n.term().success());
    let img = n.data_dir().join("view.img");
    assert!(img.exists(), "a graceful stop writes the view image");
    let stale = std::fs::read(&img).unwrap();
    // Let the short-lived rows expire while the node is down (wall-clock expiry).
    while written.elapsed().unwrap() < std::time::Duration::from_millis(3100) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    n.restart();
    assert!(from_image(&n), "the start after a graceful stop reads the image");
    assert!(!img.exists(), "the image is deleted once read");
    check(&n, &expected);
    assert_eq!(answers(&n, short).0, ResponseCode::NXDomain, "expired while down");

    // Records change, the node is killed, and the old image is put back: not used.
    put(&n, "slot-9.mb-0000000fffff.mesh.test", "after", 3600);
    expected.insert("slot-9.mb-0000000fffff.mesh.test".into(), vec!["after".into()]);
    let gone = name(7);
    let st = http(&n.url(), "DELETE", &format!("/v1/records/{gone}"), Some(OP), "").unwrap().0;
    assert_eq!(st, 204);
    expected.remove(&gone);
    n.kill9();
    std::fs::write(&img, &stale).unwrap();
    n.restart();
    assert!(!from_image(&n), "an image the store no longer vouches for is not used");
    assert!(!img.exists());
    check(&n, &expected);
    assert_eq!(answers(&n, &gone).0, ResponseCode::NXDomain);

    // A damaged image (one byte in a block) is refused as a whole.
    assert!(n.term().success());
    let mut bytes = std::fs::read(&img).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&img, &bytes).unwrap();
    n.restart();
    assert!(!from_image(&n), "a damaged image is not used");
    check(&n, &expected);

    // And the next graceful stop and start use a fresh one again.
    assert!(n.term().success());
    n.restart();
    assert!(from_image(&n));
    check(&n, &expected);
}
