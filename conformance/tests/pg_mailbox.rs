//! The IMAP mailbox store on PostgreSQL + S3 (moto) against the in-memory
//! store: every IMAP transcript of `testdata/transcripts/imap/` replayed
//! on both, each on a fresh database, must give the same session byte
//! for byte; and the store's own promises under two replicas (UIDs from
//! concurrent APPENDs without gaps or doubles, a STORE on one seen by
//! the other), with the database round trips per request printed.

mod common;

use common::pg::{statements, PgCluster, S3Server};
use postern_adapters::pg::{Pg, PgMail, PgMailbox};
use postern_adapters::store::{Delivery, FixedClock, MailboxStore};
use postern_conformance::imap_replay::{self, Backend};
use postern_conformance::{testdata, transcript};
use postern_core::imap::event::{MailboxAnswer, MailboxRequest, StoreMode};
use std::sync::{Arc, Barrier};

/// Lock order under concurrent deliveries and moves.
#[path = "pg_mailbox/locks.rs"]
mod locks;

fn transcripts() -> Vec<(String, transcript::Transcript)> {
    let dir = testdata().join("transcripts/imap");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/transcripts/imap exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read");
            let t = transcript::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, t)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Empties the mailbox store's tables (a fresh store for the next
/// transcript; quicker than a database each).
fn empty(admin: &mut postgres::Client) {
    admin
        .batch_execute(
            "TRUNCATE accounts, subscriptions, tombstones, messages, mailboxes, blobs \
             RESTART IDENTITY CASCADE",
        )
        .unwrap();
}

#[test]
fn every_imap_transcript_gives_the_same_session_on_postgres() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let mut admin = c.admin();
    let backend = Backend::Postgres {
        url: c.url(),
        endpoint: s3.endpoint.clone(),
        bucket: "postern-transcripts".into(),
    };
    // The schema, made once.
    Pg::connect(&c.url(), 1).unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, t) in transcripts() {
        let memory = imap_replay::replay(&t);
        empty(&mut admin);
        let pg = imap_replay::replay_with(&t, &backend);
        match (memory, pg) {
            (Ok(m), Ok(p)) if m == p => compared += 1,
            (Ok(m), Ok(p)) => failures.push(format!(
                "== {name}: sessions differ\n--- memory\n{}\n--- postgres\n{}",
                m.join("\n"),
                p.join("\n")
            )),
            (Ok(_), Err(e)) => failures.push(format!("== {name} (postgres) {e}")),
            (Err(e), _) => failures.push(format!("== {name} (memory) {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the IMAP transcripts differ on PostgreSQL:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(compared > 100, "only {compared} transcripts compared");
    eprintln!("{compared} IMAP transcripts: the same sessions on memory and PostgreSQL");
}

fn mailbox_store(c: &PgCluster, s3: &S3Server, conns: usize) -> PgMailbox {
    let pg = Arc::new(Pg::connect(&c.url(), conns).unwrap());
    let blobs = s3.blobs(pg.clone(), "postern-mailbox");
    blobs.create_bucket().unwrap();
    PgMailbox::new(PgMail::new(
        pg,
        blobs,
        Arc::new(FixedClock::new(imap_replay::DEFAULT_DATE)),
    ))
}

fn append(mailbox: &str, data: &str) -> MailboxRequest {
    MailboxRequest::Append {
        mailbox: mailbox.into(),
        flags: vec![],
        data: data.as_bytes().to_vec(),
        date: None,
    }
}

fn uids_of(store: &PgMailbox, user: &str, mailbox: &str) -> Vec<u32> {
    match store.answer(
        user,
        MailboxRequest::Select {
            mailbox: mailbox.into(),
            take_recent: false,
        },
    ) {
        MailboxAnswer::View(v) => v.messages.iter().map(|m| m.uid).collect(),
        other => panic!("{other:?}"),
    }
}

/// One thread per replica (its index and store), each starting when all
/// `barrier`'s threads are ready.
fn on_each_replica(
    stores: [&Arc<PgMailbox>; 2],
    barrier: &Arc<Barrier>,
    work: impl Fn(usize, &PgMailbox) + Clone + Send + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    stores
        .into_iter()
        .enumerate()
        .map(|(r, store)| {
            let (store, barrier, work) = (store.clone(), barrier.clone(), work.clone());
            std::thread::spawn(move || {
                barrier.wait();
                work(r, &store);
            })
        })
        .collect()
}

#[test]
fn two_replicas_appending_copying_and_delivering_at_once_give_uids_without_gaps() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let user = "amy@example.com";
    let a = Arc::new(mailbox_store(&c, &s3, 2));
    let b = Arc::new(mailbox_store(&c, &s3, 2));
    // Something to copy from Archive, on one replica.
    assert_eq!(
        a.answer(
            user,
            MailboxRequest::Create {
                mailbox: "Archive".into()
            }
        ),
        MailboxAnswer::Ok
    );
    for i in 0..3 {
        assert!(matches!(
            a.answer(
                user,
                append("Archive", &format!("Subject: a{i}\r\n\r\nx\r\n"))
            ),
            MailboxAnswer::Uids { .. }
        ));
    }
    let per = 20;
    let barrier = Arc::new(Barrier::new(3));
    let mut handles = on_each_replica([&a, &b], &barrier, move |r, store| {
        for i in 0..per {
            let got = if i % 2 == 0 {
                store.answer(
                    user,
                    append("INBOX", &format!("Subject: {r}-{i}\r\n\r\nx\r\n")),
                )
            } else {
                store.answer(
                    user,
                    MailboxRequest::Copy {
                        mailbox: "Archive".into(),
                        uids: vec![1, 2, 3],
                        to: "INBOX".into(),
                        moving: false,
                    },
                )
            };
            assert!(matches!(got, MailboxAnswer::Uids { .. }), "{got:?}");
        }
    });
    let store = b.clone();
    handles.push(std::thread::spawn(move || {
        barrier.wait();
        for i in 0..per {
            let body = Arc::new(format!("Subject: d{i}\r\n\r\nx\r\n").into_bytes());
            let d = Delivery {
                user: user.into(),
                prefix: vec![],
                message: body,
                folder: None,
            };
            store.deliver(&[d])[0].as_ref().unwrap();
        }
    }));
    for h in handles {
        h.join().unwrap();
    }
    // 2 replicas x (10 APPENDs + 10 COPYs of 3) + 20 deliveries.
    let want = (1..=2 * (per / 2 + per / 2 * 3) + per).collect::<Vec<u32>>();
    assert_eq!(uids_of(&a, user, "INBOX"), want);
    assert_eq!(uids_of(&b, user, "INBOX"), want);
    let (MailboxAnswer::Status(sa), MailboxAnswer::Status(sb)) = (
        a.answer(
            user,
            MailboxRequest::Status {
                mailbox: "INBOX".into(),
            },
        ),
        b.answer(
            user,
            MailboxRequest::Status {
                mailbox: "INBOX".into(),
            },
        ),
    ) else {
        panic!("status")
    };
    assert_eq!(sa, sb);
    assert_eq!(sa.uid_next as usize, want.len() + 1);
    // Every change had its own mod-sequence: 1 + one per message added.
    assert_eq!(sa.highest_modseq as usize, 1 + want.len());
}

#[test]
fn a_change_on_one_replica_is_seen_by_the_other_and_bodies_are_shared() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let user = "bob@example.com";
    let a = mailbox_store(&c, &s3, 2);
    let b = mailbox_store(&c, &s3, 2);
    let body = "Subject: shared\r\n\r\nthe body\r\n";
    assert!(matches!(
        a.answer(user, append("INBOX", body)),
        MailboxAnswer::Uids { .. }
    ));
    let stored = b.answer(
        user,
        MailboxRequest::Store {
            mailbox: "INBOX".into(),
            uids: vec![1],
            mode: StoreMode::Add,
            flags: vec!["\\Seen".into(), "$Work".into()],
            unchanged_since: None,
        },
    );
    assert!(
        matches!(stored, MailboxAnswer::Flags { ref changed, .. } if changed.len() == 1),
        "{stored:?}"
    );
    let MailboxAnswer::View(v) = a.answer(
        user,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: true,
        },
    ) else {
        panic!("select")
    };
    assert_eq!(v.messages[0].flags, vec!["\\Seen", "$Work"]);
    assert_eq!(v.keywords, vec!["$Work"]);
    assert_eq!(v.recent, vec![1]);
    // The other replica's session does not get \Recent again.
    let MailboxAnswer::Changed(v) = b.answer(
        user,
        MailboxRequest::Poll {
            mailbox: "INBOX".into(),
            take_recent: true,
        },
    ) else {
        panic!("poll")
    };
    assert!(v.recent.is_empty());
    // A copy shares the body; expunging both drops its references.
    let mut admin = c.admin();
    let refs = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT (SELECT count(*) FROM messages m WHERE m.blob = b.hash) FROM blobs b",
                &[],
            )
            .unwrap()
            .get(0)
    };
    b.answer(
        user,
        MailboxRequest::Copy {
            mailbox: "INBOX".into(),
            uids: vec![1],
            to: "Trash".into(),
            moving: false,
        },
    );
    assert_eq!(refs(&mut admin), 2);
    let got = a.answer(
        user,
        MailboxRequest::Bodies {
            mailbox: "Trash".into(),
            uids: vec![1],
            header_only: false,
        },
    );
    assert_eq!(
        got,
        MailboxAnswer::Bodies(vec![(1, body.as_bytes().to_vec())])
    );
    a.answer(
        user,
        MailboxRequest::Store {
            mailbox: "Trash".into(),
            uids: vec![1],
            mode: StoreMode::Add,
            flags: vec!["\\Deleted".into()],
            unchanged_since: None,
        },
    );
    assert_eq!(
        b.answer(
            user,
            MailboxRequest::Expunge {
                mailbox: "Trash".into(),
                uids: None
            }
        ),
        MailboxAnswer::Expunged(vec![1])
    );
    assert_eq!(refs(&mut admin), 1);
    assert_eq!(
        a.answer(
            user,
            MailboxRequest::Vanished {
                mailbox: "Trash".into(),
                since: 1
            }
        ),
        MailboxAnswer::Vanished {
            uids: vec![1],
            floor: 1
        }
    );
    // A delivery to a folder that does not exist makes it.
    let d = Delivery {
        user: user.into(),
        prefix: b"X-Spam: yes\r\n".to_vec(),
        message: Arc::new(body.as_bytes().to_vec()),
        folder: Some("Spam".into()),
    };
    b.deliver(&[d])[0].as_ref().unwrap();
    assert_eq!(uids_of(&a, user, "Spam"), vec![1]);
    assert_eq!(refs(&mut admin), 2);
    assert!(a.last_error().is_none(), "{:?}", a.last_error());
}

#[test]
fn round_trips_per_imap_request() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let mut admin = c.counting_admin();
    let store = mailbox_store(&c, &s3, 1);
    let u = "carol@example.com";
    let inbox = || "INBOX".to_string();
    let n = 10u32;
    // The requests, each run once before measuring (statements prepared,
    // bodies and summaries cached where the store caches them).
    type Make = Box<dyn Fn(u32) -> MailboxRequest>;
    let kinds: Vec<(&str, Make, f64)> = vec![
        (
            "SELECT",
            Box::new(move |_| MailboxRequest::Select {
                mailbox: inbox(),
                take_recent: false,
            }),
            2.0,
        ),
        (
            "Poll, nothing new",
            Box::new(move |_| MailboxRequest::Poll {
                mailbox: inbox(),
                take_recent: true,
            }),
            1.0,
        ),
        (
            "STATUS",
            Box::new(move |_| MailboxRequest::Status { mailbox: inbox() }),
            1.0,
        ),
        (
            "LIST \"\" *",
            Box::new(|_| MailboxRequest::List {
                patterns: vec!["*".into()],
                subscribed_only: false,
                with_status: false,
            }),
            1.0,
        ),
        (
            "LIST RETURN (STATUS)",
            Box::new(|_| MailboxRequest::List {
                patterns: vec!["*".into()],
                subscribed_only: false,
                with_status: true,
            }),
            2.0,
        ),
        (
            "FETCH BODY[] (body cached)",
            Box::new(move |_| MailboxRequest::Bodies {
                mailbox: inbox(),
                uids: vec![1],
                header_only: false,
            }),
            1.0,
        ),
        (
            "FETCH ENVELOPE (summary cached)",
            Box::new(move |_| MailboxRequest::Summaries {
                mailbox: inbox(),
                uids: vec![1],
            }),
            1.0,
        ),
        (
            "STORE +FLAGS (changes)",
            Box::new(move |i| MailboxRequest::Store {
                mailbox: inbox(),
                uids: vec![1],
                mode: if i % 2 == 0 {
                    StoreMode::Add
                } else {
                    StoreMode::Remove
                },
                flags: vec!["\\Flagged".into()],
                unchanged_since: None,
            }),
            5.0,
        ),
        (
            "APPEND (new body)",
            Box::new(|i| append("Drafts", &format!("Subject: {i}\r\n\r\nnew\r\n"))),
            6.0,
        ),
        (
            "COPY 1",
            Box::new(move |_| MailboxRequest::Copy {
                mailbox: inbox(),
                uids: vec![1],
                to: "Trash".into(),
                moving: false,
            }),
            5.0,
        ),
        (
            "MOVE 1",
            Box::new(|i| MailboxRequest::Copy {
                mailbox: "Drafts".into(),
                uids: vec![i + 2],
                to: "Sent".into(),
                moving: true,
            }),
            6.0,
        ),
        (
            "EXPUNGE (nothing flagged)",
            Box::new(move |_| MailboxRequest::Expunge {
                mailbox: inbox(),
                uids: None,
            }),
            4.0,
        ),
        (
            "Vanished (QRESYNC)",
            Box::new(move |_| MailboxRequest::Vanished {
                mailbox: inbox(),
                since: 1,
            }),
            1.0,
        ),
    ];
    // Something to read and move: INBOX 1, Drafts 1..
    assert!(matches!(
        store.answer(u, append("INBOX", "Subject: s\r\n\r\nx\r\n")),
        MailboxAnswer::Uids { .. }
    ));
    for i in 0..=n + 1 {
        assert!(matches!(
            store.answer(u, append("Drafts", &format!("Subject: m{i}\r\n\r\nx\r\n"))),
            MailboxAnswer::Uids { .. }
        ));
    }
    let mut failures = Vec::new();
    for (what, make, want) in &kinds {
        // (The warm-up STORE removes a flag not set, the warm-up MOVE
        // names a UID not there: both change nothing.)
        let got = store.answer(u, make(n + 1));
        assert!(!matches!(got, MailboxAnswer::No { .. }), "{what}: {got:?}");
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .unwrap();
        let t = std::time::Instant::now();
        for i in 0..n {
            let got = store.answer(u, make(i));
            assert!(!matches!(got, MailboxAnswer::No { .. }), "{what}: {got:?}");
        }
        let per = t.elapsed() / n;
        let trips = statements(&mut admin) as f64 / f64::from(n);
        eprintln!("{what:<36} {trips:>5.1} round trips {per:>10.2?} each");
        if (trips - want).abs() > f64::EPSILON {
            failures.push(format!("{what}: {trips} round trips, expected {want}"));
        }
    }
    // Poll after a delivery takes \Recent: one more statement.
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    for i in 0..n {
        let d = Delivery {
            user: u.into(),
            prefix: vec![],
            message: Arc::new(format!("Subject: d{i}\r\n\r\nx\r\n").into_bytes()),
            folder: None,
        };
        store.deliver(&[d])[0].as_ref().unwrap();
    }
    let delivered = statements(&mut admin) as f64 / f64::from(n);
    store.answer(
        u,
        MailboxRequest::Poll {
            mailbox: "INBOX".into(),
            take_recent: true,
        },
    );
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    for _ in 0..n {
        store.deliver(&[Delivery {
            user: u.into(),
            prefix: vec![],
            message: Arc::new(b"Subject: again\r\n\r\nx\r\n".to_vec()),
            folder: None,
        }])[0]
            .as_ref()
            .unwrap();
        let MailboxAnswer::Changed(v) = store.answer(
            u,
            MailboxRequest::Poll {
                mailbox: "INBOX".into(),
                take_recent: true,
            },
        ) else {
            panic!("poll")
        };
        assert_eq!(v.recent.len(), 1);
    }
    let poll_recent = statements(&mut admin) as f64 / f64::from(n) - 6.0;
    eprintln!(
        "{:<36} {delivered:>5.1} round trips",
        "deliver (new body, 1 recipient)"
    );
    eprintln!(
        "{:<36} {poll_recent:>5.1} round trips",
        "Poll taking \\Recent (after a delivery)"
    );
    assert_eq!(delivered, 6.0);
    // The view brought up to date with the row in one statement (what
    // changed since), then the \Recent mark moved.
    assert_eq!(poll_recent, 2.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every message of a mailbox as the database holds it: (UID, flags,
/// mod-sequence), in UID order.
fn in_database(
    admin: &mut postgres::Client,
    user: &str,
    mailbox: &str,
) -> Vec<(u32, Vec<String>, u64)> {
    admin
        .query(
            "SELECT m.uid, m.flags, m.modseq FROM messages m JOIN mailboxes b ON b.id = m.mailbox \
             WHERE b.account = $1 AND b.name = $2 ORDER BY m.uid",
            &[&user, &mailbox],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let mut flags: Vec<String> = r.get(1);
            flags.sort();
            (r.get::<_, i64>(0) as u32, flags, r.get::<_, i64>(2) as u64)
        })
        .collect()
}

/// Calls of the statement that reads a mailbox's every message.
fn full_reads(admin: &mut postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE query LIKE '%LEFT JOIN messages m ON m.mailbox = b.id%'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_replica_behind_reads_only_what_changed_and_agrees_with_the_database() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let mut admin = c.counting_admin();
    let (a, b) = (mailbox_store(&c, &s3, 1), mailbox_store(&c, &s3, 1));
    let user = "dave@example.com";
    for i in 0..40 {
        b.answer(
            user,
            append("INBOX", &format!("Subject: {i}\r\n\r\nbody {i}\r\n")),
        );
    }
    let view = |s: &PgMailbox| match s.answer(
        user,
        MailboxRequest::Select {
            mailbox: "INBOX".into(),
            take_recent: false,
        },
    ) {
        MailboxAnswer::View(v) => v
            .messages
            .iter()
            .map(|m| {
                let mut flags = m.flags.clone();
                flags.sort();
                (m.uid, flags, m.modseq)
            })
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(view(&a), in_database(&mut admin, user, "INBOX"));
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    // B changes flags, expunges and appends, round after round; A, whose
    // copy is behind each time, must agree with the database after each.
    let mut next = 40;
    for round in 0u32..12 {
        let uids: Vec<u32> = in_database(&mut admin, user, "INBOX")
            .iter()
            .map(|m| m.0)
            .filter(|u| (u + round) % 3 == 0)
            .collect();
        let flag = if round % 2 == 0 { "\\Seen" } else { "$Later" };
        b.answer(
            user,
            MailboxRequest::Store {
                mailbox: "INBOX".into(),
                uids: uids.clone(),
                mode: StoreMode::Add,
                flags: vec![flag.into()],
                unchanged_since: None,
            },
        );
        if round % 3 == 1 {
            let gone: Vec<u32> = uids.iter().copied().take(2).collect();
            b.answer(
                user,
                MailboxRequest::Store {
                    mailbox: "INBOX".into(),
                    uids: gone.clone(),
                    mode: StoreMode::Add,
                    flags: vec!["\\Deleted".into()],
                    unchanged_since: None,
                },
            );
            b.answer(
                user,
                MailboxRequest::Expunge {
                    mailbox: "INBOX".into(),
                    uids: Some(gone),
                },
            );
        }
        if round % 2 == 1 {
            b.answer(
                user,
                append("INBOX", &format!("Subject: {next}\r\n\r\nbody {next}\r\n")),
            );
            next += 1;
        }
        assert_eq!(
            view(&a),
            in_database(&mut admin, user, "INBOX"),
            "round {round}"
        );
    }
    // A caught up from its copy: it never read the whole mailbox again.
    assert_eq!(full_reads(&mut admin), 0, "whole-mailbox reads");
    assert!(a.last_error().is_none(), "{:?}", a.last_error());
}

#[test]
fn header_and_summary_fetches_are_answered_from_the_database_without_the_object_store() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let writer = mailbox_store(&c, &s3, 1);
    let user = "erin@example.com";
    let body =
        "From: a@example.org\r\nSubject: list me\r\n\r\nthe body, not wanted by a message list\r\n";
    writer.deliver(&[Delivery {
        user: user.into(),
        prefix: b"Received: from mx by postern\r\nX-Spam-Status: No\r\n".to_vec(),
        message: Arc::new(body.as_bytes().to_vec()),
        folder: None,
    }])[0]
        .as_ref()
        .unwrap();
    writer.answer(
        user,
        append("INBOX", "Subject: appended\r\n\r\nsecond body\r\n"),
    );
    // Another replica: nothing cached. Then the object store goes away.
    let reader = mailbox_store(&c, &s3, 1);
    drop(s3);
    let fetch = |header_only| {
        reader.answer(
            user,
            MailboxRequest::Bodies {
                mailbox: "INBOX".into(),
                uids: vec![1, 2],
                header_only,
            },
        )
    };
    let MailboxAnswer::Bodies(headers) = fetch(true) else {
        panic!("a header fetch needed the object store")
    };
    let expected = [
        "Received: from mx by postern\r\nX-Spam-Status: No\r\nFrom: a@example.org\r\nSubject: list me\r\n\r\n",
        "Subject: appended\r\n\r\n",
    ];
    let got: Vec<(u32, String)> = headers
        .iter()
        .map(|(u, h)| (*u, String::from_utf8_lossy(h).into_owned()))
        .collect();
    assert_eq!(
        got,
        vec![(1, expected[0].to_owned()), (2, expected[1].to_owned())]
    );
    // ENVELOPE, BODYSTRUCTURE and the SORT keys too, as computed from
    // the whole message.
    let MailboxAnswer::Summaries(sums) = reader.answer(
        user,
        MailboxRequest::Summaries {
            mailbox: "INBOX".into(),
            uids: vec![1, 2],
        },
    ) else {
        panic!("summaries needed the object store")
    };
    let whole = [
        format!("Received: from mx by postern\r\nX-Spam-Status: No\r\n{body}"),
        "Subject: appended\r\n\r\nsecond body\r\n".to_owned(),
    ];
    for ((u, s), w) in sums.iter().zip(&whole) {
        let expected = postern_core::imap::mime::summary_with(w.as_bytes(), Default::default());
        assert_eq!(s, &expected, "uid {u}");
        assert!(s.envelope.contains("list me") || s.envelope.contains("appended"));
    }
    assert_eq!(sums.len(), 2);
    // A whole message still needs the bucket: refused while it is away.
    assert!(
        !matches!(fetch(false), MailboxAnswer::Bodies(_)),
        "bodies without the object store"
    );
}

/// Delivery into PostgreSQL keeps the quota as the Maildir store does (a
/// tenth of grace, counted through the batch), and a delivery that cannot
/// go in (a folder no mailbox can be named) fails alone: the others of
/// its batch are delivered.
#[test]
fn deliveries_fail_one_by_one_for_quota_or_a_bad_folder() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let store = mailbox_store(&c, &s3, 2).with_quota(
        None,
        std::collections::HashMap::from([("hal@example.com".to_owned(), 1_000)]),
    );
    let of = |user: &str, size: usize, folder: Option<&str>| {
        let mut text = format!("Subject: {size}\r\n\r\n").into_bytes();
        text.resize(size, b'x');
        Delivery {
            user: user.into(),
            prefix: Vec::new(),
            message: Arc::new(text),
            folder: folder.map(str::to_owned),
        }
    };
    let r = store.deliver(&[
        of("hal@example.com", 400, None),
        of("ivy@example.com", 50, Some("../x")),
        of("hal@example.com", 400, None),
        of("hal@example.com", 400, None),
        of("ivy@example.com", 60, None),
    ]);
    let ok: Vec<bool> = r.iter().map(Result::is_ok).collect();
    assert_eq!(ok, vec![true, false, true, false, true], "{r:?}");
    assert!(
        matches!(&r[3], Err(postern_adapters::store::StoreError::Full(_))),
        "{r:?}"
    );
    assert_eq!(uids_of(&store, "hal@example.com", "INBOX"), vec![1, 2]);
    assert_eq!(uids_of(&store, "ivy@example.com", "INBOX"), vec![1]);
    let huge = store.deliver(&[of("hal@example.com", 1_101, None)]);
    assert!(
        matches!(
            &huge[0],
            Err(postern_adapters::store::StoreError::TooBig(_))
        ),
        "{huge:?}"
    );
    // A later batch counts what the database holds: 800 + 250 fits.
    let r = store.deliver(&[
        of("hal@example.com", 250, None),
        of("hal@example.com", 10, None),
    ]);
    let ok: Vec<bool> = r.iter().map(Result::is_ok).collect();
    assert_eq!(ok, vec![true, false], "{r:?}");
}
