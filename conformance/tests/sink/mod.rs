//! Postfix's smtp-sink as the smarthost of the relay, DKIM and SRS tests: every
//! message dumped byte for byte (with smtp-sink's `X-Mail-Args:` and
//! `X-Rcpt-Args:` envelope lines in front) into its own file.

#![allow(dead_code, unreachable_pub)]

use super::common::{free_port, tool};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Sink {
    pub fn start(root: &Path) -> Sink {
        Self::start_with(root, &[])
    }

    /// With smtp-sink's own flags (`-f RCPT`: refuse every recipient).
    pub fn start_with(root: &Path, flags: &[&str]) -> Sink {
        let port = free_port();
        let dir = root.join(format!("sink-{port}"));
        std::fs::create_dir_all(&dir).expect("sink dir");
        // As root, smtp-sink insists on dropping privileges to a user.
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let mut privs: Vec<&str> = Vec::new();
        if root_user {
            let _ = Command::new("chown").arg("postfix").arg(&dir).status();
            let _ = Command::new("chmod").arg("755").arg(root).status();
            privs = vec!["-u", "postfix"];
        }
        let child = Command::new(tool("smtp-sink"))
            .args(&privs)
            .args(flags)
            .arg("-d")
            .arg(format!("{}/%s.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink { child, port, dir }
    }

    /// The messages received so far, raw, oldest first by name.
    pub fn messages(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| (e.path(), std::fs::read(e.path()).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The messages received so far as text with LF line ends, oldest
    /// first by name.
    pub fn texts(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .map(|(_, m)| String::from_utf8_lossy(&m).replace("\r\n", "\n"))
            .collect()
    }

    /// Waits (bounded) for a message containing `marker`.
    pub fn wait_for(&self, marker: &str, limit: Duration) -> (PathBuf, Vec<u8>) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self
                .messages()
                .into_iter()
                .find(|(_, m)| String::from_utf8_lossy(m).contains(marker))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no message with {marker:?} reached the sink"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[relay]` section that makes a daemon relay to a smarthost on
/// `port` without TLS, scanning its queue every second.
pub fn relay_to(port: u16) -> String {
    format!("[relay]\nhost = \"127.0.0.1\"\nport = {port}\nrequire_tls = false\nscan_interval_secs = 1\n")
}

/// The envelope sender smtp-sink recorded (`X-Mail-Args: <addr> ...`).
pub fn mail_from(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let line = text
        .lines()
        .find(|l| l.starts_with("X-Mail-Args:"))
        .unwrap_or("");
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.find('>').unwrap_or(start);
    line.get(start..end).unwrap_or("").to_owned()
}

/// The message without smtp-sink's leading `X-...-Args:`/`X-Client-...`
/// lines (they are not part of what the sender wrote).
pub fn strip_sink_headers(msg: &[u8]) -> Vec<u8> {
    let mut rest = msg;
    loop {
        let is_sink = [
            &b"X-Client-"[..],
            b"X-Helo-Args:",
            b"X-Mail-Args:",
            b"X-Rcpt-Args:",
        ]
        .iter()
        .any(|p| rest.starts_with(p));
        if !is_sink {
            return rest.to_vec();
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => rest = &rest[i + 1..],
            None => return Vec::new(),
        }
    }
}
