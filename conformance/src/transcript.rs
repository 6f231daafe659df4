//! The transcript format: SMTP (and later IMAP) sessions written as
//! `C:` / `S:` lines with directives, replayed deterministically.
//!
//! ```text
//! # A comment. Header directives come first:
//! @listener submission        # mx (default) | submission
//! @tls starttls               # none | starttls (default) | implicit
//! @proxy required             # forbidden (default) | required
//! @trusted 10.0.20.0/24       # networks allowed to send a header (default 10.0.20.0/24)
//! @proxy-v1 allow             # accept the v1 text header too
//! @peer 10.0.20.5:40000       # the socket peer (default shown)
//! @local 10.0.20.1:25         # the socket's local address (default shown)
//! @set max_recipients=3       # any limit: max_line, max_recipients, max_message_size,
//!                             # hard_error_limit, command_timeout, data_timeout,
//!                             # max_pipelined, proxy_timeout, bare_newline, hostname;
//!                             # postscreen: greet_pause=2s greet_action=ignore|drop,
//!                             # pipelining=, non_smtp_command=, bare_newline_command=
//!                             # (ignore|drop: enables the test), postscreen_allow=NETS
//! @domains example.com        # the mock directory's local domains
//! @users alice@example.com    # its mailboxes
//! @catchall example.org       # domains whose unknown users are accepted
//! @password alice@example.com secret
//! @reject-sender spam@example.net
//! @rcpt-tempfail flaky@example.com
//!
//! # Then the session:
//! S: 220 mx.example.com ESMTP Postern
//! C: EHLO client.example      # a line; CRLF is added
//! C~ DATA\r\nraw\n            # raw bytes with escapes (\r \n \t \0 \\ \xHH), nothing added
//! @proxy-header v2 203.0.113.7:5555 10.0.20.1:25 crc   # a PROXY header as client bytes
//! @proxy-header v2-local | v1 TCP4 a b sp dp | hex 0d0a...
//! S: 250-mx.example.com       # one expected server line
//! E: message from=<a@example.net> to=<alice@example.com> size=12 proto=ESMTP
//! D: Subject: hi              # the stored message, line by line (all of it)
//! D~ Subject: hi\r\n          # or as one escaped string
//! @tls-established            # the handshake the session asked for is done
//! @advance 301s               # move the clock and fire the timer
//! @eof                        # the client closes
//! @store tempfail             # from now on: ok (default) | tempfail | reject
//! @connect refuse             # answer the connection question with 421
//! @auth tempfail              # the directory fails
//! @shutdown                   # the server is stopping (SIGTERM)
//! ```
//!
//! Consecutive client lines form one read (that is how pipelining and
//! STARTTLS injection are written); anything else delivers it first.
//! `S:` lines must match the server's output exactly and in order, with
//! nothing left over at the end. `E:` lines match events in order; the
//! events `message`, `starttls`, `close` must each be matched, the others
//! (`connect`, `mail`, `rcpt`, `auth`, `notice`, `tls-early`: the bytes
//! after a PROXY header handed to the TLS handshake) may be skipped.

use std::fmt::Write as _;

/// One parsed transcript line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Client bytes.
    Client(Vec<u8>),
    /// An expected server line (without CRLF).
    Server(String),
    /// An expected event summary.
    Event(String),
    /// Expected stored message content: one line (CRLF appended).
    DataLine(Vec<u8>),
    /// A directive with its argument.
    Directive(String, String),
}

/// A parsed transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Directives before the first session line.
    pub header: Vec<(String, String)>,
    /// The session, in order, with the 1-based source line of each step.
    pub steps: Vec<(usize, Step)>,
}

/// A transcript that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

const HEADER_DIRECTIVES: &[&str] = &[
    "listener",
    "tls",
    "proxy",
    "trusted",
    "proxy-v1",
    "peer",
    "local",
    "set",
    "admission",
    "domains",
    "users",
    "catchall",
    "password",
    "reject-sender",
    "rcpt-tempfail",
    "autotls",
    "user",
    "quota",
    "message",
    "separator",
    "plaintext-auth",
];

/// Parses a transcript.
pub fn parse(text: &str) -> Result<Transcript, ParseError> {
    let mut t = Transcript::default();
    let mut started = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let (tag, rest) = if raw.len() >= 2 {
            raw.split_at(2)
        } else {
            (raw, "")
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let step = match tag {
            "C:" => Step::Client(format!("{rest}\r\n").into_bytes()),
            "C~" => Step::Client(unescape(rest).map_err(err)?),
            "S:" => Step::Server(rest.to_owned()),
            "E:" => Step::Event(rest.to_owned()),
            "D:" => {
                let mut v = rest.as_bytes().to_vec();
                v.extend_from_slice(b"\r\n");
                Step::DataLine(v)
            }
            "D~" => Step::DataLine(unescape(rest).map_err(err)?),
            _ if raw.starts_with('@') => {
                let body = raw[1..].split(" #").next().unwrap_or("").trim();
                let (name, arg) = body.split_once(' ').unwrap_or((body, ""));
                if !started && HEADER_DIRECTIVES.contains(&name) {
                    t.header.push((name.to_owned(), arg.trim().to_owned()));
                    continue;
                }
                Step::Directive(name.to_owned(), arg.trim().to_owned())
            }
            _ => return Err(err(format!("unknown line {raw:?}"))),
        };
        started = true;
        t.steps.push((line_no, step));
    }
    Ok(t)
}

/// Decodes `\r \n \t \0 \\ \xHH` escapes.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let Some(&c) = b.get(i + 1) else {
            return Err("trailing backslash".into());
        };
        i += 2;
        match c {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
                i += 2;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// Writes bytes with the escapes [`unescape`] reads (for snapshots).
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let raw = b"a\r\n\x00\\\x7f.";
        assert_eq!(unescape(&escape(raw)).unwrap(), raw);
    }

    #[test]
    fn header_then_steps() {
        let t = parse("@listener submission\n# c\nS: 220 x\nC: EHLO y\n@advance 1s\n").unwrap();
        assert_eq!(
            t.header,
            vec![("listener".to_owned(), "submission".to_owned())]
        );
        assert_eq!(t.steps.len(), 3);
        assert!(parse("X: nope").is_err());
    }
}
