//! Lock order: deliveries to two folders and moves between them never
//! deadlock, and a move and a delivery queued on one mailbox take their
//! locks in one order.

use super::*;

/// The mailbox `name` of `user`'s messages (their count), by SELECT.
fn count(store: &PgMailbox, user: &str, name: &str) -> usize {
    uids_of(store, user, name).len()
}

#[test]
fn deliveries_to_two_folders_and_moves_between_them_never_deadlock() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let (amy, bob) = ("amy@example.com", "bob@example.com");
    let a = Arc::new(mailbox_store(&c, &s3, 3));
    let b = Arc::new(mailbox_store(&c, &s3, 3));
    // "Bulk" is made after INBOX (a larger id) but sorts before it by
    // name: locks taken by name and locks taken by id disagree.
    for u in [amy, bob] {
        assert_eq!(
            a.answer(
                u,
                MailboxRequest::Create {
                    mailbox: "Bulk".into()
                }
            ),
            MailboxAnswer::Ok
        );
    }
    let rounds = 60;
    let barrier = Arc::new(Barrier::new(4));
    // Two delivering replicas: each batch puts one body into amy's Bulk
    // and INBOX and bob's INBOX (one transaction).
    let mut handles = on_each_replica([&a, &b], &barrier, move |_, store| {
        for i in 0..rounds {
            // One body for all (a list's message): every delivery and
            // copy refers to the same stored object.
            let body = Arc::new(b"Subject: the list\r\n\r\nx\r\n".to_vec());
            let to = |user: &str, folder: Option<&str>| Delivery {
                user: user.into(),
                prefix: vec![],
                message: body.clone(),
                folder: folder.map(Into::into),
            };
            let batch = [to(amy, Some("Bulk")), to(amy, None), to(bob, None)];
            for (n, got) in store.deliver(&batch).into_iter().enumerate() {
                assert!(got.is_ok(), "round {i}, delivery {n}: {got:?}");
            }
        }
    });
    // Two moving replicas: everything from INBOX to Bulk and back (amy),
    // and bob's INBOX copied into his Bulk.
    handles.extend(on_each_replica([&a, &b], &barrier, move |r, store| {
        for i in 0..rounds {
            let (from, to) = if (i + r) % 2 == 0 {
                ("INBOX", "Bulk")
            } else {
                ("Bulk", "INBOX")
            };
            for (user, moving) in [(amy, true), (bob, false)] {
                let (from, to) = if moving {
                    (from, to)
                } else {
                    ("INBOX", "Bulk")
                };
                let got = store.answer(
                    user,
                    MailboxRequest::Copy {
                        mailbox: from.into(),
                        uids: (1..=400).collect(),
                        to: to.into(),
                        moving,
                    },
                );
                assert!(
                    matches!(got, MailboxAnswer::Uids { .. }),
                    "round {i} {user}: {got:?} ({:?})",
                    store.last_error()
                );
            }
        }
    }));
    let started = std::time::Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    eprintln!("{rounds} rounds on 4 threads in {:?}", started.elapsed());
    // Moves lose nothing: amy holds both copies of every delivery.
    assert_eq!(
        count(&a, amy, "INBOX") + count(&a, amy, "Bulk"),
        2 * 2 * rounds
    );
    assert_eq!(count(&b, bob, "INBOX"), 2 * rounds);
    assert_eq!(deadlocks(&c), 0, "locks taken in one order deadlock never");
}

/// Deadlocks the database detected so far.
fn deadlocks(c: &PgCluster) -> i64 {
    c.admin()
        .query_one(
            "SELECT COALESCE(sum(deadlocks), 0)::bigint FROM pg_stat_database",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Polls (bounded: 30 s) until `n` Postern statements wait for a lock.
fn waiting_for_locks(c: &PgCluster, n: i64) {
    let mut watch = c.admin();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let w: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'postern' AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if w >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{w} of {n} waiting");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_move_and_a_delivery_queued_on_one_mailbox_take_their_locks_in_one_order() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let amy = "amy@example.com";
    let a = Arc::new(mailbox_store(&c, &s3, 2));
    let b = Arc::new(mailbox_store(&c, &s3, 2));
    // An account whose INBOX was made after its Archive (as an import
    // may make them): by id Archive comes first, by name INBOX.
    c.admin()
        .batch_execute(
            "INSERT INTO accounts (account, created) VALUES ('amy@example.com', 1); \
             INSERT INTO mailboxes (account, name, uidvalidity) VALUES \
             ('amy@example.com', 'Archive', 7), ('amy@example.com', 'INBOX', 8)",
        )
        .unwrap();
    assert!(matches!(
        a.answer(amy, append("Archive", "Subject: first\r\n\r\nx\r\n")),
        MailboxAnswer::Uids { .. }
    ));
    let before = deadlocks(&c);
    // Someone holds amy's Archive; a MOVE Archive -> INBOX queues for it,
    // then a delivery to INBOX and Archive. When the Archive is let go,
    // the MOVE has it first: had the delivery taken the INBOX before
    // queueing for the Archive, each would wait for the other.
    let mut holder = c.admin();
    let mut tx = holder.transaction().unwrap();
    tx.query(
        "SELECT 1 FROM mailboxes WHERE account = $1 AND name = 'Archive' FOR UPDATE",
        &[&amy],
    )
    .unwrap();
    let mover = {
        let a = a.clone();
        std::thread::spawn(move || {
            a.answer(
                amy,
                MailboxRequest::Copy {
                    mailbox: "Archive".into(),
                    uids: vec![1],
                    to: "INBOX".into(),
                    moving: true,
                },
            )
        })
    };
    waiting_for_locks(&c, 1);
    let deliverer = {
        let b = b.clone();
        std::thread::spawn(move || {
            let body = Arc::new(b"Subject: second\r\n\r\nx\r\n".to_vec());
            let to = |folder: Option<&str>| Delivery {
                user: amy.into(),
                prefix: vec![],
                message: body.clone(),
                folder: folder.map(Into::into),
            };
            b.deliver(&[to(None), to(Some("Archive"))])
        })
    };
    waiting_for_locks(&c, 2);
    tx.commit().unwrap();
    let moved = mover.join().unwrap();
    assert!(
        matches!(moved, MailboxAnswer::Uids { .. }),
        "{moved:?} {:?}",
        a.last_error()
    );
    for r in deliverer.join().unwrap() {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(count(&a, amy, "INBOX"), 2);
    assert_eq!(count(&a, amy, "Archive"), 1);
    assert_eq!(deadlocks(&c), before, "no deadlock, not even one retried");
}
