//! The wall clock, read in one place: the core is given times, never reads them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The RFC 5322 date of now (for Received and Date headers).
pub fn date_now() -> String {
    postern_core::datetime::rfc5322(i64::try_from(unix_now()).unwrap_or(0))
}
