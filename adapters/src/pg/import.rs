//! `postern store import-maildir`: copies a Maildir++ tree (a
//! docker-mailserver volume: `<root>/<domain>/<user>/`, folders as
//! `.Name`, Dovecot's `dovecot-uidlist` and `dovecot-keywords`) into the
//! PostgreSQL + S3 store, keeping each folder's UIDVALIDITY, every
//! message's UID, flags, keywords, INTERNALDATE and mod-sequence, and the
//! subscriptions. The tree is read through the Maildir store itself (the
//! same reading of Dovecot's files the daemon does).
//!
//! Idempotent and resumable: messages go in chunks, each one transaction;
//! a UID already in the database is left alone, so a second run (or one
//! after an interrupted run) copies only what is missing. A folder whose
//! database twin already holds messages under another UIDVALIDITY is
//! refused (reported), never mixed.
//!
//! The Maildir store may write its own index files (`postern-modseq`,
//! `postern-summaries`) and file new mail into `cur/` as it reads, as
//! Dovecot would: run it on a copy of a volume that is still in use.

use super::mailbox::{small, PgMailbox};
use super::{big, PgError};
use crate::maildir::Maildir;
use crate::mailstore::MailStore;
use postern_core::imap::event::{MailboxAnswer, MailboxRequest, MessageMeta};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Messages per transaction.
const CHUNK: usize = 100;

/// The most accounts (domains x users) one run walks.
const MAX_ACCOUNTS: usize = 1_000_000;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Accounts found.
    pub accounts: usize,
    /// Folders copied (INBOX included).
    pub mailboxes: usize,
    /// Messages copied now.
    pub copied: usize,
    /// Messages already in the database (an earlier run).
    pub present: usize,
    /// Folders refused, with why.
    pub refused: Vec<String>,
}

/// The accounts of a Maildir root: `<domain>/<user>/` folders that have a
/// `cur/`, as `user@domain`, sorted.
pub fn accounts(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(root)? {
        let d = d?;
        let domain = d.file_name().to_string_lossy().into_owned();
        if !d.file_type()?.is_dir() || domain.starts_with('.') || !domain.contains('.') {
            continue;
        }
        for u in std::fs::read_dir(d.path())? {
            let u = u?;
            let user = u.file_name().to_string_lossy().into_owned();
            if user.starts_with('.') || !u.path().join("cur").is_dir() {
                continue;
            }
            out.push(format!("{user}@{domain}").to_lowercase());
            if out.len() >= MAX_ACCOUNTS {
                return Err(std::io::Error::other("too many accounts"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn source_error(what: &str, a: &MailboxAnswer) -> PgError {
    PgError::Invalid(format!("reading the Maildir ({what}): {a:?}"))
}

/// Copies every account under `root` into `store`; `progress` hears a
/// line per folder.
pub fn import_maildir(
    root: &Path,
    store: &PgMailbox,
    progress: &mut dyn FnMut(&str),
) -> Result<ImportReport, PgError> {
    let users = accounts(root).map_err(|e| PgError::Invalid(format!("{}: {e}", root.display())))?;
    let source = MailStore::new(Arc::new(Maildir::new(root, "import")));
    let mut report = ImportReport {
        accounts: users.len(),
        ..ImportReport::default()
    };
    for user in &users {
        store.mail.ensure_account(user)?;
        let list = |subscribed_only| MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only,
            with_status: false,
        };
        let names: Vec<String> = match source.answer(user, list(false)) {
            MailboxAnswer::List(l) => l.into_iter().map(|e| e.name).collect(),
            other => return Err(source_error("LIST", &other)),
        };
        for name in &names {
            match import_folder(&source, store, user, name, &mut report)? {
                Some(why) => {
                    progress(&format!("{user} {name}: refused: {why}"));
                    report.refused.push(format!("{user} {name}: {why}"));
                }
                None => progress(&format!("{user} {name}: done")),
            }
        }
        if let MailboxAnswer::List(subs) = source.answer(user, list(true)) {
            let subs: Vec<String> = subs.into_iter().map(|e| e.name).collect();
            store.query(
                "INSERT INTO subscriptions (account, name) SELECT $1, unnest($2::text[]) \
                 ON CONFLICT (account, name) DO NOTHING",
                &[&user, &subs],
            )?;
        }
    }
    Ok(report)
}

/// One folder; `Some(why)` when refused.
fn import_folder(
    source: &MailStore,
    store: &PgMailbox,
    user: &str,
    name: &str,
    report: &mut ImportReport,
) -> Result<Option<String>, PgError> {
    let view = match source.answer(
        user,
        MailboxRequest::Select {
            mailbox: name.to_owned(),
            take_recent: false,
        },
    ) {
        MailboxAnswer::View(v) => v,
        // A \Noselect level or an unreadable folder.
        other => return Ok(Some(format!("{other:?}"))),
    };
    if !postern_core::imap::rules::storable_name(name) {
        return Ok(Some("not a mailbox name this store keeps".into()));
    }
    let validity = i64::from(view.uid_validity);
    store.query(
        "INSERT INTO mailboxes (account, name, uidvalidity) VALUES ($1, $2, $3) \
         ON CONFLICT (account, name) DO NOTHING",
        &[&user, &name, &validity],
    )?;
    // An empty twin (a default folder made on first use) takes the
    // Maildir's UIDVALIDITY; one with messages must already have it.
    store.query(
        "UPDATE mailboxes b SET uidvalidity = $3 WHERE b.account = $1 AND b.name = $2 \
         AND b.uidvalidity <> $3 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.mailbox = b.id)",
        &[&user, &name, &validity],
    )?;
    let rows = store.query(
        "SELECT id, uidvalidity FROM mailboxes WHERE account = $1 AND name = $2",
        &[&user, &name],
    )?;
    let Some(row) = rows.first() else {
        return Ok(Some("vanished while importing".into()));
    };
    let (id, v): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if v != validity {
        return Ok(Some(format!(
            "the database holds it with UIDVALIDITY {v}, the Maildir {validity}"
        )));
    }
    let present: HashSet<u32> = store
        .query(
            "SELECT uid FROM messages WHERE mailbox = $1 LIMIT $2",
            &[&id, &super::MAX_MESSAGES],
        )?
        .iter()
        .map(|r| small(r.try_get(0)?))
        .collect::<Result<_, PgError>>()?;
    let missing: Vec<&MessageMeta> = view
        .messages
        .iter()
        .filter(|m| !present.contains(&m.uid))
        .collect();
    report.present += view.messages.len() - missing.len();
    for chunk in missing.chunks(CHUNK) {
        let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
        let bodies = match source.answer(
            user,
            MailboxRequest::Bodies {
                mailbox: name.to_owned(),
                uids: uids.clone(),
                header_only: false,
            },
        ) {
            MailboxAnswer::Bodies(b) => b,
            other => return Err(source_error("FETCH", &other)),
        };
        let mut rows = Vec::with_capacity(bodies.len());
        for (uid, data) in &bodies {
            let Some(m) = chunk.iter().find(|m| m.uid == *uid) else {
                continue;
            };
            let b = store.mail.blobs().ensure(data)?;
            rows.push((*m, b.hash, big(data.len() as u64)?, (b.header, b.summary)));
        }
        copy_chunk(store, id, &rows)?;
        report.copied += rows.len();
    }
    // The folder's counters: never lower than the Maildir's; the
    // imported messages are not \Recent, and expunges before the import
    // are not known (QRESYNC then answers VANISHED (EARLIER)).
    store.query(
        "UPDATE mailboxes SET uidnext = GREATEST(uidnext, $2), \
         highestmodseq = GREATEST(highestmodseq, $3), first_recent = GREATEST(first_recent, $2), \
         tomb_floor = GREATEST(tomb_floor, $3), \
         keywords = CASE WHEN cardinality(keywords) = 0 THEN $4 ELSE keywords END \
         WHERE id = $1",
        &[
            &id,
            &i64::from(view.uid_next),
            &big(view.highest_modseq)?,
            &view.keywords,
        ],
    )?;
    report.mailboxes += 1;
    Ok(None)
}

/// A body's header section and summary image, as its row keeps them.
type BodyExtra = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One chunk of messages in one transaction (a UID present is skipped).
fn copy_chunk(
    store: &PgMailbox,
    mailbox: i64,
    rows: &[(&MessageMeta, String, i64, BodyExtra)],
) -> Result<(), PgError> {
    let now = store.mail.clock().now();
    // The bodies' rows first, by hash, then the messages (the lock order
    // of every transaction: bodies, then mailboxes).
    let mut bodies: Vec<(&String, &i64, &BodyExtra)> =
        rows.iter().map(|(_, h, s, x)| (h, s, x)).collect();
    bodies.sort_unstable();
    bodies.dedup();
    store.mail.pg().transact(|c| {
        let blob = c.stmt(
            "INSERT INTO blobs (hash, size, created, header, summary) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (hash) DO NOTHING",
        )?;
        let add = c.stmt(
            "INSERT INTO messages (mailbox, uid, blob, prefix, size, internaldate, flags, modseq) \
             VALUES ($1, $2, $3, ''::bytea, $4, $5, $6, $7) ON CONFLICT (mailbox, uid) DO NOTHING",
        )?;
        let mut tx = c.client().transaction()?;
        for (hash, size, (header, summary)) in &bodies {
            tx.execute(&blob, &[*hash, *size, &now, header, summary])?;
        }
        for (m, hash, size, _) in rows {
            tx.execute(
                &add,
                &[
                    &mailbox,
                    &i64::from(m.uid),
                    hash,
                    size,
                    &m.internal_date,
                    &m.flags,
                    &big(m.modseq.max(1))?,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
}
