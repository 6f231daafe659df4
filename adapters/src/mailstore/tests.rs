//! The Maildir store on a real folder.

use super::*;
use postern_core::imap::event::{MailboxAnswer, MailboxRequest, StoreMode};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

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

#[test]
fn flags_keywords_and_uids_persist() {
    let (s, dir) = store();
    let u = "alice@example.com";
    let appended = s.answer(
        u,
        MailboxRequest::Append {
            mailbox: "INBOX".into(),
            flags: vec!["\\Seen".into(), "$Label1".into()],
            data: b"Subject: a\r\n\r\nx\r\n".to_vec(),
            date: Some(1_795_588_686),
        },
    );
    let MailboxAnswer::Uids {
        to, uid_validity, ..
    } = appended
    else {
        panic!("{appended:?}")
    };
    assert_eq!(to, vec![1]);
    let MailboxAnswer::View(v) = s.answer(
        u,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.uid_validity, uid_validity);
    assert_eq!(
        v.messages[0].flags,
        vec!["\\Seen".to_owned(), "$Label1".to_owned()]
    );
    assert_eq!(v.messages[0].size, 17);
    assert_eq!(v.messages[0].internal_date, 1_795_588_686);
    let inbox = dir.join("example.com/alice");
    assert!(fs::read_to_string(inbox.join("dovecot-keywords"))
        .unwrap()
        .contains("0 $Label1"));
    let names: Vec<String> = fs::read_dir(inbox.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names[0].ends_with(":2,Sa"), "{names:?}");
    let MailboxAnswer::List(l) = s.answer(
        u,
        MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only: false,
            with_status: true,
        },
    ) else {
        panic!()
    };
    let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
    assert!(l[3].attributes.contains(&"\\Sent".to_owned()));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_flag_stores_lose_nothing() {
    let (s, dir) = store();
    let s = Arc::new(s);
    let u = "carol@example.com";
    for _ in 0..40 {
        s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: vec![],
                data: b"Subject: x\r\n\r\ny\r\n".to_vec(),
                date: None,
            },
        );
    }
    let threads: Vec<_> = ["\\Flagged", "\\Answered", "$Work"]
        .into_iter()
        .map(|flag| {
            let s = s.clone();
            std::thread::spawn(move || {
                for uid in 1..=40 {
                    let a = s.answer(
                        u,
                        MailboxRequest::Store {
                            mailbox: "INBOX".into(),
                            uids: vec![uid],
                            mode: StoreMode::Add,
                            flags: vec![flag.to_owned()],
                            unchanged_since: None,
                        },
                    );
                    assert!(matches!(a, MailboxAnswer::Flags { .. }), "{a:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let MailboxAnswer::View(v) = s.answer(
        u,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.messages.len(), 40);
    for m in v.messages.iter() {
        assert_eq!(
            m.flags,
            vec!["\\Flagged", "\\Answered", "$Work"],
            "uid {}",
            m.uid
        );
    }
    // 40 appends and 120 flag changes, each its own mod-sequence.
    assert_eq!(v.highest_modseq, 1 + 40 + 120);
    // A second store over the same tree (a restart) sees the same.
    let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::View(w) = again.answer(
        u,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(w.highest_modseq, v.highest_modseq);
    assert_eq!(
        w.messages
            .iter()
            .map(|m| (m.uid, m.modseq, m.flags.clone()))
            .collect::<Vec<_>>(),
        v.messages
            .iter()
            .map(|m| (m.uid, m.modseq, m.flags.clone()))
            .collect::<Vec<_>>()
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn summaries_are_cached_on_disk() {
    let (s, dir) = store();
    let u = "dave@example.com";
    s.answer(
        u,
        MailboxRequest::Append {
            mailbox: "INBOX".into(),
            flags: vec![],
            data: b"From: Bob <bob@example.net>\r\nSubject: Re: hi\r\n\r\nbody\r\n".to_vec(),
            date: None,
        },
    );
    let ask = |s: &MailStore| {
        s.answer(
            u,
            MailboxRequest::Summaries {
                mailbox: "INBOX".into(),
                uids: vec![1],
            },
        )
    };
    let MailboxAnswer::Summaries(first) = ask(&s) else {
        panic!()
    };
    assert_eq!(first[0].1.sort.subject, "hi");
    assert_eq!(first[0].1.sort.from, "bob");
    let cache = dir.join("example.com/dave/postern-summaries");
    let text = fs::read_to_string(&cache).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    // Another store reads the cache: the message file is not needed.
    let cur = dir.join("example.com/dave/cur");
    for e in fs::read_dir(&cur).unwrap() {
        fs::write(e.unwrap().path(), b"Subject: changed behind our back\n\n").unwrap();
    }
    let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::Summaries(second) = ask(&again) else {
        panic!()
    };
    assert_eq!(second, first);
    // A damaged cache is rebuilt from the messages.
    fs::write(&cache, "garbage\n").unwrap();
    let third = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::Summaries(rebuilt) = ask(&third) else {
        panic!()
    };
    assert_eq!(rebuilt[0].1.sort.subject, "changed behind our back");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_a_dovecot_uidlist() {
    let (s, dir) = store();
    let inbox = dir.join("example.com/bob");
    s.answer(
        "bob@example.com",
        MailboxRequest::Status {
            mailbox: "INBOX".into(),
        },
    );
    fs::write(
        inbox.join("cur/1700000000.M1P1.host,S=5,W=6:2,S"),
        b"x\ny\n\n",
    )
    .unwrap();
    fs::write(inbox.join("cur/1700000001.M2P1.host:2,"), b"z\n").unwrap();
    fs::write(
        inbox.join("dovecot-uidlist"),
        "3 V1700000000 N43 Gabc\n41 :1700000000.M1P1.host,S=5,W=6\n42 W3 :1700000001.M2P1.host\n",
    )
    .unwrap();
    let MailboxAnswer::View(v) = s.answer(
        "bob@example.com",
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.uid_validity, 1_700_000_000);
    assert_eq!(v.uid_next, 43);
    assert_eq!(
        v.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![41, 42]
    );
    assert_eq!(v.messages[0].flags, vec!["\\Seen".to_owned()]);
    assert_eq!(v.messages[1].size, 3);
    // Taken over without our mod-sequences: they start above anything
    // a client could hold, the same for every message, and stay put.
    assert!(v.highest_modseq > 1_700_000_000, "{}", v.highest_modseq);
    assert!(v.messages.iter().all(|m| m.modseq == v.highest_modseq));
    let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::View(w) = again.answer(
        "bob@example.com",
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(w.highest_modseq, v.highest_modseq);
    let MailboxAnswer::Bodies(b) = s.answer(
        "bob@example.com",
        MailboxRequest::Bodies {
            mailbox: "INBOX".into(),
            uids: vec![42],
            header_only: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(b[0].1, b"z\r\n");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn changes_are_told_by_mailbox_not_path() {
    let (s, dir) = store();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let w = seen.clone();
    s.on_change(Arc::new(move |id: &MailboxId| {
        w.lock().unwrap().push(id.clone())
    }));
    let u = "Erin@Example.com";
    let r = MailboxStore::deliver(
        &s,
        &[Delivery {
            user: u.into(),
            prefix: Vec::new(),
            message: Arc::new(b"Subject: d\r\n\r\nd\r\n".to_vec()),
            folder: None,
        }],
    );
    assert!(r[0].is_ok(), "{r:?}");
    s.answer(
        u,
        MailboxRequest::Create {
            mailbox: "A/B".into(),
        },
    );
    let before = MailboxStore::version(&s, &MailboxId::new(u, "A/B"));
    s.answer(
        u,
        MailboxRequest::Append {
            mailbox: "A/B".into(),
            flags: vec![],
            data: b"x\r\n".to_vec(),
            date: None,
        },
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            MailboxId::inbox("erin@example.com"),
            MailboxId::new("erin@example.com", "A/B")
        ]
    );
    assert!(before.is_some());
    assert!(MailboxStore::version(&s, &MailboxId::new(u, "Nope")).is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn answers_from_memory_only_what_answer_would_say() {
    let (s, dir) = store();
    let u = "alice@example.com";
    let poll = MailboxRequest::Poll {
        mailbox: "INBOX".into(),
        take_recent: false,
    };
    let status = MailboxRequest::Status {
        mailbox: "INBOX".into(),
    };
    // Unknown account, folder not loaded yet: disk is needed.
    assert!(s.answer_cached(u, &poll).is_none());
    let append = |subject: &str| {
        s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: vec!["\\Seen".into()],
                data: format!("Subject: {subject}\r\n\r\nx\r\n").into_bytes(),
                date: Some(1_795_588_686),
            },
        )
    };
    append("a");
    append("b");
    let full = s.answer(u, poll.clone());
    assert_eq!(s.answer_cached(u, &poll), Some(full));
    assert_eq!(
        s.answer_cached(u, &status),
        Some(s.answer(u, status.clone()))
    );
    // Never asked by this account: disk (or the lock) is needed.
    let other = MailboxRequest::Poll {
        mailbox: "Work".into(),
        take_recent: false,
    };
    assert!(s.answer_cached(u, &other).is_none());
    // Summaries: only once every one asked for is in memory.
    let sums = MailboxRequest::Summaries {
        mailbox: "INBOX".into(),
        uids: vec![2, 1],
    };
    assert!(s.answer_cached(u, &sums).is_none());
    let parsed = s.answer(u, sums.clone());
    assert_eq!(s.answer_cached(u, &sums), Some(parsed));
    // A busy folder is left to the blocking path.
    {
        let state = s.state(&dir.join("example.com/alice"));
        let _held = lock(&state);
        assert!(s.answer_cached(u, &poll).is_none());
    }
    // A message dropped in by someone else: the directory changed, the
    // index must be brought up to date first (on the blocking path).
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(
        dir.join("example.com/alice/new/1700000000.M1P1.other"),
        b"Subject: c\n\nx\n",
    )
    .unwrap();
    assert!(s.answer_cached(u, &poll).is_none());
    let MailboxAnswer::Changed(v) = s.answer(u, poll.clone()) else {
        panic!()
    };
    assert_eq!(v.messages.len(), 3);
    assert_eq!(s.answer_cached(u, &poll), Some(MailboxAnswer::Changed(v)));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_appends_are_filed_together_with_distinct_uids() {
    let (s, dir) = store();
    let s = Arc::new(s);
    let u = "alice@example.com";
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let a = s.answer(
                            u,
                            MailboxRequest::Append {
                                mailbox: "Drafts".into(),
                                flags: vec![format!("$T{t}")],
                                data: format!("Subject: {t}.{i}\r\n\r\nx\r\n").into_bytes(),
                                date: None,
                            },
                        );
                        let MailboxAnswer::Uids { to, .. } = a else {
                            panic!("{a:?}")
                        };
                        to[0]
                    })
                    .collect::<Vec<u32>>()
            })
        })
        .collect();
    let mut uids: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    uids.sort_unstable();
    assert_eq!(uids, (1..=40).collect::<Vec<u32>>());
    let list = fs::read_to_string(dir.join("example.com/alice/.Drafts/dovecot-uidlist")).unwrap();
    assert_eq!(list.lines().count(), 41, "{list}");
    // A fresh store reads the same UIDs and keywords back from disk.
    let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::View(v) = again.answer(
        u,
        MailboxRequest::Select {
            mailbox: "Drafts".into(),
            take_recent: false,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.messages.len(), 40);
    assert_eq!(v.uid_next, 41);
    assert!(v.messages.iter().all(|m| m.flags.len() == 1));
    assert!(fs::read_dir(dir.join("example.com/alice/.Drafts/tmp"))
        .unwrap()
        .next()
        .is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn newcomers_sort_by_arrival_not_by_string() {
    use super::index::arrival_key;
    let mut names = vec![
        "1764633601.M5P7Q9.host,S=1",
        "1764633600.M100000P7Q2.host,S=1",
        "1764633600.M99999P7Q1.host,S=1",
        "1764633600.M100000P7Q10.host,S=1",
        "1764633599.P7Q3.other",
    ];
    names.sort_by(|a, b| arrival_key(a).cmp(&arrival_key(b)));
    assert_eq!(
        names,
        [
            "1764633599.P7Q3.other",
            "1764633600.M99999P7Q1.host,S=1",
            "1764633600.M100000P7Q2.host,S=1",
            "1764633600.M100000P7Q10.host,S=1",
            "1764633601.M5P7Q9.host,S=1",
        ]
    );
}

/// QRESYNC's tombstones and the `\Recent` mark live in `postern-modseq`:
/// a store opened again on the same folder knows both; files removed by
/// someone else become tombstones; a tombstone whose file is still there
/// (an expunge cut short) is forgotten; a UID list that names a file
/// gone while no one looked raises the floor.
#[test]
fn tombstones_and_recency_survive_a_restart() {
    let (s, dir) = store();
    let u = "dave@example.com";
    for i in 0..4 {
        s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: if i == 1 {
                    vec!["\\Deleted".into()]
                } else {
                    vec![]
                },
                data: format!("Subject: {i}\r\n\r\nx\r\n").into_bytes(),
                date: None,
            },
        );
    }
    let select = |s: &MailStore, take| {
        let MailboxAnswer::View(v) = s.answer(
            u,
            MailboxRequest::Select {
                mailbox: "INBOX".into(),
                take_recent: take,
            },
        ) else {
            panic!()
        };
        v
    };
    let vanished = |s: &MailStore, since| {
        s.answer(
            u,
            MailboxRequest::Vanished {
                mailbox: "INBOX".into(),
                since,
            },
        )
    };
    assert_eq!(select(&s, true).recent, vec![1, 2, 3, 4]);
    assert_eq!(select(&s, true).recent, Vec::<u32>::new());
    let MailboxAnswer::Expunged(gone) = s.answer(
        u,
        MailboxRequest::Expunge {
            mailbox: "INBOX".into(),
            uids: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(gone, vec![2]);
    let before = vanished(&s, 1);
    let MailboxAnswer::Vanished { uids, floor } = &before else {
        panic!("{before:?}")
    };
    assert_eq!((uids.as_slice(), *floor), (&[2][..], 1));
    // Another store on the same folder (a restart).
    let again = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    assert_eq!(vanished(&again, 1), before);
    assert_eq!(select(&again, true).recent, Vec::<u32>::new());
    // Someone else removes UID 3's file: a tombstone at a new modseq.
    let inbox = dir.join("example.com/dave");
    let victim = fs::read_dir(inbox.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy().contains(",S=")
                && fs::read_to_string(p).unwrap().contains("Subject: 2")
        })
        .unwrap();
    fs::remove_file(&victim).unwrap();
    // A directory time of its own, so the change shows however fast.
    fs::File::open(inbox.join("cur"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    let v = select(&again, false);
    assert_eq!(
        v.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 4]
    );
    let MailboxAnswer::Vanished { uids, floor } = vanished(&again, 1) else {
        panic!()
    };
    assert_eq!((uids, floor), (vec![2, 3], 1));
    // An expunge logged for a file that is still there (crash before the
    // unlink): forgotten on the next load.
    let mut log = fs::read_to_string(inbox.join("postern-modseq")).unwrap();
    log.push_str("X 99 1\n");
    fs::write(inbox.join("postern-modseq"), log).unwrap();
    let third = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::Vanished { uids, .. } = vanished(&third, 1) else {
        panic!()
    };
    assert_eq!(uids, vec![2, 3]);
    // A UID list naming a file nobody saw go: not exact any more.
    let mut list = fs::read_to_string(inbox.join("dovecot-uidlist")).unwrap();
    list.push_str("9 :1795588686.M999P1.gone,S=5\n");
    fs::write(inbox.join("dovecot-uidlist"), list).unwrap();
    let fourth = MailStore::new(Arc::new(Maildir::new(&dir, "mx.example.com")));
    let MailboxAnswer::Vanished { floor, .. } = vanished(&fourth, 1) else {
        panic!()
    };
    assert!(floor > 1, "{floor}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Messages delivered into `new/` before the folder was ever read are
/// recent for the first read-write SELECT (Dovecot's rule).
#[test]
fn deliveries_before_the_first_look_are_recent() {
    let (s, dir) = store();
    let u = "erin@example.com";
    for i in 0..2 {
        let d = crate::store::Delivery {
            user: u.into(),
            prefix: Vec::new(),
            message: Arc::new(format!("Subject: {i}\r\n\r\nx\r\n").into_bytes()),
            folder: None,
        };
        assert!(crate::store::MailboxStore::deliver(&s, &[d])[0].is_ok());
    }
    let MailboxAnswer::View(v) = s.answer(
        u,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: true,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.recent, vec![1, 2]);
    fs::remove_dir_all(&dir).unwrap();
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

#[test]
fn a_copy_takes_every_message_while_another_session_changes_their_flags() {
    let (s, dir) = store();
    let s = Arc::new(s);
    let u = "alice@example.com";
    const N: u32 = 200;
    for i in 0..N {
        let a = append(
            &s,
            "INBOX",
            &format!("Subject: m{i}\r\n\r\nbody {i}\r\n"),
            None,
        );
        assert!(matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    }
    // Another session marks messages read and unread again and again
    // (each a rename of the file) while this one copies them all.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, stop2) = (s.clone(), stop.clone());
    let toggler = std::thread::spawn(move || {
        let mut n = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let uid = n % N + 1;
            let mode = if (n / N).is_multiple_of(2) {
                StoreMode::Add
            } else {
                StoreMode::Remove
            };
            let a = s2.answer(
                u,
                MailboxRequest::Store {
                    mailbox: "INBOX".into(),
                    uids: vec![uid],
                    mode,
                    flags: vec!["\\Seen".into()],
                    unchanged_since: None,
                },
            );
            assert!(matches!(a, MailboxAnswer::Flags { .. }), "{a:?}");
            n += 1;
        }
        n
    });
    let copied = s.answer(
        u,
        MailboxRequest::Copy {
            mailbox: "INBOX".into(),
            uids: (1..=N).collect(),
            to: "Trash".into(),
            moving: false,
        },
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let renames = toggler.join().expect("toggler");
    let MailboxAnswer::Uids { from, to, .. } = copied else {
        panic!("{copied:?}")
    };
    assert_eq!(
        (from.len(), to.len()),
        (N as usize, N as usize),
        "{renames} renames"
    );
    let in_trash = fs::read_dir(dir.join("example.com/alice/.Trash/cur"))
        .expect("Trash")
        .count();
    assert_eq!(in_trash, N as usize);
    fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn an_append_with_bare_line_feeds_reports_the_size_it_serves() {
    let (s, dir) = store();
    let u = "alice@example.com";
    let a = s.answer(
        u,
        MailboxRequest::Append {
            mailbox: "INBOX".into(),
            flags: Vec::new(),
            data: b"Subject: lf\n\nline one\nline two\r\n".to_vec(),
            date: None,
        },
    );
    assert!(matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    let v = select(&s, "INBOX");
    let served = b"Subject: lf\r\n\r\nline one\r\nline two\r\n".len() as u64;
    assert_eq!(v.messages[0].size, served);
    let name = fs::read_dir(dir.join("example.com/alice/cur"))
        .expect("cur")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a file");
    assert!(name.contains(&format!(",W={served}")), "{name}");
    fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn a_rename_that_cannot_move_every_child_moves_none() {
    let (s, dir) = store();
    let u = "alice@example.com";
    for f in ["A", "A/x", "A/y", "A/z", "B/x"] {
        let a = s.answer(u, MailboxRequest::Create { mailbox: f.into() });
        assert!(matches!(a, MailboxAnswer::Ok), "{f}: {a:?}");
    }
    // `B` itself does not exist, but `B/x` does: A/x has nowhere to go.
    let _ = fs::remove_dir_all(dir.join("example.com/alice/.B"));
    let a = s.answer(
        u,
        MailboxRequest::Rename {
            from: "A".into(),
            to: "B".into(),
        },
    );
    assert!(!matches!(a, MailboxAnswer::Ok), "{a:?}");
    let MailboxAnswer::List(l) = s.answer(
        u,
        MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only: false,
            with_status: false,
        },
    ) else {
        panic!()
    };
    let mut names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    names.retain(|n| n.starts_with('A') || n.starts_with('B'));
    assert_eq!(names, vec!["A", "A/x", "A/y", "A/z", "B/x"]);
    fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn an_append_answered_no_leaves_no_message_behind() {
    let (s, dir) = store();
    let u = "alice@example.com";
    let append = |text: &str| {
        s.answer(
            u,
            MailboxRequest::Append {
                mailbox: "INBOX".into(),
                flags: Vec::new(),
                data: text.as_bytes().to_vec(),
                date: None,
            },
        )
    };
    assert!(matches!(
        append("Subject: one\r\n\r\nx\r\n"),
        MailboxAnswer::Uids { .. }
    ));
    // The folder's own log cannot be written any more (a directory is in
    // its place): the APPEND fails after its file was renamed into cur/.
    let inbox = dir.join("example.com/alice");
    let log = inbox.join("postern-modseq");
    let _ = fs::remove_file(&log);
    fs::create_dir(&log).expect("block the log");
    let a = append("Subject: two\r\n\r\ny\r\n");
    assert!(!matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    let files = fs::read_dir(inbox.join("cur")).expect("cur").count();
    assert_eq!(files, 1, "the refused message is not in cur/");
    let v = select(&s, "INBOX");
    assert_eq!(v.messages.len(), 1);
    fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn a_folder_made_again_never_gets_the_old_uidvalidity() {
    let (s, dir) = store();
    let u = "alice@example.com";
    let validity = |s: &MailStore| {
        let MailboxAnswer::View(v) = s.answer(
            u,
            MailboxRequest::Select {
                mailbox: "Work".into(),
                take_recent: false,
            },
        ) else {
            panic!()
        };
        v.uid_validity
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = s.answer(
            u,
            MailboxRequest::Create {
                mailbox: "Work".into(),
            },
        );
        assert!(matches!(a, MailboxAnswer::Ok), "{a:?}");
        seen.push(validity(&s));
        let a = s.answer(
            u,
            MailboxRequest::Delete {
                mailbox: "Work".into(),
            },
        );
        assert!(matches!(a, MailboxAnswer::Ok), "{a:?}");
    }
    // Within a second or two, three different values.
    seen.dedup();
    assert_eq!(seen.len(), 3, "{seen:?}");
    fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn a_copy_that_fails_part_way_leaves_the_destination_as_it_was() {
    let (s, dir) = store();
    let u = "alice@example.com";
    for i in 1..=3 {
        let a = append(
            &s,
            "INBOX",
            &format!("Subject: m{i}\r\n\r\nbody\r\n"),
            Some(1_795_588_686 + i),
        );
        assert!(matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    }
    // The second message's file cannot be read (a folder in its place).
    let cur = dir.join("example.com/alice/cur");
    let mut names: Vec<PathBuf> = fs::read_dir(&cur)
        .expect("cur")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    names.sort();
    let second = names
        .iter()
        .find(|p| fs::read_to_string(p).is_ok_and(|t| t.contains("m2")))
        .expect("m2")
        .clone();
    fs::remove_file(&second).expect("rm");
    fs::create_dir(&second).expect("in the way");
    let a = s.answer(
        u,
        MailboxRequest::Copy {
            mailbox: "INBOX".into(),
            uids: vec![1, 2, 3],
            to: "Trash".into(),
            moving: false,
        },
    );
    assert!(!matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    let v = select(&s, "Trash");
    assert!(v.messages.is_empty(), "{:?}", v.messages);
    let left = fs::read_dir(dir.join("example.com/alice/.Trash/cur"))
        .expect("Trash")
        .count();
    assert_eq!(left, 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_keywords_file_that_cannot_be_read_is_an_error_not_an_empty_table() {
    let dir = std::env::temp_dir().join(format!("postern-keywords-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    assert_eq!(
        super::flags::read_keywords(&dir).expect("none"),
        Vec::<String>::new()
    );
    fs::write(dir.join("dovecot-keywords"), "0 $Work\n2 $Late\n").expect("write");
    assert_eq!(
        super::flags::read_keywords(&dir).expect("read"),
        vec!["$Work".to_owned(), String::new(), "$Late".to_owned()]
    );
    fs::remove_file(dir.join("dovecot-keywords")).expect("rm");
    fs::create_dir(dir.join("dovecot-keywords")).expect("in the way");
    assert!(super::flags::read_keywords(&dir).is_err());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn idle_is_woken_once_a_stamp_scanned_young_has_settled() {
    let (s, dir) = store();
    let a = append(&s, "INBOX", "Subject: a\r\n\r\nx\r\n", None);
    assert!(matches!(a, MailboxAnswer::Uids { .. }), "{a:?}");
    assert_eq!(select(&s, "INBOX").messages.len(), 1);
    // The folder's times three seconds back: its stamp has settled. The
    // index is made to have scanned that stamp while it was young, as
    // when a delivery lands in the same tick of a coarse clock (Linux
    // before 6.13) as a scan, and leaves the stamp as it was.
    let inbox = dir.join("example.com/alice");
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3);
    for sub in ["new", "cur"] {
        std::fs::File::open(inbox.join(sub))
            .and_then(|f| f.set_modified(past))
            .expect("set the folder's time");
    }
    let st = index::stamp(&inbox).expect("stamp");
    {
        let f = s.state(&inbox);
        let mut g = lock(&f);
        g.stamp = Some(st);
        g.verified = false;
    }
    let id = MailboxId::new("alice@example.com", "INBOX");
    let to_look_again = s.version(&id);
    // IDLE sees the version move, asks, and the index looks once more;
    // then the version is the stamp's own again.
    assert_eq!(select(&s, "INBOX").messages.len(), 1);
    let looked = s.version(&id);
    assert_ne!(to_look_again, looked);
    assert_eq!(s.version(&id), looked);
    fs::remove_dir_all(&dir).expect("clean");
}

fn subscribed(s: &MailStore, u: &str) -> Vec<String> {
    let answer = s.answer(
        u,
        MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only: true,
            with_status: false,
        },
    );
    let MailboxAnswer::List(l) = answer else {
        panic!("{answer:?}")
    };
    l.into_iter().map(|e| e.name).collect()
}

#[test]
fn concurrent_subscriptions_of_one_account_lose_none() {
    let (s, dir) = store();
    let s = Arc::new(s);
    let u = "dave@example.com";
    // The account exists before the sessions start.
    select_as(&s, u, "INBOX");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        s.answer(
                            u,
                            MailboxRequest::Subscribe {
                                mailbox: format!("List-{t}-{i}"),
                                on: true,
                            },
                        )
                    })
                    .filter(|a| !matches!(a, MailboxAnswer::Ok))
                    .count()
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(refused, 0, "every SUBSCRIBE is answered OK");
    let subs = subscribed(&s, u);
    for t in 0..6 {
        for i in 0..15 {
            let name = format!("List-{t}-{i}");
            assert!(subs.contains(&name), "{name} lost: {subs:?}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_subscriptions_line_not_in_utf8_is_kept_and_costs_list_nothing_else() {
    let (s, dir) = store();
    let u = "erin@example.com";
    select_as(&s, u, "INBOX");
    let file = dir.join("example.com/erin/subscriptions");
    // Written by another program: one line is not UTF-8.
    fs::write(&file, b"INBOX\nArchiv-\xff\nWork\n").expect("write");
    let answer = s.answer(
        u,
        MailboxRequest::Subscribe {
            mailbox: "Later".into(),
            on: true,
        },
    );
    assert!(matches!(answer, MailboxAnswer::Ok), "{answer:?}");
    assert_eq!(
        fs::read(&file).expect("read"),
        b"INBOX\nArchiv-\xff\nWork\nLater\n".to_vec()
    );
    let subs = subscribed(&s, u);
    for name in ["INBOX", "Work", "Later"] {
        assert!(subs.contains(&name.to_owned()), "{name}: {subs:?}");
    }
    // A file that cannot be read at all is an error, and stays as it was.
    fs::remove_file(&file).expect("rm");
    fs::create_dir(&file).expect("in the way");
    let answer = s.answer(
        u,
        MailboxRequest::Subscribe {
            mailbox: "Other".into(),
            on: true,
        },
    );
    assert!(matches!(answer, MailboxAnswer::No { .. }), "{answer:?}");
    assert!(file.is_dir());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn deliveries_stop_at_the_quota_with_a_tenth_of_grace_also_within_one_batch() {
    use crate::store::{Delivery, MailboxStore, StoreError};
    let (s, dir) = store();
    let s = s.with_quota(
        None,
        std::collections::HashMap::from([("frank@example.com".to_owned(), 1_000)]),
    );
    let of = |user: &str, size: usize| {
        let mut text = b"Subject: q\r\n\r\n".to_vec();
        text.resize(size, b'x');
        Delivery {
            user: user.into(),
            prefix: Vec::new(),
            message: Arc::new(text),
            folder: None,
        }
    };
    let u = "Frank@example.com";
    // One batch: 0 -> 400 -> 800; the third would reach 1,200 (over the
    // 1,100 the grace allows); another account has no limit.
    let first = s.deliver(&[
        of(u, 400),
        of(u, 400),
        of(u, 400),
        of("gina@example.com", 5_000),
    ]);
    let verdicts: Vec<bool> = first.iter().map(Result::is_ok).collect();
    assert_eq!(verdicts, vec![true, true, false, true], "{first:?}");
    assert!(matches!(&first[2], Err(StoreError::Full(_))), "{first:?}");
    // Larger than the limit and its grace: it could never fit.
    let huge = s.deliver(&[of("gina@example.com", 10), of(u, 1_101)]);
    assert!(huge[0].is_ok(), "{huge:?}");
    assert!(matches!(&huge[1], Err(StoreError::TooBig(_))), "{huge:?}");
    // A later batch counts what is on disk: 800 + 250 fits the grace.
    let second = s.deliver(&[of(u, 250), of(u, 10)]);
    let verdicts: Vec<bool> = second.iter().map(Result::is_ok).collect();
    assert_eq!(verdicts, vec![true, false], "{second:?}");
    let inbox = dir.join("example.com/frank");
    let files = |sub: &str| fs::read_dir(inbox.join(sub)).expect("folder").count();
    assert_eq!(files("new") + files("cur"), 3);
    assert!(s.over_quota(u));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn quota_checks_reuse_the_counted_use_until_an_imap_change_forgets_it() {
    use crate::store::{Delivery, MailboxStore};
    let (s, dir) = store();
    let u = "ivan@example.com";
    let s = s.with_quota(
        None,
        std::collections::HashMap::from([(u.to_owned(), 10_000)]),
    );
    let mut text = b"Subject: q\r\n\r\n".to_vec();
    text.resize(1_000, b'x');
    let d = Delivery {
        user: u.into(),
        prefix: Vec::new(),
        message: Arc::new(text),
        folder: None,
    };
    assert!(s.deliver(std::slice::from_ref(&d))[0].is_ok());
    assert!(!s.over_quota(u));
    // Another program adds 9,500 bytes: the count the checks trust (one
    // listing per account, not one per message) does not see them yet...
    let cur = dir.join("example.com/ivan/cur");
    let mut other = b"Subject: other\n\n".to_vec();
    other.resize(9_500, b'y');
    fs::write(cur.join("1700000000.M1P1.host,S=9500:2,"), other).expect("write");
    assert!(!s.over_quota(u), "the counted use is reused");
    // ...until an IMAP request that adds or removes messages forgets it.
    let expunged = s.answer(
        u,
        MailboxRequest::Expunge {
            mailbox: "INBOX".into(),
            uids: None,
        },
    );
    assert!(
        !matches!(expunged, MailboxAnswer::No { .. }),
        "{expunged:?}"
    );
    assert!(s.over_quota(u), "counted again: 10,500 of 10,000 bytes");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_scan_after_only_new_changed_moves_without_listing_cur_until_cur_changes() {
    let (s, dir) = store();
    assert_eq!(select(&s, "INBOX").messages.len(), 0);
    let inbox = dir.join("example.com/alice");
    // Folder times set by hand, each step a distinct second: a change is
    // seen whatever the file system's clock granularity.
    let mut second = 0;
    let mut touch = |sub: &str| {
        second += 1;
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + second);
        std::fs::File::open(inbox.join(sub))
            .and_then(|f| f.set_modified(t))
            .expect("set the folder's time");
    };
    let put = |sub: &str, n: u32| {
        let name = format!("17000000{n:02}.M{n}P1.host,S=20");
        let name = if sub == "cur" {
            format!("{name}:2,S")
        } else {
            name
        };
        fs::write(
            inbox.join(sub).join(name),
            format!("Subject: {n}\n\nbody\n"),
        )
        .expect("put");
    };
    let listed_at = |s: &MailStore| lock(&s.state(&inbox)).listed_at;
    let uids =
        |s: &MailStore| -> Vec<u32> { select(s, "INBOX").messages.iter().map(|m| m.uid).collect() };
    for n in 1..=3 {
        put("new", n);
    }
    touch("new");
    assert_eq!(uids(&s), vec![1, 2, 3]);
    let first = listed_at(&s).expect("cur/ listed");
    // Deliveries to new/ only: moved and numbered, cur/ not listed again.
    put("new", 4);
    touch("new");
    assert_eq!(uids(&s), vec![1, 2, 3, 4]);
    assert_eq!(listed_at(&s), Some(first), "cur/ was listed again");
    // Another program adds to cur/ and removes from it: listed again,
    // and both changes are seen.
    put("cur", 5);
    let gone = fs::read_dir(inbox.join("cur"))
        .expect("cur/")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("1700000002."))
        .expect("message 2");
    fs::remove_file(gone.path()).expect("remove");
    touch("cur");
    assert_eq!(uids(&s), vec![1, 3, 4, 5]);
    assert_ne!(listed_at(&s), Some(first), "cur/ changed: listed whole");
    fs::remove_dir_all(&dir).expect("clean");
}
