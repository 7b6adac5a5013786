//! A line as an SQS message: its body, and on a FIFO queue its deduplication id.

use crate::stream::call::fnv1a;
use std::borrow::Cow;

/// The message body: the line without its newline, as `text`.
pub fn body(data: &[u8]) -> String {
    text(data.strip_suffix(b"\n").unwrap_or(data)).into_owned()
}

/// Bytes as text SQS takes (tab, newline, carriage return, U+0020 to U+D7FF, U+E000 to U+FFFD,
/// U+10000 and up): invalid UTF-8 and anything else become U+FFFD. Record lines are JSON
/// (valid, control characters escaped): only a RAWSET payload can change here.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    let s = String::from_utf8_lossy(data);
    if s.chars().all(allowed) {
        return s;
    }
    Cow::Owned(
        s.chars()
            .map(|c| if allowed(c) { c } else { '\u{fffd}' })
            .collect(),
    )
}

fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// The same for every send of one line, different for every line (and every run), so a resend
/// is dropped by the queue within its deduplication window while two equal lines are both
/// delivered: a hash of the body, the run, the line's number. At most 128 characters.
pub fn deduplication_id(body: &str, run: u64, seq: u64) -> String {
    format!("{:016x}-{run:016x}-{seq:x}", fnv1a(body.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_text_sqs_takes() {
        assert_eq!(body(b"{\"a\":1}\n"), "{\"a\":1}");
        assert_eq!(body(b"x\ty\r\nz"), "x\ty\r\nz");
        assert_eq!(body(&[b'a', 0xff, b'b', 0x01, b'\n']), "a\u{fffd}b\u{fffd}");
        assert_eq!(body("é€😀".as_bytes()), "é€😀");
    }

    #[test]
    fn deduplication_ids_follow_the_line_not_only_its_body() {
        let a = deduplication_id("x", 7, 1);
        assert_eq!(a, deduplication_id("x", 7, 1), "a resend has the same id");
        assert_ne!(
            a,
            deduplication_id("x", 7, 2),
            "an equal line sent again is another message"
        );
        assert_ne!(a, deduplication_id("x", 8, 1), "another run");
        assert_ne!(a, deduplication_id("y", 7, 1));
        let longest = deduplication_id(&"z".repeat(300_000), u64::MAX, u64::MAX);
        assert!(longest.len() <= 128, "{longest}");
    }
}
