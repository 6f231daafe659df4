//! The Maildir store on a real folder: the shared helpers here, the tests
//! by subject in the modules below.

use super::*;
use postern_core::imap::event::{MailboxAnswer, MailboxRequest, StoreMode};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

/// Subscriptions and quota: what belongs to an account as a whole.
mod account;
/// The folder index on disk: UID lists, summaries, tombstones, scans.
mod indexing;
/// Flags, APPEND, COPY and RENAME: what sessions write.
mod writes;

fn store() -> (MailStore, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("postern-mailstore-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    (
        MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com"))),
        dir,
    )
}

/// SELECTs alice's `mailbox`: its view.
fn select(s: &MailStore, mailbox: &str) -> postern_core::imap::event::MailboxView {
    select_as(s, "alice@example.com", mailbox)
}

/// SELECTs `mailbox` of `user` (making the account on first use).
fn select_as(s: &MailStore, user: &str, mailbox: &str) -> postern_core::imap::event::MailboxView {
    match s.answer(
        user,
        MailboxRequest::Select {
            mailbox: mailbox.into(),
            take_recent: false,
        },
    ) {
        MailboxAnswer::View(v) => v,
        other => panic!("{other:?}"),
    }
}

/// APPENDs `text` to alice's `mailbox` with no flags.
fn append(s: &MailStore, mailbox: &str, text: &str, date: Option<i64>) -> MailboxAnswer {
    s.answer(
        "alice@example.com",
        MailboxRequest::Append {
            mailbox: mailbox.into(),
            flags: Vec::new(),
            data: text.as_bytes().to_vec(),
            date,
        },
    )
}
