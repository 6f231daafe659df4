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
    let certified = CertifiedKey::new(certs, signing);
    // A key that does not belong to the certificate would fail every
    // handshake: refuse it (a key whose public half is unknown is let be).
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(ferr(
            &files.key,
            "the key does not match the certificate".into(),
        ));
    }
    Ok(certified)
}

/// What identifies one version of a file: the path it resolves to through
/// any symlinks (Kubernetes swaps a `..data` symlink to a new timestamped
/// directory, whose files may even be older than the old ones), and that
/// file's device, inode, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    resolved: std::path::PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn file_stamp(p: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let resolved = std::fs::canonicalize(p).ok()?;
    let m = std::fs::metadata(&resolved).ok()?;
    Some(FileStamp {
        resolved,
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

fn stamps(files: &TlsFiles) -> Stamp {
    (file_stamp(&files.cert), file_stamp(&files.key))
}

/// The certificate's and the key's [`FileStamp`]s.
type Stamp = (Option<FileStamp>, Option<FileStamp>);

/// The certificate in service and what its files looked like when loaded.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    /// Files seen broken: not retried (nor reported again) until they change.
    rejected: Option<Stamp>,
}

/// The server certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Current>,
}

impl ReloadingCert {
    /// Loads the certificate; fails if the files are unusable.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = stamps(&files);
        let key = load_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Current {
                key: Arc::new(key),
                stamp,
                rejected: None,
            }),
        }))
    }

    /// Reloads if either file changed (a new target behind a symlink
    /// counts). A broken new file keeps the old certificate in service and
    /// is reported once (until the files change again).
    pub fn check(&self) -> Result<bool, TlsError> {
        let stamp = stamps(&self.files);
        let seen = self
            .current
            .read()
            .map(|c| c.stamp == stamp || c.rejected.as_ref() == Some(&stamp))
            .unwrap_or(false);
        if seen {
            return Ok(false);
        }
        match load_key(&self.files) {
            Ok(key) => {
                if let Ok(mut c) = self.current.write() {
                    *c = Current {
                        key: Arc::new(key),
                        stamp,
                        rejected: None,
                    };
                }
                Ok(true)
            }
            Err(e) => {
                if let Ok(mut c) = self.current.write() {
                    c.rejected = Some(stamp);
                }
                Err(e)
            }
        }
    }

    /// The certificate in service (the chain's first), DER.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.key.cert.first().cloned())
    }

    /// How often [`Self::check`] should run.
    pub fn interval(&self) -> std::time::Duration {
        self.files.reload_check
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.key.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A Kubernetes Secret volume: `tls.crt` -> `..data/tls.crt`,
    /// `..data` -> `..<timestamp>/`; returns the timestamped directory.
    fn secret_version(root: &Path, stamp: &str, names: &[String]) -> PathBuf {
        let dir = root.join(format!("..{stamp}"));
        std::fs::create_dir(&dir).unwrap();
        ensure_self_signed(names, &dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
        dir
    }

    /// Points `..data` at `..<stamp>` the way the kubelet does: a
    /// `..data_tmp` symlink renamed over `..data`.
    fn swap(root: &Path, stamp: &str) {
        let tmp = root.join("..data_tmp");
        symlink(format!("..{stamp}"), &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
    }

    #[test]
    fn a_kubernetes_secret_swap_is_seen_even_with_an_older_file() {
        let root = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        let old = secret_version(&root, "2026_12_01_20_13_00.1", &["old.example".into()]);
        swap(&root, "2026_12_01_20_13_00.1");
        symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        symlink("..data/tls.key", root.join("tls.key")).unwrap();
        let files = TlsFiles {
            cert: root.join("tls.crt"),
            key: root.join("tls.key"),
            reload_check: Duration::from_secs(1),
        };
        let cert = ReloadingCert::load(files).unwrap();
        let first = cert.leaf().unwrap();
        assert!(!cert.check().unwrap());

        // The new files are older than the old ones and the same size.
        let new = secret_version(&root, "2026_12_01_21_00_00.2", &["new.example".into()]);
        let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for f in ["tls.crt", "tls.key"] {
            let h = std::fs::File::options()
                .append(true)
                .open(new.join(f))
                .unwrap();
            h.set_modified(past).unwrap();
        }
        let _ = old;
        swap(&root, "2026_12_01_21_00_00.2");
        assert!(cert.check().unwrap());
        let second = cert.leaf().unwrap();
        assert_ne!(first, second);
        assert!(!cert.check().unwrap());

        // A broken version keeps the certificate in service, reported once.
        let broken = root.join("..2026_12_01_22_00_00.3");
        std::fs::create_dir(&broken).unwrap();
        std::fs::write(broken.join("tls.crt"), b"not a certificate").unwrap();
        std::fs::write(broken.join("tls.key"), b"not a key").unwrap();
        swap(&root, "2026_12_01_22_00_00.3");
        assert!(cert.check().is_err());
        assert_eq!(cert.leaf().unwrap(), second);
        assert!(!cert.check().unwrap());

        // A key from another certificate is refused too.
        let mixed = root.join("..2026_12_01_23_00_00.4");
        std::fs::create_dir(&mixed).unwrap();
        std::fs::copy(new.join("tls.crt"), mixed.join("tls.crt")).unwrap();
        std::fs::copy(old.join("tls.key"), mixed.join("tls.key")).unwrap();
        swap(&root, "2026_12_01_23_00_00.4");
        assert!(cert.check().is_err());
        assert_eq!(cert.leaf().unwrap(), second);
        let _ = std::fs::remove_dir_all(&root);
    }
}
