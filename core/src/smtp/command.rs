//! Parsing one SMTP command line (without its line ending).
//!
//! Only the verb and the argument split happen here; paths and parameters
//! are checked by the session, which knows the state they apply to.

/// A command the server understands, borrowing from the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELO domain`
    Helo(&'a str),
    /// `EHLO domain`
    Ehlo(&'a str),
    /// `MAIL FROM:<path> params` (the text after `FROM:`)
    Mail(&'a str),
    /// `RCPT TO:<path> params` (the text after `TO:`)
    Rcpt(&'a str),
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030)
    Bdat {
        /// Octets in the chunk.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy,
    /// `EXPN string`
    Expn,
    /// `HELP [string]`
    Help,
    /// `STARTTLS` (RFC 3207)
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954)
    Auth {
        /// The SASL mechanism, as sent.
        mechanism: &'a str,
        /// The initial response, base64 (`=` for empty).
        initial: Option<&'a str>,
    },
    /// `ETRN`, `TURN` and the like: known, not offered.
    NotImplemented,
}

/// Why a line is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Unknown verb, empty line, or a byte that has no place in a command.
    Unrecognized,
    /// A known verb with bad arguments; the text says which.
    Syntax(&'static str),
}

/// Parses one command line.
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(CommandError::Unrecognized);
    };
    if line.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(CommandError::Unrecognized);
    }
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_matches(' ')),
        None => (line, ""),
    };
    if verb.len() > 8 {
        return Err(CommandError::Unrecognized);
    }
    let mut v = [0u8; 8];
    for (d, s) in v.iter_mut().zip(verb.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    let no_arg = |c: Command<'static>, msg: &'static str| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::Syntax(msg))
        }
    };
    match &v[..verb.len()] {
        b"NOOP" => Ok(Command::Noop),
        b"HELO" if arg.is_empty() => Err(CommandError::Syntax("Syntax: HELO hostname")),
        b"HELO" => Ok(Command::Helo(arg)),
        b"EHLO" if arg.is_empty() => Err(CommandError::Syntax("Syntax: EHLO hostname")),
        b"EHLO" => Ok(Command::Ehlo(arg)),
        b"MAIL" => match strip_keyword(arg, "FROM:") {
            Some(rest) => Ok(Command::Mail(rest)),
            None => Err(CommandError::Syntax("Syntax: MAIL FROM:<address>")),
        },
        b"RCPT" => match strip_keyword(arg, "TO:") {
            Some(rest) => Ok(Command::Rcpt(rest)),
            None => Err(CommandError::Syntax("Syntax: RCPT TO:<address>")),
        },
        b"DATA" => no_arg(Command::Data, "Syntax: DATA"),
        b"BDAT" => parse_bdat(arg),
        b"RSET" => no_arg(Command::Rset, "Syntax: RSET"),
        b"QUIT" => no_arg(Command::Quit, "Syntax: QUIT"),
        b"VRFY" if arg.is_empty() => Err(CommandError::Syntax("Syntax: VRFY address")),
        b"VRFY" => Ok(Command::Vrfy),
        b"EXPN" => Ok(Command::Expn),
        b"HELP" => Ok(Command::Help),
        b"STARTTLS" => no_arg(Command::StartTls, "Syntax: STARTTLS"),
        b"AUTH" => {
            let mut words = arg.split(' ').filter(|w| !w.is_empty());
            let Some(mechanism) = words.next() else {
                return Err(CommandError::Syntax("Syntax: AUTH mechanism"));
            };
            let initial = words.next();
            if words.next().is_some() {
                return Err(CommandError::Syntax(
                    "Syntax: AUTH mechanism [initial-response]",
                ));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        b"ETRN" | b"TURN" | b"ATRN" | b"SEND" | b"SOML" | b"SAML" => Ok(Command::NotImplemented),
        _ => Err(CommandError::Unrecognized),
    }
}

/// `FROM:` / `TO:` case-insensitively, tolerating spaces before the colon's
/// argument as many clients send them.
fn strip_keyword<'a>(arg: &'a str, kw: &str) -> Option<&'a str> {
    let head = arg.get(..kw.len())?;
    if head.eq_ignore_ascii_case(kw) {
        Some(arg[kw.len()..].trim_start_matches(' '))
    } else {
        None
    }
}

fn parse_bdat(arg: &str) -> Result<Command<'_>, CommandError> {
    const SYNTAX: CommandError = CommandError::Syntax("Syntax: BDAT size [LAST]");
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(SYNTAX)?;
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SYNTAX);
    }
    let size: u64 = size.parse().map_err(|_| SYNTAX)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(SYNTAX),
    };
    if words.next().is_some() {
        return Err(SYNTAX);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(parse(b"noop"), Ok(Command::Noop));
        assert_eq!(parse(b"EHLO  x.example "), Ok(Command::Ehlo("x.example")));
        assert_eq!(parse(b"mail from: <a@b>"), Ok(Command::Mail("<a@b>")));
        assert_eq!(
            parse(b"BDAT 10 last"),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert!(matches!(parse(b"BDAT -1"), Err(CommandError::Syntax(_))));
        assert_eq!(parse(b""), Err(CommandError::Unrecognized));
        assert_eq!(parse(b"NOOP\0"), Err(CommandError::Unrecognized));
        assert_eq!(
            parse(b"AUTH PLAIN AGFAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: Some("AGFAYg==")
            })
        );
    }
}
