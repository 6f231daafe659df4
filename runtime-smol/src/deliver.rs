//! Final delivery of a received message into local Maildirs.

use crate::server::Server;
use postern_adapters::directory::{Mailbox, Resolution};
use postern_core::datetime::rfc5322;
use postern_core::smtp::received::{received, return_path};
use postern_core::smtp::Message;
use std::collections::HashSet;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes the message to every local mailbox its recipients lead to,
/// durably; returns how many mailboxes got it. An error means "answer
/// 4xx": the client will retry (a duplicate in some mailbox beats a loss).
pub fn deliver_local(srv: &Server, msg: &Message, id: &str) -> io::Result<usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let date = rfc5322(i64::try_from(now).unwrap_or(0));
    let env = &msg.envelope;
    if env.rcpt_to.iter().any(|r| !r.local) {
        return Err(io::Error::other("relay recipients cannot be queued yet"));
    }
    let mut done: HashSet<Mailbox> = HashSet::new();
    for rcpt in env.rcpt_to.iter().filter(|r| r.local) {
        let Resolution::Local { mailboxes, .. } = srv.directory.resolve(&rcpt.address) else {
            return Err(io::Error::other(format!(
                "<{}> no longer resolves to a mailbox",
                rcpt.address
            )));
        };
        for mb in mailboxes {
            if done.contains(&mb) {
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
            srv.maildir.deliver(&mb, prefix.as_bytes(), &msg.data)?;
            done.insert(mb);
        }
    }
    Ok(done.len())
}
