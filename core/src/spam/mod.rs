//! Spam scoring, pure: one bounded pass over a message ([`analyze`]) gives
//! its classifier tokens and the facts the rules read; [`report`] sums the
//! rules that fire and the user's classifier into one score. What a score
//! means (INBOX, Junk, refuse) is `policy::spam`'s decision; the classifier
//! files and the learning from IMAP moves are the adapters' and runtime's.
//!
//! Bounded: only the first [`MAX_SCAN`] bytes of a message are parsed
//! (mail-parser decodes the transfer encodings and charsets; an unknown
//! charset comes out lossy, never as an error), at most [`MAX_TEXT`] bytes
//! of text per part are tokenised, nested messages are followed
//! [`MAX_DEPTH`] deep, and the HTML scan has its own limits.

pub mod attach;
pub mod bayes;
pub mod html;
pub mod signs;
pub mod tokens;

use bayes::Classifier;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use memchr::memmem;
use tokens::{hash, tagged_hash, Tokens};

/// Bytes of a message that are scored (the rest is not looked at).
pub const MAX_SCAN: usize = 512 * 1024;
/// Bytes of decoded text tokenised per part.
pub const MAX_TEXT: usize = 64 * 1024;
/// Nested messages followed this deep.
pub const MAX_DEPTH: usize = 3;
/// The GTUBE test string: a message carrying it is always spam.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// One message-authentication result, as the authentication work (SPF,
/// DKIM, DMARC) reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Not checked, or no policy/record: says nothing.
    #[default]
    None,
    /// Passed.
    Pass,
    /// Failed.
    Fail,
}

/// The authentication results a message's score takes in. Left at its
/// default (nothing checked) until the message-authentication work fills
/// it in at end of DATA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthInput {
    /// SPF for the MAIL FROM (or HELO) domain.
    pub spf: AuthVerdict,
    /// DKIM: any valid signature (Pass), only broken ones (Fail).
    pub dkim: AuthVerdict,
    /// DMARC for the From domain.
    pub dmarc: AuthVerdict,
}

impl AuthInput {
    /// The message-authentication results as the score takes them: a
    /// soft failure counts as a failure; neutral, none and errors say
    /// nothing.
    pub fn from_facts(f: &crate::policy::msgauth::AuthFacts) -> Self {
        use crate::policy::msgauth::AuthResult;
        let one = |r: AuthResult| match r {
            AuthResult::Pass => AuthVerdict::Pass,
            AuthResult::Fail | AuthResult::SoftFail => AuthVerdict::Fail,
            _ => AuthVerdict::None,
        };
        AuthInput {
            spf: one(f.spf),
            dkim: one(f.dkim),
            dmarc: one(f.dmarc),
        }
    }
}

/// What the rules read about a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The GTUBE string is present.
    pub gtube: bool,
    /// No `Date:`.
    pub missing_date: bool,
    /// No `Message-ID:`.
    pub missing_message_id: bool,
    /// `Reply-To:` is in another domain than `From:`.
    pub reply_to_differs: bool,
    /// A `Received:` field without `by` or without its date.
    pub forged_received: bool,
    /// HTML without a plain-text alternative.
    pub html_only: bool,
    /// Hidden text, letters as character references, or spaced-out words.
    pub obfuscated: bool,
    /// Links whose text shows another domain than their target.
    pub mismatched_links: usize,
    /// An executable attachment.
    pub executable: bool,
    /// An Office document with macros.
    pub office_macro: bool,
    /// The message was longer than [`MAX_SCAN`]; only its start was read.
    pub truncated: bool,
    /// The message could not be parsed at all.
    pub unparsable: bool,
    /// The generic signs of bulk mail.
    pub signs: signs::Signs,
}

/// One message, analysed once for every recipient.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// The classifier tokens (deduplicated).
    pub tokens: Vec<u64>,
    /// The rules' inputs.
    pub facts: Facts,
    /// Identifies the message across copies and folders (its Message-ID,
    /// else its body): what the classifier remembers it learned.
    pub key: u64,
    /// The From address's classifier token, for the sender's history
    /// with this user; `None` without a From address or when the From
    /// address is also the first To or Cc address (spam forging the
    /// recipient as sender).
    pub sender: Option<u64>,
}

/// A scored message.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The sum of the rules and the classifier.
    pub score: f64,
    /// The rules that fired, with their points (the classifier as
    /// `BAYES_SPAM` / `BAYES_HAM`).
    pub rules: Vec<(&'static str, f64)>,
    /// The classifier's spam probability, when it took part.
    pub bayes: Option<f64>,
    /// GTUBE was found: spam whatever the score says.
    pub gtube: bool,
}

/// `Received:` fields whose host names become tokens, from the newest: the
/// whole path a message usually takes, not a forged chain's tail.
const MAX_RECEIVED_TOKENIZED: usize = 12;

/// Points of the classifier at full weight: most for spam, least for ham.
const BAYES_SPAM_MAX: f64 = 10.0;
const BAYES_HAM_MAX: f64 = -5.0;

/// The rules' points.
fn rule_points(f: &Facts, auth: &AuthInput) -> Vec<(&'static str, f64)> {
    let mut r = Vec::new();
    let mut add = |on: bool, name: &'static str, pts: f64| {
        if on {
            r.push((name, pts));
        }
    };
    add(f.gtube, "GTUBE", 1000.0);
    add(f.missing_date, "MISSING_DATE", 1.0);
    add(f.missing_message_id, "MISSING_MID", 0.5);
    add(f.reply_to_differs, "FROM_REPLYTO_DIFF", 0.2);
    add(f.forged_received, "FORGED_RECEIVED", 1.0);
    add(f.html_only, "HTML_ONLY", 1.0);
    add(f.obfuscated, "OBFUSCATED_BODY", 1.0);
    add(f.mismatched_links > 0, "LINK_TEXT_MISMATCH", 1.5);
    add(f.executable, "EXECUTABLE_ATTACHMENT", 6.0);
    add(f.office_macro, "OFFICE_MACRO", 8.0);
    add(f.unparsable, "UNPARSABLE", 1.0);
    add(auth.spf == AuthVerdict::Fail, "SPF_FAIL", 1.0);
    add(auth.dkim == AuthVerdict::Fail, "DKIM_INVALID", 1.0);
    add(auth.dkim == AuthVerdict::Pass, "DKIM_VALID", -0.2);
    add(auth.dmarc == AuthVerdict::Fail, "DMARC_FAIL", 3.5);
    add(auth.dmarc == AuthVerdict::Pass, "DMARC_PASS", -0.5);
    r.extend(signs::points(&f.signs));
    r
}

/// The classifier's points for a spam probability at a weight (0 to 1):
/// steep near certainty, so that an unsure classifier moves little.
pub fn bayes_points(probability: f64, weight: f64) -> f64 {
    let d = (probability - 0.5) * 2.0;
    if d >= 0.0 {
        weight * BAYES_SPAM_MAX * d
    } else {
        weight * -BAYES_HAM_MAX * d.powi(3)
    }
}

/// The sender's history with this user, as SpamAssassin's TxRep and
/// Rspamd's reputation module keep it: a From address whose messages this
/// user only ever learned as ham (kept or moved out of Junk) takes points
/// off, growing with the count; one only ever learned as spam adds some.
/// Not when DMARC fails: then the From address may be forged.
fn sender_history(a: &Analysis, auth: &AuthInput, c: &Classifier) -> Option<(&'static str, f64)> {
    if auth.dmarc == AuthVerdict::Fail {
        return None;
    }
    let (spam, ham) = c.token_counts(a.sender?);
    let n = |k: u32| f64::from(k.min(SENDER_HISTORY_CAP));
    match (spam, ham) {
        (0, h) if h > 0 => Some(("SENDER_HAM_HISTORY", -SENDER_HAM_POINTS * (1.0 + n(h)))),
        (s, 0) if s > 0 => Some(("SENDER_SPAM_HISTORY", SENDER_SPAM_POINTS * (1.0 + n(s)))),
        _ => None,
    }
}

/// Learned messages past which a sender's history counts no more.
const SENDER_HISTORY_CAP: u32 = 3;
/// Points per step of a sender's ham and spam history.
const SENDER_HAM_POINTS: f64 = 2.0;
const SENDER_SPAM_POINTS: f64 = 1.0;

/// Scores an analysed message for one user.
pub fn report(a: &Analysis, auth: &AuthInput, classifier: Option<&Classifier>) -> Report {
    let mut rules = rule_points(&a.facts, auth);
    let mut bayes = None;
    if let Some(c) = classifier {
        let w = c.weight();
        if w > 0.0 {
            let p = c.probability(&a.tokens);
            bayes = Some(p);
            let pts = bayes_points(p, w);
            if pts.abs() >= 0.05 {
                rules.push((if pts > 0.0 { "BAYES_SPAM" } else { "BAYES_HAM" }, pts));
            }
        }
        if let Some(r) = sender_history(a, auth, c) {
            rules.push(r);
        }
    }
    let score = rules.iter().map(|(_, p)| p).sum();
    Report {
        score,
        rules,
        bayes,
        gtube: a.facts.gtube,
    }
}

/// Analyses a message (its first [`MAX_SCAN`] bytes).
pub fn analyze(raw: &[u8]) -> Analysis {
    let truncated = raw.len() > MAX_SCAN;
    let raw = &raw[..raw.len().min(MAX_SCAN)];
    let mut a = Analysis {
        facts: Facts {
            truncated,
            gtube: memmem::find(raw, GTUBE).is_some(),
            ..Facts::default()
        },
        ..Analysis::default()
    };
    let mut t = Tokens::new();
    match MessageParser::new().parse(raw) {
        Some(m) => {
            a.sender = headers(&m, &mut a.facts, &mut t);
            signs::headers(&m, &mut a.facts.signs);
            let mut body = Body::default();
            parts(&m, 0, &mut a.facts, &mut t, &mut body);
            a.facts.html_only = body.html && !body.plain;
            a.facts.obfuscated |= body.spaced_words >= 3;
            signs::finish(&mut a.facts.signs, body.letters);
            for name in signs::tokens(&a.facts.signs) {
                t.tagged("sign", name);
            }
            a.key = match m.message_id() {
                Some(id) if !id.is_empty() => hash(id.as_bytes()),
                _ => body_key(raw),
            };
        }
        None => {
            a.facts.unparsable = true;
            let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_TEXT)]);
            t.text("", &text);
            a.key = body_key(raw);
        }
    }
    a.tokens = t.finish();
    a
}

/// A key from the body (after the first empty line), line ends ignored.
fn body_key(raw: &[u8]) -> u64 {
    let start = memmem::find(raw, b"\n\n")
        .or_else(|| memmem::find(raw, b"\r\n\r\n"))
        .unwrap_or(0);
    let body: Vec<u8> = raw[start..]
        .iter()
        .copied()
        .filter(|&b| b != b'\r')
        .collect();
    hash(&body)
}

fn domain_of(addr: &str) -> Option<String> {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
}

fn first_address(v: &HeaderValue<'_>) -> Option<(String, String)> {
    match v {
        HeaderValue::Address(a) => a.first().map(|x| {
            (
                x.name.as_deref().unwrap_or("").to_owned(),
                x.address.as_deref().unwrap_or("").to_ascii_lowercase(),
            )
        }),
        _ => None,
    }
}

/// Reads the header fields into `f` and `t`; returns the sender's token
/// (see [`Analysis::sender`]).
fn headers(m: &Message<'_>, f: &mut Facts, t: &mut Tokens) -> Option<u64> {
    let raw = m.raw_message();
    let (mut date, mut mid, mut received) = (false, false, 0usize);
    let (mut from_dom, mut reply_dom) = (None, None);
    let (mut from_addr, mut rcpt_addrs) = (None, Vec::new());
    for h in m.headers().iter().take(200) {
        let name = h.name.as_str().to_ascii_lowercase();
        if name.starts_with("x-spam") {
            continue;
        }
        t.tagged("h", &name);
        let value = || {
            let (s, e) = (h.offset_start as usize, h.offset_end as usize);
            let b = raw.get(s..e).unwrap_or_default();
            String::from_utf8_lossy(&b[..b.len().min(2048)]).into_owned()
        };
        if name == "date" {
            date = true;
        }
        match name.as_str() {
            "message-id" => {
                mid = true;
                if let Some(d) = domain_of(&value()) {
                    t.tagged("mid", &d);
                    t.tagged("midr", &html::registrable(&d));
                }
            }
            "return-path" => {
                if let Some(d) = domain_of(&value()) {
                    t.tagged("rpd", &html::registrable(&d));
                }
            }
            "subject" => {
                if let HeaderValue::Text(s) = &h.value {
                    t.text("s", s);
                }
            }
            "from" => {
                if let Some((name, addr)) = first_address(&h.value) {
                    t.text("fn", &name);
                    t.tagged("fa", &addr);
                    from_dom = domain_of(&addr);
                    if let Some(d) = &from_dom {
                        t.tagged("fd", d);
                    }
                    if addr.contains('@') {
                        from_addr = Some(addr);
                    }
                }
            }
            "reply-to" => {
                if let Some((_, addr)) = first_address(&h.value) {
                    reply_dom = domain_of(&addr);
                }
            }
            "to" | "cc" => {
                if let Some((_, addr)) = first_address(&h.value) {
                    if let Some(d) = domain_of(&addr) {
                        t.tagged("td", &d);
                    }
                    rcpt_addrs.push(addr);
                }
            }
            "received" => {
                received += 1;
                let v = value().to_ascii_lowercase();
                // A hop names the host that took the message (`by`) and
                // ends with the date; a qmail-style comment-only hop
                // (`(qmail 1 invoked by uid 0); date`) is fine.
                let by = v
                    .split(|c: char| c.is_whitespace() || c == '(')
                    .any(|w| w == "by");
                let comment_only = v.trim_start().starts_with('(');
                if !v.contains(';') || !(by || comment_only) {
                    f.forged_received = true;
                }
                if received <= MAX_RECEIVED_TOKENIZED {
                    for w in v.split(|c: char| c.is_whitespace() || "()[];".contains(c)) {
                        if w.contains('.') && w.len() <= 64 && !w.contains('@') {
                            t.tagged("r", w);
                            if w.bytes().any(|b| b.is_ascii_alphabetic()) {
                                t.tagged("rd", &html::registrable(w));
                            }
                        }
                    }
                }
            }
            "x-mailer" | "user-agent" | "content-type" | "list-id" | "precedence" => {
                t.text(&name, &value());
            }
            _ => {}
        }
    }
    f.missing_date = !date;
    f.missing_message_id = !mid;
    if let (Some(a), Some(b)) = (&from_dom, &reply_dom) {
        f.reply_to_differs = html::registrable(a) != html::registrable(b);
    }
    from_addr
        .filter(|a| !rcpt_addrs.contains(a))
        .map(|a| tagged_hash("fa", &a))
}

#[derive(Default)]
struct Body {
    plain: bool,
    html: bool,
    spaced_words: usize,
    /// Letters and upper-case letters of the text.
    letters: (usize, usize),
}

fn cut(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn parts(m: &Message<'_>, depth: usize, f: &mut Facts, t: &mut Tokens, body: &mut Body) {
    for part in m.parts.iter().take(500) {
        let ct = part
            .content_type()
            .map(|c| {
                format!("{}/{}", c.c_type, c.c_subtype.as_deref().unwrap_or(""))
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let name = part.attachment_name();
        if let Some(n) = name {
            let ext = n.rsplit_once('.').map_or("", |(_, e)| e);
            t.tagged("ext", &ext.to_ascii_lowercase());
        }
        match &part.body {
            PartType::Text(s) => {
                let s = cut(s, MAX_TEXT);
                if depth == 0 && name.is_none() && (ct.is_empty() || ct == "text/plain") {
                    body.plain = true;
                }
                f.gtube |= memmem::find(s.as_bytes(), GTUBE).is_some();
                body.spaced_words += spaced_words(s);
                if depth == 0
                    && part
                        .content_transfer_encoding()
                        .is_some_and(|e| e.eq_ignore_ascii_case("base64"))
                {
                    f.signs.base64_text = true;
                }
                signs::text(s, &mut f.signs, &mut body.letters);
                urls(s, t, &mut f.signs);
                t.text("", s);
            }
            PartType::Html(h) => {
                let h = cut(h, MAX_TEXT * 2);
                if depth == 0 && name.is_none() {
                    body.html = true;
                }
                let facts = html::scan(h);
                f.mismatched_links += facts.mismatched_links;
                if facts.numeric_letters >= 10 || facts.hidden_text >= 2 {
                    f.obfuscated = true;
                }
                for host in &facts.hosts {
                    signs::url(&format!("http://{host}/"), &mut f.signs);
                    t.tagged("url", &html::registrable(host));
                }
                f.signs.userinfo_url |= facts.userinfo_links > 0;
                let visible = html::without_style_and_script(h);
                let text = mail_parser::decoders::html::html_to_text(&visible);
                let text = cut(&text, MAX_TEXT);
                f.gtube |= memmem::find(text.as_bytes(), GTUBE).is_some();
                body.spaced_words += spaced_words(text);
                if depth == 0
                    && part
                        .content_transfer_encoding()
                        .is_some_and(|e| e.eq_ignore_ascii_case("base64"))
                {
                    f.signs.base64_text = true;
                }
                signs::html_markup(h, text.trim().len(), &mut f.signs);
                signs::text(text, &mut f.signs, &mut body.letters);
                t.text("", text);
            }
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                t.tagged("ct", &ct);
                f.executable |= attach::is_executable(name, &ct, b);
                f.office_macro |= attach::has_macros(name, b);
            }
            PartType::Message(inner) => {
                if depth < MAX_DEPTH {
                    parts(inner, depth + 1, f, t, body);
                }
            }
            PartType::Multipart(_) => {
                if !ct.is_empty() {
                    t.tagged("ct", &ct);
                }
            }
        }
    }
}

/// Tokens for the hosts of the http(s) URLs in plain text.
fn urls(s: &str, t: &mut Tokens, signs: &mut signs::Signs) {
    let mut at = 0;
    let mut n = 0;
    while let Some(i) = s[at..].find("http") {
        let start = at + i;
        at = start + 4;
        n += 1;
        if n > 200 {
            break;
        }
        let end = s[start..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
            .map_or(s.len(), |e| start + e);
        signs::url(&s[start..end], signs);
        if let Some(h) = html::url_host(&s[start..end].to_ascii_lowercase()) {
            t.tagged("url", &html::registrable(&h));
        }
    }
}

/// Words written with a separator between single letters (`v.i.a.g.r.a`).
fn spaced_words(s: &str) -> usize {
    // ASCII text splits on bytes: the same words (the ASCII white space
    // is tab to carriage return and space), without decoding characters.
    let words: Box<dyn Iterator<Item = &[u8]>> = if s.is_ascii() {
        Box::new(
            s.as_bytes()
                .split(|b| matches!(b, b'\t'..=b'\r' | b' '))
                .filter(|w| !w.is_empty()),
        )
    } else {
        Box::new(s.split_whitespace().map(str::as_bytes))
    };
    words
        .take(20_000)
        .filter(|b| {
            b.len() >= 7
                && b.len() <= 40
                && b.iter().step_by(2).all(u8::is_ascii_alphabetic)
                && b.iter().skip(1).step_by(2).all(|c| b"._-*|,".contains(c))
                && b.iter()
                    .skip(1)
                    .step_by(2)
                    .collect::<Vec<_>>()
                    .windows(2)
                    .all(|p| p[0] == p[1])
        })
        .count()
}

#[cfg(test)]
mod tests;
