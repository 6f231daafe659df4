//! SMTP accept on the PostgreSQL + S3 backend beside the Maildir backend,
//! in one sitting: `smtp-source -s 10 -m 2000 -l 4096` into a daemon on
//! Maildir (fsync), into one daemon on PostgreSQL + S3 (moto), and into
//! two daemons (replicas) on the same database and bucket with the
//! messages split over both (two smtp-source at once, 10 sessions each);
//! messages per second, and per message: statements the database ran
//! (pg_stat_statements; one statement is one round trip), transactions
//! committed (`pg_stat_database.xact_commit`) and S3 requests (moto's
//! request log: PUT, HEAD, GET). Printed, never asserted.
//!
//! Run: `cargo bench -p postern-conformance --bench pg_store` (needs
//! smtp-source, PostgreSQL and moto_server: `conformance/install-peers`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::pg::{PgCluster, S3Server};
use common::{tool, Daemon};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 2000;
const WARM_UP: usize = 200;

const SMTP: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"none\"\n";

/// Starts smtp-source sending `count` messages of 4 KiB to alice.
fn smtp_source(addr: std::net::SocketAddr, count: usize) -> std::process::Child {
    Command::new(tool("smtp-source"))
        .args(["-l", "4096", "-s", "10", "-m", &count.to_string()])
        .args(["-f", "sender@example.net", "-t", "alice@example.com"])
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("smtp-source")
}

/// Sends `count` messages split over `addrs` at once; the wall time.
fn send(addrs: &[std::net::SocketAddr], count: usize) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = addrs
        .iter()
        .map(|a| smtp_source(*a, count / addrs.len()))
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("smtp-source");
        assert!(
            out.status.success(),
            "smtp-source failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    start.elapsed()
}

/// (statements run, transactions committed) so far.
fn db_counts(admin: &mut postgres::Client) -> (i64, i64) {
    let statements = common::pg::statements(admin);
    // The statistics of other backends reach the view when they report.
    admin
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .expect("snapshot");
    let commits: i64 = admin
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .expect("xact_commit")
        .get(0);
    (statements, commits)
}

/// alice's messages in the database.
fn stored(admin: &mut postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox \
             WHERE b.account = 'alice@example.com' AND b.name = 'INBOX'",
            &[],
        )
        .expect("count")
        .get(0)
}

fn pg_run(c: &PgCluster, s3: &S3Server, replicas: usize, bucket: &str) {
    let secrets = tempfile::tempdir().expect("tempdir");
    let extra = s3.store_config(&c.url(), bucket, secrets.path());
    let daemons: Vec<Daemon> = (0..replicas)
        .map(|_| Daemon::start_with(SMTP, "", &extra))
        .collect();
    let addrs: Vec<_> = daemons.iter().map(|d| d.addrs[0]).collect();
    let mut admin = c.admin();
    let before_all = stored(&mut admin);
    send(&addrs, WARM_UP);
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .expect("reset");
    let (st0, tx0) = db_counts(&mut admin);
    let (put0, head0, get0) = s3.requests();
    let took = send(&addrs, MESSAGES);
    // A backend reports its statistics when it ends at the latest: stop
    // the replicas and wait (bounded) until their connections are gone.
    drop(daemons);
    for _ in 0..300 {
        let others: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .expect("activity")
            .get(0);
        if others == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st1, tx1) = db_counts(&mut admin);
    let (put1, head1, get1) = s3.requests();
    let got = stored(&mut admin) - before_all;
    let m = MESSAGES as f64;
    println!(
        "postgres+S3, {replicas} replica(s): {:>7.0} msg/s ({MESSAGES} in {took:.2?}; {got} of {} stored); \
         per message: {:.1} statements, {:.2} commits, S3 {:.2} PUT {:.2} HEAD {:.2} GET",
        m / took.as_secs_f64(),
        MESSAGES + WARM_UP,
        (st1 - st0) as f64 / m,
        (tx1 - tx0) as f64 / m,
        (put1 - put0) as f64 / m,
        (head1 - head0) as f64 / m,
        (get1 - get0) as f64 / m,
    );
}

fn main() {
    for t in ["smtp-source", "moto_server"] {
        if !common::peer(t) {
            return;
        }
    }
    let Some(c) = PgCluster::start() else { return };
    let Some(s3) = S3Server::start() else { return };
    c.counting_admin();
    println!(
        "smtp-source -s 10 -m {MESSAGES} -l 4096 (after {WARM_UP} to warm up), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let maildir = Daemon::start(SMTP, "");
    send(&[maildir.addrs[0]], WARM_UP);
    let took = send(&[maildir.addrs[0]], MESSAGES);
    let n = maildir.new_mail("alice", "example.com").len();
    println!(
        "maildir:                     {:>7.0} msg/s ({MESSAGES} in {took:.2?}; {n} files)",
        MESSAGES as f64 / took.as_secs_f64()
    );
    drop(maildir);

    pg_run(&c, &s3, 1, "postern-bench-one");
    pg_run(&c, &s3, 2, "postern-bench-two");
}
