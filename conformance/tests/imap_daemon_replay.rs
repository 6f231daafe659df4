//! The IMAP transcripts of `testdata/transcripts/imap/`, replayed against
//! the real daemon over loopback (as `daemon_replay.rs` does for SMTP):
//! every `S:` line must come from the process as from the core with its
//! in-memory store (`imap_transcripts.rs`), byte for byte, except for the
//! values [`Norm`] documents (UIDVALIDITY numbers, INTERNALDATE of messages
//! the daemon itself created).
//!
//! Each transcript gets a daemon of its own (a fresh account, its
//! `@user`s in the accounts file, hostname `imap.example.com` as in the
//! transcripts) with an implicit-TLS IMAP listener and a cleartext one for
//! `@tls none`. `@message` seeds the account's Maildir++ folders before the
//! connection, `@deliver` writes into `new/` mid-session, `@changed` needs
//! nothing (the daemon polls the folder while a client idles). TLS is done
//! by `openssl s_client` as a pipe. Transcripts that need what only the
//! in-memory runner can do (a virtual clock, an end of input, TLS without
//! a handshake, PROXY headers, other peers) are skipped and listed.

mod common;

use common::Daemon;
use postern_conformance::testdata;
use postern_conformance::transcript::{self, unescape, Step};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Transcripts whose daemon session differs from the in-memory one for a
/// reason in the server (not in the test): each with the reason. They
/// still run (up to their first difference); one that matches again fails
/// the test until it is removed from here.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// Session directives the daemon replay honours.
const SESSION_DIRECTIVES: &[&str] = &["deliver", "changed"];

/// How long one server line (or the end of the connection) may take: more
/// than the daemon's 2 s IDLE poll, with room for a loaded machine.
const LINE_TIMEOUT: Duration = Duration::from_secs(15);

/// Differences listed per transcript before its replay stops (the lines
/// after a missing or extra one all differ).
const MAX_DIFFS: usize = 5;

/// The INTERNALDATE the in-memory store gives every message; seeded and
/// delivered files get it as their modification time.
const MEM_INTERNAL_DATE: u64 = 1_795_588_686;

/// The folders every account has (INBOX is the account directory).
const DEFAULT_FOLDERS: &[&str] = &["Drafts", "Sent", "Junk", "Trash"];

/// Maildir info letters, as the store writes them.
use postern_adapters::mailstore::FLAG_LETTERS;

/// How a transcript is run, or why it cannot be.
struct Plan {
    tls: bool,
    /// `@separator`: `[imap] hierarchy_separator`.
    separator: Option<String>,
    /// `@plaintext-auth yes`: the cleartext listener allows LOGIN.
    plaintext: bool,
    users: Vec<(String, String)>,
    /// (folder, flags, message)
    messages: Vec<(String, Vec<String>, Vec<u8>)>,
}

fn plan(t: &transcript::Transcript) -> Result<Plan, String> {
    let mut p = Plan {
        tls: true,
        separator: None,
        plaintext: false,
        users: Vec::new(),
        messages: Vec::new(),
    };
    for (name, arg) in &t.header {
        match (name.as_str(), arg.as_str()) {
            ("tls", "implicit") => p.tls = true,
            ("tls", "none") => p.tls = false,
            ("proxy", "forbidden") => {}
            ("separator", a) => p.separator = Some(a.to_owned()),
            ("plaintext-auth", a) => p.plaintext = a == "yes",
            ("user", a) => {
                let (u, pw) = a.split_once(' ').ok_or("bad @user")?;
                p.users.push((u.to_owned(), pw.to_owned()));
            }
            ("message", a) => {
                let mut parts = a.splitn(3, ' ');
                let (Some(folder), Some(flags), Some(text)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err("bad @message".into());
                };
                let flags = if flags == "-" {
                    Vec::new()
                } else {
                    flags.split(',').map(str::to_owned).collect()
                };
                p.messages.push((folder.to_owned(), flags, unescape(text)?));
            }
            (n, a) => return Err(format!("header @{n} {a}")),
        }
    }
    if p.users.is_empty() {
        p.users.push(("alice@example.com".into(), "secret".into()));
    }
    for (_, step) in &t.steps {
        if let Step::Directive(n, a) = step {
            if !SESSION_DIRECTIVES.contains(&n.as_str()) {
                return Err(format!("@{n} {a}").trim_end().to_owned());
            }
        }
    }
    Ok(p)
}

const LISTENERS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n\
[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"none\"\n";

/// A daemon for one transcript: its users, the transcripts' hostname.
fn daemon(p: &Plan) -> Daemon {
    // `@deliver` writes files behind the daemon's back, as another
    // program would: a short IDLE poll finds them soon.
    let mut listeners = LISTENERS.to_owned();
    if p.plaintext {
        listeners.push_str("allow_plaintext_auth = true\n");
    }
    let mut imap = "[imap]\nidle_poll_secs = 1\n".to_owned();
    if let Some(sep) = &p.separator {
        imap.push_str(&format!("hierarchy_separator = {sep:?}\n"));
    }
    let mut d = Daemon::start_with(&listeners, "", &imap);
    // `Daemon::start` writes the shared test users and `mx.example.com`:
    // stop, write this transcript's users and hostname, start again.
    d.kill9();
    let root = d.dir.path().to_owned();
    let mut accounts = String::new();
    for (i, (user, pw)) in p.users.iter().enumerate() {
        let h = postern_adapters::directory::sha512_crypt_hash(pw, &format!("replay{i:08}"))
            .expect("hash");
        accounts.push_str(&format!("{user}|{h}\n"));
    }
    std::fs::write(root.join("postfix-accounts.cf"), accounts).expect("accounts");
    let config = std::fs::read_to_string(&d.config).expect("config");
    let host = "hostname = \"mx.example.com\"";
    assert!(config.contains(host), "config layout changed:\n{config}");
    std::fs::write(
        &d.config,
        config.replacen(host, "hostname = \"imap.example.com\"", 1),
    )
    .expect("config");
    d.spawn();
    assert_eq!(d.addrs.len(), 2, "two IMAP listeners");
    d
}

/// The account's Maildir++ tree, written as the daemon would find it.
struct Account {
    root: PathBuf,
    seq: u32,
    /// keywords per folder directory, in letter order
    keywords: BTreeMap<PathBuf, Vec<String>>,
    /// Deliveries written and staged, to be renamed into `new/` together.
    unpublished: Vec<(PathBuf, PathBuf)>,
}

impl Account {
    fn create(data: &Path, user: &str) -> Account {
        let (local, domain) = user.rsplit_once('@').expect("user@domain");
        let root = data
            .join("mail")
            .join(domain.to_lowercase())
            .join(local.to_lowercase());
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        for f in DEFAULT_FOLDERS {
            let dir = root.join(format!(".{f}"));
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
            }
            std::fs::write(dir.join("maildirfolder"), b"").expect("marker");
        }
        Account {
            root,
            seq: 0,
            keywords: BTreeMap::new(),
            unpublished: Vec::new(),
        }
    }

    fn folder(&self, name: &str) -> PathBuf {
        if name.eq_ignore_ascii_case("INBOX") {
            self.root.clone()
        } else {
            self.root.join(format!(".{}", name.replace('/', ".")))
        }
    }

    /// Writes a message through `tmp/` into `cur/` (with the info part
    /// from `flags`), or without flags into `new/` at the next
    /// [`Account::publish`]. Names sort in the order of the calls, so the
    /// daemon numbers the messages in that order.
    fn write(&mut self, folder: &str, flags: Option<&[String]>, text: &[u8]) -> Result<(), String> {
        let dir = self.folder(folder);
        if !dir.join("cur").is_dir() {
            return Err(format!("no folder {folder}"));
        }
        // On disk with LF (as delivery writes); W= is the size with CRLF.
        let mut body = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            body.push(text[i]);
            i += 1;
        }
        let wire = body.len() + body.iter().filter(|&&b| b == b'\n').count();
        self.seq += 1;
        let base = format!(
            "{MEM_INTERNAL_DATE}.M{:06}P1.replay,S={},W={wire}",
            self.seq,
            body.len()
        );
        // Staged outside the Maildir, then renamed in (the same file
        // system): a file with an old date inside `tmp/` is a leftover
        // the daemon may remove at any moment (Maildir's 36-hour rule).
        let staging = self.root.join("../../../seed-staging");
        std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
        let tmp = staging.join(&base);
        let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        f.write_all(&body).map_err(|e| e.to_string())?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(MEM_INTERNAL_DATE))
            .map_err(|e| e.to_string())?;
        drop(f);
        let target = match flags {
            None => {
                self.unpublished.push((tmp, dir.join("new").join(&base)));
                return Ok(());
            }
            Some(flags) => {
                let keywords = self.keywords.entry(dir.clone()).or_default();
                let mut letters = Vec::new();
                for fl in flags {
                    if let Some((c, _)) = FLAG_LETTERS
                        .iter()
                        .find(|(_, n)| n.eq_ignore_ascii_case(fl))
                    {
                        letters.push(*c);
                    } else if fl.starts_with('\\') {
                        return Err(format!("flag {fl} cannot be stored"));
                    } else {
                        let i = keywords.iter().position(|k| k == fl).unwrap_or_else(|| {
                            keywords.push(fl.clone());
                            keywords.len() - 1
                        });
                        letters.push(char::from(b'a' + u8::try_from(i).expect("< 26 keywords")));
                    }
                }
                let kw: String = keywords
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("{i} {k}\n"))
                    .collect();
                if !kw.is_empty() {
                    std::fs::write(dir.join("dovecot-keywords"), kw).map_err(|e| e.to_string())?;
                }
                letters.sort_unstable();
                letters.dedup();
                let info: String = letters.into_iter().collect();
                dir.join("cur").join(format!("{base}:2,{info}"))
            }
        };
        std::fs::rename(&tmp, target).map_err(|e| e.to_string())
    }

    /// Moves the deliveries written since the last call into `new/` in
    /// one go, so that consecutive `@deliver`s arrive together as in the
    /// in-memory runner: only microseconds of renames, not file writes,
    /// lie between them for the daemon's IDLE poll (every 2 s) to split.
    fn publish(&mut self) -> Result<(), String> {
        for (tmp, target) in self.unpublished.drain(..) {
            std::fs::rename(&tmp, &target).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// One client connection: cleartext, or TLS through `openssl s_client`
/// (its stdin and stdout are the cleartext side). A thread reads the
/// server's bytes into a channel so that every read has a deadline.
struct Conn {
    writer: Box<dyn Write>,
    rx: mpsc::Receiver<Option<Vec<u8>>>,
    buf: Vec<u8>,
    eof: bool,
    tcp: Option<TcpStream>,
    child: Option<Child>,
}

fn pump(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut b) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(b[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

impl Conn {
    fn plain(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        let rx = pump(s.try_clone().expect("clone"));
        Conn {
            writer: Box::new(s.try_clone().expect("clone")),
            rx,
            buf: Vec::new(),
            eof: false,
            tcp: Some(s),
            child: None,
        }
    }

    fn tls(addr: SocketAddr) -> Conn {
        // -quiet: no certificate chatter on stdout and no interactive
        // commands (a line "Q" or "R" is sent as is); -ign_eof (implied)
        // keeps the connection until the server ends it.
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client (the TLS client of this test)");
        let rx = pump(child.stdout.take().expect("stdout"));
        Conn {
            writer: Box::new(child.stdin.take().expect("stdin")),
            rx,
            buf: Vec::new(),
            eof: false,
            tcp: None,
            child: Some(child),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Waits (bounded) for more bytes; false at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Some(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Ok(false)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "nothing in {LINE_TIMEOUT:?} (pending {:?})",
                String::from_utf8_lossy(&self.buf)
            )),
        }
    }

    /// The next line without CRLF; `None` at the end of the stream.
    fn line(&mut self) -> Result<Option<String>, String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(Some(line));
            }
            if !self.fill(deadline)? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(format!(
                    "connection ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    /// Reads (bounded) until the server closes; what came before the end.
    fn until_close(&mut self) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while self.fill(deadline)? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// What the server sent and nobody read, without waiting.
    fn leftover(&mut self) -> Vec<u8> {
        while let Ok(Some(b)) = self.rx.try_recv() {
            self.buf.extend_from_slice(&b);
        }
        std::mem::take(&mut self.buf)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(s) = &self.tcp {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the in-memory store and the Maildir store legitimately differ,
/// and nothing else:
/// - UIDVALIDITY values (`[UIDVALIDITY n]`, `UIDVALIDITY n` in STATUS,
///   the first number of `[APPENDUID n ...]` and `[COPYUID n ...]`): the
///   memory store numbers folders 1000, 1001, ... (2000+ when created),
///   the daemon uses the time. Each transcript value must always stand for
///   the same daemon value (a folder's UIDVALIDITY may not change).
/// - `INTERNALDATE "..."`: seeded and delivered files carry the memory
///   store's date and must match exactly; the daemon dates messages it
///   writes itself (APPEND, COPY, MOVE) with its clock, so for those a
///   date within this test's run is accepted where the transcript has the
///   memory store's fixed date.
struct Norm {
    validity: BTreeMap<u64, u64>,
    started: u64,
}

const VALIDITY_KEYS: &[&str] = &["UIDVALIDITY ", "APPENDUID ", "COPYUID "];
const DATE_KEY: &str = "INTERNALDATE \"";

/// Splits `line` into text and the values after `keys` (digits, or a
/// quoted date): (text with each value replaced by `\0`, values).
fn split_values(line: &str) -> (String, Vec<(&'static str, String)>) {
    let mut out = String::new();
    let mut values = Vec::new();
    let mut rest = line;
    'outer: while !rest.is_empty() {
        for key in VALIDITY_KEYS.iter().chain(std::iter::once(&DATE_KEY)) {
            if let Some(after) = rest.strip_prefix(key) {
                let len = if *key == DATE_KEY {
                    after.find('"').unwrap_or(after.len())
                } else {
                    after.bytes().take_while(u8::is_ascii_digit).count()
                };
                if len > 0 {
                    out.push_str(key);
                    out.push('\0');
                    values.push((*key, after[..len].to_owned()));
                    rest = &after[len..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    (out, values)
}

impl Norm {
    fn new() -> Norm {
        Norm {
            validity: BTreeMap::new(),
            started: now_secs(),
        }
    }

    fn same(&mut self, want: &str, got: &str) -> bool {
        if want == got {
            return true;
        }
        let (w, wv) = split_values(want);
        let (g, gv) = split_values(got);
        if w != g || wv.len() != gv.len() {
            return false;
        }
        let mut pairs = Vec::new();
        for ((key, w), (_, g)) in wv.iter().zip(&gv) {
            if *key == DATE_KEY {
                let fixed = date_secs(w) == Some(MEM_INTERNAL_DATE);
                let recent =
                    date_secs(g).is_some_and(|t| t + 5 >= self.started && t <= now_secs() + 5);
                if w != g && !(fixed && recent) {
                    return false;
                }
            } else {
                let (Ok(w), Ok(g)) = (w.parse::<u64>(), g.parse::<u64>()) else {
                    return false;
                };
                if g == 0 || self.validity.get(&w).is_some_and(|v| *v != g) {
                    return false;
                }
                pairs.push((w, g));
            }
        }
        self.validity.extend(pairs);
        true
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `25-Nov-2026 06:38:06 +0000` as seconds since the epoch (the core's
/// own APPEND date-time parser).
fn date_secs(s: &str) -> Option<u64> {
    postern_core::imap::fetch::parse_date_time(s).and_then(|t| u64::try_from(t).ok())
}

/// Replays one transcript against a fresh daemon; `Err` names the lines.
/// `first_only`: stop at the first difference (for known differences).
fn run(name: &str, t: &transcript::Transcript, p: &Plan, first_only: bool) -> Result<(), String> {
    let d = daemon(p);
    let mut account = Account::create(d.dir.path(), &p.users[0].0);
    for (folder, flags, text) in &p.messages {
        account
            .write(folder, Some(flags), text)
            .map_err(|e| format!("{name}: seeding: {e}"))?;
    }
    let mut c = if p.tls {
        Conn::tls(d.addrs[0])
    } else {
        Conn::plain(d.addrs[1])
    };
    // Line-for-line differences are all collected (the session goes on);
    // anything that breaks the pairing of lines ends the replay.
    let mut diffs = Vec::new();
    if let Err(e) = session(name, t, &mut c, &mut account, &mut diffs, first_only) {
        diffs.push(e);
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// The client side of one session, checking every server line.
fn session(
    name: &str,
    t: &transcript::Transcript,
    c: &mut Conn,
    account: &mut Account,
    diffs: &mut Vec<String>,
    first_only: bool,
) -> Result<(), String> {
    let mut norm = Norm::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut closed = false;
    for (line, step) in &t.steps {
        let at = |m: String| format!("{name}:{line}: {m}");
        if let Step::Client(b) = step {
            pending.extend_from_slice(b);
            continue;
        }
        if !matches!(step, Step::Directive(n, _) if n == "deliver") {
            account.publish().map_err(&at)?;
        }
        if !pending.is_empty() {
            if closed {
                return Err(at("client lines after the server closed".into()));
            }
            c.send(&std::mem::take(&mut pending))
                .map_err(|e| at(format!("sending: {e}")))?;
        }
        match step {
            Step::Server(want) => {
                match c.line().map_err(|e| at(format!("{e}, wanted {want:?}")))? {
                    Some(got) if norm.same(want, &got) => {}
                    Some(got) => {
                        diffs.push(at(format!("\n  wanted {want:?}\n  got    {got:?}")));
                        if first_only {
                            return Ok(());
                        }
                        if diffs.len() >= MAX_DIFFS {
                            return Err(at(format!("stopped after {MAX_DIFFS} differences")));
                        }
                    }
                    None => return Err(at(format!("server closed, wanted {want:?}"))),
                }
            }
            Step::Event(e) if e == "close" => {
                let rest = c
                    .until_close()
                    .map_err(|e| at(format!("{e}, wanted the close")))?;
                if !rest.is_empty() {
                    return Err(at(format!(
                        "wanted the close, got {:?}",
                        String::from_utf8_lossy(&rest)
                    )));
                }
                closed = true;
            }
            Step::Directive(n, a) if n == "deliver" => {
                let (folder, text) = a.split_once(' ').ok_or_else(|| at("@deliver".into()))?;
                let text = unescape(text).map_err(&at)?;
                account.write(folder, None, &text).map_err(&at)?;
            }
            // The daemon notices changes itself (IDLE polls the folder).
            Step::Directive(n, _) if n == "changed" => {}
            Step::Directive(n, _) => return Err(at(format!("@{n} cannot be replayed"))),
            Step::DataLine(_) => return Err(at("D: lines are for SMTP".into())),
            Step::Event(_) | Step::Client(_) => {}
        }
    }
    let end = t.steps.last().map_or(0, |s| s.0);
    account
        .publish()
        .map_err(|e| format!("{name}:{end}: {e}"))?;
    if !pending.is_empty() && !closed {
        c.send(&pending)
            .map_err(|e| format!("{name}:{end}: sending: {e}"))?;
    }
    let rest = c.leftover();
    if !rest.is_empty() {
        return Err(format!(
            "{name}:{end}: unexpected server output at the end: {:?}",
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(())
}

#[test]
fn imap_transcripts_replay_against_the_daemon() {
    if !common::peer("openssl") {
        return;
    }
    let dir = testdata().join("transcripts/imap");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    let mut known = Vec::new();
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.trim_end_matches(".txt");
        // `IMAP_REPLAY_ONLY=word`: only the transcripts whose name has it.
        if std::env::var("IMAP_REPLAY_ONLY").is_ok_and(|only| !stem.contains(&only)) {
            continue;
        }
        let t = transcript::parse(&std::fs::read_to_string(path).expect("read"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = match plan(&t) {
            Ok(p) => p,
            Err(why) => {
                skipped.push(format!("{name} ({why})"));
                continue;
            }
        };
        let known_as = KNOWN_DIFFERENCES.iter().find(|(n, _)| *n == stem);
        let result = run(&name, &t, &p, known_as.is_some());
        match known_as {
            Some((_, why)) => match result {
                Ok(()) => failures.push(format!(
                    "{name} matches the daemon now: remove it from KNOWN_DIFFERENCES ({why})"
                )),
                Err(e) => known.push(format!("{name} ({why}): {e}")),
            },
            None => match result {
                Ok(()) => ran.push(name),
                Err(e) => failures.push(e),
            },
        }
    }
    eprintln!(
        "{} IMAP transcripts replayed against the daemon: {}",
        ran.len(),
        ran.join(" ")
    );
    eprintln!("{} skipped:\n  {}", skipped.len(), skipped.join("\n  "));
    eprintln!(
        "{} known differences:\n  {}",
        known.len(),
        known.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} IMAP transcript(s) differ on the daemon:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran.len() >= 30 || std::env::var("IMAP_REPLAY_ONLY").is_ok() && !ran.is_empty(),
        "only {} IMAP transcripts could run against the daemon",
        ran.len()
    );
}
