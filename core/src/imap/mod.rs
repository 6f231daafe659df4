//! IMAP (RFC 9051 / RFC 3501): the command codec so far. Framing with
//! literals and limits, and the generic parse into tagged values, on which
//! the session (states, commands, mailbox questions) is to be built.

pub mod framing;
pub mod parse;
