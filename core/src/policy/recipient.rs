//! The recipient policy: where an RCPT TO goes, or why it is refused. The
//! runtime gathers the facts (the directory's resolution, the quota); the
//! verdict is decided here, and the relay rule once: a remote recipient
//! only from an authenticated client.

/// Where the directory says an address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// One of our domains, with at least one mailbox or forward.
    Local {
        /// Some of its targets are outside addresses (an alias forwarding out).
        forwards: bool,
    },
    /// One of our domains, but no such user.
    Unknown,
    /// Not one of our domains.
    Remote,
    /// The lookup failed for now.
    TempFail,
    /// An SRS address at our SRS domain that does not reverse (forged,
    /// malformed or expired).
    BadSrs,
}

/// The facts about one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcptFacts {
    /// Where the address leads.
    pub destination: Destination,
    /// A mailbox it leads to is over its quota.
    pub over_quota: bool,
    /// The client has authenticated.
    pub authenticated: bool,
    /// A smarthost is configured for outbound mail.
    pub relay_configured: bool,
}

/// Why a recipient is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcptRefusal {
    /// A remote address from an unauthenticated client.
    RelayDenied,
    /// No such user in our domain.
    UnknownUser,
    /// The lookup failed; try later.
    TempFail,
    /// A mailbox is over its quota.
    MailboxFull,
    /// The address forwards outside, but no smarthost is configured.
    ForwardingUnavailable,
    /// A forged, malformed or expired SRS address.
    BadSrs,
    /// An authenticated client sent to a remote address, but no smarthost
    /// is configured.
    RelayNotConfigured,
}

/// The verdict on one RCPT TO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Deliver into local mailboxes.
    Local,
    /// Queue for the relay.
    Remote,
    /// Refuse.
    Refuse(RcptRefusal),
}

/// Decides one recipient.
pub fn rcpt_verdict(f: &RcptFacts) -> RcptVerdict {
    match f.destination {
        Destination::TempFail => RcptVerdict::Refuse(RcptRefusal::TempFail),
        Destination::Unknown => RcptVerdict::Refuse(RcptRefusal::UnknownUser),
        Destination::BadSrs => RcptVerdict::Refuse(RcptRefusal::BadSrs),
        Destination::Local { forwards: true } if !f.relay_configured => {
            RcptVerdict::Refuse(RcptRefusal::ForwardingUnavailable)
        }
        Destination::Local { .. } if f.over_quota => RcptVerdict::Refuse(RcptRefusal::MailboxFull),
        Destination::Local { .. } => RcptVerdict::Local,
        Destination::Remote if !f.authenticated => RcptVerdict::Refuse(RcptRefusal::RelayDenied),
        Destination::Remote if !f.relay_configured => {
            RcptVerdict::Refuse(RcptRefusal::RelayNotConfigured)
        }
        Destination::Remote => RcptVerdict::Remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(destination: Destination) -> RcptFacts {
        RcptFacts {
            destination,
            over_quota: false,
            authenticated: false,
            relay_configured: true,
        }
    }

    #[test]
    fn remote_only_when_authenticated_and_a_relay_exists() {
        let mut f = facts(Destination::Remote);
        assert_eq!(
            rcpt_verdict(&f),
            RcptVerdict::Refuse(RcptRefusal::RelayDenied)
        );
        f.authenticated = true;
        assert_eq!(rcpt_verdict(&f), RcptVerdict::Remote);
        f.relay_configured = false;
        assert_eq!(
            rcpt_verdict(&f),
            RcptVerdict::Refuse(RcptRefusal::RelayNotConfigured)
        );
    }

    #[test]
    fn local_unless_full_forwarding_or_unknown() {
        let mut f = facts(Destination::Local { forwards: false });
        assert_eq!(rcpt_verdict(&f), RcptVerdict::Local);
        f.over_quota = true;
        assert_eq!(
            rcpt_verdict(&f),
            RcptVerdict::Refuse(RcptRefusal::MailboxFull)
        );
        let mut f = facts(Destination::Local { forwards: true });
        assert_eq!(rcpt_verdict(&f), RcptVerdict::Local);
        f.relay_configured = false;
        assert_eq!(
            rcpt_verdict(&f),
            RcptVerdict::Refuse(RcptRefusal::ForwardingUnavailable)
        );
        assert_eq!(
            rcpt_verdict(&facts(Destination::BadSrs)),
            RcptVerdict::Refuse(RcptRefusal::BadSrs)
        );
        assert_eq!(
            rcpt_verdict(&facts(Destination::Unknown)),
            RcptVerdict::Refuse(RcptRefusal::UnknownUser)
        );
        assert_eq!(
            rcpt_verdict(&facts(Destination::TempFail)),
            RcptVerdict::Refuse(RcptRefusal::TempFail)
        );
    }
}
