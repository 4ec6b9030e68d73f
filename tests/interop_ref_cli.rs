//! The reference CLI (PyPI dnsmesh 0.7.5, unmodified) against our node, through the
//! shared interop script: HTTP bearer writes, then TSIG DNS UPDATE writes.
#![cfg(feature = "net")]

mod common;

use common::*;

fn run_interop(mode: &str) {
    let venv = ref_venv();
    let n = Node::start("mesh.test", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop/interop-e2e.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("REF_VENV", &venv)
        .env("NODE_HTTP", n.url())
        .env("NODE_DNS_HOST", n.dns[0].ip().to_string())
        .env("NODE_DNS_PORT", n.dns[0].port().to_string())
        .env("ZONE", "mesh.test")
        .env("WRITE_MODE", mode)
        .output()
        .expect("run interop-e2e.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("interop: ok"),
        "interop-e2e.sh WRITE_MODE={mode} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn reference_cli_http_mode() {
    run_interop("http");
}

#[test]
fn reference_cli_tsig_mode() {
    run_interop("tsig");
}
