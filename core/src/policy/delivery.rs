//! The delivery verdict: what becomes of a message the session accepted,
//! and the answer once its copies were tried: acknowledged when every copy
//! is durable (in a mailbox, or in the queue for retry), else a temporary
//! failure. The headers each copy gets are `smtp::received`'s. The
//! message-authentication results and the spam score become inputs here
//! (deliver to INBOX or Junk, or refuse).

/// Why a message is refused at the end of DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageRefusal {
    /// It could not be made durable now; the client should retry
    /// (`452 4.3.1`). No copy was acknowledged.
    TempFail,
    /// Every copy that failed found its mailbox full (`452 4.2.2`); the
    /// client may retry once the owner makes room. No copy was
    /// acknowledged.
    MailboxFull,
    /// Every copy that failed is larger than its account's quota allows
    /// even when empty (`552 5.2.2`): no retry can deliver it.
    TooBigForMailbox,
    /// The spam verdict refuses it (`554 5.7.1`).
    Spam,
    /// The From domain's DMARC policy is `reject` and the message failed
    /// DMARC (`550 5.7.1`, [`crate::policy::msgauth`]).
    DmarcReject,
}

/// What the executed deliveries came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Local copies made durable.
    pub stored: usize,
    /// Local copies that failed and are in the durable queue for retry.
    pub kept: usize,
    /// Local copies that failed and are nowhere.
    pub failed: usize,
    /// Of those, the copies whose mailbox had no room under its quota.
    pub full: usize,
    /// Of those, the copies that no room under the quota could hold.
    pub too_big: usize,
    /// The queue entries (remote recipients, forwarded copies) were
    /// queued, or there were none.
    pub queued: bool,
}

/// Whether the local copies that failed should go into the durable queue
/// for retry: yes once anything of the message is durable (a copy, or a
/// queue entry: the remote recipients', the forwarded copies'), so the
/// client gets its 250 and retries nothing (a retry would duplicate
/// what is durable).
pub fn keep_failed_for_retry(stored: usize, failed: usize, entry_queued: bool) -> bool {
    failed > 0 && (stored > 0 || entry_queued)
}

/// The answer to the client once the deliveries were tried: acknowledged
/// when every copy is durable, in a mailbox or in the queue; otherwise a
/// temporary failure, so that the sender keeps the message and retries.
pub fn store_verdict(o: Outcome) -> Result<(), MessageRefusal> {
    if o.failed == 0 && o.queued {
        Ok(())
    } else if o.queued && o.too_big > 0 && o.too_big == o.failed {
        Err(MessageRefusal::TooBigForMailbox)
    } else if o.queued && o.full > 0 && o.full == o.failed {
        Err(MessageRefusal::MailboxFull)
    } else {
        Err(MessageRefusal::TempFail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_only_when_every_copy_is_durable() {
        let o = |stored, kept, failed, queued| Outcome {
            stored,
            kept,
            failed,
            full: 0,
            too_big: 0,
            queued,
        };
        assert_eq!(store_verdict(o(2, 0, 0, true)), Ok(()));
        assert_eq!(store_verdict(o(1, 1, 0, true)), Ok(()));
        assert_eq!(
            store_verdict(o(1, 0, 1, true)),
            Err(MessageRefusal::TempFail)
        );
        assert_eq!(
            store_verdict(o(1, 0, 0, false)),
            Err(MessageRefusal::TempFail)
        );
    }

    #[test]
    fn a_full_mailbox_is_named_only_when_it_is_every_failure() {
        let o = |failed, full, queued| Outcome {
            failed,
            full,
            queued,
            ..Outcome::default()
        };
        assert_eq!(
            store_verdict(o(1, 1, true)),
            Err(MessageRefusal::MailboxFull)
        );
        assert_eq!(store_verdict(o(2, 1, true)), Err(MessageRefusal::TempFail));
        assert_eq!(store_verdict(o(1, 1, false)), Err(MessageRefusal::TempFail));
        assert_eq!(store_verdict(o(0, 0, true)), Ok(()));
        let big = |failed, full, too_big| Outcome {
            failed,
            full,
            too_big,
            queued: true,
            ..Outcome::default()
        };
        assert_eq!(
            store_verdict(big(1, 1, 1)),
            Err(MessageRefusal::TooBigForMailbox)
        );
        assert_eq!(
            store_verdict(big(2, 2, 1)),
            Err(MessageRefusal::MailboxFull)
        );
    }

    #[test]
    fn failed_copies_are_kept_only_beside_something_durable() {
        assert!(keep_failed_for_retry(1, 1, false));
        assert!(keep_failed_for_retry(0, 2, true));
        assert!(!keep_failed_for_retry(0, 2, false));
        assert!(!keep_failed_for_retry(3, 0, true));
    }
}
