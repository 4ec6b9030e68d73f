//! The `dnsmesh` companion CLI: keys from a passphrase, registration with a home node,
//! identity and prekey publishing, contacts, send and receive, a persistent outbox and a
//! `doctor`. It uses the protocol core (`crate::proto`) for every byte on the wire and
//! adds only I/O: DNS reads through a resolver pool, writes through the home node — or,
//! in cluster mode (`cluster`), reads from and writes to every node of a signed cluster
//! manifest.
//!
//! Exit codes: 0 success, 1 failure (the message says what failed and what to do),
//! 2 usage errors (clap).

mod account;
mod cluster;
mod config;
mod dns;
mod ident;
mod mail;
mod net;
mod state;
mod store;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::proto::keys::Identity;
use crate::proto::records::cluster::ClusterManifest;
use config::Config;
use state::{Credentials, Writer};
use store::{HomeLock, Store};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "dnsmesh",
    version,
    about = "DNS Mesh Protocol client: end-to-end encrypted messages over DNS"
)]
struct Cli {
    /// Configuration directory (default ~/.dmp).
    #[arg(long, global = true, value_name = "DIR")]
    config_home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create config.yaml and derive the identity from a passphrase.
    Init {
        /// Username (the local part of your address; lower-case).
        name: String,
        /// Your home zone, e.g. mesh.example.com.
        #[arg(long)]
        domain: String,
        /// Your home node's HTTP(S) URL.
        #[arg(long)]
        endpoint: String,
        /// Resolvers, comma-separated: HOST[:PORT] or https://…/dns-query.
        #[arg(long, value_delimiter = ',')]
        dns_resolvers: Vec<String>,
        /// Do not fall back to 1.1.1.1 and 8.8.8.8 when no resolver is given.
        #[arg(long)]
        no_default_resolvers: bool,
        /// File holding the passphrase (mode 0400 or 0600).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Accept messages from unpinned senders while no contact is pinned.
        #[arg(long)]
        allow_tofu: bool,
        /// Overwrite an existing configuration.
        #[arg(long)]
        force: bool,
    },
    /// Register with a node's self-service registration: get a bearer token for HTTP writes.
    Register {
        /// The node, HOST[:PORT].
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "https", value_parser = ["http", "https"])]
        scheme: String,
    },
    /// TSIG keys for DNS UPDATE writes.
    Tsig {
        #[command(subcommand)]
        cmd: TsigCmd,
    },
    /// Your identity record and prekeys; other people's identities.
    Identity {
        #[command(subcommand)]
        cmd: IdentityCmd,
    },
    /// Pinned contacts.
    Contacts {
        #[command(subcommand)]
        cmd: ContactsCmd,
    },
    /// Send a message to a pinned contact (TEXT `-` reads standard input).
    Send {
        /// `user` or `user@zone`.
        addr: String,
        text: String,
        /// Message lifetime in seconds (default: `message_ttl`, 300).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Fetch, verify and decrypt messages addressed to you.
    Recv {
        /// Keep polling, with a one-line live status on stderr.
        #[arg(long)]
        watch: bool,
        /// One JSON object per message on stdout.
        #[arg(long)]
        json: bool,
        /// Seconds between polls with --watch.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Stop --watch after this many polls (default: never).
        #[arg(long)]
        max_polls: Option<u64>,
    },
    /// Messages waiting to be published (the node was unreachable).
    Outbox {
        /// Retry every pending message now.
        #[arg(long)]
        retry: bool,
    },
    /// Check configuration, node, resolvers, credentials and clock.
    Doctor,
    /// Cluster mode: pin a cluster, fetch its signed manifest, switch the mode on or off.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Store the cluster operator's Ed25519 key and the cluster base domain in config.
    Pin {
        /// 32-byte Ed25519 public key of the cluster operator, hex.
        operator_spk: String,
        /// Cluster base domain; the manifest lives at cluster.<base_domain>.
        base_domain: String,
    },
    /// Fetch and verify the cluster manifest now, and print it.
    Fetch,
    /// Switch cluster mode on after the manifest verifies.
    Enable,
    /// Switch cluster mode off (the pin is kept).
    Disable,
    /// Show each node's HTTP and DNS health.
    Status,
}

#[derive(Subcommand, Debug)]
enum TsigCmd {
    /// Get a TSIG key (proving possession of your X25519 key) for DNS UPDATE writes.
    Register {
        /// The node, HOST[:PORT].
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "https", value_parser = ["http", "https"])]
        scheme: String,
        /// DNS server for UPDATEs (default: the node host).
        #[arg(long)]
        dns_server: Option<String>,
        #[arg(long, default_value_t = 53)]
        dns_port: u16,
    },
}

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Publish your identity record.
    Publish {
        /// Advertise DMPv2 (senders then wrap messages in the v2 envelope).
        #[arg(long)]
        advertise_v2: bool,
        #[arg(long, default_value_t = 86400)]
        ttl: u32,
    },
    /// Show your keys and names.
    Show,
    /// Publish a fresh pool of one-time prekeys (forward secrecy).
    RefreshPrekeys {
        #[arg(long, default_value_t = 25)]
        count: u32,
        #[arg(long, default_value_t = 86400)]
        ttl: u32,
    },
    /// Look up someone's identity (`user` in your zone, or `user@zone`).
    Fetch {
        addr: String,
        /// Pin it as a contact.
        #[arg(long)]
        add: bool,
        /// Choose among several records by fingerprint.
        #[arg(long)]
        accept_fingerprint: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ContactsCmd {
    /// List pinned contacts.
    List,
    /// Unpin a contact.
    Remove { addr: String },
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Everything a command needs after the passphrase: config, identity, sealed store,
/// resolver pool, the cluster manifest in cluster mode, and the lock on the config home.
pub(crate) struct Ctx {
    /// In cluster mode `domain` is the cluster base (the effective domain).
    pub cfg: Config,
    pub id: Identity,
    pub store: Store,
    pub pool: dns::Pool,
    pub cluster: Option<ClusterManifest>,
    _lock: Option<HomeLock>,
}

impl Ctx {
    /// Load everything and hold the config-home lock until dropped.
    fn open(home: &Path) -> Result<Ctx> {
        Self::open_with(home, true)
    }

    /// As [`Ctx::open`]; `lock = false` leaves locking to the caller (`recv --watch`
    /// locks per poll so other commands can run in between).
    fn open_with(home: &Path, lock: bool) -> Result<Ctx> {
        let mut cfg = Config::load(home)?;
        let lock = if lock { Some(HomeLock::acquire(home)?) } else { None };
        let pass = passphrase(&cfg)?;
        let id = derive(&cfg, &pass)?;
        if let Some(v) = &cfg.verify_pubkey {
            if !v.eq_ignore_ascii_case(&hex::encode(id.ed25519_public())) {
                bail!("wrong passphrase: it derives a different key than the one recorded at init (verify_pubkey) — check DMP_PASSPHRASE / passphrase_file");
            }
        }
        let store = Store::open(home, &id)?;
        let mut pool = dns::Pool::new(&cfg.dns_resolvers)?;
        let cluster = match cfg.cluster()? {
            Some(pin) => {
                let m = cluster::load(home, &pool, &pin, cfg.cluster_refresh_interval, now())?;
                pool.set_union(cluster::Union::new(&m, &pool));
                cfg.domain = pin.base;
                Some(m)
            }
            None => None,
        };
        Ok(Ctx { cfg, id, store, pool, cluster, _lock: lock })
    }

    /// The writer chosen by the saved credentials (and cluster mode).
    pub fn writer(&self) -> Result<Writer> {
        let creds: Credentials = self.store.load(state::CREDENTIALS)?;
        Writer::new(&self.cfg.endpoint, &creds, self.cluster.as_ref())
    }
}

/// Derive the identity from the passphrase and the config's salt.
fn derive(cfg: &Config, pass: &str) -> Result<Identity> {
    Identity::from_passphrase(pass, Some(&cfg.salt()?)).context("deriving keys from the passphrase")
}

/// The passphrase: `DMP_PASSPHRASE`, else the config's `passphrase_file`, else a prompt.
fn passphrase(cfg: &Config) -> Result<String> {
    if let Ok(p) = std::env::var("DMP_PASSPHRASE") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    if let Some(f) = &cfg.passphrase_file {
        return read_passphrase_file(Path::new(f));
    }
    prompt_passphrase()
}

fn read_passphrase_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("passphrase file {} is not readable", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "passphrase file {} is readable by others — run `chmod 400 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    let p = text.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("passphrase file {} is empty", path.display());
    }
    Ok(p)
}

fn prompt_passphrase() -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set DMP_PASSPHRASE, or `passphrase_file` in config.yaml, or run in a terminal to be prompted");
    }
    let p = rpassword::prompt_password("dnsmesh passphrase: ").context("reading the passphrase")?;
    if p.is_empty() {
        bail!("empty passphrase");
    }
    Ok(p)
}

/// Run the CLI with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let home = cli.config_home.clone().unwrap_or_else(config::default_home);
    match dispatch(cli.cmd, &home) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dnsmesh: error: {e:#}");
            1
        }
    }
}

fn dispatch(cmd: Cmd, home: &Path) -> Result<()> {
    match cmd {
        Cmd::Init {
            name,
            domain,
            endpoint,
            dns_resolvers,
            no_default_resolvers,
            passphrase_file,
            allow_tofu,
            force,
        } => account::init(account::InitArgs {
            home,
            name,
            domain,
            endpoint,
            dns_resolvers,
            no_default_resolvers,
            passphrase_file,
            allow_tofu,
            force,
        }),
        Cmd::Register { node, scheme } => account::register(&Ctx::open(home)?, &node, &scheme),
        Cmd::Tsig { cmd: TsigCmd::Register { node, scheme, dns_server, dns_port } } => {
            account::tsig_register(
                &Ctx::open(home)?,
                &node,
                &scheme,
                dns_server.as_deref(),
                dns_port,
            )
        }
        Cmd::Identity { cmd } => {
            let ctx = Ctx::open(home)?;
            match cmd {
                IdentityCmd::Publish { advertise_v2, ttl } => {
                    ident::publish(&ctx, advertise_v2, ttl)
                }
                IdentityCmd::Show => ident::show(&ctx),
                IdentityCmd::RefreshPrekeys { count, ttl } => {
                    ident::refresh_prekeys(&ctx, count, ttl)
                }
                IdentityCmd::Fetch { addr, add, accept_fingerprint } => {
                    ident::fetch(&ctx, &addr, add, accept_fingerprint.as_deref())
                }
            }
        }
        Cmd::Contacts { cmd } => {
            let ctx = Ctx::open(home)?;
            match cmd {
                ContactsCmd::List => ident::contacts_list(&ctx),
                ContactsCmd::Remove { addr } => ident::contacts_remove(&ctx, &addr),
            }
        }
        Cmd::Send { addr, text, ttl } => {
            let body = if text == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading the message from standard input (it must be UTF-8)")?;
                s
            } else {
                text
            };
            mail::send(&Ctx::open(home)?, &addr, &body, ttl)
        }
        Cmd::Recv { watch, json, interval, max_polls } => {
            mail::recv(home, watch, json, interval, max_polls)
        }
        Cmd::Outbox { retry } => mail::outbox(&Ctx::open(home)?, retry),
        Cmd::Doctor => account::doctor(home),
        Cmd::Cluster { cmd } => match cmd {
            ClusterCmd::Pin { operator_spk, base_domain } => {
                cluster::pin_cmd(home, &operator_spk, &base_domain)
            }
            ClusterCmd::Fetch => cluster::fetch_cmd(home),
            ClusterCmd::Enable => cluster::enable_cmd(home),
            ClusterCmd::Disable => cluster::disable_cmd(home),
            ClusterCmd::Status => cluster::status_cmd(home),
        },
    }
}
