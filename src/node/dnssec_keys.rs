//! The zone's DNSSEC keys at rest: `data_dir/dnssec.keys`, the key set sealed under the
//! node key (`data_dir/node.key`, XChaCha20-Poly1305, mode 0600), written atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::dnswire::dnssec::KeySet;
use crate::dnswire::signed::PersistKeys;
use crate::proto::seal;

const AAD: &[u8] = b"dnsmesh dnssec.keys v1";

/// Path of the sealed key file.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dnssec.keys")
}

/// Write `keys` sealed under `node_key` (tmp file, fsync, rename; mode 0600).
pub fn store(path: &Path, node_key: &[u8; 32], keys: &KeySet) -> std::io::Result<()> {
    let sealed = seal::seal(node_key, &keys.to_bytes(), AAD);
    crate::files::private_dir::write_private_atomic(path, &sealed)
}

/// Read and unseal the key set; `Ok(None)` when the file does not exist.
pub fn load(path: &Path, node_key: &[u8; 32]) -> anyhow::Result<Option<KeySet>> {
    let sealed = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let plain = zeroize::Zeroizing::new(
        seal::open(node_key, &sealed, AAD)
            .map_err(|_| anyhow::anyhow!("{}: cannot unseal (wrong node.key?)", path.display()))?,
    );
    Ok(Some(KeySet::from_bytes(&plain).with_context(|| path.display().to_string())?))
}

/// The stored key set, or a new one (algorithm `alg`) created and stored now, plus the
/// callback that persists rolled sets. A stored set of another algorithm is an error:
/// algorithm rollover is not supported.
pub fn load_or_create(data_dir: &Path, alg: u8, now: u64) -> anyhow::Result<(KeySet, PersistKeys)> {
    let node_key = crate::actors::auth::load_or_create_node_key(&data_dir.join("node.key"))
        .context("node key")?;
    let path = keys_path(data_dir);
    let keys = match load(&path, &node_key)? {
        Some(k) if k.alg() != alg => anyhow::bail!(
            "dnssec.algorithm = {alg} but {} holds algorithm {} keys (algorithm rollover is \
             not supported; move the file away to start over with new keys and a new DS)",
            path.display(),
            k.alg()
        ),
        Some(k) => k,
        None => {
            let k = KeySet::generate(alg, now).context("generating DNSSEC keys")?;
            store(&path, &node_key, &k).with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(ksk = k.ksk.tag, zsk = k.zsks[0].tag, "DNSSEC keys created");
            k
        }
    };
    let persist: PersistKeys = Arc::new(move |k: &KeySet| store(&path, &node_key, k));
    Ok((keys, persist))
}
