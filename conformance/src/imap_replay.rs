//! Replays IMAP transcripts against the IMAP core with a fixed clock and an
//! in-memory mail store (the same `C:`/`S:`/`E:` format as SMTP).
//!
//! Header directives (defaults in brackets):
//! - `@tls implicit|starttls|none` [implicit]; implicit TLS is completed
//!   at once unless `@autotls no`.
//! - `@proxy required|forbidden`, `@peer`, `@local`, as for SMTP.
//! - `@user NAME PASSWORD` [alice@example.com secret].
//! - `@quota BYTES`: the account's storage limit [unlimited].
//! - `@message MAILBOX FLAGS TEXT`: a message in a mailbox at start; FLAGS
//!   is `-` or comma-separated (`\Seen,$Label`), TEXT uses the `C~`
//!   escapes. Mailboxes INBOX, Drafts, Sent, Junk, Trash always exist.
//!
//! Session directives: `@tls-established`, `@advance 1s`, `@eof`,
//! `@deliver MAILBOX TEXT` (a message arrives), `@changed` (tell the
//! session its mailbox changed).

use crate::transcript::{escape, unescape, Step, Transcript};
use postern_core::imap::event::{
    Code, Event, ListEntry, MailboxAnswer, MailboxRequest, MailboxView, MessageMeta, StatusCounts,
    StoreMode, Stored,
};
use postern_core::imap::session::{
    ConnectAnswer, ImapConfig, ImapListener, ImapSession, LoginAnswer, Output,
};
use postern_core::proxy::ProxyConfig;
use postern_core::smtp::TlsMode;
use postern_core::Networks;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Msg {
    uid: u32,
    flags: Vec<String>,
    data: Vec<u8>,
    modseq: u64,
    /// INTERNALDATE.
    date: i64,
}

/// INTERNALDATE of messages that come without one: 25-Nov-2026 06:38:06 +0000.
const DEFAULT_DATE: i64 = 1_795_588_686;

#[derive(Clone, Debug, Default)]
struct Folder {
    messages: Vec<Msg>,
    uid_next: u32,
    uid_validity: u32,
    highest_modseq: u64,
    /// Keywords ever set, in order (the Maildir store's `dovecot-keywords`).
    keywords: Vec<String>,
}

/// The order the Maildir store gives flags in (its file-name letters
/// D F P R S T, then keywords by index), so both stores answer alike.
fn canonical(flags: &[String], keywords: &mut Vec<String>) -> Vec<String> {
    const SYSTEM: [&str; 6] = [
        "\\Draft",
        "\\Flagged",
        "$Forwarded",
        "\\Answered",
        "\\Seen",
        "\\Deleted",
    ];
    let mut out: Vec<(usize, String)> = Vec::new();
    for f in flags {
        let rank = match SYSTEM.iter().position(|s| s.eq_ignore_ascii_case(f)) {
            Some(i) => i,
            None if f.starts_with('\\') => continue,
            None => {
                let i = match keywords.iter().position(|k| k == f) {
                    Some(i) => i,
                    None => {
                        keywords.push(f.clone());
                        keywords.len() - 1
                    }
                };
                SYSTEM.len() + i
            }
        };
        if !out.iter().any(|(r, _)| *r == rank) {
            let name = SYSTEM
                .get(rank)
                .map_or_else(|| f.clone(), |s| (*s).to_owned());
            out.push((rank, name));
        }
    }
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, f)| f).collect()
}

/// The in-memory store.
#[derive(Clone, Debug)]
pub struct MemStore {
    users: BTreeMap<String, String>,
    folders: BTreeMap<String, Folder>,
    subscribed: BTreeSet<String>,
    /// The storage limit in bytes (`@quota`), None for unlimited.
    quota: Option<u64>,
}

impl Default for MemStore {
    fn default() -> Self {
        let mut s = MemStore {
            users: BTreeMap::new(),
            folders: BTreeMap::new(),
            subscribed: BTreeSet::new(),
            quota: None,
        };
        for (i, f) in ["INBOX", "Drafts", "Sent", "Junk", "Trash"]
            .iter()
            .enumerate()
        {
            s.folders.insert(
                (*f).to_owned(),
                Folder {
                    messages: Vec::new(),
                    uid_next: 1,
                    uid_validity: 1000 + i as u32,
                    highest_modseq: 1,
                    keywords: Vec::new(),
                },
            );
            s.subscribed.insert((*f).to_owned());
        }
        s
    }
}

fn deleted(m: &Msg) -> bool {
    m.flags.iter().any(|f| f == "\\Deleted")
}

impl MemStore {
    fn add(&mut self, folder: &str, flags: Vec<String>, data: Vec<u8>) -> Option<u32> {
        self.add_dated(folder, flags, data, DEFAULT_DATE)
    }

    fn add_dated(
        &mut self,
        folder: &str,
        flags: Vec<String>,
        data: Vec<u8>,
        date: i64,
    ) -> Option<u32> {
        let f = self.folders.get_mut(folder)?;
        let uid = f.uid_next;
        f.uid_next += 1;
        f.highest_modseq += 1;
        let flags = canonical(&flags, &mut f.keywords);
        f.messages.push(Msg {
            uid,
            flags,
            data,
            modseq: f.highest_modseq,
            date,
        });
        Some(uid)
    }

    fn view(&self, folder: &str) -> Option<MailboxView> {
        let f = self.folders.get(folder)?;
        Some(MailboxView {
            uid_validity: f.uid_validity,
            uid_next: f.uid_next,
            messages: Arc::new(
                f.messages
                    .iter()
                    .map(|m| MessageMeta {
                        uid: m.uid,
                        flags: m.flags.clone(),
                        size: m.data.len() as u64,
                        internal_date: m.date,
                        modseq: m.modseq,
                    })
                    .collect(),
            ),
            keywords: f.keywords.clone(),
            highest_modseq: f.highest_modseq,
            attributes: postern_core::imap::session::list_attributes(
                self.folders.keys(),
                folder,
                false,
            ),
        })
    }

    /// Whether `adding` more bytes would pass the `@quota` limit (as the
    /// Maildir store answers APPEND and COPY).
    fn over_quota(&self, adding: u64) -> bool {
        let used: u64 = self
            .folders
            .values()
            .flat_map(|f| f.messages.iter())
            .map(|m| m.data.len() as u64)
            .sum();
        self.quota.is_some_and(|q| used + adding > q)
    }

    fn counts(&self, name: &str) -> Option<StatusCounts> {
        let f = self.folders.get(name)?;
        Some(StatusCounts {
            messages: f.messages.len() as u32,
            unseen: f
                .messages
                .iter()
                .filter(|m| !m.flags.iter().any(|x| x == "\\Seen"))
                .count() as u32,
            uid_next: f.uid_next,
            uid_validity: f.uid_validity,
            recent: 0,
            size: f.messages.iter().map(|m| m.data.len() as u64).sum(),
            highest_modseq: f.highest_modseq,
            deleted: f.messages.iter().filter(|m| deleted(m)).count() as u32,
            deleted_storage: f
                .messages
                .iter()
                .filter(|m| deleted(m))
                .map(|m| m.data.len() as u64)
                .sum(),
        })
    }

    fn no(text: &str, code: Code) -> MailboxAnswer {
        MailboxAnswer::No {
            code: Some(code),
            text: text.to_owned(),
        }
    }

    /// Answers one request.
    pub fn answer(&mut self, req: MailboxRequest) -> MailboxAnswer {
        use MailboxRequest as R;
        let missing = || Self::no("Mailbox doesn't exist", Code::NonExistent);
        match req {
            R::List {
                patterns,
                subscribed_only,
                with_status,
            } => {
                let mut entries: Vec<ListEntry> = self
                    .folders
                    .keys()
                    .filter(|n| {
                        patterns
                            .iter()
                            .any(|p| postern_core::imap::session::wildcard(p, n))
                    })
                    .filter(|n| !subscribed_only || self.subscribed.contains(*n))
                    .map(|n| {
                        let attributes = postern_core::imap::session::list_attributes(
                            self.folders.keys(),
                            n,
                            self.subscribed.contains(n),
                        );
                        ListEntry {
                            name: n.clone(),
                            attributes,
                            status: with_status.then(|| self.counts(n)).flatten(),
                        }
                    })
                    .collect();
                if subscribed_only {
                    let names: Vec<String> = self.folders.keys().cloned().collect();
                    let subs: Vec<String> = self.subscribed.iter().cloned().collect();
                    entries.extend(postern_core::imap::session::nonexistent_subscriptions(
                        &subs, &names, &patterns,
                    ));
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                }
                MailboxAnswer::List(entries)
            }
            R::Select { mailbox } => self
                .view(&mailbox)
                .map_or_else(missing, MailboxAnswer::View),
            R::Status { mailbox } => self
                .counts(&mailbox)
                .map_or_else(missing, MailboxAnswer::Status),
            R::Quota => MailboxAnswer::Quota {
                used: self
                    .folders
                    .values()
                    .flat_map(|f| f.messages.iter())
                    .map(|m| m.data.len() as u64)
                    .sum(),
                limit: self.quota,
            },
            R::Summaries { mailbox, uids } => match self.folders.get(&mailbox) {
                Some(f) => MailboxAnswer::Summaries(
                    uids.iter()
                        .filter_map(|u| {
                            f.messages
                                .iter()
                                .find(|m| m.uid == *u)
                                .map(|m| (*u, postern_core::imap::mime::summary(&m.data)))
                        })
                        .collect(),
                ),
                None => missing(),
            },
            R::Create { mailbox } => {
                if self.folders.contains_key(&mailbox) {
                    return Self::no("Mailbox already exists", Code::AlreadyExists);
                }
                let v = 2000 + self.folders.len() as u32;
                self.folders.insert(
                    mailbox,
                    Folder {
                        messages: Vec::new(),
                        uid_next: 1,
                        uid_validity: v,
                        highest_modseq: 1,
                        keywords: Vec::new(),
                    },
                );
                MailboxAnswer::Ok
            }
            R::Delete { mailbox } => {
                if mailbox == "INBOX" {
                    return Self::no("INBOX cannot be deleted", Code::Cannot);
                }
                match self.folders.remove(&mailbox) {
                    Some(_) => MailboxAnswer::Ok,
                    None => missing(),
                }
            }
            R::Rename { from, to } => {
                if self.folders.contains_key(&to) {
                    return Self::no("Target mailbox exists", Code::AlreadyExists);
                }
                match self.folders.remove(&from) {
                    Some(f) => {
                        self.folders.insert(to, f);
                        MailboxAnswer::Ok
                    }
                    None => missing(),
                }
            }
            R::Subscribe { mailbox, on } => {
                if on {
                    self.subscribed.insert(mailbox);
                } else {
                    self.subscribed.remove(&mailbox);
                }
                MailboxAnswer::Ok
            }
            R::Bodies {
                mailbox,
                uids,
                header_only,
            } => match self.folders.get(&mailbox) {
                Some(f) => MailboxAnswer::Bodies(
                    uids.iter()
                        .filter_map(|u| {
                            f.messages.iter().find(|m| m.uid == *u).map(|m| {
                                let end = if header_only {
                                    postern_core::imap::fetch::header_len(&m.data)
                                } else {
                                    m.data.len()
                                };
                                (*u, m.data[..end].to_vec())
                            })
                        })
                        .collect(),
                ),
                None => missing(),
            },
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => match self.folders.get_mut(&mailbox) {
                Some(f) => {
                    let mut changed = Vec::new();
                    let mut modified = Vec::new();
                    for m in f.messages.iter_mut().filter(|m| uids.contains(&m.uid)) {
                        if unchanged_since.is_some_and(|n| m.modseq > n) {
                            modified.push(m.uid);
                            continue;
                        }
                        let before = m.flags.clone();
                        let mut new = match mode {
                            StoreMode::Replace => flags.clone(),
                            StoreMode::Add => {
                                let mut v = m.flags.clone();
                                v.extend(flags.iter().cloned());
                                v
                            }
                            StoreMode::Remove => m
                                .flags
                                .iter()
                                .filter(|x| !flags.iter().any(|f| f.eq_ignore_ascii_case(x)))
                                .cloned()
                                .collect(),
                        };
                        new = canonical(&new, &mut f.keywords);
                        m.flags = new;
                        if m.flags != before {
                            f.highest_modseq += 1;
                            m.modseq = f.highest_modseq;
                        }
                        changed.push(Stored {
                            uid: m.uid,
                            flags: m.flags.clone(),
                            modseq: m.modseq,
                        });
                    }
                    MailboxAnswer::Flags { changed, modified }
                }
                None => missing(),
            },
            R::Expunge { mailbox, uids } => match self.folders.get_mut(&mailbox) {
                Some(f) => {
                    let gone: Vec<u32> = f
                        .messages
                        .iter()
                        .filter(|m| {
                            m.flags.iter().any(|x| x == "\\Deleted")
                                && uids.as_ref().is_none_or(|u| u.contains(&m.uid))
                        })
                        .map(|m| m.uid)
                        .collect();
                    f.messages.retain(|m| !gone.contains(&m.uid));
                    if !gone.is_empty() {
                        f.highest_modseq += 1;
                    }
                    MailboxAnswer::Expunged(gone)
                }
                None => missing(),
            },
            R::Append {
                mailbox,
                flags,
                data,
                date,
            } => {
                let v = self.folders.get(&mailbox).map(|f| f.uid_validity);
                if v.is_some() && self.over_quota(data.len() as u64) {
                    return Self::no("Quota exceeded", Code::OverQuota);
                }
                let date = date.unwrap_or(DEFAULT_DATE);
                match (v, self.add_dated(&mailbox, flags, data, date)) {
                    (Some(uid_validity), Some(uid)) => MailboxAnswer::Uids {
                        uid_validity,
                        from: Vec::new(),
                        to: vec![uid],
                    },
                    _ => Self::no("Mailbox doesn't exist", Code::TryCreate),
                }
            }
            R::Copy {
                mailbox,
                uids,
                to,
                moving,
            } => {
                let Some(target_v) = self.folders.get(&to).map(|f| f.uid_validity) else {
                    return Self::no("Mailbox doesn't exist", Code::TryCreate);
                };
                let Some(src) = self.folders.get(&mailbox).cloned() else {
                    return missing();
                };
                let adding: u64 = src
                    .messages
                    .iter()
                    .filter(|m| uids.contains(&m.uid))
                    .map(|m| m.data.len() as u64)
                    .sum();
                if !moving && self.over_quota(adding) {
                    return Self::no("Quota exceeded", Code::OverQuota);
                }
                let mut from = Vec::new();
                let mut new = Vec::new();
                for m in src.messages.iter().filter(|m| uids.contains(&m.uid)) {
                    if let Some(u) = self.add_dated(&to, m.flags.clone(), m.data.clone(), m.date) {
                        from.push(m.uid);
                        new.push(u);
                    }
                }
                if moving {
                    if let Some(f) = self.folders.get_mut(&mailbox) {
                        f.messages.retain(|m| !from.contains(&m.uid));
                        f.highest_modseq += 1;
                    }
                }
                MailboxAnswer::Uids {
                    uid_validity: target_v,
                    from,
                    to: new,
                }
            }
            R::Poll { mailbox } => self
                .view(&mailbox)
                .map_or_else(missing, MailboxAnswer::Changed),
        }
    }
}

/// Drives one IMAP session with the in-memory store.
pub struct ImapDriver {
    /// The session.
    pub session: ImapSession,
    /// The store.
    pub store: MemStore,
    now: Instant,
    auto_tls: bool,
    tls_pending: bool,
    /// Server bytes not yet matched.
    pub output: Vec<u8>,
    /// Event summaries not yet matched (text, mandatory).
    pub events: std::collections::VecDeque<(String, bool)>,
    /// The whole session, for snapshots.
    pub log: Vec<String>,
}

impl ImapDriver {
    /// Builds a driver from a transcript header.
    pub fn from_header(header: &[(String, String)]) -> Result<Self, String> {
        let mut tls = TlsMode::Implicit;
        let mut auto_tls = true;
        let mut required = false;
        let mut peer: SocketAddr = "10.0.20.5:40000".parse().map_err(|_| "peer")?;
        let mut local: SocketAddr = "10.0.20.1:993".parse().map_err(|_| "local")?;
        let mut store = MemStore::default();
        let mut users_set = false;
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
                "proxy" => required = arg == "required",
                "peer" => peer = arg.parse().map_err(|_| format!("@peer {arg}"))?,
                "local" => local = arg.parse().map_err(|_| format!("@local {arg}"))?,
                "user" => {
                    if !users_set {
                        store.users.clear();
                        users_set = true;
                    }
                    let (u, p) = arg.split_once(' ').ok_or("@user NAME PASSWORD")?;
                    store.users.insert(u.to_owned(), p.to_owned());
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
                    store
                        .add(folder, flags, unescape(text)?)
                        .ok_or(format!("no mailbox {folder}"))?;
                }
                "quota" => store.quota = Some(arg.parse().map_err(|_| format!("@quota {arg}"))?),
                other => return Err(format!("unknown IMAP header directive @{other}")),
            }
        }
        if !users_set {
            store
                .users
                .insert("alice@example.com".into(), "secret".into());
        }
        let proxy = if required {
            ProxyConfig::required(Networks::parse(["10.0.20.0/24"]).map_err(|e| e.to_string())?)
        } else {
            ProxyConfig::forbidden()
        };
        let now = Instant::now();
        let session = ImapSession::new(
            Arc::new(ImapConfig::new("imap.example.com")),
            Arc::new(ImapListener { tls, proxy }),
            peer,
            local,
            now,
        );
        let mut d = ImapDriver {
            session,
            store,
            now,
            auto_tls,
            tls_pending: false,
            output: Vec::new(),
            events: Default::default(),
            log: Vec::new(),
        };
        d.drain();
        Ok(d)
    }

    fn record(&mut self, text: String, mandatory: bool) {
        self.log.push(format!("E: {text}"));
        self.events.push_back((text, mandatory));
    }

    /// Client bytes in one read.
    pub fn input(&mut self, bytes: &[u8]) {
        self.log.push(format!("C~ {}", escape(bytes)));
        self.session.handle_input(self.now, bytes);
        self.drain();
    }

    /// Client bytes in pieces.
    pub fn input_split(&mut self, bytes: &[u8], cuts: &[usize]) {
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
                self.log.push(format!("@deliver {folder}"));
                self.store
                    .add(folder, Vec::new(), unescape(text)?)
                    .ok_or("no such mailbox")?;
            }
            "changed" => {
                self.log.push("@changed".into());
                self.session.handle_mailbox_changed();
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
                    if self.auto_tls
                        && self.session.user().is_none()
                        && self.log.iter().all(|l| !l.starts_with("C~"))
                    {
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
                    self.session.answer_connect(self.now, ConnectAnswer::Accept);
                }
                Output::Event(Event::Login { username, password }) => {
                    let ok = self.store.users.get(&username) == Some(password.expose());
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
                Output::Event(Event::Mailbox { request, .. }) => {
                    let summary = format!("{request:?}");
                    let summary: String = summary.chars().take(120).collect();
                    self.record(format!("mailbox {summary}"), false);
                    let answer = self.store.answer(request);
                    self.session.answer_mailbox(self.now, answer);
                }
                Output::Event(Event::Notice(n)) => self.record(format!("notice {n:?}"), false),
            }
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

/// Replays an IMAP transcript; returns the log.
pub fn replay(t: &Transcript) -> Result<Vec<String>, String> {
    let mut d = ImapDriver::from_header(&t.header)?;
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
