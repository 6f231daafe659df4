//! The PostgreSQL + S3 overlay (deploy/overlays/postgres) checked
//! offline: kustomize builds it on the base manifests, kubernetes-validate
//! accepts the output, it runs 2+ replicas with a rolling update and a
//! disruption budget and no Maildir volume, and its postern.toml (the
//! ConfigMap's) chooses the postgres backend and reads its secrets from
//! where the overlay mounts the Secret.

mod common;

use common::peer;
use postern_runtime_smol::config::store::StoreBackend;
use postern_runtime_smol::config::Config;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn overlay() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/overlays/postgres")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The built manifests as JSON documents (PyYAML reads the YAML).
fn built() -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay())
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut py.stdin.take().expect("stdin"), yaml.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    (yaml, serde_json::from_slice(&out.stdout).expect("json"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

#[test]
fn the_postgres_overlay_builds_validates_and_runs_replicas_on_the_database() {
    if !(peer("kubectl") && peer("python3") && peer("kubernetes-validate")) {
        return;
    }
    let (yaml, docs) = built();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overlay.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let all = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&file)
        .arg(overlay().join("store-secret.example.yaml")));
    for resource in [
        "deployment/mailserver ",
        "poddisruptionbudget/mailserver ",
        "configmap/postern-config-",
        "secret/postern-store ",
        "cronjob/postern-store-gc ",
    ] {
        assert!(
            all.contains(&format!("passed for resource {resource}")),
            "{resource} not validated:\n{all}"
        );
    }
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
        "no Maildir volume with the database backend"
    );
    let dep = find(&docs, "Deployment", "mailserver");
    assert!(dep["spec"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(dep["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "mailserver")["spec"]["minAvailable"],
        1
    );
    let pod = &dep["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let data = volumes.iter().find(|v| v["name"] == "data").unwrap();
    assert!(data.get("persistentVolumeClaim").is_none() && data.get("emptyDir").is_some());

    // The ConfigMap holds the overlay's postern.toml, which chooses the
    // database and reads its secrets from the mounted Secret's items.
    let text = std::fs::read_to_string(overlay().join("postern.toml")).unwrap();
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("postern-config-"))
        })
        .unwrap();
    assert_eq!(cm["data"]["postern.toml"].as_str().unwrap(), text);
    let cfg = Config::load(&overlay().join("postern.toml")).expect("overlay postern.toml");
    let StoreBackend::Postgres(s) = &cfg.store else {
        panic!("{:?}", cfg.store)
    };
    let store = volumes.iter().find(|v| v["name"] == "store").unwrap();
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "store")
        .unwrap();
    let at = Path::new(mount["mountPath"].as_str().unwrap());
    for f in [
        s.password_file.clone().unwrap(),
        s.s3_secret_key_file.clone(),
    ] {
        let rel = f
            .strip_prefix(at)
            .unwrap_or_else(|_| panic!("{f:?} not under {at:?}"));
        let items = store["secret"]["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|i| i["path"] == rel.to_string_lossy().as_ref()),
            "{rel:?} not an item of the Secret"
        );
    }
    // The daily collector runs `store gc` on the same configuration and
    // secrets as the replicas.
    let gc = &find(&docs, "CronJob", "postern-store-gc")["spec"]["jobTemplate"]["spec"]["template"]
        ["spec"];
    let args = gc["containers"][0]["args"].as_array().unwrap();
    assert_eq!(args.first().unwrap(), "store");
    assert_eq!(args.last().unwrap(), "gc");
    let gc_volumes = gc["volumes"].as_array().unwrap();
    let gc_config = gc_volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(
        gc_config["configMap"]["name"], cm["metadata"]["name"],
        "the generated ConfigMap"
    );
    assert_eq!(
        gc_volumes.iter().find(|v| v["name"] == "store").unwrap(),
        store
    );
    let gc_mount = gc["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "store")
        .unwrap();
    assert_eq!(gc_mount["mountPath"], mount["mountPath"]);
    // The rest is the base configuration.
    let base = Config::load(&overlay().join("../../kubernetes/postern.toml")).unwrap();
    assert_eq!(cfg.hostname, base.hostname);
    assert_eq!(cfg.listeners.len(), base.listeners.len());
}
