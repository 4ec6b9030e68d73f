//! DNS for the CLI: a resolver pool for reads (UDP with TCP fallback on truncation,
//! DNS-over-HTTPS entries, failover with per-resolver health, multi-string TXT joined)
//! and RFC 2136 UPDATE for writes (TSIG hmac-sha256 signed, or unsigned claim writes).
//! Synchronous std sockets with timeouts: a CLI does one thing at a time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use serde::{Deserialize, Serialize};

pub mod union;

use crate::proto::txt;
pub use union::Union;

/// Per-attempt timeout of one resolver.
const TIMEOUT: Duration = Duration::from_secs(3);
/// EDNS payload we advertise, so most answers fit in UDP.
const EDNS_PAYLOAD: u16 = 1232;
/// Consecutive failures after which a resolver is tried last.
const UNHEALTHY_AFTER: u32 = 1;

/// One upstream of the pool.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Classic DNS on UDP, TCP when truncated.
    Dns(SocketAddr),
    /// RFC 8484 DNS-over-HTTPS (POST `application/dns-message`).
    Doh(String),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Dns(a) => write!(f, "{a}"),
            Upstream::Doh(u) => write!(f, "{u}"),
        }
    }
}

/// Parse `host`, `host:port`, `[v6]:port`, `v6` or an `https://` DoH URL (default port 53).
pub fn parse_upstream(entry: &str) -> Result<Upstream> {
    let e = entry.trim();
    if e.starts_with("https://") || e.starts_with("http://") {
        return Ok(Upstream::Doh(e.to_string()));
    }
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(Upstream::Dns(SocketAddr::new(ip, 53)));
    }
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return Ok(Upstream::Dns(sa));
    }
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) => {
            (h, p.parse::<u16>().with_context(|| format!("resolver `{entry}`: bad port"))?)
        }
        None => (e, 53),
    };
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolver `{entry}`: cannot resolve host `{host}`"))?
        .next()
        .ok_or_else(|| anyhow!("resolver `{entry}`: host has no address"))?;
    Ok(Upstream::Dns(addr))
}

/// A resolver pool (the seed's design). Resolvers are asked in health order:
/// - an answer with records wins at once;
/// - NXDOMAIN or an empty answer from one resolver makes the pool ask the next (a
///   resolver may serve a stale negative cache entry); the negative answer is returned
///   only when no resolver has the records, and a resolver that answered negatively
///   while a later one had records is "proven wrong" and demoted;
/// - a timeout or network error demotes a resolver; REFUSED/SERVFAIL/NOTAUTH move on
///   without demoting (a node answers REFUSED outside its zone);
/// - with `require_dnssec`, answers without the AD flag are dropped like errors.
///
/// Health (failures, wrong answers) is kept in `<home>/resolver_health.json` between
/// runs. In cluster mode TXT reads of names under the cluster base go to every cluster
/// node instead (a [`Union`]); everything else still uses the resolvers.
pub struct Pool {
    upstreams: Vec<Upstream>,
    health: RefCell<Vec<Health>>,
    dirty: RefCell<bool>,
    health_path: Option<PathBuf>,
    require_dnssec: bool,
    union: Option<Union>,
}

/// Remembered health of one resolver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Health {
    /// Consecutive timeouts / network errors.
    #[serde(default)]
    pub failures: u32,
    /// Times it answered "no such data" while another resolver had the records.
    #[serde(default)]
    pub wrong: u32,
    /// Unix time of its last useful reply.
    #[serde(default)]
    pub last_ok: u64,
}

impl Health {
    fn score(&self) -> u32 {
        self.failures.min(1000) + self.wrong.min(1000)
    }
}

/// A DNS answer.
pub struct Answer {
    pub msg: Message,
}

/// Name servers of the system resolver (`/etc/resolv.conf`); 127.0.0.1 when it lists none.
pub fn system_resolvers() -> Vec<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("nameserver")).then(|| it.next()).flatten()
        })
        .filter(|a| a.parse::<IpAddr>().is_ok())
        .map(|a| match a.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:53"),
            _ => a.to_string(),
        })
        .collect();
    if out.is_empty() {
        out.push("127.0.0.1".into());
    }
    out
}

/// The resolver entries a configuration uses: `dns_resolvers`, else `dns_host[:dns_port]`,
/// else the system resolver.
pub fn configured_resolvers(cfg: &super::config::Config) -> Vec<String> {
    if !cfg.dns_resolvers.is_empty() {
        return cfg.dns_resolvers.clone();
    }
    if let Some(h) = super::config::Config::opt(&cfg.dns_host) {
        let port = cfg.dns_port.unwrap_or(53);
        return vec![if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]:{port}")
        } else {
            format!("{h}:{port}")
        }];
    }
    system_resolvers()
}

fn health_path(home: &Path) -> PathBuf {
    home.join("resolver_health.json")
}

/// Saved resolver health by entry.
pub fn load_health(home: &Path) -> BTreeMap<String, Health> {
    std::fs::read_to_string(health_path(home))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !*self.dirty.borrow() {
            return;
        }
        if let Some(p) = &self.health_path {
            let home = p.parent().unwrap_or(Path::new("."));
            let mut all = load_health(home);
            for (u, h) in self.upstreams.iter().zip(self.health.borrow().iter()) {
                all.insert(u.to_string(), h.clone());
            }
            if let Ok(text) = serde_json::to_string_pretty(&all) {
                let _ = super::store::write_atomic(p, text.as_bytes(), 0o600);
            }
        }
    }
}

impl Pool {
    /// Build from configuration entries (no remembered health, no DNSSEC gate).
    pub fn new(entries: &[String]) -> Result<Pool> {
        let upstreams = entries.iter().map(|e| parse_upstream(e)).collect::<Result<Vec<_>>>()?;
        if upstreams.is_empty() {
            bail!("no DNS resolvers configured — set `dns_resolvers` in config.yaml (e.g. [\"1.1.1.1\"]) or re-run init with --dns-resolvers");
        }
        let n = upstreams.len();
        Ok(Pool {
            upstreams,
            health: RefCell::new(vec![Health::default(); n]),
            dirty: RefCell::new(false),
            health_path: None,
            require_dnssec: false,
            union: None,
        })
    }

    /// The pool of a configuration: its resolvers (system fallback), `dnssec_required`,
    /// and the health remembered in `home`.
    pub fn from_config(cfg: &super::config::Config, home: &Path) -> Result<Pool> {
        let mut p = Pool::new(&configured_resolvers(cfg))?;
        p.require_dnssec = cfg.dnssec_required;
        let saved = load_health(home);
        {
            let mut h = p.health.borrow_mut();
            for (i, u) in p.upstreams.iter().enumerate() {
                if let Some(s) = saved.get(&u.to_string()) {
                    h[i] = s.clone();
                }
            }
        }
        p.health_path = Some(health_path(home));
        Ok(p)
    }

    /// `(entry, health)` of every resolver, in the order they are tried.
    pub fn health_report(&self) -> Vec<(String, Health)> {
        let h = self.health.borrow();
        self.order().into_iter().map(|i| (self.upstreams[i].to_string(), h[i].clone())).collect()
    }

    /// Route TXT reads under the cluster base to `union` from now on.
    pub fn set_union(&mut self, union: Union) {
        self.union = Some(union);
    }

    /// The cluster nodes' DNS servers when `zone` is the cluster's (claim UPDATE targets).
    pub fn cluster_servers(&self, zone: &str) -> Option<Vec<SocketAddr>> {
        self.union.as_ref().filter(|u| u.covers(zone)).map(Union::servers).filter(|s| !s.is_empty())
    }

    fn order(&self) -> Vec<usize> {
        let h = self.health.borrow();
        let mut idx: Vec<usize> = (0..self.upstreams.len()).collect();
        idx.sort_by_key(|&i| (h[i].failures >= UNHEALTHY_AFTER, h[i].score()));
        idx
    }

    fn note(&self, i: usize, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.borrow_mut()[i]);
        *self.dirty.borrow_mut() = true;
    }

    /// Ask the pool: the first answer with records wins; a negative answer (NXDOMAIN or
    /// no records) is returned only when every resolver that replied was negative.
    pub fn query(&self, name: &str, rtype: RecordType) -> Result<Answer> {
        let q = build_query(name, rtype, self.require_dnssec)?;
        let mut errors = Vec::new();
        let mut negative: Option<Message> = None;
        let mut negative_from: Vec<usize> = Vec::new();
        for i in self.order() {
            let up = &self.upstreams[i];
            match exchange_any(up, &q) {
                Ok(msg) => {
                    if self.health.borrow()[i].failures != 0 {
                        self.note(i, |h| h.failures = 0);
                    }
                    if self.require_dnssec && !msg.metadata.authentic_data {
                        errors.push(format!("{up}: answer not DNSSEC-validated (no AD flag; `dnssec_required` is on)"));
                        continue;
                    }
                    match msg.metadata.response_code {
                        ResponseCode::NoError if !msg.answers.is_empty() => {
                            let t = super::now();
                            for &w in &negative_from {
                                self.note(w, |h| h.wrong = h.wrong.saturating_add(1));
                            }
                            self.note(i, |h| {
                                h.wrong = h.wrong.saturating_sub(1);
                                h.last_ok = t;
                            });
                            return Ok(Answer { msg });
                        }
                        ResponseCode::NoError | ResponseCode::NXDomain => {
                            negative_from.push(i);
                            if negative.is_none() {
                                negative = Some(msg);
                            }
                        }
                        rc => errors.push(format!("{up}: {rc}")),
                    }
                }
                Err(e) => {
                    self.note(i, |h| h.failures = h.failures.saturating_add(1));
                    errors.push(format!("{up}: {e:#}"));
                }
            }
        }
        if let Some(msg) = negative {
            return Ok(Answer { msg });
        }
        bail!(
            "DNS lookup of {name} {rtype} failed on every resolver ({}) — check `dns_resolvers` in config.yaml and that the node is up (`dnsmesh doctor`)",
            errors.join("; ")
        )
    }

    /// TXT values at `name` (each RR's strings joined); empty for NXDOMAIN / NODATA.
    /// Names under the cluster base (cluster mode) are the union of every node's answer.
    pub fn txt(&self, name: &str) -> Result<Vec<String>> {
        match &self.union {
            Some(u) if u.covers(name) => u.txt(self, name),
            _ => self.resolver_txt(name),
        }
    }

    /// TXT values at `name` through the resolvers only (never the cluster union).
    pub fn resolver_txt(&self, name: &str) -> Result<Vec<String>> {
        let a = self.query(name, RecordType::TXT)?;
        Ok(txt_values(&a.msg))
    }

    /// A resolver of the pool that is authoritative for `zone` (answers its SOA with AA),
    /// i.e. the zone's own node when the pool lists it directly.
    pub fn authoritative_for(&self, zone: &str) -> Option<SocketAddr> {
        let q = build_query(zone, RecordType::SOA, false).ok()?;
        self.upstreams.iter().find_map(|up| match up {
            Upstream::Dns(addr) => {
                let m = exchange_any(up, &q).ok()?;
                (m.metadata.authoritative && m.metadata.response_code == ResponseCode::NoError)
                    .then_some(*addr)
            }
            Upstream::Doh(_) => None,
        })
    }

    /// IPv4/IPv6 addresses of `host` through the pool.
    pub fn addresses(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        let mut out = Vec::new();
        for t in [RecordType::A, RecordType::AAAA] {
            if let Ok(a) = self.query(host, t) {
                for r in &a.msg.answers {
                    match &r.data {
                        RData::A(a) => out.push(IpAddr::V4(a.0)),
                        RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

/// Joined TXT values of the answer section.
pub fn txt_values(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => String::from_utf8(txt::join(&t.txt_data)).ok(),
            _ => None,
        })
        .collect()
}

fn name(s: &str) -> Result<Name> {
    let mut n = Name::from_ascii(s.trim_end_matches('.'))
        .with_context(|| format!("`{s}` is not a valid DNS name"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn build_query(qname: &str, rtype: RecordType, dnssec: bool) -> Result<Message> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    // RFC 6840 §5.7: AD in a query asks the resolver to report validation in AD.
    m.metadata.authentic_data = dnssec;
    m.add_query(Query::query(name(qname)?, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    if dnssec {
        edns.set_dnssec_ok(true);
    }
    m.set_edns(edns);
    Ok(m)
}

/// Ask one DNS server directly (UDP, TCP when truncated); any rcode is returned.
pub fn ask(server: SocketAddr, qname: &str, rtype: RecordType) -> Result<Message> {
    exchange_any(&Upstream::Dns(server), &build_query(qname, rtype, false)?)
}

fn exchange_any(up: &Upstream, q: &Message) -> Result<Message> {
    let bytes = q.to_vec().context("encoding query")?;
    let raw = match up {
        Upstream::Dns(addr) => {
            let r = udp_exchange(*addr, &bytes)?;
            let m = Message::from_vec(&r).context("malformed DNS reply")?;
            if m.metadata.truncation {
                // Over TCP advertise the full 64 KiB: the reference node applies the EDNS
                // payload to TCP answers too and SERVFAILs when the RRset exceeds it.
                let mut tq = q.clone();
                let mut edns = Edns::new();
                edns.set_max_payload(u16::MAX);
                tq.set_edns(edns);
                tcp_exchange(*addr, &tq.to_vec().context("encoding query")?)?
            } else {
                r
            }
        }
        Upstream::Doh(url) => super::net::doh(url, &bytes)?,
    };
    let m = Message::from_vec(&raw).context("malformed DNS reply")?;
    if m.metadata.id != q.metadata.id || m.metadata.message_type != MessageType::Response {
        bail!("reply does not match the query");
    }
    Ok(m)
}

/// One UDP exchange with a retry on timeout.
pub fn udp_exchange(addr: SocketAddr, query: &[u8]) -> Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let sock = UdpSocket::bind(bind).context("binding a UDP socket")?;
    sock.connect(addr).with_context(|| format!("UDP connect {addr}"))?;
    let id = query.get(..2).unwrap_or(&[0, 0]).to_vec();
    let mut buf = vec![0u8; 65535];
    for attempt in 0..2 {
        sock.send(query).with_context(|| format!("UDP send to {addr}"))?;
        let deadline = Instant::now() + TIMEOUT / 2 * (attempt + 1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv(&mut buf) {
                Ok(n) if buf.get(..2) == Some(&id[..]) => return Ok(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e).with_context(|| format!("UDP receive from {addr}")),
            }
        }
    }
    bail!("no reply from {addr} (timeout)")
}

/// One TCP exchange (2-byte length framing).
pub fn tcp_exchange(addr: SocketAddr, msg: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(msg.len()).context("DNS message over 65535 bytes")?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("TCP connect to {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT * 2))?;
    s.set_write_timeout(Some(TIMEOUT * 2))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).with_context(|| format!("TCP send to {addr}"))?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).with_context(|| format!("TCP reply from {addr}"))?;
    let mut r = vec![0u8; u16::from_be_bytes(l) as usize];
    s.read_exact(&mut r).with_context(|| format!("TCP reply from {addr}"))?;
    Ok(r)
}

/// One TXT change inside an UPDATE.
#[derive(Debug, Clone)]
pub enum UpdateOp {
    /// Add `value` at `name` with a TTL.
    Add { name: String, value: String, ttl: u32 },
    /// Delete exactly `value` at `name`.
    Delete { name: String, value: String },
}

/// A TSIG key for UPDATEs.
#[derive(Debug, Clone)]
pub struct TsigKey {
    pub name: String,
    pub secret: Vec<u8>,
}

fn txt_rdata(value: &str) -> RData {
    RData::TXT(TXT::from_bytes(txt::split(value.as_bytes())))
}

/// Send an UPDATE for `zone` to `server` over TCP. With a key the request is signed and the
/// response's TSIG must verify (RFC 8945 MAC chaining); without, it is a plain (claim)
/// UPDATE. Any rcode but NOERROR is an error naming the rcode.
pub fn update(
    server: SocketAddr,
    zone: &str,
    ops: &[UpdateOp],
    key: Option<&TsigKey>,
    now: u64,
) -> Result<()> {
    let mut m = Message::query();
    m.metadata.op_code = OpCode::Update;
    m.metadata.recursion_desired = false;
    let mut z = Query::query(name(zone)?, RecordType::SOA);
    z.set_query_class(DNSClass::IN);
    m.add_zone(z);
    for op in ops {
        let rec = match op {
            UpdateOp::Add { name: n, value, ttl } => {
                Record::from_rdata(name(n)?, *ttl, txt_rdata(value))
            }
            UpdateOp::Delete { name: n, value } => {
                let mut r = Record::from_rdata(name(n)?, 0, txt_rdata(value));
                r.dns_class = DNSClass::NONE;
                r
            }
        };
        m.add_update(rec);
    }
    let mut verifier = match key {
        Some(k) => {
            let signer =
                TSigner::new(k.secret.clone(), TsigAlgorithm::HmacSha256, name(&k.name)?, 300)
                    .map_err(|e| anyhow!("TSIG key: {e}"))?;
            m.finalize(&signer, now).map_err(|e| anyhow!("signing the UPDATE: {e}"))?
        }
        None => None,
    };
    let bytes = m.to_vec().context("encoding UPDATE")?;
    let raw = tcp_exchange(server, &bytes)?;
    let resp = Message::from_vec(&raw).context("malformed UPDATE reply")?;
    if resp.metadata.id != m.metadata.id {
        bail!("UPDATE reply from {server} has the wrong id");
    }
    let rc = resp.metadata.response_code;
    if let Some(v) = verifier.as_mut() {
        if resp.signature.is_none() {
            if rc == ResponseCode::NotAuth {
                bail!("the node at {server} rejected our TSIG key (NOTAUTH) — it may be revoked or expired, or the clock is off; re-run `dnsmesh tsig register` and check `dnsmesh doctor`");
            }
            bail!("the UPDATE reply from {server} ({rc}) is not TSIG-signed; refusing to trust it");
        }
        v.verify(&raw)
            .map_err(|e| anyhow!("the UPDATE reply from {server} failed TSIG verification: {e}"))?;
    }
    match rc {
        ResponseCode::NoError => Ok(()),
        ResponseCode::Refused => bail!("UPDATE refused by {server} (REFUSED: out of the key's scope, over a cap, or unsigned writes are off)"),
        ResponseCode::NotAuth => bail!("UPDATE rejected by {server} (NOTAUTH: zone `{zone}` not served there, or bad TSIG)"),
        ResponseCode::NotZone => bail!("UPDATE rejected by {server} (NOTZONE: a name is outside `{zone}`)"),
        ResponseCode::ServFail => bail!("UPDATE failed at {server} (SERVFAIL: rate limit or store failure; retry later)"),
        rc => bail!("UPDATE failed at {server}: {rc}"),
    }
}
