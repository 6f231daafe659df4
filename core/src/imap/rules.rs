//! The IMAP store rules, written once for every mailbox store (Maildir,
//! in memory, a later database): how STORE merges flags and orders them,
//! which keywords a mailbox can hold, which messages EXPUNGE removes, the
//! quota check of APPEND and COPY, which refusal a missing mailbox gets,
//! and how new UIDs are handed out. Pure functions: a store keeps the
//! state and calls these to decide.

use super::event::{Code, MailboxAnswer, StoreMode};

/// The system flags a store keeps, in the order flags are reported (the
/// order of their Maildir letters D, F, P, R, S, T); keywords follow, in
/// the order the mailbox first saw them.
pub const SYSTEM_FLAGS: [&str; 6] = [
    "\\Draft",
    "\\Flagged",
    "$Forwarded",
    "\\Answered",
    "\\Seen",
    "\\Deleted",
];

/// The most keywords one mailbox can hold (Maildir's letters `a`..`z`);
/// a flag that would need one more is dropped.
pub const MAX_KEYWORDS: usize = 26;

/// The flag that marks a message for EXPUNGE.
pub const DELETED: &str = "\\Deleted";

/// The flag that marks a message read.
pub const SEEN: &str = "\\Seen";

/// Whether `flags` hold `flag` (system flags compare case-insensitively).
pub fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// A flag's place in the canonical order, registering a new keyword in
/// `keywords` while there is room. None: a flag the store does not keep
/// (an unknown `\System` flag, or a keyword past [`MAX_KEYWORDS`]).
pub fn flag_rank(flag: &str, keywords: &mut Vec<String>) -> Option<usize> {
    if let Some(i) = SYSTEM_FLAGS
        .iter()
        .position(|s| s.eq_ignore_ascii_case(flag))
    {
        return Some(i);
    }
    if flag.starts_with('\\') || flag.is_empty() {
        return None;
    }
    let i = match keywords.iter().position(|k| k == flag) {
        Some(i) => i,
        None if keywords.len() < MAX_KEYWORDS => {
            keywords.push(flag.to_owned());
            keywords.len() - 1
        }
        None => return None,
    };
    Some(SYSTEM_FLAGS.len() + i)
}

/// The flags as a store keeps them: known system flags spelled as in
/// [`SYSTEM_FLAGS`], keywords registered in `keywords` (new ones
/// appended), no duplicates, in canonical order.
pub fn canonical_flags(flags: &[String], keywords: &mut Vec<String>) -> Vec<String> {
    let mut ranked: Vec<usize> = flags
        .iter()
        .filter_map(|f| flag_rank(f, keywords))
        .collect();
    ranked.sort_unstable();
    ranked.dedup();
    ranked
        .into_iter()
        .filter_map(|r| match SYSTEM_FLAGS.get(r) {
            Some(s) => Some((*s).to_owned()),
            None => keywords.get(r - SYSTEM_FLAGS.len()).cloned(),
        })
        .collect()
}

/// The flags after STORE `mode` `flags` on a message that has `current`
/// (not yet canonical: pass the result to [`canonical_flags`]).
pub fn merge_flags(current: &[String], mode: StoreMode, flags: &[String]) -> Vec<String> {
    match mode {
        StoreMode::Replace => flags.to_vec(),
        StoreMode::Add => {
            let mut v = current.to_vec();
            for f in flags {
                if !has_flag(&v, f) {
                    v.push(f.clone());
                }
            }
            v
        }
        StoreMode::Remove => current
            .iter()
            .filter(|x| !has_flag(flags, x))
            .cloned()
            .collect(),
    }
}

/// What STORE does to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreStep {
    /// Changed after UNCHANGEDSINCE: left alone and reported (RFC 7162 3.1.3).
    Modified,
    /// The flags stay as they are (no new mod-sequence).
    Unchanged,
    /// The new flags, canonical; the message gets a new mod-sequence.
    Changed(Vec<String>),
}

/// STORE on one message with `current` flags (canonical) and `modseq`:
/// the UNCHANGEDSINCE test, the merge, the canonical order, and whether
/// anything changed. New keywords are registered in `keywords`.
pub fn store_step(
    current: &[String],
    modseq: u64,
    mode: StoreMode,
    flags: &[String],
    unchanged_since: Option<u64>,
    keywords: &mut Vec<String>,
) -> StoreStep {
    if unchanged_since.is_some_and(|n| modseq > n) {
        return StoreStep::Modified;
    }
    let new = canonical_flags(&merge_flags(current, mode, flags), keywords);
    if new == current {
        StoreStep::Unchanged
    } else {
        StoreStep::Changed(new)
    }
}

/// The UIDs EXPUNGE removes: messages flagged `\Deleted`, and only those
/// in `only` when UID EXPUNGE names a set. `messages` are (UID, flags).
pub fn expunge_set<'a>(
    messages: impl IntoIterator<Item = (u32, &'a [String])>,
    only: Option<&[u32]>,
) -> Vec<u32> {
    // Sorted once: a set of thousands of UIDs is looked up per message.
    let only = only.map(|o| {
        let mut o = o.to_vec();
        o.sort_unstable();
        o
    });
    messages
        .into_iter()
        .filter(|(uid, flags)| {
            has_flag(flags, DELETED) && only.as_ref().is_none_or(|o| o.binary_search(uid).is_ok())
        })
        .map(|(uid, _)| uid)
        .collect()
}

/// Whether adding `adding` bytes to an account that uses `used` stays
/// within `limit` (APPEND and COPY; MOVE adds nothing).
pub fn quota_allows(used: u64, adding: u64, limit: Option<u64>) -> bool {
    limit.is_none_or(|l| used.saturating_add(adding) <= l)
}

/// Whether a delivered message of `adding` bytes may go into an account
/// that uses `used`: only while the account is under its limit, and the
/// message may bring it over by at most a tenth of the limit (Dovecot's
/// default `quota_grace`). RCPT already refused a full account; this is
/// the check at delivery, where sessions accepted at once would
/// otherwise each add a message to an account with room for one.
pub fn delivery_allowed(used: u64, adding: u64, limit: Option<u64>) -> bool {
    limit.is_none_or(|l| used < l && used.saturating_add(adding) <= l.saturating_add(l / 10))
}

/// Whether a message of `adding` bytes could ever be delivered under
/// `limit`, into an empty account: a larger one is refused for good
/// (552), not deferred.
pub fn delivery_ever_fits(adding: u64, limit: Option<u64>) -> bool {
    limit.is_none_or(|l| adding <= l.saturating_add(l / 10))
}

/// Where a delivered message stands under its account's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryRoom {
    /// It goes in.
    Fits,
    /// Not now: the account has no room for it ([`delivery_allowed`]).
    Full,
    /// Never: not even an empty account could take it
    /// ([`delivery_ever_fits`]).
    NeverFits,
}

/// The quota's verdict on one delivery, both checks in one.
pub fn delivery_room(used: u64, adding: u64, limit: Option<u64>) -> DeliveryRoom {
    if !delivery_ever_fits(adding, limit) {
        DeliveryRoom::NeverFits
    } else if !delivery_allowed(used, adding, limit) {
        DeliveryRoom::Full
    } else {
        DeliveryRoom::Fits
    }
}

/// Whether an account that uses `used` is full (SMTP RCPT answers 552).
pub fn quota_full(used: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| used >= l)
}

/// The bytes COPY or MOVE adds to the account: the copies' sizes, or
/// nothing for MOVE (it frees what it adds).
pub fn copy_adds(moving: bool, sizes: impl IntoIterator<Item = u64>) -> u64 {
    if moving {
        0
    } else {
        sizes.into_iter().sum()
    }
}

/// `NO [OVERQUOTA]`.
pub fn over_quota() -> MailboxAnswer {
    refuse(Code::OverQuota, "Quota exceeded")
}

/// A refusal with a code.
pub fn refuse(code: Code, text: &str) -> MailboxAnswer {
    MailboxAnswer::No {
        code: Some(code),
        text: text.to_owned(),
    }
}

/// The answer for a mailbox that does not exist: `TRYCREATE` when it is
/// the target of APPEND, COPY or MOVE (the client may CREATE it and try
/// again, RFC 9051 6.3.12), `NONEXISTENT` otherwise.
pub fn missing(target: bool) -> MailboxAnswer {
    let code = if target {
        Code::TryCreate
    } else {
        Code::NonExistent
    };
    refuse(code, "Mailbox doesn't exist")
}

/// COPY or MOVE's refusal before anything is copied, if any: a missing
/// source is `NONEXISTENT`, a missing target `TRYCREATE`, and MOVE onto
/// the same mailbox `CANNOT`.
pub fn copy_refusal(
    source_exists: bool,
    target_exists: bool,
    same: bool,
    moving: bool,
) -> Option<MailboxAnswer> {
    if !source_exists {
        Some(missing(false))
    } else if !target_exists {
        Some(missing(true))
    } else if same && moving {
        Some(refuse(
            Code::Cannot,
            "Source and target are the same mailbox",
        ))
    } else {
        None
    }
}

/// Whether `name` can name a mailbox in every store: INBOX, or a safe
/// name (no escapes, see [`super::session::safe_mailbox_name`]) without
/// `.`, which Maildir++ uses between levels, so that a mailbox can move
/// from one store to another.
pub fn storable_name(name: &str) -> bool {
    name == "INBOX" || (!name.contains('.') && super::session::safe_mailbox_name(name))
}

/// The refusals of CREATE, DELETE and RENAME that do not depend on how a
/// store keeps mailboxes. `exists` tells whether a name is a mailbox.
pub fn manage_refusal(
    request: &super::event::MailboxRequest,
    exists: &dyn Fn(&str) -> bool,
) -> Option<MailboxAnswer> {
    use super::event::MailboxRequest as R;
    match request {
        R::Create { mailbox } if !storable_name(mailbox) => {
            Some(refuse(Code::Cannot, "Invalid mailbox name"))
        }
        R::Create { mailbox } if exists(mailbox) => {
            Some(refuse(Code::AlreadyExists, "Mailbox already exists"))
        }
        R::Delete { mailbox } if mailbox == "INBOX" => {
            Some(refuse(Code::Cannot, "INBOX cannot be deleted"))
        }
        R::Delete { mailbox } if !exists(mailbox) => Some(missing(false)),
        R::Rename { from, to } if !storable_name(from) || !storable_name(to) => {
            Some(refuse(Code::Cannot, "Invalid mailbox name"))
        }
        R::Rename { from, .. } if from == "INBOX" => {
            Some(refuse(Code::Cannot, "Renaming INBOX is not supported"))
        }
        R::Rename { from, .. } if !exists(from) => Some(missing(false)),
        R::Rename { to, .. } if exists(to) => {
            Some(refuse(Code::AlreadyExists, "Target mailbox exists"))
        }
        _ => None,
    }
}

/// The new name of `name` when `from` is renamed to `to`: `from` itself
/// and its children (`from/x` becomes `to/x`) move; others stay (None).
pub fn renamed(name: &str, from: &str, to: &str) -> Option<String> {
    if name == from {
        return Some(to.to_owned());
    }
    let rest = name.strip_prefix(from)?.strip_prefix('/')?;
    Some(format!("{to}/{rest}"))
}

/// Hands out `n` new UIDs from `uid_next` (APPEND, COPY, MOVE, a
/// delivery), in order, and moves `uid_next` past them.
pub fn assign_uids(uid_next: &mut u32, n: usize) -> Vec<u32> {
    let first = (*uid_next).max(1);
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let out: Vec<u32> = (0..n).map_while(|i| first.checked_add(i)).collect();
    *uid_next = first.saturating_add(n);
    out
}

/// One new UID (APPEND, a delivery): [`assign_uids`] for one message.
pub fn next_uid(uid_next: &mut u32) -> u32 {
    let uid = (*uid_next).max(1);
    *uid_next = uid.saturating_add(1);
    uid
}

/// The next mod-sequence after `highest` (RFC 7162: every change gets a
/// larger one than any before it in the mailbox).
pub fn next_modseq(highest: &mut u64) -> u64 {
    *highest = highest.saturating_add(1).max(1);
    *highest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn canonical_order_spelling_and_keywords() {
        let mut kw = v(&["$Work"]);
        let f = canonical_flags(
            &v(&["\\seen", "$Label", "\\Bogus", "$Work", "\\DRAFT", "\\Seen"]),
            &mut kw,
        );
        assert_eq!(f, v(&["\\Draft", "\\Seen", "$Work", "$Label"]));
        assert_eq!(kw, v(&["$Work", "$Label"]));
        let mut full: Vec<String> = (0..MAX_KEYWORDS).map(|i| format!("k{i}")).collect();
        assert_eq!(
            canonical_flags(&v(&["extra", "k3", "\\Flagged"]), &mut full),
            v(&["\\Flagged", "k3"])
        );
        assert_eq!(full.len(), MAX_KEYWORDS);
    }

    #[test]
    fn store_modes() {
        let cur = v(&["\\Seen", "$A"]);
        assert_eq!(
            merge_flags(&cur, StoreMode::Add, &v(&["\\seen", "\\Flagged"])),
            v(&["\\Seen", "$A", "\\Flagged"])
        );
        assert_eq!(
            merge_flags(&cur, StoreMode::Remove, &v(&["\\SEEN"])),
            v(&["$A"])
        );
        assert_eq!(
            merge_flags(&cur, StoreMode::Replace, &v(&["\\Draft"])),
            v(&["\\Draft"])
        );
        let mut kw = v(&["$A"]);
        assert_eq!(
            store_step(&cur, 5, StoreMode::Add, &v(&["\\Seen"]), None, &mut kw),
            StoreStep::Unchanged
        );
        assert_eq!(
            store_step(
                &cur,
                5,
                StoreMode::Add,
                &v(&["\\Flagged"]),
                Some(4),
                &mut kw
            ),
            StoreStep::Modified
        );
        assert_eq!(
            store_step(
                &cur,
                5,
                StoreMode::Add,
                &v(&["\\Flagged"]),
                Some(5),
                &mut kw
            ),
            StoreStep::Changed(v(&["\\Flagged", "\\Seen", "$A"]))
        );
    }

    #[test]
    fn expunge_quota_and_refusals() {
        let a = v(&["\\Deleted"]);
        let b = v(&["\\Seen"]);
        let msgs = [(1, a.as_slice()), (2, b.as_slice()), (3, a.as_slice())];
        assert_eq!(expunge_set(msgs, None), vec![1, 3]);
        assert_eq!(expunge_set(msgs, Some(&[3, 2])), vec![3]);
        assert!(quota_allows(60, 40, Some(100)));
        assert!(!quota_allows(60, 41, Some(100)));
        assert!(quota_allows(u64::MAX, 1, None));
        assert!(quota_full(100, Some(100)) && !quota_full(99, Some(100)));
        assert_eq!(copy_adds(true, [5, 6]), 0);
        assert_eq!(copy_adds(false, [5, 6]), 11);
        let code = |a: Option<MailboxAnswer>| match a {
            Some(MailboxAnswer::No { code, .. }) => code,
            _ => None,
        };
        assert_eq!(
            code(copy_refusal(false, false, false, false)),
            Some(Code::NonExistent)
        );
        assert_eq!(
            code(copy_refusal(true, false, false, false)),
            Some(Code::TryCreate)
        );
        assert_eq!(
            code(copy_refusal(true, true, true, true)),
            Some(Code::Cannot)
        );
        assert_eq!(copy_refusal(true, true, true, false), None);
    }

    #[test]
    fn names_and_management() {
        use crate::imap::event::MailboxRequest as R;
        assert!(storable_name("INBOX") && storable_name("A/B"));
        assert!(!storable_name("a.b") && !storable_name("../x"));
        let exists = |n: &str| n == "INBOX" || n == "Work";
        let code = |r: R| match manage_refusal(&r, &exists) {
            Some(MailboxAnswer::No { code, .. }) => code,
            _ => None,
        };
        assert_eq!(
            code(R::Create {
                mailbox: "Work".into()
            }),
            Some(Code::AlreadyExists)
        );
        assert_eq!(
            code(R::Delete {
                mailbox: "Nope".into()
            }),
            Some(Code::NonExistent)
        );
        assert_eq!(
            code(R::Rename {
                from: "INBOX".into(),
                to: "X".into()
            }),
            Some(Code::Cannot)
        );
        assert_eq!(
            code(R::Rename {
                from: "Work".into(),
                to: "INBOX".into()
            }),
            Some(Code::AlreadyExists)
        );
        assert_eq!(renamed("A/x", "A", "B"), Some("B/x".into()));
        assert_eq!(renamed("AB", "A", "B"), None);
    }

    #[test]
    fn uids_and_modseqs() {
        let mut next = 7;
        assert_eq!(assign_uids(&mut next, 3), vec![7, 8, 9]);
        assert_eq!(next, 10);
        let mut zero = 0;
        assert_eq!(assign_uids(&mut zero, 1), vec![1]);
        assert_eq!(next_uid(&mut next), 10);
        assert_eq!(next, 11);
        let mut h = 4;
        assert_eq!(next_modseq(&mut h), 5);
        assert_eq!(h, 5);
    }

    #[test]
    fn a_delivery_may_overshoot_the_limit_by_a_tenth_only_from_below_it() {
        assert!(delivery_allowed(0, 5_000, None));
        assert!(delivery_allowed(900, 200, Some(1_000)));
        assert!(delivery_allowed(999, 101, Some(1_000)));
        assert!(!delivery_allowed(999, 102, Some(1_000)));
        assert!(!delivery_allowed(1_000, 1, Some(1_000)));
        assert!(delivery_allowed(0, 1_100, Some(1_000)));
        assert!(!delivery_allowed(0, 1_101, Some(1_000)));
        assert!(delivery_ever_fits(1_100, Some(1_000)) && delivery_ever_fits(9, None));
        assert!(!delivery_ever_fits(1_101, Some(1_000)));
        assert_eq!(delivery_room(900, 200, Some(1_000)), DeliveryRoom::Fits);
        assert_eq!(delivery_room(999, 102, Some(1_000)), DeliveryRoom::Full);
        assert_eq!(
            delivery_room(0, 1_101, Some(1_000)),
            DeliveryRoom::NeverFits
        );
    }
}
