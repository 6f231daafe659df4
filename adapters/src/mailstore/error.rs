//! Why the Maildir store could not answer.

use crate::store::StoreError;
use std::io;

/// A failure of the Maildir store; the IMAP client sees `NO [SERVERBUG]`.
#[derive(Debug, thiserror::Error)]
pub enum MailStoreError {
    /// The account's folders could not be found or made.
    #[error("account {0} unavailable")]
    NoAccount(String),
    /// A message file is larger than the store serves.
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file system failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl MailStoreError {
    /// Whether a file was not there (renamed or removed meanwhile).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MailStoreError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl From<MailStoreError> for StoreError {
    fn from(e: MailStoreError) -> Self {
        match e {
            MailStoreError::NoAccount(a) => StoreError::NoAccount(a),
            MailStoreError::Io(source) => StoreError::Io {
                op: "maildir",
                source,
            },
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<MailStoreError> for io::Error {
    fn from(e: MailStoreError) -> Self {
        match e {
            MailStoreError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}
