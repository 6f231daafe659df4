//! Numbered body sections and BINARY (RFC 9051 6.4.5, RFC 3516): the
//! bytes of part `1.2`, its MIME header, an embedded message's header or
//! text, and a part's body with its transfer encoding undone, all found in
//! the same bounded MIME tree BODYSTRUCTURE describes.

use super::{parse, part_header, tree, MimeLimits, Node};

/// What of a numbered part to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartSpec {
    /// `BODY[1.2]`: the part's body.
    Body,
    /// `BODY[1.2.MIME]`: the part's MIME header.
    Mime,
    /// `BODY[2.HEADER]`: the header of an embedded message.
    Header,
    /// `BODY[2.TEXT]`: the text of an embedded message.
    Text,
}

/// The content transfer encoding BINARY cannot undo (`NO [UNKNOWN-CTE]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// `BINARY[path]` (RFC 3516): the part's body with its
/// Content-Transfer-Encoding (base64, quoted-printable) undone; the whole
/// message for an empty path; nothing for a part that does not exist.
/// Under the default [`MimeLimits`].
pub fn binary(msg: &[u8], path: &[u32]) -> Result<Vec<u8>, UnknownCte> {
    binary_with(msg, path, MimeLimits::default())
}

/// [`binary`] under `limits`: an opaque part is given as it is.
pub fn binary_with(msg: &[u8], path: &[u32], limits: MimeLimits) -> Result<Vec<u8>, UnknownCte> {
    if path.is_empty() {
        return Ok(msg.to_vec());
    }
    let Some(p) = parse(msg, limits) else {
        return Ok(Vec::new());
    };
    let t = tree(&p, limits);
    let part = match find_node(&t.root, path) {
        None => return Ok(Vec::new()),
        Some(Node::Opaque(a, b)) => return Ok(msg.get(*a..*b).unwrap_or(&[]).to_vec()),
        Some(Node::Leaf(part)) => *part,
        Some(Node::Multi(part, _) | Node::Embedded(part, ..)) => {
            let (a, b) = t.body_range(part, true);
            return Ok(msg.get(a..b).unwrap_or(&[]).to_vec());
        }
    };
    let (a, b) = t.body_range(part, false);
    let raw = msg.get(a..b).unwrap_or(&[]);
    if part.sub_parts().is_some() || part.message().is_some() {
        return Ok(raw.to_vec());
    }
    let cte = part_header(part, "Content-Transfer-Encoding", msg)
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    match cte.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(raw.to_vec()),
        "base64" => Ok(decode_base64(raw)),
        "quoted-printable" => Ok(decode_qp(raw)),
        other => Err(UnknownCte(other.to_owned())),
    }
}

/// Base64 as mail writes it: line breaks and stray bytes skipped.
fn decode_base64(raw: &[u8]) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in raw {
        if c == b'=' {
            break;
        }
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 6.7): `=XX`, soft line breaks, and white
/// space at the end of a line deleted (rule 3).
fn decode_qp(raw: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut trimmed = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let (body, end): (&[u8], &[u8]) = if let Some(b) = line.strip_suffix(b"\r\n") {
            (b, b"\r\n")
        } else if let Some(b) = line.strip_suffix(b"\n") {
            (b, b"\n")
        } else {
            (line, b"")
        };
        let keep = body
            .iter()
            .rposition(|&c| c != b' ' && c != b'\t')
            .map_or(0, |i| i + 1);
        trimmed.extend_from_slice(&body[..keep]);
        trimmed.extend_from_slice(end);
    }
    let raw = trimmed.as_slice();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        match (raw.get(i + 1), raw.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
                out.push((hex(a).unwrap_or(0) * 16 + hex(b).unwrap_or(0)) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The part at `path` (1-based at every level); a non-multipart message
/// has one part, numbered 1, and so has every part that is not a
/// multipart. After the first number, an embedded message stands for its
/// body.
fn find_node<'n, 'a>(root: &'n Node<'a>, path: &[u32]) -> Option<&'n Node<'a>> {
    let mut node = root;
    for (i, n) in path.iter().enumerate() {
        if *n == 0 {
            return None;
        }
        if i > 0 {
            if let Node::Embedded(_, _, inner) = node {
                node = inner;
            }
        }
        match node {
            Node::Multi(_, kids) => node = kids.get(*n as usize - 1)?,
            _ if *n == 1 => {}
            _ => return None,
        }
    }
    Some(node)
}

/// The bytes of numbered part `path` (1-based at every level), under the
/// default [`MimeLimits`].
pub fn part_bytes(msg: &[u8], path: &[u32], spec: PartSpec) -> Option<Vec<u8>> {
    part_bytes_with(msg, path, spec, MimeLimits::default())
}

/// [`part_bytes`] under `limits`. An opaque part has a body and an empty
/// MIME header, and is not a message.
pub fn part_bytes_with(
    msg: &[u8],
    path: &[u32],
    spec: PartSpec,
    limits: MimeLimits,
) -> Option<Vec<u8>> {
    let p = parse(msg, limits)?;
    let t = tree(&p, limits);
    let node = find_node(&t.root, path)?;
    // Offsets count from the outermost message, nested ones included.
    let slice = |a: usize, b: usize| msg.get(a..b).map(<[u8]>::to_vec);
    let (part, inner) = match node {
        Node::Opaque(a, b) => {
            return match spec {
                PartSpec::Body => slice(*a, *b),
                PartSpec::Mime => Some(Vec::new()),
                PartSpec::Header | PartSpec::Text => None,
            };
        }
        Node::Leaf(part) => (*part, None),
        Node::Multi(part, _) => (*part, part.message()),
        Node::Embedded(part, m, _) => (*part, Some(*m)),
    };
    let container = !matches!(node, Node::Leaf(_));
    match spec {
        PartSpec::Body => {
            let (a, b) = t.body_range(part, container);
            slice(a, b)
        }
        PartSpec::Mime => slice(part.offset_header as usize, part.offset_body as usize),
        PartSpec::Header | PartSpec::Text => {
            let r = inner?.raw_message();
            let h = crate::imap::message::header_len(r);
            Some(if spec == PartSpec::Header {
                r.get(..h)?.to_vec()
            } else {
                r.get(h..)?.to_vec()
            })
        }
    }
}
