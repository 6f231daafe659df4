//! The Kubernetes manifests (deploy/kubernetes) and the pfSense HAProxy
//! configuration (deploy/haproxy) checked offline: kustomize builds them,
//! kubernetes-validate and promtool accept them, they agree with
//! deploy/kubernetes/postern.toml, and the HAProxy configuration, pointed at
//! a running daemon, delivers the real client address and health-checks
//! without being taken for an attack.

mod common;

use common::{free_port, peer, tool, Daemon};
use postern_runtime_smol::config::{Config, Protocol};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn postern_toml() -> Config {
    Config::load(&deploy().join("kubernetes/postern.toml")).expect("deploy/kubernetes/postern.toml")
}

/// Runs a command with `input` on stdin; fails the test unless it succeeds;
/// returns stdout and stderr together.
fn run(cmd: &mut Command, input: &[u8]) -> (String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{so}\n{se}");
    (so, se)
}

/// `kubectl kustomize deploy/kubernetes`.
fn kustomize() -> String {
    run(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(deploy().join("kubernetes")),
        b"",
    )
    .0
}

/// The documents of a YAML stream, as JSON (PyYAML does the YAML).
fn yaml_docs(yaml: &str) -> Vec<Value> {
    let (out, _) = run(
        Command::new("python3").args([
            "-c",
            "import sys, json, yaml\n\
             docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
             print(json.dumps(docs))",
        ]),
        yaml.as_bytes(),
    );
    serde_json::from_str::<Vec<Value>>(&out).expect("json")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the manifests"))
}

fn port_of(v: &Value) -> u16 {
    u16::try_from(v.as_u64().unwrap_or_else(|| panic!("not a port: {v}"))).expect("port")
}

/// The tools the manifest tests need; false (a skip) when one is missing
/// outside CI.
fn manifest_peers() -> bool {
    let have = [peer("kubectl"), peer("python3")];
    have.iter().all(|h| *h)
}

#[test]
fn kustomize_builds_and_kubernetes_validate_accepts_the_output() {
    if !manifest_peers() || !peer("kubernetes-validate") {
        return;
    }
    let built = kustomize();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mailserver.yaml");
    std::fs::write(&file, &built).expect("write");
    // kubernetes-validate ships the schemas of the built-in kinds only: the
    // PrometheusRule (a CRD of the Prometheus operator) has none, and it
    // says so with a WARN and still succeeds. That one WARN is allowed;
    // alerts.rules.yml, the same groups, is checked by promtool instead.
    let examples = deploy().join("kubernetes/secrets.example.yaml");
    let (out, err) = run(
        Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&file)
            .arg(&examples),
        b"",
    );
    let all = format!("{out}{err}");
    for resource in [
        "namespace/mailserver",
        "configmap/postern-config-",
        "service/mailserver ",
        "service/mailserver-proxy ",
        "persistentvolumeclaim/mailserver-data-encrypted ",
        "deployment/mailserver ",
        "cronjob/email-roundtrip-monitor ",
        "secret/mailserver-accounts ",
        "secret/mailserver-tls ",
        "secret/mailserver-probe-secrets ",
    ] {
        assert!(
            all.contains(&format!("passed for resource {resource}")),
            "{resource} not validated:\n{all}"
        );
    }
    for line in all.lines().filter(|l| !l.starts_with("INFO ")) {
        assert!(
            line.contains("Couldn't find schema for kind PrometheusRule"),
            "kubernetes-validate: {line}\n{all}"
        );
    }
    let docs = yaml_docs(&built);
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains("PrometheusRule"), "{kinds:?}");
}

#[test]
fn alert_rules_pass_promtool_and_are_the_prometheusrule_spec() {
    if !peer("promtool") || !peer("python3") {
        return;
    }
    let rules = deploy().join("kubernetes/alerts.rules.yml");
    let (out, _) = run(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules),
        b"",
    );
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");

    let file = yaml_docs(&std::fs::read_to_string(&rules).expect("rules"));
    let crd = yaml_docs(
        &std::fs::read_to_string(deploy().join("kubernetes/prometheusrule.yaml")).expect("crd"),
    );
    assert_eq!(file.len(), 1);
    assert_eq!(crd.len(), 1);
    assert_eq!(crd[0]["kind"], "PrometheusRule");
    assert_eq!(crd[0]["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        crd[0]["spec"], file[0],
        "prometheusrule.yaml's spec and alerts.rules.yml differ"
    );

    // The reference deployment's alerts, thresholds and metric names.
    let mut alerts = BTreeMap::new();
    for group in file[0]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            alerts.insert(
                rule["alert"].as_str().expect("alert").to_owned(),
                (
                    rule["expr"].as_str().expect("expr").to_owned(),
                    rule["for"].as_str().expect("for").to_owned(),
                ),
            );
        }
    }
    let expect = [
        (
            "MailServerDown",
            "kube_deployment_status_replicas_available",
            "5m",
        ),
        (
            "EmailRoundtripFailing",
            "email_roundtrip_success == 0",
            "30m",
        ),
        (
            "EmailRoundtripStale",
            "time() - email_roundtrip_last_success_timestamp > 3600",
            "20m",
        ),
        (
            "EmailRoundtripNeverRun",
            "absent(email_roundtrip_success)",
            "40m",
        ),
    ];
    assert_eq!(alerts.len(), expect.len(), "{alerts:?}");
    for (name, expr, dur) in expect {
        let (e, f) = alerts.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert!(e.contains(expr), "{name}: {e}");
        assert_eq!(f, dur, "{name}");
    }
}

/// Where a container's file lands: (volume, path inside the volume),
/// through the deepest mount that holds it.
fn mounted<'a>(pod: &'a Value, container: &Value, file: &Path) -> (&'a Value, String, bool) {
    let mut best: Option<(&Value, usize)> = None;
    for m in container["volumeMounts"].as_array().expect("volumeMounts") {
        let at = Path::new(m["mountPath"].as_str().expect("mountPath"));
        if file.starts_with(at) && best.is_none_or(|(_, n)| at.as_os_str().len() > n) {
            best = Some((m, at.as_os_str().len()));
        }
    }
    let (m, _) = best.unwrap_or_else(|| panic!("{} is on no volume", file.display()));
    let at = Path::new(m["mountPath"].as_str().expect("mountPath"));
    let rest = file.strip_prefix(at).expect("prefix");
    let inside = match m["subPath"].as_str() {
        Some(sub) => Path::new(sub).join(rest),
        None => rest.to_path_buf(),
    };
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or_else(|| panic!("no volume {}", m["name"]));
    (
        volume,
        inside.to_string_lossy().into_owned(),
        m["readOnly"].as_bool().unwrap_or(false),
    )
}

/// The key of a Secret or ConfigMap volume that appears at `path`.
fn key_at(volume: &Value, path: &str) -> String {
    let source = if volume["secret"].is_object() {
        &volume["secret"]
    } else {
        &volume["configMap"]
    };
    match source["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["path"] == path)
            .and_then(|i| i["key"].as_str())
            .unwrap_or_else(|| panic!("{volume} has no item at {path}"))
            .to_owned(),
        None => path.to_owned(),
    }
}

/// The `--config` argument of a container.
fn config_arg(container: &Value) -> PathBuf {
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let i = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    PathBuf::from(args[i + 1])
}

#[test]
fn manifests_ports_and_paths_match_postern_toml() {
    if !manifest_peers() {
        return;
    }
    let cfg = postern_toml();
    let docs = yaml_docs(&kustomize());
    let examples = yaml_docs(
        &std::fs::read_to_string(deploy().join("kubernetes/secrets.example.yaml"))
            .expect("secrets.example.yaml"),
    );
    let deployment = find(&docs, "Deployment", "mailserver");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Every listener is a container port, and nothing else is.
    let listeners: BTreeMap<u16, &postern_runtime_smol::config::Listener> = cfg
        .listeners
        .iter()
        .map(|l| (l.address.port(), l))
        .collect();
    let container_ports: BTreeMap<u16, String> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                port_of(&p["containerPort"]),
                p["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listeners.keys().collect::<Vec<_>>(),
        container_ports.keys().collect::<Vec<_>>(),
        "listeners of postern.toml vs containerPorts"
    );
    // Below 1024 without root: the pod's sysctl.
    assert!(
        pod["securityContext"]["sysctls"]
            .as_array()
            .expect("sysctls")
            .iter()
            .any(|s| s["name"] == "net.ipv4.ip_unprivileged_port_start" && s["value"] == "0"),
        "{}",
        pod["securityContext"]
    );

    // The probes ask the http listener.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = match &get["port"] {
            Value::String(name) => {
                *container_ports
                    .iter()
                    .find(|(_, n)| n == &name)
                    .unwrap_or_else(|| panic!("no port named {name}"))
                    .0
            }
            v => port_of(v),
        };
        assert_eq!(
            listeners[&port].protocol,
            Protocol::Http,
            "{probe} on {port}"
        );
    }

    // The Services, as the reference: stock ports PROXY-free on the
    // ClusterIP, the alt ports (PROXY v2 required) behind 30125-30128.
    let service_map = |name: &str, kind: &str| -> Vec<(u16, u16, Option<u16>)> {
        let s = find(&docs, "Service", name);
        assert_eq!(s["spec"]["type"], kind, "{name}");
        for (k, v) in s["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&labels[k], v, "{name} selects {k}");
        }
        s["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    port_of(&p["port"]),
                    port_of(&p["targetPort"]),
                    p.get("nodePort").map(port_of),
                )
            })
            .collect()
    };
    assert_eq!(
        service_map("mailserver", "ClusterIP"),
        vec![
            (25, 25, None),
            (465, 465, None),
            (587, 587, None),
            (993, 993, None)
        ]
    );
    assert_eq!(
        service_map("mailserver-proxy", "NodePort"),
        vec![
            (25, 2525, Some(30125)),
            (465, 4465, Some(30126)),
            (587, 5587, Some(30127)),
            (993, 10993, Some(30128))
        ]
    );
    for (port, target, node) in service_map("mailserver", "ClusterIP")
        .into_iter()
        .chain(service_map("mailserver-proxy", "NodePort"))
    {
        let l = listeners
            .get(&target)
            .unwrap_or_else(|| panic!("service port {port} -> {target}: no listener"));
        // The Service port says what the listener must speak.
        let (proto, implicit) = match port {
            25 => (Protocol::Smtp, false),
            465 => (Protocol::Submission, true),
            587 => (Protocol::Submission, false),
            993 => (Protocol::Imap, true),
            p => panic!("unexpected service port {p}"),
        };
        assert_eq!(l.protocol, proto, "{target}");
        assert_eq!(
            l.tls == postern_runtime_smol::config::TlsMode::Implicit,
            implicit,
            "{target}"
        );
        assert_eq!(l.proxy.is_required(), node.is_some(), "PROXY on {target}");
    }

    // The configuration the container reads is this postern.toml.
    let config_map = |container: &Value, pod: &Value| {
        let path = config_arg(container);
        let (volume, inside, _) = mounted(pod, container, &path);
        let name = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("--config {} is not on a ConfigMap", path.display()));
        let cm = find(&docs, "ConfigMap", name);
        cm["data"][key_at(volume, &inside)]
            .as_str()
            .expect("config data")
            .to_owned()
    };
    let source = std::fs::read_to_string(&cfg.file).expect("postern.toml");
    assert_eq!(config_map(c, pod), source);
    let cron = find(&docs, "CronJob", "email-roundtrip-monitor");
    assert_eq!(cron["spec"]["schedule"], "*/20 * * * *");
    let cron_pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let probe = &cron_pod["containers"][0];
    assert_eq!(probe["args"][0], "probe");
    // The probe reads its own file, which the probe's loader accepts, and
    // the secret files it names are mounted from the probe's Secret.
    let probe_toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/probe.toml"),
    )
    .expect("probe.toml");
    assert_eq!(config_map(probe, cron_pod), probe_toml);
    if let Err(e) = postern_runtime_smol::probe::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/probe.toml"),
    ) {
        panic!("probe.toml does not load: {e}");
    }
    for file in [
        "/secrets/BREVO_API_KEY",
        "/secrets/EMAIL_MONITOR_IMAP_PASSWORD",
    ] {
        assert!(probe_toml.contains(file), "{file}");
        let (volume, inside, read_only) = mounted(cron_pod, probe, Path::new(file));
        assert!(read_only);
        assert_eq!(volume["secret"]["secretName"], "mailserver-probe-secrets");
        assert_eq!(inside, file.trim_start_matches("/secrets/"));
    }

    // The files postern.toml names are the Secrets' keys.
    let secret_key = |file: &Path| -> (String, String) {
        let (volume, inside, read_only) = mounted(pod, c, file);
        assert!(read_only, "{} on a writable mount", file.display());
        let name = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{} is not on a Secret", file.display()))
            .to_owned();
        (name, key_at(volume, &inside))
    };
    let tls = cfg.tls.as_ref().expect("[tls]");
    let relay = cfg.relay.as_ref().expect("[relay]");
    let wanted = [
        (
            cfg.accounts.clone(),
            "mailserver-accounts",
            "postfix-accounts.cf",
        ),
        (
            cfg.virtual_file.clone().expect("virtual"),
            "mailserver-accounts",
            "postfix-virtual.cf",
        ),
        (
            relay.sasl_passwd.clone().expect("sasl_passwd"),
            "mailserver-accounts",
            "sasl_passwd",
        ),
        (tls.cert.clone(), "mailserver-tls", "tls.crt"),
        (tls.key.clone(), "mailserver-tls", "tls.key"),
    ];
    for (file, secret, key) in wanted {
        assert_eq!(
            secret_key(&file),
            (secret.to_owned(), key.to_owned()),
            "{}",
            file.display()
        );
        let example = find(&examples, "Secret", secret);
        let has = example["data"].get(key).or(example["stringData"].get(key));
        assert!(has.is_some(), "secrets.example.yaml: {secret} has no {key}");
    }
    assert_eq!(
        find(&examples, "Secret", "mailserver-tls")["type"],
        "kubernetes.io/tls"
    );

    // Mail and queue: writable, on the encrypted PVC.
    for dir in [&cfg.data_dir, &cfg.queue_dir] {
        let (volume, _, read_only) = mounted(pod, c, dir);
        assert!(!read_only, "{}", dir.display());
        let claim = volume["persistentVolumeClaim"]["claimName"]
            .as_str()
            .unwrap_or_else(|| panic!("{} is not on a PVC", dir.display()));
        assert_eq!(claim, "mailserver-data-encrypted");
    }
    let pvc = find(&docs, "PersistentVolumeClaim", "mailserver-data-encrypted");
    assert_eq!(pvc["spec"]["storageClassName"], "proxmox-lvm-encrypted");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "2Gi");

    // Hardening.
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(c["env"]
        .as_array()
        .expect("env")
        .iter()
        .any(|e| e["name"] == "MALLOC_ARENA_MAX" && e["value"] == "2"));
}

/// deploy/haproxy/haproxy.cfg with its frontends on free loopback ports
/// and its servers on `backend` (NodePort -> daemon address); the checks
/// every `inter` instead of 120 s so that the test sees them.
fn render_haproxy(backend: &BTreeMap<u16, String>, inter: &str) -> (String, BTreeMap<u16, u16>) {
    let text = std::fs::read_to_string(deploy().join("haproxy/haproxy.cfg")).expect("haproxy.cfg");
    let mut fronts = BTreeMap::new();
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let rendered = match words.as_slice() {
            ["log", "/var/run/log", ..] => String::new(),
            ["bind", addr, rest @ ..] => {
                let port: u16 = addr
                    .rsplit(':')
                    .next()
                    .expect("port")
                    .parse()
                    .expect("port");
                let free = free_port();
                fronts.insert(port, free);
                format!("    bind 127.0.0.1:{free} {}", rest.join(" "))
            }
            ["server", name, addr, rest @ ..] => {
                let node_port: u16 = addr
                    .rsplit(':')
                    .next()
                    .expect("port")
                    .parse()
                    .expect("port");
                let to = backend
                    .get(&node_port)
                    .unwrap_or_else(|| panic!("server {name}: NodePort {node_port} unknown"));
                format!("    server {name} {to} {}", rest.join(" "))
            }
            _ => line.replace("inter 120s", &format!("inter {inter}")),
        };
        out.push_str(&rendered);
        out.push('\n');
    }
    assert!(
        text.contains("inter 120s"),
        "the reference checks every 120 s"
    );
    (out, fronts)
}

/// Whether HAProxy's last check of each of the 16 servers passed all its
/// `tcp-check` steps (`L7OK`) and none has ever failed. (A check in
/// progress shows as `* L7OK`, the previous result.)
fn checks_all_pass(sock: &Path) -> bool {
    if !sock.exists() {
        return false;
    }
    let (out, _) = run(
        Command::new("python3").args([
            "-c",
            &format!(
                "import socket, csv, io\n\
                 s = socket.socket(socket.AF_UNIX)\n\
                 s.connect({:?})\n\
                 s.sendall(b'show stat\\n')\n\
                 data = b''\n\
                 while True:\n\
                 \x20   chunk = s.recv(65536)\n\
                 \x20   if not chunk: break\n\
                 \x20   data += chunk\n\
                 rows = csv.DictReader(io.StringIO(data.decode().lstrip('# ')))\n\
                 for r in rows:\n\
                 \x20   if r['svname'] not in ('FRONTEND', 'BACKEND'):\n\
                 \x20       print(r['pxname'], r['svname'], r['check_status'].lstrip('* ') or '-', r['chkfail'] or '-')\n",
                sock.display().to_string()
            ),
        ]),
        b"",
    );
    let servers: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    for s in &servers {
        assert_eq!(s[3], "0", "a health check failed: {out}");
    }
    servers.len() == 16 && servers.iter().all(|s| s[2] == "L7OK")
}

/// One SMTP exchange from `source` through `port`: the greeting, EHLO, QUIT.
fn smtp_from(source: &str, port: u16) -> String {
    let (out, _) = run(
        Command::new("python3").args([
            "-c",
            &format!(
                "import smtplib\n\
                 s = smtplib.SMTP(timeout=20, source_address=('{source}', 0))\n\
                 code, msg = s.connect('127.0.0.1', {port})\n\
                 print(code, msg.decode())\n\
                 print(s.ehlo('client.example.net')[0])\n\
                 s.quit()\n"
            ),
        ]),
        b"",
    );
    out
}

#[test]
fn haproxy_cfg_forwards_the_real_client_and_its_local_health_checks_are_not_attacks() {
    if !peer("haproxy") || !peer("python3") {
        return;
    }
    // The alt listeners of postern.toml on loopback, trusting 127.0.0.1 as
    // the reference trusts the node subnet; a tight connection rate so that
    // counted health checks would show.
    let cfg = postern_toml();
    let alt: Vec<_> = cfg
        .listeners
        .iter()
        .filter(|l| l.proxy.is_required())
        .collect();
    assert_eq!(alt.len(), 4);
    let mut listeners = String::new();
    for l in &alt {
        let tls = match l.tls {
            postern_runtime_smol::config::TlsMode::Implicit => "implicit",
            postern_runtime_smol::config::TlsMode::StartTls => "starttls",
            postern_runtime_smol::config::TlsMode::None => "none",
        };
        listeners.push_str(&format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"{}\"\ntls = \"{tls}\"\n\
             proxy = \"required\"\ntrusted_networks = [\"127.0.0.1/32\"]\n",
            l.protocol.name()
        ));
    }
    let rate = "[rate]\nconnection_rate_limit = 3\nmessage_rate_limit = 0\ntime_unit_secs = 600\n";
    let d = Daemon::start_with(&listeners, "", rate);
    assert_eq!(d.addrs.len(), 4);

    // NodePort -> container port (mailserver-proxy, as the manifests test
    // checks it) -> the daemon's listener.
    let target_of: BTreeMap<u16, u16> =
        [(30125, 2525), (30126, 4465), (30127, 5587), (30128, 10993)]
            .into_iter()
            .collect();
    let mut backend = BTreeMap::new();
    for (node_port, target) in &target_of {
        let i = alt
            .iter()
            .position(|l| l.address.port() == *target)
            .unwrap_or_else(|| panic!("no alt listener on {target}"));
        backend.insert(*node_port, d.addrs[i].to_string());
    }
    let (rendered, fronts) = render_haproxy(&backend, "2s");
    assert_eq!(
        fronts.keys().copied().collect::<Vec<_>>(),
        vec![25, 465, 587, 993]
    );
    let file = d.dir.path().join("haproxy.cfg");
    // A stats socket (the test's, not the reference's) to read the checks'
    // results.
    let sock = d.dir.path().join("haproxy.sock");
    let rendered = rendered.replacen(
        "global\n",
        &format!("global\n    stats socket {}\n", sock.display()),
        1,
    );
    // Checks every 2 s, not 120 s. HAProxy gives a check min(timeout
    // connect, inter) to connect (the TLS handshake included) and `timeout
    // check` (10 s in haproxy.cfg) to read, so that a loaded machine does
    // not fail them.
    assert!(rendered.contains("timeout check 10s"), "{rendered}");
    std::fs::write(&file, &rendered).expect("write cfg");
    let hlog = d.dir.path().join("haproxy.log");
    let child = Command::new(tool("haproxy"))
        .args(["-db", "-f"])
        .arg(&file)
        .stdout(Stdio::from(std::fs::File::create(&hlog).expect("log")))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&hlog)
                .expect("log"),
        ))
        .spawn()
        .expect("haproxy");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Kill(child);

    // Health checks: every server of every backend (16) sends a PROXY v2
    // LOCAL header; wait (bounded) until the daemon has had several rounds.
    // (HAProxy binds its frontends before it starts checking: no probing
    // connection of the test's own reaches the daemon.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let enough = |log: &str| {
        let smtp = log
            .lines()
            .filter(|l| l.contains("source=ProxyLocal"))
            .count();
        let imap = log
            .lines()
            .filter(|l| l.contains("imap: Disconnected: Logged out rip=127.0.0.1"))
            .count();
        smtp >= 16 && imap >= 4
    };
    while !enough(&d.log_text()) || !checks_all_pass(&sock) {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            panic!(
                "haproxy exited with {status}:\n{}\n{rendered}",
                std::fs::read_to_string(&hlog).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "too few health checks reached the daemon:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A client through the SMTP frontend: the greeting, and the daemon logs
    // its real address (127.0.0.7), not HAProxy's.
    let out = smtp_from("127.0.0.7", fronts[&25]);
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.lines().nth(1) == Some("250"), "{out}");
    // And a client from HAProxy's own address, after a dozen or more health
    // checks from it, over a limit of 3 connections per 10 min: accepted,
    // so the checks were not counted against 127.0.0.1.
    let out = smtp_from("127.0.0.1", fronts[&587]);
    assert!(out.starts_with("220 "), "{out}");

    let log = d.log_text();
    assert!(log.contains("connect from unknown[127.0.0.7]"), "{log}");
    // The checks pass (HAProxy marks no server DOWN) and are whole polite
    // sessions: no failed handshake, no lost connection in the log.
    let hap = std::fs::read_to_string(&hlog).unwrap_or_default();
    assert!(!hap.contains("is DOWN"), "{hap}");
    for line in log
        .lines()
        .filter(|l| l.contains(" connect from unknown[127.0.0.1]"))
    {
        if line.contains("ProxyLocal") {
            continue;
        }
        // The one real client from 127.0.0.1 is the only other one.
        assert!(line.contains("source=Proxy"), "{line}");
    }
    for bad in [
        "PROXY refused",
        "TLS handshake failed",
        "lost connection",
        "LostConnection",
        "too many connections",
        "Connection rate limit exceeded",
        "WARN",
        "ERROR",
    ] {
        assert!(!log.contains(bad), "{bad}:\n{log}");
    }
}
