//! SEARCH keys (RFC 9051 6.4.4, RFC 7162 MODSEQ, RFC 5182 `$`): parsing
//! them from a command's values and evaluating them on a message's
//! metadata and, when a key needs them, its bytes.

use super::event::MessageMeta;
use super::fetch::date;
use super::message::header_value;
use super::parse::Value;
use super::searchtext::{charset_decoder, fold, SearchText};
use super::set::SeqSet;
use std::cell::OnceCell;

/// A search key (RFC 9051 6.4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// ALL.
    All,
    /// A flag is set (or not: `negate`).
    Flag(String, bool),
    /// A key that is always (or never) true.
    Constant(bool),
    /// LARGER n.
    Larger(u64),
    /// SMALLER n.
    Smaller(u64),
    /// UID set.
    Uid(SeqSet),
    /// Sequence set.
    Seq(SeqSet),
    /// A header field contains a string (SUBJECT, FROM, HEADER f s...),
    /// folded (see [`super::searchtext`]).
    Header(String, String),
    /// BODY s, folded.
    Body(String),
    /// TEXT s (header or body), folded.
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
        let text = Lazy {
            raw: body,
            parsed: OnceCell::new(),
        };
        self.eval(m, seq, max_seq, max_uid, &text)
    }

    fn eval(&self, m: &MessageMeta, seq: u32, max_seq: u32, max_uid: u32, t: &Lazy<'_>) -> bool {
        let has = |f: &str| m.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        let body = t.raw;
        match self {
            Key::All => true,
            Key::Flag(f, negate) => has(f) != *negate,
            Key::Constant(b) => *b,
            Key::Larger(n) => m.size > *n,
            Key::Smaller(n) => m.size < *n,
            Key::Uid(s) => s.contains(m.uid, max_uid),
            Key::Seq(s) => s.contains(seq, max_seq),
            Key::Header(name, s) => t.get().is_some_and(|t| t.header_contains(name, s)),
            Key::Body(s) => t.get().is_some_and(|t| t.body_contains(s)),
            Key::Text(s) => t.get().is_some_and(|t| t.text_contains(s)),
            Key::Date(ord, day, or_equal) => {
                let d = m.internal_date.div_euclid(86_400);
                d.cmp(day) == *ord || (*or_equal && d == *day)
            }
            Key::Not(k) => !k.eval(m, seq, max_seq, max_uid, t),
            Key::Or(a, b) => {
                a.eval(m, seq, max_seq, max_uid, t) || b.eval(m, seq, max_seq, max_uid, t)
            }
            Key::And(v) => v.iter().all(|k| k.eval(m, seq, max_seq, max_uid, t)),
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

/// A message's bytes and, once a key asks, their searchable text.
struct Lazy<'a> {
    raw: Option<&'a [u8]>,
    parsed: OnceCell<SearchText>,
}

impl Lazy<'_> {
    fn get(&self) -> Option<&SearchText> {
        let raw = self.raw?;
        Some(self.parsed.get_or_init(|| SearchText::of(raw)))
    }
}

/// How a SEARCH string argument becomes UTF-8 (the `CHARSET`).
type Decode = fn(&[u8]) -> String;

/// The most keys in one SEARCH.
const MAX_KEYS: usize = 256;

/// Why SEARCH arguments were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchError {
    /// A CHARSET the server cannot convert: `NO [BADCHARSET]`
    /// (RFC 9051 6.4.4), not a BAD.
    BadCharset,
    /// Malformed keys: `BAD` with this text.
    Syntax(&'static str),
}

/// Parses SEARCH arguments (an optional `CHARSET name` first: UTF-8,
/// US-ASCII, or any charset mail-parser converts, the strings' bytes
/// converted to UTF-8 with it).
pub fn parse_search(args: &[Value<'_>]) -> Result<Key, SearchError> {
    let mut args = args;
    let mut decode: Option<Decode> = None;
    if let Some(Value::Atom(a)) = args.first() {
        if a.eq_ignore_ascii_case("CHARSET") {
            let cs = args
                .get(1)
                .and_then(Value::as_astring)
                .ok_or(SearchError::Syntax("CHARSET needs a name"))?;
            decode = Some(charset_decoder(&cs).ok_or(SearchError::BadCharset)?);
            args = &args[2..];
        }
    }
    let mut i = 0;
    let mut count = 0;
    let mut keys = Vec::new();
    while i < args.len() {
        keys.push(key(args, &mut i, &mut count, decode).map_err(SearchError::Syntax)?);
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

fn key(
    args: &[Value<'_>],
    i: &mut usize,
    count: &mut usize,
    decode: Option<Decode>,
) -> Result<Key, &'static str> {
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
    // A string compared with message text: in the CHARSET, folded.
    let text = |i: &mut usize| -> Result<String, &'static str> {
        let v = args.get(*i).ok_or("search key needs an argument")?;
        let s = match (v, decode) {
            (Value::Literal(b), Some(d)) => d(b),
            (Value::Quoted(q), _) => q.to_string(),
            _ => v
                .as_astring()
                .ok_or("search key needs an argument")?
                .into_owned(),
        };
        *i += 1;
        Ok(fold(&s))
    };
    let a = match v {
        Value::List(items) => {
            let mut j = 0;
            let mut ks = Vec::new();
            while j < items.len() {
                ks.push(key(items, &mut j, count, decode)?);
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
        // `\Recent` is the session's (RFC 3501 2.3.2): the session puts
        // it among a message's flags before the key looks.
        "RECENT" => flag("\\Recent", false),
        "OLD" => flag("\\Recent", true),
        "NEW" => Ok(Key::And(vec![
            Key::Flag("\\Recent".into(), false),
            Key::Flag("\\Seen".into(), true),
        ])),
        "LARGER" => Ok(Key::Larger(arg(i)?.parse().map_err(|_| "bad number")?)),
        "SMALLER" => Ok(Key::Smaller(arg(i)?.parse().map_err(|_| "bad number")?)),
        "UID" => match arg(i)?.as_str() {
            "$" => Ok(Key::Saved),
            set => Ok(Key::Uid(SeqSet::parse(set).ok_or("bad UID set")?)),
        },
        "$" => Ok(Key::Saved),
        "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => Ok(Key::Header(a.clone(), text(i)?)),
        "HEADER" => {
            let f = arg(i)?;
            Ok(Key::Header(f, text(i)?))
        }
        "BODY" => Ok(Key::Body(text(i)?)),
        "TEXT" => Ok(Key::Text(text(i)?)),
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
        "NOT" => Ok(Key::Not(Box::new(key(args, i, count, decode)?))),
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
            let a = key(args, i, count, decode)?;
            let b = key(args, i, count, decode)?;
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
