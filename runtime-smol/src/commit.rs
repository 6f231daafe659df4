//! Group commit for local delivery: one writer thread takes every
//! delivery that is waiting, writes them all, and makes them durable with
//! two file-system syncs for the whole batch ([`Maildir::deliver_batch`]).
//! Under load a batch grows by itself (what arrives during one commit is
//! the next batch); alone, a message costs what a single fsync'd delivery
//! costs. Each session waits for its own results before answering 250.
//!
//! When idle, the same thread removes leftovers of interrupted deliveries
//! older than 36 hours from the Maildir tree's `tmp/` folders and from the
//! spools it was given ([`Committer::also_clean`]): once at start and then
//! at most once an hour (at the latest two hours after the last time, even
//! under load).

use postern_adapters::maildir::{Maildir, TMP_MAX_AGE};
use postern_adapters::spool::Spool;
use postern_adapters::store::{Delivery, MailboxStore, StoreError};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The most deliveries in one commit.
const MAX_BATCH: usize = 512;

/// How often the `tmp/` leftovers are looked for, at most.
const CLEAN_EVERY: Duration = Duration::from_secs(3600);

type Results = Vec<Result<(), StoreError>>;

struct Request {
    deliveries: Vec<Delivery>,
    reply: smol::channel::Sender<Results>,
}

/// The writer thread's handle.
#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
}

/// Removes old `tmp/` leftovers from the Maildir tree and the spool; logs counts.
pub fn clean(maildir: &Maildir, spool: Option<&Spool>) {
    let now = SystemTime::now();
    match maildir.clean_tmp(TMP_MAX_AGE, now) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "removed {n} leftover file(s) older than 36 h from the Maildir tmp/ folders"
        ),
        Err(e) => tracing::warn!(
            "cannot look for leftovers in {}: {e}",
            maildir.root().display()
        ),
    }
    if let Some(sp) = spool {
        let n = sp.clean_tmp(TMP_MAX_AGE, now);
        if n > 0 {
            tracing::info!(
                "removed {n} leftover file(s) older than 36 h from the queue {}",
                sp.dir().display()
            );
        }
    }
}

/// Runs the idle-time cleaning; a panic in it is logged, not the end of
/// the delivery thread.
fn run_maintenance(maintenance: &(dyn Fn() + Send)) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(maintenance)).is_err() {
        tracing::error!("the cleaning of leftover files panicked; deliveries go on");
    }
}

impl Committer {
    /// Starts the writer thread for `store`; `maintenance` runs when the
    /// thread is idle (at start, then at most hourly).
    pub fn start(
        store: Arc<dyn MailboxStore>,
        maintenance: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postern-commit".into())
            .spawn(move || {
                let mut last_clean: Option<Instant> = None;
                loop {
                    let wait = match last_clean {
                        None => Duration::ZERO,
                        Some(t) => (t + CLEAN_EVERY).saturating_duration_since(Instant::now()),
                    };
                    let first = match rx.recv_timeout(wait) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) => {
                            run_maintenance(&*maintenance);
                            last_clean = Some(Instant::now());
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if last_clean.is_some_and(|t| t.elapsed() >= 2 * CLEAN_EVERY) {
                        // Never idle for two hours: clean between batches.
                        run_maintenance(&*maintenance);
                        last_clean = Some(Instant::now());
                    }
                    let mut requests = vec![first];
                    let mut n = requests[0].deliveries.len();
                    while n < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => {
                                n += r.deliveries.len();
                                requests.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    let all: Vec<Delivery> = requests
                        .iter()
                        .flat_map(|r| r.deliveries.iter().cloned())
                        .collect();
                    // A bug in the store must fail its batch, not stop
                    // every later delivery with the thread.
                    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        store.deliver(&all)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            "the store panicked delivering {} message copies; they failed",
                            all.len()
                        );
                        all.iter()
                            .map(|_| Err(StoreError::Unavailable("the store failed".into())))
                            .collect()
                    });
                    let mut results = results.into_iter();
                    for r in requests {
                        let mine: Results = results.by_ref().take(r.deliveries.len()).collect();
                        let _ = r.reply.try_send(mine);
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Delivers durably; one result per delivery, in order.
    pub async fn deliver(&self, deliveries: Vec<Delivery>) -> Results {
        if deliveries.is_empty() {
            return Vec::new();
        }
        let n = deliveries.len();
        let gone = || StoreError::Unavailable("the delivery thread is gone".into());
        let (reply, rx) = smol::channel::bounded(1);
        if self.tx.send(Request { deliveries, reply }).is_err() {
            return (0..n).map(|_| Err(gone())).collect();
        }
        match rx.recv().await {
            Ok(r) => r,
            Err(_) => (0..n).map(|_| Err(gone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_adapters::store::{ChangeListener, MailboxId, Version};
    use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose first delivery panics (a bug), and that works after.
    struct Fragile {
        panics: AtomicUsize,
    }

    impl MailboxStore for Fragile {
        fn answer(&self, _: &str, _: MailboxRequest) -> MailboxAnswer {
            MailboxAnswer::Ok
        }
        fn over_quota(&self, _: &str) -> bool {
            false
        }
        fn version(&self, _: &MailboxId) -> Option<Version> {
            None
        }
        fn deliver(&self, batch: &[Delivery]) -> Vec<Result<(), StoreError>> {
            if self.panics.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a bug in the store");
            }
            batch.iter().map(|_| Ok(())).collect()
        }
        fn on_change(&self, _: ChangeListener) {}
    }

    fn one() -> Vec<Delivery> {
        vec![Delivery {
            user: "a@x.test".into(),
            prefix: Vec::new(),
            message: Arc::new(b"m\r\n".to_vec()),
            folder: None,
        }]
    }

    #[test]
    fn a_panicking_store_fails_its_batch_and_the_next_is_delivered() {
        let store = Arc::new(Fragile {
            panics: AtomicUsize::new(0),
        });
        let c =
            Committer::start(store, Box::new(|| panic!("a bug in the cleaning"))).expect("thread");
        let first = smol::block_on(c.deliver(one()));
        assert!(matches!(
            first.as_slice(),
            [Err(StoreError::Unavailable(_))]
        ));
        let second = smol::block_on(c.deliver(one()));
        assert!(matches!(second.as_slice(), [Ok(())]), "{second:?}");
    }
}
