//! Removing bodies no message refers to (`postern store gc`): a body's
//! object stays in the bucket after its last message is expunged, and an
//! object whose delivery failed after its PUT has no row at all. A run:
//!
//! 1. lists the bucket's bodies and indexes those without a row (a row
//!    at zero references, wanted as of now);
//! 2. for each indexed body that no message refers to and that nobody
//!    wanted within the grace period (`blobs.touched`, the database's
//!    clock: set when the row is made and whenever a delivery or APPEND
//!    finds the body stored, `Blobs::ensure`): locks its row, checks
//!    again that no message refers to it, deletes the object, then the
//!    row, and commits.
//!
//! Why a delivery in flight is safe: it either found the body's row
//! (and moved `touched` to now: the row is skipped for the grace
//! period), or it waited for the row a run holds and then found none
//! (and wrote the object again), or it found no row and wrote the object
//! itself, in which case a run indexes that object now and removes it
//! only a grace period later. The grace period must therefore be longer
//! than a delivery takes from its body look-up to its commit (seconds;
//! the default is a day). One run at a time (an advisory lock): two runs
//! could otherwise index an object the other just removed.

use super::{Blobs, PgError, PgMailbox};

/// The advisory lock key of a collection run ("gc" after "postern").
const GC_LOCK: i64 = 0x0070_6f73_7465_6763;

/// Candidates read per statement.
const BATCH: i64 = 500;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Bodies in the bucket.
    pub listed: u64,
    /// Of those, objects that had no row and were indexed.
    pub indexed: u64,
    /// Bodies removed (object and row).
    pub removed: u64,
    /// Candidates kept because a message or a delivery wanted them again.
    pub kept: u64,
}

/// One run over `store`'s bucket and body rows: bodies unreferenced and
/// not wanted for `grace_secs` go. `progress` hears a line per step.
pub fn collect(
    store: &PgMailbox,
    grace_secs: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<GcReport, PgError> {
    let grace = super::big(grace_secs)?;
    let blobs = store.mail.blobs();
    store.mail.pg().with(|c| {
        let lock = c.stmt("SELECT pg_try_advisory_lock($1)")?;
        let locked: bool = c.client().query_one(&lock, &[&GC_LOCK])?.try_get(0)?;
        if !locked {
            return Err(PgError::Config(
                "another store gc is running on this database".into(),
            ));
        }
        let r = run(blobs, c, grace, progress);
        let unlock = c.stmt("SELECT pg_advisory_unlock($1)")?;
        c.client().query_one(&unlock, &[&GC_LOCK])?;
        r
    })
}

fn run(
    blobs: &Blobs,
    c: &mut super::Conn,
    grace: i64,
    progress: &mut dyn FnMut(&str),
) -> Result<GcReport, PgError> {
    let mut report = GcReport::default();
    let index = c.stmt(
        "INSERT INTO blobs (hash, size, created) \
         SELECT h, s, extract(epoch FROM now())::bigint \
         FROM unnest($1::text[], $2::bigint[]) AS x(h, s) ON CONFLICT (hash) DO NOTHING",
    )?;
    let mut token: Option<String> = None;
    loop {
        let (page, next) = blobs.list(token.as_deref())?;
        report.listed += page.len() as u64;
        let (hashes, sizes): (Vec<String>, Vec<i64>) = page.into_iter().unzip();
        report.indexed += c.client().execute(&index, &[&hashes, &sizes])?;
        match next {
            Some(t) if Some(&t) != token.as_ref() => token = Some(t),
            _ => break,
        }
    }
    progress(&format!(
        "{} bodies in the bucket, {} without a row indexed",
        report.listed, report.indexed
    ));
    let candidates = c.stmt(
        "SELECT b.hash FROM blobs b \
         WHERE b.touched <= extract(epoch FROM now())::bigint - $1 AND b.hash > $2 \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.hash) \
         ORDER BY b.hash LIMIT $3",
    )?;
    let lock = c.stmt(
        "SELECT 1 FROM blobs WHERE hash = $1 \
         AND touched <= extract(epoch FROM now())::bigint - $2 FOR UPDATE",
    )?;
    let used = c.stmt("SELECT EXISTS (SELECT 1 FROM messages WHERE blob = $1)")?;
    let forget = c.stmt("DELETE FROM blobs WHERE hash = $1")?;
    let mut after = String::new();
    loop {
        let rows = c.client().query(&candidates, &[&grace, &after, &BATCH])?;
        let page: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        for hash in &page {
            let mut tx = c.client().transaction()?;
            // Under the row's lock, wanted again? (A delivery that found
            // the row moved `touched`; a message inserted since commits
            // before this lock is granted, and is seen by the next
            // statement.)
            if tx.query_opt(&lock, &[hash, &grace])?.is_none()
                || tx.query_one(&used, &[hash])?.try_get::<_, bool>(0)?
            {
                report.kept += 1;
                continue;
            }
            blobs.delete(hash)?;
            tx.execute(&forget, &[hash])?;
            tx.commit()?;
            report.removed += 1;
        }
        match page.last() {
            Some(last) if page.len() as i64 == BATCH => after = last.clone(),
            _ => break,
        }
    }
    progress(&format!(
        "{} unreferenced bodies removed, {} kept (wanted again)",
        report.removed, report.kept
    ));
    Ok(report)
}
