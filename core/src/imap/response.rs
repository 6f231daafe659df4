//! Writing IMAP responses (RFC 9051 section 7 and the formal syntax in 9):
//! tagged and untagged status lines with their response codes, and the
//! pieces data lines are made of (astrings, nstrings, literals, flag
//! lists, STATUS items). Every byte the session sends is shaped here or
//! from these pieces, so quoting and literal rules live in one place.

use super::event::{Code, StatusCounts};
use std::fmt;

/// The status of a status response (RFC 9051 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `OK`: success (tagged), or information (untagged).
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BAD`: the command was not understood.
    Bad,
    /// `BYE`: the server closes the connection (untagged only).
    Bye,
}

impl Status {
    /// The status as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        }
    }
}

/// A response code (RFC 9051 7.1, RFC 4315, RFC 7162, RFC 3516): the
/// bracketed part of a status response. Codes without data are
/// [`Code`]s (the ones a store gives with a refusal among them); the
/// others carry what the client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// A code without data.
    Code(Code),
    /// `CAPABILITY ...`: the capabilities, space-separated.
    Capability(String),
    /// `PERMANENTFLAGS (...)`: the flags a client may store.
    PermanentFlags(Vec<String>),
    /// `UNSEEN n`: the first unseen message (IMAP4rev1).
    Unseen(usize),
    /// `UIDVALIDITY n`.
    UidValidity(u32),
    /// `UIDNEXT n`.
    UidNext(u32),
    /// `HIGHESTMODSEQ n` (RFC 7162).
    HighestModseq(u64),
    /// `APPENDUID uidvalidity uid` (RFC 4315).
    AppendUid {
        /// The target's UIDVALIDITY.
        uid_validity: u32,
        /// The new message's UID.
        uid: u32,
    },
    /// `COPYUID uidvalidity from to` (RFC 4315), the sets already written.
    CopyUid {
        /// The target's UIDVALIDITY.
        uid_validity: u32,
        /// The source UIDs.
        from: String,
        /// The new UIDs.
        to: String,
    },
    /// `MODIFIED set` (RFC 7162): messages a conditional STORE left alone.
    Modified(String),
}

impl From<Code> for ResponseCode {
    fn from(c: Code) -> Self {
        ResponseCode::Code(c)
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseCode::Code(c) => f.write_str(c.as_str()),
            ResponseCode::Capability(caps) => write!(f, "CAPABILITY {caps}"),
            ResponseCode::PermanentFlags(flags) => {
                write!(f, "PERMANENTFLAGS {}", flag_list(flags))
            }
            ResponseCode::Unseen(n) => write!(f, "UNSEEN {n}"),
            ResponseCode::UidValidity(n) => write!(f, "UIDVALIDITY {n}"),
            ResponseCode::UidNext(n) => write!(f, "UIDNEXT {n}"),
            ResponseCode::HighestModseq(n) => write!(f, "HIGHESTMODSEQ {n}"),
            ResponseCode::AppendUid { uid_validity, uid } => {
                write!(f, "APPENDUID {uid_validity} {uid}")
            }
            ResponseCode::CopyUid {
                uid_validity,
                from,
                to,
            } => write!(f, "COPYUID {uid_validity} {from} {to}"),
            ResponseCode::Modified(set) => write!(f, "MODIFIED {set}"),
        }
    }
}

/// A status line: `tag` (or `*` for none), the status, `[code]` when
/// given, the text, CRLF.
pub fn status_line(
    tag: Option<&str>,
    status: Status,
    code: Option<&ResponseCode>,
    text: &str,
) -> String {
    let tag = tag.unwrap_or("*");
    let status = status.as_str();
    match code {
        Some(c) => format!("{tag} {status} [{c}] {text}\r\n"),
        None => format!("{tag} {status} {text}\r\n"),
    }
}

/// A tagged status line: `tag OK [code] text` CRLF.
pub fn tagged(tag: &str, status: Status, code: Option<&ResponseCode>, text: &str) -> String {
    status_line(Some(tag), status, code, text)
}

/// An untagged status line: `* OK [code] text` CRLF.
pub fn untagged(status: Status, code: Option<&ResponseCode>, text: &str) -> String {
    status_line(None, status, code, text)
}

/// An astring (RFC 9051 9): the atom itself when it is one (and not
/// `NIL`), a quoted string otherwise.
pub fn astring(s: &str) -> String {
    if s.bytes().all(|b| {
        b.is_ascii_graphic()
            && b != b'"'
            && b != b'\\'
            && b != b'('
            && b != b')'
            && b != b'{'
            && b != b'%'
            && b != b'*'
    }) && !s.is_empty()
        && !s.eq_ignore_ascii_case("NIL")
    {
        return s.to_owned();
    }
    quoted(s)
}

/// A quoted string: `"` and `\` escaped.
pub fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// An nstring: quoted when it can be, a literal otherwise; `NIL` for none.
pub fn nstring(s: Option<&str>) -> String {
    match s {
        None => "NIL".to_owned(),
        Some(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b)) => quoted(s),
        Some(s) => format!("{{{}}}\r\n{s}", s.len()),
    }
}

/// `LABEL {n}` CRLF and the bytes: a FETCH item with a literal value.
pub fn literal(label: &str, bytes: &[u8]) -> Vec<u8> {
    literal_with(label, "", bytes)
}

/// `LABEL ~{n}` CRLF and the bytes: a literal8 (RFC 3516 4.3), for
/// binary data that may hold NULs.
pub fn literal8(label: &str, bytes: &[u8]) -> Vec<u8> {
    literal_with(label, "~", bytes)
}

fn literal_with(label: &str, tilde: &str, bytes: &[u8]) -> Vec<u8> {
    let mut p = format!("{label} {tilde}{{{}}}\r\n", bytes.len()).into_bytes();
    p.extend_from_slice(bytes);
    p
}

/// A flag list: `(\Seen $Label)`.
pub fn flag_list<S: AsRef<str>>(flags: &[S]) -> String {
    let mut r = String::from("(");
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            r.push(' ');
        }
        r.push_str(f.as_ref());
    }
    r.push(')');
    r
}

/// The STATUS items understood (RFC 9051 6.3.11, RFC 8438 SIZE, RFC 7162).
pub const STATUS_ITEMS: &[&str] = &[
    "MESSAGES",
    "UNSEEN",
    "UIDNEXT",
    "UIDVALIDITY",
    "RECENT",
    "SIZE",
    "HIGHESTMODSEQ",
    "DELETED",
    "DELETED-STORAGE",
];

/// `MESSAGES 3 UNSEEN 1`... for the items asked, in their order.
pub fn status_items(items: &[String], s: &StatusCounts) -> String {
    let mut parts = Vec::new();
    for i in items {
        let v = match i.as_str() {
            "MESSAGES" => u64::from(s.messages),
            "UNSEEN" => u64::from(s.unseen),
            "UIDNEXT" => u64::from(s.uid_next),
            "UIDVALIDITY" => u64::from(s.uid_validity),
            "RECENT" => u64::from(s.recent),
            "SIZE" => s.size,
            "HIGHESTMODSEQ" => s.highest_modseq,
            "DELETED" => u64::from(s.deleted),
            "DELETED-STORAGE" => s.deleted_storage,
            _ => continue,
        };
        parts.push(format!("{i} {v}"));
    }
    parts.join(" ")
}

/// `* STATUS name (items)` CRLF, the name already in the client's form.
pub fn status_data(name: &str, items: &[String], s: &StatusCounts) -> String {
    format!(
        "* STATUS {} ({})\r\n",
        astring(name),
        status_items(items, s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn astrings_quote_what_is_not_an_atom() {
        assert_eq!(astring("INBOX"), "INBOX");
        assert_eq!(astring("Sent Items"), "\"Sent Items\"");
        assert_eq!(astring("nil"), "\"nil\"");
        assert_eq!(astring(""), "\"\"");
        assert_eq!(astring("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(nstring(None), "NIL");
        assert_eq!(nstring(Some("é")), "{2}\r\né");
    }

    #[test]
    fn status_lines_and_codes() {
        let code = ResponseCode::from(Code::TryCreate);
        assert_eq!(
            tagged("a1", Status::No, Some(&code), "No such mailbox"),
            "a1 NO [TRYCREATE] No such mailbox\r\n"
        );
        assert_eq!(
            untagged(
                Status::Ok,
                Some(&ResponseCode::UidNext(4)),
                "Predicted next UID"
            ),
            "* OK [UIDNEXT 4] Predicted next UID\r\n"
        );
        assert_eq!(flag_list(&["\\Seen", "$x"]), "(\\Seen $x)");
        assert_eq!(
            literal8("BINARY[1]", b"a\0"),
            b"BINARY[1] ~{2}\r\na\0".to_vec()
        );
    }
}
