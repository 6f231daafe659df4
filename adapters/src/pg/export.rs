//! `postern store export-maildir`: writes every account of the
//! PostgreSQL and S3 store into a Maildir++ tree as the Maildir store (and
//! Dovecot) reads it: `<root>/<domain>/<user>/` with `cur/ new/ tmp/`,
//! folders as `.A.B` (IMAP `A/B`), `dovecot-uidlist` with each folder's
//! UIDVALIDITY, UIDNEXT and every message's UID, flags as the `:2,`
//! letters of the file names, keywords as letters named in
//! `dovecot-keywords`, INTERNALDATE as the file's modification time and
//! the subscriptions in `subscriptions`.
//!
//! The mailboxes are read through the store's own requests (LIST, SELECT,
//! FETCH), in chunks. Mod-sequences are not carried over (the Maildir
//! store starts its own), nor are keywords past the 26 letters Maildir
//! has (counted in the report). The target must be empty or absent: an
//! export never mixes with mail already there.

use super::mailbox::PgMailbox;
use super::PgError;
use crate::mailstore::FLAG_LETTERS;
use crate::store::MailboxStore;
use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Messages read per request.
const CHUNK: usize = 100;

/// The most accounts one run writes.
const MAX_ACCOUNTS: i64 = 1_000_000;

/// Maildir's keyword letters `a`..`z`.
const MAX_LETTERS: usize = 26;

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Accounts written.
    pub accounts: usize,
    /// Folders written (INBOX included).
    pub mailboxes: usize,
    /// Messages written.
    pub messages: usize,
    /// Keyword settings dropped (past Maildir's 26 letters).
    pub keywords_dropped: usize,
    /// Accounts or folders skipped, with why.
    pub skipped: Vec<String>,
}

fn io(what: &Path, e: std::io::Error) -> PgError {
    PgError::Invalid(format!("{}: {e}", what.display()))
}

fn answer_error(what: &str, a: &MailboxAnswer) -> PgError {
    PgError::Invalid(format!("reading the database ({what}): {a:?}"))
}

/// A path component from the database: plain, never `.`/`..`/hidden.
fn component(s: &str) -> Option<&str> {
    let ok =
        !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0']) && s.len() <= 255;
    ok.then_some(s)
}

/// The folder directory of an IMAP name under the account's directory.
fn folder_dir(account: &Path, name: &str) -> Option<PathBuf> {
    if name == "INBOX" {
        return Some(account.to_owned());
    }
    if name.contains('.') || !postern_core::imap::session::safe_mailbox_name(name) {
        return None;
    }
    Some(account.join(format!(".{}", name.replace('/', "."))))
}

/// Writes every account into `root` (absent or empty); `progress` hears a
/// line per folder.
pub fn export_maildir(
    root: &Path,
    store: &PgMailbox,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportReport, PgError> {
    match std::fs::read_dir(root) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(PgError::Invalid(format!(
                    "{} is not empty: an export goes into an empty folder",
                    root.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
        }
        Err(e) => return Err(io(root, e)),
    }
    let users: Vec<String> = store
        .query(
            "SELECT account FROM accounts ORDER BY account LIMIT $1",
            &[&MAX_ACCOUNTS],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut report = ExportReport::default();
    for user in &users {
        let parts = user
            .rsplit_once('@')
            .and_then(|(l, d)| Some((component(l)?, component(d)?)));
        let Some((local, domain)) = parts else {
            report
                .skipped
                .push(format!("{user}: not an address Maildir can hold"));
            continue;
        };
        let account = root.join(domain).join(local);
        export_account(store, user, &account, &mut report, progress)?;
        report.accounts += 1;
    }
    Ok(report)
}

fn list(store: &PgMailbox, user: &str, subscribed_only: bool) -> Result<Vec<String>, PgError> {
    let request = MailboxRequest::List {
        patterns: vec!["*".into()],
        subscribed_only,
        with_status: false,
    };
    match store.answer(user, request) {
        MailboxAnswer::List(l) => Ok(l.into_iter().map(|e| e.name).collect()),
        other => Err(answer_error("LIST", &other)),
    }
}

fn export_account(
    store: &PgMailbox,
    user: &str,
    account: &Path,
    report: &mut ExportReport,
    progress: &mut dyn FnMut(&str),
) -> Result<(), PgError> {
    let mut names = list(store, user, false)?;
    if !names.iter().any(|n| n == "INBOX") {
        names.insert(0, "INBOX".into());
    }
    for name in &names {
        let Some(dir) = folder_dir(account, name) else {
            report
                .skipped
                .push(format!("{user} {name}: not a Maildir++ folder name"));
            continue;
        };
        if export_folder(store, user, name, &dir, report)? {
            progress(&format!("{user} {name}: done"));
        } else {
            report
                .skipped
                .push(format!("{user} {name}: not selectable"));
        }
    }
    let mut text = String::new();
    for s in list(store, user, true)? {
        text.push_str(&s);
        text.push('\n');
    }
    write_file(&account.join("subscriptions"), text.as_bytes(), None)
}

/// Writes `data` to `path` (made new), with `mtime` if given, synced.
fn write_file(path: &Path, data: &[u8], mtime: Option<i64>) -> Result<(), PgError> {
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(data)?;
        if let Some(t) = mtime
            .and_then(|s| u64::try_from(s).ok())
            .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        {
            f.set_modified(t)?;
        }
        f.sync_all()
    })();
    r.map_err(|e| io(path, e))
}

/// The `:2,` letters of `flags`; keywords take letters from `keywords`
/// (extended up to 26); `dropped` counts what found no letter.
fn letters(flags: &[String], keywords: &mut Vec<String>, dropped: &mut usize) -> String {
    let mut out: Vec<char> = Vec::new();
    for f in flags {
        if let Some((c, _)) = FLAG_LETTERS.iter().find(|(_, n)| n.eq_ignore_ascii_case(f)) {
            out.push(*c);
            continue;
        }
        if f.starts_with('\\') {
            // \Recent and the like are not stored in names.
            continue;
        }
        let i = match keywords.iter().position(|k| k.eq_ignore_ascii_case(f)) {
            Some(i) => i,
            None => {
                keywords.push(f.clone());
                keywords.len() - 1
            }
        };
        match u8::try_from(i)
            .ok()
            .filter(|i| usize::from(*i) < MAX_LETTERS)
        {
            Some(i) => out.push(char::from(b'a' + i)),
            None => *dropped += 1,
        }
    }
    out.sort_unstable();
    out.dedup();
    out.into_iter().collect()
}

/// One folder; `false` when it is not selectable (a `\Noselect` level).
fn export_folder(
    store: &PgMailbox,
    user: &str,
    name: &str,
    dir: &Path,
    report: &mut ExportReport,
) -> Result<bool, PgError> {
    let select = MailboxRequest::Select {
        mailbox: name.to_owned(),
        take_recent: false,
    };
    let view = match store.answer(user, select) {
        MailboxAnswer::View(v) => v,
        _ => return Ok(false),
    };
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    }
    let mut keywords: Vec<String> = view.keywords.iter().take(MAX_LETTERS).cloned().collect();
    let mut uidlist = format!("3 V{} N{}\n", view.uid_validity, view.uid_next);
    for chunk in view.messages.chunks(CHUNK) {
        let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
        let request = MailboxRequest::Bodies {
            mailbox: name.to_owned(),
            uids,
            header_only: false,
        };
        let bodies = match store.answer(user, request) {
            MailboxAnswer::Bodies(b) => b,
            other => return Err(answer_error("FETCH", &other)),
        };
        for m in chunk {
            let Some((_, data)) = bodies.iter().find(|(uid, _)| *uid == m.uid) else {
                return Err(PgError::Invalid(format!(
                    "{user} {name}: UID {} has no body",
                    m.uid
                )));
            };
            let mut file = Vec::with_capacity(data.len());
            crate::maildir::crlf_to_lf(&mut file, data);
            let base = format!(
                "{}.M{}Q{}.postern-export,S={},W={}",
                m.internal_date.max(0),
                m.uid,
                view.uid_validity,
                file.len(),
                data.len()
            );
            let info = letters(&m.flags, &mut keywords, &mut report.keywords_dropped);
            let tmp = dir.join("tmp").join(&base);
            write_file(&tmp, &file, Some(m.internal_date))?;
            let cur = dir.join("cur").join(format!("{base}:2,{info}"));
            std::fs::rename(&tmp, &cur).map_err(|e| io(&cur, e))?;
            uidlist.push_str(&format!("{} :{base}\n", m.uid));
            report.messages += 1;
        }
    }
    let text: String = keywords
        .iter()
        .take(MAX_LETTERS)
        .enumerate()
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect();
    if !text.is_empty() {
        write_file(&dir.join("dovecot-keywords"), text.as_bytes(), None)?;
    }
    write_file(&dir.join("dovecot-uidlist"), uidlist.as_bytes(), None)?;
    report.mailboxes += 1;
    Ok(true)
}
