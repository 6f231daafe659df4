//! The outbound queue shared by every replica: one row per message
//! (envelope, recipients' states and bytes). Each call is one statement
//! committed on its own, so [`Queue::enqueue`] returning `Ok` means the
//! message is in a committed transaction (durable before the 250).

use super::{big, unsigned, Pg, PgError};
use crate::spool::{valid_id, QueueStats, QueuedMessage, QueuedRcpt, RcptStatus};
use crate::store::{Queue, QueueError};
use postgres::Row;
use std::sync::Arc;

/// The most recipients one queued message may have (as the spool).
const MAX_RCPTS: usize = 10_000;
/// The most messages [`Queue::list`] and [`PgQueue::claim_due`] return.
const MAX_LIST: i64 = 100_000;

/// [`Queue`] in the `queue` table.
#[derive(Debug)]
pub struct PgQueue {
    pg: Arc<Pg>,
}

impl From<PgError> for QueueError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Invalid(m) => QueueError::Invalid(m),
            other => QueueError::Io(other.into()),
        }
    }
}

fn db(e: postgres::Error) -> QueueError {
    PgError::Db(e).into()
}

fn status_str(s: RcptStatus) -> &'static str {
    match s {
        RcptStatus::Pending => "pending",
        RcptStatus::Delivered => "delivered",
        RcptStatus::Failed => "failed",
    }
}

fn parse_status(s: &str) -> Result<RcptStatus, QueueError> {
    match s {
        "pending" => Ok(RcptStatus::Pending),
        "delivered" => Ok(RcptStatus::Delivered),
        "failed" => Ok(RcptStatus::Failed),
        other => Err(QueueError::Invalid(format!(
            "bad recipient state {other:?}"
        ))),
    }
}

/// A row of the nine message columns (id .. replies, folders) as a message.
fn message(row: &Row) -> Result<QueuedMessage, QueueError> {
    let id: String = row.try_get(0).map_err(db)?;
    let rcpts: Vec<String> = row.try_get(5).map_err(db)?;
    let status: Vec<String> = row.try_get(6).map_err(db)?;
    let replies: Vec<String> = row.try_get(7).map_err(db)?;
    // NULL: queued before folders were kept, every copy to INBOX.
    let folders: Vec<Option<String>> = row
        .try_get::<_, Option<Vec<Option<String>>>>(8)
        .map_err(db)?
        .unwrap_or_else(|| vec![None; rcpts.len()]);
    if rcpts.len() != status.len() || rcpts.len() != replies.len() || rcpts.len() != folders.len() {
        return Err(QueueError::Invalid(format!(
            "queued message {id}: recipient columns differ in length"
        )));
    }
    let rcpts = rcpts
        .into_iter()
        .zip(status.iter().zip(replies.into_iter().zip(folders)))
        .map(|(address, (s, (last_reply, folder)))| {
            Ok(QueuedRcpt {
                address,
                status: parse_status(s)?,
                last_reply,
                folder,
            })
        })
        .collect::<Result<_, QueueError>>()?;
    Ok(QueuedMessage {
        from: row.try_get(1).map_err(db)?,
        created: unsigned(row.try_get(2).map_err(db)?)?,
        attempts: u32::try_from(row.try_get::<_, i64>(3).map_err(db)?)
            .map_err(|_| QueueError::Invalid(format!("queued message {id}: bad attempts")))?,
        next_attempt: unsigned(row.try_get(4).map_err(db)?)?,
        rcpts,
        id,
    })
}

/// The `folders` column of a message: NULL when every copy goes to INBOX
/// (every remote message), so rows stay as they were without folders.
fn rcpt_folders(m: &QueuedMessage) -> Option<Vec<Option<&str>>> {
    m.rcpts
        .iter()
        .any(|r| r.folder.is_some())
        .then(|| m.rcpts.iter().map(|r| r.folder.as_deref()).collect())
}

fn checked(id: &str) -> Result<(), QueueError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(QueueError::BadId(id.to_owned()))
    }
}

fn check_worker(worker: &str) -> Result<(), QueueError> {
    if worker.is_empty() || worker.len() > 255 || worker.contains(char::is_whitespace) {
        return Err(QueueError::Invalid(format!("bad worker name {worker:?}")));
    }
    Ok(())
}

impl PgQueue {
    /// Writes `m`'s state; with `loaded`, a `next_attempt` no longer equal
    /// to it (changed since the worker loaded the message) is kept. The
    /// rows written.
    fn write(&self, m: &QueuedMessage, loaded: Option<u64>) -> Result<u64, QueueError> {
        checked(&m.id)?;
        let rcpts: Vec<&str> = m.rcpts.iter().map(|r| r.address.as_str()).collect();
        let status: Vec<&str> = m.rcpts.iter().map(|r| status_str(r.status)).collect();
        let replies: Vec<&str> = m.rcpts.iter().map(|r| r.last_reply.as_str()).collect();
        let folders = rcpt_folders(m);
        let (created, next) = (big(m.created)?, big(m.next_attempt)?);
        let attempts = i64::from(m.attempts);
        let loaded = loaded.map(big).transpose()?;
        let n = self.pg.with(|c| {
            let s = c
                .stmt(
                    "UPDATE queue SET sender = $2, created = $3, attempts = $4, next_attempt = CASE WHEN $10::BIGINT IS NULL OR next_attempt = $10 THEN $5 \
                     ELSE next_attempt END, \
                     rcpts = $6, status = $7, replies = $8, folders = $9 WHERE id = $1",
                )
                .map_err(db)?;
            c.client()
                .execute(
                    &s,
                    &[
                        &m.id, &m.from, &created, &attempts, &next, &rcpts, &status, &replies,
                        &folders, &loaded,
                    ],
                )
                .map_err(db)
        })?;
        Ok(n)
    }

    /// The queue in `pg`'s database.
    pub fn new(pg: Arc<Pg>) -> Self {
        Self { pg }
    }

    /// Claims for `worker` until `until` up to `limit` messages due at
    /// `now` that no other worker holds, earliest due first, in one
    /// statement: the rows are picked `FOR UPDATE SKIP LOCKED`, so two
    /// replicas claiming at once get disjoint sets and neither waits on
    /// the other.
    pub fn claim_due(
        &self,
        worker: &str,
        now: u64,
        until: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, QueueError> {
        check_worker(worker)?;
        let (now, until) = (big(now)?, big(until)?);
        let limit = i64::try_from(limit).unwrap_or(MAX_LIST).min(MAX_LIST);
        let rows = self.pg.with(|c| {
            let s = c
                .stmt(
                    "UPDATE queue SET claim_worker = $1, claim_until = $3 \
                     WHERE id IN (SELECT id FROM queue \
                       WHERE next_attempt <= $2 \
                         AND (claim_worker IS NULL OR claim_until <= $2) \
                       ORDER BY next_attempt, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING id, sender, created, attempts, next_attempt, rcpts, status, replies, \
                     folders",
                )
                .map_err(db)?;
            c.client()
                .query(&s, &[&worker, &now, &until, &limit])
                .map_err(db)
        })?;
        let mut out = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.next_attempt, &a.id).cmp(&(b.next_attempt, &b.id)));
        Ok(out)
    }
}

impl Queue for PgQueue {
    fn enqueue_with_folders(
        &self,
        id: &str,
        from: &str,
        rcpts: &[String],
        folders: &[Option<String>],
        data: &[u8],
        now: u64,
    ) -> Result<QueuedMessage, QueueError> {
        checked(id)?;
        if rcpts.is_empty() || rcpts.len() > MAX_RCPTS {
            return Err(QueueError::Invalid(format!(
                "bad recipient count {} (1 to {MAX_RCPTS})",
                rcpts.len()
            )));
        }
        let msg = QueuedMessage::with_folders(id, from, rcpts, folders, now);
        let now = big(now)?;
        let status = vec!["pending"; rcpts.len()];
        let replies = vec![""; rcpts.len()];
        let folders = rcpt_folders(&msg);
        let n = self.pg.with(|c| {
            let s = c
                .stmt(
                    "INSERT INTO queue (id, sender, created, next_attempt, rcpts, status, replies, \
                     folders, data) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db)?;
            c.client()
                .execute(
                    &s,
                    &[&id, &from, &now, &rcpts, &status, &replies, &folders, &data],
                )
                .map_err(db)
        })?;
        if n != 1 {
            return Err(QueueError::Invalid(format!("queue id {id} is taken")));
        }
        Ok(msg)
    }

    fn update(&self, m: &QueuedMessage) -> Result<(), QueueError> {
        if self.write(m, None)? == 0 {
            return Err(QueueError::NotFound(m.id.clone()));
        }
        Ok(())
    }

    fn settle(&self, m: &QueuedMessage, loaded_next_attempt: u64) -> Result<(), QueueError> {
        // No row: removed meanwhile (`postern queue delete`), and so it stays.
        self.write(m, Some(loaded_next_attempt)).map(|_| ())
    }

    fn retry_now(&self, id: &str) -> Result<(), QueueError> {
        checked(id)?;
        let n = self.pg.with(|c| {
            let s = c
                .stmt("UPDATE queue SET next_attempt = 0 WHERE id = $1")
                .map_err(db)?;
            c.client().execute(&s, &[&id]).map_err(db)
        })?;
        if n == 0 {
            return Err(QueueError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    fn load(&self, id: &str) -> Result<QueuedMessage, QueueError> {
        checked(id)?;
        let row = self.pg.with(|c| {
            let s = c
                .stmt(
                    "SELECT id, sender, created, attempts, next_attempt, rcpts, status, replies, \
                     folders FROM queue WHERE id = $1",
                )
                .map_err(db)?;
            c.client().query_opt(&s, &[&id]).map_err(db)
        })?;
        message(&row.ok_or_else(|| QueueError::NotFound(id.to_owned()))?)
    }

    fn data(&self, id: &str) -> Result<Vec<u8>, QueueError> {
        checked(id)?;
        let row = self.pg.with(|c| {
            let s = c.stmt("SELECT data FROM queue WHERE id = $1").map_err(db)?;
            c.client().query_opt(&s, &[&id]).map_err(db)
        })?;
        row.ok_or_else(|| QueueError::NotFound(id.to_owned()))?
            .try_get(0)
            .map_err(db)
    }

    fn remove(&self, id: &str) -> Result<(), QueueError> {
        checked(id)?;
        let n = self.pg.with(|c| {
            let s = c.stmt("DELETE FROM queue WHERE id = $1").map_err(db)?;
            c.client().execute(&s, &[&id]).map_err(db)
        })?;
        if n == 0 {
            return Err(QueueError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    fn list(&self) -> Result<(Vec<QueuedMessage>, Vec<String>), QueueError> {
        let rows = self.pg.with(|c| {
            let s = c
                .stmt(
                    "SELECT id, sender, created, attempts, next_attempt, rcpts, status, replies, \
                     folders FROM queue ORDER BY created, id LIMIT $1",
                )
                .map_err(db)?;
            c.client().query(&s, &[&MAX_LIST]).map_err(db)
        })?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for row in &rows {
            match message(row) {
                Ok(m) => ok.push(m),
                Err(e) => bad.push(format!(
                    "{}: {e}",
                    row.try_get::<_, String>(0).unwrap_or_default()
                )),
            }
        }
        Ok((ok, bad))
    }

    fn stats(&self, now: u64) -> Result<QueueStats, QueueError> {
        let row = self.pg.with(|c| {
            let s = c
                .stmt(
                    "SELECT count(*), MIN(created), count(*) FILTER (WHERE attempts > 0) FROM queue",
                )
                .map_err(db)?;
            c.client().query_one(&s, &[]).map_err(db)
        })?;
        let size: i64 = row.try_get(0).map_err(db)?;
        let oldest: Option<i64> = row.try_get(1).map_err(db)?;
        let deferred: i64 = row.try_get(2).map_err(db)?;
        let count = |v: i64| usize::try_from(v).unwrap_or(0);
        Ok(QueueStats {
            size: count(size),
            oldest_age: match oldest {
                Some(c) => now.saturating_sub(unsigned(c)?),
                None => 0,
            },
            deferred: count(deferred),
        })
    }

    /// One statement: the row is updated only if it is free, held by
    /// `worker`, or its claim has expired; a concurrent claimer waits
    /// for the row lock and then finds it taken.
    fn claim(&self, id: &str, worker: &str, now: u64, until: u64) -> Result<bool, QueueError> {
        checked(id)?;
        check_worker(worker)?;
        let (now, until) = (big(now)?, big(until)?);
        let n = self.pg.with(|c| {
            let s = c
                .stmt(
                    "UPDATE queue SET claim_worker = $2, claim_until = $4 WHERE id = $1 \
                     AND (claim_worker IS NULL OR claim_worker = $2 OR claim_until <= $3)",
                )
                .map_err(db)?;
            c.client()
                .execute(&s, &[&id, &worker, &now, &until])
                .map_err(db)
        })?;
        Ok(n == 1)
    }

    fn release(&self, id: &str, worker: &str) -> Result<(), QueueError> {
        checked(id)?;
        self.pg.with(|c| {
            let s = c
                .stmt(
                    "UPDATE queue SET claim_worker = NULL, claim_until = 0 \
                     WHERE id = $1 AND claim_worker = $2",
                )
                .map_err(db)?;
            c.client().execute(&s, &[&id, &worker]).map_err(db)
        })?;
        Ok(())
    }
}
