//! The `postern` command line: one daemon for a self-hosted mail domain.
//!
//! ```text
//! postern serve                   run the embedded development default
//! postern serve --config FILE     run with a configuration file
//! postern check-config FILE       check a configuration file and exit
//! ```

use crate::{config, devdefault, server};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage:
  postern serve                  run the embedded development default (loopback, ./postern-data)
  postern serve --config FILE    run with a configuration file
  postern check-config FILE      check a configuration file and exit
environment: POSTERN_LOG=error|warn|info|debug (default info)";

fn init_logs() {
    let level = match std::env::var("POSTERN_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .init();
}

/// Runs the command line (`args` without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve"] => serve_default(),
        ["serve", "--config", file] | ["serve", "-c", file] => serve_file(Path::new(file)),
        ["check-config", file] => match config::Config::load(Path::new(file)) {
            Ok(c) => {
                println!(
                    "{}: ok ({} listeners, hostname {})",
                    c.file.display(),
                    c.listeners.len(),
                    c.hostname
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        ["--version"] | ["-V"] => {
            println!("postern {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve_default() -> ExitCode {
    let dir = PathBuf::from("postern-data");
    let setup = match devdefault::prepare(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = match config::Config::load(&setup.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: embedded default: {e}");
            return ExitCode::from(1);
        }
    };
    let abs = std::fs::canonicalize(&dir).unwrap_or(dir);
    println!("Postern development server (embedded default)");
    println!("  data and configuration: {}", abs.display());
    println!("  domain:                 {}", devdefault::DOMAIN);
    println!(
        "  demo account:           {}  password: {}",
        devdefault::DEMO_USER,
        setup.password
    );
    for l in &cfg.listeners {
        println!(
            "  {:<22} {:?} (TLS {:?})",
            l.address.to_string(),
            l.protocol,
            l.tls
        );
    }
    println!(
        "  try: swaks --server 127.0.0.1:2525 --to {} --from you@example.net",
        devdefault::DEMO_USER
    );
    println!(
        "  mail lands in {}/mail/{}/demo/new/",
        abs.display(),
        devdefault::DOMAIN
    );
    run(cfg)
}

fn serve_file(path: &Path) -> ExitCode {
    match config::Config::load(path) {
        Ok(cfg) => run(cfg),
        Err(e) => {
            eprintln!("postern: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: config::Config) -> ExitCode {
    init_logs();
    let srv = match server::Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    smol::block_on(async {
        let bound = match server::bind(&srv).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(1);
            }
        };
        // One line a test harness can wait for (the ports actually bound).
        let addrs: Vec<String> = bound.addresses().iter().map(ToString::to_string).collect();
        tracing::info!("ready: {}", addrs.join(" "));
        server::serve(srv, bound).await;
        ExitCode::SUCCESS
    })
}
