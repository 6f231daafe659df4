//! Local delivery on PostgreSQL (bodies in the object store, metadata
//! in one transaction), the making of an account's default folders, and
//! reading a message back. The IMAP requests are in `mailbox.rs`.

use super::{big, Blobs, Pg, PgError};
use crate::store::{Clock, Delivery, MailboxId, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The folders every account starts with, all subscribed (as a Maildir
/// account and the in-memory store).
pub const DEFAULT_FOLDERS: [&str; 5] = ["INBOX", "Drafts", "Sent", "Junk", "Trash"];

/// The most accounts remembered as made (past it the set starts over: a
/// forgotten account costs one more round trip).
const MAX_KNOWN_ACCOUNTS: usize = 100_000;

/// Mailboxes and messages in the database, bodies in [`Blobs`].
#[derive(Debug)]
pub struct PgMail {
    pg: Arc<Pg>,
    blobs: Arc<Blobs>,
    clock: Arc<dyn Clock>,
    /// Accounts whose default folders exist (lower-case).
    known: Mutex<HashSet<String>>,
}

fn unavailable(e: PgError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PgMail {
    /// The store in `pg`'s database and `blobs`' bucket.
    pub fn new(pg: Arc<Pg>, blobs: Arc<Blobs>, clock: Arc<dyn Clock>) -> Self {
        Self {
            pg,
            blobs,
            clock,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// The database pool.
    pub(crate) fn pg(&self) -> &Arc<Pg> {
        &self.pg
    }

    /// The body store.
    pub(crate) fn blobs(&self) -> &Arc<Blobs> {
        &self.blobs
    }

    /// The clock.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Makes `user`'s account (lower-case) with its default folders, all
    /// subscribed, unless it exists. No round trip once this process has
    /// seen the account; else one, or six the first time (a
    /// look, then a transaction: the account row, the folders, the
    /// subscriptions).
    pub fn ensure_account(&self, user: &str) -> Result<(), PgError> {
        if self.known_lock().contains(user) {
            return Ok(());
        }
        let now = self.clock.now();
        let names: Vec<String> = DEFAULT_FOLDERS.iter().map(|n| (*n).to_owned()).collect();
        let validities: Vec<i64> = DEFAULT_FOLDERS
            .iter()
            .map(|n| i64::from(self.clock.uid_validity(&MailboxId::new(user, n))))
            .collect();
        self.pg.with(|c| {
            let exists = c.stmt("SELECT 1 FROM accounts WHERE account = $1")?;
            if c.client().query_opt(&exists, &[&user])?.is_some() {
                return Ok(());
            }
            let account = c.stmt(
                "INSERT INTO accounts (account, created) VALUES ($1, $2) \
                 ON CONFLICT (account) DO NOTHING",
            )?;
            let folders = c.stmt(
                "INSERT INTO mailboxes (account, name, uidvalidity) \
                 SELECT $1, n, v FROM unnest($2::text[], $3::bigint[]) AS x(n, v) \
                 ON CONFLICT (account, name) DO NOTHING",
            )?;
            let subscribe = c.stmt(
                "INSERT INTO subscriptions (account, name) SELECT $1, unnest($2::text[]) \
                 ON CONFLICT (account, name) DO NOTHING",
            )?;
            let mut tx = c.client().transaction()?;
            if tx.execute(&account, &[&user, &now])? == 1 {
                tx.execute(&folders, &[&user, &names, &validities])?;
                tx.execute(&subscribe, &[&user, &names])?;
            }
            tx.commit()?;
            Ok::<_, PgError>(())
        })?;
        let mut known = self.known_lock();
        if known.len() >= MAX_KNOWN_ACCOUNTS {
            known.clear();
        }
        known.insert(user.to_owned());
        Ok(())
    }

    fn known_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers a batch to INBOXes (or the delivery's folder, made if
    /// missing): each distinct body (by `Arc`, then by content hash) is
    /// written to the object store first, then one transaction indexes
    /// the bodies, allocates each recipient's UID on its mailbox row
    /// (locked until commit, taken in account order so two replicas
    /// cannot deadlock) and inserts the messages. `Ok` only after the
    /// commit; if the transaction fails, every delivery of the batch
    /// fails (and is answered 4xx). An account seen for the first time is
    /// made first, with its default folders.
    pub fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        if let Some(d) = batch.iter().find(|d| {
            d.folder
                .as_deref()
                .is_some_and(|f| !postern_core::imap::rules::storable_name(f))
        }) {
            let m = format!("folder {:?} is not a mailbox name", d.folder);
            return batch
                .iter()
                .map(|_| Err(StoreError::Unavailable(m.clone())))
                .collect();
        }
        let made = batch
            .iter()
            .try_for_each(|d| self.ensure_account(&d.user.to_lowercase()));
        match made.and_then(|()| self.deliver_all(batch)) {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                let m = e.to_string();
                batch
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(m.clone())))
                    .collect()
            }
        }
    }

    fn deliver_all(&self, batch: &[Delivery]) -> Result<(), PgError> {
        // Distinct bodies: the recipients of one transaction share an Arc.
        let mut by_ptr: HashMap<*const Vec<u8>, usize> = HashMap::new();
        let mut bodies: Vec<(String, i64, i64)> = Vec::new();
        let mut body_of = Vec::with_capacity(batch.len());
        for d in batch {
            let ptr = Arc::as_ptr(&d.message);
            let i = match by_ptr.get(&ptr) {
                Some(i) => *i,
                None => {
                    let hash = self.blobs.ensure(&d.message)?;
                    let i = match bodies.iter().position(|b| b.0 == hash) {
                        Some(i) => i,
                        None => {
                            bodies.push((hash, big(d.message.len() as u64)?, 0));
                            bodies.len() - 1
                        }
                    };
                    by_ptr.insert(ptr, i);
                    i
                }
            };
            if let Some(b) = bodies.get_mut(i) {
                b.2 += 1;
            }
            body_of.push(i);
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|i| {
            let d = &batch[*i];
            (d.user.to_lowercase(), d.folder.clone().unwrap_or_default())
        });
        let now = self.clock.now();
        self.pg.with(|c| {
            let up_blob = c.stmt(
                "INSERT INTO blobs (hash, size, refs, created) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (hash) DO NOTHING",
            )?;
            let alloc = c.stmt(
                "INSERT INTO mailboxes (account, name, uidvalidity, uidnext, highestmodseq) \
                 VALUES ($1, $3, $2, 2, 2) ON CONFLICT (account, name) DO UPDATE \
                 SET uidnext = mailboxes.uidnext + 1, highestmodseq = mailboxes.highestmodseq + 1 \
                 RETURNING id, uidnext - 1, highestmodseq",
            )?;
            let insert = c.stmt(
                "INSERT INTO messages (mailbox, uid, blob, prefix, size, internaldate, modseq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )?;
            let mut tx = c.client().transaction()?;
            for (hash, size, _) in &bodies {
                tx.execute(&up_blob, &[hash, size, &now])?;
            }
            for i in order {
                let d = &batch[i];
                let user = d.user.to_lowercase();
                let folder = d.folder.as_deref().unwrap_or("INBOX");
                let validity = i64::from(self.clock.uid_validity(&MailboxId::new(&user, folder)));
                let row = tx.query_one(&alloc, &[&user, &validity, &folder])?;
                let (mailbox, uid, modseq): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                let Some((hash, size, _)) = bodies.get(body_of[i]) else {
                    return Err(PgError::Invalid("body index".into()));
                };
                let total = size.saturating_add(big(d.prefix.len() as u64)?);
                tx.execute(
                    &insert,
                    &[&mailbox, &uid, hash, &d.prefix, &total, &now, &modseq],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The UIDs in `user`'s `mailbox`, ascending, and its UIDVALIDITY.
    pub fn uids(&self, user: &str, mailbox: &str) -> Result<(u32, Vec<u32>), StoreError> {
        let user = user.to_lowercase();
        let rows = self
            .pg
            .with(|c| {
                let s = c.stmt(
                    "SELECT b.uidvalidity, m.uid FROM mailboxes b \
                     LEFT JOIN messages m ON m.mailbox = b.id \
                     WHERE b.account = $1 AND b.name = $2 ORDER BY m.uid",
                )?;
                Ok::<_, PgError>(c.client().query(&s, &[&user, &mailbox])?)
            })
            .map_err(unavailable)?;
        let Some(first) = rows.first() else {
            return Err(StoreError::NoAccount(user));
        };
        let validity = u32::try_from(first.get::<_, i64>(0)).unwrap_or(0);
        let uids = rows
            .iter()
            .filter_map(|r| r.get::<_, Option<i64>>(1))
            .filter_map(|u| u32::try_from(u).ok())
            .collect();
        Ok((validity, uids))
    }

    /// The bytes of message `uid` in `user`'s `mailbox` (trace prefix and
    /// body), `None` if there is no such message.
    pub fn fetch(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let user = user.to_lowercase();
        let uid = i64::from(uid);
        let row = self
            .pg
            .with(|c| {
                let s = c.stmt(
                    "SELECT m.prefix, m.blob FROM messages m JOIN mailboxes b ON m.mailbox = b.id \
                     WHERE b.account = $1 AND b.name = $2 AND m.uid = $3",
                )?;
                Ok::<_, PgError>(c.client().query_opt(&s, &[&user, &mailbox, &uid])?)
            })
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut out: Vec<u8> = row.get(0);
        let hash: String = row.get(1);
        out.extend(self.blobs.fetch(&hash).map_err(unavailable)?);
        Ok(Some(out))
    }
}
