//! Final delivery of a received message into local Maildirs.

use crate::server::Server;
use postern_adapters::directory::{Mailbox, Resolution};
use postern_adapters::maildir::DeliveryJob;
use postern_core::datetime::rfc5322;
use postern_core::smtp::received::{received, return_path};
use postern_core::smtp::Message;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The one step every outbound message passes before the queue (DKIM
/// signing goes here), so that it happens once, not per attempt.
pub fn outbound_filter(data: Vec<u8>) -> Vec<u8> {
    data
}

/// Queues the message for its remote recipients (relay), durably.
/// Returns how many recipients were queued.
pub fn queue_outbound(srv: &Server, msg: &Message, id: &str) -> io::Result<usize> {
    let env = &msg.envelope;
    let remote: Vec<String> = env
        .rcpt_to
        .iter()
        .filter(|r| !r.local)
        .map(|r| r.address.to_string())
        .collect();
    if remote.is_empty() {
        return Ok(0);
    }
    let Some(spool) = &srv.spool else {
        return Err(io::Error::other("no relay is configured"));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let date = rfc5322(i64::try_from(now).unwrap_or(0));
    let for_rcpt = match env.rcpt_to.as_slice() {
        [one] => Some(&one.address),
        _ => None,
    };
    let mut data = received(env, &srv.config.hostname, id, for_rcpt, &date).into_bytes();
    data.extend_from_slice(&msg.data);
    let data = outbound_filter(data);
    let from = env
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    spool.enqueue(id, &from, &remote, &data, now)?;
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
            for mb in mailboxes {
                let prefix = format!("Return-Path: <>\r\nDelivered-To: {mb}\r\n");
                srv.maildir.deliver(&mb, prefix.as_bytes(), bytes)?;
            }
            Ok(())
        }
        Resolution::Unknown => Ok(()),
        Resolution::Remote => {
            let Some(spool) = &srv.spool else {
                return Ok(());
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            spool
                .enqueue(id, "", &[to.to_owned()], bytes, now)
                .map(|_| ())
                .map_err(io::Error::from)
        }
    }
}

/// The deliveries a message makes: one per local mailbox its recipients
/// lead to, each with its Return-Path, Delivered-To and Received lines.
pub fn local_jobs(srv: &Server, msg: &Message, id: &str) -> io::Result<Vec<DeliveryJob>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let date = rfc5322(i64::try_from(now).unwrap_or(0));
    let env = &msg.envelope;
    let data = Arc::new(msg.data.clone());
    let mut done: HashSet<Mailbox> = HashSet::new();
    let mut jobs = Vec::new();
    for rcpt in env.rcpt_to.iter().filter(|r| r.local) {
        let Resolution::Local { mailboxes, .. } = srv.directory.resolve(&rcpt.address) else {
            return Err(io::Error::other(format!(
                "<{}> no longer resolves to a mailbox",
                rcpt.address
            )));
        };
        for mb in mailboxes {
            if !done.insert(mb.clone()) {
                continue;
            }
            let mut prefix = return_path(env);
            prefix.push_str(&format!("Delivered-To: {mb}\r\n"));
            prefix.push_str(&received(
                env,
                &srv.config.hostname,
                id,
                Some(&rcpt.address),
                &date,
            ));
            jobs.push(DeliveryJob {
                mailbox: mb,
                prefix: prefix.into_bytes(),
                message: data.clone(),
            });
        }
    }
    Ok(jobs)
}
