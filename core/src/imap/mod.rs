//! IMAP (RFC 9051 / RFC 3501): framing with literals and limits, the
//! generic parse into tagged values, sequence sets, FETCH items and SEARCH
//! keys, and the session's questions to the mailbox store.

pub mod event;
pub mod fetch;
pub mod framing;
pub mod limits;
pub mod mime;
pub mod parse;
pub mod rules;
pub mod session;
pub mod set;
pub mod utf7;
