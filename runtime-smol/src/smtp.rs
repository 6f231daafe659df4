//! One SMTP connection: the loop of `SmtpSession`'s documentation, on smol.
//! No protocol logic here: bytes in, outputs out, questions answered from
//! the directory and the Maildir.

use crate::conn::Stream;
use crate::deliver;
use crate::server::Server;
use postern_adapters::directory::Resolution;
use postern_core::policy::admission::Service;
use postern_core::policy::delivery::{store_verdict, MessageRefusal};
use postern_core::policy::msgauth::{self, AuthVerdict};
use postern_core::policy::recipient::{rcpt_verdict, Destination, RcptFacts};
use postern_core::policy::sender::{mail_verdict, MailRefusal, MailVerdict};
use postern_core::proxy::AddressSource;
use postern_core::smtp::{
    AuthAnswer, ConnectAnswer, Event, ListenerConfig, Output, Role, SmtpSession, StoreAnswer,
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
                            srv.metrics.tls_handshake_failure("smtp");
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
    if let Event::Notice(n) = &e {
        srv.metrics.smtp_notice(n);
    }
    match e {
        Event::Connect(a) => {
            info!(client = %a.client, source = ?a.source, "connect from unknown[{}]", a.client.ip());
            let service = match listener.role {
                Role::Submission => Service::Submission,
                Role::Mx => Service::Mx,
            };
            if a.source == AddressSource::ProxyLocal {
                // A health check: never counted, never refused.
                session.answer_connect(Instant::now(), ConnectAnswer::Accept);
                return;
            }
            match srv.admit(service, a.client.ip()) {
                Ok(s) => {
                    *slot = Some(s);
                    session.answer_connect(Instant::now(), ConnectAnswer::Accept);
                }
                Err(refusal) => {
                    session.answer_connect(Instant::now(), ConnectAnswer::Refuse(refusal))
                }
            }
        }
        Event::Auth(req) => {
            let dir = srv.directory.clone();
            let (user, pass) = (req.username.clone(), req.password);
            let verdict = smol::unblock(move || dir.verify(&user, pass.expose())).await;
            match verdict {
                Some(account) => {
                    srv.auth_succeeded(ip);
                    info!(client = %client, "unknown[{ip}]: SASL {} authentication succeeded, sasl_username={account}", req.mechanism);
                    session.answer_auth(Instant::now(), AuthAnswer::Success { user: account });
                }
                None => {
                    Timer::after(srv.auth_failed(ip, &req.username)).await;
                    session.answer_auth(Instant::now(), AuthAnswer::Failure);
                }
            }
        }
        Event::MailFrom(req) => {
            let service = match listener.role {
                Role::Submission => Service::Submission,
                Role::Mx => Service::Mx,
            };
            let health_check = session.client().source == AddressSource::ProxyLocal;
            if !health_check && !srv.message_allowed(service, ip) {
                let refusal = MailRefusal::MessageRate { ip };
                session.answer_mail(Instant::now(), MailVerdict::Refuse(refusal));
                return;
            }
            let owned = match (&req.authenticated, &req.from) {
                (Some(user), Some(from)) => srv.directory.owns(user, from),
                _ => true,
            };
            let verdict = mail_verdict(
                listener.role,
                req.authenticated.as_deref(),
                req.from.as_ref(),
                owned,
            );
            session.answer_mail(Instant::now(), verdict);
        }
        Event::RcptTo(req) => {
            // An SRS address at our SRS domain leads where it reverses to.
            let mut to = req.to.clone();
            let mut bad_srs = false;
            if let Some(srs) = deliver::srs_at(srv, &req.to) {
                match srs.reverse(&req.to.local, crate::clock::unix_now()) {
                    Ok(m) => {
                        to =
                            postern_core::smtp::Address::new(m.local, m.domain.to_ascii_lowercase())
                    }
                    Err(e) => {
                        info!(client = %client, "<{}>: {e}", req.to);
                        bad_srs = true;
                    }
                }
            }
            let reversed = to != req.to;
            let (destination, mailboxes) = match srv.directory.resolve(&to) {
                _ if bad_srs => (Destination::BadSrs, Vec::new()),
                Resolution::Remote if reversed => {
                    (Destination::Local { forwards: true }, Vec::new())
                }
                Resolution::Local {
                    mailboxes,
                    forwards,
                } => (
                    Destination::Local {
                        forwards: !forwards.is_empty(),
                    },
                    mailboxes,
                ),
                Resolution::Unknown => (Destination::Unknown, Vec::new()),
                Resolution::Remote => (Destination::Remote, Vec::new()),
            };
            // No limit anywhere: no trip to the store's blocking thread.
            let over_quota = if mailboxes.is_empty() || !srv.quotas {
                false
            } else {
                let store = srv.mailstore.clone();
                smol::unblock(move || mailboxes.iter().any(|m| store.over_quota(&m.to_string())))
                    .await
            };
            let facts = RcptFacts {
                destination,
                over_quota,
                authenticated: req.authenticated.is_some(),
                relay_configured: srv.relay.is_some(),
            };
            session.answer_rcpt(Instant::now(), rcpt_verdict(&facts));
        }
        Event::Message(msg) => {
            let mut msg = *msg;
            let mut folder = None;
            // What the spam score takes from the authentication results.
            let mut spam_auth = postern_core::spam::AuthInput::default();
            let checked = match (&srv.verifier, listener.role) {
                (Some(v), Role::Mx) if msg.envelope.authenticated.is_none() => {
                    let started = Instant::now();
                    let checked = v.check(&msg.envelope, &msg.data).await;
                    info!(client = %client, took_ms = started.elapsed().as_millis() as u64, facts = ?checked.facts, "message authentication");
                    Some((v, checked))
                }
                _ => None,
            };
            if let Some((v, checked)) = checked {
                spam_auth = postern_core::spam::AuthInput::from_facts(&checked.facts);
                let verdict = msgauth::verdict(&v.config.settings, &checked.facts);
                match verdict {
                    AuthVerdict::Reject(refusal) => {
                        info!(client = %client, facts = ?checked.facts, "message refused by DMARC policy");
                        session.answer_message(Instant::now(), StoreAnswer::Refuse(refusal));
                        return;
                    }
                    AuthVerdict::Junk => folder = Some(v.config.junk_folder.clone()),
                    AuthVerdict::Accept => {}
                }
                let mut data = checked.header.into_bytes();
                match msgauth::strip_own_results(&msg.data, &srv.config.hostname) {
                    Some(stripped) => data.extend_from_slice(&stripped),
                    None => data.extend_from_slice(&msg.data),
                }
                msg.data = data;
            }
            let id = srv.next_queue_id();
            let (srv2, id2) = (srv.clone(), id.clone());
            let screened = crate::spam::screen(srv, listener.role, &msg, &id, spam_auth).await;
            if screened.refuse {
                info!(client = %client, id = %id, "{id}: rejected as spam");
                session.answer_message(Instant::now(), StoreAnswer::Refuse(MessageRefusal::Spam));
                return;
            }
            let (outcome, msg) = deliver::deliver(srv2, msg, id2, folder, screened).await;
            let remote = msg.envelope.rcpt_to.iter().filter(|r| !r.local).count();
            srv.metrics.delivered(&outcome, remote);
            match store_verdict(outcome) {
                Ok(()) => {
                    let from = msg
                        .envelope
                        .mail_from
                        .as_ref()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    info!(
                        client = %client, id = %id, size = msg.data.len(), mailboxes = outcome.stored,
                        "{id}: from=<{from}>, size={}, nrcpt={} (queued as {id})",
                        msg.data.len(),
                        msg.envelope.rcpt_to.len()
                    );
                    session.answer_message(Instant::now(), StoreAnswer::Stored { id });
                }
                Err(refusal) => {
                    warn!(client = %client, id = %id, stored = outcome.stored, failed = outcome.failed, queued = outcome.queued, "delivery failed: {refusal:?}");
                    session.answer_message(Instant::now(), StoreAnswer::Refuse(refusal));
                }
            }
        }
        Event::Notice(n) => crate::logs::smtp_notice(listener, &session.client(), &n),
    }
}
