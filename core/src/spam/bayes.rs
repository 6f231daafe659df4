//! The per-user statistical classifier, two models over the same word and
//! word-pair tokens whose spam probabilities are averaged:
//! - Robinson's chi-square combining (Gary Robinson's "A statistical
//!   approach to the spam problem", as SpamBayes uses it) over per-token
//!   counts: it learns from few examples, but sums correlated evidence as
//!   if it were independent, so a newsletter that shares many words with
//!   spam comes out near-certain spam.
//! - Online logistic regression with a weight per token, trained only
//!   where it is wrong or unsure (the TREC spam track's best filters,
//!   Goodman and Yih's and Sculley's "train on or near error"): it learns
//!   how much a token adds given the others, and tempers the first where
//!   the evidence overlaps. Its share grows over the first
//!   [`LOGISTIC_FULL_AT`] learned messages.
//!
//! The token table is bounded (the least useful tokens are pruned) and
//! what each message was learned as is remembered, bounded, so that a
//! correction un-learns the old class first. Pure: no IO;
//! [`Classifier::to_bytes`] and [`Classifier::from_bytes`] give the file
//! image the adapters store.

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
/// Learned messages at which the logistic model counts as much as the
/// chi-square one.
pub const LOGISTIC_FULL_AT: u32 = 200;
/// The logistic model's learning rate.
const LOGISTIC_RATE: f64 = 0.03;
/// The logistic model learns a message only when its probability is
/// further than this from the message's class (1 spam, 0 ham).
const LOGISTIC_MARGIN: f64 = 0.2;
/// A logistic weight's bound (and the bias's), so that no token decides
/// alone and the stored image stays finite.
const LOGISTIC_MAX_WEIGHT: f32 = 8.0;
/// The file image's first bytes.
const MAGIC: &[u8; 8] = b"PSPAM02\n";
/// The first version's (counts only, no logistic weights): still read.
const MAGIC_V1: &[u8; 8] = b"PSPAM01\n";

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

/// What the classifier keeps of one token.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Stat {
    /// Learned spam messages that carried the token.
    spam: u32,
    /// Learned ham messages that carried it.
    ham: u32,
    /// Its logistic weight (positive: spam).
    weight: f32,
}

/// One user's classifier.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Classifier {
    spams: u32,
    hams: u32,
    /// The logistic model's bias.
    bias: f32,
    tokens: HashMap<u64, Stat>,
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
        self.tokens.get(&token).map_or((0, 0), |t| (t.spam, t.ham))
    }

    /// Tokens held.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// About how many bytes of memory the classifier holds: its tables'
    /// capacities (a hash table entry also costs a control byte), not
    /// counting the allocator's own overhead.
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Stat)>() + 1;
        let remembered = std::mem::size_of::<(u64, Class)>();
        std::mem::size_of::<Self>()
            .saturating_add(self.tokens.capacity().saturating_mul(entry))
            .saturating_add(self.remembered.capacity().saturating_mul(remembered))
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
        let uniq = unique(tokens);
        if let Some(old) = previous {
            self.adjust(&uniq, old, false);
            self.remembered.retain(|(k, _)| *k != key);
        }
        self.adjust(&uniq, class, true);
        self.train_logistic(&uniq, class);
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
    /// whether anything changed. The counts are taken back exactly; the
    /// logistic weights, which hold no per-message record, keep what they
    /// learned until later messages move them.
    pub fn forget(&mut self, key: u64, tokens: &[u64]) -> bool {
        let Some(old) = self.learned_as(key) else {
            return false;
        };
        self.adjust(&unique(tokens), old, false);
        self.remembered.retain(|(k, _)| *k != key);
        true
    }

    /// Counts `uniq` (deduplicated) in or out of `class`.
    fn adjust(&mut self, uniq: &[u64], class: Class, add: bool) {
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
        for &t in uniq {
            if add {
                let e = self.tokens.entry(t).or_default();
                match class {
                    Class::Spam => step(&mut e.spam),
                    Class::Ham => step(&mut e.ham),
                }
            } else if let Some(e) = self.tokens.get_mut(&t) {
                match class {
                    Class::Spam => step(&mut e.spam),
                    Class::Ham => step(&mut e.ham),
                }
                if e.spam == 0 && e.ham == 0 {
                    self.tokens.remove(&t);
                }
            }
        }
    }

    /// One step of the logistic model towards `class` for a message with
    /// `uniq` (deduplicated, all in the table), taken only when the model
    /// is wrong or within [`LOGISTIC_MARGIN`] of wrong.
    fn train_logistic(&mut self, uniq: &[u64], class: Class) {
        let target = match class {
            Class::Spam => 1.0,
            Class::Ham => 0.0,
        };
        let err = target - self.logistic(uniq);
        if err.abs() <= LOGISTIC_MARGIN {
            return;
        }
        let step = (LOGISTIC_RATE * err) as f32;
        let bound = |w: f32| w.clamp(-LOGISTIC_MAX_WEIGHT, LOGISTIC_MAX_WEIGHT);
        self.bias = bound(self.bias + step);
        for t in uniq {
            if let Some(e) = self.tokens.get_mut(t) {
                e.weight = bound(e.weight + step);
            }
        }
    }

    /// The logistic model's spam probability for `uniq` (deduplicated).
    fn logistic(&self, uniq: &[u64]) -> f64 {
        let z: f64 = f64::from(self.bias)
            + uniq
                .iter()
                .filter_map(|t| self.tokens.get(t))
                .map(|e| f64::from(e.weight))
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    /// Drops the least useful tokens (seen least often) until the table is
    /// at most four fifths of [`MAX_TOKENS`].
    fn prune(&mut self) {
        let target = MAX_TOKENS / 5 * 4;
        let mut floor = 1u32;
        while self.tokens.len() > target {
            self.tokens
                .retain(|_, e| e.spam.saturating_add(e.ham) > floor);
            floor = floor.saturating_mul(2);
        }
    }

    /// The spam probability of a message with these tokens, 0 (ham) to 1
    /// (spam), 0.5 when nothing is known: the chi-square model's, averaged
    /// with the logistic model's as that one's share grows.
    pub fn probability(&self, tokens: &[u64]) -> f64 {
        if self.spams == 0 || self.hams == 0 {
            return 0.5;
        }
        let uniq = unique(tokens);
        let share = f64::from(self.spams.saturating_add(self.hams).min(LOGISTIC_FULL_AT))
            / f64::from(LOGISTIC_FULL_AT);
        (self.chi_square(&uniq) + share * self.logistic(&uniq)) / (1.0 + share)
    }

    /// The chi-square model's spam probability for `uniq` (deduplicated).
    fn chi_square(&self, uniq: &[u64]) -> f64 {
        let (ns, nh) = (f64::from(self.spams), f64::from(self.hams));
        let mut probs: Vec<f64> = uniq
            .iter()
            .filter_map(|t| self.tokens.get(t))
            .map(|e| (e.spam, e.ham))
            .map(|(s, h)| {
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

    /// The file image: magic, counts, bias, tokens (counts and weight),
    /// remembered messages, CRC-32C.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.tokens.len() * 20 + self.remembered.len() * 9);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.spams.to_le_bytes());
        out.extend_from_slice(&self.hams.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        let mut toks: Vec<(&u64, &Stat)> = self.tokens.iter().collect();
        toks.sort_unstable_by_key(|(k, _)| **k);
        out.extend_from_slice(&u32::try_from(toks.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (k, e) in toks {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&e.spam.to_le_bytes());
            out.extend_from_slice(&e.ham.to_le_bytes());
            out.extend_from_slice(&e.weight.to_le_bytes());
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

    /// Reads a file image written by [`Classifier::to_bytes`], or by the
    /// first version (its logistic weights start at zero).
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < MAGIC.len() + 4 {
            return Err(DecodeError::Magic);
        }
        let v1 = match &b[..MAGIC.len()] {
            m if m == MAGIC => false,
            m if m == MAGIC_V1 => true,
            _ => return Err(DecodeError::Magic),
        };
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
        let bias = if v1 { 0.0 } else { r.weight()? };
        let ntok = r.u32()? as usize;
        if ntok > MAX_TOKENS * 2 {
            return Err(DecodeError::Bounds);
        }
        // Reserved by what the bytes can hold, not by what the header says.
        let per_token = if v1 { 16 } else { 20 };
        let mut tokens = HashMap::with_capacity(ntok.min(r.left() / per_token));
        for _ in 0..ntok {
            let k = r.u64()?;
            let spam = r.u32()?;
            let ham = r.u32()?;
            let weight = if v1 { 0.0 } else { r.weight()? };
            tokens.insert(k, Stat { spam, ham, weight });
        }
        let nrem = r.u32()? as usize;
        if nrem > MAX_REMEMBERED * 2 {
            return Err(DecodeError::Bounds);
        }
        let mut remembered = Vec::with_capacity(nrem.min(r.left() / 9));
        for _ in 0..nrem {
            let k = r.u64()?;
            let c = match r.take(1)?[0] {
                1 => Class::Spam,
                0 => Class::Ham,
                _ => return Err(DecodeError::Bounds),
            };
            remembered.push((k, c));
        }
        if r.left() != 0 {
            return Err(DecodeError::Bounds);
        }
        Ok(Self {
            spams,
            hams,
            bias,
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
    /// Bytes not read yet.
    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }

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
    /// A logistic weight: finite and within its bound.
    fn weight(&mut self) -> Result<f32, DecodeError> {
        let w = f32::from_bits(self.u32()?);
        if w.is_finite() && w.abs() <= LOGISTIC_MAX_WEIGHT {
            Ok(w)
        } else {
            Err(DecodeError::Bounds)
        }
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// `tokens` sorted and deduplicated.
fn unique(tokens: &[u64]) -> Vec<u64> {
    let mut uniq = tokens.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    uniq
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
    use crate::spam::tokens;

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

    /// A newsletter the user wants shares many words with spam and has
    /// some of its own. Chi-square sums the shared words as if each were
    /// separate evidence and calls the next issue near-certain spam; the
    /// logistic model, trained on its errors, learns that the newsletter's
    /// own words outweigh them, and the average is no longer certain.
    #[test]
    fn logistic_model_tempers_overlapping_evidence() {
        // Messages of a few hundred words, as mail is: `n` tokens named
        // after `stem`.
        let words = |stem: &str, n: usize| -> Vec<u64> {
            (0..n)
                .map(|i| tokens::hash(format!("{stem}{i}").as_bytes()))
                .collect()
        };
        let shared = words("offer", 150);
        let gazette = words("gazette", 20);
        let mut c = Classifier::new();
        for i in 0..100u64 {
            let spam = [shared.clone(), words(&format!("spam{i}-"), 30)].concat();
            c.learn(3 * i, &spam, Class::Spam);
            let ham = [words("meeting", 100), words(&format!("ham{i}-"), 50)].concat();
            c.learn(3 * i + 1, &ham, Class::Ham);
            if i % 4 == 0 {
                c.learn(
                    3 * i + 2,
                    &[shared.clone(), gazette.clone()].concat(),
                    Class::Ham,
                );
            }
        }
        let issue = unique(&[shared.clone(), gazette].concat());
        assert!(c.chi_square(&issue) > 0.9, "{}", c.chi_square(&issue));
        assert!(c.logistic(&issue) < 0.2, "{}", c.logistic(&issue));
        // Averaged: no longer near-certain spam (under a third of the
        // classifier's points, see `bayes_points`).
        assert!(c.probability(&issue) < 0.65, "{}", c.probability(&issue));
        // Without the newsletter's words it is spam to both.
        let spam = [shared, words("spam999-", 30)].concat();
        assert!(c.probability(&spam) > 0.8, "{}", c.probability(&spam));
    }

    #[test]
    fn logistic_weights_stay_bounded_and_round_trip() {
        let mut c = Classifier::new();
        for i in 0..5_000u64 {
            // The same tokens learned as both classes in turn: the model is
            // always wrong, so every message moves the weights.
            let class = if i % 2 == 0 { Class::Spam } else { Class::Ham };
            c.learn(i, &toks(&["same", "words"]), class);
        }
        assert!(c.bias.abs() <= LOGISTIC_MAX_WEIGHT);
        assert!(c
            .tokens
            .values()
            .all(|e| e.weight.abs() <= LOGISTIC_MAX_WEIGHT));
        assert!(c.tokens.values().any(|e| e.weight != 0.0));
        assert_eq!(Classifier::from_bytes(&c.to_bytes()), Ok(c));
    }

    /// Builds an image with a valid checksum from its body.
    fn sealed(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn first_version_images_are_read_and_bad_weights_refused() {
        // Version 1: counts only.
        let mut v1 = MAGIC_V1.to_vec();
        for n in [3u32, 4, 1] {
            v1.extend_from_slice(&n.to_le_bytes()); // spams, hams, tokens
        }
        v1.extend_from_slice(&77u64.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes()); // remembered
        v1.extend_from_slice(&9u64.to_le_bytes());
        v1.push(1);
        let c = Classifier::from_bytes(&sealed(v1)).expect("version 1 read");
        assert_eq!(c.counts(), (3, 4));
        assert_eq!(c.token_counts(77), (2, 1));
        assert_eq!(c.learned_as(9), Some(Class::Spam));
        assert_eq!(c.bias, 0.0);
        // Written back, it is version 2.
        assert_eq!(&c.to_bytes()[..8], MAGIC);
        // A weight that is not finite, or out of bounds, is refused.
        for bad in [f32::NAN, f32::INFINITY, LOGISTIC_MAX_WEIGHT * 2.0] {
            let mut v2 = MAGIC.to_vec();
            v2.extend_from_slice(&1u32.to_le_bytes());
            v2.extend_from_slice(&1u32.to_le_bytes());
            v2.extend_from_slice(&bad.to_le_bytes()); // bias
            v2.extend_from_slice(&0u32.to_le_bytes());
            v2.extend_from_slice(&0u32.to_le_bytes());
            assert_eq!(
                Classifier::from_bytes(&sealed(v2)),
                Err(DecodeError::Bounds),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_header_reserves_only_what_the_bytes_hold_and_strays_are_refused() {
        // A header claiming 600,000 tokens with none after it: refused,
        // and the table reserved for it is sized by the bytes present.
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&1u32.to_le_bytes());
        v2.extend_from_slice(&1u32.to_le_bytes());
        v2.extend_from_slice(&0f32.to_le_bytes());
        v2.extend_from_slice(&600_000u32.to_le_bytes());
        assert_eq!(
            Classifier::from_bytes(&sealed(v2)),
            Err(DecodeError::Truncated)
        );
        // A remembered class other than 0 or 1, or bytes after the last
        // field, make an image that was not written by to_bytes.
        let mut c = Classifier::new();
        c.learn(9, &[1, 2], Class::Spam);
        let good = c.to_bytes();
        assert_eq!(Classifier::from_bytes(&good), Ok(c.clone()));
        let body = &good[..good.len() - 4];
        let mut bad_class = body.to_vec();
        if let Some(last) = bad_class.last_mut() {
            assert_eq!(*last, 1, "the image ends with the class byte");
            *last = 7;
        }
        assert_eq!(
            Classifier::from_bytes(&sealed(bad_class)),
            Err(DecodeError::Bounds)
        );
        let mut trailing = body.to_vec();
        trailing.extend_from_slice(&[0; 30]);
        assert_eq!(
            Classifier::from_bytes(&sealed(trailing)),
            Err(DecodeError::Bounds)
        );
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
