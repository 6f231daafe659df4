//! What the IMAP session asks of the runtime (the mailbox store), and the
//! answers it takes. As in SMTP, a question stops the session in a named
//! waiting state until the matching `answer_*` call.

use crate::proxy::{ClientAddress, ProxyError};
use crate::secret::Secret;

/// A message's place and state, as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// The UID (RFC 9051 2.3.1.1).
    pub uid: u32,
    /// System flags (`\Seen`...) and keywords.
    pub flags: Vec<String>,
    /// RFC822.SIZE: the size with CRLF line ends.
    pub size: u64,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// The mod-sequence of the last change (RFC 7162 CONDSTORE), >= 1.
    pub modseq: u64,
}

/// A mailbox as SELECT/EXAMINE sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxView {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// Every message, in UID order (sequence number = index + 1). Shared:
    /// a thousand sessions on one mailbox hold one copy until they differ.
    pub messages: std::sync::Arc<Vec<MessageMeta>>,
    /// Keywords defined in the mailbox (for FLAGS).
    pub keywords: Vec<String>,
    /// HIGHESTMODSEQ (RFC 7162): at least every message's `modseq`.
    pub highest_modseq: u64,
    /// The mailbox's LIST attributes (`\HasNoChildren`, special use), for
    /// IMAP4rev2's SELECT (RFC 9051 6.3.2).
    pub attributes: Vec<String>,
    /// The UIDs this request made `\Recent` for the asking session (a
    /// SELECT or Poll with `take_recent`; RFC 3501 2.3.2): no other
    /// session gets them. Sorted.
    pub recent: Vec<u32>,
}

/// One mailbox in a LIST answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The name, `/`-separated (hierarchy delimiter `/`), `INBOX` for the inbox.
    pub name: String,
    /// Attributes: `\HasNoChildren`, `\Subscribed`, special use (`\Sent`...).
    pub attributes: Vec<String>,
    /// Counts for LIST-STATUS (RFC 5819), when asked and selectable.
    pub status: Option<StatusCounts>,
}

/// Counts for STATUS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// MESSAGES.
    pub messages: u32,
    /// UNSEEN.
    pub unseen: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// RECENT (IMAP4rev1 only): messages no session has taken as recent.
    pub recent: u32,
    /// SIZE (RFC 8438): total bytes.
    pub size: u64,
    /// HIGHESTMODSEQ (RFC 7162).
    pub highest_modseq: u64,
    /// DELETED (RFC 9051): messages flagged \Deleted.
    pub deleted: u32,
    /// DELETED-STORAGE (RFC 9208): their bytes.
    pub deleted_storage: u64,
}

/// What FETCH ENVELOPE/BODY/BODYSTRUCTURE and SORT need of a message,
/// computed once by [`super::mime::summary`] and kept by the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// ENVELOPE.
    pub envelope: String,
    /// BODY (no extension data).
    pub body: String,
    /// BODYSTRUCTURE.
    pub bodystructure: String,
    /// SORT keys (RFC 5256).
    pub sort: SortKeys,
}

/// The values SORT compares (RFC 5256 section 3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// The Date header, Unix seconds (None: use INTERNALDATE).
    pub date: Option<i64>,
    /// The first From address's mailbox part, lower-cased.
    pub from: String,
    /// The first To address's mailbox part, lower-cased.
    pub to: String,
    /// The first Cc address's mailbox part, lower-cased.
    pub cc: String,
    /// The base subject, lower-cased.
    pub subject: String,
}

/// A message's flags after STORE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The UID.
    pub uid: u32,
    /// Its flags now.
    pub flags: Vec<String>,
    /// Its mod-sequence now.
    pub modseq: u64,
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// A request to the mailbox store. `mailbox` names are as the client gave
/// them, already checked against escapes (`..`, `/` at the start, `~`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxRequest {
    /// Mailboxes matching `pattern` (`*` and `%` wildcards).
    List {
        /// The patterns, reference already joined (LIST-EXTENDED allows several).
        patterns: Vec<String>,
        /// Only subscribed ones (LSUB, `LIST (SUBSCRIBED)`).
        subscribed_only: bool,
        /// Fill in [`ListEntry::status`] (LIST-STATUS).
        with_status: bool,
    },
    /// Open a mailbox.
    Select {
        /// Its name.
        mailbox: String,
        /// A read-write SELECT: the messages no session has seen become
        /// recent for this one ([`MailboxView::recent`]).
        take_recent: bool,
    },
    /// Counts of a mailbox.
    Status {
        /// Its name.
        mailbox: String,
    },
    /// Create a mailbox.
    Create {
        /// Its name.
        mailbox: String,
    },
    /// Delete a mailbox.
    Delete {
        /// Its name.
        mailbox: String,
    },
    /// Rename a mailbox.
    Rename {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Subscribe (or unsubscribe) a mailbox.
    Subscribe {
        /// Its name.
        mailbox: String,
        /// Subscribe (true) or unsubscribe.
        on: bool,
    },
    /// The bytes of these messages (CRLF line ends).
    Bodies {
        /// The selected mailbox.
        mailbox: String,
        /// Which messages.
        uids: Vec<u32>,
        /// Only the header (up to the first empty line) is needed.
        header_only: bool,
    },
    /// The parsed summaries of these messages.
    Summaries {
        /// The selected mailbox.
        mailbox: String,
        /// Which messages.
        uids: Vec<u32>,
    },
    /// Storage used and allowed (QUOTA, RFC 9208).
    Quota,
    /// Change flags; the answer gives the new flags.
    Store {
        /// The selected mailbox.
        mailbox: String,
        /// Which messages.
        uids: Vec<u32>,
        /// How.
        mode: StoreMode,
        /// Which flags.
        flags: Vec<String>,
        /// CONDSTORE's UNCHANGEDSINCE: leave (and report) messages changed after it.
        unchanged_since: Option<u64>,
    },
    /// Remove messages flagged `\Deleted` (only these UIDs, when given).
    Expunge {
        /// The selected mailbox.
        mailbox: String,
        /// UID EXPUNGE's set.
        uids: Option<Vec<u32>>,
    },
    /// Store a new message.
    Append {
        /// Where.
        mailbox: String,
        /// Its flags.
        flags: Vec<String>,
        /// The message.
        data: Vec<u8>,
        /// INTERNALDATE given with APPEND (Unix seconds); None: now.
        date: Option<i64>,
    },
    /// Copy (or move) messages to another mailbox.
    Copy {
        /// The selected mailbox.
        mailbox: String,
        /// Which messages.
        uids: Vec<u32>,
        /// Where to.
        to: String,
        /// MOVE (expunge from the source) rather than COPY.
        moving: bool,
    },
    /// What changed in the selected mailbox since the view was taken.
    Poll {
        /// The selected mailbox.
        mailbox: String,
        /// Selected read-write: new messages become recent for this
        /// session ([`MailboxView::recent`]).
        take_recent: bool,
    },
    /// The UIDs expunged after a mod-sequence (QRESYNC, RFC 7162 3.2.5).
    Vanished {
        /// The selected mailbox.
        mailbox: String,
        /// The client's mod-sequence.
        since: u64,
    },
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxAnswer {
    /// LIST entries.
    List(Vec<ListEntry>),
    /// A selected mailbox.
    View(MailboxView),
    /// STATUS counts.
    Status(StatusCounts),
    /// Message bytes, in the order asked (missing ones left out).
    Bodies(Vec<(u32, Vec<u8>)>),
    /// Flags after STORE.
    Flags {
        /// The messages STORE applied to, with their flags now.
        changed: Vec<Stored>,
        /// UIDs left alone because they changed after UNCHANGEDSINCE.
        modified: Vec<u32>,
    },
    /// Summaries, in the order asked (missing ones left out).
    Summaries(Vec<(u32, Summary)>),
    /// Storage in bytes: used, and the limit (None: unlimited).
    Quota {
        /// Bytes used by every mailbox of the account.
        used: u64,
        /// The limit.
        limit: Option<u64>,
    },
    /// UIDs removed by EXPUNGE.
    Expunged(Vec<u32>),
    /// APPENDUID / COPYUID data: (UIDVALIDITY of the target, source UIDs, new UIDs).
    Uids {
        /// Target UIDVALIDITY.
        uid_validity: u32,
        /// Source UIDs (COPY/MOVE), empty for APPEND.
        from: Vec<u32>,
        /// The new UIDs.
        to: Vec<u32>,
    },
    /// The current view (after Poll).
    Changed(MailboxView),
    /// The UIDs expunged after the mod-sequence asked about (sorted);
    /// exact when it is at least `floor`, else possibly incomplete.
    Vanished {
        /// The UIDs.
        uids: Vec<u32>,
        /// The lowest mod-sequence the store answers exactly from.
        floor: u64,
    },
    /// Done, nothing to report.
    Ok,
    /// Refused: `NO [code] text`.
    No {
        /// A response code (`NONEXISTENT`, `ALREADYEXISTS`, `TRYCREATE`...).
        code: Option<Code>,
        /// Human text.
        text: String,
    },
}

/// A response code without data (RFC 5530, RFC 9051 7.1, RFC 9208,
/// RFC 3516): what the client is told in brackets. A store gives one with
/// a refusal ([`MailboxAnswer::No`]); the session writes the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `ALREADYEXISTS`: the target name is taken.
    AlreadyExists,
    /// `CANNOT`: the operation can never succeed (a bad name, INBOX).
    Cannot,
    /// `NONEXISTENT`: no such mailbox.
    NonExistent,
    /// `OVERQUOTA`: the account's storage limit is reached.
    OverQuota,
    /// `SERVERBUG`: the store failed; the client may try later.
    ServerBug,
    /// `TRYCREATE`: the target mailbox does not exist; CREATE it first.
    TryCreate,
    /// `AUTHENTICATIONFAILED`: bad credentials.
    AuthenticationFailed,
    /// `BADCHARSET (UTF-8 US-ASCII)`: a SEARCH charset not supported,
    /// with the ones that are.
    BadCharset,
    /// `CLOSED`: the previous mailbox is closed (RFC 7162 3.2.11).
    Closed,
    /// `EXPUNGEISSUED`: another session expunged some of the messages
    /// asked for (RFC 5530 3); the view still shows them.
    ExpungeIssued,
    /// `NOPERM`: not allowed for this user.
    NoPerm,
    /// `PRIVACYREQUIRED`: the command needs TLS.
    PrivacyRequired,
    /// `READ-ONLY`: the mailbox is selected read-only.
    ReadOnly,
    /// `READ-WRITE`: the mailbox is selected read-write.
    ReadWrite,
    /// `TOOBIG`: a literal over the limit.
    TooBig,
    /// `UNAVAILABLE`: the directory could not answer; try later.
    Unavailable,
    /// `UNKNOWN-CTE`: a Content-Transfer-Encoding BINARY cannot undo.
    UnknownCte,
}

impl Code {
    /// The code as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::Cannot => "CANNOT",
            Code::NonExistent => "NONEXISTENT",
            Code::OverQuota => "OVERQUOTA",
            Code::ServerBug => "SERVERBUG",
            Code::TryCreate => "TRYCREATE",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::BadCharset => "BADCHARSET (UTF-8 US-ASCII)",
            Code::Closed => "CLOSED",
            Code::ExpungeIssued => "EXPUNGEISSUED",
            Code::NoPerm => "NOPERM",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::TooBig => "TOOBIG",
            Code::Unavailable => "UNAVAILABLE",
            Code::UnknownCte => "UNKNOWN-CTE",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the session asks or tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The client address is known: may it go on? (`answer_connect`)
    Connect(ClientAddress),
    /// Check credentials. (`answer_login`)
    Login {
        /// The login name.
        username: String,
        /// The password.
        password: Secret<String>,
    },
    /// A mailbox operation for the logged-in user. (`answer_mailbox`)
    Mailbox {
        /// The user.
        user: String,
        /// What.
        request: MailboxRequest,
    },
    /// A fact for the log.
    Notice(Notice),
}

/// The session's named timers; [`Notice::Timeout`] says which fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapTimer {
    /// The client has not logged in within [`crate::imap::session::ImapConfig::login_timeout`]
    /// of connecting (this timer is not moved by activity).
    Login,
    /// A logged-in client has been inside IDLE for
    /// [`crate::imap::session::ImapConfig::idle_timeout`] without a word (RFC 2177 3).
    Idle,
    /// A logged-in client has been silent for [`crate::imap::session::ImapConfig::idle_timeout`]
    /// (RFC 9051 5.4).
    Autologout,
}

/// Facts worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The PROXY gate refused the connection.
    ProxyRefused(ProxyError),
    /// A login failed for this name.
    LoginFailed {
        /// The name given.
        username: String,
    },
    /// Bytes after STARTTLS were dropped.
    DiscardedAfterStartTls(usize),
    /// A timer ran out (which one says why the session ended).
    Timeout(ImapTimer),
    /// The client closed the connection.
    LostConnection,
    /// A line or literal over the limits ended the session.
    ProtocolLimit(&'static str),
}
