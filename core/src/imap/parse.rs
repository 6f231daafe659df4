//! Parsing one framed IMAP command into its tag, name and argument values
//! (RFC 9051 section 9, the generic layer). The session reads the values
//! it expects for each command; this layer only guarantees well-formed
//! tokens, with limits on nesting and count.

use std::borrow::Cow;

/// The deepest list nesting accepted.
pub const MAX_DEPTH: usize = 16;
/// The most values in one command (all lists included).
pub const MAX_VALUES: usize = 4096;

/// One argument value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// An atom: a word, a number, a sequence set, a flag (`\Seen`), a
    /// fetch item with its section (`BODY.PEEK[HEADER.FIELDS (FROM)]<0.100>`).
    Atom(&'a str),
    /// A quoted string, unescaped.
    Quoted(Cow<'a, str>),
    /// A literal's bytes.
    Literal(&'a [u8]),
    /// A parenthesised list.
    List(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// The value as an astring (atom, quoted or UTF-8 literal).
    pub fn as_astring(&self) -> Option<Cow<'a, str>> {
        match self {
            Value::Atom(a) => Some(Cow::Borrowed(a)),
            Value::Quoted(q) => Some(q.clone()),
            Value::Literal(l) => std::str::from_utf8(l).ok().map(Cow::Borrowed),
            Value::List(_) => None,
        }
    }

    /// Whether the value is the atom `NIL`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case("NIL"))
    }
}

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    /// The client's tag.
    pub tag: &'a str,
    /// The command name, upper-cased; `UID FETCH` and the like are joined.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value<'a>>,
}

/// Why a command could not be parsed. The session answers `tag BAD`, or
/// `* BAD` when there is no usable tag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No tag could be read.
    #[error("missing or invalid tag")]
    NoTag,
    /// The tag was read, the rest is malformed.
    #[error("{message}")]
    Syntax {
        /// The tag, for the BAD reply.
        tag: String,
        /// What is wrong.
        message: &'static str,
    },
}

/// Whether a byte may appear in a tag (ASTRING-CHAR except `+`).
pub fn is_tag_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\+".contains(&b)
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){\"".contains(&b)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
}

/// Parses a framed command (as [`super::framing::Framer`] delimits it).
pub fn parse_command(buf: &[u8]) -> Result<Command<'_>, ParseError> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let tag_end = body
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::NoTag)?;
    let tag = std::str::from_utf8(&body[..tag_end]).map_err(|_| ParseError::NoTag)?;
    if tag.is_empty() || tag.len() > 64 || !tag.bytes().all(is_tag_char) {
        return Err(ParseError::NoTag);
    }
    let err = |message: &'static str| ParseError::Syntax {
        tag: tag.to_owned(),
        message,
    };
    let mut c = Cursor {
        buf: body,
        pos: tag_end + 1,
        values: 0,
    };
    let mut name = c
        .word()
        .ok_or_else(|| err("missing command name"))?
        .to_ascii_uppercase();
    if name == "UID" {
        if !c.eat(b' ') {
            return Err(err("UID needs a command"));
        }
        let sub = c.word().ok_or_else(|| err("UID needs a command"))?;
        name = format!("UID {}", sub.to_ascii_uppercase());
    }
    let mut args = Vec::new();
    while c.pos < c.buf.len() {
        if !c.eat(b' ') {
            return Err(err("expected a space between arguments"));
        }
        args.push(c.value(0).map_err(err)?);
    }
    Ok(Command { tag, name, args })
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, b: u8) -> bool {
        if self.buf.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self
            .buf
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        {
            self.pos += 1;
        }
        (self.pos > start)
            .then(|| std::str::from_utf8(&self.buf[start..self.pos]).ok())
            .flatten()
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, &'static str> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err("too many arguments");
        }
        match self.buf.get(self.pos) {
            None => Err("missing argument"),
            Some(b'(') => {
                if depth >= MAX_DEPTH {
                    return Err("lists nested too deep");
                }
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b')') {
                    return Ok(Value::List(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b')') {
                        return Ok(Value::List(items));
                    }
                    if !self.eat(b' ') {
                        return Err("expected a space or ) in a list");
                    }
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal()
            }
            Some(_) => self.atom(),
        }
    }

    fn quoted(&mut self) -> Result<Value<'a>, &'static str> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped: Option<String> = None;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("unterminated quoted string");
            };
            match b {
                b'"' => {
                    let raw = &self.buf[start..self.pos];
                    self.pos += 1;
                    return match escaped {
                        Some(s) => Ok(Value::Quoted(Cow::Owned(s))),
                        None => std::str::from_utf8(raw)
                            .map(|s| Value::Quoted(Cow::Borrowed(s)))
                            .map_err(|_| "quoted string is not UTF-8"),
                    };
                }
                b'\\' => {
                    let Some(&next) = self.buf.get(self.pos + 1) else {
                        return Err("unterminated quoted string");
                    };
                    if next != b'"' && next != b'\\' {
                        return Err("bad escape in quoted string");
                    }
                    let s = escaped.get_or_insert_with(|| {
                        String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned()
                    });
                    s.push(next as char);
                    self.pos += 2;
                }
                b'\r' | b'\n' | 0 => return Err("control character in quoted string"),
                _ => {
                    if let Some(s) = escaped.as_mut() {
                        // Copy one UTF-8 sequence at a time.
                        let len = utf8_len(b);
                        let Some(chunk) = self.buf.get(self.pos..self.pos + len) else {
                            return Err("quoted string is not UTF-8");
                        };
                        s.push_str(
                            std::str::from_utf8(chunk).map_err(|_| "quoted string is not UTF-8")?,
                        );
                        self.pos += len;
                    } else {
                        self.pos += 1;
                    }
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Value<'a>, &'static str> {
        self.pos += 1;
        let close = self.buf[self.pos..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or("bad literal")?;
        let spec = &self.buf[self.pos..self.pos + close];
        let digits = spec
            .strip_suffix(b"+")
            .or_else(|| spec.strip_suffix(b"-"))
            .unwrap_or(spec);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err("bad literal length");
        }
        let n: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("bad literal length")?;
        self.pos += close + 1;
        if !self.buf[self.pos..].starts_with(b"\r\n") {
            return Err("literal length must end the line");
        }
        self.pos += 2;
        let data = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or("literal shorter than announced")?;
        self.pos += n;
        Ok(Value::Literal(data))
    }

    fn atom(&mut self) -> Result<Value<'a>, &'static str> {
        let start = self.pos;
        while let Some(&b) = self.buf.get(self.pos) {
            if b == b'[' {
                // A section: everything to the matching `]`, lists included.
                let mut depth = 0usize;
                loop {
                    let Some(&c) = self.buf.get(self.pos) else {
                        return Err("unterminated [section]");
                    };
                    self.pos += 1;
                    match c {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\r' | b'\n' => return Err("line break in [section]"),
                        _ => {}
                    }
                }
                continue;
            }
            if !is_atom_char(b) {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err("expected an argument");
        }
        std::str::from_utf8(&self.buf[start..self.pos])
            .map(Value::Atom)
            .map_err(|_| "atom is not ASCII")
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let c = parse_command(b"a1 LOGIN {5}\r\nalice \"se\\\"cret\"\r\n").unwrap();
        assert_eq!(c.tag, "a1");
        assert_eq!(c.name, "LOGIN");
        assert_eq!(
            c.args,
            vec![
                Value::Literal(b"alice"),
                Value::Quoted(Cow::Owned("se\"cret".into()))
            ]
        );
        let c = parse_command(
            b"7 uid fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>)\r\n",
        )
        .unwrap();
        assert_eq!(c.name, "UID FETCH");
        assert_eq!(
            c.args,
            vec![
                Value::Atom("1:*"),
                Value::List(vec![
                    Value::Atom("FLAGS"),
                    Value::Atom("BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>")
                ])
            ]
        );
        let c = parse_command(b"x STORE 1 +FLAGS (\\Seen \\Deleted)\r\n").unwrap();
        assert_eq!(
            c.args[2],
            Value::List(vec![Value::Atom("\\Seen"), Value::Atom("\\Deleted")])
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse_command(b"\r\n"), Err(ParseError::NoTag));
        assert_eq!(parse_command(b"a+ NOOP\r\n"), Err(ParseError::NoTag));
        assert!(matches!(
            parse_command(b"a LOGIN \"x\r\n"),
            Err(ParseError::Syntax { .. })
        ));
        let deep = format!("a X {}{}\r\n", "(".repeat(40), ")".repeat(40));
        assert!(matches!(
            parse_command(deep.as_bytes()),
            Err(ParseError::Syntax {
                message: "lists nested too deep",
                ..
            })
        ));
        assert!(matches!(
            parse_command(b"a X {10}\r\nabc\r\n"),
            Err(ParseError::Syntax { .. })
        ));
    }
}
