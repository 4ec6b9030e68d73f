//! Online compaction of the records database under a real node process: with a low
//! threshold the store compacts every few seconds while writers keep going, and a kill -9
//! at arbitrary moments (some during a compaction) never loses an acknowledged write.

#![cfg(feature = "net")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const OP: &str = "compaction-operator-token";

fn metric(node: &Node, name: &str) -> u64 {
    let (s, body) = http(&node.url(), "GET", "/metrics", Some(OP), "").unwrap();
    assert_eq!(s, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn kill_9_during_online_compaction_loses_no_acknowledged_write() {
    let mut node = Node::start(
        "mesh.test",
        &[
            ("DNSMESH_AUTH__OPERATOR_TOKEN", OP),
            ("DNSMESH_NODE__COMPACT_RATIO", "1.5"),
            ("DNSMESH_NODE__COMPACT_MIN_BYTES", "0"),
        ],
    );
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut compactions = 0;
    let value = format!("v=dmp1;t=manifest;d={}", "A".repeat(232));
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let url = node.url();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (stop, acked, url, value) =
                    (stop.clone(), acked.clone(), url.clone(), value.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("slot-{}.mb-{round:04}{w:04}{i:04}.mesh.test", i % 10);
                        let body = serde_json::json!({"value": value, "ttl": 3600}).to_string();
                        match http(&url, "POST", &format!("/v1/records/{name}"), Some(OP), &body) {
                            Ok((201, _)) => acked.lock().unwrap().push((name, value.clone())),
                            _ => break, // the node was killed under us
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        // Let it write and compact a while (5 s checks), then kill at an odd moment.
        let until = Instant::now() + Duration::from_millis(5_200 + 1_700 * round);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        compactions += metric(&node, "dmp_store_compactions_total");
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        node.restart();
        let acked = acked.lock().unwrap();
        let mut missing = 0;
        for (name, v) in acked.iter() {
            if txt_at(node.dns[0], name) != vec![v.clone()] {
                missing += 1;
            }
        }
        assert_eq!(
            missing,
            0,
            "round {round}: {missing} of {} acknowledged writes lost",
            acked.len()
        );
        let names: std::collections::HashSet<_> = acked.iter().map(|(n, _)| n.clone()).collect();
        // Writes in flight at the kill may be there too (durable, never acknowledged).
        let records = metric(&node, "dmp_records") as usize;
        assert!(records >= names.len(), "round {round}: {records} records < {}", names.len());
        eprintln!("round {round}: {} acknowledged writes all present after kill -9", acked.len());
    }
    assert!(compactions >= 2, "only {compactions} compactions ran: the test did not exercise it");
}
