//! The MTA-STS policy (RFC 8461) on the HTTP listener: served from the
//! configuration at `/.well-known/mta-sts.txt`, 404 where none is set.

mod common;

use common::Daemon;
use std::io::{Read, Write};
use std::net::TcpStream;

const HTTP: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"http\"\n";

fn get(d: &Daemon, path: &str) -> String {
    let mut s = TcpStream::connect(d.addrs[0]).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: mta-sts.example.com\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_configured_policy_is_served_and_none_is_a_404() {
    let d = Daemon::start_with(
        HTTP,
        "",
        "[mta_sts]\nmode = \"enforce\"\nmx = [\"mail.example.com\"]\nmax_age_secs = 604800\n",
    );
    let r = get(&d, "/.well-known/mta-sts.txt");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert!(
        r.ends_with("\r\n\r\nversion: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"),
        "{r}"
    );
    let plain = Daemon::start(HTTP, "");
    let r = get(&plain, "/.well-known/mta-sts.txt");
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
}
