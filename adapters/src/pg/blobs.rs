//! Message bodies in an S3-compatible object store, one object per
//! distinct content: the key is `bodies/<SHA-256 hex>`, so a message for
//! many recipients (or delivered twice) is stored once. A `blobs` row
//! (written in the transaction of the messages that use it) says the
//! object exists: the object is always written first. Bodies no message
//! refers to any more are removed by `postern store gc` (`gc.rs`).

use super::{Pg, PgError};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a signed request stays valid.
const SIGN_FOR: Duration = Duration::from_secs(300);
/// The largest body fetched (a message is at most 64 MiB in the config;
/// older bodies may be bigger).
const MAX_BODY: u64 = 1 << 30;

/// Where the object store is and how to sign for it.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port` (path-style requests: MinIO, Ceph, moto, AWS).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region signed for (`us-east-1` where the server does not care).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The body store.
pub struct Blobs {
    pg: Arc<Pg>,
    bucket: Bucket,
    creds: Credentials,
    agent: ureq::Agent,
    puts: AtomicU64,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

/// Tries of a PUT the object store answers 500 or 503.
const PUT_TRIES: u64 = 3;

fn s3(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::S3(format!("{what}: {e}"))
}

/// A page of a listing: (hash, size) of its bodies, the next page's token.
pub(crate) type Listing = (Vec<(String, i64)>, Option<String>);

/// The largest listing page read (1,000 keys take about 300 KiB).
const MAX_LISTING: u64 = 16 << 20;

/// The text of each `<name>...</name>` in `xml`, in order.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else {
            break;
        };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// XML's five escapes undone (a continuation token may hold them).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A ListObjectsV2 reply: (hash, size) of every `bodies/<hash>` object,
/// and the next page's token when the listing is truncated.
fn parse_listing(xml: &str) -> Listing {
    let mut bodies = Vec::new();
    for item in elements(xml, "Contents") {
        let key = elements(item, "Key").first().map(|k| unescape(k));
        let size = elements(item, "Size")
            .first()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if let Some(hash) = key.as_deref().and_then(|k| k.strip_prefix("bodies/")) {
            if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                bodies.push((hash.to_owned(), size));
            }
        }
    }
    let truncated = elements(xml, "IsTruncated")
        .first()
        .is_some_and(|t| t.trim() == "true");
    let next = elements(xml, "NextContinuationToken")
        .first()
        .map(|t| unescape(t))
        .filter(|t| truncated && !t.is_empty());
    (bodies, next)
}

/// A body [`Blobs::ensure`] made sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    /// Its content address ([`content_hash`]).
    pub hash: String,
    /// For a new body, its header section for the row (`header_of`).
    pub header: Option<Vec<u8>>,
    /// For a new body, its parsed summary for the row (`summary_of`).
    pub summary: Option<Vec<u8>>,
}

/// The longest header section kept beside a body's row.
pub(super) const MAX_HEADER: usize = 64 * 1024;

/// A body's header section (through the empty line), the one a header
/// fetch answers, when it is at most [`MAX_HEADER`] bytes.
fn header_of(data: &[u8]) -> Option<Vec<u8>> {
    let n = postern_core::imap::fetch::header_len(data);
    (n <= MAX_HEADER).then(|| data[..n].to_vec())
}

/// A body's parsed summary as its row keeps it (`summary.rs`), with the
/// default MIME limits.
fn summary_of(data: &[u8]) -> Option<Vec<u8>> {
    super::summary::encode(&postern_core::imap::mime::summary_with(
        data,
        Default::default(),
    ))
}

/// The content address of `data`: SHA-256, lower-case hex.
pub fn content_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

impl Blobs {
    /// The store at `config`, its index in `pg`. Requests time out after
    /// 60 seconds.
    pub fn new(pg: Arc<Pg>, config: &S3Config) -> Result<Self, PgError> {
        let endpoint: url::Url = config.endpoint.parse().map_err(|e| s3("endpoint", e))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| s3("bucket", e))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            pg,
            bucket,
            creds: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            agent,
            puts: AtomicU64::new(0),
        })
    }

    /// Creates the bucket (an existing one of ours is fine).
    pub fn create_bucket(&self) -> Result<(), PgError> {
        let url = self.bucket.create_bucket(&self.creds).sign(SIGN_FOR);
        let r = self
            .agent
            .put(url.as_str())
            .send_empty()
            .map_err(|e| s3("create bucket", e))?;
        match r.status().as_u16() {
            200..=299 | 409 => Ok(()),
            s => Err(s3("create bucket", format!("HTTP {s}"))),
        }
    }

    fn key(hash: &str) -> String {
        format!("bodies/{hash}")
    }

    /// Makes sure the object for `data` exists; returns its hash, and for
    /// a body new to the store the header section and summary its row
    /// keeps (a body already stored has its row: they are not computed).
    /// One
    /// database round trip; one PUT when the content is new. A body found
    /// indexed is marked wanted now (its row's `touched`), so that the
    /// collector (`gc.rs`) leaves it alone for its grace period, however
    /// long ago its last message went: the message about to be stored
    /// needs the object that this call did not write again. A collector
    /// removing the body right now holds its row: this waits, finds no
    /// row, and writes the object again.
    pub fn ensure(&self, data: &[u8]) -> Result<StoredBody, PgError> {
        let hash = content_hash(data);
        let known = self.pg.with(|c| {
            let s = c.stmt(
                "UPDATE blobs SET touched = GREATEST(touched, extract(epoch FROM now())::bigint) \
                 WHERE hash = $1 RETURNING 1",
            )?;
            Ok::<_, PgError>(c.client().query_opt(&s, &[&hash])?.is_some())
        })?;
        if known {
            return Ok(StoredBody {
                hash,
                header: None,
                summary: None,
            });
        }
        self.put(&hash, data)?;
        Ok(StoredBody {
            hash,
            header: header_of(data),
            summary: summary_of(data),
        })
    }

    fn put(&self, hash: &str, data: &[u8]) -> Result<(), PgError> {
        let key = Self::key(hash);
        // S3 asks clients to retry a 500 or 503 (and the same body PUT
        // by several deliveries at once can meet one): a few tries, a
        // short pause between, on this blocking thread.
        let mut tries = 0;
        loop {
            tries += 1;
            let url = self
                .bucket
                .put_object(Some(&self.creds), &key)
                .sign(SIGN_FOR);
            let r = self
                .agent
                .put(url.as_str())
                .send(data)
                .map_err(|e| s3("put", e))?;
            let status = r.status();
            if status.is_success() {
                break;
            }
            if tries >= PUT_TRIES || !matches!(status.as_u16(), 500 | 503) {
                return Err(s3("put", format!("{key}: HTTP {status}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * tries));
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The body stored under `hash`.
    pub fn fetch(&self, hash: &str) -> Result<Vec<u8>, PgError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PgError::Invalid(format!("bad body hash {hash:?}")));
        }
        let key = Self::key(hash);
        let url = self
            .bucket
            .get_object(Some(&self.creds), &key)
            .sign(SIGN_FOR);
        let mut r = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| s3("get", e))?;
        if !r.status().is_success() {
            return Err(s3("get", format!("{key}: HTTP {}", r.status())));
        }
        let body = r
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| s3("get", e))?;
        if content_hash(&body) != hash {
            return Err(s3("get", format!("{key}: content does not match its hash")));
        }
        Ok(body)
    }

    /// Removes the object of `hash` (one already gone is fine).
    pub(crate) fn delete(&self, hash: &str) -> Result<(), PgError> {
        let key = Self::key(hash);
        let url = self
            .bucket
            .delete_object(Some(&self.creds), &key)
            .sign(SIGN_FOR);
        let r = self
            .agent
            .delete(url.as_str())
            .call()
            .map_err(|e| s3("delete", e))?;
        match r.status().as_u16() {
            200..=299 | 404 => Ok(()),
            s => Err(s3("delete", format!("{key}: HTTP {s}"))),
        }
    }

    /// One page of the bucket's bodies (at most 1,000): (hash, size) of
    /// each object named like a body, and the token of the next page
    /// (`None`: that was the last). rusty-s3 signs a GET of the bucket
    /// with the ListObjectsV2 parameters (its own action needs an XML
    /// crate more); the few elements read are found in the reply's text.
    pub(crate) fn list(&self, token: Option<&str>) -> Result<Listing, PgError> {
        let mut action = self.bucket.get_object(Some(&self.creds), "");
        let q = action.query_mut();
        q.insert("list-type", "2");
        q.insert("prefix", "bodies/");
        q.insert("max-keys", "1000");
        if let Some(t) = token {
            q.insert("continuation-token", t.to_owned());
        }
        let url = action.sign(SIGN_FOR);
        let mut r = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(|e| s3("list", e))?;
        if !r.status().is_success() {
            return Err(s3("list", format!("HTTP {}", r.status())));
        }
        let text = r
            .body_mut()
            .with_config()
            .limit(MAX_LISTING)
            .read_to_string()
            .map_err(|e| s3("list", e))?;
        Ok(parse_listing(&text))
    }

    /// Objects this process has written (PUTs that succeeded).
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// (size, references) of the body `hash`, if indexed: the messages
    /// that point at it, counted.
    pub fn refs(&self, hash: &str) -> Result<Option<(i64, i64)>, PgError> {
        self.pg.with(|c| {
            let s = c.stmt(
                "SELECT b.size, (SELECT count(*) FROM messages m WHERE m.blob = b.hash) \
                 FROM blobs b WHERE b.hash = $1",
            )?;
            Ok::<_, PgError>(
                c.client()
                    .query_opt(&s, &[&hash])?
                    .map(|r| (r.get(0), r.get(1))),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_the_bodies_and_the_next_page() {
        let h = "a".repeat(64);
        let xml = format!(
            "<ListBucketResult><IsTruncated>true</IsTruncated>\
             <Contents><Key>bodies/{h}</Key><Size>12</Size></Contents>\
             <Contents><Key>bodies/not-a-hash</Key><Size>1</Size></Contents>\
             <Contents><Key>other/{h}</Key><Size>1</Size></Contents>\
             <NextContinuationToken>a&amp;b</NextContinuationToken></ListBucketResult>"
        );
        let (bodies, next) = parse_listing(&xml);
        assert_eq!(bodies, vec![(h, 12)]);
        assert_eq!(next.as_deref(), Some("a&b"));
        let (none, last) = parse_listing(
            "<ListBucketResult><IsTruncated>false</IsTruncated>\
             <NextContinuationToken>x</NextContinuationToken></ListBucketResult>",
        );
        assert!(none.is_empty());
        assert_eq!(last, None);
        assert_eq!(parse_listing("<Contents><Key>bodies/").0, vec![]);
    }
}
