//! Each actor's own sled database.
//!
//! The store owns `data_dir/sled` (the records); `auth`, `sync` and `heartbeat` each own
//! one database in their own directory (`data_dir/auth`, `data_dir/sync`,
//! `data_dir/heartbeat`), so no component shares a sled handle with another and each
//! flushes only its own state. Nodes written before this layout kept those trees in the
//! store's database: [`migrate_trees`] moves them out once, at start, before any actor runs.

use std::path::Path;

/// The directory under `data_dir` holding actor `name`'s database.
pub fn dir(data_dir: &Path, name: &str) -> std::path::PathBuf {
    data_dir.join(name)
}

/// Open (or create) actor `name`'s database under `data_dir`.
pub fn open(data_dir: &Path, name: &str) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir(data_dir, name))
        .cache_capacity(8 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .open()
}

/// Move the trees `names` from `from` (the store's database, old layout) into `to`:
/// copy every row, flush `to`, then drop the tree from `from` and flush it. A crash in
/// between copies again at the next start (same rows, same values), so nothing is lost
/// and nothing is duplicated. Returns the number of rows moved. Runs once at start-up,
/// before the actors (it blocks on disk).
pub fn migrate_trees(from: &sled::Db, to: &sled::Db, names: &[&str]) -> sled::Result<usize> {
    let present = from.tree_names();
    let mut moved = 0;
    let mut dropped = Vec::new();
    for name in names {
        if !present.iter().any(|t| t.as_ref() == name.as_bytes()) {
            continue;
        }
        let old = from.open_tree(name)?;
        let new = to.open_tree(name)?;
        for item in old.iter() {
            let (k, v) = item?;
            new.insert(k, v)?;
            moved += 1;
        }
        dropped.push(*name);
    }
    if dropped.is_empty() {
        return Ok(0);
    }
    to.flush()?;
    for name in dropped {
        from.drop_tree(name)?;
    }
    from.flush()?;
    Ok(moved)
}

/// Read out every tree of the receiving actor's own database for a backup (it is the only
/// writer of its database, so the copy is consistent with itself). Answered by `auth`,
/// `sync` and `heartbeat`; the store writes the dumps into the archive next to its own
/// trees (`store::ExportBackup`).
#[derive(actix::Message)]
#[rtype(result = "Result<Vec<crate::files::backup::TreeDump>, String>")]
pub struct ExportTrees;
