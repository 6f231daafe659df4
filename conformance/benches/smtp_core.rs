//! Throughput of the SMTP core on one core, no IO: commands per second,
//! DATA bytes per second through the dot-unstuffing path, and PROXY v2
//! headers decoded per second. Prints figures and the ratio to each target.
//!
//! Run: `cargo bench -p postern-conformance --bench smtp_core`

use postern_core::proxy::{encode_v2, ProxyConfig, ProxyGate, ProxyStep};
use postern_core::smtp::{
    ConnectAnswer, Event, ListenerConfig, MailAnswer, Output, RcptAnswer, SmtpConfig, SmtpSession,
    StoreAnswer,
};
use postern_core::Networks;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_millis(1500);

fn session(max_message: u64) -> SmtpSession {
    let mut cfg = SmtpConfig::new("mx.example.com");
    cfg.limits.max_message_size = max_message;
    cfg.limits.max_pipelined = 1 << 30;
    let mut s = SmtpSession::new(
        Arc::new(cfg),
        Arc::new(ListenerConfig::mx()),
        "192.0.2.1:1000".parse().expect("addr"),
        "192.0.2.2:25".parse().expect("addr"),
        Instant::now(),
    );
    drive(&mut s);
    s.handle_input(Instant::now(), b"EHLO bench.example\r\n");
    drive(&mut s);
    s
}

/// Drains outputs, answering every question with "yes"; returns bytes sent.
fn drive(s: &mut SmtpSession) -> usize {
    let mut sent = 0;
    while let Some(o) = s.poll_output() {
        match o {
            Output::Send(b) => sent += b.len(),
            Output::Event(Event::Connect(_)) => {
                s.answer_connect(Instant::now(), ConnectAnswer::Accept)
            }
            Output::Event(Event::MailFrom(_)) => s.answer_mail(Instant::now(), MailAnswer::Accept),
            Output::Event(Event::RcptTo(_)) => s.answer_rcpt(Instant::now(), RcptAnswer::Local),
            Output::Event(Event::Message(m)) => {
                black_box(m.data.len());
                s.answer_message(Instant::now(), StoreAnswer::Stored { id: "Q".into() })
            }
            _ => {}
        }
    }
    sent
}

fn commands_per_second() -> f64 {
    let batch = b"NOOP\r\n".repeat(1000);
    let mut s = session(10_000_000);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        for chunk in batch.chunks(4096) {
            s.handle_input(Instant::now(), chunk);
            black_box(drive(&mut s));
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn transactions_per_second() -> f64 {
    let batch = b"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nRSET\r\n".repeat(100);
    let mut s = session(10_000_000);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        s.handle_input(Instant::now(), &batch);
        black_box(drive(&mut s));
        n += 300;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn data_bytes_per_second() -> f64 {
    // 32 MiB of 76-column text, one line in 16 starting with a stuffed dot.
    let mut body = Vec::with_capacity(33 << 20);
    let mut i = 0u32;
    while body.len() < 32 << 20 {
        if i.is_multiple_of(16) {
            body.extend_from_slice(b"..");
        }
        body.extend_from_slice(&[b'x'; 74]);
        body.extend_from_slice(b"\r\n");
        i += 1;
    }
    let mut s = session(64 << 20);
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < BUDGET * 2 {
        s.handle_input(
            Instant::now(),
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
        );
        drive(&mut s);
        for chunk in body.chunks(64 * 1024) {
            s.handle_input(Instant::now(), chunk);
        }
        s.handle_input(Instant::now(), b".\r\n");
        drive(&mut s);
        bytes += body.len() as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

fn proxy_headers_per_second() -> f64 {
    let cfg = ProxyConfig::required(Networks::parse(["10.0.20.0/24"]).expect("net"));
    let header = encode_v2(
        "203.0.113.7:5555".parse().expect("addr"),
        "10.0.20.1:25".parse().expect("addr"),
        false,
    );
    let peer = "10.0.20.5:40000".parse().expect("addr");
    let local = "10.0.20.1:2525".parse().expect("addr");
    let now = Instant::now();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        for _ in 0..10_000 {
            let mut g = ProxyGate::new(cfg.clone(), peer, local, now);
            match g.handle_input(black_box(&header)) {
                ProxyStep::Done { address, .. } => {
                    black_box(address);
                }
                other => panic!("{other:?}"),
            }
        }
        n += 10_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cmds = commands_per_second();
    let txns = transactions_per_second();
    let data = data_bytes_per_second();
    let proxy = proxy_headers_per_second();
    println!("SMTP core on one core (no IO)");
    println!(
        "  NOOP commands:        {:>12.0} /s   target 2,000,000 /s   ratio {:.2}",
        cmds,
        cmds / 2e6
    );
    println!(
        "  MAIL+RCPT+RSET cmds:  {:>12.0} /s   (with runtime answers)",
        txns
    );
    println!(
        "  DATA (dot-unstuffing): {:>10.2} GB/s  target 1.00 GB/s      ratio {:.2}",
        data / 1e9,
        data / 1e9
    );
    println!(
        "  PROXY v2 headers:     {:>12.0} /s   target 10,000,000 /s  ratio {:.2}",
        proxy,
        proxy / 1e7
    );
}
