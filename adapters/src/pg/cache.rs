//! A bounded cache for the mailbox store: parsed summaries and message
//! bodies, kept up to a number of entries and a number of bytes; the
//! oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// Entries with a cost (bytes), at most `max_entries` and `max_bytes`.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    inner: Mutex<Inner<K, V>>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Inner<K, V> {
    map: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
    bytes: usize,
}

impl<K: Clone + Eq + Hash, V: Clone> Bounded<K, V> {
    /// An empty cache.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`, if cached.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().map.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value` (costing `cost` bytes) under `key`, dropping the
    /// oldest entries past the bounds. A value dearer than the whole
    /// cache is not kept.
    pub(crate) fn put(&self, key: K, value: V, cost: usize) {
        if cost > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut g = self.lock();
        if let Some((_, old)) = g.map.remove(&key) {
            g.bytes -= old;
            g.order.retain(|k| k != &key);
        }
        while g.map.len() >= self.max_entries || g.bytes + cost > self.max_bytes {
            let Some(k) = g.order.pop_front() else { break };
            if let Some((_, c)) = g.map.remove(&k) {
                g.bytes -= c;
            }
        }
        g.bytes += cost;
        g.order.push_back(key.clone());
        g.map.insert(key, (value, cost));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_entries_and_bytes() {
        let c = Bounded::new(2, 10);
        c.put(1, "a", 4);
        c.put(2, "b", 4);
        c.put(3, "c", 4);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.get(&3), Some("c"));
        c.put(4, "d", 9);
        assert_eq!((c.get(&2), c.get(&3), c.get(&4)), (None, None, Some("d")));
        c.put(5, "e", 11);
        assert_eq!(c.get(&5), None);
        c.put(4, "d2", 1);
        assert_eq!(c.get(&4), Some("d2"));
    }
}
