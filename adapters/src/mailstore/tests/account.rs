//! Subscriptions and quota.

use super::*;

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
