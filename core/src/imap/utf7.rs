//! Modified UTF-7 (RFC 3501 5.1.3), the form of mailbox names in IMAP4rev1
//! and on disk (as Dovecot keeps Maildir++ folder names). An IMAP4rev2
//! client speaks UTF-8 (RFC 9051 5.1); the session converts at the edge.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;

/// UTF-8 to modified UTF-7: printable ASCII stays (`&` becomes `&-`),
/// anything else goes as `&` + base64 of UTF-16BE (`,` for `/`) + `-`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&STANDARD_NO_PAD.encode(bytes).replace('/', ","));
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Modified UTF-7 to UTF-8; `None` when it is not well formed.
pub fn decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find('-')?;
        let b64 = &after[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = STANDARD_NO_PAD.decode(b64.replace(',', "/")).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Whether `s` is modified UTF-7 as a server may create it (RFC 3501
/// 5.1.3): printable ASCII only, every `&` run well formed and needed (no
/// `&AGE-` for a plain "a", no two runs side by side, no stray bits):
/// exactly what [`encode`] makes of its decoded form.
pub fn is_canonical(s: &str) -> bool {
    decode(s).is_some_and(|d| encode(&d) == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        // RFC 3501 5.1.3's example, and Dovecot's German Drafts.
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        for s in ["Entwürfe", "Tom & Jerry", "INBOX", "😀 mail", "a&b/ü"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
        assert_eq!(decode("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(decode("bad&AP"), None);
        for bad in [
            "&AAA",
            "x&y",
            "&AGE-",
            "Gr\u{fc}\u{df}e",
            "&AOQ-&APw-",
            "&APw",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
        for good in ["Entw&APw-rfe", "Tom &- Jerry", "INBOX", "a/b"] {
            assert!(is_canonical(good), "{good}");
        }
    }
}
