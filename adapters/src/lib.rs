//! Postern's backends: the real implementations behind the core's
//! questions. Synchronous code; the runtime decides which thread runs it.

pub mod directory;
pub mod maildir;
pub mod mailstore;
pub mod memstore;
pub mod pg;
pub mod sasl_passwd;
pub mod spamstore;
pub mod spool;
pub mod store;
pub mod syncpool;
pub mod tls_client;
