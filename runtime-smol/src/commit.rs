//! Group commit for local delivery: one writer thread takes every
//! delivery that is waiting, writes them all, and makes them durable with
//! two file-system syncs for the whole batch ([`Maildir::deliver_batch`]).
//! Under load a batch grows by itself (what arrives during one commit is
//! the next batch); alone, a message costs what a single fsync'd delivery
//! costs. Each session waits for its own results before answering 250.

use postern_adapters::maildir::{DeliveryJob, Maildir};
use std::io;
use std::sync::mpsc;
use std::sync::Arc;

/// The most deliveries in one commit.
const MAX_BATCH: usize = 512;

type Results = Vec<io::Result<String>>;

struct Request {
    jobs: Vec<DeliveryJob>,
    reply: smol::channel::Sender<Results>,
}

/// The writer thread's handle.
#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts the writer thread for `maildir`.
    pub fn start(maildir: Arc<Maildir>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postern-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut requests = vec![first];
                    let mut n = requests[0].jobs.len();
                    while n < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => {
                                n += r.jobs.len();
                                requests.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    let all: Vec<DeliveryJob> = requests
                        .iter()
                        .flat_map(|r| r.jobs.iter().cloned())
                        .collect();
                    let mut results = maildir.deliver_batch(&all).into_iter();
                    for r in requests {
                        let mine: Results = results.by_ref().take(r.jobs.len()).collect();
                        let _ = r.reply.try_send(mine);
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Delivers `jobs` durably; one result per job, in order.
    pub async fn deliver(&self, jobs: Vec<DeliveryJob>) -> Results {
        if jobs.is_empty() {
            return Vec::new();
        }
        let n = jobs.len();
        let (reply, rx) = smol::channel::bounded(1);
        if self.tx.send(Request { jobs, reply }).is_err() {
            return (0..n)
                .map(|_| Err(io::Error::other("the delivery thread is gone")))
                .collect();
        }
        match rx.recv().await {
            Ok(r) => r,
            Err(_) => (0..n)
                .map(|_| Err(io::Error::other("the delivery thread is gone")))
                .collect(),
        }
    }
}
