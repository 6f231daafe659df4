//! Executes the delivery verdict: queues the remote recipients, writes the
//! local copies through the group-commit writer, and reports what became
//! durable. The headers each copy gets are decided in
//! `postern_core::smtp::received`; what becomes of the message is
//! `postern_core::policy::delivery`'s verdict.

use crate::clock::{date_now, unix_now};
use crate::server::Server;
use postern_adapters::directory::Resolution;
use postern_adapters::store::Delivery;
use postern_core::policy::delivery::{keep_failed_for_retry, Outcome};
use postern_core::smtp::received::{bounce_prefix, local_copies, outbound_bytes, received_bytes};
use postern_core::smtp::Message;
use std::io;
use std::sync::Arc;

/// The one step every outbound message passes before the queue (DKIM
/// signing goes here), so that it happens once, not per attempt.
pub fn outbound_filter(data: Vec<u8>) -> Vec<u8> {
    data
}

/// Delivers an accepted message: remote recipients into the queue, local
/// ones into their mailboxes, each durably. Returns what became durable,
/// and the message back.
pub async fn deliver(
    srv: Arc<Server>,
    msg: Message,
    id: String,
    spam: crate::spam::Screened,
) -> (Outcome, Message) {
    let mut outcome = Outcome {
        queued: true,
        ..Outcome::default()
    };
    let has_remote = msg.envelope.rcpt_to.iter().any(|r| !r.local);
    let msg = if has_remote {
        let (srv2, id2) = (srv.clone(), id.clone());
        let (r, msg) = smol::unblock(move || (queue_outbound(&srv2, &msg, &id2), msg)).await;
        if let Err(e) = r {
            tracing::warn!(id = %id, "cannot queue for the relay: {e}");
            outcome.queued = false;
        }
        msg
    } else {
        msg
    };
    let jobs = match local_jobs(&srv, &msg, &id, &spam) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(id = %id, "{e}");
            outcome.failed += 1;
            return (outcome, msg);
        }
    };
    let users: Vec<String> = jobs.iter().map(|j| j.user.clone()).collect();
    let mut failed_users = Vec::new();
    for (user, r) in users.into_iter().zip(srv.committer.deliver(jobs).await) {
        match r {
            Ok(()) => outcome.stored += 1,
            Err(e) => {
                tracing::warn!(id = %id, "local delivery to {user} failed: {e}");
                failed_users.push(user);
            }
        }
    }
    outcome.failed = failed_users.len();
    let remote_queued = has_remote && outcome.queued;
    if keep_failed_for_retry(outcome.stored, outcome.failed, remote_queued) {
        let retry_id = format!("{id}L");
        let (srv2, rid) = (srv.clone(), retry_id.clone());
        let id2 = id.clone();
        let (r, m) = smol::unblock(move || {
            let r = queue_local_retry(&srv2, &msg, &id2, &rid, &failed_users);
            (r, msg)
        })
        .await;
        match r {
            Ok(n) => {
                tracing::info!(id = %id, "{n} local copies kept in the queue for retry as {retry_id}");
                outcome.kept = n;
                outcome.failed = 0;
                let _ = srv.relay_wake.try_send(());
            }
            Err(e) => tracing::warn!(id = %id, "cannot queue the failed local copies: {e}"),
        }
        return (outcome, m);
    }
    (outcome, msg)
}

/// Queues local copies that failed (their account addresses) with the
/// message and its `Received:` line, for the queue worker to retry.
fn queue_local_retry(
    srv: &Server,
    msg: &Message,
    id: &str,
    queue_id: &str,
    users: &[String],
) -> io::Result<usize> {
    let env = &msg.envelope;
    let data = received_bytes(env, &srv.config.hostname, id, &date_now(), &msg.data);
    let from = env
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    srv.queue
        .enqueue(queue_id, &from, users, &data, unix_now())?;
    Ok(users.len())
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
    let data = outbound_filter(data);
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
    match srv.directory.resolve(&path.address) {
        Resolution::Local { mailboxes, .. } => {
            let message = Arc::new(bytes.to_vec());
            let deliveries: Vec<Delivery> = mailboxes
                .iter()
                .map(|mb| Delivery {
                    user: mb.to_string(),
                    prefix: bounce_prefix(mb),
                    message: message.clone(),
                    junk: false,
                })
                .collect();
            for r in srv.mailstore.deliver(&deliveries) {
                r?;
            }
            Ok(())
        }
        Resolution::Unknown => Ok(()),
        Resolution::Remote => srv
            .queue
            .enqueue(id, "", &[to.to_owned()], bytes, unix_now())
            .map(|_| ())
            .map_err(io::Error::from),
    }
}

/// The local copies of a message as delivery jobs for the writer.
fn local_jobs(
    srv: &Server,
    msg: &Message,
    id: &str,
    spam: &crate::spam::Screened,
) -> io::Result<Vec<Delivery>> {
    let env = &msg.envelope;
    let mut resolved = Vec::new();
    for rcpt in env.rcpt_to.iter().filter(|r| r.local) {
        let Resolution::Local { mailboxes, .. } = srv.directory.resolve(&rcpt.address) else {
            return Err(io::Error::other(format!(
                "<{}> no longer resolves to a mailbox",
                rcpt.address
            )));
        };
        resolved.push((rcpt.address.clone(), mailboxes));
    }
    let data = Arc::new(msg.data.clone());
    Ok(
        local_copies(env, &srv.config.hostname, id, &date_now(), &resolved)
            .into_iter()
            .map(|c| {
                let user = c.mailbox.to_string();
                // The spam verdict's headers go after the trace lines.
                let (headers, junk) = spam.for_mailbox(&user);
                let mut prefix = c.prefix;
                prefix.extend_from_slice(headers);
                Delivery {
                    user,
                    prefix,
                    message: data.clone(),
                    junk,
                }
            })
            .collect(),
    )
}
