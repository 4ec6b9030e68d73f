//! Base64 as the reference decodes it: "strict" (Python `validate=True`) for the six
//! newer record types, "lenient" (Python's default, which silently drops characters
//! outside the alphabet) for chunk, manifest, identity and prekey. Encoding is always
//! canonical, padded, standard alphabet.
//!
//! Both decoders replicate CPython 3.11's `binascii.a2b_base64` state machine (the
//! reference runs on it), so edge cases agree byte for byte: decoding stops at the first
//! complete padded quantum (`aGk=aGk=` → `hi` leniently), unused trailing bits are
//! ignored (`aGl=` → `hi`), and non-ASCII text is an error (Python raises `ValueError`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Canonical padded standard base64.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Strict decode (Python `b64decode(s, validate=True)`): any character outside
/// `A-Za-z0-9+/=` (whitespace included), leading, discontinuous or excess padding,
/// or a wrong length is an error.
pub fn decode_strict(s: &str) -> Option<Vec<u8>> {
    a2b_base64(s, true)
}

/// Lenient decode, like Python's `base64.b64decode(s)` without `validate`: characters
/// outside the alphabet are discarded; the quantum count and padding must still work out.
pub fn decode_lenient(s: &str) -> Option<Vec<u8>> {
    a2b_base64(s, false)
}

/// Value of one base64 alphabet character, `None` outside the alphabet (and for `=`).
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// CPython 3.11 `binascii.a2b_base64(data, strict_mode=strict)` on ASCII input.
fn a2b_base64(s: &str, strict: bool) -> Option<Vec<u8>> {
    if !s.is_ascii() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 3);
    let mut quad_pos = 0u8;
    let mut left: u8 = 0;
    let mut pads = 0u8;
    let mut padding_started = false;
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'=' {
            padding_started = true;
            if strict && quad_pos == 0 {
                return None;
            }
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    if strict && i + 1 < bytes.len() {
                        return None;
                    }
                    return Some(out);
                }
            }
            continue;
        }
        let Some(v) = sextet(c) else {
            if strict {
                return None;
            }
            continue;
        };
        if strict && padding_started {
            return None;
        }
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    (quad_pos == 0).then_some(out)
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

    /// Expected values taken from CPython 3.11.7 `base64.b64decode(s, validate=…)`.
    #[test]
    fn matches_cpython_edge_cases() {
        let hi = Some(b"hi".to_vec());
        type Case = (&'static str, Option<Vec<u8>>, Option<Vec<u8>>);
        let cases: &[Case] = &[
            ("aGk=aGk=", hi.clone(), None),
            ("aGl=", hi.clone(), hi.clone()),
            ("aG=k=", hi.clone(), None),
            ("a===", None, None),
            ("aGk", None, None),
            ("aG k=", hi.clone(), None),
            ("=aGk=", hi.clone(), None),
            ("aGk==", hi.clone(), None),
            ("aGVsbG8=x", Some(b"hello".to_vec()), None),
            ("", Some(vec![]), Some(vec![])),
            ("aGVsbG8h", Some(b"hello!".to_vec()), Some(b"hello!".to_vec())),
            ("aGké=", None, None),
        ];
        for (s, lenient, strict) in cases {
            assert_eq!(&decode_lenient(s), lenient, "lenient {s:?}");
            assert_eq!(&decode_strict(s), strict, "strict {s:?}");
        }
    }
}
