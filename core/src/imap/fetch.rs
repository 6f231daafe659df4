//! FETCH items and SEARCH keys: parsing them from a command's values and
//! evaluating them on a message (pure functions over bytes and metadata).

use super::event::MessageMeta;
use super::parse::Value;
use super::set::SeqSet;
use crate::datetime::civil_from_days;

/// A body section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Section {
    /// `BODY[]`: the whole message.
    Full,
    /// `BODY[HEADER]`.
    Header,
    /// `BODY[TEXT]`.
    Text,
    /// `BODY[1.2]`, `BODY[1.MIME]`, `BODY[2.HEADER]`, `BODY[2.TEXT]`.
    Part(Vec<u32>, super::mime::PartSpec),
    /// `BODY[HEADER.FIELDS (A B)]` (or `.NOT`).
    Fields {
        /// Field names, upper-cased.
        names: Vec<String>,
        /// `.NOT`: all but these.
        not: bool,
    },
}

/// One FETCH item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// FLAGS.
    Flags,
    /// UID.
    Uid,
    /// RFC822.SIZE.
    Size,
    /// INTERNALDATE.
    InternalDate,
    /// ENVELOPE.
    Envelope,
    /// BODYSTRUCTURE (true) or BODY without a section (false).
    Structure(bool),
    /// MODSEQ (RFC 7162).
    Modseq,
    /// BINARY[part]<partial> / BINARY.PEEK (RFC 3516): the part with its
    /// Content-Transfer-Encoding undone.
    Binary {
        /// The part's numbers (empty: the whole message).
        path: Vec<u32>,
        /// `<offset.length>` of the decoded bytes.
        partial: Option<(u64, u64)>,
        /// BINARY.PEEK: do not set \Seen.
        peek: bool,
        /// How the response names it.
        label: String,
    },
    /// BINARY.SIZE[part]: the decoded size.
    BinarySize {
        /// The part's numbers.
        path: Vec<u32>,
        /// How the response names it.
        label: String,
    },
    /// BODY[...] / BODY.PEEK[...] / RFC822 / RFC822.HEADER / RFC822.TEXT.
    Body {
        /// Which part.
        section: Section,
        /// `<offset.length>`.
        partial: Option<(u64, u64)>,
        /// BODY.PEEK and RFC822.HEADER: do not set \Seen.
        peek: bool,
        /// How the response names it.
        label: String,
    },
}

impl Item {
    /// Whether the item needs the message bytes (or its summary).
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Item::Body { .. }
                | Item::Envelope
                | Item::Structure(_)
                | Item::Binary { .. }
                | Item::BinarySize { .. }
        )
    }

    /// Whether the item needs the message bytes themselves: ENVELOPE
    /// and BODYSTRUCTURE come from the store's cached summary.
    pub fn needs_bytes(&self) -> bool {
        matches!(
            self,
            Item::Body { .. } | Item::Binary { .. } | Item::BinarySize { .. }
        )
    }

    /// Whether the item needs no more than the header.
    pub fn header_only(&self) -> bool {
        matches!(
            self,
            Item::Body {
                section: Section::Header | Section::Fields { .. },
                ..
            }
        )
    }
}

/// Parses the FETCH item argument (an atom, a macro, or a list).
pub fn parse_items(v: &Value<'_>) -> Result<Vec<Item>, &'static str> {
    match v {
        Value::Atom(a) => match a.to_ascii_uppercase().as_str() {
            "ALL" => Ok(vec![
                Item::Flags,
                Item::InternalDate,
                Item::Size,
                Item::Envelope,
            ]),
            "FAST" => Ok(vec![Item::Flags, Item::InternalDate, Item::Size]),
            "FULL" => Ok(vec![
                Item::Flags,
                Item::InternalDate,
                Item::Size,
                Item::Envelope,
                Item::Structure(false),
            ]),
            _ => Ok(vec![parse_item(a)?]),
        },
        Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Atom(a) => parse_item(a),
                _ => Err("bad fetch item"),
            })
            .collect(),
        _ => Err("bad fetch item"),
    }
}

fn parse_item(a: &str) -> Result<Item, &'static str> {
    let up = a.to_ascii_uppercase();
    match up.as_str() {
        "FLAGS" => return Ok(Item::Flags),
        "UID" => return Ok(Item::Uid),
        "RFC822.SIZE" => return Ok(Item::Size),
        "INTERNALDATE" => return Ok(Item::InternalDate),
        "RFC822" => return Ok(body(Section::Full, None, false, "RFC822")),
        "RFC822.HEADER" => return Ok(body(Section::Header, None, true, "RFC822.HEADER")),
        "RFC822.TEXT" => return Ok(body(Section::Text, None, false, "RFC822.TEXT")),
        "ENVELOPE" => return Ok(Item::Envelope),
        "BODYSTRUCTURE" => return Ok(Item::Structure(true)),
        "BODY" => return Ok(Item::Structure(false)),
        "MODSEQ" => return Ok(Item::Modseq),
        _ => {}
    }
    if up.starts_with("BINARY") {
        return parse_binary(a, &up);
    }
    let (peek, rest) = if let Some(r) = up.strip_prefix("BODY.PEEK[") {
        (true, r)
    } else if let Some(r) = up.strip_prefix("BODY[") {
        (false, r)
    } else {
        return Err("unknown fetch item");
    };
    let close = rest.rfind(']').ok_or("bad section")?;
    let (spec, tail) = (&rest[..close], &rest[close + 1..]);
    let section = match spec {
        "" => Section::Full,
        "HEADER" => Section::Header,
        "TEXT" => Section::Text,
        s if s.starts_with("HEADER.FIELDS") => {
            let (not, list) = match s.strip_prefix("HEADER.FIELDS.NOT") {
                Some(l) => (true, l),
                None => (false, &s["HEADER.FIELDS".len()..]),
            };
            let list = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or("bad header field list")?;
            let names: Vec<String> = list
                .split_whitespace()
                .map(|n| n.trim_matches('"').to_owned())
                .collect();
            if names.is_empty() {
                return Err("empty header field list");
            }
            Section::Fields { names, not }
        }
        s => part_section(s)?,
    };
    let partial = parse_partial(tail)?;
    // The label keeps the client's spelling of the section, without PEEK
    // and without the partial's length (RFC 9051 7.5.2).
    let shown = a.find('[').map_or("", |i| &a[i..i + 1 + close + 1]);
    let label = match partial {
        Some((o, _)) => format!("BODY{shown}<{o}>"),
        None => format!("BODY{shown}"),
    };
    Ok(body(section, partial, peek, &label))
}

/// `<offset.length>` after a section, or nothing.
fn parse_partial(tail: &str) -> Result<Option<(u64, u64)>, &'static str> {
    if tail.is_empty() {
        return Ok(None);
    }
    let p = tail
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .ok_or("bad partial")?;
    let (o, l) = p.split_once('.').ok_or("bad partial")?;
    Ok(Some((
        o.parse().map_err(|_| "bad partial")?,
        l.parse().map_err(|_| "bad partial")?,
    )))
}

/// BINARY[1.2]<0.100>, BINARY.PEEK[...], BINARY.SIZE[...] (RFC 3516:
/// the section is part numbers only).
fn parse_binary(a: &str, up: &str) -> Result<Item, &'static str> {
    let (kind, rest) = if let Some(r) = up.strip_prefix("BINARY.SIZE[") {
        ("SIZE", r)
    } else if let Some(r) = up.strip_prefix("BINARY.PEEK[") {
        ("PEEK", r)
    } else if let Some(r) = up.strip_prefix("BINARY[") {
        ("", r)
    } else {
        return Err("unknown fetch item");
    };
    let close = rest.find(']').ok_or("bad section")?;
    let (spec, tail) = (&rest[..close], &rest[close + 1..]);
    let mut path = Vec::new();
    if !spec.is_empty() {
        for n in spec.split('.') {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| *n > 0 && path.len() < super::limits::MAX_SECTION_PATH)
                .ok_or("bad binary section")?;
            path.push(n);
        }
    }
    let _ = a;
    if kind == "SIZE" {
        if !tail.is_empty() {
            return Err("bad binary section");
        }
        return Ok(Item::BinarySize {
            path,
            label: format!("BINARY.SIZE[{spec}]"),
        });
    }
    let partial = parse_partial(tail)?;
    let label = match partial {
        Some((o, _)) => format!("BINARY[{spec}]<{o}>"),
        None => format!("BINARY[{spec}]"),
    };
    Ok(Item::Binary {
        path,
        partial,
        peek: kind == "PEEK",
        label,
    })
}

/// `1.2`, `1.2.MIME`, `2.HEADER`, `2.TEXT`.
fn part_section(s: &str) -> Result<Section, &'static str> {
    use super::mime::PartSpec;
    let mut nums = Vec::new();
    let mut spec = PartSpec::Body;
    for (i, w) in s.split('.').enumerate() {
        match w {
            "MIME" if i > 0 => spec = PartSpec::Mime,
            "HEADER" if i > 0 => spec = PartSpec::Header,
            "TEXT" if i > 0 => spec = PartSpec::Text,
            n if spec == PartSpec::Body
                && !n.is_empty()
                && n.len() <= 5
                && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let n: u32 = n.parse().map_err(|_| "bad section")?;
                if n == 0 {
                    return Err("bad section");
                }
                nums.push(n);
            }
            _ => return Err("bad section"),
        }
        if nums.len() > super::limits::MAX_SECTION_PATH {
            return Err("section too deep");
        }
    }
    if nums.is_empty() {
        return Err("bad section");
    }
    Ok(Section::Part(nums, spec))
}

fn body(section: Section, partial: Option<(u64, u64)>, peek: bool, label: &str) -> Item {
    Item::Body {
        section,
        partial,
        peek,
        label: label.to_owned(),
    }
}

/// Where the header ends (after its blank line).
pub fn header_len(msg: &[u8]) -> usize {
    match memchr::memmem::find(msg, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => msg.len(),
    }
}

/// The bytes of a section.
pub fn section_bytes(msg: &[u8], section: &Section) -> Vec<u8> {
    let h = header_len(msg);
    match section {
        Section::Full => msg.to_vec(),
        Section::Header => msg[..h].to_vec(),
        Section::Text => msg[h..].to_vec(),
        Section::Part(path, spec) => super::mime::part_bytes(msg, path, *spec).unwrap_or_default(),
        Section::Fields { names, not } => {
            let mut out = Vec::new();
            for field in header_fields(&msg[..h]) {
                let name = field.split(|&b| b == b':').next().unwrap_or(b"");
                let name = String::from_utf8_lossy(name).trim().to_ascii_uppercase();
                if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) != *not {
                    out.extend_from_slice(field);
                }
            }
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

/// The header's fields, each with its continuation lines and CRLF.
pub fn header_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = memchr::memchr(b'\n', &header[i..]).map_or(header.len(), |p| i + p + 1);
        let next = header.get(end).copied();
        if next != Some(b' ') && next != Some(b'\t') {
            if end > start && &header[start..end] != b"\r\n" {
                fields.push(&header[start..end]);
            }
            start = end;
        }
        i = end;
    }
    fields
}

/// The unfolded value of the first header field `name`.
pub fn header_value(msg: &[u8], name: &str) -> Option<String> {
    let h = header_len(msg);
    header_fields(&msg[..h]).into_iter().find_map(|f| {
        let (n, v) = f.split_at(f.iter().position(|&b| b == b':')?);
        (String::from_utf8_lossy(n).trim().eq_ignore_ascii_case(name)).then(|| {
            String::from_utf8_lossy(&v[1..])
                .replace("\r\n", "")
                .trim()
                .to_owned()
        })
    })
}

/// INTERNALDATE as IMAP writes it: `"25-Nov-2026 06:38:06 +0000"`.
pub fn internal_date(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "\"{d:02}-{}-{y} {:02}:{:02}:{:02} +0000\"",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

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

/// Parses SEARCH arguments (an optional `CHARSET UTF-8`/`US-ASCII` first).
pub fn parse_search(args: &[Value<'_>]) -> Result<Key, &'static str> {
    let mut args = args;
    if let Some(Value::Atom(a)) = args.first() {
        if a.eq_ignore_ascii_case("CHARSET") {
            let cs = args
                .get(1)
                .and_then(Value::as_astring)
                .ok_or("CHARSET needs a name")?;
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                return Err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset");
            }
            args = &args[2..];
        }
    }
    let mut i = 0;
    let mut count = 0;
    let mut keys = Vec::new();
    while i < args.len() {
        keys.push(key(args, &mut i, &mut count)?);
    }
    if keys.is_empty() {
        return Err("SEARCH needs a key");
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

/// APPEND's date-time, `25-Nov-2026 06:38:06 +0000` (the day may have a
/// leading space), as Unix seconds.
pub fn parse_date_time(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (day, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let days = date(day).ok()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    let [h, m, sec] = t.as_slice() else {
        return None;
    };
    if *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let (sign, z) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if z.len() != 4 || !z.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zh: i64 = z[..2].parse().ok()?;
    let zm: i64 = z[2..].parse().ok()?;
    let offset = sign * (zh * 3600 + zm * 60);
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// `25-Nov-2026` as a day number since 1970.
fn date(s: &str) -> Result<i64, &'static str> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let mut p = s.split('-');
    let (Some(d), Some(m), Some(y), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return Err("bad date");
    };
    let d: i64 = d.parse().map_err(|_| "bad date")?;
    let y: i64 = y.parse().map_err(|_| "bad date")?;
    let m = MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .ok_or("bad date")? as i64
        + 1;
    if !(1..=31).contains(&d) || !(1900..=9999).contains(&y) {
        return Err("bad date");
    }
    // Days from civil (inverse of civil_from_days).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_sections() {
        let items = parse_items(&Value::Atom(
            "BODY.PEEK[HEADER.FIELDS (Subject From)]<0.10>",
        ))
        .unwrap();
        match &items[0] {
            Item::Body {
                section: Section::Fields { names, not: false },
                partial: Some((0, 10)),
                peek: true,
                label,
            } => {
                assert_eq!(names, &["SUBJECT", "FROM"]);
                assert_eq!(label, "BODY[HEADER.FIELDS (Subject From)]<0>");
            }
            other => panic!("{other:?}"),
        }
        let msg = b"Subject: hi\r\nX-A: 1\r\n 2\r\nFrom: a@b\r\n\r\nbody\r\n";
        assert_eq!(
            section_bytes(
                msg,
                &Section::Fields {
                    names: vec!["X-A".into()],
                    not: false
                }
            ),
            b"X-A: 1\r\n 2\r\n\r\n"
        );
        assert_eq!(section_bytes(msg, &Section::Text), b"body\r\n");
        assert_eq!(header_value(msg, "x-a").as_deref(), Some("1 2"));
    }

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
        assert_eq!(date("25-Nov-2026"), Ok(1_795_588_686 / 86_400));
        assert_eq!(date("1-Jan-1970"), Ok(0));
        assert_eq!(
            parse_date_time("25-Nov-2026 06:38:06 +0000"),
            Some(1_795_588_686)
        );
        assert_eq!(
            parse_date_time(" 5-Nov-2026 08:38:06 +0200"),
            Some(1_795_588_686 - 20 * 86_400)
        );
        assert_eq!(parse_date_time("25-Nov-2026 6:38:06 +0000"), None);
        assert_eq!(parse_date_time("25-Nov-2026 06:38:06 UTC"), None);
        assert_eq!(
            internal_date(1_795_588_686),
            "\"25-Nov-2026 06:38:06 +0000\""
        );
    }
}
