//! The listeners: bind them all, accept on each, run one task per
//! connection, reload the certificate, and shut down gracefully on SIGTERM.

use crate::config::Protocol;
use crate::server::{Server, StartError};
use postern_core::smtp::{ListenerConfig, Role};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::net::TcpListener;
use smol::stream::StreamExt as _;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{error, info, warn};

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
    srv.metrics.listeners_bound_now(bound.listeners.len());
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
        let name = (addr.clone(), l.protocol.name());
        let (stop, alive) = (stop_rx.clone(), alive_tx.clone());
        // One accept loop per listener; only the session it runs differs.
        let task = match l.protocol {
            Protocol::Http => {
                let hl = Arc::new(crate::http::HttpListener {
                    proxy: l.proxy.clone(),
                    limits: postern_core::http::HttpLimits::default(),
                });
                let serve = move |srv, stream, peer, local, stop| {
                    crate::http::serve(srv, hl.clone(), stream, peer, local, stop)
                };
                smol::spawn(accept_loop(srv.clone(), tcp, name, serve, stop, alive))
            }
            Protocol::Imap => {
                let il = Arc::new(postern_core::imap::session::ImapListener {
                    tls: l.tls,
                    proxy: l.proxy.clone(),
                    allow_plaintext_auth: l.allow_plaintext_auth,
                });
                let serve = move |srv, stream, peer, local, stop| {
                    crate::imap::serve(srv, il.clone(), stream, peer, local, stop)
                };
                smol::spawn(accept_loop(srv.clone(), tcp, name, serve, stop, alive))
            }
            Protocol::Smtp | Protocol::Submission => {
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
                smol::spawn(accept_loop(srv.clone(), tcp, name, serve, stop, alive))
            }
        };
        task.detach();
    }
    if let Some(cert) = srv.cert.clone() {
        let stop = stop_rx.clone();
        let metrics = srv.metrics.clone();
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
                    Err(e) => {
                        metrics.tls_reload_failure();
                        error!("TLS certificate not reloaded, keeping the old one: {e}");
                    }
                }
            }
        })
        .detach();
    }
    {
        let queue_task = smol::spawn(crate::relay::run(
            srv.clone(),
            srv.relay.clone(),
            srv.queue.clone(),
            srv.relay_wake_rx.clone(),
            stop_rx.clone(),
        ));
        let alive = alive_tx.clone();
        smol::spawn(async move {
            queue_task.await;
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
/// connection holds an `alive` sender so shutdown can wait for them, and
/// is counted in the metrics under `name` (listener address, protocol).
async fn accept_loop<F, Fut>(
    srv: Arc<Server>,
    tcp: TcpListener,
    name: (String, &'static str),
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
                let counted = srv.metrics.connection(&name.0, name.1);
                smol::spawn(async move {
                    session.await;
                    drop(counted);
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
