//! The daemon: listeners, connection tasks, certificate reload, and the
//! graceful shutdown on SIGTERM.

use crate::config::{Config, Protocol};
use crate::tls::{server_config, ReloadingCert};
use futures_rustls::TlsAcceptor;
use postern_adapters::directory::Directory;
use postern_adapters::maildir::Maildir;
use postern_adapters::spool::Spool;
use postern_core::smtp::{ListenerConfig, Role, SmtpConfig};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::net::TcpListener;
use smol::stream::StreamExt as _;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

/// Everything the connection tasks share.
pub struct Server {
    /// The checked configuration.
    pub config: Config,
    /// SMTP settings for the core.
    pub smtp: Arc<SmtpConfig>,
    /// Accounts and aliases.
    pub directory: Arc<Directory>,
    /// The mail store.
    pub maildir: Arc<Maildir>,
    /// The group-commit writer for local delivery.
    pub committer: crate::commit::Committer,
    /// IMAP settings for the core.
    pub imap: Arc<postern_core::imap::session::ImapConfig>,
    /// The IMAP mailbox store.
    pub mailstore: Arc<postern_adapters::mailstore::MailStore>,
    /// Wakes IDLE sessions when their folder changes.
    pub hub: Arc<Hub>,
    /// TLS, if configured.
    pub tls: Option<TlsAcceptor>,
    /// The smarthost, if outbound mail is relayed.
    pub relay: Option<Arc<crate::relay::Relay>>,
    /// The outbound queue (with a relay).
    pub spool: Option<Spool>,
    /// Wakes the relay worker when a message was queued.
    pub relay_wake: Option<Sender<()>>,
    relay_wake_rx: Option<Receiver<()>>,
    cert: Option<Arc<ReloadingCert>>,
    ids: AtomicU64,
    clients: std::sync::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, u32>)>,
}

/// Who waits on which folder (IDLE), woken by deliveries and by other
/// sessions' changes.
#[derive(Debug, Default)]
pub struct Hub {
    waiters: std::sync::Mutex<
        std::collections::HashMap<std::path::PathBuf, Vec<smol::channel::Sender<()>>>,
    >,
}

impl Hub {
    /// A receiver that gets a message when `folder` next changes.
    pub fn wait(&self, folder: &std::path::Path) -> smol::channel::Receiver<()> {
        let (tx, rx) = smol::channel::bounded(1);
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let list = w.entry(folder.to_owned()).or_default();
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }

    /// Wakes everyone waiting on `folder`.
    pub fn notify(&self, folder: &std::path::Path) {
        let list = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(folder);
        for tx in list.into_iter().flatten() {
            let _ = tx.try_send(());
        }
    }
}

/// A counted session; dropping it frees its place.
pub struct Slot {
    srv: Arc<Server>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.srv.clients.lock() {
            c.0 = c.0.saturating_sub(1);
            if let Some(n) = c.1.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.1.remove(&self.ip);
                }
            }
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The directory files are unusable.
    #[error(transparent)]
    Directory(#[from] postern_adapters::directory::DirectoryError),
    /// The certificate is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A listener could not bind.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The data folder is unusable.
    #[error("data folder {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The relay is misconfigured.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    /// The queue folder is unusable.
    #[error("queue folder {0}: {1}")]
    Queue(String, std::io::Error),
}

impl Server {
    /// Loads the directory and certificate named by the configuration.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let directory = Directory::load(&config.accounts, config.virtual_file.as_deref())?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let (tls, cert) = match &config.tls {
            Some(files) => {
                let cert = ReloadingCert::load(files.clone())?;
                (
                    Some(TlsAcceptor::from(server_config(cert.clone())?)),
                    Some(cert),
                )
            }
            None => (None, None),
        };
        let (relay, spool, wake, wake_rx) = match &config.relay {
            Some(r) => {
                let spool = Spool::open(&config.queue_dir).map_err(|e| {
                    StartError::Queue(config.queue_dir.display().to_string(), e.into())
                })?;
                let relay =
                    crate::relay::Relay::new(r.clone(), &config.hostname, &config.queue_dir)?;
                let (tx, rx) = smol::channel::bounded(1);
                (Some(Arc::new(relay)), Some(spool), Some(tx), Some(rx))
            }
            None => (None, None, None, None),
        };
        let maildir = Arc::new(Maildir::new(&config.data_dir, &config.hostname));
        let committer = crate::commit::Committer::start(maildir.clone())
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let mut imap = postern_core::imap::session::ImapConfig::new(config.hostname.clone());
        imap.limits.max_append_literal = config.smtp.limits.max_message_size;
        let quotas = match &config.quotas_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| StartError::DataDir(f.display().to_string(), e))?;
                let (map, bad) = postern_adapters::directory::read_quotas(&text);
                for b in bad {
                    tracing::warn!("{}: {b}", f.display());
                }
                map
            }
            None => std::collections::HashMap::new(),
        };
        let mailstore = Arc::new(
            postern_adapters::mailstore::MailStore::new(maildir.clone())
                .with_quota(config.quota, quotas),
        );
        let hub = Arc::new(Hub::default());
        let h = hub.clone();
        maildir.set_on_change(postern_adapters::maildir::ChangeHook(Box::new(move |p| {
            h.notify(p)
        })));
        Ok(Arc::new(Self {
            imap: Arc::new(imap),
            mailstore,
            hub,
            committer,
            relay,
            spool,
            relay_wake: wake,
            relay_wake_rx: wake_rx,
            smtp: Arc::new(config.smtp.clone()),
            directory: Arc::new(directory),
            maildir,
            tls,
            cert,
            ids: AtomicU64::new(0),
            clients: std::sync::Mutex::new((0, std::collections::HashMap::new())),
            config,
        }))
    }

    /// Takes a session place for the real client address, or says which
    /// limit is full.
    pub fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<Slot, &'static str> {
        let Ok(mut c) = self.clients.lock() else {
            return Err("server");
        };
        if c.0 >= self.config.max_connections {
            return Err("server");
        }
        let n = c.1.entry(ip).or_insert(0);
        if *n >= self.config.max_connections_per_client {
            return Err("client");
        }
        *n += 1;
        c.0 += 1;
        Ok(Slot {
            srv: self.clone(),
            ip,
        })
    }

    /// A new queue id: unique in this process, sortable by time.
    pub fn next_queue_id(&self) -> String {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:X}{:05X}{:X}", t.as_secs(), t.subsec_micros(), n & 0xFFFF)
    }
}

/// The bound listeners, ready to serve.
pub struct Bound {
    listeners: Vec<(TcpListener, crate::config::Listener)>,
}

impl Bound {
    /// The addresses actually bound (port 0 resolved).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }
}

/// Binds every listener (before serving, so errors come early).
pub async fn bind(srv: &Server) -> Result<Bound, StartError> {
    let mut listeners = Vec::new();
    for l in &srv.config.listeners {
        let tcp = TcpListener::bind(l.address)
            .await
            .map_err(|e| StartError::Bind(l.address, e))?;
        listeners.push((tcp, l.clone()));
    }
    Ok(Bound { listeners })
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully: stop
/// accepting, tell idle sessions `421 4.3.2`, let sessions inside a message
/// finish within the grace period.
pub async fn serve(srv: Arc<Server>, bound: Bound) {
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let (alive_tx, alive_rx) = smol::channel::bounded::<()>(1);
    for (tcp, l) in bound.listeners {
        let addr = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!(
            "listening on {addr} ({:?}, TLS {:?}, PROXY {})",
            l.protocol,
            l.tls,
            if l.proxy.is_required() {
                "required"
            } else {
                "forbidden"
            }
        );
        if l.protocol == Protocol::Imap {
            let il = Arc::new(postern_core::imap::session::ImapListener {
                tls: l.tls,
                proxy: l.proxy.clone(),
            });
            let serve = move |srv, stream, peer, local, stop| {
                crate::imap::serve(srv, il.clone(), stream, peer, local, stop)
            };
            smol::spawn(accept_loop(
                srv.clone(),
                tcp,
                serve,
                stop_rx.clone(),
                alive_tx.clone(),
            ))
            .detach();
            continue;
        }
        let lc = Arc::new(ListenerConfig {
            role: if l.protocol == Protocol::Submission {
                Role::Submission
            } else {
                Role::Mx
            },
            tls: l.tls,
            proxy: l.proxy.clone(),
        });
        let serve = move |srv, stream, peer, local, stop| {
            crate::smtp::serve(srv, lc.clone(), stream, peer, local, stop)
        };
        smol::spawn(accept_loop(
            srv.clone(),
            tcp,
            serve,
            stop_rx.clone(),
            alive_tx.clone(),
        ))
        .detach();
    }
    if let Some(cert) = srv.cert.clone() {
        let stop = stop_rx.clone();
        smol::spawn(async move {
            loop {
                let tick = async {
                    Timer::after(cert.interval()).await;
                    true
                };
                let end = async {
                    let _ = stop.recv().await;
                    false
                };
                if !tick.or(end).await {
                    return;
                }
                match cert.check() {
                    Ok(true) => info!("TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => error!("TLS certificate not reloaded, keeping the old one: {e}"),
                }
            }
        })
        .detach();
    }
    if let (Some(relay), Some(spool), Some(wake)) = (
        srv.relay.clone(),
        srv.spool.clone(),
        srv.relay_wake_rx.clone(),
    ) {
        let relay_task = smol::spawn(crate::relay::run(
            srv.clone(),
            relay,
            spool,
            wake,
            stop_rx.clone(),
        ));
        let alive = alive_tx.clone();
        smol::spawn(async move {
            relay_task.await;
            drop(alive);
        })
        .detach();
    }
    drop(alive_tx);
    wait_for_signal().await;
    info!("shutting down: no new connections; sessions inside a message may finish");
    drop(stop_tx);
    let grace = srv.config.shutdown_grace;
    let drained = async {
        let _ = alive_rx.recv().await;
        true
    };
    let late = async {
        Timer::after(grace).await;
        false
    };
    if drained.or(late).await {
        info!("all sessions closed");
    } else {
        warn!("grace period over: closing the remaining sessions (their messages were not acknowledged)");
    }
}

async fn wait_for_signal() {
    match async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]) {
        Ok(mut signals) => {
            if let Some(Ok(s)) = signals.next().await {
                info!("received {s:?}");
            }
        }
        Err(e) => {
            error!("cannot watch signals ({e}); serving until killed");
            std::future::pending::<()>().await;
        }
    }
}

/// Accepts connections until `stop`, running `serve` for each; every
/// connection holds an `alive` sender so shutdown can wait for them.
async fn accept_loop<F, Fut>(
    srv: Arc<Server>,
    tcp: TcpListener,
    serve: F,
    stop: Receiver<()>,
    alive: Sender<()>,
) where
    F: Fn(Arc<Server>, smol::net::TcpStream, SocketAddr, SocketAddr, Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let accept = async { Some(tcp.accept().await) };
        let end = async {
            let _ = stop.recv().await;
            None
        };
        match accept.or(end).await {
            None => return,
            Some(Ok((stream, peer))) => {
                let local = stream.local_addr().unwrap_or(peer);
                // Boxed: an async block awaiting a future it captured keeps
                // both (the capture and the awaitee) in its state, which
                // would double every connection's task.
                let session = Box::pin(serve(srv.clone(), stream, peer, local, stop.clone()));
                let alive = alive.clone();
                smol::spawn(async move {
                    session.await;
                    drop(alive);
                })
                .detach();
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off a little instead of spinning.
                warn!("accept failed: {e}");
                Timer::after(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
