//! DNS-name validation used inside signed records (protocol §1.5): cluster names,
//! bootstrap domains, rotation subjects.

/// Validate per §1.5 and return the name with one trailing dot stripped.
/// Rejects: empty, trailing `..`, non-ASCII, empty labels, labels over 63 characters,
/// characters outside `[A-Za-z0-9-]`, labels starting or ending with `-`.
pub fn validate(name: &str) -> Option<&str> {
    if name.is_empty() || name.ends_with("..") || !name.is_ascii() {
        return None;
    }
    let stripped = name.strip_suffix('.').unwrap_or(name);
    if stripped.is_empty() {
        return None;
    }
    for label in stripped.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return None;
        }
    }
    Some(stripped)
}

/// Python's `str.casefold()` restricted to what DNS names can hold after [`validate`]
/// (ASCII): plain lower-casing.
pub fn casefold(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn rules() {
        assert_eq!(validate("mesh.example.com."), Some("mesh.example.com"));
        assert_eq!(validate("a..b"), None);
        assert_eq!(validate("example.com.."), None);
        assert_eq!(validate("_dmp.example.com"), None);
        assert_eq!(validate("-a.com"), None);
        assert_eq!(validate(&format!("{}.com", "a".repeat(64))), None);
        assert_eq!(validate(""), None);
        assert_eq!(validate("."), None);
    }
}
