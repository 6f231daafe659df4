//! A small HTTP/1.1 request reader and response writer for the monitoring
//! listener (`/metrics`, `/healthz`, `/readyz`), RFC 9112.
//!
//! One request per connection: the runtime reads into a bounded buffer,
//! calls [`read_request`] after each read until it says
//! [`Parse::Complete`] or [`Parse::Bad`], answers with [`response`] and
//! closes. Every line, the number of header fields and the whole head have
//! a hard limit ([`HttpLimits`]); only `GET` and `HEAD` are served (other
//! methods get 405). Request bodies are never read: a GET with a body is
//! answered and the connection closed.

use std::fmt::Write as _;

/// The limits of a request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request line or header line, CRLF included.
    pub max_line: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Most bytes in the whole head (request line, fields, empty line).
    pub max_head: usize,
}

impl Default for HttpLimits {
    /// 4 KiB lines, 64 fields, 16 KiB in all: ample for Prometheus, curl
    /// and a kubelet probe (which send a handful of short fields).
    fn default() -> Self {
        Self {
            max_line: 4096,
            max_headers: 64,
            max_head: 16 * 1024,
        }
    }
}

/// A request method that is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the same head as GET, no body.
    Head,
}

/// A request head that was read in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path of the origin-form target (before any `?`).
    pub path: String,
    /// The query (after `?`), if any.
    pub query: Option<String>,
    /// Bytes the head took (what follows is a body or another request).
    pub head_len: usize,
}

/// Why a request is refused, each with its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The request line is longer than the limit (414).
    RequestLineTooLong,
    /// A header line is longer than the limit (431).
    HeaderLineTooLong,
    /// More header fields than the limit (431).
    TooManyHeaders,
    /// The head is larger than the limit (431).
    HeadTooLarge,
    /// A method other than GET and HEAD (405).
    MethodNotAllowed,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
    /// Not HTTP/1.x, or a malformed line (400).
    Malformed,
}

impl Bad {
    /// The status this refusal is answered with.
    pub fn status(self) -> Status {
        match self {
            Bad::RequestLineTooLong => Status::UriTooLong,
            Bad::HeaderLineTooLong | Bad::TooManyHeaders | Bad::HeadTooLarge => {
                Status::HeaderFieldsTooLarge
            }
            Bad::MethodNotAllowed => Status::MethodNotAllowed,
            Bad::VersionNotSupported => Status::VersionNotSupported,
            Bad::Malformed => Status::BadRequest,
        }
    }

    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Bad::RequestLineTooLong => "request_line_too_long",
            Bad::HeaderLineTooLong => "header_line_too_long",
            Bad::TooManyHeaders => "too_many_headers",
            Bad::HeadTooLarge => "head_too_large",
            Bad::MethodNotAllowed => "method_not_allowed",
            Bad::VersionNotSupported => "version_not_supported",
            Bad::Malformed => "malformed",
        }
    }
}

/// What [`read_request`] made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is complete.
    Complete(Request),
    /// The head is not complete yet, and within the limits: read more.
    Incomplete,
    /// The request is refused: answer `status()` and close.
    Bad(Bad),
}

/// Reads a request head from the start of `buf` (all bytes received on
/// the connection so far). Pure and stateless: call it again with the
/// longer buffer after each read. Never looks past the limits: with more
/// than `max_head` bytes and no end of head, the answer is `Bad`.
pub fn read_request(buf: &[u8], limits: &HttpLimits) -> Parse {
    let mut pos = 0;
    let mut request: Option<(Method, String, Option<String>)> = None;
    let mut headers = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let nl = rest.iter().position(|&b| b == b'\n');
        // Refuse a request line that can never become HTTP (binary junk, a
        // TLS ClientHello) before any length limit, so the verdict is the
        // same however the bytes were cut.
        // Only the bytes within the limits count: what lies past them is
        // never looked at.
        if request.is_none() {
            let seen = nl
                .unwrap_or(rest.len())
                .min(limits.max_line)
                .min(limits.max_head.saturating_sub(pos));
            if let Some(bad) = early_request_line_check(&rest[..seen]) {
                return Parse::Bad(bad);
            }
        }
        // A line is over its limit once it cannot fit (a partial line at
        // the limit still needs its LF), and so is the head. When both are,
        // the limit crossed at the earlier byte wins, so the verdict is the
        // same however the bytes were cut.
        let (len, line_over, head_over) = match nl {
            Some(nl) => (
                nl + 1,
                nl + 1 > limits.max_line,
                pos + nl + 1 > limits.max_head,
            ),
            None => (
                rest.len(),
                rest.len() >= limits.max_line,
                buf.len() >= limits.max_head,
            ),
        };
        if line_over && (!head_over || pos + limits.max_line <= limits.max_head) {
            return Parse::Bad(if request.is_none() {
                Bad::RequestLineTooLong
            } else {
                Bad::HeaderLineTooLong
            });
        }
        if head_over {
            return Parse::Bad(Bad::HeadTooLarge);
        }
        let Some(nl) = nl else {
            return Parse::Incomplete;
        };
        let end = pos + len;
        // The line without LF and an optional CR before it (RFC 9112 2.2
        // lets a recipient take a bare LF as a line end).
        let mut line = &rest[..nl];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        pos = end;
        match &request {
            None => {
                // RFC 9112 2.2: ignore at least one empty line before the
                // request line.
                if line.is_empty() && pos <= 2 {
                    continue;
                }
                match request_line(line) {
                    Ok(r) => request = Some(r),
                    Err(bad) => return Parse::Bad(bad),
                }
            }
            Some(_) if line.is_empty() => {
                let Some((method, path, query)) = request else {
                    return Parse::Bad(Bad::Malformed);
                };
                return Parse::Complete(Request {
                    method,
                    path,
                    query,
                    head_len: pos,
                });
            }
            Some(_) => {
                headers += 1;
                if headers > limits.max_headers {
                    return Parse::Bad(Bad::TooManyHeaders);
                }
                if !header_line_ok(line) {
                    return Parse::Bad(Bad::Malformed);
                }
            }
        }
    }
}

/// `tchar` of RFC 9110 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Refuses a partial request line that can never be valid (binary junk, a
/// TLS ClientHello), so such a client is answered at once.
fn early_request_line_check(line: &[u8]) -> Option<Bad> {
    let method_end = line.iter().position(|&b| b == b' ');
    let method = &line[..method_end.unwrap_or(line.len())];
    if !method.iter().all(|&b| is_tchar(b) || b == b'\r') {
        return Some(Bad::Malformed);
    }
    None
}

fn request_line(line: &[u8]) -> Result<(Method, String, Option<String>), Bad> {
    let text = std::str::from_utf8(line).map_err(|_| Bad::Malformed)?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad::Malformed);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Bad::Malformed);
    }
    let Some(v) = version.strip_prefix("HTTP/") else {
        return Err(Bad::Malformed);
    };
    let vb = v.as_bytes();
    if vb.len() != 3 || !vb[0].is_ascii_digit() || vb[1] != b'.' || !vb[2].is_ascii_digit() {
        return Err(Bad::Malformed);
    }
    if vb[0] != b'1' {
        return Err(Bad::VersionNotSupported);
    }
    // Origin form only; visible ASCII, no fragments.
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(Bad::Malformed);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(Bad::MethodNotAllowed),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    Ok((method, path, query))
}

/// `field-name ":" OWS field-value OWS`; no obsolete line folding.
fn header_line_ok(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    let value = &line[colon + 1..];
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && value
            .iter()
            .all(|&b| b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80)
}

/// The statuses the monitoring listener answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400.
    BadRequest,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 408: the head did not come in time.
    RequestTimeout,
    /// 414.
    UriTooLong,
    /// 431.
    HeaderFieldsTooLarge,
    /// 503: not ready, or no place for another connection.
    ServiceUnavailable,
    /// 505.
    VersionNotSupported,
}

impl Status {
    /// The code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 section 15).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::UriTooLong => "URI Too Long",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// Plain text, for probes and errors.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What the monitoring listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`: the Prometheus exposition.
    Metrics,
    /// `/healthz`: the process runs.
    Healthz,
    /// `/readyz`: the listeners, the mail store, the queue and the
    /// certificate are usable.
    Readyz,
    /// Anything else (404).
    NotFound,
}

/// The route of a request's path.
pub fn route(request: &Request) -> Route {
    match request.path.as_str() {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => Route::NotFound,
    }
}

/// A whole response: status line, `Content-Type`, `Content-Length`,
/// `Connection: close` (and `Allow` for 405), then the body unless
/// `head_only` (a HEAD request: the same head, no body).
pub fn response(status: Status, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        status.code(),
        status.reason(),
        content_type.replace(['\r', '\n'], " "),
        body.len()
    );
    if status == Status::MethodNotAllowed {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The response to a refused request: its status and a one-line body
/// naming why.
pub fn refusal(bad: Bad) -> Vec<u8> {
    let status = bad.status();
    let body = format!("{} {}: {}\n", status.code(), status.reason(), bad.as_str());
    response(status, TEXT_PLAIN, body.as_bytes(), false)
}

/// A plain-text response with a short body (`ok`, `not found`, the failed
/// readiness checks).
pub fn text(status: Status, body: &str, head_only: bool) -> Vec<u8> {
    response(status, TEXT_PLAIN, body.as_bytes(), head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Parse {
        read_request(s.as_bytes(), &HttpLimits::default())
    }

    #[test]
    fn a_prometheus_scrape_is_read_whole() {
        let req = "GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.45\r\nAccept: text/plain;version=0.0.4\r\n\r\n";
        match parse(req) {
            Parse::Complete(r) => {
                assert_eq!(r.method, Method::Get);
                assert_eq!(r.path, "/metrics");
                assert_eq!(r.query.as_deref(), Some("x=1"));
                assert_eq!(r.head_len, req.len());
                assert_eq!(route(&r), Route::Metrics);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_bare_lf_is_accepted() {
        let req = "HEAD /readyz HTTP/1.0\r\nHost: x\r\n\r\n";
        for i in 0..req.len() {
            assert_eq!(parse(&req[..i]), Parse::Incomplete, "prefix {i}");
        }
        assert!(matches!(parse(req), Parse::Complete(r) if r.method == Method::Head));
        assert!(matches!(
            parse("GET /healthz HTTP/1.1\nHost: x\n\n"),
            Parse::Complete(r) if route(&r) == Route::Healthz
        ));
    }

    #[test]
    fn methods_versions_and_junk_get_their_status() {
        assert_eq!(
            parse("POST /metrics HTTP/1.1\r\n\r\n"),
            Parse::Bad(Bad::MethodNotAllowed)
        );
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n"),
            Parse::Bad(Bad::VersionNotSupported)
        );
        assert_eq!(parse("GET / FTP/1.1\r\n\r\n"), Parse::Bad(Bad::Malformed));
        assert_eq!(parse("GET  / HTTP/1.1\r\n\r\n"), Parse::Bad(Bad::Malformed));
        assert_eq!(
            parse("GET http://x/ HTTP/1.1\r\n\r\n"),
            Parse::Bad(Bad::Malformed)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\n folded\r\n\r\n"),
            Parse::Bad(Bad::Malformed)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nNo colon\r\n\r\n"),
            Parse::Bad(Bad::Malformed)
        );
        // A TLS ClientHello is refused before its end.
        assert_eq!(
            read_request(&[0x16, 0x03, 0x01, 0x02], &HttpLimits::default()),
            Parse::Bad(Bad::Malformed)
        );
    }

    #[test]
    fn limits_are_enforced_before_the_end_of_a_line() {
        let l = HttpLimits {
            max_line: 64,
            max_headers: 3,
            max_head: 200,
        };
        let long = format!("GET /{} HTTP/1.1", "a".repeat(100));
        assert_eq!(
            read_request(long.as_bytes(), &l),
            Parse::Bad(Bad::RequestLineTooLong)
        );
        let hdr = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(100));
        assert_eq!(
            read_request(hdr.as_bytes(), &l),
            Parse::Bad(Bad::HeaderLineTooLong)
        );
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(
            read_request(many.as_bytes(), &l),
            Parse::Bad(Bad::TooManyHeaders)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nA: {}\r\nB: {}\r\nC: {}\r\n",
            "x".repeat(58),
            "y".repeat(58),
            "z".repeat(58)
        );
        assert_eq!(
            read_request(big.as_bytes(), &l),
            Parse::Bad(Bad::HeadTooLarge)
        );
        assert_eq!(Bad::HeadTooLarge.status().code(), 431);
    }

    #[test]
    fn responses_have_length_and_close() {
        let r = response(Status::Ok, TEXT_PLAIN, b"ok\n", false);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nok\n"
        );
        let h = text(Status::Ok, "ok\n", true);
        assert!(h.ends_with(
            b"Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
        let m = refusal(Bad::MethodNotAllowed);
        let m = String::from_utf8(m).expect("utf8");
        assert!(m.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{m}");
        assert!(m.contains("\r\nAllow: GET, HEAD\r\n"), "{m}");
    }
}
