//! ENVELOPE, BODYSTRUCTURE and numbered body sections (RFC 9051 7.5.2),
//! from the MIME tree `mail-parser` finds in a message.
//!
//! Every walk goes through one bounded tree ([`MimeLimits`]): the parser
//! sees the message only up to a bounded number of structure lines, the
//! tree describes at most `max_parts` parts nested at most `max_depth`
//! deep, and the part past a limit, with everything after it, is one
//! opaque `application/octet-stream` part. BODYSTRUCTURE, `BODY[n]` and
//! BINARY all number parts from that same tree, so a client never asks
//! for a part the server cannot find.

use super::limits::MimeLimits;
use super::response::nstring;
use mail_parser::{
    Address, ContentType, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

mod sections;
pub use sections::{binary, binary_with, part_bytes, part_bytes_with, PartSpec, UnknownCte};

/// A message as `mail-parser` found it, in at most the part of the input
/// [`structure_cut`] allows.
struct Parsed<'a> {
    m: Message<'a>,
    /// Where the parser's input stopped (the message's length when whole).
    cut: usize,
    /// The whole message's length.
    len: usize,
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        // An embedded message holds its parts by value: dropping thousands
        // of nested ones recursively would overflow the stack. Take them
        // apart one level at a time instead.
        let mut stack = Vec::new();
        take_embedded(&mut self.m, &mut stack);
        while let Some(mut m) = stack.pop() {
            take_embedded(&mut m, &mut stack);
        }
    }
}

fn take_embedded<'a>(m: &mut Message<'a>, out: &mut Vec<Message<'a>>) {
    for p in &mut m.parts {
        if matches!(p.body, PartType::Message(_)) {
            if let PartType::Message(inner) = std::mem::take(&mut p.body) {
                out.push(inner);
            }
        }
    }
}

fn parse(msg: &[u8], limits: MimeLimits) -> Option<Parsed<'_>> {
    let cut = structure_cut(msg, limits);
    let input = msg.get(..cut).unwrap_or(msg);
    // mail-parser has debug assertions that some messages reach (an
    // embedded message holding an embedded message holding a multipart):
    // in a debug build that would be a panic on anyone's input. Such a
    // message is then described as not parsed.
    let m = std::panic::catch_unwind(|| MessageParser::default().parse(input))
        .ok()
        .flatten()?;
    Some(Parsed {
        m,
        cut,
        len: msg.len(),
    })
}

/// Where a line that starts at `pos` ends (after its LF, or at the end).
fn line_end(msg: &[u8], pos: usize) -> usize {
    msg.get(pos..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
        .map_or(msg.len(), |i| pos + i + 1)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// How much of `msg` the parser may see: all of it, or up to the start of
/// the line where its structure lines pass [`MimeLimits::scan_budget`].
/// Structure lines are the ones that can start a part: a Content-Type
/// field naming a multipart or an embedded message, and (once a multipart
/// is declared) any line with `--` in it, since the parser finds a
/// delimiter anywhere on a line. One linear pass; the count is an upper
/// bound on the parts the parser makes from what it is shown.
fn structure_cut(msg: &[u8], limits: MimeLimits) -> usize {
    let budget = limits.scan_budget();
    let mut events = 0usize;
    let mut multipart = false;
    let mut pos = 0;
    while pos < msg.len() {
        let end = line_end(msg, pos);
        let line = &msg[pos..end];
        let mut next = end;
        let event = if line.len() >= 12 && line[..12].eq_ignore_ascii_case(b"content-type") {
            // The field with its continuation lines.
            while next < msg.len() && matches!(msg[next], b' ' | b'\t') {
                next = line_end(msg, next);
            }
            let field = &msg[pos..next];
            let multi = contains_ci(field, b"multipart/");
            multipart |= multi;
            multi || contains_ci(field, b"message/")
        } else {
            multipart && memchr::memmem::find(line, b"--").is_some()
        };
        if event {
            events += 1;
            if events > budget {
                return pos;
            }
        }
        pos = next;
    }
    msg.len()
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
    match parse(msg, MimeLimits::default()) {
        Some(p) => envelope_of(&p.m),
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

/// One part as the server describes it: what BODYSTRUCTURE shows and what
/// section numbers find.
enum Node<'a> {
    /// A part with a body of its own (text, image, application...).
    Leaf(&'a MessagePart<'a>),
    /// A multipart and the parts of it that are described.
    Multi(&'a MessagePart<'a>, Vec<Node<'a>>),
    /// A part holding a message (message/rfc822), and that message's body.
    Embedded(&'a MessagePart<'a>, &'a Message<'a>, Box<Node<'a>>),
    /// Past a limit: the bytes from the first offset to the second (the
    /// end of the message), as one `application/octet-stream` part.
    Opaque(usize, usize),
}

/// A message's bounded part tree.
struct Tree<'a> {
    root: Node<'a>,
    /// Where the parser's input stopped, and the message's length.
    cut: usize,
    len: usize,
}

/// Builds the tree in message order, counting parts.
struct Builder {
    limits: MimeLimits,
    parts: usize,
    stopped: bool,
    len: usize,
}

impl Builder {
    fn node<'a>(
        &mut self,
        m: &'a Message<'a>,
        part: &'a MessagePart<'a>,
        depth: usize,
    ) -> Node<'a> {
        self.parts += 1;
        if self.parts > self.limits.max_parts || depth > self.limits.max_depth {
            // This part and all that follows it in the message.
            self.stopped = true;
            return Node::Opaque((part.offset_header as usize).min(self.len), self.len);
        }
        if let Some(children) = part.sub_parts() {
            let mut kids = Vec::with_capacity(children.len().min(self.limits.max_parts));
            for id in children {
                if self.stopped {
                    break;
                }
                if let Some(child) = m.part(*id) {
                    kids.push(self.node(m, child, depth + 1));
                }
            }
            return Node::Multi(part, kids);
        }
        if let PartType::Message(inner) = &part.body {
            let root = self.node(inner, inner.root_part(), depth + 1);
            return Node::Embedded(part, inner, Box::new(root));
        }
        Node::Leaf(part)
    }
}

/// Puts the opaque rest of a message the parser was not shown at the end
/// of the last multipart open at the cut; false when there is none.
fn attach_rest(node: &mut Node<'_>, start: usize, end: usize) -> bool {
    match node {
        Node::Multi(_, kids) => {
            if !kids
                .last_mut()
                .is_some_and(|last| attach_rest(last, start, end))
            {
                kids.push(Node::Opaque(start, end));
            }
            true
        }
        Node::Embedded(_, _, root) => attach_rest(root, start, end),
        Node::Leaf(_) | Node::Opaque(..) => false,
    }
}

fn tree<'a>(p: &'a Parsed<'a>, limits: MimeLimits) -> Tree<'a> {
    let mut b = Builder {
        limits: limits.effective(),
        parts: 0,
        stopped: false,
        len: p.len,
    };
    let mut root = b.node(&p.m, p.m.root_part(), 0);
    if p.cut < p.len && !b.stopped && !attach_rest(&mut root, p.cut, p.len) {
        // No multipart to hold the rest: the whole body is opaque.
        root = Node::Opaque(p.m.root_part().offset_body as usize, p.len);
    }
    Tree {
        root,
        cut: p.cut,
        len: p.len,
    }
}

impl Tree<'_> {
    /// A part's body range in the message. A multipart or embedded
    /// message (a `container`) still open where the parser's input was cut
    /// holds the opaque rest too: it runs to the end of the message.
    fn body_range(&self, part: &MessagePart<'_>, container: bool) -> (usize, usize) {
        let (a, b) = (part.offset_body as usize, part.offset_end as usize);
        if container && self.cut < self.len && (b < a || b >= self.cut) {
            (a, self.len)
        } else {
            (a, b)
        }
    }
}

/// The opaque part's BODYSTRUCTURE.
fn opaque_structure(out: &mut String, size: usize, extensible: bool) {
    out.push_str(&format!(
        "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" {size}"
    ));
    if extensible {
        out.push_str(" NIL NIL NIL NIL");
    }
    out.push(')');
}

fn write_structure(out: &mut String, t: &Tree<'_>, node: &Node<'_>, raw: &[u8], extensible: bool) {
    let (part, kids, inner) = match node {
        Node::Opaque(a, b) => return opaque_structure(out, b.saturating_sub(*a), extensible),
        Node::Leaf(p) => (*p, None, None),
        Node::Multi(p, kids) => (*p, Some(kids), None),
        Node::Embedded(p, m, root) => (*p, None, Some((*m, &**root))),
    };
    let ct = part.content_type();
    if let Some(kids) = kids {
        out.push('(');
        for k in kids {
            write_structure(out, t, k, raw, extensible);
        }
        let sub = ct
            .and_then(|c| c.c_subtype.as_deref())
            .unwrap_or("MIXED")
            .to_ascii_uppercase();
        out.push_str(&format!(" {}", nstring(Some(&sub))));
        if extensible {
            out.push_str(&format!(
                " {} {} {} {}",
                params(ct, false),
                disposition(part),
                languages(part, raw),
                nstring(part_header(part, "Content-Location", raw).as_deref())
            ));
        }
        out.push(')');
        return;
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
    let (a, b) = t.body_range(part, inner.is_some());
    let body = raw.get(a..b).unwrap_or(&[]);
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or("7BIT")
        .to_ascii_uppercase();
    out.push_str(&format!(
        "({} {} {} {} {} {} {}",
        nstring(Some(&ty)),
        nstring(Some(&sub)),
        params(ct, ty == "TEXT"),
        nstring(part_header(part, "Content-ID", raw).as_deref()),
        nstring(part_header(part, "Content-Description", raw).as_deref()),
        nstring(Some(&encoding)),
        body.len()
    ));
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    match inner {
        Some((m, root)) if ty == "MESSAGE" => {
            out.push_str(&format!(" {} ", envelope_of(m)));
            write_structure(out, t, root, raw, extensible);
            out.push_str(&format!(" {lines}"));
        }
        _ if ty == "TEXT" => out.push_str(&format!(" {lines}")),
        _ => {}
    }
    if extensible {
        out.push_str(&format!(
            " {} {} {} {}",
            nstring(part_header(part, "Content-MD5", raw).as_deref()),
            disposition(part),
            languages(part, raw),
            nstring(part_header(part, "Content-Location", raw).as_deref())
        ));
    }
    out.push(')');
}

fn structure_of(t: &Tree<'_>, raw: &[u8], extensible: bool) -> String {
    let mut out = String::new();
    write_structure(&mut out, t, &t.root, raw, extensible);
    out
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message, under the default
/// [`MimeLimits`].
pub fn bodystructure(msg: &[u8], extensible: bool) -> String {
    bodystructure_with(msg, extensible, MimeLimits::default())
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message, under `limits`.
pub fn bodystructure_with(msg: &[u8], extensible: bool, limits: MimeLimits) -> String {
    match parse(msg, limits) {
        Some(p) => structure_of(&tree(&p, limits), msg, extensible),
        None => "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)".to_owned(),
    }
}

/// Everything FETCH ENVELOPE/BODY/BODYSTRUCTURE and SORT take from a
/// message, from one parse: what the store caches per message. Under the
/// default [`MimeLimits`].
pub fn summary(msg: &[u8]) -> super::event::Summary {
    summary_with(msg, MimeLimits::default())
}

/// [`summary`] under `limits`.
pub fn summary_with(msg: &[u8], limits: MimeLimits) -> super::event::Summary {
    use super::event::{SortKeys, Summary};
    let Some(p) = parse(msg, limits) else {
        return Summary {
            envelope: envelope(msg),
            body: bodystructure_with(msg, false, limits),
            bodystructure: bodystructure_with(msg, true, limits),
            sort: SortKeys::default(),
        };
    };
    let m = &p.m;
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
    let t = tree(&p, limits);
    Summary {
        envelope: envelope_of(m),
        body: structure_of(&t, msg, false),
        bodystructure: structure_of(&t, msg, true),
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

    fn parts_bomb(n: usize) -> Vec<u8> {
        let mut m = b"From: a@example.com\r\nSubject: bomb\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
        for _ in 0..n {
            m.extend_from_slice(b"--b\r\n\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    fn nested_bomb(n: usize) -> Vec<u8> {
        let mut m = b"From: a@example.com\r\nSubject: nest\r\n".to_vec();
        for i in 0..n {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"\r\nx\r\n");
        for i in (0..n).rev() {
            m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
        }
        m
    }

    const OPAQUE: &str = "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" ";

    #[test]
    fn parts_past_the_limit_are_one_opaque_part() {
        let l = MimeLimits::default();
        let m = parts_bomb(300_000);
        let s = summary(&m);
        assert!(s.bodystructure.len() < 100_000, "{}", s.bodystructure.len());
        assert_eq!(s.bodystructure.matches(OPAQUE).count(), 1);
        // The root is part one; its children 1..=999 are described, the
        // 1000th is the rest of the message.
        let leaves = s.bodystructure.matches("(\"TEXT\" \"PLAIN\"").count();
        assert_eq!(leaves, l.max_parts - 1);
        let rest = part_bytes(&m, &[1000], PartSpec::Body).unwrap();
        // From the 1000th part's (empty) header on.
        assert!(rest.starts_with(b"\r\n--b\r\n"), "{:?}", &rest[..10]);
        assert!(rest.ends_with(b"--b--\r\n"));
        let size = format!("{OPAQUE}{} NIL NIL NIL NIL)", rest.len());
        assert!(s.bodystructure.contains(&size), "{size}");
        assert_eq!(part_bytes(&m, &[1000], PartSpec::Mime).unwrap(), b"");
        assert!(part_bytes(&m, &[1000], PartSpec::Header).is_none());
        assert!(part_bytes(&m, &[1001], PartSpec::Body).is_none());
        assert_eq!(part_bytes(&m, &[1], PartSpec::Body).unwrap(), b"");
        assert_eq!(part_bytes(&m, &[2, 1], PartSpec::Body).unwrap(), b"");
        assert_eq!(binary(&m, &[1000]).unwrap(), rest);
        // BODY (no extension data) numbers the same parts.
        assert_eq!(s.body.matches(OPAQUE).count(), 1);
    }

    #[test]
    fn nesting_past_the_limit_is_one_opaque_part() {
        let l = MimeLimits::default();
        let m = nested_bomb(10_000);
        let s = summary(&m);
        assert!(s.bodystructure.len() < 20_000, "{}", s.bodystructure.len());
        assert_eq!(s.bodystructure.matches(OPAQUE).count(), 1);
        assert_eq!(
            s.bodystructure.matches("\"MIXED\"").count(),
            l.max_depth + 1
        );
        // Part 1.1.1...: the deepest described multipart, then the opaque rest.
        let deep = vec![1u32; l.max_depth + 1];
        let rest = part_bytes(&m, &deep, PartSpec::Body).unwrap();
        assert!(rest.starts_with(b"Content-Type: multipart/mixed; boundary=\"b51\""));
        let deeper = vec![1u32; l.max_depth + 2];
        assert_eq!(part_bytes(&m, &deeper, PartSpec::Body).unwrap(), rest);
        assert!(part_bytes(&m, &[2], PartSpec::Body).is_none());
        // Every multipart holds what is below it, the opaque rest included.
        let one = part_bytes(&m, &[1], PartSpec::Body).unwrap();
        assert!(one.ends_with(b"--b1--\r\n--b0--\r\n"));
        assert!(one.len() > m.len() / 2);
    }

    #[test]
    fn deeply_embedded_messages_do_not_overflow_the_stack() {
        let mut m = b"From: a@example.com\r\nSubject: nest\r\n".to_vec();
        for _ in 0..20_000 {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        m.extend_from_slice(b"\r\nx\r\n");
        let s = summary(&m);
        assert!(s.bodystructure.len() < 100_000);
        assert_eq!(s.bodystructure.matches(OPAQUE).count(), 1);
        // The whole message, unbounded, is also dropped without recursion.
        let whole = MessageParser::default()
            .parse(&m[..])
            .map(|m| Parsed { m, cut: 0, len: 0 });
        assert!(whole.is_some());
    }

    #[test]
    fn small_limits_cut_an_ordinary_message() {
        let l = MimeLimits {
            max_parts: 2,
            max_depth: 5,
        };
        let b = bodystructure_with(MULTI, true, l);
        assert!(b.starts_with("((\"TEXT\" \"PLAIN\""), "{b}");
        let rest = part_bytes_with(MULTI, &[2], PartSpec::Body, l).unwrap();
        assert!(rest.starts_with(b"Content-Type: application/pdf"));
        assert!(rest.ends_with(b"--b1--\r\n"));
        assert!(
            b.contains(&format!("{OPAQUE}{} NIL NIL NIL NIL)", rest.len())),
            "{b}"
        );
        let l = MimeLimits {
            max_parts: 10,
            max_depth: 0,
        };
        let b = bodystructure_with(MULTI, false, l);
        assert!(b.starts_with(&format!("({OPAQUE}")), "{b}");
        assert!(b.ends_with(" \"MIXED\")"), "{b}");
    }

    #[test]
    fn the_parser_is_shown_a_bounded_prefix() {
        let l = MimeLimits::default();
        assert_eq!(structure_cut(MULTI, l), MULTI.len());
        let m = parts_bomb(300_000);
        let cut = structure_cut(&m, l);
        assert!(cut < m.len() / 10, "{cut}");
        // Text with dashes but no multipart is never cut.
        let mut text = b"Subject: dashes\r\n\r\n".to_vec();
        for _ in 0..20_000 {
            text.extend_from_slice(b"-- \r\n");
        }
        assert_eq!(structure_cut(&text, l), text.len());
        // A cut inside a multipart: the rest goes at its end.
        let small = MimeLimits {
            max_parts: 3,
            max_depth: 5,
        };
        let m = parts_bomb(100);
        let cut = structure_cut(&m, small);
        assert!(cut < m.len());
        let p = parse(&m, small).unwrap();
        let t = tree(&p, small);
        assert!(
            matches!(&t.root, Node::Multi(_, kids) if kids.len() == 3 && matches!(kids[2], Node::Opaque(..)))
        );
    }
}
