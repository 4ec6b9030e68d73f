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
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// List bearer tokens and TSIG keys.
    List,
    /// Revoke by subject, token-hash prefix or TSIG key name.
    Revoke { what: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(
            |_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(Command::Admin { node, token, action }) = cli.command {
        return admin(&node, token.as_deref(), action);
    }
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let ov = Overrides {
        zone: cli.zone,
        data_dir: cli.data_dir,
        dns_listen: cli.dns_listen,
        http_listen: cli.http_listen,
    };
    let settings = match Settings::load(&cli.config, explicit, &ov) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dnsmesh-node: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let sys = actix_rt::System::new();
    let result: anyhow::Result<()> = sys.block_on(async move {
        let handle = dnsmesh::node::start(&settings).await?;
        // One machine-readable line on stdout once every listener is bound.
        let dns: Vec<String> = handle.dns.iter().map(|a| a.to_string()).collect();
        println!("dnsmesh-node ready dns={} http={}", dns.join(","), handle.http);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn admin(node: &str, token: Option<&str>, action: AdminAction) -> ExitCode {
    let Some(token) = token else {
        eprintln!(
            "dnsmesh-node admin: the operator token is needed (--token or DNSMESH_ADMIN_TOKEN)"
        );
        return ExitCode::from(2);
    };
    let (method, path, body) = match &action {
        AdminAction::List => ("GET", "/v1/admin/credentials".to_string(), String::new()),
        AdminAction::Revoke { what } => (
            "POST",
            "/v1/admin/revoke".to_string(),
            serde_json::json!({ "what": what }).to_string(),
        ),
    };
    match dnsmesh::client::http_client::request(node, method, &path, Some(token), &body) {
        Ok((200, text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!("dnsmesh-node admin: node answered {status}: {text}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dnsmesh-node admin: cannot reach {node}: {e}");
            ExitCode::from(1)
        }
    }
}
