//! Framing IMAP commands (RFC 9051 section 4.3, RFC 7888) before any
//! parsing, with hard limits, as imap-codec's fragmentizer does.
//!
//! A command is lines joined by literals: `a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n`.
//! The framer finds where a whole command ends, tells when the client waits
//! for a continuation (`+ `) before sending a synchronising literal, and
//! refuses a line or literal over its limit before anything is buffered
//! for it. "Need more bytes" and "this is wrong" are different answers.

/// Framing limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// The longest line (between literals), CRLF included. Dovecot's
    /// `imap_max_line_length` is 64 KiB.
    pub max_line: usize,
    /// The largest literal in any command but APPEND.
    pub max_literal: u64,
    /// The largest literal in APPEND (the message size limit).
    pub max_append_literal: u64,
    /// The most literals in one command.
    pub max_literals: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append_literal: 50 * 1024 * 1024,
            max_literals: 64,
        }
    }
}

/// What the framer found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framed {
    /// More bytes are needed. `continuation` is true when the client has
    /// announced a synchronising literal and waits for `+ ` (send it once).
    Incomplete {
        /// Send a continuation request now.
        continuation: bool,
    },
    /// A whole command: the first `len` bytes of the buffer.
    Command {
        /// Its length, through the final CRLF.
        len: usize,
    },
    /// A line over `max_line`: the connection cannot be resynchronised.
    LineTooLong,
    /// A literal over its limit was announced.
    LiteralTooLarge {
        /// The command's tag, when it could be read.
        tag: Option<String>,
        /// Whether the client waits for `+ ` (then it sends nothing more of
        /// this command and the session goes on after a tagged NO).
        sync: bool,
        /// How many bytes of the buffer the refused command occupies.
        len: usize,
    },
    /// More literals than allowed in one command.
    TooManyLiterals,
}

/// The framer's memory between reads for the command being received.
#[derive(Clone, Debug, Default)]
pub struct Framer {
    /// Where the next line of the current command starts.
    line_start: usize,
    /// Literals seen so far in the current command.
    literals: usize,
    /// The offset of the sync literal a continuation was sent for.
    continued: Option<usize>,
}

impl Framer {
    /// Forgets the current command (call after taking a `Command`).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Scans `buf` (which starts at the current command) from where the
    /// last call stopped.
    pub fn frame(&mut self, buf: &[u8], limits: &FrameLimits) -> Framed {
        loop {
            let rest = &buf[self.line_start.min(buf.len())..];
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                if rest.len() >= limits.max_line {
                    return Framed::LineTooLong;
                }
                return Framed::Incomplete {
                    continuation: false,
                };
            };
            if nl + 1 > limits.max_line {
                return Framed::LineTooLong;
            }
            let line = &rest[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let end_of_line = self.line_start + nl + 1;
            let Some((size, sync)) = literal_marker(line) else {
                return Framed::Command { len: end_of_line };
            };
            if self.literals >= limits.max_literals {
                return Framed::TooManyLiterals;
            }
            let limit = if is_append(buf) {
                limits.max_append_literal
            } else {
                limits.max_literal
            };
            if size > limit {
                return Framed::LiteralTooLarge {
                    tag: tag_of(buf),
                    sync,
                    len: end_of_line,
                };
            }
            let Ok(size) = usize::try_from(size) else {
                return Framed::LiteralTooLarge {
                    tag: tag_of(buf),
                    sync,
                    len: end_of_line,
                };
            };
            if buf.len() < end_of_line + size {
                let continuation =
                    sync && self.continued != Some(end_of_line) && buf.len() == end_of_line;
                if continuation {
                    self.continued = Some(end_of_line);
                }
                return Framed::Incomplete { continuation };
            }
            self.literals += 1;
            self.line_start = end_of_line + size;
        }
    }
}

/// `{123}` or `{123+}` (or `~{123}` for BINARY) at the end of a line.
fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let mut digits = &body[open + 1..];
    let sync = match digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
    {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

/// The command's tag, if the first word is one.
pub fn tag_of(buf: &[u8]) -> Option<String> {
    let end = buf
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let tag = std::str::from_utf8(&buf[..end]).ok()?;
    (!tag.is_empty() && tag.len() <= 64 && tag.bytes().all(super::parse::is_tag_char))
        .then(|| tag.to_owned())
}

/// Whether the command is APPEND (or UID-less variants of it).
fn is_append(buf: &[u8]) -> bool {
    let mut words = buf.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(input: &[u8]) -> Vec<Framed> {
        let limits = FrameLimits {
            max_line: 64,
            max_literal: 10,
            max_append_literal: 100,
            max_literals: 3,
        };
        let mut f = Framer::default();
        let mut out = Vec::new();
        for end in 1..=input.len() {
            let r = f.frame(&input[..end], &limits);
            if r != (Framed::Incomplete {
                continuation: false,
            }) {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn literals_and_continuations() {
        let cmd = b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n";
        assert_eq!(
            frame_all(cmd),
            vec![
                Framed::Incomplete { continuation: true },
                Framed::Command { len: cmd.len() }
            ]
        );
    }

    #[test]
    fn limits() {
        assert_eq!(
            frame_all(b"a1 LOGIN {11}\r\n"),
            vec![Framed::LiteralTooLarge {
                tag: Some("a1".into()),
                sync: true,
                len: 15
            }]
        );
        assert!(matches!(
            frame_all(b"a2 APPEND INBOX {50+}\r\n").first(),
            Some(Framed::Incomplete { .. }) | None
        ));
        let long = [b'a'; 70];
        assert_eq!(frame_all(&long).first(), Some(&Framed::LineTooLong));
        assert_eq!(
            frame_all(b"a ID ({1+}\r\nx {1+}\r\ny {1+}\r\nz {1+}\r\n").last(),
            Some(&Framed::TooManyLiterals)
        );
    }
}
