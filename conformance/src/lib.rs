//! Test support for Postern: the transcript format, the in-memory replay
//! runner, and (in `tests/` and `benches/`) the conformance suites.

pub mod imap_replay;
pub mod replay;
pub mod transcript;

use std::path::PathBuf;

/// The repository's `testdata/` folder.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}
