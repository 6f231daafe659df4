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

use super::fetch::{self, Item, Key, SearchError};
use super::parse::{self, ParseError, Value};
use super::set::SeqSet;
use crate::Secret;
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
    /// CREATE (a trailing `/` taken off, RFC 9051 6.3.4).
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
        args: Args<Copy>,
    },
    /// A command the session does not know (or `UID` before one that
    /// takes no UIDs).
    Unknown,
}

/// LOGIN's arguments.
#[derive(Debug)]
pub struct Login {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret<String>,
}

/// AUTHENTICATE's arguments.
#[derive(Debug)]
pub struct Authenticate {
    /// The SASL mechanism, upper-cased (empty when not an atom).
    pub mechanism: String,
    /// SASL-IR's initial response (RFC 4959).
    pub initial_response: Option<String>,
}

/// SELECT's and EXAMINE's arguments.
#[derive(Debug)]
pub struct Select {
    /// The mailbox.
    pub mailbox: Mailbox,
    /// The `(CONDSTORE)` parameter (RFC 7162 3.1.8).
    pub condstore: bool,
}

/// RENAME's arguments.
#[derive(Debug)]
pub struct Rename {
    /// The existing name.
    pub from: Mailbox,
    /// The new name.
    pub to: Mailbox,
}

/// LIST's and LSUB's arguments.
#[derive(Debug)]
pub struct List {
    /// The reference name.
    pub reference: String,
    /// The patterns (several with LIST-EXTENDED).
    pub patterns: Vec<String>,
    /// LIST-EXTENDED syntax was used (selection or return options, a
    /// pattern list): `""` is then a pattern like any other.
    pub extended: bool,
    /// Selection option SUBSCRIBED (always for LSUB).
    pub subscribed: bool,
    /// Selection option SPECIAL-USE (RFC 6154).
    pub special_use: bool,
    /// Selection option RECURSIVEMATCH.
    pub recursive_match: bool,
    /// Return option SUBSCRIBED.
    pub return_subscribed: bool,
    /// Return option STATUS (RFC 5819): the items, upper-cased.
    pub return_status: Option<Vec<String>>,
    /// A STATUS return option asked for HIGHESTMODSEQ: CONDSTORE goes on
    /// (RFC 7162 3.1).
    pub condstore: bool,
}

/// STATUS's arguments.
#[derive(Debug)]
pub struct Status {
    /// The mailbox.
    pub mailbox: Mailbox,
    /// The items, upper-cased, each one of [`super::response::STATUS_ITEMS`].
    pub items: Vec<String>,
}

/// APPEND's arguments.
#[derive(Debug)]
pub struct Append {
    /// The target mailbox.
    pub mailbox: Mailbox,
    /// The flags to set.
    pub flags: Vec<String>,
    /// INTERNALDATE (Unix seconds), when given.
    pub date: Option<i64>,
    /// The message.
    pub data: Vec<u8>,
}

/// FETCH's arguments.
#[derive(Debug)]
pub struct Fetch {
    /// Which messages.
    pub set: SequenceSet,
    /// The items asked (macros expanded).
    pub items: Vec<Item>,
    /// The CHANGEDSINCE modifier (RFC 7162 3.1.4.1).
    pub changed_since: Option<u64>,
}

/// How SEARCH answers: plain `* SEARCH`, ESEARCH's `RETURN (...)`, or SORT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchForm {
    /// `* SEARCH n...`.
    Plain,
    /// `* ESEARCH` with these return options (RFC 4731, RFC 5182), each once.
    Extended(Vec<SearchReturn>),
    /// `* SORT n...` by these criteria; the bool is REVERSE.
    Sort(Vec<(SortKey, bool)>),
}

/// An ESEARCH return option (RFC 4731) or SEARCHRES's SAVE (RFC 5182).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchReturn {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
    /// `ALL`.
    All,
    /// `COUNT`.
    Count,
    /// `SAVE`.
    Save,
}

/// A SORT criterion (RFC 5256 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// ARRIVAL: INTERNALDATE.
    Arrival,
    /// CC.
    Cc,
    /// DATE: the Date header (INTERNALDATE when none).
    Date,
    /// FROM.
    From,
    /// SIZE.
    Size,
    /// SUBJECT: the base subject.
    Subject,
    /// TO.
    To,
}

/// SEARCH's and SORT's arguments.
#[derive(Debug)]
pub struct Search {
    /// How to answer.
    pub form: SearchForm,
    /// What to look for (`$` not yet resolved).
    pub key: Key,
}

/// How STORE changes flags.
pub use super::event::StoreMode;

/// STORE's arguments.
#[derive(Debug)]
pub struct Store {
    /// Which messages.
    pub set: SequenceSet,
    /// Replace, add or remove.
    pub mode: StoreMode,
    /// `.SILENT`: no FETCH responses.
    pub silent: bool,
    /// The flags.
    pub flags: Vec<String>,
    /// The UNCHANGEDSINCE modifier (RFC 7162 3.1.3).
    pub unchanged_since: Option<u64>,
}

/// COPY's and MOVE's arguments.
#[derive(Debug)]
pub struct Copy {
    /// Which messages.
    pub set: SequenceSet,
    /// The target mailbox.
    pub mailbox: Mailbox,
}

/// The system flags a client may set (RFC 9051 2.3.2; not `\Recent`).
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// The STATUS items understood (RFC 9051 6.3.11, RFC 8438 SIZE, RFC 7162).
pub use super::response::STATUS_ITEMS;

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
            "EXPUNGE" => CommandBody::Expunge(uid_expunge(args)),
            "FETCH" => CommandBody::Fetch {
                uid,
                args: fetch_args(args),
            },
            "SEARCH" => CommandBody::Search {
                uid,
                args: search(args),
            },
            "SORT" => CommandBody::Search {
                uid,
                args: sort(args),
            },
            "STORE" => CommandBody::Store {
                uid,
                args: store(args),
            },
            "COPY" | "MOVE" => CommandBody::Copy {
                uid,
                moving: name == "MOVE",
                args: copy(args, name),
            },
            _ => CommandBody::Unknown,
        }
    } else {
        match name {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "CHECK" => CommandBody::Check,
            "LOGOUT" => CommandBody::Logout,
            "ID" => CommandBody::Id,
            "STARTTLS" => CommandBody::StartTls,
            "LOGIN" => CommandBody::Login(login(args)),
            "AUTHENTICATE" => CommandBody::Authenticate(authenticate(args)),
            "ENABLE" => CommandBody::Enable(enable(args)),
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
            "SELECT" => CommandBody::Select(select(args)),
            "EXAMINE" => CommandBody::Examine(select(args)),
            "CREATE" => CommandBody::Create(create(args)),
            "DELETE" => CommandBody::Delete(mailbox(args.first())),
            "SUBSCRIBE" => CommandBody::Subscribe(mailbox(args.first())),
            "UNSUBSCRIBE" => CommandBody::Unsubscribe(mailbox(args.first())),
            "RENAME" => CommandBody::Rename(rename(args)),
            "LIST" => CommandBody::List(list(args, false)),
            "LSUB" => CommandBody::Lsub(list(args, true)),
            "STATUS" => CommandBody::Status(status(args)),
            "APPEND" => CommandBody::Append(append(args)),
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge(Ok(None)),
            "FETCH" => CommandBody::Fetch {
                uid,
                args: fetch_args(args),
            },
            "SEARCH" => CommandBody::Search {
                uid,
                args: search(args),
            },
            "SORT" => CommandBody::Search {
                uid,
                args: sort(args),
            },
            "STORE" => CommandBody::Store {
                uid,
                args: store(args),
            },
            "COPY" | "MOVE" => CommandBody::Copy {
                uid,
                moving: name == "MOVE",
                args: copy(args, name),
            },
            _ => CommandBody::Unknown,
        }
    };
    Ok(Command { tag, body })
}

fn is_atom(v: &Value<'_>, word: &str) -> bool {
    matches!(v, Value::Atom(a) if a.eq_ignore_ascii_case(word))
}

fn first_astring<'a>(args: &[Value<'a>], syntax: &'static str) -> Args<Cow<'a, str>> {
    args.first()
        .and_then(Value::as_astring)
        .ok_or_else(|| ArgError::bad(syntax))
}

/// A mailbox argument: an astring, or `BAD Missing mailbox name`.
fn mailbox(v: Option<&Value<'_>>) -> Args<Mailbox> {
    v.and_then(Value::as_astring)
        .map(|n| Mailbox(n.into_owned()))
        .ok_or_else(|| ArgError::bad("Missing mailbox name"))
}

/// A sequence set argument, `$` included.
fn sequence_set(v: Option<&Value<'_>>) -> Option<SequenceSet> {
    let s = v.and_then(Value::as_astring)?;
    if s == "$" {
        Some(SequenceSet::Saved)
    } else {
        SeqSet::parse(&s).map(SequenceSet::Set)
    }
}

/// A `(NAME n)` modifier with a number (CHANGEDSINCE, UNCHANGEDSINCE).
fn modifier(
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

/// Whether every flag may be set by a client: the system flags but
/// `\Recent`, and keywords (RFC 9051 2.3.2).
pub fn valid_flags(flags: &[String]) -> bool {
    flags.iter().all(|f| {
        if f.starts_with('\\') {
            SYSTEM_FLAGS.iter().any(|s| s.eq_ignore_ascii_case(f))
        } else {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
        }
    })
}

fn login(args: &[Value<'_>]) -> Args<Login> {
    match (
        args.first().and_then(Value::as_astring),
        args.get(1).and_then(Value::as_astring),
        args.len(),
    ) {
        (Some(u), Some(p), 2) => Ok(Login {
            username: u.into_owned(),
            password: Secret::new(p.into_owned()),
        }),
        _ => Err(ArgError::bad("Syntax: LOGIN user password")),
    }
}

fn authenticate(args: &[Value<'_>]) -> Authenticate {
    let mechanism = match args.first() {
        Some(Value::Atom(m)) => m.to_ascii_uppercase(),
        _ => String::new(),
    };
    let initial_response = args.get(1).and_then(Value::as_astring).map(Cow::into_owned);
    Authenticate {
        mechanism,
        initial_response,
    }
}

fn enable(args: &[Value<'_>]) -> Args<Vec<String>> {
    if args.is_empty() {
        return Err(ArgError::bad("Syntax: ENABLE capability..."));
    }
    Ok(args
        .iter()
        .filter_map(|a| a.as_astring().map(Cow::into_owned))
        .collect())
}

fn select(args: &[Value<'_>]) -> Args<Select> {
    let mailbox = mailbox(args.first())?;
    let condstore = match args.get(1) {
        None => false,
        Some(Value::List(params)) if params.is_empty() => false,
        Some(Value::List(params)) if params.iter().all(|p| is_atom(p, "CONDSTORE")) => true,
        Some(_) => return Err(ArgError::bad("Unknown SELECT parameter").after(&mailbox)),
    };
    Ok(Select { mailbox, condstore })
}

fn create(args: &[Value<'_>]) -> Args<Mailbox> {
    let Mailbox(name) = mailbox(args.first())?;
    // RFC 9051 6.3.4: a trailing delimiter on CREATE is ignored.
    if name.len() > 1 && name.ends_with('/') {
        return Ok(Mailbox(name[..name.len() - 1].to_owned()));
    }
    Ok(Mailbox(name))
}

fn rename(args: &[Value<'_>]) -> Args<Rename> {
    let from = mailbox(args.first())?;
    let to = mailbox(args.get(1)).map_err(|e| e.after(&from))?;
    Ok(Rename { from, to })
}

fn status(args: &[Value<'_>]) -> Args<Status> {
    let mailbox = mailbox(args.first())?;
    let syntax = || ArgError::bad("Syntax: STATUS mailbox (items)").after(&mailbox);
    let Some(Value::List(items)) = args.get(1) else {
        return Err(syntax());
    };
    let items: Vec<String> = items
        .iter()
        .filter_map(|i| i.as_astring().map(|s| s.to_ascii_uppercase()))
        .collect();
    if items.is_empty() {
        return Err(syntax());
    }
    if let Some(bad) = items.iter().find(|i| !STATUS_ITEMS.contains(&i.as_str())) {
        return Err(ArgError::bad(format!("Unknown STATUS item {bad}")).after(&mailbox));
    }
    Ok(Status { mailbox, items })
}

fn append(args: &[Value<'_>]) -> Args<Append> {
    let mailbox = mailbox(args.first())?;
    let mut flags = Vec::new();
    let mut data = None;
    let mut date = None;
    for v in args.get(1..).unwrap_or_default() {
        match v {
            Value::List(fl) => {
                flags = fl
                    .iter()
                    .filter_map(|f| f.as_astring().map(Cow::into_owned))
                    .collect()
            }
            Value::Literal(d) => data = Some(d.to_vec()),
            Value::Quoted(q) => match fetch::parse_date_time(q) {
                Some(d) => date = Some(d),
                None => return Err(ArgError::bad("Invalid date-time").after(&mailbox)),
            },
            Value::Atom(_) => {}
        }
    }
    let Some(data) = data else {
        return Err(
            ArgError::bad("Syntax: APPEND mailbox [(flags)] [date] literal").after(&mailbox),
        );
    };
    if !valid_flags(&flags) {
        return Err(ArgError::bad("Invalid flag in the list").after(&mailbox));
    }
    Ok(Append {
        mailbox,
        flags,
        date,
        data,
    })
}

/// LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return
/// options, several patterns, and LIST-STATUS (RFC 5819).
fn list(all: &[Value<'_>], lsub: bool) -> Args<List> {
    let mut args = all;
    let mut l = List {
        reference: String::new(),
        patterns: Vec::new(),
        extended: false,
        subscribed: lsub,
        special_use: false,
        recursive_match: false,
        return_subscribed: false,
        return_status: None,
        condstore: false,
    };
    if !lsub {
        if let Some(Value::List(sel)) = args.first() {
            l.extended = true;
            for o in sel {
                if is_atom(o, "SUBSCRIBED") {
                    l.subscribed = true;
                } else if is_atom(o, "SPECIAL-USE") {
                    l.special_use = true;
                } else if is_atom(o, "RECURSIVEMATCH") {
                    l.recursive_match = true;
                } else if !is_atom(o, "REMOTE") {
                    return Err(ArgError::bad("Unknown LIST selection option"));
                }
            }
            // RFC 5258 3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD.
            if l.recursive_match && !l.subscribed && !l.special_use {
                return Err(ArgError::bad(
                    "RECURSIVEMATCH needs another selection option",
                ));
            }
            args = &args[1..];
        }
    }
    let reference = args.first().and_then(Value::as_astring);
    let patterns: Option<Vec<String>> = match args.get(1) {
        Some(Value::List(ps)) if !lsub && !ps.is_empty() => {
            l.extended = true;
            ps.iter()
                .map(|p| p.as_astring().map(Cow::into_owned))
                .collect()
        }
        Some(v) => v.as_astring().map(|p| vec![p.into_owned()]),
        None => None,
    };
    let (Some(reference), Some(patterns)) = (reference, patterns) else {
        return Err(ArgError::bad("Syntax: LIST reference pattern"));
    };
    l.reference = reference.into_owned();
    l.patterns = patterns;
    match (args.get(2), args.get(3)) {
        (None, _) => {}
        (Some(r), Some(Value::List(opts))) if !lsub && is_atom(r, "RETURN") => {
            l.extended = true;
            let mut i = 0;
            while let Some(o) = opts.get(i) {
                // A fault after STATUS (HIGHESTMODSEQ) still turns CONDSTORE on.
                let condstore = l.condstore;
                let bad = |text: &'static str| ArgError::Bad {
                    mailboxes: Vec::new(),
                    condstore,
                    text: text.into(),
                };
                if is_atom(o, "SUBSCRIBED") {
                    l.return_subscribed = true;
                } else if is_atom(o, "STATUS") {
                    let Some(Value::List(items)) = opts.get(i + 1) else {
                        return Err(bad("Syntax: RETURN (STATUS (items))"));
                    };
                    let items: Vec<String> = items
                        .iter()
                        .filter_map(|v| v.as_astring().map(|s| s.to_ascii_uppercase()))
                        .collect();
                    if items.is_empty() {
                        return Err(bad("Syntax: RETURN (STATUS (items))"));
                    }
                    if items.iter().any(|x| !STATUS_ITEMS.contains(&x.as_str())) {
                        return Err(bad("Unknown STATUS item"));
                    }
                    l.condstore |= items.iter().any(|x| x == "HIGHESTMODSEQ");
                    l.return_status = Some(items);
                    i += 1;
                } else if !(is_atom(o, "CHILDREN") || is_atom(o, "SPECIAL-USE")) {
                    return Err(bad("Unknown LIST return option"));
                }
                i += 1;
            }
        }
        _ => return Err(ArgError::bad("Syntax: LIST ... RETURN (options)")),
    }
    Ok(l)
}

fn uid_expunge(args: &[Value<'_>]) -> Args<Option<SequenceSet>> {
    sequence_set(args.first())
        .map(Some)
        .ok_or_else(|| ArgError::bad("Syntax: UID EXPUNGE set"))
}

fn fetch_args(args: &[Value<'_>]) -> Args<Fetch> {
    let syntax = || ArgError::bad("Syntax: FETCH set items");
    let (Some(set), Some(items)) = (sequence_set(args.first()), args.get(1)) else {
        return Err(syntax());
    };
    let items = fetch::parse_items(items).map_err(ArgError::bad)?;
    // FETCH modifiers: (CHANGEDSINCE n) (RFC 7162 3.1.4.1).
    let changed_since = match args.get(2) {
        None => None,
        Some(Value::List(m)) => Some(modifier(
            m,
            "CHANGEDSINCE",
            "Bad CHANGEDSINCE value",
            "Unknown FETCH modifier",
        )?),
        Some(_) => return Err(syntax()),
    };
    Ok(Fetch {
        set,
        items,
        changed_since,
    })
}

/// SORT criteria (RFC 5256): `REVERSE` applies to the next key.
fn sort_criteria(crit: &[Value<'_>]) -> Option<Vec<(SortKey, bool)>> {
    let mut out = Vec::new();
    let mut reverse = false;
    for c in crit {
        let Value::Atom(a) = c else { return None };
        let by = match a.to_ascii_uppercase().as_str() {
            "REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            _ => return None,
        };
        out.push((by, reverse));
        reverse = false;
    }
    (!out.is_empty() && !reverse).then_some(out)
}

fn sort(args: &[Value<'_>]) -> Args<Search> {
    let Some(Value::List(crit)) = args.first() else {
        return Err(ArgError::bad("Syntax: SORT (criteria) charset keys"));
    };
    let crit = sort_criteria(crit).ok_or_else(|| ArgError::bad("Unknown sort criterion"))?;
    // RFC 5256: the charset is required.
    let cs = args
        .get(1)
        .and_then(Value::as_astring)
        .ok_or_else(|| ArgError::bad("SORT needs a charset"))?;
    // The charset is required: `SORT (DATE) ALL` has none.
    if args.len() < 3 {
        return Err(ArgError::bad("SEARCH needs a key"));
    }
    if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
        return Err(ArgError::BadCharset { saving: false });
    }
    keys(&args[2..], SearchForm::Sort(crit))
}

fn search(mut args: &[Value<'_>]) -> Args<Search> {
    let mut form = SearchForm::Plain;
    // ESEARCH (RFC 4731): RETURN (MIN MAX ALL COUNT); () means ALL.
    if args.first().is_some_and(|a| is_atom(a, "RETURN")) {
        let Some(Value::List(opts)) = args.get(1) else {
            return Err(ArgError::bad("Syntax: SEARCH RETURN (options)"));
        };
        let mut ret = Vec::new();
        for o in opts {
            let r = match o.as_astring().map(|o| o.to_ascii_uppercase()).as_deref() {
                Some("MIN") => SearchReturn::Min,
                Some("MAX") => SearchReturn::Max,
                Some("ALL") => SearchReturn::All,
                Some("COUNT") => SearchReturn::Count,
                Some("SAVE") => SearchReturn::Save,
                _ => return Err(ArgError::bad("Unknown SEARCH return option")),
            };
            if !ret.contains(&r) {
                ret.push(r);
            }
        }
        if ret.is_empty() {
            ret.push(SearchReturn::All);
        }
        form = SearchForm::Extended(ret);
        args = &args[2..];
    }
    keys(args, form)
}

fn keys(args: &[Value<'_>], form: SearchForm) -> Args<Search> {
    match fetch::parse_search(args) {
        Ok(key) => Ok(Search { form, key }),
        Err(SearchError::BadCharset) => Err(ArgError::BadCharset {
            saving: matches!(&form, SearchForm::Extended(r) if r.contains(&SearchReturn::Save)),
        }),
        Err(SearchError::Syntax(e)) => Err(ArgError::bad(e)),
    }
}

fn store(args: &[Value<'_>]) -> Args<Store> {
    // STORE modifiers: (UNCHANGEDSINCE n) (RFC 7162 3.1.3).
    let mut unchanged_since = None;
    let mut rest = args.get(1..).unwrap_or_default();
    if let Some(Value::List(m)) = rest.first() {
        unchanged_since = Some(modifier(
            m,
            "UNCHANGEDSINCE",
            "Bad UNCHANGEDSINCE value",
            "Unknown STORE modifier",
        )?);
        rest = &rest[1..];
    }
    let bad = |text: &'static str| ArgError::Bad {
        mailboxes: Vec::new(),
        condstore: unchanged_since.is_some(),
        text: text.into(),
    };
    let (Some(set), Some(Value::Atom(op)), Some(flags)) =
        (sequence_set(args.first()), rest.first(), rest.get(1))
    else {
        return Err(bad("Syntax: STORE set [+-]FLAGS[.SILENT] (flags)"));
    };
    let op = op.to_ascii_uppercase();
    let silent = op.ends_with(".SILENT");
    let mode = match op.trim_end_matches(".SILENT") {
        "FLAGS" => StoreMode::Replace,
        "+FLAGS" => StoreMode::Add,
        "-FLAGS" => StoreMode::Remove,
        _ => return Err(bad("Unknown STORE operation")),
    };
    let flags: Vec<String> = match flags {
        Value::List(l) => l
            .iter()
            .filter_map(|f| f.as_astring().map(Cow::into_owned))
            .collect(),
        other => other
            .as_astring()
            .map(|s| vec![s.into_owned()])
            .unwrap_or_default(),
    };
    if !valid_flags(&flags) {
        return Err(bad("Invalid flag in the list"));
    }
    Ok(Store {
        set,
        mode,
        silent,
        flags,
        unchanged_since,
    })
}

fn copy(args: &[Value<'_>], name: &str) -> Args<Copy> {
    let Some(set) = sequence_set(args.first()) else {
        return Err(ArgError::bad(format!("Syntax: {name} set mailbox")));
    };
    let mailbox = mailbox(args.get(1))?;
    Ok(Copy { set, mailbox })
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
            body("a SEARCH RETURN (SAVE) CHARSET KOI8-R ALL\r\n"),
            CommandBody::Search {
                args: Err(ArgError::BadCharset { saving: true }),
                ..
            }
        ));
    }
}
