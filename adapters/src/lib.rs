//! Backends behind the core's decisions (Maildir, spool, directory); filled in by the daemon work.
