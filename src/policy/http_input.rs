//! The HTTP write routes' input rules, pure: the path segment to a record name, the
//! reference's name and value rules, the zone check, and the JSON bodies of a publish
//! and a delete. `actors/http.rs` calls them; so does the `http_json` fuzz target.

/// Path segment → stored name: URL-decoded (by actix), trimmed, trailing dot removed.
pub fn clean_name(raw: &str) -> String {
    raw.trim().trim_end_matches('.').to_string()
}

/// Reference name rule: labels `_?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?`, ≤ 253.
pub fn valid_record_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        let l = label.strip_prefix('_').unwrap_or(label).as_bytes();
        !l.is_empty()
            && l.len() <= 63
            && l[0].is_ascii_alphanumeric()
            && l[l.len() - 1].is_ascii_alphanumeric()
            && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    })
}

/// True when `name` (lower-cased) is the served zone or a name under it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|head| head.ends_with('.'))
}

/// Reference value rule: no `"`, no control characters, no DEL.
pub fn valid_record_value(v: &str) -> bool {
    !v.chars().any(|c| c == '"' || (c as u32) < 0x20 || c as u32 == 0x7f)
}

/// A publish body, `{"value": str, "ttl": int > 0}` (`ttl` defaults to 300) → (value,
/// ttl), or the 400 message.
pub fn publish_body(body: &[u8]) -> Result<(String, u64), &'static str> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err("invalid body");
    };
    let value = v.get("value").and_then(|x| x.as_str());
    let ttl = match v.get("ttl") {
        None => Some(300),
        Some(t) => {
            t.as_u64().filter(|t| *t > 0 && !t.to_string().is_empty()).filter(|_| t.is_u64())
        }
    };
    let (Some(value), Some(ttl)) = (value, ttl) else {
        return Err("value (str) and ttl (int > 0) required");
    };
    Ok((value.to_string(), ttl))
}

/// A delete body: empty (or blank) or without `value` deletes the name, `{"value": str}`
/// one value; anything else is the 400 message.
pub fn delete_body(body: &[u8]) -> Result<Option<String>, &'static str> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("value") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err("value must be a string"),
        },
        Err(_) => Err("invalid body"),
    }
}
