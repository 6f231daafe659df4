//! The Postern daemon on the smol runtime: sockets, TLS, timers, blocking
//! work, signals and configuration around the sans-IO core. No protocol
//! logic lives here.

pub mod check;
pub mod cli;
pub mod clock;
pub mod commit;
pub mod config;
pub mod conn;
pub mod deliver;
pub mod devdefault;
pub mod dkim;
pub mod dms;
pub mod http;
pub mod imap;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod msgauth;
pub mod pgstore;
pub mod probe;
pub mod relay;
pub mod server;
pub mod smarthost;
pub mod smtp;
pub mod spam;
pub mod srs;
pub mod tls;
