//! The module layering ARCHITECTURE.md promises, checked on the source text:
//! - the CLI's modules import each other without cycles (pure data and clients below the
//!   commands);
//! - the protocol core and the DNS answer path (outside the UDP loop) reach neither the
//!   node, the actors nor the CLI;
//! - actors read time from the injected clock, never from `SystemTime` themselves;
//! - no import cycle between the actors and the node: `actors/` never imports
//!   `crate::node` (the node wires the actors), and the pure policy (`src/policy`) and the
//!   clients (`src/client`) below the actors reach neither the actors, the node nor the CLI;
//!   `src/policy` opens no sockets.

#![cfg(feature = "net")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(read_tree(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// Every identifier `x` in `super::x` paths and `use super::{x, ..}` groups.
fn super_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices("super::") {
        let rest = &src[i + "super::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(0)];
            for item in group.split(',') {
                let head = item.trim().split("::").next().unwrap_or("");
                out.insert(head.trim().to_string());
            }
        } else {
            let id: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.insert(id);
        }
    }
    out
}

#[test]
fn cli_modules_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mods: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let stem = p.file_stem()?.to_str()?.to_string();
            (p.extension().is_some_and(|x| x == "rs") && stem != "mod").then_some(stem)
        })
        .collect();
    for m in &mods {
        let mut text = std::fs::read_to_string(root.join(format!("{m}.rs"))).unwrap();
        // A module's own sub-modules (`dns/union.rs`) count as the module; their
        // `super::` is the module itself, `super::super::` the CLI.
        if root.join(m).is_dir() {
            for (_, t) in read_tree(&root.join(m)) {
                text.push_str(&t.replace("super::super::", "super::"));
            }
        }
        let d = super_refs(&text).into_iter().filter(|x| mods.contains(x) && x != m).collect();
        deps.insert(m.clone(), d);
    }
    // Depth-first search for a cycle.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in &deps[m] {
            if let Some(c) = visit(d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        if let Some(c) = visit(m, &deps, &mut Vec::new(), &mut done) {
            panic!("import cycle in src/cli: {}", c.join(" -> "));
        }
    }
    // The layering itself: plain data and clients never reach the commands.
    for (low, forbidden) in [
        ("state", &["writer", "cluster", "dns", "net", "mail", "account"][..]),
        ("dns", &["cluster", "writer", "state", "mail", "account"][..]),
        ("writer", &["cluster", "mail", "account"][..]),
    ] {
        for f in forbidden {
            assert!(!deps[low].contains(*f), "cli::{low} must not import cli::{f}");
        }
    }
}

#[test]
fn the_core_reaches_no_node_actor_or_cli_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["proto", "dnswire"] {
        for (path, text) in read_tree(&src.join(dir)) {
            if path.ends_with("dnswire/udp.rs") {
                continue; // the UDP loop (feature `net`) is the one I/O part
            }
            for bad in ["crate::node", "crate::actors", "crate::cli", "std::net::UdpSocket"] {
                assert!(!text.contains(bad), "{path} uses {bad}");
            }
        }
    }
}

#[test]
fn actors_take_time_from_the_injected_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = read_tree(&root.join("actors"));
    files.extend(read_tree(&root.join("src/dnswire")));
    files.push((
        "src/node/mod.rs".into(),
        std::fs::read_to_string(root.join("src/node/mod.rs")).unwrap(),
    ));
    for (path, text) in files {
        assert!(
            !text.contains("SystemTime::now"),
            "{path} reads the wall clock itself; take a crate::clock::Clock instead"
        );
    }
}

/// Every `crate::<top>` module a file names (in `use` lines and inline paths), with the
/// file's own `use crate::{a, b}` groups expanded.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(0)];
            for item in group.split(',') {
                out.insert(item.trim().split("::").next().unwrap_or("").trim().to_string());
            }
        } else {
            let id: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.insert(id);
        }
    }
    out
}

#[test]
fn actors_policy_and_clients_never_reach_the_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, forbidden) in [
        ("actors", &["node", "cli"][..]),
        ("src/policy", &["node", "actors", "cli", "client"][..]),
        ("src/client", &["node", "actors", "cli"][..]),
        ("src/files", &["node", "actors", "cli", "client"][..]),
    ] {
        let files = read_tree(&root.join(dir));
        assert!(!files.is_empty(), "{dir} has no sources");
        for (path, text) in files {
            let refs = crate_refs(&text);
            for f in forbidden {
                assert!(!refs.contains(*f), "{path} imports crate::{f} ({dir} sits below it)");
            }
        }
    }
    // The pure policy does no I/O of its own.
    for (path, text) in read_tree(&root.join("src/policy")) {
        for bad in ["std::net::UdpSocket", "std::net::TcpStream", "std::fs::", "tokio::", "sled::"]
        {
            assert!(!text.contains(bad), "{path} uses {bad}");
        }
    }
}

#[test]
fn the_crate_refs_parser_sees_paths_and_groups() {
    let refs = crate_refs("use crate::{node::x, policy};\nfn f() { crate::actors::y(); }");
    let want: BTreeSet<String> = ["node", "policy", "actors"].map(String::from).into();
    assert_eq!(refs, want);
}
