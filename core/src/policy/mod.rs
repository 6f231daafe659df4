//! The decisions, as pure functions and small state machines over inputs
//! the runtime gathers (directory answers, counters, the time). The runtime
//! executes a verdict; the protocol sessions turn it into a reply from their
//! catalogues (`smtp::replies`, the IMAP response writer). Nothing here does
//! IO or reads a clock.
//!
//! - [`auth`]: how long to hold back a failed login (penalties per
//!   address and account, across connections).
//! - [`admission`]: may a connection from this real client address go on
//!   (global and per-IP caps per service, connection rate)?
//! - [`sender`]: may this (authenticated) client use this MAIL FROM?
//! - [`recipient`]: where does this RCPT TO go, or why is it refused?
//! - [`delivery`]: what becomes of an accepted message (the headers each
//!   local copy gets, which recipients are queued, the answer once the
//!   copies are durable). Message authentication and spam scores join here.
//! - [`msgauth`]: what the SPF, DKIM, DMARC and ARC results of an inbound
//!   message mean for it (accept, deliver to Junk, or refuse), and the
//!   `Authentication-Results` headers that claim to be ours.
//! - [`spam`]: what a spam score means for a copy (INBOX, Junk, refuse),
//!   the X-Spam headers, and which IMAP requests train the classifier.
//! - [`queue`]: the retry schedule and the bounce (DSN) a failure earns.
//! - [`relay`]: the daily relay cap, and what one relay attempt's outcomes
//!   mean for the queued message (done, retry when, bounce whom).

pub mod admission;
pub mod auth;
pub mod delivery;
pub mod msgauth;
pub mod queue;
pub mod recipient;
pub mod relay;
pub mod sender;
pub mod spam;
