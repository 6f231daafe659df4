//! A session's named timers (quinn's `TimerTable` idea): each timer has a
//! name, the session exposes only the earliest deadline through
//! `poll_timeout`, and `handle_timeout` learns which timer fired.

use std::time::Instant;

/// The deadlines of a few named timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerTable<K> {
    timers: Vec<(K, Instant)>,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        Self { timers: Vec::new() }
    }
}

impl<K: Copy + Eq> TimerTable<K> {
    /// Sets (or moves) timer `k` to fire at `at`.
    pub fn set(&mut self, k: K, at: Instant) {
        match self.timers.iter_mut().find(|(n, _)| *n == k) {
            Some(t) => t.1 = at,
            None => self.timers.push((k, at)),
        }
    }

    /// Stops timer `k`.
    pub fn stop(&mut self, k: K) {
        self.timers.retain(|(n, _)| *n != k);
    }

    /// Stops every timer.
    pub fn clear(&mut self) {
        self.timers.clear();
    }

    /// When timer `k` fires, if it runs.
    pub fn get(&self, k: K) -> Option<Instant> {
        self.timers.iter().find(|(n, _)| *n == k).map(|(_, t)| *t)
    }

    /// The earliest deadline and its timer.
    pub fn next(&self) -> Option<(Instant, K)> {
        self.timers
            .iter()
            .min_by_key(|(_, t)| *t)
            .map(|(k, t)| (*t, *k))
    }

    /// The earliest timer that is due at `now`, stopped and named.
    pub fn expired(&mut self, now: Instant) -> Option<K> {
        let (at, k) = self.next()?;
        if at > now {
            return None;
        }
        self.stop(k);
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum T {
        A,
        B,
    }

    #[test]
    fn the_earliest_fires_first_and_says_which() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(T::A, t0 + Duration::from_secs(5));
        t.set(T::B, t0 + Duration::from_secs(3));
        assert_eq!(t.next(), Some((t0 + Duration::from_secs(3), T::B)));
        assert_eq!(t.expired(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.expired(t0 + Duration::from_secs(4)), Some(T::B));
        assert_eq!(t.expired(t0 + Duration::from_secs(4)), None);
        t.set(T::A, t0 + Duration::from_secs(1));
        assert_eq!(t.get(T::A), Some(t0 + Duration::from_secs(1)));
        t.stop(T::A);
        assert_eq!(t.next(), None);
    }
}
