//! The delivery verdict: what becomes of a message the session accepted.
//! Today: one copy per distinct local mailbox (each with its trace headers),
//! the remote recipients queued once (with one `Received:`), and the answer
//! once the copies are durable. The message-authentication results and the
//! spam score become inputs here (deliver to INBOX or Junk, or refuse).

use crate::smtp::received::{received, return_path};
use crate::smtp::{Address, Envelope};
use std::collections::HashSet;
use std::hash::Hash;

/// Why a message is refused at the end of DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageRefusal {
    /// It could not be made durable now; the client should retry
    /// (`452 4.3.1`). No copy was acknowledged.
    TempFail,
    /// The spam verdict refuses it (`554 5.7.1`).
    Spam,
}

/// One local copy to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCopy<M> {
    /// The mailbox.
    pub mailbox: M,
    /// The header lines put before the message: Return-Path, Delivered-To,
    /// Received (CRLF line ends).
    pub prefix: Vec<u8>,
}

/// The local copies of a message: each recipient's mailboxes (as the
/// directory resolved them, in order), each mailbox once even when several
/// recipients lead to it. `date` is the RFC 5322 date of now.
pub fn local_copies<M>(
    env: &Envelope,
    hostname: &str,
    id: &str,
    date: &str,
    resolved: &[(Address, Vec<M>)],
) -> Vec<LocalCopy<M>>
where
    M: Clone + Eq + Hash + std::fmt::Display,
{
    let mut done: HashSet<&M> = HashSet::new();
    let mut copies = Vec::new();
    for (rcpt, mailboxes) in resolved {
        for mb in mailboxes {
            if !done.insert(mb) {
                continue;
            }
            let mut prefix = return_path(env);
            prefix.push_str(&format!("Delivered-To: {mb}\r\n"));
            prefix.push_str(&received(env, hostname, id, Some(rcpt), date));
            copies.push(LocalCopy {
                mailbox: mb.clone(),
                prefix: prefix.into_bytes(),
            });
        }
    }
    copies
}

/// The bytes queued for the remote recipients: one `Received:` (naming the
/// recipient when there is only one) before the message.
pub fn outbound_bytes(
    env: &Envelope,
    hostname: &str,
    id: &str,
    date: &str,
    data: &[u8],
) -> Vec<u8> {
    let for_rcpt = match env.rcpt_to.as_slice() {
        [one] => Some(&one.address),
        _ => None,
    };
    let mut out = received(env, hostname, id, for_rcpt, date).into_bytes();
    out.extend_from_slice(data);
    out
}

/// The header lines a local copy taken from the queue gets (its
/// `Received:` was queued with the message): the envelope sender as
/// queued (empty for `<>`) and the mailbox.
pub fn queued_copy_prefix<M: std::fmt::Display>(from: &str, mailbox: &M) -> Vec<u8> {
    format!("Return-Path: <{from}>\r\nDelivered-To: {mailbox}\r\n").into_bytes()
}

/// The bytes queued for local copies kept for retry: one `Received:`
/// (without a recipient: the queue entry may hold several) before the
/// message.
pub fn received_bytes(
    env: &Envelope,
    hostname: &str,
    id: &str,
    date: &str,
    data: &[u8],
) -> Vec<u8> {
    let mut out = received(env, hostname, id, None, date).into_bytes();
    out.extend_from_slice(data);
    out
}

/// The header a bounce gets in a local mailbox.
pub fn bounce_prefix<M: std::fmt::Display>(mailbox: &M) -> Vec<u8> {
    format!("Return-Path: <>\r\nDelivered-To: {mailbox}\r\n").into_bytes()
}

/// What the executed deliveries came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Local copies made durable.
    pub stored: usize,
    /// Local copies that failed and are in the durable queue for retry.
    pub kept: usize,
    /// Local copies that failed and are nowhere.
    pub failed: usize,
    /// The remote recipients were queued (or there were none).
    pub queued: bool,
}

/// Whether the local copies that failed should go into the durable queue
/// for retry: yes once anything of the message is durable (a copy, or the
/// remote recipients' queue entry), so the client gets its 250 and retries
/// nothing (a retry would duplicate the durable copies).
pub fn keep_failed_for_retry(stored: usize, failed: usize, remote_queued: bool) -> bool {
    failed > 0 && (stored > 0 || remote_queued)
}

/// The answer to the client once the deliveries were tried: acknowledged
/// when every copy is durable, in a mailbox or in the queue; otherwise a
/// temporary failure, so that the sender keeps the message and retries.
pub fn store_verdict(o: Outcome) -> Result<(), MessageRefusal> {
    if o.failed == 0 && o.queued {
        Ok(())
    } else {
        Err(MessageRefusal::TempFail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{AddressSource, ClientAddress};
    use crate::smtp::{BodyType, Recipient};

    fn addr(s: &str) -> Address {
        let (l, d) = s.split_once('@').expect("@");
        Address {
            local: l.into(),
            domain: d.into(),
        }
    }

    fn env(rcpts: &[&str]) -> Envelope {
        let sock = "192.0.2.7:4000".parse().expect("addr");
        Envelope {
            client: ClientAddress {
                client: sock,
                server: sock,
                source: AddressSource::Socket,
            },
            helo: "client.example".into(),
            esmtp: true,
            tls: None,
            authenticated: None,
            mail_from: Some(addr("a@example.net")),
            body: BodyType::SevenBit,
            smtputf8: false,
            rcpt_to: rcpts
                .iter()
                .map(|r| Recipient {
                    address: addr(r),
                    local: true,
                })
                .collect(),
        }
    }

    #[test]
    fn each_mailbox_gets_one_copy_with_its_trace_headers() {
        let e = env(&["x@example.com", "alias@example.com"]);
        let resolved = vec![
            (addr("x@example.com"), vec!["x@example.com".to_owned()]),
            (
                addr("alias@example.com"),
                vec!["x@example.com".to_owned(), "y@example.com".to_owned()],
            ),
        ];
        let c = local_copies(
            &e,
            "mx.example.com",
            "Q1",
            "Tue, 1 Dec 2026 00:00:00 +0000",
            &resolved,
        );
        assert_eq!(c.len(), 2);
        let first = String::from_utf8_lossy(&c[0].prefix);
        assert!(first.starts_with("Return-Path: <a@example.net>\r\nDelivered-To: x@example.com\r\nReceived: from client.example (unknown [192.0.2.7])"), "{first}");
        assert!(first.contains("for <x@example.com>;"), "{first}");
        let second = String::from_utf8_lossy(&c[1].prefix);
        assert!(
            second.contains("Delivered-To: y@example.com\r\n"),
            "{second}"
        );
        assert!(second.contains("for <alias@example.com>;"), "{second}");
    }

    #[test]
    fn acknowledged_only_when_every_copy_is_durable() {
        let o = |stored, kept, failed, queued| Outcome {
            stored,
            kept,
            failed,
            queued,
        };
        assert_eq!(store_verdict(o(2, 0, 0, true)), Ok(()));
        assert_eq!(store_verdict(o(1, 1, 0, true)), Ok(()));
        assert_eq!(
            store_verdict(o(1, 0, 1, true)),
            Err(MessageRefusal::TempFail)
        );
        assert_eq!(
            store_verdict(o(1, 0, 0, false)),
            Err(MessageRefusal::TempFail)
        );
    }

    #[test]
    fn failed_copies_are_kept_only_beside_something_durable() {
        assert!(keep_failed_for_retry(1, 1, false));
        assert!(keep_failed_for_retry(0, 2, true));
        assert!(!keep_failed_for_retry(0, 2, false));
        assert!(!keep_failed_for_retry(3, 0, true));
    }
}
