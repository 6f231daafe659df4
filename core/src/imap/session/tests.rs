//! The session's shape: shutdown, end of input before the PROXY header,
//! and the idle timer after an answer. Whole protocol exchanges are the
//! transcripts' job (`testdata/transcripts/imap/`).

#[cfg(test)] // (the module is declared test-only in mod.rs)
use super::*;
use crate::imap::event::{MailboxRequest, MailboxView};
use crate::proxy::ProxyError;
use crate::Networks;

fn session(tls: TlsMode, proxy: ProxyConfig, now: Instant) -> ImapSession {
    ImapSession::new(
        Arc::new(ImapConfig::new("imap.example.com")),
        Arc::new(ImapListener {
            tls,
            proxy,
            allow_plaintext_auth: false,
        }),
        "10.0.20.5:40000".parse().unwrap(),
        "10.0.20.1:143".parse().unwrap(),
        now,
    )
}

fn drain(s: &mut ImapSession) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn sent(outputs: &[Output]) -> String {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

/// A session greeted on a plain listener.
fn greeted(now: Instant) -> ImapSession {
    let mut s = session(TlsMode::None, ProxyConfig::forbidden(), now);
    drain(&mut s);
    s.answer_connect(now, ConnectAnswer::Accept);
    drain(&mut s);
    s
}

#[test]
fn shutdown_says_bye_and_closes() {
    let now = Instant::now();
    let mut s = greeted(now);
    s.handle_shutdown();
    let out = drain(&mut s);
    assert_eq!(sent(&out), "* BYE Server shutting down\r\n");
    assert_eq!(out.last(), Some(&Output::Close));
    assert!(s.is_closed());
    s.handle_shutdown();
    assert!(drain(&mut s).is_empty());
}

#[test]
fn shutdown_before_the_proxy_header_closes_without_a_word() {
    let now = Instant::now();
    let trusted = Networks::parse(["10.0.20.0/24"]).unwrap();
    let mut s = session(TlsMode::None, ProxyConfig::required(trusted), now);
    drain(&mut s);
    s.handle_shutdown();
    assert_eq!(drain(&mut s), vec![Output::Close]);
}

#[test]
fn eof_before_the_proxy_header_is_a_proxy_refusal() {
    let now = Instant::now();
    let trusted = Networks::parse(["10.0.20.0/24"]).unwrap();
    let mut s = session(TlsMode::None, ProxyConfig::required(trusted), now);
    drain(&mut s);
    s.handle_eof();
    assert_eq!(
        drain(&mut s),
        vec![
            Output::Event(Event::Notice(Notice::ProxyRefused(ProxyError::Missing))),
            Output::Close
        ]
    );
}

#[test]
fn a_slow_answer_does_not_shorten_the_idle_timeout() {
    let t0 = Instant::now();
    let mut s = greeted(t0);
    // Logged in (LOGIN itself needs TLS); STATUS asks the store.
    s.state = State::Authenticated("alice@example.com".into());
    s.timers.stop(ImapTimer::Login);
    s.handle_input(t0, b"a1 STATUS INBOX (MESSAGES)\r\n");
    let out = drain(&mut s);
    assert!(matches!(
        out.as_slice(),
        [Output::Event(Event::Mailbox {
            request: MailboxRequest::Status { .. },
            ..
        })]
    ));
    assert_eq!(s.poll_timeout(), None, "no timer while the store works");
    let later = t0 + Duration::from_secs(600);
    s.answer_mailbox(later, MailboxAnswer::Status(Default::default()));
    assert_eq!(
        sent(&drain(&mut s)),
        "* STATUS INBOX (MESSAGES 0)\r\na1 OK STATUS completed\r\n"
    );
    assert_eq!(s.poll_timeout(), Some(later + s.cfg.idle_timeout));
}

#[test]
fn the_look_idle_takes_does_not_count_as_client_activity() {
    let t0 = Instant::now();
    let mut s = greeted(t0);
    let view = MailboxView {
        uid_validity: 1,
        uid_next: 1,
        messages: Arc::new(Vec::new()),
        keywords: Vec::new(),
        highest_modseq: 1,
        attributes: Vec::new(),
        recent: Vec::new(),
    };
    s.state = State::Selected(
        "alice@example.com".into(),
        Selected {
            name: "INBOX".into(),
            read_only: false,
            view: view.clone(),
        },
    );
    s.timers.stop(ImapTimer::Login);
    s.handle_input(t0, b"a1 IDLE\r\n");
    assert_eq!(sent(&drain(&mut s)), "+ idling\r\n");
    s.handle_mailbox_changed();
    drain(&mut s);
    let later = t0 + Duration::from_secs(600);
    s.answer_mailbox(later, MailboxAnswer::Changed(view));
    assert!(s.is_idle());
    assert_eq!(s.poll_timeout(), Some(t0 + s.cfg.idle_timeout));
}

/// A logged-in session (without TLS and the directory).
fn logged_in(now: Instant) -> ImapSession {
    let mut s = greeted(now);
    s.state = State::Authenticated("alice@example.com".into());
    s.timers.stop(ImapTimer::Login);
    s
}

#[test]
fn a_bad_name_read_before_a_fault_is_refused_first() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.handle_input(now, b"a1 RENAME ../x\r\n");
    assert_eq!(
        sent(&drain(&mut s)),
        "a1 NO [CANNOT] Invalid mailbox name\r\n"
    );
    s.handle_input(now, b"a2 RENAME x\r\n");
    assert_eq!(sent(&drain(&mut s)), "a2 BAD Missing mailbox name\r\n");
    s.handle_input(now, b"a3 STATUS ~root (BOGUS)\r\n");
    assert_eq!(
        sent(&drain(&mut s)),
        "a3 NO [CANNOT] Invalid mailbox name\r\n"
    );
}

#[test]
fn the_state_is_checked_before_the_arguments() {
    let now = Instant::now();
    let mut s = greeted(now);
    s.handle_input(now, b"a1 SELECT\r\n");
    assert_eq!(sent(&drain(&mut s)), "a1 BAD Log in first\r\n");
    let mut s = logged_in(now);
    s.handle_input(now, b"a2 UID FETCH x\r\n");
    assert_eq!(sent(&drain(&mut s)), "a2 BAD No mailbox selected\r\n");
    s.handle_input(now, b"a3 LOGIN a b\r\n");
    assert_eq!(sent(&drain(&mut s)), "a3 BAD Already authenticated\r\n");
}

#[test]
fn the_login_timer_counts_from_the_connection_and_stops_at_login() {
    let t0 = Instant::now();
    let mut s = greeted(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + s.cfg.login_timeout));
    let t1 = t0 + Duration::from_secs(100);
    s.handle_input(t1, b"a1 NOOP\r\n");
    drain(&mut s);
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + s.cfg.login_timeout),
        "activity does not move it"
    );
    s.handle_timeout(t0 + s.cfg.login_timeout);
    let out = drain(&mut s);
    assert!(out.contains(&Output::Event(Event::Notice(Notice::Timeout(
        ImapTimer::Login
    )))));
    assert_eq!(
        sent(&out),
        "* BYE Disconnected for inactivity during login\r\n"
    );
}

#[test]
fn a_refused_connection_is_told_why_but_not_under_implicit_tls() {
    use crate::policy::admission::Refusal;
    let now = Instant::now();
    let mut s = session(TlsMode::None, ProxyConfig::forbidden(), now);
    drain(&mut s);
    s.answer_connect(
        now,
        ConnectAnswer::Refuse(Refusal::TooManyConnections {
            ip: "192.0.2.7".parse().unwrap(),
        }),
    );
    let out = drain(&mut s);
    assert_eq!(sent(&out), "* BYE Too many connections from 192.0.2.7\r\n");
    assert_eq!(out.last(), Some(&Output::Close));
    let mut s = session(TlsMode::None, ProxyConfig::forbidden(), now);
    drain(&mut s);
    s.answer_connect(now, ConnectAnswer::Refuse(Refusal::ServerFull));
    assert_eq!(sent(&drain(&mut s)), "* BYE Server is full\r\n");
    let mut s = session(TlsMode::Implicit, ProxyConfig::forbidden(), now);
    drain(&mut s);
    s.answer_connect(now, ConnectAnswer::Refuse(Refusal::ServerFull));
    assert_eq!(drain(&mut s), vec![Output::Close]);
}

/// Below the store's floor the expunged UIDs are not known exactly:
/// SELECT (QRESYNC ...) then reports every UID of the client's range
/// that is not in the mailbox (RFC 7162 3.2.5.1), and UID FETCH
/// (CHANGEDSINCE m VANISHED) every UID of its set.
#[test]
fn qresync_below_the_floor_reports_the_whole_missing_range() {
    let t0 = Instant::now();
    let mut s = greeted(t0);
    s.state = State::Authenticated("alice@example.com".into());
    s.timers.stop(ImapTimer::Login);
    s.handle_input(t0, b"a1 ENABLE QRESYNC\r\n");
    assert_eq!(
        sent(&drain(&mut s)),
        "* ENABLED QRESYNC\r\na1 OK ENABLE completed\r\n"
    );
    let meta = |uid: u32, modseq: u64| crate::imap::event::MessageMeta {
        uid,
        flags: Vec::new(),
        size: 10,
        internal_date: 0,
        modseq,
    };
    let view = MailboxView {
        uid_validity: 7,
        uid_next: 12,
        messages: Arc::new(vec![meta(3, 4), meta(8, 20)]),
        keywords: Vec::new(),
        highest_modseq: 20,
        attributes: Vec::new(),
        recent: Vec::new(),
    };
    s.handle_input(t0, b"a2 SELECT INBOX (QRESYNC (7 5 1:10))\r\n");
    let asked = drain(&mut s);
    assert!(
        matches!(
            &asked[..],
            [Output::Event(Event::Mailbox {
                request: MailboxRequest::Select {
                    take_recent: true,
                    ..
                },
                ..
            })]
        ),
        "{asked:?}"
    );
    s.answer_mailbox(t0, MailboxAnswer::View(view.clone()));
    let asked = drain(&mut s);
    assert!(
        matches!(
            &asked[..],
            [Output::Event(Event::Mailbox {
                request: MailboxRequest::Vanished { since: 5, .. },
                ..
            })]
        ),
        "{asked:?}"
    );
    s.answer_mailbox(
        t0,
        MailboxAnswer::Vanished {
            uids: vec![9],
            floor: 6,
        },
    );
    let out = sent(&drain(&mut s));
    assert!(
        out.contains("* VANISHED (EARLIER) 1:2,4:7,9:10\r\n* 2 FETCH (UID 8 FLAGS () MODSEQ (20))\r\na2 OK [READ-WRITE]"),
        "{out}"
    );
    s.handle_input(
        t0,
        b"a3 UID FETCH 5:* (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n",
    );
    drain(&mut s);
    // The view is brought up to date first (nothing changed).
    s.answer_mailbox(t0, MailboxAnswer::Changed(view.clone()));
    drain(&mut s);
    s.answer_mailbox(
        t0,
        MailboxAnswer::Vanished {
            uids: vec![9],
            floor: 6,
        },
    );
    let out = sent(&drain(&mut s));
    assert_eq!(
        out,
        "* VANISHED (EARLIER) 5:7,9:11\r\n* 2 FETCH (UID 8 FLAGS () MODSEQ (20))\r\na3 OK FETCH completed\r\n"
    );
    // At or above the floor the store's list is exact.
    s.handle_input(
        t0,
        b"a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 6 VANISHED)\r\n",
    );
    drain(&mut s);
    // The view is brought up to date first (nothing changed).
    s.answer_mailbox(t0, MailboxAnswer::Changed(view.clone()));
    drain(&mut s);
    s.answer_mailbox(
        t0,
        MailboxAnswer::Vanished {
            uids: vec![9],
            floor: 6,
        },
    );
    assert_eq!(
        sent(&drain(&mut s)),
        "* VANISHED (EARLIER) 9\r\n* 2 FETCH (UID 8 FLAGS () MODSEQ (20))\r\na4 OK FETCH completed\r\n"
    );
    // Below the floor, a sequence match (1->3, 2->8 still true) shows
    // nothing at or below UID 8 went: only 9:10 may have.
    s.handle_input(t0, b"a5 SELECT INBOX (QRESYNC (7 5 1:10 (1:2 3,8)))\r\n");
    drain(&mut s);
    s.answer_mailbox(t0, MailboxAnswer::View(view.clone()));
    drain(&mut s);
    s.answer_mailbox(
        t0,
        MailboxAnswer::Vanished {
            uids: Vec::new(),
            floor: 6,
        },
    );
    let out = sent(&drain(&mut s));
    assert!(out.contains("* VANISHED (EARLIER) 9:10\r\n"), "{out}");
}

/// QRESYNC's sequence match (RFC 7162 3.2.5.2): a pair whose sequence
/// number still names the same UID shows nothing below it went.
#[test]
fn sequence_match_bounds_what_may_have_vanished() {
    use crate::imap::set::SeqSet;
    let set = |s: &str| SeqSet::parse(s).unwrap();
    // Now: UIDs 3, 8, 12 (1, 2, 4:7, 9:11 gone at some time).
    let present = [3, 8, 12];
    assert_eq!(
        super::qresync::intact_below(&set("1,2"), &set("3,8"), &present),
        8
    );
    assert_eq!(
        super::qresync::intact_below(&set("1,3"), &set("3,9"), &present),
        3
    );
    assert_eq!(
        super::qresync::intact_below(&set("2"), &set("5"), &present),
        0
    );
    // Unequal lengths, or more pairs than looked at: no help.
    assert_eq!(
        super::qresync::intact_below(&set("1:2"), &set("3"), &present),
        0
    );
    assert_eq!(
        super::qresync::intact_below(&set("1:200000"), &set("1:200000"), &present),
        0
    );
}
