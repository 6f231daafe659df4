//! Property tests for the SMTP and IMAP cores: any split of the same input
//! gives the same outputs (and, for IMAP's command reader, the same
//! commands), and arbitrary input never panics and never grows the
//! session's buffers past its limits. Every bound is set small enough
//! that the generated input can pass it (`*_bound_can_be_reached` checks
//! that), so a broken limit fails the property instead of hiding under a
//! bound no input reaches.

use postern_conformance::replay::{run_with_cuts, Driver, Setup};
use postern_conformance::{testdata, transcript};
use proptest::prelude::*;
use std::fs;

fn load_all() -> Vec<(String, transcript::Transcript)> {
    let dir = testdata().join("transcripts/smtp");
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("transcripts dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read");
            (
                p.display().to_string(),
                transcript::parse(&text).expect("parse"),
            )
        })
        // postscreen's pipelining test looks at what came in the same read
        // as EHLO: cutting the reads changes its verdict by design.
        .filter(|(_, t): &(String, transcript::Transcript)| {
            !t.header
                .iter()
                .any(|(k, v)| k == "set" && v.contains("pipelining="))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Cutting every client read at random places changes nothing the
    /// server says or stores.
    #[test]
    fn any_split_gives_the_same_session(pick in any::<prop::sample::Index>(), seeds in prop::collection::vec(any::<u64>(), 1..8)) {
        let all = load_all();
        let (name, t) = &all[pick.index(all.len())];
        let whole = run_with_cuts(t, &mut |_| Vec::new()).expect("whole run");
        let mut k = 0usize;
        let split = run_with_cuts(t, &mut |len| {
            k += 1;
            if len < 2 { return Vec::new(); }
            let mut c: Vec<usize> = seeds.iter().map(|s| (s.wrapping_mul(k as u64 + 1) % len as u64) as usize).collect();
            c.sort_unstable();
            c
        }).expect("split run");
        prop_assert_eq!(&whole.output, &split.output, "{}", name);
        prop_assert_eq!(&whole.events, &split.events, "{}", name);
    }

    /// One byte at a time, too.
    #[test]
    fn byte_by_byte_gives_the_same_session(pick in any::<prop::sample::Index>()) {
        let all = load_all();
        let (name, t) = &all[pick.index(all.len())];
        let whole = run_with_cuts(t, &mut |_| Vec::new()).expect("whole run");
        let split = run_with_cuts(t, &mut |len| (1..len).collect()).expect("split run");
        prop_assert_eq!(&whole.output, &split.output, "{}", name);
        prop_assert_eq!(&whole.events, &split.events, "{}", name);
    }
}

/// The longest generated SMTP token (a line of `A`s), and how many tokens
/// one read holds at most.
const LONG_SMTP_TOKEN: usize = 3000;
const SMTP_TOKENS_PER_READ: usize = 6;

/// Small limits for every listener of [`arbitrary_input_is_bounded`]:
/// one read of long tokens passes them.
const SMTP_SMALL: &str = "max_line=512 max_message_size=2048 max_pipelined=1024";

/// The header of each listener kind the SMTP property drives.
fn smtp_listener(kind: usize) -> Vec<(String, String)> {
    let small = ("set".to_owned(), SMTP_SMALL.to_owned());
    let mut h: Vec<(String, String)> = match kind {
        0 => vec![],
        1 => vec![("listener".into(), "submission".into())],
        2 => vec![("proxy".into(), "required".into())],
        3 => vec![
            ("tls".into(), "implicit".into()),
            ("proxy".into(), "required".into()),
        ],
        4 => vec![
            ("tls".into(), "none".into()),
            (
                "set".into(),
                "max_line=64 max_message_size=512 max_pipelined=256".into(),
            ),
        ],
        _ => vec![
            ("listener".into(), "submission".into()),
            ("tls".into(), "implicit".into()),
        ],
    };
    if kind != 4 {
        h.push(small);
    }
    h
}

/// Every SMTP listener's buffer bound is below what one generated read can
/// carry, so [`arbitrary_input_is_bounded`] can fail.
#[test]
fn smtp_bound_can_be_reached() {
    for kind in 0..6 {
        let setup = Setup::from_header(&smtp_listener(kind)).expect("setup");
        let d = Driver::new(setup);
        let limit = d.session.buffer_limit();
        assert!(
            limit < LONG_SMTP_TOKEN * SMTP_TOKENS_PER_READ,
            "listener {kind}: bound {limit} is beyond any generated read"
        );
    }
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@example.net>\r\n".to_vec()),
        Just(b"RCPT TO:<alice@example.com>\r\n".to_vec()),
        Just(b"RCPT TO:<x@remote.example>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"BDAT 7\r\n".to_vec()),
        Just(b"BDAT 3 LAST\r\n".to_vec()),
        Just(b"\r\n.\r\n".to_vec()),
        Just(b"\n.\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AUTH LOGIN\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(vec![b'A'; LONG_SMTP_TOKEN]),
        Just(postern_core::proxy::encode_v2(
            "203.0.113.7:1".parse().expect("addr"),
            "10.0.20.1:25".parse().expect("addr"),
            true,
        )),
        Just(b"\r\n\r\n\0\r\nQUIT\n".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Arbitrary input on every kind of listener: no panic, buffers within
    /// the limits after every read.
    #[test]
    fn arbitrary_input_is_bounded(
        listener in 0usize..6,
        reads in prop::collection::vec(prop::collection::vec(token(), 1..=SMTP_TOKENS_PER_READ), 1..24),
    ) {
        let setup = Setup::from_header(&smtp_listener(listener)).expect("setup");
        let mut d = Driver::new(setup);
        let limit = d.session.buffer_limit();
        for read in reads {
            let bytes: Vec<u8> = read.concat();
            d.input(&bytes);
            let _ = d.tls_established();
            prop_assert!(d.session.buffered_len() <= limit, "{} > {}", d.session.buffered_len(), limit);
            d.output.clear();
            d.events.clear();
            d.log.clear();
        }
        d.eof();
    }
}

/// A plain byte-at-a-time reading of RFC 5321 4.1.1.4 / 4.5.2, the model
/// the fast DATA scanner must agree with: (consumed, done, kept bytes,
/// saw a bare CR or LF).
fn data_model(input: &[u8]) -> (usize, bool, Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut bare = false;
    let mut line_start = true;
    let mut i = 0;
    let n = input.len();
    while i < n {
        if line_start && input[i] == b'.' {
            if input[i..].starts_with(b".\r\n") {
                return (i + 3, true, out, bare);
            }
            if i + 1 == n || (input[i + 1] == b'\r' && i + 2 == n) {
                // Undecided: the model stops where the input does.
                return (n, false, out, bare);
            }
            i += 1; // a stuffed dot
            line_start = false;
            continue;
        }
        line_start = false;
        match input[i] {
            b'\r' if i + 1 == n => return (n, false, out, bare),
            b'\r' if input[i + 1] == b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                line_start = true;
            }
            b'\r' | b'\n' => {
                bare = true;
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (n, false, out, bare)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// The DATA scanner (fast path included) agrees with the model on
    /// every mix of dots, CRs, LFs and text, however the input is split.
    #[test]
    fn data_scanner_matches_the_rfc_model(
        parts in prop::collection::vec(prop_oneof![Just(&b"."[..]), Just(&b"\r"[..]), Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"ab"[..]), Just(&b"\r\n.\r\n"[..])], 0..40),
        cut in any::<prop::sample::Index>(),
    ) {
        use postern_core::smtp::data::{BareNewline, DataReceiver};
        let input: Vec<u8> = parts.concat();
        let (m_used, m_done, m_out, m_bare) = data_model(&input);
        let mut rx = DataReceiver::new(1 << 20, BareNewline::Reject, 0);
        let c = if input.is_empty() { 0 } else { cut.index(input.len() + 1) };
        let (a, done_a) = rx.feed(&input[..c]);
        let (used, done) = if done_a { (a, true) } else { let (b, d) = rx.feed(&input[c..]); (c + b, d) };
        prop_assert_eq!(used, m_used, "consumed, input {:?}", String::from_utf8_lossy(&input));
        prop_assert_eq!(done, m_done, "done, input {:?}", String::from_utf8_lossy(&input));
        if done {
            match rx.finish() {
                Ok(out) => { prop_assert!(!m_bare); prop_assert_eq!(out, m_out); }
                Err(_) => prop_assert!(m_bare),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// SORT's base subject (RFC 5256 2.1) never panics, on any Unicode,
    /// and is a fixed point: the base subject of a base subject is itself.
    #[test]
    fn base_subject_is_total_and_idempotent(s in "\\PC{0,40}|(\\[[a-z]{0,3}\\] ?)*(re|fwd?|RE|Fw)(\\[[0-9]\\])?: ?[a-zA-Z İ]{0,10}( \\(fwd\\))*") {
        let b = postern_core::imap::mime::base_subject(&s);
        prop_assert_eq!(postern_core::imap::mime::base_subject(&b), b.clone());
    }

    /// A message summary (what the store caches for ENVELOPE, BODYSTRUCTURE
    /// and SORT) is computed from any bytes without panicking.
    #[test]
    fn summaries_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600), hdr in "(Subject|From|Date|Content-Type): [ -~]{0,30}\r\n") {
        let mut msg = hdr.into_bytes();
        msg.extend_from_slice(&bytes);
        let s = postern_core::imap::mime::summary(&msg);
        prop_assert!(s.envelope.starts_with('('));
        prop_assert!(s.bodystructure.starts_with('('));
    }
}

fn imap_token() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"a LOGIN alice@example.com secret\r\n",
        b"a AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==\r\n",
        b"a SELECT INBOX\r\n",
        b"a SELECT INBOX (CONDSTORE)\r\n",
        b"a EXAMINE Drafts\r\n",
        b"a FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n",
        b"a UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.10>) (CHANGEDSINCE 1)\r\n",
        b"a FETCH * (BODY[1.MIME] BODY[2] BODY[TEXT] MODSEQ)\r\n",
        b"a SEARCH RETURN (MIN MAX COUNT ALL) OR UNSEEN TEXT x\r\n",
        b"a UID SORT (REVERSE SUBJECT DATE) UTF-8 ALL\r\n",
        b"a SORT (FROM) UTF-8 SENTSINCE 1-Jan-2020 MODSEQ 2\r\n",
        b"a STORE 1:* (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Seen $Work)\r\n",
        b"a STORE 2 -FLAGS (\\Deleted)\r\n",
        b"a STORE 1 +FLAGS (\\Deleted)\r\n",
        b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"*\") RETURN (CHILDREN STATUS (MESSAGES HIGHESTMODSEQ))\r\n",
        b"a LIST \"\" \"\"\r\n",
        b"a LSUB \"\" *\r\n",
        b"a STATUS INBOX (MESSAGES UNSEEN SIZE DELETED-STORAGE)\r\n",
        b"a GETQUOTAROOT INBOX\r\n",
        b"a ENABLE CONDSTORE\r\n",
        b"a APPEND Drafts (\\Draft) \"25-Nov-2026 06:38:06 +0000\" {11+}\r\nSubject: x\r\n",
        b"a APPEND INBOX {12}\r\n",
        b"Subject: y\r\n",
        b"a COPY 1:* Trash\r\n",
        b"a UID MOVE 1:* Junk\r\n",
        b"a EXPUNGE\r\n",
        b"a UID EXPUNGE 1:5\r\n",
        b"a CREATE Projects/2026\r\n",
        b"a SUBSCRIBE Projects/2026\r\n",
        b"a DELETE Projects\r\n",
        b"a IDLE\r\n",
        b"DONE\r\n",
        b"a NOOP\r\n",
        b"a UNSELECT\r\n",
        b"a LOGOUT\r\n",
        b"{5}\r\n",
        b"~{3}\r\n",
        b"(((((((((((((((((((\r\n",
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        prop::sample::select(fixed).prop_map(<[u8]>::to_vec),
        Just(vec![b'A'; LONG_IMAP_TOKEN]),
    ]
}

/// The longest generated IMAP token.
const LONG_IMAP_TOKEN: usize = 70_000;

/// Small framing limits for [`arbitrary_imap_input_is_bounded`]: the
/// long token alone passes the bound they make.
const IMAP_SMALL: &str = "max_line=2048 max_literal=1024 max_append_literal=4096 max_pipelined=8192 max_prelogin_line=512 max_prelogin_literal=256";

/// The IMAP session's input bound with [`IMAP_SMALL`] (logged in, the
/// larger one): the pipelined input, a line and the largest literal.
const IMAP_BOUND: usize = 8192 + 2048 + 4096;

/// The mailbox and settings the IMAP property drives.
fn imap_header() -> Vec<(String, String)> {
    vec![
        ("message".into(), "INBOX - From: Bob <bob@example.net>\\r\\nSubject: Re: [x] hi\\r\\nContent-Type: multipart/mixed; boundary=b\\r\\n\\r\\n--b\\r\\nContent-Type: message/rfc822\\r\\n\\r\\nSubject: in\\r\\n\\r\\nz\\r\\n--b--\\r\\n".into()),
        ("message".into(), "INBOX \\Seen,$Work Subject: two\\r\\nDate: Wed, 25 Nov 2026 06:30:00 +0000\\r\\n\\r\\nx\\r\\n".into()),
        ("message".into(), "Trash - Subject: three\\r\\n\\r\\ny\\r\\n".into()),
        ("quota".into(), "100000".into()),
        ("set".into(), IMAP_SMALL.into()),
    ]
}

/// The IMAP bound is below the longest generated token, and a session
/// fed more than it stops holding input: the property can fail.
#[test]
fn imap_bound_can_be_reached() {
    use postern_conformance::imap_replay::ImapDriver;
    const { assert!(IMAP_BOUND < LONG_IMAP_TOKEN) };
    let mut d = ImapDriver::from_header(&imap_header()).expect("driver");
    d.input(b"a LOGIN alice@example.com secret\r\n");
    assert!(d.session.user().is_some(), "logged in");
    // An APPEND literal just inside the limit is held whole ...
    d.input(b"a APPEND INBOX {4096+}\r\n");
    d.input(&vec![b'x'; 4000]);
    assert!(d.session.buffered_len() > 4000);
    // ... and more than the bound in one read ends the session.
    d.input(&vec![b'A'; LONG_IMAP_TOKEN]);
    assert!(
        d.session.buffered_len() <= IMAP_BOUND,
        "{}",
        d.session.buffered_len()
    );
    assert!(d.session.is_closed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary and half-valid IMAP on a mailbox with messages: the
    /// session never panics, and what it buffers stays within the framing
    /// limits (a line, the largest literal, and what may be pipelined).
    #[test]
    fn arbitrary_imap_input_is_bounded(
        reads in prop::collection::vec(prop::collection::vec(imap_token(), 1..5), 1..16),
    ) {
        use postern_conformance::imap_replay::ImapDriver;
        let mut d = ImapDriver::from_header(&imap_header()).expect("driver");
        for read in reads {
            d.input(&read.concat());
            prop_assert!(d.session.buffered_len() <= IMAP_BOUND, "{} > {}", d.session.buffered_len(), IMAP_BOUND);
            d.output.clear();
            d.log.clear();
            d.events.clear();
        }
    }
}

/// Framing limits small enough that generated commands pass each of them.
fn small_frame_limits() -> postern_core::imap::framing::FrameLimits {
    postern_core::imap::framing::FrameLimits {
        max_line: 256,
        max_literal: 200,
        max_append_literal: 500,
        max_literals: 3,
    }
}

/// What IMAP's command reader makes of `reads` arriving one after another,
/// acting as the session does: each command (its bytes), each refused
/// synchronising literal (skipped, the session goes on), and the fault
/// that ends the connection; then the bytes still unframed.
fn frame_reads(reads: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    use postern_core::imap::framing::{Framed, Framer};
    let limits = small_frame_limits();
    let mut framer = Framer::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match framer.frame(&buf, &limits) {
                Framed::Incomplete { .. } => break,
                Framed::Command { len } => {
                    out.push(format!("command {}", String::from_utf8_lossy(&buf[..len])));
                    buf.drain(..len);
                    framer.reset();
                }
                Framed::LiteralTooLarge {
                    tag,
                    sync: true,
                    len,
                } => {
                    let len = len.min(buf.len());
                    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
                    out.push(format!("too large {tag:?} {head}"));
                    buf.drain(..len);
                    framer.reset();
                }
                fault => {
                    out.push(format!("{fault:?}"));
                    return (out, Vec::new());
                }
            }
        }
    }
    (out, buf)
}

/// A command with a literal: APPEND or not, synchronising, `+` or `~`,
/// the body as announced, shorter, or longer (the rest runs into the
/// next command).
fn literal_command() -> impl Strategy<Value = Vec<u8>> {
    (0usize..4, 0usize..700, -3isize..4, any::<u8>()).prop_map(|(form, n, skew, fill)| {
        let head = match form {
            0 => format!("a APPEND INBOX {{{n}}}\r\n"),
            1 => format!("b APPEND Drafts (\\Draft) {{{n}+}}\r\n"),
            2 => format!("c LOGIN {{{n}}}\r\n"),
            _ => format!("d APPEND INBOX (\\Seen) ~{{{n}+}}\r\n"),
        };
        let body = n.saturating_add_signed(skew);
        let mut v = head.into_bytes();
        v.extend(std::iter::repeat_n(fill, body));
        v.extend_from_slice(b" x\r\n");
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// IMAP's command reader: the same bytes cut at any places give the
    /// same commands, refusals and leftover as read whole.
    #[test]
    fn imap_command_reader_ignores_how_input_is_split(
        pieces in prop::collection::vec(prop_oneof![imap_token(), literal_command()], 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let whole: Vec<u8> = pieces.concat();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(whole.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut reads: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for &c in at.iter().chain(std::iter::once(&whole.len())) {
            reads.push(&whole[start..c]);
            start = c;
        }
        let (all_at_once, left_whole) = frame_reads(&[&whole]);
        let (in_pieces, left_split) = frame_reads(&reads);
        prop_assert_eq!(&all_at_once, &in_pieces);
        prop_assert_eq!(left_whole, left_split);
        // Byte by byte too.
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        let (one_by_one, _) = frame_reads(&bytes);
        prop_assert_eq!(&all_at_once, &one_by_one);
    }
}

/// The split property sees commands, refusals and faults, not only
/// "nothing framed".
#[test]
fn imap_command_reader_frames_the_generated_shapes() {
    let (out, left) =
        frame_reads(&[b"a NOOP\r\nb APPEND INBOX {3}\r\nabc x\r\nc LOGIN {999}\r\nd NOOP\r\ne"]);
    assert_eq!(
        out,
        [
            "command a NOOP\r\n",
            "command b APPEND INBOX {3}\r\nabc x\r\n",
            "too large Some(\"c\") c LOGIN {999}\r\n",
            "command d NOOP\r\n",
        ]
    );
    assert_eq!(left, b"e");
    let (out, _) = frame_reads(&[&[b'A'; 300]]);
    assert_eq!(out, ["LineTooLong"]);
}
