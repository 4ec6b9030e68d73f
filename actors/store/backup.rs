//! `ExportBackup`: the store writes a consistent snapshot of its database (every tree)
//! into a backup archive (`node::backup`), followed by the trees the other actors read out
//! of their own databases (`actor_db::ExportTrees`, collected just before). It runs inside
//! the store's own handler, the only writer of its database, so nothing changes while its
//! trees are walked; each other database is consistent with itself. Writes still pending
//! in the group commit are not acknowledged yet and are not in the snapshot.

use std::path::PathBuf;

use actix::prelude::*;

use super::StoreActor;
use crate::files::backup::{BackupError, Writer};

/// Write the archive to `path` (created 0600, synced), with the `files` (name, content)
/// appended. Replies with the number of tree entries written.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct ExportBackup {
    pub path: PathBuf,
    pub files: Vec<(String, Vec<u8>)>,
    /// The other actors' trees (auth, sync, heartbeat).
    pub trees: Vec<crate::files::backup::TreeDump>,
}

impl Handler<ExportBackup> for StoreActor {
    type Result = Result<u64, String>;

    fn handle(&mut self, msg: ExportBackup, _: &mut Context<Self>) -> Self::Result {
        let write = || -> Result<u64, BackupError> {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&msg.path)?;
            let mut w = Writer::new(std::io::BufWriter::new(f))?;
            let mut n = w.database("sled", &self.db)?;
            for d in &msg.trees {
                n += w.dump(d)?;
            }
            for (name, content) in &msg.files {
                w.file(name, content)?;
            }
            let out = w.finish()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(n)
        };
        let r = write().map_err(|e| e.to_string());
        match &r {
            Ok(n) => tracing::info!(entries = n, path = %msg.path.display(), "backup written"),
            Err(e) => tracing::error!(error = %e, "backup failed"),
        }
        r
    }
}
