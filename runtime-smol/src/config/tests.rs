//! The configuration's parsing, ranges and errors.
use super::*;

const GOOD: &str = r#"
hostname = "mail.example.com"
data_dir = "mail"
[directory]
accounts = "postfix-accounts.cf"
[tls]
cert = "cert.pem"
key = "key.pem"
[[listener]]
address = "0.0.0.0:25"
protocol = "smtp"
tls = "starttls"
[[listener]]
address = "0.0.0.0:2525"
protocol = "smtp"
tls = "starttls"
proxy = "required"
trusted_networks = ["10.0.20.0/24"]
"#;

#[test]
fn good_config() {
    let c = Config::parse(GOOD, Path::new("/etc/postern.toml"), Path::new("/etc")).unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert!(c.listeners[1].proxy.is_required());
    assert_eq!(c.data_dir, Path::new("/etc/mail"));
}

#[test]
fn mta_sts_policy_is_read_and_checked() {
    let good = format!("{GOOD}[mta_sts]\nmode = \"testing\"\nmx = [\"mail.example.com\"]\n");
    let c = Config::parse(&good, Path::new("p.toml"), Path::new(".")).unwrap();
    let p = c.mta_sts.expect("policy");
    assert_eq!(p.mode, postern_core::mtasts::Mode::Testing);
    assert_eq!(p.max_age, 604_800);
    let bad = format!("{GOOD}[mta_sts]\nmode = \"enforce\"\nmx = []\n");
    let e = Config::parse(&bad, Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("mta_sts"), "{e}");
    let bad = format!("{GOOD}[mta_sts]\nmode = \"strict\"\nmx = [\"a.b\"]\n");
    let e = Config::parse(&bad, Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("mta_sts.mode"), "{e}");
}

#[test]
fn errors_name_line_and_key() {
    let bad = GOOD.replace("10.0.20.0/24", "10.0.20.0/33");
    let e = Config::parse(&bad, Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert_eq!(e.line, Some(18), "{e}");
    assert_eq!(e.key.as_deref(), Some("listener[2].trusted_networks"));
    let bad = GOOD.replace(
        "protocol = \"smtp\"\ntls = \"starttls\"\nproxy",
        "protocol = \"smtpx\"\ntls = \"starttls\"\nproxy",
    );
    let e = Config::parse(&bad, Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert!(
        e.to_string().starts_with("p.toml:15: listener[2].protocol"),
        "{e}"
    );
    let http = format!("{GOOD}[[listener]]\naddress = \"0.0.0.0:9100\"\nprotocol = \"http\"\n");
    let c = Config::parse(&http, Path::new("p.toml"), Path::new(".")).unwrap();
    assert_eq!(c.listeners[2].protocol, Protocol::Http);
    let e = Config::parse(
        &format!("{http}tls = \"implicit\"\n"),
        Path::new("p.toml"),
        Path::new("."),
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("listener[3].tls"), "{e}");
    let e = Config::parse("hostname = 1", Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn reference_deployment_config_has_the_eight_listeners() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/postern.toml");
    let c = Config::load(&path).unwrap();
    let ports: Vec<(u16, bool)> = c
        .listeners
        .iter()
        .filter(|l| l.protocol != Protocol::Http)
        .map(|l| (l.address.port(), l.proxy.is_required()))
        .collect();
    assert_eq!(
        ports,
        vec![
            (25, false),
            (465, false),
            (587, false),
            (993, false),
            (2525, true),
            (4465, true),
            (5587, true),
            (10993, true)
        ]
    );
    let http: Vec<u16> = c
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
        .map(|l| l.address.port())
        .collect();
    assert_eq!(http, vec![9100]);
}

#[test]
fn mime_limits_and_summary_cache_are_settings() {
    let c = Config::parse(GOOD, Path::new("p.toml"), Path::new(".")).unwrap();
    assert_eq!(c.mime, postern_core::imap::limits::MimeLimits::default());
    assert_eq!(c.summary_cache_bytes, 32 << 20);
    let set =
        format!("{GOOD}[imap]\nmime_max_parts = 200\nmime_max_depth = 10\nsummary_cache_mib = 8\n");
    let c = Config::parse(&set, Path::new("p.toml"), Path::new(".")).unwrap();
    assert_eq!((c.mime.max_parts, c.mime.max_depth), (200, 10));
    assert_eq!(c.summary_cache_bytes, 8 << 20);
    let deep = format!("{GOOD}[imap]\nmime_max_depth = 101\n");
    let e = Config::parse(&deep, Path::new("p.toml"), Path::new(".")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("imap.mime_max_depth"), "{e}");
}

#[test]
fn dns_and_auth_sections_are_read_and_checked() {
    let c = Config::parse(GOOD, Path::new("p.toml"), Path::new(".")).unwrap();
    assert!(!c.auth.enable);
    assert!(c.dns.servers.is_empty());
    let good = format!(
        "{GOOD}[dns]\nservers = [\"127.0.0.1:5353\"]\ntimeout_ms = 300\n\
         [auth]\nenable = true\nreject = false\njunk_folder = \"Spam\"\nbudget_secs = 7\n"
    );
    let c = Config::parse(&good, Path::new("p.toml"), Path::new(".")).unwrap();
    assert_eq!(c.dns.servers, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(c.dns.timeout, Duration::from_millis(300));
    assert!(c.auth.enable && !c.auth.settings.reject && c.auth.settings.quarantine);
    assert_eq!(c.auth.junk_folder, "Spam");
    assert_eq!(c.auth.budget, Duration::from_secs(7));
    for (bad, key) in [
        ("[dns]\nservers = [\"localhost\"]\n", "dns.servers"),
        ("[dns]\ntimeout_ms = 1\n", "dns.timeout_ms"),
        ("[auth]\njunk_folder = \"../x\"\n", "auth.junk_folder"),
        ("[auth]\nbudget_secs = 300\n", "auth.budget_secs"),
    ] {
        let e = Config::parse(&format!("{GOOD}{bad}"), Path::new("p.toml"), Path::new("."))
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{bad}: {e}");
    }
}
