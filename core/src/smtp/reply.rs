//! SMTP replies (RFC 5321 section 4.2) with RFC 3463 enhanced status codes.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply: a three-digit code, an enhanced status code and text.
///
/// Replies that the runtime gives the session (a recipient refused by a
/// policy, say) are built with [`Reply::new`]; the session's own replies
/// are written straight into the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The basic code, 200..=599.
    pub code: u16,
    /// The enhanced status code, `class.subject.detail` (RFC 3463).
    pub status: Cow<'static, str>,
    /// Human-readable text; CR and LF are replaced by spaces when written.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply from its parts.
    pub fn new(
        code: u16,
        status: impl Into<Cow<'static, str>>,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            code,
            status: status.into(),
            text: text.into(),
        }
    }

    /// Reads a reply back from its one-line form (`Display`, as the queue
    /// stores it): the code, the enhanced status code when there is one,
    /// and the text. Anything unreadable becomes a `451 4.3.0` with the
    /// line as its text, so that a damaged record still defers.
    pub fn parse_line(line: &str) -> Self {
        let line = line.trim();
        let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
        let Some(code) = code.parse::<u16>().ok().filter(|c| (200..600).contains(c)) else {
            return Reply::new(451, "4.3.0", line.to_owned());
        };
        let (first, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let is_status = {
            let parts: Vec<&str> = first.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if is_status {
            Reply::new(code, first.to_owned(), text.to_owned())
        } else {
            Reply::new(code, "", rest.to_owned())
        }
    }

    /// Whether this reply says the command failed (4xx or 5xx).
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply, as one line with CRLF, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        out.extend_from_slice(code.to_string().as_bytes());
        out.push(b' ');
        if !self.status.is_empty() {
            out.extend_from_slice(self.status.as_bytes());
            out.push(b' ');
        }
        out.extend(
            self.text
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.status, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_reply_reads_back_with_its_enhanced_code() {
        let r = Reply::new(452, "4.2.2", "Mailbox full, try later");
        assert_eq!(Reply::parse_line(&r.to_string()), r);
        assert_eq!(Reply::parse_line("250 ok"), Reply::new(250, "", "ok"));
        assert_eq!(Reply::parse_line("garbage").code, 451);
    }
}
