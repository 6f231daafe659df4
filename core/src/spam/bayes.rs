//! The per-user statistical classifier: Robinson's chi-square combining
//! (Gary Robinson's "A statistical approach to the spam problem", as
//! SpamBayes uses it) over word and word-pair tokens, with a bounded token
//! table (the least useful tokens are pruned) and a bounded memory of what
//! each message was learned as, so that a correction un-learns the old
//! class first. Pure: no IO; [`Classifier::to_bytes`] and
//! [`Classifier::from_bytes`] give the file image the adapters store.

use crate::crc32c::crc32c;
use std::collections::HashMap;

/// The most tokens kept per user; past it the least useful are pruned.
pub const MAX_TOKENS: usize = 300_000;
/// The most messages whose learned class is remembered (for un-learning).
pub const MAX_REMEMBERED: usize = 4_000;
/// Learned examples of each class at which the classifier counts fully.
pub const FULL_WEIGHT_AT: u32 = 10;
/// Tokens whose probability is nearer 0.5 than this are left out.
const MIN_DEVIATION: f64 = 0.1;
/// The most tokens combined for one message.
const MAX_DISCRIMINATORS: usize = 150;
/// Robinson's strength of the prior (s) and the prior itself (x).
const PRIOR_STRENGTH: f64 = 0.45;
const PRIOR: f64 = 0.5;
/// Pseudo-examples with which each class's token share is smoothed
/// towards the token's share over both classes.
const CLASS_PSEUDO_COUNT: f64 = 10.0;
/// The file image's first bytes.
const MAGIC: &[u8; 8] = b"PSPAM01\n";

/// A class a message is learned as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

/// What a call to [`Classifier::learn`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The message was already learned as this class: nothing changed.
    Unchanged,
    /// Learned anew.
    Added,
    /// It was learned as the other class: that was un-learned first.
    Corrected,
}

/// Why a stored classifier image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not our format, or another version.
    #[error("not a Postern spam classifier file")]
    Magic,
    /// Shorter than its counts say.
    #[error("truncated")]
    Truncated,
    /// The checksum does not match (a torn or damaged write).
    #[error("checksum mismatch")]
    Checksum,
    /// Counts beyond the bounds.
    #[error("counts out of bounds")]
    Bounds,
}

/// One user's classifier.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Classifier {
    spams: u32,
    hams: u32,
    /// token hash -> (spam count, ham count).
    tokens: HashMap<u64, (u32, u32)>,
    /// (message key, class learned), oldest first.
    remembered: Vec<(u64, Class)>,
}

impl Classifier {
    /// An empty classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages learned as spam and as ham.
    pub fn counts(&self) -> (u32, u32) {
        (self.spams, self.hams)
    }

    /// How many learned spam and ham messages carried `token`.
    pub fn token_counts(&self, token: u64) -> (u32, u32) {
        self.tokens.get(&token).copied().unwrap_or((0, 0))
    }

    /// Tokens held.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// How much the classifier counts, 0 to 1: grows with the smaller of
    /// the two classes' examples and is full at [`FULL_WEIGHT_AT`].
    pub fn weight(&self) -> f64 {
        f64::from(self.spams.min(self.hams).min(FULL_WEIGHT_AT)) / f64::from(FULL_WEIGHT_AT)
    }

    /// The class `key` was learned as, if remembered.
    pub fn learned_as(&self, key: u64) -> Option<Class> {
        self.remembered
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| *c)
    }

    /// Learns a message (its `tokens`, deduplicated by the caller or not)
    /// as `class`; `key` identifies the message so that learning it again
    /// as the same class changes nothing and as the other class corrects.
    pub fn learn(&mut self, key: u64, tokens: &[u64], class: Class) -> Learned {
        let previous = self.learned_as(key);
        if previous == Some(class) {
            return Learned::Unchanged;
        }
        if let Some(old) = previous {
            self.adjust(tokens, old, false);
            self.remembered.retain(|(k, _)| *k != key);
        }
        self.adjust(tokens, class, true);
        self.remembered.push((key, class));
        if self.remembered.len() > MAX_REMEMBERED {
            let extra = self.remembered.len() - MAX_REMEMBERED;
            self.remembered.drain(..extra);
        }
        if self.tokens.len() > MAX_TOKENS {
            self.prune();
        }
        if previous.is_some() {
            Learned::Corrected
        } else {
            Learned::Added
        }
    }

    /// Un-learns a message learned before (its class remembered). Returns
    /// whether anything changed.
    pub fn forget(&mut self, key: u64, tokens: &[u64]) -> bool {
        let Some(old) = self.learned_as(key) else {
            return false;
        };
        self.adjust(tokens, old, false);
        self.remembered.retain(|(k, _)| *k != key);
        true
    }

    fn adjust(&mut self, tokens: &[u64], class: Class, add: bool) {
        let mut uniq: Vec<u64> = tokens.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        let step = |n: &mut u32| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        match class {
            Class::Spam => step(&mut self.spams),
            Class::Ham => step(&mut self.hams),
        }
        for t in uniq {
            if add {
                let e = self.tokens.entry(t).or_insert((0, 0));
                match class {
                    Class::Spam => step(&mut e.0),
                    Class::Ham => step(&mut e.1),
                }
            } else if let Some(e) = self.tokens.get_mut(&t) {
                match class {
                    Class::Spam => step(&mut e.0),
                    Class::Ham => step(&mut e.1),
                }
                if *e == (0, 0) {
                    self.tokens.remove(&t);
                }
            }
        }
    }

    /// Drops the least useful tokens (seen least often) until the table is
    /// at most four fifths of [`MAX_TOKENS`].
    fn prune(&mut self) {
        let target = MAX_TOKENS / 5 * 4;
        let mut floor = 1u32;
        while self.tokens.len() > target {
            self.tokens.retain(|_, (s, h)| s.saturating_add(*h) > floor);
            floor = floor.saturating_mul(2);
        }
    }

    /// The spam probability of a message with these tokens, 0 (ham) to 1
    /// (spam), 0.5 when nothing is known.
    pub fn probability(&self, tokens: &[u64]) -> f64 {
        if self.spams == 0 || self.hams == 0 {
            return 0.5;
        }
        let (ns, nh) = (f64::from(self.spams), f64::from(self.hams));
        let mut uniq: Vec<u64> = tokens.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        let mut probs: Vec<f64> = uniq
            .iter()
            .filter_map(|t| self.tokens.get(t))
            .map(|&(s, h)| {
                // Each class's share of messages with the token, both
                // pulled towards its share over all messages by
                // CLASS_PSEUDO_COUNT examples: a token missing from the
                // first five spams says little (without this, a young
                // classifier that has seen many more hams than spams calls
                // every word not yet seen in spam hammy).
                let q = (f64::from(s) + f64::from(h)) / (ns + nh);
                let sr =
                    ((f64::from(s) + CLASS_PSEUDO_COUNT * q) / (ns + CLASS_PSEUDO_COUNT)).min(1.0);
                let hr =
                    ((f64::from(h) + CLASS_PSEUDO_COUNT * q) / (nh + CLASS_PSEUDO_COUNT)).min(1.0);
                let p = sr / (sr + hr);
                let n = f64::from(s) + f64::from(h);
                (PRIOR_STRENGTH * PRIOR + n * p) / (PRIOR_STRENGTH + n)
            })
            .filter(|f| (f - 0.5).abs() >= MIN_DEVIATION)
            .collect();
        if probs.is_empty() {
            return 0.5;
        }
        if probs.len() > MAX_DISCRIMINATORS {
            probs.sort_unstable_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
            probs.truncate(MAX_DISCRIMINATORS);
        }
        let (mut ln_s, mut ln_h) = (0.0f64, 0.0f64);
        for f in &probs {
            let f = f.clamp(1e-6, 1.0 - 1e-6);
            ln_h += f.ln();
            ln_s += (1.0 - f).ln();
        }
        let n = probs.len();
        let s = 1.0 - chi2q(-2.0 * ln_s, 2 * n);
        let h = 1.0 - chi2q(-2.0 * ln_h, 2 * n);
        ((s - h + 1.0) / 2.0).clamp(0.0, 1.0)
    }

    /// The file image: magic, counts, tokens, remembered messages, CRC-32C.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.tokens.len() * 16 + self.remembered.len() * 9);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.spams.to_le_bytes());
        out.extend_from_slice(&self.hams.to_le_bytes());
        let mut toks: Vec<(&u64, &(u32, u32))> = self.tokens.iter().collect();
        toks.sort_unstable_by_key(|(k, _)| **k);
        out.extend_from_slice(&u32::try_from(toks.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (k, (s, h)) in toks {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
        let rem = u32::try_from(self.remembered.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&rem.to_le_bytes());
        for (k, c) in &self.remembered {
            out.extend_from_slice(&k.to_le_bytes());
            out.push(match c {
                Class::Spam => 1,
                Class::Ham => 0,
            });
        }
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a file image written by [`Classifier::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < MAGIC.len() + 4 || &b[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::Magic);
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c(body) != crc {
            return Err(DecodeError::Checksum);
        }
        let mut r = Reader {
            b: body,
            at: MAGIC.len(),
        };
        let spams = r.u32()?;
        let hams = r.u32()?;
        let ntok = r.u32()? as usize;
        if ntok > MAX_TOKENS * 2 {
            return Err(DecodeError::Bounds);
        }
        let mut tokens = HashMap::with_capacity(ntok);
        for _ in 0..ntok {
            let k = r.u64()?;
            let s = r.u32()?;
            let h = r.u32()?;
            tokens.insert(k, (s, h));
        }
        let nrem = r.u32()? as usize;
        if nrem > MAX_REMEMBERED * 2 {
            return Err(DecodeError::Bounds);
        }
        let mut remembered = Vec::with_capacity(nrem);
        for _ in 0..nrem {
            let k = r.u64()?;
            let c = match r.take(1)?[0] {
                1 => Class::Spam,
                _ => Class::Ham,
            };
            remembered.push((k, c));
        }
        Ok(Self {
            spams,
            hams,
            tokens,
            remembered,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// The chi-square survival function for an even number of degrees of
/// freedom `v`: the probability of a value at least `x2`.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(words: &[&str]) -> Vec<u64> {
        words
            .iter()
            .map(|w| crate::spam::tokens::hash(w.as_bytes()))
            .collect()
    }

    #[test]
    fn learns_from_few_examples_and_unlearns() {
        let mut c = Classifier::new();
        assert_eq!(c.probability(&toks(&["viagra"])), 0.5);
        for i in 0..10u64 {
            c.learn(i, &toks(&["viagra", "cheap", "pills", "now"]), Class::Spam);
            c.learn(
                100 + i,
                &toks(&["meeting", "tomorrow", "agenda", "now"]),
                Class::Ham,
            );
        }
        assert_eq!(c.weight(), 1.0);
        // Two perfect discriminators after ten examples of each class:
        // clearly one way, not yet certain (CLASS_PSEUDO_COUNT smoothing).
        let p = c.probability(&toks(&["cheap", "viagra", "hello"]));
        assert!(p > 0.75, "{p}");
        let p = c.probability(&toks(&["meeting", "agenda"]));
        assert!(p < 0.25, "{p}");
        // Learning the same message again as the same class changes nothing.
        let before = c.clone();
        assert_eq!(
            c.learn(3, &toks(&["viagra", "cheap", "pills", "now"]), Class::Spam),
            Learned::Unchanged
        );
        assert_eq!(c, before);
        // Correcting moves the counts.
        assert_eq!(
            c.learn(3, &toks(&["viagra", "cheap", "pills", "now"]), Class::Ham),
            Learned::Corrected
        );
        assert_eq!(c.counts(), (9, 11));
        assert!(c.forget(3, &toks(&["viagra", "cheap", "pills", "now"])));
        assert_eq!(c.counts(), (9, 10));
        assert!(!c.forget(3, &toks(&["viagra"])));
    }

    #[test]
    fn weight_grows_with_examples() {
        let mut c = Classifier::new();
        assert_eq!(c.weight(), 0.0);
        for i in 0..5u64 {
            c.learn(i, &toks(&["a"]), Class::Spam);
            c.learn(50 + i, &toks(&["b"]), Class::Ham);
        }
        assert!((c.weight() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn file_image_round_trips_and_damage_is_refused() {
        let mut c = Classifier::new();
        c.learn(1, &toks(&["x", "y"]), Class::Spam);
        c.learn(2, &toks(&["y", "z"]), Class::Ham);
        let b = c.to_bytes();
        assert_eq!(Classifier::from_bytes(&b), Ok(c));
        let mut bad = b.clone();
        bad[12] ^= 1;
        assert_eq!(Classifier::from_bytes(&bad), Err(DecodeError::Checksum));
        assert_eq!(
            Classifier::from_bytes(&b[..b.len() - 7]),
            Err(DecodeError::Checksum)
        );
        assert_eq!(Classifier::from_bytes(b"junk"), Err(DecodeError::Magic));
        assert_eq!(Classifier::from_bytes(&[]), Err(DecodeError::Magic));
    }

    #[test]
    fn token_table_and_memory_stay_bounded() {
        let mut c = Classifier::new();
        for m in 0..(MAX_REMEMBERED as u64 + 50) {
            let t: Vec<u64> = (0..40).map(|i| m * 1000 + i).collect();
            c.learn(m, &t, if m % 2 == 0 { Class::Spam } else { Class::Ham });
            assert!(c.token_count() <= MAX_TOKENS);
        }
        assert!(c.remembered.len() <= MAX_REMEMBERED);
    }
}
