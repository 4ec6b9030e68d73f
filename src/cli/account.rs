//! `init`, `register`, `tsig register` and `doctor`: setting up a config home, getting
//! write credentials from a node's self-service registration, and checking it all.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use hickory_proto::rr::RecordType;

use super::config::{self, Config, DEFAULT_RESOLVERS};
use super::state::{self, host_port, Credentials, Token, TsigCred};
use super::store::{create_private_dir, Store};
use super::writer::Writer;
use super::{cluster, derive, dns, net, now, passphrase, Ctx};
use crate::proto::envelope::canonicalize_address;
use crate::proto::keys::random_32;
use crate::proto::{names, registration};

/// Arguments of `init`.
pub struct InitArgs<'a> {
    pub home: &'a Path,
    pub name: String,
    pub domain: String,
    pub endpoint: String,
    pub http_token: Option<String>,
    pub dns_host: Option<String>,
    pub dns_port: Option<u16>,
    pub dns_resolvers: Vec<String>,
    pub no_default_resolvers: bool,
    pub identity_domain: Option<String>,
    pub require_dnssec: bool,
    pub passphrase_file: Option<PathBuf>,
    pub allow_tofu: bool,
    pub force: bool,
}

/// `init`: write config.yaml with a fresh salt and the key tripwire.
pub fn init(a: InitArgs) -> Result<()> {
    let path = config::config_path(a.home);
    if path.exists() && !a.force {
        bail!(
            "{} already exists — pass --force to overwrite it (your old keys are lost unless you keep the passphrase and salt)",
            path.display()
        );
    }
    let zone = a.domain.trim_end_matches('.').to_ascii_lowercase();
    let addr = format!("{}@{}", a.name, zone);
    if canonicalize_address(&addr).as_deref() != Some(addr.as_str()) {
        bail!(
            "`{}` is not a valid username for zone `{zone}`: use lower-case letters, digits, `.`, `_`, `-` (1..64 chars, starting with a letter or digit)",
            a.name
        );
    }
    if !(a.endpoint.is_empty()
        || a.endpoint.starts_with("http://")
        || a.endpoint.starts_with("https://"))
    {
        bail!("--endpoint must be an http:// or https:// URL, got `{}`", a.endpoint);
    }
    let mut resolvers = a.dns_resolvers.clone();
    if resolvers.is_empty() && !a.no_default_resolvers && a.dns_host.is_none() {
        resolvers = DEFAULT_RESOLVERS.iter().map(|s| s.to_string()).collect();
    }
    for r in &resolvers {
        dns::parse_upstream(r)?;
    }
    let identity_domain = match a.identity_domain.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => Some(
            crate::proto::dnsname::validate(d.trim_end_matches('.'))
                .ok_or_else(|| anyhow!("--identity-domain `{d}` is not a valid DNS name"))?
                .to_ascii_lowercase(),
        ),
        _ => None,
    };
    create_private_dir(a.home)?;
    let mut cfg = Config {
        username: a.name.clone(),
        domain: zone,
        endpoint: a.endpoint.trim_end_matches('/').to_string(),
        dns_resolvers: resolvers,
        kdf_salt: hex::encode(random_32()),
        passphrase_file: a
            .passphrase_file
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string()),
        allow_tofu: a.allow_tofu,
        http_token: a.http_token.clone().filter(|t| !t.is_empty()),
        dns_host: a.dns_host.clone(),
        dns_port: a.dns_port,
        identity_domain,
        dnssec_required: a.require_dnssec,
        rotation_chain_enabled: true,
        max_value_bytes: config::DEFAULT_MAX_VALUE_BYTES,
        message_ttl: 300,
        cluster_refresh_interval: config::DEFAULT_CLUSTER_REFRESH,
        ..Config::default()
    };
    let pass = passphrase(&cfg)?;
    let id = derive(&cfg, &pass)?;
    cfg.verify_pubkey = Some(hex::encode(id.ed25519_public()));
    // A fresh identity starts with fresh state: sealed files from an older key would not open.
    let state_dir = a.home.join("state");
    if state_dir.is_dir() && a.force {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("cannot clear old state in {}", state_dir.display()))?;
    }
    cfg.save(a.home)?;
    Store::open(a.home, &id)?;
    println!("initialised {} in {}", cfg.address(), a.home.display());
    println!("  ed25519:     {}", hex::encode(id.ed25519_public()));
    println!("  x25519:      {}", hex::encode(id.x25519_public()));
    println!("  fingerprint: {}", id.fingerprint());
    if cfg.dns_resolvers.is_empty() {
        println!("  resolvers:   {} (system resolver)", dns::configured_resolvers(&cfg).join(", "));
    }
    println!("next: `dnsmesh register --node HOST` (or `dnsmesh tsig register`), then `dnsmesh identity publish` and `dnsmesh identity refresh-prekeys`");
    Ok(())
}

/// Fetched registration challenge.
struct Challenge {
    base: String,
    challenge: [u8; 32],
    node: String,
    server_pub: Option<[u8; 32]>,
}

/// `--node` as `HOST[:PORT]` or a URL: `(host[:port], scheme)`; a URL's scheme wins.
pub fn split_node(node: &str, scheme: &str) -> (String, String) {
    let n = node.trim();
    for s in ["http", "https"] {
        if let Some(rest) = n.strip_prefix(&format!("{s}://")) {
            let hp = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            return (hp.to_string(), s.to_string());
        }
    }
    (n.trim_end_matches('/').to_string(), scheme.to_string())
}

fn get_challenge(node: &str, scheme: &str) -> Result<Challenge> {
    let (node, scheme) = split_node(node, scheme);
    let scheme = scheme.as_str();
    let base = format!("{scheme}://{}", node.trim_end_matches('/'));
    let r = net::get(&format!("{base}/v1/registration/challenge")).with_context(|| {
        format!(
            "check the node address and --scheme (is it {}?)",
            if scheme == "https" { "http" } else { "https" }
        )
    })?;
    match r.status {
        200 => {}
        404 => bail!("{base} does not offer self-service registration (404) — ask the operator for a token or use another node"),
        429 => bail!("{base} rate-limited registration (429) — wait and retry (about 5 attempts per hour are allowed)"),
        s => bail!("{base}/v1/registration/challenge answered HTTP {s}: {}", net::reason(&r.body)),
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.body).context("challenge reply is not JSON")?;
    let mut challenge = [0u8; 32];
    hex::decode_to_slice(v["challenge"].as_str().unwrap_or(""), &mut challenge)
        .map_err(|_| anyhow!("challenge reply has no valid `challenge`"))?;
    let node_name =
        v["node"].as_str().ok_or_else(|| anyhow!("challenge reply has no `node`"))?.to_string();
    let server_pub = v["server_x25519_pub"].as_str().and_then(|s| {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok().map(|_| b)
    });
    Ok(Challenge { base, challenge, node: node_name, server_pub })
}

fn registration_error(status: u16, body: &str, base: &str) -> anyhow::Error {
    let why = net::reason(body);
    match status {
        401 => anyhow!("{base} rejected the registration signature (401 {why}) — is the username lower-case and the clock right?"),
        403 => anyhow!("{base} does not allow this domain to register (403 {why}) — use the node of your zone"),
        409 => anyhow!("{base}: this address is already registered to another key (409) — use the passphrase you registered with, or pick another username"),
        429 => anyhow!("{base} rate-limited registration (429) — wait and retry"),
        s => anyhow!("{base} registration failed: HTTP {s} {why}"),
    }
}

fn signed_fields(
    ctx: &Ctx,
    ch: &Challenge,
    subject: Option<&str>,
) -> Result<(String, serde_json::Value)> {
    let want = subject.map(str::to_string).unwrap_or_else(|| ctx.cfg.address());
    let subject = registration::canonicalize_subject(&want)
        .map_err(|e| anyhow!("subject {want} cannot be registered: {e}"))?;
    let sig =
        registration::sign_registration(ctx.id.signing_key(), &ch.challenge, &subject, &ch.node);
    let body = serde_json::json!({
        "subject": subject,
        "ed25519_spk": hex::encode(ctx.id.ed25519_public()),
        "challenge": hex::encode(ch.challenge),
        "signature": hex::encode(sig),
    });
    Ok((subject, body))
}

/// `register`: challenge → signed confirm → bearer token (sealed), HTTP writes from now on.
pub fn register(ctx: &Ctx, node: &str, subject: Option<&str>, scheme: &str) -> Result<()> {
    let ch = get_challenge(node, scheme)?;
    let (subject, body) = signed_fields(ctx, &ch, subject)?;
    let r = net::post_json(&format!("{}/v1/registration/confirm", ch.base), None, &body)?;
    if r.status != 200 {
        return Err(registration_error(r.status, &r.body, &ch.base));
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.body).context("confirm reply is not JSON")?;
    let token =
        v["token"].as_str().ok_or_else(|| anyhow!("confirm reply has no token"))?.to_string();
    let expires_at = v["expires_at"].as_u64().unwrap_or(0);
    let mut creds: Credentials = ctx.store.load(state::CREDENTIALS)?;
    creds.tokens.insert(
        host_port(&ch.base),
        Token { token, subject: subject.clone(), node: ch.base.clone(), expires_at },
    );
    creds.mode = Some("http".into());
    ctx.store.save(state::CREDENTIALS, &creds)?;
    println!("registered {subject} with {} (bearer token saved, expires_at {expires_at})", ch.base);
    if ctx.cluster.is_none() && host_port(&ch.base) != host_port(&ctx.cfg.endpoint) {
        println!("note: writes go to `endpoint` {}; set it to {} in config.yaml if that node is your home", ctx.cfg.endpoint, ch.base);
    }
    Ok(())
}

/// `tsig register`: challenge → signed confirm with X25519 proof → TSIG key (sealed),
/// DNS UPDATE writes from now on.
pub fn tsig_register(
    ctx: &Ctx,
    node: &str,
    subject: Option<&str>,
    scheme: &str,
    dns_server: Option<&str>,
    dns_port: u16,
) -> Result<()> {
    let ch = get_challenge(node, scheme)?;
    let (subject, mut body) = signed_fields(ctx, &ch, subject)?;
    let (node, _) = split_node(node, scheme);
    let node = node.as_str();
    let server_pub = ch.server_pub.ok_or_else(|| {
        anyhow!("{} sent no server_x25519_pub; cannot prove key possession", ch.base)
    })?;
    let pop =
        registration::x25519_pop(ctx.id.x25519_private(), &server_pub, &ch.challenge, &subject)
            .ok_or_else(|| anyhow!("the node's X25519 key is degenerate; refusing"))?;
    body["x25519_pub"] = hex::encode(ctx.id.x25519_public()).into();
    body["x25519_pop"] = hex::encode(pop).into();
    let r = net::post_json(&format!("{}/v1/registration/tsig-confirm", ch.base), None, &body)?;
    if r.status == 404 {
        bail!("{} does not offer TSIG registration (404: DNS UPDATE is off) — use `dnsmesh register` for HTTP writes", ch.base);
    }
    if r.status != 200 {
        return Err(registration_error(r.status, &r.body, &ch.base));
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.body).context("tsig-confirm reply is not JSON")?;
    let s = |k: &str| -> Result<String> {
        Ok(v[k].as_str().ok_or_else(|| anyhow!("tsig-confirm reply has no `{k}`"))?.to_string())
    };
    let host = dns_server.map(str::to_string).unwrap_or_else(|| {
        let hp =
            node.rsplit_once(':')
                .map_or(node, |(h, p)| if p.parse::<u16>().is_ok() { h } else { node });
        hp.trim_start_matches('[').trim_end_matches(']').to_string()
    });
    let server: SocketAddr = (host.as_str(), dns_port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve DNS server `{host}` — pass --dns-server IP"))?
        .next()
        .ok_or_else(|| anyhow!("DNS server `{host}` has no address"))?;
    let cred = TsigCred {
        key_name: s("tsig_key_name")?,
        secret_hex: s("tsig_secret_hex")?,
        algorithm: v["tsig_algorithm"].as_str().unwrap_or("hmac-sha256").to_string(),
        zone: s("zone")?,
        server: server.to_string(),
        allowed_suffixes: v["allowed_suffixes"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        expires_at: v["expires_at"].as_u64().unwrap_or(0),
    };
    if cred.algorithm != "hmac-sha256" {
        bail!("the node issued a {} key; only hmac-sha256 is supported", cred.algorithm);
    }
    hex::decode(&cred.secret_hex).map_err(|_| anyhow!("tsig-confirm reply: secret is not hex"))?;
    let mut creds: Credentials = ctx.store.load(state::CREDENTIALS)?;
    println!("registered {subject} with {}", ch.base);
    println!("TSIG key: {} (zone {}, UPDATEs to {})", cred.key_name, cred.zone, cred.server);
    creds.tsig = Some(cred);
    creds.mode = Some("tsig".into());
    ctx.store.save(state::CREDENTIALS, &creds)?;
    Ok(())
}

/// `doctor`: every check prints ok or FAIL with a fix; exit 1 if any failed.
pub fn doctor(home: &Path) -> Result<()> {
    let mut failed = 0u32;
    let mut report = |ok: bool, what: &str, detail: &str, fix: &str| {
        if ok {
            println!("ok    {what}: {detail}");
        } else {
            failed += 1;
            println!("FAIL  {what}: {detail}");
            if !fix.is_empty() {
                println!("      fix: {fix}");
            }
        }
    };
    let mut cfg = match Config::load(home) {
        Ok(c) => {
            report(
                true,
                "config",
                &format!("{} ({})", config::config_path(home).display(), c.address()),
                "",
            );
            c
        }
        Err(e) => {
            report(
                false,
                "config",
                &format!("{e:#}"),
                "run `dnsmesh init NAME --domain ZONE --endpoint URL`",
            );
            bail!("doctor: {failed} check(s) failed");
        }
    };
    // Cluster mode: the manifest must verify; the base becomes the effective domain.
    let mut manifest = None;
    match cfg.cluster() {
        Ok(Some(pin)) => {
            let loaded = dns::Pool::from_config(&cfg, home)
                .and_then(|p| cluster::load(home, &p, &pin, cfg.cluster_refresh_interval, now()));
            match loaded {
                Ok(m) => {
                    report(
                        true,
                        "cluster",
                        &format!(
                            "{} (manifest seq {}, {} nodes)",
                            pin.base,
                            m.seq,
                            m.nodes.len()
                        ),
                        "",
                    );
                    cfg.domain = pin.base;
                    manifest = Some(m);
                }
                Err(e) => report(
                    false,
                    "cluster",
                    &format!("{e:#}"),
                    "`dnsmesh cluster fetch` shows why; `dnsmesh cluster disable` turns cluster mode off",
                ),
            }
        }
        Ok(None) => {}
        Err(e) => report(false, "cluster", &format!("{e:#}"), "re-run `dnsmesh cluster pin`"),
    }
    // Keys.
    let id = match passphrase(&cfg).and_then(|p| derive(&cfg, &p)) {
        Ok(id) => {
            let matches = cfg
                .verify_pubkey
                .as_ref()
                .is_none_or(|v| v.eq_ignore_ascii_case(&hex::encode(id.ed25519_public())));
            report(
                matches,
                "passphrase",
                if matches {
                    "derives the recorded key"
                } else {
                    "derives a different key than verify_pubkey"
                },
                "use the passphrase given at init (DMP_PASSPHRASE or passphrase_file)",
            );
            matches.then_some(id)
        }
        Err(e) => {
            report(
                false,
                "passphrase",
                &format!("{e:#}"),
                "set DMP_PASSPHRASE or `passphrase_file`",
            );
            None
        }
    };
    // Node health and clock.
    let health = format!("{}/health", cfg.endpoint.trim_end_matches('/'));
    match net::get(&health) {
        Ok(r) => {
            report(
                r.status == 200,
                "node",
                &format!("GET {health} → {}", r.status),
                "check `endpoint` in config.yaml and that the node runs",
            );
            match r.date.as_deref().map(httpdate::parse_http_date) {
                Some(Ok(t)) => {
                    let node_t =
                        t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    let skew = node_t.abs_diff(now());
                    report(
                        skew <= 60,
                        "clock",
                        &format!("{skew} s from the node's clock"),
                        "sync the clock (e.g. enable NTP); TSIG and claims allow at most 300 s",
                    );
                }
                _ => report(
                    false,
                    "clock",
                    "the node sent no Date header",
                    "cannot check skew; make sure NTP runs",
                ),
            }
        }
        Err(e) => report(
            false,
            "node",
            &format!("{e:#}"),
            "check `endpoint` in config.yaml and that the node runs",
        ),
    }
    // Resolvers.
    for entry in &dns::configured_resolvers(&cfg) {
        let res = dns::Pool::new(std::slice::from_ref(entry));
        let t0 = Instant::now();
        match res.and_then(|p| p.query(&cfg.zone(), RecordType::SOA)) {
            Ok(a) => report(
                true,
                "resolver",
                &format!(
                    "{entry} answers {} SOA ({}, {} ms)",
                    cfg.zone(),
                    a.msg.metadata.response_code,
                    t0.elapsed().as_millis()
                ),
                "",
            ),
            Err(e) => report(
                false,
                "resolver",
                &format!("{entry}: {e:#}"),
                "remove or fix it in `dns_resolvers`",
            ),
        }
    }
    // Credentials, identity.
    if let Some(id) = id {
        let store = Store::open(home, &id)?;
        let creds: Credentials = store.load(state::CREDENTIALS).unwrap_or_default();
        match Writer::new(
            &cfg.endpoint,
            &creds,
            manifest.as_ref(),
            Config::opt(&cfg.http_token),
            Config::opt(&cfg.cluster_node_token),
        ) {
            Ok(w @ Writer::Tsig { .. }) => {
                if let Writer::Tsig { server, zone, key } = &w {
                    let r = dns::update(*server, zone, &[], Some(key), now());
                    report(
                        r.is_ok(),
                        "credentials",
                        &match &r {
                            Ok(()) => format!("{} accepted (empty signed UPDATE)", w.describe()),
                            Err(e) => format!("{}: {e:#}", w.describe()),
                        },
                        "re-run `dnsmesh tsig register --node HOST --dns-server IP --dns-port PORT`",
                    );
                }
            }
            Ok(w @ Writer::Http { .. }) => {
                let has = matches!(&w, Writer::Http { token: Some(_), .. });
                report(
                    has,
                    "credentials",
                    &w.describe(),
                    "run `dnsmesh register --node HOST[:PORT]` (or `dnsmesh tsig register`)",
                );
            }
            Ok(Writer::Fanout(f)) => {
                let missing = f.without_token();
                report(
                    missing.is_empty(),
                    "credentials",
                    &if missing.is_empty() {
                        f.describe()
                    } else {
                        format!("{}; no token for {}", f.describe(), missing.join(", "))
                    },
                    "register on each cluster node: `dnsmesh register --node HOST:PORT`",
                );
            }
            Err(e) => report(false, "credentials", &format!("{e:#}"), ""),
        }
        if let Ok(mut pool) = dns::Pool::from_config(&cfg, home) {
            if let Some(m) = &manifest {
                pool.set_union(dns::Union::new(m, &pool));
            }
            let name = names::identity(&cfg.username, &cfg.zone());
            let published = pool.txt(&name).map(|vals| {
                vals.iter().any(|v| {
                    crate::proto::records::identity::IdentityRecord::parse_and_verify(v)
                        .is_some_and(|r| r.ed25519_spk == id.ed25519_public())
                })
            });
            match published {
                Ok(p) => report(
                    p,
                    "identity",
                    &format!("{name} {}", if p { "published" } else { "not found" }),
                    "run `dnsmesh identity publish`",
                ),
                Err(e) => report(false, "identity", &format!("{e:#}"), "check the resolvers"),
            }
        }
    }
    if failed > 0 {
        bail!("doctor: {failed} check(s) failed");
    }
    println!("all checks passed");
    Ok(())
}
