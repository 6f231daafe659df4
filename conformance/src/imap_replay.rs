//! Replays IMAP transcripts against the IMAP core with a fixed clock and
//! any [`MailboxStore`]: the in-memory one, or the Maildir one in a
//! temporary folder (the same `C:`/`S:`/`E:` format as SMTP).
//!
//! Header directives (defaults in brackets):
//! - `@tls implicit|starttls|none` [implicit]; implicit TLS is completed
//!   at once unless `@autotls no`.
//! - `@proxy required|forbidden`, `@peer`, `@local`, as for SMTP.
//! - `@user NAME PASSWORD` [alice@example.com secret]; the first one
//!   owns the messages of `@message` and `@deliver`.
//! - `@quota BYTES`: the account's storage limit [unlimited].
//! - `@separator /|.` [/]: the hierarchy separator clients see.
//! - `@plaintext-auth yes|no` [no]: the listener allows LOGIN and
//!   AUTHENTICATE without TLS.
//! - `@set NAME=VALUE ...`: session settings: `max_prelogin_literal`,
//!   `max_prelogin_line`, `max_pipelined`, `max_line`, `max_literal`,
//!   `max_append_literal` (bytes), `login_timeout`, `idle_timeout` (seconds).
//! - `@admission accept|full|too-many` [accept]: the answer to the connect
//!   question (admission).
//! - `@message MAILBOX FLAGS TEXT`: a message in a mailbox at start,
//!   stored by an APPEND dated [`DEFAULT_DATE`]; FLAGS is `-` or
//!   comma-separated (`\Seen,$Label`), TEXT uses the `C~` escapes.
//!   Mailboxes INBOX, Drafts, Sent, Junk, Trash always exist.
//!
//! Session directives: `@tls-established`, `@advance 1s`, `@eof`,
//! `@deliver INBOX TEXT` (a message arrives by local delivery),
//! `@changed` (tell the session its mailbox changed), `@session NAME`
//! (the lines that follow are another connection's, on the same store:
//! a session of that name is opened the first time, the first session is
//! `1`; each keeps its own server output), `@hold` (the next question to
//! the directory or the store waits) and `@answer` (it is answered now).

use crate::transcript::{escape, unescape, Step, Transcript};
use postern_adapters::maildir::Maildir;
use postern_adapters::mailstore::MailStore;
use postern_adapters::memstore::MemStore;
use postern_adapters::store::{Delivery, FixedClock, MailboxStore};
use postern_core::imap::event::{Event, MailboxAnswer, MailboxRequest};
use postern_core::imap::session::{
    ConnectAnswer, HierarchySeparator, ImapConfig, ImapListener, ImapSession, LoginAnswer, Output,
};
use postern_core::policy::admission::Refusal;
use postern_core::proxy::ProxyConfig;
use postern_core::smtp::TlsMode;
use postern_core::Networks;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// INTERNALDATE of messages that come without one: 25-Nov-2026 06:38:06 +0000
/// (the stores' clock stands still there).
pub const DEFAULT_DATE: i64 = 1_795_588_686;

/// Which mailbox store a transcript runs against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory store.
    Memory,
    /// The Maildir store in this (empty, temporary) folder.
    Maildir(PathBuf),
    /// The PostgreSQL store: a database of its own (a connection string)
    /// and an S3 endpoint and bucket (credentials `testing`, as moto's).
    Postgres {
        /// The connection string.
        url: String,
        /// `http://host:port` of the object store.
        endpoint: String,
        /// The bucket (made if missing).
        bucket: String,
    },
}

/// The store for a transcript: a fixed clock at [`DEFAULT_DATE`] (so
/// UIDVALIDITY is 1000 + the default folder's place, 2005 and up for
/// created ones), and the `@quota` limit.
pub fn make_store(backend: &Backend, quota: Option<u64>) -> Result<Arc<dyn MailboxStore>, String> {
    let clock = Arc::new(FixedClock::new(DEFAULT_DATE));
    Ok(match backend {
        Backend::Memory => {
            Arc::new(MemStore::new(clock).with_quota(quota, std::collections::HashMap::new()))
        }
        Backend::Maildir(dir) => Arc::new(
            MailStore::new(Arc::new(Maildir::new(dir, "mx.example.com")))
                .with_quota(quota, std::collections::HashMap::new())
                .with_clock(clock),
        ),
        Backend::Postgres {
            url,
            endpoint,
            bucket,
        } => {
            use postern_adapters::pg;
            let db = Arc::new(pg::Pg::connect(url, 2).map_err(|e| e.to_string())?);
            let s3 = pg::S3Config {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: "us-east-1".into(),
                access_key: "testing".into(),
                secret_key: "testing".into(),
            };
            let blobs = Arc::new(pg::Blobs::new(db.clone(), &s3).map_err(|e| e.to_string())?);
            blobs.create_bucket().map_err(|e| e.to_string())?;
            Arc::new(
                pg::PgMailbox::new(pg::PgMail::new(db, blobs, clock))
                    .with_quota(quota, std::collections::HashMap::new()),
            )
        }
    })
}

/// Drives one IMAP session with a mailbox store.
pub struct ImapDriver {
    /// The session.
    pub session: ImapSession,
    /// The store.
    pub store: Arc<dyn MailboxStore>,
    /// Login names and passwords (`@user`).
    pub users: BTreeMap<String, String>,
    /// The account `@message` and `@deliver` write to (the first `@user`).
    pub owner: String,
    now: Instant,
    auto_tls: bool,
    tls_pending: bool,
    /// Server bytes not yet matched.
    pub output: Vec<u8>,
    /// Event summaries not yet matched (text, mandatory).
    pub events: std::collections::VecDeque<(String, bool)>,
    /// The whole session, for snapshots.
    pub log: Vec<String>,
    /// The answer to the connect question.
    connect: ConnectAnswer,
    /// The current session's name, and the others (with their unmatched
    /// output), for `@session`.
    name: String,
    parked: BTreeMap<String, (ImapSession, Vec<u8>, bool)>,
    /// What opens another session.
    opening: (Arc<ImapConfig>, Arc<ImapListener>, SocketAddr, SocketAddr),
    /// No client byte has reached the current session yet.
    fresh: bool,
    /// `@hold`: the next question waits, and the question waiting.
    hold: bool,
    held: Option<Event>,
}

impl ImapDriver {
    /// Builds a driver from a transcript header, with the in-memory store.
    pub fn from_header(header: &[(String, String)]) -> Result<Self, String> {
        Self::with_backend(header, &Backend::Memory)
    }

    /// Builds a driver from a transcript header, with the store `backend`.
    pub fn with_backend(header: &[(String, String)], backend: &Backend) -> Result<Self, String> {
        let mut tls = TlsMode::Implicit;
        let mut auto_tls = true;
        let mut required = false;
        let mut peer: SocketAddr = "10.0.20.5:40000".parse().map_err(|_| "peer")?;
        let mut local: SocketAddr = "10.0.20.1:993".parse().map_err(|_| "local")?;
        let mut users: BTreeMap<String, String> = BTreeMap::new();
        let mut owner: Option<String> = None;
        let mut quota: Option<u64> = None;
        let mut seeds: Vec<(String, Vec<String>, Vec<u8>)> = Vec::new();
        let mut cfg = ImapConfig::new("imap.example.com");
        let mut connect = ConnectAnswer::Accept;
        let mut allow_plaintext_auth = false;
        for (name, arg) in header {
            match name.as_str() {
                "tls" => {
                    tls = match arg.as_str() {
                        "implicit" => TlsMode::Implicit,
                        "starttls" => TlsMode::StartTls,
                        "none" => TlsMode::None,
                        _ => return Err(format!("@tls {arg}")),
                    }
                }
                "autotls" => auto_tls = arg != "no",
                "separator" => {
                    cfg.hierarchy_separator = match arg.as_str() {
                        "/" => HierarchySeparator::Slash,
                        "." => HierarchySeparator::Dot,
                        _ => return Err(format!("@separator {arg}")),
                    }
                }
                "plaintext-auth" => allow_plaintext_auth = arg == "yes",
                "proxy" => required = arg == "required",
                "peer" => peer = arg.parse().map_err(|_| format!("@peer {arg}"))?,
                "local" => local = arg.parse().map_err(|_| format!("@local {arg}"))?,
                "user" => {
                    let (u, p) = arg.split_once(' ').ok_or("@user NAME PASSWORD")?;
                    owner.get_or_insert_with(|| u.to_owned());
                    users.insert(u.to_owned(), p.to_owned());
                }
                "message" => {
                    let mut parts = arg.splitn(3, ' ');
                    let (Some(folder), Some(flags), Some(text)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err("@message MAILBOX FLAGS TEXT".into());
                    };
                    let flags = if flags == "-" {
                        Vec::new()
                    } else {
                        flags.split(',').map(str::to_owned).collect()
                    };
                    seeds.push((folder.to_owned(), flags, unescape(text)?));
                }
                "quota" => quota = Some(arg.parse().map_err(|_| format!("@quota {arg}"))?),
                "set" => {
                    for kv in arg.split_whitespace() {
                        let (k, v) = kv.split_once('=').ok_or(format!("@set {kv}"))?;
                        let n: u64 = v.parse().map_err(|_| format!("@set {kv}"))?;
                        let size = usize::try_from(n).map_err(|_| format!("@set {kv}"))?;
                        match k {
                            "max_prelogin_literal" => cfg.max_prelogin_literal = n,
                            "max_prelogin_line" => cfg.max_prelogin_line = size,
                            "max_pipelined" => cfg.max_pipelined = size,
                            "max_line" => cfg.limits.max_line = size,
                            "max_literal" => cfg.limits.max_literal = n,
                            "max_append_literal" => cfg.limits.max_append_literal = n,
                            "login_timeout" => cfg.login_timeout = Duration::from_secs(n),
                            "idle_timeout" => cfg.idle_timeout = Duration::from_secs(n),
                            _ => return Err(format!("@set {k}: unknown setting")),
                        }
                    }
                }
                "admission" => {
                    connect = match arg.as_str() {
                        "accept" => ConnectAnswer::Accept,
                        "full" => ConnectAnswer::Refuse(Refusal::ServerFull),
                        "too-many" => {
                            ConnectAnswer::Refuse(Refusal::TooManyConnections { ip: peer.ip() })
                        }
                        _ => return Err(format!("@admission {arg}")),
                    }
                }
                other => return Err(format!("unknown IMAP header directive @{other}")),
            }
        }
        let owner = owner.unwrap_or_else(|| {
            users.insert("alice@example.com".into(), "secret".into());
            "alice@example.com".into()
        });
        let store = make_store(backend, quota)?;
        let mut seeded: Vec<String> = Vec::new();
        for (folder, flags, data) in seeds {
            if !seeded.contains(&folder) {
                seeded.push(folder.clone());
            }
            let answer = store.answer(
                &owner,
                MailboxRequest::Append {
                    mailbox: folder.clone(),
                    flags,
                    data,
                    date: Some(DEFAULT_DATE),
                },
            );
            if !matches!(answer, MailboxAnswer::Uids { .. }) {
                return Err(format!("@message {folder}: {answer:?}"));
            }
        }
        // Seeded messages were there before the transcript's sessions:
        // an earlier session saw them, none of ours has them \Recent (as
        // the daemon replay writes them into `cur/`). `@deliver` brings
        // recent ones.
        for folder in seeded {
            store.answer(
                &owner,
                MailboxRequest::Select {
                    mailbox: folder,
                    take_recent: true,
                },
            );
        }
        let proxy = if required {
            ProxyConfig::required(Networks::parse(["10.0.20.0/24"]).map_err(|e| e.to_string())?)
        } else {
            ProxyConfig::forbidden()
        };
        let now = Instant::now();
        let cfg = Arc::new(cfg);
        let listener = Arc::new(ImapListener {
            tls,
            proxy,
            allow_plaintext_auth,
        });
        let session = ImapSession::new(cfg.clone(), listener.clone(), peer, local, now);
        let mut d = ImapDriver {
            session,
            store,
            users,
            owner,
            now,
            auto_tls,
            tls_pending: false,
            output: Vec::new(),
            events: Default::default(),
            log: Vec::new(),
            connect,
            name: "1".into(),
            parked: BTreeMap::new(),
            opening: (cfg, listener, peer, local),
            fresh: true,
            hold: false,
            held: None,
        };
        d.drain();
        Ok(d)
    }

    /// Makes session `name` the current one (opening it the first time).
    fn switch(&mut self, name: &str) {
        if name == self.name {
            return;
        }
        let (session, output, fresh) = match self.parked.remove(name) {
            Some(p) => p,
            None => {
                let (cfg, listener, peer, local) = self.opening.clone();
                (
                    ImapSession::new(cfg, listener, peer, local, self.now),
                    Vec::new(),
                    true,
                )
            }
        };
        let old_session = std::mem::replace(&mut self.session, session);
        let old_output = std::mem::replace(&mut self.output, output);
        let old_fresh = std::mem::replace(&mut self.fresh, fresh);
        let old = std::mem::replace(&mut self.name, name.to_owned());
        self.parked
            .insert(old, (old_session, old_output, old_fresh));
    }

    /// Server output of other sessions that no `S:` line matched.
    fn parked_output(&self) -> Option<(String, String)> {
        self.parked
            .iter()
            .find(|(_, p)| !p.1.is_empty())
            .map(|(n, p)| (n.clone(), String::from_utf8_lossy(&p.1).into_owned()))
    }

    fn record(&mut self, text: String, mandatory: bool) {
        self.log.push(format!("E: {text}"));
        self.events.push_back((text, mandatory));
    }

    /// Client bytes in one read.
    pub fn input(&mut self, bytes: &[u8]) {
        self.log.push(format!("C~ {}", escape(bytes)));
        self.fresh = false;
        self.session.handle_input(self.now, bytes);
        self.drain();
    }

    /// Client bytes in pieces.
    pub fn input_split(&mut self, bytes: &[u8], cuts: &[usize]) {
        self.fresh = false;
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let c = c.clamp(start, bytes.len());
            if c > start {
                self.session.handle_input(self.now, &bytes[start..c]);
                self.drain();
            }
            start = c;
        }
    }

    /// Runs a session directive.
    pub fn directive(&mut self, name: &str, arg: &str) -> Result<(), String> {
        match name {
            "tls-established" => {
                if !self.tls_pending {
                    return Err("@tls-established but no TLS was asked for".into());
                }
                self.tls_pending = false;
                self.log.push("@tls-established".into());
                self.session.handle_tls_established();
            }
            "advance" => {
                let secs: u64 = arg
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|_| format!("@advance {arg}"))?;
                self.now += Duration::from_secs(secs);
                self.log.push(format!("@advance {secs}s"));
                if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.session.handle_timeout(self.now);
                }
            }
            "eof" => {
                self.log.push("@eof".into());
                self.session.handle_eof();
            }
            "deliver" => {
                let (folder, text) = arg.split_once(' ').ok_or("@deliver MAILBOX TEXT")?;
                if folder != "INBOX" {
                    return Err("@deliver: delivery is to INBOX".into());
                }
                self.log.push(format!("@deliver {folder}"));
                let r = self.store.deliver(&[Delivery {
                    user: self.owner.clone(),
                    prefix: Vec::new(),
                    message: Arc::new(unescape(text)?),
                    folder: None,
                }]);
                if let Some(Err(e)) = r.into_iter().next() {
                    return Err(format!("@deliver: {e}"));
                }
            }
            "changed" => {
                self.log.push("@changed".into());
                self.session.handle_mailbox_changed();
            }
            "hold" => {
                self.log.push("@hold".into());
                self.hold = true;
            }
            "answer" => {
                self.log.push("@answer".into());
                let e = self.held.take().ok_or("@answer but no question is held")?;
                self.answer(e);
            }
            "session" => {
                self.log.push(format!("@session {arg}"));
                self.switch(arg);
            }
            other => return Err(format!("unknown IMAP directive @{other}")),
        }
        self.drain();
        Ok(())
    }

    /// Drains outputs, answering questions.
    pub fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Send(b) => {
                    for line in String::from_utf8_lossy(&b).split_inclusive("\r\n") {
                        self.log
                            .push(format!("S: {}", line.trim_end_matches("\r\n")));
                    }
                    self.output.extend_from_slice(&b);
                }
                Output::StartTls { early } => {
                    if !early.is_empty() {
                        self.record(format!("tls-early {}", escape(&early)), false);
                    }
                    if self.auto_tls && self.session.user().is_none() && self.fresh {
                        // Implicit TLS at connect: done at once.
                        self.session.handle_tls_established();
                    } else {
                        self.tls_pending = true;
                        self.record("starttls".into(), true);
                    }
                }
                Output::Close => self.record("close".into(), true),
                Output::Event(Event::Connect(a)) => {
                    self.record(format!("connect {}", a.client), false);
                    let answer = match &self.connect {
                        ConnectAnswer::Refuse(Refusal::TooManyConnections { .. }) => {
                            ConnectAnswer::Refuse(Refusal::TooManyConnections { ip: a.client.ip() })
                        }
                        other => other.clone(),
                    };
                    self.session.answer_connect(self.now, answer);
                }
                Output::Event(e @ (Event::Login { .. } | Event::Mailbox { .. })) if self.hold => {
                    self.hold = false;
                    self.record("held".into(), false);
                    self.held = Some(e);
                }
                Output::Event(e @ (Event::Login { .. } | Event::Mailbox { .. })) => self.answer(e),
                Output::Event(Event::Notice(n)) => self.record(format!("notice {n:?}"), false),
            }
        }
    }

    /// Answers a question of the directory or the store.
    fn answer(&mut self, e: Event) {
        match e {
            Event::Login { username, password } => {
                let ok = self.users.get(&username) == Some(password.expose());
                self.record(format!("login {username}"), false);
                self.session.answer_login(
                    self.now,
                    if ok {
                        LoginAnswer::Success(username)
                    } else {
                        LoginAnswer::Failure
                    },
                );
            }
            Event::Mailbox { user, request } => {
                let summary = format!("{request:?}");
                let summary: String = summary.chars().take(120).collect();
                self.record(format!("mailbox {summary}"), false);
                let answer = self.store.answer(&user, request);
                self.session.answer_mailbox(self.now, answer);
            }
            _ => {}
        }
    }

    /// The next whole server line.
    pub fn next_line(&mut self) -> Option<String> {
        let end = self.output.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&self.output[..end]).into_owned();
        self.output.drain(..end + 2);
        Some(line)
    }
}

/// Replays an IMAP transcript against the in-memory store; returns the log.
pub fn replay(t: &Transcript) -> Result<Vec<String>, String> {
    replay_with(t, &Backend::Memory)
}

/// Replays an IMAP transcript against the store `backend`; returns the log.
pub fn replay_with(t: &Transcript, backend: &Backend) -> Result<Vec<String>, String> {
    let mut d = ImapDriver::with_backend(&t.header, backend)?;
    let mut pending: Vec<u8> = Vec::new();
    let fail = |d: &ImapDriver, line: usize, m: String| {
        format!(
            "line {line}: {m}\n--- session so far ---\n{}",
            d.log.join("\n")
        )
    };
    for (line, step) in &t.steps {
        let line = *line;
        if let Step::Client(b) = step {
            pending.extend_from_slice(b);
            continue;
        }
        if let Step::Directive(n, a) = step {
            if n == "proxy-header" {
                pending.extend(crate::replay::proxy_header(a).map_err(|m| fail(&d, line, m))?);
                continue;
            }
        }
        if !pending.is_empty() {
            d.input(&std::mem::take(&mut pending));
        }
        match step {
            Step::Server(want) => match d.next_line() {
                Some(got) if &got == want => {}
                Some(got) => {
                    return Err(fail(
                        &d,
                        line,
                        format!("server said {got:?}, expected {want:?}"),
                    ))
                }
                None => {
                    return Err(fail(
                        &d,
                        line,
                        format!("server said nothing, expected {want:?}"),
                    ))
                }
            },
            Step::Event(want) => loop {
                let Some((text, mandatory)) = d.events.pop_front() else {
                    return Err(fail(&d, line, format!("no event {want:?}")));
                };
                if &text == want {
                    break;
                }
                if mandatory {
                    return Err(fail(
                        &d,
                        line,
                        format!("event {text:?} came, expected {want:?}"),
                    ));
                }
            },
            Step::Directive(n, a) => d.directive(n, a).map_err(|m| fail(&d, line, m))?,
            Step::DataLine(_) => {
                return Err(fail(&d, line, "D: lines are for SMTP transcripts".into()))
            }
            Step::Client(_) => {}
        }
    }
    if !pending.is_empty() {
        d.input(&pending);
    }
    let end = t.steps.last().map_or(0, |s| s.0);
    if !d.output.is_empty() {
        return Err(fail(
            &d,
            end,
            format!(
                "unexpected server output at the end: {:?}",
                String::from_utf8_lossy(&d.output)
            ),
        ));
    }
    if let Some((name, text)) = d.parked_output() {
        return Err(fail(
            &d,
            end,
            format!("unexpected output of session {name} at the end: {text:?}"),
        ));
    }
    if let Some((text, _)) = d.events.iter().find(|e| e.1) {
        return Err(fail(
            &d,
            end,
            format!("unmatched event at the end: {text:?}"),
        ));
    }
    Ok(d.log)
}

/// Runs a transcript's client side with reads cut at `cuts(len)`;
/// returns the server output and the mandatory events.
pub fn run_with_cuts(
    t: &Transcript,
    cuts: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut d = ImapDriver::from_header(&t.header)?;
    let mut pending: Vec<u8> = Vec::new();
    for (_, step) in &t.steps {
        match step {
            Step::Client(b) => pending.extend_from_slice(b),
            Step::Directive(n, a) if n == "proxy-header" => {
                pending.extend(crate::replay::proxy_header(a)?)
            }
            Step::Directive(n, a) => {
                if !pending.is_empty() {
                    let b = std::mem::take(&mut pending);
                    let c = cuts(b.len());
                    d.input_split(&b, &c);
                }
                d.directive(n, a)?;
            }
            _ => {
                if !pending.is_empty() {
                    let b = std::mem::take(&mut pending);
                    let c = cuts(b.len());
                    d.input_split(&b, &c);
                }
            }
        }
    }
    if !pending.is_empty() {
        let c = cuts(pending.len());
        d.input_split(&pending, &c);
    }
    let events = d.events.into_iter().filter(|e| e.1).map(|e| e.0).collect();
    Ok((d.output, events))
}
