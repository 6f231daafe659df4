//! The relay worker: takes due messages from the spool, sends them through
//! the smarthost with the core's `SmtpClient` (TLS verified, SASL), records
//! each recipient's outcome durably, retries on the core's schedule, and
//! bounces what fails for good. A daily cap defers instead of failing.

use crate::clock::unix_now;
use crate::server::{Server, RELAY_COUNTER};
use crate::smarthost::Relay;
use postern_adapters::directory::Resolution;
use postern_adapters::spool::{QueuedMessage, QueuedRcpt, RcptStatus};
use postern_adapters::store::{Delivery, Queue, StoreError, Window};
use postern_core::datetime::rfc5322;
use postern_core::policy::queue::{dsn, Bounce, FailedRecipient};
use postern_core::policy::relay::{self as policy, daily_cap, settle, CapVerdict, RcptState};
use postern_core::smtp::client::{ClientOutput, Job, RcptOutcome, SmtpClient};
use postern_core::smtp::{Address, Reply};
use rustls::pki_types::ServerName;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the queue is scanned without a smarthost (deliveries wake
/// the worker at once; the scan finds retries that came due).
const SCAN_INTERVAL: Duration = Duration::from_secs(60);
/// Messages attempted at once without a smarthost.
const CONCURRENCY: usize = 4;

/// Runs until `stop` closes: scans the queue, and attempts what is due:
/// local copies into their mailboxes, remote recipients through the
/// smarthost (when one is configured).
pub async fn run(
    srv: Arc<Server>,
    relay: Option<Arc<Relay>>,
    spool: Arc<dyn Queue>,
    wake: Receiver<()>,
    stop: Receiver<()>,
) {
    let (scan, concurrency) = match &relay {
        Some(r) => {
            info!("relaying outbound mail through {}", r.target());
            (r.cfg.scan_interval, r.cfg.concurrency)
        }
        None => (SCAN_INTERVAL, CONCURRENCY),
    };
    loop {
        let now = unix_now();
        let sp = spool.clone();
        let listed = smol::unblock(move || sp.list()).await;
        let (msgs, broken) = match listed {
            Ok(v) => v,
            Err(e) => {
                error!("cannot read the queue: {e}");
                (Vec::new(), Vec::new())
            }
        };
        for b in broken {
            warn!("unreadable queue entry {b}");
        }
        let due: Vec<QueuedMessage> = msgs
            .into_iter()
            .filter(|m| m.next_attempt <= now && m.pending().next().is_some())
            .collect();
        for batch in due.chunks(concurrency.max(1)) {
            let tasks: Vec<_> = batch
                .iter()
                .cloned()
                .map(|m| {
                    smol::spawn(attempt(
                        srv.clone(),
                        relay.clone(),
                        spool.clone(),
                        m,
                        stop.clone(),
                    ))
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        let tick = async {
            Timer::after(scan).await;
            true
        };
        let woken = async { wake.recv().await.is_ok() };
        let end = async {
            let _ = stop.recv().await;
            false
        };
        if !tick.or(woken).or(end).await {
            return;
        }
        // Drain further wake-ups that came meanwhile: one scan serves them all.
        while wake.try_recv().is_ok() {}
    }
}

fn parse_address(s: &str) -> Option<Address> {
    match postern_core::smtp::address::parse_path(s) {
        Ok(Some(p)) => Some(p.address),
        _ => None,
    }
}

fn to_policy(r: &QueuedRcpt) -> policy::QueuedRcpt {
    policy::QueuedRcpt {
        address: r.address.clone(),
        state: match r.status {
            RcptStatus::Pending => RcptState::Pending,
            RcptStatus::Delivered => RcptState::Delivered,
            RcptStatus::Failed => RcptState::Failed,
        },
        last_reply: (!r.last_reply.is_empty()).then(|| Reply::parse_line(&r.last_reply)),
    }
}

fn from_policy(p: &policy::QueuedRcpt, r: &mut QueuedRcpt) {
    r.status = match p.state {
        RcptState::Pending => RcptStatus::Pending,
        RcptState::Delivered => RcptStatus::Delivered,
        RcptState::Failed => RcptStatus::Failed,
    };
    if let Some(rep) = &p.last_reply {
        r.last_reply = rep.to_string();
    }
}

async fn attempt(
    srv: Arc<Server>,
    relay: Option<Arc<Relay>>,
    spool: Arc<dyn Queue>,
    mut msg: QueuedMessage,
    stop: Receiver<()>,
) {
    // What `postern queue retry` changes: kept if it changes meanwhile.
    let loaded_next = msg.next_attempt;
    let now = unix_now();
    let (day, sent) = sent_today(&srv, now).await;
    let limit = relay.as_ref().map_or(0, |r| r.cfg.daily_limit);
    let has_remote = msg.pending().any(|r| {
        parse_address(&r.address)
            .is_some_and(|a| !matches!(srv.directory.resolve(&a), Resolution::Local { .. }))
    });
    if let (true, CapVerdict::DeferUntil(t)) = (has_remote, daily_cap(limit, day, sent, now)) {
        msg.next_attempt = t;
        warn!(id = %msg.id, "daily relay limit of {limit} reached; deferred to the next UTC day");
        let sp = spool.clone();
        let m = msg.clone();
        if let Err(e) = smol::unblock(move || sp.settle(&m, loaded_next)).await {
            error!(id = %msg.id, "cannot update the queue: {e}");
        }
        return;
    }
    let sp = spool.clone();
    let id = msg.id.clone();
    let data = match smol::unblock(move || sp.data(&id)).await {
        Ok(d) => d,
        Err(e) => {
            error!(id = %msg.id, "queued message unreadable: {e}");
            return;
        }
    };
    let mut rcpts: Vec<policy::QueuedRcpt> = msg.rcpts.iter().map(to_policy).collect();
    let mut outcomes = Vec::new();
    let mut addresses = Vec::new();
    let mut indices = Vec::new();
    let mut local = Vec::new();
    for (i, r) in rcpts.iter().enumerate() {
        if r.state != RcptState::Pending {
            continue;
        }
        match parse_address(&r.address) {
            Some(a) => match srv.directory.resolve(&a) {
                Resolution::Local { mailboxes, .. } => {
                    // The folder the copy was meant for (Junk), kept with it.
                    let folder = msg.rcpts.get(i).and_then(|q| q.folder.clone());
                    local.push((i, mailboxes, folder));
                }
                _ => {
                    addresses.push(a);
                    indices.push(i);
                }
            },
            None => outcomes.push((i, RcptOutcome::Failed(policy::bad_queued_address()))),
        }
    }
    let eight_bit = data.iter().any(|&b| b >= 0x80);
    let from = if msg.from.is_empty() {
        None
    } else {
        parse_address(&msg.from)
    };
    let job = Job {
        smtputf8: addresses.iter().any(|a| !a.is_ascii())
            || from.as_ref().is_some_and(|a| !a.is_ascii()),
        mail_from: from,
        rcpts: addresses,
        data: Arc::new(data),
        eight_bit,
    };
    if !local.is_empty() {
        outcomes.extend(deliver_local(&srv, &msg.from, local, &job.data).await);
    }
    match (&relay, job.rcpts.is_empty()) {
        (_, true) => {}
        (Some(relay), false) => {
            let said = converse(relay, job.clone(), &stop).await;
            outcomes.extend(indices.iter().copied().zip(said));
        }
        (None, false) => outcomes.extend(indices.iter().map(|&i| (i, policy::no_smarthost()))),
    }
    let target = relay
        .as_ref()
        .map_or_else(|| "local".to_owned(), |r| r.target());
    for (i, o) in &outcomes {
        let (status, rep) = match o {
            RcptOutcome::Delivered(r) => ("sent", r),
            RcptOutcome::Failed(r) => ("bounced", r),
            RcptOutcome::Deferred(r) => ("deferred", r),
        };
        let to = rcpts
            .get(*i)
            .map(|r| r.address.as_str())
            .unwrap_or_default();
        srv.metrics.queue_attempt(indices.contains(i), status);
        info!(id = %msg.id, "to=<{to}>, relay={target}, status={status} ({rep})");
    }
    let relayed = outcomes
        .iter()
        .any(|(i, o)| indices.contains(i) && matches!(o, RcptOutcome::Delivered(_)));
    msg.attempts += 1;
    let mut settled = settle(
        &mut rcpts,
        &outcomes,
        msg.attempts,
        msg.created,
        unix_now(),
        &relay
            .as_ref()
            .map_or_else(Default::default, |r| r.policy.clone()),
    );
    if !settled.bounce.is_empty() && !msg.from.is_empty() {
        if let Err(e) = bounce(&srv, &msg, &settled.bounce, &job.data).await {
            // The recipients delivered are recorded as such below; those
            // whose bounce is owed wait in the queue to be bounced again.
            error!(id = %msg.id, "cannot queue the bounce: {e}; tried again later");
            settled.next_attempt = Some(policy::bounce_not_queued(
                &mut rcpts,
                &settled.bounce,
                settled.next_attempt,
                unix_now(),
            ));
        }
    }
    for (p, r) in rcpts.iter().zip(msg.rcpts.iter_mut()) {
        from_policy(p, r);
    }
    if relayed {
        record_sent(&srv, now).await;
    }
    if let Some(t) = settled.next_attempt {
        msg.next_attempt = t;
    }
    if settled.expired {
        warn!(id = %msg.id, "expired in the queue after {} attempts", msg.attempts);
    }
    let sp = spool.clone();
    let m = msg.clone();
    let result = if msg.pending().next().is_none() {
        smol::unblock(move || sp.remove(&m.id)).await
    } else {
        smol::unblock(move || sp.settle(&m, loaded_next)).await
    };
    if let Err(e) = result {
        error!(id = %msg.id, "cannot update the queue: {e}");
    }
}

/// A queued local copy: the recipient's index, its mailboxes and the
/// folder it goes to (`None`: INBOX).
type LocalCopy = (
    usize,
    Vec<postern_adapters::directory::Mailbox>,
    Option<String>,
);

/// Delivers queued local copies (each recipient an account address that
/// leads to its mailboxes, into the folder kept with it) through the
/// group-commit writer.
async fn deliver_local(
    srv: &Server,
    from: &str,
    local: Vec<LocalCopy>,
    data: &Arc<Vec<u8>>,
) -> Vec<(usize, RcptOutcome)> {
    let mut deliveries = Vec::new();
    let mut owners = Vec::new();
    for (i, mailboxes, folder) in local {
        for mb in mailboxes {
            deliveries.push(Delivery {
                user: mb.to_string(),
                prefix: postern_core::smtp::received::queued_copy_prefix(from, &mb),
                message: data.clone(),
                folder: folder.clone(),
            });
            owners.push(i);
        }
    }
    let results = srv.committer.deliver(deliveries).await;
    let mut failed: std::collections::HashMap<usize, RcptOutcome> =
        std::collections::HashMap::new();
    for (i, r) in owners.iter().zip(results) {
        if let Err(e) = r {
            failed.entry(*i).or_insert_with(|| match &e {
                StoreError::Full(_) => policy::local_mailbox_full(e.to_string()),
                StoreError::TooBig(_) => policy::local_too_big(e.to_string()),
                _ => policy::local_deferred(e.to_string()),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    owners
        .into_iter()
        .filter(|i| seen.insert(*i))
        .map(|i| match failed.remove(&i) {
            Some(outcome) => (i, outcome),
            None => (i, policy::local_delivered()),
        })
        .collect()
}

/// Messages relayed on the UTC day of `now`: (day number, count).
async fn sent_today(srv: &Server, now: u64) -> (u64, u32) {
    let counters = srv.counters.clone();
    let window = Window::containing(now, policy::DAY);
    let n = smol::unblock(move || counters.get(RELAY_COUNTER, window))
        .await
        .unwrap_or_else(|e| {
            warn!("cannot read the daily relay count: {e}");
            0
        });
    (now / policy::DAY, u32::try_from(n).unwrap_or(u32::MAX))
}

/// Counts one relayed message for today (kept on disk, off the executor,
/// so a restart does not reset the daily cap).
async fn record_sent(srv: &Server, now: u64) {
    let counters = srv.counters.clone();
    let window = Window::containing(now, policy::DAY);
    if let Err(e) = smol::unblock(move || counters.add(RELAY_COUNTER, window, 1)).await {
        warn!("cannot record the daily relay count: {e}");
    }
}

/// Sends a bounce to the original sender: into their mailbox when local,
/// else into the queue from `<>`.
async fn bounce(
    srv: &Arc<Server>,
    msg: &QueuedMessage,
    failed: &[FailedRecipient],
    original: &[u8],
) -> io::Result<()> {
    let date = rfc5322(i64::try_from(unix_now()).unwrap_or(0));
    let arrival = rfc5322(i64::try_from(msg.created).unwrap_or(0));
    let bytes = dsn(&Bounce {
        hostname: &srv.config.hostname,
        queue_id: &msg.id,
        to: &msg.from,
        date: &date,
        arrival_date: &arrival,
        remote_mta: srv.relay.as_ref().map(|r| r.cfg.host.as_str()),
        failed,
        original,
    });
    let srv2 = srv.clone();
    let to = msg.from.clone();
    let id = srv.next_queue_id();
    smol::unblock(move || crate::deliver::deliver_bounce(&srv2, &to, &id, &bytes)).await?;
    let _ = srv.relay_wake.try_send(());
    Ok(())
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

/// One connection to the smarthost for `job`; every recipient gets an outcome.
async fn converse(relay: &Relay, job: Job, stop: &Receiver<()>) -> Vec<RcptOutcome> {
    let n = job.rcpts.len();
    let defer_all = |text: String| vec![RcptOutcome::Deferred(policy::connection_failed(text)); n];
    let connect = async {
        let r: io::Result<TcpStream> =
            TcpStream::connect((relay.cfg.host.as_str(), relay.cfg.port)).await;
        r
    };
    let timeout = async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timeout"))
    };
    let tcp = match connect.or(timeout).await {
        Ok(t) => t,
        Err(e) => return defer_all(format!("connect to {} failed: {e}", relay.target())),
    };
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::Plain(tcp);
    let mut client = SmtpClient::new(relay.client.clone(), job, Instant::now());
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = client.poll_output() {
            match out {
                ClientOutput::Send(bytes) => {
                    let r = match &mut conn {
                        Conn::Plain(t) => t.write_all(&bytes).await,
                        Conn::Tls(t) => match t.write_all(&bytes).await {
                            Ok(()) => t.flush().await,
                            Err(e) => Err(e),
                        },
                        Conn::Gone => Err(io::Error::other("gone")),
                    };
                    if r.is_err() {
                        client.handle_eof();
                    }
                }
                ClientOutput::StartTls => {
                    let Conn::Plain(tcp) = std::mem::replace(&mut conn, Conn::Gone) else {
                        client.handle_eof();
                        continue;
                    };
                    let name = match ServerName::try_from(relay.cfg.host.clone()) {
                        Ok(n) => n,
                        Err(e) => {
                            return defer_all(format!(
                                "bad TLS server name {}: {e}",
                                relay.cfg.host
                            ))
                        }
                    };
                    match relay.tls.connect(name, tcp).await {
                        Ok(t) => {
                            conn = Conn::Tls(Box::new(t));
                            client.handle_tls_established();
                        }
                        Err(e) => {
                            return defer_all(format!("TLS with {} failed: {e}", relay.target()))
                        }
                    }
                }
                ClientOutput::Done(outcome) => {
                    match &mut conn {
                        Conn::Plain(t) => {
                            let _ = t.close().await;
                        }
                        Conn::Tls(t) => {
                            let _ = t.close().await;
                        }
                        Conn::Gone => {}
                    }
                    return outcome.recipients;
                }
            }
        }
        let deadline = client.poll_timeout();
        let read = async {
            match &mut conn {
                Conn::Plain(t) => t.read(&mut buf).await,
                Conn::Tls(t) => t.read(&mut buf).await,
                Conn::Gone => Ok(0),
            }
        };
        let timer = async {
            match deadline {
                Some(d) => Timer::at(d).await,
                None => Timer::after(Duration::from_secs(1)).await,
            };
            Err(io::Error::new(io::ErrorKind::TimedOut, "timeout"))
        };
        let shutdown = async {
            let _ = stop.recv().await;
            Err(io::Error::new(io::ErrorKind::Interrupted, "shutting down"))
        };
        match read.or(timer).or(shutdown).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => client.handle_shutdown(),
            Ok(0) => client.handle_eof(),
            Ok(k) => client.handle_input(Instant::now(), &buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => client.handle_timeout(Instant::now()),
            Err(_) => client.handle_eof(),
        }
    }
}
