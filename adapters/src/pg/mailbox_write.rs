//! The requests that change a mailbox store on PostgreSQL: CREATE,
//! DELETE, RENAME, STORE, EXPUNGE, APPEND, COPY and MOVE. Each runs in
//! one transaction that first locks the mailbox rows it changes (in id
//! order), so UIDs and mod-sequences are handed out under the lock and
//! two replicas never give out the same one. The decisions are core's
//! (`imap::rules`), as in the other stores.
//!
//! Lock order, the same in every transaction (deliveries included, see
//! `mail.rs`): first the body rows it inserts (by hash), then the
//! mailbox rows (by id); no transaction waits for a body row while it
//! holds a mailbox row. A transaction the database still gives up (a
//! deadlock with something else, a serialization conflict) is run again,
//! at most `ATTEMPTS` times in all (`Pg::transact`).

use super::mailbox::{box_row, small, uids64, BoxRow, PgMailbox, MAX_MAILBOXES, USED};
use super::{big, unsigned, PgError};
use crate::store::MailboxId;
use postern_core::imap::event::{Code, MailboxAnswer, MailboxRequest, StoreMode, Stored};
use postern_core::imap::rules::{self, StoreStep};
use postern_core::imap::vanished::MAX_TOMBSTONES;
use postgres::Transaction;
use std::collections::{BTreeMap, HashMap};

/// A request's answer and the mailboxes it changed.
type Outcome = (MailboxAnswer, Vec<String>);

const LOCK: &str = concat!(
    "SELECT ",
    box_cols!(),
    " FROM mailboxes b WHERE b.account = $1 AND b.name = $2 FOR UPDATE"
);

const EXPUNGE: &str = "WITH d AS (DELETE FROM messages WHERE mailbox = $1 AND uid = ANY ($2)), \
     t AS (INSERT INTO tombstones (mailbox, modseq, uid) SELECT $1, $3, unnest($2::bigint[])) \
     UPDATE mailboxes SET highestmodseq = $3, tombs = tombs + $4 WHERE id = $1";

const TRIM: &str = "WITH o AS (SELECT modseq, uid FROM tombstones WHERE mailbox = $1 \
     ORDER BY modseq DESC, uid DESC OFFSET $2), \
     gone AS (DELETE FROM tombstones t USING o \
     WHERE t.mailbox = $1 AND t.modseq = o.modseq AND t.uid = o.uid RETURNING t.modseq) \
     UPDATE mailboxes SET tombs = $2, \
     tomb_floor = GREATEST(tomb_floor, COALESCE((SELECT max(modseq) FROM gone), 0)) WHERE id = $1";

/// Flags as one text (flags are atoms: no spaces), split again by
/// `string_to_array(.., ' ')` in the statement.
fn joined(flags: &[String]) -> String {
    flags.join(" ")
}

/// Removes `gone` (sorted) from mailbox `b` at `modseq`, leaving
/// tombstones (trimmed to the bound, the floor raised past what goes).
fn remove(tx: &mut Transaction<'_>, b: &BoxRow, gone: &[u32], modseq: u64) -> Result<(), PgError> {
    let n = gone.len() as i64;
    tx.execute(EXPUNGE, &[&b.id, &uids64(gone), &big(modseq)?, &n])?;
    let cap = MAX_TOMBSTONES as i64;
    if b.tombs + n > cap {
        tx.execute(TRIM, &[&b.id, &cap])?;
    }
    Ok(())
}

impl PgMailbox {
    /// CREATE, DELETE and RENAME.
    pub(super) fn manage(&self, user: &str, req: MailboxRequest) -> Result<Outcome, PgError> {
        let names = self.names(user)?;
        if let Some(no) = rules::manage_refusal(&req, &|n| names.iter().any(|x| x == n)) {
            return Ok((no, Vec::new()));
        }
        match req {
            MailboxRequest::Create { mailbox } => {
                if names.len() as i64 >= MAX_MAILBOXES {
                    return Ok((
                        rules::refuse(Code::Cannot, "Too many mailboxes"),
                        Vec::new(),
                    ));
                }
                let v = self
                    .mail
                    .clock()
                    .uid_validity(&MailboxId::new(user, &mailbox));
                let made = self.query(
                    "INSERT INTO mailboxes (account, name, uidvalidity) VALUES ($1, $2, $3) \
                     ON CONFLICT (account, name) DO NOTHING RETURNING id",
                    &[&user, &mailbox, &i64::from(v)],
                )?;
                if made.is_empty() {
                    return Ok((
                        rules::refuse(Code::AlreadyExists, "Mailbox already exists"),
                        Vec::new(),
                    ));
                }
            }
            MailboxRequest::Delete { mailbox } => {
                self.query(
                    "DELETE FROM mailboxes WHERE account = $1 AND name = $2",
                    &[&user, &mailbox],
                )?;
            }
            MailboxRequest::Rename { from, to } => {
                let (old, new): (Vec<String>, Vec<String>) = names
                    .iter()
                    .filter_map(|n| rules::renamed(n, &from, &to).map(|t| (n.clone(), t)))
                    .unzip();
                self.query(
                    "UPDATE mailboxes m SET name = x.new \
                     FROM unnest($2::text[], $3::text[]) AS x(old, new) \
                     WHERE m.account = $1 AND m.name = x.old",
                    &[&user, &old, &new],
                )?;
            }
            _ => {}
        }
        Ok((MailboxAnswer::Ok, Vec::new()))
    }

    /// STORE: the flags of `uids`, under the mailbox's lock.
    pub(super) fn store(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        mode: StoreMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<Outcome, PgError> {
        self.mail.pg().transact(|c| {
            let lock = c.stmt(LOCK)?;
            let read = c.stmt(
                "SELECT uid, flags, modseq FROM messages WHERE mailbox = $1 AND uid = ANY ($2) \
                 LIMIT $3",
            )?;
            let write = c.stmt(
                "WITH u AS (UPDATE messages m SET flags = string_to_array(x.f, ' '), \
                 modseq = x.ms FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS x(uid, f, ms) \
                 WHERE m.mailbox = $1 AND m.uid = x.uid) \
                 UPDATE mailboxes SET highestmodseq = $5, keywords = $6 WHERE id = $1",
            )?;
            let mut tx = c.client().transaction()?;
            let Some(row) = tx.query_opt(&lock, &[&user, &mailbox])? else {
                return Ok((rules::missing(false), Vec::new()));
            };
            let b = box_row(&row)?;
            let rows = tx.query(&read, &[&b.id, &uids64(uids), &(uids.len() as i64)])?;
            let mut current: HashMap<u32, (Vec<String>, u64)> = HashMap::new();
            for r in &rows {
                current.insert(
                    small(r.try_get(0)?)?,
                    (r.try_get(1)?, unsigned(r.try_get(2)?)?),
                );
            }
            let mut keywords = b.keywords.clone();
            let mut highest = b.highest_modseq;
            let (mut changed, mut modified) = (Vec::new(), Vec::new());
            let mut writes: BTreeMap<u32, (String, i64)> = BTreeMap::new();
            for u in uids {
                let Some((fl, ms)) = current.get_mut(u) else {
                    continue;
                };
                match rules::store_step(fl, *ms, mode, flags, unchanged_since, &mut keywords) {
                    StoreStep::Modified => {
                        modified.push(*u);
                        continue;
                    }
                    StoreStep::Unchanged => {}
                    StoreStep::Changed(new) => {
                        *ms = rules::next_modseq(&mut highest);
                        *fl = new;
                        writes.insert(*u, (joined(fl), big(*ms)?));
                    }
                }
                changed.push(Stored {
                    uid: *u,
                    flags: fl.clone(),
                    modseq: *ms,
                });
            }
            if !writes.is_empty() || keywords != b.keywords {
                let w_uids: Vec<i64> = writes.keys().map(|u| i64::from(*u)).collect();
                let (w_flags, w_ms): (Vec<String>, Vec<i64>) = writes.into_values().unzip();
                tx.execute(
                    &write,
                    &[&b.id, &w_uids, &w_flags, &w_ms, &big(highest)?, &keywords],
                )?;
            }
            tx.commit()?;
            let touched = if highest != b.highest_modseq {
                vec![mailbox.to_owned()]
            } else {
                Vec::new()
            };
            Ok((MailboxAnswer::Flags { changed, modified }, touched))
        })
    }

    /// EXPUNGE and UID EXPUNGE.
    pub(super) fn expunge(
        &self,
        user: &str,
        mailbox: &str,
        only: Option<&[u32]>,
    ) -> Result<Outcome, PgError> {
        self.mail.pg().transact(|c| {
            let lock = c.stmt(LOCK)?;
            let read = c.stmt(
                "SELECT uid, flags FROM messages WHERE mailbox = $1 AND $2 = ANY (flags) \
                 ORDER BY uid LIMIT $3",
            )?;
            let mut tx = c.client().transaction()?;
            let Some(row) = tx.query_opt(&lock, &[&user, &mailbox])? else {
                return Ok((rules::missing(false), Vec::new()));
            };
            let b = box_row(&row)?;
            let rows = tx.query(
                &read,
                &[&b.id, &rules::DELETED, &super::mailbox::MAX_MESSAGES],
            )?;
            let mut deleted: Vec<(u32, Vec<String>)> = Vec::with_capacity(rows.len());
            for r in &rows {
                deleted.push((small(r.try_get(0)?)?, r.try_get(1)?));
            }
            let gone = rules::expunge_set(deleted.iter().map(|(u, f)| (*u, f.as_slice())), only);
            if !gone.is_empty() {
                let mut highest = b.highest_modseq;
                let modseq = rules::next_modseq(&mut highest);
                remove(&mut tx, &b, &gone, modseq)?;
            }
            tx.commit()?;
            let touched = if gone.is_empty() {
                Vec::new()
            } else {
                vec![mailbox.to_owned()]
            };
            Ok((MailboxAnswer::Expunged(gone), touched))
        })
    }

    /// APPEND: the body into the object store first, then the message
    /// under the mailbox's lock.
    pub(super) fn append(
        &self,
        user: &str,
        mailbox: &str,
        flags: &[String],
        data: Vec<u8>,
        date: Option<i64>,
    ) -> Result<Outcome, PgError> {
        let limit = self.limit(user);
        let size = big(data.len() as u64)?;
        let super::blobs::StoredBody {
            hash,
            header,
            summary,
        } = self.mail.blobs().ensure(&data)?;
        let now = self.mail.clock().now();
        let date = date.unwrap_or(now);
        self.mail.pg().transact(|c| {
            let lock = c.stmt(LOCK)?;
            let used = c.stmt(USED)?;
            let blob = c.stmt(
                "INSERT INTO blobs (hash, size, created, header, summary) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (hash) DO NOTHING",
            )?;
            let add = c.stmt(
                "WITH i AS (INSERT INTO messages \
                 (mailbox, uid, blob, prefix, size, internaldate, flags, modseq) \
                 VALUES ($1, $2, $3, ''::bytea, $4, $5, $6, $7)) \
                 UPDATE mailboxes SET uidnext = $8, highestmodseq = $7, keywords = $9 WHERE id = $1",
            )?;
            let mut tx = c.client().transaction()?;
            // The body's row before the mailbox's (the order every
            // transaction takes its locks in: bodies, then mailboxes).
            tx.execute(&blob, &[&hash, &size, &now, &header, &summary])?;
            let Some(row) = tx.query_opt(&lock, &[&user, &mailbox])? else {
                return Ok((rules::missing(true), Vec::new()));
            };
            let b = box_row(&row)?;
            if limit.is_some() {
                let u = unsigned(tx.query_one(&used, &[&user])?.try_get(0)?)?;
                if !rules::quota_allows(u, data.len() as u64, limit) {
                    return Ok((rules::over_quota(), Vec::new()));
                }
            }
            let mut keywords = b.keywords.clone();
            let flags = rules::canonical_flags(flags, &mut keywords);
            let mut uid_next = b.uid_next;
            let uid = rules::next_uid(&mut uid_next);
            let mut highest = b.highest_modseq;
            let modseq = rules::next_modseq(&mut highest);
            tx.execute(
                &add,
                &[
                    &b.id,
                    &i64::from(uid),
                    &hash,
                    &size,
                    &date,
                    &flags,
                    &big(modseq)?,
                    &i64::from(uid_next),
                    &keywords,
                ],
            )?;
            tx.commit()?;
            Ok((
                MailboxAnswer::Uids {
                    uid_validity: b.uid_validity,
                    from: Vec::new(),
                    to: vec![uid],
                },
                vec![mailbox.to_owned()],
            ))
        })
    }

    /// COPY and MOVE: both mailboxes locked (in id order), the copies
    /// made from the source rows (the bodies are shared, not copied),
    /// and for MOVE the originals expunged, in one transaction.
    pub(super) fn copy(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        to: &str,
        moving: bool,
    ) -> Result<Outcome, PgError> {
        let limit = self.limit(user);
        self.mail.pg().transact(|c| {
            let lock = c.stmt(concat!(
                "SELECT ",
                box_cols!(),
                ", b.name FROM mailboxes b WHERE b.account = $1 AND b.name = ANY ($2) \
                 ORDER BY b.id FOR UPDATE"
            ))?;
            let used = c.stmt(USED)?;
            let read = c.stmt(
                "SELECT uid, flags, size FROM messages WHERE mailbox = $1 AND uid = ANY ($2) \
                 LIMIT $3",
            )?;
            let add = c.stmt(
                "WITH i AS (INSERT INTO messages \
                 (mailbox, uid, blob, prefix, size, internaldate, flags, modseq) \
                 SELECT $1, x.new, m.blob, m.prefix, m.size, m.internaldate, \
                 string_to_array(x.f, ' '), x.ms \
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) \
                 AS x(old, new, f, ms) JOIN messages m ON m.mailbox = $6 AND m.uid = x.old) \
                 UPDATE mailboxes SET uidnext = $7, highestmodseq = $8, keywords = $9 WHERE id = $1",
            )?;
            let mut tx = c.client().transaction()?;
            let names = vec![mailbox.to_owned(), to.to_owned()];
            let rows = tx.query(&lock, &[&user, &names])?;
            let (mut src, mut dst) = (None, None);
            for r in &rows {
                let name: String = r.try_get(7)?;
                let b = box_row(r)?;
                if name == mailbox {
                    src = Some(b.clone());
                }
                if name == to {
                    dst = Some(b);
                }
            }
            if let Some(no) =
                rules::copy_refusal(src.is_some(), dst.is_some(), mailbox == to, moving)
            {
                return Ok((no, Vec::new()));
            }
            let (Some(s), Some(d)) = (src, dst) else {
                return Ok((rules::missing(true), Vec::new()));
            };
            let rows = tx.query(&read, &[&s.id, &uids64(uids), &(uids.len() as i64)])?;
            let mut found: HashMap<u32, (Vec<String>, u64)> = HashMap::new();
            for r in &rows {
                found.insert(
                    small(r.try_get(0)?)?,
                    (r.try_get(1)?, unsigned(r.try_get(2)?)?),
                );
            }
            let picked: Vec<(u32, &(Vec<String>, u64))> = uids
                .iter()
                .filter_map(|u| found.get(u).map(|m| (*u, m)))
                .collect();
            let adding = rules::copy_adds(moving, picked.iter().map(|(_, m)| m.1));
            if limit.is_some() {
                let u = unsigned(tx.query_one(&used, &[&user])?.try_get(0)?)?;
                if !rules::quota_allows(u, adding, limit) {
                    return Ok((rules::over_quota(), Vec::new()));
                }
            }
            let mut keywords = d.keywords.clone();
            let mut uid_next = d.uid_next;
            let mut highest = d.highest_modseq;
            let (mut from, mut new, mut fl, mut ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (u, (flags, _)) in &picked {
                from.push(*u);
                fl.push(joined(&rules::canonical_flags(flags, &mut keywords)));
                new.push(rules::next_uid(&mut uid_next));
                ms.push(big(rules::next_modseq(&mut highest))?);
            }
            let mut touched = vec![to.to_owned()];
            if !new.is_empty() {
                tx.execute(
                    &add,
                    &[
                        &d.id,
                        &uids64(&from),
                        &uids64(&new),
                        &fl,
                        &ms,
                        &s.id,
                        &i64::from(uid_next),
                        &big(highest)?,
                        &keywords,
                    ],
                )?;
            }
            if moving && !from.is_empty() {
                let mut gone = from.clone();
                gone.sort_unstable();
                gone.dedup();
                let mut h = s.highest_modseq;
                let modseq = rules::next_modseq(&mut h);
                remove(&mut tx, &s, &gone, modseq)?;
                touched.push(mailbox.to_owned());
            }
            tx.commit()?;
            if new.is_empty() {
                touched.clear();
            }
            Ok((
                MailboxAnswer::Uids {
                    uid_validity: d.uid_validity,
                    from,
                    to: new,
                },
                touched,
            ))
        })
    }
}
