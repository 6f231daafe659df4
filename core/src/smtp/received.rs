//! The trace headers a receiving server prepends (RFC 5321 section 4.4).

use super::address::Address;
use super::event::Envelope;

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
