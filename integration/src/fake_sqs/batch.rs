//! A SendMessageBatch request decoded, and the checks SQS makes of it before sending anything:
//! those that refuse the whole call, and those that fail one entry.

use base64::Engine as _;
use serde_json::Value;
use std::collections::HashSet;

/// Entries in one call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// Bytes of all the messages of one call (bodies and attributes), and of one message: 256 KiB,
/// the limit this fake enforces unless told otherwise (`FakeSqs::set_max_batch_bytes`; AWS
/// raised both to 1 MiB in 2025).
pub const MAX_BATCH_BYTES: usize = 262_144;
/// Characters of an entry's Id.
pub const MAX_ENTRY_ID_CHARS: usize = 80;

/// One entry of a SendMessageBatch call.
pub(super) struct Entry {
    pub id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub delay_seconds: Option<u32>,
    /// Bytes of its message attributes (names, data types and values), which count against the
    /// size limit with the body.
    pub attribute_bytes: usize,
}

impl Entry {
    pub fn size(&self) -> usize {
        self.body.len() + self.attribute_bytes
    }
}

/// A call or entry refused: SQS's error code (the shape name) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The queue URL and entries of a SendMessageBatch body.
pub(super) fn parse(body: &[u8]) -> Result<(String, Vec<Entry>), Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| refusal("SerializationException", format!("body is not JSON: {e}")))?;
    let queue_url = v.get("QueueUrl").and_then(Value::as_str).ok_or_else(|| {
        refusal(
            "MissingParameter",
            "The request must contain the parameter QueueUrl.",
        )
    })?;
    let items = v
        .get("Entries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let entries = items.iter().map(parse_entry).collect::<Result<_, _>>()?;
    Ok((queue_url.to_string(), entries))
}

fn parse_entry(item: &Value) -> Result<Entry, Refusal> {
    let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
    let delay_seconds = match item.get("DelaySeconds") {
        None | Some(Value::Null) => None,
        Some(d) => Some(d.as_u64().and_then(|d| u32::try_from(d).ok()).ok_or_else(|| {
            refusal(
                "SerializationException",
                format!("DelaySeconds {d} is not a number"),
            )
        })?),
    };
    Ok(Entry {
        id: text("Id").unwrap_or_default(),
        body: text("MessageBody").unwrap_or_default(),
        group_id: text("MessageGroupId"),
        dedup_id: text("MessageDeduplicationId"),
        delay_seconds,
        attribute_bytes: attribute_bytes(item.get("MessageAttributes")),
    })
}

/// What message attributes count: each name, data type and value (a binary value decoded).
fn attribute_bytes(attributes: Option<&Value>) -> usize {
    let Some(map) = attributes.and_then(Value::as_object) else {
        return 0;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    map.iter()
        .map(|(name, a)| {
            let field = |f: &str| a.get(f).and_then(Value::as_str).unwrap_or("");
            let binary = b64.decode(field("BinaryValue")).map_or(0, |b| b.len());
            name.len() + field("DataType").len() + field("StringValue").len() + binary
        })
        .sum()
}

/// Why SQS refuses these entries as a whole, if it does, with `max_bytes` as the size limit.
pub(super) fn check_call(entries: &[Entry], max_bytes: usize) -> Option<Refusal> {
    if entries.is_empty() {
        return Some(refusal(
            "EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ));
    }
    if entries.len() > MAX_ENTRIES_PER_CALL {
        return Some(refusal(
            "TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_ENTRIES_PER_CALL}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let valid_id = |id: &str| {
        (1..=MAX_ENTRY_ID_CHARS).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !entries.iter().all(|e| valid_id(&e.id)) {
        return Some(refusal(
            "InvalidBatchEntryId",
            "A batch entry id can only contain alphanumeric characters, hyphens and underscores. \
             It can be at most 80 letters long.",
        ));
    }
    let mut seen = HashSet::new();
    if let Some(e) = entries.iter().find(|e| !seen.insert(e.id.as_str())) {
        return Some(refusal(
            "BatchEntryIdsNotDistinct",
            format!("Id {} repeated.", e.id),
        ));
    }
    let total: usize = entries.iter().map(Entry::size).sum();
    (total > max_bytes).then(|| {
        refusal(
            "BatchRequestTooLong",
            format!("Batch requests cannot be longer than {max_bytes} bytes. You have sent {total} bytes."),
        )
    })
}

/// Why SQS fails this entry (SenderFault true), if it does: a FIFO queue needs a group id, and a
/// deduplication id unless `content_based_dedup`, and takes no per-message delay; a standard
/// queue takes no deduplication id; bodies hold only the characters XML allows.
pub(super) fn check_entry(e: &Entry, fifo: bool, content_based_dedup: bool) -> Option<Refusal> {
    let invalid = |m: String| Some(refusal("InvalidParameterValue", m));
    if e.body.is_empty() {
        return Some(refusal(
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
        ));
    }
    if let Some(c) = e.body.chars().find(|&c| !allowed_in_body(c)) {
        return Some(refusal(
            "InvalidMessageContents",
            format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters \
                 is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                u32::from(c)
            ),
        ));
    }
    let delay = e.delay_seconds.unwrap_or(0);
    if fifo {
        if e.group_id.is_none() {
            return Some(refusal(
                "MissingParameter",
                "The request must contain the parameter MessageGroupId.",
            ));
        }
        if e.dedup_id.is_none() && !content_based_dedup {
            return invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId \
                 provided explicitly"
                    .into(),
            );
        }
        if delay > 0 {
            return invalid(format!(
                "Value {delay} for parameter DelaySeconds is invalid. Reason: The request include parameter \
                 that is not valid for this queue type."
            ));
        }
    } else {
        if e.dedup_id.is_some() {
            return invalid(
                "The request include parameter that is not valid for this queue type. Reason: \
                 MessageDeduplicationId is only valid for FIFO queues"
                    .into(),
            );
        }
        if delay > 900 {
            return invalid(format!(
                "Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
            ));
        }
    }
    None
}

/// The characters SQS accepts in a message body (those of XML 1.0).
fn allowed_in_body(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, body: &str) -> Entry {
        Entry {
            id: id.into(),
            body: body.into(),
            group_id: None,
            dedup_id: None,
            delay_seconds: None,
            attribute_bytes: 0,
        }
    }

    fn code(r: Option<Refusal>) -> Option<&'static str> {
        r.map(|r| r.code)
    }

    #[test]
    fn refuses_calls_as_sqs_does() {
        assert_eq!(code(check_call(&[], MAX_BATCH_BYTES)), Some("EmptyBatchRequest"));
        let many: Vec<Entry> = (0..11).map(|i| entry(&i.to_string(), "x")).collect();
        assert_eq!(
            code(check_call(&many, MAX_BATCH_BYTES)),
            Some("TooManyEntriesInBatchRequest")
        );
        assert_eq!(code(check_call(&many[..10], MAX_BATCH_BYTES)), None);
        let bad_id = [entry("a.b", "x")];
        assert_eq!(
            code(check_call(&bad_id, MAX_BATCH_BYTES)),
            Some("InvalidBatchEntryId")
        );
        let same = [entry("a", "x"), entry("a", "y")];
        assert_eq!(
            code(check_call(&same, MAX_BATCH_BYTES)),
            Some("BatchEntryIdsNotDistinct")
        );
        let half = "é".repeat(MAX_BATCH_BYTES / 4);
        let full = [entry("a", &half), entry("b", &half)];
        assert_eq!(
            code(check_call(&full, MAX_BATCH_BYTES)),
            None,
            "exactly the limit, in bytes"
        );
        let over = [entry("a", &half), entry("b", &half), entry("c", "x")];
        assert_eq!(
            code(check_call(&over, MAX_BATCH_BYTES)),
            Some("BatchRequestTooLong")
        );
    }

    #[test]
    fn fails_entries_as_sqs_does() {
        let plain = entry("a", "x");
        assert_eq!(code(check_entry(&plain, false, false)), None);
        assert_eq!(
            code(check_entry(&plain, true, true)),
            Some("MissingParameter"),
            "no group id"
        );
        let grouped = Entry {
            group_id: Some("g".into()),
            ..entry("a", "x")
        };
        assert_eq!(
            code(check_entry(&grouped, true, true)),
            None,
            "content-based dedup"
        );
        assert_eq!(
            code(check_entry(&grouped, true, false)),
            Some("InvalidParameterValue")
        );
        let delayed = Entry {
            dedup_id: Some("d".into()),
            delay_seconds: Some(1),
            ..grouped
        };
        assert_eq!(
            code(check_entry(&delayed, true, false)),
            Some("InvalidParameterValue")
        );
        assert_eq!(
            code(check_entry(&delayed, false, false)),
            Some("InvalidParameterValue")
        );
        let control = entry("a", "nul \u{0} here");
        assert_eq!(
            code(check_entry(&control, false, false)),
            Some("InvalidMessageContents")
        );
        let unicode = entry("a", "tab\t, é, \u{10FFFF}");
        assert_eq!(code(check_entry(&unicode, false, false)), None);
    }

    #[test]
    fn parses_entries_and_counts_attributes() {
        let body = br#"{"QueueUrl":"http://h/1/q","Entries":[{"Id":"0","MessageBody":"ab","DelaySeconds":3,
            "MessageAttributes":{"k":{"DataType":"String","StringValue":"vv"},"b":{"DataType":"Binary","BinaryValue":"AAE="}}}]}"#;
        let (url, entries) = parse(body).unwrap();
        assert_eq!(url, "http://h/1/q");
        assert_eq!(
            (entries[0].delay_seconds, entries[0].size()),
            (Some(3), 2 + (1 + 6 + 2) + (1 + 6 + 2))
        );
        assert_eq!(parse(b"{}").err().map(|r| r.code), Some("MissingParameter"));
    }
}
