//! The sender policy: which MAIL FROM an authenticated submission client may
//! use. (Message authentication of MX senders joins the delivery verdict.)

use crate::smtp::{Address, Role};

/// Why a sender is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailRefusal {
    /// The authenticated user does not own the address (docker-mailserver's
    /// `SPOOF_PROTECTION`: a user sends as themselves or their aliases).
    NotOwned {
        /// The authenticated user.
        user: String,
    },
    /// The client started more transactions in the rate window than
    /// allowed (Postfix `smtpd_client_message_rate_limit`).
    MessageRate {
        /// The real client address.
        ip: std::net::IpAddr,
    },
}

/// The verdict on one MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailVerdict {
    /// Go on.
    Accept,
    /// Refuse, for this reason.
    Refuse(MailRefusal),
}

/// Decides a MAIL FROM: on the submission service, an authenticated user
/// may send only from addresses they own (`owned`, as the directory says).
/// The null sender and unauthenticated (MX) clients are not judged here.
pub fn mail_verdict(
    role: Role,
    authenticated: Option<&str>,
    from: Option<&Address>,
    owned: bool,
) -> MailVerdict {
    match (role, authenticated, from) {
        (Role::Submission, Some(user), Some(_)) if !owned => {
            MailVerdict::Refuse(MailRefusal::NotOwned {
                user: user.to_owned(),
            })
        }
        _ => MailVerdict::Accept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address {
            local: "boss".into(),
            domain: "example.com".into(),
        }
    }

    #[test]
    fn submission_refuses_a_sender_the_user_does_not_own() {
        assert_eq!(
            mail_verdict(
                Role::Submission,
                Some("eve@example.com"),
                Some(&addr()),
                false
            ),
            MailVerdict::Refuse(MailRefusal::NotOwned {
                user: "eve@example.com".into()
            })
        );
        assert_eq!(
            mail_verdict(
                Role::Submission,
                Some("boss@example.com"),
                Some(&addr()),
                true
            ),
            MailVerdict::Accept
        );
    }

    #[test]
    fn mx_and_null_sender_are_not_judged_here() {
        assert_eq!(
            mail_verdict(Role::Mx, None, Some(&addr()), false),
            MailVerdict::Accept
        );
        assert_eq!(
            mail_verdict(Role::Submission, Some("eve@example.com"), None, false),
            MailVerdict::Accept
        );
    }
}
