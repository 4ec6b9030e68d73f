//! Fuzz regressions. Every input a fuzz target crashed on is kept in
//! `tests/fuzz/regressions/<target>/` and replayed here through the same harness function
//! the cargo-fuzz target runs (`tests/fuzz/src/harness.rs`, included by path), next to a
//! named test per crash that calls the parser that failed. The committed seed corpora
//! (`tests/fuzz/seeds/<target>/`) are replayed too, so the harnesses keep compiling and
//! passing in CI, where cargo-fuzz itself does not run.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "fuzz/src/harness.rs"]
mod harness;

#[cfg(feature = "net")]
#[allow(dead_code)]
#[path = "fuzz/src/dns_slow.rs"]
mod dns_slow;

use dnsmesh::proto::envelope;

/// Harness of a target by name; `None` for a target this build cannot run.
fn harness_of(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "dns_answer" => harness::dns_answer,
        "records" => harness::records,
        "message" => harness::message,
        "b64_txt" => harness::b64_txt,
        "registration" => harness::registration,
        "http_json" => harness::http_json,
        #[cfg(feature = "net")]
        "dns_slow" => dns_slow::dns_slow,
        #[cfg(not(feature = "net"))]
        "dns_slow" => return None,
        other => panic!("unknown fuzz target directory {other:?}"),
    })
}

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(sub)
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    v.sort();
    v
}

/// Run every file of `<sub>/<target>/` through its target's harness; fail naming each
/// file that panicked. Returns how many files ran.
fn replay(sub: &str) -> usize {
    let mut ran = 0;
    let mut failed = Vec::new();
    for target_dir in sorted_entries(&fuzz_dir(sub)) {
        let target =
            target_dir.file_name().and_then(|n| n.to_str()).expect("target directory name");
        let Some(run) = harness_of(target) else {
            continue;
        };
        for file in sorted_entries(&target_dir) {
            let data = std::fs::read(&file).expect("readable input");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(file.display().to_string());
            }
            ran += 1;
        }
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
    ran
}

#[test]
fn crash_inputs_replay_cleanly() {
    assert!(replay("regressions") >= 1, "no regression inputs found");
}

#[test]
fn seed_corpora_replay_cleanly() {
    assert!(replay("seeds") >= 100, "seed corpora missing");
}

/// `message` target, crash 1: a canonical address longer than 245 bytes gave a DMPv2
/// header over the 256 bytes the decoder (ours and the reference's) looks at, so the
/// receiver saw the raw envelope as the body. The reference sends such bodies
/// unwrapped; so does `envelope::encode` now.
#[test]
fn message_envelope_header_over_256_bytes() {
    let data = std::fs::read(fuzz_dir("regressions/message/envelope-header-over-256"))
        .expect("crash input");
    harness::message(&data);

    let addr = |n: usize| {
        let host = format!("{}.{}.{}", "a".repeat(63), "a".repeat(63), "b".repeat(n - 193));
        let a = format!("{}@{host}", "l".repeat(64));
        assert_eq!(a.len(), n);
        a
    };
    for n in [245, 246, 318] {
        let a = addr(n);
        let wrapped = envelope::encode(b"body", Some(&a));
        if n + 11 <= envelope::MAX_HEADER_LEN {
            assert_eq!(wrapped.len(), 6 + n + 11 + 1 + 4, "{n}: wrapped");
            assert_eq!(envelope::decode(&wrapped), (b"body".to_vec(), Some(a)));
        } else {
            assert_eq!(wrapped, b"body", "{n}: header over 256 bytes must not be emitted");
        }
    }
}
