//! The systemd unit in `packaging/systemd/` is accepted by `systemd-analyze verify` and
//! keeps its sandbox: `systemd-analyze security --offline` rates its exposure at most 2.0
//! ("OK"). The unit's binary path is pointed at the binary under test.

#![cfg(feature = "net")]

use std::process::Command;

fn unit_for_test() -> (tempfile::TempDir, std::path::PathBuf) {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/systemd/dnsmesh-node.service"
    ))
    .expect("read the unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/dnsmesh-node "),
        "the unit runs /usr/bin/dnsmesh-node"
    );
    let unit = unit.replace("/usr/bin/dnsmesh-node", env!("CARGO_BIN_EXE_dnsmesh-node"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dnsmesh-node.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

#[test]
fn systemd_unit_verifies() {
    let (_dir, path) = unit_for_test();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn systemd_unit_exposure_is_low() {
    let (_dir, path) = unit_for_test();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian systemd)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for dnsmesh-node.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}
