//! A message's parsed summary (ENVELOPE, BODY, BODYSTRUCTURE and the SORT
//! keys) as the body's row keeps it, so that a replica answers those
//! fetches without reading the body from the object store. The image:
//! a version byte, then each text as a 4-byte little-endian length and
//! its UTF-8 bytes (envelope, body, bodystructure, sort from, to, cc,
//! subject), then the sort date (a flag byte, 8 bytes little-endian).
//! Anything that does not decode exactly is ignored (the body is read).

use postern_core::imap::event::{SortKeys, Summary};

const VERSION: u8 = 1;
/// The biggest image kept; a bigger summary is computed from the body.
pub(super) const MAX_IMAGE: usize = 256 * 1024;

/// The image of `s`, or `None` when it would pass [`MAX_IMAGE`].
pub(super) fn encode(s: &Summary) -> Option<Vec<u8>> {
    let texts = texts(s);
    let len = 1 + texts.iter().map(|t| 4 + t.len()).sum::<usize>() + 9;
    if len > MAX_IMAGE {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.push(VERSION);
    for t in texts {
        out.extend_from_slice(&u32::try_from(t.len()).ok()?.to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    match s.sort.date {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(&d.to_le_bytes());
        }
        None => out.extend_from_slice(&[0; 9]),
    }
    Some(out)
}

fn texts(s: &Summary) -> [&str; 7] {
    [
        &s.envelope,
        &s.body,
        &s.bodystructure,
        &s.sort.from,
        &s.sort.to,
        &s.sort.cc,
        &s.sort.subject,
    ]
}

/// The summary of an image [`encode`] wrote; `None` for anything else.
pub(super) fn decode(b: &[u8]) -> Option<Summary> {
    if b.len() > MAX_IMAGE || b.first() != Some(&VERSION) {
        return None;
    }
    let mut at = 1;
    let mut text = || -> Option<String> {
        let n = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let t = std::str::from_utf8(b.get(at + 4..at.checked_add(4 + n)?)?).ok()?;
        at += 4 + n;
        Some(t.to_owned())
    };
    let (envelope, body, bodystructure) = (text()?, text()?, text()?);
    let (from, to, cc, subject) = (text()?, text()?, text()?, text()?);
    let rest = b.get(at..)?;
    let date = match rest {
        [0, 0, 0, 0, 0, 0, 0, 0, 0] => None,
        [1, d @ ..] if d.len() == 8 => Some(i64::from_le_bytes(d.try_into().ok()?)),
        _ => return None,
    };
    Some(Summary {
        envelope,
        body,
        bodystructure,
        sort: SortKeys {
            date,
            from,
            to,
            cc,
            subject,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_gives_back_its_summary_and_nothing_else_decodes() {
        let msg = b"From: A <a@example.org>\r\nTo: b@example.com\r\nSubject: Re: hi\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n";
        let s = postern_core::imap::mime::summary_with(msg, Default::default());
        let img = encode(&s).expect("small");
        assert_eq!(decode(&img), Some(s.clone()));
        let undated = Summary {
            sort: SortKeys {
                date: None,
                ..s.sort.clone()
            },
            ..s.clone()
        };
        assert_eq!(decode(&encode(&undated).expect("small")), Some(undated));
        // Cut anywhere, one byte more, another version: refused.
        for n in 0..img.len() {
            assert_eq!(decode(&img[..n]), None, "cut at {n}");
        }
        let mut longer = img.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut other = img.clone();
        other[0] = 2;
        assert_eq!(decode(&other), None);
        let huge = Summary {
            bodystructure: "x".repeat(MAX_IMAGE),
            ..s
        };
        assert_eq!(encode(&huge), None);
    }
}
