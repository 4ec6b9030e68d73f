//! `dnsmesh`: the companion CLI. (Lands with the CLI issue.)
fn main() {
    eprintln!("dnsmesh: not yet implemented");
    std::process::exit(1);
}
