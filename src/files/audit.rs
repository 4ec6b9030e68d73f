//! The operator audit trail: an append-only JSON-lines file (`<data_dir>/audit.jsonl`,
//! mode 0600) of registrations, token issues, rotations, revocations and admin actions.
//! Each entry is written with one `write` on an `O_APPEND` descriptor and made durable
//! (`fdatasync`) before the action it records is acknowledged. Entries never hold a secret:
//! tokens appear only as a prefix of their SHA-256.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde_json::{Map, Value};

/// File name of the audit log inside the data directory.
pub const FILE_NAME: &str = "audit.jsonl";

/// The open audit log.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Open (create, mode 0600) `<data_dir>/audit.jsonl` for appending.
    pub fn open(data_dir: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = data_dir.join(FILE_NAME);
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        // An older file with looser bits is tightened.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(AuditLog { path, file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry `{"ts", "time", "event", "actor", "remote", ...fields}` and sync
    /// it to disk. Blocking: call it off the actor threads (e.g. `web::block`).
    pub fn append(
        &self,
        event: &str,
        actor: &str,
        remote: Option<std::net::IpAddr>,
        fields: Value,
    ) -> std::io::Result<()> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut entry = Map::new();
        entry.insert("ts".into(), now.as_secs().into());
        entry.insert(
            "time".into(),
            crate::files::logfmt::rfc3339(now.as_secs(), now.subsec_millis()).into(),
        );
        entry.insert("event".into(), event.into());
        entry.insert("actor".into(), actor.into());
        entry.insert("remote".into(), remote.map(|r| r.to_string()).into());
        if let Value::Object(f) = fields {
            for (k, v) in f {
                entry.entry(k).or_insert(v);
            }
        }
        let mut line = serde_json::to_vec(&Value::Object(entry))?;
        line.push(b'\n');
        let f = self.file.lock();
        (&*f).write_all(&line)?;
        f.sync_data()
    }
}

/// The last `limit` entries of the audit log at `path` (oldest first), optionally only
/// those whose `event` is `event`. A torn last line (a crash mid-write) is skipped.
pub fn tail(path: &Path, limit: usize, event: Option<&str>) -> std::io::Result<Vec<Value>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = std::collections::VecDeque::new();
    for line in std::io::BufReader::new(f).lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line?) else { continue };
        if event.is_some_and(|e| v["event"] != e) {
            continue;
        }
        out.push_back(v);
        if out.len() > limit {
            out.pop_front();
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn append_and_tail() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = super::AuditLog::open(dir.path()).unwrap();
        for i in 0..5 {
            let ev = if i % 2 == 0 { "issued" } else { "revoked" };
            log.append(ev, "operator", None, serde_json::json!({"n": i, "event": "spoof"}))
                .unwrap();
        }
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"torn"))
            .unwrap();
        let all = super::tail(log.path(), 100, None).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0]["event"], "issued", "fields never override the entry's own");
        let last2 = super::tail(log.path(), 2, Some("issued")).unwrap();
        assert_eq!(last2.iter().map(|v| v["n"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4]);
    }
}
