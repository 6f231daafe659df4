//! IMAP load on the PostgreSQL + S3 backend beside the Maildir backend, in
//! one sitting: one Maildir of 2,000 messages in alice's INBOX (named as
//! an MTA names them, as the imap bench makes its 10,000; fewer here to
//! keep the import short), copied into PostgreSQL + S3 (moto) with
//! `postern store import-maildir` (so the UIDs are the Maildir's), then
//! the same work from 10 persistent Python imaplib clients over IMAPS
//! against a daemon on the Maildir, one daemon on the database, and two
//! daemons (replicas) sharing another database and bucket, 5 clients on
//! each. The work comes in phases of one command each (SELECT, UID FETCH
//! of flags and header, UID SEARCH UNSEEN in a UID range, UID STORE
//! +FLAGS, APPEND to Drafts), then the imap bench's mix of all five, then
//! UID STORE \Deleted + UID EXPUNGE pairs.
//!
//! Per phase and backend: commands/s, and per command: the statements the
//! database ran (pg_stat_statements; one statement is one round trip) and
//! its explicit transactions (COMMITs), S3 requests (moto's log), and the
//! CPU time of the daemons, of PostgreSQL's processes, of moto and of the
//! client (`/proc/PID/stat`; the client's own count), to show which of
//! them the 2 cores spend their time in. Printed, never asserted.
//!
//! Run: `cargo bench -p postern-conformance --bench pg_imap` (needs
//! python3, PostgreSQL and moto_server: `conformance/install-peers`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::imap_load::{make_maildir, PY_PRELUDE};
use common::pg::{round_trips, PgCluster, S3Server};
use common::{proc_stat, Daemon};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// alice's INBOX.
const MESSAGES: usize = 2000;

/// Persistent clients, split evenly over the replicas.
const CLIENTS: usize = 10;

/// The phases: name and commands per client ("expunge" counts its STORE
/// and UID EXPUNGE as two; "warm-up" is the mix, not printed).
const PHASES: &[(&str, usize)] = &[
    ("warm-up", 20),
    ("select", 30),
    ("fetch", 30),
    ("search", 30),
    ("store", 30),
    ("append", 30),
    ("mixed", 100),
    ("expunge", 10),
];

const IMAPS: &str =
    "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n";

/// After [`PY_PRELUDE`]: logs the clients in and SELECTs, says `ready
/// EXISTS UIDNEXT`, then runs each phase read from stdin (`NAME N`) on
/// all clients at once and says `done COMMANDS WALL_S CLIENT_CPU_S
/// ERRORS`. Random UIDs are below TOP; the expunges take the UIDs above.
const DRIVER: &str = r#"
PORTS = [{ports}]; TOP = {top}; CLIENTS = {clients}
clients = [conn(PORTS[i % len(PORTS)]) for i in range(CLIENTS)]
for m in clients: typ, d = m.select("INBOX")
print("ready", d[0].decode(), clients[-1].response("UIDNEXT")[1][0].decode(), flush=True)
for line in sys.stdin:
    name, n = line.split(); n = int(n)
    errors = []; counts = [0] * CLIENTS
    def run(j):
        m = clients[j]; rnd = random.Random(j)
        try:
            for i in range(n):
                if name == "expunge":
                    k = str(TOP + 1 + j + CLIENTS * i)
                    r = m.uid("STORE", k, "+FLAGS.SILENT", "(\\Deleted)")
                    if r[0] == "OK": r = m.uid("EXPUNGE", k)
                    counts[j] += 2
                else:
                    kind = KINDS.index(name) if name in KINDS else i % 5
                    r = command(m, kind, rnd.randint(1, TOP)); counts[j] += 1
                if r[0] != "OK": errors.append((name, r))
        except Exception as e: errors.append((name, repr(e)))
    ts = [threading.Thread(target=run, args=(j,)) for j in range(CLIENTS)]
    c = time.process_time(); t = time.time()
    [x.start() for x in ts]; [x.join() for x in ts]
    print("done %d %.4f %.4f %d" % (sum(counts), time.time() - t, time.process_time() - c, len(errors)), flush=True)
    if errors: print("errors:", errors[:3], file=sys.stderr, flush=True)
for m in clients: m.logout()
"#;

/// Counters at one moment.
struct Snapshot {
    statements: i64,
    commits: i64,
    /// PUT, HEAD, GET.
    s3: (usize, usize, usize),
    /// CPU seconds: the daemons, PostgreSQL, moto.
    cpu: [f64; 3],
    /// CPU seconds the whole machine spent (every process).
    machine: f64,
}

/// The peers whose counters a snapshot reads.
struct Peers {
    pg: PgCluster,
    s3: S3Server,
    admin: postgres::Client,
    ticks: f64,
}

impl Peers {
    /// CPU seconds of processes (their waited-for children too).
    fn cpu(&self, pids: &[u32]) -> f64 {
        let ticks: u64 = pids
            .iter()
            .filter_map(|p| proc_stat(*p))
            .map(|f| {
                f.get(11..15)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum();
        ticks as f64 / self.ticks
    }

    fn snapshot(&mut self, daemons: &[u32]) -> Snapshot {
        let (statements, commits) = round_trips(&mut self.admin);
        Snapshot {
            statements,
            commits,
            s3: self.s3.requests(),
            cpu: [
                self.cpu(daemons),
                self.cpu(&self.pg.pids()),
                self.cpu(&[self.s3.pid()]),
            ],
            machine: machine_busy() / self.ticks,
        }
    }
}

/// Clock ticks the machine's cores spent busy since boot (`/proc/stat`:
/// all but idle and iowait).
fn machine_busy() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = f.get(3).unwrap_or(&0) + f.get(4).unwrap_or(&0);
    (f.iter().take(8).sum::<u64>() - idle) as f64
}

/// The load averages (1, 5, 15 minutes).
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The driver script with its clients on `ports`.
struct Driver {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Driver {
    fn start(ports: &[u16]) -> (Driver, String) {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let script = DRIVER
            .replace("{ports}", &ports.join(", "))
            .replace("{top}", &(MESSAGES * 9 / 10).to_string())
            .replace("{clients}", &CLIENTS.to_string());
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{PY_PRELUDE}{script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        let mut d = Driver {
            child,
            input,
            output,
        };
        let ready = d.line();
        (d, ready.trim_start_matches("ready ").to_owned())
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.output.read_line(&mut line).expect("driver output");
        assert!(!line.is_empty(), "the client script ended early");
        line.trim().to_owned()
    }

    /// Runs a phase; (commands, wall seconds, client CPU seconds, errors).
    fn phase(&mut self, name: &str, per_client: usize) -> (f64, f64, f64, u64) {
        writeln!(self.input, "{name} {per_client}").expect("driver input");
        self.input.flush().expect("driver input");
        let line = self.line();
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [n, wall, cpu, errors] => (n, wall, cpu, errors as u64),
            _ => panic!("driver said {line:?}"),
        }
    }

    fn finish(mut self) {
        drop(self.input);
        let _ = self.child.wait();
    }
}

/// Runs every phase against `daemons` and prints a row per phase; the
/// mixed phase's commands/s.
fn run(label: &str, daemons: &[Daemon], peers: &mut Peers) -> f64 {
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
    let ports: Vec<u16> = daemons.iter().map(|d| d.addrs[0].port()).collect();
    let (mut driver, view) = Driver::start(&ports);
    println!("{label} (INBOX EXISTS and UIDNEXT: {view}):");
    let mut mixed = 0.0;
    for (name, per_client) in PHASES {
        let a = peers.snapshot(&pids);
        let (n, wall, client, errors) = driver.phase(name, *per_client);
        let b = peers.snapshot(&pids);
        if *name == "warm-up" {
            continue;
        }
        let per = |x: f64| x / n;
        let ms = |i: usize| per(b.cpu[i] - a.cpu[i]) * 1000.0;
        let ours = (b.cpu.iter().sum::<f64>() - a.cpu.iter().sum::<f64>() + client) / wall;
        let machine = (b.machine - a.machine) / wall;
        if *name == "mixed" {
            mixed = n / wall;
        }
        println!(
            "  {name:<8} {n:>5} {:>6.0} cmd/s {:>5.1} ms | PG {:>4.1} stmt {:>4.2} tx | S3 {:>4.2} GET {:>4.2} PUT {:>4.2} HEAD \
             | CPU ms/cmd: postern {:>4.2} postgres {:>4.2} moto {:>4.2} client {:>4.2} | cores busy: these {ours:.2}, machine {machine:.2}{}",
            n / wall,
            wall * CLIENTS as f64 * 1000.0 / n,
            per((b.statements - a.statements) as f64),
            per((b.commits - a.commits) as f64),
            per((b.s3.2 - a.s3.2) as f64),
            per((b.s3.0 - a.s3.0) as f64),
            per((b.s3.1 - a.s3.1) as f64),
            ms(0),
            ms(1),
            ms(2),
            per(client) * 1000.0,
            if errors > 0 {
                format!(" ({errors} FAILED)")
            } else {
                String::new()
            },
        );
    }
    driver.finish();
    mixed
}

/// `replicas` daemons on database `db` and a bucket of that name (the
/// secret in `secrets`), the Maildir at `tree` imported through the
/// first; stopped until their run.
fn pg_daemons(
    peers: &mut Peers,
    replicas: usize,
    db: &str,
    tree: &Path,
    secrets: &Path,
) -> Vec<Daemon> {
    peers
        .admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("create database");
    let extra = peers
        .s3
        .store_config(&peers.pg.url_of(db), &db.replace('_', "-"), secrets);
    let mut daemons: Vec<Daemon> = (0..replicas)
        .map(|_| Daemon::start_with(IMAPS, "", &extra))
        .collect();
    let a = peers.snapshot(&[]);
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .args(["store", "--config"])
        .arg(&daemons[0].config)
        .arg("import-maildir")
        .arg(tree)
        .env("POSTERN_LOG", "warn")
        .output()
        .expect("import-maildir");
    let took = start.elapsed();
    let b = peers.snapshot(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import-maildir: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = (MESSAGES + 1) as f64;
    println!(
        "  import-maildir into {db}: {:.2?} ({:.0} msg/s; per message {:.1} statements, {:.2} PUT {:.2} HEAD): {}",
        took,
        n / took.as_secs_f64(),
        (b.statements - a.statements) as f64 / n,
        (b.s3.0 - a.s3.0) as f64 / n,
        (b.s3.1 - a.s3.1) as f64 / n,
        text.lines().last().unwrap_or("")
    );
    // A cold start for the run, as the Maildir daemon's.
    for d in &mut daemons {
        d.kill9();
    }
    daemons
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for t in ["python3", "moto_server"] {
        if !common::peer(t) {
            return;
        }
    }
    let Some(pg) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    let admin = pg.counting_admin();
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let mut peers = Peers {
        pg,
        s3,
        admin,
        ticks,
    };
    println!(
        "IMAP on Maildir and on PostgreSQL + S3 (moto): {MESSAGES}-message INBOX, {CLIENTS} persistent Python imaplib \
         clients over IMAPS on loopback, {} cores, load average {}; per phase: commands, commands/s, mean latency, \
         then per command",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );

    let source = tempfile::tempdir().expect("tempdir");
    let tree = source.path().join("mail");
    make_maildir(&tree, MESSAGES);
    // The first import gives the tree its dovecot-uidlist: every copy
    // below has the same UIDs.
    let mut one = pg_daemons(&mut peers, 1, "imap_one", &tree, source.path());
    let mut two = pg_daemons(&mut peers, 2, "imap_two", &tree, source.path());

    let maildir = Daemon::start(IMAPS, "");
    let mail = maildir.dir.path().join("mail");
    std::fs::create_dir_all(&mail).expect("mail dir");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(tree.join("."))
        .arg(&mail)
        .status()
        .expect("cp");
    assert!(copied.success(), "cp -a the Maildir");
    let m = run("maildir", &[maildir], &mut peers);

    for d in &mut one {
        d.spawn();
    }
    let p1 = run("postgres+S3, 1 replica", &one, &mut peers);
    drop(one);
    for d in &mut two {
        d.spawn();
    }
    let p2 = run("postgres+S3, 2 replicas (5 clients each)", &two, &mut peers);
    println!(
        "mixed: maildir {m:.0} cmd/s, postgres+S3 {p1:.0} cmd/s with 1 replica ({:.2}x maildir), {p2:.0} with 2 ({:.2}x 1 replica); \
         load average {} at the end",
        p1 / m,
        p2 / p1,
        load()
    );
}
