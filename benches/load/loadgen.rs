//! `loadgen`: the write-side load generator of the benchmarks in `benches/load/`.
//!
//! It exists because a node that group-commits writes needs many concurrent keep-alive
//! clients to show its rate, and shell loops of `curl` cannot offer that. It is a
//! `harness = false` bench target so it needs no new dependency and no `[[bin]]`:
//! `cargo build --release --bench loadgen` (the scripts find it in `$CARGO_TARGET_DIR`).
//!
//! Subcommands (all loopback-only by intent; every run is bounded by count and time):
//! - `register URL USER ZONE` — self-service TSIG registration through
//!   `/v1/registration/challenge` + `/v1/registration/tsig-confirm` (works against our
//!   node and the reference alike); prints `hmac-sha256:KEYNAME:BASE64SECRET`.
//! - `http URL TOKEN --conns C --secs S (--records FILE | --gen N --prefix P --zone Z)` —
//!   POSTs `{"value","ttl"}` to `/v1/records/<name>` from C concurrent connections
//!   (HTTP/1.1 keep-alive; reconnects when the server closes, as an HTTP/1.0 server does),
//!   until the records run out or S seconds pass. Prints one `key=value` summary line.
//!   Options: `--ttl SECS`; `--rate R` paces the whole run to R writes/s (0 = as fast as
//!   acknowledged); `--delete-every K` deletes every K-th record (by value) right after
//!   its add is acknowledged (counted as `deleted`).
//! - `gen-update N PREFIX ZONE` — prints a `dnsperf -u` input file of N single-record
//!   UPDATE messages in the scope a TSIG key gets by default (`slot-*.mb-*`).
//! - `gen-tsv N PREFIX ZONE` — prints the first N records `--gen N --prefix PREFIX` would
//!   write, as `name<TAB>value` lines (to check answers after a load).
//!
//! Invoked without a subcommand (as `cargo bench` / `cargo test --all-targets` do), it
//! prints a note and exits 0, so it never slows or fails the suite.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use dnsmesh::client::http_client::request;
use dnsmesh::proto::{keys::Identity, registration};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("register") => register(&args[1..]),
        Some("http") => http_load(&args[1..]),
        Some("gen-update") => gen_update(&args[1..]),
        Some("gen-tsv") => gen_tsv(&args[1..]),
        _ => {
            eprintln!("loadgen: no subcommand (register | http | gen-update | gen-tsv); see benches/load/README.md");
            Ok(())
        }
    };
    if let Err(e) = res {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Res<&'a str> {
    args.get(i).map(String::as_str).ok_or_else(|| format!("missing {what}"))
}

/// The value after `--name`, if given.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn num(args: &[String], name: &str, default: u64) -> Res<u64> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
    }
}

// ---------------------------------------------------------------- registration

fn register(args: &[String]) -> Res<()> {
    let url = arg(args, 0, "URL")?;
    let user = arg(args, 1, "USER")?;
    let zone = arg(args, 2, "ZONE")?;
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).map_err(|e| e.to_string());
    let hex32 = |v: &serde_json::Value| -> Res<[u8; 32]> {
        hex::decode(v.as_str().unwrap_or_default())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("not 32 hex bytes: {v}"))
    };
    let (s, body) =
        request(url, "GET", "/v1/registration/challenge", None, "").map_err(|e| e.to_string())?;
    if s != 200 {
        return Err(format!("challenge: HTTP {s}: {body}"));
    }
    let ch = json(&body)?;
    let challenge = hex32(&ch["challenge"])?;
    let server_pub = hex32(&ch["server_x25519_pub"])?;
    let node = ch["node"].as_str().unwrap_or_default();
    // A fresh identity per run: a subject is bound to the first key that registers it.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed: [u8; 32] =
        Sha256::digest(format!("{user}@{zone}/{nonce}/{}", std::process::id())).into();
    let id = Identity::from_private_bytes(seed);
    let subject = format!("{user}@{zone}");
    let sig = registration::sign_registration(id.signing_key(), &challenge, &subject, node);
    let pop = registration::x25519_pop(id.x25519_private(), &server_pub, &challenge, &subject)
        .ok_or("x25519 pop: low-order server key")?;
    let req = serde_json::json!({
        "subject": subject,
        "ed25519_spk": hex::encode(id.ed25519_public()),
        "challenge": hex::encode(challenge),
        "signature": hex::encode(sig),
        "x25519_pub": hex::encode(id.x25519_public()),
        "x25519_pop": hex::encode(pop),
    });
    let (s, body) = request(url, "POST", "/v1/registration/tsig-confirm", None, &req.to_string())
        .map_err(|e| e.to_string())?;
    if s != 200 {
        return Err(format!("tsig-confirm: HTTP {s}: {body}"));
    }
    let r = json(&body)?;
    let secret = hex::decode(r["tsig_secret_hex"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    println!(
        "hmac-sha256:{}:{}",
        r["tsig_key_name"].as_str().unwrap_or_default(),
        base64::engine::general_purpose::STANDARD.encode(secret)
    );
    Ok(())
}

// ---------------------------------------------------------------- records

/// A mailbox-manifest-shaped record like `../shared/bench/mkzone.py` makes:
/// `slot-<i%10>.mb-<sha256(prefix i)[:12]>.<zone>`, a 252-byte `v=dmp1;t=manifest;d=…`.
fn gen_record(prefix: &str, zone: &str, i: u64) -> (String, String) {
    let h = hex::encode(Sha256::digest(format!("{prefix}{i}")));
    let name = format!("slot-{}.mb-{}.{zone}", i % 10, &h[..12]);
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15) | 1;
    let body: Vec<u8> = (0..172)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let value =
        format!("v=dmp1;t=manifest;d={}", base64::engine::general_purpose::STANDARD.encode(body));
    (name, value)
}

fn gen_update(args: &[String]) -> Res<()> {
    let n: u64 = arg(args, 0, "N")?.parse().map_err(|_| "N: not a number")?;
    let prefix = arg(args, 1, "PREFIX")?;
    let zone = arg(args, 2, "ZONE")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..n {
        let (name, value) = gen_record(prefix, zone, i);
        writeln!(out, "{zone}\nadd {name}. 86400 TXT \"{value}\"\nsend")
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn gen_tsv(args: &[String]) -> Res<()> {
    let n: u64 = arg(args, 0, "N")?.parse().map_err(|_| "N: not a number")?;
    let prefix = arg(args, 1, "PREFIX")?;
    let zone = arg(args, 2, "ZONE")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..n {
        let (name, value) = gen_record(prefix, zone, i);
        writeln!(out, "{name}\t{value}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Where the records of an `http` run come from.
enum Source {
    File(Vec<(String, String)>),
    Gen { n: u64, prefix: String, zone: String },
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::File(v) => v.len() as u64,
            Source::Gen { n, .. } => *n,
        }
    }
    fn get(&self, i: u64) -> (String, String) {
        match self {
            Source::File(v) => v[i as usize].clone(),
            Source::Gen { prefix, zone, .. } => gen_record(prefix, zone, i),
        }
    }
}

#[derive(Default)]
struct Tally {
    /// Latency of each acknowledged (201) write, µs.
    lat_us: Vec<u32>,
    /// Status code → count, for everything not 201.
    other: std::collections::BTreeMap<u16, u64>,
    io_errors: u64,
    connects: u64,
    raw_bytes: u64,
    deleted: u64,
}

fn http_load(args: &[String]) -> Res<()> {
    let url = arg(args, 0, "URL")?;
    let token = arg(args, 1, "TOKEN")?.to_string();
    let hostport =
        url.strip_prefix("http://").ok_or("only http:// URLs")?.trim_end_matches('/').to_string();
    let conns = num(args, "--conns", 64)? as usize;
    let secs = num(args, "--secs", 10)?;
    let ttl = num(args, "--ttl", 86400)?;
    let rate = num(args, "--rate", 0)? as f64;
    let del_every = num(args, "--delete-every", 0)?;
    let source = if let Some(f) = flag(args, "--records") {
        let file = std::fs::File::open(f).map_err(|e| format!("{f}: {e}"))?;
        let mut v = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if let Some((n, val)) = line.split_once('\t') {
                v.push((n.to_string(), val.to_string()));
            }
        }
        Source::File(v)
    } else {
        Source::Gen {
            n: num(args, "--gen", 1_000_000)?,
            prefix: flag(args, "--prefix").unwrap_or("w").to_string(),
            zone: flag(args, "--zone").unwrap_or("mesh.test").to_string(),
        }
    };
    let source = Arc::new(source);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let tallies = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let (hp, tok, src, nx) =
                (hostport.clone(), token.clone(), source.clone(), next.clone());
            let pace = (rate > 0.0).then_some((start, rate));
            set.spawn(worker(hp, tok, src, nx, deadline, ttl, pace, del_every));
        }
        let mut all = Vec::new();
        while let Some(t) = set.join_next().await {
            all.push(t.unwrap_or_default());
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut t = Tally::default();
    for x in tallies {
        t.lat_us.extend(x.lat_us);
        for (k, v) in x.other {
            *t.other.entry(k).or_default() += v;
        }
        t.io_errors += x.io_errors;
        t.connects += x.connects;
        t.raw_bytes += x.raw_bytes;
        t.deleted += x.deleted;
    }
    t.lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if t.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((t.lat_us.len() as f64 - 1.0) * p).round() as usize;
        t.lat_us[i.min(t.lat_us.len() - 1)] as f64 / 1000.0
    };
    let ok = t.lat_us.len();
    let others: Vec<String> = t.other.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "acked={ok} secs={elapsed:.2} rate={:.0} p50_ms={:.2} p99_ms={:.2} raw_bytes={} connects={} io_errors={} other={} offered={} deleted={}",
        ok as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        t.raw_bytes,
        t.connects,
        t.io_errors,
        if others.is_empty() { "-".into() } else { others.join(",") },
        source.len(),
        t.deleted,
    );
    Ok(())
}

/// One client connection: take the next record, POST it, wait for the answer, repeat.
/// With `pace` = (start, rate), record i is not sent before start + i / rate.
#[allow(clippy::too_many_arguments)]
async fn worker(
    hostport: String,
    token: String,
    src: Arc<Source>,
    next: Arc<AtomicUsize>,
    deadline: Instant,
    ttl: u64,
    pace: Option<(Instant, f64)>,
    del_every: u64,
) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed) as u64;
        if i >= src.len() {
            break;
        }
        if let Some((start, rate)) = pace {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let (name, value) = src.get(i);
        let body = serde_json::json!({"value": value, "ttl": ttl}).to_string();
        let req = format!(
            "POST /v1/records/{name} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // One retry on a fresh connection: a kept-alive socket may have been closed.
        let mut done = false;
        // Latency runs from the first attempt, so it includes a (re)connect: a server that
        // closes after every answer (HTTP/1.0) pays its handshake on every write.
        let sent = Instant::now();
        for _attempt in 0..2 {
            if conn.is_none() {
                match TcpStream::connect(&hostport).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        t.connects += 1;
                        conn = Some(s);
                    }
                    Err(_) => {
                        t.io_errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let Some(s) = conn.as_mut() else { continue };
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                exchange(s, req.as_bytes(), &mut buf),
            )
            .await;
            match r {
                Ok(Ok((status, keep))) => {
                    if status == 201 {
                        t.lat_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        t.raw_bytes += (name.len() + value.len()) as u64;
                        if del_every > 0 && i.is_multiple_of(del_every) && keep {
                            let body = serde_json::json!({"value": value}).to_string();
                            let del = format!(
                                "DELETE /v1/records/{name} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            match tokio::time::timeout(
                                Duration::from_secs(30),
                                exchange(s, del.as_bytes(), &mut buf),
                            )
                            .await
                            {
                                Ok(Ok((204, k))) => {
                                    t.deleted += 1;
                                    if !k {
                                        conn = None;
                                    }
                                    done = true;
                                    break;
                                }
                                Ok(Ok((st, _))) => *t.other.entry(st).or_default() += 1,
                                _ => t.io_errors += 1,
                            }
                            conn = None;
                            done = true;
                            break;
                        }
                    } else {
                        *t.other.entry(status).or_default() += 1;
                    }
                    if !keep {
                        conn = None;
                    }
                    done = true;
                    break;
                }
                _ => {
                    conn = None;
                }
            }
        }
        if !done {
            t.io_errors += 1;
        }
    }
    t
}

/// Send one request and read one response; returns (status, connection reusable).
async fn exchange(
    s: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    s.write_all(req).await?;
    buf.clear();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed before the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut keep = head.starts_with("http/1.1") && !head.contains("connection: close");
    let len = head.lines().find_map(|l| {
        l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
    });
    // 204/304 and 1xx carry no body whatever the headers say (RFC 9112 §6.3).
    let len = if status == 204 || status == 304 || status < 200 { Some(0) } else { len };
    match len {
        Some(len) => {
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(bad("closed inside the body"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            // No length: the body ends with the connection.
            keep = false;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await?;
        }
    }
    Ok((status, keep))
}
