//! Counters that several processes would share: messages relayed today,
//! connections or failed logins per client address in the last minute.
//! A counter is a name and a time window; adding returns the new total.
//! In memory (bounded: the oldest windows go first) or in a file, so the
//! daily relay count survives a restart.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// A time window: the `index`-th span of `secs` seconds since the epoch
/// (a UTC day is `Window::containing(now, 86_400)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// The window's length in seconds (at least 1).
    pub secs: u64,
    /// Which window: `start / secs`.
    pub index: u64,
}

impl Window {
    /// The window of length `secs` that holds `now` (Unix seconds).
    pub fn containing(now: u64, secs: u64) -> Self {
        let secs = secs.max(1);
        Self {
            secs,
            index: now / secs,
        }
    }

    /// When the window ends (Unix seconds).
    pub fn end(&self) -> u64 {
        self.index.saturating_add(1).saturating_mul(self.secs)
    }
}

/// Why a counter could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The counter's storage failed.
    #[error("counters: {0}")]
    Io(#[from] std::io::Error),
    /// A counter name holds a tab or a line end (it could not be stored).
    #[error("bad counter name {0:?}")]
    BadName(String),
}

impl From<CounterError> for std::io::Error {
    fn from(e: CounterError) -> Self {
        match e {
            CounterError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other),
        }
    }
}

/// Named counters per time window.
pub trait Counters: Send + Sync {
    /// Adds `n` to counter `name` in `window`; returns its total there.
    fn add(&self, name: &str, window: Window, n: u64) -> Result<u64, CounterError>;
    /// Counter `name`'s total in `window` (0 if never added to, or dropped).
    fn get(&self, name: &str, window: Window) -> Result<u64, CounterError>;
}

type Key = (String, Window);

/// The counters of one process, at most `max_entries` (name, window)
/// pairs; past that, the windows that end first are dropped.
#[derive(Debug)]
pub struct MemCounters {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    max: usize,
    counts: HashMap<Key, u64>,
    /// (window end, key), to find the oldest.
    by_end: BTreeSet<(u64, Key)>,
}

impl Table {
    fn add(&mut self, name: &str, window: Window, n: u64) -> u64 {
        let key = (name.to_owned(), window);
        if let Some(c) = self.counts.get_mut(&key) {
            *c = c.saturating_add(n);
            return *c;
        }
        while self.counts.len() >= self.max.max(1) {
            let Some(oldest) = self.by_end.pop_first() else {
                break;
            };
            self.counts.remove(&oldest.1);
        }
        self.by_end.insert((window.end(), key.clone()));
        self.counts.insert(key, n);
        n
    }

    fn get(&self, name: &str, window: Window) -> u64 {
        self.counts
            .get(&(name.to_owned(), window))
            .copied()
            .unwrap_or(0)
    }
}

impl MemCounters {
    /// Counters holding at most `max_entries` (name, window) pairs.
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Table {
                max: max_entries.max(1),
                ..Table::default()
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn check(name: &str) -> Result<(), CounterError> {
    if name.is_empty() || name.contains(['\t', '\n', '\r']) {
        return Err(CounterError::BadName(name.to_owned()));
    }
    Ok(())
}

impl Counters for MemCounters {
    fn add(&self, name: &str, window: Window, n: u64) -> Result<u64, CounterError> {
        check(name)?;
        Ok(self.table().add(name, window, n))
    }

    fn get(&self, name: &str, window: Window) -> Result<u64, CounterError> {
        Ok(self.table().get(name, window))
    }
}

/// Counters kept in one file (rewritten whole, atomically, after each
/// change), for counts that must survive a restart such as the daily
/// relay count. Meant for a few counters: per-IP rates belong in
/// [`MemCounters`]. Lines are `name<TAB>secs<TAB>index<TAB>count`.
#[derive(Debug)]
pub struct FileCounters {
    path: PathBuf,
    mem: MemCounters,
}

/// The largest counter file read.
const MAX_FILE: u64 = 1 << 20;

impl FileCounters {
    /// Opens (or starts) the file at `path`, holding at most
    /// `max_entries` counters; unreadable lines are skipped.
    pub fn open(path: impl Into<PathBuf>, max_entries: usize) -> Result<Self, CounterError> {
        let path = path.into();
        let mem = MemCounters::new(max_entries);
        match fs::metadata(&path) {
            Ok(m) if m.len() <= MAX_FILE => {
                let text = fs::read_to_string(&path)?;
                let mut t = mem.table();
                for line in text.lines() {
                    let mut w = line.split('\t');
                    let (Some(name), Some(secs), Some(index), Some(count), None) =
                        (w.next(), w.next(), w.next(), w.next(), w.next())
                    else {
                        continue;
                    };
                    let (Ok(secs), Ok(index), Ok(count)) =
                        (secs.parse(), index.parse(), count.parse::<u64>())
                    else {
                        continue;
                    };
                    if check(name).is_ok() && secs > 0 {
                        t.add(name, Window { secs, index }, count);
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self { path, mem })
    }

    fn save(&self, t: &Table) -> Result<(), CounterError> {
        let mut text = String::new();
        for ((name, w), count) in &t.counts {
            text.push_str(&format!("{name}\t{}\t{}\t{count}\n", w.secs, w.index));
        }
        let tmp = self.path.with_extension("postern-tmp");
        let r = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(r?)
    }
}

impl Counters for FileCounters {
    fn add(&self, name: &str, window: Window, n: u64) -> Result<u64, CounterError> {
        check(name)?;
        let mut t = self.mem.table();
        let total = t.add(name, window, n);
        self.save(&t)?;
        Ok(total)
    }

    fn get(&self, name: &str, window: Window) -> Result<u64, CounterError> {
        self.mem.get(name, window)
    }
}

/// The daily relay count as the runtime kept it before these counters
/// (a `relay-count` file: `<UTC day number> <count>`), as the window and
/// total to add once to the counter that replaces it, so that the day's
/// limit holds across the upgrade.
pub fn legacy_day_count(text: &str) -> Option<(Window, u64)> {
    let (day, n) = text.trim().split_once(' ')?;
    let index: u64 = day.parse().ok()?;
    let count: u64 = n.parse().ok()?;
    Some((
        Window {
            secs: 86_400,
            index,
        },
        count,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_apart_and_the_oldest_go_first() {
        let c = MemCounters::new(3);
        let day = |d: u64| Window::containing(d * 86_400 + 5, 86_400);
        assert_eq!(c.add("relayed", day(1), 1).unwrap(), 1);
        assert_eq!(c.add("relayed", day(1), 2).unwrap(), 3);
        assert_eq!(c.add("relayed", day(2), 1).unwrap(), 1);
        assert_eq!(c.get("relayed", day(1)).unwrap(), 3);
        c.add("ip:10.0.0.1", Window::containing(2 * 86_400, 60), 1)
            .unwrap();
        // Full: day 1 ends first and is dropped.
        c.add("relayed", day(3), 1).unwrap();
        assert_eq!(c.get("relayed", day(1)).unwrap(), 0);
        assert_eq!(c.get("relayed", day(2)).unwrap(), 1);
        assert!(c.add("bad\tname", day(1), 1).is_err());
        assert_eq!(Window::containing(86_399, 86_400).end(), 86_400);
        assert_eq!(
            legacy_day_count("20423 17\n"),
            Some((Window::containing(20_423 * 86_400, 86_400), 17))
        );
        assert_eq!(legacy_day_count("garbage"), None);
    }

    #[test]
    fn file_counters_survive_a_restart() {
        let dir = crate::store::tests::tempdir("counters");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counters");
        let w = Window::containing(100 * 86_400, 86_400);
        {
            let c = FileCounters::open(&path, 16).unwrap();
            c.add("relayed", w, 2).unwrap();
            c.add("relayed", w, 3).unwrap();
        }
        let c = FileCounters::open(&path, 16).unwrap();
        assert_eq!(c.get("relayed", w).unwrap(), 5);
        assert_eq!(c.add("relayed", w, 1).unwrap(), 6);
        fs::write(&path, "garbage\nrelayed\t86400\t100\t9\n").unwrap();
        let c = FileCounters::open(&path, 16).unwrap();
        assert_eq!(c.get("relayed", w).unwrap(), 9);
        fs::remove_dir_all(&dir).unwrap();
    }
}
