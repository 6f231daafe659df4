//! One IMAP connection: the same loop as SMTP (`smtp.rs`), answering the
//! session's questions from the directory and the Maildir store.

use crate::conn::Stream;
use crate::server::Server;
use postern_core::imap::event::{Event, Notice};
use postern_core::imap::session::{ConnectAnswer, ImapListener, ImapSession, LoginAnswer, Output};
use postern_core::policy::admission::Service;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::net::TcpStream;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The read buffer starts small (commands are short lines), doubles up
/// to `READ_BUF` while reads fill it (literals, APPEND), and shrinks to
/// `IDLE_READ_BUF` while the client idles (it only sends `DONE`): a
/// thousand idling sessions should not each hold 8 KiB.
const READ_BUF: usize = 8 * 1024;
const MIN_READ_BUF: usize = 1024;
const IDLE_READ_BUF: usize = 64;

enum Wake {
    Read(std::io::Result<usize>),
    Timer,
    IdlePoll,
    Changed,
    Shutdown,
}

/// Serves one IMAP connection to its end.
pub async fn serve(
    srv: Arc<Server>,
    listener: Arc<ImapListener>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Receiver<()>,
) {
    let _ = tcp.set_nodelay(true);
    let mut session = ImapSession::new(srv.imap.clone(), listener, peer, local, Instant::now());
    let mut stream = Stream::new(tcp);
    let mut buf: Vec<u8> = Vec::new();
    let mut idle_version = None;
    let mut waiter: Option<Receiver<()>> = None;
    let _counted = srv.metrics.imap_session();
    let mut idling = None;
    // The session's place under the connection limits, freed when it ends.
    let mut slot = None;
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Send(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Output::StartTls { early } => {
                    let Some(acceptor) = srv.tls.as_ref() else {
                        warn!("IMAP TLS asked for but no certificate is configured");
                        return;
                    };
                    let timeout = async {
                        Timer::after(HANDSHAKE_TIMEOUT).await;
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "handshake timeout",
                        ))
                    };
                    // Boxed: the handshake's state is large and needed once;
                    // inline, it would size every connection's task.
                    match Box::pin(stream.start_tls(acceptor, early).or(timeout)).await {
                        Ok(_) => session.handle_tls_established(),
                        Err(e) => {
                            srv.metrics.tls_handshake_failure("imap");
                            info!(client = %session.client().client, "imap-login: TLS handshake failed: {e}");
                            return;
                        }
                    }
                }
                Output::Event(e) => answer(&srv, &mut session, &mut slot, e).await,
                Output::Close => {
                    stream.close().await;
                    info!(client = %session.client().client, "imap: Disconnected: Logged out rip={}", session.client().client.ip());
                    return;
                }
            }
        }
        let idle = session.is_idle();
        if idle != idling.is_some() {
            idling = idle.then(|| srv.metrics.imap_idle());
        }
        if !idle {
            waiter = None;
        } else if waiter.is_none() {
            // Wait on the folder first, then look: nothing falls between.
            let id = match (session.user(), session.selected()) {
                (Some(u), Some(m)) => {
                    let id = postern_adapters::store::MailboxId::new(u, m);
                    idle_version = srv.mailstore.version(&id);
                    Some(id)
                }
                _ => None,
            };
            if let Some(id) = id {
                waiter = Some(srv.hub.wait(&id));
                session.handle_mailbox_changed();
                continue;
            }
        }
        let want = if session.is_idle() {
            IDLE_READ_BUF
        } else {
            buf.len().clamp(MIN_READ_BUF, READ_BUF)
        };
        if buf.len() != want {
            buf = vec![0u8; want];
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
        let poll = async {
            if idle {
                // Changes made outside this process; ours wake it at once.
                Timer::after(srv.config.idle_poll).await;
                Wake::IdlePoll
            } else {
                std::future::pending().await
            }
        };
        let changed = async {
            match &waiter {
                Some(w) => {
                    let _ = w.recv().await;
                    Wake::Changed
                }
                None => std::future::pending().await,
            }
        };
        let stop = async {
            let _ = shutdown.recv().await;
            Wake::Shutdown
        };
        match read.or(changed).or(timer).or(poll).or(stop).await {
            Wake::Read(Ok(0)) => session.handle_eof(),
            Wake::Read(Ok(n)) => {
                session.handle_input(Instant::now(), &buf[..n]);
                if n == buf.len() && n < READ_BUF {
                    buf = vec![0u8; (n * 2).min(READ_BUF)];
                }
            }
            Wake::Read(Err(_)) => return,
            Wake::Timer => session.handle_timeout(Instant::now()),
            Wake::Changed => {
                // Registers again and looks at the top of the loop.
                waiter = None;
            }
            Wake::IdlePoll => {
                // Wake the session only when the folder changed (two stats).
                let v = match (session.user(), session.selected()) {
                    (Some(u), Some(m)) => srv
                        .mailstore
                        .version(&postern_adapters::store::MailboxId::new(u, m)),
                    _ => None,
                };
                if v != idle_version {
                    idle_version = v;
                    session.handle_mailbox_changed();
                }
            }
            Wake::Shutdown => {
                // IMAP holds no unacknowledged mail: the session says goodbye
                // and closes; the loop above sends it.
                session.handle_shutdown();
            }
        }
    }
}

async fn answer(
    srv: &Arc<Server>,
    session: &mut ImapSession,
    slot: &mut Option<crate::server::Slot>,
    e: Event,
) {
    let client = session.client().client;
    let ip = client.ip();
    if let Event::Notice(n) = &e {
        srv.metrics.imap_notice(n);
    }
    match e {
        Event::Connect(a) => {
            info!(client = %a.client, "imap-login: connect rip={}", a.client.ip());
            match srv.admit(Service::Imap, a.client.ip()) {
                Ok(s) => {
                    *slot = Some(s);
                    session.answer_connect(Instant::now(), ConnectAnswer::Accept);
                }
                Err(refusal) => {
                    warn!(client = %a.client, "imap-login: connection refused: {refusal:?}");
                    session.answer_connect(Instant::now(), ConnectAnswer::Refuse(refusal));
                }
            }
        }
        Event::Login { username, password } => {
            let dir = srv.directory.clone();
            let user = username.clone();
            let verdict = smol::unblock(move || dir.verify(&user, password.expose())).await;
            match verdict {
                Some(account) => {
                    srv.auth_succeeded(ip);
                    crate::logs::imap_login(&session.client(), &account);
                    session.answer_login(Instant::now(), LoginAnswer::Success(account));
                }
                None => {
                    // The same failure throttle as SMTP AUTH, per real address.
                    let delay = srv.auth_failed(ip, &username);
                    Timer::after(delay).await;
                    crate::logs::imap_login_failed(&session.client(), &username, 1, delay);
                    session.answer_login(Instant::now(), LoginAnswer::Failure);
                }
            }
        }
        Event::Mailbox { user, request } => {
            // From memory on this thread when the store can (most Polls,
            // STATUS, cached summaries); otherwise on the blocking pool.
            let learn = crate::spam::before_request(srv, &user, &request).await;
            let answer = match srv.mailstore.answer_cached(&user, &request) {
                Some(a) => a,
                None => {
                    let (store, u) = (srv.mailstore.clone(), user.clone());
                    smol::unblock(move || store.answer(&u, request)).await
                }
            };
            crate::spam::after_request(srv, &user, learn, &answer).await;
            session.answer_mailbox(Instant::now(), answer);
        }
        Event::Notice(n) => match n {
            Notice::ProxyRefused(e) => warn!(peer = %client, "PROXY refused: {e}"),
            other => info!(client = %client, "imap: {other:?}"),
        },
    }
}
