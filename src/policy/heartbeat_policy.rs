//! Pure policy of the heartbeat seen set (no I/O): which rows to evict when it is over
//! its cap, and which rows to republish at `_dnsmesh-seen`, so that one seed zone serving
//! many valid wires can neither push every other peer out nor fill our republished set.

use std::collections::BTreeMap;

/// Pick `n` rows to evict from `(key, source, ts)`: each time, the oldest row of the source
/// that currently holds the most rows (ties: the source sorting first). A flood from one
/// source thus evicts its own rows before anyone else's.
pub fn evict<'a, K>(rows: impl IntoIterator<Item = (K, &'a str, u64)>, n: usize) -> Vec<K> {
    let mut groups: BTreeMap<&'a str, Vec<(u64, K)>> = BTreeMap::new();
    for (k, src, ts) in rows {
        groups.entry(src).or_default().push((ts, k));
    }
    for g in groups.values_mut() {
        // Newest first, so the oldest is popped from the end.
        g.sort_by_key(|(ts, _)| std::cmp::Reverse(*ts));
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some(g) = groups.values_mut().filter(|g| !g.is_empty()).max_by(|a, b| {
            // max_by keeps the last of equals; compare lengths only, reversed order of
            // iteration gives the first source on ties.
            a.len().cmp(&b.len()).then(std::cmp::Ordering::Greater)
        }) else {
            break;
        };
        if let Some((_, k)) = g.pop() {
            out.push(k);
        }
    }
    out
}

/// Pick up to `n` rows of `(source, ts)` (by index) round-robin over their sources, newest
/// first within each source; sources are visited in order of their newest row.
pub fn diverse<'a>(rows: impl IntoIterator<Item = (&'a str, u64)>, n: usize) -> Vec<usize> {
    let mut groups: BTreeMap<&'a str, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, (src, ts)) in rows.into_iter().enumerate() {
        groups.entry(src).or_default().push((ts, i));
    }
    let mut lists: Vec<Vec<(u64, usize)>> = groups
        .into_values()
        .map(|mut g| {
            g.sort_by_key(|&(ts, i)| (std::cmp::Reverse(ts), i));
            g
        })
        .collect();
    lists.sort_by_key(|g| std::cmp::Reverse(g[0].0));
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        let mut any = false;
        for g in &lists {
            if let Some(&(_, i)) = g.get(round) {
                any = true;
                if out.len() < n {
                    out.push(i);
                }
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_from_the_largest_source_first() {
        // "evil" has 6 fresh rows, "good" 2 older ones.
        let mut rows = vec![];
        for i in 0..6u64 {
            rows.push((format!("e{i}"), "evil", 100 + i));
        }
        rows.push(("g0".into(), "good", 10));
        rows.push(("g1".into(), "good", 11));
        let v = evict(rows.iter().map(|(k, s, t)| (k.clone(), *s, *t)), 4);
        assert_eq!(v, vec!["e0", "e1", "e2", "e3"]);
        // Once the sources are level, the oldest of the first (ties) goes.
        let v = evict(rows.iter().map(|(k, s, t)| (k.clone(), *s, *t)), 6);
        assert_eq!(v.len(), 6);
        assert!(v.contains(&"g0".to_string()), "{v:?}");
        assert!(!v.contains(&"g1".to_string()), "{v:?}");
        assert_eq!(evict(rows.iter().map(|(k, s, t)| (k.clone(), *s, *t)), 99).len(), 8);
    }

    #[test]
    fn republished_set_alternates_sources() {
        let mut rows = vec![];
        for i in 0..100u64 {
            rows.push(("evil", 1000 + i));
        }
        rows.push(("a", 5));
        rows.push(("b", 7));
        rows.push(("b", 6));
        let picked = diverse(rows.iter().copied(), 6);
        let srcs: Vec<&str> = picked.iter().map(|&i| rows[i].0).collect();
        assert_eq!(srcs, vec!["evil", "b", "a", "evil", "b", "evil"]);
        assert_eq!(rows[picked[0]].1, 1099, "newest first within a source");
        assert_eq!(diverse(rows.iter().copied(), 1000).len(), rows.len());
        assert!(diverse(std::iter::empty(), 5).is_empty());
    }
}
