//! Sequence sets (`1:3,7,10:*`, RFC 9051 9 `sequence-set`) resolved
//! against the selected mailbox.

/// A parsed set: inclusive ranges; `u32::MAX` stands for `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSet(Vec<(u32, u32)>);

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
        Some(Self(ranges))
    }

    /// The ranges as given (low, high); `u32::MAX` stands for `*`.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// The highest number named (`u32::MAX` for `*`).
    pub fn highest(&self) -> Option<u32> {
        self.0.iter().map(|&(_, b)| b).max()
    }

    /// Whether `n` is in the set, `*` being `max` (the largest number in use).
    pub fn contains(&self, n: u32, max: u32) -> bool {
        self.0.iter().any(|&(a, b)| {
            let a = if a == u32::MAX { max } else { a };
            let b = if b == u32::MAX { max } else { b };
            a.min(b) <= n && n <= a.max(b)
        })
    }
}

impl SeqSet {
    /// The set of exactly these numbers (SEARCHRES's `$`); may be empty.
    pub fn from_numbers(nums: &[u32]) -> Self {
        Self(nums.iter().map(|&n| (n, n)).collect())
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
}
