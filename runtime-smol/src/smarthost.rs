//! The smarthost: its settings made ready (TLS client with the trust
//! anchors, SASL credentials from `sasl_passwd`).

use crate::config::RelayConfig;
use futures_rustls::TlsConnector;
use postern_core::policy::queue::RetryPolicy;
use postern_core::smtp::client::ClientConfig;
use std::sync::Arc;

/// The relay's settings made ready: TLS client, credentials, retry schedule.
pub struct Relay {
    /// The settings.
    pub cfg: RelayConfig,
    /// The SMTP client's settings (name, TLS requirement, credentials).
    pub client: Arc<ClientConfig>,
    /// TLS toward the smarthost.
    pub tls: TlsConnector,
    /// The retry schedule.
    pub policy: RetryPolicy,
}

/// Why the relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The credentials file could not be read or has no entry.
    #[error("relay credentials: {0}")]
    Credentials(String),
    /// The CA file is unusable (or rustls refused the configuration).
    #[error("relay CA file: {0}")]
    Ca(String),
}

impl Relay {
    /// Reads the credentials and trust anchors.
    pub fn new(cfg: RelayConfig, hostname: &str) -> Result<Self, RelayError> {
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
        let tls = postern_adapters::tls_client::client_config_from(cfg.ca_file.as_deref())
            .map_err(RelayError::Ca)?;
        Ok(Self {
            cfg,
            client: Arc::new(client),
            tls: TlsConnector::from(Arc::new(tls)),
            policy: RetryPolicy::default(),
        })
    }

    /// The smarthost as `host:port`.
    pub fn target(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }
}
