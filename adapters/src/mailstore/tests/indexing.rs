//! The folder index on disk: UID lists, summaries, tombstones, scans.

use super::*;

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
