//! Postern's protocol core.
//!
//! Pure state machines and pure functions: no sockets, no files, no clock,
//! no randomness, no threads, no async runtime. Bytes, time and answers
//! come in through `handle_*` and `answer_*` methods; bytes, actions and
//! questions go out through `poll_output`. See `DESIGN.md`.

pub mod crc32c;
pub mod datetime;
pub mod dkim;
pub mod front;
pub mod http;
pub mod imap;
pub mod mtasts;
pub mod net;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod sasl;
pub mod secret;
pub mod smtp;
pub mod spam;
pub mod srs;
pub mod timer;
pub mod x509;

pub use net::Networks;
pub use secret::Secret;
