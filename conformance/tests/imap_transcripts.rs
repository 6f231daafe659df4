//! Every transcript in `testdata/transcripts/imap/` replayed against the
//! IMAP core with the in-memory store and with the Maildir store (in a
//! temporary folder), the same snapshot for both; and any split of the
//! client's reads gives the same session.

use postern_conformance::imap_replay::Backend;
use postern_conformance::{imap_replay, testdata, transcript};
use proptest::prelude::*;
use std::fs;

fn transcripts() -> Vec<(String, transcript::Transcript)> {
    let dir = testdata().join("transcripts/imap");
    let mut out: Vec<_> = fs::read_dir(&dir)
        .expect("testdata/transcripts/imap exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            let text = fs::read_to_string(&p).expect("read");
            let t = transcript::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, t)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Replays one transcript against the Maildir store in a fresh folder.
fn replay_maildir(t: &transcript::Transcript) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let log = imap_replay::replay_with(t, &Backend::Maildir(dir.path().to_owned()))?;
    // The session really went to disk whenever it reached the store.
    if log.iter().any(|l| l.starts_with("E: mailbox ")) {
        let account = dir.path().join("example.com");
        assert!(account.is_dir(), "no Maildir account was written");
    }
    Ok(log)
}

#[test]
fn imap_transcripts_replay() {
    let mut failures = Vec::new();
    for (name, t) in transcripts() {
        if let Err(e) = imap_replay::replay(&t) {
            failures.push(format!("== {name}.txt (memory) {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} IMAP transcript(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn imap_transcripts_replay_on_maildir() {
    let mut failures = Vec::new();
    for (name, t) in transcripts() {
        if let Err(e) = replay_maildir(&t) {
            failures.push(format!("== {name}.txt (Maildir) {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} IMAP transcript(s) failed on the Maildir store:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn imap_sessions_snapshot() {
    for (name, t) in transcripts() {
        let Ok(log) = imap_replay::replay(&t) else {
            continue;
        };
        insta::with_settings!({ snapshot_suffix => name.clone(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("imap", log.join("\n"));
        });
    }
}

/// The Maildir store's sessions match the same snapshots.
#[test]
fn imap_sessions_snapshot_on_maildir() {
    for (name, t) in transcripts() {
        let Ok(log) = replay_maildir(&t) else {
            continue;
        };
        insta::with_settings!({ snapshot_suffix => name.clone(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("imap", log.join("\n"));
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_imap_session(pick in any::<prop::sample::Index>(), seeds in prop::collection::vec(any::<u64>(), 1..6)) {
        let all = transcripts();
        let (name, t) = &all[pick.index(all.len())];
        let whole = imap_replay::run_with_cuts(t, &mut |_| Vec::new()).expect("whole");
        let mut k = 0u64;
        let split = imap_replay::run_with_cuts(t, &mut |len| {
            k += 1;
            if len < 2 { return Vec::new(); }
            let mut c: Vec<usize> = seeds.iter().map(|s| (s.wrapping_mul(k + 1) % len as u64) as usize).collect();
            c.sort_unstable();
            c
        }).expect("split");
        prop_assert_eq!(String::from_utf8_lossy(&whole.0), String::from_utf8_lossy(&split.0), "{}", name);
        prop_assert_eq!(whole.1, split.1, "{}", name);
    }
}
