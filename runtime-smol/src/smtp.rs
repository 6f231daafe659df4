//! One SMTP connection: the loop of `SmtpSession`'s documentation, on smol.
//! No protocol logic here: bytes in, outputs out, questions answered from
//! the directory and the Maildir.

use crate::conn::Stream;
use crate::deliver;
use crate::server::Server;
use postern_adapters::directory::Resolution;
use postern_core::smtp::{
    AuthAnswer, ConnectAnswer, Event, ListenerConfig, MailAnswer, Notice, Output, RcptAnswer,
    Reply, Role, SmtpSession, StoreAnswer,
};
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::net::TcpStream;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer per connection.
const READ_BUF: usize = 8 * 1024;

enum Wake {
    Read(std::io::Result<usize>),
    Timer,
    Shutdown,
}

/// Serves one SMTP connection to its end.
pub async fn serve(
    srv: Arc<Server>,
    listener: Arc<ListenerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Receiver<()>,
) {
    let _ = tcp.set_nodelay(true);
    let mut session = SmtpSession::new(
        srv.smtp.clone(),
        listener.clone(),
        peer,
        local,
        Instant::now(),
    );
    let mut stream = Stream::new(tcp);
    let mut buf = vec![0u8; READ_BUF];
    let mut shutting_down = false;
    // The session's place under the connection limits, freed when it ends.
    let mut slot = None;
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Send(bytes) => {
                    if let Err(e) = stream.write_all(&bytes).await {
                        info!(client = %session.client().client, "lost connection while writing: {e}");
                        return;
                    }
                }
                Output::StartTls { early } => {
                    let Some(acceptor) = srv.tls.as_ref() else {
                        warn!("TLS asked for but no certificate is configured");
                        return;
                    };
                    let hs = stream.start_tls(acceptor, early);
                    let timeout = async {
                        Timer::after(HANDSHAKE_TIMEOUT).await;
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "handshake timeout",
                        ))
                    };
                    match hs.or(timeout).await {
                        Ok(info) => session.handle_tls_established(info),
                        Err(e) => {
                            info!(client = %session.client().client, "TLS handshake failed: {e}");
                            return;
                        }
                    }
                }
                Output::Event(e) => answer(&srv, &listener, &mut session, &mut slot, e).await,
                Output::Close => {
                    stream.close().await;
                    let s = session.stats();
                    info!(
                        client = %session.client().client,
                        commands = s.commands, errors = s.errors, messages = s.messages,
                        "disconnect from unknown[{}]",
                        session.client().client.ip()
                    );
                    return;
                }
            }
        }
        let deadline = session.poll_timeout();
        let read = async { Wake::Read(stream.read(&mut buf).await) };
        let timer = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                    Wake::Timer
                }
                None => std::future::pending().await,
            }
        };
        let stop = async {
            if shutting_down {
                std::future::pending::<()>().await;
            }
            let _ = shutdown.recv().await;
            Wake::Shutdown
        };
        match read.or(timer).or(stop).await {
            Wake::Read(Ok(0)) => session.handle_eof(),
            Wake::Read(Ok(n)) => session.handle_input(Instant::now(), &buf[..n]),
            Wake::Read(Err(e)) => {
                info!(client = %session.client().client, "lost connection: {e}");
                return;
            }
            Wake::Timer => session.handle_timeout(Instant::now()),
            Wake::Shutdown => {
                shutting_down = true;
                session.handle_shutdown();
            }
        }
    }
}

async fn answer(
    srv: &Arc<Server>,
    listener: &ListenerConfig,
    session: &mut SmtpSession,
    slot: &mut Option<crate::server::Slot>,
    e: Event,
) {
    let client = session.client().client;
    let ip = client.ip();
    match e {
        Event::Connect(a) => {
            info!(client = %a.client, source = ?a.source, "connect from unknown[{}]", a.client.ip());
            match srv.admit(a.client.ip()) {
                Ok(s) => {
                    *slot = Some(s);
                    session.answer_connect(ConnectAnswer::Accept);
                }
                Err(which) => {
                    warn!(client = %a.client, "too many connections ({which} limit) from unknown[{}]", a.client.ip());
                    session.answer_connect(ConnectAnswer::Refuse(Reply::new(
                        421,
                        "4.7.0",
                        format!(
                            "{} Error: too many connections from {}",
                            srv.config.hostname,
                            a.client.ip()
                        ),
                    )));
                }
            }
        }
        Event::Auth(req) => {
            let dir = srv.directory.clone();
            let (user, pass) = (req.username.clone(), req.password);
            let verdict = smol::unblock(move || dir.verify(&user, pass.expose())).await;
            match verdict {
                Some(account) => {
                    info!(client = %client, "unknown[{ip}]: SASL {} authentication succeeded, sasl_username={account}", req.mechanism);
                    session.answer_auth(AuthAnswer::Success { user: account });
                }
                None => {
                    Timer::after(srv.config.auth_failure_delay).await;
                    warn!(
                        client = %client,
                        "unknown[{ip}]: SASL {} authentication failed: authentication failure, sasl_username={}",
                        req.mechanism,
                        req.username
                    );
                    session.answer_auth(AuthAnswer::Failure);
                }
            }
        }
        Event::MailFrom(req) => {
            let answer = match (&req.authenticated, &req.from) {
                (Some(user), Some(from))
                    if listener.role == Role::Submission && !srv.directory.owns(user, from) =>
                {
                    warn!(client = %client, "sender <{from}> not owned by {user}");
                    MailAnswer::Reject(Reply::new(
                        553,
                        "5.7.1",
                        format!("<{from}>: Sender address rejected: not owned by user {user}"),
                    ))
                }
                _ => MailAnswer::Accept,
            };
            session.answer_mail(answer);
        }
        Event::RcptTo(req) => {
            let answer = match srv.directory.resolve(&req.to) {
                Resolution::Local { forwards, .. } if !forwards.is_empty() => {
                    RcptAnswer::Reject(Reply::new(
                        451,
                        "4.3.0",
                        format!(
                            "<{}>: forwarding to outside addresses is not available yet",
                            req.to
                        ),
                    ))
                }
                Resolution::Local { mailboxes, .. } => {
                    let store = srv.mailstore.clone();
                    let full = smol::unblock(move || {
                        mailboxes
                            .iter()
                            .any(|m| store.over_quota(&format!("{}@{}", m.user, m.domain)))
                    })
                    .await;
                    if full {
                        info!(client = %client, "NOQUEUE: reject: RCPT from unknown[{ip}]: 552 5.2.2 <{}>: Mailbox full", req.to);
                        RcptAnswer::Reject(Reply::new(
                            552,
                            "5.2.2",
                            format!("<{}>: Mailbox full", req.to),
                        ))
                    } else {
                        RcptAnswer::Local
                    }
                }
                Resolution::Unknown => RcptAnswer::UnknownUser,
                Resolution::Remote if req.authenticated.is_some() && srv.relay.is_none() => {
                    RcptAnswer::Reject(Reply::new(
                        451,
                        "4.3.0",
                        format!(
                            "<{}>: relaying through a smarthost is not configured",
                            req.to
                        ),
                    ))
                }
                Resolution::Remote => RcptAnswer::Remote,
            };
            if matches!(answer, RcptAnswer::Remote) && req.authenticated.is_none() {
                info!(client = %client, "NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <{}>: Relay access denied", req.to);
            }
            session.answer_rcpt(answer);
        }
        Event::Message(msg) => {
            let id = srv.next_queue_id();
            let srv2 = srv.clone();
            let id2 = id.clone();
            let result = async {
                let queued = if msg.envelope.rcpt_to.iter().any(|r| !r.local) {
                    let (srv3, id3) = (srv2.clone(), id2.clone());
                    let (q, m) =
                        smol::unblock(move || (deliver::queue_outbound(&srv3, &msg, &id3), msg))
                            .await;
                    msg_back(q, m)
                } else {
                    Ok((0, msg))
                };
                let (queued, msg) = queued?;
                let jobs = deliver::local_jobs(&srv2, &msg, &id2)?;
                let n = jobs.len();
                for r in srv2.committer.deliver(jobs).await {
                    r?;
                }
                Ok::<_, std::io::Error>((n + queued, msg))
            }
            .await;
            if let Some(w) = &srv.relay_wake {
                let _ = w.try_send(());
            }
            match result {
                Ok((n, msg)) => {
                    let from = msg
                        .envelope
                        .mail_from
                        .as_ref()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    info!(
                        client = %client, id = %id, size = msg.data.len(), mailboxes = n,
                        "{id}: from=<{from}>, size={}, nrcpt={} (queued as {id})",
                        msg.data.len(),
                        msg.envelope.rcpt_to.len()
                    );
                    session.answer_message(StoreAnswer::Stored { id });
                }
                Err(e) => {
                    warn!(client = %client, id = %id, "delivery failed, answering 452: {e}");
                    session.answer_message(StoreAnswer::TempFail(None));
                }
            }
        }
        Event::Notice(n) => match n {
            Notice::ProxyRefused(e) => warn!(peer = %client, "PROXY refused: {e}"),
            Notice::AuthFailed { .. } => {}
            other => info!(client = %client, "{other:?}"),
        },
    }
}

fn msg_back<T>(r: std::io::Result<usize>, m: T) -> std::io::Result<(usize, T)> {
    r.map(|n| (n, m))
}
