//! The per-user spam classifiers on disk: one small file, `postern-spam`,
//! beside each user's Maildir (`<root>/<domain>/<user>/postern-spam`),
//! written crash-safely (a temporary file, fsync, rename, fsync of the
//! folder). A file that cannot be read back (torn, damaged, another
//! format) is replaced by an empty classifier and reported once through
//! the warning hook; it never blocks a delivery. Loaded classifiers are
//! kept in a bounded cache, so a learned move counts for the very next
//! message.

use postern_core::spam::bayes::{Class, Classifier, Learned};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file name beside each Maildir.
pub const FILE_NAME: &str = "postern-spam";
/// Largest file read (a full classifier is about 2 MiB).
const MAX_FILE: u64 = 16 << 20;
/// Classifiers kept in memory at once.
const MAX_CACHED: usize = 256;

/// Told of problems that are handled (a rebuilt file, a failed write).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// The classifiers of every user under one Maildir root.
pub struct SpamStore {
    root: PathBuf,
    cache: Mutex<HashMap<String, Arc<Mutex<Classifier>>>>,
    warn: Warn,
}

impl std::fmt::Debug for SpamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpamStore")
            .field("root", &self.root)
            .finish()
    }
}

impl SpamStore {
    /// The classifiers under the Maildir tree `root`; `warn` hears about
    /// rebuilt files and failed writes.
    pub fn new(root: impl Into<PathBuf>, warn: Warn) -> Self {
        Self {
            root: root.into(),
            cache: Mutex::new(HashMap::new()),
            warn,
        }
    }

    /// The file of `user` (`local@domain`), None for a malformed address.
    pub fn path(&self, user: &str) -> Option<PathBuf> {
        let (local, domain) = user.rsplit_once('@')?;
        let (local, domain) = (local.to_lowercase(), domain.to_lowercase());
        let safe = |s: &str| {
            !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
        };
        (safe(&local) && safe(&domain)).then(|| self.root.join(domain).join(local).join(FILE_NAME))
    }

    fn classifier(&self, user: &str) -> Option<Arc<Mutex<Classifier>>> {
        let key = user.to_lowercase();
        if let Some(c) = self.cache.lock().ok()?.get(&key) {
            return Some(c.clone());
        }
        let path = self.path(user)?;
        let c = Arc::new(Mutex::new(self.load(&path)));
        let mut cache = self.cache.lock().ok()?;
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        Some(cache.entry(key).or_insert(c).clone())
    }

    fn load(&self, path: &Path) -> Classifier {
        let bytes = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Classifier::new(),
            Ok(m) if m.len() > MAX_FILE => Err(io::Error::other("file too large")),
            _ => fs::read(path),
        };
        let r = bytes
            .map_err(|e| e.to_string())
            .and_then(|b| Classifier::from_bytes(&b).map_err(|e| e.to_string()));
        match r {
            Ok(c) => c,
            Err(e) => {
                (self.warn)(&format!(
                    "spam classifier {} unreadable ({e}): starting again empty",
                    path.display()
                ));
                Classifier::new()
            }
        }
    }

    /// Runs `f` on `user`'s classifier (an empty one when the user has
    /// none or the address is malformed).
    pub fn with<R>(&self, user: &str, f: impl FnOnce(&Classifier) -> R) -> R {
        match self.classifier(user) {
            Some(c) => match c.lock() {
                Ok(g) => f(&g),
                Err(p) => f(&p.into_inner()),
            },
            None => f(&Classifier::new()),
        }
    }

    /// Learns a message for `user` and writes the file durably when
    /// anything changed.
    pub fn learn(&self, user: &str, key: u64, tokens: &[u64], class: Class) -> io::Result<Learned> {
        let path = self
            .path(user)
            .ok_or_else(|| io::Error::other(format!("bad account address {user:?}")))?;
        let c = self
            .classifier(user)
            .ok_or_else(|| io::Error::other("spam store lock poisoned"))?;
        let mut g = c
            .lock()
            .map_err(|_| io::Error::other("spam classifier lock poisoned"))?;
        let learned = g.learn(key, tokens, class);
        if learned != Learned::Unchanged {
            if let Err(e) = write_durably(&path, &g.to_bytes()) {
                (self.warn)(&format!("cannot save {}: {e}", path.display()));
                return Err(e);
            }
        }
        Ok(learned)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename,
/// then fsyncs the folder.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent folder"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn learns_persists_and_rebuilds_a_broken_file() {
        let dir = std::env::temp_dir().join(format!("postern-spamstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let warned = Arc::new(AtomicUsize::new(0));
        let w = warned.clone();
        let warn: Warn = Arc::new(move |_| {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let s = SpamStore::new(&dir, warn.clone());
        assert_eq!(s.with("a@x.test", |c| c.counts()), (0, 0));
        assert_eq!(
            s.learn("A@x.test", 7, &[1, 2, 3], Class::Spam).ok(),
            Some(Learned::Added)
        );
        assert_eq!(
            s.learn("a@x.test", 7, &[1, 2, 3], Class::Spam).ok(),
            Some(Learned::Unchanged)
        );
        let path = dir.join("x.test/a").join(FILE_NAME);
        assert!(path.is_file());
        // A second store (a restart) reads it back.
        let s2 = SpamStore::new(&dir, warn.clone());
        assert_eq!(s2.with("a@x.test", |c| c.counts()), (1, 0));
        // A damaged file: empty again, one warning, learning works.
        let mut b = fs::read(&path).unwrap_or_default();
        let n = b.len();
        b[n / 2] ^= 0xff;
        fs::write(&path, &b).ok();
        let s3 = SpamStore::new(&dir, warn);
        assert_eq!(s3.with("a@x.test", |c| c.counts()), (0, 0));
        assert_eq!(warned.load(Ordering::SeqCst), 1);
        assert!(s3.learn("a@x.test", 8, &[4], Class::Ham).is_ok());
        assert!(s3.path("../x@y").is_none() || s3.path("a@..").is_none());
        assert!(s3.path("nobody").is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
