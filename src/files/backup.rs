//! Backup archives: a versioned file of named sled trees (and a few small files such as
//! the node key), written by the actors that own the trees and restored offline.
//!
//! Layout (all integers big-endian):
//! `"DNSMESH-BACKUP\n"`, `u32` version (1), then sections, each a kind byte:
//! - `1` tree: `str` database directory (relative to the data dir, e.g. `sled`), `bytes`
//!   tree name, `u64` entry count, then that many `bytes` key, `bytes` value;
//! - `2` file: `str` name (relative to the data dir), `bytes` content (restored 0600);
//! - `0` end: `u64` number of sections before it, then the SHA-256 of every byte before
//!   the digest. `str` and `bytes` are a `u32` length and the bytes.
//!
//! A tree goes back into the database directory it came from, so the format does not
//! depend on which actor owns which tree.

use std::io::{Read, Write};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"DNSMESH-BACKUP\n";
const VERSION: u32 = 1;

/// Why an archive could not be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("not a dnsmesh backup: {0}")]
    Format(String),
    #[error("{0}")]
    Refused(String),
}

fn bad(s: impl Into<String>) -> BackupError {
    BackupError::Format(s.into())
}

/// Writes an archive, hashing as it goes.
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    sections: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Result<Self, BackupError> {
        let mut w = Writer { out, hash: Sha256::new(), sections: 0 };
        w.put(MAGIC)?;
        w.put(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), BackupError> {
        self.hash.update(b);
        self.out.write_all(b)?;
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), BackupError> {
        let n = u32::try_from(b.len()).map_err(|_| bad("item over 4 GiB"))?;
        self.put(&n.to_be_bytes())?;
        self.put(b)
    }

    /// One tree of the database in `db_dir` (relative to the data dir).
    pub fn tree(&mut self, db_dir: &str, tree: &sled::Tree) -> Result<u64, BackupError> {
        self.put(&[1])?;
        self.bytes(db_dir.as_bytes())?;
        self.bytes(&tree.name())?;
        // The count is known only after the walk: collect keys and values of one tree
        // (consistent: the caller holds off every writer of the database meanwhile).
        let mut entries = Vec::new();
        for item in tree.iter() {
            entries.push(item?);
        }
        self.put(&(entries.len() as u64).to_be_bytes())?;
        for (k, v) in &entries {
            self.bytes(k)?;
            self.bytes(v)?;
        }
        self.sections += 1;
        Ok(entries.len() as u64)
    }

    /// A tree already read out by its owner (see [`TreeDump`]).
    pub fn dump(&mut self, d: &TreeDump) -> Result<u64, BackupError> {
        self.put(&[1])?;
        self.bytes(d.db_dir.as_bytes())?;
        self.bytes(&d.name)?;
        self.put(&(d.entries.len() as u64).to_be_bytes())?;
        for (k, v) in &d.entries {
            self.bytes(k)?;
            self.bytes(v)?;
        }
        self.sections += 1;
        Ok(d.entries.len() as u64)
    }

    /// Every tree of `db` (the default tree included).
    pub fn database(&mut self, db_dir: &str, db: &sled::Db) -> Result<u64, BackupError> {
        let mut n = 0;
        for name in db.tree_names() {
            n += self.tree(db_dir, &db.open_tree(&name)?)?;
        }
        Ok(n)
    }

    /// A small file of the data dir (e.g. `node.key`), by its relative name.
    pub fn file(&mut self, name: &str, content: &[u8]) -> Result<(), BackupError> {
        self.put(&[2])?;
        self.bytes(name.as_bytes())?;
        self.bytes(content)?;
        self.sections += 1;
        Ok(())
    }

    /// End marker and digest; returns the inner writer.
    pub fn finish(mut self) -> Result<W, BackupError> {
        self.put(&[0])?;
        let n = self.sections;
        self.put(&n.to_be_bytes())?;
        let digest = self.hash.clone().finalize();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One tree read out by the actor that owns its database (each actor of `auth`, `sync`
/// and `heartbeat` answers `actor_db::ExportTrees` with its own), written into the
/// archive by the store next to its own trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDump {
    /// The database directory under the data dir (`auth`, `sync`, `heartbeat`).
    pub db_dir: String,
    pub name: Vec<u8>,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TreeDump {
    /// Read every row of `tree` (the caller is its only writer, so the copy is consistent).
    pub fn of(db_dir: &str, tree: &sled::Tree) -> sled::Result<TreeDump> {
        let mut entries = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            entries.push((k.to_vec(), v.to_vec()));
        }
        Ok(TreeDump { db_dir: db_dir.to_string(), name: tree.name().to_vec(), entries })
    }

    /// Every tree of `db` (the default tree included).
    pub fn all(db_dir: &str, db: &sled::Db) -> sled::Result<Vec<TreeDump>> {
        db.tree_names().iter().map(|n| TreeDump::of(db_dir, &db.open_tree(n)?)).collect()
    }
}

/// A section read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Section {
    Tree { db_dir: String, name: Vec<u8>, entries: Vec<(Vec<u8>, Vec<u8>)> },
    File { name: String, content: Vec<u8> },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BackupError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, BackupError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, BackupError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], BackupError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, BackupError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("a name is not UTF-8"))
    }
}

/// Parse and verify a whole archive (digest, version, safe relative names).
pub fn parse(buf: &[u8]) -> Result<Vec<Section>, BackupError> {
    if buf.len() < MAGIC.len() + 4 + 1 + 8 + 32 || !buf.starts_with(MAGIC) {
        return Err(bad("no dnsmesh backup header"));
    }
    let (body, digest) = buf.split_at(buf.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(bad("checksum mismatch (truncated or corrupted file)"));
    }
    let mut r = Reader { buf: body, pos: MAGIC.len() };
    let version = r.u32()?;
    if version != VERSION {
        return Err(bad(format!("version {version}; this build reads version {VERSION}")));
    }
    let mut out = vec![];
    loop {
        match r.take(1)?[0] {
            0 => {
                let n = r.u64()?;
                if n != out.len() as u64 || r.pos != body.len() {
                    return Err(bad("section count or trailing bytes do not match"));
                }
                return Ok(out);
            }
            1 => {
                let db_dir = r.string()?;
                safe_relative(&db_dir)?;
                let name = r.bytes()?.to_vec();
                let count = r.u64()?;
                let mut entries = Vec::new();
                for _ in 0..count {
                    let k = r.bytes()?.to_vec();
                    let v = r.bytes()?.to_vec();
                    entries.push((k, v));
                }
                out.push(Section::Tree { db_dir, name, entries });
            }
            2 => {
                let name = r.string()?;
                safe_relative(&name)?;
                out.push(Section::File { name, content: r.bytes()?.to_vec() });
            }
            k => return Err(bad(format!("unknown section kind {k}"))),
        }
    }
}

fn safe_relative(p: &str) -> Result<(), BackupError> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("unsafe path {p:?} in archive")))
    }
}

/// Restore the archive at `file` into `data_dir` (offline: no node may run on it).
/// Refuses a non-empty `data_dir` unless `force`, which empties it first. Returns
/// (trees, entries, files) restored.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    force: bool,
) -> Result<(usize, u64, usize), BackupError> {
    let mut buf = Vec::new();
    std::fs::File::open(file)?.read_to_end(&mut buf)?;
    let sections = parse(&buf)?;
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir)?.peekable();
        if entries.peek().is_some() {
            if !force {
                return Err(BackupError::Refused(format!(
                    "{} is not empty (use --force to replace its contents)",
                    data_dir.display()
                )));
            }
            for e in entries {
                let p = e?.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
        }
    }
    std::fs::create_dir_all(data_dir)?;
    crate::files::private_dir::make_private(data_dir)?;
    let (mut trees, mut rows, mut files) = (0, 0u64, 0);
    let mut dbs: std::collections::BTreeMap<String, sled::Db> = Default::default();
    for s in sections {
        match s {
            Section::Tree { db_dir, name, entries } => {
                if !dbs.contains_key(&db_dir) {
                    let db = sled::Config::new().path(data_dir.join(&db_dir)).open()?;
                    dbs.insert(db_dir.clone(), db);
                }
                let tree = dbs[&db_dir].open_tree(&name)?;
                let mut batch = sled::Batch::default();
                rows += entries.len() as u64;
                for (k, v) in entries {
                    batch.insert(k, v);
                }
                tree.apply_batch(batch)?;
                trees += 1;
            }
            Section::File { name, content } => {
                use std::os::unix::fs::OpenOptionsExt;
                let path = data_dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&content)?;
                f.sync_all()?;
                files += 1;
            }
        }
    }
    for db in dbs.values() {
        db.flush()?;
    }
    Ok((trees, rows, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("records").unwrap().insert(b"r1", b"v1".to_vec()).unwrap();
        db.open_tree("tokens").unwrap().insert(b"h", b"row".to_vec()).unwrap();
        let mut w = Writer::new(Vec::new()).unwrap();
        w.database("sled", &db).unwrap();
        w.file("node.key", &[7; 32]).unwrap();
        let bytes = w.finish().unwrap();
        let secs = parse(&bytes).unwrap();
        assert!(secs.contains(&Section::Tree {
            db_dir: "sled".into(),
            name: b"records".to_vec(),
            entries: vec![(b"r1".to_vec(), b"v1".to_vec())]
        }));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(matches!(parse(&flipped), Err(BackupError::Format(_))));
        assert!(parse(&bytes[..bytes.len() - 1]).is_err());
        let f = dir.path().join("b");
        std::fs::write(&f, &bytes).unwrap();
        let data = dir.path().join("data");
        assert_eq!(restore(&f, &data, false).unwrap(), (3, 2, 1));
        assert!(matches!(restore(&f, &data, false), Err(BackupError::Refused(_))));
        let back = sled::open(data.join("sled")).unwrap();
        assert_eq!(back.open_tree("tokens").unwrap().get(b"h").unwrap().unwrap(), b"row".as_ref());
        drop(back);
        // An archive naming a path outside the data dir is refused.
        let mut w = Writer::new(Vec::new()).unwrap();
        w.file("../evil", b"x").unwrap();
        assert!(parse(&w.finish().unwrap()).is_err());
    }
}
