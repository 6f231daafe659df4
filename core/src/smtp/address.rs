//! Mail addresses and paths (RFC 5321 section 4.1.2), and the routing
//! tricks that must be undone before a relay decision.
//!
//! A path as sent (`<@relay:user%other.example@example.com.>`) is reduced
//! to its *final* address: source routes dropped, the quoted local part
//! unquoted, the trailing dot of the domain removed, and routing inside the
//! local part (`user%host`, `user@host` quoted, `host!user`) followed to the
//! domain it really names. Postern decides local delivery or relay only on
//! that final domain, so `"victim@remote"@local` cannot relay.

use std::fmt;

/// The longest path accepted, brackets excluded (RFC 5321 4.5.3.1.3: 256).
pub const MAX_PATH: usize = 256;
/// The longest local part (RFC 5321 4.5.3.1.1: 64).
pub const MAX_LOCAL: usize = 64;
/// The longest domain (RFC 5321 4.5.3.1.2: 255).
pub const MAX_DOMAIN: usize = 255;
/// How many routing steps inside a local part are followed.
const MAX_REROUTES: usize = 8;

/// A mailbox address: local part and domain (lower-cased, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part, unquoted (it may contain any printable character).
    pub local: String,
    /// The domain, lower-cased, without a trailing dot; an address literal
    /// keeps its brackets (`[192.0.2.1]`).
    pub domain: String,
}

impl Address {
    /// Builds an address from parts that are already normalised.
    pub fn new(local: impl Into<String>, domain: impl Into<String>) -> Self {
        Self {
            local: local.into(),
            domain: domain.into(),
        }
    }

    /// Whether any part is not ASCII (needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quotes(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        write!(f, "@{}", self.domain)
    }
}

fn needs_quotes(local: &str) -> bool {
    local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| !c.is_ascii() || is_atext(c) || c == '.')
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A parsed path: the final address and what the client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Where the mail really goes (see the module documentation).
    pub address: Address,
    /// Whether routing in the local part or a source route was followed.
    pub rerouted: bool,
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not `<...>` or bad characters.
    #[error("bad address syntax")]
    Syntax,
    /// Longer than the RFC limits.
    #[error("address too long")]
    TooLong,
    /// No domain part.
    #[error("address has no domain")]
    NoDomain,
    /// `<>` where a mailbox is needed.
    #[error("null address")]
    Null,
}

/// Splits `MAIL FROM:` / `RCPT TO:` arguments into the path (inside the
/// angle brackets, or the first word when a sloppy client left them out)
/// and the rest (the ESMTP parameters).
pub fn split_path_arg(arg: &str) -> Result<(&str, &str), PathError> {
    let arg = arg.trim_start_matches(' ');
    if let Some(inner) = arg.strip_prefix('<') {
        // Find the closing bracket outside a quoted string.
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    let rest = &inner[i + 1..];
                    if !rest.is_empty() && !rest.starts_with(' ') {
                        return Err(PathError::Syntax);
                    }
                    return Ok((&inner[..i], rest.trim_start_matches(' ')));
                }
                _ => {}
            }
        }
        Err(PathError::Syntax)
    } else {
        let (path, rest) = arg.split_once(' ').unwrap_or((arg, ""));
        if path.is_empty() {
            return Err(PathError::Syntax);
        }
        Ok((path, rest.trim_start_matches(' ')))
    }
}

/// Parses the inside of `<...>`. An empty string is the null path; the
/// caller decides whether that is allowed.
pub fn parse_path(inner: &str) -> Result<Option<Path>, PathError> {
    if inner.is_empty() {
        return Ok(None);
    }
    if inner.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let mut rerouted = false;
    // Source route: "@a,@b:mailbox" (RFC 5321 4.1.2: accept and ignore).
    let mailbox = if inner.starts_with('@') {
        let Some((route, rest)) = inner.split_once(':') else {
            return Err(PathError::Syntax);
        };
        for hop in route.split(',') {
            let Some(d) = hop.strip_prefix('@') else {
                return Err(PathError::Syntax);
            };
            parse_domain(d)?;
        }
        rerouted = true;
        rest
    } else {
        inner
    };
    let (local, domain) = split_mailbox(mailbox)?;
    let mut address = Address {
        local,
        domain: parse_domain(domain)?,
    };
    if address.local.len() > MAX_LOCAL * 4 {
        return Err(PathError::TooLong);
    }
    for _ in 0..MAX_REROUTES {
        match reroute(&address.local)? {
            Some(next) => {
                address = next;
                rerouted = true;
            }
            None => break,
        }
    }
    if reroute(&address.local)?.is_some() {
        return Err(PathError::Syntax);
    }
    Ok(Some(Path { address, rerouted }))
}

/// Splits `local@domain`, unquoting a quoted local part.
fn split_mailbox(s: &str) -> Result<(String, &str), PathError> {
    if let Some(q) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) if e != '\r' && e != '\n' => local.push(e),
                    _ => return Err(PathError::Syntax),
                },
                '"' => {
                    let rest = &q[i + 1..];
                    let Some(domain) = rest.strip_prefix('@') else {
                        return Err(if rest.is_empty() {
                            PathError::NoDomain
                        } else {
                            PathError::Syntax
                        });
                    };
                    return Ok((local, domain));
                }
                c if c.is_control() => return Err(PathError::Syntax),
                c => local.push(c),
            }
        }
        return Err(PathError::Syntax);
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(PathError::NoDomain);
    };
    // An unquoted local part is a dot-atom: exactly what needs no quotes.
    if needs_quotes(local) || local.chars().any(char::is_control) {
        return Err(PathError::Syntax);
    }
    Ok((local.to_owned(), domain))
}

/// Lower-cases a domain, drops one trailing dot, checks its characters.
fn parse_domain(d: &str) -> Result<String, PathError> {
    if d.is_empty() {
        return Err(PathError::NoDomain);
    }
    if d.len() > MAX_DOMAIN {
        return Err(PathError::TooLong);
    }
    if let Some(lit) = d.strip_prefix('[') {
        let Some(body) = lit.strip_suffix(']') else {
            return Err(PathError::Syntax);
        };
        let ok = if let Some(v6) = body
            .strip_prefix("IPv6:")
            .or_else(|| body.strip_prefix("ipv6:"))
        {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            body.parse::<std::net::Ipv4Addr>().is_ok()
        };
        return if ok {
            Ok(d.to_ascii_lowercase())
        } else {
            Err(PathError::Syntax)
        };
    }
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() {
        return Err(PathError::Syntax);
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return Err(PathError::Syntax);
        }
    }
    Ok(d.to_lowercase())
}

/// Follows one routing step inside a local part, if there is one:
/// `user@host` (from a quoted local part), `user%host`, `host!user`.
fn reroute(local: &str) -> Result<Option<Address>, PathError> {
    if let Some((l, d)) = local.rsplit_once('@') {
        return routed(l, d).map(Some);
    }
    if let Some((l, d)) = local.rsplit_once('%') {
        return routed(l, d).map(Some);
    }
    if let Some((d, l)) = local.split_once('!') {
        return routed(l, d).map(Some);
    }
    Ok(None)
}

fn routed(local: &str, domain: &str) -> Result<Address, PathError> {
    if local.is_empty() {
        return Err(PathError::Syntax);
    }
    Ok(Address {
        local: local.to_owned(),
        domain: parse_domain(domain)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_of(p: &str) -> String {
        parse_path(p).unwrap().unwrap().address.to_string()
    }

    #[test]
    fn plain_and_trailing_dot() {
        assert_eq!(final_of("Alice@Example.COM."), "Alice@example.com");
    }

    #[test]
    fn routing_is_followed() {
        assert_eq!(
            final_of("user%evil.example@example.com"),
            "user@evil.example"
        );
        assert_eq!(
            final_of("\"user@evil.example\"@example.com"),
            "user@evil.example"
        );
        assert_eq!(
            final_of("evil.example!user@example.com"),
            "user@evil.example"
        );
        assert_eq!(
            final_of("@relay.example,@b.example:user@example.com"),
            "user@example.com"
        );
        assert_eq!(
            final_of("\"john doe\"@example.com"),
            "\"john doe\"@example.com"
        );
    }

    #[test]
    fn bad_paths() {
        assert_eq!(parse_path("user"), Err(PathError::NoDomain));
        assert_eq!(parse_path("a..b@example.com"), Err(PathError::Syntax));
        assert_eq!(parse_path("user@-bad.example"), Err(PathError::Syntax));
        assert_eq!(parse_path("user@[300.1.1.1]"), Err(PathError::Syntax));
        assert!(parse_path("user@[IPv6:::1]").is_ok());
        assert!(parse_path("user%@example.com").is_err());
        assert_eq!(parse_path(""), Ok(None));
    }

    #[test]
    fn split_args() {
        assert_eq!(split_path_arg("<a@b> SIZE=10"), Ok(("a@b", "SIZE=10")));
        assert_eq!(split_path_arg(" <\"x>y\"@b>"), Ok(("\"x>y\"@b", "")));
        assert_eq!(
            split_path_arg("a@b BODY=8BITMIME"),
            Ok(("a@b", "BODY=8BITMIME"))
        );
        assert_eq!(split_path_arg("<a@b>x"), Err(PathError::Syntax));
    }
}
