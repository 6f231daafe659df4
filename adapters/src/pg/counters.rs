//! Counters shared by every replica: one row per (name, window), added to
//! by one atomic upsert.

use super::{big, unsigned, Pg, PgError};
use crate::store::counters::check;
use crate::store::{CounterError, Counters, Window};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Every this many adds (per process), windows that ended more than
/// [`KEEP_SECS`] before the one added to are deleted.
const SWEEP_EVERY: u64 = 1024;
/// How long a counter is kept after its window ends.
const KEEP_SECS: u64 = 2 * 86_400;

/// [`Counters`] in the `counters` table. `add` is one round trip (an
/// `INSERT .. ON CONFLICT DO UPDATE .. RETURNING`), so two replicas adding
/// at once both count and each sees a distinct total.
#[derive(Debug)]
pub struct PgCounters {
    pg: Arc<Pg>,
    adds: AtomicU64,
}

impl PgCounters {
    /// Counters in `pg`'s database.
    pub fn new(pg: Arc<Pg>) -> Self {
        Self {
            pg,
            adds: AtomicU64::new(0),
        }
    }

    /// Deletes the counters whose window ended by `before` (Unix
    /// seconds); returns how many.
    pub fn sweep(&self, before: u64) -> Result<u64, CounterError> {
        let before = big(before).map_err(io)?;
        self.pg.with(|c| {
            let s = c
                .stmt("DELETE FROM counters WHERE expires <= $1")
                .map_err(db)?;
            c.client().execute(&s, &[&before]).map_err(db)
        })
    }
}

fn io(e: PgError) -> CounterError {
    CounterError::Io(e.into())
}

fn db(e: postgres::Error) -> CounterError {
    io(PgError::Db(e))
}

impl From<PgError> for CounterError {
    fn from(e: PgError) -> Self {
        io(e)
    }
}

fn key(window: Window) -> Result<(i64, i64, i64), CounterError> {
    Ok((
        big(window.secs.max(1)).map_err(io)?,
        big(window.index).map_err(io)?,
        big(window.end()).map_err(io)?,
    ))
}

impl Counters for PgCounters {
    fn add(&self, name: &str, window: Window, n: u64) -> Result<u64, CounterError> {
        check(name)?;
        let (secs, idx, expires) = key(window)?;
        let n = big(n).map_err(io)?;
        let total: i64 = self.pg.with(|c| {
            let s = c
                .stmt(
                    "INSERT INTO counters (name, secs, idx, count, expires) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name, secs, idx) \
                     DO UPDATE SET count = counters.count + EXCLUDED.count \
                     RETURNING count",
                )
                .map_err(db)?;
            let row = c
                .client()
                .query_one(&s, &[&name, &secs, &idx, &n, &expires])
                .map_err(db)?;
            Ok::<_, CounterError>(row.get(0))
        })?;
        if self.adds.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let start = window.index.saturating_mul(window.secs);
            // Best effort: a failed sweep is retried SWEEP_EVERY adds later.
            let _ = self.sweep(start.saturating_sub(KEEP_SECS));
        }
        unsigned(total).map_err(io)
    }

    fn get(&self, name: &str, window: Window) -> Result<u64, CounterError> {
        let (secs, idx, _) = key(window)?;
        let total: Option<i64> = self.pg.with(|c| {
            let s = c
                .stmt("SELECT count FROM counters WHERE name = $1 AND secs = $2 AND idx = $3")
                .map_err(db)?;
            let row = c
                .client()
                .query_opt(&s, &[&name, &secs, &idx])
                .map_err(db)?;
            Ok::<_, CounterError>(row.map(|r| r.get(0)))
        })?;
        unsigned(total.unwrap_or(0)).map_err(io)
    }
}
