//! Change notification across replicas: every change to a mailbox's
//! messages or flags fires a NOTIFY on channel `postern_mailbox` with the
//! mailbox id, from a trigger in the changing transaction (sent when it
//! commits). A [`Listener`] holds one connection that LISTENs, and turns
//! the ids it hears into [`MailboxId`]s for the runtime's IDLE sessions.

use super::{Pg, PgError};
use crate::store::MailboxId;
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::time::Duration;

/// The channel the mailbox trigger notifies.
pub const CHANNEL: &str = "postern_mailbox";

/// The most notifications taken in one [`Listener::wait`].
const MAX_BATCH: usize = 1_000;

/// One LISTENing connection.
pub struct Listener {
    client: Client,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// A connection of its own (not from the pool) that LISTENs.
    pub fn connect(pg: &Pg) -> Result<Self, PgError> {
        let mut client = pg.connect_one()?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Self { client })
    }

    /// Waits up to `timeout` for notifications; the mailboxes they name
    /// (each once; none when the time ran out). An error means the
    /// connection is lost: make a new listener.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<MailboxId>, PgError> {
        let mut ids: Vec<i64> = Vec::new();
        {
            let mut n = self.client.notifications();
            if let Some(note) = n.timeout_iter(timeout).next()? {
                ids.extend(note.payload().parse::<i64>().ok());
            }
            // Whatever else arrived with it, without waiting.
            let mut more = n.iter();
            while ids.len() < MAX_BATCH {
                match more.next()? {
                    Some(note) => ids.extend(note.payload().parse::<i64>().ok()),
                    None => break,
                }
            }
        }
        if ids.is_empty() {
            // A timeout: make sure the connection is still there.
            self.client.simple_query("")?;
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        ids.dedup();
        let rows = self.client.query(
            "SELECT account, name FROM mailboxes WHERE id = ANY ($1) LIMIT $2",
            &[&ids, &(MAX_BATCH as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let (user, name): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                Ok(MailboxId::new(&user, &name))
            })
            .collect()
    }
}
