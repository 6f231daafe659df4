//! The text SEARCH compares (RFC 9051 6.4.4): header fields with their
//! RFC 2047 encoded words decoded, address fields as display names and
//! addresses, body parts with their transfer encoding undone and their
//! charset converted to UTF-8 (mail-parser does both), all folded with
//! the i;unicode-casemap comparator (RFC 5051): case-folded and
//! decomposed, so "KÖLN", "köln" and "ko\u{308}ln" are one string, and
//! "GRÖSSE" finds "Größe".

use mail_parser::{HeaderValue, Message, MessageParser, PartType};

/// Folds a string for comparison (RFC 5051 i;unicode-casemap, for the
/// scripts mail is mostly written in): full lower-casing, `ß` as `ss`,
/// and the precomposed Latin letters decomposed (NFKD).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        for l in c.to_lowercase() {
            match l {
                'ß' | 'ẞ' => out.push_str("ss"),
                l => match DECOMPOSED.binary_search_by_key(&l, |(k, _)| *k) {
                    Ok(i) => out.push_str(DECOMPOSED[i].1),
                    Err(_) => out.push(l),
                },
            }
        }
    }
    out
}

/// Converts a SEARCH string given under `CHARSET name` to UTF-8: None when
/// the charset is not converted (`NO [BADCHARSET]`). Besides UTF-8 and
/// US-ASCII these are the single-byte charsets (ISO-8859-n, windows-125n,
/// KOI8) and UTF-7/UTF-16; the multi-byte ones (ISO-2022-JP, GBK, Big5)
/// need mail-parser's `full_encoding`, which Postern does not build.
pub fn charset_decoder(name: &str) -> Option<fn(&[u8]) -> String> {
    if name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII") {
        return Some(|b| String::from_utf8_lossy(b).into_owned());
    }
    let lower = name.to_ascii_lowercase();
    let single = [
        "iso-8859-",
        "iso8859-",
        "windows-125",
        "cp125",
        "koi8-",
        "latin",
        "utf-7",
        "utf-16",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    if !single {
        return None;
    }
    mail_parser::decoders::charsets::map::charset_decoder(name.as_bytes())
}

/// One message's searchable text, folded.
#[derive(Debug, Default)]
pub struct SearchText {
    /// (lower-cased field name, folded decoded value), in order.
    headers: Vec<(String, String)>,
    /// The folded text of the body parts (nested messages included).
    body: String,
}

impl SearchText {
    /// Parses `raw` (a whole message, or only its header).
    pub fn of(raw: &[u8]) -> Self {
        let parser = MessageParser::new()
            .with_mime_headers()
            .with_address_headers()
            .default_header_text();
        let mut t = SearchText::default();
        match parser.parse(raw) {
            Some(m) => t.add(&m, true),
            None => t.body = fold(&String::from_utf8_lossy(raw)),
        }
        t
    }

    fn add(&mut self, m: &Message<'_>, top: bool) {
        let raw = m.raw_message();
        for h in m.headers() {
            let value = match &h.value {
                HeaderValue::Address(a) => a
                    .iter()
                    .map(|addr| {
                        let name = addr.name.as_deref().unwrap_or("");
                        let address = addr.address.as_deref().unwrap_or("");
                        format!("{name} <{address}>")
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                HeaderValue::Text(s) => s.to_string(),
                HeaderValue::TextList(v) => v.join(" "),
                _ => {
                    let (a, b) = (h.offset_start as usize, h.offset_end as usize);
                    String::from_utf8_lossy(raw.get(a..b).unwrap_or_default())
                        .trim()
                        .to_owned()
                }
            };
            if top {
                self.headers
                    .push((h.name.as_str().to_ascii_lowercase(), fold(&value)));
            } else {
                // A nested message's header is text of the outer body.
                self.body.push_str(&fold(&value));
                self.body.push('\n');
            }
        }
        for part in &m.parts {
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => {
                    self.body.push_str(&fold(t));
                    self.body.push('\n');
                }
                PartType::Message(inner) => self.add(inner, false),
                _ => {}
            }
        }
    }

    /// Whether field `name` is present and contains `needle` (folded); an
    /// empty needle matches any message that has the field.
    pub fn header_contains(&self, name: &str, needle: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.contains(needle))
    }

    /// Whether the body text contains `needle` (folded).
    pub fn body_contains(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }

    /// Whether the header or the body contains `needle` (folded).
    pub fn text_contains(&self, needle: &str) -> bool {
        self.headers.iter().any(|(_, v)| v.contains(needle)) || self.body_contains(needle)
    }
}

/// Lower-case precomposed Latin letters (U+00C0 to U+024F) and their
/// compatibility decomposition (NFKD), sorted.
const DECOMPOSED: &[(char, &str)] = &[
    ('\u{e0}', "a\u{300}"),
    ('\u{e1}', "a\u{301}"),
    ('\u{e2}', "a\u{302}"),
    ('\u{e3}', "a\u{303}"),
    ('\u{e4}', "a\u{308}"),
    ('\u{e5}', "a\u{30a}"),
    ('\u{e7}', "c\u{327}"),
    ('\u{e8}', "e\u{300}"),
    ('\u{e9}', "e\u{301}"),
    ('\u{ea}', "e\u{302}"),
    ('\u{eb}', "e\u{308}"),
    ('\u{ec}', "i\u{300}"),
    ('\u{ed}', "i\u{301}"),
    ('\u{ee}', "i\u{302}"),
    ('\u{ef}', "i\u{308}"),
    ('\u{f1}', "n\u{303}"),
    ('\u{f2}', "o\u{300}"),
    ('\u{f3}', "o\u{301}"),
    ('\u{f4}', "o\u{302}"),
    ('\u{f5}', "o\u{303}"),
    ('\u{f6}', "o\u{308}"),
    ('\u{f9}', "u\u{300}"),
    ('\u{fa}', "u\u{301}"),
    ('\u{fb}', "u\u{302}"),
    ('\u{fc}', "u\u{308}"),
    ('\u{fd}', "y\u{301}"),
    ('\u{ff}', "y\u{308}"),
    ('\u{101}', "a\u{304}"),
    ('\u{103}', "a\u{306}"),
    ('\u{105}', "a\u{328}"),
    ('\u{107}', "c\u{301}"),
    ('\u{109}', "c\u{302}"),
    ('\u{10b}', "c\u{307}"),
    ('\u{10d}', "c\u{30c}"),
    ('\u{10f}', "d\u{30c}"),
    ('\u{113}', "e\u{304}"),
    ('\u{115}', "e\u{306}"),
    ('\u{117}', "e\u{307}"),
    ('\u{119}', "e\u{328}"),
    ('\u{11b}', "e\u{30c}"),
    ('\u{11d}', "g\u{302}"),
    ('\u{11f}', "g\u{306}"),
    ('\u{121}', "g\u{307}"),
    ('\u{123}', "g\u{327}"),
    ('\u{125}', "h\u{302}"),
    ('\u{129}', "i\u{303}"),
    ('\u{12b}', "i\u{304}"),
    ('\u{12d}', "i\u{306}"),
    ('\u{12f}', "i\u{328}"),
    ('\u{133}', "ij"),
    ('\u{135}', "j\u{302}"),
    ('\u{137}', "k\u{327}"),
    ('\u{13a}', "l\u{301}"),
    ('\u{13c}', "l\u{327}"),
    ('\u{13e}', "l\u{30c}"),
    ('\u{140}', "l\u{b7}"),
    ('\u{144}', "n\u{301}"),
    ('\u{146}', "n\u{327}"),
    ('\u{148}', "n\u{30c}"),
    ('\u{149}', "\u{2bc}n"),
    ('\u{14d}', "o\u{304}"),
    ('\u{14f}', "o\u{306}"),
    ('\u{151}', "o\u{30b}"),
    ('\u{155}', "r\u{301}"),
    ('\u{157}', "r\u{327}"),
    ('\u{159}', "r\u{30c}"),
    ('\u{15b}', "s\u{301}"),
    ('\u{15d}', "s\u{302}"),
    ('\u{15f}', "s\u{327}"),
    ('\u{161}', "s\u{30c}"),
    ('\u{163}', "t\u{327}"),
    ('\u{165}', "t\u{30c}"),
    ('\u{169}', "u\u{303}"),
    ('\u{16b}', "u\u{304}"),
    ('\u{16d}', "u\u{306}"),
    ('\u{16f}', "u\u{30a}"),
    ('\u{171}', "u\u{30b}"),
    ('\u{173}', "u\u{328}"),
    ('\u{175}', "w\u{302}"),
    ('\u{177}', "y\u{302}"),
    ('\u{17a}', "z\u{301}"),
    ('\u{17c}', "z\u{307}"),
    ('\u{17e}', "z\u{30c}"),
    ('\u{17f}', "s"),
    ('\u{1a1}', "o\u{31b}"),
    ('\u{1b0}', "u\u{31b}"),
    ('\u{1c6}', "dz\u{30c}"),
    ('\u{1c9}', "lj"),
    ('\u{1cc}', "nj"),
    ('\u{1ce}', "a\u{30c}"),
    ('\u{1d0}', "i\u{30c}"),
    ('\u{1d2}', "o\u{30c}"),
    ('\u{1d4}', "u\u{30c}"),
    ('\u{1d6}', "u\u{308}\u{304}"),
    ('\u{1d8}', "u\u{308}\u{301}"),
    ('\u{1da}', "u\u{308}\u{30c}"),
    ('\u{1dc}', "u\u{308}\u{300}"),
    ('\u{1df}', "a\u{308}\u{304}"),
    ('\u{1e1}', "a\u{307}\u{304}"),
    ('\u{1e3}', "\u{e6}\u{304}"),
    ('\u{1e7}', "g\u{30c}"),
    ('\u{1e9}', "k\u{30c}"),
    ('\u{1eb}', "o\u{328}"),
    ('\u{1ed}', "o\u{328}\u{304}"),
    ('\u{1ef}', "\u{292}\u{30c}"),
    ('\u{1f0}', "j\u{30c}"),
    ('\u{1f3}', "dz"),
    ('\u{1f5}', "g\u{301}"),
    ('\u{1f9}', "n\u{300}"),
    ('\u{1fb}', "a\u{30a}\u{301}"),
    ('\u{1fd}', "\u{e6}\u{301}"),
    ('\u{1ff}', "\u{f8}\u{301}"),
    ('\u{201}', "a\u{30f}"),
    ('\u{203}', "a\u{311}"),
    ('\u{205}', "e\u{30f}"),
    ('\u{207}', "e\u{311}"),
    ('\u{209}', "i\u{30f}"),
    ('\u{20b}', "i\u{311}"),
    ('\u{20d}', "o\u{30f}"),
    ('\u{20f}', "o\u{311}"),
    ('\u{211}', "r\u{30f}"),
    ('\u{213}', "r\u{311}"),
    ('\u{215}', "u\u{30f}"),
    ('\u{217}', "u\u{311}"),
    ('\u{219}', "s\u{326}"),
    ('\u{21b}', "t\u{326}"),
    ('\u{21f}', "h\u{30c}"),
    ('\u{227}', "a\u{307}"),
    ('\u{229}', "e\u{327}"),
    ('\u{22b}', "o\u{308}\u{304}"),
    ('\u{22d}', "o\u{303}\u{304}"),
    ('\u{22f}', "o\u{307}"),
    ('\u{231}', "o\u{307}\u{304}"),
    ('\u{233}', "y\u{304}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_unicode_casemap() {
        assert_eq!(fold("KÖLN"), fold("köln"));
        assert_eq!(fold("Ko\u{308}ln"), fold("Köln"));
        assert_eq!(fold("GRÖSSE"), fold("Größe"));
        assert_eq!(fold("MÜLLER"), fold("müller"));
        assert!(DECOMPOSED.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn encoded_words_and_transfer_encodings_are_undone() {
        let m = b"From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@example.de>\r\n\
Subject: =?UTF-8?B?R3LDtsOfZSBpbiBLw7ZsbiBtZWV0aW5n?=\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nTreffen in K=F6ln\r\n";
        let t = SearchText::of(m);
        assert!(t.header_contains("subject", &fold("größe")));
        assert!(t.header_contains("subject", &fold("MEETING")));
        assert!(t.header_contains("from", &fold("müller")));
        assert!(t.header_contains("from", "jm@example.de"));
        assert!(t.body_contains(&fold("KÖLN")));
        assert!(!t.body_contains("k=f6ln"));
    }
}
