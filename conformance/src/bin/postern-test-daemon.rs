//! The `postern` command line under another name, so that the conformance
//! tests (which cargo can only point at binaries of their own package) run
//! the very same daemon code as a separate process they can signal and kill.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    postern_runtime_smol::cli::main(&args)
}
