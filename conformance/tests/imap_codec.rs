//! Properties of the IMAP command codec: arbitrary bytes never panic and
//! never make the framer claim bytes it does not have; generated commands
//! survive serialise -> any split -> frame -> parse unchanged.

use postern_core::imap::framing::{FrameLimits, Framed, Framer};
use postern_core::imap::parse::{parse_command, Value};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
enum V {
    Atom(String),
    Quoted(String),
    Literal(Vec<u8>, bool),
    List(Vec<V>),
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        "[A-Za-z0-9\\\\:*.-]{1,12}".prop_map(V::Atom),
        "[ -~]{0,12}".prop_map(V::Quoted),
        (prop::collection::vec(any::<u8>(), 0..40), any::<bool>())
            .prop_map(|(b, sync)| V::Literal(b, sync)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(V::List)
    })
}

fn write(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Atom(a) => out.extend_from_slice(a.as_bytes()),
        V::Quoted(q) => {
            out.push(b'"');
            for c in q.bytes() {
                if c == b'"' || c == b'\\' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
        }
        V::Literal(b, sync) => {
            out.extend_from_slice(
                format!("{{{}{}}}\r\n", b.len(), if *sync { "" } else { "+" }).as_bytes(),
            );
            out.extend_from_slice(b);
        }
        V::List(items) => {
            out.push(b'(');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write(it, out);
            }
            out.push(b')');
        }
    }
}

fn same(v: &V, p: &Value<'_>) -> bool {
    match (v, p) {
        (V::Atom(a), Value::Atom(b)) => a == b,
        (V::Quoted(a), Value::Quoted(b)) => a == b.as_ref(),
        (V::Literal(a, _), Value::Literal(b)) => a.as_slice() == *b,
        (V::List(a), Value::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        _ => false,
    }
}

/// Feeds `stream` in the given pieces, taking commands as they complete.
fn run(stream: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, usize)> {
    let limits = FrameLimits::default();
    let mut framer = Framer::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut continuations = 0;
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        let c = c.clamp(start, stream.len());
        buf.extend_from_slice(&stream[start..c]);
        start = c;
        loop {
            match framer.frame(&buf, &limits) {
                Framed::Command { len } => {
                    out.push((buf[..len].to_vec(), continuations));
                    buf.drain(..len);
                    framer.reset();
                    continuations = 0;
                }
                Framed::Incomplete { continuation } => {
                    continuations += usize::from(continuation);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_safe(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let limits = FrameLimits { max_line: 128, max_literal: 64, max_append_literal: 256, max_literals: 4 };
        let mut f = Framer::default();
        for end in 0..=bytes.len() {
            match f.frame(&bytes[..end], &limits) {
                Framed::Command { len } => {
                    prop_assert!(len <= end);
                    let _ = parse_command(&bytes[..len]);
                    break;
                }
                Framed::LiteralTooLarge { len, .. } => { prop_assert!(len <= end); break; }
                Framed::Incomplete { .. } => {}
                Framed::LineTooLong | Framed::TooManyLiterals => break,
            }
        }
        let _ = parse_command(&bytes);
    }

    #[test]
    fn commands_round_trip_through_any_split(
        cmds in prop::collection::vec(("[a-z0-9]{1,6}", "[A-Z]{2,8}".prop_filter("UID takes a subcommand", |n| n != "UID"), prop::collection::vec(value(), 0..5)), 1..4),
        seeds in prop::collection::vec(any::<u32>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (tag, name, args) in &cmds {
            stream.extend_from_slice(format!("{tag} {name}").as_bytes());
            for a in args {
                stream.push(b' ');
                write(a, &mut stream);
            }
            stream.extend_from_slice(b"\r\n");
        }
        let whole = run(&stream, &[]);
        let mut cuts: Vec<usize> = seeds.iter().map(|s| (*s as usize) % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let split = run(&stream, &cuts);
        prop_assert_eq!(whole.len(), cmds.len());
        prop_assert_eq!(
            whole.iter().map(|w| &w.0).collect::<Vec<_>>(),
            split.iter().map(|s| &s.0).collect::<Vec<_>>()
        );
        for ((bytes, _), (tag, name, args)) in whole.iter().zip(&cmds) {
            let c = parse_command(bytes).expect("parses");
            prop_assert_eq!(c.tag, tag.as_str());
            prop_assert_eq!(&c.name, name);
            prop_assert_eq!(c.args.len(), args.len());
            for (p, v) in c.args.iter().zip(args) {
                prop_assert!(same(v, p), "{:?} vs {:?}", v, p);
            }
        }
        // Each synchronising literal gets at most one continuation request.
        for (bytes, n) in &split {
            let sync = bytes.windows(3).filter(|w| w == b"}\r\n").count();
            prop_assert!(*n <= sync);
        }
    }
}

/// FETCH and SEARCH over message bytes ask the store in batches of a few
/// megabytes (never the whole mailbox at once) and still answer every
/// message once, in order, under one tagged OK.
#[test]
fn large_fetch_and_search_go_in_batches() {
    use postern_conformance::imap_replay::ImapDriver;
    let big = "x".repeat(20_000);
    let mut header = Vec::new();
    for i in 1..=1500 {
        let body = if i % 500 == 0 {
            format!("needle {big}")
        } else {
            big.clone()
        };
        header.push((
            "message".to_owned(),
            format!("INBOX - Subject: m{i}\\r\\n\\r\\n{body}\\r\\n"),
        ));
    }
    let mut d = ImapDriver::from_header(&header).expect("driver");
    d.input(b"a1 LOGIN alice@example.com secret\r\na2 SELECT INBOX\r\n");
    d.input(b"a3 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    d.input(b"a4 UID SEARCH BODY needle\r\n");
    d.input(b"a5 FETCH 1:* BODY.PEEK[]\r\n");
    let log = d.log.join("\n");
    // Store questions asked for each command.
    let asked = |from: &str, to: &str| {
        let start = log.find(from).expect("command in log");
        let end = log[start..].find(to).map_or(log.len(), |e| start + e);
        log[start..end].matches("mailbox Bodies {").count()
    };
    // 1500 headers in batches of 512; 1500 x 20 kB in batches of ~4 MB.
    assert_eq!(asked("C~ a3", "C~ a4"), 3);
    assert!(
        (7..=9).contains(&asked("C~ a4", "C~ a5")),
        "{}",
        asked("C~ a4", "C~ a5")
    );
    assert!(
        (7..=9).contains(&asked("C~ a5", "\u{0}")),
        "{}",
        asked("C~ a5", "\u{0}")
    );
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("S: * ") && l.contains(" FETCH (BODY[HEADER.FIELDS (SUBJECT)]"))
        .collect();
    assert_eq!(fetched.len(), 1500);
    assert!(fetched[0].starts_with("S: * 1 FETCH") && fetched[1499].starts_with("S: * 1500 FETCH"));
    assert_eq!(log.matches("S: a3 OK FETCH completed").count(), 1);
    assert!(
        log.contains("S: * SEARCH 500 1000 1500\nS: a4 OK SEARCH completed"),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert_eq!(log.matches(" FETCH (BODY[] {").count(), 1500);
    assert!(log.ends_with("S: a5 OK FETCH completed"));
}

/// BINARY of a base64 part with NULs in it comes as a literal8
/// (`~{n}`, RFC 3516 4.3) holding exactly the decoded octets; APPEND takes
/// a literal8 too.
#[test]
fn binary_with_nuls_is_a_literal8() {
    use postern_conformance::imap_replay::ImapDriver;
    let header = vec![(
        "message".to_owned(),
        "INBOX - Content-Type: multipart/mixed; boundary=b\\r\\n\\r\\n--b\\r\\n\\r\\nx\\r\\n--b\\r\\nContent-Transfer-Encoding: BASE64\\r\\n\\r\\nAAEC\\r\\n/w==\\r\\n--b--\\r\\n"
            .to_owned(),
    )];
    let mut d = ImapDriver::from_header(&header).expect("driver");
    d.input(b"a1 LOGIN alice@example.com secret\r\na2 SELECT INBOX\r\n");
    d.output.clear();
    d.input(b"a3 FETCH 1 BINARY.PEEK[2]\r\n");
    let want: &[u8] =
        b"* 1 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\xff)\r\na3 OK FETCH completed\r\n";
    assert_eq!(d.output, want, "{}", String::from_utf8_lossy(&d.output));
    d.output.clear();
    d.input(b"a4 APPEND Drafts ~{3+}\r\n\x00\x01\x02\r\n");
    assert!(
        d.output
            .starts_with(b"a4 OK [APPENDUID 1001 1] APPEND completed"),
        "{}",
        String::from_utf8_lossy(&d.output)
    );
}
