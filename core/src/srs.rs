//! The Sender Rewriting Scheme as Debian's `postsrsd` 1.10 (libsrs2)
//! writes it, so that bounces of mail forwarded by either still reverse:
//!
//! - `SRS0=HHHH=TT=domain=local@<srs domain>` for an ordinary sender;
//! - `SRS1=HHHH=first-host==HHHH=TT=domain=local@<srs domain>` for a
//!   sender that is already an SRS0 address of another forwarder (the
//!   original SRS0 hash and stamp kept, its host added); an SRS1 sender is
//!   re-hashed with its first host kept.
//!
//! `HHHH` is the first four characters of the base64 of an HMAC-SHA1 over
//! the lower-cased fields, in order (SRS0: stamp, domain, local; SRS1:
//! host, rest); `TT` is the day (Unix time / 86,400, modulo 1,024) in two
//! base32 characters. Decoding accepts any secret of the list (older ones
//! included), a hash in any case, and a stamp no older than 21 days.
//!
//! Pure: the HMAC is computed by a function the runtime passes in, and
//! the day is an argument.

use std::fmt;

/// Characters of the hash (base64 of the HMAC).
pub const HASH_LEN: usize = 4;
/// How many days an SRS address stays valid (libsrs2's `maxage`).
pub const MAX_AGE_DAYS: u16 = 21;
/// The longest local part or domain this module reads or writes.
pub const MAX_INPUT: usize = 512;

const TIME_SLOTS: u16 = 1024;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Computes the HMAC-SHA1 of `data` with secret number `index` (0 is the
/// current secret, the others are older ones accepted when decoding), or
/// `None` when there is no such secret.
pub type Mac<'a> = &'a dyn Fn(usize, &[u8]) -> Option<[u8; 20]>;

/// Why an address could not be rewritten or reversed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not an SRS0/SRS1 address.
    #[error("not an SRS address")]
    NotSrs,
    /// An SRS prefix, but not the fields it needs.
    #[error("malformed SRS address")]
    Malformed,
    /// The hash matches none of the secrets.
    #[error("invalid SRS hash")]
    BadHash,
    /// The time stamp is not two base32 characters.
    #[error("invalid SRS time stamp")]
    BadTimestamp,
    /// The stamp is older than [`MAX_AGE_DAYS`].
    #[error("SRS address expired")]
    Expired,
    /// No secret is configured.
    #[error("no SRS secret")]
    NoSecret,
}

/// An address split in its local part and domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, as written.
    pub local: String,
    /// The domain, as written.
    pub domain: String,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The SRS day of a Unix time (seconds).
pub fn day(unix_secs: u64) -> u16 {
    // The modulo keeps it below 1,024.
    u16::try_from((unix_secs / 86_400) % u64::from(TIME_SLOTS)).unwrap_or(0)
}

/// The two base32 characters of a day.
fn stamp(day: u16) -> [u8; 2] {
    let d = usize::from(day % TIME_SLOTS);
    [BASE32[(d >> 5) & 31], BASE32[d & 31]]
}

/// The day two stamp characters stand for (any case).
fn parse_stamp(s: &str) -> Result<u16, SrsError> {
    let b = s.as_bytes();
    if b.len() != 2 {
        return Err(SrsError::BadTimestamp);
    }
    let mut v: u16 = 0;
    for c in b {
        let up = c.to_ascii_uppercase();
        let i = BASE32
            .iter()
            .position(|&x| x == up)
            .ok_or(SrsError::BadTimestamp)?;
        v = (v << 5) | u16::try_from(i).unwrap_or(0);
    }
    Ok(v)
}

/// Whether a stamp made on `then` is still valid on `today` (both modulo
/// 1,024, so the count wraps as libsrs2's does).
fn fresh(then: u16, today: u16) -> bool {
    let mut now = u32::from(today % TIME_SLOTS);
    let then = u32::from(then);
    while now < then {
        now += u32::from(TIME_SLOTS);
    }
    now <= then + u32::from(MAX_AGE_DAYS)
}

/// The hash of `fields` with secret `index`: the HMAC over the fields
/// lower-cased, its first characters in base64.
fn hash(mac: Mac<'_>, index: usize, fields: &[&str]) -> Option<[u8; HASH_LEN]> {
    let mut data = Vec::with_capacity(fields.iter().map(|f| f.len()).sum());
    for f in fields {
        data.extend(f.bytes().map(|b| b.to_ascii_lowercase()));
    }
    let d = mac(index, &data)?;
    // Base64 of the first three bytes: four characters.
    let n = (u32::from(d[0]) << 16) | (u32::from(d[1]) << 8) | u32::from(d[2]);
    let mut out = [0u8; HASH_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = BASE64[((n >> (18 - 6 * i)) & 63) as usize];
    }
    Some(out)
}

/// Whether `given` is the hash of `fields` under one of the secrets.
fn check_hash(mac: Mac<'_>, given: &str, fields: &[&str]) -> Result<(), SrsError> {
    if given.len() != HASH_LEN {
        return Err(SrsError::BadHash);
    }
    let mut index = 0;
    while let Some(h) = hash(mac, index, fields) {
        if given.as_bytes().eq_ignore_ascii_case(&h) {
            return Ok(());
        }
        index += 1;
    }
    if index == 0 {
        return Err(SrsError::NoSecret);
    }
    Err(SrsError::BadHash)
}

/// `SRS0`/`SRS1` (any case) followed by one of libsrs2's separators.
fn tag(local: &str) -> Option<u8> {
    let b = local.as_bytes();
    if b.len() < 5 || !matches!(b[4], b'=' | b'+' | b'-') {
        return None;
    }
    if !b[..3].eq_ignore_ascii_case(b"SRS") {
        return None;
    }
    match b[3] {
        b'0' => Some(0),
        b'1' => Some(1),
        _ => None,
    }
}

/// Whether a local part is an SRS0 or SRS1 address.
pub fn is_srs(local: &str) -> bool {
    tag(local).is_some()
}

/// Whether the envelope sender of a forwarded copy is rewritten: not the
/// null sender (`<>` stays `<>`), not an address in one of our domains
/// (its SPF already names us).
pub fn rewrites(sender: Option<&Mailbox>, ours: &dyn Fn(&str) -> bool) -> bool {
    sender.is_some_and(|s| !ours(&s.domain.to_ascii_lowercase()))
}

/// Whether `domain` is one whose senders are never rewritten, as
/// postsrsd's `SRS_EXCLUDE_DOMAINS` reads its list: `example.org` is that
/// domain only, `.example.org` is every domain under it (not itself).
/// Case does not matter.
pub fn excluded(domain: &str, patterns: &[String]) -> bool {
    let domain = domain.trim_end_matches('.');
    patterns.iter().any(|p| match p.strip_prefix('.') {
        Some(parent) => domain
            .len()
            .checked_sub(parent.len() + 1)
            .and_then(|at| domain.get(at..))
            .is_some_and(|tail| tail.starts_with('.') && tail[1..].eq_ignore_ascii_case(parent)),
        None => domain.eq_ignore_ascii_case(p),
    })
}

/// Rewrites the sender `local@domain` as an address at `srs_domain`
/// (SRS0, or SRS1 for a sender that is already an SRS address), stamped
/// with `today`.
pub fn forward(
    sender: &Mailbox,
    srs_domain: &str,
    today: u16,
    mac: Mac<'_>,
) -> Result<Mailbox, SrsError> {
    let (local, domain) = (sender.local.as_str(), sender.domain.as_str());
    if local.is_empty()
        || domain.is_empty()
        || local.len() > MAX_INPUT
        || domain.len() > MAX_INPUT
        || domain.contains('=')
    {
        return Err(SrsError::Malformed);
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let rewritten = match tag(local) {
        Some(0) => {
            // Keep the first forwarder's SRS0 fields, add its host.
            let rest = &local[4..];
            let h = hash(mac, 0, &[domain, rest]).ok_or(SrsError::NoSecret)?;
            format!("SRS1={}={domain}={rest}", text(&h))
        }
        Some(_) => {
            // SRS1=hash=host=rest: new hash, the first host kept.
            let after = &local[5..];
            let (_, host_rest) = after.split_once('=').ok_or(SrsError::Malformed)?;
            let (host, rest) = host_rest.split_once('=').ok_or(SrsError::Malformed)?;
            let h = hash(mac, 0, &[host, rest]).ok_or(SrsError::NoSecret)?;
            format!("SRS1={}={host}={rest}", text(&h))
        }
        None => {
            let t = stamp(today);
            let ts = text(&t);
            let h = hash(mac, 0, &[&ts, domain, local]).ok_or(SrsError::NoSecret)?;
            format!("SRS0={}={ts}={domain}={local}", text(&h))
        }
    };
    Ok(Mailbox {
        local: rewritten,
        domain: srs_domain.to_owned(),
    })
}

/// Reverses an SRS local part (the domain it was received at does not
/// matter): the original sender of an SRS0 address, or the first
/// forwarder's SRS0 address of an SRS1 one. Checks the hash against every
/// secret and, for SRS0, that the stamp is at most 21 days old on `today`.
pub fn reverse(local: &str, today: u16, mac: Mac<'_>) -> Result<Mailbox, SrsError> {
    if local.len() > MAX_INPUT {
        return Err(SrsError::Malformed);
    }
    let kind = tag(local).ok_or(SrsError::NotSrs)?;
    let after = &local[5..];
    if kind == 0 {
        let mut parts = after.splitn(4, '=');
        let (Some(h), Some(ts), Some(host), Some(user)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if host.is_empty() || user.is_empty() {
            return Err(SrsError::Malformed);
        }
        check_hash(mac, h, &[ts, host, user])?;
        let then = parse_stamp(ts)?;
        if !fresh(then, today) {
            return Err(SrsError::Expired);
        }
        Ok(Mailbox {
            local: user.to_owned(),
            domain: host.to_owned(),
        })
    } else {
        let mut parts = after.splitn(3, '=');
        let (Some(h), Some(host), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SrsError::Malformed);
        };
        if host.is_empty() || rest.is_empty() {
            return Err(SrsError::Malformed);
        }
        check_hash(mac, h, &[host, rest])?;
        Ok(Mailbox {
            local: format!("SRS0{rest}"),
            domain: host.to_owned(),
        })
    }
}

/// Reverses an SRS address all the way to the original sender: an SRS1
/// address leads to the first forwarder's SRS0 address, which is reversed
/// again only when `ours` says that host is ours too (else it is where the
/// bounce goes).
pub fn reverse_fully(
    local: &str,
    today: u16,
    mac: Mac<'_>,
    ours: &dyn Fn(&str) -> bool,
) -> Result<Mailbox, SrsError> {
    let mut m = reverse(local, today, mac)?;
    for _ in 0..2 {
        if !(is_srs(&m.local) && ours(&m.domain)) {
            break;
        }
        m = reverse(&m.local, today, mac)?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stand-in MAC for the core's tests (the runtime's is HMAC-SHA1;
    /// the conformance tests check it against postsrsd): a keyed FNV-style
    /// mix spread over 20 bytes, good enough to make tampering visible.
    fn fake_mac(secrets: &'static [&'static str]) -> impl Fn(usize, &[u8]) -> Option<[u8; 20]> {
        move |i, data| {
            let key = secrets.get(i)?;
            let mut out = [0u8; 20];
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for (n, o) in out.iter_mut().enumerate() {
                for b in key.bytes().chain(data.iter().copied()).chain([n as u8]) {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                *o = (h >> 24) as u8;
            }
            Some(out)
        }
    }

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: domain.into(),
        }
    }

    #[test]
    fn only_outside_senders_are_rewritten() {
        let ours = |d: &str| d == "example.com";
        assert!(!rewrites(None, &ours));
        assert!(!rewrites(Some(&mb("a", "Example.COM")), &ours));
        assert!(rewrites(Some(&mb("a", "other.test")), &ours));
    }

    #[test]
    fn stamps_are_two_base32_characters_and_wrap() {
        assert_eq!(stamp(0), *b"AA");
        assert_eq!(stamp(1023), *b"77");
        assert_eq!(parse_stamp("7a"), Ok(992));
        assert_eq!(parse_stamp("A"), Err(SrsError::BadTimestamp));
        assert_eq!(parse_stamp("A1"), Err(SrsError::BadTimestamp));
        assert!(fresh(1020, 5), "wraps around 1,024");
        assert!(fresh(10, 31));
        assert!(!fresh(10, 32));
        assert_eq!(day(86_400 * 1025 + 5), 1);
    }

    #[test]
    fn srs0_round_trip_and_expiry() {
        let mac = fake_mac(&["secret"]);
        let f = forward(&mb("User+Tag", "Example.ORG"), "fwd.test", 100, &mac).unwrap();
        assert_eq!(f.domain, "fwd.test");
        assert!(f.local.starts_with("SRS0="));
        assert!(f.local.ends_with("=DE=Example.ORG=User+Tag"), "{}", f.local);
        assert_eq!(
            reverse(&f.local, 100, &mac),
            Ok(mb("User+Tag", "Example.ORG"))
        );
        assert_eq!(
            reverse(&f.local.to_ascii_lowercase(), 121, &mac),
            Ok(mb("user+tag", "example.org"))
        );
        assert_eq!(reverse(&f.local, 122, &mac), Err(SrsError::Expired));
    }

    #[test]
    fn srs1_from_srs0_and_back() {
        let mac_a = fake_mac(&["other"]);
        let mac = fake_mac(&["secret"]);
        let first = forward(&mb("bob", "orig.test"), "first.test", 7, &mac_a).unwrap();
        let second = forward(&first, "fwd.test", 7, &mac).unwrap();
        assert!(second.local.starts_with("SRS1="), "{}", second.local);
        assert!(second.local.contains("=first.test==")); // rest keeps its separator
        let back = reverse(&second.local, 7, &mac).unwrap();
        assert_eq!(back, first);
        // A third forwarder re-hashes, keeping the first host.
        let third = forward(&second, "third.test", 8, &mac_a).unwrap();
        assert_eq!(reverse(&third.local, 8, &mac_a).unwrap(), first);
    }

    #[test]
    fn older_secrets_decode_and_unknown_ones_do_not() {
        let old = fake_mac(&["old"]);
        let both = fake_mac(&["new", "old"]);
        let none = |_: usize, _: &[u8]| None;
        let f = forward(&mb("a", "b.test"), "fwd.test", 3, &old).unwrap();
        assert!(reverse(&f.local, 3, &both).is_ok());
        assert_eq!(
            reverse(&f.local, 3, &fake_mac(&["new"])),
            Err(SrsError::BadHash)
        );
        assert_eq!(reverse(&f.local, 3, &none), Err(SrsError::NoSecret));
        assert_eq!(
            forward(&mb("a", "b.test"), "fwd.test", 3, &none),
            Err(SrsError::NoSecret)
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let mac = fake_mac(&["s"]);
        for bad in [
            "SRS0=",
            "SRS0=abcd",
            "SRS0=abcd=AA=host",
            "SRS0=abcd=AA==u",
            "SRS1=x",
        ] {
            assert_eq!(reverse(bad, 0, &mac), Err(SrsError::Malformed), "{bad}");
        }
        assert_eq!(reverse("plain", 0, &mac), Err(SrsError::NotSrs));
        assert_eq!(reverse("SRS2=a=b=c=d", 0, &mac), Err(SrsError::NotSrs));
        let long = format!("SRS0={}", "a".repeat(MAX_INPUT));
        assert_eq!(reverse(&long, 0, &mac), Err(SrsError::Malformed));
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(
            local in "[A-Za-z0-9._+'=!#-]{1,40}",
            domain in "[a-z0-9-]{1,20}\\.[a-zA-Z]{2,6}",
            today in 0u16..1024,
            age in 0u16..=MAX_AGE_DAYS,
        ) {
            let mac = fake_mac(&["k1", "k0"]);
            let f = forward(&mb(&local, &domain), "srs.test", today, &mac).unwrap();
            let later = (today + age) % 1024;
            let back = reverse(&f.local, later, &mac).unwrap();
            if is_srs(&local) {
                // An SRS sender comes back as it was (SRS0) or as its
                // first forwarder's address (SRS1): never as garbage.
                prop_assert!(is_srs(&back.local));
            } else {
                prop_assert_eq!(back, mb(&local, &domain));
            }
        }

        #[test]
        fn any_tampered_character_is_refused(
            local in "[a-z0-9._+]{1,30}",
            domain in "[a-z0-9]{1,20}\\.test",
            pos in any::<prop::sample::Index>(),
            repl in "[A-Za-z0-9=+/._-]",
        ) {
            let mac = fake_mac(&["k"]);
            let f = forward(&mb(&local, &domain), "srs.test", 500, &mac).unwrap();
            let mut bytes = f.local.clone().into_bytes();
            let i = pos.index(bytes.len());
            let r = repl.as_bytes()[0];
            prop_assume!(!bytes[i].eq_ignore_ascii_case(&r));
            bytes[i] = r;
            let tampered = String::from_utf8(bytes).unwrap();
            // libsrs2 takes any of `=+-` after the tag: the same address.
            prop_assume!(!(i == 4 && matches!(r, b'+' | b'-')));
            let back = reverse(&tampered, 500, &mac);
            prop_assert!(back.is_err(), "{tampered} -> {back:?}");
        }
    }

    #[test]
    fn excluded_domains_read_as_postsrsd_reads_them() {
        let list = vec!["partner.test".to_owned(), ".corp.test".to_owned()];
        assert!(excluded("partner.test", &list));
        assert!(excluded("Partner.TEST.", &list));
        assert!(!excluded("mx.partner.test", &list));
        assert!(excluded("eu.corp.test", &list));
        assert!(excluded("a.b.Corp.Test", &list));
        assert!(!excluded("corp.test", &list));
        assert!(!excluded("evilcorp.test", &list));
        assert!(!excluded("other.test", &list));
        assert!(!excluded("partner.test", &[]));
    }
}
