//! TLS: the server configuration (rustls), a certificate that reloads when
//! its files change, and the self-signed certificate of the embedded
//! default.

use crate::config::TlsFiles;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

fn load_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let ferr = |p: &Path, m: String| TlsError::File {
        path: p.display().to_string(),
        message: m,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| ferr(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| ferr(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(ferr(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| ferr(&files.key, e.to_string()))?;
    let signing = any_supported_type(&key).map_err(|e| ferr(&files.key, e.to_string()))?;
    Ok(CertifiedKey::new(certs, signing))
}

fn mtimes(files: &TlsFiles) -> Stamp {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

/// Modification times of the certificate and key files.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// The server certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl ReloadingCert {
    /// Loads the certificate; fails if the files are unusable.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = mtimes(&files);
        let key = load_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new((Arc::new(key), stamp)),
        }))
    }

    /// Reloads if either file changed. A broken new file keeps the old
    /// certificate in service (and is reported).
    pub fn check(&self) -> Result<bool, TlsError> {
        let stamp = mtimes(&self.files);
        let unchanged = self.current.read().map(|c| c.1 == stamp).unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let key = load_key(&self.files)?;
        if let Ok(mut c) = self.current.write() {
            *c = (Arc::new(key), stamp);
        }
        Ok(true)
    }

    /// The certificate in service (the chain's first), DER.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.0.cert.first().cloned())
    }

    /// How often [`Self::check`] should run.
    pub fn interval(&self) -> std::time::Duration {
        self.files.reload_check
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

/// A rustls server configuration around the reloading certificate.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// Writes a self-signed certificate for `names` to `cert` and `key`
/// (PEM), unless both exist already.
pub fn ensure_self_signed(names: &[String], cert: &Path, key: &Path) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let ferr = |p: &Path, m: String| TlsError::File {
        path: p.display().to_string(),
        message: m,
    };
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| ferr(cert, e.to_string()))?;
    std::fs::write(cert, generated.cert.pem()).map_err(|e| ferr(cert, e.to_string()))?;
    write_private(key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|e| ferr(key, e.to_string()))?;
    Ok(true)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
