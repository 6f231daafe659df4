//! The relay worker: takes due messages from the spool, sends them through
//! the smarthost with the core's `SmtpClient` (TLS verified, SASL), records
//! each recipient's outcome durably, retries on the core's schedule, and
//! bounces what fails for good. A daily cap defers instead of failing.

use crate::config::RelayConfig;
use crate::server::Server;
use futures_rustls::TlsConnector;
use postern_adapters::spool::{QueuedMessage, RcptStatus, Spool};
use postern_core::datetime::rfc5322;
use postern_core::queue::{dsn, Bounce, FailedRecipient, RetryPolicy};
use postern_core::smtp::client::{ClientConfig, ClientOutput, Job, RcptOutcome, SmtpClient};
use postern_core::smtp::{Address, Reply};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The relay's settings made ready: TLS client, credentials, counters.
pub struct Relay {
    cfg: RelayConfig,
    client: Arc<ClientConfig>,
    tls: TlsConnector,
    policy: RetryPolicy,
    /// (UTC day number, messages relayed that day).
    count: Mutex<(u64, u32)>,
}

/// Why the relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The credentials file could not be read or has no entry.
    #[error("relay credentials: {0}")]
    Credentials(String),
    /// The CA file is unusable.
    #[error("relay CA file: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("relay TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl Relay {
    /// Reads the credentials and trust anchors.
    pub fn new(
        cfg: RelayConfig,
        hostname: &str,
        queue_dir: &std::path::Path,
    ) -> Result<Self, RelayError> {
        let mut client = ClientConfig::new(hostname);
        client.require_tls = cfg.require_tls;
        if let Some(path) = &cfg.sasl_passwd {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RelayError::Credentials(format!("{}: {e}", path.display())))?;
            let c = postern_adapters::sasl_passwd::find(&text, &cfg.host, cfg.port).ok_or_else(
                || {
                    RelayError::Credentials(format!(
                        "{}: no entry for [{}]:{}",
                        path.display(),
                        cfg.host,
                        cfg.port
                    ))
                },
            )?;
            client.credentials = Some((c.user, c.password));
        }
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.ca_file {
            Some(ca) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| RelayError::Ca(format!("{}: {e}", ca.display())))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| RelayError::Ca(format!("{}: {e}", ca.display())))?;
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| RelayError::Ca(format!("{}: {e}", ca.display())))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let today = unix_now() / 86_400;
        let count = read_count(queue_dir)
            .filter(|(d, _)| *d == today)
            .unwrap_or((today, 0));
        Ok(Self {
            cfg,
            client: Arc::new(client),
            tls: TlsConnector::from(Arc::new(tls)),
            policy: RetryPolicy::default(),
            count: Mutex::new(count),
        })
    }

    /// The smarthost as `host:port`.
    pub fn target(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }
}

fn read_count(queue_dir: &std::path::Path) -> Option<(u64, u32)> {
    let t = std::fs::read_to_string(queue_dir.join("relay-count")).ok()?;
    let (d, n) = t.trim().split_once(' ')?;
    Some((d.parse().ok()?, n.parse().ok()?))
}

/// Runs until `stop` closes: scans the spool, relays what is due.
pub async fn run(
    srv: Arc<Server>,
    relay: Arc<Relay>,
    spool: Spool,
    wake: Receiver<()>,
    stop: Receiver<()>,
) {
    info!("relaying outbound mail through {}", relay.target());
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
        for batch in due.chunks(relay.cfg.concurrency) {
            let tasks: Vec<_> = batch
                .iter()
                .cloned()
                .map(|m| smol::spawn(attempt(srv.clone(), relay.clone(), spool.clone(), m)))
                .collect();
            for t in tasks {
                t.await;
            }
        }
        let tick = async {
            Timer::after(relay.cfg.scan_interval).await;
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

async fn attempt(srv: Arc<Server>, relay: Arc<Relay>, spool: Spool, mut msg: QueuedMessage) {
    let now = unix_now();
    // The daily cap: defer to the next UTC day, never fail.
    if relay.cfg.daily_limit > 0 {
        let full = relay
            .count
            .lock()
            .map(|c| c.0 == now / 86_400 && c.1 >= relay.cfg.daily_limit)
            .unwrap_or(false);
        if full {
            msg.next_attempt = (now / 86_400 + 1) * 86_400;
            warn!(id = %msg.id, "daily relay limit of {} reached; deferred to the next UTC day", relay.cfg.daily_limit);
            let sp = spool.clone();
            let m = msg.clone();
            if let Err(e) = smol::unblock(move || sp.update(&m)).await {
                error!(id = %msg.id, "cannot update the queue: {e}");
            }
            return;
        }
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
    let pending: Vec<usize> = msg
        .rcpts
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RcptStatus::Pending)
        .map(|(i, _)| i)
        .collect();
    let mut rcpts = Vec::new();
    let mut indices = Vec::new();
    for &i in &pending {
        match parse_address(&msg.rcpts[i].address) {
            Some(a) => {
                rcpts.push(a);
                indices.push(i);
            }
            None => {
                msg.rcpts[i].status = RcptStatus::Failed;
                msg.rcpts[i].last_reply =
                    "553 5.1.3 bad recipient address syntax in the queue".into();
            }
        }
    }
    let eight_bit = data.iter().any(|&b| b >= 0x80);
    let from = if msg.from.is_empty() {
        None
    } else {
        parse_address(&msg.from)
    };
    let job = Job {
        smtputf8: rcpts.iter().any(|a| !a.is_ascii())
            || from.as_ref().is_some_and(|a| !a.is_ascii()),
        mail_from: from,
        rcpts,
        data: Arc::new(data),
        eight_bit,
    };
    let outcomes = if job.rcpts.is_empty() {
        Vec::new()
    } else {
        converse(&relay, job.clone()).await
    };
    let mut delivered = 0;
    let mut failed = Vec::new();
    for (k, o) in outcomes.iter().enumerate() {
        let Some(&i) = indices.get(k) else { continue };
        let r = &mut msg.rcpts[i];
        match o {
            RcptOutcome::Delivered(rep) => {
                r.status = RcptStatus::Delivered;
                r.last_reply = rep.to_string();
                delivered += 1;
                info!(id = %msg.id, "to=<{}>, relay={}, status=sent ({rep})", r.address, relay.target());
            }
            RcptOutcome::Failed(rep) => {
                r.status = RcptStatus::Failed;
                r.last_reply = rep.to_string();
                warn!(id = %msg.id, "to=<{}>, relay={}, status=bounced ({rep})", r.address, relay.target());
                failed.push(FailedRecipient {
                    address: r.address.clone(),
                    reply: rep.clone(),
                    expired: false,
                });
            }
            RcptOutcome::Deferred(rep) => {
                r.last_reply = rep.to_string();
                info!(id = %msg.id, "to=<{}>, relay={}, status=deferred ({rep})", r.address, relay.target());
            }
        }
    }
    if delivered > 0 {
        if let Ok(mut c) = relay.count.lock() {
            let today = now / 86_400;
            if c.0 != today {
                *c = (today, 0);
            }
            c.1 += 1;
            let line = format!("{} {}\n", c.0, c.1);
            let _ = std::fs::write(spool.dir().join("relay-count"), line);
        }
    }
    msg.attempts += 1;
    if msg.pending().next().is_some() {
        match relay
            .policy
            .next_attempt(msg.attempts, msg.created, unix_now())
        {
            Some(t) => msg.next_attempt = t,
            None => {
                for r in msg
                    .rcpts
                    .iter_mut()
                    .filter(|r| r.status == RcptStatus::Pending)
                {
                    r.status = RcptStatus::Failed;
                    let (code, rest) = r.last_reply.split_once(' ').unwrap_or(("451", ""));
                    failed.push(FailedRecipient {
                        address: r.address.clone(),
                        reply: Reply::new(code.parse().unwrap_or(451), "", rest.to_owned()),
                        expired: true,
                    });
                }
                warn!(id = %msg.id, "expired in the queue after {} attempts", msg.attempts);
            }
        }
    }
    if !failed.is_empty() && !msg.from.is_empty() {
        if let Err(e) = bounce(&srv, &msg, &failed, &job.data).await {
            error!(id = %msg.id, "cannot queue the bounce: {e}");
            return;
        }
    }
    let sp = spool.clone();
    let m = msg.clone();
    let result = if msg.pending().next().is_none() {
        smol::unblock(move || sp.remove(&m.id)).await
    } else {
        smol::unblock(move || sp.update(&m)).await
    };
    if let Err(e) = result {
        error!(id = %msg.id, "cannot update the queue: {e}");
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
    if let Some(w) = &srv.relay_wake {
        let _ = w.try_send(());
    }
    Ok(())
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

/// One connection to the smarthost for `job`; every recipient gets an outcome.
async fn converse(relay: &Relay, job: Job) -> Vec<RcptOutcome> {
    let n = job.rcpts.len();
    let defer_all = |text: String| vec![RcptOutcome::Deferred(Reply::new(421, "4.4.1", text)); n];
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
        match read.or(timer).await {
            Ok(0) => client.handle_eof(),
            Ok(k) => client.handle_input(Instant::now(), &buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => client.handle_timeout(Instant::now()),
            Err(_) => client.handle_eof(),
        }
    }
}
