//! What a mailbox store remembers for QRESYNC and for `\Recent`, shared
//! by every store so that they answer alike.
//!
//! QRESYNC (RFC 7162 3.2.5, 3.2.6) asks which UIDs were expunged after a
//! mod-sequence. A store keeps [`Tombstones`]: the expunged UIDs with the
//! mod-sequence of their expunge, bounded; past the bound the oldest are
//! dropped and the *floor* rises to their mod-sequence. Asked about a
//! mod-sequence at or above the floor, the list is exact; below it, the
//! session answers `VANISHED (EARLIER)` with every UID of the client's
//! range that is not in the mailbox, which RFC 7162 3.2.5.1 allows.
//!
//! `\Recent` (RFC 3501 2.3.2): a message is recent in the one session
//! that first selects its mailbox read-write after it arrived (or, while
//! selected, first learns of it). A store keeps one mark per mailbox, the
//! lowest UID no session has taken yet ([`take_recent`]); STATUS RECENT
//! counts the messages at or above it ([`recent_count`]).

use std::collections::VecDeque;

/// The most expunged UIDs a mailbox remembers (about 16 bytes each).
pub const MAX_TOMBSTONES: usize = 10_000;

/// Expunged UIDs with the mod-sequence of their expunge, oldest first,
/// and the lowest mod-sequence from which the list is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstones {
    entries: VecDeque<(u64, u32)>,
    floor: u64,
    cap: usize,
}

impl Default for Tombstones {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Tombstones {
    /// An empty list, exact for mod-sequences at or above `floor` (0: the
    /// mailbox has never lost a message we did not see go).
    pub fn new(floor: u64) -> Self {
        Self::with_capacity(floor, MAX_TOMBSTONES)
    }

    /// An empty list that keeps at most `cap` UIDs.
    pub fn with_capacity(floor: u64, cap: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            floor,
            cap: cap.max(1),
        }
    }

    /// Below this mod-sequence the list may miss expunges.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Expunges happened that were not recorded (files removed while no
    /// one looked): the list is exact only from `modseq` on.
    pub fn raise_floor(&mut self, modseq: u64) {
        self.floor = self.floor.max(modseq);
    }

    /// How many UIDs are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no UID is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `uids` were expunged at `modseq` (not lower than any recorded
    /// before). The oldest are dropped past the bound.
    pub fn record(&mut self, modseq: u64, uids: &[u32]) {
        for &u in uids {
            self.entries.push_back((modseq, u));
        }
        while self.entries.len() > self.cap {
            if let Some((m, _)) = self.entries.pop_front() {
                self.floor = self.floor.max(m);
            }
        }
    }

    /// Forgets the tombstones of UIDs `exists` says are still there (an
    /// expunge logged, then cut short by a crash before the files went).
    pub fn keep_missing(&mut self, exists: impl Fn(u32) -> bool) {
        self.entries.retain(|&(_, u)| !exists(u));
    }

    /// The UIDs expunged after `since`, sorted; exact when `since` is at
    /// least [`Self::floor`].
    pub fn since(&self, since: u64) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .entries
            .iter()
            .filter(|&&(m, _)| m > since)
            .map(|&(_, u)| u)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The list grouped by mod-sequence, oldest first (for a store's log).
    pub fn groups(&self) -> Vec<(u64, Vec<u32>)> {
        let mut out: Vec<(u64, Vec<u32>)> = Vec::new();
        for &(m, u) in &self.entries {
            match out.last_mut() {
                Some((lm, v)) if *lm == m => v.push(u),
                _ => out.push((m, vec![u])),
            }
        }
        out
    }
}

/// Takes recency for one session: the UIDs at or above `first_recent`
/// among `uids` (the mailbox's messages), and moves the mark to
/// `uid_next` so no other session gets them.
pub fn take_recent(
    first_recent: &mut u32,
    uid_next: u32,
    uids: impl Iterator<Item = u32>,
) -> Vec<u32> {
    let mark = *first_recent;
    if mark >= uid_next {
        return Vec::new();
    }
    let taken: Vec<u32> = uids.filter(|&u| u >= mark).collect();
    *first_recent = mark.max(uid_next);
    taken
}

/// STATUS RECENT: how many of `uids` no session has taken yet.
pub fn recent_count(first_recent: u32, uids: impl Iterator<Item = u32>) -> u32 {
    u32::try_from(uids.filter(|&u| u >= first_recent).count()).unwrap_or(u32::MAX)
}

/// `VANISHED (EARLIER)` when the store cannot say exactly: every UID of
/// `known` (ranges, `u32::MAX` for `*`) below `uid_next` that is not in
/// `present` (sorted), as sorted disjoint ranges. Never enumerates a
/// range: a client's `1:4294967295` costs one comparison per message.
pub fn missing_ranges(known: &[(u32, u32)], uid_next: u32, present: &[u32]) -> Vec<(u32, u32)> {
    let top = uid_next.saturating_sub(1);
    if top == 0 {
        return Vec::new();
    }
    let mut ranges: Vec<(u32, u32)> = known
        .iter()
        .map(|&(a, b)| {
            let a = if a == u32::MAX { top } else { a };
            let b = if b == u32::MAX { top } else { b };
            (a.min(b).max(1), a.max(b).min(top))
        })
        .filter(|(a, b)| a <= b)
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some((_, lb)) if a <= lb.saturating_add(1) => *lb = (*lb).max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut out = Vec::new();
    for (a, b) in merged {
        let start = present.partition_point(|&u| u < a);
        let mut next = a;
        for &u in present[start..].iter().take_while(|&&u| u <= b) {
            if u > next {
                out.push((next, u - 1));
            }
            next = u.saturating_add(1);
        }
        if next <= b {
            out.push((next, b));
        }
    }
    out
}

/// Ranges as a sequence set, `1:3,7`.
pub fn ranges_text(ranges: &[(u32, u32)]) -> String {
    let mut s = String::new();
    for (a, b) in ranges {
        if !s.is_empty() {
            s.push(',');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}:{b}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_bounded_and_raise_the_floor() {
        let mut t = Tombstones::with_capacity(0, 3);
        t.record(5, &[1, 2]);
        t.record(7, &[4]);
        assert_eq!(t.since(0), vec![1, 2, 4]);
        assert_eq!(t.since(5), vec![4]);
        assert_eq!(t.floor(), 0);
        t.record(9, &[8, 9]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.floor(), 5);
        assert_eq!(t.since(5), vec![4, 8, 9]);
        assert_eq!(t.groups(), vec![(7, vec![4]), (9, vec![8, 9])]);
        t.keep_missing(|u| u == 8);
        assert_eq!(t.since(0), vec![4, 9]);
    }

    #[test]
    fn recency_goes_to_one_taker() {
        let mut mark = 1;
        assert_eq!(
            take_recent(&mut mark, 4, [1, 2, 3].into_iter()),
            vec![1, 2, 3]
        );
        assert_eq!(mark, 4);
        assert_eq!(
            take_recent(&mut mark, 4, [1, 2, 3].into_iter()),
            Vec::<u32>::new()
        );
        assert_eq!(recent_count(mark, [1, 2, 3, 4, 5].into_iter()), 2);
    }

    #[test]
    fn missing_ranges_skip_present_uids() {
        assert_eq!(
            missing_ranges(&[(1, u32::MAX)], 10, &[2, 3, 7]),
            vec![(1, 1), (4, 6), (8, 9)]
        );
        assert_eq!(
            missing_ranges(&[(5, 3), (8, 20)], 10, &[4]),
            vec![(3, 3), (5, 5), (8, 9)]
        );
        assert_eq!(missing_ranges(&[(1, 4)], 1, &[]), Vec::<(u32, u32)>::new());
        assert_eq!(ranges_text(&[(1, 1), (4, 6)]), "1,4:6");
    }
}
