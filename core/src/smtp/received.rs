//! The trace headers a receiving server prepends (RFC 5321 section 4.4):
//! `Received:`, and for each local copy `Return-Path:` and `Delivered-To:`.

use super::address::Address;
use super::event::Envelope;
use std::collections::HashSet;
use std::hash::Hash;

/// The `Received:` header (CRLF-terminated, folded) for a message.
/// `date` is an RFC 5322 date ([`crate::datetime::rfc5322`]).
pub fn received(
    env: &Envelope,
    hostname: &str,
    id: &str,
    rcpt: Option<&Address>,
    date: &str,
) -> String {
    let helo: String = env
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    let ip = env.client.client.ip();
    let mut h = format!("Received: from {helo} (unknown [{ip}])\r\n");
    if let Some(tls) = &env.tls {
        h.push_str(&format!(
            "\t(using {} with cipher {})\r\n",
            tls.version, tls.cipher
        ));
    }
    h.push_str(&format!(
        "\tby {hostname} (Postern) with {} id {id}",
        env.protocol()
    ));
    match rcpt {
        Some(r) => h.push_str(&format!("\r\n\tfor <{r}>; {date}\r\n")),
        None => h.push_str(&format!(";\r\n\t{date}\r\n")),
    }
    h
}

/// The `Return-Path:` header a final delivery adds.
pub fn return_path(env: &Envelope) -> String {
    match &env.mail_from {
        Some(a) => format!("Return-Path: <{a}>\r\n"),
        None => "Return-Path: <>\r\n".to_owned(),
    }
}

/// The trace lines every local copy gets before the message whatever its
/// recipient: `Return-Path:` and the `Received:` (without `for`). The spam
/// scorer reads the message with these before it, so that a message is
/// scored with the header fields it is later learned with from the
/// user's mailbox, and its Date is compared with our own receipt.
pub fn scoring_prefix(env: &Envelope, hostname: &str, id: &str, date: &str) -> String {
    let mut p = return_path(env);
    p.push_str(&received(env, hostname, id, None, date));
    p
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
        // What the scorer reads: the same lines but the recipient's own.
        let scored = scoring_prefix(&e, "mx.example.com", "Q1", "Tue, 1 Dec 2026 00:00:00 +0000");
        let stored = first.replace("Delivered-To: x@example.com\r\n", "");
        assert_eq!(
            scored,
            stored.replace("\r\n\tfor <x@example.com>; ", ";\r\n\t")
        );
    }
}
