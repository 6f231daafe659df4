//! Postern beside Postfix on the same loopback and disk, in one run:
//! `smtp-source -s 10 -m 5000 -l 4096` against each, both delivering to a
//! virtual Maildir with fsync; messages per second and the ratio. Postern
//! and Postfix each run twice, first and last of the sitting for Postern,
//! second and second-to-last for Postfix, and the better run of each is
//! compared: whichever server runs first pays for the file removals of
//! whatever ran on the machine just before (see [`plain_postern`]). No
//! server's files are removed before the end. Then the bounds the machine
//! sets: the same load against Postfix's smtp-sink (a server that stores
//! nothing) and against Postern with every sync skipped, and the CPU per
//! message of Postern (its own code, the kernel's work for it) and of
//! smtp-source, with the ceiling those two kernel-and-client costs leave
//! the machine's cores. Then Postern with a quota into an INBOX of
//! 10,000 messages, alone and with a client in IDLE on it. Last,
//! Postern's resident memory idle and with 1,000 idle connections.
//!
//! Run: `cargo bench -p postern-conformance --bench smtp_daemon`
//! (needs smtp-source and postfix: `conformance/install-peers`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{free_port, tool, Daemon};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 5000;

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

fn smtp_source(port: u16) -> Duration {
    smtp_source_with(port, "sender@example.net", None, MESSAGES)
}

/// Messages sent to each server before its timed run, and delivered, so
/// that neither is measured cold (first page faults, first directory
/// blocks, Postfix's processes started): the last session's figures
/// differed by 2x between the first and a later run of the same server.
const WARM_UP: usize = 1000;

/// Sends [`WARM_UP`] messages to `port` and waits until `inbox` has them.
fn warm_up(port: u16, inbox: &Path) {
    smtp_source_with(port, "sender@example.net", None, WARM_UP);
    assert!(
        wait_for(inbox, WARM_UP, Duration::from_secs(120)),
        "warm-up: not all delivered"
    );
}

/// smtp-source with this envelope sender, and the message from `file`
/// (`-F`: sent as it is, a CRLF after each line) instead of its own.
fn smtp_source_with(port: u16, from: &str, file: Option<&Path>, count: usize) -> Duration {
    let start = Instant::now();
    let mut cmd = Command::new(tool("smtp-source"));
    if let Some(f) = file {
        cmd.arg("-F").arg(f);
    }
    // -l (message length) and -F (message file) exclude each other.
    if file.is_none() {
        cmd.args(["-l", "4096"]);
    }
    let out = cmd
        .args([
            "-s",
            "10",
            "-m",
            &count.to_string(),
            "-f",
            from,
            "-t",
            "alice@example.com",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .output()
        .expect("smtp-source");
    assert!(
        out.status.success(),
        "smtp-source failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn wait_for(dir: &Path, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while count_files(dir) < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Postfix {
    dir: tempfile::TempDir,
    fg: Child,
}

impl Postfix {
    fn start(port: u16) -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("postfix-bench-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().display().to_string();
        let id = |flag: &str| -> String {
            let o = Command::new("id")
                .args([flag, "postfix"])
                .output()
                .expect("id");
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        std::fs::create_dir_all(dir.path().join("vmail")).expect("vmail");
        std::fs::write(
            dir.path().join("vmailbox"),
            "alice@example.com example.com/alice/\n",
        )
        .expect("vmailbox");
        let main_cf = format!(
            "compatibility_level = 3.6\nqueue_directory = {d}/queue\ndata_directory = {d}/data\n\
             command_directory = /usr/sbin\ndaemon_directory = /usr/lib/postfix/sbin\nshlib_directory = no\n\
             mail_owner = postfix\nmyhostname = bench.example.net\nmydomain = example.net\nmyorigin = example.net\n\
             inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 192.0.2.0/24\nmydestination =\n\
             maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
             smtp_dns_support_level = disabled\nsmtp_host_lookup = native\nsmtpd_peername_lookup = no\n\
             virtual_mailbox_domains = example.com\nvirtual_mailbox_base = {d}/vmail\n\
             virtual_mailbox_maps = texthash:{d}/vmailbox\nvirtual_mailbox_limit = 0\n\
             virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n\
             smtpd_recipient_restrictions = reject_unauth_destination\n\
             alias_maps =\nalias_database =\nsmtpd_forbid_bare_newline = yes\n"
        );
        std::fs::write(dir.path().join("main.cf"), main_cf).expect("main.cf");
        let stock = std::fs::read_to_string("/etc/postfix/master.cf").expect("master.cf");
        let mut master = String::new();
        for line in stock.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with('#')
                || line.starts_with(' ')
                || line.starts_with('\t')
                || fields.len() < 8
            {
                master.push_str(line);
                master.push('\n');
                continue;
            }
            let mut f: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
            if f[0] == "smtp" && f[1] == "inet" {
                f[0] = format!("127.0.0.1:{port}");
            }
            f[4] = "n".into(); // no chroot
            master.push_str(&f.join(" "));
            master.push('\n');
        }
        master.push_str("postlog unix-dgram n - n - 1 postlogd\n");
        std::fs::write(dir.path().join("master.cf"), master).expect("master.cf");
        for sub in ["queue", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
        }
        let _ = Command::new("chown")
            .args([
                "-R",
                &format!("{uid}:{gid}"),
                &format!("{d}/vmail"),
                &format!("{d}/data"),
            ])
            .status();
        let st = Command::new(tool("postfix"))
            .args(["-c", &d, "set-permissions"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = st;
        let fg = Command::new(tool("postfix"))
            .args(["-c", &d, "start-fg"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postfix start-fg");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.path().join("maillog")).unwrap_or_default();
                panic!("postfix did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Postfix { dir, fg }
    }
}

impl Postfix {
    /// Stops Postfix and keeps its directory (removed on drop).
    fn stop(&mut self) {
        if matches!(self.fg.try_wait(), Ok(Some(_))) {
            return;
        }
        let d = self.dir.path().display().to_string();
        let _ = Command::new(tool("postfix"))
            .args(["-c", &d, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.fg.wait();
    }

    /// One timed run after the warm-up: (accepted, all delivered) msg/s.
    fn measure(&self, port: u16, label: &str) -> (f64, f64) {
        let inbox = self.dir.path().join("vmail/example.com/alice/new");
        warm_up(port, &inbox);
        let start = Instant::now();
        let accepted = smtp_source(port);
        let delivered = wait_for(&inbox, WARM_UP + MESSAGES, Duration::from_secs(300));
        let total = start.elapsed();
        let accept_rate = MESSAGES as f64 / accepted.as_secs_f64();
        let deliver_rate = MESSAGES as f64 / total.as_secs_f64();
        println!(
            "  Postfix{label}: {MESSAGES} accepted in {:.2} s = {accept_rate:>7.0} msg/s; all delivered after {:.2} s = {deliver_rate:>7.0} msg/s{}",
            accepted.as_secs_f64(),
            total.as_secs_f64(),
            if delivered { "" } else { " (NOT all delivered)" }
        );
        (accept_rate, deliver_rate)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let have = |t: &str| tool(t).is_file();
    if !have("smtp-source") || !have("postfix") {
        println!("smtp_daemon: smtp-source and postfix are needed (conformance/install-peers); nothing measured");
        return;
    }
    println!("SMTP daemon: smtp-source -s 10 -m {MESSAGES} -l 4096 after {WARM_UP} untimed to each server, delivery to a virtual Maildir with fsync, same disk");

    // Postern.
    let (first_postern, d, idle_rss, first_cpu) = plain_postern(" (first run)");
    let pid = d.pid();

    // Postfix, between the Postern runs, and again after them. No
    // server's files are removed before the end of the sitting: ext4
    // without a journal (this machine's) passes over inodes freed in the
    // last minutes when it makes a file, so a removal would slow down
    // whichever server runs next.
    let pport = free_port();
    let mut pf = Postfix::start(pport);
    let first = pf.measure(pport, " (first run)");
    pf.stop();

    // Postern again with the MX defences on: per-client rates counted (set
    // high enough that smtp-source is never refused), postscreen's deep
    // checks, and the syslog lines CrowdSec reads written to a file.
    let hardened = Daemon::start_with(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n",
        "",
        "[rate]\nconnection_rate_limit = 1000000\nmessage_rate_limit = 1000000\n\
         [postscreen]\npipelining_enable = true\nnon_smtp_command_enable = true\nbare_newline_enable = true\n\
         [log]\nformat = \"syslog\"\nfile = \"maillog\"\n",
    );
    let th = timed_postern(&hardened, "postern (defences on)");
    let hardened_rate = MESSAGES as f64 / th.as_secs_f64();
    println!(
        "  Postern with rates, postscreen and syslog logging: {MESSAGES} in {:.2} s = {hardened_rate:>7.0} msg/s",
        th.as_secs_f64(),
    );

    // Postern with message authentication: SPF, DKIM, DMARC and ARC on
    // every message (nsd on loopback; answers cached after the first), the
    // message signed by dkimpy with the test zone's key, aligned.
    let auth = message_authentication_rate();
    let auth_rate = auth.as_ref().map(|a| a.0);

    // Postfix again, last: the better of its two runs is the one compared.
    let pport2 = free_port();
    let mut pf2 = Postfix::start(pport2);
    let second = pf2.measure(pport2, " (second run)");
    pf2.stop();
    let (accept_rate, deliver_rate) = if second.0 > first.0 { second } else { first };

    // Postern again, last: the better of its two runs is the one compared.
    let (second_postern, _d2, _, second_cpu) = plain_postern(" (second run)");
    let postern_rate = first_postern.max(second_postern);
    let cpu = if second_postern > first_postern {
        second_cpu
    } else {
        first_cpu
    };

    // What this machine allows, in the same sitting: the same load against
    // a server that answers and stores nothing, and Postern with every
    // sync skipped. Neither is a mail server anyone should run; they are
    // the bounds a durable server works under here.
    let sink_rate = smtp_sink_rate();
    let nosync = Daemon::start_with_env(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n",
        "",
        "",
        &[("POSTERN_TEST_SKIP_SYNC", "1")],
    );
    let tn = timed_postern(&nosync, "postern (syncs skipped)");
    let nosync_rate = MESSAGES as f64 / tn.as_secs_f64();
    println!(
        "  Postern with every sync skipped (its test switch; not durable): {MESSAGES} in {:.2} s = {nosync_rate:>7.0} msg/s",
        tn.as_secs_f64(),
    );
    println!(
        "  Postern with its defences against without: {:+.1}% (the better plain run)",
        (hardened_rate / postern_rate - 1.0) * 100.0
    );
    println!(
        "  ratio Postern/Postfix: {:.2}x accepted (Postern's accepted is already delivered), {:.2}x delivered   target 5x",
        postern_rate / accept_rate,
        postern_rate / deliver_rate
    );
    println!(
        "  ratio Postern with its defences/Postfix: {:.2}x accepted, {:.2}x delivered",
        hardened_rate / accept_rate,
        hardened_rate / deliver_rate
    );

    if let Some(r) = sink_rate {
        println!(
            "  bounds of this machine/Postfix: {:.2}x with smtp-sink (no server work), {:.2}x with Postern's syncs skipped",
            r / accept_rate,
            nosync_rate / accept_rate
        );
    }

    // Where the CPU goes, in the better plain run: what the kernel does
    // for Postern (sockets, files, syncs) and smtp-source's own work set
    // a ceiling on this machine's cores that no change to Postern's own
    // code can lift.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as f64;
    println!(
        "  CPU per message (better plain run): Postern {:.0} us in user space + {:.0} us in the kernel, smtp-source {:.0} us",
        cpu.postern_user, cpu.postern_system, cpu.source
    );
    let floor = cpu.postern_system + cpu.source;
    if floor > 0.0 {
        let ceiling = cores * 1e6 / floor;
        println!(
            "  ceiling of these {cores:.0} cores with Postern's user-space work free: {ceiling:.0} msg/s = {:.2}x Postfix",
            ceiling / accept_rate
        );
    }

    if let Some(r) = auth_rate {
        println!(
            "  ratio Postern with SPF+DKIM+DMARC+ARC/Postfix without checks: {:.2}x accepted, {:.2}x delivered   target 2x",
            r / accept_rate,
            r / deliver_rate
        );
    }

    // An INBOX of 10,000 messages under a quota, alone and with a client
    // in IDLE on it. Measured last: these runs leave their own files.
    if let Some((alone, idling)) = big_inbox_rates() {
        println!(
            "  Postern with a quota, {BIG_INBOX} messages already in the INBOX: {alone:.0} msg/s; with a client in IDLE on that INBOX {idling:.0} msg/s ({:.2}x and {:.2}x Postfix without either)",
            alone / accept_rate,
            idling / accept_rate
        );
    }

    // Memory.
    let mut conns = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(d.addrs[0]).expect("connect");
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
        conns.push(s);
    }
    let busy_rss = rss_kib(pid);
    println!(
        "  Postern RSS: idle {:.1} MiB (target < 15), with 1,000 idle connections {:.1} MiB (target < 64)",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0
    );
    drop(conns);
}

/// Messages in the INBOX before the big-INBOX runs ([`big_inbox_rates`]).
const BIG_INBOX: usize = 10_000;

/// Files in the INBOX's `new/` and `cur/` (a quota count or a session
/// moves delivered files to `cur/`).
fn inbox_files(d: &Daemon) -> usize {
    let inbox = d.dir.path().join("mail/example.com/alice");
    count_files(&inbox.join("new")) + count_files(&inbox.join("cur"))
}

/// Holds an IMAP session in IDLE on alice's INBOX until killed; prints
/// `idling` once the server has answered IDLE, then counts EXISTS.
const IDLE_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=120), server_hostname="x")
f = s.makefile("rwb")
def cmd(tag, line):
    f.write(tag + b" " + line + b"\r\n"); f.flush()
    while True:
        l = f.readline()
        if not l or l.startswith(tag + b" "): return l
f.readline()
assert cmd(b"a", b"LOGIN alice@example.com alice-pw").startswith(b"a OK")
assert cmd(b"b", b"SELECT INBOX").startswith(b"b OK")
f.write(b"c IDLE\r\n"); f.flush()
assert f.readline().startswith(b"+")
print("idling", flush=True)
while f.readline(): pass
"#;

/// Postern with a quota (`[imap] quota_mib`), into an INBOX that already
/// holds [`BIG_INBOX`] messages: alone, and with an IMAP client in IDLE
/// on that INBOX (a phone), as (msg/s, msg/s). The quota is checked at
/// RCPT and at delivery; the IDLE session's folder is looked at again
/// after each delivery.
fn big_inbox_rates() -> Option<(f64, f64)> {
    if !tool("python3").is_file() {
        println!("  (python3 is needed for the IDLE client; big INBOX not measured)");
        return None;
    }
    let d = Daemon::start_with(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"imap\"\ntls = \"implicit\"\n",
        "",
        "[imap]\nquota_mib = 2000\n",
    );
    let (mx, imaps) = (d.addrs[0].port(), d.addrs[1].port());
    smtp_source_with(mx, "sender@example.net", None, BIG_INBOX);
    let filled = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while inbox_files(&d) < n {
            assert!(Instant::now() < deadline, "big INBOX: not all delivered");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    filled(BIG_INBOX);
    let alone = MESSAGES as f64 / smtp_source(mx).as_secs_f64();
    filled(BIG_INBOX + MESSAGES);
    let mut idle = Command::new(tool("python3"))
        .arg("-c")
        .arg(IDLE_CLIENT)
        .arg(imaps.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = [0u8; 7];
    let ready = idle
        .stdout
        .as_mut()
        .is_some_and(|o| o.read_exact(&mut line).is_ok() && &line == b"idling\n");
    assert!(ready, "the IDLE client did not start");
    let idling = MESSAGES as f64 / smtp_source(mx).as_secs_f64();
    filled(BIG_INBOX + 2 * MESSAGES);
    let _ = idle.kill();
    let _ = idle.wait();
    Some((alone, idling))
}

/// Warms `d` up, then sends it the timed messages: how long smtp-source
/// took (each message is in the Maildir when it is accepted; checked).
fn timed_postern(d: &Daemon, what: &str) -> Duration {
    timed_postern_cpu(d, what).0
}

/// CPU time per message of one timed run, in microseconds: Postern's in
/// user space and in the kernel, and smtp-source's (both).
#[derive(Clone, Copy, Debug, Default)]
struct CpuUse {
    postern_user: f64,
    postern_system: f64,
    source: f64,
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields 14 to 17 of /proc/PID/stat: utime, stime, and the times of the
/// children waited for (cutime, cstime), in clock ticks.
fn cpu_ticks(pid: &str) -> [u64; 4] {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: count the fields after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    match f.as_slice() {
        [a, b, c, d] => [*a, *b, *c, *d],
        _ => [0; 4],
    }
}

/// As [`timed_postern`], with the CPU the daemon and smtp-source used.
fn timed_postern_cpu(d: &Daemon, what: &str) -> (Duration, CpuUse) {
    let port = d.addrs[0].port();
    let inbox = d.dir.path().join("mail/example.com/alice/new");
    warm_up(port, &inbox);
    let pid = d.pid().to_string();
    let (daemon0, me0) = (cpu_ticks(&pid), cpu_ticks("self"));
    let t = smtp_source(port);
    let (daemon1, me1) = (cpu_ticks(&pid), cpu_ticks("self"));
    assert!(
        wait_for(&inbox, WARM_UP + MESSAGES, Duration::from_secs(60)),
        "{what}: not all delivered"
    );
    let per = |ticks: u64| ticks as f64 / clock_ticks() * 1e6 / MESSAGES as f64;
    let cpu = CpuUse {
        postern_user: per(daemon1[0].saturating_sub(daemon0[0])),
        postern_system: per(daemon1[1].saturating_sub(daemon0[1])),
        // smtp-source is this process's child, waited for: its CPU is in
        // the children's times once it has exited.
        source: per((me1[2] + me1[3]).saturating_sub(me0[2] + me0[3])),
    };
    (t, cpu)
}

/// One timed run of Postern with its defaults, after its warm-up: the
/// rate, the daemon (its files stay until the end of the sitting), and its
/// resident memory before the first message (KiB). Run first and last:
/// ext4 without a journal (this machine's) passes over the inodes freed in
/// the last minutes whenever it makes a file, so the first server of a
/// sitting that follows many removals (a test run, an earlier sitting)
/// was measured up to 2x slower than the same server minutes later.
fn plain_postern(label: &str) -> (f64, Daemon, u64, CpuUse) {
    let d = Daemon::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n",
        "",
    );
    let idle_rss = rss_kib(d.pid());
    let (t, cpu) = timed_postern_cpu(&d, "postern");
    let rate = MESSAGES as f64 / t.as_secs_f64();
    println!(
        "  Postern{label}: {MESSAGES} accepted and delivered in {:.2} s = {rate:>7.0} msg/s",
        t.as_secs_f64()
    );
    (rate, d, idle_rss, cpu)
}

/// Messages per second from smtp-source into Postfix's smtp-sink, which
/// answers every command and stores nothing: what the load generator
/// reaches on this machine when the server costs almost nothing. `None`
/// without smtp-sink.
fn smtp_sink_rate() -> Option<f64> {
    if !tool("smtp-sink").is_file() {
        println!("  (smtp-sink is needed for the machine's bound; not measured)");
        return None;
    }
    let port = free_port();
    let mut cmd = Command::new(tool("smtp-sink"));
    // smtp-sink refuses to run as root without a user to switch to.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        cmd.args(["-u", "nobody"]);
    }
    let mut sink = cmd
        .arg(format!("127.0.0.1:{port}"))
        .arg("256")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink");
    common::wait_for_port(port, "smtp-sink");
    smtp_source_with(port, "sender@example.net", None, WARM_UP);
    let t = smtp_source(port);
    let _ = sink.kill();
    let _ = sink.wait();
    let rate = MESSAGES as f64 / t.as_secs_f64();
    println!(
        "  smtp-sink (answers, stores nothing): {MESSAGES} in {:.2} s = {rate:>7.0} msg/s",
        t.as_secs_f64()
    );
    Some(rate)
}

/// Messages per second through an MX listener with `[auth]` on, or `None`
/// without nsd or dkimsign.
/// The daemon and the DNS server are returned so that their files stay
/// until the end of the sitting.
fn message_authentication_rate() -> Option<(f64, Daemon, common::dns::DnsServer)> {
    if !tool("nsd").is_file() || !tool("dkimsign").is_file() {
        println!(
            "  (Postern with message authentication: nsd and dkimsign are needed; not measured)"
        );
        return None;
    }
    let dns = common::dns::start_nsd()?;
    let d = Daemon::start_with(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n",
        "",
        &format!("{}[auth]\nenable = true\n", dns.config()),
    );
    let body = "x".repeat(72);
    let mut msg = String::from(
        "From: News <news@signed.test>\r\nTo: alice@example.com\r\nSubject: bench\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench@signed.test>\r\n\r\n",
    );
    for _ in 0..54 {
        msg.push_str(&body);
        msg.push_str("\r\n");
    }
    let signed = common::dns::dkimsign(
        msg.as_bytes(),
        "sel",
        "signed.test",
        "sel.signed.test.private",
    );
    let file = d.dir.path().join("signed.eml");
    // smtp-source appends CRLF to each line itself.
    let text = String::from_utf8_lossy(&signed).replace("\r\n", "\n");
    std::fs::write(&file, text.trim_end_matches('\n')).expect("message file");
    let port = d.addrs[0].port();
    let inbox = d.dir.path().join("mail/example.com/alice/new");
    // Warmed like the others, with the same signed message (its DNS
    // answers are then cached, as the bench intends).
    smtp_source_with(port, "bounce@signed.test", Some(&file), WARM_UP);
    assert!(
        wait_for(&inbox, WARM_UP, Duration::from_secs(120)),
        "warm-up: not all delivered"
    );
    let t = smtp_source_with(port, "bounce@signed.test", Some(&file), MESSAGES);
    assert!(
        wait_for(&inbox, WARM_UP + MESSAGES, Duration::from_secs(60)),
        "postern (message authentication): not all delivered"
    );
    // Every copy passed: look at one.
    let one = std::fs::read_dir(&inbox)
        .ok()
        .and_then(|mut rd| rd.next())
        .and_then(Result::ok)
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .unwrap_or_default();
    assert!(
        one.contains("dkim=pass") && one.contains("dmarc=pass"),
        "not a pass:\n{one}"
    );
    let rate = MESSAGES as f64 / t.as_secs_f64();
    println!(
        "  Postern with SPF+DKIM+DMARC+ARC: {MESSAGES} in {:.2} s = {rate:>7.0} msg/s (dkim=pass dmarc=pass)",
        t.as_secs_f64()
    );
    Some((rate, d, dns))
}
