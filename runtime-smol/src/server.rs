//! What every connection task shares: the configuration, the stores, TLS,
//! the relay, the connection table. The listeners and their accept loops
//! are in `listen.rs`.

use crate::config::Config;
use crate::tls::{server_config, ReloadingCert};
use futures_rustls::TlsAcceptor;
use postern_adapters::maildir::Maildir;
use postern_adapters::spool::Spool;
use postern_adapters::store::{Counters, Directory, FileCounters, MailboxId, MailboxStore, Queue};
use postern_core::policy::admission::{AdmissionConfig, ConnectionTable, Refusal, Service, Ticket};
use postern_core::policy::auth::{AuthThrottle, AuthThrottleConfig};
use postern_core::smtp::SmtpConfig;
use smol::channel::{Receiver, Sender};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Everything the connection tasks share.
pub struct Server {
    /// The checked configuration.
    pub config: Config,
    /// SMTP settings for the core.
    pub smtp: Arc<SmtpConfig>,
    /// Accounts and aliases.
    pub directory: Arc<dyn Directory>,
    /// The group-commit writer for local delivery.
    pub committer: crate::commit::Committer,
    /// IMAP settings for the core.
    pub imap: Arc<postern_core::imap::session::ImapConfig>,
    /// The mailbox store (IMAP and local delivery).
    pub mailstore: Arc<dyn MailboxStore>,
    /// Wakes IDLE sessions when their folder changes.
    pub hub: Arc<Hub>,
    /// TLS, if configured.
    pub tls: Option<TlsAcceptor>,
    /// The smarthost, if outbound mail is relayed.
    pub relay: Option<Arc<crate::smarthost::Relay>>,
    /// The durable queue: remote recipients, and local copies to retry.
    pub queue: Arc<dyn Queue>,
    /// Counters several replicas would share (messages relayed today).
    pub counters: Arc<dyn Counters>,
    /// Wakes the relay worker when a message was queued.
    pub relay_wake: Sender<()>,
    /// The relay worker's end of `relay_wake`.
    pub relay_wake_rx: Receiver<()>,
    /// The certificate, reloaded when its files change.
    pub cert: Option<Arc<ReloadingCert>>,
    /// The Prometheus metrics (`/metrics` on an `http` listener).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Outbound DKIM keys (`[dkim]`).
    pub dkim: Option<Arc<crate::dkim::Signer>>,
    /// SRS for forwarded mail (`[srs]`).
    pub srs: Option<Arc<crate::srs::Srs>>,
    /// Message authentication of MX mail, when `[auth] enable`.
    pub verifier: Option<Arc<crate::msgauth::Verifier>>,
    /// The users' spam classifiers: beside their Maildirs, or in the
    /// database with `[store] backend = "postgres"`.
    pub spam: Arc<postern_adapters::spamstore::SpamStore>,
    /// Some account may have a storage limit (`[imap] quota_mib` or a
    /// quotas file line): without one, RCPT asks the store nothing.
    pub quotas: bool,
    ids: AtomicU64,
    connections: Mutex<ConnectionTable>,
    auth: Mutex<AuthThrottle>,
}

/// Who waits on which folder (IDLE), woken by deliveries and by other
/// sessions' changes.
#[derive(Debug, Default)]
pub struct Hub {
    waiters: std::sync::Mutex<
        std::collections::HashMap<
            postern_adapters::store::MailboxId,
            Vec<smol::channel::Sender<()>>,
        >,
    >,
}

impl Hub {
    /// A receiver that gets a message when `folder` next changes.
    pub fn wait(&self, folder: &postern_adapters::store::MailboxId) -> smol::channel::Receiver<()> {
        let (tx, rx) = smol::channel::bounded(1);
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let list = w.entry(folder.to_owned()).or_default();
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }

    /// Wakes everyone waiting on `folder`.
    pub fn notify(&self, folder: &postern_adapters::store::MailboxId) {
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
    ticket: Option<Ticket>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.srv
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(t);
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
    /// The PostgreSQL backend (database or bucket) is unusable.
    #[error("store: {0}")]
    Store(String),
    /// The data folder is unusable.
    #[error("data folder {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The relay is misconfigured.
    #[error(transparent)]
    Relay(#[from] crate::smarthost::RelayError),
    /// The queue folder is unusable.
    #[error("queue folder {0}: {1}")]
    Queue(String, std::io::Error),
    /// A DKIM key is unusable.
    #[error("dkim: {0}")]
    Dkim(#[from] crate::dkim::KeyError),
    /// The SRS secret file is unusable.
    #[error("srs: {0}")]
    Srs(#[from] crate::srs::SecretError),
    /// The DNS resolver for message authentication cannot be set up.
    #[error(transparent)]
    Dns(#[from] crate::msgauth::VerifierError),
}

/// The counters file beside the queue: the daily relay count survives a
/// restart (a count kept by an older Postern in `relay-count` is taken over).
fn open_counters(config: &Config) -> Result<Arc<dyn Counters>, StartError> {
    let queue_err =
        |e: std::io::Error| StartError::Queue(config.queue_dir.display().to_string(), e);
    std::fs::create_dir_all(&config.queue_dir).map_err(queue_err)?;
    let counters = FileCounters::open(config.queue_dir.join("counters"), 1024)
        .map_err(|e| queue_err(e.into()))?;
    let legacy = config.queue_dir.join("relay-count");
    if let Ok(text) = std::fs::read_to_string(&legacy) {
        if let Some((window, n)) = postern_adapters::store::counters::legacy_day_count(&text) {
            if counters.get(RELAY_COUNTER, window).unwrap_or(0) == 0 {
                counters
                    .add(RELAY_COUNTER, window, n)
                    .map_err(|e| queue_err(e.into()))?;
            }
        }
        let _ = std::fs::remove_file(&legacy);
    }
    Ok(Arc::new(counters))
}

/// The stores a backend gives the server: mailboxes, queue, counters,
/// the committer's periodic maintenance, and the PostgreSQL stores when
/// they are the backend.
type Backend = (
    Arc<dyn MailboxStore>,
    Arc<dyn Queue>,
    Arc<dyn Counters>,
    Box<dyn Fn() + Send>,
    Option<crate::pgstore::PgStores>,
);

/// The counter of messages relayed, in UTC-day windows.
pub const RELAY_COUNTER: &str = "relay";

impl Server {
    /// Loads the directory and certificate named by the configuration.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let directory = postern_adapters::directory::Directory::load(
            &config.accounts,
            config.virtual_file.as_deref(),
        )?;
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
        let relay = match &config.relay {
            Some(r) => Some(Arc::new(crate::smarthost::Relay::new(
                r.clone(),
                &config.hostname,
            )?)),
            None => None,
        };
        let (wake, wake_rx) = smol::channel::bounded(1);
        let maildir = Arc::new(Maildir::new(&config.data_dir, &config.hostname));
        let mut imap = postern_core::imap::session::ImapConfig::new(config.hostname.clone());
        imap.limits.max_append_literal = config.smtp.limits.max_message_size;
        imap.hierarchy_separator = config.hierarchy_separator;
        imap.mime = config.mime;
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
        let any_quota = config.quota.is_some() || !quotas.is_empty();
        let (mailstore, queue, counters, maintenance, pg): Backend = match &config.store {
            crate::config::store::StoreBackend::Maildir => {
                // The queue always exists: it holds remote recipients for
                // the relay, and local copies that failed beside durable
                // ones, for retry.
                let spool = Spool::open(&config.queue_dir).map_err(|e| {
                    StartError::Queue(config.queue_dir.display().to_string(), e.into())
                })?;
                let mailstore = Arc::new(
                    postern_adapters::mailstore::MailStore::new(maildir.clone())
                        .with_quota(config.quota, quotas)
                        .with_summary_cache(postern_adapters::mailstore::SummaryCacheLimits {
                            max_bytes: config.summary_cache_bytes,
                            mime: config.mime,
                            ..Default::default()
                        }),
                );
                let cleaned = (maildir.clone(), spool.clone());
                (
                    mailstore,
                    Arc::new(spool),
                    open_counters(&config)?,
                    Box::new(move || crate::commit::clean(&cleaned.0, Some(&cleaned.1))),
                    None,
                )
            }
            crate::config::store::StoreBackend::Postgres(s) => {
                let stores = crate::pgstore::open(s, config.quota, quotas, config.mime)?;
                (
                    crate::pgstore::as_store(&stores),
                    stores.queue.clone(),
                    stores.counters.clone(),
                    Box::new(|| {}),
                    Some(stores),
                )
            }
        };
        let committer = crate::commit::Committer::start(mailstore.clone(), maintenance)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let mut admission = AdmissionConfig::default();
        for service in [Service::Mx, Service::Submission] {
            let l = admission.limits_mut(service);
            l.max_connections = config.max_connections;
            l.max_per_ip = config.max_connections_per_client;
            l.rate_window = config.rate.time_unit;
        }
        let mx = admission.limits_mut(Service::Mx);
        mx.max_rate = config.rate.connection_rate_limit;
        mx.max_message_rate = config.rate.message_rate_limit;
        admission.exempt = config.rate.exceptions.clone();
        let l = admission.limits_mut(Service::Imap);
        l.max_connections = config.imap_max_connections;
        l.max_per_ip = config.imap_max_connections_per_client;
        l.rate_window = config.rate.time_unit;
        let dkim = match &config.dkim {
            Some(c) => {
                let signer = crate::dkim::Signer::load(c)?;
                tracing::info!("DKIM signing for {:?}", signer.domains());
                Some(Arc::new(signer))
            }
            None => None,
        };
        let srs = match &config.srs {
            Some(c) => Some(Arc::new(crate::srs::Srs::load(c)?)),
            None => None,
        };
        let verifier = match config.auth.enable {
            true => Some(Arc::new(crate::msgauth::Verifier::new(
                &config.dns,
                &config.auth,
                &config.hostname,
            )?)),
            false => None,
        };
        let hub = Arc::new(Hub::default());
        let h = hub.clone();
        mailstore.on_change(Arc::new(move |id: &MailboxId| h.notify(id)));
        if let Some(p) = &pg {
            // Other replicas' changes wake this one's IDLE sessions.
            crate::pgstore::spawn_listener(p.pg.clone(), p.mailbox.clone())
                .map_err(|e| StartError::Store(format!("listener thread: {e}")))?;
        }
        // The spam classifiers: files beside the Maildirs, or the
        // database's table with the database backend (shared by replicas).
        let warn: postern_adapters::spamstore::Warn = Arc::new(|m: &str| tracing::warn!("{m}"));
        let spam = Arc::new(
            match &pg {
                Some(p) => postern_adapters::spamstore::SpamStore::with_backend(
                    Arc::new(postern_adapters::pg::PgSpam::new(p.pg.clone())),
                    warn,
                ),
                None => postern_adapters::spamstore::SpamStore::new(&config.data_dir, warn),
            }
            .with_cache_budget(
                usize::try_from(config.spam.cache_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
        );
        Ok(Arc::new(Self {
            imap: Arc::new(imap),
            mailstore,
            hub,
            committer,
            relay,
            queue,
            counters,
            relay_wake: wake,
            relay_wake_rx: wake_rx,
            smtp: Arc::new(config.smtp.clone()),
            directory: Arc::new(directory),
            tls,
            cert,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            dkim,
            srs,
            verifier,
            spam,
            quotas: any_quota,
            ids: AtomicU64::new(0),
            connections: Mutex::new(ConnectionTable::new(admission)),
            auth: Mutex::new(AuthThrottle::new(AuthThrottleConfig {
                base_delay: config.auth_failure_delay,
                // Doubling four times from the base, at most Dovecot's 15 s.
                max_delay: config
                    .auth_failure_delay
                    .saturating_mul(16)
                    .min(std::time::Duration::from_secs(15))
                    .max(config.auth_failure_delay),
                ..AuthThrottleConfig::default()
            })),
            config,
        }))
    }

    /// Takes a place for a session of `service` from the real client
    /// address, or gives the admission policy's refusal.
    pub fn admit(self: &Arc<Self>, service: Service, ip: IpAddr) -> Result<Slot, Refusal> {
        let ticket = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(service, ip, Instant::now())
            .inspect_err(|r| self.metrics.admission_refused(service, r))?;
        Ok(Slot {
            srv: self.clone(),
            ticket: Some(ticket),
        })
    }

    /// Counts a transaction (MAIL) from the real client address; false when
    /// it goes past the service's message rate.
    pub fn message_allowed(&self, service: Service, ip: IpAddr) -> bool {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .message(service, ip, Instant::now())
    }

    /// Records a failed login from the real client address; returns how
    /// long to hold the failure answer back (growing per address and
    /// account, across connections).
    pub fn auth_failed(&self, ip: IpAddr, account: &str) -> std::time::Duration {
        self.auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(ip, account, Instant::now())
    }

    /// Records a successful login: the address's penalty ends.
    pub fn auth_succeeded(&self, ip: IpAddr) {
        self.auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .succeeded(ip);
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
