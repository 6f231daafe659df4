//! `postern store import-maildir`: a Dovecot Maildir tree (as a
//! docker-mailserver volume holds it: `dovecot-uidlist` with UIDs that do
//! not start at 1, `dovecot-keywords`, flags in file names, a folder, a
//! `subscriptions` file) copied into PostgreSQL + S3 (moto) by the
//! command line, twice: the second run copies nothing and the UIDs,
//! UIDVALIDITY, flags and keywords are Dovecot's. And back:
//! `postern store export-maildir` after flag changes over IMAP on a
//! daemon of the database backend, read by the Maildir store. And
//! `postern store gc`: bodies no message refers to leave the bucket once
//! their grace period is over, never one a delivery still wants.

mod common;

use common::pg::{PgCluster, S3Server};
use postern_adapters::pg::{Pg, PgMail, PgMailbox};
use postern_adapters::store::{FixedClock, MailboxStore};
use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// alice: INBOX (UIDVALIDITY 1234567, UIDs 5 and 9; one seen, one
/// flagged with keyword $Work) and Archive (UIDVALIDITY 777, UID 3);
/// subscribed to INBOX and Archive only.
fn tree(root: &Path) {
    let a = "example.com/alice";
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Archive/cur",
        ".Archive/new",
        ".Archive/tmp",
    ] {
        std::fs::create_dir_all(root.join(a).join(sub)).unwrap();
    }
    write(
        root,
        &format!("{a}/dovecot-uidlist"),
        "3 V1234567 N12 G0\n5 :1700000000.M1P1.old\n9 :1700000001.M2P2.old\n",
    );
    write(root, &format!("{a}/dovecot-keywords"), "0 $Work\n");
    write(
        root,
        &format!("{a}/cur/1700000000.M1P1.old:2,S"),
        "Subject: first\nFrom: a@example.net\n\none\n",
    );
    write(
        root,
        &format!("{a}/cur/1700000001.M2P2.old:2,Fa"),
        "Subject: second\nFrom: a@example.net\n\ntwo\n",
    );
    write(
        root,
        &format!("{a}/.Archive/dovecot-uidlist"),
        "3 V777 N4 G0\n3 :1700000002.M3P3.old\n",
    );
    write(
        root,
        &format!("{a}/.Archive/cur/1700000002.M3P3.old:2,RS"),
        "Subject: old\n\nthree\n",
    );
    write(root, &format!("{a}/subscriptions"), "INBOX\nArchive\n");
}

fn config(dir: &Path, c: &PgCluster, s3: &S3Server) -> std::path::PathBuf {
    let h = postern_adapters::directory::sha512_crypt_hash("pw", "importsalt000001").unwrap();
    write(dir, "accounts.cf", &format!("alice@example.com|{h}\n"));
    write(dir, "s3-secret", "testing\n");
    let cfg = dir.join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"mx.example.com\"\ndata_dir = \"mail\"\n\
             [directory]\naccounts = \"accounts.cf\"\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n\
             [store]\nbackend = \"postgres\"\n[postgres]\nurl = \"{}\"\n\
             [s3]\nendpoint = \"{}\"\nbucket = \"postern-import\"\naccess_key = \"testing\"\n\
             secret_key_file = \"s3-secret\"\n",
            c.url(),
            s3.endpoint
        ),
    )
    .unwrap();
    cfg
}

fn import(cfg: &Path, root: &Path) -> String {
    postern(&[
        "store",
        "--config",
        &cfg.to_string_lossy(),
        "import-maildir",
        &root.to_string_lossy(),
    ])
}

/// Runs the command line; fails the test unless it succeeds; its output.
fn postern(args: &[&str]) -> String {
    let (ok, text) = postern_status(args);
    assert!(ok, "{text}");
    text
}

/// Runs the command line; whether it succeeded, and its output.
fn postern_status(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .args(args)
        .env("POSTERN_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn view(store: &PgMailbox, mailbox: &str) -> postern_core::imap::event::MailboxView {
    match store.answer(
        "alice@example.com",
        MailboxRequest::Select {
            mailbox: mailbox.into(),
            take_recent: true,
        },
    ) {
        MailboxAnswer::View(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dovecot_maildir_is_imported_with_its_uids_twice_without_doubles() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    tree(&root);
    let cfg = config(dir.path(), &c, &s3);
    let first = import(&cfg, &root);
    eprintln!("{first}");
    assert!(
        first.contains("imported 1 accounts, 2 folders: 3 messages copied, 0 already there"),
        "{first}"
    );
    let again = import(&cfg, &root);
    eprintln!("{again}");
    assert!(
        again.contains("imported 1 accounts, 2 folders: 0 messages copied, 3 already there"),
        "{again}"
    );

    let pg = Arc::new(Pg::connect(&c.url(), 2).unwrap());
    let blobs = s3.blobs(pg.clone(), "postern-import");
    let store = PgMailbox::new(PgMail::new(pg, blobs, Arc::new(FixedClock::new(1))));
    let inbox = view(&store, "INBOX");
    assert_eq!(inbox.uid_validity, 1234567);
    assert_eq!(inbox.uid_next, 12);
    let got: Vec<(u32, Vec<String>)> = inbox
        .messages
        .iter()
        .map(|m| (m.uid, m.flags.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, vec!["\\Seen".to_string()]),
            (9, vec!["\\Flagged".to_string(), "$Work".to_string()])
        ]
    );
    assert_eq!(inbox.keywords, vec!["$Work"]);
    assert!(inbox.recent.is_empty(), "imported mail is not \\Recent");
    let archive = view(&store, "Archive");
    assert_eq!((archive.uid_validity, archive.uid_next), (777, 4));
    assert_eq!(archive.messages[0].uid, 3);
    let body = store.answer(
        "alice@example.com",
        MailboxRequest::Bodies {
            mailbox: "INBOX".into(),
            uids: vec![9],
            header_only: false,
        },
    );
    assert_eq!(
        body,
        MailboxAnswer::Bodies(vec![(
            9,
            b"Subject: second\r\nFrom: a@example.net\r\n\r\ntwo\r\n".to_vec()
        )])
    );
    let MailboxAnswer::List(subs) = store.answer(
        "alice@example.com",
        MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only: true,
            with_status: false,
        },
    ) else {
        panic!("lsub")
    };
    let subs: Vec<String> = subs.into_iter().map(|e| e.name).collect();
    assert!(subs.contains(&"Archive".to_string()), "{subs:?}");
    // The next delivery continues after Dovecot's UIDs.
    let d = postern_adapters::store::Delivery {
        user: "alice@example.com".into(),
        prefix: vec![],
        message: Arc::new(b"Subject: new\r\n\r\nx\r\n".to_vec()),
        folder: None,
    };
    store.deliver(&[d])[0].as_ref().unwrap();
    let uids: Vec<u32> = view(&store, "INBOX")
        .messages
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, vec![5, 9, 12]);
}

#[test]
fn postern_queue_lists_and_deletes_on_the_database_queue() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &c, &s3);
    let q = postern_adapters::pg::PgQueue::new(Arc::new(Pg::connect(&c.url(), 1).unwrap()));
    postern_adapters::store::Queue::enqueue(
        &q,
        "pgq1",
        "a@example.com",
        &["b@example.org".into()],
        b"Subject: x\r\n\r\nx\r\n",
        1,
    )
    .unwrap();
    let cfg = cfg.to_string_lossy();
    let list = postern(&["queue", "--config", &cfg, "list"]);
    assert!(
        list.contains("pgq1  age") && list.contains("pending b@example.org"),
        "{list}"
    );
    assert!(list.contains("-- 1 queued"), "{list}");
    let show = postern(&["queue", "--config", &cfg, "show", "pgq1"]);
    assert!(show.contains("<b@example.org>"), "{show}");
    postern(&["queue", "--config", &cfg, "delete", "pgq1"]);
    let list = postern(&["queue", "--config", &cfg, "list"]);
    assert!(list.contains("-- 0 queued"), "{list}");
}

/// One folder as a store shows it: UIDVALIDITY, UIDNEXT and per message
/// UID, sorted flags, size, INTERNALDATE and body.
type Folder = (u32, u32, Vec<(u32, Vec<String>, u64, i64, Vec<u8>)>);

/// Every folder of alice in `store`, by name, and her subscriptions.
fn snapshot(store: &dyn MailboxStore) -> (Vec<(String, Folder)>, Vec<String>) {
    let user = "alice@example.com";
    let list = |subscribed_only| match store.answer(
        user,
        MailboxRequest::List {
            patterns: vec!["*".into()],
            subscribed_only,
            with_status: false,
        },
    ) {
        MailboxAnswer::List(l) => {
            let mut n: Vec<String> = l.into_iter().map(|e| e.name).collect();
            n.sort();
            n
        }
        other => panic!("{other:?}"),
    };
    let mut out = Vec::new();
    for name in list(false) {
        let MailboxAnswer::View(v) = store.answer(
            user,
            MailboxRequest::Select {
                mailbox: name.clone(),
                take_recent: false,
            },
        ) else {
            panic!("select {name}")
        };
        let uids: Vec<u32> = v.messages.iter().map(|m| m.uid).collect();
        let MailboxAnswer::Bodies(bodies) = store.answer(
            user,
            MailboxRequest::Bodies {
                mailbox: name.clone(),
                uids,
                header_only: false,
            },
        ) else {
            panic!("bodies {name}")
        };
        let messages = v
            .messages
            .iter()
            .map(|m| {
                let mut flags = m.flags.clone();
                flags.sort();
                let body = bodies
                    .iter()
                    .find(|(u, _)| *u == m.uid)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_else(|| panic!("{name} {} without a body", m.uid));
                (m.uid, flags, m.size, m.internal_date, body)
            })
            .collect();
        out.push((name, (v.uid_validity, v.uid_next, messages)));
    }
    (out, list(true))
}

/// Sends an IMAP command; the tagged reply must be OK.
fn imap(c: &mut common::Client, tag: &str, cmd: &str) -> String {
    c.send(format!("{tag} {cmd}\r\n").as_bytes()).unwrap();
    let mut all = String::new();
    for _ in 0..1000 {
        let l = c
            .line()
            .unwrap_or_else(|e| panic!("{cmd}: {e} after {all}"));
        all.push_str(&l);
        all.push('\n');
        if l.starts_with(&format!("{tag} ")) {
            assert!(l.starts_with(&format!("{tag} OK")), "{cmd}: {all}");
            return all;
        }
    }
    panic!("{cmd}: no end: {all}")
}

#[test]
fn an_export_after_imap_flag_changes_opens_in_the_maildir_store_with_the_same_uids() {
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    tree(&root);
    let cfg = config(dir.path(), &c, &s3);
    import(&cfg, &root);

    // A daemon on the database changes flags and appends over IMAP.
    write(dir.path(), "s3-secret-daemon", "testing\n");
    let extra = format!(
        "[store]\nbackend = \"postgres\"\n[postgres]\nurl = \"{}\"\nmax_connections = 2\n\
         [s3]\nendpoint = \"{}\"\nbucket = \"postern-import\"\naccess_key = \"testing\"\n\
         secret_key_file = \"{}\"\n",
        c.url(),
        s3.endpoint,
        dir.path().join("s3-secret-daemon").display()
    );
    let daemon = common::Daemon::start_with(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\nallow_plaintext_auth = true\n",
        "",
        &extra,
    );
    let mut s = common::Client::connect(daemon.addrs[0]).unwrap();
    assert!(s.line().unwrap().starts_with("* OK"));
    imap(&mut s, "l", "LOGIN alice@example.com alice-pw");
    imap(&mut s, "s", "SELECT INBOX");
    imap(&mut s, "a", "UID STORE 5 +FLAGS (\\Flagged $Later)");
    imap(&mut s, "b", "UID STORE 9 -FLAGS ($Work \\Flagged)");
    imap(&mut s, "c", "UID STORE 9 +FLAGS (\\Answered)");
    let msg = "Subject: appended\r\n\r\nover IMAP\r\n";
    s.send(
        format!(
            "p APPEND Archive (\\Seen $Work) {{{}+}}\r\n{msg}\r\n",
            msg.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut appended = String::new();
    while !appended.starts_with("p ") {
        appended = s.line().unwrap();
    }
    assert!(appended.contains("OK"), "{appended}");
    assert!(appended.contains("APPENDUID 777 4"), "{appended}");
    imap(&mut s, "u", "UNSUBSCRIBE Archive");
    imap(&mut s, "q", "LOGOUT");

    let pg = Arc::new(Pg::connect(&c.url(), 2).unwrap());
    let blobs = s3.blobs(pg.clone(), "postern-import");
    let store = PgMailbox::new(PgMail::new(pg, blobs, Arc::new(FixedClock::new(1))));
    let before = snapshot(&store);

    let out_dir = dir.path().join("export");
    let cfgs = cfg.to_string_lossy();
    let outs = out_dir.to_string_lossy();
    let text = postern(&["store", "--config", &cfgs, "export-maildir", &outs]);
    eprintln!("{text}");
    assert!(
        text.contains("exported 1 accounts, 6 folders, 4 messages"),
        "{text}"
    );
    // Dovecot's own files, as Dovecot writes them.
    let a = out_dir.join("example.com/alice");
    let uidlist = std::fs::read_to_string(a.join("dovecot-uidlist")).unwrap();
    assert!(uidlist.starts_with("3 V1234567 N12\n5 :"), "{uidlist}");
    let archive = std::fs::read_to_string(a.join(".Archive/dovecot-uidlist")).unwrap();
    assert!(archive.starts_with("3 V777 N5\n3 :"), "{archive}");
    assert!(archive.contains("\n4 :"), "{archive}");
    let keywords = std::fs::read_to_string(a.join("dovecot-keywords")).unwrap();
    assert!(keywords.contains(" $Later\n"), "{keywords}");

    // The Maildir store reads the same mailboxes back.
    let maildir = postern_adapters::mailstore::MailStore::new(Arc::new(
        postern_adapters::maildir::Maildir::new(&out_dir, "export"),
    ));
    let after = snapshot(&maildir);
    assert_eq!(after, before);
    let inbox = &before.0.iter().find(|(n, _)| n == "INBOX").unwrap().1;
    let flags: Vec<(u32, Vec<String>)> = inbox.2.iter().map(|m| (m.0, m.1.clone())).collect();
    assert_eq!(
        flags,
        vec![
            (
                5,
                vec!["$Later".into(), "\\Flagged".into(), "\\Seen".into()]
            ),
            (9, vec!["\\Answered".into()])
        ]
    );
    assert!(!after.1.contains(&"Archive".to_string()), "{:?}", after.1);

    // A second export into the same folder is refused.
    let (ok, again) = postern_status(&["store", "--config", &cfgs, "export-maildir", &outs]);
    assert!(!ok && again.contains("is not empty"), "{again}");
}

fn gc(cfg: &Path, grace: Option<&str>) -> String {
    let cfg = cfg.to_string_lossy();
    let mut args = vec!["store", "--config", &cfg, "gc"];
    if let Some(g) = grace {
        args.extend(["--grace-secs", g]);
    }
    postern(&args)
}

#[test]
fn store_gc_removes_unreferenced_bodies_after_their_grace_period() {
    use postern_adapters::pg::content_hash;
    use postern_adapters::store::{Delivery, SystemClock};
    use postern_core::imap::event::StoreMode;
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &c, &s3);
    let pg = Arc::new(Pg::connect(&c.url(), 2).unwrap());
    let blobs = s3.blobs(pg.clone(), "postern-import");
    blobs.create_bucket().unwrap();
    let store = PgMailbox::new(PgMail::new(pg, blobs.clone(), Arc::new(SystemClock)));
    let body = |name: &str| Arc::new(format!("Subject: {name}\r\n\r\n{name}\r\n").into_bytes());
    let deliver = |b: &Arc<Vec<u8>>| {
        let d = Delivery {
            user: "alice@example.com".into(),
            prefix: vec![],
            message: b.clone(),
            folder: None,
        };
        assert!(store.deliver(&[d])[0].is_ok());
    };
    let expunge_all = || {
        let uids = view(&store, "INBOX")
            .messages
            .iter()
            .map(|m| m.uid)
            .collect();
        let flagged = store.answer(
            "alice@example.com",
            MailboxRequest::Store {
                mailbox: "INBOX".into(),
                uids,
                mode: StoreMode::Add,
                flags: vec!["\\Deleted".into()],
                unchanged_since: None,
            },
        );
        assert!(
            matches!(flagged, MailboxAnswer::Flags { .. }),
            "{flagged:?}"
        );
        let gone = store.answer(
            "alice@example.com",
            MailboxRequest::Expunge {
                mailbox: "INBOX".into(),
                uids: None,
            },
        );
        assert!(matches!(gone, MailboxAnswer::Expunged(_)), "{gone:?}");
    };
    // Expunged: "gone" and "again"; kept: "kept"; "orphan" was written by
    // a delivery that failed before its commit (no row).
    let (gone, again, kept, orphan) = (body("gone"), body("again"), body("kept"), body("orphan"));
    deliver(&gone);
    deliver(&again);
    expunge_all();
    deliver(&kept);
    blobs.ensure(&orphan).unwrap();
    let hash = |b: &Arc<Vec<u8>>| content_hash(b);
    let stored = |b: &Arc<Vec<u8>>| blobs.fetch(&hash(b)).is_ok();
    assert!([&gone, &again, &kept, &orphan].iter().all(|b| stored(b)));

    // Within the grace period (a day by default) nothing goes; the
    // orphan is indexed.
    let first = gc(&cfg, None);
    assert!(
        first.contains("gc: 4 bodies listed, 1 indexed, 0 removed, 0 kept"),
        "{first}"
    );
    assert!([&gone, &again, &kept, &orphan].iter().all(|b| stored(b)));

    // Two days later (the rows aged by hand), a delivery of "again" has
    // looked its body up (found: not written again) and not yet
    // committed when the collector runs.
    let mut admin = c.admin();
    admin
        .batch_execute("UPDATE blobs SET touched = touched - 2 * 86400")
        .unwrap();
    let puts = blobs.puts();
    assert_eq!(blobs.ensure(&again).unwrap().hash, hash(&again));
    assert_eq!(blobs.puts(), puts, "found stored, not written again");
    let second = gc(&cfg, None);
    assert!(
        second.contains("gc: 4 bodies listed, 0 indexed, 2 removed, 0 kept"),
        "{second}"
    );
    assert!(!stored(&gone), "unreferenced, past its grace: removed");
    assert!(!stored(&orphan), "never committed, past its grace: removed");
    assert!(stored(&kept), "referenced: kept");
    assert!(stored(&again), "wanted by a delivery: kept");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM blobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    // The delivery commits and its message reads whole.
    deliver(&again);
    let (validity, uids) = store.mail().uids("alice@example.com", "INBOX").unwrap();
    assert!(validity > 0);
    let last = *uids.last().unwrap();
    let read = store
        .mail()
        .fetch("alice@example.com", "INBOX", last)
        .unwrap()
        .unwrap();
    assert_eq!(read, *again);
    // With no grace at all, still nothing referenced goes.
    let third = gc(&cfg, Some("0"));
    assert!(third.contains("0 removed"), "{third}");
    assert!(stored(&kept) && stored(&again));
}
