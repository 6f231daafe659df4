//! Generic signs of bulk and unsolicited mail that need no learning: the
//! kind of checks SpamAssassin and Rspamd also make (shouting subjects,
//! money and "remove me" phrases, missing or undisclosed recipients,
//! forged or odd Message-IDs, a Date far from the time the message was
//! received, bulk-mailing tools, forged Outlook/Eudora headers, numeric
//! senders, shouting bodies, URLs with IP hosts or behind shorteners, HTML
//! with big fonts, many colours or images and little text). Written from
//! what such filters are known to check, not from their rule files.
//!
//! Each sign gives a few points ([`points`]); no single one reaches the
//! Junk threshold, so a message needs several to be junked before its
//! user's classifier has learned. Bounded: the phrase and case scans read
//! at most [`MAX_SCAN_TEXT`] bytes of text.

use super::html;
use mail_parser::{DateTime, HeaderValue, Message};

/// Bytes of decoded text scanned for phrases and case.
pub const MAX_SCAN_TEXT: usize = 32 * 1024;

/// What the generic signs found in a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signs {
    /// The subject shouts: nearly every letter upper-case.
    pub subject_caps: bool,
    /// Three or more `!` (or `!!`) in the subject.
    pub subject_exclaim: bool,
    /// A `$` sign in the subject.
    pub subject_money: bool,
    /// The subject starts with the advertising tag `ADV`.
    pub subject_adv: bool,
    /// No `To:` field (a token for the classifier, no points: on this
    /// corpus more ham than spam lacks it).
    pub missing_to: bool,
    /// `To:` names undisclosed recipients, or holds no address at all.
    pub undisclosed: bool,
    /// No `From:` field, or one without an address.
    pub missing_from: bool,
    /// The From local part is only digits.
    pub from_digits: bool,
    /// A Message-ID without `<`, `>` or `@`.
    pub bad_message_id: bool,
    /// A `Date:` that does not parse.
    pub bad_date: bool,
    /// The Date is more than 3 hours after the newest `Received:` date.
    pub date_future: bool,
    /// The Date is more than 4 days before the newest `Received:` date.
    pub date_past: bool,
    /// `X-Mailer` names a known bulk-mailing tool.
    pub bulk_mailer: bool,
    /// Claims Outlook Express without the header it always writes, or
    /// Eudora with a Message-ID it never writes.
    pub forged_mua: bool,
    /// `X-Priority: 1` or `X-MSMail-Priority: High`.
    pub priority_high: bool,
    /// Raw 8-bit bytes in the Subject or From (not MIME-encoded).
    pub raw_8bit_header: bool,
    /// An HTML message without the `MIME-Version` field MIME requires.
    pub html_no_mime: bool,
    /// Raw 8-bit body text in a message without `MIME-Version` (a
    /// message that is not MIME must be US-ASCII, RFC 5322 2.3).
    pub body_8bit_no_mime: bool,
    /// Text parts sent base64-encoded.
    pub base64_text: bool,
    /// Share of upper-case letters in the text, in percent (0 when short).
    pub uppercase_pct: u8,
    /// Distinct bulk-mail phrases in the text ("click here", "remove").
    pub phrases: u8,
    /// A "to be removed" / opt-out sentence (a token for the classifier,
    /// no points: every lawful newsletter carries one, and on the
    /// SpamAssassin corpus its points junked more newsletters than they
    /// caught spam).
    pub remove_phrase: bool,
    /// A URL whose host is an IP address.
    pub ip_url: bool,
    /// A URL behind a well-known shortener.
    pub short_url: bool,
    /// A URL with a user part (`http://bank.com@other.host/`).
    pub userinfo_url: bool,
    /// HTML with big fonts.
    pub big_font: bool,
    /// HTML with many font colours.
    pub many_colours: bool,
    /// HTML made of images with hardly any text.
    pub image_only: bool,
    /// An HTML form or script.
    pub form_or_script: bool,
}

/// The signs' points (each well under the Junk threshold).
pub fn points(s: &Signs) -> Vec<(&'static str, f64)> {
    let mut r = Vec::new();
    let mut add = |on: bool, name: &'static str, pts: f64| {
        if on {
            r.push((name, pts));
        }
    };
    add(s.subject_caps, "SUBJ_ALL_CAPS", 1.0);
    add(s.subject_exclaim, "SUBJ_EXCLAIM", 1.0);
    add(s.subject_money, "SUBJ_DOLLAR", 1.0);
    add(s.subject_adv, "SUBJ_ADV", 2.5);
    add(s.undisclosed, "UNDISC_RECIPS", 1.5);
    add(s.missing_from, "MISSING_FROM", 1.5);
    add(s.from_digits, "FROM_LOCAL_DIGITS", 1.5);
    add(s.bad_message_id, "INVALID_MSGID", 2.0);
    add(s.bad_date, "INVALID_DATE", 2.0);
    add(s.date_future, "DATE_IN_FUTURE", 2.0);
    add(s.date_past, "DATE_IN_PAST", 0.5);
    add(s.bulk_mailer, "BULK_MAILER", 2.5);
    add(s.forged_mua, "FORGED_MUA", 1.0);
    add(s.priority_high, "PRIORITY_HIGH", 1.0);
    add(s.raw_8bit_header, "HEADER_8BIT", 1.0);
    add(s.html_no_mime, "HTML_NO_MIME_VERSION", 1.5);
    add(s.body_8bit_no_mime, "BODY_8BIT_NO_MIME", 2.0);
    add(s.base64_text, "BASE64_TEXT", 1.0);
    add((50..75).contains(&s.uppercase_pct), "UPPERCASE_50_75", 1.0);
    add(s.uppercase_pct >= 75, "UPPERCASE_75_100", 2.0);
    add((2..4).contains(&s.phrases), "BULK_PHRASES_2", 1.0);
    add((4..7).contains(&s.phrases), "BULK_PHRASES_4", 2.0);
    add(s.phrases >= 7, "BULK_PHRASES_7", 3.0);
    add(s.ip_url, "URL_IP_HOST", 2.0);
    add(s.short_url, "URL_SHORTENER", 0.5);
    add(s.userinfo_url, "URL_USERINFO", 2.0);
    add(s.big_font, "HTML_BIG_FONT", 0.5);
    add(s.many_colours, "HTML_COLOURS", 0.3);
    add(s.image_only, "HTML_IMAGE_ONLY", 1.5);
    add(s.form_or_script, "HTML_FORM_SCRIPT", 0.5);
    r
}

/// Tokens for the classifier from the signs (so that it learns which of
/// them this user's spam shows).
pub fn tokens(s: &Signs) -> Vec<&'static str> {
    let mut t: Vec<&'static str> = points(s).into_iter().map(|(n, _)| n).collect();
    if s.missing_to {
        t.push("MISSING_TO");
    }
    if s.remove_phrase {
        t.push("REMOVE_PHRASE");
    }
    t
}

/// X-Mailer values of bulk-mailing tools (lower-case substrings).
const BULK_MAILERS: &[&str] = &[
    "group mail",
    "groupmail",
    "mass mail",
    "massmail",
    "mass mailer",
    "bulk mail",
    "bulkmail",
    "mailking",
    "emailer platinum",
    "avalanche",
    "floodgate",
    "aureate",
    "dm mailer",
    "worldmerge",
    "send-safe",
    "sendsafe",
    "atomic mail",
    "advanced mass sender",
    "express mail sender",
    "mailloop",
    "stealth mailer",
    "e-mail magnet",
    "extractor",
    "ultimate mailer",
    "direct email",
    "mailer pro",
];

/// URL shorteners.
const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "goo.gl",
    "t.co",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "t.ly",
    "rb.gy",
    "v.gd",
];

/// Phrases of bulk and unsolicited mail (lower-case, matched in the
/// lower-cased text). Each counts once.
const PHRASES: &[&str] = &[
    "click here",
    "act now",
    "limited time",
    "order now",
    "call now",
    "order today",
    "buy now",
    "apply now",
    "don't delay",
    "do not delay",
    "offer expires",
    "while supplies last",
    "once in a lifetime",
    "satisfaction guaranteed",
    "money back",
    "no obligation",
    "risk free",
    "risk-free",
    "100% free",
    "100% guaranteed",
    "dear friend",
    "you have been selected",
    "congratulations",
    "million dollars",
    "make money",
    "extra income",
    "earn extra",
    "financial freedom",
    "work from home",
    "from your home",
    "cash bonus",
    "credit card",
    "lowest rate",
    "save up to",
    "double your",
    "no cost",
    "free gift",
    "free trial",
    "special promotion",
    "not spam",
    "bulk email",
    "this is a one-time",
    "one time mailing",
    "you are receiving this",
    "you received this",
    "opt-in",
    "opted in",
    "$$$",
    "amazing",
    "incredible",
    "guaranteed",
    "winner",
    "investment",
    "mortgage",
    "refinance",
    "debt",
    "lose weight",
    "viagra",
    "no catch",
    "unlimited",
    "toll free",
    "toll-free",
    "per week",
    "per month",
];

/// "Remove me" sentences.
const REMOVE: &[&str] = &[
    "to be removed",
    "be removed from",
    "to remove yourself",
    "remove yourself",
    "wish to be removed",
    "removal instructions",
    "remove me",
    "with remove in the subject",
    "with \"remove\"",
    "subject \"remove\"",
    "subject line \"remove\"",
    "to opt out",
    "to opt-out",
    "opt out of",
    "no longer wish to receive",
    "not wish to receive",
    "do not want to receive",
    "under bill s.1618",
    "s. 1618",
];

/// Raw 8-bit body bytes that make [`Signs::body_8bit_no_mime`] (a stray
/// one or two are a mistake, not a sign).
const MIN_8BIT_BODY: usize = 20;

/// Where the body starts: after the first empty line.
fn header_end(raw: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(raw, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The first [`MAX_SCAN_TEXT`] characters of `s`, ASCII letters in
/// lower case (other characters unchanged).
fn lower_ascii(s: &str) -> String {
    // No more characters than bytes: a short text needs no counting.
    let end = if s.len() <= MAX_SCAN_TEXT {
        s.len()
    } else {
        s.char_indices()
            .nth(MAX_SCAN_TEXT)
            .map_or(s.len(), |(i, _)| i)
    };
    s[..end].to_ascii_lowercase()
}

/// The bit of a phrase set where [`REMOVE`] starts: [`PHRASES`] take
/// bits 0 to 63, so one pass over the text finds both ([`phrases_in`]).
const REMOVE_BIT: u32 = 64;

/// The phrase of bit `k` of a phrase set.
const fn phrase_at(k: u32) -> Option<&'static str> {
    let (list, i) = if k < REMOVE_BIT {
        (PHRASES, k as usize)
    } else {
        (REMOVE, (k - REMOVE_BIT) as usize)
    };
    if i < list.len() {
        Some(list[i])
    } else {
        None
    }
}

/// Per first byte, the phrases (bits) starting with it.
const PHRASE_INDEX: [u128; 256] = {
    assert!(PHRASES.len() <= REMOVE_BIT as usize && REMOVE.len() <= 128 - REMOVE_BIT as usize);
    let mut index = [0u128; 256];
    let mut k = 0;
    while k < 128 {
        if let Some(p) = phrase_at(k) {
            index[p.as_bytes()[0] as usize] |= 1 << k;
        }
        k += 1;
    }
    index
};

/// The first two bytes of every phrase, as a set of 65,536 bits: most
/// places in a text start no phrase, and this says so without comparing.
const PAIR_SET: [u64; 1024] = {
    let mut set = [0u64; 1024];
    let mut k = 0;
    while k < 128 {
        if let Some(p) = phrase_at(k) {
            let p = p.as_bytes();
            assert!(p.len() >= 2);
            let pair = (p[0] as usize) << 8 | p[1] as usize;
            set[pair / 64] |= 1 << (pair % 64);
        }
        k += 1;
    }
    set
};

/// Which phrases of [`PHRASES`] and [`REMOVE`] occur in `text` (a set of
/// bits, see [`phrase_at`]), in one pass: at each byte only the phrases
/// starting with it and the next are compared (every phrase has two
/// bytes or more). The same as asking `contains` of each
/// (the phrases are ASCII, which never matches inside a UTF-8 sequence).
fn phrases_in(text: &[u8]) -> u128 {
    let mut found = 0u128;
    for (at, pair) in text.windows(2).enumerate() {
        let key = usize::from(pair[0]) << 8 | usize::from(pair[1]);
        if PAIR_SET[key / 64] >> (key % 64) & 1 == 0 {
            continue;
        }
        let mut candidates = PHRASE_INDEX[usize::from(pair[0])] & !found;
        while candidates != 0 {
            let k = candidates.trailing_zeros();
            candidates &= candidates - 1;
            if phrase_at(k).is_some_and(|p| text[at..].starts_with(p.as_bytes())) {
                found |= 1 << k;
            }
        }
    }
    found
}

/// The header signs.
pub fn headers(m: &Message<'_>, s: &mut Signs) {
    let raw = m.raw_message();
    let raw_value = |name: &str| -> Option<&[u8]> {
        m.headers()
            .iter()
            .take(200)
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
    };
    let text = |name: &str| -> Option<String> {
        raw_value(name).map(|b| String::from_utf8_lossy(&b[..b.len().min(2048)]).into_owned())
    };

    if let Some(subj) = m.subject() {
        let subj: String = subj.chars().take(500).collect();
        subject(&subj, s);
    }
    for f in ["subject", "from"] {
        if raw_value(f).is_some_and(|b| b.iter().any(|c| *c >= 0x80)) {
            s.raw_8bit_header = true;
        }
    }

    if raw_value("mime-version").is_none() {
        s.html_no_mime = text("content-type")
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
        let body = header_end(raw).map_or(&[][..], |at| &raw[at..]);
        let high = body
            .iter()
            .take(MAX_SCAN_TEXT)
            .filter(|b| **b >= 0x80)
            .count();
        s.body_8bit_no_mime = high >= MIN_8BIT_BODY;
    }

    match raw_value("to") {
        None => s.missing_to = true,
        Some(v) => {
            let v = String::from_utf8_lossy(v).to_ascii_lowercase();
            if (v.contains("undisclosed") && v.contains("recipient"))
                || v.contains("recipient list suppressed")
                || !v.contains('@')
            {
                s.undisclosed = true;
            }
        }
    }

    let from = match m.header("From") {
        Some(HeaderValue::Address(a)) => a
            .first()
            .and_then(|x| x.address.as_deref())
            .map(str::to_ascii_lowercase),
        _ => None,
    };
    match &from {
        None => s.missing_from = true,
        Some(addr) => {
            let local = addr.rsplit_once('@').map_or(addr.as_str(), |(l, _)| l);
            s.from_digits = !local.is_empty() && local.bytes().all(|b| b.is_ascii_digit());
        }
    }

    let mid = text("message-id");
    if let Some(v) = &mid {
        let v = v.trim();
        if !(v.starts_with('<') && v.ends_with('>') && v.contains('@')) {
            s.bad_message_id = true;
        }
    }

    dates(m, &text, s);

    let mailer = text("x-mailer").map(|v| v.to_ascii_lowercase());
    if let Some(x) = &mailer {
        s.bulk_mailer = BULK_MAILERS.iter().any(|b| x.contains(b));
        if x.contains("outlook express") && raw_value("x-mimeole").is_none() {
            s.forged_mua = true;
        }
        if x.contains("eudora") {
            // Eudora's Message-IDs are its version and a time stamp: <5.1.0.14.2.2002...@host>.
            let ok = mid.as_deref().is_some_and(|v| {
                let v = v.trim().trim_start_matches('<');
                v.bytes().next().is_some_and(|b| b.is_ascii_digit())
                    && v.as_bytes().get(1) == Some(&b'.')
            });
            s.forged_mua |= !ok;
        }
    }
    let high = |name: &str, what: &str| {
        text(name).is_some_and(|v| v.trim().to_ascii_lowercase().starts_with(what))
    };
    s.priority_high = high("x-priority", "1") || high("x-msmail-priority", "high");
}

fn subject(subj: &str, s: &mut Signs) {
    let letters: Vec<char> = subj.chars().filter(|c| c.is_alphabetic()).collect();
    let upper = letters.iter().filter(|c| c.is_uppercase()).count();
    let words = subj
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    s.subject_caps = letters.len() >= 10 && words >= 3 && upper * 100 >= letters.len() * 90;
    s.subject_exclaim = subj.matches('!').count() >= 3 || subj.contains("!!");
    s.subject_money = subj.contains('$');
    let t = subj
        .trim_start()
        .trim_start_matches(['[', '('])
        .to_ascii_lowercase();
    s.subject_adv = t.starts_with("adv:")
        || t.starts_with("adv ")
        || t.starts_with("adv]")
        || t.starts_with("adv)");
}

/// DATE_IN_FUTURE / DATE_IN_PAST against the newest `Received:` date
/// (the clock of the server that took the message in), and INVALID_DATE.
fn dates(m: &Message<'_>, text: &dyn Fn(&str) -> Option<String>, s: &mut Signs) {
    let Some(raw_date) = text("date") else {
        return;
    };
    let Some(date) = DateTime::parse_rfc822(raw_date.trim()).filter(DateTime::is_valid) else {
        s.bad_date = true;
        return;
    };
    let _ = m;
    let received = text("received").and_then(|r| {
        let (_, d) = r.rsplit_once(';')?;
        DateTime::parse_rfc822(d.trim()).filter(DateTime::is_valid)
    });
    if let Some(r) = received {
        let diff = date.to_timestamp() - r.to_timestamp();
        s.date_future = diff > 3 * 3600;
        s.date_past = diff < -4 * 86_400;
    }
}

/// The signs of one part's decoded text (plain, or HTML turned to text).
pub fn text(t: &str, s: &mut Signs, letters: &mut (usize, usize)) {
    let t = if t.len() > MAX_SCAN_TEXT {
        let mut end = MAX_SCAN_TEXT;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        &t[..end]
    } else {
        t
    };
    if t.is_ascii() {
        for b in t.bytes().filter(u8::is_ascii_alphabetic) {
            letters.0 += 1;
            letters.1 += usize::from(b.is_ascii_uppercase());
        }
    } else {
        for c in t.chars().filter(|c| c.is_alphabetic()) {
            letters.0 += 1;
            letters.1 += usize::from(c.is_uppercase());
        }
    }
    let found = phrases_in(lower_ascii(t).as_bytes());
    let phrases = found & ((1u128 << REMOVE_BIT) - 1);
    let n = phrases.count_ones();
    s.phrases = s.phrases.saturating_add(u8::try_from(n).unwrap_or(u8::MAX));
    s.remove_phrase |= found >> REMOVE_BIT != 0;
}

/// The signs of the URL hosts found in a message.
pub fn url(u: &str, s: &mut Signs) {
    let lower = u.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or(&lower);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        s.userinfo_url = true;
    }
    if let Some(h) = html::url_host(&lower) {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok()
            || (bare.bytes().all(|b| b.is_ascii_digit()) && !bare.is_empty())
        {
            s.ip_url = true;
        }
        s.short_url |= SHORTENERS.contains(&bare);
    }
}

/// The signs of a raw HTML part: fonts, colours, images, forms, scripts;
/// `text_len` is the length of its text.
pub fn html_markup(h: &str, text_len: usize, s: &mut Signs) {
    let lower = lower_ascii(h);
    let lower = lower.as_str();
    let mut colours: Vec<&str> = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("color") {
        let start = at + i + 5;
        at = start;
        let v = lower[start..]
            .trim_start_matches([' ', '=', ':', '"', '\''])
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .next()
            .unwrap_or("");
        if !v.is_empty() && !colours.contains(&v) {
            colours.push(v);
        }
        if colours.len() > 16 {
            break;
        }
    }
    s.many_colours |= colours.len() >= 4;
    s.big_font |= [
        "size=\"+3",
        "size=+3",
        "size=\"+4",
        "size=+4",
        "size=\"6",
        "size=6",
        "size=\"7",
        "size=7",
    ]
    .iter()
    .any(|p| lower.contains(p))
        || big_css_font(lower);
    let images = lower.matches("<img").count();
    s.image_only |= images >= 1 && text_len < 200;
    s.form_or_script |= lower.contains("<form") || lower.contains("<script");
}

/// A CSS `font-size` of 24px/18pt or more.
fn big_css_font(lower: &str) -> bool {
    let mut at = 0;
    let mut n = 0;
    while let Some(i) = lower[at..].find("font-size") {
        n += 1;
        if n > 100 {
            return false;
        }
        let start = at + i + 9;
        at = start;
        let v = lower[start..].trim_start_matches([' ', ':']);
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        let unit = &v[digits.len()..];
        if let Ok(size) = digits.parse::<u32>() {
            if (unit.starts_with("px") && size >= 24) || (unit.starts_with("pt") && size >= 18) {
                return true;
            }
        }
    }
    false
}

/// Sets the upper-case share once every part's text is counted.
pub fn finish(s: &mut Signs, letters: (usize, usize)) {
    if letters.0 >= 200 {
        s.uppercase_pct = u8::try_from(letters.1 * 100 / letters.0).unwrap_or(100);
    }
}

#[cfg(test)]
mod tests;
