//! The PostgreSQL backend in the daemon (`[store] backend = "postgres"`):
//! the mailbox store, the outbound queue and the shared counters on one
//! database, the message bodies in the bucket; and the thread that
//! LISTENs for other replicas' changes and wakes this replica's IDLE
//! sessions, reconnecting with backoff.

use crate::config::store::{redact, PostgresSettings};
use crate::server::StartError;
use postern_adapters::pg::{self, notify::Listener, Blobs, Pg, PgMail, PgMailbox, S3Config};
use postern_adapters::store::{Counters, MailboxStore, Queue, SystemClock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The stores of the PostgreSQL backend.
pub struct PgStores {
    /// The mailbox store.
    pub mailbox: Arc<PgMailbox>,
    /// The outbound queue.
    pub queue: Arc<dyn Queue>,
    /// The shared counters.
    pub counters: Arc<dyn Counters>,
    /// The database pool.
    pub pg: Arc<Pg>,
}

/// How long a LISTEN waits before it checks its connection.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The database pool (`max` connections), the password read from
/// `password_file` when there is one; the schema brought up to date.
fn connect(s: &PostgresSettings, max: usize) -> Result<Arc<Pg>, StartError> {
    let password = match &s.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| StartError::Store(format!("{}: {e}", f.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => None,
    };
    let tls = match &s.ca_file {
        Some(f) => {
            let pem =
                std::fs::read(f).map_err(|e| StartError::Store(format!("{}: {e}", f.display())))?;
            Some(
                pg::PgTls::from_pem(&pem)
                    .map_err(|e| StartError::Store(format!("{}: {e}", f.display())))?,
            )
        }
        None => None,
    };
    Pg::connect_tls(&s.url, max, password.as_deref(), tls)
        .map(Arc::new)
        .map_err(|e| StartError::Store(format!("{}: {e}", redact(&s.url))))
}

/// The database's outbound queue alone (`postern queue`), on one
/// connection.
pub fn open_queue(s: &PostgresSettings) -> Result<Arc<dyn Queue>, StartError> {
    Ok(Arc::new(pg::PgQueue::new(connect(s, 1)?)))
}

/// Connects (and brings the schema up to date), reads the bucket's
/// secret, and makes the stores. The bucket is created if missing and
/// the credentials allow it (else it must exist).
pub fn open(
    s: &PostgresSettings,
    quota: Option<u64>,
    quotas: HashMap<String, u64>,
    mime: postern_core::imap::limits::MimeLimits,
) -> Result<PgStores, StartError> {
    let pg = connect(s, s.max_connections)?;
    let secret = std::fs::read_to_string(&s.s3_secret_key_file)
        .map_err(|e| StartError::Store(format!("{}: {e}", s.s3_secret_key_file.display())))?;
    let blobs = Arc::new(
        Blobs::new(
            pg.clone(),
            &S3Config {
                endpoint: s.s3_endpoint.clone(),
                bucket: s.s3_bucket.clone(),
                region: s.s3_region.clone(),
                access_key: s.s3_access_key.clone(),
                secret_key: secret.trim().to_owned(),
            },
        )
        .map_err(|e| StartError::Store(format!("bucket {}: {e}", s.s3_bucket)))?,
    );
    if let Err(e) = blobs.create_bucket() {
        tracing::warn!("bucket {} not created (it must exist): {e}", s.s3_bucket);
    }
    let mailbox = Arc::new(
        PgMailbox::new(PgMail::new(pg.clone(), blobs, Arc::new(SystemClock)))
            .with_quota(quota, quotas)
            .with_mime(mime)
            .with_warn(Arc::new(|m: &str| tracing::warn!("{m}"))),
    );
    tracing::info!(
        "store: PostgreSQL {} and bucket {}",
        redact(&s.url),
        s.s3_bucket
    );
    Ok(PgStores {
        mailbox,
        queue: Arc::new(pg::PgQueue::new(pg.clone())),
        counters: Arc::new(pg::PgCounters::new(pg.clone())),
        pg,
    })
}

/// Starts the thread that hears other replicas' (and this one's) changes
/// and tells `store`'s listener (set before). A lost connection is made
/// again after a pause that doubles up to 30 seconds.
pub fn spawn_listener(pg: Arc<Pg>, store: Arc<PgMailbox>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("postern-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            loop {
                let mut listener = match Listener::connect(&pg) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("LISTEN: {e}; again in {backoff:?}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                loop {
                    match listener.wait(LISTEN_WAIT) {
                        Ok(changed) => store.notify(&changed),
                        Err(e) => {
                            tracing::warn!("LISTEN lost: {e}");
                            break;
                        }
                    }
                }
            }
        })
        .map(|_| ())
}

/// The stores of a configuration that chooses `backend = "postgres"`
/// (for the `postern store` commands); the error is printed.
fn open_for_cli(config: &std::path::Path) -> Option<PgStores> {
    let cfg = match crate::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return None;
        }
    };
    let crate::config::store::StoreBackend::Postgres(s) = &cfg.store else {
        eprintln!(
            "postern: {}: [store] backend is not \"postgres\"",
            config.display()
        );
        return None;
    };
    match open(s, cfg.quota, HashMap::new(), cfg.mime) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("postern: {e}");
            None
        }
    }
}

/// `postern store --config FILE import-maildir DIR`: the configuration
/// must choose `backend = "postgres"`; prints a line per folder and the
/// totals. Exit 1 on failure or when a folder was refused.
pub fn import_main(config: &std::path::Path, dir: &std::path::Path) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(stores) = open_for_cli(config) else {
        return ExitCode::from(1);
    };
    let mut progress = |line: &str| println!("{line}");
    match pg::import::import_maildir(dir, &stores.mailbox, &mut progress) {
        Ok(r) => {
            println!(
                "imported {} accounts, {} folders: {} messages copied, {} already there, {} folders refused",
                r.accounts,
                r.mailboxes,
                r.copied,
                r.present,
                r.refused.len()
            );
            if r.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("postern: import {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// `postern store --config FILE export-maildir DIR`: every account of the
/// database backend into a Maildir++ tree at DIR (absent or empty);
/// prints a line per folder, what was skipped and the totals. Exit 1 on
/// failure or when something was skipped.
pub fn export_main(config: &std::path::Path, dir: &std::path::Path) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(stores) = open_for_cli(config) else {
        return ExitCode::from(1);
    };
    let mut progress = |line: &str| println!("{line}");
    match pg::export::export_maildir(dir, &stores.mailbox, &mut progress) {
        Ok(r) => {
            for s in &r.skipped {
                println!("skipped: {s}");
            }
            println!(
                "exported {} accounts, {} folders, {} messages; {} keyword settings dropped (past 26 letters), {} skipped",
                r.accounts,
                r.mailboxes,
                r.messages,
                r.keywords_dropped,
                r.skipped.len()
            );
            if r.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("postern: export {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// How long an unreferenced body is kept after it was last wanted,
/// unless `--grace-secs` says otherwise: a day.
pub const GC_GRACE_SECS: u64 = 86_400;

/// `postern store --config FILE gc [--grace-secs N]`: removes from the
/// bucket (and the database) the bodies no message refers to that
/// nobody wanted for `grace_secs` (`pg::gc`); prints what it did. Exit 1
/// on failure.
pub fn gc_main(config: &std::path::Path, grace_secs: u64) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(stores) = open_for_cli(config) else {
        return ExitCode::from(1);
    };
    let mut progress = |line: &str| println!("{line}");
    match pg::gc::collect(&stores.mailbox, grace_secs, &mut progress) {
        Ok(r) => {
            println!(
                "gc: {} bodies listed, {} indexed, {} removed, {} kept",
                r.listed, r.indexed, r.removed, r.kept
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: store gc: {e}");
            ExitCode::from(1)
        }
    }
}

/// The mailbox store as the server holds it.
pub fn as_store(s: &PgStores) -> Arc<dyn MailboxStore> {
    s.mailbox.clone()
}
