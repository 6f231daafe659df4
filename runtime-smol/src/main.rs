//! The `postern` binary.

fn main() {
    eprintln!("postern: the daemon is not built yet");
    std::process::exit(2);
}
