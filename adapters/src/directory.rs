//! Accounts, aliases and catch-alls, read from docker-mailserver's own
//! files so an existing deployment's configuration works unchanged:
//!
//! - `postfix-accounts.cf`: `user@domain|{SCHEME}hash` per line, with the
//!   Dovecot schemes `SHA512-CRYPT`, `SHA256-CRYPT`, `BLF-CRYPT`,
//!   `ARGON2I` and `ARGON2ID` (and a bare `$6$`/`$2y$`/`$argon2` hash);
//! - `postfix-virtual.cf`: `alias@domain target[,target...]` per line, and
//!   `@domain target` for a catch-all.
//!
//! The local domains are those that appear in either file.

use argon2::password_hash::PasswordVerifier as _;
use postern_core::smtp::Address;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// How deep alias chains are followed.
const MAX_ALIAS_DEPTH: usize = 8;
/// How many targets one resolution may reach.
const MAX_TARGETS: usize = 1000;
/// The longest line read from a directory file.
const MAX_LINE: usize = 4096;

/// A mailbox on disk: `<root>/<domain>/<user>/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    /// The domain, lower-case.
    pub domain: String,
    /// The user (local part), lower-case.
    pub user: String,
}

impl Mailbox {
    /// The account address `user@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

/// Where an address leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// One of our addresses: these mailboxes, and these outside addresses
    /// it forwards to.
    Local {
        /// Local mailboxes, sorted, without duplicates.
        mailboxes: Vec<Mailbox>,
        /// Outside addresses an alias points to.
        forwards: Vec<String>,
    },
    /// One of our domains, no such address.
    Unknown,
    /// Not one of our domains.
    Remote,
}

/// A directory file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which directory file a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryFile {
    /// `postfix-accounts.cf`.
    Accounts,
    /// `postfix-virtual.cf`.
    Virtual,
}

impl fmt::Display for DirectoryFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirectoryFile::Accounts => "postfix-accounts.cf",
            DirectoryFile::Virtual => "postfix-virtual.cf",
        })
    }
}

/// Why a line of a directory file was refused (by [`Directory::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line longer than the limit.
    #[error("{file}:{line}: line too long")]
    TooLong {
        /// The file.
        file: DirectoryFile,
        /// 1-based line number.
        line: usize,
    },
    /// A line not in the file's `key value` shape.
    #[error("{file}:{line}: expected {expected}")]
    Shape {
        /// The file.
        file: DirectoryFile,
        /// 1-based line number.
        line: usize,
        /// What the line should look like.
        expected: &'static str,
    },
    /// An address that cannot name a mailbox (or a bad alias target).
    #[error("{file}:{line}: bad address {address:?}")]
    BadAddress {
        /// The file.
        file: DirectoryFile,
        /// 1-based line number.
        line: usize,
        /// The address as written.
        address: String,
    },
    /// An account without a password hash.
    #[error("{file}:{line}: empty password hash")]
    EmptyHash {
        /// The file.
        file: DirectoryFile,
        /// 1-based line number.
        line: usize,
    },
}

impl ParseError {
    /// What is wrong, without the place.
    pub fn cause(&self) -> String {
        match self {
            ParseError::TooLong { .. } => "line too long".to_owned(),
            ParseError::Shape { expected, .. } => format!("expected {expected}"),
            ParseError::BadAddress { address, .. } => format!("bad address {address:?}"),
            ParseError::EmptyHash { .. } => "empty password hash".to_owned(),
        }
    }

    /// The file and the 1-based line the error is about.
    pub fn place(&self) -> (DirectoryFile, usize) {
        match self {
            ParseError::TooLong { file, line }
            | ParseError::Shape { file, line, .. }
            | ParseError::BadAddress { file, line, .. }
            | ParseError::EmptyHash { file, line } => (*file, *line),
        }
    }
}

impl From<DirectoryError> for std::io::Error {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Io { path, source } => {
                std::io::Error::new(source.kind(), format!("{}: {source}", path.display()))
            }
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

#[derive(Clone)]
struct Account {
    mailbox: Mailbox,
    hash: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// Accounts, aliases and catch-alls.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    accounts: HashMap<String, Account>,
    aliases: HashMap<String, Vec<String>>,
    catchall: HashMap<String, Vec<String>>,
    domains: HashSet<String>,
    /// The storage limit of accounts not in `quotas` (None: unlimited).
    quota: Option<u64>,
    /// Per-account storage limits (`dovecot-quotas.cf`), lower-case keys.
    quotas: HashMap<String, u64>,
}

/// A SHA512-CRYPT hash of a password nobody has, checked when the user is
/// unknown so that a failed login takes the same time either way.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        sha512_crypt_hash("\u{0}no such user", "postern-dummy-sl").unwrap_or_default()
    })
}

impl Directory {
    /// Reads `postfix-accounts.cf` and, if given, `postfix-virtual.cf`.
    pub fn load(accounts: &Path, virtual_file: Option<&Path>) -> Result<Self, DirectoryError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| DirectoryError::Io {
                path: p.to_owned(),
                source,
            })
        };
        let acc = read(accounts)?;
        let virt = match virtual_file {
            Some(v) if v.exists() => read(v)?,
            _ => String::new(),
        };
        Self::parse(&acc, &virt).map_err(|e| {
            let (file, line) = e.place();
            DirectoryError::Syntax {
                path: match file {
                    DirectoryFile::Accounts => accounts.to_owned(),
                    DirectoryFile::Virtual => virtual_file.unwrap_or(accounts).to_owned(),
                },
                line,
                message: e.cause(),
            }
        })
    }

    /// Parses the two files' contents; an error names the file, the line
    /// and the problem.
    pub fn parse(accounts: &str, virtual_text: &str) -> Result<Self, ParseError> {
        use DirectoryFile::{Accounts, Virtual};
        let mut d = Directory::default();
        for (i, line) in accounts.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_LINE {
                return Err(ParseError::TooLong {
                    file: Accounts,
                    line: i + 1,
                });
            }
            let Some((addr, hash)) = line.split_once('|') else {
                return Err(ParseError::Shape {
                    file: Accounts,
                    line: i + 1,
                    expected: "user@domain|{SCHEME}hash",
                });
            };
            // docker-mailserver may append `|` fields (quota, ...): ignore them.
            let hash = hash.split('|').next().unwrap_or("").trim();
            let mailbox = parse_mailbox(addr.trim()).ok_or_else(|| ParseError::BadAddress {
                file: Accounts,
                line: i + 1,
                address: addr.to_owned(),
            })?;
            if hash.is_empty() {
                return Err(ParseError::EmptyHash {
                    file: Accounts,
                    line: i + 1,
                });
            }
            d.domains.insert(mailbox.domain.clone());
            d.accounts.insert(
                mailbox.address(),
                Account {
                    mailbox,
                    hash: hash.to_owned(),
                },
            );
        }
        for (i, line) in virtual_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_LINE {
                return Err(ParseError::TooLong {
                    file: Virtual,
                    line: i + 1,
                });
            }
            let mut parts = line.splitn(2, char::is_whitespace);
            let (Some(alias), Some(targets)) = (parts.next(), parts.next()) else {
                return Err(ParseError::Shape {
                    file: Virtual,
                    line: i + 1,
                    expected: "alias@domain target[,target]",
                });
            };
            let targets: Vec<String> = targets
                .split([',', ' ', '\t'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_lowercase)
                .collect();
            if let Some(bad) = targets.iter().find(|t| parse_mailbox(t).is_none()) {
                return Err(ParseError::BadAddress {
                    file: Virtual,
                    line: i + 1,
                    address: bad.clone(),
                });
            }
            if targets.is_empty() {
                return Err(ParseError::Shape {
                    file: Virtual,
                    line: i + 1,
                    expected: "alias@domain target[,target]",
                });
            }
            let alias = alias.to_lowercase();
            if let Some(domain) = alias.strip_prefix('@') {
                if domain.is_empty() || domain.contains('@') {
                    return Err(ParseError::BadAddress {
                        file: Virtual,
                        line: i + 1,
                        address: alias,
                    });
                }
                d.domains.insert(domain.to_owned());
                d.catchall
                    .entry(domain.to_owned())
                    .or_default()
                    .extend(targets);
            } else {
                let mb = parse_mailbox(&alias).ok_or_else(|| ParseError::BadAddress {
                    file: Virtual,
                    line: i + 1,
                    address: alias.clone(),
                })?;
                d.domains.insert(mb.domain);
                d.aliases.entry(alias).or_default().extend(targets);
            }
        }
        Ok(d)
    }

    /// Adds an account (for the embedded default and tests).
    pub fn add_account(&mut self, address: &str, hash: &str) -> bool {
        let Some(mailbox) = parse_mailbox(address) else {
            return false;
        };
        self.domains.insert(mailbox.domain.clone());
        self.accounts.insert(
            mailbox.address(),
            Account {
                mailbox,
                hash: hash.to_owned(),
            },
        );
        true
    }

    /// Sets the storage limits: `default` for every account, `per_user`
    /// for some (bytes, keys as [`read_quotas`] gives them).
    pub fn with_quotas(mut self, default: Option<u64>, per_user: HashMap<String, u64>) -> Self {
        self.quota = default;
        self.quotas = per_user;
        self
    }

    /// An account's storage limit in bytes (None: unlimited).
    pub fn quota(&self, user: &str) -> Option<u64> {
        self.quotas
            .get(&user.to_lowercase())
            .copied()
            .or(self.quota)
    }

    /// Whether `domain` is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains(&domain.to_lowercase())
    }

    /// The local domains.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }

    /// Every account's mailbox.
    pub fn mailboxes(&self) -> impl Iterator<Item = &Mailbox> {
        self.accounts.values().map(|a| &a.mailbox)
    }

    /// Where a (final) address leads: aliases first, then accounts (with
    /// `user+tag` subaddressing), then the domain's catch-all.
    pub fn resolve(&self, address: &Address) -> Resolution {
        let domain = address.domain.to_lowercase();
        if !self.domains.contains(&domain) {
            return Resolution::Remote;
        }
        let mut mailboxes = Vec::new();
        let mut forwards = Vec::new();
        let key = format!("{}@{}", address.local.to_lowercase(), domain);
        if self.expand(&key, 0, &mut mailboxes, &mut forwards) {
            mailboxes.sort();
            mailboxes.dedup();
            forwards.sort();
            forwards.dedup();
            Resolution::Local {
                mailboxes,
                forwards,
            }
        } else {
            Resolution::Unknown
        }
    }

    fn expand(
        &self,
        key: &str,
        depth: usize,
        mbs: &mut Vec<Mailbox>,
        fwd: &mut Vec<String>,
    ) -> bool {
        if depth > MAX_ALIAS_DEPTH || mbs.len() + fwd.len() >= MAX_TARGETS {
            return false;
        }
        if let Some(targets) = self.aliases.get(key) {
            for t in targets {
                self.target(t, depth, mbs, fwd);
            }
            return true;
        }
        if let Some(acc) = self.accounts.get(key) {
            mbs.push(acc.mailbox.clone());
            return true;
        }
        let Some((local, domain)) = key.rsplit_once('@') else {
            return false;
        };
        if let Some((base, _tag)) = local.split_once('+') {
            if !base.is_empty() && self.expand(&format!("{base}@{domain}"), depth + 1, mbs, fwd) {
                return true;
            }
        }
        if let Some(targets) = self.catchall.get(domain) {
            for t in targets {
                self.target(t, depth, mbs, fwd);
            }
            return true;
        }
        false
    }

    fn target(&self, t: &str, depth: usize, mbs: &mut Vec<Mailbox>, fwd: &mut Vec<String>) {
        let domain = t.rsplit_once('@').map_or("", |(_, d)| d);
        if self.domains.contains(domain) {
            // A target at one of our domains that leads nowhere is dropped
            // (Postfix would bounce it); the other targets still get it.
            let _ = self.expand(t, depth + 1, mbs, fwd);
        } else {
            fwd.push(t.to_owned());
        }
    }

    /// Checks a login. Returns the account address on success. Takes about
    /// as long for an unknown user as for a wrong password.
    pub fn verify(&self, username: &str, password: &str) -> Option<String> {
        let key = username.to_lowercase();
        match self.accounts.get(&key) {
            Some(acc) => verify_hash(&acc.hash, password).then(|| acc.mailbox.address()),
            None => {
                let _ = verify_hash(dummy_hash(), password);
                None
            }
        }
    }

    /// Whether `user` (an account address) may send as `address`: its own
    /// address, a `+tag` of it, or an alias that leads to its mailbox.
    pub fn owns(&self, user: &str, address: &Address) -> bool {
        let Some(acc) = self.accounts.get(&user.to_lowercase()) else {
            return false;
        };
        match self.resolve(address) {
            Resolution::Local { mailboxes, .. } => {
                // A catch-all would make every address "owned": require an
                // exact alias, account or subaddress match.
                let key = format!(
                    "{}@{}",
                    address.local.to_lowercase(),
                    address.domain.to_lowercase()
                );
                let base = key.split_once('+').map(|(b, rest)| {
                    format!("{b}@{}", rest.rsplit_once('@').map_or("", |(_, d)| d))
                });
                let direct = self.aliases.contains_key(&key)
                    || self.accounts.contains_key(&key)
                    || base.is_some_and(|b| {
                        self.accounts.contains_key(&b) || self.aliases.contains_key(&b)
                    });
                direct && mailboxes.contains(&acc.mailbox)
            }
            _ => false,
        }
    }
}

fn parse_mailbox(s: &str) -> Option<Mailbox> {
    let (user, domain) = s.rsplit_once('@')?;
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 255
            && !p.contains(['/', '\\', '\0'])
            && p != "."
            && p != ".."
            && !p.starts_with('.')
            && p.chars().all(|c| !c.is_control() && !c.is_whitespace())
    };
    if !ok(user) || !ok(domain) || domain.contains('@') {
        return None;
    }
    Some(Mailbox {
        domain: domain.to_lowercase(),
        user: user.to_lowercase(),
    })
}

/// Verifies a password against a Dovecot-style `{SCHEME}hash`.
pub fn verify_hash(stored: &str, password: &str) -> bool {
    let (scheme, hash) = match stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        Some((scheme, hash)) => (scheme.to_ascii_uppercase(), hash),
        None => (String::new(), stored),
    };
    match scheme.as_str() {
        "SHA512-CRYPT" | "SHA256-CRYPT" | "CRYPT" | ""
            if hash.starts_with("$6$") || hash.starts_with("$5$") =>
        {
            use sha_crypt::PasswordVerifier as _;
            sha_crypt::ShaCrypt::default()
                .verify_password(password.as_bytes(), hash)
                .is_ok()
        }
        "BLF-CRYPT" | "CRYPT" | "" if hash.starts_with("$2") => {
            bcrypt::verify(password, hash).unwrap_or(false)
        }
        "ARGON2I" | "ARGON2ID" | "" if hash.starts_with("$argon2") => {
            match argon2::password_hash::phc::PasswordHash::new(hash) {
                Ok(h) => argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok(),
                Err(_) => false,
            }
        }
        _ => false,
    }
}

/// Hashes a password as SHA512-CRYPT (for the embedded default's demo
/// account and tests). `salt` seeds the 16-character salt: crypt(3) reads
/// at most 16, so a longer one (as the crate makes from 16 bytes) would
/// give a hash Dovecot and glibc cannot verify.
pub fn sha512_crypt_hash(password: &str, salt: &str) -> Option<String> {
    use sha_crypt::PasswordHasher as _;
    let mut raw = [0u8; 12];
    for (i, b) in salt.bytes().enumerate() {
        raw[i % 12] ^= b.rotate_left((i / 12) as u32);
    }
    let h = sha_crypt::ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &raw)
        .ok()?;
    Some(format!("{{SHA512-CRYPT}}{h}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        let (l, d) = s.rsplit_once('@').unwrap();
        Address::new(l, d)
    }

    const ACCOUNTS: &str = "alice@example.com|{SHA512-CRYPT}$6$saltsalt$ktYR4xBdsgEhDf.vxJRW/bYtY1Idyz0fgP1i6sGGlaDeEy/t/uJ3GOcI5mt/Ak6HOn6TjAOL.N.CcHmHn4u.H1\nbob@example.com|{BLF-CRYPT}$2y$05$SrS/pZ9x0N7H3ZuBLPg7SOkIY1w1AWDDSn1RQzLLOmSkGdpUrz8HO\n";

    #[test]
    fn resolves_like_postfix() {
        let virt = "info@example.com alice@example.com,bob@example.com\nfwd@example.com someone@remote.example\n@example.org alice@example.com\n";
        let d = Directory::parse(ACCOUNTS, virt).unwrap();
        let local = |v: &[&str]| Resolution::Local {
            mailboxes: v.iter().map(|a| parse_mailbox(a).unwrap()).collect(),
            forwards: vec![],
        };
        assert_eq!(
            d.resolve(&addr("Alice@Example.com")),
            local(&["alice@example.com"])
        );
        assert_eq!(
            d.resolve(&addr("alice+news@example.com")),
            local(&["alice@example.com"])
        );
        assert_eq!(
            d.resolve(&addr("info@example.com")),
            local(&["alice@example.com", "bob@example.com"])
        );
        assert_eq!(
            d.resolve(&addr("anything@example.org")),
            local(&["alice@example.com"])
        );
        assert_eq!(d.resolve(&addr("nobody@example.com")), Resolution::Unknown);
        assert_eq!(d.resolve(&addr("x@remote.example")), Resolution::Remote);
        assert_eq!(
            d.resolve(&addr("fwd@example.com")),
            Resolution::Local {
                mailboxes: vec![],
                forwards: vec!["someone@remote.example".into()]
            }
        );
        assert!(d.owns("alice@example.com", &addr("info@example.com")));
        assert!(!d.owns("alice@example.com", &addr("anything@example.org")));
        assert!(!d.owns("bob@example.com", &addr("alice@example.com")));
    }

    #[test]
    fn bad_lines_name_the_line() {
        assert_eq!(
            Directory::parse("ok@example.com|{PLAIN}x\nbroken\n", "")
                .unwrap_err()
                .place(),
            (DirectoryFile::Accounts, 2)
        );
        assert_eq!(
            Directory::parse("", "a@b.example\n").unwrap_err(),
            ParseError::Shape {
                file: DirectoryFile::Virtual,
                line: 1,
                expected: "alias@domain target[,target]"
            }
        );
        assert_eq!(
            Directory::parse("", "a@b.example\n")
                .unwrap_err()
                .to_string(),
            "postfix-virtual.cf:1: expected alias@domain target[,target]"
        );
        assert!(Directory::parse("../x@example.com|h\n", "").is_err());
    }

    /// Hashes written by Dovecot's own `doveadm pw -s SCHEME -p secret`.
    #[test]
    fn dovecot_hashes_verify() {
        for h in [
            "{SHA512-CRYPT}$6$IQNWVN2H0S1MU61.$YFKIJHKJXVgZyTM3kbWe0C/Q/UOUmF2t1fVzHJtuYANbPeYMyEOT76uV4eebEvD/nFkWL/9RzFHKX1dOFJuJY1",
            "{BLF-CRYPT}$2y$05$xreWhMrWmYzoH/QeFZVmWuTIv/igrZhS631abMy4Yb7al.QpbROq6",
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$LasXVjqqwfvDThBEJMJZwg$keodSwyLgDW6sblgdzErR8htO6Z2cxJL7WyTxtwa+kw",
            "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$Y85HRGxtchxqEXvbTdSElg$XbOokO71PgMwJqknL/zjpaBncTNYl6Hu1yyoRY013BI",
        ] {
            assert!(verify_hash(h, "secret"), "{h}");
            assert!(!verify_hash(h, "Secret"), "{h}");
        }
    }

    #[test]
    fn hashes() {
        let h = sha512_crypt_hash("secret", "abcdefghijklmnop").unwrap();
        let salt = h
            .split('$')
            .find(|p| {
                !p.is_empty() && !p.starts_with('{') && *p != "6" && !p.starts_with("rounds=")
            })
            .unwrap();
        assert_eq!(salt.len(), 16, "crypt(3) reads 16 salt characters: {h}");
        // A hash glibc's crypt(3) made (Python's crypt module) verifies too.
        assert!(verify_hash("$6$abcdefghijklmnop$J/AWykHqo2Tx5UtavGnFc3ytI33la50JpzLTarSWVhkIXK6wOjNwwZjsrIw2UgmrER2EKrSHCeQyAINEEXAk1/", "secret"));
        assert!(verify_hash(&h, "secret"));
        assert!(!verify_hash(&h, "wrong"));
        assert!(
            !verify_hash("{PLAIN}secret", "secret"),
            "plain text passwords are not accepted"
        );
    }
}

/// Reads docker-mailserver's `dovecot-quotas.cf`: `user@domain:SIZE`
/// lines, SIZE with an optional B/K/M/G/T suffix (Dovecot's units). Lines
/// that don't parse are skipped and named in the returned warnings.
pub fn read_quotas(text: &str) -> (std::collections::HashMap<String, u64>, Vec<String>) {
    let mut map = std::collections::HashMap::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.rsplit_once(':').and_then(|(user, size)| {
            let size = size.trim();
            let (num, unit) = size.split_at(
                size.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(size.len()),
            );
            let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
                "" | "B" => 1,
                "K" | "KB" => 1 << 10,
                "M" | "MB" => 1 << 20,
                "G" | "GB" => 1 << 30,
                "T" | "TB" => 1 << 40,
                _ => return None,
            };
            let bytes = num.parse::<u64>().ok()?.checked_mul(mult)?;
            user.contains('@')
                .then(|| (user.trim().to_lowercase(), bytes))
        });
        match parsed {
            // 0 is Dovecot's "unlimited".
            Some((u, 0)) => {
                map.insert(u, u64::MAX);
            }
            Some((u, b)) => {
                map.insert(u, b);
            }
            None => bad.push(format!("line {}: not user@domain:SIZE", n + 1)),
        }
    }
    (map, bad)
}

#[cfg(test)]
mod quota_tests {
    #[test]
    fn quotas_file() {
        let (m, bad) = super::read_quotas("a@x.org:5M\nB@Y.org:2G\n# c\nbroken\nz@x.org:0\n");
        assert_eq!(m.get("a@x.org"), Some(&(5 << 20)));
        assert_eq!(m.get("b@y.org"), Some(&(2 << 30)));
        assert_eq!(m.get("z@x.org"), Some(&u64::MAX));
        assert_eq!(bad, vec!["line 4: not user@domain:SIZE".to_owned()]);
    }
}
