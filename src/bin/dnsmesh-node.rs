//! `dnsmesh-node`: the DMP node. (Runtime lands with the node-runtime issue.)
fn main() {
    eprintln!("dnsmesh-node: not yet implemented");
    std::process::exit(1);
}
