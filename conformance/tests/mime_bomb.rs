//! The MIME bomb: a message anyone can send to the MX, made of 300,000
//! empty parts (or 10,000 nested ones), must not make its owner's FETCH
//! slow or huge, nor leave the daemon holding the memory afterwards, nor
//! stall another user. Delivered over SMTP to the real daemon, fetched
//! over IMAPS (Python's `ssl` on a raw socket, so the test sees every
//! byte of the answer).
//!
//! Also the property behind it: for any nesting, the BODYSTRUCTURE the
//! core describes is bounded by the limits.

mod common;

use common::{peer, python, Client, Daemon};
use postern_core::imap::limits::MimeLimits;
use postern_core::imap::mime::{bodystructure_with, part_bytes_with, PartSpec};
use proptest::prelude::*;
use std::net::SocketAddr;

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// 300,000 empty parts, about 3 MB.
fn parts_bomb() -> Vec<u8> {
    let mut m = b"From: anyone@example.net\r\nTo: alice@example.com\r\nSubject: parts bomb\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"bomb\"\r\n\r\n".to_vec();
    for _ in 0..300_000 {
        m.extend_from_slice(b"--bomb\r\n\r\n");
    }
    m.extend_from_slice(b"--bomb--\r\n");
    m
}

/// 10,000 multiparts, each the only part of the one above.
fn nested_bomb() -> Vec<u8> {
    let mut m = b"From: anyone@example.net\r\nTo: alice@example.com\r\nSubject: nested bomb\r\nMIME-Version: 1.0\r\n".to_vec();
    for i in 0..10_000 {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"n{i}\"\r\n\r\n--n{i}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"\r\ninnermost\r\n");
    for i in (0..10_000).rev() {
        m.extend_from_slice(format!("--n{i}--\r\n").as_bytes());
    }
    m
}

fn deliver(mx: SocketAddr, msg: &[u8]) {
    let mut c = Client::connect(mx).expect("connect");
    c.reply().expect("greeting");
    c.cmd("EHLO bomber.example.net").expect("ehlo");
    let r = c.cmd("MAIL FROM:<anyone@example.net>").expect("mail");
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<alice@example.com>").expect("rcpt");
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("DATA").expect("data");
    assert!(r.starts_with("354"), "{r}");
    c.send(msg).expect("send");
    let r = c.cmd(".").expect("dot");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT").expect("quit");
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Alice fetches from message `seq` over IMAPS while Bob, on his own
/// connection, asks NOOP in the middle of her first FETCH. Prints one line
/// per command: `tag bytes seconds first-bytes`, and `noop OK`.
fn fetch(port: u16, seq: u32, items: &[&str]) -> Vec<(String, usize, String)> {
    let items = items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        r#"
import socket, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class Conn:
    def __init__(self):
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port}), 60), server_hostname="localhost")
        self.buf = b""
        self.until(b"* OK")
    def until(self, tag):
        # Reads to the tagged line (or the greeting); bounded by the timeout.
        while True:
            start = 0
            while True:
                end = self.buf.find(b"\r\n", start)
                if end < 0:
                    break
                line = self.buf[start:end]
                if line.startswith(tag + b" ") or (tag == b"* OK" and line.startswith(tag)):
                    out, self.buf = self.buf[:end + 2], self.buf[end + 2:]
                    return out
                start = end + 2
            chunk = self.s.recv(1 << 16)
            assert chunk, "closed"
            self.buf += chunk
    def cmd(self, tag, text):
        self.s.sendall(tag + b" " + text + b"\r\n")
        return self.until(tag)
bob = Conn()
assert b"OK" in bob.cmd(b"b1", b"LOGIN bob@example.com bob-pw").split(b"\r\n")[-2]
alice = Conn()
assert b"OK" in alice.cmd(b"a0", b"LOGIN alice@example.com alice-pw").split(b"\r\n")[-2]
assert b"OK" in alice.cmd(b"s0", b"SELECT INBOX").split(b"\r\n")[-2]
for n, item in enumerate([{items}]):
    tag = b"f%d" % n
    t = time.monotonic()
    alice.s.sendall(tag + b" FETCH {seq} " + item.encode() + b"\r\n")
    if n == 0:
        r = bob.cmd(b"b2", b"NOOP")
        assert r.split(b"\r\n")[-2].startswith(b"b2 OK"), r
        print("noop", "OK")
    r = alice.until(tag)
    took = time.monotonic() - t
    last = r.split(b"\r\n")[-2]
    assert last.startswith(tag + b" OK"), last
    print(item.replace(" ", "_"), len(r), "%.3f" % took, repr(r[:120]).replace(" ", "_"))
alice.cmd(b"z", b"LOGOUT")
bob.cmd(b"z", b"LOGOUT")
"#
    );
    let out = python(&script);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("noop OK"), "{out}");
    lines
        .map(|l| {
            let mut w = l.splitn(4, ' ');
            let item = w.next().unwrap_or("").to_owned();
            let size = w.next().and_then(|s| s.parse().ok()).expect("size");
            let took = w.next().unwrap_or("");
            let head = w.next().unwrap_or("").to_owned();
            eprintln!("{item}: {size} bytes in {took} s: {head}");
            (item, size, head)
        })
        .collect()
}

#[test]
fn a_mime_bomb_answers_small_and_memory_returns() {
    if !peer("python3") {
        return;
    }
    let d = Daemon::start(LISTENERS, "");
    let (mx, imaps) = (d.addrs[0], d.addrs[1]);
    let pid = d.pid();
    let start = rss_kib(pid);
    let (parts, nested) = (parts_bomb(), nested_bomb());
    eprintln!(
        "parts bomb {} bytes, nested bomb {} bytes",
        parts.len(),
        nested.len()
    );
    deliver(mx, &parts);
    deliver(mx, &nested);
    let delivered = rss_kib(pid);
    let items = ["(BODYSTRUCTURE)", "BODY[1]", "BODY[2.1]", "(BODYSTRUCTURE)"];
    let a = fetch(imaps.port(), 1, &items);
    let b = fetch(imaps.port(), 2, &items);
    let after = rss_kib(pid);
    eprintln!("VmRSS: {start} KiB at start, {delivered} KiB after delivery, {after} KiB after the fetches");
    for (item, size, head) in &a {
        assert!(*size < 200_000, "{item}: {size} bytes");
        assert!(head.contains("FETCH"), "{head}");
    }
    // The first 999 parts are described, then one opaque part.
    assert!(a[0].2.contains("BODYSTRUCTURE_(("), "{}", a[0].2);
    assert!(
        a[1].2.contains("BODY[1]_\"\"") || a[1].2.contains("BODY[1]_{0}"),
        "{}",
        a[1].2
    );
    for (item, size, head) in &b {
        // BODY[1] of the nested bomb is its content: no more than the message.
        assert!(*size < nested.len() + 1024, "{item}: {size} bytes");
        assert!(head.contains("FETCH"), "{head}");
    }
    assert!(b[0].1 < 200_000, "{} bytes", b[0].1);
    assert!(b[3].1 < 200_000, "{} bytes", b[3].1);
    assert!(
        after < 150 * 1024,
        "VmRSS {after} KiB after the fetches (start {start} KiB)"
    );
}

/// A message of nested multiparts and embedded messages, from a shape:
/// each number is how many parts a level has (0: an embedded message).
fn nested(shape: &[u8]) -> Vec<u8> {
    fn level(out: &mut Vec<u8>, shape: &[u8], i: usize) {
        let Some(&n) = shape.get(i) else {
            out.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf\r\n");
            return;
        };
        if n == 0 {
            out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
            level(out, shape, i + 1);
            return;
        }
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"l{i}\"\r\n\r\n").as_bytes(),
        );
        for k in 0..n {
            out.extend_from_slice(format!("--l{i}\r\n").as_bytes());
            if k == 0 {
                level(out, shape, i + 1);
            } else {
                out.extend_from_slice(b"Content-Type: text/plain\r\n\r\nx\r\n");
            }
        }
        out.extend_from_slice(format!("--l{i}--\r\n").as_bytes());
    }
    let mut m = b"From: a@example.net\r\nSubject: shape\r\nMIME-Version: 1.0\r\n".to_vec();
    level(&mut m, shape, 0);
    m
}

/// The deepest parenthesis nesting in a response.
fn paren_depth(s: &str) -> usize {
    let (mut d, mut max) = (0usize, 0usize);
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => {
                d += 1;
                max = max.max(d);
            }
            ')' if !quoted => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// How many parts a multipart's description lists (None: not a multipart).
fn top_children(s: &str) -> Option<u32> {
    if !s.starts_with("((") {
        return None;
    }
    let (mut d, mut n) = (0usize, 0u32);
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if d == 1 => return Some(n),
            '"' => quoted = !quoted,
            '(' if !quoted => {
                d += 1;
                if d == 2 {
                    n += 1;
                }
            }
            ')' if !quoted => d = d.saturating_sub(1),
            _ => {}
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any nesting, the description holds at most `max_parts` parts
    /// and one opaque one, nests no deeper than the limit allows, and
    /// the opaque part, when there is one, can be fetched by number.
    #[test]
    fn structure_is_bounded_for_any_nesting(
        shape in prop::collection::vec(0u8..4, 0..120),
        max_parts in 1usize..40,
        max_depth in 0usize..12,
    ) {
        let msg = nested(&shape);
        let limits = MimeLimits { max_parts, max_depth };
        let s = bodystructure_with(&msg, true, limits);
        prop_assert!(s.starts_with('(') && s.ends_with(')'), "{}", s);
        // Every part renders in under 400 bytes here (an embedded
        // message's envelope included).
        prop_assert!(s.len() <= (max_parts + 1) * 400, "{} bytes for {} parts", s.len(), max_parts);
        let opaque = s.matches("\"APPLICATION\" \"OCTET-STREAM\"").count();
        prop_assert!(opaque <= 1, "{}", s);
        // Each level is at most a multipart, an embedded message's part
        // and its envelope's address lists.
        prop_assert!(paren_depth(&s) <= 3 * (max_depth + 2) + 3, "{}", s);
        // Section numbers follow the description: the root's last part
        // described (the opaque one, when there is one) is there, and
        // none after it.
        if let Some(k) = top_children(&s) {
            prop_assert!(part_bytes_with(&msg, &[k], PartSpec::Body, limits).is_some(), "{} {}", k, s);
            prop_assert!(part_bytes_with(&msg, &[k + 1], PartSpec::Body, limits).is_none(), "{} {}", k, s);
        }
    }
}
