//! Flags in Maildir file names (`:2,FRS` and keyword letters `a`..`z`)
//! and the keywords file `dovecot-keywords` that names the letters.

use super::files::write_atomic;
use postern_core::imap::rules;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

/// `\Seen` etc. to Maildir letters and back (keywords apart), in the
/// order of [`rules::SYSTEM_FLAGS`].
pub const FLAG_LETTERS: [(char, &str); 6] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('P', "$Forwarded"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

pub(super) fn split_name(name: &str) -> (usize, &str) {
    match name.find(":2,") {
        Some(i) => (i, &name[i + 3..]),
        None => (name.len(), ""),
    }
}

/// `dovecot-keywords`: `<index> <keyword>` lines; index 0 is letter `a`.
/// An error when the file is there but cannot be read now: a table read
/// as empty would hand the letters of existing keywords to new ones.
pub(super) fn read_keywords(dir: &Path) -> io::Result<Vec<String>> {
    let mut out: BTreeMap<usize, String> = BTreeMap::new();
    let text = match fs::read(dir.join("dovecot-keywords")) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(t) = text {
        for l in t.lines() {
            if let Some((i, k)) = l.split_once(' ') {
                if let Ok(i) = i.parse::<usize>() {
                    if i < 26 {
                        out.insert(i, k.to_owned());
                    }
                }
            }
        }
    }
    let n = out.keys().next_back().map_or(0, |m| m + 1);
    Ok((0..n)
        .map(|i| out.get(&i).cloned().unwrap_or_default())
        .collect())
}

pub(super) fn write_keywords(dir: &Path, keywords: &[String]) -> io::Result<()> {
    if keywords.is_empty() {
        return Ok(());
    }
    let text: String = keywords
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect();
    if fs::read_to_string(dir.join("dovecot-keywords"))
        .ok()
        .as_deref()
        == Some(text.as_str())
    {
        return Ok(());
    }
    write_atomic(&dir.join("dovecot-keywords"), text.as_bytes())
}

/// The `:2,` info letters for flags (keywords get letters, added as needed).
pub(super) fn flag_info(flags: &[String], keywords: &mut Vec<String>) -> String {
    // The letters sort in the canonical flag order of the IMAP rules.
    let mut letters: Vec<char> = flags
        .iter()
        .filter_map(|f| rules::flag_rank(f, keywords))
        .filter_map(|r| match FLAG_LETTERS.get(r) {
            Some((c, _)) => Some(*c),
            None => u8::try_from(r - FLAG_LETTERS.len())
                .ok()
                .filter(|i| usize::from(*i) < rules::MAX_KEYWORDS)
                .map(|i| char::from(b'a' + i)),
        })
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

pub(super) fn parse_info(info: &str, keywords: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    for c in info.chars() {
        if let Some((_, n)) = FLAG_LETTERS.iter().find(|(l, _)| *l == c) {
            flags.push((*n).to_owned());
        } else if c.is_ascii_lowercase() {
            if let Some(k) = keywords
                .get((c as u8 - b'a') as usize)
                .filter(|k| !k.is_empty())
            {
                flags.push(k.clone());
            }
        }
    }
    // IMAP order: system flags first, as written above.
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_follow_the_rules_order() {
        let names: Vec<&str> = FLAG_LETTERS.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, rules::SYSTEM_FLAGS);
        let mut kw = vec![String::new(), "$B".to_owned()];
        let flags: Vec<String> = ["$A", "\\seen", "$B", "\\Draft", "\\X"]
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        let info = flag_info(&flags, &mut kw);
        assert_eq!(info, "DSbc");
        assert_eq!(
            parse_info(&info, &kw),
            rules::canonical_flags(&flags, &mut kw.clone())
        );
    }
}
