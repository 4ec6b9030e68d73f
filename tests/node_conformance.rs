//! EDNS-compliance probes (the ednscomp set: plain, edns, edns1, ednsflags, ednsopt,
//! edns1opt, do, ednstcp, optlist) and RFC 8906 no-silent-drop rules, with BIND's `dig`
//! against a real node. Each probe prints its verdict; all must pass.
#![cfg(feature = "net")]

mod common;

use common::*;

fn dig(n: &Node, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", n.dns[0].ip()))
        .arg("-p")
        .arg(n.dns[0].port().to_string())
        .args(["+norec", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian dnsutils) is installed by .ci/run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(out: &str) -> &str {
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("NO-REPLY")
}

/// `; EDNS: version: 0, flags: do; udp: 1232` → (version, flags)
fn edns(out: &str) -> Option<(String, String)> {
    let line = out.lines().find(|l| l.starts_with("; EDNS:"))?;
    let version = line.split("version: ").nth(1)?.split(',').next()?.to_string();
    let flags = line.split("flags:").nth(1)?.split(';').next()?.trim().to_string();
    Some((version, flags))
}

#[test]
fn edns_compliance_probes_and_no_silent_drops() {
    let n = Node::start("conf.test", &[]);
    let z = "conf.test";
    // Every probe runs; the report lists each one (ok or FAIL), then the test fails if
    // any probe did, with the failed probes' dig output.
    let mut report = Vec::new();
    let mut failed = Vec::new();
    let mut check = |name: &str, ok: bool, out: &str| {
        report.push(format!("{name}: {}", if ok { "ok" } else { "FAIL" }));
        if !ok {
            failed.push(format!("probe {name} failed:\n{out}"));
        }
    };
    let o = dig(&n, &["+noedns", z, "SOA"]);
    check(
        "plain",
        status(&o) == "NOERROR" && o.contains(" aa") && edns(&o).is_none() && o.contains("IN\tSOA"),
        &o,
    );
    let o = dig(&n, &["+edns=0", "+nocookie", z, "SOA"]);
    check("edns", status(&o) == "NOERROR" && edns(&o).map(|e| e.0 == "0").unwrap_or(false), &o);
    let o = dig(&n, &["+edns=1", "+noednsneg", "+nocookie", z, "SOA"]);
    check(
        "edns1",
        status(&o) == "BADVERS"
            && edns(&o).map(|e| e.0 == "0").unwrap_or(false)
            && !o.contains("ANSWER SECTION"),
        &o,
    );
    let o = dig(&n, &["+edns=0", "+ednsflags=0x80", "+nocookie", z, "SOA"]);
    check(
        "ednsflags",
        status(&o) == "NOERROR" && edns(&o).map(|e| e.1.is_empty()).unwrap_or(false),
        &o,
    );
    let o = dig(&n, &["+edns=0", "+ednsopt=100", "+nocookie", z, "SOA"]);
    check("ednsopt", status(&o) == "NOERROR" && edns(&o).is_some() && !o.contains("OPT=100"), &o);
    let o = dig(&n, &["+edns=1", "+noednsneg", "+ednsopt=100", "+nocookie", z, "SOA"]);
    check("edns1opt", status(&o) == "BADVERS" && !o.contains("OPT=100"), &o);
    let o = dig(&n, &["+edns=0", "+dnssec", "+nocookie", z, "SOA"]);
    check(
        "do",
        status(&o) == "NOERROR" && edns(&o).map(|e| e.1.contains("do")).unwrap_or(false),
        &o,
    );
    let o = dig(&n, &["+tcp", "+edns=0", "+nocookie", z, "SOA"]);
    check("ednstcp", status(&o) == "NOERROR" && o.contains("IN\tSOA"), &o);
    let o = dig(&n, &["+edns=0", "+nsid", "+expire", "+cookie", "+subnet=0.0.0.0/0", z, "SOA"]);
    check("optlist", status(&o) == "NOERROR" && edns(&o).is_some(), &o);
    // RFC 8906: every query gets an answer.
    let o = dig(&n, &["+noedns", z, "TYPE65500"]);
    check("unknown-type", status(&o) == "NOERROR" && !o.contains("ANSWER SECTION"), &o);
    let o = dig(&n, &["+noedns", "+opcode=15", z, "SOA"]);
    check("unknown-opcode", status(&o) == "NOTIMP", &o);
    let o = dig(&n, &["+noedns", "-c", "CH", z, "TXT"]);
    check("other-class", status(&o) == "REFUSED", &o);
    let o = dig(&n, &["+noedns", "example.org", "A"]);
    check("out-of-zone", status(&o) == "REFUSED", &o);
    let o = dig(&n, &["+noedns", &format!("missing.{z}"), "TXT"]);
    check("nxdomain", status(&o) == "NXDOMAIN" && o.contains("IN\tSOA"), &o);
    let o = dig(&n, &["+noedns", "+tcp", &format!("missing.{z}"), "AAAA"]);
    check("nxdomain-tcp", status(&o) == "NXDOMAIN", &o);
    eprintln!("{}", report.join("\n"));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
