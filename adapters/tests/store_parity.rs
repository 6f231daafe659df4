//! The in-memory store and the Maildir store answer the same requests
//! alike, request by request, including the corners the IMAP transcripts
//! do not reach (names with dots, renaming INBOX or a parent, a MOVE onto
//! itself, the 27th keyword, a missing COPY source, quotas).

use postern_adapters::maildir::Maildir;
use postern_adapters::mailstore::MailStore;
use postern_adapters::memstore::MemStore;
use postern_adapters::store::{Delivery, FixedClock, MailboxId, MailboxStore};
use postern_core::imap::event::{MailboxAnswer, MailboxRequest as R, StoreMode};
use std::collections::HashMap;
use std::sync::Arc;

const NOW: i64 = 1_795_588_686;

fn stores(quota: Option<u64>) -> (MemStore, MailStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "postern-parity-{}-{}",
        std::process::id(),
        quota.unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mem = MemStore::new(Arc::new(FixedClock::new(NOW))).with_quota(quota, HashMap::new());
    let disk = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")))
        .with_quota(quota, HashMap::new())
        .with_clock(Arc::new(FixedClock::new(NOW)));
    (mem, disk, dir)
}

fn append(mailbox: &str, flags: &[&str], data: &str) -> R {
    R::Append {
        mailbox: mailbox.into(),
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        data: data.as_bytes().to_vec(),
        date: None,
    }
}

fn name(mailbox: &str) -> String {
    mailbox.to_owned()
}

fn list() -> R {
    R::List {
        patterns: vec!["*".into()],
        subscribed_only: false,
        with_status: true,
    }
}

/// Runs `requests` on both stores; every answer must be the same.
fn same(mem: &MemStore, disk: &MailStore, requests: Vec<R>) {
    let u = "alice@example.com";
    for r in requests {
        let a = mem.answer(u, r.clone());
        let b = disk.answer(u, r.clone());
        assert_eq!(a, b, "request {r:?}");
    }
}

#[test]
fn management_corners() {
    let (mem, disk, dir) = stores(None);
    same(
        &mem,
        &disk,
        vec![
            R::Create {
                mailbox: name("a.b"),
            },
            R::Create {
                mailbox: name("Work"),
            },
            R::Create {
                mailbox: name("Work/2026"),
            },
            R::Create {
                mailbox: name("Work"),
            },
            append("Work/2026", &["\\Seen"], "Subject: x\r\n\r\nx\r\n"),
            R::Rename {
                from: name("INBOX"),
                to: name("Old"),
            },
            R::Rename {
                from: name("Work"),
                to: name("Job"),
            },
            // A folder never opened keeps its UIDVALIDITY when renamed.
            R::Rename {
                from: name("Junk"),
                to: name("Spam"),
            },
            R::Status {
                mailbox: name("Spam"),
            },
            // A name used again gets a new UIDVALIDITY.
            R::Delete {
                mailbox: name("Trash"),
            },
            R::Create {
                mailbox: name("Trash"),
            },
            R::Status {
                mailbox: name("Trash"),
            },
            list(),
            R::Status {
                mailbox: name("Job/2026"),
            },
            R::Rename {
                from: name("Nope"),
                to: name("X"),
            },
            R::Rename {
                from: name("Job"),
                to: name("Sent"),
            },
            R::Delete {
                mailbox: name("INBOX"),
            },
            R::Delete {
                mailbox: name("Nope"),
            },
            R::Delete {
                mailbox: name("Job/2026"),
            },
            R::Subscribe {
                mailbox: name("Gone"),
                on: true,
            },
            R::Subscribe {
                mailbox: name("Junk"),
                on: false,
            },
            R::List {
                patterns: vec!["*".into()],
                subscribed_only: true,
                with_status: false,
            },
            list(),
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn message_corners() {
    let (mem, disk, dir) = stores(Some(200));
    let mut keywords: Vec<&str> = Vec::new();
    let names: Vec<String> = (0..27).map(|i| format!("$k{i}")).collect();
    for k in &names {
        keywords.push(k);
    }
    let store = |uids: Vec<u32>, mode, flags: &[&str], since| R::Store {
        mailbox: name("INBOX"),
        uids,
        mode,
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        unchanged_since: since,
    };
    same(
        &mem,
        &disk,
        vec![
            append(
                "INBOX",
                &["\\seen", "$A", "\\Bogus"],
                "Subject: 1\r\n\r\n1\r\n",
            ),
            append("INBOX", &[], "Subject: 2\r\n\r\n2\r\n"),
            append("Nope", &[], "x\r\n"),
            store(vec![1, 2], StoreMode::Add, &keywords, None),
            store(vec![2], StoreMode::Remove, &["$k3", "\\Seen"], None),
            store(vec![1, 2], StoreMode::Add, &["\\Flagged"], Some(3)),
            store(vec![1], StoreMode::Replace, &["\\Deleted", "$A"], None),
            store(vec![9], StoreMode::Add, &["\\Seen"], None),
            R::Select {
                mailbox: name("INBOX"),
            },
            R::Copy {
                mailbox: name("Nope"),
                uids: vec![1],
                to: name("Trash"),
                moving: false,
            },
            R::Copy {
                mailbox: name("INBOX"),
                uids: vec![1],
                to: name("Nope"),
                moving: true,
            },
            R::Copy {
                mailbox: name("INBOX"),
                uids: vec![1],
                to: name("INBOX"),
                moving: true,
            },
            R::Copy {
                mailbox: name("INBOX"),
                uids: vec![1, 2, 7],
                to: name("INBOX"),
                moving: false,
            },
            R::Quota,
            append("Drafts", &[], &"y".repeat(150)),
            R::Copy {
                mailbox: name("INBOX"),
                uids: vec![2],
                to: name("Trash"),
                moving: true,
            },
            R::Copy {
                mailbox: name("INBOX"),
                uids: vec![],
                to: name("Trash"),
                moving: true,
            },
            R::Expunge {
                mailbox: name("INBOX"),
                uids: Some(vec![3]),
            },
            R::Expunge {
                mailbox: name("INBOX"),
                uids: None,
            },
            R::Poll {
                mailbox: name("INBOX"),
            },
            R::Status {
                mailbox: name("Trash"),
            },
            R::Bodies {
                mailbox: name("Trash"),
                uids: vec![1, 5],
                header_only: true,
            },
            R::Summaries {
                mailbox: name("Trash"),
                uids: vec![1],
            },
        ],
    );
    assert_eq!(
        mem.over_quota("alice@example.com"),
        disk.over_quota("alice@example.com")
    );
    let d = [Delivery {
        user: "alice@example.com".into(),
        prefix: b"Return-Path: <b@x.org>\r\n".to_vec(),
        message: Arc::new(b"Subject: d\r\n\r\nd\r\n".to_vec()),
        junk: false,
    }];
    assert!(mem.deliver(&d)[0].is_ok() && disk.deliver(&d)[0].is_ok());
    same(
        &mem,
        &disk,
        vec![R::Select {
            mailbox: name("INBOX"),
        }],
    );
    let id = MailboxId::inbox("alice@example.com");
    assert!(mem.version(&id).is_some() && disk.version(&id).is_some());
    assert!(mem
        .version(&MailboxId::new("alice@example.com", "Nope"))
        .is_none());
    assert!(disk
        .version(&MailboxId::new("alice@example.com", "Nope"))
        .is_none());
    assert!(matches!(
        mem.answer("alice@example.com", R::Quota),
        MailboxAnswer::Quota { .. }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
