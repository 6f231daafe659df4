//! The same SMTP transcripts, replayed against the real daemon over
//! loopback: every `S:` line must come from the process exactly as from the
//! core. Transcripts that need what only the in-memory runner can do (a
//! virtual clock, TLS without a handshake, a failing store, PROXY headers,
//! settings other than the defaults) are left to `transcripts.rs`.

mod common;

use common::{Client, Daemon};
use postern_conformance::testdata;
use postern_conformance::transcript::{self, Step};

/// Directives the daemon replay cannot honour.
const IN_MEMORY_ONLY: &[&str] = &[
    "tls-established",
    "advance",
    "eof",
    "store",
    "connect",
    "auth",
    "shutdown",
    "proxy-header",
];

fn eligible(t: &transcript::Transcript) -> bool {
    t.header.is_empty()
        && t.steps.iter().all(|(_, s)| match s {
            Step::Directive(name, _) => !IN_MEMORY_ONLY.contains(&name.as_str()),
            _ => true,
        })
}

/// `Q<n>` in a transcript stands for whatever queue id the daemon chose.
fn same_reply(want: &str, got: &str) -> bool {
    match (want.split_once("queued as Q"), got.split_once("queued as ")) {
        (Some((w, _)), Some((g, id))) => w == g && !id.is_empty(),
        _ => want == got,
    }
}

#[test]
fn smtp_transcripts_replay_against_the_daemon() {
    let d = Daemon::start(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n",
        "postmaster@example.com alice@example.com\n",
    );
    let dir = testdata().join("transcripts/smtp");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut ran = 0;
    let mut failures = Vec::new();
    for path in names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
    {
        let t = transcript::parse(&std::fs::read_to_string(path).expect("read")).expect("parse");
        if !eligible(&t) {
            continue;
        }
        ran += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut c = Client::connect(d.addrs[0]).expect("connect");
        let mut pending = Vec::new();
        for (line, step) in &t.steps {
            match step {
                Step::Client(b) => pending.extend_from_slice(b),
                Step::Server(want) => {
                    if !pending.is_empty() {
                        c.send(&std::mem::take(&mut pending)).expect("send");
                    }
                    match c.line() {
                        Ok(got) if same_reply(want, &got) => {}
                        Ok(got) => {
                            failures.push(format!(
                                "{name}:{line}: daemon said {got:?}, transcript {want:?}"
                            ));
                            break;
                        }
                        Err(e) => {
                            failures.push(format!("{name}:{line}: {e} waiting for {want:?}"));
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        ran >= 30,
        "only {ran} transcripts could run against the daemon"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{ran} transcripts replayed against the daemon");
}
