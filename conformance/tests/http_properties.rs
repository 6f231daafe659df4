//! Property tests for the monitoring listener's HTTP reader: arbitrary
//! bytes never panic, every verdict respects the limits, and the verdict on
//! a buffer does not depend on how its bytes arrived.

use postern_core::http::{read_request, response, Bad, HttpLimits, Parse, Status};
use proptest::prelude::*;

fn limits() -> impl Strategy<Value = HttpLimits> {
    (16usize..512, 0usize..16, 32usize..2048).prop_map(|(max_line, max_headers, max_head)| {
        HttpLimits {
            max_line,
            max_headers,
            max_head,
        }
    })
}

/// Bytes that look a little like a request head, so deep paths are hit.
fn headish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET ".to_vec()),
        Just(b"HEAD ".to_vec()),
        Just(b"POST ".to_vec()),
        Just(b"/metrics".to_vec()),
        Just(b" HTTP/1.1".to_vec()),
        Just(b" HTTP/2.0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"Host: x".to_vec()),
        Just(b": ".to_vec()),
        Just(b" ".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        "[a-zA-Z0-9-]{0,300}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

fn check(buf: &[u8], l: &HttpLimits) -> Result<(), TestCaseError> {
    match read_request(buf, l) {
        Parse::Complete(r) => {
            prop_assert!(
                r.head_len <= l.max_head,
                "head {} > {}",
                r.head_len,
                l.max_head
            );
            prop_assert!(r.head_len <= buf.len());
            prop_assert!(r.path.starts_with('/'));
            // Each line of the head within the line limit.
            for line in buf[..r.head_len].split_inclusive(|&b| b == b'\n') {
                prop_assert!(line.len() <= l.max_line);
            }
            let fields = buf[..r.head_len]
                .split_inclusive(|&b| b == b'\n')
                .filter(|x| *x != b"\r\n" && *x != b"\n")
                .count()
                .saturating_sub(1);
            prop_assert!(fields <= l.max_headers, "{fields} fields");
        }
        // Incomplete only while a longer buffer could still fit.
        Parse::Incomplete => prop_assert!(buf.len() < l.max_head, "{} bytes", buf.len()),
        Parse::Bad(b) => {
            let code = b.status().code();
            prop_assert!([400, 405, 414, 431, 505].contains(&code));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Arbitrary bytes: no panic, and the limits hold for every verdict.
    #[test]
    fn arbitrary_bytes_stay_within_the_limits(buf in prop::collection::vec(any::<u8>(), 0..4096), l in limits()) {
        check(&buf, &l)?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Request-like bytes, the same; and every prefix of a buffer that is
    /// refused is refused the same way or still incomplete (a verdict
    /// never depends on where the reads were cut).
    #[test]
    fn request_like_bytes_stay_within_the_limits(buf in headish(), l in limits()) {
        check(&buf, &l)?;
        let whole = read_request(&buf, &l);
        for cut in 0..buf.len() {
            let part = read_request(&buf[..cut], &l);
            match (&part, &whole) {
                (Parse::Incomplete, _) => {}
                (p, w) => prop_assert_eq!(p, w, "cut at {}", cut),
            }
            if !matches!(part, Parse::Incomplete) {
                break;
            }
        }
    }
}

#[test]
fn the_default_limits_refuse_200_kib_of_headers_early() {
    let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while head.len() < 200 * 1024 {
        head.extend_from_slice(
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let l = HttpLimits::default();
    assert_eq!(read_request(&head, &l), Parse::Bad(Bad::TooManyHeaders));
    let big_lines: Vec<u8> = [
        b"GET / HTTP/1.1\r\n".to_vec(),
        format!("X: {}\r\n", "a".repeat(4000))
            .into_bytes()
            .repeat(8),
    ]
    .concat();
    assert_eq!(read_request(&big_lines, &l), Parse::Bad(Bad::HeadTooLarge));
    let r = response(Status::HeaderFieldsTooLarge, "text/plain", b"", false);
    assert!(r.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}
