//! Start-up readiness with many records (issue 18): the view is loaded from the store on
//! a loader thread, and the node prints its ready line only once every stored record is
//! in it. Right after a restart every stored name answers with exactly its values (never
//! NXDOMAIN), and a deleted one does not come back.

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
