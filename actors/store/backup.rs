//! `ExportBackup`: the store writes a consistent snapshot of its database (every tree:
//! records, and whatever other actors keep in the same database) into a backup archive
//! (`node::backup`). It runs inside the store's own handler: the store is the only writer
//! of `records`, and every actor that writes to this database runs on the same System
//! thread, so nothing changes while the trees are walked. Writes still pending in the
//! group commit are not acknowledged yet and are not in the snapshot.

use std::path::PathBuf;

use actix::prelude::*;

use super::StoreActor;
use crate::node::backup::{BackupError, Writer};

/// Write the archive to `path` (created 0600, synced), with the `files` (name, content)
/// appended. Replies with the number of tree entries written.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct ExportBackup {
    pub path: PathBuf,
    pub files: Vec<(String, Vec<u8>)>,
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
            let n = w.database("sled", &self.db)?;
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
