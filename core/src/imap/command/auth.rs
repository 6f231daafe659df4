//! LOGIN, AUTHENTICATE (RFC 4616 PLAIN with SASL-IR) and ENABLE.

use super::{ArgError, Args};
use crate::imap::parse::Value;
use crate::Secret;
use std::borrow::Cow;

/// LOGIN's arguments.
#[derive(Debug)]
pub struct Login {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret<String>,
}

/// AUTHENTICATE's arguments.
#[derive(Debug)]
pub struct Authenticate {
    /// The SASL mechanism, upper-cased (empty when not an atom).
    pub mechanism: String,
    /// SASL-IR's initial response (RFC 4959).
    pub initial_response: Option<String>,
}

pub(super) fn login(args: &[Value<'_>]) -> Args<Login> {
    match (
        args.first().and_then(Value::as_astring),
        args.get(1).and_then(Value::as_astring),
        args.len(),
    ) {
        (Some(u), Some(p), 2) => Ok(Login {
            username: u.into_owned(),
            password: Secret::new(p.into_owned()),
        }),
        _ => Err(ArgError::bad("Syntax: LOGIN user password")),
    }
}

pub(super) fn authenticate(args: &[Value<'_>]) -> Authenticate {
    let mechanism = match args.first() {
        Some(Value::Atom(m)) => m.to_ascii_uppercase(),
        _ => String::new(),
    };
    let initial_response = args.get(1).and_then(Value::as_astring).map(Cow::into_owned);
    Authenticate {
        mechanism,
        initial_response,
    }
}

pub(super) fn enable(args: &[Value<'_>]) -> Args<Vec<String>> {
    if args.is_empty() {
        return Err(ArgError::bad("Syntax: ENABLE capability..."));
    }
    Ok(args
        .iter()
        .filter_map(|a| a.as_astring().map(Cow::into_owned))
        .collect())
}
