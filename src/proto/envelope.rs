//! DMPv2 plaintext envelope (protocol §5.4): `DMPV2:` ‖ header JSON ‖ `\n` ‖ body,
//! carried only inside the AEAD plaintext. The header names the sender's address; the
//! receiver displays it only after checking it against the sender's identity record.

/// Magic that starts an enveloped plaintext.
pub const PREFIX: &[u8] = b"DMPV2:";
/// Largest header the decoder looks for a terminator in.
pub const MAX_HEADER_LEN: usize = 256;
/// Longest host part of an address.
const MAX_HOST_LEN: usize = 253;
/// Longest local part of an address.
const MAX_LOCAL_LEN: usize = 64;

fn valid_local(local: &str) -> bool {
    let b = local.as_bytes();
    let allowed = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c);
    matches!(b.first(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.len() <= MAX_LOCAL_LEN
        && b.iter().all(allowed)
        && !local.ends_with('.')
        && !local.contains("..")
}

/// An LDH label `[a-z0-9]([a-z0-9-]*[a-z0-9])?` of any length (callers add their cap).
/// Shared with the registration subject and name rules.
pub(crate) fn ldh_label(label: &str) -> bool {
    let b = label.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Canonicalise `user@host` (§5.4): ASCII only, surrounding whitespace stripped,
/// lower-cased, exactly one `@`, trailing dots of the host stripped, local part
/// `[a-z0-9][a-z0-9_.-]{0,63}` without a trailing `.` or `..`, host ≤ 253 bytes of
/// `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?` labels. `None` when it does not canonicalise.
///
/// Strict where the reference's `$` anchor lets an embedded newline through (trap T27).
pub fn canonicalize_address(addr: &str) -> Option<String> {
    if !addr.is_ascii() {
        return None;
    }
    // Python's str.strip(): ASCII whitespace plus the separators 0x1c..0x1f.
    let s = addr
        .trim_matches(|c: char| {
            c.is_ascii_whitespace() || ('\x1c'..='\x1f').contains(&c) || c == '\x0b'
        })
        .to_ascii_lowercase();
    let (local, host) = s.split_once('@')?;
    if host.contains('@') {
        return None;
    }
    let host = host.trim_end_matches('.');
    if !valid_local(local) || host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    if !host.split('.').all(|l| l.len() <= 63 && ldh_label(l)) {
        return None;
    }
    Some(format!("{local}@{host}"))
}

/// Wrap `body` in a DMPv2 envelope naming `sender_addr`. Without an address, when it
/// does not canonicalise, or when the header would exceed [`MAX_HEADER_LEN`] (a
/// canonical address can be 318 bytes; the decoder only looks 256 bytes ahead), the
/// body is returned unwrapped (v1 plaintext), as the reference does.
pub fn encode(body: &[u8], sender_addr: Option<&str>) -> Vec<u8> {
    let Some(from) = sender_addr.and_then(canonicalize_address) else {
        return body.to_vec();
    };
    // Canonical addresses are plain ASCII without quotes or backslashes, so the
    // reference's `json.dumps(sort_keys, compact, ensure_ascii)` is exactly this.
    let header = format!("{{\"from\":\"{from}\"}}");
    if header.len() > MAX_HEADER_LEN {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(PREFIX.len() + header.len() + 1 + body.len());
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Split a decrypted plaintext into `(body, claimed sender)`. Anything that is not a
/// well-formed envelope (no prefix, no `\n` within 257 bytes after it, header not an
/// ASCII JSON object) is a v1 plaintext: the whole input is the body. Unknown header keys
/// are ignored; a missing or non-canonical `from` gives `None`.
pub fn decode(plaintext: &[u8]) -> (Vec<u8>, Option<String>) {
    let whole = || (plaintext.to_vec(), None);
    let Some(rest) = plaintext.strip_prefix(PREFIX) else {
        return whole();
    };
    let window = &rest[..rest.len().min(MAX_HEADER_LEN + 1)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return whole();
    };
    let (header, body) = (&rest[..nl], &rest[nl + 1..]);
    if !header.is_ascii() {
        return whole();
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(header)
    else {
        return whole();
    };
    let from = map.get("from").and_then(|v| v.as_str()).and_then(canonicalize_address);
    (body.to_vec(), from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonicalize_address(" ALICE@Example.COM. ").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(canonicalize_address("a.b_c-d@x"), Some("a.b_c-d@x".into()));
        assert_eq!(canonicalize_address("alice\n@example.com"), None);
        assert_eq!(canonicalize_address("a..b@x.com"), None);
        assert_eq!(canonicalize_address("a.@x.com"), None);
        assert_eq!(canonicalize_address("_a@x.com"), None);
        assert_eq!(canonicalize_address("a@b@x.com"), None);
        assert_eq!(canonicalize_address("a@-x.com"), None);
        assert_eq!(canonicalize_address("é@x.com"), None);
    }
}
