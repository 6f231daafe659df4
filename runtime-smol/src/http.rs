//! One connection to the monitoring listener (`protocol = "http"`): the
//! PROXY front when the listener requires it, the HTTP service's own
//! admission budget, one request read within a deadline into a bounded
//! buffer, one answer, close. The request is read and the answer composed
//! by `postern_core::http`; this file only moves bytes and gathers facts.
//!
//! - `/metrics`: the Prometheus exposition ([`crate::metrics`]), with the
//!   queue, relay and certificate gauges read now, off the executor;
//! - `/healthz`: 200 while the process runs;
//! - `/readyz`: 200 when every listener is bound, a file can be written
//!   and removed in the data folder, the queue can be listed and (with
//!   TLS) a certificate is loaded; 503 naming the failed checks otherwise.

use crate::clock::unix_now;
use crate::metrics::State;
use crate::server::{Server, Slot, RELAY_COUNTER};
use postern_adapters::store::Window;
use postern_core::front::{Front, Opening, Passed};
use postern_core::http::{self, HttpLimits, Method, Parse, Route, Status};
use postern_core::policy::admission::Service;
use postern_core::proxy::ProxyConfig;
use postern_core::smtp::TlsMode;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::net::TcpStream;
use smol::Timer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a client has to send its whole request head (and to take the
/// answer): a slow client is cut off after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size; the head itself is bounded by [`HttpLimits`].
const READ_BUF: usize = 4096;

/// A monitoring listener's settings.
#[derive(Clone, Debug)]
pub struct HttpListener {
    /// The PROXY policy (HAProxy in front, or none).
    pub proxy: ProxyConfig,
    /// Request head limits.
    pub limits: HttpLimits,
}

enum Wake {
    Read(std::io::Result<usize>),
    Timer,
    Shutdown,
}

/// What to do after feeding bytes.
enum Step {
    More,
    Answer(Vec<u8>, &'static str, u16),
}

/// Serves one monitoring connection to its end.
pub async fn serve(
    srv: Arc<Server>,
    listener: Arc<HttpListener>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Receiver<()>,
) {
    let start = Instant::now();
    let deadline = start + REQUEST_TIMEOUT;
    let (mut front, opening) =
        Front::new(listener.proxy.clone(), TlsMode::None, peer, local, start);
    // The place under the HTTP budget, freed when the connection ends.
    let mut slot: Option<Slot> = None;
    match opening {
        Opening::Refused(e) => {
            srv.metrics.proxy_refused("http");
            warn!(peer = %peer, "http: PROXY refused: {e}");
            return;
        }
        Opening::AwaitHeader => {}
        Opening::Ask(address) => match admit(&srv, address.client) {
            Ok(s) => slot = Some(s),
            Err(answer) => {
                let _ = write_within(&mut tcp, &answer, deadline).await;
                return;
            }
        },
    }
    let mut head: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let wake_at = front.poll_timeout().map_or(deadline, |d| d.min(deadline));
        let read = async { Wake::Read(tcp.read(&mut buf).await) };
        let timer = async {
            Timer::at(wake_at).await;
            Wake::Timer
        };
        let stop = async {
            let _ = shutdown.recv().await;
            Wake::Shutdown
        };
        let bytes: Vec<u8> = match read.or(timer).or(stop).await {
            Wake::Shutdown => return,
            Wake::Read(Err(e)) => {
                info!(peer = %peer, "http: lost connection: {e}");
                return;
            }
            Wake::Read(Ok(0)) => {
                if let Some(e) = front.eof() {
                    srv.metrics.proxy_refused("http");
                    warn!(peer = %peer, "http: PROXY refused: {e}");
                }
                return;
            }
            Wake::Read(Ok(n)) => match front.input(&buf[..n]) {
                Passed::Hold => continue,
                Passed::Refused(e) => {
                    srv.metrics.proxy_refused("http");
                    warn!(peer = %peer, "http: PROXY refused: {e}");
                    return;
                }
                Passed::Known { address, rest } => {
                    match admit(&srv, address.client) {
                        Ok(s) => slot = Some(s),
                        Err(answer) => {
                            let _ = write_within(&mut tcp, &answer, deadline).await;
                            return;
                        }
                    }
                    rest
                }
                Passed::Bytes(b) => b.into_owned(),
            },
            Wake::Timer => {
                let now = Instant::now();
                match front.timeout(now) {
                    Passed::Refused(e) => {
                        srv.metrics.proxy_refused("http");
                        warn!(peer = %peer, "http: PROXY refused: {e}");
                        return;
                    }
                    Passed::Bytes(b) => b.into_owned(),
                    Passed::Hold | Passed::Known { .. } if now >= deadline => {
                        if slot.is_some() {
                            let answer =
                                http::text(Status::RequestTimeout, "request timeout\n", false);
                            srv.metrics.http_request("other", 408);
                            let _ =
                                write_within(&mut tcp, &answer, now + Duration::from_secs(1)).await;
                        }
                        info!(peer = %peer, "http: request head not complete in {REQUEST_TIMEOUT:?}");
                        return;
                    }
                    Passed::Hold | Passed::Known { .. } => continue,
                }
            }
        };
        if slot.is_none() {
            // Bytes before a required header's decision cannot happen
            // (the front holds them); be safe anyway.
            continue;
        }
        // Keep no more than the limit allows, plus one byte to tell "over".
        let room = (listener.limits.max_head + 1).saturating_sub(head.len());
        head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        match feed(&srv, &listener.limits, &head).await {
            Step::More => continue,
            Step::Answer(answer, path, code) => {
                srv.metrics.http_request(path, code);
                if write_within(&mut tcp, &answer, Instant::now() + REQUEST_TIMEOUT)
                    .await
                    .is_err()
                {
                    info!(peer = %peer, "http: client did not take the answer in time");
                }
                linger(&mut tcp, &mut buf).await;
                drop(slot);
                return;
            }
        }
    }
}

/// How long, and how many bytes, a closing connection reads and drops
/// after its answer (see [`linger`]).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Closes after an answer: ends the write side, then reads and drops what
/// the client still sends (a refused oversized head, a body) for at most
/// [`LINGER`] and [`LINGER_BYTES`], so the kernel does not reset the
/// connection (and the answer with it) for unread input. Bounded either
/// way, so a client cannot hold the place by sending more.
async fn linger(tcp: &mut TcpStream, buf: &mut [u8]) {
    let _ = tcp.flush().await;
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let read = async { tcp.read(buf).await.ok() };
        let late = async {
            Timer::at(until).await;
            None
        };
        match read.or(late).await {
            Some(n) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// A place under the HTTP budget, or the 503 to send.
fn admit(srv: &Arc<Server>, client: SocketAddr) -> Result<Slot, Vec<u8>> {
    srv.admit(Service::Http, client.ip()).map_err(|refusal| {
        info!(client = %client, "http: connection refused: {refusal:?}");
        srv.metrics.http_request("other", 503);
        http::text(Status::ServiceUnavailable, "too many connections\n", false)
    })
}

async fn write_within(tcp: &mut TcpStream, bytes: &[u8], until: Instant) -> std::io::Result<()> {
    let write = async {
        tcp.write_all(bytes).await?;
        tcp.flush().await
    };
    let late = async {
        Timer::at(until).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timeout",
        ))
    };
    write.or(late).await
}

async fn feed(srv: &Arc<Server>, limits: &HttpLimits, head: &[u8]) -> Step {
    let req = match http::read_request(head, limits) {
        Parse::Incomplete => return Step::More,
        Parse::Bad(bad) => {
            let s = bad.status();
            return Step::Answer(http::refusal(bad), "other", s.code());
        }
        Parse::Complete(req) => req,
    };
    let head_only = req.method == Method::Head;
    match http::route(&req) {
        Route::Healthz => Step::Answer(http::text(Status::Ok, "ok\n", head_only), "/healthz", 200),
        Route::NotFound => Step::Answer(
            http::text(Status::NotFound, "not found\n", head_only),
            "other",
            404,
        ),
        Route::Metrics => {
            let s = srv.clone();
            let text = smol::unblock(move || {
                let state = state(&s);
                s.metrics.encode(&state)
            })
            .await;
            Step::Answer(
                http::response(
                    Status::Ok,
                    crate::metrics::CONTENT_TYPE,
                    text.as_bytes(),
                    head_only,
                ),
                "/metrics",
                200,
            )
        }
        Route::Readyz => {
            let s = srv.clone();
            let failed = smol::unblock(move || readiness(&s)).await;
            if failed.is_empty() {
                Step::Answer(http::text(Status::Ok, "ready\n", head_only), "/readyz", 200)
            } else {
                let body = format!("not ready:\n{}\n", failed.join("\n"));
                Step::Answer(
                    http::text(Status::ServiceUnavailable, &body, head_only),
                    "/readyz",
                    503,
                )
            }
        }
    }
}

/// The state gauges, read from the queue, the relay and the certificate
/// (blocking: call off the executor).
pub fn state(srv: &Server) -> State {
    let now = unix_now();
    let mut st = State::default();
    if let Ok(q) = srv.queue.stats(now) {
        st.queue_messages = i64::try_from(q.size).unwrap_or(i64::MAX);
        st.queue_deferred = i64::try_from(q.deferred).unwrap_or(i64::MAX);
        st.queue_oldest_age = i64::try_from(q.oldest_age).unwrap_or(i64::MAX);
    }
    if let Some(relay) = &srv.relay {
        st.relay_daily_limit = i64::from(relay.cfg.daily_limit);
        let today = Window::containing(now, postern_core::policy::relay::DAY);
        st.relay_sent_today = srv
            .counters
            .get(RELAY_COUNTER, today)
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(0);
    }
    if let Some(cert) = &srv.cert {
        st.certificate_expiry = cert
            .leaf()
            .and_then(|der| postern_core::x509::not_after(&der))
            .unwrap_or(0);
    }
    st
}

static PROBES: AtomicU64 = AtomicU64::new(0);

/// The readiness checks that fail, each named (blocking: call off the
/// executor). Empty: ready.
pub fn readiness(srv: &Server) -> Vec<String> {
    let mut failed = Vec::new();
    let want = srv.config.listeners.len();
    let bound = usize::try_from(srv.metrics.listeners_bound()).unwrap_or(0);
    if bound < want {
        failed.push(format!("listeners: {bound} of {want} bound"));
    }
    // A real write, sync and remove in the mail store's root: what every
    // delivery needs.
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = srv
        .config
        .data_dir
        .join(format!(".postern-readyz-{}-{n}", std::process::id()));
    let written = (|| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        f.write_all(b"ready\n")?;
        f.sync_all()?;
        std::fs::remove_file(&probe)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&probe);
        failed.push(format!(
            "mail store: cannot write in {}: {e}",
            srv.config.data_dir.display()
        ));
    }
    if let Err(e) = srv.queue.list() {
        failed.push(format!("queue: cannot list: {e}"));
    }
    if srv.config.tls.is_some() && srv.cert.as_ref().and_then(|c| c.leaf()).is_none() {
        failed.push("certificate: none loaded".to_owned());
    }
    failed
}
