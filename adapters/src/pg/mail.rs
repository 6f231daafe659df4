//! The start of the mailbox store on PostgreSQL: local delivery to
//! INBOXes (bodies in the object store, metadata in one transaction) and
//! reading a message back. IMAP requests are not answered yet.

use super::{big, Blobs, Pg, PgError};
use crate::store::{Clock, Delivery, MailboxId, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// Mailboxes and messages in the database, bodies in [`Blobs`].
#[derive(Debug)]
pub struct PgMail {
    pg: Arc<Pg>,
    blobs: Arc<Blobs>,
    clock: Arc<dyn Clock>,
}

fn unavailable(e: PgError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PgMail {
    /// The store in `pg`'s database and `blobs`' bucket.
    pub fn new(pg: Arc<Pg>, blobs: Arc<Blobs>, clock: Arc<dyn Clock>) -> Self {
        Self { pg, blobs, clock }
    }

    /// Delivers a batch to INBOXes: each distinct body (by `Arc`, then by
    /// content hash) is written to the object store first, then one
    /// transaction indexes the bodies, allocates each recipient's UID on
    /// its INBOX row (created if missing; locked until commit, taken in
    /// account order so two replicas cannot deadlock) and inserts the
    /// messages. `Ok` only after the commit; if the transaction fails,
    /// every delivery of the batch fails (and is answered 4xx).
    pub fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
        // Folders (Junk) come with the mailbox store; until then such a
        // batch fails as a whole rather than landing in INBOX.
        if let Some(f) = batch.iter().find_map(|d| d.folder.as_deref()) {
            let m = format!("folder {f:?}: this backend delivers to INBOX only so far");
            return batch
                .iter()
                .map(|_| Err(StoreError::Unavailable(m.clone())))
                .collect();
        }
        match self.deliver_all(batch) {
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
        order.sort_by(|a, b| {
            batch[*a]
                .user
                .to_lowercase()
                .cmp(&batch[*b].user.to_lowercase())
        });
        let now = self.clock.now();
        self.pg.with(|c| {
            let up_blob = c.stmt(
                "INSERT INTO blobs (hash, size, refs, created) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs",
            )?;
            let alloc = c.stmt(
                "INSERT INTO mailboxes (account, name, uidvalidity, uidnext, highestmodseq) \
                 VALUES ($1, 'INBOX', $2, 2, 2) ON CONFLICT (account, name) DO UPDATE \
                 SET uidnext = mailboxes.uidnext + 1, highestmodseq = mailboxes.highestmodseq + 1 \
                 RETURNING id, uidnext - 1, highestmodseq",
            )?;
            let insert = c.stmt(
                "INSERT INTO messages (mailbox, uid, blob, prefix, size, internaldate, modseq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )?;
            let mut tx = c.client().transaction()?;
            for (hash, size, refs) in &bodies {
                tx.execute(&up_blob, &[hash, size, refs, &now])?;
            }
            for i in order {
                let d = &batch[i];
                let user = d.user.to_lowercase();
                let validity = i64::from(self.clock.uid_validity(&MailboxId::inbox(&user)));
                let row = tx.query_one(&alloc, &[&user, &validity])?;
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
