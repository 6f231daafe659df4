//! IMAP (RFC 9051 / RFC 3501). The layers, each using only those above it:
//! framing with literals and limits ([`framing`]); the generic parse into
//! tagged values ([`parse`]); typed commands ([`command`]) with sequence
//! sets ([`set`]), FETCH items ([`fetch`]) and SEARCH keys ([`search`],
//! compared on decoded, folded text: [`searchtext`]; THREAD's
//! algorithms: [`thread`]);
//! a message's bytes ([`message`]) and MIME structure ([`mime`]); the
//! response writer ([`response`]); and the session ([`session`]) with its
//! questions to the mailbox store ([`event`]).

pub mod command;
pub mod event;
pub mod fetch;
pub mod framing;
pub mod limits;
pub mod message;
pub mod mime;
pub mod parse;
pub mod response;
pub mod rules;
pub mod search;
pub mod searchtext;
pub mod session;
pub mod set;
pub mod thread;
pub mod utf7;
pub mod vanished;
