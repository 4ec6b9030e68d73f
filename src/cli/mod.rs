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
mod chain;
mod cluster;
mod config;
mod dns;
mod groups;
mod ident;
mod intro;
mod mail;
mod net;
mod providers;
mod rotate;
mod state;
mod store;
mod watch;
mod writer;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::proto::keys::Identity;
use crate::proto::records::cluster::ClusterManifest;
use config::Config;
use state::Credentials;
use store::{HomeLock, Store};
use writer::Writer;

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
        /// Your home zone, e.g. mesh.example.com (default mesh.local, as the reference).
        #[arg(long, default_value = "mesh.local")]
        domain: String,
        /// Your home node's HTTP(S) URL.
        #[arg(long, default_value = "")]
        endpoint: String,
        /// Static bearer token for the node's HTTP API (e.g. issued by its operator).
        #[arg(long)]
        http_token: Option<String>,
        /// A single DNS resolver host, used when --dns-resolvers is not given.
        #[arg(long)]
        dns_host: Option<String>,
        /// Port of --dns-host (default 53).
        #[arg(long)]
        dns_port: Option<u16>,
        /// Resolvers, comma-separated: HOST[:PORT] or https://…/dns-query.
        #[arg(long, value_delimiter = ',')]
        dns_resolvers: Vec<String>,
        /// Do not use 1.1.1.1 and 8.8.8.8 when no resolver is given: use the system
        /// resolver (/etc/resolv.conf).
        #[arg(long)]
        no_default_resolvers: bool,
        /// A zone you control: your identity is also published at dmp.<zone> and
        /// others reach you as USER@<zone>.
        #[arg(long)]
        identity_domain: Option<String>,
        /// Accepted for compatibility; this CLI never probes for a local node.
        #[arg(long)]
        no_probe_local_dns: bool,
        /// Drop DNS answers the resolver did not DNSSEC-validate (no AD flag).
        #[arg(long)]
        require_dnssec: bool,
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
        /// The node: HOST[:PORT] or a URL (its scheme then wins over --scheme).
        #[arg(long)]
        node: String,
        /// Subject to register (default USER@DOMAIN).
        #[arg(long)]
        subject: Option<String>,
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
        /// Run phase 1 only (claims in your zone and at the claim providers).
        #[arg(long, conflicts_with = "skip_primary")]
        primary_only: bool,
        /// Run phase 2 only (the slot walk over your and your contacts' zones).
        #[arg(long)]
        skip_primary: bool,
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
    /// Pending first-contact intros from unpinned senders.
    Intro {
        #[command(subcommand)]
        cmd: IntroCmd,
    },
    /// Saved per-node publish tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Upstream DNS resolvers: the configured pool and its health, or probe public ones.
    Resolvers {
        #[command(subcommand)]
        cmd: ResolversCmd,
    },
    /// Bootstrap discovery trust anchors (`_dmp.<domain>` records).
    Bootstrap {
        #[command(subcommand)]
        cmd: BootstrapCmd,
    },
    /// Run a node in the foreground: the `dnsmesh-node` binary beside this one, with
    /// the arguments given (`dnsmesh node --help` shows them).
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show the heartbeat directory a node publishes (`_dnsmesh-heartbeat` and
    /// `_dnsmesh-seen` of ZONE), verified.
    Peers {
        /// DNS zone of the node (a URL is accepted; its host is used).
        zone: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum IntroCmd {
    /// List pending intros, numbered.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deliver intro N into the inbox without pinning the sender.
    Accept { intro_id: u64 },
    /// Verify the sender's published identity, pin it as a contact, deliver intro N.
    Trust {
        intro_id: u64,
        /// The sender's name (`user` in their zone, or `user@zone`) when the intro
        /// carries no verified address.
        #[arg(long)]
        username: Option<String>,
    },
    /// Drop intro N and block the sender's key (claims and slots).
    Block {
        intro_id: u64,
        /// Reason kept with the block-list entry.
        #[arg(long)]
        note: Option<String>,
    },
    /// Show the block list.
    Blocked,
    /// Remove a key (or a unique hex prefix) from the block list.
    Unblock { key: String },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// List saved tokens by node, subject and expiry (never the token itself).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete the saved token for a node (`host:port` as listed, a host, or a URL).
    Forget { node: String },
}

#[derive(Subcommand, Debug)]
enum ResolversCmd {
    /// Probe well-known public resolvers and print the working set, fastest first.
    Discover {
        /// Save the working resolvers as `dns_resolvers`.
        #[arg(long)]
        save: bool,
        /// Per-resolver probe timeout in seconds.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
        /// Probe these instead of the well-known list (comma-separated).
        #[arg(long, value_delimiter = ',')]
        candidates: Vec<String>,
    },
    /// The configured resolvers in the order they are tried, with remembered health.
    List,
}

#[derive(Subcommand, Debug)]
enum BootstrapCmd {
    /// Store the zone operator's Ed25519 key and user domain in config.
    Pin {
        /// User domain (e.g. example.com).
        user_domain: String,
        /// 32-byte Ed25519 key of the zone operator, hex.
        signer_spk_hex: String,
    },
    /// Fetch and verify the bootstrap record now, and print it.
    Fetch {
        #[arg(long)]
        user_domain: Option<String>,
        #[arg(long)]
        signer_spk: Option<String>,
    },
    /// Resolve USER@HOST to its cluster; with --auto-pin, pin it and enable cluster mode.
    Discover {
        address: String,
        #[arg(long)]
        signer_spk: Option<String>,
        #[arg(long)]
        auto_pin: bool,
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
        /// The node: HOST[:PORT] or a URL (its scheme then wins over --scheme).
        #[arg(long)]
        node: String,
        /// Subject to register (default USER@DOMAIN).
        #[arg(long)]
        subject: Option<String>,
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
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Publish a fresh pool of one-time prekeys (forward secrecy).
    RefreshPrekeys {
        #[arg(long, default_value_t = 25)]
        count: u32,
        #[arg(long, default_value_t = 86400)]
        ttl: u32,
    },
    /// Rotate to a new key (from a new passphrase): publishes a rotation record co-signed
    /// by both keys, the new identity and fresh prekeys; with --reason compromise or
    /// lost_key also a revocation of the old key.
    Rotate {
        /// routine (followed automatically), compromise or lost_key (old key revoked).
        #[arg(long, default_value = "routine", value_parser = ["routine", "compromise", "lost_key"])]
        reason: String,
        /// File holding the new passphrase (else DMP_NEW_PASSPHRASE, else a prompt).
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
        #[arg(long, default_value_t = 86400)]
        ttl: u32,
        /// Seconds until the rotation record expires (default one year).
        #[arg(long, default_value_t = 31_536_000)]
        exp_seconds: u64,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Accepted for compatibility with the reference (not required here).
        #[arg(long)]
        experimental: bool,
        #[arg(long)]
        advertise_v2: bool,
    },
    /// Look up someone's identity (`user` in your zone, or `user@zone`).
    Fetch {
        addr: String,
        /// The user's zone (default: the address's, else your own).
        #[arg(long)]
        domain: Option<String>,
        /// Pin it as a contact.
        #[arg(long)]
        add: bool,
        /// Choose among several records by fingerprint.
        #[arg(long)]
        accept_fingerprint: Option<String>,
        #[arg(long)]
        json: bool,
        /// Find the cluster serving the address's host through the pinned bootstrap
        /// signer and look the identity up there (nothing is written to config).
        #[arg(long)]
        via_bootstrap: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ContactsCmd {
    /// Pin a contact by key: NAME is `user` (your zone) or `user@zone`.
    Add {
        name: String,
        /// X25519 public key, 64 hex.
        pubkey: String,
        /// Ed25519 signing key, 64 hex: without it messages from this contact are not
        /// recognised (they land in the intro queue).
        #[arg(long)]
        signing_key: Option<String>,
    },
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
        let mut pool = dns::Pool::from_config(&cfg, home)?;
        let cluster = match cfg.cluster()? {
            Some(pin) => {
                let m = cluster::load(home, &pool, &pin, cfg.cluster_refresh_interval, now())?;
                pool.set_union(dns::Union::new(&m, &pool));
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
        Writer::new(
            &self.cfg.endpoint,
            &creds,
            self.cluster.as_ref(),
            Config::opt(&self.cfg.http_token),
            Config::opt(&self.cfg.cluster_node_token),
        )
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

/// The CLI's clap definition (for generated shell completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
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
            http_token,
            dns_host,
            dns_port,
            dns_resolvers,
            no_default_resolvers,
            identity_domain,
            no_probe_local_dns: _,
            require_dnssec,
            passphrase_file,
            allow_tofu,
            force,
        } => account::init(account::InitArgs {
            home,
            name,
            domain,
            endpoint,
            http_token,
            dns_host,
            dns_port,
            dns_resolvers,
            no_default_resolvers,
            identity_domain,
            require_dnssec,
            passphrase_file,
            allow_tofu,
            force,
        }),
        Cmd::Register { node, subject, scheme } => {
            account::register(&Ctx::open(home)?, &node, subject.as_deref(), &scheme)
        }
        Cmd::Tsig { cmd: TsigCmd::Register { node, subject, scheme, dns_server, dns_port } } => {
            account::tsig_register(
                &Ctx::open(home)?,
                &node,
                subject.as_deref(),
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
                IdentityCmd::Show { json } => ident::show(&ctx, json),
                IdentityCmd::Rotate {
                    reason,
                    new_passphrase_file,
                    ttl,
                    exp_seconds,
                    yes,
                    experimental: _,
                    advertise_v2,
                } => rotate::rotate(
                    ctx,
                    home,
                    rotate::RotateArgs {
                        reason,
                        new_passphrase_file,
                        ttl,
                        exp_seconds,
                        yes,
                        advertise_v2,
                    },
                ),
                IdentityCmd::RefreshPrekeys { count, ttl } => {
                    ident::refresh_prekeys(&ctx, count, ttl)
                }
                IdentityCmd::Fetch {
                    addr,
                    domain,
                    add,
                    accept_fingerprint,
                    json,
                    via_bootstrap,
                } => ident::fetch(
                    &ctx,
                    home,
                    &ident::FetchArgs {
                        addr: &addr,
                        domain: domain.as_deref(),
                        add,
                        accept_fp: accept_fingerprint.as_deref(),
                        json,
                        via_bootstrap,
                    },
                ),
            }
        }
        Cmd::Contacts { cmd } => {
            let ctx = Ctx::open(home)?;
            match cmd {
                ContactsCmd::Add { name, pubkey, signing_key } => {
                    ident::contacts_add(&ctx, &name, &pubkey, signing_key.as_deref())
                }
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
        Cmd::Recv { watch, json, interval, max_polls, primary_only, skip_primary } => {
            let phases = mail::Phases { claims: !skip_primary, slots: !primary_only };
            mail::recv(home, watch, json, interval, max_polls, phases)
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
        Cmd::Intro { cmd } => {
            let ctx = Ctx::open(home)?;
            match cmd {
                IntroCmd::List { json } => intro::list(&ctx, json),
                IntroCmd::Accept { intro_id } => intro::accept(&ctx, intro_id),
                IntroCmd::Trust { intro_id, username } => {
                    intro::trust(&ctx, intro_id, username.as_deref())
                }
                IntroCmd::Block { intro_id, note } => intro::block(&ctx, intro_id, note.as_deref()),
                IntroCmd::Blocked => intro::blocked(&ctx),
                IntroCmd::Unblock { key } => intro::unblock(&ctx, &key),
            }
        }
        Cmd::Token { cmd } => {
            let ctx = Ctx::open(home)?;
            match cmd {
                TokenCmd::List { json } => groups::token_list(&ctx, json),
                TokenCmd::Forget { node } => groups::token_forget(&ctx, &node),
            }
        }
        Cmd::Resolvers { cmd } => match cmd {
            ResolversCmd::List => groups::resolvers_list(home),
            ResolversCmd::Discover { save, timeout, candidates } => {
                groups::resolvers_discover(home, save, timeout, &candidates)
            }
        },
        Cmd::Bootstrap { cmd } => match cmd {
            BootstrapCmd::Pin { user_domain, signer_spk_hex } => {
                groups::bootstrap_pin_cmd(home, &user_domain, &signer_spk_hex)
            }
            BootstrapCmd::Fetch { user_domain, signer_spk } => {
                groups::bootstrap_fetch_cmd(home, user_domain.as_deref(), signer_spk.as_deref())
            }
            BootstrapCmd::Discover { address, signer_spk, auto_pin } => {
                groups::bootstrap_discover_cmd(home, &address, signer_spk.as_deref(), auto_pin)
            }
        },
        Cmd::Peers { zone, json } => groups::peers(home, &zone, json),
        Cmd::Node { args } => {
            let exe = std::env::current_exe().context("locating this binary")?;
            let node = exe.with_file_name("dnsmesh-node");
            let status = std::process::Command::new(&node)
                .args(&args)
                .status()
                .with_context(|| format!("cannot run {}", node.display()))?;
            if !status.success() {
                bail!("dnsmesh-node exited with {status}");
            }
            Ok(())
        }
    }
}
