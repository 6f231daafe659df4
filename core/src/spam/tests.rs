use super::bayes::{Class, Classifier};
use super::*;

const PLAIN: &str = "From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: Lunch\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nShall we meet for lunch tomorrow?\r\n";

fn names(r: &Report) -> Vec<&'static str> {
    r.rules.iter().map(|(n, _)| *n).collect()
}

#[test]
fn a_plain_message_fires_nothing() {
    let a = analyze(PLAIN.as_bytes());
    let r = report(&a, &AuthInput::default(), None);
    assert!(r.rules.is_empty(), "{:?}", r.rules);
    assert_eq!(r.score, 0.0);
    assert!(!a.tokens.is_empty());
}

#[test]
fn gtube_always_fires_even_encoded() {
    let m = format!(
        "Subject: t\r\n\r\n{}\r\n",
        std::str::from_utf8(GTUBE).unwrap_or("")
    );
    let r = report(&analyze(m.as_bytes()), &AuthInput::default(), None);
    assert!(r.gtube && r.score >= 1000.0);
    let b64 = "U1hKUypDNEpEQlFBRE4xLk5TQk4zKjJJRE5FTipHVFVCRS1TVEFOREFSRC1BTlRJLVVCRS1URVNULUVNQUlMKkMuMzRY";
    let m = format!("Subject: t\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n");
    let a = analyze(m.as_bytes());
    // "SXJS..." decodes to a string that carries GTUBE after one byte.
    assert!(a.facts.gtube, "{:?}", a.facts);
}

#[test]
fn header_anomalies() {
    let m = "From: a@bank.example\r\nReply-To: x@other.example\r\nReceived: from somewhere\r\nSubject: hi\r\n\r\nbody\r\n";
    let r = report(&analyze(m.as_bytes()), &AuthInput::default(), None);
    let n = names(&r);
    for rule in [
        "MISSING_DATE",
        "MISSING_MID",
        "FROM_REPLYTO_DIFF",
        "FORGED_RECEIVED",
    ] {
        assert!(n.contains(&rule), "{rule} in {n:?}");
    }
}

#[test]
fn html_only_with_mismatched_link_and_obfuscation() {
    let m = "From: a@b.example\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@b.example>\r\nContent-Type: text/html\r\n\r\n<html><body><a href=\"http://phish.example.ru/\">https://www.mybank.com/</a> &#86;&#105;&#97;&#103;&#114;&#97;&#86;&#105;&#97;&#103;&#114;&#97; v.i.a.g.r.a c.i.a.l.i.s p-i-l-l-s-x</body></html>\r\n";
    let n = names(&report(&analyze(m.as_bytes()), &AuthInput::default(), None));
    for rule in ["HTML_ONLY", "LINK_TEXT_MISMATCH", "OBFUSCATED_BODY"] {
        assert!(n.contains(&rule), "{rule} in {n:?}");
    }
}

fn with_attachment(name: &str, bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("From: a@b.example\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <y@b.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--B--\r\n").into_bytes()
}

#[test]
fn executable_and_macro_attachments() {
    let n = names(&report(
        &analyze(&with_attachment("invoice.exe", b"MZ...")),
        &AuthInput::default(),
        None,
    ));
    assert!(n.contains(&"EXECUTABLE_ATTACHMENT"), "{n:?}");
    let mut doc = b"PK\x03\x04".to_vec();
    doc.extend_from_slice(&[0; 26]);
    doc.extend_from_slice(b"word/vbaProject.bin");
    let r = report(
        &analyze(&with_attachment("invoice.docx", &doc)),
        &AuthInput::default(),
        None,
    );
    assert!(names(&r).contains(&"OFFICE_MACRO"), "{:?}", r.rules);
    assert!(r.score >= 8.0);
    let clean = report(
        &analyze(&with_attachment(
            "notes.docx",
            b"PK\x03\x04word/document.xml",
        )),
        &AuthInput::default(),
        None,
    );
    assert!(clean.rules.is_empty(), "{:?}", clean.rules);
}

#[test]
fn authentication_results_count() {
    let auth = AuthInput {
        dmarc: AuthVerdict::Fail,
        spf: AuthVerdict::Fail,
        ..AuthInput::default()
    };
    let r = report(&analyze(PLAIN.as_bytes()), &auth, None);
    assert_eq!(names(&r), vec!["SPF_FAIL", "DMARC_FAIL"]);
}

#[test]
fn the_classifier_joins_after_a_few_examples() {
    let spam = |i: usize| {
        format!("From: win{i}@lottery.example\r\nSubject: You won a prize {i}\r\n\r\nClaim your lottery prize now, send your bank details, winner {i}!\r\n")
    };
    let ham = |i: usize| {
        format!("From: colleague@example.org\r\nSubject: Minutes {i}\r\n\r\nHere are the minutes of the project meeting {i}; review the agenda.\r\n")
    };
    let mut c = Classifier::new();
    for i in 0..3 {
        let s = analyze(spam(i).as_bytes());
        c.learn(s.key, &s.tokens, Class::Spam);
        let h = analyze(ham(i).as_bytes());
        c.learn(h.key, &h.tokens, Class::Ham);
    }
    let weak = report(
        &analyze(spam(99).as_bytes()),
        &AuthInput::default(),
        Some(&c),
    )
    .score;
    for i in 3..10 {
        let s = analyze(spam(i).as_bytes());
        c.learn(s.key, &s.tokens, Class::Spam);
        let h = analyze(ham(i).as_bytes());
        c.learn(h.key, &h.tokens, Class::Ham);
    }
    let r = report(
        &analyze(spam(99).as_bytes()),
        &AuthInput::default(),
        Some(&c),
    );
    assert!(r.score > weak && r.score >= 6.0, "{weak} then {:?}", r);
    let r = report(
        &analyze(ham(99).as_bytes()),
        &AuthInput::default(),
        Some(&c),
    );
    assert!(r.score < 0.0, "{r:?}");
}

#[test]
fn bad_input_is_bounded_and_never_panics() {
    // Huge: only the prefix is read.
    let mut big = PLAIN.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'a', 20 << 20));
    let a = analyze(&big);
    assert!(a.facts.truncated);
    // Deep MIME.
    let mut deep = String::from("Subject: deep\r\n");
    for i in 0..3000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str("\r\nhello\r\n");
    let _ = analyze(deep.as_bytes());
    // Nested messages.
    let mut nested = String::from("hello\r\n");
    for _ in 0..200 {
        nested = format!("Content-Type: message/rfc822\r\n\r\n{nested}");
    }
    let _ = analyze(nested.as_bytes());
    // Binary, invalid charsets, malformed HTML.
    let bin: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = analyze(&bin);
    let _ = analyze(b"Content-Type: text/plain; charset=x-nonsense\r\n\r\n\xff\xfe\x80abc\r\n");
    let _ = analyze(b"Content-Type: text/html\r\n\r\n<a href=<<<<a <a href='http://x.y'>&#99999999999;&#x;<<<\r\n");
    let _ = analyze(b"");
    let html = format!(
        "Content-Type: text/html\r\n\r\n{}",
        "<a href=\"http://a.com\">b.com".repeat(50_000)
    );
    let a = analyze(html.as_bytes());
    assert!(a.tokens.len() <= tokens::MAX_TOKENS_PER_MESSAGE + 1);
}

#[test]
fn the_key_is_the_message_id_or_the_body() {
    let a = analyze(PLAIN.as_bytes());
    let b = analyze(format!("Received: by x; Tue, 1 Dec 2026\r\n{PLAIN}").as_bytes());
    assert_eq!(a.key, b.key);
    let c = analyze(b"Subject: a\r\n\r\nbody\r\n");
    let d = analyze(b"Subject: a\nX-Spam: Yes\n\nbody\n");
    assert_eq!(c.key, d.key);
}

#[test]
fn mime_fields_missing_from_html_or_8bit_mail() {
    let html = "From: a@b.example\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@b.example>\r\nContent-Type: text/html; charset=\"GB2312\"\r\n\r\n<p>hello</p>\r\n";
    let n = names(&report(
        &analyze(html.as_bytes()),
        &AuthInput::default(),
        None,
    ));
    assert!(n.contains(&"HTML_NO_MIME_VERSION"), "{n:?}");
    let mime = html.replace("Content-Type", "MIME-Version: 1.0\r\nContent-Type");
    let n = names(&report(
        &analyze(mime.as_bytes()),
        &AuthInput::default(),
        None,
    ));
    assert!(!n.contains(&"HTML_NO_MIME_VERSION"), "{n:?}");

    let mut raw = PLAIN
        .replace("Shall we meet for lunch tomorrow?", "")
        .into_bytes();
    raw.truncate(raw.len() - 2);
    let mut eight = raw.clone();
    eight.extend_from_slice(&[0xb7, 0xa5].repeat(12));
    eight.extend_from_slice(b"\r\n");
    let n = names(&report(&analyze(&eight), &AuthInput::default(), None));
    assert!(n.contains(&"BODY_8BIT_NO_MIME"), "{n:?}");
    // A stray byte or two is a mistake, not a sign; declared MIME is fine.
    let mut few = raw.clone();
    few.extend_from_slice(b"caf\xe9 cr\xe8me\r\n");
    let n = names(&report(&analyze(&few), &AuthInput::default(), None));
    assert!(!n.contains(&"BODY_8BIT_NO_MIME"), "{n:?}");
    let declared = String::from_utf8_lossy(&eight)
        .replace(
            "Subject:",
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=big5\r\nSubject:",
        )
        .into_bytes();
    let n = names(&report(&analyze(&declared), &AuthInput::default(), None));
    assert!(!n.contains(&"BODY_8BIT_NO_MIME"), "{n:?}");
}

#[test]
fn a_senders_history_with_the_user_counts_unless_forged() {
    let from = |addr: &str, to: &str, n: u32| {
        format!("From: Shop <{addr}>\r\nTo: {to}\r\nSubject: Offer {n}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{n}@shop.example>\r\n\r\nThis week's offers, number {n}.\r\n")
    };
    let mut c = Classifier::new();
    let points = |c: &Classifier, m: &str, auth: &AuthInput, rule: &str| {
        report(&analyze(m.as_bytes()), auth, Some(c))
            .rules
            .iter()
            .find(|(n, _)| *n == rule)
            .map(|(_, p)| *p)
    };
    let news = |n| from("news@shop.example", "bob@example.test", n);
    let none = AuthInput::default();
    assert_eq!(points(&c, &news(0), &none, "SENDER_HAM_HISTORY"), None);
    let a = analyze(news(1).as_bytes());
    c.learn(a.key, &a.tokens, Class::Ham);
    let once = points(&c, &news(2), &none, "SENDER_HAM_HISTORY").unwrap_or(0.0);
    assert!(once < 0.0, "{once}");
    let a = analyze(news(2).as_bytes());
    c.learn(a.key, &a.tokens, Class::Ham);
    let twice = points(&c, &news(3), &none, "SENDER_HAM_HISTORY").unwrap_or(0.0);
    assert!(twice < once, "{twice} vs {once}");
    // Not when DMARC says the From address is forged.
    let forged = AuthInput {
        dmarc: AuthVerdict::Fail,
        ..AuthInput::default()
    };
    assert_eq!(points(&c, &news(3), &forged, "SENDER_HAM_HISTORY"), None);
    // Not for the recipient's own address given as the sender.
    let a = analyze(from("bob@example.test", "carol@example.test", 4).as_bytes());
    c.learn(a.key, &a.tokens, Class::Ham);
    let selfsent = from("bob@example.test", "bob@example.test", 5);
    assert_eq!(points(&c, &selfsent, &none, "SENDER_HAM_HISTORY"), None);
    // A sender only ever learned as spam adds points; one learned as
    // both says nothing.
    let spammer = |n| from("deals@spam.example", "bob@example.test", n);
    let a = analyze(spammer(6).as_bytes());
    c.learn(a.key, &a.tokens, Class::Spam);
    assert!(points(&c, &spammer(7), &none, "SENDER_SPAM_HISTORY").is_some_and(|p| p > 0.0));
    let a = analyze(spammer(8).as_bytes());
    c.learn(a.key, &a.tokens, Class::Ham);
    assert_eq!(points(&c, &spammer(9), &none, "SENDER_SPAM_HISTORY"), None);
    assert_eq!(points(&c, &spammer(9), &none, "SENDER_HAM_HISTORY"), None);
}

#[test]
fn a_style_sheet_is_neither_phrases_nor_words() {
    let html = |style: &str| {
        format!(
            "From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: Lunch\r\n\
             Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n\
             <html><body>{style}<p>Shall we meet for lunch tomorrow?</p></body></html>\r\n"
        )
    };
    let bare = analyze(html("").as_bytes());
    let styled = analyze(
        // An unquoted `type=text/css`, as Outlook and MSN wrote it: the
        // HTML-to-text conversion alone keeps such a style sheet as text.
        html("<STYLE type=text/css>/* click here, act now, order today, buy now, risk free */ .Offer {color:red}</STYLE>")
            .as_bytes(),
    );
    let r = report(&styled, &AuthInput::default(), None);
    assert!(
        !names(&r).iter().any(|n| n.starts_with("BULK_PHRASES")),
        "{:?}",
        r.rules
    );
    assert_eq!(styled.tokens, bare.tokens, "the style sheet gave tokens");
}

#[test]
fn the_senders_domains_are_tokens_along_the_whole_path() {
    // Five hops: the sender's own two are the fourth and fifth from the top.
    let mut m = String::new();
    for (i, host) in ["mx.example.org", "relay.example.org", "filter.example.org"]
        .iter()
        .enumerate()
    {
        m.push_str(&format!(
            "Received: from h{i} by {host} with ESMTP id {i}; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        ));
    }
    m.push_str("Received: from mail-ems-101.shop.example.co.uk by mm-out-7.shop.example.co.uk with SMTP; Tue, 1 Dec 2026 09:59:00 +0000\r\n");
    m.push_str(
        "Received: by mail-ems-101.shop.example.co.uk id 42; Tue, 1 Dec 2026 09:58:00 +0000\r\n",
    );
    m.push_str("Return-Path: <bounce+x1@bounces.shop.example.co.uk>\r\n");
    m.push_str("Message-ID: <42.1@mail-ems-101.shop.example.co.uk>\r\n");
    m.push_str(PLAIN);
    let a = analyze(m.as_bytes());
    let has = |tag: &str, v: &str| a.tokens.contains(&tokens::tagged_hash(tag, v));
    assert!(has("r", "mm-out-7.shop.example.co.uk"));
    assert!(has("rd", "example.co.uk"));
    assert!(has("rd", "example.org"));
    assert!(has("rpd", "example.co.uk"));
    assert!(has("midr", "example.co.uk"));
    assert!(!has("rd", "co.uk"));
}
