//! `Retry-After` header values: delta-seconds or an HTTP date.
//!
//! Input: the time now (8 bytes, big-endian Unix seconds, kept within the years an HTTP date
//! can name), then the header value (invalid UTF-8 is replaced; a header that is not visible
//! ASCII is ignored before it gets here).

use std::time::{Duration, UNIX_EPOCH};

use entra_identity::internal::parse_retry_after;

/// Parses the header value in `data` and checks a delta-seconds value is read exactly.
pub(crate) fn run(data: &[u8]) {
    let (now, value) = match data {
        [n0, n1, n2, n3, n4, n5, n6, n7, value @ ..] => (
            u64::from_be_bytes([*n0, *n1, *n2, *n3, *n4, *n5, *n6, *n7]) % 253_402_300_800,
            value,
        ),
        value => (1_700_000_000, value),
    };
    let value = String::from_utf8_lossy(value);
    let now = UNIX_EPOCH + Duration::from_secs(now);
    let wait = parse_retry_after(&value, now);
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        let seconds = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(wait, Some(Duration::from_secs(seconds)));
    }
}
