//! The `ferricorn` binary: the command of [`ferricorn::cli`], exiting with
//! its code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(ferricorn::cli::main(&args));
}
