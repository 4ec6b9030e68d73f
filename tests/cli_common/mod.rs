//! Helpers for the CLI tests: run our `dnsmesh` binary and the reference CLI (black box,
//! from `$REF_VENV`) with their own config homes, and poll `recv` a bounded number of times.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A short random hex string for unique usernames.
pub fn nonce() -> String {
    let mut b = [0u8; 4];
    dnsmesh::proto::keys::random_fill(&mut b);
    hex::encode(b)
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A user of our CLI.
pub struct User {
    pub name: String,
    pub home: PathBuf,
    pub pass: String,
    _tmp: tempfile::TempDir,
}

impl User {
    /// A fresh config home for `prefix-<nonce>`.
    pub fn new(prefix: &str) -> User {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = format!("{prefix}-{}", nonce());
        User {
            home: tmp.path().join("dmp"),
            pass: format!("passphrase of {name}"),
            name,
            _tmp: tmp,
        }
    }

    /// Run `dnsmesh --config-home HOME ARGS…`, optionally with standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnsmesh"));
        cmd.arg("--config-home").arg(&self.home).args(args);
        cmd.env("DMP_PASSPHRASE", &self.pass).env_remove("DMP_PROVIDER_DNS_PORT");
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dnsmesh");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().expect("dnsmesh output")
    }

    /// Run and return the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    /// Run with extra environment variables, require exit 0, return stdout.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnsmesh"));
        cmd.arg("--config-home").arg(&self.home).args(args);
        cmd.env("DMP_PASSPHRASE", &self.pass).env_remove("DMP_PROVIDER_DNS_PORT");
        cmd.envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let out = cmd.stdin(Stdio::null()).output().expect("spawn dnsmesh");
        assert!(out.status.success(), "{} dnsmesh {:?} failed: {}", self.name, args, show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run, require exit 0, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{} dnsmesh {:?} failed: {}", self.name, args, show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `init` against a node: endpoint URL and resolvers (no public defaults).
    pub fn init(&self, zone: &str, endpoint: &str, resolvers: &[String]) {
        self.ok(&[
            "init",
            &self.name,
            "--domain",
            zone,
            "--endpoint",
            endpoint,
            "--dns-resolvers",
            &resolvers.join(","),
            "--no-default-resolvers",
        ]);
    }

    /// `init`, register (`http` bearer or `tsig`), publish identity and prekeys.
    pub fn setup(
        &self,
        zone: &str,
        http: &str,
        dns: std::net::SocketAddr,
        resolvers: &[String],
        mode: &str,
        v2: bool,
    ) {
        self.init(zone, http, resolvers);
        let hostport = http.trim_start_matches("http://");
        match mode {
            "http" => {
                self.ok(&["register", "--node", hostport, "--scheme", "http"]);
            }
            "tsig" => {
                let out = self.ok(&[
                    "tsig",
                    "register",
                    "--node",
                    hostport,
                    "--scheme",
                    "http",
                    "--dns-server",
                    &dns.ip().to_string(),
                    "--dns-port",
                    &dns.port().to_string(),
                ]);
                assert!(out.contains("TSIG key:"), "{out}");
            }
            m => panic!("mode {m}"),
        }
        let mut publish = vec!["identity", "publish"];
        if v2 {
            publish.push("--advertise-v2");
        }
        let out = self.ok(&publish);
        assert!(out.starts_with("published identity to "), "{out}");
        let out = self.ok(&["identity", "refresh-prekeys"]);
        assert!(out.contains("published 25/25 prekeys"), "{out}");
    }

    /// Messages (JSON objects of `recv --json`) received over up to `tries` polls, until one
    /// has `text == want`.
    pub fn recv_until(&self, want: &str, tries: usize) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        for _ in 0..tries {
            let out = self.ok(&["recv", "--json"]);
            for line in out.lines().filter(|l| !l.trim().is_empty()) {
                all.push(
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|e| panic!("recv --json line {line:?}: {e}")),
                );
            }
            if all.iter().any(|m| m["kind"] == "message" && m["text"] == want) {
                return all;
            }
        }
        panic!(
            "{} did not receive {:?} in {tries} polls; got {all:?}",
            self.name,
            want.chars().take(80).collect::<String>()
        );
    }
}

/// The reference venv (fails, not skips, when missing).
pub fn ref_venv() -> PathBuf {
    let p = std::env::var("REF_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        PathBuf::from(home).join(".cache/dnsmesh-reference-venv")
    });
    assert!(
        p.join("bin/dnsmesh").exists(),
        "reference venv missing at {} — run ../shared/interop/setup-reference.sh",
        p.display()
    );
    p
}

/// `../shared/interop` beside the work tree.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/interop")
}

/// A user of the reference CLI (run through the interop shim, like interop-e2e.sh).
pub struct RefUser {
    pub name: String,
    pub dir: PathBuf,
    pub pass: String,
    pub dns_port: u16,
    venv: PathBuf,
    _tmp: tempfile::TempDir,
}

impl RefUser {
    pub fn new(prefix: &str, dns_port: u16) -> RefUser {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = format!("{prefix}-{}", nonce());
        RefUser {
            dir: tmp.path().to_path_buf(),
            pass: format!("ref passphrase of {name}"),
            name,
            dns_port,
            venv: ref_venv(),
            _tmp: tmp,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Run with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(self.venv.join("bin/python"))
            .arg(interop_dir().join("dnsmesh-shim.py"))
            .arg("--config-home")
            .arg(self.dir.join(".dmp"))
            .args(args)
            .env("HOME", &self.dir)
            .env("DMP_PASSPHRASE", &self.pass)
            .env("DMP_PROVIDER_DNS_PORT", self.dns_port.to_string())
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .output()
            .expect("run reference dnsmesh")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "reference {} dnsmesh {:?} failed: {}",
            self.name,
            args,
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Edit config.yaml keys (the reference has no `config set`).
    pub fn setcfg(&self, kv: &[(&str, &str)]) {
        let mut cmd = Command::new(self.venv.join("bin/python"));
        cmd.arg("-c").arg(
            "import sys, yaml\np=sys.argv[1]\nd=yaml.safe_load(open(p)) or {}\nfor kv in sys.argv[2:]:\n k,v=kv.split('=',1)\n d[k]=int(v) if v.isdigit() else {'true': True, 'false': False}.get(v, v)\nopen(p,'w').write(yaml.safe_dump(d, sort_keys=True))\n",
        );
        cmd.arg(self.dir.join(".dmp/config.yaml"));
        for (k, v) in kv {
            cmd.arg(format!("{k}={v}"));
        }
        let out = cmd.output().expect("python");
        assert!(out.status.success(), "setcfg: {}", show(&out));
    }

    /// init + register (`http` or `tsig`) + publish identity and prekeys.
    pub fn setup(&self, zone: &str, http: &str, dns: std::net::SocketAddr, mode: &str) {
        let dnsr = dns.to_string();
        self.ok(&[
            "init",
            &self.name,
            "--domain",
            zone,
            "--endpoint",
            http,
            "--dns-resolvers",
            &dnsr,
            "--no-probe-local-dns",
        ]);
        let port = dns.port().to_string();
        let ip = dns.ip().to_string();
        self.setcfg(&[
            ("local_node_dns_server", &ip),
            ("local_node_dns_port", &port),
            ("claim_provider_override", http),
            ("claim_provider_zone", zone),
        ]);
        let hostport = http.trim_start_matches("http://");
        match mode {
            "http" => {
                self.ok(&["register", "--node", hostport, "--scheme", "http"]);
            }
            _ => {
                self.ok(&[
                    "tsig",
                    "register",
                    "--node",
                    hostport,
                    "--scheme",
                    "http",
                    "--dns-server",
                    &ip,
                    "--dns-port",
                    &port,
                ]);
            }
        }
        self.ok(&["identity", "publish"]);
        self.ok(&["identity", "refresh-prekeys"]);
    }

    /// Poll `recv` up to `tries` times until a line equals two spaces + `want`.
    pub fn recv_until(&self, want: &str, tries: usize) {
        let mut seen = String::new();
        for _ in 0..tries {
            let out = self.ok(&["recv"]);
            seen.push_str(&out);
            if seen.lines().any(|l| l == format!("  {want}")) {
                return;
            }
        }
        panic!("reference {} did not receive {want:?} in {tries} polls:\n{seen}", self.name);
    }
}

/// A free loopback port usable for both UDP and TCP (for the reference node).
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A reference node started by `ref-node.sh`; stopped (by its PID) on drop.
pub struct RefNode {
    pub dns: std::net::SocketAddr,
    pub http: String,
    pub zone: String,
    name: String,
    dir: tempfile::TempDir,
}

impl RefNode {
    pub fn start(zone: &str) -> RefNode {
        let venv = ref_venv();
        let dir = tempfile::tempdir().unwrap();
        let (dp, hp) = (free_port(), free_port());
        let name = format!("refnode-{}", nonce());
        let out = Command::new("bash")
            .arg(interop_dir().join("ref-node.sh"))
            .args(["start", &name, &dp.to_string(), &hp.to_string()])
            .arg(dir.path())
            .arg(zone)
            .env("REF_VENV", &venv)
            .env("REF_HEARTBEAT", "0")
            .env("REF_LOG_LEVEL", "INFO")
            .output()
            .expect("ref-node.sh");
        assert!(out.status.success(), "ref-node.sh start failed: {}", show(&out));
        RefNode {
            dns: format!("127.0.0.1:{dp}").parse().unwrap(),
            http: format!("http://127.0.0.1:{hp}"),
            zone: zone.to_string(),
            name,
            dir,
        }
    }
}

impl Drop for RefNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(interop_dir().join("ref-node.sh"))
            .args(["stop", &self.name])
            .arg(self.dir.path())
            .output();
    }
}
