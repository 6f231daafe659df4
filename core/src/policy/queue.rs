//! Outbound queue decisions: the retry schedule and the bounce (RFC 3464
//! delivery status notification). Pure functions of the times and replies
//! they are given.

use crate::smtp::Reply;
use std::time::Duration;

/// When to try again, and when to give up (Postfix's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (`minimal_backoff_time`: 300 s).
    pub first: Duration,
    /// The longest delay (`maximal_backoff_time`: 4000 s, about an hour).
    pub max: Duration,
    /// How long a message may stay queued (`maximal_queue_lifetime`: 5 d).
    pub lifetime: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(300),
            max: Duration::from_secs(4000),
            lifetime: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// After `attempts` failed attempts (1 for the first), the last one at
    /// `now`, of a message queued at `queued` (Unix seconds): the time of
    /// the next attempt, or `None` when the message has expired (bounce).
    pub fn next_attempt(&self, attempts: u32, queued: u64, now: u64) -> Option<u64> {
        if now >= queued.saturating_add(self.lifetime.as_secs()) {
            return None;
        }
        let shift = attempts.saturating_sub(1).min(20);
        let delay = self
            .first
            .as_secs()
            .saturating_mul(1u64 << shift)
            .min(self.max.as_secs());
        Some(now.saturating_add(delay))
    }
}

/// One recipient a bounce reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address.
    pub address: String,
    /// The reply that failed it (or the last deferral, for an expiry).
    pub reply: Reply,
    /// Whether the message expired in the queue (rather than a 5xx).
    pub expired: bool,
}

/// What a bounce is built from.
#[derive(Clone, Debug)]
pub struct Bounce<'a> {
    /// This server's name.
    pub hostname: &'a str,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    /// Who gets the bounce (the original sender).
    pub to: &'a str,
    /// RFC 5322 date of now.
    pub date: &'a str,
    /// RFC 5322 date the original arrived.
    pub arrival_date: &'a str,
    /// The server that answered (the smarthost), if any.
    pub remote_mta: Option<&'a str>,
    /// The failed recipients.
    pub failed: &'a [FailedRecipient],
    /// The original message (its header is returned).
    pub original: &'a [u8],
}

/// Builds the bounce message (CRLF), to be sent from `<>`.
pub fn dsn(b: &Bounce<'_>) -> Vec<u8> {
    let boundary = format!("{}.bounce/{}", b.queue_id, b.hostname);
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
        b.hostname
    ));
    m.push_str(&format!("To: <{}>\r\n", b.to));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Date: {}\r\n", b.date));
    m.push_str(&format!(
        "Message-ID: <{}.bounce@{}>\r\n",
        b.queue_id, b.hostname
    ));
    m.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
    m.push_str(&format!(
        "This is the mail system at host {}.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n",
        b.hostname
    ));
    for f in b.failed {
        let why = if f.expired {
            "delivery time expired; last error: "
        } else {
            ""
        };
        m.push_str(&format!("<{}>: {why}{}\r\n", f.address, one_line(&f.reply)));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    m.push_str(&format!(
        "Reporting-MTA: dns; {}\r\nX-Postern-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        b.hostname, b.queue_id, b.arrival_date
    ));
    for f in b.failed {
        let status = if f.reply.status.is_empty() || !f.reply.status.starts_with('5') {
            if f.expired {
                "4.4.7".to_owned()
            } else {
                "5.0.0".to_owned()
            }
        } else {
            f.reply.status.to_string()
        };
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\n",
            f.address
        ));
        if let Some(r) = b.remote_mta {
            m.push_str(&format!("Remote-MTA: dns; {r}\r\n"));
        }
        m.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\n",
            one_line(&f.reply)
        ));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
    let mut out = m.into_bytes();
    let header_end =
        memchr::memmem::find(b.original, b"\r\n\r\n").map_or(b.original.len(), |i| i + 2);
    out.extend_from_slice(&b.original[..header_end.min(64 * 1024)]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn one_line(r: &Reply) -> String {
    let text: String = r
        .text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if r.status.is_empty() {
        format!("{} {text}", r.code)
    } else {
        format!("{} {} {text}", r.code, r.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_to_the_cap_and_expires() {
        let p = RetryPolicy::default();
        let q = 1_000_000;
        assert_eq!(p.next_attempt(1, q, q), Some(q + 300));
        assert_eq!(p.next_attempt(2, q, q + 300), Some(q + 300 + 600));
        assert_eq!(p.next_attempt(4, q, q), Some(q + 2400));
        assert_eq!(p.next_attempt(5, q, q), Some(q + 4000));
        assert_eq!(p.next_attempt(30, q, q), Some(q + 4000));
        assert_eq!(p.next_attempt(9, q, q + 5 * 86_400), None);
    }

    #[test]
    fn bounce_is_a_delivery_status_report() {
        let failed = [FailedRecipient {
            address: "x@remote.example".into(),
            reply: Reply::new(550, "5.1.1", "no such user"),
            expired: false,
        }];
        let m = dsn(&Bounce {
            hostname: "mx.example.com",
            queue_id: "Q1",
            to: "alice@example.com",
            date: "Wed, 25 Nov 2026 07:00:00 +0000",
            arrival_date: "Wed, 25 Nov 2026 06:00:00 +0000",
            remote_mta: Some("smarthost.example"),
            failed: &failed,
            original: b"Subject: hi\r\nFrom: alice@example.com\r\n\r\nsecret body\r\n",
        });
        let t = String::from_utf8(m).unwrap();
        assert!(t.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(t.contains(
            "Final-Recipient: rfc822; x@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(t.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
        assert!(
            t.contains("Subject: hi\r\n") && !t.contains("secret body"),
            "headers only are returned"
        );
    }
}
