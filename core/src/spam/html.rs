//! What the rules look for in HTML, by a bounded scan of the markup (no
//! DOM; malformed HTML only makes the scan find less): links whose text
//! shows another domain than their target, and obfuscation (hidden text,
//! letters written as numeric character references).

/// The most anchors looked at in one part.
const MAX_ANCHORS: usize = 500;

/// Facts about one HTML part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HtmlFacts {
    /// Anchors whose visible text names another domain than the href.
    pub mismatched_links: usize,
    /// Letters written as `&#NN;` / `&#xNN;`.
    pub numeric_letters: usize,
    /// Styles that hide text (`display:none`, `font-size:0`, `visibility:hidden`).
    pub hidden_text: usize,
    /// The link targets' hosts (at most [`MAX_ANCHORS`]).
    pub hosts: Vec<String>,
    /// Links with a user part before their host (`http://bank.com@evil/`).
    pub userinfo_links: usize,
}

/// Scans `html`.
pub fn scan(html: &str) -> HtmlFacts {
    let mut f = HtmlFacts::default();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    let mut anchors = 0;
    while let Some(i) = lower[at..].find("<a") {
        let start = at + i;
        at = start + 2;
        anchors += 1;
        if anchors > MAX_ANCHORS {
            break;
        }
        let Some(tag_end) = window(&lower, start, 2048).find('>').map(|e| start + e) else {
            continue;
        };
        let tag = &lower[start..tag_end];
        let Some(href) = attr(tag, "href") else {
            continue;
        };
        let Some(target) = url_host(&href) else {
            continue;
        };
        let authority = href
            .trim()
            .split_once("//")
            .map_or("", |(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""));
        if authority.contains('@') {
            f.userinfo_links += 1;
        }
        let close = window(&lower, tag_end, 4096)
            .find("</a")
            .map_or(tag_end + 1, |e| tag_end + e);
        let text = strip_tags(&lower[tag_end + 1..close.max(tag_end + 1)]);
        if let Some(shown) = shown_domain(&text) {
            if registrable(&shown) != registrable(&target) {
                f.mismatched_links += 1;
            }
        }
        if f.hosts.len() < MAX_ANCHORS {
            f.hosts.push(target);
        }
        at = tag_end;
    }
    // Letters as numeric character references.
    let b = lower.as_bytes();
    let mut i = 0;
    while i + 3 < b.len() {
        if b[i] == b'&' && b[i + 1] == b'#' {
            let (hex, s) = if b[i + 2] == b'x' {
                (true, i + 3)
            } else {
                (false, i + 2)
            };
            let mut j = s;
            while j < b.len() && j - s < 8 && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            if j < b.len() && b[j] == b';' && j > s {
                let digits = std::str::from_utf8(&b[s..j]).unwrap_or("");
                let v = u32::from_str_radix(digits, if hex { 16 } else { 10 }).ok();
                if v.and_then(char::from_u32)
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    f.numeric_letters += 1;
                }
                i = j;
            }
        }
        i += 1;
    }
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    for pat in [
        "display:none",
        "font-size:0px",
        "font-size:0;",
        "font-size:1px",
        "visibility:hidden",
    ] {
        f.hidden_text += compact.matches(pat).count().min(100);
    }
    f
}

/// `html` without its `<style>` and `<script>` elements: what a reader
/// never sees (style sheets, code) is not text to score or learn. An
/// element left open runs to the end, as a browser reads it. One pass.
pub fn without_style_and_script(html: &str) -> std::borrow::Cow<'_, str> {
    let lower = html.to_ascii_lowercase();
    let mut out = String::new();
    let (mut copied, mut at) = (0, 0);
    while let Some(i) = lower[at..].find('<') {
        let start = at + i;
        let rest = &lower[start + 1..];
        let name = ["style", "script"].into_iter().find(|n| {
            rest.strip_prefix(n).is_some_and(|after| {
                after.starts_with(|c: char| c == '>' || c == '/' || c.is_ascii_whitespace())
            })
        });
        let Some(name) = name else {
            at = start + 1;
            continue;
        };
        let close = format!("</{name}");
        let end = lower[start..]
            .find(&close)
            .and_then(|c| lower[start + c..].find('>').map(|e| start + c + e + 1))
            .unwrap_or(lower.len());
        out.push_str(&html[copied..start]);
        out.push(' ');
        copied = end;
        at = end;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(html);
    }
    out.push_str(&html[copied..]);
    std::borrow::Cow::Owned(out)
}

/// At most `n` bytes of `s` from `at` (cut back to a character boundary).
fn window(s: &str, at: usize, n: usize) -> &str {
    let mut end = at.saturating_add(n).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(at..end).unwrap_or("")
}

/// The value of attribute `name` in a (lower-cased) tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut at = 0;
    while let Some(i) = tag[at..].find(name) {
        let p = at + i;
        at = p + name.len();
        let before = tag[..p].chars().last();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[at..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let v = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest.split(|c: char| c.is_whitespace()).next().unwrap_or(""),
        };
        return Some(v.trim().to_owned());
    }
    None
}

/// The host of an http(s) URL.
pub fn url_host(url: &str) -> Option<String> {
    let u = url.trim();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))?;
    let host = rest
        .split(['/', '?', '#', ':', '"', '\'', '>', '<', ' '])
        .next()?;
    let host = host.rsplit('@').next()?.trim_end_matches('.');
    (host.contains('.') && !host.is_empty()).then(|| host.to_owned())
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(1024));
    let mut in_tag = false;
    for c in s.chars().take(2048) {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A domain the link text shows (`www.bank.com`, `https://bank.com/...`).
fn shown_domain(text: &str) -> Option<String> {
    for w in text.split_whitespace() {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let host = url_host(w).or_else(|| {
            let h = w.split('/').next().unwrap_or("");
            let labels: Vec<&str> = h.split('.').collect();
            let tld = labels.last().copied().unwrap_or("");
            (labels.len() >= 2
                && (2..=6).contains(&tld.len())
                && tld.chars().all(|c| c.is_ascii_alphabetic())
                && labels.iter().all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
                && (h.starts_with("www.")
                    || w.contains('/')
                    || ["com", "net", "org"].contains(&tld)))
            .then(|| h.to_owned())
        });
        if host.is_some() {
            return host;
        }
    }
    None
}

/// The last two labels of a host (three under a two-letter country code
/// with a short second level: `bank.co.uk`). Crude, without the public
/// suffix list.
pub fn registrable(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    let keep = if n >= 3 && labels[n - 1].len() == 2 && labels[n - 2].len() <= 3 {
        3
    } else {
        2
    };
    labels[n.saturating_sub(keep)..].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mismatched_links() {
        let f = scan(
            r#"<p>Log in at <A HREF="http://evil.example.ru/x">https://www.paypal.com/login</a></p>"#,
        );
        assert_eq!(f.mismatched_links, 1);
        assert_eq!(f.hosts, vec!["evil.example.ru".to_owned()]);
        let f = scan(
            r#"<a href="https://www.paypal.com/x">www.paypal.com</a> <a href='http://a.b.co.uk'>shop.b.co.uk</a>"#,
        );
        assert_eq!(f.mismatched_links, 0);
        let f = scan(r#"<a href="http://t.example.com/click">Click here</a>"#);
        assert_eq!(f.mismatched_links, 0);
    }

    #[test]
    fn finds_obfuscation_and_survives_garbage() {
        let f = scan("&#86;&#105;&#97;&#103;&#x72;&#x61; <span style='display: none'>x</span>");
        assert_eq!(f.numeric_letters, 6);
        assert_eq!(f.hidden_text, 1);
        for s in [
            "<a",
            "<a href=",
            "<a href='http://",
            "&#",
            "&#x;",
            "<a href=\"http://x.com\">",
            "<<<a>>>",
        ] {
            let _ = scan(s);
        }
        let big = "<a href=http://x.com>y.org</a>".repeat(10_000);
        assert_eq!(scan(&big).mismatched_links, MAX_ANCHORS);
    }

    #[test]
    fn style_and_script_are_not_text() {
        let h = "<HTML><STYLE type=\"text/css\">.Big {color:#FF0000}</Style><p>Hello</p>\
                 <script>var click = 'here';</SCRIPT >\u{e9}t\u{e9}<styles>kept</styles><style>open";
        let v = without_style_and_script(h);
        assert_eq!(
            v, "<HTML> <p>Hello</p> \u{e9}t\u{e9}<styles>kept</styles> ",
            "an element left open runs to the end; <styles> is not <style>"
        );
        let plain = "<p>No style here, <b>only</b> text</p>";
        assert!(matches!(
            without_style_and_script(plain),
            std::borrow::Cow::Borrowed(_)
        ));
        for s in ["<", "<style", "<script>", "</style>", "<style>x</style"] {
            let _ = without_style_and_script(s);
        }
    }
}
