//! A fixed set of threads that fsync the files of a group commit at once
//! (a file system commits concurrent fsyncs together). Started on first
//! use and kept: spawning a thread per file of every commit cost a clone,
//! a stack mapping and an exit per message.

use crate::maildir::fsync;
use std::fs::File;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads kept for fsyncs: as many files as one commit syncs at once.
pub const THREADS: usize = 16;

struct Job {
    file: File,
    index: usize,
    reply: Sender<(usize, io::Result<()>)>,
}

/// The queue the threads take jobs from; `None` when no thread started.
fn pool() -> Option<&'static Sender<Job>> {
    static POOL: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let started = (0..THREADS)
            .filter(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("postern-fsync-{i}"))
                    .spawn(move || work(&rx))
                    .is_ok()
            })
            .count();
        (started > 0).then_some(tx)
    })
    .as_ref()
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        let result = fsync(&job.file);
        // The caller waits for every answer; if it is gone, nobody asks.
        let _ = job.reply.send((job.index, result));
    }
}

/// fsyncs every file, the first on this thread and the others on the
/// pool's threads at the same time, and answers in the same order. A
/// file the pool cannot take is synced here.
pub fn sync_many(files: &[&File]) -> Vec<io::Result<()>> {
    let pool = match pool() {
        Some(p) if files.len() > 1 => p,
        _ => return files.iter().map(|f| fsync(f)).collect(),
    };
    let (reply, answers) = channel();
    let mut out: Vec<Option<io::Result<()>>> = files.iter().map(|_| None).collect();
    let mut sent = 0;
    // The first file is synced here while the threads sync the others:
    // one wake-up fewer per commit.
    for (index, f) in files.iter().enumerate().skip(1) {
        // A second descriptor of the same open file: fsync reaches the
        // same inode, and the job owns what it holds.
        let file = match f.try_clone() {
            Ok(file) => file,
            Err(_) => {
                out[index] = Some(fsync(f));
                continue;
            }
        };
        let job = Job {
            file,
            index,
            reply: reply.clone(),
        };
        match pool.send(job) {
            Ok(()) => sent += 1,
            Err(_) => out[index] = Some(fsync(f)),
        }
    }
    drop(reply);
    if let (Some(slot), Some(first)) = (out.first_mut(), files.first()) {
        *slot = Some(fsync(first));
    }
    for _ in 0..sent {
        match answers.recv() {
            Ok((index, r)) => {
                if let Some(slot) = out.get_mut(index) {
                    *slot = Some(r);
                }
            }
            Err(_) => break,
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("fsync thread lost"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn answers_every_file_in_order() {
        let dir = std::env::temp_dir().join(format!("postern-syncpool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut files = Vec::new();
        for i in 0..40 {
            let mut f = File::create(dir.join(i.to_string())).expect("create");
            f.write_all(b"x").expect("write");
            files.push(f);
        }
        // A directory opened read-only syncs too; a pipe cannot be synced.
        let (r, _w) = std::io::pipe().expect("pipe");
        let pipe = File::from(std::os::fd::OwnedFd::from(r));
        let mut refs: Vec<&File> = files.iter().collect();
        refs.insert(7, &pipe);
        let results = sync_many(&refs);
        assert_eq!(results.len(), 41);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 7, "file {i}: {r:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
