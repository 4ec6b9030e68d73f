//! TXT character-strings (protocol §1.3): values over 255 bytes travel as several
//! ≤ 255-byte strings in one RR; readers join them with no separator.

/// Split a value into ≤ 255-byte character-strings. An empty value is one empty string.
pub fn split(value: &[u8]) -> Vec<&[u8]> {
    if value.is_empty() {
        return vec![value];
    }
    value.chunks(255).collect()
}

/// Join the strings of one TXT RR.
pub fn join<S: AsRef<[u8]>>(strings: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity(strings.iter().map(|s| s.as_ref().len()).sum());
    for s in strings {
        out.extend_from_slice(s.as_ref());
    }
    out
}

/// Encode a value as TXT RDATA: each string prefixed by its length byte.
pub fn to_rdata(value: &[u8]) -> Vec<u8> {
    let parts = split(value);
    let mut out = Vec::with_capacity(value.len() + parts.len());
    for p in parts {
        out.push(p.len() as u8);
        out.extend_from_slice(p);
    }
    out
}

/// Decode TXT RDATA (length-prefixed strings) into the joined value.
/// Returns `None` when a length byte points past the end.
pub fn from_rdata(rdata: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(rdata.len());
    let mut i = 0;
    while i < rdata.len() {
        let n = rdata[i] as usize;
        let s = rdata.get(i + 1..i + 1 + n)?;
        out.extend_from_slice(s);
        i += 1 + n;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_join_roundtrip() {
        let v: Vec<u8> = (0..600u32).map(|i| b'a' + (i % 26) as u8).collect();
        let parts = split(&v);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![255, 255, 90]);
        assert_eq!(join(&parts), v);
        assert_eq!(from_rdata(&to_rdata(&v)).unwrap(), v);
        assert_eq!(to_rdata(b""), vec![0]);
        assert_eq!(from_rdata(&[5, b'a']), None);
    }
}
