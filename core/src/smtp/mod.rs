//! SMTP: the server session and its parts.

pub mod address;
pub mod client;
pub mod command;
pub mod config;
pub mod data;
pub mod event;
pub mod received;
pub mod replies;
pub mod reply;
pub mod session;

pub use address::{Address, Path, PathError};
pub use config::{
    ListenerConfig, Postscreen, PostscreenAction, Role, SmtpConfig, SmtpLimits, TlsMode,
};
pub use data::BareNewline;
pub use event::{
    AuthAnswer, AuthRequest, BodyType, ConnectAnswer, Envelope, Event, MailAnswer, MailRequest,
    Message, Notice, RcptAnswer, RcptRequest, Recipient, Reject, SmtpTimer, StoreAnswer, TlsInfo,
};
pub use reply::Reply;
pub use session::{Output, SmtpSession, Stats};
