//! Local at-rest sealing: XChaCha20-Poly1305 with a fresh random 24-byte nonce per call,
//! so callers never manage nonces. Not a wire format of the protocol; used for secrets
//! this implementation stores itself (keys, TSIG secrets).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::keys::random_fill;
use super::ProtoError;

/// Nonce length prepended to every sealed blob.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length appended by the AEAD.
pub const TAG_LEN: usize = 16;

/// Encrypt and authenticate `plaintext` (binding `aad`): `nonce(24) ‖ ciphertext ‖ tag`.
pub fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    random_fill(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    // Encryption fails only beyond the AEAD's 256 GiB message limit, which no caller's
    // in-memory buffer reaches.
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .expect("XChaCha20-Poly1305 encrypts any in-memory message");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Reverse [`seal`]; [`ProtoError::Decrypt`] when the blob is short, was tampered with,
/// or the key or `aad` differ.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(ProtoError::Decrypt);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| ProtoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let key = [9u8; 32];
        let s = seal(&key, b"secret", b"ctx");
        assert_eq!(s.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(open(&key, &s, b"ctx").unwrap(), b"secret");
        assert_eq!(open(&key, &s, b"other"), Err(ProtoError::Decrypt));
        assert_eq!(open(&[8u8; 32], &s, b"ctx"), Err(ProtoError::Decrypt));
        let mut t = s.clone();
        t[30] ^= 1;
        assert_eq!(open(&key, &t, b"ctx"), Err(ProtoError::Decrypt));
        assert_eq!(open(&key, &s[..39], b"ctx"), Err(ProtoError::Decrypt));
        assert_ne!(seal(&key, b"secret", b"ctx"), s, "fresh nonce per call");
    }
}
