//! The one fact about a certificate that monitoring needs: when it
//! expires. A few lines of DER walking (RFC 5280 section 4.1) instead of a
//! dependency; anything unexpected gives `None`.

/// One DER element at the start of `der`: (tag, contents, the rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// The `notAfter` of a DER certificate, as seconds since 1970 (UTC).
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = element(rest)?;
    if tag == VERSION {
        rest = r;
    }
    // serialNumber, signature, issuer, then validity.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, after) = element(validity)?;
    let (tag, time, _) = element(after)?;
    parse_time(tag, time)
}

fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |a, &b| a * 10 + i64::from(b - b'0')))
    };
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 13 => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a civil date (the inverse of
/// [`crate::datetime::civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if body.len() < 128 {
            v.push(body.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    fn cert(after: Vec<u8>, with_version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1, 2, 3]));
        tbs.extend(tlv(0x30, &tlv(0x06, &[1, 2, 3])));
        tbs.extend(tlv(0x30, &[0u8; 140]));
        let mut validity = tlv(UTC_TIME, b"260101000000Z");
        validity.extend(after);
        tbs.extend(tlv(0x30, &validity));
        tbs.extend(tlv(0x30, &[]));
        let mut c = tlv(0x30, &tbs);
        c.extend(tlv(0x30, &[]));
        tlv(0x30, &c)
    }

    #[test]
    fn utc_and_generalized_times() {
        assert_eq!(
            not_after(&cert(tlv(UTC_TIME, b"261125063806Z"), true)),
            Some(1_795_588_686)
        );
        assert_eq!(
            not_after(&cert(tlv(GENERALIZED_TIME, b"20000229000000Z"), false)),
            Some(951_782_400)
        );
        assert_eq!(
            not_after(&cert(tlv(GENERALIZED_TIME, b"99991231235959Z"), true)),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn junk_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            not_after(&cert(tlv(UTC_TIME, b"261325063806Z"), true)),
            None
        );
        let c = cert(tlv(UTC_TIME, b"261125063806Z"), true);
        for i in 0..c.len() {
            let _ = not_after(&c[..i]);
        }
    }
}
