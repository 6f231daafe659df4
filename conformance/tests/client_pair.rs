//! The relay client and the server session talking to each other in
//! memory, no sockets (quinn's `Pair::step` idea): STARTTLS, AUTH,
//! PIPELINING, dot-stuffing and per-recipient outcomes, end to end.

use postern_conformance::replay::{Driver, Setup};
use postern_core::smtp::client::{
    ClientConfig, ClientOutput, Job, Outcome, RcptOutcome, SmtpClient,
};
use postern_core::smtp::Address;
use postern_core::Secret;
use std::sync::Arc;
use std::time::Instant;

fn server(extra: &[(&str, &str)]) -> Driver {
    let mut header = vec![("listener".to_owned(), "submission".to_owned())];
    header.extend(
        extra
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
    );
    Driver::new(Setup::from_header(&header).expect("setup"))
}

/// Runs the two until the client is done; returns its outcome.
fn converse(client: &mut SmtpClient, server: &mut Driver) -> Outcome {
    let now = Instant::now();
    for _ in 0..1000 {
        if !server.output.is_empty() {
            let bytes = std::mem::take(&mut server.output);
            client.handle_input(now, &bytes);
        }
        while let Some(out) = client.poll_output() {
            match out {
                ClientOutput::Send(b) => server.input(&b),
                ClientOutput::StartTls => {
                    server.tls_established().expect("server asked for TLS too");
                    client.handle_tls_established();
                }
                ClientOutput::Done(o) => return o,
            }
        }
    }
    panic!("no outcome after 1000 steps:\n{}", server.log.join("\n"));
}

fn job(rcpts: &[&str], data: &[u8]) -> Job {
    Job {
        mail_from: Some(Address::new("alice", "example.com")),
        rcpts: rcpts
            .iter()
            .map(|r| {
                let (l, d) = r.split_once('@').expect("address");
                Address::new(l, d)
            })
            .collect(),
        data: Arc::new(data.to_vec()),
        eight_bit: false,
        smtputf8: false,
    }
}

fn config(password: &str) -> Arc<ClientConfig> {
    let mut c = ClientConfig::new("relay.example.com");
    c.credentials = Some(("alice@example.com".into(), Secret::new(password.into())));
    Arc::new(c)
}

#[test]
fn relays_through_starttls_and_auth_with_pipelining() {
    let mut srv = server(&[]);
    let data = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n";
    let mut c = SmtpClient::new(
        config("secret"),
        job(
            &[
                "friend@remote.example",
                "nobody@example.com",
                "bob@example.com",
            ],
            data,
        ),
        Instant::now(),
    );
    let o = converse(&mut c, &mut srv);
    assert!(
        matches!(o.recipients[0], RcptOutcome::Delivered(_)),
        "{o:?}"
    );
    assert!(
        matches!(&o.recipients[1], RcptOutcome::Failed(r) if r.code == 550),
        "{o:?}"
    );
    assert!(
        matches!(o.recipients[2], RcptOutcome::Delivered(_)),
        "{o:?}"
    );
    let stored = srv
        .events
        .iter()
        .find(|e| e.text.starts_with("message "))
        .expect("a message");
    assert_eq!(
        stored.data.as_deref(),
        Some(&data[..]),
        "the message arrives byte for byte"
    );
    assert!(stored.text.contains("proto=ESMTPSA"), "{}", stored.text);
    let log = srv.log.join("\n");
    assert!(
        log.contains("C~ MAIL FROM:<alice@example.com> SIZE=")
            && log.contains("\\r\\nRCPT TO:<friend@remote.example>\\r\\nRCPT TO:"),
        "pipelined:\n{log}"
    );
}

#[test]
fn wrong_password_defers_every_recipient() {
    let mut srv = server(&[]);
    let mut c = SmtpClient::new(
        config("wrong"),
        job(&["friend@remote.example"], b"x\r\n"),
        Instant::now(),
    );
    let o = converse(&mut c, &mut srv);
    assert!(
        matches!(&o.recipients[0], RcptOutcome::Deferred(r) if r.text.contains("535")),
        "{o:?}"
    );
}

#[test]
fn temporary_store_failure_defers_and_rejection_fails() {
    let mut srv = server(&[]);
    srv.directive("store", "tempfail").expect("directive");
    let mut c = SmtpClient::new(
        config("secret"),
        job(&["friend@remote.example"], b"x\r\n"),
        Instant::now(),
    );
    let o = converse(&mut c, &mut srv);
    assert!(
        matches!(&o.recipients[0], RcptOutcome::Deferred(r) if r.code == 452),
        "{o:?}"
    );

    let mut srv = server(&[]);
    srv.directive("store", "reject").expect("directive");
    let mut c = SmtpClient::new(
        config("secret"),
        job(&["friend@remote.example"], b"x\r\n"),
        Instant::now(),
    );
    let o = converse(&mut c, &mut srv);
    assert!(
        matches!(&o.recipients[0], RcptOutcome::Failed(r) if r.code == 554),
        "{o:?}"
    );
}

#[test]
fn all_recipients_refused_sends_no_message() {
    let mut srv = server(&[]);
    let mut c = SmtpClient::new(
        config("secret"),
        job(&["nobody@example.com", "ghost@example.com"], b"x\r\n"),
        Instant::now(),
    );
    let o = converse(&mut c, &mut srv);
    assert!(
        o.recipients
            .iter()
            .all(|r| matches!(r, RcptOutcome::Failed(_))),
        "{o:?}"
    );
    assert!(!srv.events.iter().any(|e| e.text.starts_with("message ")));
}
