//! Prometheus text exposition helpers (pure): label values escaped as the format requires,
//! and bounded label sets for values a client chooses (HTTP methods, routes).

use std::borrow::Cow;

/// Escape a label value for the text exposition format (version 0.0.4): a backslash
/// becomes `\\`, a double quote `\"`, a line feed `\n`. Nothing else needs escaping.
pub fn escape_label(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The `method` label of an HTTP request: one of the standard methods, or `other` for
/// anything a client made up (so the label set stays bounded).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// The `status` label: a real HTTP status code (100–599) or 0 for anything else, so the
/// set is bounded whatever a handler returns.
pub fn status_label(status: u16) -> u16 {
    if (100..600).contains(&status) {
        status
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("http://a.example:8053"), "http://a.example:8053");
        assert_eq!(escape_label(r#"x"} 1 evil{a="b"#), r#"x\"} 1 evil{a=\"b"#);
        assert_eq!(escape_label("a\\b"), "a\\\\b");
        assert_eq!(escape_label("a\nb"), "a\\nb");
        // A value ending in a backslash cannot escape the closing quote.
        assert_eq!(escape_label("a\\"), "a\\\\");
    }

    #[test]
    fn an_escaped_value_parses_back_to_itself_and_nothing_more() {
        // A minimal parser of one `name{l="v"} n` line, as a scraper reads it.
        fn parse(line: &str) -> Option<(String, String)> {
            let rest = line.strip_prefix("m{l=\"")?;
            let mut val = String::new();
            let mut it = rest.chars();
            loop {
                match it.next()? {
                    '\\' => match it.next()? {
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        'n' => val.push('\n'),
                        _ => return None,
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            Some((val, it.collect()))
        }
        for v in ["plain", "q\"uote", "back\\slash", "\\\"}\n1 x{y=\"", "end\\"] {
            let line = format!("m{{l=\"{}\"}} 7", escape_label(v));
            assert_eq!(line.lines().count(), 1, "{line}");
            let (got, tail) = parse(&line).unwrap_or_else(|| panic!("unparsable: {line}"));
            assert_eq!(got, v);
            assert_eq!(tail, "} 7");
        }
    }

    #[test]
    fn made_up_methods_fold_into_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("XYZZY"), "other");
        assert_eq!(method_label("get"), "other");
        assert_eq!(status_label(404), 404);
        assert_eq!(status_label(999), 0);
    }
}
