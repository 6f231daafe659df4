//! `postern check-config --dms DIR`: a docker-mailserver tree as a real
//! deployment has it (config folder with accounts, aliases, quotas, relay
//! credentials, overrides, Rspamd and OpenDKIM keys, Sieve scripts, a
//! mounted Secret's `..data` link; a Maildir root with folders and
//! `dovecot-uidlist` files; postsrsd's secret in the state folder), built in
//! a temp folder and examined through the library and the command line.

use postern_runtime_smol::dms::{examine, DmsPaths, Status};
use std::fs;
use std::path::Path;
use std::process::Command;

const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

fn maildir(root: &Path, rel: &str, uidlist: bool) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(root.join(rel).join(sub)).expect("maildir");
    }
    if uidlist {
        write(
            root,
            &format!("{rel}/dovecot-uidlist"),
            "3 V1700000000 N1 G0\n",
        );
    }
}

/// The tree; `broken` adds one bad line to each file that has lines and a
/// damaged DKIM key.
fn tree(root: &Path, broken: bool) -> DmsPaths {
    let hash =
        postern_adapters::directory::sha512_crypt_hash("pw", "dmstestsalt00001").expect("hash");
    let mut accounts = format!(
        "# accounts\nalice@example.com|{hash}\nbob@example.com|{{BLF-CRYPT}}$2y$05$abcdefghijklmnopqrstuu5J2dH0a4S.3ZbOVTkHC5S4cJ8m5b1O6\ncarol@example.org|{hash}\n"
    );
    let mut virtual_ = "postmaster@example.com alice@example.com\nabuse@example.com alice@example.com,bob@example.com\n@example.org carol@example.org\nfwd@example.com someone@elsewhere.example\n".to_owned();
    let mut quotas = "alice@example.com:5G\nbob@example.com:1G\n".to_owned();
    if broken {
        accounts.push_str("no-separator-here\ndave@example.com|{PLAIN}secret\n"); // lines 5, 6
        virtual_.push_str("lonely@example.com\n"); // line 5
        quotas.push_str("carol@example.org:lots\n"); // line 3
    }
    let cfg = root.join("config");
    write(&cfg, "postfix-accounts.cf", &accounts);
    write(&cfg, "postfix-virtual.cf", &virtual_);
    write(&cfg, "dovecot-quotas.cf", &quotas);
    write(
        &cfg,
        "postfix-sasl-password.cf",
        "[smtp-relay.brevo.com]:587 login@smtp-brevo.com:xsmtpsib-key\n",
    );
    write(
        &cfg,
        "postfix-main.cf",
        "message_size_limit = 20480000\nsmtpd_client_connection_rate_limit = 10\nsmtputf8_enable = no\n",
    );
    write(
        &cfg,
        "postfix-master.cf",
        "submission/inet/smtpd_upstream_proxy_protocol=haproxy\n",
    );
    write(
        &cfg,
        "dovecot.cf",
        "haproxy_trusted_networks = 10.0.20.0/24\n",
    );
    write(&cfg, "user-patches.sh", "#!/bin/bash\n");
    write(
        &cfg,
        "alice@example.com.dovecot.sieve",
        "require \"fileinto\";\n",
    );
    write(
        &cfg,
        "rspamd/dkim/rsa-2048-mail-example.com.private.txt",
        KEY,
    );
    write(
        &cfg,
        "rspamd/dkim/rsa-2048-mail-example.com.public.txt",
        "v=DKIM1; k=rsa; p=MIIB\n",
    );
    write(
        &cfg,
        "rspamd/dkim/rsa-2048-mail-example.org.private.txt",
        if broken { "not a key\n" } else { KEY },
    );
    write(
        &cfg,
        "rspamd/override.d/dkim_signing.conf",
        "enabled = true;\n",
    );
    write(&cfg, "opendkim/keys/example.com/mail.private", KEY);
    write(&cfg, "opendkim/KeyTable", "mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/mail.private\n");
    write(
        &cfg,
        "opendkim/SigningTable",
        "*@example.com mail._domainkey.example.com\n",
    );
    // A mounted Kubernetes Secret: the kubelet's `..data` link and folder.
    fs::create_dir_all(cfg.join("..2026_12_01_00_00_00.1")).expect("secret dir");
    std::os::unix::fs::symlink("..2026_12_01_00_00_00.1", cfg.join("..data")).expect("link");

    let mail = root.join("mail");
    maildir(&mail, "example.com/alice", true);
    maildir(&mail, "example.com/alice/.Sent", true);
    maildir(&mail, "example.com/alice/.Junk", false);
    write(&mail, "example.com/alice/home/.dovecot.sieve", "keep;\n");
    maildir(&mail, "example.com/bob", true);
    maildir(&mail, "example.net/old", false); // no account
    fs::create_dir_all(mail.join(".postern-queue/new")).expect("queue");

    let state = root.join("mail-state");
    write(
        &state,
        "etc-postsrsd/postsrsd.secret",
        "c2VjcmV0c2VjcmV0c2VjcmV0\n",
    );
    DmsPaths {
        config: cfg,
        mail: Some(mail),
        state: Some(state),
    }
}

fn detail(r: &postern_runtime_smol::dms::Report, what: &str, status: Status) -> String {
    let items = r.about(what);
    let item = items
        .iter()
        .find(|i| i.status == status)
        .unwrap_or_else(|| panic!("no {status:?} item for {what}:\n{r}"));
    item.detail.clone()
}

#[test]
fn a_clean_tree_is_counted_and_what_is_not_read_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = examine(&tree(dir.path(), false));
    assert_eq!(r.errors(), 0, "{r}");

    let acc = detail(&r, "postfix-accounts.cf", Status::Read);
    assert!(
        acc.contains("accounts: 3 in 2 domains (example.com, example.org)"),
        "{acc}"
    );
    assert!(acc.contains("BLF-CRYPT 1, SHA512-CRYPT 2"), "{acc}");
    let virt = detail(&r, "postfix-virtual.cf", Status::Read);
    assert!(
        virt.contains("aliases: 3 (1 catch-all, 1 targets outside"),
        "{virt}"
    );
    assert!(detail(&r, "dovecot-quotas.cf", Status::Read).contains("quotas: 2"));
    let sasl = detail(&r, "postfix-sasl-password.cf", Status::Read);
    assert!(sasl.contains("[smtp-relay.brevo.com]:587"), "{sasl}");
    assert!(
        !sasl.contains("xsmtpsib"),
        "the secret is never printed: {sasl}"
    );

    let dkim = detail(&r, "rspamd/dkim", Status::Read);
    assert!(
        dkim.contains(
            "example.com (selector mail, rsa-2048), example.org (selector mail, rsa-2048)"
        ),
        "{dkim}"
    );
    assert!(dkim.contains("[dkim] dir"), "{dkim}");
    let od = detail(&r, "opendkim/keys", Status::Read);
    assert!(
        od.contains("example.com (selector mail) (tables: KeyTable, SigningTable)"),
        "{od}"
    );
    assert!(detail(&r, "etc-postsrsd/postsrsd.secret", Status::Read).contains("present (1 line"));

    let md = detail(&r, "Maildir root", Status::Read);
    assert!(
        md.contains("3 accounts with a Maildir, 2 folders besides INBOX, 3 dovecot-uidlist files"),
        "{md}"
    );
    let items = r.about("Maildir root");
    assert!(
        items
            .iter()
            .any(|i| i.detail.contains("1 accounts without a Maildir yet")
                && i.detail.contains("carol@example.org")),
        "{r}"
    );
    assert!(
        items
            .iter()
            .any(|i| i.status == Status::Warn && i.detail.contains("old@example.net")),
        "{r}"
    );
    assert!(detail(&r, "Sieve scripts", Status::NotRead).contains("1 per-user"));

    // The overrides: the settings Postern has are named with their key.
    let main: Vec<String> = r
        .about("postfix-main.cf")
        .iter()
        .map(|i| i.detail.clone())
        .collect();
    assert!(
        main.iter().any(
            |d| d == "message_size_limit = 20480000: set smtp.max_message_size in postern.toml"
        ),
        "{main:?}"
    );
    assert!(
        main.iter()
            .any(|d| d.contains("rate.connection_rate_limit")),
        "{main:?}"
    );
    assert!(
        main.iter()
            .any(|d| d.contains("1 Postfix settings with no Postern equivalent: smtputf8_enable")),
        "{main:?}"
    );
    for name in [
        "postfix-master.cf",
        "dovecot.cf",
        "user-patches.sh",
        "alice@example.com.dovecot.sieve",
        "rspamd",
        "opendkim",
    ] {
        assert!(
            r.about(name).iter().any(|i| i.status == Status::NotRead),
            "{name} not listed as not read:\n{r}"
        );
    }
    // The Secret's bookkeeping entries are not files of DMS.
    assert!(r.about("..data").is_empty(), "{r}");
    assert!(!r.to_string().contains("..2026"), "{r}");
}

#[test]
fn bad_lines_are_named_with_their_line_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = examine(&tree(dir.path(), true));
    let errors: Vec<String> = r
        .items
        .iter()
        .filter(|i| i.status == Status::Error)
        .map(|i| format!("{}: {}", i.what, i.detail))
        .collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        errors[0].starts_with("postfix-accounts.cf:5: expected user@domain|{SCHEME}hash"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("postfix-accounts.cf:6: password scheme PLAIN"),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("postfix-virtual.cf:5: expected alias@domain"),
        "{errors:#?}"
    );
    assert!(
        errors[3].starts_with("dovecot-quotas.cf:3: expected user@domain:SIZE"),
        "{errors:#?}"
    );
    assert_eq!(
        errors[4],
        "rspamd/dkim/rsa-2048-mail-example.org.private.txt: not a PEM private key"
    );
    // The good lines still count.
    assert!(detail(&r, "postfix-accounts.cf", Status::Read).contains("accounts: 3 in"));
    assert!(r.to_string().ends_with("5 errors"), "{r}");
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postern-test-daemon"))
        .args(args)
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_command_line_reports_and_fails_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = tree(dir.path(), true);
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let (mail, state) = (
        s(p.mail.as_deref().expect("mail")),
        s(p.state.as_deref().expect("state")),
    );
    let (ok, text) = cli(&[
        "check-config",
        "--dms",
        &s(&p.config),
        "--mail",
        &mail,
        "--state",
        &state,
    ]);
    assert!(!ok, "errors must fail the check:\n{text}");
    assert!(
        text.contains("  ERROR    postfix-accounts.cf:5: expected"),
        "{text}"
    );
    assert!(
        text.contains("  read     rspamd/dkim: DKIM keys for example.com"),
        "{text}"
    );
    assert!(
        text.contains("  not read user-patches.sh: not run"),
        "{text}"
    );

    let (ok, text) = cli(&["check-config", "--dms", &s(&p.config), "--mail"]);
    assert!(!ok && text.contains("usage:"), "{text}");
}

#[test]
fn a_configuration_pointing_into_a_dms_tree_gets_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = tree(dir.path(), false);
    let toml = dir.path().join("postern.toml");
    fs::write(
        &toml,
        "hostname = \"mail.example.com\"\ndata_dir = \"mail\"\nqueue_dir = \"mail-state/postern-queue\"\n\
         [directory]\naccounts = \"config/postfix-accounts.cf\"\nvirtual = \"config/postfix-virtual.cf\"\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n",
    )
    .expect("toml");
    let (ok, text) = cli(&["check-config", toml.to_str().expect("utf-8")]);
    assert!(ok, "{text}");
    assert!(text.contains("postern.toml: ok (1 listeners"), "{text}");
    assert!(
        text.contains(&format!("docker-mailserver: config {}", p.config.display())),
        "{text}"
    );
    assert!(text.contains("3 accounts with a Maildir"), "{text}");
    assert!(text.contains("postsrsd secret present"), "{text}");
    assert!(text.contains(" 0 errors"), "{text}");
}
