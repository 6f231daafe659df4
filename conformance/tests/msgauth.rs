//! Message authentication on the MX against a real DNS server: nsd serving
//! `testdata/dns/test.zone` on loopback, messages signed by dkimpy
//! (`dkimsign`, with our test key and with a key `opendkim-genkey` made),
//! spoofs of `p=reject` and `p=quarantine` domains, SPF loops and limits,
//! bad keys, and DNS that never answers. The cases follow the kinds of
//! mail-auth's own test vectors (pass, fail, softfail, neutral, none,
//! temperror, permerror, each DMARC policy), written for our zone.

mod common;

use common::dns::{arcsign, arcsign_available, dkimsign, start_nsd, start_silent, DnsServer};
use common::{queue_cli, Client, Daemon};
use std::time::{Duration, Instant};

const MX: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\ntls = \"none\"\n";

fn daemon(dns: &DnsServer, auth: &str) -> Daemon {
    Daemon::start_with(
        MX,
        "",
        &format!("{}[auth]\nenable = true\n{auth}", dns.config()),
    )
}

/// A message From `from`, with `extra` header lines first. Dated now:
/// a fixed date would, days later, score DATE_IN_PAST and tip mail whose
/// checks fail near the Junk threshold over it.
fn message(from: &str, extra: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!(
        "{extra}From: Sender <{from}>\r\nTo: alice@example.com\r\nSubject: test from {from}\r\n\
         Date: {}\r\nMessage-ID: <{}@test>\r\n\r\nHello.\r\n",
        postern_core::datetime::rfc5322(now),
        from.replace('@', ".")
    )
    .into_bytes()
}

/// Sends one message; returns the reply to the end of DATA.
fn send(d: &Daemon, mail_from: &str, data: &[u8]) -> String {
    let mut c = Client::connect(d.addrs[0]).expect("connect");
    assert!(c.reply().expect("greeting").starts_with("220"));
    assert!(c.cmd("EHLO helo.test").expect("ehlo").starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{mail_from}>")).expect("mail");
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<alice@example.com>").expect("rcpt");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    c.send(data).expect("send");
    let reply = c.cmd(".").expect("end of data");
    let _ = c.cmd("QUIT");
    reply
}

/// The stored copies in alice's `folder` ("" for INBOX, ".Junk").
fn stored(d: &Daemon, folder: &str) -> Vec<String> {
    d.new_mail(&format!("alice/{folder}"), "example.com")
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// The one Authentication-Results header of a stored copy, unfolded.
fn our_results(copy: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in copy.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with("Authentication-Results: mx.example.com") {
            assert!(out.is_empty(), "two A-R headers of ours:\n{copy}");
            inside = true;
            out.push(line.to_owned());
        } else if inside && line.starts_with([' ', '\t']) {
            out.push(line.trim().to_owned());
        } else {
            inside = false;
        }
    }
    assert!(!out.is_empty(), "no A-R header of ours:\n{copy}");
    out.join(" ")
}

fn need(tools: &[&str]) -> bool {
    tools.iter().all(|t| common::peer(t))
}

#[test]
fn spoof_of_a_reject_domain_gets_550_at_end_of_data() {
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    let reply = send(&d, "ceo@reject.test", &message("ceo@reject.test", ""));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(stored(&d, "").is_empty());
    // Through a CNAME chain to the same p=reject record.
    let reply = send(&d, "ceo@cname.test", &message("ceo@cname.test", ""));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    // Turned off: delivered (to Junk, as quarantine is still on).
    let d2 = daemon(&dns, "reject = false\n");
    let reply = send(&d2, "ceo@reject.test", &message("ceo@reject.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(stored(&d2, ".Junk").len(), 1);
}

#[test]
fn a_subdomain_without_its_own_record_gets_the_sp_policy() {
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    // _dmarc.spdom.test: p=none; sp=reject. sub.spdom.test has no record.
    let reply = send(&d, "ceo@sub.spdom.test", &message("ceo@sub.spdom.test", ""));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(stored(&d, "").is_empty() && stored(&d, ".Junk").is_empty());
    // The organisational domain itself: p=none, delivered, failure noted.
    let reply = send(&d, "ceo@spdom.test", &message("ceo@spdom.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    let inbox = stored(&d, "");
    assert_eq!(inbox.len(), 1);
    let ar = our_results(&inbox[0]);
    assert!(
        ar.contains("dmarc=fail") && ar.contains("header.from=spdom.test policy.dmarc=none"),
        "{ar}"
    );
    // A subdomain with its own record (p=none): that record's p= applies.
    let reply = send(&d, "ceo@own.spdom.test", &message("ceo@own.spdom.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(stored(&d, "").len(), 2);
    // sp=reject turned into quarantine by [auth] reject = false: to Junk,
    // and the header names the policy that applied (sp=).
    let d2 = daemon(&dns, "reject = false\n");
    let reply = send(
        &d2,
        "ceo@sub.spdom.test",
        &message("ceo@sub.spdom.test", ""),
    );
    assert!(reply.starts_with("250"), "{reply}");
    let junk = stored(&d2, ".Junk");
    assert_eq!(junk.len(), 1);
    let ar = our_results(&junk[0]);
    assert!(
        ar.contains("header.from=sub.spdom.test policy.dmarc=reject"),
        "{ar}"
    );
}

#[test]
fn dkimpy_signed_aligned_message_passes_dkim_and_dmarc() {
    if !need(&["dkimsign"]) {
        return;
    }
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    let msg = dkimsign(
        &message("news@signed.test", ""),
        "sel",
        "signed.test",
        "sel.signed.test.private",
    );
    // SPF fails (-all), DKIM passes aligned: DMARC passes under p=reject.
    let reply = send(&d, "bounce@signed.test", &msg);
    assert!(reply.starts_with("250"), "{reply}");
    let copies = stored(&d, "");
    assert_eq!(copies.len(), 1);
    let ar = our_results(&copies[0]);
    assert!(
        ar.contains("dkim=pass header.i=@signed.test header.s=sel"),
        "{ar}"
    );
    assert!(ar.contains("dmarc=pass header.from=signed.test"), "{ar}");
    assert!(ar.contains("spf=fail"), "{ar}");
    // A body changed after signing: dkim=fail, DMARC fails, 550.
    let tampered = String::from_utf8(msg)
        .expect("utf8")
        .replace("Hello.", "Hello, changed.");
    let reply = send(&d, "bounce@signed.test", tampered.as_bytes());
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
}

#[test]
fn a_dkimpy_arc_sealed_message_passes_arc_and_a_tampered_seal_fails() {
    if !arcsign_available() {
        return;
    }
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    // A forwarder (ADMD relay.signed.test) checked the message and sealed
    // its results with the key of sel._domainkey.signed.test.
    let checked = message(
        "x@none.test",
        "Authentication-Results: relay.signed.test; spf=pass smtp.mailfrom=x@none.test\r\n",
    );
    let sealed = arcsign(
        &checked,
        "sel",
        "signed.test",
        "sel.signed.test.private",
        "relay.signed.test",
    );
    let reply = send(&d, "x@none.test", &sealed);
    assert!(reply.starts_with("250"), "{reply}");
    let ar = our_results(&stored(&d, "")[0]);
    assert!(ar.contains("arc=pass"), "{ar}");

    // The seal's signature changed (one character of its b= value).
    let text = String::from_utf8(sealed).expect("utf8");
    let b = text.find(" b=").expect("ARC-Seal b=") + 3;
    let mut bytes = text.into_bytes();
    bytes[b] = if bytes[b] == b'A' { b'B' } else { b'A' };
    let reply = send(&d, "x@none.test", &bytes);
    assert!(reply.starts_with("250"), "{reply}");
    let copies = stored(&d, "");
    assert_eq!(copies.len(), 2);
    let tampered = copies
        .iter()
        .map(|c| our_results(c))
        .find(|r| !r.contains("arc=pass"))
        .expect("the tampered copy's results");
    assert!(tampered.contains("arc=fail"), "{tampered}");
}

#[test]
fn opendkim_genkey_key_signed_message_passes() {
    if !need(&["dkimsign", "opendkim-genkey"]) {
        return;
    }
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    let msg = dkimsign(
        &message("info@odkim.test", ""),
        "mail",
        "odkim.test",
        "mail.odkim.test.private",
    );
    let reply = send(&d, "info@odkim.test", &msg);
    assert!(reply.starts_with("250"), "{reply}");
    let ar = our_results(&stored(&d, "")[0]);
    assert!(
        ar.contains("dkim=pass header.i=@odkim.test header.s=mail"),
        "{ar}"
    );
    assert!(ar.contains("dmarc=pass"), "{ar}");
}

#[test]
fn quarantine_lands_in_junk_and_pct_weakens_reject() {
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    let reply = send(&d, "x@quarantine.test", &message("x@quarantine.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    let junk = stored(&d, ".Junk");
    assert_eq!(junk.len(), 1);
    assert!(stored(&d, "").is_empty());
    let ar = our_results(&junk[0]);
    assert!(
        ar.contains("dmarc=fail") && ar.contains("policy.dmarc=quarantine"),
        "{ar}"
    );
    // p=reject; pct=0: no failure gets reject, each gets quarantine.
    let reply = send(&d, "x@pct0.test", &message("x@pct0.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(stored(&d, ".Junk").len(), 2);
    // p=none: INBOX, the failure recorded.
    let reply = send(&d, "x@none.test", &message("x@none.test", ""));
    assert!(reply.starts_with("250"), "{reply}");
    let inbox = stored(&d, "");
    assert_eq!(inbox.len(), 1);
    assert!(our_results(&inbox[0]).contains("dmarc=fail"));
}

#[test]
fn unreachable_dns_is_temperror_and_delivered_within_the_budget() {
    let dns = start_silent();
    let d = daemon(&dns, "budget_secs = 3\n");
    let start = Instant::now();
    let reply = send(&d, "ceo@reject.test", &message("ceo@reject.test", ""));
    let took = start.elapsed();
    assert!(reply.starts_with("250"), "{reply}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The checks themselves stopped at the budget (3 s), as logged.
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("message authentication"))
        .expect("a log line");
    let ms: u64 = line
        .split("took_ms=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("took_ms");
    // At the budget, not at the resolver's own timeouts (3 s, twice, for
    // each of several queries); above it only by how late a loaded
    // machine ran the timer.
    assert!((2900..8000).contains(&ms), "{line}");
    let ar = our_results(&stored(&d, "")[0]);
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(ar.contains("dmarc=temperror"), "{ar}");
    // The server got the queries and is still up (stopped by PID on drop).
    assert!(dns.pid() > 0);
}

#[test]
fn slow_dns_blocks_no_executor_thread() {
    let dns = start_silent();
    let d = std::sync::Arc::new(daemon(&dns, "budget_secs = 3\n"));
    // More messages waiting on DNS than the daemon has executor threads.
    let senders: Vec<_> = (0..6)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || send(&d, "ceo@reject.test", &message("ceo@reject.test", "")))
        })
        .collect();
    // Meanwhile other clients are served at once, again and again.
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !senders.iter().all(|t| t.is_finished()) {
        let start = Instant::now();
        let mut c = Client::connect(d.addrs[0]).expect("connect");
        assert!(c.reply().expect("greeting").starts_with("220"));
        assert!(c.cmd("EHLO probe.test").expect("ehlo").starts_with("250"));
        let _ = c.cmd("QUIT");
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "a session waited {took:?}"
        );
        rounds += 1;
        assert!(Instant::now() < deadline, "the senders never finished");
    }
    assert!(rounds >= 3, "{rounds}");
    for t in senders {
        let reply = t.join().expect("sender");
        assert!(reply.starts_with("250"), "{reply}");
    }
    assert_eq!(stored(&d, "").len(), 6);
}

#[test]
fn incoming_results_claiming_our_id_are_removed() {
    let Some(dns) = start_nsd() else { return };
    let d = daemon(&dns, "");
    let forged = "Authentication-Results: mx.example.com; dkim=pass; dmarc=pass\r\n\
                  Authentication-Results: other.example; spf=pass\r\n";
    let reply = send(&d, "x@none.test", &message("x@none.test", forged));
    assert!(reply.starts_with("250"), "{reply}");
    let copy = &stored(&d, "")[0];
    let ar = our_results(copy);
    assert!(ar.contains("dmarc=fail"), "{ar}");
    assert!(!copy.contains("dkim=pass; dmarc=pass"), "{copy}");
    assert!(copy.contains("Authentication-Results: other.example; spf=pass"));
}

/// Each case: MAIL FROM and From, an optional signer, and what our A-R
/// header must say.
#[test]
fn each_bad_input_gives_a_defined_result() {
    let Some(dns) = start_nsd() else { return };
    let signer = common::peer("dkimsign");
    // Every copy is read from INBOX: no spam scoring (a message failing
    // SPF, DKIM and DMARC at once scores 5.5, over the Junk threshold).
    let d = daemon(&dns, "[spam]\nenabled = false\n");
    let plain = |from: &str| message(from, "");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "a@spf-pass.test",
            plain("a@spf-pass.test"),
            &["spf=pass", "dmarc=pass"],
        ),
        (
            "a@incl.test",
            plain("a@incl.test"),
            &["spf=pass", "dmarc=pass"],
        ),
        ("a@redir.test", plain("a@redir.test"), &["spf=pass"]),
        ("a@amech.test", plain("a@amech.test"), &["spf=pass"]),
        ("a@mxmech.test", plain("a@mxmech.test"), &["spf=pass"]),
        ("a@exists.test", plain("a@exists.test"), &["spf=pass"]),
        ("a@nomatch.test", plain("a@nomatch.test"), &["spf=fail"]),
        (
            "a@softfail.test",
            plain("a@softfail.test"),
            &["spf=softfail", "dmarc=none"],
        ),
        ("a@neutral.test", plain("a@neutral.test"), &["spf=neutral"]),
        (
            "a@nothing.test",
            plain("a@nothing.test"),
            &["spf=none", "dkim=none", "dmarc=none"],
        ),
        ("a@broken.test", plain("a@broken.test"), &["spf=permerror"]),
        // Two SPF records: RFC 7208 4.5 says permerror; mail-auth uses
        // the first (a deviation recorded here so a change is noticed).
        ("a@twice.test", plain("a@twice.test"), &["spf=fail"]),
        ("a@loop.test", plain("a@loop.test"), &["spf=permerror"]),
        ("a@many.test", plain("a@many.test"), &["spf=permerror"]),
        // 40 records: too big for UDP, fetched over TCP; as above mail-auth
        // evaluates the first.
        (
            "a@big.test",
            plain("a@big.test"),
            &["spf=fail", "dkim=none"],
        ),
        // A signature that does not parse.
        (
            "a@none.test",
            message(
                "a@none.test",
                "DKIM-Signature: v=1; a=rsa-sha256; this is not a signature\r\n",
            ),
            &["dkim=neutral", "dmarc=fail"],
        ),
        // A signature naming a selector that does not exist.
        (
            "a@none.test",
            message(
                "a@none.test",
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=none.test; s=nosuch;\r\n\
                 \th=from; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=AAAA\r\n",
            ),
            &["dkim=", "dmarc=fail"],
        ),
        // ARC headers that do not form a chain.
        (
            "a@spf-pass.test",
            message(
                "a@spf-pass.test",
                "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AAAA\r\n",
            ),
            &["arc=", "dmarc=pass"],
        ),
    ];
    let mut cases = cases;
    if signer {
        let sign = |from: &str, sel: &str, dom: &str, key: &str| {
            dkimsign(&message(from, ""), sel, dom, key)
        };
        // A 512-bit key: refused (too small), never a pass.
        cases.push((
            "a@weak.test",
            sign("a@weak.test", "sel", "weak.test", "sel.weak.test.private"),
            &["dmarc=fail"],
        ));
        // An RSA signature against a record saying ed25519.
        cases.push((
            "a@badkey.test",
            sign(
                "a@badkey.test",
                "sel",
                "badkey.test",
                "sel.signed.test.private",
            ),
            &["dmarc=fail"],
        ));
        // A revoked key (empty p=) and one that is not base64.
        cases.push((
            "a@revoked.test",
            sign(
                "a@revoked.test",
                "sel",
                "revoked.test",
                "sel.signed.test.private",
            ),
            &["dkim="],
        ));
        cases.push((
            "a@garbage.test",
            sign(
                "a@garbage.test",
                "sel",
                "garbage.test",
                "sel.signed.test.private",
            ),
            &["dkim="],
        ));
    }
    let mut failures = Vec::new();
    for (i, (mail_from, data, want)) in cases.iter().enumerate() {
        let reply = send(&d, mail_from, data);
        assert!(reply.starts_with("250"), "{mail_from}: {reply}");
        // Poll (bounded) for this case's copy.
        let deadline = Instant::now() + Duration::from_secs(10);
        let copies = loop {
            let c = stored(&d, "");
            if c.len() > i || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let subject = format!("Subject: test from {}", mail_from);
        let Some(copy) = copies
            .iter()
            .find(|c| c.contains(&subject) && !c.contains("X-Seen"))
        else {
            failures.push(format!("{mail_from}: no copy"));
            continue;
        };
        let ar = our_results(copy);
        let result_of = |m: &str| {
            ar.split(&format!("{m}="))
                .nth(1)
                .and_then(|r| r.split([' ', ';']).next())
                .unwrap_or("")
                .to_owned()
        };
        for w in *want {
            if !ar.contains(w) {
                failures.push(format!("{mail_from}: want {w} in {ar}"));
            }
        }
        // DKIM results are never a pass for the bad keys, and always one
        // of RFC 8601's values.
        let dkim = result_of("dkim");
        if ![
            "",
            "pass",
            "fail",
            "neutral",
            "none",
            "temperror",
            "permerror",
            "policy",
        ]
        .contains(&dkim.as_str())
        {
            failures.push(format!("{mail_from}: dkim={dkim} in {ar}"));
        }
        if [
            "a@weak.test",
            "a@badkey.test",
            "a@revoked.test",
            "a@garbage.test",
        ]
        .contains(mail_from)
            && dkim == "pass"
        {
            failures.push(format!("{mail_from}: a bad key passed: {ar}"));
        }
        println!("{mail_from}: {ar}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_quarantined_copy_kept_for_retry_is_retried_into_junk() {
    let Some(dns) = start_nsd() else { return };
    let mut d = daemon(&dns, "");
    // alice's Junk is a plain file: her quarantined copy fails for now,
    // bob's lands in his Junk, so alice's waits in the queue.
    let alice = d.dir.path().join("mail/example.com/alice");
    std::fs::create_dir_all(&alice).expect("alice");
    let junk = alice.join(".Junk");
    let _ = std::fs::remove_dir_all(&junk);
    std::fs::write(&junk, b"not a folder").expect("block alice's Junk");

    let mut c = Client::connect(d.addrs[0]).expect("connect");
    assert!(c.reply().expect("greeting").starts_with("220"));
    assert!(c.cmd("EHLO helo.test").expect("ehlo").starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<x@quarantine.test>")
        .expect("mail")
        .starts_with("250"));
    for rcpt in ["alice@example.com", "bob@example.com"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).expect("rcpt");
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(c.cmd("DATA").expect("data").starts_with("354"));
    c.send(&message("x@quarantine.test", "")).expect("send");
    let reply = c.cmd(".").expect("end of data");
    let _ = c.cmd("QUIT");
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(d.new_mail("bob/.Junk", "example.com").len(), 1);
    let listed = queue_cli(&d, &["list"]);
    assert!(
        listed.contains("pending alice@example.com"),
        "alice's copy is not waiting for Junk ({} in her INBOX): {listed}",
        stored(&d, "").len()
    );

    // The worker's first attempt (woken at once) fails while Junk is
    // blocked; wait until it is recorded, so the retry below follows a
    // failure.
    common::wait_for_queue_listing(&d, "attempts 1");
    // Junk usable again; the retry is made due and the worker scans at start.
    std::fs::remove_file(&junk).expect("unblock");
    let _ = queue_cli(&d, &["retry", "all"]);
    let _ = d.term().wait();
    d.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&d, ".Junk").is_empty() && stored(&d, "").is_empty() {
        assert!(
            Instant::now() < deadline,
            "alice's copy was never retried:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stored(&d, "").is_empty(),
        "the retried copy went to INBOX, not Junk"
    );
    let junk = stored(&d, ".Junk");
    assert_eq!(junk.len(), 1);
    assert!(our_results(&junk[0]).contains("policy.dmarc=quarantine"));
    // Its spam verdict's headers came back with it, as bob's copy has them.
    let bob = d.new_mail("bob/.Junk", "example.com");
    let spam_status = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("X-Spam-Status:"))
            .map(str::to_owned)
    };
    let theirs = bob
        .first()
        .and_then(|(_, m)| spam_status(&String::from_utf8_lossy(m)));
    assert!(theirs.is_some(), "bob's copy has no X-Spam-Status");
    assert_eq!(spam_status(&junk[0]), theirs, "{}", junk[0]);
}
