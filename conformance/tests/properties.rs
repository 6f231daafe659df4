//! Property tests for the SMTP core: any split of the same input gives the
//! same outputs, and arbitrary input never panics and never grows the
//! session's buffers past its limits.

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
        Just(vec![b'A'; 3000]),
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
        reads in prop::collection::vec(prop::collection::vec(token(), 1..6), 1..24),
    ) {
        let header: Vec<(String, String)> = match listener {
            0 => vec![],
            1 => vec![("listener".into(), "submission".into())],
            2 => vec![("proxy".into(), "required".into())],
            3 => vec![("tls".into(), "implicit".into()), ("proxy".into(), "required".into())],
            4 => vec![("tls".into(), "none".into()), ("set".into(), "max_line=64 max_message_size=512 max_pipelined=256".into())],
            _ => vec![("listener".into(), "submission".into()), ("tls".into(), "implicit".into())],
        };
        let setup = Setup::from_header(&header).expect("setup");
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
        Just(vec![b'A'; 70_000]),
    ]
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
        let header: Vec<(String, String)> = vec![
            ("message".into(), "INBOX - From: Bob <bob@example.net>\\r\\nSubject: Re: [x] hi\\r\\nContent-Type: multipart/mixed; boundary=b\\r\\n\\r\\n--b\\r\\nContent-Type: message/rfc822\\r\\n\\r\\nSubject: in\\r\\n\\r\\nz\\r\\n--b--\\r\\n".into()),
            ("message".into(), "INBOX \\Seen,$Work Subject: two\\r\\nDate: Wed, 25 Nov 2026 06:30:00 +0000\\r\\n\\r\\nx\\r\\n".into()),
            ("message".into(), "Trash - Subject: three\\r\\n\\r\\ny\\r\\n".into()),
            ("quota".into(), "100000".into()),
        ];
        let mut d = ImapDriver::from_header(&header).expect("driver");
        let limits = postern_core::imap::framing::FrameLimits::default();
        let bound = limits.max_line + usize::try_from(limits.max_append_literal).unwrap_or(usize::MAX) + 256 * 1024;
        for read in reads {
            d.input(&read.concat());
            prop_assert!(d.session.buffered_len() <= bound, "{} > {}", d.session.buffered_len(), bound);
            d.output.clear();
            d.log.clear();
            d.events.clear();
        }
    }
}
