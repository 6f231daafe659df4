//! The IMAP mailbox store on PostgreSQL: [`PgMailbox`] answers every
//! request of the IMAP session from the database (mailboxes, message
//! metadata, flags, keywords, mod-sequences, `\Recent`, QRESYNC
//! tombstones, subscriptions) and the object store (bodies), with the
//! same answers as the in-memory store. The requests that change state
//! are in `mailbox_write.rs`.
//!
//! Database round trips per request (statements prepared once per
//! connection; BEGIN and COMMIT are one each):
//! - Poll (NOOP, IDLE wake, after each command): 1, whether or not
//!   something changed since this process last read the mailbox (the row
//!   and what changed since: messages with a higher mod-sequence and the
//!   tombstones, merged into the cached messages), 1 the first time (the
//!   row and every message); +1 taking `\Recent`.
//! - SELECT: 1 (the names) + a Poll's.
//! - STATUS, Vanished, Quota, Subscribe, version: 1.
//! - LIST: 1; +1 with STATUS; +1 for LSUB/`(SUBSCRIBED)`.
//! - FETCH bodies: 1, and one object-store GET per body not cached (none
//!   for a header fetch: the header section is in the body's row);
//!   summaries: 1 (the parsed summary is in the body's row too).
//! - CREATE, DELETE: 2; RENAME: 2.
//! - STORE: 5 (BEGIN, lock the mailbox row, read the messages, write
//!   flags + mod-sequence in one statement, COMMIT); 4 when nothing changes.
//! - EXPUNGE: 4 (BEGIN, lock, read the `\Deleted`, COMMIT); 5 when
//!   messages go (+1 when the tombstones pass their bound and are trimmed).
//! - APPEND: 6 (the body lookup, + a PUT when new; BEGIN, index the body,
//!   lock, insert + UIDNEXT in one statement, COMMIT); +1 under a quota.
//! - COPY: 5 (BEGIN, lock both, read, insert + UIDNEXT, COMMIT); MOVE: 6
//!   (+ expunge with tombstones); +1 for COPY under a quota.
//! - delivery: 6 for a batch with a new body, whatever its number of
//!   recipients (`PgMail::deliver`).
//!
//! `conformance/tests/pg_mailbox.rs` measures these (pg_stat_statements).
//!
//! An account's first request makes it (six round trips once per
//! account, then none while this process remembers it).

use super::cache::Bounded;
use super::{big, unsigned, PgError, PgMail};
use crate::spamstore::Warn;
use crate::store::{ChangeListener, Delivery, MailboxId, MailboxStore, StoreError, Version};
use postern_core::imap::event::{
    Code, ListEntry, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, StatusCounts, Summary,
};
use postern_core::imap::limits::MimeLimits;
use postern_core::imap::{rules, session, vanished};
use postgres::types::ToSql;
use postgres::Row;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

/// The most messages a mailbox may hold for a view (past it, requests
/// on the mailbox fail rather than load without bound).
pub const MAX_MESSAGES: i64 = 1_000_000;

/// The most mailboxes an account may have.
pub const MAX_MAILBOXES: i64 = 10_000;

/// The bounds on cached summaries, bodies and mailbox views (entries,
/// bytes).
const SUMMARY_ENTRIES: usize = 50_000;
const SUMMARY_BYTES: usize = 64 << 20;
const BODY_ENTRIES: usize = 4_096;
const BODY_BYTES: usize = 32 << 20;
const VIEW_ENTRIES: usize = 10_000;
const VIEW_BYTES: usize = 64 << 20;

/// A mailbox row (the columns of `box_cols!`).
#[derive(Clone, Debug)]
pub(super) struct BoxRow {
    pub(super) id: i64,
    pub(super) uid_validity: u32,
    pub(super) uid_next: u32,
    pub(super) highest_modseq: u64,
    pub(super) keywords: Vec<String>,
    pub(super) first_recent: u32,
    pub(super) tombs: i64,
}

/// A stored value that must fit a `u32` (UIDs, UIDVALIDITY).
pub(super) fn small(v: i64) -> Result<u32, PgError> {
    u32::try_from(v).map_err(|_| PgError::Invalid(format!("{v} is not a 32-bit value")))
}

/// The mailbox row in the first columns of `row`.
pub(super) fn box_row(row: &Row) -> Result<BoxRow, PgError> {
    Ok(BoxRow {
        id: row.try_get(0)?,
        uid_validity: small(row.try_get(1)?)?,
        uid_next: small(row.try_get(2)?)?,
        highest_modseq: unsigned(row.try_get(3)?)?,
        keywords: row.try_get(4)?,
        first_recent: small(row.try_get(5)?)?,
        tombs: row.try_get(6)?,
    })
}

/// UIDs as database integers.
pub(super) fn uids64(uids: &[u32]) -> Vec<i64> {
    uids.iter().map(|u| i64::from(*u)).collect()
}

/// A mailbox's messages, as a view shares them.
type Messages = Arc<Vec<MessageMeta>>;

/// The most changed or expunged messages read to bring a cached mailbox
/// up to date; past it the whole mailbox is read again.
const DELTA_ROWS: i64 = 10_000;

/// What a cached mailbox view costs the cache, roughly in bytes.
fn view_cost(messages: &[MessageMeta]) -> usize {
    64 + messages
        .iter()
        .map(|m| 48 + m.flags.len() * 16)
        .sum::<usize>()
}

/// The message in the columns from `at` (uid, flags, size, internal date,
/// mod-sequence): `None` for a missing row (no UID) or a tombstone (no
/// size).
fn message_at(r: &Row, at: usize) -> Result<Option<MessageMeta>, PgError> {
    let Some(uid) = r.try_get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    let Some(size) = r.try_get::<_, Option<i64>>(at + 2)? else {
        return Ok(None);
    };
    Ok(Some(MessageMeta {
        uid: small(uid)?,
        flags: r
            .try_get::<_, Option<Vec<String>>>(at + 1)?
            .unwrap_or_default(),
        size: unsigned(size)?,
        internal_date: r.try_get::<_, Option<i64>>(at + 3)?.unwrap_or_default(),
        modseq: unsigned(r.try_get::<_, Option<i64>>(at + 4)?.unwrap_or_default())?,
    }))
}

/// `old` with the changes of a delta read (columns from 9: a changed or
/// new message, or an expunged UID) applied, in UID order.
fn merge(old: &[MessageMeta], rows: &[Row]) -> Result<Vec<MessageMeta>, PgError> {
    let mut changed: HashMap<u32, Option<MessageMeta>> = HashMap::with_capacity(rows.len());
    for r in rows {
        if let Some(uid) = r.try_get::<_, Option<i64>>(9)? {
            changed.insert(small(uid)?, message_at(r, 9)?);
        }
    }
    let mut out = Vec::with_capacity(old.len() + changed.len());
    for m in old {
        match changed.remove(&m.uid) {
            None => out.push(m.clone()),
            Some(Some(new)) => out.push(new),
            Some(None) => {}
        }
    }
    let mut added: Vec<MessageMeta> = changed.into_values().flatten().collect();
    added.sort_unstable_by_key(|m| m.uid);
    let sorted = match (out.last(), added.first()) {
        (Some(a), Some(b)) => a.uid < b.uid,
        _ => true,
    };
    out.extend(added);
    if !sorted {
        out.sort_unstable_by_key(|m| m.uid);
    }
    Ok(out)
}

/// The messages of a mailbox and the row values they were read at.
type ViewStamp = ((i64, u32, u32, u64), Messages);

/// A mailbox's id and, by UID, a message's (trace prefix, body hash).
type Located = (i64, HashMap<u32, Stored>);

/// Where a message is: its trace prefix, its body's hash and, when kept
/// in the database, the body's header section and summary image.
struct Stored {
    prefix: Vec<u8>,
    hash: String,
    header: Option<Vec<u8>>,
    summary: Option<Vec<u8>>,
}

/// The mailbox store of every account on PostgreSQL + S3.
pub struct PgMailbox {
    pub(super) mail: PgMail,
    pub(super) quota: Option<u64>,
    pub(super) quotas: HashMap<String, u64>,
    mime: MimeLimits,
    summaries: Bounded<(i64, u32), Summary>,
    bodies: Bounded<String, Arc<Vec<u8>>>,
    /// The messages of mailboxes read before, by (account, name), with
    /// the (id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) they were read at.
    views: Bounded<(String, String), ViewStamp>,
    listener: OnceLock<ChangeListener>,
    last_error: Mutex<Option<String>>,
    warn: Option<Warn>,
}

impl std::fmt::Debug for PgMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMailbox")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl PgMailbox {
    /// The store over `mail` (its database, bucket and clock).
    pub fn new(mail: PgMail) -> Self {
        Self {
            mail,
            quota: None,
            quotas: HashMap::new(),
            mime: MimeLimits::default(),
            summaries: Bounded::new(SUMMARY_ENTRIES, SUMMARY_BYTES),
            bodies: Bounded::new(BODY_ENTRIES, BODY_BYTES),
            views: Bounded::new(VIEW_ENTRIES, VIEW_BYTES),
            listener: OnceLock::new(),
            last_error: Mutex::new(None),
            warn: None,
        }
    }

    /// Sets the hook told of every failed request, once each: the
    /// operation, the account and the mailbox, and why (never message
    /// contents or passwords). The daemon logs them.
    pub fn with_warn(mut self, warn: Warn) -> Self {
        self.warn = Some(warn);
        self
    }

    /// Sets the storage limit: `default` for every account, `per_user`
    /// for some (bytes; lower-case keys).
    pub fn with_quota(mut self, default: Option<u64>, per_user: HashMap<String, u64>) -> Self {
        self.quota = default;
        self.quotas = per_user
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        self
    }

    /// Sets the MIME limits summaries are parsed with (as the sessions'
    /// live sections are).
    pub fn with_mime(mut self, mime: MimeLimits) -> Self {
        self.mime = mime;
        self
    }

    /// The delivery half (and its database pool).
    pub fn mail(&self) -> &PgMail {
        &self.mail
    }

    /// Why the last request failed, if one did (for logs and tests).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn limit(&self, user: &str) -> Option<u64> {
        self.quotas.get(user).copied().or(self.quota)
    }

    /// Tells the listener (this process's sessions) about `mailbox`.
    pub(super) fn changed(&self, user: &str, mailbox: &str) {
        if let Some(l) = self.listener.get() {
            l(&MailboxId::new(user, mailbox));
        }
    }

    /// Tells the listener about mailboxes another replica (or this one)
    /// changed, as a [`super::notify::Listener`] heard them.
    pub fn notify(&self, changed: &[MailboxId]) {
        if let Some(l) = self.listener.get() {
            for id in changed {
                l(id);
            }
        }
    }

    /// One statement, outside a transaction.
    pub(super) fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        self.mail.pg().with(|c| {
            let s = c.stmt(sql)?;
            Ok(c.client().query(&s, params)?)
        })
    }

    /// The account's mailbox names, in byte order.
    pub(super) fn names(&self, user: &str) -> Result<Vec<String>, PgError> {
        let rows = self.query(
            "SELECT name FROM mailboxes WHERE account = $1 ORDER BY name COLLATE \"C\" LIMIT $2",
            &[&user, &MAX_MAILBOXES],
        )?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The bytes the account's messages take.
    pub(super) fn used(&self, user: &str) -> Result<u64, PgError> {
        let rows = self.query(USED, &[&user])?;
        match rows.first() {
            Some(r) => unsigned(r.try_get(0)?),
            None => Ok(0),
        }
    }

    fn run(
        &self,
        user: &str,
        req: MailboxRequest,
    ) -> Result<(MailboxAnswer, Vec<String>), PgError> {
        use MailboxRequest as R;
        let answer = match req {
            R::List {
                patterns,
                subscribed_only,
                with_status,
            } => self.list(user, &patterns, subscribed_only, with_status)?,
            R::Select {
                mailbox,
                take_recent,
            } => self.view(user, &mailbox, take_recent, true)?,
            R::Poll {
                mailbox,
                take_recent,
            } => self.view(user, &mailbox, take_recent, false)?,
            R::Vanished { mailbox, since } => self.vanished(user, &mailbox, since)?,
            R::Status { mailbox } => match self.statuses(user, Some(&mailbox))?.pop() {
                Some((_, s)) => MailboxAnswer::Status(s),
                None => rules::missing(false),
            },
            R::Quota => MailboxAnswer::Quota {
                used: self.used(user)?,
                limit: self.limit(user),
            },
            R::Subscribe { mailbox, on } => {
                let sql = if on {
                    "INSERT INTO subscriptions (account, name) VALUES ($1, $2) \
                     ON CONFLICT (account, name) DO NOTHING"
                } else {
                    "DELETE FROM subscriptions WHERE account = $1 AND name = $2"
                };
                self.query(sql, &[&user, &mailbox])?;
                MailboxAnswer::Ok
            }
            R::Bodies {
                mailbox,
                uids,
                header_only,
            } => self.bodies(user, &mailbox, &uids, header_only)?,
            R::Summaries { mailbox, uids } => self.summaries(user, &mailbox, &uids)?,
            r @ (R::Create { .. } | R::Delete { .. } | R::Rename { .. }) => {
                return self.manage(user, r)
            }
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => return self.store(user, &mailbox, &uids, mode, &flags, unchanged_since),
            R::Expunge { mailbox, uids } => return self.expunge(user, &mailbox, uids.as_deref()),
            R::Append {
                mailbox,
                flags,
                data,
                date,
            } => return self.append(user, &mailbox, &flags, data, date),
            R::Copy {
                mailbox,
                uids,
                to,
                moving,
            } => return self.copy(user, &mailbox, &uids, &to, moving),
        };
        Ok((answer, Vec::new()))
    }

    fn list(
        &self,
        user: &str,
        patterns: &[String],
        subscribed_only: bool,
        with_status: bool,
    ) -> Result<MailboxAnswer, PgError> {
        let rows = self.query(
            "SELECT b.name, EXISTS (SELECT 1 FROM subscriptions s \
             WHERE s.account = b.account AND s.name = b.name) \
             FROM mailboxes b WHERE b.account = $1 ORDER BY b.name COLLATE \"C\" LIMIT $2",
            &[&user, &MAX_MAILBOXES],
        )?;
        let mut names = Vec::with_capacity(rows.len());
        let mut subscribed = HashSet::new();
        for r in &rows {
            let name: String = r.try_get(0)?;
            if r.try_get(1)? {
                subscribed.insert(name.clone());
            }
            names.push(name);
        }
        let mut status: HashMap<String, StatusCounts> = if with_status {
            self.statuses(user, None)?.into_iter().collect()
        } else {
            HashMap::new()
        };
        let mut entries: Vec<ListEntry> = names
            .iter()
            .filter(|n| patterns.iter().any(|p| session::wildcard(p, n)))
            .filter(|n| !subscribed_only || subscribed.contains(*n))
            .map(|n| ListEntry {
                name: n.clone(),
                attributes: session::list_attributes(names.iter(), n, subscribed.contains(n)),
                status: status.remove(n),
            })
            .collect();
        if subscribed_only {
            let rows = self.query(
                "SELECT name FROM subscriptions WHERE account = $1 \
                 ORDER BY name COLLATE \"C\" LIMIT $2",
                &[&user, &MAX_MAILBOXES],
            )?;
            let subs: Vec<String> = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            entries.extend(session::nonexistent_subscriptions(&subs, &names, patterns));
            entries.sort_by(|x, y| x.name.cmp(&y.name));
        }
        Ok(MailboxAnswer::List(entries))
    }

    /// STATUS counts of one mailbox (or all of the account's), by name.
    fn statuses(
        &self,
        user: &str,
        mailbox: Option<&str>,
    ) -> Result<Vec<(String, StatusCounts)>, PgError> {
        let rows = self.query(
            "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq, \
             count(m.uid), count(m.uid) FILTER (WHERE NOT ($3 = ANY (m.flags))), \
             count(m.uid) FILTER (WHERE m.uid >= b.first_recent), \
             COALESCE(sum(m.size), 0)::bigint, \
             count(m.uid) FILTER (WHERE $4 = ANY (m.flags)), \
             COALESCE(sum(m.size) FILTER (WHERE $4 = ANY (m.flags)), 0)::bigint \
             FROM mailboxes b LEFT JOIN messages m ON m.mailbox = b.id \
             WHERE b.account = $1 AND ($2::text IS NULL OR b.name = $2) \
             GROUP BY b.id ORDER BY b.name COLLATE \"C\" LIMIT $5",
            &[
                &user,
                &mailbox,
                &rules::SEEN,
                &rules::DELETED,
                &MAX_MAILBOXES,
            ],
        )?;
        let count = |r: &Row, i: usize| -> Result<u32, PgError> { small(r.try_get(i)?) };
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    StatusCounts {
                        uid_validity: small(r.try_get(1)?)?,
                        uid_next: small(r.try_get(2)?)?,
                        highest_modseq: unsigned(r.try_get(3)?)?,
                        messages: count(r, 4)?,
                        unseen: count(r, 5)?,
                        recent: count(r, 6)?,
                        size: unsigned(r.try_get(7)?)?,
                        deleted: count(r, 8)?,
                        deleted_storage: unsigned(r.try_get(9)?)?,
                    },
                ))
            })
            .collect()
    }

    /// The mailbox row and its messages. When this process read the
    /// mailbox's messages before, one statement reads the row and what
    /// changed since: the messages with a higher mod-sequence and the
    /// UIDs expunged (tombstones); every change to a mailbox's messages
    /// moves its UIDNEXT or HIGHESTMODSEQ and gives what it touched that
    /// mod-sequence. Else (or when the tombstones since were trimmed, or
    /// the merged copy's count disagrees) one statement reads the row and
    /// every message (one snapshot), and the messages are cached.
    fn read_view(&self, user: &str, mailbox: &str) -> Result<Option<(BoxRow, Messages)>, PgError> {
        let key = (user.to_owned(), mailbox.to_owned());
        if let Some((stamp, messages)) = self.views.get(&key) {
            let rows = self.query(
                concat!(
                    "SELECT ",
                    box_cols!(),
                    ", b.tomb_floor, CASE WHEN b.uidnext <> $4 OR b.highestmodseq <> $3 \
                     THEN (SELECT count(*) FROM messages c WHERE c.mailbox = b.id) END, \
                     d.uid, d.flags, d.size, d.internaldate, d.modseq \
                     FROM mailboxes b LEFT JOIN LATERAL ( \
                     SELECT m.uid, m.flags, m.size, m.internaldate, m.modseq FROM messages m \
                     WHERE m.mailbox = b.id AND m.modseq > $3 AND b.highestmodseq <> $3 \
                     UNION ALL SELECT t.uid, NULL::text[], NULL::bigint, NULL::bigint, NULL::bigint \
                     FROM tombstones t WHERE t.mailbox = b.id AND t.modseq > $3) d ON true \
                     WHERE b.account = $1 AND b.name = $2 LIMIT $5"
                ),
                &[
                    &user,
                    &mailbox,
                    &big(stamp.3)?,
                    &i64::from(stamp.2),
                    &(DELTA_ROWS + 1),
                ],
            )?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let b = box_row(row)?;
            let now = (b.id, b.uid_validity, b.uid_next, b.highest_modseq);
            if stamp == now {
                return Ok(Some((b, messages)));
            }
            let floor = unsigned(row.try_get(7)?)?;
            let count: Option<i64> = row.try_get(8)?;
            if (b.id, b.uid_validity) == (stamp.0, stamp.1)
                && floor <= stamp.3
                && rows.len() as i64 <= DELTA_ROWS
            {
                let merged = merge(&messages, &rows)?;
                if count == Some(merged.len() as i64) {
                    let messages = Arc::new(merged);
                    self.views
                        .put(key, (now, messages.clone()), view_cost(&messages));
                    return Ok(Some((b, messages)));
                }
            }
        }
        let rows = self.query(
            concat!(
                "SELECT ",
                box_cols!(),
                ", m.uid, m.flags, m.size, m.internaldate, m.modseq \
                 FROM mailboxes b LEFT JOIN messages m ON m.mailbox = b.id \
                 WHERE b.account = $1 AND b.name = $2 ORDER BY m.uid LIMIT $3"
            ),
            &[&user, &mailbox, &(MAX_MESSAGES + 1)],
        )?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        if rows.len() as i64 > MAX_MESSAGES {
            return Err(PgError::Invalid(format!(
                "mailbox {mailbox} holds more than {MAX_MESSAGES} messages"
            )));
        }
        let b = box_row(first)?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(m) = message_at(r, 7)? {
                messages.push(m);
            }
        }
        let messages = Arc::new(messages);
        let stamp = (b.id, b.uid_validity, b.uid_next, b.highest_modseq);
        self.views
            .put(key, (stamp, messages.clone()), view_cost(&messages));
        Ok(Some((b, messages)))
    }

    /// SELECT (with the attributes) or a Poll: the view, taking `\Recent`
    /// when asked. The mark moves only if no other session moved it since
    /// the view was read (else the view is read again, at most thrice).
    fn view(
        &self,
        user: &str,
        mailbox: &str,
        take_recent: bool,
        select: bool,
    ) -> Result<MailboxAnswer, PgError> {
        let attributes = if select {
            let names = self.names(user)?;
            if !names.iter().any(|n| n == mailbox) {
                return Ok(rules::missing(false));
            }
            session::list_attributes(names.iter(), mailbox, false)
        } else {
            Vec::new()
        };
        for attempt in 0..3 {
            let Some((b, messages)) = self.read_view(user, mailbox)? else {
                return Ok(rules::missing(false));
            };
            let mut recent = Vec::new();
            if take_recent && attempt < 2 && b.first_recent < b.uid_next {
                let mut mark = b.first_recent;
                let taken =
                    vanished::take_recent(&mut mark, b.uid_next, messages.iter().map(|m| m.uid));
                let moved = self.query(
                    "UPDATE mailboxes SET first_recent = $3 \
                     WHERE id = $1 AND first_recent = $2 RETURNING id",
                    &[&b.id, &i64::from(b.first_recent), &i64::from(mark)],
                )?;
                if moved.is_empty() {
                    continue;
                }
                recent = taken;
            }
            return Ok(MailboxAnswer::View(MailboxView {
                recent,
                uid_validity: b.uid_validity,
                uid_next: b.uid_next,
                messages,
                keywords: b.keywords,
                highest_modseq: b.highest_modseq,
                attributes: attributes.clone(),
            }));
        }
        Err(PgError::Invalid("view kept changing".into()))
    }

    fn vanished(&self, user: &str, mailbox: &str, since: u64) -> Result<MailboxAnswer, PgError> {
        let rows = self.query(
            "SELECT b.tomb_floor, t.uid FROM mailboxes b \
             LEFT JOIN tombstones t ON t.mailbox = b.id AND t.modseq > $3 \
             WHERE b.account = $1 AND b.name = $2 LIMIT $4",
            &[
                &user,
                &mailbox,
                &big(since)?,
                &(vanished::MAX_TOMBSTONES as i64 + 1),
            ],
        )?;
        let Some(first) = rows.first() else {
            return Ok(rules::missing(false));
        };
        let floor = unsigned(first.try_get(0)?)?;
        let mut uids = Vec::new();
        for r in &rows {
            if let Some(u) = r.try_get::<_, Option<i64>>(1)? {
                uids.push(small(u)?);
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(MailboxAnswer::Vanished { uids, floor })
    }

    /// The mailbox id and, of `uids`, those present with (prefix, body
    /// hash); None if there is no such mailbox.
    fn locate(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Option<Located>, PgError> {
        let rows = self.query(
            "SELECT b.id, m.uid, m.prefix, m.blob, bl.header, bl.summary FROM mailboxes b \
             LEFT JOIN messages m ON m.mailbox = b.id AND m.uid = ANY ($3) \
             LEFT JOIN blobs bl ON bl.hash = m.blob \
             WHERE b.account = $1 AND b.name = $2 LIMIT $4",
            &[&user, &mailbox, &uids64(uids), &(uids.len() as i64 + 1)],
        )?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let id: i64 = first.try_get(0)?;
        let mut found = HashMap::new();
        for r in &rows {
            if let Some(u) = r.try_get::<_, Option<i64>>(1)? {
                let stored = Stored {
                    prefix: r.try_get(2)?,
                    hash: r.try_get(3)?,
                    header: r.try_get(4)?,
                    summary: r.try_get(5)?,
                };
                found.insert(small(u)?, stored);
            }
        }
        Ok(Some((id, found)))
    }

    /// A message's bytes: its trace prefix and its body (cached).
    fn message(&self, prefix: &[u8], hash: &str) -> Result<Vec<u8>, PgError> {
        let body = match self.bodies.get(&hash.to_owned()) {
            Some(b) => b,
            None => {
                let b = Arc::new(self.mail.blobs().fetch(hash)?);
                self.bodies.put(hash.to_owned(), b.clone(), b.len());
                b
            }
        };
        let mut out = Vec::with_capacity(prefix.len() + body.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn bodies(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        header_only: bool,
    ) -> Result<MailboxAnswer, PgError> {
        let Some((_, found)) = self.locate(user, mailbox, uids)? else {
            return Ok(rules::missing(false));
        };
        let mut out = Vec::new();
        for u in uids {
            let Some(s) = found.get(u) else {
                continue;
            };
            // A header fetch from the database when the header is kept
            // there (the trace prefix is header lines: it comes first).
            let data = match (&s.header, header_only) {
                (Some(h), true) => [s.prefix.as_slice(), h].concat(),
                _ => {
                    let mut data = self.message(&s.prefix, &s.hash)?;
                    if header_only {
                        data.truncate(postern_core::imap::fetch::header_len(&data));
                    }
                    data
                }
            };
            out.push((*u, data));
        }
        Ok(MailboxAnswer::Bodies(out))
    }

    fn summaries(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<MailboxAnswer, PgError> {
        let Some((id, found)) = self.locate(user, mailbox, uids)? else {
            return Ok(rules::missing(false));
        };
        let mut out = Vec::new();
        for u in uids {
            let Some(stored) = found.get(u) else {
                continue;
            };
            let s = match self.summaries.get(&(id, *u)) {
                Some(s) => s,
                None => {
                    // The row's summary was made with the default limits.
                    let kept = stored
                        .summary
                        .as_deref()
                        .filter(|_| self.mime == MimeLimits::default())
                        .and_then(super::summary::decode);
                    let s = match kept {
                        Some(s) => s,
                        None => postern_core::imap::mime::summary_with(
                            &self.message(&stored.prefix, &stored.hash)?,
                            self.mime,
                        ),
                    };
                    let cost = 64 + s.envelope.len() + s.body.len() + s.bodystructure.len();
                    self.summaries.put((id, *u), s.clone(), cost);
                    s
                }
            };
            out.push((*u, s));
        }
        Ok(MailboxAnswer::Summaries(out))
    }

    /// Records and reports a failure (`what`: the operation and
    /// mailbox, from [`describe`]).
    fn fail(&self, user: &str, what: &str, e: &PgError) -> MailboxAnswer {
        self.report(&format!("mailbox store: {what} of {user} failed: {e}"));
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        rules::refuse(Code::ServerBug, "Mailbox store unavailable")
    }

    /// Tells the warning hook, if there is one.
    fn report(&self, line: &str) {
        if let Some(w) = &self.warn {
            w(line);
        }
    }
}

/// A request's operation and mailbox, for a failure's report (names
/// only: no flags, no message data).
fn describe(req: &MailboxRequest) -> String {
    use MailboxRequest as R;
    match req {
        R::List { .. } => "LIST".into(),
        R::Select { mailbox, .. } => format!("SELECT {mailbox:?}"),
        R::Poll { mailbox, .. } => format!("poll {mailbox:?}"),
        R::Vanished { mailbox, .. } => format!("VANISHED {mailbox:?}"),
        R::Status { mailbox } => format!("STATUS {mailbox:?}"),
        R::Quota => "QUOTA".into(),
        R::Subscribe { mailbox, .. } => format!("SUBSCRIBE {mailbox:?}"),
        R::Bodies { mailbox, .. } => format!("FETCH (bodies) {mailbox:?}"),
        R::Summaries { mailbox, .. } => format!("FETCH (summaries) {mailbox:?}"),
        R::Create { mailbox } => format!("CREATE {mailbox:?}"),
        R::Delete { mailbox } => format!("DELETE {mailbox:?}"),
        R::Rename { from, to } => format!("RENAME {from:?} to {to:?}"),
        R::Store { mailbox, .. } => format!("STORE {mailbox:?}"),
        R::Expunge { mailbox, .. } => format!("EXPUNGE {mailbox:?}"),
        R::Append { mailbox, .. } => format!("APPEND {mailbox:?}"),
        R::Copy {
            mailbox,
            to,
            moving,
            ..
        } => format!(
            "{} {mailbox:?} to {to:?}",
            if *moving { "MOVE" } else { "COPY" }
        ),
    }
}

/// The bytes an account's messages take.
pub(super) const USED: &str = "SELECT COALESCE(sum(m.size), 0)::bigint FROM messages m \
     JOIN mailboxes b ON m.mailbox = b.id WHERE b.account = $1";

impl MailboxStore for PgMailbox {
    fn answer(&self, user: &str, request: MailboxRequest) -> MailboxAnswer {
        if !user.contains('@') {
            return rules::refuse(Code::ServerBug, "Account unavailable");
        }
        let user = user.to_lowercase();
        let poll = matches!(request, MailboxRequest::Poll { .. });
        let what = describe(&request);
        let r = self
            .mail
            .ensure_account(&user)
            .and_then(|()| self.run(&user, request));
        match r {
            Ok((answer, touched)) => {
                for m in touched {
                    self.changed(&user, &m);
                }
                match answer {
                    MailboxAnswer::View(v) if poll => MailboxAnswer::Changed(v),
                    other => other,
                }
            }
            Err(e) => self.fail(&user, &what, &e),
        }
    }

    fn over_quota(&self, user: &str) -> bool {
        let user = user.to_lowercase();
        let Some(limit) = self.limit(&user) else {
            return false;
        };
        // A store that cannot tell answers false.
        match self.used(&user) {
            Ok(used) => rules::quota_full(used, Some(limit)),
            Err(e) => {
                self.report(&format!("mailbox store: quota of {user} failed: {e}"));
                false
            }
        }
    }

    fn version(&self, mailbox: &MailboxId) -> Option<Version> {
        let rows = self
            .query(
                "SELECT uidvalidity, highestmodseq FROM mailboxes WHERE account = $1 AND name = $2",
                &[&mailbox.user, &mailbox.mailbox],
            )
            .ok()?;
        let r = rows.first()?;
        let (v, m): (i64, i64) = (r.try_get(0).ok()?, r.try_get(1).ok()?);
        Some(Version(((v as u64) << 40) ^ (m as u64)))
    }

    /// Deliveries that fit their account's quota (Dovecot's rule, see
    /// [`rules::delivery_room`]; each account's use asked once per
    /// batch and counted on through it) go into one transaction; the
    /// others fail on their own. Another replica delivering to the same
    /// account at the same moment can add its own batch beside this one.
    fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        let mut usage: HashMap<String, u64> = HashMap::new();
        let mut fitting: Vec<Delivery> = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        for d in batch {
            let user = d.user.to_lowercase();
            if let Some(limit) = self.limit(&user) {
                let used = match usage.get(&user) {
                    Some(&u) => u,
                    None => match self.used(&user) {
                        Ok(u) => u,
                        Err(e) => {
                            out.push(Err(StoreError::Unavailable(format!(
                                "quota of {user}: {e}"
                            ))));
                            continue;
                        }
                    },
                };
                let adding = (d.prefix.len() + d.message.len()) as u64;
                let room = rules::delivery_room(used, adding, Some(limit));
                if let Err(e) = StoreError::from_room(room, &d.user) {
                    usage.insert(user, used);
                    out.push(Err(e));
                    continue;
                }
                usage.insert(user, used.saturating_add(adding));
            }
            at.push(out.len());
            out.push(Ok(()));
            fitting.push(d.clone());
        }
        if !fitting.is_empty() {
            for (i, r) in at.into_iter().zip(self.mail.deliver(&fitting)) {
                out[i] = r;
            }
        }
        for (d, r) in batch.iter().zip(&out) {
            if r.is_ok() {
                self.changed(&d.user, d.folder.as_deref().unwrap_or("INBOX"));
            }
        }
        out
    }

    fn on_change(&self, listener: ChangeListener) {
        let _ = self.listener.set(listener);
    }
}
