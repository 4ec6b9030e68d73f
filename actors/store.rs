//! The store actor: the single writer of the node's sled database.
//!
//! It owns records (owner name + TXT value, set semantics, TTL expiry), applies every
//! write in order, and acknowledges a write only once it is durable: writes are applied
//! at once and their replies wait for a group commit (one `flush` covers every write
//! applied before it started). After each change it sends the name's full live value
//! set to its subscribers (the DNS actor's read view), so nobody else reads sled.
//!
//! Layout, one sled tree `records`:
//! - `r` name `\0` value → `expires_at u64 BE ‖ stored_ms u64 BE`
//! - `t` stored_ms u64 BE → name   (acceptance order, for sync digests; the row is the
//!   `r` row under that name carrying that stamp, so each value is stored once)
//! - `x` expires_at u64 BE ‖ stored_ms u64 BE → ()   (expiry sweep)
//! - `q` name `\0` value → `expires_at ‖ stamp` and `d` stamp → name
//!   (tombstones of deleted values, for sync; likewise by name and stamp)
//! - `z` expires_at u64 BE ‖ stamp u64 BE → ()   (tombstone expiry index: the sweep
//!   touches only what expires, and evicts the soonest-expiring past `max_tombstones`)
//! - `m:rows` → the row count, written in the same atomic batch as the rows
//! - `m:bytes` → the live bytes (names + values of those rows), likewise
//! - `m:zidx` → present once the `z` index covers every tombstone
//! - `m:tref` → present once every `t`/`d` row holds the name only (older stores kept
//!   name `\0` value there, a second copy of every value; readers take the part before
//!   the first `\0`, so both forms read alike and the rewrite at open is idempotent)
//!
//! Online compaction: sled 0.34 reclaims log space slowly under churn, so when the
//! database directory grows past `compact_ratio` × the live bytes (and by a quarter since
//! the last compaction) the store copies every
//! tree into a fresh database (`sled.compact`), marks the copy complete
//! (`sled.compact.done`), swaps the directories (`sled` → `sled.old`, `sled.compact` →
//! `sled`) and reopens, all on its own thread just before a group commit (no flush in
//! flight, nothing acknowledged that is not already in the copy; the writes of the commit
//! go to the new database). A crash at any step is finished or undone by
//! [`recover_compaction`] at the next open.
//!
//! New databases use [`SEGMENT_BYTES`] segments and zstd compression; sled fixes both at
//! creation, so they are read back from the database's `conf`, and a database created
//! with other settings (older versions: 512 KiB, uncompressed) is copied once at open.
//!
//! `stored_ms` is a per-node strictly increasing millisecond stamp (max(now, last + 1)),
//! so it orders rows even when the wall clock steps back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::supervisor::{Lifecycle, LifecycleEvent, SupervisorActor};
use crate::clock::Clock;

mod backup;
pub use backup::ExportBackup;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The name already holds the maximum number of live values.
    #[error("RRset at {name} already holds {max} values")]
    TooManyValues { name: String, max: usize },
    /// sled failed (I/O error, corruption); the write is not acknowledged.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The store actor is restarting or gone.
    #[error("store unavailable")]
    Unavailable,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

pub use crate::policy::ops::Op;

/// Apply `ops` all-or-nothing, then wait until durable. `max_values` caps live values
/// per name after the batch (values already present do not count twice).
/// Replies with the number of rows actually removed by delete ops.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct Apply {
    pub ops: Vec<Op>,
    pub max_values: usize,
    /// Where the ops come from. Replicated adds of a value deleted here (a live
    /// tombstone) are skipped, so deletes are not undone by anti-entropy.
    pub origin: Origin,
}

/// Who asked for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client of this node (HTTP, UPDATE, the node itself).
    Local,
    /// Anti-entropy from a peer.
    Replicated,
}

/// One row of a sync digest, as the reference serves it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DigestRow {
    pub name: String,
    pub hash: String,
    pub ts: u64,
    pub ttl: u64,
}

/// `GET /v1/sync/digest`: live rows strictly after `after` in (ts, name, hash) order.
#[derive(Message)]
#[rtype(result = "Result<DigestPage, StoreError>")]
pub struct Digest {
    pub after: (u64, String, String),
    pub limit: usize,
}

/// A digest page.
#[derive(Debug, Clone, actix::MessageResponse)]
pub struct DigestPage {
    pub rows: Vec<DigestRow>,
    pub has_more: bool,
}

/// `POST /v1/sync/pull`: every live value at each name, with remaining TTL.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String, u64)>, StoreError>")]
pub struct Pull {
    pub names: Vec<String>,
}

/// Local (hash, remaining ttl) per name, for deciding what to pull.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String, u64)>, StoreError>")]
pub struct LocalHashes {
    pub names: Vec<String>,
}

/// Deletes (tombstones) accepted after stamp `after_ms`: (stamp, name, value, ttl).
#[derive(Message)]
#[rtype(result = "Result<Vec<(u64, String, String, u64)>, StoreError>")]
pub struct Tombstones {
    pub after_ms: u64,
    pub limit: usize,
}

/// Live values at a name, in stable order, with remaining TTL seconds (≥ 1).
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, u64)>, StoreError>")]
pub struct Get {
    pub name: String,
}

/// Number of live records (approximate between sweeps).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count;

/// Subscribe to change events; the subscriber first receives the whole store as
/// a series of [`ZoneDelta`] messages, then every change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// Subscriber identity: a new subscription under the same name replaces the old one.
    pub name: &'static str,
    pub to: Recipient<ZoneDelta>,
    /// Send the whole store first (the DNS view needs it; the sync actor does not).
    pub snapshot: bool,
}

/// Full live value sets of changed names (empty vector = the name is gone).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ZoneDelta {
    pub changes: Vec<(String, Vec<String>)>,
    /// The newest acceptance stamp in the store (ms), to seed the SOA serial.
    pub last_stored_ms: u64,
    /// True on the last message of a subscription's initial snapshot.
    pub snapshot_complete: bool,
    /// True when the change came from a local client (not replication or expiry).
    pub local: bool,
}

/// Test-only fault: the actor stops itself and its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

/// Number of tombstones held (live or expired but not yet swept).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct TombstoneCount;

/// Run the expiry sweep now (the interval keeps running); replies with the number of
/// names whose value sets changed. Tests drive expiry with it and a manual clock.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepNow;

/// Group commits so far (each one sled batch and one flush covering every write
/// acknowledged with it).
#[derive(Message)]
#[rtype(result = "u64")]
pub struct CommitCount;

/// On-disk size of the data dir (every actor's database, walked at most every
/// [`DISK_WALK_EVERY`]) and live bytes (names + values of the rows held, kept
/// incrementally), for `/metrics`.
#[derive(Message)]
#[rtype(result = "StoreSizes")]
pub struct StoreSize;

/// The answer to [`StoreSize`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSizes {
    pub disk_bytes: u64,
    pub live_bytes: u64,
    /// Online compactions since start.
    pub compactions: u64,
}

/// How often the store walks the data dir for its size.
pub const DISK_WALK_EVERY: Duration = Duration::from_secs(5);

const SLED_DIR: &str = "sled";
/// sled's page cache for the copy an online compaction writes.
const COPY_CACHE_BYTES: u64 = 4 * 1024 * 1024;
const COMPACT_DIR: &str = "sled.compact";
const OLD_DIR: &str = "sled.old";
const COMPACT_DONE: &str = "sled.compact.done";

/// sled's log segment size for a new database. sled frees a segment once at most half
/// of it is live, and the file grows and shrinks by whole segments. Under churn (4-minute
/// runs of `benches/load/soak_compare.sh`: 380 writes/s of 60 s records, 10% deleted) the
/// data dir settled at (worst of the second half, × the live bytes): uncompressed, 9.9×
/// with 128 KiB segments, 8.5× with sled's default 512 KiB, 5.4× with 1 MiB, 4.4× with
/// 2 MiB, 5.1× with 4 MiB, 7.2× with 8 MiB; with zstd ([`COMPRESSION`]), 3.65× with 2 MiB
/// and 2.9× with 1 MiB.
const SEGMENT_BYTES: usize = 1024 * 1024;

/// zstd level of the compression (not fixed on disk). Its cost is CPU per write:
/// `benches/load/write.sh` (HTTP writes/s, same session) gave 16,853 uncompressed, 9,333
/// at level 1 and 6,123 at sled's default level 5; the disk gain of 5 over 1 is small.
const COMPRESSION_LEVEL: i32 = 1;

/// Whether a new database compresses what it writes (zstd, sled's `compression`) by
/// default (`[node] store_compression`).
pub const COMPRESSION: bool = true;

/// The segment size and compression the database at `path` was created with (sled
/// refuses to open a database with others), or [`SEGMENT_BYTES`] and `compression` for
/// a new one.
fn storage_of(path: &Path, compression: bool) -> (usize, bool) {
    // `conf` is text lines followed by a binary checksum.
    let Ok(conf) = std::fs::read(path.join("conf")) else {
        return (SEGMENT_BYTES, compression);
    };
    let conf = String::from_utf8_lossy(&conf);
    let field = |name: &str| {
        conf.lines()
            .find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(": ")?.trim().to_string()))
    };
    (
        field("segment_size").and_then(|v| v.parse().ok()).unwrap_or(SEGMENT_BYTES),
        field("use_compression").and_then(|v| v.parse().ok()).unwrap_or(false),
    )
}

/// sled's settings for the records database at `path`. `Mode` is not read by sled
/// 0.34 (both modes behave alike); the segment size is what sets the space amplification
/// under churn (see [`SEGMENT_BYTES`]).
fn sled_config(path: &Path, new_compression: bool) -> sled::Config {
    let (segment, compression) = storage_of(path, new_compression);
    sled::Config::new()
        .path(path)
        .cache_capacity(16 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .segment_size(segment)
        .use_compression(compression)
        .compression_factor(COMPRESSION_LEVEL)
}

/// Run `open` until sled's directory lock is free (bounded: 10 s): sled's own threads let
/// go of the lock a moment after the last handle of a database is dropped.
fn when_unlocked<T>(mut open: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> StoreError {
    StoreError::Storage(format!("{what} {}: {e}", p.display()))
}

/// Finish or undo a compaction that a crash interrupted, before the database is opened:
/// a complete copy (`sled.compact.done`) whose swap did not finish becomes `sled`; an
/// incomplete one is discarded, the old database kept (or put back).
pub fn recover_compaction(dir: &Path) -> Result<(), StoreError> {
    let (live, new, old, done) =
        (dir.join(SLED_DIR), dir.join(COMPACT_DIR), dir.join(OLD_DIR), dir.join(COMPACT_DONE));
    if !live.exists() {
        if done.exists() && new.exists() {
            std::fs::rename(&new, &live).map_err(|e| io_err("adopting", &new, e))?;
        } else if old.exists() {
            std::fs::rename(&old, &live).map_err(|e| io_err("restoring", &old, e))?;
        }
    }
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(|e| io_err("removing", &new, e))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io_err("removing", &old, e))?;
    }
    if done.exists() {
        std::fs::remove_file(&done).map_err(|e| io_err("removing", &done, e))?;
    }
    if dir.exists() {
        sync_dir(dir).map_err(|e| io_err("syncing", dir, e))?;
    }
    Ok(())
}

/// Bytes of the files under `dir` (recursively; unreadable entries count 0).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Flush and report: used at shutdown.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

/// At shutdown, after [`Flush`]: close the database and open it again, so that sled
/// (0.34), which writes its recovery snapshot only when a database is opened, does the
/// log replay now, while DNS still answers from the view, instead of at the next start
/// (a start after a million writes replayed them all: 20 s instead of 4 s). Replies with
/// how long the reopen took. Writes must have stopped; if the reopen fails the store is
/// left without a database (the process is exiting; everything acknowledged was flushed).
#[derive(Message)]
#[rtype(result = "Result<Duration, StoreError>")]
pub struct Checkpoint;

/// Stop taking writes for good (a graceful stop, before the view image is written):
/// later writes are refused, the sweep stops, and the reply comes once every write
/// applied so far is flushed — and its change sent to the subscribers before it.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Freeze;

/// Record that the view image carrying this token matches the records (after
/// [`Freeze`], once the image file is durable). The next open consumes it.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SealImage(pub [u8; 16]);

/// The store actor. Construct with [`StoreActor::open`], start under a supervisor.
pub struct StoreActor {
    db: sled::Db,
    tree: sled::Tree,
    last_ms: u64,
    /// Rows in the store (live or expired but not yet swept), kept incrementally so
    /// `/metrics` never scans.
    rows: usize,
    subscribers: Vec<(&'static str, Recipient<ZoneDelta>)>,
    waiting: Vec<oneshot::Sender<Result<(), StoreError>>>,
    flushing: bool,
    flush_scheduled: bool,
    /// How long a write may wait for others to share its flush (0 = flush at once).
    commit_delay: Duration,
    /// Writes applied by `Apply` but not yet handed to sled: the whole group goes to sled
    /// as one atomic batch just before its flush (sled seals a log buffer per batch, so
    /// one batch per group commit instead of one per write). Reads merge it in.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    sweep_every: Duration,
    supervisor: Option<Addr<SupervisorActor>>,
    /// Tombstones held (kept incrementally; counted from the `z` index at open).
    tombstones: usize,
    /// Past this many tombstones the sweep drops the soonest-expiring.
    max_tombstones: usize,
    /// The wall clock (expiry, stamps); manual in tests.
    clock: Clock,
    /// Group commits started (one sled batch + flush each).
    commits: u64,
    /// The data dir (parent of `sled` and the other actors' databases).
    dir: std::path::PathBuf,
    /// Names + values of the rows counted in `rows` (kept like `rows`).
    live_bytes: u64,
    /// Size of the data dir at the last walk, and when that was.
    disk_bytes: u64,
    disk_walked: Option<std::time::Instant>,
    /// Compact when the database directory exceeds this many times the live bytes
    /// (0 = never), and is at least `compact_min_bytes`.
    compact_ratio: f64,
    compact_min_bytes: u64,
    /// Size of the database directory right after the last compaction (a fresh copy
    /// is not compacted again before it has doubled).
    compacted_size: u64,
    compact_checked: Option<std::time::Instant>,
    compact_due: bool,
    compactions: u64,
    /// Whether new databases (and compaction copies) compress with zstd.
    compression: bool,
    /// A [`Checkpoint`] could not reopen the database, or the store was [`Freeze`]d:
    /// every write is refused.
    closed: bool,
    /// The view-image token found (and consumed) at open, for the first subscriber.
    image_token: Option<[u8; 16]>,
}

/// Where the row count lives (`m` sorts apart from every record prefix).
const ROWS_KEY: &[u8] = b"m:rows";
/// Marker: the `z` tombstone expiry index is complete.
const ZIDX_KEY: &[u8] = b"m:zidx";
/// Marker: every `t`/`d` index row holds the name only.
const TREF_KEY: &[u8] = b"m:tref";
/// Where the live byte count lives.
const BYTES_KEY: &[u8] = b"m:bytes";
/// The token of the view image written at the last graceful stop ([`SealImage`]);
/// removed at open before any write, so it names this exact state of the records.
const IMAGE_KEY: &[u8] = b"m:vimg";
/// Most index entries one sweep handles (the rest wait for the next sweep).
const SWEEP_BATCH: usize = 100_000;

/// A raw (key, value) pair of the `records` tree.
type KeyValue = (Vec<u8>, Vec<u8>);

fn rkey(name: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len() + value.len());
    k.push(b'r');
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(value.as_bytes());
    k
}

fn rprefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len());
    k.push(b'r');
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn tkey(stored_ms: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b't';
    k[1..].copy_from_slice(&stored_ms.to_be_bytes());
    k
}

fn xkey(expires: u64, stored_ms: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'x';
    k[1..9].copy_from_slice(&expires.to_be_bytes());
    k[9..].copy_from_slice(&stored_ms.to_be_bytes());
    k
}

fn zkey(expires: u64, stamp: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'z';
    k[1..9].copy_from_slice(&expires.to_be_bytes());
    k[9..].copy_from_slice(&stamp.to_be_bytes());
    k
}

fn dkey(stamp: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'd';
    k[1..].copy_from_slice(&stamp.to_be_bytes());
    k
}

/// Rows the digest leaves out: node-local discovery wires that peers refuse to verify
/// (a reference peer would pin its watermark on them, node.md §11.1).
fn local_only(name: &str, value: &str) -> bool {
    name.starts_with("_dnsmesh-heartbeat.")
        || name.starts_with("_dnsmesh-seen.")
        || value.starts_with("v=dmp1;t=heartbeat;")
}

fn sha256_hex(v: &str) -> String {
    hex::encode(crate::proto::keys::sha256(v.as_bytes()))
}

fn meta(expires: u64, stored_ms: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&expires.to_be_bytes());
    m[8..].copy_from_slice(&stored_ms.to_be_bytes());
    m
}

fn parse_meta(m: &[u8]) -> Option<(u64, u64)> {
    let e = u64::from_be_bytes(m.get(..8)?.try_into().ok()?);
    let s = u64::from_be_bytes(m.get(8..16)?.try_into().ok()?);
    Some((e, s))
}

/// The name in a `t`/`d` index row: the whole row, or (older stores) the part before
/// the first `\0`.
fn index_name(row: &[u8]) -> &[u8] {
    match row.iter().position(|b| *b == 0) {
        Some(nul) => &row[..nul],
        None => row,
    }
}

/// Split an `r` key (without the leading `r`) into name and value.
fn split_name_value(k: &[u8]) -> Option<(&str, &str)> {
    let nul = k.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&k[..nul]).ok()?, std::str::from_utf8(&k[nul + 1..]).ok()?))
}

impl StoreActor {
    /// Open (or create) the database under `dir`.
    pub fn open(dir: &Path, sweep_every: Duration) -> Result<StoreActor, StoreError> {
        Self::open_with(dir, sweep_every, COMPRESSION)
    }

    /// As [`StoreActor::open`], with zstd compression on or off (`[node]
    /// store_compression`); a database written the other way is copied once, here.
    pub fn open_with(
        dir: &Path,
        sweep_every: Duration,
        compression: bool,
    ) -> Result<StoreActor, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Storage(format!("{}: {e}", dir.display())))?;
        recover_compaction(dir)?;
        let db = sled_config(&dir.join(SLED_DIR), compression).open()?;
        let tree = db.open_tree("records")?;
        // Consumed before anything else is written: the image it names is valid for the
        // records as they are now and never again (see `dnswire::image`).
        let image_token = match tree.remove(IMAGE_KEY)? {
            Some(v) => {
                db.flush()?;
                <[u8; 16]>::try_from(v.as_ref()).ok()
            }
            None => None,
        };
        let last_ms = match tree.scan_prefix(b"t").next_back() {
            Some(Ok((k, _))) if k.len() == 9 => {
                u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]))
            }
            Some(Err(e)) => return Err(e.into()),
            _ => 0,
        };
        // The row count is stored with every batch; count once for a store without it.
        let rows = match tree.get(ROWS_KEY)? {
            Some(v) if v.len() == 8 => {
                u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])) as usize
            }
            _ => tree.scan_prefix(b"t").keys().count(),
        };
        // Stores written before the tombstone index: build it once.
        if tree.get(ZIDX_KEY)?.is_none() {
            let mut batch = sled::Batch::default();
            for item in tree.scan_prefix(b"q") {
                let (_, m) = item?;
                if let Some((e, stamp)) = parse_meta(&m) {
                    batch.insert(&zkey(e, stamp)[..], &[][..]);
                }
            }
            batch.insert(ZIDX_KEY, &[][..]);
            tree.apply_batch(batch)?;
        }
        // Stores written before index rows held the name only: rewrite them once, in
        // bounded batches (each row rewritten is readable in either form).
        if tree.get(TREF_KEY)?.is_none() {
            for prefix in [b't', b'd'] {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in tree.scan_prefix([prefix]) {
                    let (k, v) = item?;
                    if index_name(&v).len() < v.len() {
                        batch.insert(k, index_name(&v));
                        n += 1;
                        if n == 10_000 {
                            tree.apply_batch(std::mem::take(&mut batch))?;
                            n = 0;
                        }
                    }
                }
                tree.apply_batch(batch)?;
            }
            tree.insert(TREF_KEY, &[][..])?;
            db.flush()?;
        }
        let tombstones = tree.scan_prefix(b"z").keys().count();
        // Live bytes are stored with every batch; count once for a store without them.
        let live_bytes = match tree.get(BYTES_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            _ => {
                let mut n = 0u64;
                for item in tree.scan_prefix(b"r") {
                    let (k, _) = item?;
                    n += k.len().saturating_sub(2) as u64;
                }
                n
            }
        };
        let mut store = StoreActor {
            db,
            tree,
            last_ms,
            rows,
            subscribers: Vec::new(),
            waiting: Vec::new(),
            flushing: false,
            flush_scheduled: false,
            commit_delay: Duration::ZERO,
            overlay: BTreeMap::new(),
            sweep_every,
            supervisor: None,
            tombstones,
            max_tombstones: usize::MAX,
            clock: Clock::system(),
            commits: 0,
            dir: dir.to_path_buf(),
            live_bytes,
            disk_bytes: 0,
            disk_walked: None,
            compact_ratio: 0.0,
            compact_min_bytes: 0,
            compacted_size: 0,
            compact_checked: None,
            compact_due: false,
            compactions: 0,
            compression,
            closed: false,
            image_token,
        };
        // A database created with another segment size (older versions used sled's
        // default, 512 KiB) is copied once into one with SEGMENT_BYTES, as an online
        // compaction does (and as crash-safe).
        let storage = storage_of(&dir.join(SLED_DIR), compression);
        if storage != (SEGMENT_BYTES, compression) {
            match store.compact() {
                Ok(()) => tracing::info!(
                    from = ?storage,
                    to = ?(SEGMENT_BYTES, compression),
                    "store: segment size or compression changed"
                ),
                Err(e) => tracing::warn!(error = %e, "store: keeping the old segment size"),
            }
        }
        Ok(store)
    }

    /// Compact online when the database directory exceeds `ratio` × the live bytes and
    /// `min_bytes` (ratio 0 = never).
    pub fn with_compaction(mut self, ratio: f64, min_bytes: u64) -> Self {
        self.compact_ratio = ratio;
        self.compact_min_bytes = min_bytes;
        self
    }

    /// Decide (at most every [`DISK_WALK_EVERY`]) whether a compaction is due; run it now
    /// when no group commit is pending, else the next group commit runs it first.
    fn check_compaction(&mut self, ctx: &mut Context<Self>) {
        if self.compact_ratio <= 0.0 || self.compact_due || self.closed {
            return;
        }
        if self.compact_checked.is_some_and(|t| t.elapsed() < DISK_WALK_EVERY) {
            return;
        }
        self.compact_checked = Some(std::time::Instant::now());
        let size = dir_bytes(&self.dir.join(SLED_DIR));
        if size < self.compact_min_bytes
            || (size as f64) <= self.compact_ratio * self.live_bytes as f64
            || size <= self.compacted_size.saturating_add(self.compacted_size / 4)
        {
            return;
        }
        self.compact_due = true;
        if !self.flushing && !self.flush_scheduled && self.waiting.is_empty() {
            // Nothing pending: a group commit of no writes runs the compaction.
            self.start_flush(ctx);
        }
    }

    /// Copy every tree into a fresh database and switch to it (see the module doc).
    /// Called only with no flush in flight: everything acknowledged is in `self.db`;
    /// pending writes stay in the overlay and go to the new database.
    fn compact(&mut self) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::Unavailable);
        }
        let t = std::time::Instant::now();
        let before = dir_bytes(&self.dir.join(SLED_DIR));
        let (live, new, old, done) = (
            self.dir.join(SLED_DIR),
            self.dir.join(COMPACT_DIR),
            self.dir.join(OLD_DIR),
            self.dir.join(COMPACT_DONE),
        );
        let _ = std::fs::remove_file(&done);
        if new.exists() {
            std::fs::remove_dir_all(&new).map_err(|e| io_err("removing", &new, e))?;
        }
        {
            // A small cache for the copy: it is written once and reopened afterwards, so
            // caching its pages would only add to the memory the compaction costs.
            let ndb =
                sled_config(&new, self.compression).cache_capacity(COPY_CACHE_BYTES).open()?;
            for name in self.db.tree_names() {
                let src = self.db.open_tree(&name)?;
                let dst = ndb.open_tree(&name)?;
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in src.iter() {
                    let (k, v) = item?;
                    batch.insert(k, v);
                    n += 1;
                    if n == 10_000 {
                        dst.apply_batch(std::mem::take(&mut batch))?;
                        n = 0;
                    }
                }
                dst.apply_batch(batch)?;
            }
            ndb.flush()?;
        }
        // The copy is complete and durable: from here a crash finishes the swap.
        std::fs::File::create(&done)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("writing", &done, e))?;
        sync_dir(&self.dir).map_err(|e| io_err("syncing", &self.dir, e))?;
        std::fs::rename(&live, &old).map_err(|e| io_err("moving", &live, e))?;
        if let Err(e) = std::fs::rename(&new, &live) {
            // Put the old one back; we keep writing to it (its files are open).
            let _ = std::fs::rename(&old, &live);
            return Err(io_err("moving", &new, e));
        }
        sync_dir(&self.dir).map_err(|e| io_err("syncing", &self.dir, e))?;
        // The copy's handle was just dropped: wait for sled to release its lock.
        let db = match when_unlocked(|| Ok(sled_config(&live, self.compression).open()?)) {
            Ok(db) => db,
            Err(e) => {
                // The handle still writes to the old files: put the old directory back
                // so that what we acknowledge next is where the next start looks.
                let undo = std::fs::rename(&live, &new)
                    .and_then(|_| std::fs::rename(&old, &live))
                    .and_then(|_| std::fs::remove_file(&done))
                    .and_then(|_| sync_dir(&self.dir));
                if let Err(u) = undo {
                    tracing::error!(error = %u, "cannot undo a failed compaction; stopping");
                    std::process::abort();
                }
                return Err(e);
            }
        };
        let _ = std::fs::remove_file(&done);
        self.tree = db.open_tree("records")?;
        self.db = db;
        let _ = std::fs::remove_dir_all(&old);
        self.compacted_size = dir_bytes(&live);
        self.compactions += 1;
        tracing::info!(
            before,
            after = self.compacted_size,
            live = self.live_bytes,
            ms = t.elapsed().as_millis() as u64,
            "store compacted"
        );
        Ok(())
    }

    /// Keep at most `n` tombstones (the soonest-expiring go first, at the next sweep).
    pub fn with_max_tombstones(mut self, n: usize) -> Self {
        self.max_tombstones = n.max(1);
        self
    }

    /// Read time from `clock` (expiry, acceptance stamps) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Group-commit window: writes arriving within it share one flush.
    pub fn with_commit_delay(mut self, d: Duration) -> Self {
        self.commit_delay = d;
        self
    }

    /// Report lifecycle events to `sup`.
    pub fn with_supervisor(mut self, sup: Addr<SupervisorActor>) -> Self {
        self.supervisor = Some(sup);
        self
    }

    /// Move the trees `names` of older versions (which kept other actors' trees in this
    /// database) into `to`, that actor's own database. Call before starting the actors.
    pub fn hand_over_trees(&self, names: &[&str], to: &sled::Db) -> Result<usize, StoreError> {
        Ok(super::actor_db::migrate_trees(&self.db, to, names)?)
    }

    fn next_ms(&mut self) -> u64 {
        self.last_ms = self.clock.now_ms().max(self.last_ms + 1);
        self.last_ms
    }

    /// A key's value, pending writes first.
    fn get_key(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.get(k) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(k)?.map(|v| v.to_vec()))
    }

    /// Every key with `prefix`, pending writes merged in, in key order.
    fn scan_merged(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut m: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            m.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        Ok(m.into_iter().collect())
    }

    /// Hand pending writes to sled as one atomic batch (durable only after a flush).
    fn drain_overlay(&mut self) -> Result<(), StoreError> {
        if self.overlay.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in std::mem::take(&mut self.overlay) {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        // `rows` already counts the pending writes: store it atomically with them.
        batch.insert(ROWS_KEY, &(self.rows as u64).to_be_bytes()[..]);
        batch.insert(BYTES_KEY, &self.live_bytes.to_be_bytes()[..]);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Live values at `name` with their metadata.
    fn live(&self, name: &str, now: u64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let prefix = rprefix(name);
        let mut out = Vec::new();
        for (k, v) in self.scan_merged(&prefix)? {
            let Some((exp, stored)) = parse_meta(&v) else {
                continue;
            };
            if exp <= now {
                continue;
            }
            if let Ok(value) = std::str::from_utf8(&k[prefix.len()..]) {
                out.push((value.to_string(), exp, stored));
            }
        }
        Ok(out)
    }

    /// The row of kind `kind` (`r` or `q`) under `name` that carries `stamp`: its key
    /// and expiry. Reads sled only (callers drain the overlay first).
    fn row_by_stamp(
        &self,
        kind: u8,
        name: &[u8],
        stamp: u64,
    ) -> Result<Option<(sled::IVec, u64)>, StoreError> {
        let mut prefix = Vec::with_capacity(name.len() + 2);
        prefix.push(kind);
        prefix.extend_from_slice(name);
        prefix.push(0);
        for item in self.tree.scan_prefix(&prefix) {
            let (k, m) = item?;
            if let Some((e, s)) = parse_meta(&m) {
                if s == stamp {
                    return Ok(Some((k, e)));
                }
            }
        }
        Ok(None)
    }

    fn live_values(&self, name: &str, now: u64) -> Vec<String> {
        self.live(name, now).map(|v| v.into_iter().map(|(v, _, _)| v).collect()).unwrap_or_default()
    }

    /// Whether a live tombstone of `value` under `name` exists.
    fn tombstone(&self, name: &str, value: &str, now: u64) -> Result<bool, StoreError> {
        let mut k = vec![b'q'];
        k.extend_from_slice(&rkey(name, value)[1..]);
        Ok(match self.get_key(&k)? {
            Some(m) => parse_meta(&m).map(|(e, _)| e > now).unwrap_or(false),
            None => false,
        })
    }

    /// Apply ops (pending in the overlay until the group commit hands them to sled as one
    /// atomic batch); returns each changed name with its live values after the ops (what
    /// [`StoreActor::live_values`] would read back) and the deleted count.
    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        ops: &[Op],
        max_values: usize,
        origin: Origin,
    ) -> Result<(Vec<(String, Vec<String>)>, usize), StoreError> {
        let now = self.clock.now_secs();
        // Working view of each touched name: value -> Some((exp, stored)) or None (deleted).
        let mut names: BTreeMap<String, BTreeMap<String, Option<(u64, u64)>>> = BTreeMap::new();
        let mut original: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
        let mut deleted = 0usize;
        for op in ops {
            let name = match op {
                Op::Add { name, .. } | Op::DeleteValue { name, .. } | Op::DeleteName { name } => {
                    name
                }
            };
            if !names.contains_key(name) {
                let mut cur = BTreeMap::new();
                let mut orig = BTreeMap::new();
                for (k, v) in self.scan_merged(&rprefix(name))? {
                    if let (Some((_, value)), Some(m)) = (split_name_value(&k[1..]), parse_meta(&v))
                    {
                        orig.insert(value.to_string(), m);
                        // Expired rows are treated as absent (and replaced on re-add).
                        cur.insert(value.to_string(), if m.0 > now { Some(m) } else { None });
                    }
                }
                names.insert(name.clone(), cur);
                original.insert(name.clone(), orig);
            }
            let cur = names.get_mut(name).expect("inserted above");
            match op {
                Op::Add { name, value, ttl } => {
                    if origin == Origin::Replicated && self.tombstone(name, value, now)? {
                        continue;
                    }
                    let present = matches!(cur.get(value), Some(Some(_)));
                    if !present && max_values > 0 {
                        let live = cur.values().filter(|m| m.is_some()).count();
                        if live >= max_values {
                            return Err(StoreError::TooManyValues {
                                name: name.clone(),
                                max: max_values,
                            });
                        }
                    }
                    let stored = self.next_ms();
                    cur.insert(value.clone(), Some((now.saturating_add(*ttl), stored)));
                }
                Op::DeleteValue { value, .. } => {
                    if let Some(slot) = cur.get_mut(value) {
                        if slot.take().is_some() {
                            deleted += 1;
                        }
                    }
                }
                Op::DeleteName { .. } => {
                    for slot in cur.values_mut() {
                        if slot.take().is_some() {
                            deleted += 1;
                        }
                    }
                }
            }
        }
        let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut changed = Vec::new();
        let mut row_delta = 0i64;
        let mut byte_delta = 0i64;
        let mut tomb_delta = 0i64;
        for (name, cur) in &names {
            let orig = &original[name];
            let mut touched = false;
            for (value, new) in cur {
                let old = orig.get(value).copied();
                if old == *new {
                    continue;
                }
                touched = true;
                let d = new.is_some() as i64 - old.is_some() as i64;
                row_delta += d;
                byte_delta += d * (name.len() + value.len()) as i64;
                if let Some((oe, os)) = old {
                    batch.push((tkey(os).to_vec(), None));
                    batch.push((xkey(oe, os).to_vec(), None));
                }
                let rk = rkey(name, value);
                let mut qk = vec![b'q'];
                qk.extend_from_slice(&rk[1..]);
                match new {
                    Some((e, s)) => {
                        batch.push((rk.clone(), Some(meta(*e, *s).to_vec())));
                        batch.push((tkey(*s).to_vec(), Some(name.as_bytes().to_vec())));
                        batch.push((xkey(*e, *s).to_vec(), Some(Vec::new())));
                        if origin == Origin::Local {
                            if let Some(m) = self.get_key(&qk)? {
                                if let Some((de, ds)) = parse_meta(&m) {
                                    batch.push((dkey(ds).to_vec(), None));
                                    batch.push((zkey(de, ds).to_vec(), None));
                                }
                                batch.push((qk, None));
                                tomb_delta -= 1;
                            }
                        }
                    }
                    None => {
                        batch.push((rk.clone(), None));
                        // A tombstone lives as long as the value would have.
                        if let Some((oe, _)) = old {
                            if oe > now {
                                // Replace an older tombstone of the same value, if any.
                                match self.get_key(&qk)?.as_deref().and_then(parse_meta) {
                                    Some((pe, ps)) => {
                                        batch.push((dkey(ps).to_vec(), None));
                                        batch.push((zkey(pe, ps).to_vec(), None));
                                    }
                                    None => tomb_delta += 1,
                                }
                                let stamp = self.next_ms();
                                batch.push((qk, Some(meta(oe, stamp).to_vec())));
                                batch.push((dkey(stamp).to_vec(), Some(name.as_bytes().to_vec())));
                                batch.push((zkey(oe, stamp).to_vec(), Some(Vec::new())));
                            }
                        }
                    }
                }
            }
            if touched {
                // The name's live set after the ops, in key (value byte) order, as
                // `live_values` reads it back: subscribers get it without a second scan.
                let live = cur
                    .iter()
                    .filter(|(_, m)| matches!(m, Some((e, _)) if *e > now))
                    .map(|(v, _)| v.clone())
                    .collect();
                changed.push((name.clone(), live));
            }
        }
        // Pending until the group commit hands the whole group to sled at once.
        for (k, v) in batch {
            self.overlay.insert(k, v);
        }
        self.rows = self.rows.saturating_add_signed(row_delta as isize);
        self.live_bytes = self.live_bytes.saturating_add_signed(byte_delta);
        self.tombstones = self.tombstones.saturating_add_signed(tomb_delta as isize);
        Ok((changed, deleted))
    }

    fn notify(&self, names: Vec<String>, local: bool) {
        if names.is_empty() || self.subscribers.is_empty() {
            return;
        }
        let now = self.clock.now_secs();
        let changes: Vec<(String, Vec<String>)> = names
            .into_iter()
            .map(|n| {
                let v = self.live_values(&n, now);
                (n, v)
            })
            .collect();
        self.publish(changes, local);
    }

    /// Send changed names with their live value sets to every subscriber (the last one
    /// gets the original, the others a copy).
    fn publish(&self, changes: Vec<(String, Vec<String>)>, local: bool) {
        let Some(((_, last), rest)) = self.subscribers.split_last() else {
            return;
        };
        if changes.is_empty() {
            return;
        }
        let delta =
            ZoneDelta { changes, last_stored_ms: self.last_ms, snapshot_complete: false, local };
        for (_, s) in rest {
            s.do_send(delta.clone());
        }
        last.do_send(delta);
    }

    /// Queue a durability wait; the group commit answers it.
    fn commit(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        if !self.flushing && !self.flush_scheduled {
            if self.commit_delay.is_zero() {
                self.start_flush(ctx);
            } else {
                // Let concurrent writes join this commit: one fsync for the group.
                self.flush_scheduled = true;
                ctx.run_later(self.commit_delay, |act, ctx| {
                    act.flush_scheduled = false;
                    if !act.flushing && !act.waiting.is_empty() {
                        act.start_flush(ctx);
                    }
                });
            }
        }
        rx
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.compact_due {
            self.compact_due = false;
            if let Err(e) = self.compact() {
                tracing::error!(error = %e, "store compaction failed; continuing on the old database");
            }
        }
        self.flushing = true;
        self.commits += 1;
        let batch = std::mem::take(&mut self.waiting);
        let db = self.db.clone();
        let drained = self.drain_overlay();
        let fut = async move {
            drained?;
            db.flush_async().await.map(|_| ()).map_err(StoreError::from)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            for tx in batch {
                let _ = tx.send(res.clone());
            }
            act.flushing = false;
            if !act.waiting.is_empty() {
                act.start_flush(ctx);
            }
        }));
    }

    /// Remove every row whose expiry has passed; returns the names that changed.
    fn sweep(&mut self) -> Result<Vec<String>, StoreError> {
        self.drain_overlay()?;
        let now = self.clock.now_secs();
        let mut end = vec![b'x'];
        end.extend_from_slice(&(now + 1).to_be_bytes());
        let mut batch = sled::Batch::default();
        let mut changed = std::collections::BTreeSet::new();
        let mut removed_rows = 0usize;
        let mut removed_bytes = 0u64;
        let mut n = 0;
        for item in self.tree.range(&b"x"[..]..&end[..]) {
            let (xk, _) = item?;
            if xk.len() != 17 {
                continue;
            }
            let stored = u64::from_be_bytes(xk[9..17].try_into().unwrap_or([0; 8]));
            batch.remove(xk.clone());
            let tk = tkey(stored);
            if let Some(trow) = self.tree.get(tk)? {
                batch.remove(&tk[..]);
                // Only remove the row if it still carries this stamp (not refreshed).
                if let Some((rk, _)) = self.row_by_stamp(b'r', index_name(&trow), stored)? {
                    removed_rows += 1;
                    removed_bytes += rk.len().saturating_sub(2) as u64;
                    if let Some((name, _)) = split_name_value(&rk[1..]) {
                        changed.insert(name.to_string());
                    }
                    batch.remove(rk);
                }
            }
            n += 1;
            if n >= 100_000 {
                break;
            }
        }
        // Tombstones, by their expiry index: the expired ones, then (past the cap) the
        // soonest-expiring, so the sweep never scans tombstones that stay.
        let mut removed_tombs = 0usize;
        let over = self.tombstones.saturating_sub(self.max_tombstones);
        let mut zend = vec![b'z'];
        zend.extend_from_slice(&(now + 1).to_be_bytes());
        for item in self.tree.scan_prefix(b"z") {
            let (zk, _) = item?;
            if zk.as_ref() >= zend.as_slice() && removed_tombs >= over {
                break;
            }
            if removed_tombs >= SWEEP_BATCH {
                break;
            }
            batch.remove(zk.clone());
            n += 1;
            if zk.len() != 17 {
                continue;
            }
            let stamp = u64::from_be_bytes(zk[9..17].try_into().unwrap_or([0; 8]));
            if let Some(drow) = self.tree.get(dkey(stamp))? {
                batch.remove(&dkey(stamp)[..]);
                // Only if the tombstone still carries this stamp (not replaced).
                if let Some((qk, _)) = self.row_by_stamp(b'q', index_name(&drow), stamp)? {
                    batch.remove(qk);
                }
            }
            removed_tombs += 1;
        }
        if n > 0 {
            let rows = self.rows.saturating_sub(removed_rows);
            let bytes = self.live_bytes.saturating_sub(removed_bytes);
            batch.insert(ROWS_KEY, &(rows as u64).to_be_bytes()[..]);
            batch.insert(BYTES_KEY, &bytes.to_be_bytes()[..]);
            self.tree.apply_batch(batch)?;
            self.rows = rows;
            self.live_bytes = bytes;
            self.tombstones = self.tombstones.saturating_sub(removed_tombs);
        }
        Ok(changed.into_iter().collect())
    }

    /// Stream the whole live store to `to` in batches of 4096 names, the last one
    /// marked `snapshot_complete`.
    fn send_snapshot(&self, to: &Recipient<ZoneDelta>) {
        let mut changes: Vec<(String, Vec<String>)> = Vec::new();
        scan_live(&self.tree, self.clock.now_secs(), |name, values| {
            let values = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
            changes.push((name.to_string(), values));
            if changes.len() >= 4096 {
                to.do_send(ZoneDelta {
                    changes: std::mem::take(&mut changes),
                    last_stored_ms: self.last_ms,
                    snapshot_complete: false,
                    local: false,
                });
            }
        });
        to.do_send(ZoneDelta {
            changes,
            last_stored_ms: self.last_ms,
            snapshot_complete: true,
            local: false,
        });
    }

    fn report(&self, event: LifecycleEvent) {
        if let Some(s) = &self.supervisor {
            s.do_send(Lifecycle { actor: "store", event });
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65536);
        self.report(LifecycleEvent::Started);
        // After a restart: commit whatever was pending when the actor failed.
        if !self.waiting.is_empty() || !self.overlay.is_empty() {
            self.start_flush(ctx);
        }
        ctx.run_interval(self.sweep_every, |act, ctx| {
            if act.closed {
                return;
            }
            match act.sweep() {
                Ok(changed) => act.notify(changed, false),
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
            act.check_compaction(ctx);
        });
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.report(LifecycleEvent::Restarting);
        // Writes that were waiting for a flush are still applied; a fresh flush will
        // answer them after restart.
        self.flushing = false;
        self.flush_scheduled = false;
    }
}

impl Handler<Apply> for StoreActor {
    type Result = ResponseFuture<Result<usize, StoreError>>;

    fn handle(&mut self, msg: Apply, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(async { Err(StoreError::Unavailable) });
        }
        match self.apply(&msg.ops, msg.max_values, msg.origin) {
            Ok((changed, deleted)) => {
                self.publish(changed, msg.origin == Origin::Local);
                let rx = self.commit(ctx);
                Box::pin(async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(deleted),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(StoreError::Unavailable),
                    }
                })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<Get> for StoreActor {
    type Result = Result<Vec<(String, u64)>, StoreError>;

    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now_secs();
        Ok(self.live(&msg.name, now)?.into_iter().map(|(v, e, _)| (v, (e - now).max(1))).collect())
    }
}

impl Handler<Count> for StoreActor {
    type Result = usize;

    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.rows
    }
}

impl Handler<Subscribe> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        if let Err(e) = self.drain_overlay() {
            tracing::error!(error = %e, "store: cannot apply pending writes");
        }
        if msg.snapshot {
            self.send_snapshot(&msg.to);
        }
        self.subscribers.retain(|(n, _)| *n != msg.name);
        self.subscribers.push((msg.name, msg.to));
    }
}

/// Visit every live name of `tree` at `now` in name order with its values (stored
/// order), borrowed from sled's buffers: no per-record allocation beyond sled's own.
/// The one reader of the record layout for snapshots ([`StoreActor::send_snapshot`],
/// [`LiveSnapshot::for_each`]).
fn scan_live(tree: &sled::Tree, now: u64, mut f: impl FnMut(&str, &[&[u8]])) {
    // Rows of the current name: sled's buffers, kept until the name is complete.
    let mut rows: Vec<sled::IVec> = Vec::new();
    let mut name_len = 0usize; // bytes of the name (key minus `r`) of the rows held
    let mut flush = |rows: &mut Vec<sled::IVec>, name_len: usize| {
        if let Some(first) = rows.first() {
            let name = std::str::from_utf8(&first[1..1 + name_len]).unwrap_or_default();
            let values: Vec<&[u8]> = rows.iter().map(|k| &k[2 + name_len..]).collect();
            f(name, &values);
        }
        rows.clear();
    };
    for item in tree.scan_prefix(b"r") {
        let Ok((k, v)) = item else { continue };
        let Some((name, _)) = split_name_value(&k[1..]) else { continue };
        if parse_meta(&v).map(|(e, _)| e <= now).unwrap_or(true) {
            continue;
        }
        let same = rows.first().is_some_and(|r| r.get(1..1 + name_len) == Some(name.as_bytes()))
            && name.len() == name_len;
        if !same {
            flush(&mut rows, name_len);
            name_len = name.len();
        }
        rows.push(k);
    }
    flush(&mut rows, name_len);
}

/// The store's live records as of a [`SubscribeLive`], to be read on the subscriber's
/// own thread (sled is safe to read concurrently with the store actor's writes).
pub struct LiveSnapshot {
    tree: sled::Tree,
    now: u64,
    /// The newest acceptance stamp in the store (ms), to seed the SOA serial.
    pub last_stored_ms: u64,
    /// Rows in the store (live or expired but not yet swept): an upper bound on the
    /// number of values, for pre-sizing.
    pub rows: usize,
    /// The token of the view image that matches these records, if the last stop wrote
    /// one (given to the first subscriber after open only).
    pub image_token: Option<[u8; 16]>,
}

impl LiveSnapshot {
    /// Visit every live name with its values, in name order, borrowed (see `scan_live`).
    /// Writes the store applies meanwhile may or may not be seen; each one also reaches
    /// the subscriber as a [`ZoneDelta`] carrying the name's full value set, so applying
    /// those after this scan gives the store's state.
    pub fn for_each(&self, f: impl FnMut(&str, &[&[u8]])) {
        scan_live(&self.tree, self.now, f);
    }

    /// Visit every name with a row expired by now that the sweep has not removed yet,
    /// with its live values (possibly none): what a view image (written with such rows
    /// still in) needs to match [`LiveSnapshot::for_each`]. Reads the expiry index.
    pub fn for_each_expired(&self, mut f: impl FnMut(&str, &[&[u8]])) {
        let mut end = vec![b'x'];
        end.extend_from_slice(&(self.now + 1).to_be_bytes());
        let mut names = std::collections::BTreeSet::new();
        for (xk, _) in self.tree.range(&b"x"[..]..&end[..]).flatten() {
            if xk.len() != 17 {
                continue;
            }
            let stored = u64::from_be_bytes(xk[9..17].try_into().unwrap_or([0; 8]));
            if let Ok(Some(trow)) = self.tree.get(tkey(stored)) {
                names.insert(String::from_utf8_lossy(index_name(&trow)).into_owned());
            }
        }
        for name in names {
            let rows: Vec<sled::IVec> = self
                .tree
                .scan_prefix(rprefix(&name))
                .flatten()
                .filter(|(_, v)| parse_meta(v).is_some_and(|(e, _)| e > self.now))
                .map(|(k, _)| k)
                .collect();
            let skip = 2 + name.len();
            let values: Vec<&[u8]> = rows.iter().map(|k| &k[skip..]).collect();
            f(&name, &values);
        }
    }
}

/// Subscribe to change events (like [`Subscribe`]) and get the store's current records
/// as a [`LiveSnapshot`] to read on another thread, instead of as a series of
/// `ZoneDelta`s through the mailbox: a million names load without a `String` per
/// value in flight. Every change after this message reaches `to` as a `ZoneDelta`.
#[derive(Message)]
#[rtype(result = "LiveSnapshot")]
pub struct SubscribeLive {
    pub name: &'static str,
    pub to: Recipient<ZoneDelta>,
}

impl Handler<SubscribeLive> for StoreActor {
    type Result = MessageResult<SubscribeLive>;

    fn handle(&mut self, msg: SubscribeLive, _: &mut Context<Self>) -> Self::Result {
        // Pending writes go to sled first, so the snapshot holds every acknowledged one.
        if let Err(e) = self.drain_overlay() {
            tracing::error!(error = %e, "store: cannot apply pending writes");
        }
        self.subscribers.retain(|(n, _)| *n != msg.name);
        self.subscribers.push((msg.name, msg.to));
        MessageResult(LiveSnapshot {
            tree: self.tree.clone(),
            now: self.clock.now_secs(),
            last_stored_ms: self.last_ms,
            rows: self.rows,
            image_token: self.image_token.take(),
        })
    }
}

impl Handler<Fail> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!("store actor: injected failure, stopping for restart");
        ctx.stop();
    }
}

impl Handler<StoreSize> for StoreActor {
    type Result = MessageResult<StoreSize>;

    fn handle(&mut self, _: StoreSize, _: &mut Context<Self>) -> Self::Result {
        // The walk is a few directory reads; done at most every DISK_WALK_EVERY, so a
        // scraper polling faster costs nothing more.
        if self.disk_walked.map(|t| t.elapsed() >= DISK_WALK_EVERY).unwrap_or(true) {
            self.disk_bytes = dir_bytes(&self.dir);
            self.disk_walked = Some(std::time::Instant::now());
        }
        MessageResult(StoreSizes {
            disk_bytes: self.disk_bytes,
            live_bytes: self.live_bytes,
            compactions: self.compactions,
        })
    }
}

impl Handler<TombstoneCount> for StoreActor {
    type Result = usize;

    fn handle(&mut self, _: TombstoneCount, _: &mut Context<Self>) -> usize {
        self.tombstones
    }
}

impl Handler<Flush> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.commit(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Unavailable)) })
    }
}

impl Handler<Checkpoint> for StoreActor {
    type Result = Result<Duration, StoreError>;

    fn handle(&mut self, _: Checkpoint, _: &mut Context<Self>) -> Self::Result {
        let t = std::time::Instant::now();
        // Stand-ins while the real database is closed (sled has no close but drop);
        // nothing is written to them: writes are refused until the reopen succeeds.
        let tmp = sled::Config::new().temporary(true).open()?;
        self.closed = true;
        self.tree = tmp.open_tree("records")?;
        drop(std::mem::replace(&mut self.db, tmp));
        let live = self.dir.join(SLED_DIR);
        let db = when_unlocked(|| Ok(sled_config(&live, self.compression).open()?))?;
        self.tree = db.open_tree("records")?;
        self.db = db;
        self.closed = false;
        Ok(t.elapsed())
    }
}

impl Handler<Freeze> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _: Freeze, ctx: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        let rx = self.commit(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Unavailable)) })
    }
}

impl Handler<SealImage> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: SealImage, _: &mut Context<Self>) -> Self::Result {
        if !self.closed {
            return Err(StoreError::Unavailable);
        }
        self.tree.insert(IMAGE_KEY, &msg.0[..])?;
        self.db.flush()?;
        Ok(())
    }
}

impl Handler<CommitCount> for StoreActor {
    type Result = u64;

    fn handle(&mut self, _: CommitCount, _: &mut Context<Self>) -> u64 {
        self.commits
    }
}

impl Handler<SweepNow> for StoreActor {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, _: SweepNow, _: &mut Context<Self>) -> Self::Result {
        let changed = self.sweep()?;
        let n = changed.len();
        self.notify(changed, false);
        Ok(n)
    }
}

impl Handler<Digest> for StoreActor {
    type Result = Result<DigestPage, StoreError>;

    fn handle(&mut self, msg: Digest, _: &mut Context<Self>) -> Self::Result {
        self.drain_overlay()?;
        let now = self.clock.now_secs();
        let (cts, cname, chash) = msg.after;
        let limit = msg.limit.clamp(1, 10_000);
        let mut rows = Vec::new();
        let mut has_more = false;
        for item in self.tree.range(&tkey(cts)[..]..) {
            let (k, trow) = item?;
            if k.first() != Some(&b't') || k.len() != 9 {
                break;
            }
            let ts = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            let Some((rk, exp)) = self.row_by_stamp(b'r', index_name(&trow), ts)? else {
                continue;
            };
            let Some((name, value)) = split_name_value(&rk[1..]) else { continue };
            let hash = sha256_hex(value);
            if ts == cts && (name, hash.as_str()) <= (cname.as_str(), chash.as_str()) {
                continue;
            }
            if exp <= now || local_only(name, value) {
                continue;
            }
            if rows.len() == limit {
                has_more = true;
                break;
            }
            rows.push(DigestRow { name: name.to_string(), hash, ts, ttl: (exp - now).max(1) });
        }
        Ok(DigestPage { rows, has_more })
    }
}

impl Handler<Pull> for StoreActor {
    type Result = Result<Vec<(String, String, u64)>, StoreError>;

    fn handle(&mut self, msg: Pull, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now_secs();
        let mut out = Vec::new();
        for name in msg.names {
            let mut vals = self.live(&name, now)?;
            vals.sort_by_key(|(_, _, stored)| *stored);
            for (v, e, _) in vals {
                if !local_only(&name, &v) {
                    out.push((name.clone(), v, (e - now).max(1)));
                }
            }
        }
        Ok(out)
    }
}

impl Handler<LocalHashes> for StoreActor {
    type Result = Result<Vec<(String, String, u64)>, StoreError>;

    fn handle(&mut self, msg: LocalHashes, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now_secs();
        let mut out = Vec::new();
        for name in msg.names {
            for (v, e, _) in self.live(&name, now)? {
                out.push((name.clone(), sha256_hex(&v), (e - now).max(1)));
            }
        }
        Ok(out)
    }
}

impl Handler<Tombstones> for StoreActor {
    type Result = Result<Vec<(u64, String, String, u64)>, StoreError>;

    fn handle(&mut self, msg: Tombstones, _: &mut Context<Self>) -> Self::Result {
        self.drain_overlay()?;
        let now = self.clock.now_secs();
        let mut out = Vec::new();
        for item in self.tree.range(&dkey(msg.after_ms.saturating_add(1))[..]..) {
            let (k, drow) = item?;
            if k.first() != Some(&b'd') || k.len() != 9 {
                break;
            }
            let stamp = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            let Some((qk, exp)) = self.row_by_stamp(b'q', index_name(&drow), stamp)? else {
                continue;
            };
            let Some((name, value)) = split_name_value(&qk[1..]) else { continue };
            if exp <= now {
                continue;
            }
            out.push((stamp, name.to_string(), value.to_string(), exp - now));
            if out.len() >= msg.limit.clamp(1, 10_000) {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! The store driven by its messages alone, in process, with a manual clock.
    use super::*;

    /// A start time for the manual clock (any fixed instant works).
    const T0: u64 = 1_800_000_000;

    fn add(name: &str, value: &str, ttl: u64) -> Op {
        Op::Add { name: name.into(), value: value.into(), ttl }
    }

    fn del(name: &str, value: &str) -> Op {
        Op::DeleteValue { name: name.into(), value: value.into() }
    }

    /// A store in `dir` on a manual clock; the interval sweep is far away, so expiry
    /// happens only when a test sends [`SweepNow`].
    /// (A store stopped just before may still hold sled's directory lock for a moment:
    /// wait for it.)
    fn open(dir: &Path, clock: &Clock) -> StoreActor {
        when_unlocked(|| StoreActor::open(dir, Duration::from_secs(3600)))
            .unwrap()
            .with_clock(clock.clone())
    }

    async fn apply(store: &Addr<StoreActor>, ops: Vec<Op>) {
        store.send(Apply { ops, max_values: 0, origin: Origin::Local }).await.unwrap().unwrap();
    }

    async fn values(store: &Addr<StoreActor>, name: &str) -> Vec<(String, u64)> {
        let mut v = store.send(Get { name: name.into() }).await.unwrap().unwrap();
        v.sort();
        v
    }

    /// Collects the `ZoneDelta`s a subscription delivers.
    struct Collector(tokio::sync::mpsc::UnboundedSender<ZoneDelta>);
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<ZoneDelta> for Collector {
        type Result = ();
        fn handle(&mut self, d: ZoneDelta, _: &mut Context<Self>) {
            let _ = self.0.send(d);
        }
    }

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ZoneDelta>) -> ZoneDelta {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a ZoneDelta within 10 s")
            .expect("subscription open")
    }

    #[test]
    fn apply_is_atomic_set_semantics_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            apply(&store, vec![add("a.z", "v1", 60), add("a.z", "v2", 60), add("a.z", "v1", 90)])
                .await;
            assert_eq!(values(&store, "a.z").await, [("v1".into(), 90), ("v2".into(), 60)]);
            assert_eq!(store.send(Count).await.unwrap(), 2);
            // Past the per-name cap the whole batch is refused, nothing of it applied.
            let r = store
                .send(Apply {
                    ops: vec![add("b.z", "x", 60), add("a.z", "v3", 60)],
                    max_values: 2,
                    origin: Origin::Local,
                })
                .await
                .unwrap();
            assert_eq!(r, Err(StoreError::TooManyValues { name: "a.z".into(), max: 2 }));
            assert!(values(&store, "b.z").await.is_empty(), "all or nothing");
            // Deletes reply with how many values went.
            let n = store
                .send(Apply {
                    ops: vec![Op::DeleteName { name: "a.z".into() }],
                    max_values: 0,
                    origin: Origin::Local,
                })
                .await
                .unwrap();
            assert_eq!(n, Ok(2));
            assert_eq!(store.send(Count).await.unwrap(), 0);
        });
    }

    #[test]
    fn concurrent_writes_share_group_commits_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store =
                open(dir.path(), &clock).with_commit_delay(Duration::from_millis(20)).start();
            let replies: Vec<_> = (0..50)
                .map(|i| {
                    store.send(Apply {
                        ops: vec![add(&format!("n{i}.z"), "v", 600)],
                        max_values: 0,
                        origin: Origin::Local,
                    })
                })
                .collect();
            for r in futures_util::future::join_all(replies).await {
                assert_eq!(r.unwrap(), Ok(0));
            }
            let commits = store.send(CommitCount).await.unwrap();
            assert!((1..=5).contains(&commits), "50 writes in {commits} group commits");
        });
        // Every acknowledged write is on disk.
        let s = open(dir.path(), &clock);
        assert_eq!(s.rows, 50);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let t = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &t);
            } else {
                std::fs::copy(e.path(), t).unwrap();
            }
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        [COMPACT_DIR, OLD_DIR, COMPACT_DONE]
            .iter()
            .filter(|n| dir.join(n).exists())
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn compaction_keeps_every_row_and_writes_after_it_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let (live_before, rows_before) = actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).with_compaction(1.5, 0).start();
            for i in 0..200 {
                apply(&store, vec![add(&format!("n{i}.z"), &format!("value {i}"), 600)]).await;
            }
            apply(&store, vec![del("n0.z", "value 0")]).await;
            let before = store.send(StoreSize).await.unwrap();
            assert_eq!(before.compactions, 0);
            (before.live_bytes, 199)
        });
        // Force one: the next group commit compacts first, then commits its write.
        actix::System::new().block_on(async {
            let mut s = open(dir.path(), &clock).with_compaction(1.5, 0);
            s.compact_due = true;
            let store = s.start();
            apply(&store, vec![add("after.z", "v", 600)]).await;
            let sz = store.send(StoreSize).await.unwrap();
            assert_eq!(sz.compactions, 1);
            assert_eq!(sz.live_bytes, live_before + 8);
            assert_eq!(values(&store, "n5.z").await.len(), 1);
            assert_eq!(values(&store, "n0.z").await.len(), 0);
            apply(&store, vec![add("after2.z", "v", 600)]).await;
        });
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
        let s = open(dir.path(), &clock);
        assert_eq!(s.rows, rows_before + 2);
        assert_eq!(s.live_bytes, live_before + 8 + 9);
        // The tombstone of the delete came along.
        assert_eq!(s.tombstones, 1);
    }

    #[test]
    fn a_crash_at_any_step_of_a_compaction_is_finished_or_undone_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(d, &clock).start();
            for i in 0..50 {
                apply(&store, vec![add(&format!("n{i}.z"), "v", 600)]).await;
            }
        });
        let check = |what: &str| {
            let s = open(d, &clock);
            assert_eq!(s.rows, 50, "{what}");
            drop(s);
            assert!(leftovers(d).is_empty(), "{what}: {:?}", leftovers(d));
            assert!(d.join(SLED_DIR).exists(), "{what}");
        };
        // Killed while copying: a partial copy, no marker.
        std::fs::create_dir_all(d.join(COMPACT_DIR)).unwrap();
        std::fs::write(d.join(COMPACT_DIR).join("db"), b"partial").unwrap();
        check("partial copy");
        // Killed after the marker, before the swap.
        copy_dir(&d.join(SLED_DIR), &d.join(COMPACT_DIR));
        std::fs::write(d.join(COMPACT_DONE), b"").unwrap();
        check("complete copy, not swapped");
        // Killed between the two renames (sled is gone): the complete copy is adopted.
        copy_dir(&d.join(SLED_DIR), &d.join(COMPACT_DIR));
        std::fs::write(d.join(COMPACT_DONE), b"").unwrap();
        std::fs::rename(d.join(SLED_DIR), d.join(OLD_DIR)).unwrap();
        check("between the renames");
        // Killed after the swap, before the clean-up.
        copy_dir(&d.join(SLED_DIR), &d.join(OLD_DIR));
        std::fs::write(d.join(COMPACT_DONE), b"").unwrap();
        check("swapped, not cleaned up");
        // An undo that stopped half way (old moved away, no marker): the old is put back.
        std::fs::rename(d.join(SLED_DIR), d.join(OLD_DIR)).unwrap();
        check("old moved away without a complete copy");
    }

    #[test]
    fn expiry_follows_the_injected_clock_and_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let sub = Collector(tx).start();
            store.do_send(Subscribe { name: "t", to: sub.recipient(), snapshot: true });
            assert!(next(&mut rx).await.snapshot_complete);
            apply(&store, vec![add("a.z", "short", 10), add("a.z", "long", 100)]).await;
            let d = next(&mut rx).await;
            assert_eq!(d.changes.len(), 1);
            assert!(d.local);
            // Remaining TTL counts down with the clock.
            clock.advance(Duration::from_secs(4));
            assert_eq!(values(&store, "a.z").await, [("long".into(), 96), ("short".into(), 6)]);
            // Not yet expired: the sweep changes nothing.
            assert_eq!(store.send(SweepNow).await.unwrap(), Ok(0));
            clock.advance(Duration::from_secs(6));
            // Expired rows are no longer served even before the sweep...
            assert_eq!(values(&store, "a.z").await, [("long".into(), 90)]);
            assert_eq!(store.send(Count).await.unwrap(), 2);
            // ...and the sweep removes them and tells subscribers the new value set.
            assert_eq!(store.send(SweepNow).await.unwrap(), Ok(1));
            assert_eq!(store.send(Count).await.unwrap(), 1);
            let d = next(&mut rx).await;
            assert_eq!(d.changes, [("a.z".to_string(), vec!["long".to_string()])]);
            assert!(!d.local, "expiry is not a local write");
        });
    }

    #[test]
    fn sweep_removes_expired_rows_and_tombstones_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            // Short-lived values, some deleted (tombstones living as long as the value would
            // have), and long-lived ones that must stay.
            apply(&store, (0..20).map(|i| add("a.z", &format!("s{i}"), 1)).collect()).await;
            apply(&store, (0..5).map(|i| add("b.z", &format!("l{i}"), 3600)).collect()).await;
            apply(&store, (0..10).map(|i| del("a.z", &format!("s{i}"))).collect()).await;
            apply(&store, vec![del("b.z", "l0")]).await;
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 11);
            // A second later the short-lived rows and their tombstones are swept; the
            // long-lived row and tombstone stay.
            clock.advance(Duration::from_secs(2));
            store.send(SweepNow).await.unwrap().unwrap();
            assert_eq!(store.send(Count).await.unwrap(), 4, "expired rows are swept");
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 1, "expired tombstones too");
            let live = store.send(Tombstones { after_ms: 0, limit: 100 }).await.unwrap().unwrap();
            assert_eq!(live.len(), 1);
            assert_eq!((live[0].1.as_str(), live[0].2.as_str()), ("b.z", "l0"));
            // A replicated add of the deleted value does not undo the delete...
            store
                .send(Apply {
                    ops: vec![add("b.z", "l0", 3600)],
                    max_values: 0,
                    origin: Origin::Replicated,
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(values(&store, "b.z").await.len(), 4);
            // ...a local re-add does, and drops its tombstone (and index entry).
            apply(&store, vec![add("b.z", "l0", 3600)]).await;
            assert_eq!(values(&store, "b.z").await.len(), 5);
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 0);
            let none = store.send(Tombstones { after_ms: 0, limit: 100 }).await.unwrap().unwrap();
            assert!(none.is_empty());
        });
        // Reopened, the count comes from the index.
        let s = open(dir.path(), &clock);
        assert_eq!((s.rows, s.tombstones), (5, 0));
    }

    #[test]
    fn tombstones_are_capped_soonest_expiring_first() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).with_max_tombstones(5).start();
            apply(&store, (0..20).map(|i| add("c.z", &format!("v{i}"), 1000 + i)).collect()).await;
            apply(&store, (0..20).map(|i| del("c.z", &format!("v{i}"))).collect()).await;
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 20);
            store.send(SweepNow).await.unwrap().unwrap();
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 5, "capped at the sweep");
            let mut kept: Vec<String> = store
                .send(Tombstones { after_ms: 0, limit: 100 })
                .await
                .unwrap()
                .unwrap()
                .into_iter()
                .map(|t| t.2)
                .collect();
            kept.sort();
            assert_eq!(kept, ["v15", "v16", "v17", "v18", "v19"]);
        });
        let s = open(dir.path(), &clock);
        assert_eq!(s.tombstones, 5);
    }

    #[test]
    fn checkpoint_reopens_the_database_and_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            for i in 0..50 {
                apply(&store, vec![add(&format!("k{i}.z"), &format!("value {i}"), 600)]).await;
            }
            store.send(Flush).await.unwrap().unwrap();
            store.send(Checkpoint).await.unwrap().unwrap();
            assert_eq!(values(&store, "k7.z").await, [("value 7".to_string(), 600)]);
            apply(&store, vec![add("after.z", "written after", 600)]).await;
            assert_eq!(store.send(Count).await.unwrap(), 51);
        });
        let s = open(dir.path(), &clock);
        assert_eq!(s.rows, 51);
    }

    #[test]
    fn a_sealed_image_token_is_handed_over_once_after_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let token = [9u8; 16];
        let sub = |store: Addr<StoreActor>| async move {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let to = Collector(tx).start().recipient();
            store.send(SubscribeLive { name: "dns", to }).await.unwrap().image_token
        };
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            apply(&store, vec![add("a.z", "before", 600)]).await;
            // Sealing needs a frozen store; frozen, it takes no more writes.
            assert!(store.send(SealImage(token)).await.unwrap().is_err());
            store.send(Freeze).await.unwrap().unwrap();
            let late =
                Apply { ops: vec![add("b.z", "late", 600)], max_values: 0, origin: Origin::Local };
            assert!(matches!(store.send(late).await.unwrap(), Err(StoreError::Unavailable)));
            store.send(SealImage(token)).await.unwrap().unwrap();
        });
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            assert_eq!(sub(store.clone()).await, Some(token), "the first subscriber gets it");
            assert_eq!(sub(store.clone()).await, None, "and only the first");
            assert_eq!(store.send(Count).await.unwrap(), 1);
        });
        // Consumed at the open before: an image is never trusted twice.
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            assert_eq!(sub(store).await, None);
        });
    }

    #[test]
    fn switching_store_compression_copies_the_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let path = dir.path().join(SLED_DIR);
        let open_as = |compression: bool| {
            when_unlocked(|| {
                StoreActor::open_with(dir.path(), Duration::from_secs(3600), compression)
            })
            .unwrap()
            .with_clock(clock.clone())
        };
        actix::System::new().block_on(async {
            let store = open_as(false).start();
            for i in 0..40 {
                apply(&store, vec![add(&format!("c{i}.z"), &format!("value {i}"), 600)]).await;
            }
        });
        assert_eq!(storage_of(&path, true), (SEGMENT_BYTES, false), "created uncompressed");
        let s = open_as(true);
        assert_eq!(storage_of(&path, false), (SEGMENT_BYTES, true), "copied compressed");
        assert_eq!((s.rows, s.compactions), (40, 1));
        drop(s);
        actix::System::new().block_on(async {
            let store = open_as(true).start();
            assert_eq!(store.send(StoreSize).await.unwrap().compactions, 0, "copied once");
            assert_eq!(values(&store, "c9.z").await, [("value 9".to_string(), 600)]);
        });
    }

    #[test]
    fn a_database_with_the_old_segment_size_is_copied_once_at_open() {
        let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(src.path(), &clock).start();
            for i in 0..40 {
                apply(&store, vec![add(&format!("s{i}.z"), &format!("value {i}"), 600)]).await;
            }
            apply(&store, vec![del("s0.z", "value 0")]).await;
        });
        // The same trees in a database as older versions created it (512 KiB segments).
        {
            let from =
                when_unlocked(|| Ok(sled_config(&src.path().join(SLED_DIR), COMPRESSION).open()?))
                    .unwrap();
            let to = sled::Config::new()
                .path(dir.path().join(SLED_DIR))
                .segment_size(512 * 1024)
                .open()
                .unwrap();
            for name in from.tree_names() {
                let (f, t) = (from.open_tree(&name).unwrap(), to.open_tree(&name).unwrap());
                for item in f.iter() {
                    let (k, v) = item.unwrap();
                    t.insert(k, v).unwrap();
                }
            }
            to.flush().unwrap();
        }
        assert_eq!(storage_of(&dir.path().join(SLED_DIR), COMPRESSION), (512 * 1024, false));
        let s = open(dir.path(), &clock);
        assert_eq!(
            storage_of(&dir.path().join(SLED_DIR), COMPRESSION),
            (SEGMENT_BYTES, COMPRESSION)
        );
        assert_eq!((s.rows, s.tombstones, s.compactions), (39, 1, 1));
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
        drop(s);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            assert_eq!(store.send(StoreSize).await.unwrap().compactions, 0, "copied once");
            assert_eq!(values(&store, "s7.z").await, [("value 7".to_string(), 600)]);
            assert!(values(&store, "s0.z").await.is_empty());
            let page = store
                .send(Digest { after: (0, String::new(), String::new()), limit: 100 })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(page.rows.len(), 39);
        });
    }

    /// Every `t`/`d` index row of the store in `dir`, as stored.
    fn index_rows(dir: &Path) -> Vec<(u8, Vec<u8>)> {
        let db =
            when_unlocked(|| Ok(sled_config(&dir.join(SLED_DIR), COMPRESSION).open()?)).unwrap();
        let tree = db.open_tree("records").unwrap();
        let mut out = Vec::new();
        for p in [b't', b'd'] {
            for item in tree.scan_prefix([p]) {
                out.push((p, item.unwrap().1.to_vec()));
            }
        }
        out
    }

    #[test]
    fn old_index_rows_holding_the_value_are_rewritten_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            for i in 0..30 {
                apply(&store, vec![add(&format!("u{i}.z"), &format!("value {i}"), 100 + i)]).await;
            }
            apply(&store, (0..5).map(|i| del(&format!("u{i}.z"), &format!("value {i}"))).collect())
                .await;
        });
        // Rewrite the database as older versions left it: `t` and `d` rows hold
        // name NUL value, and no `m:tref` marker.
        {
            let db =
                when_unlocked(|| Ok(sled_config(&dir.path().join(SLED_DIR), COMPRESSION).open()?))
                    .unwrap();
            let tree = db.open_tree("records").unwrap();
            for (p, kind) in [(b't', b'r'), (b'd', b'q')] {
                let rows: Vec<_> = tree.scan_prefix([p]).map(|i| i.unwrap()).collect();
                for (k, name) in rows {
                    assert!(!name.contains(&0), "new rows hold the name only");
                    let stamp = u64::from_be_bytes(k[1..9].try_into().unwrap());
                    let mut prefix = vec![kind];
                    prefix.extend_from_slice(&name);
                    prefix.push(0);
                    let full = tree
                        .scan_prefix(&prefix)
                        .map(|i| i.unwrap())
                        .find(|(_, m)| parse_meta(m).unwrap().1 == stamp)
                        .unwrap()
                        .0;
                    tree.insert(k, &full[1..]).unwrap();
                }
            }
            tree.remove(TREF_KEY).unwrap();
            db.flush().unwrap();
        }
        let old = index_rows(dir.path());
        assert_eq!(old.len(), 30);
        assert!(old.iter().all(|(_, v)| v.contains(&0)), "old form written");
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            // Digest, pull, tombstones and the sweep read the converted index.
            let page = store
                .send(Digest { after: (0, String::new(), String::new()), limit: 100 })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(page.rows.len(), 25);
            assert_eq!(page.rows[0].name, "u5.z");
            assert_eq!(page.rows[0].hash, sha256_hex("value 5"));
            assert_eq!(page.rows[0].ttl, 105);
            let tombs = store.send(Tombstones { after_ms: 0, limit: 100 }).await.unwrap().unwrap();
            assert_eq!(tombs.len(), 5);
            assert_eq!((tombs[0].1.as_str(), tombs[0].2.as_str()), ("u0.z", "value 0"));
            clock.advance(Duration::from_secs(110));
            // Rows with TTL <= 110 (u5..u10 live) and the tombstones (u0..u4) expire.
            assert_eq!(store.send(SweepNow).await.unwrap(), Ok(6));
            assert_eq!(store.send(Count).await.unwrap(), 19);
            assert_eq!(store.send(TombstoneCount).await.unwrap(), 0);
            let sz = store.send(StoreSize).await.unwrap();
            let want: u64 = (11..30)
                .map(|i| format!("u{i}.z").len() + format!("value {i}").len())
                .sum::<usize>() as u64;
            assert_eq!(sz.live_bytes, want);
        });
        let now = index_rows(dir.path());
        assert_eq!(now.len(), 19);
        assert!(now.iter().all(|(p, v)| *p == b't' && !v.contains(&0)), "name only");
        // The marker is set: the next open does not scan again, and the rows stay.
        let s = open(dir.path(), &clock);
        assert!(s.tree.get(TREF_KEY).unwrap().is_some());
        assert_eq!(s.rows, 19);
    }

    #[test]
    fn digest_pages_in_acceptance_order_without_local_only_rows() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        actix::System::new().block_on(async {
            let store = open(dir.path(), &clock).start();
            for i in 0..5 {
                apply(&store, vec![add(&format!("d{i}.z"), &format!("v{i}"), 100)]).await;
                clock.advance(Duration::from_millis(1));
            }
            // Heartbeat wires never enter the digest.
            apply(&store, vec![add("_dnsmesh-heartbeat.z", "v=dmp1;t=heartbeat;x", 100)]).await;
            let p1 = store
                .send(Digest { after: (0, String::new(), String::new()), limit: 3 })
                .await
                .unwrap()
                .unwrap();
            assert!(p1.has_more);
            let names: Vec<&str> = p1.rows.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, ["d0.z", "d1.z", "d2.z"]);
            assert_eq!(p1.rows[0].hash, sha256_hex("v0"));
            assert!(p1.rows.windows(2).all(|w| w[0].ts < w[1].ts), "strictly increasing stamps");
            let last = p1.rows.last().unwrap();
            let p2 = store
                .send(Digest { after: (last.ts, last.name.clone(), last.hash.clone()), limit: 3 })
                .await
                .unwrap()
                .unwrap();
            let names: Vec<&str> = p2.rows.iter().map(|r| r.name.as_str()).collect();
            assert_eq!((names.as_slice(), p2.has_more), (&["d3.z", "d4.z"][..], false));
            // Pull serves the values with their remaining TTL; LocalHashes their hashes.
            clock.advance(Duration::from_secs(40));
            let pulled = store.send(Pull { names: vec!["d1.z".into()] }).await.unwrap().unwrap();
            assert_eq!(pulled, [("d1.z".to_string(), "v1".to_string(), 60)]);
            let hashes =
                store.send(LocalHashes { names: vec!["d1.z".into()] }).await.unwrap().unwrap();
            assert_eq!(hashes, [("d1.z".to_string(), sha256_hex("v1"), 60)]);
            // Expired rows leave the digest.
            clock.advance(Duration::from_secs(100));
            let p = store
                .send(Digest { after: (0, String::new(), String::new()), limit: 10 })
                .await
                .unwrap()
                .unwrap();
            assert!(p.rows.is_empty());
        });
    }
}
