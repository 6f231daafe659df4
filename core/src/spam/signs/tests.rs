//! One test per sign: a message it fires on, and a near miss it must not fire on.

use crate::spam::{analyze, report, AuthInput};

const FROM: &str = "From: Alice <alice@example.org>\r\n";
const TO: &str = "To: bob@example.test\r\n";
const DATE: &str = "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n";
const MID: &str = "Message-ID: <1@example.org>\r\n";
const RECEIVED: &str =
    "Received: from mx.example.org by mx.example.test; Tue, 1 Dec 2026 10:01:00 +0000\r\n";

/// A message: the usual header fields, with `replace` taking the place of
/// those it names (a field given as "Name:" with nothing after is left out).
fn msg(extra: &[&str], body: &str) -> String {
    let mut out = String::new();
    for (name, line) in [
        ("Received:", RECEIVED),
        ("From:", FROM),
        ("To:", TO),
        ("Subject:", "Subject: Lunch tomorrow\r\n"),
        ("Date:", DATE),
        ("Message-ID:", MID),
    ] {
        match extra.iter().find(|e| e.starts_with(name)) {
            Some(e) if e.trim() == name => {}
            Some(e) => out.push_str(&format!("{e}\r\n")),
            None => out.push_str(line),
        }
    }
    for e in extra {
        let known = [
            "Received:",
            "From:",
            "To:",
            "Subject:",
            "Date:",
            "Message-ID:",
        ];
        if !known.iter().any(|k| e.starts_with(k)) {
            out.push_str(&format!("{e}\r\n"));
        }
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

fn fires(m: &str, rule: &str) -> bool {
    report(&analyze(m.as_bytes()), &AuthInput::default(), None)
        .rules
        .iter()
        .any(|(n, _)| *n == rule)
}

const TEXT: &str = "Shall we meet for lunch tomorrow at noon?\r\n";
const HTML: &str = "Content-Type: text/html; charset=utf-8";

macro_rules! sign {
    ($test:ident, $rule:literal, yes: ($yh:expr, $yb:expr), no: ($nh:expr, $nb:expr)) => {
        #[test]
        fn $test() {
            let yes = msg($yh, $yb);
            let no = msg($nh, $nb);
            assert!(fires(&yes, $rule), "{} must fire on:\n{yes}", $rule);
            assert!(!fires(&no, $rule), "{} must not fire on:\n{no}", $rule);
        }
    };
}

sign!(subject_caps, "SUBJ_ALL_CAPS",
    yes: (&["Subject: MAKE FAST CASH TODAY"], TEXT),
    no: (&["Subject: Re: NASA and the ESA budget"], TEXT));
sign!(subject_exclaim, "SUBJ_EXCLAIM",
    yes: (&["Subject: You won!!"], TEXT),
    no: (&["Subject: Thanks! See you"], TEXT));
sign!(subject_money, "SUBJ_DOLLAR",
    yes: (&["Subject: Earn $500 a day"], TEXT),
    no: (&["Subject: Earn 500 points a day"], TEXT));
sign!(subject_adv, "SUBJ_ADV",
    yes: (&["Subject: ADV: low rates"], TEXT),
    no: (&["Subject: Advice on rates"], TEXT));
sign!(undisclosed, "UNDISC_RECIPS",
    yes: (&["To: undisclosed-recipients:;"], TEXT),
    no: (&["To: Undisclosed Fan <fan@example.test>"], TEXT));
sign!(missing_from, "MISSING_FROM",
    yes: (&["From:"], TEXT),
    no: (&[], TEXT));
sign!(from_digits, "FROM_LOCAL_DIGITS",
    yes: (&["From: 12345678@example.net"], TEXT),
    no: (&["From: alice1977@example.net"], TEXT));
sign!(bad_message_id, "INVALID_MSGID",
    yes: (&["Message-ID: 20021201.abcdef"], TEXT),
    no: (&["Message-ID: <20021201.abcdef@example.org>"], TEXT));
sign!(bad_date, "INVALID_DATE",
    yes: (&["Date: sometime last week"], TEXT),
    no: (&["Date: Tue, 1 Dec 2026 09:00:00 -0100"], TEXT));
sign!(date_future, "DATE_IN_FUTURE",
    yes: (&["Date: Wed, 2 Dec 2026 10:00:00 +0000"], TEXT),
    no: (&["Date: Tue, 1 Dec 2026 12:30:00 +0000"], TEXT));
sign!(date_past, "DATE_IN_PAST",
    yes: (&["Date: Tue, 10 Nov 2026 10:00:00 +0000"], TEXT),
    no: (&["Date: Mon, 30 Nov 2026 10:00:00 +0000"], TEXT));
sign!(bulk_mailer, "BULK_MAILER",
    yes: (&["X-Mailer: Advanced Mass Sender v 3.21b"], TEXT),
    no: (&["X-Mailer: Mozilla Thunderbird 115"], TEXT));
sign!(forged_outlook, "FORGED_MUA",
    yes: (&["X-Mailer: Microsoft Outlook Express 6.00.2600.0000"], TEXT),
    no: (&["X-Mailer: Microsoft Outlook Express 6.00.2600.0000", "X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2600.0000"], TEXT));
sign!(forged_eudora, "FORGED_MUA",
    yes: (&["X-Mailer: QUALCOMM Windows Eudora Version 5.1", "Message-ID: <abc@example.org>"], TEXT),
    no: (&["X-Mailer: QUALCOMM Windows Eudora Version 5.1", "Message-ID: <5.1.0.14.2.20021201@example.org>"], TEXT));
sign!(priority_high, "PRIORITY_HIGH",
    yes: (&["X-Priority: 1 (Highest)"], TEXT),
    no: (&["X-Priority: 3 (Normal)"], TEXT));
sign!(raw_8bit_header, "HEADER_8BIT",
    yes: (&["Subject: Gr\u{fc}\u{df}e"], TEXT),
    no: (&["Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?="], TEXT));
sign!(base64_text, "BASE64_TEXT",
    yes: (&["Content-Transfer-Encoding: base64"], "U2hhbGwgd2UgbWVldD8=\r\n"),
    no: (&["Content-Transfer-Encoding: quoted-printable"], TEXT));
sign!(uppercase_50, "UPPERCASE_50_75",
    yes: (&[], &format!("{}{}", "THIS IS A SHOUTED OFFER FOR YOU ".repeat(6), "and some quiet words too ".repeat(5))),
    no: (&[], &"Meet me For Lunch at The Usual Place. ".repeat(10)));
sign!(uppercase_75, "UPPERCASE_75_100",
    yes: (&[], &"THIS IS A SHOUTED OFFER FOR YOU ".repeat(10)),
    no: (&[], &"this is a quiet note for you ".repeat(10)));
sign!(phrases_2, "BULK_PHRASES_2",
    yes: (&[], "Click here and act now.\r\n"),
    no: (&[], "Click here for the minutes.\r\n"));
sign!(phrases_4, "BULK_PHRASES_4",
    yes: (&[], "Click here, act now: limited time, no obligation.\r\n"),
    no: (&[], "Click here and act now.\r\n"));
sign!(phrases_7, "BULK_PHRASES_7",
    yes: (&[], "Click here, act now: limited time, no obligation, risk free, money back, order today.\r\n"),
    no: (&[], "Click here, act now: limited time, no obligation.\r\n"));
sign!(ip_url, "URL_IP_HOST",
    yes: (&[], "See http://192.0.2.7/offer now\r\n"),
    no: (&[], "See http://www.example.org/offer now\r\n"));
sign!(short_url, "URL_SHORTENER",
    yes: (&[], "See https://bit.ly/abc now\r\n"),
    no: (&[], "See https://bitly.example/abc now\r\n"));
sign!(userinfo_url, "URL_USERINFO",
    yes: (&[], "Log in at http://www.bank.example@192.0.2.7/login\r\n"),
    no: (&[], "Write to http://www.bank.example/contact?to=a@b.example\r\n"));
sign!(big_font, "HTML_BIG_FONT",
    yes: (&[HTML], "<html><body><font size=\"+3\">BIG</font> and more text here</body></html>\r\n"),
    no: (&[HTML], "<html><body><font size=\"2\">small</font> and more text here</body></html>\r\n"));
sign!(big_css_font, "HTML_BIG_FONT",
    yes: (&[HTML], "<html><body><p style=\"font-size: 36px\">BIG</p> and more</body></html>\r\n"),
    no: (&[HTML], "<html><body><p style=\"font-size: 12px\">small</p> and more</body></html>\r\n"));
sign!(many_colours, "HTML_COLOURS",
    yes: (&[HTML], "<p><font color=red>a</font><font color=blue>b</font><font color=green>c</font><font color=\"#ff00ff\">d</font></p>\r\n"),
    no: (&[HTML], "<p><font color=red>a</font><font color=red>b</font></p>\r\n"));
sign!(image_only, "HTML_IMAGE_ONLY",
    yes: (&[HTML], "<html><body><a href=\"http://shop.example/\"><img src=\"http://shop.example/offer.gif\"></a></body></html>\r\n"),
    no: (&[HTML], &format!("<html><body><img src=\"cid:logo\"><p>{}</p></body></html>\r\n", "Minutes of the meeting, with the list of actions. ".repeat(6))));
sign!(form_or_script, "HTML_FORM_SCRIPT",
    yes: (&[HTML], "<html><body><form action=\"http://x.example/\"><input name=card></form></body></html>\r\n"),
    no: (&[HTML], "<html><body><p>The form is attached as a PDF.</p></body></html>\r\n"));

#[test]
fn a_plain_message_shows_no_sign() {
    let r = report(
        &analyze(msg(&[], TEXT).as_bytes()),
        &AuthInput::default(),
        None,
    );
    assert!(r.rules.is_empty(), "{:?}", r.rules);
}

#[test]
fn no_single_sign_junks_a_message() {
    for (name, pts) in super::points(&super::Signs {
        subject_caps: true,
        subject_exclaim: true,
        subject_money: true,
        subject_adv: true,
        missing_to: true,
        undisclosed: true,
        missing_from: true,
        from_digits: true,
        bad_message_id: true,
        bad_date: true,
        date_future: true,
        date_past: true,
        bulk_mailer: true,
        forged_mua: true,
        priority_high: true,
        raw_8bit_header: true,
        html_no_mime: true,
        body_8bit_no_mime: true,
        base64_text: true,
        uppercase_pct: 80,
        phrases: 9,
        remove_phrase: true,
        ip_url: true,
        short_url: true,
        userinfo_url: true,
        big_font: true,
        many_colours: true,
        image_only: true,
        form_or_script: true,
    }) {
        assert!(
            pts < crate::policy::spam::SpamSettings::default().junk_score,
            "{name} {pts}"
        );
        assert!(pts >= 0.0, "{name}");
    }
}

#[test]
fn an_opt_out_sentence_is_a_token_without_points() {
    let mut t = crate::spam::tokens::Tokens::new();
    t.tagged("sign", "REMOVE_PHRASE");
    let sign = t.finish()[0];
    let yes = msg(&[], "To be removed from our list, reply.\r\n");
    let no = msg(&[], "The old server was removed from the rack.\r\n");
    assert!(analyze(yes.as_bytes()).tokens.contains(&sign));
    assert!(!analyze(no.as_bytes()).tokens.contains(&sign));
    assert!(!fires(&yes, "REMOVE_PHRASE"));
}

#[test]
fn the_signs_become_classifier_tokens() {
    let plain = analyze(msg(&[], TEXT).as_bytes());
    let caps = analyze(msg(&["Subject: MAKE FAST CASH TODAY"], TEXT).as_bytes());
    let mut t = crate::spam::tokens::Tokens::new();
    t.tagged("sign", "SUBJ_ALL_CAPS");
    let sign = t.finish()[0];
    assert!(caps.tokens.contains(&sign));
    assert!(!plain.tokens.contains(&sign));
}

mod phrase_search {
    use proptest::prelude::*;

    proptest! {
        /// The one-pass phrase search finds exactly what a substring search
        /// of each phrase finds, wherever the phrases sit among other text.
        #[test]
        fn one_pass_phrase_search_equals_a_search_per_phrase(
            pieces in proptest::collection::vec(
                prop_oneof![
                    (0..super::super::PHRASES.len()).prop_map(|i| super::super::PHRASES[i].to_owned()),
                    (0..super::super::REMOVE.len()).prop_map(|i| super::super::REMOVE[i].to_owned()),
                    "[a-z $%'\"-.é]{0,12}",
                ],
                0..12,
            )
        ) {
            let text: String = pieces.concat();
            let found = super::super::phrases_in(text.as_bytes());
            for (i, p) in super::super::PHRASES.iter().enumerate() {
                prop_assert_eq!(found >> i & 1 == 1, text.contains(p), "{:?} in {:?}", p, text);
            }
            for (j, p) in super::super::REMOVE.iter().enumerate() {
                let bit = super::super::REMOVE_BIT as usize + j;
                prop_assert_eq!(found >> bit & 1 == 1, text.contains(p), "{:?} in {:?}", p, text);
            }
        }
    }
}
