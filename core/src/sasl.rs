//! SASL PLAIN (RFC 4616) and LOGIN decoding, shared by SMTP AUTH and IMAP
//! AUTHENTICATE.

use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The longest decoded SASL response accepted.
pub const MAX_RESPONSE: usize = 4096;

/// Credentials a client presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity (the login name).
    pub username: String,
    /// The password.
    pub password: Secret<String>,
}

/// Why a SASL response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not base64.
    #[error("cannot decode base64")]
    Base64,
    /// Not the mechanism's format (or not UTF-8).
    #[error("malformed response")]
    Malformed,
    /// The client asked to act as another user (authzid), not supported.
    #[error("authorization identity differs from authentication identity")]
    AuthzidMismatch,
    /// The client cancelled with `*`.
    #[error("cancelled by the client")]
    Cancelled,
}

/// Decodes one base64 response line (`=` is the empty response).
pub fn decode_base64(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(' ');
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    if line.len() > MAX_RESPONSE * 4 / 3 + 4 {
        return Err(SaslError::Malformed);
    }
    STANDARD.decode(line).map_err(|_| SaslError::Base64)
}

/// Decodes a PLAIN response: `authzid NUL authcid NUL password`.
pub fn decode_plain(line: &str) -> Result<Credentials, SaslError> {
    let raw = decode_base64(line)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| SaslError::Malformed)?;
    let username = std::str::from_utf8(authcid).map_err(|_| SaslError::Malformed)?;
    let password = std::str::from_utf8(password).map_err(|_| SaslError::Malformed)?;
    if username.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(Credentials {
        username: username.to_owned(),
        password: Secret::new(password.to_owned()),
    })
}

/// Decodes one LOGIN step (a base64 user name or password).
pub fn decode_login_step(line: &str) -> Result<String, SaslError> {
    let raw = decode_base64(line)?;
    String::from_utf8(raw).map_err(|_| SaslError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = decode_plain("AGFsaWNlAHNlY3JldA==").unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.password.expose(), "secret");
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain("!!"), Err(SaslError::Base64));
        // "bob\0alice\0pw": acting as another user is refused.
        assert_eq!(
            decode_plain("Ym9iAGFsaWNlAHB3"),
            Err(SaslError::AuthzidMismatch)
        );
    }
}
