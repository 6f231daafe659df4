//! Message files and the account's own files: reading a message or its
//! header with CRLF line ends, sizes, atomic writes, subscriptions and the
//! folder list.

use super::MailStoreError;
use crate::maildir::sync_dir;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

/// The largest message body read for FETCH or SEARCH.
pub(super) const MAX_MESSAGE: u64 = 64 << 20;

/// The largest header read when only the header is asked for.
pub(super) const MAX_HEADER: usize = 1 << 20;

/// The header of a message file (up to and with the empty line), CRLF.
pub(super) fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let from = raw.len().saturating_sub(3);
        raw.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memmem::find(&raw[from..], b"\n\n") {
            raw.truncate(from + i + 2);
            break;
        }
        if let Some(i) = memchr::memmem::find(&raw[from..], b"\n\r\n") {
            raw.truncate(from + i + 3);
            break;
        }
        if raw.len() > MAX_HEADER {
            break;
        }
    }
    Ok(lf_to_crlf(&raw))
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("postern-tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(p) = path.parent() {
        sync_dir(p)?;
    }
    Ok(())
}

pub(super) fn size_from_name(base: &str) -> Option<u64> {
    base.split(',')
        .find_map(|p| p.strip_prefix("W="))
        .and_then(|w| w.parse().ok())
}

/// The size IMAP serves for a stored file: [`crlf_len`] of its bytes.
pub(super) fn crlf_size(path: &Path) -> io::Result<u64> {
    Ok(crlf_len(&fs::read(path)?) as u64)
}

/// Bytes with LF line ends (as stored) with CRLF ones (as served).
pub(super) fn lf_to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The length of [`lf_to_crlf`]'s result, without making it.
pub(super) fn crlf_len(raw: &[u8]) -> usize {
    let mut prev = 0u8;
    let mut n = raw.len();
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

/// A message as IMAP serves it: CRLF line ends.
pub(super) fn read_message(path: &Path) -> Result<Vec<u8>, MailStoreError> {
    let size = fs::metadata(path)?.len();
    if size > MAX_MESSAGE {
        return Err(MailStoreError::TooLarge {
            size,
            limit: MAX_MESSAGE,
        });
    }
    let raw = fs::read(path)?;
    Ok(lf_to_crlf(&raw))
}

/// The folders an account starts subscribed to, until it changes them
/// (as docker-mailserver's `auto = subscribe`).
const DEFAULT_SUBSCRIPTIONS: [&str; 5] = ["INBOX", "Drafts", "Sent", "Junk", "Trash"];

/// The subscriptions file's names, as bytes: a line that is not UTF-8
/// (written by another program) is kept as it is, not lost when the
/// file is written back. Dovecot's `V\t2` header is left out and its tab
/// hierarchy separator read as `/`. The defaults when the account never
/// changed them; a file that cannot be read is an error, not the
/// defaults (a later SUBSCRIBE would write them over the account's own
/// list).
pub(super) fn subscription_lines(root: &Path) -> io::Result<Vec<Vec<u8>>> {
    match fs::read(root.join("subscriptions")) {
        Ok(bytes) => Ok(bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && !l.starts_with(b"V\t"))
            .map(|l| {
                l.iter()
                    .map(|&b| if b == b'\t' { b'/' } else { b })
                    .collect()
            })
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DEFAULT_SUBSCRIPTIONS
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()),
        Err(e) => Err(e),
    }
}

/// Subscribed folders, for LIST: a line that is not UTF-8 is read with
/// replacement characters (it matches no folder), so it costs LIST
/// nothing more than itself.
pub(super) fn read_subscriptions(root: &Path) -> io::Result<Vec<String>> {
    Ok(subscription_lines(root)?
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect())
}

pub(super) fn list_folders(root: &Path) -> io::Result<Vec<String>> {
    let mut names = vec!["INBOX".to_owned()];
    for e in fs::read_dir(root)?.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = n.strip_prefix('.') {
            if !rest.is_empty() && e.path().join("cur").is_dir() {
                names.push(rest.replace('.', "/"));
            }
        }
    }
    names.sort();
    Ok(names)
}
