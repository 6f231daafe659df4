//! `postern check-config --dms DIR`: what Postern finds in a
//! docker-mailserver tree and what it leaves unread, one line each.
//!
//! A docker-mailserver (DMS) deployment keeps three folders: its config
//! folder (`/tmp/docker-mailserver`: accounts, aliases, quotas, DKIM keys,
//! Postfix and Dovecot overrides, Sieve scripts), the Maildir root
//! (`/var/mail/<domain>/<user>/`, with Dovecot's `dovecot-uidlist` in each
//! folder) and the state folder (`/var/mail-state`, where postsrsd keeps
//! its secret in `etc-postsrsd/postsrsd.secret`). [`examine`] reads all
//! three and says, per file: read by Postern (with counts), read once
//! another issue has landed (DKIM signing, SRS), not read (and what to do
//! instead), absent, or broken (with the file's line number). Every file is
//! read with a size limit and the Maildir walk stops after
//! [`MAX_ENTRIES`] entries.

use postern_adapters::directory::{read_quotas, Directory};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file read.
const MAX_FILE: u64 = 64 << 20;
/// Bad lines named per file (the rest are counted).
const MAX_BAD_LINES: usize = 20;
/// Directory entries the Maildir walk looks at before it stops.
pub const MAX_ENTRIES: usize = 500_000;
/// The UID and GID the image runs as, and DMS's `docker` user owns mail with.
pub const MAIL_UID: u32 = 5000;

/// What Postern does with one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Read in place.
    Read,
    /// Present, and not read: the text says what to do instead.
    NotRead,
    /// Not there.
    Absent,
    /// There and readable, but worth a look (e.g. owners).
    Warn,
    /// Broken: Postern would refuse it or a user would lose something.
    Error,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Read => "read",
            Status::NotRead => "not read",
            Status::Absent => "absent",
            Status::Warn => "check",
            Status::Error => "ERROR",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// What Postern does with it.
    pub status: Status,
    /// The file or folder, relative to its root where possible.
    pub what: String,
    /// Counts, or why it is not read, or what is wrong.
    pub detail: String,
}

/// The three folders of a DMS deployment.
#[derive(Clone, Debug, Default)]
pub struct DmsPaths {
    /// The config folder (`/tmp/docker-mailserver`).
    pub config: PathBuf,
    /// The Maildir root (`/var/mail`), if known.
    pub mail: Option<PathBuf>,
    /// The state folder (`/var/mail-state`), if known.
    pub state: Option<PathBuf>,
}

/// Everything [`examine`] found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The folders examined.
    pub paths: DmsPaths,
    /// One line per file, folder or finding, in the order found.
    pub items: Vec<Item>,
}

impl Report {
    fn push(&mut self, status: Status, what: impl Into<String>, detail: impl Into<String>) {
        self.items.push(Item {
            status,
            what: what.into(),
            detail: detail.into(),
        });
    }

    /// How many items are errors.
    pub fn errors(&self) -> usize {
        self.count(Status::Error)
    }

    /// How many items have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }

    /// The items about `what` (exact name).
    pub fn about(&self, what: &str) -> Vec<&Item> {
        self.items.iter().filter(|i| i.what == what).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(not given)".to_owned(), |p| p.display().to_string())
        };
        writeln!(
            f,
            "docker-mailserver: config {}, mail {}, state {}",
            self.paths.config.display(),
            opt(&self.paths.mail),
            opt(&self.paths.state)
        )?;
        for i in &self.items {
            writeln!(f, "  {:<8} {}: {}", i.status.label(), i.what, i.detail)?;
        }
        write!(
            f,
            "{} read, {} not read, {} absent, {} to check, {} errors",
            self.count(Status::Read),
            self.count(Status::NotRead),
            self.count(Status::Absent),
            self.count(Status::Warn),
            self.errors()
        )
    }
}

/// Reads a text file of at most [`MAX_FILE`] bytes.
fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Numbered lines that are neither blank nor comments.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Pushes the bad lines of `file` as errors (the first [`MAX_BAD_LINES`]).
fn bad_lines(r: &mut Report, file: &str, bad: &[(usize, String)]) {
    for (line, why) in bad.iter().take(MAX_BAD_LINES) {
        r.push(Status::Error, format!("{file}:{line}"), why.clone());
    }
    if bad.len() > MAX_BAD_LINES {
        r.push(
            Status::Error,
            file,
            format!("{} more bad lines", bad.len() - MAX_BAD_LINES),
        );
    }
}

/// Examines a DMS tree.
pub fn examine(paths: &DmsPaths) -> Report {
    let mut r = Report {
        paths: paths.clone(),
        items: Vec::new(),
    };
    let cfg = &paths.config;
    if !cfg.is_dir() {
        r.push(
            Status::Error,
            cfg.display().to_string(),
            "not a folder (docker-mailserver's config folder, /tmp/docker-mailserver)",
        );
        return r;
    }
    let accounts = directory(&mut r, cfg);
    quotas(&mut r, cfg);
    sasl_passwd(&mut r, cfg);
    main_cf(&mut r, cfg);
    dkim(&mut r, cfg);
    postsrsd(&mut r, paths.state.as_deref());
    if let Some(mail) = &paths.mail {
        maildir(&mut r, mail, &accounts);
    } else {
        r.push(
            Status::Absent,
            "Maildir root",
            "not examined (give --mail /var/mail)",
        );
    }
    others(&mut r, cfg);
    r
}

/// `postfix-accounts.cf` and `postfix-virtual.cf`, each line on its own so
/// that every bad line is named. Returns the accounts (`user@domain`).
fn directory(r: &mut Report, cfg: &Path) -> BTreeSet<String> {
    let mut good_accounts = String::new();
    let mut good_virtual = String::new();
    let mut schemes: BTreeMap<String, usize> = BTreeMap::new();
    let acc_path = cfg.join("postfix-accounts.cf");
    match read_text(&acc_path) {
        Err(e) => r.push(
            Status::Error,
            "postfix-accounts.cf",
            format!("{e} (Postern needs the accounts: [directory] accounts)"),
        ),
        Ok(text) => {
            let mut bad = Vec::new();
            for (n, line) in content_lines(&text) {
                match Directory::parse(line, "") {
                    Ok(_) => {
                        let hash = line.split('|').nth(1).unwrap_or("");
                        let scheme = hash_scheme(hash);
                        let known = matches!(
                            scheme.as_str(),
                            "SHA512-CRYPT"
                                | "SHA256-CRYPT"
                                | "BLF-CRYPT"
                                | "ARGON2I"
                                | "ARGON2ID"
                                | "CRYPT"
                        );
                        if known {
                            *schemes.entry(scheme).or_default() += 1;
                            good_accounts.push_str(line);
                            good_accounts.push('\n');
                        } else {
                            bad.push((
                                n,
                                format!(
                                    "password scheme {scheme} is not one Postern verifies \
                                     (SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2I, ARGON2ID): \
                                     this user could not log in"
                                ),
                            ));
                        }
                    }
                    Err(e) => bad.push((n, e.cause())),
                }
            }
            bad_lines(r, "postfix-accounts.cf", &bad);
        }
    }
    let virt_path = cfg.join("postfix-virtual.cf");
    let virtual_present = virt_path.exists();
    if virtual_present {
        match read_text(&virt_path) {
            Err(e) => r.push(Status::Error, "postfix-virtual.cf", e),
            Ok(text) => {
                let mut bad = Vec::new();
                for (n, line) in content_lines(&text) {
                    match Directory::parse("", line) {
                        Ok(_) => {
                            good_virtual.push_str(line);
                            good_virtual.push('\n');
                        }
                        Err(e) => bad.push((n, e.cause())),
                    }
                }
                bad_lines(r, "postfix-virtual.cf", &bad);
            }
        }
    }
    let Ok(dir) = Directory::parse(&good_accounts, &good_virtual) else {
        return BTreeSet::new();
    };
    let accounts: BTreeSet<String> = dir.mailboxes().map(|m| m.address()).collect();
    let domains: Vec<&str> = {
        let mut d: Vec<&str> = dir.domains().collect();
        d.sort_unstable();
        d
    };
    if acc_path.exists() {
        let schemes = schemes
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        r.push(
            Status::Read,
            "postfix-accounts.cf",
            format!(
                "accounts: {} in {} domains ({}); password schemes: {}; [directory] accounts",
                accounts.len(),
                domains.len(),
                domains.join(", "),
                if schemes.is_empty() { "none" } else { &schemes }
            ),
        );
    }
    if virtual_present {
        let lines = content_lines(&good_virtual).count();
        let catchalls = content_lines(&good_virtual)
            .filter(|(_, l)| l.starts_with('@'))
            .count();
        let outside = content_lines(&good_virtual)
            .flat_map(|(_, l)| l.split_whitespace().skip(1))
            .flat_map(|t| t.split(','))
            .filter_map(|t| t.trim().rsplit_once('@').map(|(_, d)| d.to_lowercase()))
            .filter(|d| !domains.contains(&d.as_str()))
            .count();
        r.push(
            Status::Read,
            "postfix-virtual.cf",
            format!(
                "aliases: {} ({catchalls} catch-all, {outside} targets outside our domains: \
                 forwarded through the smarthost, with an SRS sender when [srs] is set); \
                 [directory] virtual",
                lines - catchalls
            ),
        );
    } else {
        r.push(Status::Absent, "postfix-virtual.cf", "no aliases");
    }
    accounts
}

/// A hash's scheme: Dovecot's `{SCHEME}` prefix, or the crypt(3) prefix
/// of a hash written without one.
fn hash_scheme(hash: &str) -> String {
    if let Some((s, _)) = hash.strip_prefix('{').and_then(|h| h.split_once('}')) {
        return s.to_ascii_uppercase();
    }
    let by_prefix = [
        ("$6$", "SHA512-CRYPT"),
        ("$5$", "SHA256-CRYPT"),
        ("$2", "BLF-CRYPT"),
        ("$argon2id", "ARGON2ID"),
        ("$argon2i", "ARGON2I"),
    ];
    by_prefix
        .iter()
        .find(|(p, _)| hash.starts_with(p))
        .map_or("(none)", |(_, s)| s)
        .to_owned()
}

/// `dovecot-quotas.cf` (`setup quota set`).
fn quotas(r: &mut Report, cfg: &Path) {
    let path = cfg.join("dovecot-quotas.cf");
    if !path.exists() {
        r.push(
            Status::Absent,
            "dovecot-quotas.cf",
            "no per-account quotas (imap.quota_mib applies to all)",
        );
        return;
    }
    match read_text(&path) {
        Err(e) => r.push(Status::Error, "dovecot-quotas.cf", e),
        Ok(text) => {
            let (map, bad) = read_quotas(&text);
            let bad: Vec<(usize, String)> = bad
                .into_iter()
                .map(|b| {
                    let n = b
                        .strip_prefix("line ")
                        .and_then(|s| s.split(':').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    (n, "expected user@domain:SIZE (B, K, M, G or T)".to_owned())
                })
                .collect();
            bad_lines(r, "dovecot-quotas.cf", &bad);
            r.push(
                Status::Read,
                "dovecot-quotas.cf",
                format!("quotas: {}; [directory] quotas", map.len()),
            );
        }
    }
}

/// The relay's credentials (`postfix-sasl-password.cf`, Postfix's
/// `sasl_passwd` format): the host of each entry, never the secret.
fn sasl_passwd(r: &mut Report, cfg: &Path) {
    let name = "postfix-sasl-password.cf";
    let path = cfg.join(name);
    if !path.exists() {
        r.push(
            Status::Absent,
            name,
            "no relay credentials (DMS's RELAY_USER/RELAY_PASSWORD write this file)",
        );
        return;
    }
    match read_text(&path) {
        Err(e) => r.push(Status::Error, name, e),
        Ok(text) => {
            let mut hosts = Vec::new();
            let mut bad = Vec::new();
            for (n, line) in content_lines(&text) {
                match line.split_once(char::is_whitespace) {
                    Some((host, cred)) if cred.trim().contains(':') => hosts.push(host.to_owned()),
                    _ => bad.push((n, "expected [host]:port user:password".to_owned())),
                }
            }
            bad_lines(r, name, &bad);
            r.push(
                Status::Read,
                name,
                format!(
                    "relay credentials for {}; [relay] sasl_passwd (and host/port to match)",
                    if hosts.is_empty() {
                        "no host".to_owned()
                    } else {
                        hosts.join(", ")
                    }
                ),
            );
        }
    }
}

/// `postfix-main.cf` overrides: not read; the settings Postern has are
/// named with their key.
fn main_cf(r: &mut Report, cfg: &Path) {
    let name = "postfix-main.cf";
    let Ok(text) = read_text(&cfg.join(name)) else {
        return;
    };
    let mut other = Vec::new();
    for (_, line) in content_lines(&text) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let ours = match key {
            "message_size_limit" => Some("smtp.max_message_size"),
            "smtpd_recipient_limit" => Some("smtp.max_recipients"),
            "smtpd_hard_error_limit" => Some("smtp.hard_error_limit"),
            "smtpd_client_connection_rate_limit" => Some("rate.connection_rate_limit"),
            "smtpd_client_message_rate_limit" => Some("rate.message_rate_limit"),
            "anvil_rate_time_unit" => Some("rate.time_unit_secs (in seconds)"),
            "smtpd_client_event_limit_exceptions" => Some("rate.exceptions"),
            "smtpd_client_connection_count_limit" => Some("smtp.max_connections_per_client"),
            "relayhost" => Some("relay.host and relay.port"),
            "smtpd_forbid_bare_newline" => Some("smtp.bare_newline"),
            "postscreen_access_list" => Some("postscreen.access_list"),
            "postscreen_greet_wait" | "postscreen_greet_action" => {
                Some("postscreen.greet_pause_ms / greet_action")
            }
            _ => None,
        };
        match ours {
            Some(k) => r.push(
                Status::NotRead,
                name,
                format!("{key} = {value}: set {k} in postern.toml"),
            ),
            None => other.push(key.to_owned()),
        }
    }
    if !other.is_empty() {
        r.push(
            Status::NotRead,
            name,
            format!(
                "{} Postfix settings with no Postern equivalent: {}",
                other.len(),
                other.join(", ")
            ),
        );
    }
}

/// Whether a file holds a PEM private key.
fn pem_key(path: &Path) -> bool {
    read_text(path).is_ok_and(|t| t.contains("-----BEGIN") && t.contains("PRIVATE KEY-----"))
}

/// DKIM keys: Rspamd's `rspamd/dkim/<type>-<bits>-<selector>-<domain>.private.txt`
/// (DMS's `setup config dkim`) and OpenDKIM's `opendkim/keys/<domain>/<selector>.private`.
fn dkim(r: &mut Report, cfg: &Path) {
    let landing = "signed with when [dkim] dir names the DMS config folder";
    // Rspamd's layout.
    let rspamd = cfg.join("rspamd/dkim");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&rspamd) {
        for e in entries.flatten().take(1000) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".private.txt") else {
                continue;
            };
            let mut parts = stem.splitn(4, '-');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(kind), Some(bits), Some(sel), Some(domain)) if domain.contains('.') => {
                    if pem_key(&e.path()) {
                        found.push(format!("{domain} (selector {sel}, {kind}-{bits})"));
                    } else {
                        r.push(
                            Status::Error,
                            format!("rspamd/dkim/{name}"),
                            "not a PEM private key",
                        );
                    }
                }
                _ => r.push(
                    Status::Warn,
                    format!("rspamd/dkim/{name}"),
                    "name not <type>-<bits>-<selector>-<domain>.private.txt",
                ),
            }
        }
    }
    if found.is_empty() {
        r.push(Status::Absent, "rspamd/dkim", "no Rspamd DKIM key");
    } else {
        found.sort();
        r.push(
            Status::Read,
            "rspamd/dkim",
            format!("DKIM keys for {}: {landing}", found.join(", ")),
        );
    }
    // OpenDKIM's layout.
    let keys = cfg.join("opendkim/keys");
    let mut found = Vec::new();
    if let Ok(domains) = std::fs::read_dir(&keys) {
        for d in domains.flatten().take(1000) {
            let domain = d.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten().take(100) {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(sel) = name.strip_suffix(".private") else {
                    continue;
                };
                if pem_key(&f.path()) {
                    found.push(format!("{domain} (selector {sel})"));
                } else {
                    r.push(
                        Status::Error,
                        format!("opendkim/keys/{domain}/{name}"),
                        "not a PEM private key",
                    );
                }
            }
        }
    }
    if !found.is_empty() {
        found.sort();
        let tables = ["KeyTable", "SigningTable"]
            .iter()
            .filter(|t| cfg.join("opendkim").join(t).is_file())
            .copied()
            .collect::<Vec<_>>();
        r.push(
            Status::Read,
            "opendkim/keys",
            format!(
                "DKIM keys for {} (tables: {}): {landing}",
                found.join(", "),
                if tables.is_empty() {
                    "none".to_owned()
                } else {
                    tables.join(", ")
                }
            ),
        );
    }
}

/// postsrsd's secret, in the state folder: `etc/postsrsd.secret` since
/// DMS 15, `etc-postsrsd/postsrsd.secret` before.
fn postsrsd(r: &mut Report, state: Option<&Path>) {
    let what = match state {
        Some(s) if s.join("etc-postsrsd/postsrsd.secret").exists() => {
            "etc-postsrsd/postsrsd.secret"
        }
        _ => "etc/postsrsd.secret",
    };
    let Some(state) = state else {
        r.push(
            Status::Absent,
            what,
            "state folder not examined (give --state /var/mail-state)",
        );
        return;
    };
    let path = state.join(what);
    if !path.exists() {
        r.push(
            Status::Absent,
            what,
            "no postsrsd secret (SRS_SECRET in DMS's environment, if set, is the secret)",
        );
        return;
    }
    match read_text(&path) {
        Err(e) => r.push(Status::Error, what, e),
        Ok(t) => {
            let n = content_lines(&t).count();
            if n == 0 {
                r.push(Status::Error, what, "empty: postsrsd had no secret");
            } else {
                r.push(
                    Status::Read,
                    what,
                    format!(
                        "postsrsd secret present ({n} line{}, the first signs): \
                         [srs] secret_file reads it",
                        if n == 1 { "" } else { "s" }
                    ),
                );
            }
        }
    }
}

/// What the Maildir walk counted.
#[derive(Default)]
struct Walk {
    entries: usize,
    accounts: BTreeSet<String>,
    folders: usize,
    uidlists: usize,
    sieve: usize,
    other_owner: usize,
}

/// The Maildir root: `<mail>/<domain>/<user>/` with `cur/`, `.Folder/`s
/// and `dovecot-uidlist` files; who owns them; Sieve scripts beside them.
fn maildir(r: &mut Report, mail: &Path, accounts: &BTreeSet<String>) {
    use std::os::unix::fs::MetadataExt;
    let what = "Maildir root";
    let root_meta = match std::fs::metadata(mail) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            r.push(
                Status::Error,
                what,
                format!("{}: not a folder", mail.display()),
            );
            return;
        }
        Err(e) => {
            r.push(Status::Error, what, format!("{}: {e}", mail.display()));
            return;
        }
    };
    let mut w = Walk::default();
    let list = |p: &Path, w: &mut Walk| -> Vec<std::fs::DirEntry> {
        let Ok(rd) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        let room = MAX_ENTRIES.saturating_sub(w.entries);
        let v: Vec<_> = rd.flatten().take(room).collect();
        w.entries += v.len();
        v
    };
    let is_dir = |e: &std::fs::DirEntry| e.file_type().is_ok_and(|t| t.is_dir());
    for d in list(mail, &mut w) {
        let domain = d.file_name().to_string_lossy().into_owned();
        // Postern's queue (.postern-queue) and other dot folders are not domains.
        if domain.starts_with('.') || !is_dir(&d) {
            continue;
        }
        for u in list(&d.path(), &mut w) {
            let user = u.file_name().to_string_lossy().into_owned();
            if !is_dir(&u) || !u.path().join("cur").is_dir() {
                continue;
            }
            w.accounts.insert(format!("{user}@{domain}"));
            if u.metadata().is_ok_and(|m| m.uid() != MAIL_UID) {
                w.other_owner += 1;
            }
            for f in list(&u.path(), &mut w) {
                let name = f.file_name().to_string_lossy().into_owned();
                if name == "dovecot-uidlist" {
                    w.uidlists += 1;
                } else if name == ".dovecot.sieve" || name == "sieve" || name == "home" {
                    // DMS keeps a user's home (and its Sieve scripts) here.
                    w.sieve +=
                        usize::from(name != "home" || f.path().join(".dovecot.sieve").exists());
                } else if name.starts_with('.') && is_dir(&f) && f.path().join("cur").is_dir() {
                    w.folders += 1;
                    w.uidlists += usize::from(f.path().join("dovecot-uidlist").is_file());
                }
            }
        }
    }
    let without: Vec<&String> = accounts.difference(&w.accounts).collect();
    let orphans: Vec<&String> = w.accounts.difference(accounts).collect();
    r.push(
        Status::Read,
        what,
        format!(
            "{}: {} accounts with a Maildir, {} folders besides INBOX, {} dovecot-uidlist files \
             (UIDs and UIDVALIDITY kept); data_dir",
            mail.display(),
            w.accounts.len(),
            w.folders,
            w.uidlists
        ),
    );
    if w.entries >= MAX_ENTRIES {
        r.push(
            Status::Warn,
            what,
            format!("walk stopped after {MAX_ENTRIES} entries: the counts are partial"),
        );
    }
    if !without.is_empty() {
        r.push(
            Status::Read,
            what,
            format!(
                "{} accounts without a Maildir yet (created at their first message): {}",
                without.len(),
                list_some(&without)
            ),
        );
    }
    if !orphans.is_empty() {
        r.push(
            Status::Warn,
            what,
            format!(
                "{} Maildirs of no account in postfix-accounts.cf (kept, not served): {}",
                orphans.len(),
                list_some(&orphans)
            ),
        );
    }
    if root_meta.uid() != MAIL_UID || w.other_owner > 0 {
        r.push(
            Status::Warn,
            what,
            format!(
                "owner uid {} (root), {} account folders not owned by {MAIL_UID}: Postern runs as \
                 {MAIL_UID}:{MAIL_UID} (DMS's own mail user): chown -R {MAIL_UID}:{MAIL_UID} the \
                 Maildir root before the cut-over",
                root_meta.uid(),
                w.other_owner
            ),
        );
    }
    if w.sieve > 0 {
        r.push(
            Status::NotRead,
            "Sieve scripts",
            format!(
                "{} per-user Sieve scripts in the Maildir homes are not run",
                w.sieve
            ),
        );
    }
}

/// Up to five names, then "...".
fn list_some(names: &[&String]) -> String {
    let mut s = names
        .iter()
        .take(5)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 5 {
        s.push_str(", ...");
    }
    s
}

/// Every other entry of the config folder, with what Postern does instead.
fn others(r: &mut Report, cfg: &Path) {
    let Ok(entries) = std::fs::read_dir(cfg) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .take(10_000)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // A mounted Kubernetes Secret's `..data` and timestamped folders.
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    for name in names {
        let why = match name.as_str() {
            "postfix-accounts.cf"
            | "postfix-virtual.cf"
            | "dovecot-quotas.cf"
            | "postfix-sasl-password.cf"
            | "postfix-main.cf" => continue,
            "opendkim" => "OpenDKIM's settings beyond keys/ (TrustedHosts, ...) are not read",
            "rspamd" => {
                "Rspamd settings (override.d, local.d, custom-commands.conf) are not read; \
                 [spam] scores with its own rules and a classifier per user"
            }
            "postfix-master.cf" => {
                "master.cf services are not read: listeners are [[listener]] tables \
                 (proxy = \"required\" for the HAProxy ports)"
            }
            "dovecot.cf" => {
                "Dovecot overrides are not read: IMAP settings are [imap] keys, a haproxy = yes \
                 listener is a [[listener]] with proxy = \"required\""
            }
            "user-patches.sh" => "not run (the image has no shell)",
            "postfix-regexp.cf" => {
                "regexp aliases are not supported: write them as postfix-virtual.cf lines"
            }
            "postfix-aliases.cf" => "local aliases(5) are not read",
            "postfix-relaymap.cf" => {
                "per-domain relay map not read: all outbound mail goes through [relay] host"
            }
            "postfix-send-access.cf" | "postfix-receive-access.cf" => {
                "access maps are not read: senders are checked against their own addresses \
                 and aliases (spoof protection is always on)"
            }
            "dovecot-masters.cf" => "Dovecot master users are not supported",
            "fetchmail.cf" | "getmail" => "fetching from other servers is not done",
            "sieve-filter" | "sieve-pipe" => "Sieve is not run",
            "ssl" => "certificates: name them in [tls] cert and key",
            "whitelist_clients.local" => "postgrey is not run",
            n if n.ends_with(".dovecot.sieve") => "Sieve scripts are not run",
            _ => "unknown to Postern, not read",
        };
        r.push(Status::NotRead, name, why);
    }
}
