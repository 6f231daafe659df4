//! The spam filter's hooks, kept in one file: [`screen`] scores a message
//! at end of DATA (MX listeners only, never authenticated submissions)
//! and gives each local copy its headers and folder, or refuses it;
//! [`before_request`] and [`after_request`] wrap the IMAP store requests
//! that teach a user's classifier (moves into and out of Junk, `$Junk` /
//! `$NotJunk`). The decisions are `postern_core::policy::spam`'s, the
//! scoring `postern_core::spam`'s, the files `postern_adapters::spamstore`'s.

use crate::server::Server;
use postern_adapters::directory::Resolution;
use postern_core::imap::event::{MailboxAnswer, MailboxRequest};
use postern_core::policy::spam::{
    learn_request, refuse_message, spam_action, spam_headers, SpamAction, SpamSettings,
};
use postern_core::smtp::received::scoring_prefix;
use postern_core::smtp::{Message, Role};
use postern_core::spam::bayes::Class;
use postern_core::spam::{analyze, report, Analysis, AuthInput, Report, MAX_SCAN};
use std::collections::HashMap;
use std::sync::Arc;

/// Messages at most this long (with our trace lines) are scored on the
/// executor thread when they can be: about 2 ms of work at most.
const INLINE_SCAN: usize = 64 * 1024;

/// Messages learned from one IMAP request, at most (the rest are moved
/// but not learned).
const MAX_LEARN_PER_REQUEST: usize = 500;

/// The spam verdict for one message's local copies.
#[derive(Debug, Default)]
pub struct Screened {
    /// Per mailbox (`user@domain`, lower-case): header lines to add, and
    /// whether the copy goes to Junk.
    copies: HashMap<String, (Vec<u8>, bool)>,
    /// Every copy would be refused: answer `554 5.7.1`.
    pub refuse: bool,
    /// The message was scored: the `X-Spam` fields it arrived with are
    /// removed from the local copies before ours are added.
    pub scored: bool,
}

impl Screened {
    /// The header lines and the Junk choice for one mailbox's copy.
    pub fn for_mailbox(&self, mailbox: &str) -> (&[u8], bool) {
        self.copies
            .get(&mailbox.to_lowercase())
            .map_or((&[][..], false), |(h, j)| (h.as_slice(), *j))
    }
}

/// Scores `msg` (queue id `id`, whose `Received:` it is scored with) for
/// each local mailbox it goes to. `auth` is what the
/// message-authentication checks found (left at its default until they
/// run at end of DATA).
pub async fn screen(
    srv: &Arc<Server>,
    role: Role,
    msg: &Message,
    id: &str,
    auth: AuthInput,
) -> Screened {
    let settings = &srv.config.spam;
    if !settings.enabled || role != Role::Mx || msg.envelope.authenticated.is_some() {
        return Screened::default();
    }
    let mut users = Vec::new();
    for rcpt in msg.envelope.rcpt_to.iter().filter(|r| r.local) {
        if let Resolution::Local { mailboxes, .. } = srv.directory.resolve(&rcpt.address) {
            users.extend(mailboxes.iter().map(|m| m.to_string().to_lowercase()));
        }
    }
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Screened::default();
    }
    // The message as its copies will be stored (our trace lines first),
    // and only the scored prefix of it (one byte more tells it was cut).
    let date = crate::clock::date_now();
    let mut data = scoring_prefix(&msg.envelope, &srv.config.hostname, id, &date).into_bytes();
    let rest = (MAX_SCAN + 1).saturating_sub(data.len());
    data.extend_from_slice(&msg.data[..msg.data.len().min(rest)]);
    // A message of usual size is analysed on the executor, and scored
    // there too when every recipient's classifier is in memory and free:
    // a few hundred microseconds, less than the two thread hand-offs of
    // the blocking pool. A big message, or a classifier to read or wait
    // for, goes there (with the analysis when it is done).
    let analysed = (data.len() <= INLINE_SCAN).then(|| analyze(&data));
    if let Some(a) = &analysed {
        let inline: Option<Vec<(String, Report)>> = users
            .iter()
            .map(|u| {
                srv.spam
                    .try_with(u, |c| report(a, &auth, Some(c)))
                    .map(|r| (u.clone(), r))
            })
            .collect();
        if let Some(reports) = inline {
            return verdicts(&srv.config.spam, reports);
        }
    }
    let srv2 = srv.clone();
    smol::unblock(move || {
        let a = analysed.unwrap_or_else(|| analyze(&data));
        let reports = users
            .into_iter()
            .map(|u| {
                let r = srv2.spam.with(&u, |c| report(&a, &auth, Some(c)));
                (u, r)
            })
            .collect();
        verdicts(&srv2.config.spam, reports)
    })
    .await
}

/// The copies' headers and folders, and whether to refuse, from each
/// recipient's report (logged).
fn verdicts(s: &SpamSettings, reports: Vec<(String, Report)>) -> Screened {
    let mut out = Screened {
        scored: true,
        ..Screened::default()
    };
    let mut actions = Vec::with_capacity(reports.len());
    for (user, r) in reports {
        let action = spam_action(&r, s);
        let rules: Vec<&str> = r.rules.iter().map(|(n, _)| *n).collect();
        tracing::info!(
            user = %user, score = r.score, action = ?action,
            "spam score {:.2} for {user}: {action:?} [{}]",
            r.score,
            rules.join(",")
        );
        actions.push(action);
        let headers = spam_headers(&r, action, s);
        out.copies
            .insert(user, (headers, action != SpamAction::Inbox));
    }
    out.refuse = refuse_message(&actions);
    out
}

/// Messages read before a training request runs (a MOVE removes them).
#[derive(Debug)]
pub struct Pending {
    class: Class,
    messages: Vec<(u32, Analysis)>,
}

/// Reads and analyses the messages a request will teach, before the
/// store runs it. None when the request teaches nothing.
pub async fn before_request(
    srv: &Arc<Server>,
    user: &str,
    request: &MailboxRequest,
) -> Option<Pending> {
    if !srv.config.spam.learn {
        return None;
    }
    let mut l = learn_request(request, &srv.config.auth.junk_folder)?;
    l.uids.truncate(MAX_LEARN_PER_REQUEST);
    let store = srv.mailstore.clone();
    let user = user.to_owned();
    let messages = smol::unblock(move || {
        let req = MailboxRequest::Bodies {
            mailbox: l.mailbox,
            uids: l.uids,
            header_only: false,
        };
        match store.answer(&user, req) {
            MailboxAnswer::Bodies(b) => b
                .into_iter()
                .map(|(uid, data)| (uid, analyze(&data)))
                .collect(),
            _ => Vec::new(),
        }
    })
    .await;
    Some(Pending {
        class: l.class,
        messages,
    })
}

/// Trains `user`'s classifier on the messages the request really moved,
/// copied or flagged (from the store's answer).
pub async fn after_request(
    srv: &Arc<Server>,
    user: &str,
    pending: Option<Pending>,
    answer: &MailboxAnswer,
) {
    let Some(p) = pending else {
        return;
    };
    let done: Option<Vec<u32>> = match answer {
        MailboxAnswer::Uids { from, .. } => Some(from.clone()),
        MailboxAnswer::Flags { changed, .. } => Some(changed.iter().map(|s| s.uid).collect()),
        MailboxAnswer::Ok => None,
        _ => return,
    };
    let srv2 = srv.clone();
    let user = user.to_owned();
    smol::unblock(move || {
        // The whole request is learned under one lock and stored once.
        let messages: Vec<(u64, &[u64])> = p
            .messages
            .iter()
            .filter(|(uid, _)| done.as_ref().is_none_or(|d| d.contains(uid)))
            .map(|(_, a)| (a.key, a.tokens.as_slice()))
            .collect();
        let n = match srv2.spam.learn_all(&user, &messages, p.class) {
            Ok(learned) => learned.len(),
            Err(e) => {
                tracing::warn!(user = %user, "cannot learn {} message(s): {e}", messages.len());
                0
            }
        };
        let (spams, hams) = srv2.spam.with(&user, |c| c.counts());
        tracing::info!(
            user = %user,
            "spam filter learned {n} message(s) as {:?}; now {spams} spam, {hams} ham",
            p.class
        );
    })
    .await;
}
