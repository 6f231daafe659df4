//! The end-to-end roundtrip probe's protocol text (`postern probe`): the
//! uniquely marked message, the request to an HTTP send API, recognising
//! the marker in an IMAP SEARCH answer, and the result in Prometheus text
//! format for a Pushgateway. Pure functions; the runtime does the I/O.

/// The Pushgateway job the result is pushed under.
pub const JOB: &str = "email_roundtrip";

/// The header that carries the marker (the subject carries it too).
pub const HEADER: &str = "X-Postern-Probe";

/// A request body for Brevo's transactional API
/// (`POST https://api.brevo.com/v3/smtp/email`, header `api-key`), with the
/// placeholders [`fill_template`] replaces.
pub const BREVO_TEMPLATE: &str = r#"{"sender":{"email":"{{from}}"},"to":[{"email":"{{to}}"}],"subject":"{{subject}}","textContent":"{{text}}","headers":{"X-Postern-Probe":"{{marker}}"}}"#;

/// The marker of one probe run: the time and a random number.
pub fn marker(unix_secs: u64, nonce: u64) -> String {
    format!("postern-probe-{unix_secs}-{nonce:016x}")
}

/// The subject of the probe message for `marker`.
pub fn subject(marker: &str) -> String {
    format!("Postern roundtrip probe {marker}")
}

/// The body text of the probe message.
pub fn text(marker: &str) -> String {
    format!("End-to-end roundtrip probe {marker}; deleted by the probe when it arrives.")
}

/// The probe message (CRLF line ends, not dot-stuffed), dated `unix_secs`.
pub fn message(from: &str, to: &str, marker: &str, unix_secs: i64) -> Vec<u8> {
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{marker}@{domain}>\r\n\
         {HEADER}: {marker}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{}\r\n",
        subject(marker),
        crate::datetime::rfc5322(unix_secs),
        text(marker),
    )
    .into_bytes()
}

/// `s` as the inside of a JSON string (no quotes around it).
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Replaces `{{from}}`, `{{to}}`, `{{marker}}`, `{{subject}}` and
/// `{{text}}` in a JSON request template, each JSON-escaped.
pub fn fill_template(template: &str, from: &str, to: &str, marker: &str) -> String {
    template
        .replace("{{from}}", &json_escape(from))
        .replace("{{to}}", &json_escape(to))
        .replace("{{subject}}", &json_escape(&subject(marker)))
        .replace("{{text}}", &json_escape(&text(marker)))
        .replace("{{marker}}", &json_escape(marker))
}

/// `s` as an IMAP quoted string; `None` if it cannot be one (CR, LF, NUL
/// or non-ASCII).
pub fn imap_quote(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    Some(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The numbers of an untagged `* SEARCH` response line; `None` for any
/// other line.
pub fn search_hits(line: &str) -> Option<Vec<u32>> {
    let rest = line.trim_end_matches(['\r', '\n']);
    let rest = rest.strip_prefix("* ")?;
    let (word, nums) = rest.split_once(' ').unwrap_or((rest, ""));
    if !word.eq_ignore_ascii_case("SEARCH") {
        return None;
    }
    Some(
        nums.split_ascii_whitespace()
            .map_while(|n| n.parse().ok())
            .collect(),
    )
}

/// How a tagged IMAP response line for `tag` ended: `Some(true)` for OK,
/// `Some(false)` for NO or BAD, `None` if it is not that tag's line.
pub fn tagged_status(line: &str, tag: &str) -> Option<bool> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    let word = rest.split(' ').next().unwrap_or("");
    Some(word.eq_ignore_ascii_case("OK"))
}

/// One probe run's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Whether the message came back (and was deleted).
    pub success: bool,
    /// From sending to finding it, in seconds.
    pub duration_secs: f64,
    /// When the run ended, as a Unix time.
    pub finished_unix: u64,
}

/// The Pushgateway body (Prometheus text format 0.0.4). A failure pushes
/// only `email_roundtrip_success 0`: with a POST the Pushgateway keeps the
/// group's other metrics, so the last success's time survives.
pub fn pushgateway_body(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("# HELP email_roundtrip_success Whether the last roundtrip probe succeeded (1) or not (0).\n");
    s.push_str("# TYPE email_roundtrip_success gauge\n");
    s.push_str(&format!(
        "email_roundtrip_success {}\n",
        u8::from(r.success)
    ));
    if r.success {
        s.push_str("# HELP email_roundtrip_duration_seconds How long the last successful roundtrip took.\n");
        s.push_str("# TYPE email_roundtrip_duration_seconds gauge\n");
        s.push_str(&format!(
            "email_roundtrip_duration_seconds {:.3}\n",
            r.duration_secs
        ));
        s.push_str("# HELP email_roundtrip_last_success_timestamp When the last roundtrip succeeded (Unix time).\n");
        s.push_str("# TYPE email_roundtrip_last_success_timestamp gauge\n");
        s.push_str(&format!(
            "email_roundtrip_last_success_timestamp {}\n",
            r.finished_unix
        ));
    }
    s
}

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub tls: bool,
    /// The host (brackets of an IPv6 literal removed).
    pub host: String,
    /// The port (80 or 443 unless given).
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
}

/// Parses an `http://` or `https://` URL (no user info).
pub fn parse_url(s: &str) -> Option<Url> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        (true, s.strip_prefix("https://")?)
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        return None;
    }
    let default = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Some(Url {
        tls,
        host,
        port,
        path,
    })
}

/// Appends `/job/<job>` to a Pushgateway base URL's path.
pub fn pushgateway_url(base: &Url, job: &str) -> Url {
    let mut u = base.clone();
    let trimmed = u.path.trim_end_matches('/');
    u.path = format!("{trimmed}/metrics/job/{job}");
    u
}

/// An HTTP/1.1 request (`Connection: close`), with `headers` and a body.
pub fn http_request(method: &str, url: &Url, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut r = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: postern-probe\r\nConnection: close\r\n",
        url.path, url.port
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The status code of an HTTP response (its first line).
pub fn http_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.trim().parse().ok()
}

/// Whether `response` is a whole HTTP response by its `Content-Length`
/// (its head and that many bytes of body). `false` when it has no
/// `Content-Length`: then it ends when the server closes.
pub fn http_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    });
    length.is_some_and(|n| response.len() - (end + 4) >= n)
}

/// Whether a header value or path is safe to put on one request line.
pub fn one_line(s: &str) -> bool {
    !s.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_the_marker_in_subject_and_header() {
        let m = marker(1_700_000_000, 0xabc);
        assert_eq!(m, "postern-probe-1700000000-0000000000000abc");
        let msg = String::from_utf8(message("probe@example.com", "a@example.com", &m, 0)).unwrap();
        assert!(msg.contains(&format!("\r\nSubject: Postern roundtrip probe {m}\r\n")));
        assert!(msg.contains(&format!("\r\nX-Postern-Probe: {m}\r\n")));
        assert!(msg.contains(&format!("Message-ID: <{m}@example.com>")));
        assert!(msg.ends_with("\r\n") && !msg.contains("\n\n") && !msg.contains("\r\r"));
    }

    #[test]
    fn templates_are_filled_json_escaped() {
        let body = fill_template(BREVO_TEMPLATE, "p\"x@example.com", "a@example.com", "m1");
        assert!(body.contains(r#""sender":{"email":"p\"x@example.com"}"#));
        assert!(body.contains(r#""X-Postern-Probe":"m1""#));
        assert!(body.contains(r#""subject":"Postern roundtrip probe m1""#));
        assert!(!body.contains("{{"));
        assert_eq!(json_escape("a\u{1}\n"), "a\\u0001\\n");
    }

    #[test]
    fn search_answers_and_tagged_lines_are_recognised() {
        assert_eq!(search_hits("* SEARCH 4 17\r\n"), Some(vec![4, 17]));
        assert_eq!(search_hits("* SEARCH\r\n"), Some(vec![]));
        assert_eq!(search_hits("* search 2"), Some(vec![2]));
        assert_eq!(search_hits("* 3 EXISTS"), None);
        assert_eq!(search_hits("a3 OK SEARCH completed"), None);
        assert_eq!(tagged_status("a3 OK done", "a3"), Some(true));
        assert_eq!(
            tagged_status("a3 NO [AUTHENTICATIONFAILED] no", "a3"),
            Some(false)
        );
        assert_eq!(tagged_status("a31 OK", "a3"), None);
        assert_eq!(tagged_status("* OK", "a3"), None);
        assert_eq!(imap_quote(r#"p"w\"#), Some(r#""p\"w\\""#.to_owned()));
        assert_eq!(imap_quote("a\r\nb"), None);
    }

    #[test]
    fn pushgateway_bodies() {
        let ok = pushgateway_body(&Report {
            success: true,
            duration_secs: 2.5,
            finished_unix: 1_700_000_000,
        });
        assert!(ok.contains("\nemail_roundtrip_success 1\n"));
        assert!(ok.contains("\nemail_roundtrip_duration_seconds 2.500\n"));
        assert!(ok.contains("\nemail_roundtrip_last_success_timestamp 1700000000\n"));
        let failed = pushgateway_body(&Report {
            success: false,
            duration_secs: 9.0,
            finished_unix: 1,
        });
        assert!(failed.contains("\nemail_roundtrip_success 0\n"));
        assert!(!failed.contains("last_success"));
    }

    #[test]
    fn urls_and_requests() {
        let u = parse_url("http://127.0.0.1:9091").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 9091, "/")
        );
        assert_eq!(
            pushgateway_url(&u, JOB).path,
            "/metrics/job/email_roundtrip"
        );
        let k = parse_url("https://kuma.example/api/push/x?status=up&msg=OK").unwrap();
        assert_eq!(
            (k.port, k.path.as_str()),
            (443, "/api/push/x?status=up&msg=OK")
        );
        let v6 = parse_url("http://[::1]:8080/x").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8080));
        assert!(parse_url("ftp://x").is_none());
        assert!(parse_url("http://u@h/").is_none());
        assert!(parse_url("http://h:99999/").is_none());
        let req = http_request("POST", &u, &[("api-key", "k")], b"{}");
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("POST / HTTP/1.1\r\nHost: 127.0.0.1:9091\r\n"));
        assert!(req.contains("\r\napi-key: k\r\nContent-Length: 2\r\n\r\n{}"));
        assert_eq!(http_status(b"HTTP/1.1 202 Accepted\r\n\r\n"), Some(202));
        assert_eq!(http_status(b"garbage"), None);
        assert!(http_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!http_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok"
        ));
        assert!(!http_complete(b"HTTP/1.1 200 OK\r\n\r\nok"));
        assert!(!http_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"));
    }
}
