//! `dnsmesh-node`: the DMP node.
//!
//! `dnsmesh-node [--config PATH] [--zone Z] [--data-dir D] [--dns-listen A:P]… [--http-listen A:P]`
//! runs the node; `dnsmesh-node admin …` lists and revokes credentials on a running node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dnsmesh::node::config::{Overrides, Settings};

#[derive(Parser)]
#[command(name = "dnsmesh-node", version, about = "DNS Mesh Protocol node")]
struct Cli {
    /// Configuration file (TOML). Missing file = the embedded defaults.
    #[arg(long, default_value = "dnsmesh.toml")]
    config: PathBuf,
    /// Served zone (overrides [node] zone).
    #[arg(long)]
    zone: Option<String>,
    /// Data directory (overrides [node] data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// DNS listen address, repeatable (overrides [dns] listen).
    #[arg(long = "dns-listen")]
    dns_listen: Vec<String>,
    /// HTTP listen address (overrides [http] listen).
    #[arg(long)]
    http_listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Administer credentials on a running node (needs the operator token).
    Admin {
        /// Node HTTP base URL.
        #[arg(long, default_value = "http://127.0.0.1:8053")]
        node: String,
        /// Operator token (or env DNSMESH_ADMIN_TOKEN).
        #[arg(long, env = "DNSMESH_ADMIN_TOKEN")]
        token: Option<String>,
        /// For an https:// node: trust this PEM certificate (e.g. the node's own
        /// http.tls_cert) instead of the public roots.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Restore a backup (from `admin backup`) into a data directory, offline.
    Restore {
        /// Data directory to restore into (must be empty unless --force).
        #[arg(long)]
        data_dir: PathBuf,
        /// Replace the directory's current contents.
        #[arg(long)]
        force: bool,
        /// The backup archive.
        file: PathBuf,
    },
    /// Generate shell completions or man pages (for packagers).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Subcommand)]
enum Generate {
    /// Print the completion script for SHELL on stdout.
    Completions {
        shell: clap_complete::Shell,
        /// Which program: dnsmesh-node or dnsmesh.
        #[arg(long = "for", default_value = "dnsmesh-node", value_parser = ["dnsmesh-node", "dnsmesh"])]
        bin: String,
    },
    /// Write man pages (section 1) of dnsmesh-node and dnsmesh and their subcommands into DIR.
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum AdminAction {
    /// List bearer tokens and TSIG keys.
    List,
    /// Revoke by subject, token-hash prefix or TSIG key name.
    Revoke { what: String },
    /// Print the DS record(s) of the zone's KSK for the parent zone (reads the sealed
    /// keys in the data dir; no token or running node needed).
    Ds,
    /// Bearer tokens: issue, rotate, list, revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print the audit trail (one JSON object per line, oldest first).
    Audit {
        /// Only entries of this event (registered, token.issued, token.rotated, revoked, …).
        #[arg(long)]
        event: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write a consistent snapshot of the running node (records, credentials, keys, audit
    /// trail) to FILE; restore it with `dnsmesh-node restore`.
    Backup { file: PathBuf },
    /// Make the node re-read its configuration (as SIGHUP does): TLS pair, limits,
    /// registration allowlist, cluster peers.
    Reload,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Issue a bearer token for SUBJECT (user@domain); printed once, stored as a hash.
    Issue {
        subject: String,
        #[command(flatten)]
        opts: TokenOpts,
    },
    /// Revoke SUBJECT's live tokens and issue a new one.
    Rotate {
        subject: String,
        #[command(flatten)]
        opts: TokenOpts,
    },
    /// List tokens (hash prefixes, never the tokens).
    List {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke by subject or token-hash prefix (at least 8 hex characters).
    Revoke { what: String },
}

#[derive(clap::Args)]
struct TokenOpts {
    /// Writes per second allowed to this token (default [limits] token_rate).
    #[arg(long)]
    rate: Option<f64>,
    /// Burst of writes (default [limits] token_burst).
    #[arg(long)]
    burst: Option<f64>,
    /// Lifetime: seconds or a number with s, m, h, d or w (e.g. 90d); default never.
    #[arg(long, value_parser = parse_duration)]
    expires: Option<u64>,
}

/// `90d`, `12h`, `30m`, `45s`, `2w` or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 90d, 12h)"))?;
    let mul = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(format!("{s:?}: unit must be s, m, h, d or w")),
    };
    n.checked_mul(mul).filter(|&v| v > 0).ok_or_else(|| format!("{s:?}: out of range"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Generate { what }) = &cli.command {
        return generate(what);
    }
    if let Some(Command::Restore { data_dir, force, file }) = &cli.command {
        return match dnsmesh::node::backup::restore(file, data_dir, *force) {
            Ok((trees, entries, files)) => {
                println!(
                    "restored {entries} entries in {trees} trees and {files} files into {}",
                    data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dnsmesh-node restore: {e}");
                ExitCode::from(1)
            }
        };
    }
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let ov = Overrides {
        zone: cli.zone,
        data_dir: cli.data_dir,
        dns_listen: cli.dns_listen,
        http_listen: cli.http_listen,
    };
    let load = || match Settings::load(&cli.config, explicit, &ov) {
        Ok(s) => Ok(s),
        Err(e) => {
            eprintln!("dnsmesh-node: bad configuration: {e}");
            Err(ExitCode::from(2))
        }
    };
    if let Some(Command::Admin { node, token, ca_file, action }) = cli.command {
        init_logging("text");
        if let AdminAction::Ds = action {
            return match load() {
                Ok(s) => admin_ds(&s),
                Err(code) => code,
            };
        }
        return admin(&node, token.as_deref(), ca_file.as_deref(), action);
    }
    let settings = match load() {
        Ok(s) => s,
        Err(code) => return code,
    };
    init_logging(&settings.log.format);
    let sys = actix_rt::System::new();
    let config_path = cli.config.clone();
    let result: anyhow::Result<()> = sys.block_on(async move {
        let mut handle = dnsmesh::node::start(&settings).await?;
        // Handlers first, so a signal sent right after the ready line is not fatal.
        let mut signals = Signals::new();
        // One machine-readable line on stdout once every listener is bound.
        let dns: Vec<String> = handle.dns.iter().map(|a| a.to_string()).collect();
        println!("dnsmesh-node ready dns={} http={}", dns.join(","), handle.http);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // Reloads (SIGHUP or `admin reload`) until SIGTERM/SIGINT.
        let reload = |handle: &dnsmesh::node::NodeHandle| {
            Settings::load(&config_path, explicit, &ov)
                .map_err(|e| format!("bad configuration: {e}"))
                .and_then(|s| handle.reloader.apply(&s))
        };
        loop {
            tokio::select! {
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => {
                    if let Err(e) = reload(&handle) {
                        tracing::error!(error = %e, "reload (SIGHUP) refused; nothing changed");
                    }
                }
                Some(reply) = handle.reload_requests.recv() => {
                    let _ = reply.send(reload(&handle));
                }
            }
        }
        tracing::info!("shutting down: stop accepting, finish writes, flush");
        handle.stop().await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A start-up failure (an address in use, an unreadable data dir, …): the
            // error alone, exit 2. Exit here, before the half-started actor system is
            // torn down (its actors' teardown needs the runtime that is going away); no
            // write was acknowledged, so nothing is lost.
            eprintln!("dnsmesh-node: {e:#}");
            use std::io::Write as _;
            let _ = std::io::stderr().flush();
            std::process::exit(2);
        }
    }
}

/// Logs on stderr, `text` or `json` (`[log] format`), level from RUST_LOG.
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn")
    });
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        b.with_ansi(false).event_format(dnsmesh::node::logfmt::JsonLines).init();
    } else {
        b.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

/// `admin ds`: the DS line(s) of the stored KSK, offline from the data dir.
fn admin_ds(settings: &Settings) -> ExitCode {
    let dir = &settings.node.data_dir;
    let key = match dnsmesh::actors::auth::load_node_key(&dir.join("node.key")) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("dnsmesh-node admin ds: node key in {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    };
    let path = dnsmesh::node::dnssec_keys::keys_path(dir);
    match dnsmesh::node::dnssec_keys::load(&path, &key) {
        Ok(Some(keys)) => {
            let mut origin = Vec::new();
            for label in settings.node.zone.split('.').filter(|l| !l.is_empty()) {
                origin.push(label.len() as u8);
                origin.extend_from_slice(label.as_bytes());
            }
            origin.push(0);
            for line in dnsmesh::dnswire::signed::ds_lines(&keys, &origin) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "dnsmesh-node admin ds: no DNSSEC keys in {} (start the node once with \
                 [dnssec] enabled = true)",
                dir.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dnsmesh-node admin ds: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn generate(what: &Generate) -> ExitCode {
    use clap::CommandFactory as _;
    use dnsmesh::node::docs;
    match what {
        Generate::Completions { shell, bin } => {
            let cmd = if bin == "dnsmesh" { dnsmesh::cli::command() } else { Cli::command() };
            match docs::completions(cmd, *shell, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Generate::Man { dir } => {
            match docs::man_pages(vec![Cli::command(), dnsmesh::cli::command()], dir) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dnsmesh-node generate man: {}: {e}", dir.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }
}

/// Query-string escaping of a value (unreserved characters kept).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `admin backup FILE`: fetch the archive and write it to FILE (via a temporary file, 0600).
fn backup(
    node: &str,
    token: &str,
    ca: Option<&std::path::Path>,
    file: &std::path::Path,
) -> ExitCode {
    let (status, body) = match call(node, "POST", "/v1/admin/backup", token, "", ca) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dnsmesh-node admin: cannot reach {node}: {e}");
            return ExitCode::from(1);
        }
    };
    if status != 200 {
        eprintln!("dnsmesh-node admin: node answered {status}: {}", String::from_utf8_lossy(&body));
        return ExitCode::from(1);
    }
    if let Err(e) = dnsmesh::node::backup::parse(&body) {
        eprintln!("dnsmesh-node admin backup: the node sent a bad archive: {e}");
        return ExitCode::from(1);
    }
    match dnsmesh::files::private_dir::write_private_atomic(file, &body) {
        Ok(()) => {
            println!("backup written to {} ({} bytes)", file.display(), body.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dnsmesh-node admin backup: {}: {e}", file.display());
            ExitCode::from(1)
        }
    }
}

fn print_admin(action: &AdminAction, text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    match action {
        AdminAction::Audit { .. } => {
            for e in v["entries"].as_array().into_iter().flatten() {
                println!("{e}");
            }
        }
        AdminAction::Token { action: TokenAction::List { subject } } => {
            let rows = v["tokens"].as_array().cloned().unwrap_or_default();
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|t| subject.as_deref().is_none_or(|s| t["subject"] == s))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        }
        _ => println!("{text}"),
    }
}

/// One admin request over HTTP or HTTPS: (status, body bytes).
fn call(
    node: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    ca: Option<&std::path::Path>,
) -> std::io::Result<(u16, Vec<u8>)> {
    use dnsmesh::client::http_client as hc;
    if node.starts_with("https://") {
        hc::request_https(node, method, path, Some(token), body, ca)
    } else if path == "/v1/admin/backup" {
        hc::request_bytes(node, method, path, Some(token), body)
    } else {
        hc::request(node, method, path, Some(token), body).map(|(s, b)| (s, b.into_bytes()))
    }
}

fn admin(
    node: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    action: AdminAction,
) -> ExitCode {
    let Some(token) = token else {
        eprintln!(
            "dnsmesh-node admin: the operator token is needed (--token or DNSMESH_ADMIN_TOKEN)"
        );
        return ExitCode::from(2);
    };
    let issue = |subject: &str, o: &TokenOpts, rotate: bool| {
        let body = serde_json::json!({
            "subject": subject, "rate": o.rate, "burst": o.burst,
            "expires_in": o.expires.unwrap_or(0), "rotate": rotate,
        });
        ("POST", "/v1/admin/tokens".to_string(), body.to_string())
    };
    let revoke = |what: &str| {
        ("POST", "/v1/admin/revoke".to_string(), serde_json::json!({ "what": what }).to_string())
    };
    if let AdminAction::Backup { file } = &action {
        return backup(node, token, ca, file);
    }
    let (method, path, body) = match &action {
        AdminAction::List | AdminAction::Token { action: TokenAction::List { .. } } => {
            ("GET", "/v1/admin/credentials".to_string(), String::new())
        }
        AdminAction::Revoke { what } => revoke(what),
        AdminAction::Token { action: TokenAction::Revoke { what } } => revoke(what),
        AdminAction::Token { action: TokenAction::Issue { subject, opts } } => {
            issue(subject, opts, false)
        }
        AdminAction::Token { action: TokenAction::Rotate { subject, opts } } => {
            issue(subject, opts, true)
        }
        AdminAction::Backup { .. } => unreachable!("handled above"),
        AdminAction::Reload => ("POST", "/v1/admin/reload".to_string(), String::new()),
        AdminAction::Ds => return ExitCode::from(2), // handled offline by admin_ds
        AdminAction::Audit { event, limit } => {
            let mut p = format!("/v1/admin/audit?limit={limit}");
            if let Some(e) = event {
                p.push_str("&event=");
                p.push_str(&url_escape(e));
            }
            ("GET", p, String::new())
        }
    };
    match call(node, method, &path, token, &body, ca) {
        Ok((200, bytes)) => {
            print_admin(&action, &String::from_utf8_lossy(&bytes));
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!(
                "dnsmesh-node admin: node answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dnsmesh-node admin: cannot reach {node}: {e}");
            ExitCode::from(1)
        }
    }
}
