//! `postern`: see [`postern_runtime_smol::cli`].

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    postern_runtime_smol::cli::main(&args)
}
