//! The answers to the IMAP session's requests, and message bodies and
//! APPEND on disk.

use super::files::{
    crlf_len, list_folders, read_header, read_message, read_subscriptions, subscription_lines,
    write_atomic,
};
use super::flags::{flag_info, parse_info, write_keywords};
use super::index::{Entry, Folder};
use super::{MailStore, MailStoreError};
use crate::maildir::{crlf_to_lf, sync_dir};
use postern_core::imap::event::{Code, ListEntry, MailboxAnswer, MailboxRequest, Stored};
use postern_core::imap::rules::{self, StoreStep};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) fn no(code: Code, text: impl Into<String>) -> MailboxAnswer {
    MailboxAnswer::No {
        code: Some(code),
        text: text.into(),
    }
}

impl MailStore {
    pub(super) fn answer_io(
        &self,
        user: &str,
        root: &Path,
        req: MailboxRequest,
    ) -> Result<MailboxAnswer, MailStoreError> {
        use MailboxRequest as R;
        enum Kind {
            Poll,
            Other,
        }
        let req_kind = if matches!(req, R::Poll { .. }) {
            Kind::Poll
        } else {
            Kind::Other
        };
        let folder_or = |name: &str| Self::folder(root, name);
        let existing = |name: &str| folder_or(name).filter(|d| d.join("cur").is_dir());
        let missing = || rules::missing(false);
        if let Some(no) = rules::manage_refusal(&req, &|n| existing(n).is_some()) {
            return Ok(no);
        }
        match req {
            R::List {
                patterns,
                subscribed_only,
                with_status,
            } => {
                let subs = read_subscriptions(root)?;
                let names = list_folders(root)?;
                let mut out = Vec::new();
                for n in &names {
                    if !patterns
                        .iter()
                        .any(|p| postern_core::imap::session::wildcard(p, n))
                        || (subscribed_only && !subs.contains(n))
                    {
                        continue;
                    }
                    let attributes = postern_core::imap::session::list_attributes(
                        names.iter(),
                        n,
                        subs.contains(n),
                    );
                    let status = match (with_status, existing(n)) {
                        (true, Some(dir)) => Some(self.with(&dir, |f| Ok(f.counts()))?),
                        _ => None,
                    };
                    out.push(ListEntry {
                        name: n.clone(),
                        attributes,
                        status,
                    });
                }
                if subscribed_only {
                    out.extend(postern_core::imap::session::nonexistent_subscriptions(
                        &subs, &names, &patterns,
                    ));
                    out.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Ok(MailboxAnswer::List(out))
            }
            R::Select {
                mailbox,
                take_recent,
            }
            | R::Poll {
                mailbox,
                take_recent,
            } => {
                let poll = matches!(req_kind, Kind::Poll);
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let attributes = if poll {
                    Vec::new()
                } else {
                    postern_core::imap::session::list_attributes(
                        list_folders(root)?.iter(),
                        &mailbox,
                        false,
                    )
                };
                self.with(&dir, |f| {
                    let recent = if take_recent {
                        f.take_recent(&dir)?
                    } else {
                        Vec::new()
                    };
                    let view = f.current_view(attributes, recent);
                    // Poll's answer is the same view, named for what it is.
                    Ok(if poll {
                        MailboxAnswer::Changed(view)
                    } else {
                        MailboxAnswer::View(view)
                    })
                })
                .map_err(MailStoreError::from)
            }
            R::Vanished { mailbox, since } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(self.with(&dir, |f| {
                    Ok(MailboxAnswer::Vanished {
                        uids: f.tombstones.since(since),
                        floor: f.tombstones.floor(),
                    })
                })?)
            }
            R::Status { mailbox } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(self.with(&dir, |f| Ok(MailboxAnswer::Status(f.counts())))?)
            }
            R::Quota => Ok(MailboxAnswer::Quota {
                used: self.used(root)?,
                limit: self.limit(user),
            }),
            R::Create { mailbox } => {
                // The rules refused bad names and existing mailboxes.
                let Some(dir) = folder_or(&mailbox) else {
                    return Ok(rules::refuse(Code::Cannot, "Invalid mailbox name"));
                };
                for sub in ["", "cur", "new", "tmp"] {
                    let d = if sub.is_empty() {
                        dir.clone()
                    } else {
                        dir.join(sub)
                    };
                    match fs::create_dir(&d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                File::create(dir.join("maildirfolder"))?;
                // The UID list now: the UIDVALIDITY is the creation's.
                self.with(&dir, |_| Ok(()))?;
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Delete { mailbox } => {
                let Some(dir) = folder_or(&mailbox).filter(|d| d.is_dir()) else {
                    return Ok(missing());
                };
                fs::remove_dir_all(&dir)?;
                sync_dir(root)?;
                self.forget(&dir);
                Ok(MailboxAnswer::Ok)
            }
            R::Rename { from, to } => {
                let (Some(a), Some(b)) = (folder_or(&from), folder_or(&to)) else {
                    return Ok(rules::refuse(Code::Cannot, "Invalid mailbox name"));
                };
                if b.exists() {
                    // A directory without `cur/`: not a mailbox, but in the way.
                    return Ok(rules::refuse(Code::AlreadyExists, "Target mailbox exists"));
                }
                // Children move with their parent: `.A.x` -> `.B.x`. Every
                // new name is checked before anything moves, so that a
                // rename refused is refused whole, not half done.
                let prefix = format!(".{}.", from.replace('/', "."));
                let target = format!(".{}.", to.replace('/', "."));
                let mut children = Vec::new();
                for e in fs::read_dir(root)?.filter_map(Result::ok) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(rest) = n.strip_prefix(&prefix) {
                        let new = root.join(format!("{target}{rest}"));
                        if new.exists() {
                            return Ok(rules::refuse(
                                Code::AlreadyExists,
                                "A subfolder of the target mailbox exists",
                            ));
                        }
                        children.push((e.path(), new));
                    }
                }
                for (old, new) in children {
                    // Its UID list first: a mailbox keeps its UIDVALIDITY
                    // under the new name.
                    if old.join("cur").is_dir() {
                        self.with(&old, |_| Ok(()))?;
                    }
                    self.forget(&old);
                    fs::rename(&old, &new)?;
                }
                self.with(&a, |_| Ok(()))?;
                self.forget(&a);
                fs::rename(&a, &b)?;
                sync_dir(root)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Subscribe { mailbox, on } => {
                let _one_writer = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                let mut subs = subscription_lines(root)?;
                let name = mailbox.into_bytes();
                if on {
                    if !subs.contains(&name) {
                        subs.push(name);
                    }
                } else {
                    subs.retain(|s| s != &name);
                }
                let mut text = Vec::new();
                for s in &subs {
                    text.extend_from_slice(s);
                    text.push(b'\n');
                }
                write_atomic(&root.join("subscriptions"), &text)?;
                Ok(MailboxAnswer::Ok)
            }
            R::Bodies {
                mailbox,
                uids,
                header_only,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(MailboxAnswer::Bodies(self.bodies(
                    &dir,
                    &uids,
                    header_only,
                )?))
            }
            R::Summaries { mailbox, uids } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                Ok(MailboxAnswer::Summaries(self.summaries(&dir, &uids)?))
            }
            R::Store {
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let answer = self.with(&dir, |f| {
                    let mut keywords = f.keywords.clone();
                    let mut changed = Vec::new();
                    let mut modified = Vec::new();
                    let mut log = Vec::new();
                    for u in &uids {
                        let Some(i) = f.index_of(*u) else { continue };
                        let e = &f.entries[i];
                        match rules::store_step(
                            &e.flags,
                            e.modseq,
                            mode,
                            &flags,
                            unchanged_since,
                            &mut keywords,
                        ) {
                            StoreStep::Modified => {
                                modified.push(*u);
                                continue;
                            }
                            StoreStep::Unchanged => {}
                            StoreStep::Changed(new) => {
                                let info = flag_info(&new, &mut keywords);
                                let name = format!("{}:2,{info}", e.base());
                                fs::rename(
                                    dir.join("cur").join(&e.name),
                                    dir.join("cur").join(&name),
                                )?;
                                let e = &mut f.entries[i];
                                e.name = name;
                                e.flags = new;
                                let m = f.bump(i);
                                log.push((*u, m));
                            }
                        }
                        let e = &f.entries[i];
                        changed.push(Stored {
                            uid: e.uid,
                            flags: e.flags.clone(),
                            modseq: e.modseq,
                        });
                    }
                    if keywords != f.keywords {
                        write_keywords(&dir, &keywords)?;
                        f.keywords = keywords;
                    }
                    if !log.is_empty() {
                        f.log_modseqs(&dir, &log)?;
                        f.touched(&dir);
                    }
                    Ok((MailboxAnswer::Flags { changed, modified }, !log.is_empty()))
                })?;
                if answer.1 {
                    self.maildir.changed(&dir);
                }
                Ok(answer.0)
            }
            R::Expunge { mailbox, uids } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(missing());
                };
                let gone = self.with(&dir, |f| {
                    let doomed = rules::expunge_set(
                        f.entries.iter().map(|e| (e.uid, e.flags.as_slice())),
                        uids.as_deref(),
                    );
                    f.remove(&dir, &doomed)?;
                    Ok(doomed)
                })?;
                if !gone.is_empty() {
                    self.maildir.changed(&dir);
                }
                Ok(MailboxAnswer::Expunged(gone))
            }
            R::Append {
                mailbox,
                flags,
                data,
                date,
            } => {
                let Some(dir) = existing(&mailbox) else {
                    return Ok(rules::missing(true));
                };
                let limit = self.limit(user);
                if limit.is_some()
                    && !rules::quota_allows(self.used(root)?, data.len() as u64, limit)
                {
                    return Ok(rules::over_quota());
                }
                let (validity, uid) = self.append(&dir, &flags, &data, date)?;
                Ok(MailboxAnswer::Uids {
                    uid_validity: validity,
                    from: Vec::new(),
                    to: vec![uid],
                })
            }
            R::Copy {
                mailbox,
                uids,
                to,
                moving,
            } => {
                let (src, dst) = (existing(&mailbox), existing(&to));
                if let Some(no) =
                    rules::copy_refusal(src.is_some(), dst.is_some(), src == dst, moving)
                {
                    return Ok(no);
                }
                let (Some(src), Some(dst)) = (src, dst) else {
                    return Ok(rules::missing(true));
                };
                let picked: Vec<(u32, String, Vec<String>, u64, i64)> = self.with(&src, |f| {
                    Ok(uids
                        .iter()
                        .filter_map(|u| f.index_of(*u))
                        .map(|i| {
                            let e = &f.entries[i];
                            (e.uid, e.name.clone(), e.flags.clone(), e.size, e.mtime)
                        })
                        .collect())
                })?;
                let limit = self.limit(user);
                let adding = rules::copy_adds(moving, picked.iter().map(|p| p.3));
                if limit.is_some() && !rules::quota_allows(self.used(root)?, adding, limit) {
                    return Ok(rules::over_quota());
                }
                let mut from = Vec::new();
                let mut new = Vec::new();
                let mut validity = 0;
                // The copy keeps the INTERNALDATE (RFC 9051 6.4.7).
                for (uid, name, flags, _, mtime) in &picked {
                    // A flag change in another session renames the file
                    // meanwhile: look its name (and flags) up again, a
                    // bounded number of times. Only a message expunged
                    // meanwhile is left out; one that is still there and
                    // cannot be read fails the command.
                    let mut current = (name.clone(), flags.clone());
                    let mut read = read_message(&src.join("cur").join(&current.0));
                    for _ in 0..3 {
                        match &read {
                            Err(e) if e.is_not_found() => {}
                            _ => break,
                        }
                        let now = self.with(&src, |f| {
                            Ok(f.index_of(*uid)
                                .map(|i| (f.entries[i].name.clone(), f.entries[i].flags.clone())))
                        })?;
                        let Some(now) = now else { break };
                        current = now;
                        read = read_message(&src.join("cur").join(&current.0));
                    }
                    let appended = match read {
                        Ok(d) => self
                            .append(&dst, &current.1, &d, Some(*mtime))
                            .map_err(MailStoreError::from),
                        Err(e) if e.is_not_found() => {
                            let gone = self.with(&src, |f| Ok(f.index_of(*uid).is_none()))?;
                            if gone {
                                continue;
                            }
                            Err(e)
                        }
                        Err(e) => Err(e),
                    };
                    let (v, u) = match appended {
                        Ok(vu) => vu,
                        Err(e) => {
                            // A failed COPY leaves the destination as it
                            // was (RFC 9051 6.4.7): the copies made so far
                            // go, or a client's retry would double them.
                            if !new.is_empty() {
                                let _ = self.with(&dst, |f| f.remove(&dst, &new));
                                self.maildir.changed(&dst);
                            }
                            return Err(e);
                        }
                    };
                    validity = v;
                    from.push(*uid);
                    new.push(u);
                }
                if moving && !from.is_empty() {
                    self.with(&src, |f| f.remove(&src, &from))?;
                    self.maildir.changed(&src);
                }
                if validity == 0 {
                    validity = self.with(&dst, |f| Ok(f.validity))?;
                }
                Ok(MailboxAnswer::Uids {
                    uid_validity: validity,
                    from,
                    to: new,
                })
            }
        }
    }

    /// Message bytes (CRLF), or only their headers.
    pub(super) fn bodies(
        &self,
        dir: &Path,
        uids: &[u32],
        header_only: bool,
    ) -> Result<Vec<(u32, Vec<u8>)>, MailStoreError> {
        let names = |uids: &[u32]| {
            self.with(dir, |f| {
                Ok(uids
                    .iter()
                    .filter_map(|u| f.index_of(*u).map(|i| (*u, f.entries[i].name.clone())))
                    .collect::<Vec<_>>())
            })
        };
        let mut out = Vec::with_capacity(uids.len());
        let mut retry = Vec::new();
        for (u, name) in names(uids)? {
            let path = dir.join("cur").join(&name);
            let r = if header_only {
                read_header(&path).map_err(MailStoreError::from)
            } else {
                read_message(&path)
            };
            match r {
                Ok(b) => out.push((u, b)),
                // Renamed by a flag change meanwhile: look again below.
                Err(e) if e.is_not_found() => retry.push(u),
                Err(e) => return Err(e),
            }
        }
        if !retry.is_empty() {
            for (u, name) in names(&retry)? {
                let path = dir.join("cur").join(&name);
                let r = if header_only {
                    read_header(&path).map_err(MailStoreError::from)
                } else {
                    read_message(&path)
                };
                if let Ok(b) = r {
                    out.push((u, b));
                }
            }
            let order: HashMap<u32, usize> =
                uids.iter().enumerate().map(|(i, u)| (*u, i)).collect();
            out.sort_by_key(|(u, _)| order.get(u).copied().unwrap_or(usize::MAX));
        }
        Ok(out)
    }

    /// Writes a message into a folder's cur/ with flags; returns
    /// (UIDVALIDITY, UID).
    pub(super) fn append(
        &self,
        dir: &Path,
        flags: &[String],
        data: &[u8],
        date: Option<i64>,
    ) -> io::Result<(u32, u32)> {
        let mut body = Vec::with_capacity(data.len());
        crlf_to_lf(&mut body, data);
        // The size IMAP reports (RFC822.SIZE, `W=`) is that of what FETCH
        // serves: the stored text with CRLF line ends. An APPEND with bare
        // LF line ends is longer served than sent.
        let served = crlf_len(&body);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!(
            "{}.M{}P{}Q{n}.postern,S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            body.len(),
            served
        );
        let tmp = dir.join("tmp").join(&base);
        // INTERNALDATE is the file's modification time, as in Dovecot.
        let mtime = date.unwrap_or_else(|| self.clock.now());
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| {
                let r = (|| {
                    f.write_all(&body)?;
                    if let Some(t) = u64::try_from(mtime)
                        .ok()
                        .and_then(|s| UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
                    {
                        f.set_modified(t)?;
                    }
                    f.sync_all()
                })();
                if r.is_err() {
                    // A failed write leaves nothing behind in tmp/.
                    let _ = fs::remove_file(&tmp);
                }
                r
            });
        written?;
        let job = Arc::new(AppendJob {
            tmp: tmp.clone(),
            base,
            flags: flags.to_vec(),
            size: served as u64,
            mtime,
            done: OnceLock::new(),
        });
        {
            let mut q = self.appends.lock().unwrap_or_else(|e| e.into_inner());
            q.entry(dir.to_owned()).or_default().push(job.clone());
        }
        // Group commit: whoever holds the folder's lock files every
        // message waiting for it, with one sync of `cur/` and one of the
        // UID list for them all; the others find their answer done.
        let ran = self.with(dir, |f| {
            if job.done.get().is_none() {
                let jobs = {
                    let mut q = self.appends.lock().unwrap_or_else(|e| e.into_inner());
                    q.remove(dir).unwrap_or_default()
                };
                commit_appends(dir, f, &jobs);
            }
            Ok(())
        });
        let r = match (job.done.get(), ran) {
            (Some(Ok(v)), _) => Ok(*v),
            (Some(Err((kind, text))), _) => Err(io::Error::new(*kind, text.clone())),
            (None, Err(e)) => {
                let mut q = self.appends.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(list) = q.get_mut(dir) {
                    list.retain(|j| !Arc::ptr_eq(j, &job));
                }
                Err(e)
            }
            (None, Ok(())) => Err(io::Error::other("append left uncommitted")),
        };
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            self.maildir.changed(dir);
        }
        r
    }
}

/// One APPEND written to `tmp/` and synced, waiting to be filed.
#[derive(Debug)]
pub(super) struct AppendJob {
    tmp: PathBuf,
    base: String,
    flags: Vec<String>,
    size: u64,
    mtime: i64,
    /// (UIDVALIDITY, UID), or why it failed.
    done: OnceLock<Result<(u32, u32), (io::ErrorKind, String)>>,
}

impl AppendJob {
    fn fail(&self, e: &io::Error) {
        let _ = self.done.set(Err((e.kind(), e.to_string())));
    }
}

/// Takes back messages renamed into `cur/` whose APPEND fails: their
/// files and their index entries (their UIDs stay used).
fn unfile(dir: &Path, f: &mut Folder, filed: &[(&Arc<AppendJob>, String, String)]) {
    for (_, name, _) in filed {
        let _ = fs::remove_file(dir.join("cur").join(name));
    }
    f.entries
        .retain(|e| !filed.iter().any(|(_, name, _)| *name == e.name));
    let _ = sync_dir(&dir.join("cur"));
}

/// Files waiting APPENDs into `cur/` under the folder's lock: renames,
/// one directory sync, UIDs in order, one UID list sync. Each job gets
/// its answer only once its message and UID are durable; a job that
/// fails after its rename is taken back ([`unfile`]).
fn commit_appends(dir: &Path, f: &mut Folder, jobs: &[Arc<AppendJob>]) {
    let mut filed: Vec<(&Arc<AppendJob>, String, String)> = Vec::with_capacity(jobs.len());
    for j in jobs.iter().filter(|j| j.done.get().is_none()) {
        let mut keywords = f.keywords.clone();
        let info = flag_info(&j.flags, &mut keywords);
        if keywords != f.keywords {
            if let Err(e) = write_keywords(dir, &keywords) {
                j.fail(&e);
                continue;
            }
            f.keywords = keywords;
        }
        let name = format!("{}:2,{info}", j.base);
        match fs::rename(&j.tmp, dir.join("cur").join(&name)) {
            Ok(()) => filed.push((j, name, info)),
            Err(e) => j.fail(&e),
        }
    }
    if filed.is_empty() {
        return;
    }
    if let Err(e) = sync_dir(&dir.join("cur")) {
        unfile(dir, f, &filed);
        for (j, _, _) in &filed {
            j.fail(&e);
        }
        return;
    }
    let mut uids = Vec::with_capacity(filed.len());
    let mut log = Vec::with_capacity(filed.len());
    for (j, name, info) in filed.iter() {
        let uid = rules::next_uid(&mut f.next);
        let m = rules::next_modseq(&mut f.highest_modseq);
        f.entries.push(Entry {
            uid,
            flags: parse_info(info, &f.keywords),
            base_len: j.base.len(),
            name: name.clone(),
            size: j.size,
            mtime: j.mtime,
            modseq: m,
        });
        uids.push(uid);
        log.push((uid, m));
    }
    let r = f
        .append_uidlist(dir, &uids)
        .and_then(|()| f.log_modseqs(dir, &log));
    if r.is_err() {
        // Answered NO, so not filed: a client saving to Sent or Drafts
        // tries again, and must not find the first attempt there too.
        unfile(dir, f, &filed);
    }
    f.touched(dir);
    for ((j, _, _), uid) in filed.iter().zip(uids) {
        let _ = j.done.set(match &r {
            Ok(()) => Ok((f.validity, uid)),
            Err(e) => Err((e.kind(), e.to_string())),
        });
    }
}
