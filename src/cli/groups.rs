//! The smaller command groups, named as in the reference CLI: `token list|forget`,
//! `resolvers discover|list`, `peers ZONE`, `bootstrap pin|fetch|discover`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::config::Config;
use super::dns::{self, Pool};
use super::state::{self, host_port, Credentials};
use super::{now, Ctx};

/// Public resolvers `resolvers discover` probes (the reference's well-known set).
pub const WELL_KNOWN_RESOLVERS: [&str; 6] =
    ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9", "149.112.112.112"];

/// `token list [--json]`: saved bearer tokens (the token itself is never printed).
pub fn token_list(ctx: &Ctx, json: bool) -> Result<()> {
    let creds: Credentials = ctx.store.load(state::CREDENTIALS)?;
    let t = now();
    let mut rows: Vec<serde_json::Value> = creds
        .tokens
        .iter()
        .map(|(hp, tok)| {
            serde_json::json!({
                "node": hp,
                "url": tok.node,
                "subject": tok.subject,
                "expires_at": tok.expires_at,
                "expired": tok.expires_at != 0 && tok.expires_at < t,
                "kind": "bearer",
            })
        })
        .collect();
    if let Some(ts) = &creds.tsig {
        rows.push(serde_json::json!({
            "node": ts.server,
            "url": null,
            "subject": ts.key_name,
            "expires_at": ts.expires_at,
            "expired": ts.expires_at != 0 && ts.expires_at < t,
            "kind": "tsig",
        }));
    }
    if let Some(s) = Config::opt(&ctx.cfg.http_token) {
        let _ = s;
        rows.push(serde_json::json!({
            "node": host_port(&ctx.cfg.endpoint), "url": ctx.cfg.endpoint,
            "subject": null, "expires_at": 0, "expired": false, "kind": "http_token (config)",
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("(no saved tokens)");
    }
    for r in &rows {
        let exp = r["expires_at"].as_u64().unwrap_or(0);
        println!(
            "{}  {}  subject {}  {}{}",
            r["node"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["subject"].as_str().unwrap_or("-"),
            if exp == 0 { "no expiry".to_string() } else { format!("expires_at {exp}") },
            if r["expired"].as_bool() == Some(true) { "  EXPIRED" } else { "" }
        );
    }
    Ok(())
}

/// `token forget NODE`: NODE as listed (`host:port`), a bare host, or a URL.
pub fn token_forget(ctx: &Ctx, node: &str) -> Result<()> {
    let mut creds: Credentials = ctx.store.load(state::CREDENTIALS)?;
    let n = node.trim().to_ascii_lowercase();
    let keys: Vec<String> = creds
        .tokens
        .keys()
        .filter(|k| {
            **k == n
                || (n.contains("://") && **k == host_port(&n))
                || k.rsplit_once(':').is_some_and(|(h, _)| h == n)
        })
        .cloned()
        .collect();
    if keys.is_empty() {
        bail!(
            "no saved token for `{node}` — `dnsmesh token list` shows the saved ones ({})",
            creds.tokens.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for k in &keys {
        creds.tokens.remove(k);
        println!("forgot the token for {k}");
    }
    if creds.tokens.is_empty() && creds.mode.as_deref() == Some("http") {
        creds.mode = None;
    }
    ctx.store.save(state::CREDENTIALS, &creds)?;
    Ok(())
}

/// `resolvers list`: the resolvers in the order they are tried, with remembered health.
pub fn resolvers_list(home: &Path) -> Result<()> {
    let cfg = Config::load(home)?;
    let pool = Pool::from_config(&cfg, home)?;
    if cfg.dns_resolvers.is_empty() {
        eprintln!("(no dns_resolvers in config.yaml: using the system resolver)");
    }
    for (entry, h) in pool.health_report() {
        println!(
            "{entry}  failures {}  wrong answers {}{}",
            h.failures,
            h.wrong,
            if h.last_ok > 0 {
                format!("  last ok {} s ago", now().saturating_sub(h.last_ok))
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// `resolvers discover [--save]`: probe candidate resolvers in parallel (SOA of our zone;
/// a NOERROR or NXDOMAIN reply within the timeout counts as working) and print the
/// working set fastest first; `--save` writes it to `dns_resolvers`.
pub fn resolvers_discover(
    home: &Path,
    save: bool,
    timeout: f64,
    candidates: &[String],
) -> Result<()> {
    let mut cfg = Config::load(home)?;
    let cands: Vec<String> = if candidates.is_empty() {
        WELL_KNOWN_RESOLVERS.iter().map(|s| s.to_string()).collect()
    } else {
        candidates.to_vec()
    };
    let zone = cfg.zone();
    let limit = Duration::from_secs_f64(timeout.clamp(0.1, 30.0));
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, c) in cands.iter().enumerate() {
        let (tx, c, zone) = (tx.clone(), c.clone(), zone.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = dns::parse_upstream(&c).and_then(|up| match up {
                dns::Upstream::Dns(a) => dns::ask(a, &zone, RecordType::SOA),
                dns::Upstream::Doh(_) => Pool::new(std::slice::from_ref(&c))
                    .and_then(|p| p.query(&zone, RecordType::SOA))
                    .map(|a| a.msg),
            });
            let _ = tx.send((i, r.map(|m| (m.metadata.response_code, t0.elapsed()))));
        });
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut working: Vec<(Duration, String)> = Vec::new();
    let mut answered = vec![false; cands.len()];
    while let Ok((i, r)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        answered[i] = true;
        match r {
            Ok((ResponseCode::NoError | ResponseCode::NXDomain, d)) if d <= limit => {
                working.push((d, cands[i].clone()))
            }
            Ok((rc, _)) => eprintln!("{}: answers {rc}", cands[i]),
            Err(e) => eprintln!("{}: {e:#}", cands[i]),
        }
    }
    for (i, a) in answered.iter().enumerate() {
        if !a {
            eprintln!("{}: no answer within {timeout} s", cands[i]);
        }
    }
    working.sort();
    for (d, c) in &working {
        println!("{c}  {} ms", d.as_millis());
    }
    if working.is_empty() {
        bail!("no candidate resolver answered — check the network (nothing saved)");
    }
    if save {
        cfg.dns_resolvers = working.into_iter().map(|(_, c)| c).collect();
        cfg.save(home)?;
        println!("saved {} resolver(s) to dns_resolvers", cfg.dns_resolvers.len());
    }
    Ok(())
}

/// Parse a 64-hex Ed25519 key.
pub fn parse_spk(s: &str, what: &str) -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut k)
        .map_err(|_| anyhow!("{what} must be 64 hex characters (32 bytes), got `{s}`"))?;
    Ok(k)
}

/// Strip a scheme, path and port from a `peers` argument (the reference accepts a URL).
fn zone_arg(s: &str) -> String {
    let s = s.trim();
    let s = s.split_once("://").map_or(s, |(_, r)| r);
    let host = s.split('/').next().unwrap_or(s);
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `peers ZONE [--json]`: the zone's own heartbeat and the heartbeats it has seen
/// (`_dnsmesh-heartbeat.<zone>`, `_dnsmesh-seen.<zone>`), each signature-verified.
pub fn peers(home: &Path, zone: &str, json: bool) -> Result<()> {
    use crate::proto::names;
    use crate::proto::records::heartbeat::{Heartbeat, HeartbeatPolicy};
    let cfg = Config::load(home)?;
    let pool = Pool::from_config(&cfg, home)?;
    let zone = zone_arg(zone);
    let t = now();
    // Liveness is `exp`; loopback/private endpoints are shown (flagged by the parser's
    // public policy elsewhere), as this is a read-only view.
    let policy = HeartbeatPolicy { max_skew: u64::MAX / 4, allow_private_endpoints: true };
    let mut rows = Vec::new();
    let mut rejected = 0usize;
    for (set, name) in [("self", names::heartbeat(&zone)), ("seen", names::seen(&zone))] {
        for v in pool.txt(&name).with_context(|| format!("reading {name}"))? {
            match Heartbeat::parse_and_verify_with(&v, t, &policy) {
                Some(h) => rows.push((set, h)),
                None => rejected += 1,
            }
        }
    }
    rows.sort_by_key(|(s, h)| (*s != "self", std::cmp::Reverse(h.ts)));
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(set, h)| {
                serde_json::json!({
                    "set": set,
                    "endpoint": h.endpoint,
                    "operator_spk": hex::encode(h.operator_spk),
                    "version": h.version,
                    "capabilities": h.capabilities,
                    "claim_provider": h.is_claim_provider(),
                    "claim_provider_zone": h.claim_provider_zone,
                    "ts": h.ts,
                    "exp": h.exp,
                    "age_seconds": t.saturating_sub(h.ts),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "zone": zone, "peers": v, "rejected": rejected
            }))?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("(no verified heartbeats at {zone})");
    }
    for (set, h) in &rows {
        println!(
            "{set:4}  {}  operator {}  version {}  {}  age {} s",
            h.endpoint,
            &hex::encode(h.operator_spk)[..16],
            if h.version.is_empty() { "?" } else { &h.version },
            if h.is_claim_provider() {
                format!(
                    "claim provider ({})",
                    if h.claim_provider_zone.is_empty() {
                        "endpoint host"
                    } else {
                        &h.claim_provider_zone
                    }
                )
            } else {
                "-".to_string()
            },
            t.saturating_sub(h.ts)
        );
    }
    if rejected > 0 {
        eprintln!("{rejected} record(s) did not verify and were skipped");
    }
    Ok(())
}

/// The configured bootstrap pin, overridable per command.
fn bootstrap_pin(
    cfg: &Config,
    domain: Option<&str>,
    spk: Option<&str>,
) -> Result<(String, [u8; 32])> {
    let d = domain
        .or(Config::opt(&cfg.bootstrap_user_domain))
        .ok_or_else(|| anyhow!("no bootstrap pin — run `dnsmesh bootstrap pin USER_DOMAIN SIGNER_SPK` (or pass --user-domain/--signer-spk)"))?;
    let k = spk.or(Config::opt(&cfg.bootstrap_signer_spk)).ok_or_else(|| {
        anyhow!("no bootstrap signer key — pass --signer-spk HEX or run `dnsmesh bootstrap pin`")
    })?;
    let d = crate::proto::dnsname::validate(d.trim().trim_end_matches('.'))
        .ok_or_else(|| anyhow!("`{d}` is not a valid DNS name"))?
        .to_ascii_lowercase();
    Ok((d, parse_spk(k, "the bootstrap signer key")?))
}

/// `bootstrap pin USER_DOMAIN SIGNER_SPK`.
pub fn bootstrap_pin_cmd(home: &Path, domain: &str, spk: &str) -> Result<()> {
    let mut cfg = Config::load(home)?;
    let (d, k) = bootstrap_pin(&cfg, Some(domain), Some(spk))?;
    cfg.bootstrap_user_domain = Some(d.clone());
    cfg.bootstrap_signer_spk = Some(hex::encode(k));
    cfg.save(home)?;
    println!("pinned bootstrap signer {} for {d}", hex::encode(k));
    println!("next: `dnsmesh bootstrap fetch` to check it");
    Ok(())
}

/// Fetch `_dmp.<domain>` and keep the highest `seq` that verifies under `spk`.
pub fn fetch_bootstrap(
    pool: &Pool,
    domain: &str,
    spk: &[u8; 32],
) -> Result<crate::proto::records::bootstrap::BootstrapRecord> {
    use crate::proto::records::bootstrap::BootstrapRecord;
    let name = crate::proto::names::bootstrap(domain)
        .ok_or_else(|| anyhow!("`{domain}` is not a valid DNS name"))?;
    let t = now();
    pool.txt(&name)?
        .iter()
        .filter_map(|v| BootstrapRecord::parse_and_verify(v, spk, Some(domain), t))
        .max_by_key(|r| r.seq)
        .ok_or_else(|| {
            anyhow!(
                "no record at {name} verifies under signer {} — check the pinned key",
                hex::encode(spk)
            )
        })
}

fn print_bootstrap(r: &crate::proto::records::bootstrap::BootstrapRecord) {
    println!("bootstrap for {} (seq {}, expires {})", r.user_domain, r.seq, r.exp);
    println!("  signer: {}", hex::encode(r.signer_spk));
    for e in &r.entries {
        println!(
            "  priority {:5}  cluster {}  operator {}",
            e.priority,
            e.cluster_base_domain,
            hex::encode(e.operator_spk)
        );
    }
}

/// `bootstrap fetch [--user-domain D] [--signer-spk HEX]`.
pub fn bootstrap_fetch_cmd(home: &Path, domain: Option<&str>, spk: Option<&str>) -> Result<()> {
    let cfg = Config::load(home)?;
    let (d, k) = bootstrap_pin(&cfg, domain, spk)?;
    let pool = Pool::from_config(&cfg, home)?;
    let r = fetch_bootstrap(&pool, &d, &k)?;
    print_bootstrap(&r);
    Ok(())
}

/// Walk a bootstrap record's entries in priority order; the first whose cluster manifest
/// verifies under the entry's operator key wins.
pub fn discover_cluster(
    pool: &Pool,
    host: &str,
    spk: &[u8; 32],
) -> Result<(
    crate::proto::records::bootstrap::BootstrapEntry,
    crate::proto::records::cluster::ClusterManifest,
    String,
)> {
    let r = fetch_bootstrap(pool, host, spk)?;
    let mut errs = Vec::new();
    for e in &r.entries {
        let pin = super::config::ClusterPin {
            base: e.cluster_base_domain.trim_end_matches('.').to_ascii_lowercase(),
            operator_spk: e.operator_spk,
        };
        match super::cluster::fetch(pool, &pin, now()) {
            Ok((m, wire)) => return Ok((e.clone(), m, wire)),
            Err(err) => errs.push(format!("{}: {err:#}", e.cluster_base_domain)),
        }
    }
    bail!(
        "no cluster named by the bootstrap record of {host} has a verifying manifest ({})",
        errs.join("; ")
    )
}

/// `bootstrap discover USER@HOST [--signer-spk HEX] [--auto-pin]`.
pub fn bootstrap_discover_cmd(
    home: &Path,
    address: &str,
    spk: Option<&str>,
    auto_pin: bool,
) -> Result<()> {
    let mut cfg = Config::load(home)?;
    let host = address
        .rsplit_once('@')
        .map(|(_, h)| h)
        .ok_or_else(|| anyhow!("`{address}` is not user@host"))?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let key = match spk {
        Some(s) => parse_spk(s, "--signer-spk")?,
        None => {
            let pinned = Config::opt(&cfg.bootstrap_user_domain)
                .filter(|d| d.trim_end_matches('.').eq_ignore_ascii_case(&host));
            match (pinned, Config::opt(&cfg.bootstrap_signer_spk)) {
                (Some(_), Some(k)) => parse_spk(k, "bootstrap_signer_spk")?,
                _ => bail!("{host} is not pinned — run `dnsmesh bootstrap pin {host} SIGNER_SPK` or pass --signer-spk HEX"),
            }
        }
    };
    let pool = Pool::from_config(&cfg, home)?;
    let (entry, m, _wire) = discover_cluster(&pool, &host, &key)?;
    println!(
        "{host} → cluster {} (priority {}, operator {})",
        entry.cluster_base_domain,
        entry.priority,
        hex::encode(entry.operator_spk)
    );
    println!("  manifest seq {}, {} node(s)", m.seq, m.nodes.len());
    for n in &m.nodes {
        println!(
            "    {}  http {}  dns {}",
            n.node_id,
            n.http_endpoint,
            n.dns_endpoint.as_deref().unwrap_or("-")
        );
    }
    if auto_pin {
        let base = entry.cluster_base_domain.trim_end_matches('.').to_ascii_lowercase();
        cfg.cluster_base_domain = Some(base.clone());
        cfg.cluster_operator_spk = Some(hex::encode(entry.operator_spk));
        cfg.bootstrap_user_domain = Some(host.clone());
        cfg.bootstrap_signer_spk = Some(hex::encode(key));
        cfg.cluster_enabled = true;
        cfg.save(home)?;
        println!("pinned cluster {base} and enabled cluster mode");
    }
    Ok(())
}
