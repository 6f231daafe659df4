//! A real smarthost for relay tests: Postfix on loopback offering STARTTLS
//! with a certificate from a private CA, requiring SASL AUTH (through a
//! Dovecot auth server) before relaying, delivering every message into one
//! Maildir. Foreground processes in a private folder, stopped by PID.

use super::{free_port, run, tool};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The account the smarthost accepts.
pub const USER: &str = "relayuser";
/// Its password.
pub const PASSWORD: &str = "relaypass";

pub struct Smarthost {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub ca: PathBuf,
    postfix: Child,
    dovecot: Child,
}

impl Smarthost {
    pub fn start() -> Smarthost {
        Self::start_relaying(None)
    }

    /// With `Some(port)`, relays everything to `127.0.0.1:port` (plain
    /// SMTP) instead of storing it: Postfix as a submission server in front
    /// of a smarthost, for the relay benchmark.
    pub fn start_relaying(relay_port: Option<u16>) -> Smarthost {
        let dir = tempfile::Builder::new()
            .prefix("smarthost-")
            .tempdir()
            .expect("tempdir");
        let st = dir.path();
        let s = st.display().to_string();
        for sub in [
            "pki",
            "postfix",
            "queue",
            "data",
            "log",
            "mail",
            "dovecot/run",
            "dovecot/state",
        ] {
            std::fs::create_dir_all(st.join(sub)).expect("mkdir");
        }
        run(Command::new("chmod").args(["755", &s]));
        run(Command::new("chown").args(["postfix", &format!("{s}/data")]));
        run(Command::new("chown").args(["65534:65534", &format!("{s}/mail")]));
        let pki = st.join("pki");
        super::test_pki(
            &pki,
            "/CN=smarthost.test",
            "DNS:smarthost.test,IP:127.0.0.1",
        );
        let port = free_port();
        let main_cf = format!(
            "compatibility_level = 3.6\nqueue_directory = {s}/queue\ndata_directory = {s}/data\nmail_owner = postfix\n\
             setgid_group = postdrop\nmaillog_file = {s}/log/postfix.log\nmaillog_file_prefixes = {s}/log\n\
             myhostname = smarthost.test\nmydomain = smarthost.test\nmyorigin = $myhostname\nmydestination =\nrelay_domains =\n\
             inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 192.0.2.0/24\n\
             smtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\nbiff = no\nlocal_header_rewrite_clients =\nalias_maps =\n\
             smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {s}/pki/server.crt\nsmtpd_tls_key_file = {s}/pki/server.key\n\
             smtpd_tls_auth_only = yes\nsmtpd_tls_received_header = yes\n\
             smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = {s}/dovecot/run/auth-postfix\n\
             smtpd_sasl_security_options = noanonymous\nsmtpd_sasl_authenticated_header = yes\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
             transport_maps = static:virtual\nvirtual_mailbox_base = {s}/mail\nvirtual_mailbox_maps = static:catchall/\n\
             virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\nvirtual_mailbox_limit = 0\n"
        );
        let main_cf = match relay_port {
            None => main_cf,
            Some(p) => main_cf.replace("transport_maps = static:virtual\n", &format!(
                "virtual_mailbox_domains =\nrelayhost = [127.0.0.1]:{p}\nsmtp_host_lookup = native\nsmtp_tls_security_level = none\n\
                 default_destination_concurrency_limit = 20\n"
            )),
        };
        std::fs::write(st.join("postfix/main.cf"), main_cf).expect("main.cf");
        let master = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\npickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\ntlsmgr unix - - n 1000? 1 tlsmgr\nrewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\ndefer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\nproxymap unix - - n - - proxymap\n\
             showq unix n - n - - showq\nerror unix - - n - - error\nretry unix - - n - - error\n\
             discard unix - - n - - discard\nanvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\n\
             virtual unix - n n - - virtual\nsmtp unix - - n - - smtp\nrelay unix - - n - - smtp\npostlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(st.join("postfix/master.cf"), master).expect("master.cf");
        // Postfix waits for a freshly written main.cf to "cool down".
        run(Command::new("touch").args([
            "-d",
            "-1 min",
            &format!("{s}/postfix/main.cf"),
            &format!("{s}/postfix/master.cf"),
        ]));
        let dovecot_conf = format!(
            "protocols =\nlisten = 127.0.0.1\nbase_dir = {s}/dovecot/run\nstate_dir = {s}/dovecot/state\nlog_path = {s}/log/dovecot.log\n\
             ssl = no\nauth_mechanisms = plain login\npassdb {{\n  driver = passwd-file\n  args = {s}/dovecot/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}}\n\
             service auth {{\n  unix_listener auth-postfix {{\n    mode = 0666\n  }}\n}}\n"
        );
        std::fs::write(st.join("dovecot/dovecot.conf"), dovecot_conf).expect("dovecot.conf");
        let hash = postern_adapters::directory::sha512_crypt_hash(PASSWORD, "smarthostsalt123")
            .expect("hash");
        std::fs::write(st.join("dovecot/users"), format!("{USER}:{hash}\n")).expect("users");
        run(Command::new("chmod").args(["640", &format!("{s}/dovecot/users")]));
        run(Command::new("chgrp").args(["dovecot", &format!("{s}/dovecot/users")]));
        let dovecot = Command::new(tool("dovecot"))
            .args(["-F", "-c", &format!("{s}/dovecot/dovecot.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !st.join("dovecot/run/auth-postfix").exists() {
            assert!(Instant::now() < deadline, "dovecot auth did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let postfix = Command::new(tool("postfix"))
            .args(["-c", &format!("{s}/postfix"), "start-fg"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postfix");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix did not start: {}",
                std::fs::read_to_string(st.join("log/postfix.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ca = pki.join("ca.crt");
        Smarthost {
            dir,
            port,
            ca,
            postfix,
            dovecot,
        }
    }

    /// The messages delivered so far, as stored (LF line ends).
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/catchall/new");
        let mut v: Vec<String> = std::fs::read_dir(new)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default())
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Smarthost {
    fn drop(&mut self) {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.postfix.wait();
        let _ = self.dovecot.kill();
        let _ = self.dovecot.wait();
    }
}
