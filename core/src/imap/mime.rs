//! ENVELOPE, BODYSTRUCTURE and numbered body sections (RFC 9051 7.5.2),
//! from the MIME tree `mail-parser` finds in a message.

use mail_parser::{
    Address, ContentType, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::response::nstring;

/// The deepest MIME nesting described.
const MAX_DEPTH: usize = 32;

fn parse(msg: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(msg)
}

fn raw_header(m: &Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(|v| v.trim().replace("\r\n", "").replace('\n', ""))
}

/// A display name for ENVELOPE: the header's phrase is 7-bit there, so
/// a name mail-parser decoded from encoded words goes back into one
/// (RFC 2047, UTF-8); an ASCII name is sent as it is.
fn phrase(name: Option<&str>) -> Option<String> {
    use base64::Engine;
    let n = name?;
    if n.is_ascii() {
        return Some(n.to_owned());
    }
    Some(format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(n.as_bytes())
    ))
}

fn addresses(a: Option<&Address<'_>>) -> String {
    let Some(a) = a else { return "NIL".to_owned() };
    let mut out = String::from("(");
    let push = |out: &mut String, name: Option<&str>, addr: Option<&str>| {
        let (local, domain) = match addr.and_then(|x| x.rsplit_once('@')) {
            Some((l, d)) => (Some(l), Some(d)),
            None => (addr, None),
        };
        out.push_str(&format!(
            "({} NIL {} {})",
            nstring(phrase(name).as_deref()),
            nstring(local),
            nstring(domain)
        ));
    };
    match a {
        Address::List(list) => {
            for x in list {
                push(&mut out, x.name.as_deref(), x.address.as_deref());
            }
        }
        Address::Group(groups) => {
            // RFC 9051 7.5.2: a group is marked by a start (NIL for the
            // host, the group name as mailbox) and an end (all NIL).
            for g in groups {
                let name = g.name.as_deref();
                if let Some(n) = name {
                    push(&mut out, None, Some(n));
                }
                for x in &g.addresses {
                    push(&mut out, x.name.as_deref(), x.address.as_deref());
                }
                if name.is_some() {
                    out.push_str("(NIL NIL NIL NIL)");
                }
            }
        }
    }
    if out.len() == 1 {
        return "NIL".to_owned();
    }
    out.push(')');
    out
}

fn envelope_of(m: &Message<'_>) -> String {
    let from = addresses(m.from());
    let sender = match m.sender() {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    let reply_to = match m.reply_to() {
        Some(r) => addresses(Some(r)),
        None => from.clone(),
    };
    format!(
        "({} {} {} {} {} {} {} {} {} {})",
        nstring(raw_header(m, "Date").as_deref()),
        nstring(raw_header(m, "Subject").as_deref()),
        from,
        sender,
        reply_to,
        addresses(m.to()),
        addresses(m.cc()),
        addresses(m.bcc()),
        nstring(raw_header(m, "In-Reply-To").as_deref()),
        nstring(raw_header(m, "Message-ID").as_deref()),
    )
}

/// The ENVELOPE of a message.
pub fn envelope(msg: &[u8]) -> String {
    match parse(msg) {
        Some(m) => envelope_of(&m),
        None => "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_owned(),
    }
}

fn params(ct: Option<&ContentType<'_>>, default_charset: bool) -> String {
    let mut p: Vec<String> = Vec::new();
    if let Some(attrs) = ct.and_then(|c| c.attributes.as_ref()) {
        for a in attrs {
            p.push(format!(
                "{} {}",
                nstring(Some(&a.name.to_ascii_uppercase())),
                nstring(Some(&a.value))
            ));
        }
    }
    if p.is_empty() && default_charset {
        p.push("\"CHARSET\" \"US-ASCII\"".to_owned());
    }
    if p.is_empty() {
        "NIL".to_owned()
    } else {
        format!("({})", p.join(" "))
    }
}

/// A part's header field as written (unfolded, trimmed): BODYSTRUCTURE
/// gives Content-ID, Content-Description, Content-MD5 and
/// Content-Location raw (RFC 9051 7.5.2). `raw` is the outermost message:
/// the parser's offsets count from its start, nested messages included.
fn part_header(part: &MessagePart<'_>, name: &str, raw: &[u8]) -> Option<String> {
    let h = part
        .headers()
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let v = raw.get(h.offset_start as usize..h.offset_end as usize)?;
    let v = String::from_utf8_lossy(v)
        .replace("\r\n", "")
        .replace('\n', "");
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// body-fld-lang: NIL, a string, or a list of strings.
fn languages(part: &MessagePart<'_>, raw: &[u8]) -> String {
    let Some(v) = part_header(part, "Content-Language", raw) else {
        return "NIL".to_owned();
    };
    let tags: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| nstring(Some(t)))
        .collect();
    match tags.len() {
        0 => "NIL".to_owned(),
        1 => tags[0].clone(),
        _ => format!("({})", tags.join(" ")),
    }
}

/// body-fld-dsp: `("ATTACHMENT" ("FILENAME" "a.pdf"))` or NIL.
fn disposition(part: &MessagePart<'_>) -> String {
    match part.content_disposition() {
        Some(d) => format!(
            "({} {})",
            nstring(Some(&d.c_type.to_ascii_uppercase())),
            params(Some(d), false)
        ),
        None => "NIL".to_owned(),
    }
}

fn part_structure(
    m: &Message<'_>,
    part: &MessagePart<'_>,
    raw: &[u8],
    extensible: bool,
    depth: usize,
) -> String {
    if depth > MAX_DEPTH {
        return "NIL".to_owned();
    }
    let ct = part.content_type();
    if let Some(children) = part.sub_parts() {
        let mut s = String::from("(");
        for id in children {
            if let Some(child) = m.part(*id) {
                s.push_str(&part_structure(m, child, raw, extensible, depth + 1));
            }
        }
        let sub = ct
            .and_then(|c| c.c_subtype.as_deref())
            .unwrap_or("MIXED")
            .to_ascii_uppercase();
        s.push_str(&format!(" {}", nstring(Some(&sub))));
        if extensible {
            s.push_str(&format!(
                " {} {} {} {}",
                params(ct, false),
                disposition(part),
                languages(part, raw),
                nstring(part_header(part, "Content-Location", raw).as_deref())
            ));
        }
        s.push(')');
        return s;
    }
    let (ty, sub) = match ct {
        Some(c) => (
            c.c_type.to_ascii_uppercase(),
            c.c_subtype
                .as_deref()
                .unwrap_or("PLAIN")
                .to_ascii_uppercase(),
        ),
        None => ("TEXT".to_owned(), "PLAIN".to_owned()),
    };
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[]);
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or("7BIT")
        .to_ascii_uppercase();
    let mut s = format!(
        "({} {} {} {} {} {} {}",
        nstring(Some(&ty)),
        nstring(Some(&sub)),
        params(ct, ty == "TEXT"),
        nstring(part_header(part, "Content-ID", raw).as_deref()),
        nstring(part_header(part, "Content-Description", raw).as_deref()),
        nstring(Some(&encoding)),
        body.len()
    );
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    match &part.body {
        PartType::Message(inner) if ty == "MESSAGE" => {
            s.push_str(&format!(
                " {} {} {lines}",
                envelope_of(inner),
                part_structure(inner, inner.root_part(), raw, extensible, depth + 1)
            ));
        }
        _ if ty == "TEXT" => s.push_str(&format!(" {lines}")),
        _ => {}
    }
    if extensible {
        s.push_str(&format!(
            " {} {} {} {}",
            nstring(part_header(part, "Content-MD5", raw).as_deref()),
            disposition(part),
            languages(part, raw),
            nstring(part_header(part, "Content-Location", raw).as_deref())
        ));
    }
    s.push(')');
    s
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message.
pub fn bodystructure(msg: &[u8], extensible: bool) -> String {
    match parse(msg) {
        Some(m) => part_structure(&m, m.root_part(), msg, extensible, 0),
        None => "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)".to_owned(),
    }
}

/// Everything FETCH ENVELOPE/BODY/BODYSTRUCTURE and SORT take from a
/// message, from one parse: what the store caches per message.
pub fn summary(msg: &[u8]) -> super::event::Summary {
    use super::event::{SortKeys, Summary};
    let Some(m) = parse(msg) else {
        return Summary {
            envelope: envelope(msg),
            body: bodystructure(msg, false),
            bodystructure: bodystructure(msg, true),
            sort: SortKeys::default(),
        };
    };
    let first = |a: Option<&Address<'_>>| -> String {
        let addr = match a {
            Some(Address::List(l)) => l.first().and_then(|x| x.address.as_deref()),
            Some(Address::Group(g)) => g
                .iter()
                .flat_map(|g| g.addresses.iter())
                .next()
                .and_then(|x| x.address.as_deref()),
            None => None,
        };
        // RFC 5256: the addr-mailbox (local part) of the first address.
        addr.map(|a| a.rsplit_once('@').map_or(a, |(l, _)| l).to_lowercase())
            .unwrap_or_default()
    };
    let date = m.date().map(|d| d.to_timestamp());
    Summary {
        envelope: envelope_of(&m),
        body: part_structure(&m, m.root_part(), msg, false, 0),
        bodystructure: part_structure(&m, m.root_part(), msg, true, 0),
        sort: SortKeys {
            date,
            from: first(m.from()),
            to: first(m.to()),
            cc: first(m.cc()),
            subject: base_subject(m.subject().unwrap_or("")),
        },
    }
}

/// The base subject of RFC 5256 section 2.1 (simplified: whitespace
/// folded, `Re:`/`Fw:`/`Fwd:` and `[blob]` prefixes and `(fwd)` trailers
/// removed, `[fwd: ...]` unwrapped), lower-cased for comparison.
pub fn base_subject(s: &str) -> String {
    // Lower-cased first: every cut below is then on this one string.
    let mut s: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = s.len();
        // Trailers.
        while let Some(t) = s.strip_suffix("(fwd)") {
            s = t.trim_end().to_owned();
        }
        // Leaders: [blob]* (re|fw|fwd) [blob]? ":"
        let lower = s.clone();
        let mut rest = lower.as_str();
        let mut cut = None;
        loop {
            let r = rest.trim_start();
            if let Some(b) = r.strip_prefix('[') {
                if let Some(end) = b.find(']') {
                    let next = b[end + 1..].trim_start();
                    if !next.is_empty() {
                        rest = next;
                        continue;
                    }
                }
            }
            break;
        }
        for word in ["re", "fwd", "fw"] {
            if let Some(r) = rest.strip_prefix(word) {
                let mut r = r.trim_start();
                if let Some(b) = r.strip_prefix('[') {
                    if let Some(end) = b.find(']') {
                        r = b[end + 1..].trim_start();
                    }
                }
                if let Some(r) = r.strip_prefix(':') {
                    cut = Some(lower.len() - r.len());
                }
                break;
            }
        }
        // A leading [blob] goes when something is left (step 4).
        if cut.is_none() && rest.len() < lower.len() && !rest.trim().is_empty() {
            cut = Some(lower.len() - rest.len());
        }
        if let Some(c) = cut {
            s = s[c..].trim_start().to_owned();
        }
        if s.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].trim().to_owned();
        }
        if s.len() == before {
            break;
        }
    }
    s
}

/// What of a numbered part to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartSpec {
    /// `BODY[1.2]`: the part's body.
    Body,
    /// `BODY[1.2.MIME]`: the part's MIME header.
    Mime,
    /// `BODY[2.HEADER]`: the header of an embedded message.
    Header,
    /// `BODY[2.TEXT]`: the text of an embedded message.
    Text,
}

/// The content transfer encoding BINARY cannot undo (`NO [UNKNOWN-CTE]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// `BINARY[path]` (RFC 3516): the part's body with its
/// Content-Transfer-Encoding (base64, quoted-printable) undone; the whole
/// message for an empty path; nothing for a part that does not exist.
pub fn binary(msg: &[u8], path: &[u32]) -> Result<Vec<u8>, UnknownCte> {
    if path.is_empty() {
        return Ok(msg.to_vec());
    }
    let Some(m) = parse(msg) else {
        return Ok(Vec::new());
    };
    let Some(part) = find_part(&m, path) else {
        return Ok(Vec::new());
    };
    let raw = msg
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[]);
    if part.sub_parts().is_some() || part.message().is_some() {
        return Ok(raw.to_vec());
    }
    let cte = part_header(part, "Content-Transfer-Encoding", msg)
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    match cte.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(raw.to_vec()),
        "base64" => Ok(decode_base64(raw)),
        "quoted-printable" => Ok(decode_qp(raw)),
        other => Err(UnknownCte(other.to_owned())),
    }
}

/// Base64 as mail writes it: line breaks and stray bytes skipped.
fn decode_base64(raw: &[u8]) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in raw {
        if c == b'=' {
            break;
        }
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 6.7): `=XX`, soft line breaks, and white
/// space at the end of a line deleted (rule 3).
fn decode_qp(raw: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut trimmed = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let (body, end): (&[u8], &[u8]) = if let Some(b) = line.strip_suffix(b"\r\n") {
            (b, b"\r\n")
        } else if let Some(b) = line.strip_suffix(b"\n") {
            (b, b"\n")
        } else {
            (line, b"")
        };
        let keep = body
            .iter()
            .rposition(|&c| c != b' ' && c != b'\t')
            .map_or(0, |i| i + 1);
        trimmed.extend_from_slice(&body[..keep]);
        trimmed.extend_from_slice(end);
    }
    let raw = trimmed.as_slice();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        match (raw.get(i + 1), raw.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
                out.push((hex(a).unwrap_or(0) * 16 + hex(b).unwrap_or(0)) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The part at `path` (1-based at every level); a non-multipart message
/// has one part, numbered 1.
fn find_part<'a>(m: &'a Message<'a>, path: &[u32]) -> Option<&'a MessagePart<'a>> {
    let mut cur_msg = m;
    let mut part = m.root_part();
    for (depth, n) in path.iter().enumerate() {
        if depth > MAX_DEPTH || *n == 0 {
            return None;
        }
        if let Some(inner) = part.message().filter(|_| depth > 0) {
            cur_msg = inner;
            part = inner.root_part();
        }
        match part.sub_parts() {
            Some(children) => {
                let id = *children.get(*n as usize - 1)?;
                part = cur_msg.part(id)?;
            }
            None if *n == 1 => {}
            None => return None,
        }
    }
    Some(part)
}

/// The bytes of numbered part `path` (1-based at every level).
pub fn part_bytes(msg: &[u8], path: &[u32], spec: PartSpec) -> Option<Vec<u8>> {
    let m = parse(msg)?;
    let part = find_part(&m, path)?;
    // Offsets count from the outermost message, nested ones included.
    let slice = |a: u32, b: u32| msg.get(a as usize..b as usize).map(<[u8]>::to_vec);
    match spec {
        PartSpec::Body => slice(part.offset_body, part.offset_end),
        PartSpec::Mime => slice(part.offset_header, part.offset_body),
        PartSpec::Header | PartSpec::Text => {
            let inner = part.message()?;
            let r = inner.raw_message();
            let h = super::message::header_len(r);
            Some(if spec == PartSpec::Header {
                r[..h].to_vec()
            } else {
                r[h..].to_vec()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: hi\r\nDate: Wed, 25 Nov 2026 06:38:06 +0000\r\nMessage-ID: <x@y>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b1\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nAAAA\r\n--b1--\r\n";

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  world (fwd)"),
            "hello world"
        );
        assert_eq!(base_subject("[Fwd: Re: Lunch]"), "lunch");
        assert_eq!(base_subject("RE[2]: Plans"), "plans");
        assert_eq!(base_subject("Re:"), "");
        assert_eq!(base_subject("Reunion"), "reunion");
        // Case mapping that changes byte lengths must not cut a character.
        assert_eq!(base_subject("[İİ] Re: İx"), "i̇x");
        assert_eq!(base_subject("[\u{212a}] x"), "x");
    }

    #[test]
    fn summaries_give_sort_keys() {
        let s = summary(
            b"From: Bob <Bob@example.net>\r\nTo: a@x, b@y\r\nSubject: Re: Hi\r\nDate: Wed, 25 Nov 2026 06:00:00 +0000\r\n\r\nx\r\n",
        );
        assert_eq!(s.sort.from, "bob");
        assert_eq!(s.sort.to, "a");
        assert_eq!(s.sort.cc, "");
        assert_eq!(s.sort.subject, "hi");
        assert_eq!(s.sort.date, Some(1_795_586_400));
        assert!(s.envelope.contains("\"Re: Hi\""));
        assert!(s.bodystructure.starts_with("(\"TEXT\" \"PLAIN\""));
    }

    #[test]
    fn envelope_and_structure() {
        let e = envelope(MULTI);
        assert!(e.starts_with("(\"Wed, 25 Nov 2026 06:38:06 +0000\" \"hi\" ((\"Alice\" NIL \"alice\" \"example.com\"))"), "{e}");
        assert!(
            e.ends_with("((NIL NIL \"bob\" \"example.com\")) NIL NIL NIL \"<x@y>\")"),
            "{e}"
        );
        let b = bodystructure(MULTI, true);
        assert!(
            b.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" "),
            "{b}"
        );
        assert!(
            b.contains("(\"APPLICATION\" \"PDF\" (\"NAME\" \"a.pdf\") NIL NIL \"BASE64\" "),
            "{b}"
        );
        assert!(
            b.contains("(\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\"))"),
            "{b}"
        );
        assert!(
            b.ends_with(" \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"),
            "{b}"
        );
        assert_eq!(part_bytes(MULTI, &[1], PartSpec::Body).unwrap(), b"hello");
        assert_eq!(part_bytes(MULTI, &[2], PartSpec::Body).unwrap(), b"AAAA");
        assert!(part_bytes(MULTI, &[3], PartSpec::Body).is_none());
        let single = b"Subject: x\r\n\r\njust text\r\n";
        assert_eq!(
            part_bytes(single, &[1], PartSpec::Body).unwrap(),
            b"just text\r\n"
        );
    }
}
