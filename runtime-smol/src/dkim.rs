//! Outbound DKIM signing (mail-auth, ring): the keys of `[dkim]`, read
//! from docker-mailserver's layouts (see `config/dkim.rs`), and the
//! signature put on a message before it enters the outbound spool. What
//! is signed (the header fields, the domain) is decided in
//! `postern_core::dkim`; this module does the cryptography.
//!
//! RSA keys (PEM, PKCS#1 or PKCS#8) must have 2,048 to 4,096 bits; an
//! Ed25519 key (PEM PKCS#8, or Rspamd's base64 seed) adds a second
//! signature. Both are relaxed/relaxed, without `l=`.

use crate::config::dkim::DkimConfig;
use mail_auth::common::crypto::{Ed25519Key, HashImpl, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter as _, Writable, Writer};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postern_core::dkim::{author_domain, headers_to_sign, AuthorError};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// The largest KeyTable/SigningTable read.
const MAX_TABLE: u64 = 1 << 20;
/// The most directory entries looked at in a key folder.
const MAX_ENTRIES: usize = 10_000;
/// RSA key sizes accepted, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct KeyError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn key_err(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A key shared by every signature made with it (mail-auth's signer
/// takes its key by value).
struct Shared<K>(Arc<K>);

impl<K: SigningKey> SigningKey for Shared<K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    /// The body hash. mail-auth's relaxed canonicalisation writes the
    /// body one byte at a time, and each write into ring's digest is a
    /// call with its own bookkeeping (about 20 ns: 80 us for a 4 KiB
    /// body); the bytes are gathered in a bounded buffer and hashed in
    /// blocks instead.
    fn hash(&self, data: impl Writable) -> mail_auth::common::crypto::HashOutput {
        let mut hasher = Buffered::new(<Self::Hasher as HashImpl>::hasher());
        data.write(&mut hasher);
        mail_auth::common::crypto::HashContext::complete(hasher.finish())
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// The most bytes gathered before they go to the digest.
const HASH_BUFFER: usize = 8 * 1024;

/// A writer that gathers small writes into a bounded buffer and passes
/// them on to `inner` in blocks (same bytes, same order).
struct Buffered<W: Writer> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Writer> Buffered<W> {
    fn new(inner: W) -> Self {
        Buffered {
            inner,
            buf: Vec::with_capacity(HASH_BUFFER),
        }
    }

    /// Passes on what is buffered; returns the inner writer.
    fn finish(mut self) -> W {
        if !self.buf.is_empty() {
            self.inner.write(&self.buf);
        }
        self.inner
    }
}

impl<W: Writer> Writer for Buffered<W> {
    fn write(&mut self, data: &[u8]) {
        if self.buf.len() + data.len() > HASH_BUFFER {
            if !self.buf.is_empty() {
                self.inner.write(&self.buf);
                self.buf.clear();
            }
            if data.len() >= HASH_BUFFER {
                self.inner.write(data);
                return;
            }
        }
        self.buf.extend_from_slice(data);
    }
}

/// One signing domain's keys.
struct DomainKeys {
    selector: String,
    ed25519_selector: String,
    rsa: Option<Arc<RsaKey<Sha256>>>,
    ed25519: Option<Arc<Ed25519Key>>,
}

impl std::fmt::Debug for DomainKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainKeys")
            .field("selector", &self.selector)
            .field("rsa", &self.rsa.is_some())
            .field("ed25519", &self.ed25519.is_some())
            .finish()
    }
}

/// What became of a message given to [`Signer::sign`].
#[derive(Debug)]
pub enum Signed {
    /// The `DKIM-Signature:` header lines to put in front of the message,
    /// and the domain that signed.
    Header(Vec<u8>, String),
    /// The author's domain has no key (or is not ours).
    NoKey(String),
    /// No single author domain.
    NoAuthor(AuthorError),
    /// Signing failed.
    Failed(String),
}

/// The keys of every signing domain.
#[derive(Debug, Default)]
pub struct Signer {
    domains: HashMap<String, DomainKeys>,
}

impl Signer {
    /// Reads every key `[dkim]` names or its folder holds, and checks it.
    pub fn load(cfg: &DkimConfig) -> Result<Self, KeyError> {
        let mut files: HashMap<String, (String, Option<PathBuf>, Option<PathBuf>)> = HashMap::new();
        if let Some(dir) = &cfg.dir {
            opendkim_keys(dir, &cfg.selector, &mut files)?;
            rspamd_keys(dir, &cfg.selector, &cfg.ed25519_selector, &mut files)?;
        }
        for k in &cfg.keys {
            let e = files
                .entry(k.domain.clone())
                .or_insert_with(|| (cfg.selector.clone(), None, None));
            e.0 = cfg.selector.clone();
            if k.rsa.is_some() {
                e.1 = k.rsa.clone();
            }
            if k.ed25519.is_some() {
                e.2 = k.ed25519.clone();
            }
        }
        let mut domains = HashMap::new();
        for (domain, (selector, rsa, ed)) in files {
            let rsa = rsa.as_deref().map(load_rsa).transpose()?.map(Arc::new);
            let ed25519 = ed.as_deref().map(load_ed25519).transpose()?.map(Arc::new);
            domains.insert(
                domain,
                DomainKeys {
                    selector,
                    ed25519_selector: cfg.ed25519_selector.clone(),
                    rsa,
                    ed25519,
                },
            );
        }
        Ok(Signer { domains })
    }

    /// The domains that have a key, sorted.
    pub fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self.domains.keys().cloned().collect();
        d.sort();
        d
    }

    /// The key for an author domain: its own, or the nearest parent
    /// domain's (as Rspamd's `use_esld`: a bounce from
    /// `MAILER-DAEMON@mail.example.com` is signed by `example.com`).
    fn key_for<'a>(&'a self, domain: &'a str) -> Option<(&'a str, &'a DomainKeys)> {
        let mut d = domain;
        loop {
            if let Some(k) = self.domains.get(d) {
                return Some((d, k));
            }
            let (_, parent) = d.split_once('.')?;
            if !parent.contains('.') {
                return None;
            }
            d = parent;
        }
    }

    /// Signs a message for its author's domain when that domain (or its
    /// parent) has a key and `ours` says it is one of our domains.
    pub fn sign(&self, message: &[u8], ours: &dyn Fn(&str) -> bool) -> Signed {
        let domain = match author_domain(message) {
            Ok(d) => d,
            Err(e) => return Signed::NoAuthor(e),
        };
        let Some((d, keys)) = self.key_for(&domain) else {
            return Signed::NoKey(domain);
        };
        if !ours(d) && !ours(&domain) {
            return Signed::NoKey(domain);
        }
        let headers = match headers_to_sign(message) {
            Ok(h) => h,
            Err(e) => return Signed::NoAuthor(e),
        };
        let mut out = Vec::new();
        // Ed25519 first: the RSA signature ends up on top (it is added last).
        if let Some(k) = &keys.ed25519 {
            match sign_with(
                Shared(k.clone()),
                d,
                &keys.ed25519_selector,
                &headers,
                message,
            ) {
                Ok(h) => out.push(h),
                Err(e) => return Signed::Failed(e),
            }
        }
        if let Some(k) = &keys.rsa {
            match sign_with(Shared(k.clone()), d, &keys.selector, &headers, message) {
                Ok(h) => out.push(h),
                Err(e) => return Signed::Failed(e),
            }
        }
        out.reverse();
        Signed::Header(out.concat().into_bytes(), d.to_owned())
    }
}

fn sign_with<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    headers: &[&str],
    message: &[u8],
) -> Result<String, String> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(headers.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map(|s| s.to_header())
        .map_err(|e| e.to_string())
}

fn read_small(path: &Path, max: u64) -> Result<Vec<u8>, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| key_err(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(key_err(path, "not a file"));
    }
    if meta.len() > max {
        return Err(key_err(path, format!("larger than {max} bytes")));
    }
    std::fs::read(path).map_err(|e| key_err(path, e.to_string()))
}

/// Reads an RSA private key (PEM, PKCS#1 or PKCS#8) of 2,048 to 4,096 bits.
pub fn load_rsa(path: &Path) -> Result<RsaKey<Sha256>, KeyError> {
    let pem = read_small(path, MAX_KEY_FILE)?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_err(path, format!("not a PEM private key: {e}")))?;
    let pair = match &der {
        PrivateKeyDer::Pkcs1(d) => ring::rsa::KeyPair::from_der(d.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(d) => {
            if ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(d.secret_pkcs8_der())
                .is_ok()
            {
                return Err(key_err(path, "an Ed25519 key where an RSA key is expected"));
            }
            ring::rsa::KeyPair::from_pkcs8(d.secret_pkcs8_der())
        }
        _ => return Err(key_err(path, "an EC key: DKIM signs with RSA or Ed25519")),
    };
    let pair = pair.map_err(|e| {
        key_err(
            path,
            match e.to_string().as_str() {
                "TooSmall" => "RSA key too small: at least 2048 bits".to_owned(),
                "TooLarge" => "RSA key too large: at most 4096 bits".to_owned(),
                other => format!("not a usable RSA key ({other})"),
            },
        )
    })?;
    let bits = pair.public().modulus_len() * 8;
    if !RSA_BITS.contains(&bits) {
        return Err(key_err(
            path,
            format!("a {bits}-bit RSA key: 2048 to 4096 bits expected"),
        ));
    }
    RsaKey::<Sha256>::from_key_der(der).map_err(|e| key_err(path, e.to_string()))
}

/// Reads an Ed25519 private key: PEM PKCS#8, or one base64 line holding
/// the 32-byte seed (or seed and public key, 64 bytes), as Rspamd writes.
pub fn load_ed25519(path: &Path) -> Result<Ed25519Key, KeyError> {
    use base64::Engine as _;
    let bytes = read_small(path, MAX_KEY_FILE)?;
    if let Ok(der) = PrivateKeyDer::from_pem_slice(&bytes) {
        let PrivateKeyDer::Pkcs8(d) = der else {
            return Err(key_err(path, "not an Ed25519 key (PKCS#8 expected)"));
        };
        return Ed25519Key::from_pkcs8_maybe_unchecked_der(d.secret_pkcs8_der())
            .map_err(|_| key_err(path, "not an Ed25519 key"));
    }
    let text = String::from_utf8_lossy(&bytes);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| key_err(path, "neither PEM nor a base64 Ed25519 seed"))?;
    let seed = match raw.len() {
        32 | 64 => &raw[..32],
        n => return Err(key_err(path, format!("{n} bytes: an Ed25519 seed has 32"))),
    };
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| key_err(path, "not an Ed25519 seed"))?;
    use ring::signature::KeyPair as _;
    let public = pair.public_key().as_ref().to_vec();
    if raw.len() == 64 && raw[32..] != public[..] {
        return Err(key_err(path, "the public half does not match the seed"));
    }
    Ed25519Key::from_seed_and_public_key(seed, &public).map_err(|e| key_err(path, e.to_string()))
}

type KeyFiles = HashMap<String, (String, Option<PathBuf>, Option<PathBuf>)>;

/// Rspamd's layout: `rspamd/dkim/rsa-<bits>-<selector>-<domain>.private`
/// and `ed25519-<selector>-<domain>.private` (`.private.txt` as
/// docker-mailserver's `setup config dkim` names them).
fn rspamd_keys(
    dir: &Path,
    selector: &str,
    ed25519_selector: &str,
    files: &mut KeyFiles,
) -> Result<(), KeyError> {
    let folder = dir.join("rspamd").join("dkim");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(());
    };
    let ed_prefix = format!("ed25519-{ed25519_selector}-");
    for entry in entries.take(MAX_ENTRIES).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // DMS's `setup config dkim` writes `.private.txt`; Rspamd's own
        // tools `.private`.
        let Some(stem) = name
            .strip_suffix(".private.txt")
            .or_else(|| name.strip_suffix(".private"))
        else {
            continue;
        };
        if let Some(domain) = stem.strip_prefix(&ed_prefix) {
            let e = files
                .entry(domain.to_ascii_lowercase())
                .or_insert_with(|| (selector.to_owned(), None, None));
            e.2 = Some(entry.path());
            continue;
        }
        let Some(rest) = stem.strip_prefix("rsa-") else {
            continue;
        };
        let Some((bits, rest)) = rest.split_once('-') else {
            continue;
        };
        let Some(domain) = rest
            .strip_prefix(selector)
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || domain.is_empty() {
            continue;
        }
        let e = files
            .entry(domain.to_ascii_lowercase())
            .or_insert_with(|| (selector.to_owned(), None, None));
        e.0 = selector.to_owned();
        e.1 = Some(entry.path());
    }
    Ok(())
}

/// OpenDKIM's layout: `opendkim/KeyTable` (`name domain:selector:path`)
/// and `opendkim/SigningTable` (`*@domain name`), or without them
/// `opendkim/keys/<domain>/<selector>.private`. A path under
/// `/etc/opendkim/` (where the container copies the folder) is read from
/// `<dir>/opendkim/` when it does not exist as written.
fn opendkim_keys(dir: &Path, selector: &str, files: &mut KeyFiles) -> Result<(), KeyError> {
    let base = dir.join("opendkim");
    let key_table = base.join("KeyTable");
    if key_table.exists() {
        let kt = String::from_utf8_lossy(&read_small(&key_table, MAX_TABLE)?).into_owned();
        let mut keys: HashMap<&str, (&str, &str, PathBuf)> = HashMap::new();
        for (n, line) in kt.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                key_err(
                    &key_table,
                    format!("line {}: expected `name domain:selector:/path`", n + 1),
                )
            };
            let (name, value) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let mut parts = value.trim().splitn(3, ':');
            let (Some(d), Some(s), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            keys.insert(name, (d, s, container_path(&base, p)));
        }
        let st_path = base.join("SigningTable");
        let st = if st_path.exists() {
            String::from_utf8_lossy(&read_small(&st_path, MAX_TABLE)?).into_owned()
        } else {
            String::new()
        };
        let mut signed_any = false;
        for (n, line) in st.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, name) = line.split_once(char::is_whitespace).ok_or_else(|| {
                key_err(
                    &st_path,
                    format!("line {}: expected `*@domain keyname`", n + 1),
                )
            })?;
            let Some(&(d, s, ref p)) = keys.get(name.trim()) else {
                return Err(key_err(
                    &st_path,
                    format!("line {}: key {name:?} is not in KeyTable", n + 1),
                ));
            };
            let from = pattern.trim_start_matches('*').trim_start_matches('@');
            let domain = if from.is_empty() { d } else { from };
            if domain.contains('*') {
                continue;
            }
            signed_any = true;
            files.insert(
                domain.to_ascii_lowercase(),
                (s.to_owned(), Some(p.clone()), None),
            );
        }
        if !signed_any {
            for (d, s, p) in keys.into_values() {
                files.insert(d.to_ascii_lowercase(), (s.to_owned(), Some(p), None));
            }
        }
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(base.join("keys")) else {
        return Ok(());
    };
    for entry in entries.take(MAX_ENTRIES).flatten() {
        let key = entry.path().join(format!("{selector}.private"));
        if key.is_file() {
            let domain = entry.file_name().to_string_lossy().to_ascii_lowercase();
            files.insert(domain, (selector.to_owned(), Some(key), None));
        }
    }
    Ok(())
}

fn container_path(base: &Path, p: &str) -> PathBuf {
    let p = p.trim();
    let written = PathBuf::from(p);
    if written.exists() {
        return written;
    }
    match p.strip_prefix("/etc/opendkim/") {
        Some(rest) => base.join(rest),
        None => written,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write it gets.
    #[derive(Default)]
    struct Calls(Vec<Vec<u8>>);

    impl Writer for Calls {
        fn write(&mut self, data: &[u8]) {
            self.0.push(data.to_vec());
        }
    }

    #[test]
    fn buffered_writes_pass_the_same_bytes_in_few_blocks() {
        let mut b = Buffered::new(Calls::default());
        let mut want = Vec::new();
        // Byte-at-a-time writes (as relaxed body canonicalisation does),
        // then one larger than the buffer, then small ones again.
        for i in 0..20_000u32 {
            let byte = [u8::try_from(i % 251).unwrap()];
            b.write(&byte);
            want.push(byte[0]);
        }
        let big = vec![7u8; HASH_BUFFER * 2 + 3];
        b.write(&big);
        want.extend_from_slice(&big);
        b.write(b"\r\n");
        want.extend_from_slice(b"\r\n");
        let calls = b.finish().0;
        assert_eq!(calls.concat(), want);
        assert!(calls.len() <= 5, "{} writes", calls.len());
        assert!(calls.iter().all(|c| !c.is_empty()));
        assert!(Buffered::new(Calls::default()).finish().0.is_empty());
    }

    #[test]
    fn the_buffered_body_hash_is_mail_auths_own() {
        let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
        let key = Arc::new(Ed25519Key::from_pkcs8_der(&pkcs8).unwrap());
        let body = b"Hello  world \r\n\tsecond line\r\n\r\n\r\n".repeat(700);
        let relaxed = Canonicalization::Relaxed;
        // mail-auth's own hash (its default, one digest call per write).
        let theirs = SigningKey::hash(&*key, relaxed.canonical_body(&body, u64::MAX));
        let ours = Shared(key).hash(relaxed.canonical_body(&body, u64::MAX));
        assert_eq!(ours.as_ref(), theirs.as_ref());
        assert_eq!(ours.as_ref().len(), 32);
    }
}
