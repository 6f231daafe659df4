//! The container image (deploy/container): built FROM scratch with podman by
//! `deploy/container/build`, run on loopback as its non-root user with a
//! read-only root file system and a mounted test configuration, a message
//! delivered to it with swaks, read back from the mounted Maildir and over
//! IMAPS (curl), and the container stopped with SIGTERM. In a network
//! namespace of its own, port 25 is refused to its user, and bound with the
//! sysctl `net.ipv4.ip_unprivileged_port_start=0` the Deployment sets.
//!
//! Time: `target/release/postern` is used when it is newer than every
//! source file and Cargo file; otherwise the test build's own
//! `postern-test-daemon` (the `postern` command line under another name:
//! the same code, already built, where a release build from scratch takes
//! about 8 minutes on 2 busy cores). The
//! image is the same but for the binary; the test then takes about 10 s
//! (image build about 5 s, the run about 2 s).
//!
//! Peers: podman, runc, swaks, curl (conformance/install-peers); missing,
//! the test skips, or fails when `POSTERN_REQUIRE_PEERS=1`.

mod common;

use common::{free_port, peer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace")
}

/// The newest modification time under `path` (files and folders).
fn newest(path: &Path) -> SystemTime {
    let Ok(meta) = std::fs::metadata(path) else {
        return SystemTime::UNIX_EPOCH;
    };
    let mut t = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if meta.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir").flatten() {
            t = t.max(newest(&e.path()));
        }
    }
    t
}

/// `target/release/postern` if it is newer than the sources, else the
/// test build's `postern-test-daemon` (the same command line).
fn postern_binary() -> PathBuf {
    let ws = workspace();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| ws.join("target"), PathBuf::from);
    let bin = target.join("release/postern");
    let sources = [
        "core",
        "adapters",
        "runtime-smol",
        "Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .map(|p| {
        let p = ws.join(p);
        if p.is_dir() {
            newest(&p.join("src")).max(newest(&p.join("Cargo.toml")))
        } else {
            newest(&p)
        }
    })
    .max()
    .expect("sources");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| b > sources) {
        eprintln!(
            "container: reusing {} (newer than the sources)",
            bin.display()
        );
        return bin;
    }
    eprintln!("container: no fresh release binary; using the test build's postern-test-daemon");
    PathBuf::from(env!("CARGO_BIN_EXE_postern-test-daemon"))
}

/// Removes the container and the image, whatever happened.
struct Cleanup {
    name: String,
    image: String,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args([
                "rm",
                "-f",
                "--ignore",
                "-t",
                "0",
                &self.name,
                &format!("{}-25", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env(
        "CONTAINERS_CONF",
        workspace().join("deploy/container/containers.conf"),
    )
    .args(["--runtime", "runc"]);
    c
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn the_image_serves_mail_as_its_non_root_user() {
    if !peer("podman") || !peer("runc") || !peer("swaks") || !peer("curl") {
        return;
    }
    let started = Instant::now();
    let bin = postern_binary();
    let pid = std::process::id();
    let image = format!("localhost/postern-test:{pid}");
    let mut guard = Cleanup {
        name: format!("postern-test-{pid}"),
        image: image.clone(),
        child: None,
    };

    // The image, with the script the README names.
    let t = Instant::now();
    let built = output(
        Command::new(workspace().join("deploy/container/build"))
            .arg(&image)
            .env("POSTERN_BIN", &bin),
    );
    let size: u64 = output(podman().args(["image", "inspect", "--format", "{{.Size}}", &image]))
        .trim()
        .parse()
        .expect("size");
    assert!(built.contains("Successfully tagged"), "{built}");
    eprintln!(
        "container: image built in {:.1?}, {:.1} MiB",
        t.elapsed(),
        size as f64 / 1_048_576.0
    );
    assert!(
        size < 64 << 20,
        "image of {size} bytes: more than the binary and libc?"
    );
    // The user the Deployment runs as, numeric.
    let user = output(podman().args(["image", "inspect", "--format", "{{.Config.User}}", &image]));
    assert_eq!(user.trim(), "5000:5000");
    let deployment = std::fs::read_to_string(workspace().join("deploy/kubernetes/deployment.yaml"))
        .expect("deployment.yaml");
    assert!(
        deployment.contains("runAsUser: 5000") && deployment.contains("runAsGroup: 5000"),
        "deployment.yaml runs another user than the image's 5000:5000"
    );
    // No shell.
    let shell = podman()
        .args([
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "/bin/sh",
            &image,
            "-c",
            "true",
        ])
        .output()
        .expect("podman run");
    assert!(!shell.status.success(), "the image has a /bin/sh");

    // A test configuration on free loopback ports, mounted read-only.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&conf).expect("conf");
    std::fs::create_dir_all(&mail).expect("mail");
    chmod(dir.path(), 0o755);
    chmod(&conf, 0o755);
    std::os::unix::fs::chown(&mail, Some(5000), Some(5000)).expect("chown mail to 5000");
    let hash = postern_adapters::directory::sha512_crypt_hash("alice-pw", "containersalt001")
        .expect("hash");
    std::fs::write(
        conf.join("postfix-accounts.cf"),
        format!("alice@example.com|{hash}\n"),
    )
    .expect("accounts");
    std::fs::write(
        conf.join("postfix-virtual.cf"),
        "postmaster@example.com alice@example.com\n",
    )
    .expect("virtual");
    postern_runtime_smol::tls::ensure_self_signed(
        &["localhost".into()],
        &conf.join("cert.pem"),
        &conf.join("key.pem"),
    )
    .expect("cert");
    let (smtp, imaps, http) = (free_port(), free_port(), free_port());
    std::fs::write(
        conf.join("postern.toml"),
        format!(
            "hostname = \"mx.example.com\"\ndata_dir = \"/var/mail\"\n\
             [directory]\naccounts = \"/etc/postern/postfix-accounts.cf\"\nvirtual = \"/etc/postern/postfix-virtual.cf\"\n\
             [tls]\ncert = \"/etc/postern/cert.pem\"\nkey = \"/etc/postern/key.pem\"\n\
             [rate]\nconnection_rate_limit = 0\nmessage_rate_limit = 0\n\
             [[listener]]\naddress = \"127.0.0.1:{smtp}\"\nprotocol = \"smtp\"\ntls = \"starttls\"\n\
             [[listener]]\naddress = \"127.0.0.1:{imaps}\"\nprotocol = \"imap\"\ntls = \"implicit\"\n\
             [[listener]]\naddress = \"127.0.0.1:{http}\"\nprotocol = \"http\"\n"
        ),
    )
    .expect("config");
    for f in std::fs::read_dir(&conf).expect("conf").flatten() {
        chmod(&f.path(), 0o644);
    }

    // Run it as the Deployment does: its own user, read-only root.
    let log = dir.path().join("container.log");
    let logf = std::fs::File::create(&log).expect("log");
    let t = Instant::now();
    let child = podman()
        .args([
            "run",
            "--rm",
            "--name",
            &guard.name,
            "--network",
            "host",
            "--read-only",
        ])
        .arg("-v")
        .arg(format!("{}:/etc/postern:ro", conf.display()))
        .arg("-v")
        .arg(format!("{}:/var/mail", mail.display()))
        .arg(&image)
        .stdout(Stdio::from(logf.try_clone().expect("log")))
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("podman run");
    guard.child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready: ") {
            break;
        }
        if let Some(Ok(Some(st))) = guard.child.as_mut().map(Child::try_wait) {
            panic!("the container exited with {st} before ready:\n{text}");
        }
        assert!(Instant::now() < deadline, "not ready in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("container: ready {:.1?} after podman run", t.elapsed());

    // Deliver with swaks, over STARTTLS.
    let marker = format!("container-{pid}-{}", started.elapsed().as_nanos());
    let swaks = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{smtp}"), "--tls"])
        .args(["--from", "sender@example.net", "--to", "alice@example.com"])
        .args([
            "--header",
            &format!("Subject: {marker}"),
            "--body",
            "from swaks to the container",
        ])
        .output()
        .expect("swaks");
    let said = String::from_utf8_lossy(&swaks.stdout).into_owned();
    assert!(
        swaks.status.success(),
        "swaks failed:\n{said}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(said.contains("<-  250"), "{said}");

    // The mounted Maildir has it, written by UID 5000.
    let new = mail.join("example.com/alice/new");
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        let found = std::fs::read_dir(&new).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&marker)))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no message in {}", new.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").uid(),
        5000,
        "written as another user"
    );

    // And IMAPS reads it back.
    let fetched = output(
        Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "20",
                "-u",
                "alice@example.com:alice-pw",
            ])
            .arg(format!("imaps://127.0.0.1:{imaps}/INBOX;UID=1")),
    );
    assert!(fetched.contains(&marker), "IMAP gave:\n{fetched}");
    let ready = output(
        Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{http}/readyz")),
    );
    assert!(!ready.is_empty(), "/readyz answered nothing");

    // Port 25 as UID 5000: refused in a network namespace of its own,
    // allowed with the sysctl the Deployment sets.
    let conf25 = dir.path().join("conf25");
    std::fs::create_dir_all(&conf25).expect("conf25");
    chmod(&conf25, 0o755);
    std::fs::copy(
        conf.join("postfix-accounts.cf"),
        conf25.join("postfix-accounts.cf"),
    )
    .expect("copy");
    std::fs::write(
        conf25.join("postern.toml"),
        "hostname = \"mx.example.com\"\ndata_dir = \"/tmp/mail\"\n\
         [directory]\naccounts = \"/etc/postern/postfix-accounts.cf\"\n\
         [[listener]]\naddress = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n",
    )
    .expect("config 25");
    for f in ["postern.toml", "postfix-accounts.cf"] {
        chmod(&conf25.join(f), 0o644);
    }
    let mount25 = format!("{}:/etc/postern:ro", conf25.display());
    let refused = podman()
        .args(["run", "--rm", "--read-only", "-v", &mount25, &image])
        .output()
        .expect("podman run");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success() && said.contains("127.0.0.1:25: Permission denied"),
        "port 25 bound without the sysctl (is the image's user root?):\n{said}"
    );
    let name25 = format!("{}-25", guard.name);
    let id = output(podman().args([
        "run",
        "-d",
        "--rm",
        "--name",
        &name25,
        "--read-only",
        "--sysctl",
        "net.ipv4.ip_unprivileged_port_start=0",
        "-v",
        &mount25,
        &image,
    ]));
    assert!(!id.trim().is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = podman()
            .args(["logs", &name25])
            .output()
            .expect("podman logs");
        let text = String::from_utf8_lossy(&logs.stdout).into_owned()
            + &String::from_utf8_lossy(&logs.stderr);
        if text.contains("ready: 127.0.0.1:25") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "port 25 not bound with the sysctl:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    output(podman().args(["rm", "-f", "-t", "10", &name25]));

    // SIGTERM through podman stop; the daemon exits by itself.
    let t = Instant::now();
    output(podman().args(["stop", "-t", "20", &guard.name]));
    let mut child = guard.child.take().expect("child");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "podman run still running after stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "container exited with {status}:\n{text}");
    eprintln!(
        "container: stopped in {:.1?}; whole test {:.1?}",
        t.elapsed(),
        started.elapsed()
    );
}

/// Offline: the Containerfile exposes the listeners of the reference
/// configuration and runs as the user the Deployment names.
#[test]
fn containerfile_agrees_with_the_manifests() {
    let ws = workspace();
    let file =
        std::fs::read_to_string(ws.join("deploy/container/Containerfile")).expect("Containerfile");
    let line = |word: &str| {
        file.lines()
            .find(|l| l.starts_with(word))
            .unwrap_or_else(|| panic!("no {word} in the Containerfile"))
            .to_owned()
    };
    assert_eq!(line("FROM "), "FROM scratch");
    assert_eq!(line("USER "), "USER 5000:5000");
    let mut exposed: Vec<u16> = line("EXPOSE ")
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().expect("port"))
        .collect();
    exposed.sort_unstable();
    let cfg =
        postern_runtime_smol::config::Config::load(&ws.join("deploy/kubernetes/postern.toml"))
            .expect("postern.toml");
    let mut ports: Vec<u16> = cfg.listeners.iter().map(|l| l.address.port()).collect();
    ports.sort_unstable();
    assert_eq!(
        exposed, ports,
        "EXPOSE vs the listeners of deploy/kubernetes/postern.toml"
    );
    let deployment = std::fs::read_to_string(ws.join("deploy/kubernetes/deployment.yaml"))
        .expect("deployment.yaml");
    for want in [
        "runAsUser: 5000",
        "runAsGroup: 5000",
        "fsGroup: 5000",
        "net.ipv4.ip_unprivileged_port_start",
    ] {
        assert!(deployment.contains(want), "deployment.yaml lacks {want}");
    }
    assert!(
        line("CMD ").contains("/etc/postern/postern.toml")
            && deployment.contains("/etc/postern/postern.toml"),
        "the image's default configuration path differs from the Deployment's"
    );
}
