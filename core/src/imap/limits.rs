//! How much MIME structure one message may make the server describe.
//!
//! Anyone can send a message to the MX, and its owner's client then asks
//! for its BODYSTRUCTURE: a message made of hundreds of thousands of empty
//! parts, or of thousands of nested ones, must cost a bounded amount of
//! time and memory to describe. Past these limits the rest of the message
//! is one opaque `application/octet-stream` part, the same in
//! BODYSTRUCTURE, in section numbers (`BODY[n]`) and in BINARY.
//!
//! The settings live here rather than in `ImapConfig` so that every MIME
//! walk (summaries, sections, BINARY) can take them without depending on
//! the session; the session's configuration is meant to carry a copy.

/// The highest nesting depth a configuration may set: FETCH accepts
/// section paths up to one more than this, so that every part a
/// BODYSTRUCTURE shows can be asked for.
pub const MAX_DEPTH_CEILING: usize = 100;

/// The most numbers a FETCH section path may have (`BODY[1.2.3]` has 3):
/// one more than [`MAX_DEPTH_CEILING`] (the opaque part sits one level
/// below the deepest part described).
pub const MAX_SECTION_PATH: usize = MAX_DEPTH_CEILING + 1;

/// MIME complexity limits: the settings `imap.mime_max_parts` and
/// `imap.mime_max_depth` (the session's `ImapConfig::mime` and the
/// Maildir store's summary cache carry the same copy).
///
/// Defaults are tighter than Dovecot's `message_parser` limits
/// (`max_total_mime_parts` 10,000 and `max_nested_mime_parts` 100, added
/// for CVE-2020-12100): 1,000 parts and 50 levels describe any message a
/// person writes, while keeping a BODYSTRUCTURE answer under about
/// 100 KB for parts with ordinary headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MimeLimits {
    /// The most parts described (every part counts: multiparts, leaves,
    /// embedded messages). The next one and everything after it in the
    /// message is one opaque part.
    pub max_parts: usize,
    /// The deepest nesting described (the message itself is depth 0, the
    /// parts of a multipart one more than it, the body of an embedded
    /// message one more than the message part). A part deeper than this
    /// and everything after it is one opaque part.
    pub max_depth: usize,
}

impl Default for MimeLimits {
    fn default() -> Self {
        MimeLimits {
            max_parts: 1_000,
            max_depth: 50,
        }
    }
}

impl MimeLimits {
    /// The limits with the depth held to [`MAX_DEPTH_CEILING`] and at
    /// least one part allowed: what every walk actually uses.
    pub fn effective(self) -> MimeLimits {
        MimeLimits {
            max_parts: self.max_parts.max(1),
            max_depth: self.max_depth.min(MAX_DEPTH_CEILING),
        }
    }

    /// How many structure lines (part delimiters, multipart and embedded
    /// message headers) the parser is shown before the message is cut
    /// short: ten times the parts limit (10,000 by default, Dovecot's
    /// total), so the parser's own work and memory stay bounded while an
    /// ordinary message with many `--` lines is never cut.
    pub fn scan_budget(self) -> usize {
        self.effective().max_parts.saturating_mul(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_no_looser_than_dovecot() {
        let l = MimeLimits::default();
        assert!(l.max_parts <= 10_000);
        assert!(l.max_depth <= 100);
        assert_eq!(
            MimeLimits {
                max_parts: 0,
                max_depth: 1_000
            }
            .effective(),
            MimeLimits {
                max_parts: 1,
                max_depth: MAX_DEPTH_CEILING
            }
        );
    }
}
