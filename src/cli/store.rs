//! Private state at rest: each kind of state (contacts, replay cache, prekey secrets,
//! credentials, outbox, intro queue) is one JSON document sealed with XChaCha20-Poly1305
//! (`proto::seal`) under a key derived from the identity, so a copied config home is
//! useless without the passphrase. Every write is atomic (temp file, fsync, rename).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hkdf::Hkdf;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::proto::keys::Identity;
use crate::proto::seal;

/// HKDF salt and info for the state key: distinct from every protocol use of the key.
const STATE_SALT: &[u8] = b"dnsmesh-cli";
const STATE_INFO: &[u8] = b"dnsmesh-cli local state seal key v1";

/// Write `data` to `path` atomically with the given Unix mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Sealed documents under `<home>/state/`.
pub struct Store {
    dir: PathBuf,
    key: [u8; 32],
}

impl Drop for Store {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Store {
    /// Open (creating the directory) with the key derived from `id`.
    pub fn open(home: &Path, id: &Identity) -> Result<Store> {
        let dir = home.join("state");
        create_private_dir(&dir)?;
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(STATE_SALT), id.x25519_private())
            .expand(STATE_INFO, &mut key)
            .map_err(|_| anyhow::anyhow!("HKDF output length"))?;
        Ok(Store { dir, key })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sealed"))
    }

    fn aad(name: &str) -> Vec<u8> {
        format!("dnsmesh-state:{name}").into_bytes()
    }

    /// Load a document; a missing file is the default value.
    pub fn load<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let path = self.path(name);
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let plain = seal::open(&self.key, &sealed, &Self::aad(name)).map_err(|_| {
            anyhow::anyhow!(
                "cannot unseal {} — it was written under another passphrase or is damaged; \
                 use the passphrase this config home was created with (or move the file away to start that state afresh)",
                path.display()
            )
        })?;
        serde_json::from_slice(&plain)
            .with_context(|| format!("{} holds malformed state", path.display()))
    }

    /// Seal and write a document atomically.
    pub fn save<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let plain = serde_json::to_vec(value).context("serialising state")?;
        let sealed = seal::seal(&self.key, &plain, &Self::aad(name));
        let path = self.path(name);
        write_atomic(&path, &sealed, 0o600)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Store {
    /// Re-seal every document under `new`'s key (after a key rotation). Each file is
    /// replaced atomically; the new key's files are written before any old one is gone.
    pub fn rekey(&self, new: &Store) -> Result<()> {
        let mut docs = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?
        {
            let path = e?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sealed"))
                .map(str::to_string)
            else {
                continue;
            };
            let sealed =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let plain = seal::open(&self.key, &sealed, &Self::aad(&name))
                .map_err(|_| anyhow::anyhow!("cannot unseal {} to re-key it", path.display()))?;
            docs.push((name, plain));
        }
        for (name, plain) in docs {
            let sealed = seal::seal(&new.key, &plain, &Self::aad(&name));
            let path = new.path(&name);
            write_atomic(&path, &sealed, 0o600)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Create a directory readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// An exclusive lock on the config home, held while a command touches its state, so a
/// `recv --watch` and a `send` never interleave read-modify-write cycles.
pub struct HomeLock(File);

impl HomeLock {
    /// Block until the lock is ours.
    pub fn acquire(home: &Path) -> Result<HomeLock> {
        let path = home.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        if f.lock().is_err() {
            bail!("cannot lock {} — is the file system read-only?", path.display());
        }
        Ok(HomeLock(f))
    }
}

impl Drop for HomeLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
