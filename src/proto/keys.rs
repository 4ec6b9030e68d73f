//! Keys: the user identity derivation (protocol §2.1), Ed25519 verification with the
//! reference's low-order key blocklist (§1.2), and hashing helpers.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

use super::ProtoError;

/// Domain string appended to the unclamped X25519 private bytes to derive the Ed25519 seed.
pub const ED25519_DOMAIN: &[u8] = b"DMP-v1-Ed25519-signing-key";
/// Salt used when a config has no `kdf_salt` (old configs).
pub const DEFAULT_KDF_SALT: &[u8] = b"DMP-default-v2-argon2id";

/// The 14 Ed25519 public key encodings the reference refuses before verifying.
const LOW_ORDER_KEYS: [[u8; 32]; 14] = {
    const fn fill(first: u8, mid: u8, last: u8) -> [u8; 32] {
        let mut k = [mid; 32];
        k[0] = first;
        k[31] = last;
        k
    }
    const fn hex32(s: &[u8; 64]) -> [u8; 32] {
        const fn nib(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => panic!("bad hex"),
            }
        }
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = nib(s[2 * i]) << 4 | nib(s[2 * i + 1]);
            i += 1;
        }
        out
    }
    [
        fill(0x01, 0x00, 0x00),
        hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        fill(0x00, 0x00, 0x80),
        hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        fill(0xec, 0xff, 0x7f),
        hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
        fill(0x00, 0x00, 0x00),
        hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
        fill(0x01, 0x00, 0x80),
        fill(0xee, 0xff, 0x7f),
        fill(0xee, 0xff, 0xff),
        fill(0xed, 0xff, 0x7f),
        fill(0xed, 0xff, 0xff),
        fill(0xec, 0xff, 0xff),
    ]
};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// First `n` lowercase hex characters of SHA-256(`data`) — the hashes in owner names.
pub fn sha256_hex_prefix(data: &[u8], n: usize) -> String {
    let mut h = hex::encode(sha256(data));
    h.truncate(n);
    h
}

/// True when `key` is one of the reference's blocklisted low-order encodings.
pub fn is_low_order(key: &[u8; 32]) -> bool {
    LOW_ORDER_KEYS.iter().any(|k| k == key)
}

/// Verify an Ed25519 signature as the reference does: refuse non-32-byte or blocklisted
/// keys, then standard RFC 8032 verification.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk): Result<[u8; 32], _> = public_key.try_into() else { return false };
    if is_low_order(&pk) {
        return false;
    }
    let Ok(sig): Result<[u8; 64], _> = signature.try_into() else { return false };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else { return false };
    vk.verify(message, &Signature::from_bytes(&sig)).is_ok()
}

/// Sign `message` (pure Ed25519, 64 bytes).
pub fn sign(key: &SigningKey, message: &[u8]) -> [u8; 64] {
    key.sign(message).to_bytes()
}

/// `user_id = SHA-256(x25519_pub)`: what other people call your `recipient_id`.
pub fn user_id(x25519_pub: &[u8; 32]) -> [u8; 32] {
    sha256(x25519_pub)
}

/// A user's key pair set, derived from 32 X25519 private bytes (kept unclamped, §2.1).
#[derive(Clone)]
pub struct Identity {
    x25519_private: [u8; 32],
    x25519_public: [u8; 32],
    signing: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("x25519_public", &hex::encode(self.x25519_public))
            .field("ed25519_public", &hex::encode(self.ed25519_public()))
            .finish_non_exhaustive()
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.x25519_private);
    }
}

impl Identity {
    /// Derive from the 32 private bytes (the reference's `DMPCrypto.from_private_bytes`).
    /// Also how the vectors build every signer, operators included.
    pub fn from_private_bytes(x25519_private: [u8; 32]) -> Self {
        let secret = StaticSecret::from(x25519_private);
        let x25519_public = XPublic::from(&secret).to_bytes();
        let mut h = Sha256::new();
        h.update(x25519_private);
        h.update(ED25519_DOMAIN);
        let seed: [u8; 32] = h.finalize().into();
        Identity { x25519_private, x25519_public, signing: SigningKey::from_bytes(&seed) }
    }

    /// Derive from a passphrase with Argon2id (t=2, m=32 MiB, p=2, 32 bytes, v0x13).
    /// `salt = None` uses the library default salt. Salts under 8 bytes are refused.
    pub fn from_passphrase(passphrase: &str, salt: Option<&[u8]>) -> Result<Self, ProtoError> {
        let salt = salt.unwrap_or(DEFAULT_KDF_SALT);
        if salt.len() < 8 {
            return Err(ProtoError::Kdf("salt shorter than 8 bytes".into()));
        }
        let params = argon2::Params::new(32768, 2, 2, Some(32))
            .map_err(|e| ProtoError::Kdf(e.to_string()))?;
        let a2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        a2.hash_password_into(passphrase.as_bytes(), salt, &mut out)
            .map_err(|e| ProtoError::Kdf(e.to_string()))?;
        Ok(Self::from_private_bytes(out))
    }

    /// The unclamped X25519 private bytes (what the reference stores and exports).
    pub fn x25519_private(&self) -> &[u8; 32] {
        &self.x25519_private
    }

    /// X25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        self.x25519_public
    }

    /// Ed25519 public (verifying) key.
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Sign with the identity's Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        sign(&self.signing, message)
    }

    /// `user_id = SHA-256(x25519_pub)`.
    pub fn user_id(&self) -> [u8; 32] {
        user_id(&self.x25519_public)
    }

    /// X25519 with this identity's private key. `None` when the result is all zeros
    /// (non-contributory), which the reference refuses.
    pub fn diffie_hellman(&self, their_public: &[u8; 32]) -> Option<[u8; 32]> {
        x25519(&self.x25519_private, their_public)
    }

    /// CLI display fingerprint: `sha256hex(x25519_pub ‖ ed25519_pub)[:16]`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.x25519_public, &self.ed25519_public())
    }
}

/// CLI display fingerprint of a contact: `sha256hex(x25519_pub ‖ ed25519_pub)[:16]`.
pub fn fingerprint(x25519_pub: &[u8; 32], ed25519_pub: &[u8; 32]) -> String {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(x25519_pub);
    b[32..].copy_from_slice(ed25519_pub);
    sha256_hex_prefix(&b, 16)
}

/// X25519(private, public); `None` for an all-zero (non-contributory) shared secret.
pub fn x25519(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let secret = StaticSecret::from(*private);
    let shared = secret.diffie_hellman(&XPublic::from(*public));
    if shared.was_contributory() {
        Some(shared.to_bytes())
    } else {
        None
    }
}

/// X25519 public key of 32 private bytes.
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    XPublic::from(&StaticSecret::from(*private)).to_bytes()
}

/// Fresh random 32 bytes from the OS.
pub fn random_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

/// Fill `buf` with OS randomness.
pub fn random_fill(buf: &mut [u8]) {
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_refuses_low_order_and_accepts_honest() {
        let id = Identity::from_private_bytes([7u8; 32]);
        let sig = id.sign(b"hello");
        assert!(verify(&id.ed25519_public(), b"hello", &sig));
        assert!(!verify(&id.ed25519_public(), b"hellO", &sig));
        for k in LOW_ORDER_KEYS.iter() {
            assert!(!verify(k, b"hello", &sig));
        }
        assert!(!verify(&[1u8; 31], b"hello", &sig));
        assert_eq!(LOW_ORDER_KEYS[4][0], 0xec);
        assert_eq!(LOW_ORDER_KEYS[4][30], 0xff);
    }
}
