//! FETCH items (RFC 9051 6.4.5, RFC 3516): parsing them from a command's
//! values and cutting a message's bytes into sections; the date-time forms
//! INTERNALDATE and APPEND use.

pub use super::message::{header_fields, header_len, header_value};
use super::parse::Value;
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
    /// `BODY[HEADER.FIELDS (A B)]` (or `.NOT`), or `BODY[2.HEADER.FIELDS
    /// (A B)]` of the message/rfc822 part at `path`.
    Fields {
        /// The message/rfc822 part's numbers (empty: the message itself).
        path: Vec<u32>,
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
    /// `BINARY[part]<partial>` / `BINARY.PEEK` (RFC 3516): the part with its
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
    /// `BINARY.SIZE[part]`: the decoded size.
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
                section: Section::Header,
                ..
            }
        ) || matches!(
            self,
            Item::Body {
                section: Section::Fields { path, .. },
                ..
            } if path.is_empty()
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
        s if s.contains("HEADER.FIELDS") => {
            // `HEADER.FIELDS`, or `1.2.HEADER.FIELDS` of a message part.
            let at = s.find("HEADER.FIELDS").unwrap_or(0);
            let path = match &s[..at] {
                "" => Vec::new(),
                p => match part_section(p.trim_end_matches('.'))? {
                    Section::Part(nums, super::mime::PartSpec::Body) if p.ends_with('.') => nums,
                    _ => return Err("bad section"),
                },
            };
            let s = &s[at..];
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
            Section::Fields { path, names, not }
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

/// The bytes of a section.
pub fn section_bytes(msg: &[u8], section: &Section) -> Vec<u8> {
    section_bytes_with(msg, section, super::limits::MimeLimits::default())
}

/// [`section_bytes`] with the MIME limits of the configuration, so that
/// section numbers match the BODYSTRUCTURE described under the same limits.
pub fn section_bytes_with(
    msg: &[u8],
    section: &Section,
    limits: super::limits::MimeLimits,
) -> Vec<u8> {
    let h = header_len(msg);
    match section {
        Section::Full => msg.to_vec(),
        Section::Header => msg[..h].to_vec(),
        Section::Text => msg[h..].to_vec(),
        Section::Part(path, spec) => {
            super::mime::part_bytes_with(msg, path, *spec, limits).unwrap_or_default()
        }
        Section::Fields { path, names, not } => {
            let header = if path.is_empty() {
                msg[..h].to_vec()
            } else {
                super::mime::part_bytes_with(msg, path, super::mime::PartSpec::Header, limits)
                    .unwrap_or_default()
            };
            let mut out = Vec::new();
            for field in header_fields(&header) {
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
pub(super) fn date(s: &str) -> Result<i64, &'static str> {
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
                section:
                    Section::Fields {
                        path,
                        names,
                        not: false,
                    },
                partial: Some((0, 10)),
                peek: true,
                label,
            } => {
                assert!(path.is_empty());
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
                    path: Vec::new(),
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
    fn dates() {
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
