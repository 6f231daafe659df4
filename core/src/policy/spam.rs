//! The spam verdict: what a score means for one local copy (INBOX, the
//! Junk folder, or refusal at end of DATA with `554 5.7.1`), the header
//! lines each copy gets, and which IMAP requests teach the user's
//! classifier (moves into and out of Junk, the `$Junk`/`$NotJunk`
//! keywords). Scores come from `crate::spam`.

use crate::imap::event::{MailboxRequest, StoreMode};
use crate::spam::bayes::Class;
use crate::spam::Report;

/// Moves into this mailbox teach nothing (special-use `\Trash`).
pub const TRASH: &str = "Trash";

/// The `[spam]` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SpamSettings {
    /// Score messages at all (MX listeners only).
    pub enabled: bool,
    /// At or above: delivered to the Junk folder.
    pub junk_score: f64,
    /// At or above: refused at end of DATA.
    pub reject_score: f64,
    /// Add `X-Spam`, `X-Spam-Score`, `X-Spam-Status`.
    pub add_headers: bool,
    /// Learn from the users' moves and keywords.
    pub learn: bool,
    /// MiB of the users' classifiers kept in memory at once.
    pub cache_mib: u64,
}

impl Default for SpamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            junk_score: 5.0,
            reject_score: 15.0,
            add_headers: true,
            learn: true,
            cache_mib: 64,
        }
    }
}

/// What becomes of one local copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpamAction {
    /// Into INBOX.
    Inbox,
    /// Into the Junk folder.
    Junk,
    /// Refused (when every copy is; otherwise into Junk).
    Reject,
}

/// The action for a scored copy. GTUBE is always at least Junk.
pub fn spam_action(r: &Report, s: &SpamSettings) -> SpamAction {
    if r.score >= s.reject_score {
        SpamAction::Reject
    } else if r.score >= s.junk_score || r.gtube {
        SpamAction::Junk
    } else {
        SpamAction::Inbox
    }
}

/// Whether the message is refused: only when every local copy would be
/// (one user's verdict never refuses another's mail).
pub fn refuse_message(actions: &[SpamAction]) -> bool {
    !actions.is_empty() && actions.iter().all(|a| *a == SpamAction::Reject)
}

/// The header lines (CRLF) a copy gets, empty when headers are off.
pub fn spam_headers(r: &Report, action: SpamAction, s: &SpamSettings) -> Vec<u8> {
    if !s.add_headers {
        return Vec::new();
    }
    let mut out = String::new();
    if action != SpamAction::Inbox {
        out.push_str("X-Spam: Yes\r\n");
    }
    out.push_str(&format!("X-Spam-Score: {:.2}\r\n", r.score));
    let rules: Vec<String> = r
        .rules
        .iter()
        .map(|(n, p)| format!("{n}({p:.2})"))
        .collect();
    let verdict = if action == SpamAction::Inbox {
        "No"
    } else {
        "Yes"
    };
    let mut line = format!(
        "X-Spam-Status: {verdict}, score={:.2} required={:.2}",
        r.score, s.junk_score
    );
    if !rules.is_empty() {
        line.push_str(" tests=");
        // Folded so that no line grows past 78 characters.
        let mut len = line.len();
        for (i, t) in rules.iter().enumerate() {
            if i > 0 {
                line.push(',');
                len += 1;
            }
            if len + t.len() > 76 {
                line.push_str("\r\n\t");
                len = 1;
            }
            line.push_str(t);
            len += t.len();
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out.into_bytes()
}

/// What a mailbox request teaches, once the store has done it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnRequest {
    /// The mailbox the messages are read from (before the request runs).
    pub mailbox: String,
    /// Which messages.
    pub uids: Vec<u32>,
    /// As what.
    pub class: Class,
}

fn is(name: &str, special: &str) -> bool {
    name.eq_ignore_ascii_case(special)
}

/// The training a request asks for: COPY/MOVE into the Junk folder `junk`
/// (spam), out of it into anything but Trash (ham), STORE adding `$Junk`
/// (spam) or `$NotJunk` (ham). `junk` is the configured Junk folder (the
/// one spam and the authentication verdict deliver to).
pub fn learn_request(req: &MailboxRequest, junk: &str) -> Option<LearnRequest> {
    match req {
        MailboxRequest::Copy {
            mailbox, uids, to, ..
        } => {
            let class = if is(to, junk) && !is(mailbox, junk) {
                Class::Spam
            } else if is(mailbox, junk) && !is(to, junk) && !is(to, TRASH) {
                Class::Ham
            } else {
                return None;
            };
            Some(LearnRequest {
                mailbox: mailbox.clone(),
                uids: uids.clone(),
                class,
            })
        }
        MailboxRequest::Store {
            mailbox,
            uids,
            mode: StoreMode::Add | StoreMode::Replace,
            flags,
            ..
        } => {
            let has = |k: &str| flags.iter().any(|f| f.eq_ignore_ascii_case(k));
            let class = if has("$Junk") {
                Class::Spam
            } else if has("$NotJunk") {
                Class::Ham
            } else {
                return None;
            };
            Some(LearnRequest {
                mailbox: mailbox.clone(),
                uids: uids.clone(),
                class,
            })
        }
        _ => None,
    }
}

/// Header fields a sender could use to pre-mark a message for the
/// user's client rules; removed from MX mail before ours are added.
const SPAM_FIELDS: &[&[u8]] = &[
    b"x-spam",
    b"x-spam-score",
    b"x-spam-status",
    b"x-spam-flag",
    b"x-spam-level",
];

/// The message without the `X-Spam`, `X-Spam-Score`, `X-Spam-Status`
/// (and SpamAssassin's `X-Spam-Flag`, `X-Spam-Level`) fields it arrived
/// with; None when it had none.
pub fn strip_spam_headers(data: &[u8]) -> Option<Vec<u8>> {
    crate::policy::msgauth::strip_fields(data, |field| {
        let name_end = field.iter().position(|&b| b == b':').unwrap_or(0);
        let name = field[..name_end].trim_ascii_end();
        name_end > 0 && SPAM_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(score: f64, gtube: bool) -> Report {
        Report {
            score,
            rules: vec![("MISSING_DATE", 1.0), ("BAYES_SPAM", score - 1.0)],
            bayes: Some(0.99),
            gtube,
        }
    }

    #[test]
    fn thresholds() {
        let s = SpamSettings::default();
        assert_eq!(spam_action(&report(1.0, false), &s), SpamAction::Inbox);
        assert_eq!(spam_action(&report(6.0, false), &s), SpamAction::Junk);
        assert_eq!(spam_action(&report(15.0, false), &s), SpamAction::Reject);
        assert_eq!(spam_action(&report(-3.0, true), &s), SpamAction::Junk);
        assert!(refuse_message(&[SpamAction::Reject, SpamAction::Reject]));
        assert!(!refuse_message(&[SpamAction::Reject, SpamAction::Junk]));
        assert!(!refuse_message(&[]));
    }

    #[test]
    fn headers() {
        let s = SpamSettings::default();
        let h = String::from_utf8(spam_headers(&report(7.5, false), SpamAction::Junk, &s))
            .unwrap_or_default();
        assert_eq!(
            h,
            "X-Spam: Yes\r\nX-Spam-Score: 7.50\r\nX-Spam-Status: Yes, score=7.50 required=5.00 tests=MISSING_DATE(1.00),\r\n\tBAYES_SPAM(6.50)\r\n"
        );
        let h = String::from_utf8(spam_headers(&report(1.0, false), SpamAction::Inbox, &s))
            .unwrap_or_default();
        assert!(
            h.starts_with("X-Spam-Score: 1.00\r\nX-Spam-Status: No,"),
            "{h}"
        );
        let off = SpamSettings {
            add_headers: false,
            ..s
        };
        assert!(spam_headers(&report(9.0, false), SpamAction::Junk, &off).is_empty());
    }

    /// A MOVE of UID 4 from `from` to `to`.
    fn copy(from: &str, to: &str) -> MailboxRequest {
        MailboxRequest::Copy {
            mailbox: from.into(),
            uids: vec![4],
            to: to.into(),
            moving: true,
        }
    }

    #[test]
    fn what_teaches_what() {
        let class = |r: MailboxRequest| learn_request(&r, "Junk").map(|l| l.class);
        assert_eq!(class(copy("INBOX", "Junk")), Some(Class::Spam));
        assert_eq!(class(copy("Junk", "INBOX")), Some(Class::Ham));
        assert_eq!(class(copy("Junk", "Archive")), Some(Class::Ham));
        assert_eq!(class(copy("Junk", "Trash")), None);
        assert_eq!(class(copy("INBOX", "Archive")), None);
        assert_eq!(class(copy("Junk", "junk")), None);
        let store = |mode, flag: &str| MailboxRequest::Store {
            mailbox: "INBOX".into(),
            uids: vec![1, 2],
            mode,
            flags: vec![flag.into()],
            unchanged_since: None,
        };
        assert_eq!(class(store(StoreMode::Add, "$Junk")), Some(Class::Spam));
        assert_eq!(class(store(StoreMode::Add, "$NotJunk")), Some(Class::Ham));
        assert_eq!(class(store(StoreMode::Remove, "$Junk")), None);
        assert_eq!(class(store(StoreMode::Add, "\\Seen")), None);
    }

    #[test]
    fn the_configured_junk_folder_teaches() {
        let class = |r: MailboxRequest| learn_request(&r, "Spam").map(|l| l.class);
        assert_eq!(class(copy("INBOX", "Spam")), Some(Class::Spam));
        assert_eq!(class(copy("Spam", "INBOX")), Some(Class::Ham));
        assert_eq!(class(copy("spam", "Trash")), None);
        // "Junk" is an ordinary folder when the Junk folder is "Spam".
        assert_eq!(class(copy("INBOX", "Junk")), None);
        assert_eq!(class(copy("Junk", "INBOX")), None);
    }

    #[test]
    fn incoming_spam_headers_are_stripped() {
        let m = b"Received: from a by b; Tue, 1 Dec 2026 10:00:00 +0000\r\nX-Spam: No\r\nFrom: a@b.example\r\nx-spam-status: No, score=-5.0\r\n\ttests=FAKE\r\nX-Spam-Score : -9\r\nX-Spammy-Thing: keep\r\nSubject: hi\r\n\r\nX-Spam: Yes in the body stays\r\n";
        let out = strip_spam_headers(m).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Received: from a by b; Tue, 1 Dec 2026 10:00:00 +0000\r\nFrom: a@b.example\r\nX-Spammy-Thing: keep\r\nSubject: hi\r\n\r\nX-Spam: Yes in the body stays\r\n"
        );
        assert_eq!(
            strip_spam_headers(b"Subject: hi\r\n\r\nX-Spam: Yes\r\n"),
            None
        );
    }
}
