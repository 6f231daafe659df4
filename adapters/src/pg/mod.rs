//! The PostgreSQL (+ S3) backend: the stores behind `store.rs`'s traits
//! kept in a database that several Postern replicas share, and message
//! bodies in an S3-compatible object store addressed by content hash.
//!
//! [`PgCounters`], [`PgQueue`], the body store [`Blobs`], local delivery
//! ([`PgMail`]) and the IMAP mailbox store ([`PgMailbox`]).
//!
//! Every call blocks (the `postgres` client runs its own small runtime
//! per connection): the runtime calls these stores on its blocking pool
//! (`smol::unblock`), as it does for the Maildir store. Each statement is
//! prepared once per connection and cached, so a statement costs one
//! round trip. The schema is SQL under `pg/migrations/`, applied at
//! [`Pg::connect`] in order, each version once, under an advisory lock.

/// The columns of a mailbox row (`BoxRow`), table alias `b`.
macro_rules! box_cols {
    () => {
        "b.id, b.uidvalidity, b.uidnext, b.highestmodseq, b.keywords, b.first_recent, b.tombs"
    };
}

mod blobs;
mod cache;
mod counters;
pub mod export;
pub mod gc;
pub mod import;
mod mail;
mod mailbox;
mod mailbox_write;
pub mod notify;
mod queue;
mod spam;
mod summary;

pub use blobs::{content_hash, Blobs, S3Config, StoredBody};
pub use counters::PgCounters;
pub use mail::{PgMail, DEFAULT_FOLDERS};
pub use mailbox::{PgMailbox, MAX_MAILBOXES, MAX_MESSAGES};
pub use queue::PgQueue;
pub use spam::PgSpam;

use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The schema versions, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_mailbox_store.sql")),
    (3, include_str!("migrations/0003_queue_folders.sql")),
    (4, include_str!("migrations/0004_spam.sql")),
    (5, include_str!("migrations/0005_spam_version.sql")),
    (6, include_str!("migrations/0006_blob_refs_counted.sql")),
    (7, include_str!("migrations/0007_blob_touched.sql")),
    (8, include_str!("migrations/0008_messages_modseq.sql")),
    (9, include_str!("migrations/0009_blob_header.sql")),
    (10, include_str!("migrations/0010_blob_summary.sql")),
];

/// The advisory lock key under which a schema is applied (any constant
/// the deployment does not use otherwise: "postern" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f73_7465_726e;

/// Why the database backend failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database refused or the connection broke.
    #[error("postgres: {}", db_text(.0))]
    Db(#[from] postgres::Error),
    /// The connection settings are unusable.
    #[error("postgres settings: {0}")]
    Config(String),
    /// The database holds a newer schema than this Postern knows.
    #[error("database schema version {found} is newer than this Postern's {known}")]
    SchemaTooNew {
        /// The version in the database.
        found: i32,
        /// The newest version this build has.
        known: i32,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    S3(String),
    /// A stored value is out of range or damaged.
    #[error("{0}")]
    Invalid(String),
}

/// A database error with the server's code and message (the client's
/// own text is only "db error").
fn db_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // The cause too: "error performing TLS handshake: invalid peer
        // certificate: UnknownIssuer".
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl PgError {
    /// Whether the database gave up the transaction to break a deadlock
    /// or a serialization conflict: run again, it may well succeed.
    pub fn retryable(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            PgError::Db(e) => e.code().is_some_and(|c| {
                *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
            }),
            _ => false,
        }
    }
}

/// How often a transaction the database gave up ([`PgError::retryable`])
/// is run in all.
pub(crate) const ATTEMPTS: usize = 3;

impl From<PgError> for std::io::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Invalid(_) => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            other => std::io::Error::other(other),
        }
    }
}

/// One connection and its prepared statements.
pub(crate) struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection (a round trip the first time only).
    pub(crate) fn stmt(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    /// The client, for transactions.
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// TLS to the database: the server's certificate verified against the
/// given certificate authorities and its name (libpq's `verify-full`).
#[derive(Clone)]
pub struct PgTls(tokio_postgres_rustls::MakeRustlsConnect);

impl PgTls {
    /// Trusts the certificates in `pem` (one or more PEM blocks).
    pub fn from_pem(pem: &[u8]) -> Result<Self, PgError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        if CertificateDer::pem_slice_iter(pem).next().is_none() {
            return Err(PgError::Config("no CA certificate in the file".into()));
        }
        let config = crate::tls_client::client_config(Some(pem))
            .map_err(|e| PgError::Config(format!("CA certificates: {e}")))?;
        Ok(Self(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
}

/// A bounded pool of connections to one database.
pub struct Pg {
    config: postgres::Config,
    tls: Option<PgTls>,
    idle: Mutex<Pool>,
    freed: Condvar,
    wait: Duration,
}

struct Pool {
    conns: Vec<Conn>,
    open: usize,
    max: usize,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").finish_non_exhaustive()
    }
}

impl Pg {
    /// Connects to `url` (a `postgresql://` URL or `key=value` pairs),
    /// keeping at most `max_conns` connections, and brings the schema up
    /// to date. Statements time out after 30 seconds, a connection
    /// attempt after 10.
    pub fn connect(url: &str, max_conns: usize) -> Result<Self, PgError> {
        Self::connect_tls(url, max_conns, None, None)
    }

    /// [`Pg::connect`] with the password given apart from `url` (read
    /// from a mounted secret), over TLS verified by `tls` when given (as
    /// the URL's `sslmode` asks: `require` refuses a server without TLS;
    /// the default, `prefer`, falls back to plain text).
    pub fn connect_tls(
        url: &str,
        max_conns: usize,
        password: Option<&str>,
        tls: Option<PgTls>,
    ) -> Result<Self, PgError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| PgError::Config(e.to_string()))?;
        if let Some(p) = password {
            config.password(p);
        }
        config
            .connect_timeout(Duration::from_secs(10))
            .options("-c statement_timeout=30000 -c lock_timeout=30000")
            .application_name("postern");
        let pg = Self {
            config,
            tls,
            idle: Mutex::new(Pool {
                conns: Vec::new(),
                open: 0,
                max: max_conns.max(1),
            }),
            freed: Condvar::new(),
            wait: Duration::from_secs(30),
        };
        pg.with(|c| migrate(c.client()))?;
        Ok(pg)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a pooled connection (opened if none is idle and the
    /// pool is not full; else waits up to 30 seconds for one). A
    /// connection that broke is dropped, not pooled.
    pub(crate) fn with<T, E>(&self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<PgError>,
    {
        let mut conn = self.take().map_err(E::from)?;
        let r = f(&mut conn);
        let mut pool = self.pool();
        if conn.client.is_closed() {
            pool.open = pool.open.saturating_sub(1);
        } else {
            pool.conns.push(conn);
        }
        drop(pool);
        self.freed.notify_one();
        r
    }

    /// [`Pg::with`] for a transaction: run again (at most [`ATTEMPTS`]
    /// times in all) when the database gave it up to break a deadlock or
    /// a serialization conflict; nothing of a failed attempt was kept.
    pub(crate) fn transact<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let mut attempt = 1;
        loop {
            match self.with(&mut f) {
                Err(e) if e.retryable() && attempt < ATTEMPTS => attempt += 1,
                r => return r,
            }
        }
    }

    fn take(&self) -> Result<Conn, PgError> {
        let deadline = std::time::Instant::now() + self.wait;
        let mut pool = self.pool();
        loop {
            if let Some(c) = pool.conns.pop() {
                return Ok(c);
            }
            if pool.open < pool.max {
                pool.open += 1;
                drop(pool);
                return match self.open() {
                    Ok(client) => Ok(Conn {
                        client,
                        prepared: HashMap::new(),
                    }),
                    Err(e) => {
                        self.pool().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(PgError::Config(format!(
                    "all {} connections busy for {:?}",
                    pool.max, self.wait
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A connection outside the pool (a LISTENer).
    pub(crate) fn connect_one(&self) -> Result<Client, PgError> {
        self.open()
    }

    fn open(&self) -> Result<Client, PgError> {
        Ok(match &self.tls {
            Some(t) => self.config.connect(t.0.clone())?,
            None => self.config.connect(NoTls)?,
        })
    }

    /// The schema version the database holds.
    pub fn schema_version(&self) -> Result<i32, PgError> {
        self.with(|c| {
            let s = c.stmt("SELECT COALESCE(MAX(version), 0) FROM postern_schema")?;
            Ok(c.client.query_one(&s, &[])?.get(0))
        })
    }
}

/// Applies the migrations the database lacks, in one transaction under
/// an advisory lock (two replicas starting at once apply them once).
fn migrate(client: &mut Client) -> Result<(), PgError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS postern_schema (\
         version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM postern_schema", &[])?
        .get(0);
    if found > known {
        return Err(PgError::SchemaTooNew { found, known });
    }
    for (version, sql) in MIGRATIONS {
        if *version > found {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO postern_schema (version) VALUES ($1)",
                &[version],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// `v` as a database BIGINT.
pub(crate) fn big(v: u64) -> Result<i64, PgError> {
    i64::try_from(v).map_err(|_| PgError::Invalid(format!("{v} is out of range")))
}

/// A database BIGINT as `u64` (a negative one is damage).
pub(crate) fn unsigned(v: i64) -> Result<u64, PgError> {
    u64::try_from(v).map_err(|_| PgError::Invalid(format!("negative value {v} stored")))
}
