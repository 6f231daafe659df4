//! The DATA stream (RFC 5321 section 4.1.1.4): dot-unstuffing and the end
//! marker.
//!
//! The end of the data is exactly `CRLF . CRLF` (the first CRLF may be the
//! one that ended the DATA command). A bare LF or bare CR is never part of
//! an end marker, so none of the SMTP smuggling variants (`LF.LF`,
//! `CR.CR`, `CRLF.LF`, `LF.CRLF`, ...; CVE-2023-51764 and its kin) can end
//! the message early: what follows them stays message text. Depending on
//! [`BareNewline`], a message with a bare CR or LF is refused at its end or
//! stored with each one turned into CRLF.

use memchr::{memchr2_iter, memmem};

/// Whether every CR in `s` is followed by LF and every LF preceded by CR
/// (the byte before `s` is known not to be a CR). Written as one pass
/// over adjacent pairs so the compiler can vectorise it.
fn crlf_only(s: &[u8]) -> bool {
    let Some(&first) = s.first() else { return true };
    if first == b'\n' {
        return false;
    }
    let mut bad = 0u8;
    for (a, b) in s.iter().zip(&s[1..]) {
        bad |= u8::from(*a == b'\r') ^ u8::from(*b == b'\n');
    }
    // A CR as the last byte has no LF after it in `s`.
    bad == 0 && s.last() != Some(&b'\r')
}

/// What to do with a bare CR or bare LF inside message data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BareNewline {
    /// Refuse the message at its end (`550 5.5.2`), as Postfix does with
    /// `smtpd_forbid_bare_newline = yes` (docker-mailserver's setting).
    #[default]
    Reject,
    /// Store each bare CR or LF as CRLF.
    Normalize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF).
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` CR at a line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line.
    Cr,
}

/// Receives one message's DATA, dot-unstuffed, up to a size limit.
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    out: Vec<u8>,
    size: u64,
    max: u64,
    too_big: bool,
    bare: bool,
    mode: BareNewline,
}

impl DataReceiver {
    /// A receiver keeping at most `max` bytes of message.
    pub fn new(max: u64, mode: BareNewline, size_hint: usize) -> Self {
        let cap = size_hint
            .min(usize::try_from(max).unwrap_or(usize::MAX))
            .min(1 << 20);
        Self {
            state: State::LineStart,
            out: Vec::with_capacity(cap.max(4096)),
            size: 0,
            max,
            too_big: false,
            bare: false,
            mode,
        }
    }

    /// Feeds bytes; returns how many were consumed and whether the end
    /// marker was seen (then nothing after it was consumed).
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let len = input.len();
        let mut i = 0;
        loop {
            match self.state {
                State::LineStart => {
                    if i >= len {
                        return (i, false);
                    }
                    if input[i] == b'.' {
                        i += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if i >= len {
                        return (i, false);
                    }
                    if input[i] == b'\r' {
                        i += 1;
                        self.state = State::DotCr;
                    } else {
                        // A stuffed dot: drop it, the rest is text.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if i >= len {
                        return (i, false);
                    }
                    if input[i] == b'\n' {
                        return (i + 1, true);
                    }
                    // ".\r" then something else: the dot was stuffing, the CR is bare.
                    self.bare_newline();
                    self.state = State::Mid;
                }
                State::Cr => {
                    if i >= len {
                        return (i, false);
                    }
                    if input[i] == b'\n' {
                        i += 1;
                        self.emit(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        self.bare_newline();
                        self.state = State::Mid;
                    }
                }
                State::Mid => {
                    // Fast path: up to the next line that starts with a dot
                    // (stuffing or the end marker), check with one
                    // vectorisable pass that every CR and LF pair up, and
                    // copy the whole run at once.
                    let rest = &input[i..];
                    if rest.is_empty() {
                        return (len, false);
                    }
                    let (span, next) = match memmem::find(rest, b"\r\n.") {
                        Some(p) => (p + 2, State::LineStart),
                        None if rest.last() == Some(&b'\r') => (rest.len() - 1, State::Cr),
                        None if rest.last() == Some(&b'\n') => (rest.len(), State::LineStart),
                        None => (rest.len(), State::Mid),
                    };
                    if crlf_only(&rest[..span]) {
                        self.emit(&rest[..span]);
                        i += span;
                        if next == State::Cr {
                            i += 1;
                        }
                        self.state = next;
                        continue;
                    }
                    self.slow_line(input, &mut i);
                }
            }
        }
    }

    /// The careful path for a run with a bare CR or LF: walk every CR and
    /// LF up to the next line start (or the end of the input).
    fn slow_line(&mut self, input: &[u8], i: &mut usize) {
        let rest = &input[*i..];
        let mut copied = 0;
        let mut skip_lf = usize::MAX;
        for p in memchr2_iter(b'\r', b'\n', rest) {
            if rest[p] == b'\n' {
                if p == skip_lf {
                    continue;
                }
                // Bare LF: never a line start, so never part of an end marker.
                self.emit(&rest[copied..p]);
                self.bare_newline();
                copied = p + 1;
                continue;
            }
            match rest.get(p + 1) {
                None => {
                    self.emit(&rest[copied..p]);
                    *i += p + 1;
                    self.state = State::Cr;
                    return;
                }
                Some(b'\n') => match rest.get(p + 2) {
                    Some(b'.') | None => {
                        self.emit(&rest[copied..p + 2]);
                        *i += p + 2;
                        self.state = State::LineStart;
                        return;
                    }
                    Some(_) => skip_lf = p + 1,
                },
                Some(_) => {
                    self.emit(&rest[copied..p]);
                    self.bare_newline();
                    copied = p + 1;
                }
            }
        }
        self.emit(&rest[copied..]);
        *i = input.len();
        self.state = State::Mid;
    }

    fn bare_newline(&mut self) {
        self.bare = true;
        match self.mode {
            BareNewline::Reject => {}
            BareNewline::Normalize => self.emit(b"\r\n"),
        }
    }

    #[inline]
    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.too_big {
            return;
        }
        if self.size > self.max {
            self.too_big = true;
            self.out = Vec::new();
            return;
        }
        self.out.extend_from_slice(bytes);
    }

    /// Bytes of message text seen so far (after unstuffing).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory.
    pub fn buffered_len(&self) -> usize {
        self.out.len()
    }

    /// How the message ended: its bytes, or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.too_big {
            Err(DataError::TooBig)
        } else if self.bare && self.mode == BareNewline::Reject {
            Err(DataError::BareNewline)
        } else {
            Ok(self.out)
        }
    }
}

/// Why received data is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataError {
    /// Over the message size limit.
    TooBig,
    /// A bare CR or LF under [`BareNewline::Reject`].
    BareNewline,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], mode: BareNewline) -> (usize, bool, Result<Vec<u8>, DataError>) {
        let mut d = DataReceiver::new(1 << 20, mode, 0);
        let (n, done) = d.feed(input);
        (n, done, d.finish())
    }

    #[test]
    fn unstuff_and_end() {
        let (n, done, body) = run(b"a\r\n..b\r\n.\r\nQUIT\r\n", BareNewline::Reject);
        assert!(done);
        assert_eq!(n, 11);
        assert_eq!(body.unwrap(), b"a\r\n.b\r\n");
    }

    #[test]
    fn smuggling_variants_do_not_end() {
        for v in [
            &b"a\n.\nMAIL"[..],
            b"a\r\n.\nMAIL",
            b"a\n.\r\nMAIL",
            b"a\r.\rMAIL",
            b"a\r\n.\rMAIL",
        ] {
            let (n, done, body) = run(v, BareNewline::Reject);
            assert!(!done, "{v:?}");
            assert_eq!(n, v.len());
            assert_eq!(body, Err(DataError::BareNewline));
        }
    }

    #[test]
    fn normalize() {
        let (_, done, body) = run(b"a\nb\rc\r\n.\r\n", BareNewline::Normalize);
        assert!(done);
        assert_eq!(body.unwrap(), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn size_limit() {
        let mut d = DataReceiver::new(4, BareNewline::Reject, 0);
        assert_eq!(d.feed(b"hello\r\n.\r\n"), (10, true));
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.finish(), Err(DataError::TooBig));
    }
}
