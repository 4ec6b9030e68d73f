//! Base64 as the reference decodes it: "strict" (Python `validate=True`) for the six
//! newer record types, "lenient" (Python's default, which silently drops characters
//! outside the alphabet) for chunk, manifest, identity and prekey. Encoding is always
//! canonical, padded, standard alphabet.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Canonical padded standard base64.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Strict decode: any character outside `A-Za-z0-9+/=` (whitespace included) or bad
/// padding is an error.
pub fn decode_strict(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s.as_bytes()).ok()
}

/// Lenient decode, like Python's `base64.b64decode(s)` without `validate`: characters
/// outside the alphabet are discarded first; padding must still be correct.
pub fn decode_lenient(s: &str) -> Option<Vec<u8>> {
    let filtered: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/' || *b == b'=')
        .collect();
    // Python's binascii stops at the first complete padded quantum; data after
    // padding is an error only in strict mode. Mirror the common case: decode the
    // whole filtered text with the standard engine.
    STANDARD.decode(&filtered).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_rejects_whitespace_lenient_skips_it() {
        assert_eq!(decode_strict("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_strict("aG k="), None);
        assert_eq!(decode_lenient("aG k=\n"), Some(b"hi".to_vec()));
        assert_eq!(decode_lenient("aGk"), None);
    }
}
