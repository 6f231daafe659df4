//! Executes the delivery verdict: queues the remote recipients, writes the
//! local copies through the group-commit writer, and reports what became
//! durable. The headers each copy gets are decided in
//! `postern_core::smtp::received`; what becomes of the message is
//! `postern_core::policy::delivery`'s verdict.

use crate::clock::{date_now, unix_now};
use crate::server::Server;
use postern_adapters::directory::Resolution;
use postern_adapters::store::{Delivery, StoreError};
use postern_core::policy::delivery::{keep_failed_for_retry, Outcome};
use postern_core::smtp::received::{bounce_prefix, local_copies, outbound_bytes, received_bytes};
use postern_core::smtp::Message;
use std::io;
use std::sync::Arc;

/// The one step every outbound message passes before the queue, so that
/// it happens once, not per attempt: the DKIM signature of its author's
/// domain (when that domain is ours and has a key).
pub fn outbound_filter(srv: &Server, id: &str, data: Vec<u8>) -> Vec<u8> {
    let Some(signer) = &srv.dkim else {
        return data;
    };
    let ours = |d: &str| srv.directory.is_local_domain(d);
    match signer.sign(&data, &ours) {
        crate::dkim::Signed::Header(header, domain) => {
            tracing::info!(id = %id, "{id}: DKIM-Signature added (d={domain})");
            let mut out = Vec::with_capacity(header.len() + data.len());
            out.extend_from_slice(&header);
            out.extend_from_slice(&data);
            out
        }
        crate::dkim::Signed::NoKey(domain) => {
            tracing::info!(id = %id, "{id}: not DKIM-signed: no key for the From domain {domain}");
            data
        }
        crate::dkim::Signed::NoAuthor(e) => {
            tracing::info!(id = %id, "{id}: not DKIM-signed: {e}");
            data
        }
        crate::dkim::Signed::Failed(e) => {
            tracing::warn!(id = %id, "{id}: DKIM signing failed, sent unsigned: {e}");
            data
        }
    }
}

/// Where one accepted local recipient leads: its mailboxes and the
/// outside addresses it forwards to (an alias's outside targets, or the
/// original sender behind an SRS address at our SRS domain).
fn expand(
    srv: &Server,
    to: &postern_core::smtp::Address,
) -> io::Result<(Vec<postern_adapters::directory::Mailbox>, Vec<String>)> {
    let mut target = to.clone();
    if let Some(srs) = srs_at(srv, to) {
        let m = srs
            .reverse(&to.local, unix_now())
            .map_err(|e| io::Error::other(format!("<{to}>: {e}")))?;
        target = postern_core::smtp::Address::new(m.local, m.domain.to_ascii_lowercase());
    }
    match srv.directory.resolve(&target) {
        Resolution::Local {
            mailboxes,
            forwards,
        } => Ok((mailboxes, forwards)),
        Resolution::Remote if target != *to => Ok((Vec::new(), vec![target.to_string()])),
        _ => Err(io::Error::other(format!(
            "<{to}> no longer resolves to a mailbox"
        ))),
    }
}

/// The SRS settings when `to` is an SRS address at our SRS domain.
pub fn srs_at<'a>(
    srv: &'a Server,
    to: &postern_core::smtp::Address,
) -> Option<&'a crate::srs::Srs> {
    srv.srs
        .as_deref()
        .filter(|s| s.is_ours(&to.local, &to.domain))
}

/// The envelope sender of the forwarded copies: the SRS address when SRS
/// is on and the sender is neither ours nor in `[srs] exclude_domains`,
/// else the sender as it was.
fn forward_sender(srv: &Server, from: Option<&postern_core::smtp::Address>) -> String {
    let original = from.map(ToString::to_string).unwrap_or_default();
    let (Some(srs), Some(from)) = (&srv.srs, from) else {
        return original;
    };
    let sender = postern_core::srs::Mailbox {
        local: from.local.clone(),
        domain: from.domain.clone(),
    };
    let excluded = srv
        .config
        .srs
        .as_ref()
        .map_or(&[][..], |c| c.exclude_domains.as_slice());
    let ours = |d: &str| {
        srv.directory.is_local_domain(d)
            || d == srs.domain
            || postern_core::srs::excluded(d, excluded)
    };
    if !postern_core::srs::rewrites(Some(&sender), &ours) {
        return original;
    }
    match srs.forward(&sender, unix_now()) {
        Ok(m) => m.to_string(),
        Err(e) => {
            tracing::warn!("SRS cannot rewrite <{original}>: {e}; forwarded as it is");
            original
        }
    }
}

/// Queues the forwarded copies (alias targets outside, reversed SRS
/// addresses) under `<id>F`, with the rewritten envelope sender.
fn queue_forwards(srv: &Server, msg: &Message, id: &str, targets: &[String]) -> io::Result<String> {
    let env = &msg.envelope;
    let data = outbound_bytes(env, &srv.config.hostname, id, &date_now(), &msg.data);
    let data = outbound_filter(srv, id, data);
    let from = forward_sender(srv, env.mail_from.as_ref());
    let qid = format!("{id}F");
    srv.queue.enqueue(&qid, &from, targets, &data, unix_now())?;
    tracing::info!(id = %id, "{id}: forwarded as {qid} from=<{from}> to {targets:?}");
    Ok(qid)
}

/// Delivers an accepted message: remote recipients into the queue, local
/// ones into their mailboxes (into `folder` instead of INBOX when given:
/// the message-authentication verdict's Junk; or into Junk when the spam
/// verdict says so for that copy), each durably; the X-Spam fields a
/// scored message arrived with are left out of its local copies. Returns what became
/// durable, and the message back.
pub async fn deliver(
    srv: Arc<Server>,
    msg: Message,
    id: String,
    folder: Option<String>,
    spam: crate::spam::Screened,
) -> (Outcome, Message) {
    let mut outcome = Outcome {
        queued: true,
        ..Outcome::default()
    };
    // The local copies are prepared first: a message whose copies cannot
    // be (an SRS address that expired since RCPT) is refused before
    // anything of it is queued.
    let jobs = match local_jobs(&srv, &msg, &id, folder, &spam) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(id = %id, "{e}");
            outcome.failed += 1;
            return (outcome, msg);
        }
    };
    let has_remote = msg.envelope.rcpt_to.iter().any(|r| !r.local);
    let mut forwards = Vec::new();
    for r in msg.envelope.rcpt_to.iter().filter(|r| r.local) {
        if let Ok((_, f)) = expand(&srv, &r.address) {
            forwards.extend(f);
        }
    }
    forwards.sort();
    forwards.dedup();
    // The queue entries: the forwarded copies, then the remote recipients.
    // Either both are queued or, when one fails, neither stays: a 452
    // must leave nothing durable, or the client's retry duplicates it.
    let (srv2, id2) = (srv.clone(), id.clone());
    let (queued, msg) = smol::unblock(move || {
        let mut queued: Vec<String> = Vec::new();
        let mut failure = None;
        if !forwards.is_empty() {
            match queue_forwards(&srv2, &msg, &id2, &forwards) {
                Ok(qid) => queued.push(qid),
                Err(e) => failure = Some(format!("cannot queue the forwarded copies: {e}")),
            }
        }
        if failure.is_none() && has_remote {
            match queue_outbound(&srv2, &msg, &id2) {
                Ok(_) => queued.push(id2.clone()),
                Err(e) => failure = Some(format!("cannot queue for the relay: {e}")),
            }
        }
        if let Some(why) = failure {
            tracing::warn!(id = %id2, "{why}");
            for qid in queued {
                if let Err(e) = srv2.queue.remove(&qid) {
                    tracing::error!(id = %id2, "cannot take back {qid} from the queue (a retry by the client duplicates it): {e}");
                }
            }
            return (None, msg);
        }
        (Some(queued), msg)
    })
    .await;
    let Some(queued) = queued else {
        outcome.queued = false;
        return (outcome, msg);
    };
    let anything_queued = !queued.is_empty();
    if anything_queued {
        wake_relay(&srv);
    }
    // Each copy's account, folder and spam headers: a copy kept for retry
    // keeps all three, and the message as the copies have it (without the
    // X-Spam fields it arrived with).
    let data = jobs.first().map(|j| j.message.clone());
    let targets: Vec<RetryCopy> = jobs
        .iter()
        .map(|j| RetryCopy {
            user: j.user.clone(),
            folder: j.folder.clone(),
            headers: spam.for_mailbox(&j.user).0.to_vec(),
        })
        .collect();
    let mut failed_users = Vec::new();
    for (target, r) in targets.into_iter().zip(srv.committer.deliver(jobs).await) {
        match r {
            Ok(()) => outcome.stored += 1,
            Err(e) => {
                tracing::warn!(id = %id, "local delivery to {} failed: {e}", target.user);
                match e {
                    StoreError::Full(_) => outcome.full += 1,
                    StoreError::TooBig(_) => {
                        outcome.full += 1;
                        outcome.too_big += 1;
                    }
                    _ => {}
                }
                failed_users.push(target);
            }
        }
    }
    outcome.failed = failed_users.len();
    if keep_failed_for_retry(outcome.stored, outcome.failed, anything_queued) {
        let retry_id = format!("{id}L");
        let (srv2, rid) = (srv.clone(), retry_id.clone());
        let id2 = id.clone();
        let data = data.unwrap_or_else(|| Arc::new(msg.data.clone()));
        let (r, m) = smol::unblock(move || {
            let r = queue_local_retry(&srv2, &msg, &data, &id2, &rid, &failed_users);
            (r, msg)
        })
        .await;
        match r {
            Ok(n) => {
                tracing::info!(id = %id, "{n} local copies kept in the queue for retry as {retry_id}");
                outcome.kept = n;
                outcome.failed = 0;
                wake_relay(&srv);
            }
            Err(e) => tracing::warn!(id = %id, "cannot queue the failed local copies: {e}"),
        }
        return (outcome, m);
    }
    (outcome, msg)
}

/// Tells the relay worker that the queue has something new (it scans the
/// queue when woken; a message delivered only locally does not wake it).
fn wake_relay(srv: &Server) {
    let _ = srv.relay_wake.try_send(());
}

/// A local copy that failed and is kept for retry.
struct RetryCopy {
    /// The account address.
    user: String,
    /// Its folder (`None`: INBOX): Junk stays Junk.
    folder: Option<String>,
    /// The spam verdict's header lines for this account (CRLF).
    headers: Vec<u8>,
}

/// Queues local copies that failed, for the queue worker to retry: one
/// queued message per set of spam headers (one, unless the accounts'
/// classifiers disagreed), holding the `Received:` line, those headers
/// and the message, under `queue_id`, `queue_id` + `2`, ... Returns how
/// many copies were queued.
fn queue_local_retry(
    srv: &Server,
    msg: &Message,
    data: &[u8],
    id: &str,
    queue_id: &str,
    targets: &[RetryCopy],
) -> io::Result<usize> {
    let env = &msg.envelope;
    let from = env
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    // (headers, accounts, their folders), one per distinct set of headers.
    type Group<'a> = (&'a [u8], Vec<String>, Vec<Option<String>>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for t in targets {
        match groups.iter_mut().find(|g| g.0 == t.headers.as_slice()) {
            Some(g) => {
                g.1.push(t.user.clone());
                g.2.push(t.folder.clone());
            }
            None => groups.push((&t.headers, vec![t.user.clone()], vec![t.folder.clone()])),
        }
    }
    let mut queued = 0;
    let mut ids: Vec<String> = Vec::new();
    for (n, (headers, users, folders)) in groups.into_iter().enumerate() {
        let mut body = headers.to_vec();
        body.extend_from_slice(data);
        let bytes = received_bytes(env, &srv.config.hostname, id, &date_now(), &body);
        let qid = match n {
            0 => queue_id.to_owned(),
            n => format!("{queue_id}{}", n + 1),
        };
        if let Err(e) =
            srv.queue
                .enqueue_with_folders(&qid, &from, &users, &folders, &bytes, unix_now())
        {
            // All or none: the client is told to retry every copy.
            for q in &ids {
                let _ = srv.queue.remove(q);
            }
            return Err(e.into());
        }
        ids.push(qid);
        queued += users.len();
    }
    Ok(queued)
}

/// Queues the message for its remote recipients (relay), durably.
fn queue_outbound(srv: &Server, msg: &Message, id: &str) -> io::Result<usize> {
    let env = &msg.envelope;
    let remote: Vec<String> = env
        .rcpt_to
        .iter()
        .filter(|r| !r.local)
        .map(|r| r.address.to_string())
        .collect();
    let queue = &srv.queue;
    let data = outbound_bytes(env, &srv.config.hostname, id, &date_now(), &msg.data);
    let data = outbound_filter(srv, id, data);
    let from = env
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    queue.enqueue(id, &from, &remote, &data, unix_now())?;
    Ok(remote.len())
}

/// Delivers a bounce (from `<>`) to `to`: into the mailbox when local,
/// else into the queue for the relay. An unknown local address drops it
/// (it would only bounce again).
pub fn deliver_bounce(srv: &Server, to: &str, id: &str, bytes: &[u8]) -> io::Result<()> {
    let Ok(Some(path)) = postern_core::smtp::address::parse_path(to) else {
        return Err(io::Error::other(format!("bad bounce address {to:?}")));
    };
    // The sender of a forwarded copy is an SRS address: bounce to the
    // original sender behind it.
    let mut address = path.address;
    let reversed;
    let to = match srs_at(srv, &address).map(|s| s.reverse(&address.local, unix_now())) {
        Some(Ok(m)) => {
            reversed = m.to_string();
            address = postern_core::smtp::Address::new(m.local, m.domain.to_ascii_lowercase());
            reversed.as_str()
        }
        Some(Err(e)) => {
            tracing::info!(id = %id, "bounce to <{to}> dropped: {e}");
            return Ok(());
        }
        None => to,
    };
    match srv.directory.resolve(&address) {
        Resolution::Local { mailboxes, .. } => {
            let message = Arc::new(bytes.to_vec());
            let deliveries: Vec<Delivery> = mailboxes
                .iter()
                .map(|mb| Delivery {
                    user: mb.to_string(),
                    prefix: bounce_prefix(mb),
                    message: message.clone(),
                    folder: None,
                })
                .collect();
            for (d, r) in deliveries.iter().zip(srv.mailstore.deliver(&deliveries)) {
                match r {
                    Ok(()) => {}
                    // As Postfix drops a bounce that cannot be delivered
                    // (no bounce of a bounce): retrying it would send the
                    // original's other recipients their copies again.
                    Err(e @ (StoreError::Full(_) | StoreError::TooBig(_))) => {
                        tracing::warn!(id = %id, "{id}: bounce to {} dropped: {e}", d.user);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Resolution::Unknown => Ok(()),
        Resolution::Remote => {
            let signed = outbound_filter(srv, id, bytes.to_vec());
            srv.queue
                .enqueue(id, "", &[to.to_owned()], &signed, unix_now())
                .map(|_| ())
                .map_err(io::Error::from)
        }
    }
}

/// The local copies of a message as delivery jobs for the writer.
fn local_jobs(
    srv: &Server,
    msg: &Message,
    id: &str,
    folder: Option<String>,
    spam: &crate::spam::Screened,
) -> io::Result<Vec<Delivery>> {
    let env = &msg.envelope;
    let mut resolved = Vec::new();
    for rcpt in env.rcpt_to.iter().filter(|r| r.local) {
        let (mailboxes, _) = expand(srv, &rcpt.address)?;
        resolved.push((rcpt.address.clone(), mailboxes));
    }
    // A sender must not pre-mark the message for the user's client rules:
    // the X-Spam fields it came with go when ours are added.
    let stripped = spam
        .scored
        .then(|| postern_core::policy::spam::strip_spam_headers(&msg.data))
        .flatten();
    let data = Arc::new(stripped.unwrap_or_else(|| msg.data.clone()));
    Ok(
        local_copies(env, &srv.config.hostname, id, &date_now(), &resolved)
            .into_iter()
            .map(|c| {
                let user = c.mailbox.to_string();
                // The spam verdict's headers go after the trace lines.
                let (headers, junk) = spam.for_mailbox(&user);
                let mut prefix = c.prefix;
                prefix.extend_from_slice(headers);
                let folder = match (&folder, junk) {
                    (Some(f), _) => Some(f.clone()),
                    (None, true) => Some(srv.config.auth.junk_folder.clone()),
                    (None, false) => None,
                };
                Delivery {
                    user,
                    prefix,
                    message: data.clone(),
                    folder,
                }
            })
            .collect(),
    )
}
