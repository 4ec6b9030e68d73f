//! Operator tooling of both binaries: `--version`, shell completions and man pages
//! generated from the clap definitions (`dnsmesh-node generate completions|man`).

#![cfg(feature = "net")]

use std::collections::BTreeSet;
use std::process::Command;

const NODE: &str = env!("CARGO_BIN_EXE_dnsmesh-node");
const CLI: &str = env!("CARGO_BIN_EXE_dnsmesh");

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(out.status.success(), "{bin} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under "Commands:" in `bin args… --help`.
fn subcommands(bin: &str, path: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let help = run(bin, &args);
    let Some(section) = help.split("Commands:\n").nth(1) else { return vec![] };
    section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// Every subcommand path of `bin`, depth first (e.g. ["admin", "list"]).
fn all_paths(bin: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let p: Vec<&str> = prefix.iter().map(String::as_str).collect();
    for sub in subcommands(bin, &p) {
        let mut path = prefix.clone();
        path.push(sub);
        out.push(path.clone());
        all_paths(bin, path, out);
    }
}

#[test]
fn version_flags() {
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(run(NODE, &["--version"]).trim(), format!("dnsmesh-node {v}"));
    assert_eq!(run(CLI, &["--version"]).trim(), format!("dnsmesh {v}"));
}

#[test]
fn bash_completions_name_every_subcommand() {
    for (bin, name) in [(NODE, "dnsmesh-node"), (CLI, "dnsmesh")] {
        let script = run(NODE, &["generate", "completions", "bash", "--for", name]);
        assert!(script.contains(&format!("complete -F _{}", name.replace('-', "__"))), "{script}");
        let mut paths = vec![];
        all_paths(bin, vec![], &mut paths);
        assert!(paths.len() > 1, "{name} has subcommands");
        for path in paths {
            // bash completion has a case per (parent state, word), e.g. `dnsmesh__node__subcmd__admin,list)`.
            let mut key = name.replace('-', "__");
            for p in &path[..path.len() - 1] {
                key.push_str("__subcmd__");
                key.push_str(&p.replace('-', "__subcmd__"));
            }
            key = format!("{key},{})", path[path.len() - 1]);
            assert!(script.contains(&key), "{name}: no completion state {key}");
        }
    }
    let zsh = run(NODE, &["generate", "completions", "zsh"]);
    assert!(zsh.starts_with("#compdef dnsmesh-node"), "{zsh}");
}

#[test]
fn man_pages_render_with_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let listed = run(NODE, &["generate", "man", dir.path().to_str().unwrap()]);
    let files: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.lines().count(), files.len(), "{listed}");
    for (bin, name) in [(NODE, "dnsmesh-node"), (CLI, "dnsmesh")] {
        let page = format!("{name}.1");
        assert!(files.contains(&page), "{files:?}");
        let mut paths = vec![];
        all_paths(bin, vec![], &mut paths);
        for path in paths {
            let sub = format!("{name}-{}.1", path.join("-"));
            // `dnsmesh node` would be `dnsmesh-node.1`: it lives in dnsmesh.1 only.
            if sub == "dnsmesh-node.1" {
                continue;
            }
            assert!(files.contains(&sub), "no man page {sub} in {files:?}");
        }
    }
    // Each page is valid roff: man renders it, and the top page names its subcommands.
    for f in &files {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join(f))
            .env("MANWIDTH", "100")
            .output()
            .expect("man (man-db)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l {f}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{f}: {text}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let top = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("dnsmesh-node.1"))
        .env("MANWIDTH", "200")
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout).replace(['\u{2010}', '\u{2011}'], "-");
    for sub in subcommands(NODE, &[]) {
        assert!(top.contains(&format!("dnsmesh-node-{sub}(1)")), "{sub} missing from {top}");
    }
}
