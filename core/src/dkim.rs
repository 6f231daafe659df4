//! What an outbound DKIM signature covers, decided from the message's
//! header: the header fields to sign (the usual set, only those present,
//! From listed once more so that a From added later breaks the
//! signature) and the signing domain (the From header's). The
//! cryptography is the runtime's (mail-auth).

/// The header fields signed when present, in the order `h=` lists them.
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
];

/// The most header bytes looked at (a header section longer than this is
/// not signed).
pub const MAX_HEADER: usize = 1 << 20;

/// Why a message is not signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    /// No From header.
    #[error("no From header")]
    NoFrom,
    /// More than one From header (RFC 5322 allows one).
    #[error("more than one From header")]
    SeveralFrom,
    /// A From header without exactly one address with a domain.
    #[error("the From header has no single address with a domain")]
    BadFrom,
    /// The header section is larger than [`MAX_HEADER`].
    #[error("header section too large")]
    TooLarge,
}

/// The header section: the bytes before the first empty line (or all).
fn header_section(message: &[u8]) -> Result<&[u8], AuthorError> {
    let end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    if end > MAX_HEADER {
        return Err(AuthorError::TooLarge);
    }
    Ok(&message[..end])
}

/// The names of the header fields, in order (continuation lines skipped).
fn field_names(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !matches!(l[0], b' ' | b'\t' | b'\r'))
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            Some(trim(&l[..colon]))
        })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

/// The `h=` list for a message: each of [`SIGNED_HEADERS`] that is
/// present, and `From` once more (over-signing).
pub fn headers_to_sign(message: &[u8]) -> Result<Vec<&'static str>, AuthorError> {
    let header = header_section(message)?;
    let mut present = [false; SIGNED_HEADERS.len()];
    for name in field_names(header) {
        if let Some(i) = SIGNED_HEADERS
            .iter()
            .position(|h| h.as_bytes().eq_ignore_ascii_case(name))
        {
            present[i] = true;
        }
    }
    if !present[0] {
        return Err(AuthorError::NoFrom);
    }
    let mut h: Vec<&'static str> = SIGNED_HEADERS
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(n, _)| *n)
        .collect();
    h.push("From");
    Ok(h)
}

/// The domain of the message's author (the one From header's single
/// address), lower-cased: the domain that signs.
pub fn author_domain(message: &[u8]) -> Result<String, AuthorError> {
    let header = header_section(message)?;
    let froms = field_names(header)
        .filter(|n| n.eq_ignore_ascii_case(b"From"))
        .count();
    match froms {
        0 => return Err(AuthorError::NoFrom),
        1 => {}
        _ => return Err(AuthorError::SeveralFrom),
    }
    let parsed = mail_parser::MessageParser::new().parse_headers(header);
    let from = parsed
        .as_ref()
        .and_then(|m| m.from())
        .ok_or(AuthorError::BadFrom)?;
    let mut addrs = from.iter();
    let (Some(a), None) = (addrs.next(), addrs.next()) else {
        return Err(AuthorError::BadFrom);
    };
    let address = a.address().ok_or(AuthorError::BadFrom)?;
    let (_, domain) = address.rsplit_once('@').ok_or(AuthorError::BadFrom)?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Err(AuthorError::BadFrom);
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\nFROM: \"A, B\" <a@Example.COM>\r\nTo: b@c.test,\r\n d@e.test\r\nSubject: hi\r\nX-Other: 1\r\nContent-Type: text/plain\r\n\r\nFrom: body@not.header\r\n";

    #[test]
    fn signs_the_present_headers_and_from_twice() {
        assert_eq!(
            headers_to_sign(MSG).unwrap(),
            ["From", "To", "Subject", "Content-Type", "From"]
        );
        assert_eq!(
            headers_to_sign(b"To: a@b\r\n\r\nbody"),
            Err(AuthorError::NoFrom)
        );
    }

    #[test]
    fn the_author_domain_is_the_single_from_address() {
        assert_eq!(author_domain(MSG).unwrap(), "example.com");
        assert_eq!(
            author_domain(b"From: a@b.test\r\nFrom: c@d.test\r\n\r\n"),
            Err(AuthorError::SeveralFrom)
        );
        assert_eq!(
            author_domain(b"From: a@b.test, c@d.test\r\n\r\n"),
            Err(AuthorError::BadFrom)
        );
        assert_eq!(
            author_domain(b"Subject: x\r\n\r\nFrom: a@b.test\r\n"),
            Err(AuthorError::NoFrom)
        );
        assert_eq!(
            author_domain(b"From: nobody\r\n\r\n"),
            Err(AuthorError::BadFrom)
        );
        let mut big = b"X: ".to_vec();
        big.resize(MAX_HEADER + 10, b'a');
        assert_eq!(author_domain(&big), Err(AuthorError::TooLarge));
    }
}
