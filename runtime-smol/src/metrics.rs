//! The daemon's metrics, in Prometheus text format (version 0.0.4) through
//! `prometheus-client`.
//!
//! Counters and session gauges move where the events happen (one call at
//! the place); the gauges that describe state (the queue, the relay's daily
//! count, the certificate) are read when a scrape comes, off the executor,
//! and handed to [`Metrics::encode`] as a [`State`].
//!
//! | name | type | labels |
//! |---|---|---|
//! | `postern_connections_total` | counter | `listener`, `protocol` |
//! | `postern_sessions` | gauge | `listener`, `protocol` |
//! | `postern_admission_refused_total` | counter | `service`, `reason` |
//! | `postern_proxy_refused_total` | counter | `protocol` |
//! | `postern_messages_total` | counter | `result` (accepted, rejected, failed), `reason` |
//! | `postern_deliveries_total` | counter | `destination` (mailbox, queue, relay), `result` (ok, deferred, failed, sent, bounced) |
//! | `postern_auth_failures_total` | counter | `protocol` |
//! | `postern_postscreen_rejections_total` | counter | `reason` |
//! | `postern_tls_handshake_failures_total` | counter | `protocol` |
//! | `postern_tls_reload_failures_total` | counter | |
//! | `postern_http_requests_total` | counter | `path`, `code` |
//! | `postern_imap_sessions` | gauge | |
//! | `postern_imap_idle_sessions` | gauge | |
//! | `postern_listeners_bound` | gauge | |
//! | `postern_queue_messages` | gauge | |
//! | `postern_queue_deferred_messages` | gauge | |
//! | `postern_queue_oldest_age_seconds` | gauge | |
//! | `postern_relay_sent_today` | gauge | |
//! | `postern_relay_daily_limit` | gauge | |
//! | `postern_certificate_expiry_timestamp_seconds` | gauge | |
//! | `postern_build_info` | gauge | `version` |

use postern_core::policy::admission::{Refusal, Service};
use postern_core::policy::delivery::{store_verdict, MessageRefusal, Outcome};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One label.
type L = (&'static str, String);
type Family1<M> = Family<[L; 1], M>;
type Family2<M> = Family<[L; 2], M>;

fn l1(k: &'static str, v: impl Into<String>) -> [L; 1] {
    [(k, v.into())]
}

fn l2(k1: &'static str, v1: impl Into<String>, k2: &'static str, v2: impl Into<String>) -> [L; 2] {
    [(k1, v1.into()), (k2, v2.into())]
}

/// What a scrape reads from the stores (see [`Metrics::encode`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Messages in the outbound queue.
    pub queue_messages: i64,
    /// Of those, messages tried at least once (deferred).
    pub queue_deferred: i64,
    /// Seconds since the oldest queued message arrived (0: empty queue).
    pub queue_oldest_age: i64,
    /// Messages relayed today (UTC).
    pub relay_sent_today: i64,
    /// The daily relay cap (0: none, or no relay).
    pub relay_daily_limit: i64,
    /// The certificate's `notAfter` as a Unix time (0: no certificate).
    pub certificate_expiry: i64,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family2<Counter>,
    sessions: Family2<Gauge>,
    admission_refused: Family2<Counter>,
    proxy_refused: Family1<Counter>,
    messages: Family2<Counter>,
    deliveries: Family2<Counter>,
    auth_failures: Family1<Counter>,
    postscreen: Family1<Counter>,
    tls_failures: Family1<Counter>,
    tls_reload_failures: Counter,
    http_requests: Family2<Counter>,
    imap_sessions: Gauge,
    imap_idle: Gauge,
    listeners_bound: Gauge,
    queue_messages: Gauge,
    queue_deferred: Gauge,
    queue_oldest_age: Gauge,
    relay_sent_today: Gauge,
    relay_daily_limit: Gauge,
    certificate_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A session counted in `postern_sessions` until dropped.
#[derive(Debug)]
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The name of a service, for labels.
pub fn service_name(service: Service) -> &'static str {
    match service {
        Service::Mx => "mx",
        Service::Submission => "submission",
        Service::Imap => "imap",
        Service::Http => "http",
    }
}

/// The name of an admission refusal, for labels.
pub fn refusal_name(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::ServerFull => "server_full",
        Refusal::TooManyConnections { .. } => "too_many_connections",
        Refusal::ConnectionRate { .. } => "connection_rate",
    }
}

impl Metrics {
    /// Every family registered, all at zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let connections = Family2::<Counter>::default();
        r.register(
            "postern_connections",
            "Connections accepted, by listener address and protocol",
            connections.clone(),
        );
        let sessions = Family2::<Gauge>::default();
        r.register(
            "postern_sessions",
            "Connections open now, by listener address and protocol",
            sessions.clone(),
        );
        let admission_refused = Family2::<Counter>::default();
        r.register(
            "postern_admission_refused",
            "Connections refused by the connection limits, by service and reason",
            admission_refused.clone(),
        );
        let proxy_refused = Family1::<Counter>::default();
        r.register(
            "postern_proxy_refused",
            "Connections closed by the PROXY gate (untrusted peer, missing, late or forbidden header)",
            proxy_refused.clone(),
        );
        let messages = Family2::<Counter>::default();
        r.register(
            "postern_messages",
            "Messages and their envelope parts accepted or rejected, by result and reason",
            messages.clone(),
        );
        let deliveries = Family2::<Counter>::default();
        r.register(
            "postern_deliveries",
            "Deliveries into mailboxes, into the queue and through the relay, by result",
            deliveries.clone(),
        );
        let auth_failures = Family1::<Counter>::default();
        r.register(
            "postern_auth_failures",
            "Failed logins, by protocol",
            auth_failures.clone(),
        );
        let postscreen = Family1::<Counter>::default();
        r.register(
            "postern_postscreen_rejections",
            "Clients turned away before the SMTP greeting, by reason",
            postscreen.clone(),
        );
        let tls_failures = Family1::<Counter>::default();
        r.register(
            "postern_tls_handshake_failures",
            "TLS handshakes that failed or timed out, by protocol",
            tls_failures.clone(),
        );
        let http_requests = Family2::<Counter>::default();
        r.register(
            "postern_http_requests",
            "Requests on the monitoring listener, by path and status code",
            http_requests.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let imap_sessions = gauge(&mut r, "postern_imap_sessions", "IMAP sessions open now");
        let imap_idle = gauge(
            &mut r,
            "postern_imap_idle_sessions",
            "IMAP sessions in IDLE now",
        );
        let listeners_bound = gauge(
            &mut r,
            "postern_listeners_bound",
            "Listeners bound and accepting",
        );
        let queue_messages = gauge(
            &mut r,
            "postern_queue_messages",
            "Messages in the outbound queue",
        );
        let queue_deferred = gauge(
            &mut r,
            "postern_queue_deferred_messages",
            "Messages in the outbound queue tried at least once",
        );
        let queue_oldest_age = Gauge::default();
        r.register_with_unit(
            "postern_queue_oldest_age",
            "Age of the oldest message in the outbound queue",
            Unit::Seconds,
            queue_oldest_age.clone(),
        );
        let relay_sent_today = gauge(
            &mut r,
            "postern_relay_sent_today",
            "Messages relayed through the smarthost today (UTC)",
        );
        let relay_daily_limit = gauge(
            &mut r,
            "postern_relay_daily_limit",
            "The smarthost's daily cap (0: none)",
        );
        let tls_reload_failures = Counter::default();
        r.register(
            "postern_tls_reload_failures",
            "Changed certificate files that could not be loaded (the old certificate kept)",
            tls_reload_failures.clone(),
        );
        let certificate_expiry = gauge(
            &mut r,
            "postern_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires, as a Unix time (0: none)",
        );
        let build = Family1::<Gauge>::default();
        r.register("postern_build_info", "The running version", build.clone());
        build
            .get_or_create(&l1("version", env!("CARGO_PKG_VERSION")))
            .set(1);
        Self {
            registry: r,
            connections,
            sessions,
            admission_refused,
            proxy_refused,
            messages,
            deliveries,
            auth_failures,
            postscreen,
            tls_failures,
            tls_reload_failures,
            http_requests,
            imap_sessions,
            imap_idle,
            listeners_bound,
            queue_messages,
            queue_deferred,
            queue_oldest_age,
            relay_sent_today,
            relay_daily_limit,
            certificate_expiry,
        }
    }

    /// A connection accepted on `listener` (its configured address) for
    /// `protocol`; it counts as open until the guard is dropped.
    pub fn connection(&self, listener: &str, protocol: &'static str) -> SessionGuard {
        let labels = l2("listener", listener, "protocol", protocol);
        self.connections.get_or_create(&labels).inc();
        let g = self.sessions.get_or_create(&labels).clone();
        g.inc();
        SessionGuard(g)
    }

    /// The connection limits refused a client.
    pub fn admission_refused(&self, service: Service, refusal: &Refusal) {
        self.admission_refused
            .get_or_create(&l2(
                "service",
                service_name(service),
                "reason",
                refusal_name(refusal),
            ))
            .inc();
    }

    /// The PROXY gate closed a connection.
    pub fn proxy_refused(&self, protocol: &'static str) {
        self.proxy_refused
            .get_or_create(&l1("protocol", protocol))
            .inc();
    }

    /// A message (or a sender or recipient of one) was accepted or
    /// rejected: `result` is `accepted`, `rejected` or `failed`; `reason`
    /// a short bounded word (`stored`, `rcpt_550`, `mail_553`, `data_552`).
    pub fn message(&self, result: &'static str, reason: &str) {
        self.messages
            .get_or_create(&l2("result", result, "reason", reason))
            .inc();
    }

    /// `n` deliveries to `destination` (`mailbox`, `queue`, `relay`) with
    /// `result` (`ok`, `failed`, `full`: the mailbox had no room, `deferred`, `bounced`).
    pub fn deliveries(&self, destination: &'static str, result: &'static str, n: u64) {
        if n > 0 {
            self.deliveries
                .get_or_create(&l2("destination", destination, "result", result))
                .inc_by(n);
        }
    }

    /// One recipient's outcome in a queue attempt (`sent`, `bounced`,
    /// `deferred`): through the relay when `remote`, else a local copy
    /// retried into its mailbox (counted as `ok`, `failed`, `deferred`).
    pub fn queue_attempt(&self, remote: bool, status: &'static str) {
        if remote {
            self.deliveries("relay", status, 1);
        } else {
            let result = match status {
                "sent" => "ok",
                "bounced" => "failed",
                other => other,
            };
            self.deliveries("mailbox", result, 1);
        }
    }

    /// A failed login (`smtp`, `imap`).
    pub fn auth_failure(&self, protocol: &'static str) {
        self.auth_failures
            .get_or_create(&l1("protocol", protocol))
            .inc();
    }

    /// Postscreen turned a client away before the greeting.
    pub fn postscreen_rejection(&self, reason: &str) {
        self.postscreen.get_or_create(&l1("reason", reason)).inc();
    }

    /// A TLS handshake failed (`smtp`, `imap`).
    pub fn tls_handshake_failure(&self, protocol: &'static str) {
        self.tls_failures
            .get_or_create(&l1("protocol", protocol))
            .inc();
    }

    /// Changed certificate files could not be loaded; the old one serves on.
    pub fn tls_reload_failure(&self) {
        self.tls_reload_failures.inc();
    }

    /// A request on the monitoring listener was answered.
    pub fn http_request(&self, path: &'static str, code: u16) {
        self.http_requests
            .get_or_create(&l2("path", path, "code", code.to_string()))
            .inc();
    }

    /// An IMAP session, counted until the guard is dropped.
    pub fn imap_session(&self) -> SessionGuard {
        self.imap_sessions.inc();
        SessionGuard(self.imap_sessions.clone())
    }

    /// An IMAP session in IDLE, counted until the guard is dropped.
    pub fn imap_idle(&self) -> SessionGuard {
        self.imap_idle.inc();
        SessionGuard(self.imap_idle.clone())
    }

    /// `n` listeners are bound and about to accept.
    pub fn listeners_bound_now(&self, n: usize) {
        self.listeners_bound
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Listeners bound and accepting.
    pub fn listeners_bound(&self) -> i64 {
        self.listeners_bound.get()
    }

    /// What an SMTP session's notice counts: PROXY refusals, failed AUTH,
    /// senders, recipients and messages rejected (by reply code), and the
    /// postscreen checks' hits.
    pub fn smtp_notice(&self, notice: &postern_core::smtp::Notice) {
        use postern_core::smtp::Notice;
        match notice {
            Notice::ProxyRefused(_) => self.proxy_refused("smtp"),
            Notice::AuthFailed { .. } => self.auth_failure("smtp"),
            Notice::MailRejected(r) => self.message("rejected", &format!("mail_{}", r.reply.code)),
            Notice::RcptRejected(r) => self.message("rejected", &format!("rcpt_{}", r.reply.code)),
            Notice::MessageRejected(r) => self.message("rejected", &format!("data_{}", r.code)),
            Notice::Pregreet { .. } => self.postscreen_rejection("pregreet"),
            Notice::Pipelining { .. } => self.postscreen_rejection("pipelining"),
            Notice::NonSmtpCommand { .. } => self.postscreen_rejection("non_smtp_command"),
            Notice::BareNewline { .. } => self.postscreen_rejection("bare_newline"),
            Notice::Hangup { .. } => self.postscreen_rejection("hangup"),
            _ => {}
        }
    }

    /// What an IMAP session's notice counts: PROXY refusals, failed logins.
    pub fn imap_notice(&self, notice: &postern_core::imap::event::Notice) {
        use postern_core::imap::event::Notice;
        match notice {
            Notice::ProxyRefused(_) => self.proxy_refused("imap"),
            Notice::LoginFailed { .. } => self.auth_failure("imap"),
            _ => {}
        }
    }

    /// A message's deliveries (`remote` recipients went to the queue) and
    /// whether it was accepted or failed (answered 4xx).
    pub fn delivered(&self, outcome: &Outcome, remote: usize) {
        self.deliveries("mailbox", "ok", outcome.stored as u64);
        self.deliveries("mailbox", "deferred", outcome.kept as u64);
        // A full mailbox is the owner's to empty, not a failing store:
        // counted apart, so that store alerts do not fire on it.
        let full = outcome.full.min(outcome.failed);
        self.deliveries("mailbox", "failed", (outcome.failed - full) as u64);
        self.deliveries("mailbox", "full", full as u64);
        let queued = if outcome.queued { "ok" } else { "failed" };
        self.deliveries("queue", queued, remote as u64);
        match store_verdict(*outcome) {
            Ok(()) => self.message("accepted", "stored"),
            Err(MessageRefusal::MailboxFull | MessageRefusal::TooBigForMailbox) => {
                self.message("failed", "mailbox_full")
            }
            Err(_) => self.message("failed", "store_failed"),
        }
    }

    /// The text exposition, with the state gauges set from `state`.
    pub fn encode(&self, state: &State) -> String {
        self.queue_messages.set(state.queue_messages);
        self.queue_deferred.set(state.queue_deferred);
        self.queue_oldest_age.set(state.queue_oldest_age);
        self.relay_sent_today.set(state.relay_sent_today);
        self.relay_daily_limit.set(state.relay_daily_limit);
        self.certificate_expiry.set(state.certificate_expiry);
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_in_prometheus_style() {
        let m = Metrics::new();
        {
            let _s = m.connection("127.0.0.1:25", "smtp");
            m.message("accepted", "stored");
            m.auth_failure("imap");
            m.admission_refused(
                Service::Http,
                &Refusal::TooManyConnections {
                    ip: [127, 0, 0, 1].into(),
                },
            );
            let text = m.encode(&State {
                queue_oldest_age: 7,
                ..State::default()
            });
            for want in [
                "# TYPE postern_connections_total counter",
                "postern_connections_total{listener=\"127.0.0.1:25\",protocol=\"smtp\"} 1",
                "postern_sessions{listener=\"127.0.0.1:25\",protocol=\"smtp\"} 1",
                "postern_messages_total{result=\"accepted\",reason=\"stored\"} 1",
                "postern_auth_failures_total{protocol=\"imap\"} 1",
                "postern_admission_refused_total{service=\"http\",reason=\"too_many_connections\"} 1",
                "postern_queue_oldest_age_seconds 7",
                "postern_certificate_expiry_timestamp_seconds 0",
                "postern_build_info{version=",
            ] {
                assert!(text.contains(want), "{want} missing in\n{text}");
            }
        }
        let text = m.encode(&State::default());
        assert!(text.contains("postern_sessions{listener=\"127.0.0.1:25\",protocol=\"smtp\"} 0"));
    }
}
