//! Shell completions and man pages generated from the clap definitions of `dnsmesh-node`
//! and `dnsmesh` (`dnsmesh-node generate completions SHELL [--for BIN]`,
//! `dnsmesh-node generate man DIR`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `cmd`'s completion script for `shell` to `out`.
pub fn completions(
    mut cmd: clap::Command,
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut buf = vec![];
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    out.write_all(&buf)
}

/// Write one man page per command and visible subcommand of every command in `cmds` into
/// `dir` (created if missing), e.g. `dnsmesh-node.1`, `dnsmesh-node-admin.1`. Returns the
/// files written. A subcommand whose page would take a program's own page name (`dnsmesh
/// node` → `dnsmesh-node.1`) is described in its parent's page only.
pub fn man_pages(cmds: Vec<clap::Command>, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let programs: Vec<String> = cmds.iter().map(|c| c.get_name().to_string()).collect();
    let mut written = vec![];
    for cmd in cmds {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            page(sub, dir, &programs, &mut written)?;
        }
        written.push(man(&cmd).generate_to(dir)?);
    }
    Ok(written)
}

fn man(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone()).source(concat!("dnsmesh ", env!("CARGO_PKG_VERSION")))
}

fn page(
    cmd: &clap::Command,
    dir: &Path,
    programs: &[String],
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, dir, programs, written)?;
    }
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    if !programs.iter().any(|p| p == name) {
        written.push(man(cmd).generate_to(dir)?);
    }
    Ok(())
}
