//! A message's raw bytes as RFC 5322 lays them out: where the header
//! ends and its fields. Both FETCH sections ([`super::fetch`]) and the MIME
//! structure ([`super::mime`]) build on this; it depends on neither.

/// Where the header ends (after its blank line).
pub fn header_len(msg: &[u8]) -> usize {
    match memchr::memmem::find(msg, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => msg.len(),
    }
}

/// The header's fields, each with its continuation lines and CRLF.
pub fn header_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = memchr::memchr(b'\n', &header[i..]).map_or(header.len(), |p| i + p + 1);
        let next = header.get(end).copied();
        if next != Some(b' ') && next != Some(b'\t') {
            if end > start && &header[start..end] != b"\r\n" {
                fields.push(&header[start..end]);
            }
            start = end;
        }
        i = end;
    }
    fields
}

/// The unfolded value of the first header field `name`.
pub fn header_value(msg: &[u8], name: &str) -> Option<String> {
    let h = header_len(msg);
    header_fields(&msg[..h]).into_iter().find_map(|f| {
        let (n, v) = f.split_at(f.iter().position(|&b| b == b':')?);
        (String::from_utf8_lossy(n).trim().eq_ignore_ascii_case(name)).then(|| {
            String::from_utf8_lossy(&v[1..])
                .replace("\r\n", "")
                .trim()
                .to_owned()
        })
    })
}
