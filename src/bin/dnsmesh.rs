//! `dnsmesh`: the companion CLI (see `dnsmesh::cli`).
fn main() {
    std::process::exit(dnsmesh::cli::main());
}
