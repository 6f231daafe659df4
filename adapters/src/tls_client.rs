//! The TLS client configuration of the connections Postern makes: to the
//! smarthost, to the servers the probe checks, and to PostgreSQL. rustls
//! on ring, its safe default protocol versions, no client certificate.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::sync::Arc;

/// A client configuration trusting the certificates in `ca_pem` (one or
/// more PEM blocks), or the public Web PKI roots without it.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// [`client_config`] for the CA file `ca_file` when given (read here);
/// errors name the file.
pub fn client_config_from(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let pem = match ca_file {
        Some(f) => Some(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?),
        None => None,
    };
    client_config(pem.as_deref()).map_err(|e| match ca_file {
        Some(f) => format!("{}: {e}", f.display()),
        None => e,
    })
}
