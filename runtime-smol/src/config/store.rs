//! `[store]`, `[postgres]` and `[s3]`: which backend keeps mail, queue and
//! counters (issue 16).
//!
//! ```toml
//! [store]
//! backend = "maildir"                          # maildir (default) | postgres
//!
//! [postgres]                                   # only with backend = "postgres"
//! url = "host=db.example.net user=postern dbname=postern"
//! max_connections = 16                         # per replica, 1 to 1,000
//! password_file = "/run/secrets/pg-password"   # optional: the password, in a file
//! ca_file = "/etc/postern/pg-ca.crt"           # optional: TLS, the server verified against
//!                                              # these CAs and its name; add sslmode=require
//!                                              # to the url to refuse a server without TLS
//!
//! [s3]                                         # only with backend = "postgres"
//! endpoint = "https://s3.example.net"          # path-style requests
//! bucket = "postern-mail"
//! region = "us-east-1"                         # default us-east-1
//! access_key = "AKIA..."
//! secret_key_file = "/run/secrets/s3-secret"   # the secret, in a file
//! ```
//!
//! With `backend = "postgres"` the mailboxes, the outbound queue and the
//! shared counters live in PostgreSQL and the message bodies in the
//! bucket; the directory, TLS files and the spam classifiers stay files.
//! Maildir is the default.

use super::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    url: Spanned<String>,
    max_connections: Option<Spanned<u64>>,
    password_file: Option<Spanned<PathBuf>>,
    ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    endpoint: Spanned<String>,
    bucket: Spanned<String>,
    region: Option<Spanned<String>>,
    access_key: Spanned<String>,
    secret_key_file: Spanned<PathBuf>,
}

/// Which backend keeps mail, queue and counters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StoreBackend {
    /// Maildir folders, the spool folder and counter files (one replica).
    #[default]
    Maildir,
    /// PostgreSQL and an S3 bucket, shared by several replicas.
    Postgres(PostgresSettings),
}

/// The database and bucket of the PostgreSQL backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The connection string (URL or `key=value` pairs).
    pub url: String,
    /// Connections per replica.
    pub max_connections: usize,
    /// The file holding the database password, if not in `url` (read at
    /// start, never logged).
    pub password_file: Option<PathBuf>,
    /// Certificate authorities (PEM) that make connections TLS, the
    /// server's certificate and name verified.
    pub ca_file: Option<PathBuf>,
    /// `http(s)://host[:port]` of the object store.
    pub s3_endpoint: String,
    /// The bucket.
    pub s3_bucket: String,
    /// The region signed for.
    pub s3_region: String,
    /// The access key id.
    pub s3_access_key: String,
    /// The file holding the secret key (read at start, never logged).
    pub s3_secret_key_file: PathBuf,
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError;

/// Checks the three sections. A `[postgres]` or `[s3]` without
/// `backend = "postgres"` is refused (it would be silently unused).
pub(super) fn parse(
    store: Option<&Spanned<RawStore>>,
    postgres: Option<&Spanned<RawPostgres>>,
    s3: Option<&Spanned<RawS3>>,
    base: &Path,
    at: At<'_>,
) -> Result<StoreBackend, ConfigError> {
    let backend = store.and_then(|s| s.get_ref().backend.as_ref());
    let postgres_chosen = match backend.map(|b| (b.get_ref().as_str(), b.span())) {
        None | Some(("maildir", _)) => false,
        Some(("postgres", _)) => true,
        Some((other, span)) => {
            return Err(at(
                span,
                "store.backend",
                format!("{other:?}: expected \"maildir\" or \"postgres\""),
            ))
        }
    };
    if !postgres_chosen {
        if let Some(p) = postgres {
            return Err(at(
                p.span(),
                "postgres",
                "only used with [store] backend = \"postgres\"".into(),
            ));
        }
        if let Some(s) = s3 {
            return Err(at(
                s.span(),
                "s3",
                "only used with [store] backend = \"postgres\"".into(),
            ));
        }
        return Ok(StoreBackend::Maildir);
    }
    let span = backend.map_or(0..0, Spanned::span);
    let Some(p) = postgres else {
        return Err(at(
            span,
            "postgres",
            "backend = \"postgres\" needs a [postgres] section with url".into(),
        ));
    };
    let Some(s) = s3 else {
        return Err(at(
            span,
            "s3",
            "backend = \"postgres\" needs an [s3] section for message bodies".into(),
        ));
    };
    let (p, s) = (p.get_ref(), s.get_ref());
    let url = p.url.get_ref().trim();
    if url.is_empty() || url.len() > 4096 {
        return Err(at(
            p.url.span(),
            "postgres.url",
            "must be a connection string".into(),
        ));
    }
    let max_connections = super::Range("postgres.max_connections", 16, 1, 1000)
        .get(p.max_connections.as_ref(), &at)?;
    let endpoint = s.endpoint.get_ref().trim();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.len() > 2048
    {
        return Err(at(
            s.endpoint.span(),
            "s3.endpoint",
            format!("{endpoint:?}: expected http(s)://host[:port]"),
        ));
    }
    // S3 bucket names: 3 to 63 of a-z, 0-9, '-', '.'.
    let bucket = s.bucket.get_ref().as_str();
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(at(
            s.bucket.span(),
            "s3.bucket",
            format!("{bucket:?} is not a bucket name"),
        ));
    }
    let region = s
        .region
        .as_ref()
        .map_or("us-east-1", |r| r.get_ref().as_str());
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(at(
            s.region.as_ref().map_or(0..0, Spanned::span),
            "s3.region",
            format!("{region:?} is not a region"),
        ));
    }
    let key = s.access_key.get_ref().as_str();
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(at(
            s.access_key.span(),
            "s3.access_key",
            "must be an access key id".into(),
        ));
    }
    let secret = s.secret_key_file.get_ref();
    // A relative file name is relative to the configuration file.
    let absolute = |f: &PathBuf| {
        if f.is_absolute() {
            f.clone()
        } else {
            base.join(f)
        }
    };
    let settings = PostgresSettings {
        url: url.to_owned(),
        max_connections: usize::try_from(max_connections).unwrap_or(16),
        password_file: p.password_file.as_ref().map(|f| absolute(f.get_ref())),
        ca_file: p.ca_file.as_ref().map(|f| absolute(f.get_ref())),
        s3_endpoint: endpoint.to_owned(),
        s3_bucket: bucket.to_owned(),
        s3_region: region.to_owned(),
        s3_access_key: key.to_owned(),
        s3_secret_key_file: absolute(secret),
    };
    Ok(StoreBackend::Postgres(settings))
}

/// A connection string without its password, for messages.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}@{host}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "hostname = \"mail.example.com\"\ndata_dir = \"mail\"\n\
        [directory]\naccounts = \"a.cf\"\n[[listener]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n";

    fn parse_text(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Path::new("p.toml"),
            Path::new("/etc"),
        )
    }

    const PG: &str = "[store]\nbackend = \"postgres\"\n\
        [postgres]\nurl = \"postgresql://postern:hunter2@db:5432/postern\"\n\
        [s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"postern-mail\"\n\
        access_key = \"AKIATEST\"\nsecret_key_file = \"s3-secret\"\n";

    #[test]
    fn maildir_is_the_default_and_may_be_named() {
        assert_eq!(parse_text("").unwrap().store, StoreBackend::Maildir);
        let c = parse_text("[store]\nbackend = \"maildir\"\n").unwrap();
        assert_eq!(c.store, StoreBackend::Maildir);
    }

    #[test]
    fn postgres_is_read() {
        let c = parse_text(PG).unwrap();
        let StoreBackend::Postgres(p) = c.store else {
            panic!("{:?}", c.store)
        };
        assert_eq!(p.url, "postgresql://postern:hunter2@db:5432/postern");
        assert_eq!(p.max_connections, 16);
        assert_eq!(p.password_file, None);
        assert_eq!(p.ca_file, None);
        let c = parse_text(&PG.replace(
            "[s3]",
            "password_file = \"pg-pw\"\nca_file = \"pg-ca.crt\"\n[s3]",
        ))
        .unwrap();
        let StoreBackend::Postgres(p) = c.store else {
            panic!("{:?}", c.store)
        };
        assert_eq!(p.password_file.as_deref(), Some(Path::new("/etc/pg-pw")));
        assert_eq!(p.ca_file.as_deref(), Some(Path::new("/etc/pg-ca.crt")));
        assert_eq!(p.s3_bucket, "postern-mail");
        assert_eq!(p.s3_region, "us-east-1");
        assert_eq!(p.s3_secret_key_file, Path::new("/etc/s3-secret"));
        assert_eq!(redact(&p.url), "postgresql://postern@db:5432/postern");
    }

    #[test]
    fn bad_store_settings_are_refused_at_their_key() {
        let cases = [
            ("[store]\nbackend = \"mysql\"\n", "store.backend", "expected"),
            ("[postgres]\nurl = \"x\"\n", "postgres", "only used with"),
            (
                "[s3]\nendpoint = \"http://x\"\nbucket = \"abc\"\naccess_key = \"k\"\nsecret_key_file = \"f\"\n",
                "s3",
                "only used with",
            ),
            ("[store]\nbackend = \"postgres\"\n", "postgres", "needs a [postgres]"),
            (&PG.replace("[s3]", "[s4]"), "", "unknown field"),
            (&PG.replace("http://127.0.0.1:9000", "ftp://x"), "s3.endpoint", "expected http"),
            (&PG.replace("postern-mail", "Postern_Mail"), "s3.bucket", "not a bucket"),
            (&PG.replace("postgresql://postern:hunter2@db:5432/postern", " "), "postgres.url", "connection string"),
            (&format!("{PG}region = \"us east\"\n"), "s3.region", "not a region"),
            (&PG.replace("[s3]", "max_connections = 0\n[s3]"), "postgres.max_connections", "out of range"),
        ];
        for (text, key, msg) in cases {
            let e = parse_text(text).unwrap_err();
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            }
            assert!(e.message.contains(msg), "{text}: {e}");
        }
        assert_eq!(
            redact("host=db user=u password=secret dbname=d"),
            "host=db user=u dbname=d"
        );
    }
}
