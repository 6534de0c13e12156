//! `onepoll-bench`: the load generator (`docs/PROTOCOLS.md`). All the work is in
//! `onepoll::bench`; this parses nothing itself and only sets the exit code.
#![deny(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(onepoll::bench::main(&args));
}
