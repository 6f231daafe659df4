//! The relay policy: the daily cap (the smarthost's plan allows so many
//! messages a day: defer, never fail), and what one attempt's outcomes mean
//! for a queued message: which recipients are done, when to try again, when
//! it has expired, and whom the bounce reports.

use crate::policy::queue::{FailedRecipient, RetryPolicy};
use crate::smtp::client::RcptOutcome;
use crate::smtp::Reply;

/// Seconds in a (UTC) day.
pub const DAY: u64 = 86_400;

/// The daily cap's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapVerdict {
    /// Send now.
    Go,
    /// The day's messages are used up: try again at this time (the next
    /// UTC midnight).
    DeferUntil(u64),
}

/// Decides whether one more message may be relayed at `now` (Unix seconds)
/// when `sent` messages were relayed on UTC day `day`. A `limit` of 0 is
/// no cap.
pub fn daily_cap(limit: u32, day: u64, sent: u32, now: u64) -> CapVerdict {
    let today = now / DAY;
    if limit > 0 && day == today && sent >= limit {
        CapVerdict::DeferUntil((today + 1) * DAY)
    } else {
        CapVerdict::Go
    }
}

/// A queued recipient's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcptState {
    /// Not delivered yet.
    Pending,
    /// Handed to the smarthost.
    Delivered,
    /// Failed for good.
    Failed,
}

/// A queued recipient, as the settlement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRcpt {
    /// The address.
    pub address: String,
    /// Its state.
    pub state: RcptState,
    /// The last reply about it (None before the first attempt).
    pub last_reply: Option<Reply>,
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Recipients the smarthost took in this attempt.
    pub delivered: usize,
    /// When to try the pending recipients again; None when none is left.
    pub next_attempt: Option<u64>,
    /// The message expired in the queue with recipients still pending.
    pub expired: bool,
    /// The recipients the bounce reports (failed now, or expired).
    pub bounce: Vec<FailedRecipient>,
}

/// The reply recorded for a queued address that cannot be parsed.
pub fn bad_queued_address() -> Reply {
    Reply::new(553, "5.1.3", "bad recipient address syntax in the queue")
}

/// The outcome recorded for every recipient when the smarthost could not
/// be reached or spoken to (connect, TLS): a deferral, retried later.
pub fn connection_failed(text: String) -> Reply {
    Reply::new(421, "4.4.1", text)
}

/// The outcome of a queued local copy made durable in its mailbox.
pub fn local_delivered() -> RcptOutcome {
    RcptOutcome::Delivered(Reply::new(250, "2.0.0", "delivered to mailbox"))
}

/// The outcome of a queued local copy that failed again (retried later,
/// bounced at expiry).
pub fn local_deferred(text: String) -> RcptOutcome {
    RcptOutcome::Deferred(Reply::new(
        451,
        "4.3.0",
        format!("mailbox unavailable: {text}"),
    ))
}

/// The outcome of a queued local copy whose mailbox is full (retried
/// later, bounced at expiry as a full mailbox).
pub fn local_mailbox_full(text: String) -> RcptOutcome {
    RcptOutcome::Deferred(Reply::new(452, "4.2.2", format!("mailbox full: {text}")))
}

/// The outcome of a queued local copy larger than its account's quota
/// allows even when empty: bounced now.
pub fn local_too_big(text: String) -> RcptOutcome {
    RcptOutcome::Failed(Reply::new(552, "5.2.2", format!("mailbox full: {text}")))
}

/// The outcome of a queued remote recipient when no smarthost is configured.
pub fn no_smarthost() -> RcptOutcome {
    RcptOutcome::Deferred(Reply::new(451, "4.3.5", "no smarthost is configured"))
}

/// Applies one attempt's outcomes to the recipients: `outcomes` pairs a
/// recipient's index with what the smarthost said; `attempts` counts this
/// attempt; `created` is when the message was queued. Pending recipients
/// left over are retried on `policy`'s schedule, or bounced once the
/// message has expired (with their last reply, its enhanced code kept).
pub fn settle(
    rcpts: &mut [QueuedRcpt],
    outcomes: &[(usize, RcptOutcome)],
    attempts: u32,
    created: u64,
    now: u64,
    policy: &RetryPolicy,
) -> Settlement {
    let mut delivered = 0;
    let mut bounce = Vec::new();
    for (i, o) in outcomes {
        let Some(r) = rcpts.get_mut(*i) else { continue };
        if r.state != RcptState::Pending {
            continue;
        }
        match o {
            RcptOutcome::Delivered(rep) => {
                r.state = RcptState::Delivered;
                r.last_reply = Some(rep.clone());
                delivered += 1;
            }
            RcptOutcome::Failed(rep) => {
                r.state = RcptState::Failed;
                r.last_reply = Some(rep.clone());
                bounce.push(FailedRecipient {
                    address: r.address.clone(),
                    reply: rep.clone(),
                    expired: false,
                });
            }
            RcptOutcome::Deferred(rep) => r.last_reply = Some(rep.clone()),
        }
    }
    let mut next_attempt = None;
    let mut expired = false;
    if rcpts.iter().any(|r| r.state == RcptState::Pending) {
        match policy.next_attempt(attempts, created, now) {
            Some(t) => next_attempt = Some(t),
            None => {
                expired = true;
                for r in rcpts.iter_mut().filter(|r| r.state == RcptState::Pending) {
                    r.state = RcptState::Failed;
                    let reply = r.last_reply.clone().unwrap_or_else(|| {
                        Reply::new(451, "4.4.7", "message expired in the queue")
                    });
                    bounce.push(FailedRecipient {
                        address: r.address.clone(),
                        reply,
                        expired: true,
                    });
                }
            }
        }
    }
    Settlement {
        delivered,
        next_attempt,
        expired,
        bounce,
    }
}

/// How long after a bounce that could not be queued its recipients are
/// tried (and bounced) again.
pub const BOUNCE_RETRY_SECS: u64 = 300;

/// When the bounce reporting `bounce` could not be queued: its recipients
/// go back to pending, so the message stays and they are tried again (and
/// bounced again) at the returned time; the recipients delivered stay
/// delivered, and are never sent twice. `next_attempt` is what
/// [`settle`] chose for the others.
pub fn bounce_not_queued(
    rcpts: &mut [QueuedRcpt],
    bounce: &[FailedRecipient],
    next_attempt: Option<u64>,
    now: u64,
) -> u64 {
    for r in rcpts
        .iter_mut()
        .filter(|r| r.state == RcptState::Failed && bounce.iter().any(|b| b.address == r.address))
    {
        r.state = RcptState::Pending;
    }
    let again = now.saturating_add(BOUNCE_RETRY_SECS);
    next_attempt.map_or(again, |t| t.min(again))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_not_queued_keeps_its_recipients_and_never_the_delivered() {
        let mut rcpts = vec![rcpt("a@x.example"), rcpt("b@x.example")];
        let outcomes = vec![
            (0, RcptOutcome::Delivered(Reply::new(250, "2.0.0", "ok"))),
            (
                1,
                RcptOutcome::Failed(Reply::new(550, "5.1.1", "no such user")),
            ),
        ];
        let s = settle(&mut rcpts, &outcomes, 1, 0, 100, &RetryPolicy::default());
        assert_eq!(s.bounce.len(), 1);
        let t = bounce_not_queued(&mut rcpts, &s.bounce, s.next_attempt, 100);
        assert_eq!(t, 100 + BOUNCE_RETRY_SECS);
        assert_eq!(rcpts[0].state, RcptState::Delivered);
        assert_eq!(rcpts[1].state, RcptState::Pending);
        // Sooner when the others are due sooner.
        assert_eq!(
            bounce_not_queued(&mut rcpts, &s.bounce, Some(150), 100),
            150
        );
    }

    fn rcpt(a: &str) -> QueuedRcpt {
        QueuedRcpt {
            address: a.into(),
            state: RcptState::Pending,
            last_reply: None,
        }
    }

    #[test]
    fn cap_defers_to_next_utc_midnight_and_resets_each_day() {
        let now = 20_000 * DAY + 3600;
        assert_eq!(daily_cap(300, 20_000, 299, now), CapVerdict::Go);
        assert_eq!(
            daily_cap(300, 20_000, 300, now),
            CapVerdict::DeferUntil(20_001 * DAY)
        );
        assert_eq!(daily_cap(300, 19_999, 300, now), CapVerdict::Go);
        assert_eq!(daily_cap(0, 20_000, 10_000, now), CapVerdict::Go);
    }

    #[test]
    fn outcomes_settle_each_recipient_and_schedule_the_rest() {
        let mut r = vec![rcpt("a@x"), rcpt("b@x"), rcpt("c@x")];
        let out = [
            (0, RcptOutcome::Delivered(Reply::new(250, "2.0.0", "ok"))),
            (
                1,
                RcptOutcome::Failed(Reply::new(550, "5.1.1", "no such user")),
            ),
            (2, RcptOutcome::Deferred(Reply::new(451, "4.3.0", "later"))),
        ];
        let s = settle(&mut r, &out, 1, 1000, 1000, &RetryPolicy::default());
        assert_eq!(s.delivered, 1);
        assert_eq!(s.next_attempt, Some(1300));
        assert!(!s.expired);
        assert_eq!(s.bounce.len(), 1);
        assert_eq!(s.bounce[0].address, "b@x");
        assert_eq!(r[2].state, RcptState::Pending);
    }

    #[test]
    fn expiry_bounces_pending_recipients_with_their_enhanced_code() {
        let mut r = vec![rcpt("a@x")];
        let out = [(
            0,
            RcptOutcome::Deferred(Reply::new(452, "4.2.2", "mailbox full")),
        )];
        let policy = RetryPolicy::default();
        let late = 1000 + policy.lifetime.as_secs();
        let s = settle(&mut r, &out, 9, 1000, late, &policy);
        assert!(s.expired);
        assert_eq!(s.next_attempt, None);
        assert_eq!(s.bounce[0].reply, Reply::new(452, "4.2.2", "mailbox full"));
        assert!(s.bounce[0].expired);
        assert_eq!(r[0].state, RcptState::Failed);
    }
}
