//! The `postern` command line: one daemon for a self-hosted mail domain.
//!
//! ```text
//! postern serve                   run the embedded development default
//! postern serve --config FILE     run with a configuration file
//! postern check-config FILE       check a configuration file and exit
//! postern check-config --dms DIR [--mail DIR] [--state DIR]
//!                                 what Postern reads of a docker-mailserver tree
//! postern probe --config FILE     the end-to-end roundtrip probe (see `probe`)
//! ```

use crate::{config, devdefault, listen, server};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage:
  postern serve                  run the embedded development default (loopback, ./postern-data)
  postern serve --config FILE    run with a configuration file
  postern check-config FILE      check a configuration file (and every file it names) and exit
  postern check-config --dms DIR [--mail DIR] [--state DIR]
                                 list what Postern reads of a docker-mailserver tree (config
                                 folder, Maildir root, state folder) and what it does not
  postern queue --config FILE list | show ID | retry ID|all | delete ID
                                 inspect and manage the outbound queue (the spool folder,
                                 or the database's with [store] backend = \"postgres\")
  postern store --config FILE import-maildir DIR
                                 copy a Maildir tree (DIR/<domain>/<user>/, Dovecot's
                                 UIDs, flags and keywords kept) into [store] backend =
                                 \"postgres\"; run again to copy only what is missing
  postern store --config FILE export-maildir DIR
                                 write every account of [store] backend = \"postgres\"
                                 into a Maildir tree at DIR (absent or empty), keeping
                                 UIDVALIDITY, UIDs, flags and keywords
  postern store --config FILE gc [--grace-secs N]
                                 remove from the bucket the message bodies of [store]
                                 backend = \"postgres\" that no message refers to and
                                 nobody wanted for N seconds (default 86400)
  postern probe --config FILE    send a marked message, find it over IMAP, delete it,
                                 push the result to a Pushgateway (exit 1 on failure)
environment: POSTERN_LOG=error|warn|info|debug (default info)
             SMOL_THREADS=N threads running sessions (default: one per core)";

/// Descriptors kept free of client connections (spool and Maildir files,
/// listeners, the relay's connections, certificate reloads, logs).
const FD_HEADROOM: u64 = 256;

/// Sets the number of threads that run sessions to one per core, unless
/// `SMOL_THREADS` says otherwise. smol's global executor reads the variable
/// when it first spawns a task, so this runs before that, while the
/// process has a single thread (nothing else reads the environment then).
fn executor_threads() -> usize {
    if let Some(n) = std::env::var("SMOL_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    std::env::set_var("SMOL_THREADS", n.to_string());
    n
}

/// Raises the soft limit on open descriptors to the hard limit; returns
/// (before, after). `None` when the limit cannot be read or is unlimited.
fn raise_descriptor_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (now.current, now.maximum) else {
        return (now.current, now.current);
    };
    if maximum <= current {
        return (Some(current), Some(current));
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => (Some(current), Some(maximum)),
        Err(_) => (Some(current), Some(current)),
    }
}

/// Keeps [`FD_HEADROOM`] descriptors free of SMTP sessions: lowers
/// `max_connections` (and the per-client cap) to fit under `limit`.
fn fit_connections(cfg: &mut config::Config, limit: u64) {
    let room = usize::try_from(limit.saturating_sub(FD_HEADROOM))
        .unwrap_or(usize::MAX)
        .max(1);
    if cfg.max_connections > room {
        tracing::warn!(
            "smtp.max_connections = {} does not fit the descriptor limit {limit} with {FD_HEADROOM} kept free: using {room}",
            cfg.max_connections
        );
        cfg.max_connections = room;
        let cap = u32::try_from(room).unwrap_or(u32::MAX);
        cfg.max_connections_per_client = cfg.max_connections_per_client.min(cap);
    }
}

/// Sets up `tracing` and the `[log]` format: with `syslog`, the Postfix
/// and Dovecot lines go to stdout or `[log] file` and the other lines to
/// stderr (stdout when a file is set).
fn init_logs(log: &config::LogConfig, hostname: &str) -> std::io::Result<()> {
    let level = match std::env::var("POSTERN_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let fmt = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    if log.format == config::LogFormat::Syslog && log.file.is_none() {
        fmt.with_writer(std::io::stderr).init();
    } else {
        fmt.init();
    }
    crate::logs::init(log, hostname)
}

/// Runs the command line (`args` without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve"] => serve_default(),
        ["serve", "--config", file] | ["serve", "-c", file] => serve_file(Path::new(file)),
        ["check-config", "--dms", dir, rest @ ..] => check_dms(dir, rest),
        ["check-config", file] => {
            match config::Config::load(Path::new(file)).and_then(|c| c.check_files().map(|()| c)) {
                Ok(c) => {
                    for w in c.warnings() {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{}: ok ({} listeners, hostname {})",
                        c.file.display(),
                        c.listeners.len(),
                        c.hostname
                    );
                    // The accounts file in a docker-mailserver config folder:
                    // say what else is there and what is not read.
                    match dms_paths_of(&c) {
                        Some(paths) => report_dms(&paths),
                        None => ExitCode::SUCCESS,
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        ["queue", "--config", file, rest @ ..] | ["queue", "-c", file, rest @ ..] => {
            queue(Path::new(file), rest)
        }
        ["store", "--config", file, "import-maildir", dir]
        | ["store", "-c", file, "import-maildir", dir] => {
            crate::pgstore::import_main(Path::new(file), Path::new(dir))
        }
        ["store", "--config", file, "export-maildir", dir]
        | ["store", "-c", file, "export-maildir", dir] => {
            crate::pgstore::export_main(Path::new(file), Path::new(dir))
        }
        ["store", "--config", file, "gc"] | ["store", "-c", file, "gc"] => {
            crate::pgstore::gc_main(Path::new(file), crate::pgstore::GC_GRACE_SECS)
        }
        ["store", "--config", file, "gc", "--grace-secs", secs]
        | ["store", "-c", file, "gc", "--grace-secs", secs] => match secs.parse::<u64>() {
            Ok(s) => crate::pgstore::gc_main(Path::new(file), s),
            Err(_) => {
                eprintln!("postern: --grace-secs wants a number of seconds, not {secs:?}");
                ExitCode::from(2)
            }
        },
        ["probe", "--config", file] | ["probe", "-c", file] => crate::probe::main(Path::new(file)),
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

/// `check-config --dms DIR [--mail DIR] [--state DIR]`.
fn check_dms(dir: &str, rest: &[&str]) -> ExitCode {
    let mut paths = crate::dms::DmsPaths {
        config: PathBuf::from(dir),
        ..Default::default()
    };
    let mut it = rest.iter();
    while let Some(opt) = it.next() {
        let slot = match *opt {
            "--mail" => &mut paths.mail,
            "--state" => &mut paths.state,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        let Some(value) = it.next() else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        *slot = Some(PathBuf::from(value));
    }
    report_dms(&paths)
}

/// The docker-mailserver folders a configuration points into: its accounts
/// file is `postfix-accounts.cf` (DMS's name); the Maildir root is
/// `data_dir` and the state folder the parent of `queue_dir`.
fn dms_paths_of(c: &config::Config) -> Option<crate::dms::DmsPaths> {
    if c.accounts.file_name()? != "postfix-accounts.cf" {
        return None;
    }
    Some(crate::dms::DmsPaths {
        config: c.accounts.parent()?.to_owned(),
        mail: Some(c.data_dir.clone()),
        state: c.queue_dir.parent().map(Path::to_owned),
    })
}

/// Prints the report; exit 1 when it names an error.
fn report_dms(paths: &crate::dms::DmsPaths) -> ExitCode {
    let report = crate::dms::examine(paths);
    println!("{report}");
    if report.errors() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
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
    println!(
        "  read it back: curl -k 'imaps://127.0.0.1:10993/INBOX;UID=1' -u {}:{}",
        devdefault::DEMO_USER,
        setup.password
    );
    println!("  metrics: curl http://127.0.0.1:9100/metrics (and /healthz, /readyz)");
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

fn run(mut cfg: config::Config) -> ExitCode {
    // Before any thread is started (the executor's, the commit thread).
    let threads = executor_threads();
    if let Err(e) = init_logs(&cfg.log, &cfg.hostname) {
        eprintln!(
            "postern: log file {}: {e}",
            cfg.log.file.as_deref().unwrap_or(Path::new("-")).display()
        );
        return ExitCode::from(1);
    }
    let (before, after) = raise_descriptor_limit();
    match (before, after) {
        (Some(b), Some(a)) if a > b => {
            tracing::info!("open descriptor limit raised from {b} to {a} (the hard limit)");
        }
        _ => {}
    }
    if let Some(limit) = after {
        fit_connections(&mut cfg, limit);
    }
    tracing::info!("sessions run on {threads} executor thread(s)");
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let srv = match server::Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    smol::block_on(async {
        let bound = match listen::bind(&srv).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(1);
            }
        };
        // One line a test harness can wait for (the ports actually bound).
        let addrs: Vec<String> = bound.addresses().iter().map(ToString::to_string).collect();
        tracing::info!("ready: {}", addrs.join(" "));
        listen::serve(srv, bound).await;
        ExitCode::SUCCESS
    })
}

fn queue(config: &Path, args: &[&str]) -> ExitCode {
    use postern_adapters::spool::Spool;
    use postern_adapters::store::Queue;
    let cfg = match config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    // The queue of the configured backend: the spool folder, or the
    // database's.
    let spool: std::sync::Arc<dyn Queue> = match &cfg.store {
        config::store::StoreBackend::Maildir => match Spool::open(&cfg.queue_dir) {
            Ok(s) => std::sync::Arc::new(s),
            Err(e) => {
                eprintln!("postern: queue {}: {e}", cfg.queue_dir.display());
                return ExitCode::from(1);
            }
        },
        config::store::StoreBackend::Postgres(s) => match crate::pgstore::open_queue(s) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let now = crate::clock::unix_now();
    let fail = |e: postern_adapters::store::QueueError| {
        eprintln!("postern: {e}");
        ExitCode::from(1)
    };
    match args {
        ["list"] => {
            let (msgs, broken) = match spool.list() {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            for m in &msgs {
                let pending: Vec<&str> = m.pending().map(|r| r.address.as_str()).collect();
                let next = m.next_attempt.saturating_sub(now);
                println!(
                    "{}  age {}s  from <{}>  attempts {}  next in {}s  pending {}",
                    m.id,
                    now.saturating_sub(m.created),
                    m.from,
                    m.attempts,
                    next,
                    pending.join(", ")
                );
            }
            for b in broken {
                println!("unreadable: {b}");
            }
            let st = spool.stats(now).unwrap_or_default();
            println!(
                "-- {} queued, {} deferred, oldest {} s",
                st.size, st.deferred, st.oldest_age
            );
            ExitCode::SUCCESS
        }
        ["show", id] => match spool.load(id) {
            Ok(m) => {
                println!(
                    "id {}\nfrom <{}>\nqueued {}\nattempts {}\nnext attempt in {} s",
                    m.id,
                    m.from,
                    m.created,
                    m.attempts,
                    m.next_attempt.saturating_sub(now)
                );
                for r in &m.rcpts {
                    println!(
                        "  {:<9} <{}> {}",
                        format!("{:?}", r.status).to_lowercase(),
                        r.address,
                        r.last_reply
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        ["retry", which] => {
            let ids: Vec<String> = if *which == "all" {
                match spool.list() {
                    Ok((m, _)) => m.into_iter().map(|m| m.id).collect(),
                    Err(e) => return fail(e),
                }
            } else {
                vec![(*which).to_owned()]
            };
            for id in ids {
                if let Err(e) = spool.retry_now(&id) {
                    return fail(e);
                }
                println!("{id}: due now (the daemon retries at its next queue scan)");
            }
            ExitCode::SUCCESS
        }
        ["delete", id] => match spool.remove(id) {
            Ok(()) => {
                println!("{id}: deleted");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_under_the_descriptor_limit_with_headroom() {
        let text = "hostname = \"mx.example.com\"\ndata_dir = \"mail\"\n[directory]\n\
                    accounts = \"a.cf\"\n[smtp]\nmax_connections = 2000\n\
                    max_connections_per_client = 50\n[[listener]]\n\
                    address = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n";
        let mut cfg = config::Config::parse(text, Path::new("p.toml"), Path::new("/")).unwrap();
        fit_connections(&mut cfg, 1_048_576);
        assert_eq!(cfg.max_connections, 2000);
        fit_connections(&mut cfg, 1024);
        assert_eq!(cfg.max_connections, 1024 - FD_HEADROOM as usize);
        fit_connections(&mut cfg, 300);
        assert_eq!(
            (cfg.max_connections, cfg.max_connections_per_client),
            (44, 44)
        );
        fit_connections(&mut cfg, 10);
        assert_eq!(cfg.max_connections, 1);
    }

    #[test]
    fn descriptor_limit_is_raised_to_the_hard_limit() {
        let (before, after) = raise_descriptor_limit();
        if let (Some(b), Some(a)) = (before, after) {
            assert!(a >= b);
            let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            assert_eq!(now.current, Some(a));
        }
    }
}
