//! The per-user spam classifiers in the database (`[store] backend =
//! "postgres"`): the table `spam_classifiers`, one row per account with
//! the serialized classifier (the bytes of the Maildir backend's
//! `postern-spam` file) and a version that every write moves, so that a
//! replica asks one small read whether its cached copy is still what is
//! stored. Learning reads and writes the row in one transaction under its
//! lock: replicas learning for the same user at once are serialized, none
//! overwrites the other's count.

use super::{unsigned, Pg, PgError};
use crate::spamstore::{SpamBackend, MAX_BYTES};
use std::io;
use std::sync::Arc;

/// The classifiers of every account, in the database.
#[derive(Debug)]
pub struct PgSpam {
    pg: Arc<Pg>,
}

impl PgSpam {
    /// The table on this pool (its schema applied when the pool opened).
    pub fn new(pg: Arc<Pg>) -> Self {
        Self { pg }
    }
}

/// Seconds since the epoch, for the `updated` column (information only).
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn limit() -> i64 {
    i64::try_from(MAX_BYTES).unwrap_or(i64::MAX)
}

/// A row's data: within the limit, or an error (the caller starts again
/// empty); empty bytes are no classifier.
fn data(row: &postgres::Row) -> Result<Option<Vec<u8>>, PgError> {
    let fits: bool = row.try_get(0)?;
    if !fits {
        return Err(PgError::Invalid(format!(
            "stored classifier larger than {MAX_BYTES} bytes"
        )));
    }
    let bytes: Option<Vec<u8>> = row.try_get(1)?;
    Ok(bytes.filter(|b| !b.is_empty()))
}

impl SpamBackend for PgSpam {
    fn load(&self, user: &str) -> io::Result<Option<Vec<u8>>> {
        self.load_stamped(user).map(|(b, _)| b)
    }

    fn load_stamped(&self, user: &str) -> io::Result<(Option<Vec<u8>>, Option<u64>)> {
        self.pg
            .with(|c| -> Result<_, PgError> {
                let s = c.stmt(
                    "SELECT octet_length(data) <= $2::bigint, \
                     CASE WHEN octet_length(data) <= $2::bigint THEN data END, version \
                     FROM spam_classifiers WHERE account = $1",
                )?;
                let rows = c.client().query(&s, &[&user, &limit()])?;
                match rows.first() {
                    Some(r) => Ok((data(r)?, Some(unsigned(r.try_get(2)?)?))),
                    None => Ok((None, Some(0))),
                }
            })
            .map_err(io::Error::from)
    }

    fn stamp(&self, user: &str) -> io::Result<Option<u64>> {
        self.pg
            .with(|c| -> Result<_, PgError> {
                let s = c.stmt("SELECT version FROM spam_classifiers WHERE account = $1")?;
                match c.client().query_opt(&s, &[&user])? {
                    Some(r) => Ok(Some(unsigned(r.try_get(0)?)?)),
                    None => Ok(Some(0)),
                }
            })
            .map_err(io::Error::from)
    }

    fn update(
        &self,
        user: &str,
        f: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> io::Result<Option<u64>> {
        self.pg
            .transact(|c| -> Result<_, PgError> {
                let make = c.stmt(
                    "INSERT INTO spam_classifiers (account, data, updated) \
                     VALUES ($1, ''::bytea, $2) ON CONFLICT (account) DO NOTHING",
                )?;
                let read = c.stmt(
                    "SELECT octet_length(data) <= $2::bigint, \
                     CASE WHEN octet_length(data) <= $2::bigint THEN data END, version \
                     FROM spam_classifiers WHERE account = $1 FOR UPDATE",
                )?;
                let write = c.stmt(
                    "UPDATE spam_classifiers SET data = $2, updated = $3, version = version + 1 \
                     WHERE account = $1 RETURNING version",
                )?;
                let mut tx = c.client().transaction()?;
                tx.execute(&make, &[&user, &now()])?;
                let rows = tx.query(&read, &[&user, &limit()])?;
                // A stored value too large or unreadable: learning starts
                // again from an empty classifier (as with a damaged file).
                let stored = rows.first().map(data).transpose().unwrap_or(None).flatten();
                let mut version = match rows.first() {
                    Some(r) => unsigned(r.try_get(2)?)?,
                    None => 0,
                };
                if let Some(bytes) = f(stored) {
                    version =
                        unsigned(tx.query_one(&write, &[&user, &bytes, &now()])?.try_get(0)?)?;
                }
                tx.commit()?;
                Ok(Some(version))
            })
            .map_err(io::Error::from)
    }

    fn describe(&self, user: &str) -> String {
        format!("the database's spam classifier of {user}")
    }

    fn shared(&self) -> bool {
        true
    }
}
