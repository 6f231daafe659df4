//! IMAP commands with typed arguments (RFC 9051 section 6 and the
//! extensions the session offers), built from the generic parse of
//! [`super::parse`]: a [`Command`] is a tag and a [`CommandBody`], one
//! variant per command.
//!
//! Checking arguments is split the way the protocol needs it: a command
//! whose arguments are malformed still names itself (`Select(Err(..))`),
//! because the session answers in the state's order: a command not
//! allowed in the state is refused for that first (`BAD Log in first`),
//! then what the command checks before its arguments (`NO [PRIVACYREQUIRED]`
//! for LOGIN in clear text, `NO [READ-ONLY]` for STORE), then the
//! arguments. What depends on the session (a mailbox name's encoding under
//! IMAP4rev2, `$`, sequence numbers in range) is checked by the session.

mod auth;
mod fetch;
mod mailbox;
mod search;
mod store;

pub use self::auth::{Authenticate, Login};
pub use self::fetch::Fetch;
pub use self::mailbox::{Append, List, Qresync, Rename, Select, Status};
pub use self::search::{Search, SearchForm, SearchReturn, SortKey};
pub use self::store::{valid_flags, CopyMove, Store, StoreMode, SYSTEM_FLAGS};
use super::parse::{self, ParseError, Value};
use super::set::SeqSet;
use std::borrow::Cow;

/// A command: the client's tag and what it asks.
#[derive(Debug)]
pub struct Command {
    /// The client's tag, for the tagged response.
    pub tag: String,
    /// The command and its arguments.
    pub body: CommandBody,
}

/// A command's arguments, or why they were refused.
pub type Args<T> = Result<T, ArgError>;

/// Why a command's arguments were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// `BAD text`. The session checks `mailboxes` (the mailbox names read
    /// before the fault, in order) first, and turns CONDSTORE on when
    /// `condstore` (the arguments read before the fault asked for it).
    Bad {
        /// Mailbox names read before the fault.
        mailboxes: Vec<Mailbox>,
        /// The arguments before the fault asked for CONDSTORE (RFC 7162 3.1).
        condstore: bool,
        /// What is wrong.
        text: Cow<'static, str>,
    },
    /// `NO [BADCHARSET]` (RFC 9051 6.4.4): a charset other than UTF-8 and
    /// US-ASCII. `saving`: the SEARCH had `RETURN (SAVE)`, so `$` is
    /// emptied (RFC 5182 2.1).
    BadCharset {
        /// The search would have saved its result.
        saving: bool,
    },
}

impl ArgError {
    fn bad(text: impl Into<Cow<'static, str>>) -> Self {
        ArgError::Bad {
            mailboxes: Vec::new(),
            condstore: false,
            text: text.into(),
        }
    }

    /// The same fault, after these mailbox names were read.
    fn after(mut self, mailbox: &Mailbox) -> Self {
        if let ArgError::Bad { mailboxes, .. } = &mut self {
            mailboxes.insert(0, mailbox.clone());
        }
        self
    }
}

/// A mailbox name as the client gave it (RFC 9051 5.1): the session
/// canonicalises `INBOX`, encodes it for the store and checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox(pub String);

/// A sequence set argument (RFC 9051 9 `sequence-set`), or SEARCHRES's
/// `$`: the result the last SEARCH saved (RFC 5182).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceSet {
    /// Numbers and ranges.
    Set(SeqSet),
    /// `$`.
    Saved,
}

/// Every command the session knows.
#[derive(Debug)]
pub enum CommandBody {
    /// CAPABILITY.
    Capability,
    /// NOOP.
    Noop,
    /// CHECK.
    Check,
    /// LOGOUT.
    Logout,
    /// ID (RFC 2971); the client's list is not kept.
    Id,
    /// STARTTLS.
    StartTls,
    /// LOGIN.
    Login(Args<Login>),
    /// AUTHENTICATE.
    Authenticate(Authenticate),
    /// ENABLE (RFC 5161): the capabilities asked.
    Enable(Args<Vec<String>>),
    /// GETQUOTA (RFC 9208): the quota root.
    GetQuota(Args<String>),
    /// GETQUOTAROOT (RFC 9208).
    GetQuotaRoot(Args<Mailbox>),
    /// SETQUOTA (RFC 9208): refused whatever its arguments.
    SetQuota,
    /// NAMESPACE (RFC 2342).
    Namespace,
    /// IDLE (RFC 2177).
    Idle,
    /// SELECT.
    Select(Args<Select>),
    /// EXAMINE.
    Examine(Args<Select>),
    /// CREATE (the session takes a trailing delimiter off, RFC 9051 6.3.4).
    Create(Args<Mailbox>),
    /// DELETE.
    Delete(Args<Mailbox>),
    /// SUBSCRIBE.
    Subscribe(Args<Mailbox>),
    /// UNSUBSCRIBE.
    Unsubscribe(Args<Mailbox>),
    /// RENAME.
    Rename(Args<Rename>),
    /// LIST, with LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).
    List(Args<List>),
    /// LSUB (IMAP4rev1).
    Lsub(Args<List>),
    /// STATUS.
    Status(Args<Status>),
    /// APPEND.
    Append(Args<Append>),
    /// CLOSE.
    Close,
    /// UNSELECT (RFC 3691).
    Unselect,
    /// EXPUNGE, or UID EXPUNGE (RFC 4315) with its set.
    Expunge(Args<Option<SequenceSet>>),
    /// FETCH or UID FETCH.
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// The arguments.
        args: Args<Fetch>,
    },
    /// SEARCH or SORT (RFC 5256), plain or UID.
    Search {
        /// UID SEARCH / UID SORT.
        uid: bool,
        /// The arguments.
        args: Args<Search>,
    },
    /// STORE or UID STORE.
    Store {
        /// UID STORE.
        uid: bool,
        /// The arguments.
        args: Args<Store>,
    },
    /// COPY or MOVE (RFC 6851), plain or UID.
    Copy {
        /// UID COPY / UID MOVE.
        uid: bool,
        /// MOVE rather than COPY.
        moving: bool,
        /// The arguments.
        args: Args<CopyMove>,
    },
    /// A command the session does not know (or `UID` before one that
    /// takes no UIDs).
    Unknown,
}

/// The commands that work on messages by sequence number, or by UID after
/// `UID`: FETCH, SEARCH, SORT, THREAD, STORE, COPY and MOVE.
fn message_command(name: &str, uid: bool, args: &[Value<'_>]) -> CommandBody {
    match name {
        "FETCH" => CommandBody::Fetch {
            uid,
            args: fetch::fetch_args(args),
        },
        "SEARCH" => CommandBody::Search {
            uid,
            args: search::search(args),
        },
        "SORT" => CommandBody::Search {
            uid,
            args: search::sort(args),
        },
        "THREAD" => CommandBody::Search {
            uid,
            args: search::thread(args),
        },
        "STORE" => CommandBody::Store {
            uid,
            args: store::store(args),
        },
        "COPY" | "MOVE" => CommandBody::Copy {
            uid,
            moving: name == "MOVE",
            args: store::copy(args, name),
        },
        _ => CommandBody::Unknown,
    }
}

/// Parses a framed command (as [`super::framing::Framer`] delimits it).
/// An error is a command with no usable tag, or one the generic layer
/// could not read: the session answers `BAD` whatever its state.
pub fn parse(buf: &[u8]) -> Result<Command, ParseError> {
    let cmd = parse::parse_command(buf)?;
    let tag = cmd.tag.to_owned();
    let args = cmd.args.as_slice();
    let (uid, name) = match cmd.name.strip_prefix("UID ") {
        Some(n) => (true, n),
        None => (false, cmd.name.as_str()),
    };
    let body = if uid {
        match name {
            "EXPUNGE" => CommandBody::Expunge(store::uid_expunge(args)),
            _ => message_command(name, uid, args),
        }
    } else {
        match name {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "CHECK" => CommandBody::Check,
            "LOGOUT" => CommandBody::Logout,
            "ID" => CommandBody::Id,
            "STARTTLS" => CommandBody::StartTls,
            "LOGIN" => CommandBody::Login(auth::login(args)),
            "AUTHENTICATE" => CommandBody::Authenticate(auth::authenticate(args)),
            "ENABLE" => CommandBody::Enable(auth::enable(args)),
            "GETQUOTA" => CommandBody::GetQuota(
                first_astring(args, "Syntax: GETQUOTA name").map(Cow::into_owned),
            ),
            "GETQUOTAROOT" => CommandBody::GetQuotaRoot(
                first_astring(args, "Syntax: GETQUOTAROOT name")
                    .and_then(|_| mailbox(args.first())),
            ),
            "SETQUOTA" => CommandBody::SetQuota,
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "SELECT" => CommandBody::Select(mailbox::select(args)),
            "EXAMINE" => CommandBody::Examine(mailbox::select(args)),
            "CREATE" => CommandBody::Create(mailbox::create(args)),
            "DELETE" => CommandBody::Delete(mailbox(args.first())),
            "SUBSCRIBE" => CommandBody::Subscribe(mailbox(args.first())),
            "UNSUBSCRIBE" => CommandBody::Unsubscribe(mailbox(args.first())),
            "RENAME" => CommandBody::Rename(mailbox::rename(args)),
            "LIST" => CommandBody::List(mailbox::list(args, false)),
            "LSUB" => CommandBody::Lsub(mailbox::list(args, true)),
            "STATUS" => CommandBody::Status(mailbox::status(args)),
            "APPEND" => CommandBody::Append(mailbox::append(args)),
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge(Ok(None)),
            _ => message_command(name, uid, args),
        }
    };
    Ok(Command { tag, body })
}

pub(super) fn is_atom(v: &Value<'_>, word: &str) -> bool {
    matches!(v, Value::Atom(a) if a.eq_ignore_ascii_case(word))
}

pub(super) fn first_astring<'a>(args: &[Value<'a>], syntax: &'static str) -> Args<Cow<'a, str>> {
    args.first()
        .and_then(Value::as_astring)
        .ok_or_else(|| ArgError::bad(syntax))
}

/// A mailbox argument: an astring, or `BAD Missing mailbox name`.
pub(super) fn mailbox(v: Option<&Value<'_>>) -> Args<Mailbox> {
    v.and_then(Value::as_astring)
        .map(|n| Mailbox(n.into_owned()))
        .ok_or_else(|| ArgError::bad("Missing mailbox name"))
}

/// A sequence set argument, `$` included.
pub(super) fn sequence_set(v: Option<&Value<'_>>) -> Option<SequenceSet> {
    let s = v.and_then(Value::as_astring)?;
    if s == "$" {
        Some(SequenceSet::Saved)
    } else {
        SeqSet::parse(&s).map(SequenceSet::Set)
    }
}

/// A `(NAME n)` modifier with a number (CHANGEDSINCE, UNCHANGEDSINCE).
pub(super) fn modifier(
    m: &[Value<'_>],
    name: &str,
    bad_value: &'static str,
    unknown: &'static str,
) -> Args<u64> {
    match m {
        [a, n] if is_atom(a, name) => n
            .as_astring()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| ArgError::bad(bad_value)),
        _ => Err(ArgError::bad(unknown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(line: &str) -> CommandBody {
        parse(line.as_bytes()).unwrap().body
    }

    #[test]
    fn commands_name_themselves_even_with_bad_arguments() {
        assert!(matches!(body("a SELECT\r\n"), CommandBody::Select(Err(_))));
        assert!(matches!(
            body("a UID FETCH 1:* (FLAGS)\r\n"),
            CommandBody::Fetch {
                uid: true,
                args: Ok(_)
            }
        ));
        assert!(matches!(body("a UID CLOSE\r\n"), CommandBody::Unknown));
        let CommandBody::Rename(Err(ArgError::Bad {
            mailboxes, text, ..
        })) = body("a RENAME from\r\n")
        else {
            panic!("RENAME with one name");
        };
        assert_eq!(mailboxes, vec![Mailbox("from".into())]);
        assert_eq!(text, "Missing mailbox name");
    }

    #[test]
    fn typed_arguments() {
        let CommandBody::Store { args: Ok(s), .. } =
            body("a STORE $ (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Seen)\r\n")
        else {
            panic!("STORE");
        };
        assert_eq!(s.set, SequenceSet::Saved);
        assert_eq!((s.mode, s.silent), (StoreMode::Add, true));
        assert_eq!(s.unchanged_since, Some(7));
        let CommandBody::Search { args: Ok(s), .. } =
            body("a SEARCH RETURN (MIN SAVE MIN) ALL\r\n")
        else {
            panic!("SEARCH");
        };
        assert_eq!(
            s.form,
            SearchForm::Extended(vec![SearchReturn::Min, SearchReturn::Save])
        );
        assert!(matches!(
            body("a SEARCH RETURN (SAVE) CHARSET ISO-2022-JP ALL\r\n"),
            CommandBody::Search {
                args: Err(ArgError::BadCharset { saving: true }),
                ..
            }
        ));
    }
}
