//! The PostgreSQL + S3 backend against the real engines on loopback: a
//! cluster of the test's own (initdb/pg_ctl) and moto's S3 server. Shared
//! counters under concurrency, queue claims by exactly one of two
//! claimers, a body stored once for several recipients, UIDs without gaps
//! from two delivering replicas, and the queue contract run against both
//! the spool and the database queue; the spam classifiers in the
//! database learned by two replicas at once.

mod common;

use common::pg::{statements, PgCluster, S3Server};
use postern_adapters::pg::{content_hash, Blobs, Pg, PgCounters, PgMail, PgQueue};
use postern_adapters::spool::{RcptStatus, Spool};
use postern_adapters::store::{Counters, Delivery, FixedClock, Queue, QueueError, Window};
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

fn pool(c: &PgCluster) -> Arc<Pg> {
    Arc::new(Pg::connect(&c.url(), 4).expect("connect"))
}

/// The schema version of this build (`pg/migrations/`).
const SCHEMA: i32 = 10;

#[test]
fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let Some(c) = PgCluster::start() else { return };
    let a = pool(&c);
    assert_eq!(a.schema_version().unwrap(), SCHEMA);
    // A second replica starting finds the schema in place.
    let b = pool(&c);
    assert_eq!(b.schema_version().unwrap(), SCHEMA);
    // Two replicas starting at once: the advisory lock applies it once.
    c.admin().batch_execute("CREATE DATABASE fresh").unwrap();
    let url = c.url().replace("dbname=postgres", "dbname=fresh");
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let u = url.clone();
            std::thread::spawn(move || Pg::connect(&u, 1).map(|p| p.schema_version().unwrap()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), SCHEMA);
    }
    // A schema from a later Postern: refused, not half-used.
    let mut admin = c.admin();
    admin
        .batch_execute("INSERT INTO postern_schema (version) VALUES (99)")
        .unwrap();
    let e = Pg::connect(&c.url(), 1).unwrap_err().to_string();
    assert!(e.contains("99") && e.contains("newer"), "{e}");
}

#[test]
fn counters_count_every_add_from_two_connections() {
    let Some(c) = PgCluster::start() else { return };
    // Two pools: two replicas, each with its own connections.
    let a = Arc::new(PgCounters::new(pool(&c)));
    let b = Arc::new(PgCounters::new(pool(&c)));
    let w = Window::containing(1_795_588_686, 60);
    let per = 150;
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..per)
                    .map(|_| c.add("ip:192.0.2.7", w, 1).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut totals: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    totals.sort_unstable();
    // Every add saw its own total: no lost update, no double count.
    assert_eq!(totals, (1..=4 * per).collect::<Vec<_>>());
    assert_eq!(a.get("ip:192.0.2.7", w).unwrap(), 4 * per);
    assert_eq!(b.get("ip:192.0.2.7", w).unwrap(), 4 * per);
    // Another window and another name count apart.
    let next = Window::containing(1_795_588_686 + 60, 60);
    assert_eq!(a.get("ip:192.0.2.7", next).unwrap(), 0);
    assert_eq!(b.add("ip:192.0.2.7", next, 5).unwrap(), 5);
    assert_eq!(
        a.add("relayed", Window::containing(0, 86_400), 2).unwrap(),
        2
    );
    assert!(a.add("bad\tname", w, 1).is_err());
    // Ended windows are swept; live ones stay.
    assert_eq!(a.sweep(w.end()).unwrap(), 2);
    assert_eq!(a.get("ip:192.0.2.7", w).unwrap(), 0);
    assert_eq!(a.get("ip:192.0.2.7", next).unwrap(), 5);
}

const QUEUE_NOW: u64 = 1_795_588_686;

#[test]
fn a_queued_message_is_claimed_by_exactly_one_of_two_replicas() {
    let Some(c) = PgCluster::start() else { return };
    let q = PgQueue::new(pool(&c));
    let n = 300;
    for i in 0..n {
        q.enqueue(
            &format!("m{i:04}"),
            "a@example.com",
            &["b@example.org".into()],
            b"Subject: x\r\n\r\nhi\r\n",
            QUEUE_NOW - 100 + (i % 7),
        )
        .unwrap();
    }
    // Two replicas take batches of due messages until none is left.
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["pod-a", "pod-b"]
        .into_iter()
        .map(|worker| {
            let q = PgQueue::new(pool(&c));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                loop {
                    let batch = q.claim_due(worker, QUEUE_NOW, QUEUE_NOW + 300, 7).unwrap();
                    if batch.is_empty() {
                        break got;
                    }
                    got.extend(batch.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let got: Vec<Vec<String>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let a: BTreeSet<_> = got[0].iter().cloned().collect();
    let b: BTreeSet<_> = got[1].iter().cloned().collect();
    assert_eq!(a.len() + b.len(), n as usize, "a message was claimed twice");
    assert!(a.is_disjoint(&b));
    assert_eq!(a.union(&b).count(), n as usize);
    eprintln!("claims: pod-a {} pod-b {}", a.len(), b.len());
    // Held claims keep the other replica off until they expire.
    assert!(q
        .claim_due("pod-c", QUEUE_NOW + 10, QUEUE_NOW + 400, 1000)
        .unwrap()
        .is_empty());
    assert_eq!(
        q.claim_due("pod-c", QUEUE_NOW + 300, QUEUE_NOW + 600, 1000)
            .unwrap()
            .len(),
        n as usize
    );

    // The per-message claim raced by two replicas: one winner per message.
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["pod-x", "pod-y"]
        .into_iter()
        .map(|worker| {
            let q = PgQueue::new(pool(&c));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..n)
                    .filter(|i| {
                        q.claim(
                            &format!("m{i:04}"),
                            worker,
                            QUEUE_NOW + 600,
                            QUEUE_NOW + 900,
                        )
                        .unwrap()
                    })
                    .count()
            })
        })
        .collect();
    let wins: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(wins.iter().sum::<usize>(), n as usize, "wins {wins:?}");
}

/// What every [`Queue`] does, whatever keeps it.
fn queue_contract(q: &dyn Queue) {
    let m = q
        .enqueue(
            "abc1",
            "a@x.org",
            &["b@y.org".into(), "c@y.org".into()],
            b"hi\r\n",
            10,
        )
        .unwrap();
    assert_eq!(m.created, 10);
    assert_eq!(m.next_attempt, 10);
    assert_eq!(m.attempts, 0);
    assert_eq!(m.pending().count(), 2);
    assert_eq!(q.load("abc1").unwrap(), m);
    assert_eq!(q.data("abc1").unwrap(), b"hi\r\n");
    assert!(matches!(q.load("../x"), Err(QueueError::BadId(_))));
    assert!(matches!(q.load("nope"), Err(QueueError::NotFound(_))));
    assert!(matches!(q.data("nope"), Err(QueueError::NotFound(_))));
    assert!(q
        .enqueue("bad id", "a@x.org", &["b@y.org".into()], b"x", 1)
        .is_err());
    assert!(q.enqueue("abc9", "a@x.org", &[], b"x", 1).is_err());
    let s = q.stats(15).unwrap();
    assert_eq!((s.size, s.oldest_age, s.deferred), (1, 5, 0));

    // A failed attempt for one recipient, a delivery for the other.
    let mut m2 = m.clone();
    m2.attempts = 1;
    m2.next_attempt = 70;
    m2.rcpts[0].status = RcptStatus::Delivered;
    m2.rcpts[0].last_reply = "250 2.0.0 ok".into();
    m2.rcpts[1].last_reply = "451 4.3.0 later".into();
    q.update(&m2).unwrap();
    assert_eq!(q.load("abc1").unwrap(), m2);
    assert_eq!(q.stats(20).unwrap().deferred, 1);

    // A worker settles what it loaded: its own schedule when nobody
    // changed the message meanwhile...
    let mut tried = m2.clone();
    tried.attempts = 2;
    tried.next_attempt = 130;
    q.settle(&tried, 70).unwrap();
    assert_eq!(q.load("abc1").unwrap(), tried);
    // ...but `postern queue retry` during its attempt stays: due now,
    // with the attempt's other results recorded.
    q.retry_now("abc1").unwrap();
    let mut again = tried.clone();
    again.attempts = 3;
    again.next_attempt = 250;
    q.settle(&again, 130).unwrap();
    let kept = q.load("abc1").unwrap();
    assert_eq!((kept.attempts, kept.next_attempt), (3, 0));
    q.update(&m2).unwrap();
    assert!(matches!(q.retry_now("nope"), Err(QueueError::NotFound(_))));
    // A message removed during an attempt is not brought back.
    q.enqueue("abc7", "a@x.org", &["b@y.org".into()], b"x\r\n", 12)
        .unwrap();
    let gone = q.load("abc7").unwrap();
    q.remove("abc7").unwrap();
    q.settle(&gone, 12).unwrap();
    assert!(matches!(q.load("abc7"), Err(QueueError::NotFound(_))));

    // Oldest first; a bounce (empty sender) is a message like any other.
    q.enqueue("abc0", "", &["a@x.org".into()], b"bounce\r\n", 5)
        .unwrap();
    q.enqueue("abc2", "a@x.org", &["d@y.org".into()], b"x\r\n", 10)
        .unwrap();
    let (all, bad) = q.list().unwrap();
    assert!(bad.is_empty());
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["abc0", "abc1", "abc2"]);
    assert_eq!(all[0].from, "");
    assert_eq!(q.stats(15).unwrap().oldest_age, 10);

    // Claims: one holder at a time until it expires or is given back.
    assert!(q.claim("abc1", "pod-a", 100, 160).unwrap());
    assert!(!q.claim("abc1", "pod-b", 120, 180).unwrap());
    assert!(q.claim("abc1", "pod-a", 150, 210).unwrap());
    assert!(q.claim("abc1", "pod-b", 211, 270).unwrap());
    q.release("abc1", "pod-a").unwrap();
    assert!(!q.claim("abc1", "pod-a", 212, 270).unwrap());
    q.release("abc1", "pod-b").unwrap();
    assert!(q.claim("abc1", "pod-a", 213, 270).unwrap());
    assert!(q.claim("abc1", "bad name", 0, 1).is_err());
    assert!(q.claim("abc1", "", 0, 1).is_err());

    // A local copy kept for retry keeps its folder through updates; the
    // others (and every plain enqueue) go to INBOX.
    let f = q
        .enqueue_with_folders(
            "abc3",
            "a@x.org",
            &["alice@x.org".into(), "bob@x.org".into()],
            &[Some("Junk".into()), None],
            b"x\r\n",
            11,
        )
        .unwrap();
    assert_eq!(f.rcpts[0].folder.as_deref(), Some("Junk"));
    assert_eq!(q.load("abc3").unwrap(), f);
    let mut f2 = f.clone();
    f2.attempts = 1;
    f2.rcpts[1].status = RcptStatus::Delivered;
    q.update(&f2).unwrap();
    assert_eq!(q.load("abc3").unwrap(), f2);
    assert!(q.load("abc2").unwrap().rcpts[0].folder.is_none());
    q.remove("abc3").unwrap();

    q.remove("abc1").unwrap();
    assert!(matches!(q.load("abc1"), Err(QueueError::NotFound(_))));
    assert!(matches!(q.remove("abc1"), Err(QueueError::NotFound(_))));
    q.remove("abc0").unwrap();
    q.remove("abc2").unwrap();
    assert!(q.list().unwrap().0.is_empty());
    assert_eq!(q.stats(99).unwrap().size, 0);
}

#[test]
fn the_spool_keeps_the_queue_contract() {
    let dir = tempfile::tempdir().unwrap();
    queue_contract(&Spool::open(dir.path().join("spool")).unwrap());
}

#[test]
fn the_database_queue_keeps_the_queue_contract() {
    let Some(c) = PgCluster::start() else { return };
    let q = PgQueue::new(pool(&c));
    queue_contract(&q);
    // A row queued before the folders column (NULL): every copy to INBOX.
    c.admin()
        .batch_execute(
            "INSERT INTO queue (id, sender, created, next_attempt, rcpts, status, replies, data) \
             VALUES ('old1', 'a@x.org', 1, 1, '{b@y.org,c@y.org}', '{pending,pending}', '{\"\",\"\"}', '\\x00')",
        )
        .unwrap();
    let old = q.load("old1").unwrap();
    assert_eq!(old.rcpts.len(), 2);
    assert!(old.rcpts.iter().all(|r| r.folder.is_none()));
}

fn stores(c: &PgCluster, s3: &S3Server, bucket: &str) -> (Arc<Blobs>, PgMail) {
    let pg = pool(c);
    let blobs = s3.blobs(pg.clone(), bucket);
    blobs.create_bucket().unwrap();
    let mail = PgMail::new(pg, blobs.clone(), Arc::new(FixedClock::new(1_795_588_686)));
    (blobs, mail)
}

fn delivery(user: &str, prefix: &str, message: &Arc<Vec<u8>>) -> Delivery {
    Delivery {
        user: user.into(),
        prefix: prefix.as_bytes().to_vec(),
        message: message.clone(),
        folder: None,
    }
}

#[test]
fn a_body_for_several_recipients_is_stored_once() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let (blobs, mail) = stores(&c, &s3, "postern-once");
    let body = Arc::new(b"Subject: hello\r\n\r\nto all of you\r\n".to_vec());
    let users = ["alice@example.com", "Bob@example.com", "carol@example.com"];
    let batch: Vec<Delivery> = users
        .iter()
        .map(|u| delivery(u, &format!("Delivered-To: {u}\r\n"), &body))
        .collect();
    let r = mail.deliver(&batch);
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(blobs.puts(), 1, "one object for three recipients");
    let hash = content_hash(&body);
    assert_eq!(blobs.refs(&hash).unwrap(), Some((body.len() as i64, 3)));
    for u in users {
        let (validity, uids) = mail.uids(u, "INBOX").unwrap();
        assert_eq!((validity, uids), (1000, vec![1]));
        let got = mail.fetch(u, "INBOX", 1).unwrap().unwrap();
        let mut want = format!("Delivered-To: {u}\r\n").into_bytes();
        want.extend_from_slice(&body);
        assert_eq!(got, want);
    }
    // The same content again, in another transaction (another Arc): still
    // one object, one more reference, the next UID.
    let again = Arc::new(body.to_vec());
    assert!(mail.deliver(&[delivery("alice@example.com", "", &again)])[0].is_ok());
    assert_eq!(blobs.puts(), 1);
    assert_eq!(blobs.refs(&hash).unwrap(), Some((body.len() as i64, 4)));
    assert_eq!(
        mail.uids("alice@example.com", "INBOX").unwrap().1,
        vec![1, 2]
    );
    assert_eq!(
        mail.fetch("alice@example.com", "INBOX", 2)
            .unwrap()
            .unwrap(),
        *body
    );
    assert_eq!(mail.fetch("alice@example.com", "INBOX", 3).unwrap(), None);
    // A different body is a second object.
    let other = Arc::new(b"Subject: other\r\n\r\nx\r\n".to_vec());
    assert!(mail.deliver(&[delivery("carol@example.com", "", &other)])[0].is_ok());
    assert_eq!(blobs.puts(), 2);
}

#[test]
fn two_replicas_delivering_to_one_inbox_allocate_uids_without_gaps() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let per = 40;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|r| {
            let (_, mail) = stores(&c, &s3, "postern-uids");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let body = Arc::new(format!("Subject: {r}-{i}\r\n\r\nx\r\n").into_bytes());
                    // Two recipients per batch, in opposite orders on the
                    // two replicas: row locks taken in account order.
                    let users = if r == 0 {
                        ["zed@example.com", "amy@example.com"]
                    } else {
                        ["amy@example.com", "zed@example.com"]
                    };
                    let batch: Vec<Delivery> =
                        users.iter().map(|u| delivery(u, "", &body)).collect();
                    for res in mail.deliver(&batch) {
                        res.unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (_, mail) = stores(&c, &s3, "postern-uids");
    for u in ["amy@example.com", "zed@example.com"] {
        let (_, uids) = mail.uids(u, "INBOX").unwrap();
        assert_eq!(uids, (1..=2 * per).collect::<Vec<u32>>(), "{u}");
    }
}

#[test]
fn round_trips_per_operation() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let mut admin = c.counting_admin();
    let pg = Arc::new(Pg::connect(&c.url(), 1).unwrap());
    let counters = PgCounters::new(pg.clone());
    let queue = PgQueue::new(pg.clone());
    let (_, mail) = stores(&c, &s3, "postern-trips");
    let w = Window::containing(QUEUE_NOW, 60);
    let rcpt = vec!["b@example.org".to_string()];
    // Warm up: every statement prepared once on its connection.
    counters.add("warm", w, 1).unwrap();
    queue
        .enqueue("warm", "a@x.org", &rcpt, b"x\r\n", QUEUE_NOW)
        .unwrap();
    let mut m = queue.load("warm").unwrap();
    queue.update(&m).unwrap();
    queue
        .claim("warm", "pod-a", QUEUE_NOW, QUEUE_NOW + 60)
        .unwrap();
    queue.release("warm", "pod-a").unwrap();
    queue.data("warm").unwrap();
    queue.remove("warm").unwrap();
    // Every account made (its default folders: once per account).
    let warm = Arc::new(b"warm\r\n".to_vec());
    for u in ["a", "b", "c", "d"] {
        mail.deliver(&[delivery(&format!("{u}@example.com"), "", &warm)])[0]
            .as_ref()
            .unwrap();
    }

    let n = 20;
    let mut rows = Vec::new();
    let mut measure = |what: &str, f: &mut dyn FnMut(usize)| {
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .unwrap();
        let t = std::time::Instant::now();
        for i in 0..n {
            f(i);
        }
        let per = t.elapsed() / n as u32;
        let trips = statements(&mut admin) as f64 / n as f64;
        eprintln!("{what:<44} {trips:>5.1} round trips {per:>10.2?} each");
        rows.push((what.to_owned(), trips));
    };
    measure("counter add", &mut |_| {
        counters.add("ip:192.0.2.1", w, 1).unwrap();
    });
    measure("queue enqueue (1 rcpt, committed)", &mut |i| {
        queue
            .enqueue(
                &format!("q{i}"),
                "a@x.org",
                &rcpt,
                b"Subject: x\r\n\r\nx\r\n",
                QUEUE_NOW,
            )
            .unwrap();
    });
    measure("queue claim", &mut |i| {
        assert!(queue
            .claim(&format!("q{i}"), "pod-a", QUEUE_NOW, QUEUE_NOW + 60)
            .unwrap());
    });
    measure("queue load + data", &mut |i| {
        m = queue.load(&format!("q{i}")).unwrap();
        queue.data(&m.id).unwrap();
    });
    measure("queue update (attempt recorded)", &mut |i| {
        let mut m = queue.load(&format!("q{i}")).unwrap();
        m.attempts = 1;
        queue.update(&m).unwrap();
    });
    measure("  (of which load)", &mut |i| {
        queue.load(&format!("q{i}")).unwrap();
    });
    measure("queue release + remove", &mut |i| {
        queue.release(&format!("q{i}"), "pod-a").unwrap();
        queue.remove(&format!("q{i}")).unwrap();
    });
    measure("claim_due (batch of up to 10)", &mut |_| {
        queue
            .claim_due("pod-b", QUEUE_NOW, QUEUE_NOW + 60, 10)
            .unwrap();
    });
    measure("deliver new body to 3 recipients", &mut |i| {
        let body = Arc::new(format!("Subject: {i}\r\n\r\nnew\r\n").into_bytes());
        let batch: Vec<Delivery> = ["a@example.com", "b@example.com", "c@example.com"]
            .iter()
            .map(|u| delivery(u, "", &body))
            .collect();
        assert!(mail.deliver(&batch).iter().all(Result::is_ok));
    });
    measure("deliver a known body to 1 recipient", &mut |_| {
        let body = Arc::new(b"Subject: 0\r\n\r\nnew\r\n".to_vec());
        assert!(mail.deliver(&[delivery("d@example.com", "", &body)])[0].is_ok());
    });
    let trips: std::collections::HashMap<String, f64> = rows.into_iter().collect();
    assert_eq!(trips["counter add"], 1.0);
    assert_eq!(trips["queue enqueue (1 rcpt, committed)"], 1.0);
    assert_eq!(trips["queue claim"], 1.0);
    assert_eq!(trips["queue update (attempt recorded)"], 2.0);
    assert_eq!(trips["claim_due (batch of up to 10)"], 1.0);
    // 1 body lookup + BEGIN + bodies + mailbox locks + UIDs and messages + COMMIT,
    // whatever the number of recipients.
    assert_eq!(trips["deliver new body to 3 recipients"], 6.0);
    assert_eq!(trips["deliver a known body to 1 recipient"], 6.0);
}

#[test]
fn spam_classifiers_in_the_database_keep_what_two_replicas_learn() {
    use postern_adapters::pg::PgSpam;
    use postern_adapters::spamstore::{SpamStore, Warn};
    use postern_core::spam::bayes::{Class, Learned};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(c) = PgCluster::start() else { return };
    let warned = Arc::new(AtomicUsize::new(0));
    let w = warned.clone();
    let warn: Warn = Arc::new(move |m| {
        eprintln!("warn: {m}");
        w.fetch_add(1, Ordering::SeqCst);
    });
    let replica = || {
        Arc::new(SpamStore::with_backend(
            Arc::new(PgSpam::new(pool(&c))),
            warn.clone(),
        ))
    };
    let (a, b) = (replica(), replica());
    assert_eq!(a.with("u@example.com", |c| c.counts()), (0, 0));
    assert_eq!(b.with("u@example.com", |c| c.counts()), (0, 0));
    // Both learn at once, different messages: none is lost, although
    // each replica had the empty classifier cached.
    let n = 15u64;
    let handles: Vec<_> = [
        (a.clone(), Class::Spam, 0u64),
        (b.clone(), Class::Ham, 1000),
    ]
    .into_iter()
    .map(|(s, class, base)| {
        std::thread::spawn(move || {
            for k in base..base + n {
                let r = s.learn("U@example.com", k, &[k, k + 1, 7], class).unwrap();
                assert_eq!(r, Learned::Added);
            }
        })
    })
    .collect();
    for h in handles {
        h.join().unwrap();
    }
    let want = (n as u32, n as u32);
    // A replica started now reads what both learned.
    assert_eq!(replica().with("u@example.com", |c| c.counts()), want);
    // The learner's own copy is the stored one after its last learn.
    let a_last = a.with("u@example.com", |c| c.counts());
    let b_last = b.with("u@example.com", |c| c.counts());
    assert!(a_last == want || b_last == want, "{a_last:?} {b_last:?}");
    // Learning again what is stored: unchanged, even on a stale replica.
    assert_eq!(
        b.learn("u@example.com", 3, &[3, 4, 7], Class::Spam)
            .unwrap(),
        Learned::Unchanged
    );
    // Another user is apart; a malformed address is refused.
    assert_eq!(a.with("v@example.com", |c| c.counts()), (0, 0));
    assert!(a.learn("nobody", 1, &[1], Class::Spam).is_err());
    assert_eq!(warned.load(Ordering::SeqCst), 0);
    // A damaged row: an empty classifier and one warning; learning works.
    c.admin()
        .batch_execute("UPDATE spam_classifiers SET data = '\\x0102'::bytea")
        .unwrap();
    let fresh = replica();
    assert_eq!(fresh.with("u@example.com", |c| c.counts()), (0, 0));
    assert_eq!(warned.load(Ordering::SeqCst), 1);
    assert_eq!(
        fresh.learn("u@example.com", 1, &[1], Class::Spam).unwrap(),
        Learned::Added
    );
    assert_eq!(replica().with("u@example.com", |c| c.counts()), (1, 0));
}

#[test]
fn tls_to_the_database_is_verified_against_the_given_ca() {
    let Some(c) = PgCluster::start_tls() else {
        return;
    };
    let (ca, other) = c.ca_pem();
    let url = format!("{} sslmode=require", c.url());
    let tls = postern_adapters::pg::PgTls::from_pem(&ca).unwrap();
    let pg = Pg::connect_tls(&url, 2, None, Some(tls)).unwrap();
    assert_eq!(pg.schema_version().unwrap(), SCHEMA);
    // The server saw TLS on every connection Postern opened.
    let (all, tls_on) = c.postern_tls_connections();
    assert!(all >= 1 && tls_on == all, "{tls_on} of {all} over TLS");
    // A server whose certificate another CA signed is refused, as is
    // sslmode=require without TLS.
    let wrong = postern_adapters::pg::PgTls::from_pem(&other).unwrap();
    let e = Pg::connect_tls(&url, 1, None, Some(wrong)).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(Pg::connect_tls(&url, 1, None, None).is_err());
    // Garbage is not a CA file.
    assert!(postern_adapters::pg::PgTls::from_pem(b"not a certificate").is_err());
}
