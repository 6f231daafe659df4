//! Flags, APPEND, COPY and RENAME.

use super::*;

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
