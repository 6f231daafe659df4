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

/// A body's size, header section and summary, as its row keeps them.
type BodyRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// The size of body `hash` among (`hashes`, `sizes`), sorted by hash.
fn sizes_of(hashes: &[String], sizes: &[i64], hash: &str) -> Result<i64, PgError> {
    hashes
        .binary_search_by(|h| h.as_str().cmp(hash))
        .ok()
        .and_then(|i| sizes.get(i).copied())
        .ok_or_else(|| PgError::Invalid("body index".into()))
}

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
        self.pg.transact(|c| {
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
    /// the bodies (by hash), locks every target mailbox row (by id: the
    /// order COPY and MOVE take them in too, so neither waits for the
    /// other in a circle), allocates each mailbox's UIDs and inserts the
    /// messages in one statement. `Ok` only after the commit; if the
    /// transaction fails, every delivery of the batch fails (and is
    /// answered 4xx); one the database gave up to break a deadlock is run
    /// again (`Pg::transact`). An account seen for the first time is made
    /// first, with its default folders.
    ///
    /// Round trips: the body look-up (+ a PUT when new), then BEGIN, the
    /// bodies, the locks, the messages, COMMIT (+2 when a folder is
    /// made): 6 for one recipient with a new body, whatever the number of
    /// recipients.
    pub fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        // A delivery that cannot go in (a folder name no mailbox can have,
        // an account that cannot be made) fails on its own; the others go
        // into one transaction, which succeeds or fails as a whole.
        let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        let mut good: Vec<Delivery> = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        for d in batch {
            let bad_folder = d
                .folder
                .as_deref()
                .is_some_and(|f| !postern_core::imap::rules::storable_name(f));
            let r = if bad_folder {
                Err(StoreError::Unavailable(format!(
                    "folder {:?} is not a mailbox name",
                    d.folder
                )))
            } else {
                self.ensure_account(&d.user.to_lowercase())
                    .map_err(|e| StoreError::Unavailable(e.to_string()))
            };
            if r.is_ok() {
                at.push(out.len());
                good.push(d.clone());
            }
            out.push(r);
        }
        if good.is_empty() {
            return out;
        }
        if let Err(e) = self.deliver_all(&good) {
            let m = e.to_string();
            for i in at {
                out[i] = Err(StoreError::Unavailable(m.clone()));
            }
        }
        out
    }

    fn deliver_all(&self, batch: &[Delivery]) -> Result<(), PgError> {
        // Distinct bodies: the recipients of one transaction share an Arc.
        let mut by_ptr: HashMap<*const Vec<u8>, String> = HashMap::new();
        let mut sizes: HashMap<String, BodyRow> = HashMap::new();
        let mut hash_of = Vec::with_capacity(batch.len());
        for d in batch {
            let ptr = Arc::as_ptr(&d.message);
            let hash = match by_ptr.get(&ptr) {
                Some(h) => h.clone(),
                None => {
                    let b = self.blobs.ensure(&d.message)?;
                    by_ptr.insert(ptr, b.hash.clone());
                    if !sizes.contains_key(&b.hash) {
                        let size = big(d.message.len() as u64)?;
                        sizes.insert(b.hash.clone(), (size, b.header, b.summary));
                    }
                    b.hash
                }
            };
            hash_of.push(hash);
        }
        let mut bodies: Vec<(String, BodyRow)> = sizes.into_iter().collect();
        bodies.sort_unstable();
        let mut hashes = Vec::with_capacity(bodies.len());
        let mut body_sizes = Vec::with_capacity(bodies.len());
        let mut headers = Vec::with_capacity(bodies.len());
        let mut summaries = Vec::with_capacity(bodies.len());
        for (h, (s, hd, sm)) in bodies {
            hashes.push(h);
            body_sizes.push(s);
            headers.push(hd);
            summaries.push(sm);
        }
        // The target mailboxes, (account, folder), distinct.
        let target = |d: &Delivery| {
            (
                d.user.to_lowercase(),
                d.folder.clone().unwrap_or_else(|| "INBOX".to_owned()),
            )
        };
        let mut targets: Vec<(String, String)> = batch.iter().map(target).collect();
        targets.sort_unstable();
        targets.dedup();
        let (accounts, names): (Vec<String>, Vec<String>) = targets.iter().cloned().unzip();
        let validities: Vec<i64> = targets
            .iter()
            .map(|(u, f)| i64::from(self.clock.uid_validity(&MailboxId::new(u, f))))
            .collect();
        let now = self.clock.now();
        self.pg.transact(|c| {
            let up_blobs = c.stmt(
                "INSERT INTO blobs (hash, size, created, header, summary) \
                 SELECT h, s, $3, hd, sm \
                 FROM unnest($1::text[], $2::bigint[], $4::bytea[], $5::bytea[]) AS x(h, s, hd, sm) \
                 ON CONFLICT (hash) DO NOTHING",
            )?;
            let lock = c.stmt(
                "SELECT b.id, b.account, b.name FROM mailboxes b \
                 JOIN unnest($1::text[], $2::text[]) AS x(a, n) ON b.account = x.a AND b.name = x.n \
                 ORDER BY b.id FOR UPDATE OF b",
            )?;
            let make = c.stmt(
                "INSERT INTO mailboxes (account, name, uidvalidity) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 ON CONFLICT (account, name) DO NOTHING",
            )?;
            let add = c.stmt(
                "WITH p AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], \
                 $4::bytea[], $5::bigint[]) AS p(mb, k, blob, prefix, size)), \
                 n AS (SELECT mb, count(*) AS n FROM p GROUP BY mb), \
                 u AS (UPDATE mailboxes m SET uidnext = m.uidnext + n.n, \
                 highestmodseq = m.highestmodseq + n.n FROM n WHERE m.id = n.mb \
                 RETURNING m.id, m.uidnext - n.n AS uid0, m.highestmodseq - n.n AS ms0) \
                 INSERT INTO messages (mailbox, uid, blob, prefix, size, internaldate, modseq) \
                 SELECT p.mb, u.uid0 + p.k, p.blob, p.prefix, p.size, $6, u.ms0 + 1 + p.k \
                 FROM p JOIN u ON u.id = p.mb",
            )?;
            let mut tx = c.client().transaction()?;
            tx.execute(
                &up_blobs,
                &[&hashes, &body_sizes, &now, &headers, &summaries],
            )?;
            let mut rows = tx.query(&lock, &[&accounts, &names])?;
            if rows.len() < targets.len() {
                // A folder to make (a new row: its id is above those locked).
                tx.execute(&make, &[&accounts, &names, &validities])?;
                rows = tx.query(&lock, &[&accounts, &names])?;
            }
            let mut ids: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
            for r in &rows {
                ids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
            }
            let mut next: HashMap<i64, i64> = HashMap::new();
            let n = batch.len();
            let (mut mb, mut k, mut prefix, mut size) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (d, hash) in batch.iter().zip(&hash_of) {
                let Some(id) = ids.get(&target(d)) else {
                    return Err(PgError::Invalid("a delivery's mailbox is missing".into()));
                };
                let slot = next.entry(*id).or_insert(0);
                mb.push(*id);
                k.push(*slot);
                *slot += 1;
                prefix.push(d.prefix.clone());
                let body = sizes_of(&hashes, &body_sizes, hash)?;
                size.push(body.saturating_add(big(d.prefix.len() as u64)?));
            }
            tx.execute(&add, &[&mb, &k, &hash_of, &prefix, &size, &now])?;
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
