//! SEARCH keys (RFC 9051 6.4.4, RFC 7162 MODSEQ, RFC 5182 `$`): parsing
//! them from a command's values and evaluating them on a message's
//! metadata and, when a key needs them, its bytes.

use super::event::MessageMeta;
use super::fetch::date;
use super::message::{header_len, header_value};
use super::parse::Value;
use super::set::SeqSet;

/// A search key (RFC 9051 6.4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// ALL.
    All,
    /// A flag is set (or not: `negate`).
    Flag(String, bool),
    /// `NEW` (recent and unseen: never here), `OLD`, `RECENT` are all-or-nothing.
    Constant(bool),
    /// LARGER n.
    Larger(u64),
    /// SMALLER n.
    Smaller(u64),
    /// UID set.
    Uid(SeqSet),
    /// Sequence set.
    Seq(SeqSet),
    /// A header field contains a string (SUBJECT, FROM, HEADER f s...).
    Header(String, String),
    /// BODY s.
    Body(String),
    /// TEXT s (header or body).
    Text(String),
    /// SINCE / BEFORE / ON, on the internal date (day numbers).
    Date(std::cmp::Ordering, i64, bool),
    /// NOT.
    Not(Box<Key>),
    /// OR.
    Or(Box<Key>, Box<Key>),
    /// A parenthesised conjunction.
    And(Vec<Key>),
    /// MODSEQ n (RFC 7162): changed at or after n.
    Modseq(u64),
    /// `$` (RFC 5182 SEARCHRES): the last saved search result; the
    /// session replaces it with the UIDs it saved.
    Saved,
    /// SENTSINCE / SENTBEFORE / SENTON, on the Date header field's day
    /// (in its own zone, as RFC 9051 6.4.4 says to disregard the zone).
    SentDate(std::cmp::Ordering, i64, bool),
}

impl Key {
    /// Puts the saved search result (`$`) in place, as UIDs.
    pub fn resolve_saved(&mut self, saved: &[u32]) {
        match self {
            Key::Saved => *self = Key::Uid(SeqSet::from_numbers(saved)),
            Key::Not(k) => k.resolve_saved(saved),
            Key::Or(a, b) => {
                a.resolve_saved(saved);
                b.resolve_saved(saved);
            }
            Key::And(v) => v.iter_mut().for_each(|k| k.resolve_saved(saved)),
            _ => {}
        }
    }

    /// Whether the key uses mod-sequences (it enables CONDSTORE).
    pub fn uses_modseq(&self) -> bool {
        match self {
            Key::Modseq(_) => true,
            Key::Not(k) => k.uses_modseq(),
            Key::Or(a, b) => a.uses_modseq() || b.uses_modseq(),
            Key::And(v) => v.iter().any(Key::uses_modseq),
            _ => false,
        }
    }

    /// Whether the key needs more than the header (BODY, TEXT).
    pub fn needs_text(&self) -> bool {
        match self {
            Key::Body(_) | Key::Text(_) => true,
            Key::Not(k) => k.needs_text(),
            Key::Or(a, b) => a.needs_text() || b.needs_text(),
            Key::And(v) => v.iter().any(Key::needs_text),
            _ => false,
        }
    }

    /// Whether the key needs message bytes.
    pub fn needs_body(&self) -> bool {
        match self {
            Key::Header(..) | Key::Body(_) | Key::Text(_) | Key::SentDate(..) => true,
            Key::Not(k) => k.needs_body(),
            Key::Or(a, b) => a.needs_body() || b.needs_body(),
            Key::And(v) => v.iter().any(Key::needs_body),
            _ => false,
        }
    }

    /// Evaluates the key on one message (`seq` 1-based, `max_*` for `*`).
    pub fn matches(
        &self,
        m: &MessageMeta,
        seq: u32,
        max_seq: u32,
        max_uid: u32,
        body: Option<&[u8]>,
    ) -> bool {
        let has = |f: &str| m.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        let contains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        match self {
            Key::All => true,
            Key::Flag(f, negate) => has(f) != *negate,
            Key::Constant(b) => *b,
            Key::Larger(n) => m.size > *n,
            Key::Smaller(n) => m.size < *n,
            Key::Uid(s) => s.contains(m.uid, max_uid),
            Key::Seq(s) => s.contains(seq, max_seq),
            Key::Header(name, s) => body
                .and_then(|b| header_value(b, name))
                .is_some_and(|v| s.is_empty() || contains(&v, s)),
            Key::Body(s) => {
                body.is_some_and(|b| contains(&String::from_utf8_lossy(&b[header_len(b)..]), s))
            }
            Key::Text(s) => body.is_some_and(|b| contains(&String::from_utf8_lossy(b), s)),
            Key::Date(ord, day, or_equal) => {
                let d = m.internal_date.div_euclid(86_400);
                d.cmp(day) == *ord || (*or_equal && d == *day)
            }
            Key::Not(k) => !k.matches(m, seq, max_seq, max_uid, body),
            Key::Or(a, b) => {
                a.matches(m, seq, max_seq, max_uid, body)
                    || b.matches(m, seq, max_seq, max_uid, body)
            }
            Key::And(v) => v.iter().all(|k| k.matches(m, seq, max_seq, max_uid, body)),
            Key::Modseq(n) => m.modseq >= *n,
            Key::Saved => false,
            Key::SentDate(ord, day, or_equal) => body
                .and_then(|b| header_value(b, "Date"))
                .and_then(|v| mail_parser::DateTime::parse_rfc822(v.trim()))
                .is_some_and(|d| {
                    // The calendar day as written, zone disregarded.
                    let local = d.to_timestamp_local();
                    let day_of = local.div_euclid(86_400);
                    day_of.cmp(day) == *ord || (*or_equal && day_of == *day)
                }),
        }
    }
}

/// The most keys in one SEARCH.
const MAX_KEYS: usize = 256;

/// Why SEARCH arguments were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchError {
    /// A CHARSET other than UTF-8 and US-ASCII: `NO [BADCHARSET]`
    /// (RFC 9051 6.4.4), not a BAD.
    BadCharset,
    /// Malformed keys: `BAD` with this text.
    Syntax(&'static str),
}

/// Parses SEARCH arguments (an optional `CHARSET UTF-8`/`US-ASCII` first).
pub fn parse_search(args: &[Value<'_>]) -> Result<Key, SearchError> {
    let mut args = args;
    if let Some(Value::Atom(a)) = args.first() {
        if a.eq_ignore_ascii_case("CHARSET") {
            let cs = args
                .get(1)
                .and_then(Value::as_astring)
                .ok_or(SearchError::Syntax("CHARSET needs a name"))?;
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                return Err(SearchError::BadCharset);
            }
            args = &args[2..];
        }
    }
    let mut i = 0;
    let mut count = 0;
    let mut keys = Vec::new();
    while i < args.len() {
        keys.push(key(args, &mut i, &mut count).map_err(SearchError::Syntax)?);
    }
    if keys.is_empty() {
        return Err(SearchError::Syntax("SEARCH needs a key"));
    }
    Ok(if keys.len() == 1 {
        keys.remove(0)
    } else {
        Key::And(keys)
    })
}

fn key(args: &[Value<'_>], i: &mut usize, count: &mut usize) -> Result<Key, &'static str> {
    *count += 1;
    if *count > MAX_KEYS {
        return Err("too many search keys");
    }
    let v = args.get(*i).ok_or("missing search key")?;
    *i += 1;
    let arg = |i: &mut usize| -> Result<String, &'static str> {
        let a = args
            .get(*i)
            .and_then(Value::as_astring)
            .ok_or("search key needs an argument")?;
        *i += 1;
        Ok(a.into_owned())
    };
    let a = match v {
        Value::List(items) => {
            let mut j = 0;
            let mut ks = Vec::new();
            while j < items.len() {
                ks.push(key(items, &mut j, count)?);
            }
            return Ok(Key::And(ks));
        }
        Value::Atom(a) => a.to_ascii_uppercase(),
        _ => return Err("bad search key"),
    };
    let flag = |f: &str, negate| Ok(Key::Flag(f.to_owned(), negate));
    match a.as_str() {
        "ALL" => Ok(Key::All),
        "SEEN" => flag("\\Seen", false),
        "UNSEEN" => flag("\\Seen", true),
        "DELETED" => flag("\\Deleted", false),
        "UNDELETED" => flag("\\Deleted", true),
        "FLAGGED" => flag("\\Flagged", false),
        "UNFLAGGED" => flag("\\Flagged", true),
        "ANSWERED" => flag("\\Answered", false),
        "UNANSWERED" => flag("\\Answered", true),
        "DRAFT" => flag("\\Draft", false),
        "UNDRAFT" => flag("\\Draft", true),
        "KEYWORD" => Ok(Key::Flag(arg(i)?, false)),
        "UNKEYWORD" => Ok(Key::Flag(arg(i)?, true)),
        "NEW" | "RECENT" => Ok(Key::Constant(false)),
        "OLD" => Ok(Key::Constant(true)),
        "LARGER" => Ok(Key::Larger(arg(i)?.parse().map_err(|_| "bad number")?)),
        "SMALLER" => Ok(Key::Smaller(arg(i)?.parse().map_err(|_| "bad number")?)),
        "UID" => match arg(i)?.as_str() {
            "$" => Ok(Key::Saved),
            set => Ok(Key::Uid(SeqSet::parse(set).ok_or("bad UID set")?)),
        },
        "$" => Ok(Key::Saved),
        "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => Ok(Key::Header(a.clone(), arg(i)?)),
        "HEADER" => {
            let f = arg(i)?;
            Ok(Key::Header(f, arg(i)?))
        }
        "BODY" => Ok(Key::Body(arg(i)?)),
        "TEXT" => Ok(Key::Text(arg(i)?)),
        "SINCE" => Ok(Key::Date(
            std::cmp::Ordering::Greater,
            date(&arg(i)?)?,
            true,
        )),
        "BEFORE" => Ok(Key::Date(std::cmp::Ordering::Less, date(&arg(i)?)?, false)),
        "ON" => Ok(Key::Date(std::cmp::Ordering::Equal, date(&arg(i)?)?, false)),
        "SENTSINCE" => Ok(Key::SentDate(
            std::cmp::Ordering::Greater,
            date(&arg(i)?)?,
            true,
        )),
        "SENTBEFORE" => Ok(Key::SentDate(
            std::cmp::Ordering::Less,
            date(&arg(i)?)?,
            false,
        )),
        "SENTON" => Ok(Key::SentDate(
            std::cmp::Ordering::Equal,
            date(&arg(i)?)?,
            false,
        )),
        "NOT" => Ok(Key::Not(Box::new(key(args, i, count)?))),
        "MODSEQ" => {
            // MODSEQ [entry-name entry-type-req] mod-sequence-valzer
            let mut n = arg(i)?;
            if n.starts_with('/') {
                let _ = arg(i)?;
                n = arg(i)?;
            }
            Ok(Key::Modseq(n.parse().map_err(|_| "bad mod-sequence")?))
        }
        "OR" => {
            let a = key(args, i, count)?;
            let b = key(args, i, count)?;
            Ok(Key::Or(Box::new(a), Box::new(b)))
        }
        s if SeqSet::parse(s).is_some() => Ok(Key::Seq(SeqSet::parse(s).ok_or("bad set")?)),
        _ => Err("unknown search key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search() {
        let k = parse_search(&[
            Value::Atom("UNSEEN"),
            Value::Atom("SUBJECT"),
            Value::Atom("marker"),
        ])
        .unwrap();
        let m = MessageMeta {
            uid: 5,
            flags: vec![],
            size: 10,
            internal_date: 0,
            modseq: 7,
        };
        assert!(k.needs_body());
        let sent = parse_search(&[Value::Atom("SENTON"), Value::Atom("25-Nov-2026")]).unwrap();
        let dated = b"Date: Wed, 25 Nov 2026 23:30:00 -0500\r\n\r\n";
        assert!(sent.matches(&m, 1, 1, 5, Some(dated)));
        assert!(!sent.matches(
            &m,
            1,
            1,
            5,
            Some(b"Date: Thu, 26 Nov 2026 00:30:00 +0000\r\n\r\n")
        ));
        let ms = parse_search(&[Value::Atom("MODSEQ"), Value::Atom("7")]).unwrap();
        assert!(ms.uses_modseq() && ms.matches(&m, 1, 1, 5, None));
        let ms = parse_search(&[Value::Atom("MODSEQ"), Value::Atom("8")]).unwrap();
        assert!(!ms.matches(&m, 1, 1, 5, None));
        assert!(k.matches(&m, 1, 1, 5, Some(b"Subject: the MARKER x\r\n\r\n")));
        assert!(!k.matches(&m, 1, 1, 5, Some(b"Subject: nope\r\n\r\n")));
    }
}
