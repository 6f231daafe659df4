//! Tokens for the classifier: words and adjacent word pairs of the decoded
//! text (HTML turned into text), and a few header fields' words tagged
//! with the field, each hashed to 64 bits (FNV-1a). Bounded: long words
//! become a length class, and at most [`MAX_TOKENS_PER_MESSAGE`] tokens
//! come from one message.

/// The most tokens taken from one message.
pub const MAX_TOKENS_PER_MESSAGE: usize = 6_000;
/// Words longer than this become a "long word" token.
const MAX_WORD: usize = 24;

/// FNV-1a, 64 bits: stable across builds and machines (the stored
/// classifier depends on it).
pub fn hash(bytes: &[u8]) -> u64 {
    fnv_on(0xcbf2_9ce4_8422_2325, bytes.iter().copied())
}

/// FNV-1a continued from `h` over `bytes`.
fn fnv_on(mut h: u64, bytes: impl Iterator<Item = u8>) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The token [`Tokens::tagged`] adds for `tag` and `value`.
pub fn tagged_hash(tag: &str, value: &str) -> u64 {
    fnv_on(hash(tag.as_bytes()) ^ 0x3a, value.bytes())
}

/// A word's token: `tag`, a space, and the word's (lower-case) bytes.
fn word_hash(tag: &str, lower: impl Iterator<Item = u8>) -> u64 {
    fnv_on(hash(tag.as_bytes()) ^ 0x20, lower)
}

/// Collects the tokens of one message.
#[derive(Debug, Default)]
pub struct Tokens {
    out: Vec<u64>,
}

impl Tokens {
    /// No tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no more fit.
    pub fn full(&self) -> bool {
        self.out.len() >= MAX_TOKENS_PER_MESSAGE
    }

    /// Adds one tagged token (`tag` and `value` hashed together).
    pub fn tagged(&mut self, tag: &str, value: &str) {
        if self.full() {
            return;
        }
        self.out.push(tagged_hash(tag, value));
    }

    /// Adds the words of `text` (and pairs of adjacent words) under `tag`
    /// (empty for the body).
    pub fn text(&mut self, tag: &str, text: &str) {
        let mut prev: Option<u64> = None;
        for raw in text.split(|c: char| !(c.is_alphanumeric() || "$'!-_%".contains(c))) {
            if self.full() {
                return;
            }
            let w = raw.trim_matches(|c: char| "'-_!".contains(c));
            let ascii = w.is_ascii();
            let n = if ascii { w.len() } else { w.chars().count() };
            if n < 2 {
                continue;
            }
            let h = if n > MAX_WORD {
                let first = w.chars().next().unwrap_or('x');
                self.tagged(tag, &format!("skip:{first}{}", n / 10 * 10));
                prev = None;
                continue;
            } else if ascii {
                // The same hash as below without the allocation: an ASCII
                // word's lower case is its ASCII lower case.
                word_hash(tag, w.bytes().map(|b| b.to_ascii_lowercase()))
            } else {
                word_hash(tag, w.to_lowercase().bytes())
            };
            self.out.push(h);
            if let Some(p) = prev {
                // A pair: the two hashes mixed, order kept.
                self.out
                    .push(p.rotate_left(17) ^ h.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            }
            prev = Some(h);
        }
    }

    /// The tokens, deduplicated.
    pub fn finish(mut self) -> Vec<u64> {
        self.out.sort_unstable();
        self.out.dedup();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_pairs_and_bounds() {
        let mut t = Tokens::new();
        t.text("", "Hello World hello");
        let v = t.finish();
        // hello, world, (hello world), (world hello); "hello" twice counts once.
        assert_eq!(v.len(), 4);
        let mut t = Tokens::new();
        t.text("", &"abc ".repeat(100_000));
        assert!(t.finish().len() <= 2);
        let mut t = Tokens::new();
        let many: String = (0..20_000).map(|i| format!("w{i} ")).collect();
        t.text("", &many);
        assert!(t.out.len() <= MAX_TOKENS_PER_MESSAGE + 1);
        let mut t = Tokens::new();
        t.text("s", "Hello");
        let mut u = Tokens::new();
        u.text("", "Hello");
        assert_ne!(t.finish(), u.finish());
    }
}
