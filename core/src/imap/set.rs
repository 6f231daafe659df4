//! Sequence sets (`1:3,7,10:*`, RFC 9051 9 `sequence-set`) resolved
//! against the selected mailbox.

/// A parsed set: inclusive ranges; `u32::MAX` stands for `*`.
///
/// Beside the ranges as given it keeps them sorted and joined, so that
/// [`SeqSet::contains`] costs a binary search, not one look at every
/// range: a saved search result (`$`) of 50,000 UIDs, or a set of
/// thousands of ranges, is matched against every message of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSet(Box<Ranges>);

/// What a [`SeqSet`] holds, behind one pointer: sets sit in the session's
/// pending commands.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ranges {
    given: Vec<(u32, u32)>,
    /// The ranges without `*`, sorted and joined (none overlap or touch).
    fixed: Vec<(u32, u32)>,
    /// The ranges with `*` (`a:*`, `*:a`, `*`) each cover from `a` to the
    /// largest number in use, whichever is lower; `None` when there is
    /// none. The lowest `a` of them (`u32::MAX` for `*` alone) and the
    /// highest `a` other than `*` (0 when only `*`).
    star: Option<(u32, u32)>,
}

/// The most ranges in one set.
const MAX_RANGES: usize = 4096;

impl SeqSet {
    /// Parses a set; `None` when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            ranges.push((a.min(b), a.max(b)));
            if ranges.len() > MAX_RANGES {
                return None;
            }
        }
        Some(Self::of(ranges))
    }

    /// A set of ranges given as (low, high), `u32::MAX` standing for `*`.
    fn of(given: Vec<(u32, u32)>) -> Self {
        let mut fixed: Vec<(u32, u32)> = Vec::new();
        let mut star: Option<(u32, u32)> = None;
        for &(a, b) in &given {
            let (a, b) = (a.min(b), a.max(b));
            if b == u32::MAX {
                // `*` alone (a = u32::MAX) reaches no higher than `max`.
                let top = if a == u32::MAX { 0 } else { a };
                star = Some(star.map_or((a, top), |(lo, hi)| (lo.min(a), hi.max(top))));
            } else {
                fixed.push((a, b));
            }
        }
        fixed.sort_unstable();
        let mut joined: Vec<(u32, u32)> = Vec::with_capacity(fixed.len());
        for (a, b) in fixed {
            match joined.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => joined.push((a, b)),
            }
        }
        Self(Box::new(Ranges {
            given,
            fixed: joined,
            star,
        }))
    }

    /// The ranges as given (low, high); `u32::MAX` stands for `*`.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0.given
    }

    /// The highest number named (`u32::MAX` for `*`).
    pub fn highest(&self) -> Option<u32> {
        self.0.given.iter().map(|&(_, b)| b).max()
    }

    /// Whether `n` is in the set, `*` being `max` (the largest number in use).
    pub fn contains(&self, n: u32, max: u32) -> bool {
        if let Some((lo, hi)) = self.0.star {
            // Each `*` range runs between its `a` and `max`; all of them
            // hold `max`, so together they run from the lowest end to the
            // highest. `a` = `u32::MAX` (`*` alone) is `max` itself.
            if lo.min(max) <= n && n <= hi.max(max) {
                return true;
            }
        }
        // The last range starting at or below `n` is the only one that
        // can hold it.
        let i = self.0.fixed.partition_point(|&(a, _)| a <= n);
        i > 0 && self.0.fixed.get(i - 1).is_some_and(|&(_, b)| n <= b)
    }
}

impl SeqSet {
    /// The set of exactly these numbers (SEARCHRES's `$`); may be empty.
    pub fn from_numbers(nums: &[u32]) -> Self {
        Self::of(nums.iter().map(|&n| (n, n)).collect())
    }

    /// Numbers as a compact set, `1:3,7,9:10` (sorted, runs joined).
    pub fn compact(nums: &[u32]) -> String {
        let mut v = nums.to_vec();
        v.sort_unstable();
        v.dedup();
        let mut out = String::new();
        let mut i = 0;
        while i < v.len() {
            let start = v[i];
            let mut end = start;
            while i + 1 < v.len() && v[i + 1] == end + 1 {
                i += 1;
                end = v[i];
            }
            if !out.is_empty() {
                out.push(',');
            }
            if start == end {
                out.push_str(&start.to_string());
            } else {
                out.push_str(&format!("{start}:{end}"));
            }
            i += 1;
        }
        out
    }
}

fn num(s: &str) -> Option<u32> {
    if s == "*" {
        return Some(u32::MAX);
    }
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0')
    {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_sets() {
        assert_eq!(SeqSet::compact(&[5, 1, 2, 3, 9, 10, 7]), "1:3,5,7,9:10");
        assert_eq!(SeqSet::compact(&[]), "");
        assert_eq!(SeqSet::compact(&[4]), "4");
    }

    #[test]
    fn sets() {
        let s = SeqSet::parse("1:3,7,10:*").unwrap();
        assert!(s.contains(2, 20) && s.contains(7, 20) && s.contains(15, 20) && !s.contains(8, 20));
        let r = SeqSet::parse("*:4").unwrap();
        assert!(r.contains(5, 6) && !r.contains(3, 6));
        assert!(
            SeqSet::parse("0").is_none()
                && SeqSet::parse("1:").is_none()
                && SeqSet::parse("a").is_none()
        );
    }

    /// The linear reading of a set, range by range, as RFC 9051 9 says.
    fn by_hand(given: &[(u32, u32)], n: u32, max: u32) -> bool {
        given.iter().any(|&(a, b)| {
            let a = if a == u32::MAX { max } else { a };
            let b = if b == u32::MAX { max } else { b };
            a.min(b) <= n && n <= a.max(b)
        })
    }

    #[test]
    fn membership_agrees_with_the_range_by_range_reading() {
        let sets = [
            "1:3,7,10:*",
            "*:4",
            "*",
            "9:*,2",
            "5,3,4,1,2,20:18,40:30,35:36",
            "7:*,*:12,3",
            "4294967294,1",
            "*,40:*",
            "*:45,*",
        ];
        for text in sets {
            let s = SeqSet::parse(text).expect("parses");
            for max in [0, 1, 4, 8, 11, 15, 50, u32::MAX - 1] {
                for n in (0..60).chain([u32::MAX - 2, u32::MAX - 1]) {
                    assert_eq!(
                        s.contains(n, max),
                        by_hand(s.ranges(), n, max),
                        "{text}: {n} with * = {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_saved_result_of_many_numbers_is_joined_into_runs() {
        let nums: Vec<u32> = (1..=50_000).filter(|n| n % 1000 != 0).collect();
        let s = SeqSet::from_numbers(&nums);
        assert_eq!(
            s.0.fixed.len(),
            50,
            "49 gaps split 50,000 numbers into 50 runs"
        );
        assert!(s.contains(999, 50_000) && !s.contains(1000, 50_000) && s.contains(1001, 50_000));
        assert!(!s.contains(50_000, 50_000) && !s.contains(0, 50_000));
        assert_eq!(s.ranges().len(), nums.len(), "the ranges as given are kept");
    }
}
