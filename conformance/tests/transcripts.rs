//! Every transcript in `testdata/transcripts/smtp/` replayed against the
//! SMTP core, and each whole session kept as an insta snapshot.

use postern_conformance::{replay, testdata, transcript};
use std::fs;

fn transcripts() -> Vec<(String, transcript::Transcript)> {
    let dir = testdata().join("transcripts/smtp");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).expect("testdata/transcripts/smtp exists") {
        let path = entry.expect("readable dir").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let name = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&path).expect("readable transcript");
            let t = transcript::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, t));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn at_least_forty_smtp_transcripts() {
    let n = transcripts().len();
    assert!(n >= 40, "only {n} SMTP transcripts");
}

#[test]
fn smtp_transcripts_replay() {
    let mut failures = Vec::new();
    for (name, t) in transcripts() {
        if let Err(e) = replay::replay(&t) {
            failures.push(format!("== {name}.txt {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} transcript(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn smtp_sessions_snapshot() {
    for (name, t) in transcripts() {
        let Ok(log) = replay::replay(&t) else {
            continue;
        };
        insta::with_settings!({ snapshot_suffix => name.clone(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("smtp", log.join("\n"));
        });
    }
}
