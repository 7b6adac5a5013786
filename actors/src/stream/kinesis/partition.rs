//! The partition key of a Kinesis record: what decides its shard, and so which records keep
//! their order relative to each other.

use crate::stream::call::fnv1a;

/// The longest partition key the service takes (256 characters; as bytes here, so that a key
/// that fits is never refused).
pub const MAX_KEY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    /// A hash of the record's data, as the original did: the same record, the same shard.
    Hash,
    /// A random key per record: records spread evenly, no order kept.
    Random,
    /// The record's Redis key (the first, in the record's sorted order, of a MULTI block's
    /// keys), so one key's records go to one shard in order; a record without one (RAWSET
    /// with data not in the relayer's shape) takes the hash.
    Key,
}

impl PartitionKey {
    pub fn of(self, data: &[u8]) -> String {
        match self {
            PartitionKey::Hash => hash_key(data),
            PartitionKey::Random => format!("{:032x}", fastrand::u128(..)),
            PartitionKey::Key => match redis_key(data) {
                Some(k) if !k.is_empty() && k.len() <= MAX_KEY => k,
                // Empty or too long to be a partition key: its hash keeps it on one shard all
                // the same.
                Some(k) => hash_key(k.as_bytes()),
                None => hash_key(data),
            },
        }
    }
}

fn hash_key(data: &[u8]) -> String {
    format!("{:016x}", fnv1a(data))
}

/// The first key of a record line in the relayer's shape, `{"_ts":<n>,"data":{"<key>":...` (or
/// `"ts"`), read as JSON; None for anything else.
fn redis_key(line: &[u8]) -> Option<String> {
    let rest = line
        .strip_prefix(b"{\"_ts\":")
        .or_else(|| line.strip_prefix(b"{\"ts\":"))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"data\":{")?;
    if digits == 0 || !rest.starts_with(b"\"") {
        return None;
    }
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<String>();
    values.next()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_mode_reads_the_records_first_key_and_falls_back_to_the_hash() {
        let k = PartitionKey::Key;
        assert_eq!(k.of(br#"{"_ts":1,"data":{"user:1":"v"}}"#), "user:1");
        assert_eq!(
            k.of(br#"{"ts":17,"data":{"a\"b\u00e9":{"x":"1"},"z":"2"}}"#),
            "a\"b\u{e9}"
        );
        let raw = b"not json at all";
        assert_eq!(k.of(raw), hash_key(raw));
        assert_eq!(
            k.of(br#"{"_ts":,"data":{"k":"v"}}"#),
            hash_key(br#"{"_ts":,"data":{"k":"v"}}"#)
        );
        // The service takes no empty key: the empty Redis key's hash, one shard all the same.
        assert_eq!(k.of(br#"{"_ts":1,"data":{"":"v"}}"#), hash_key(b""));
        let long = "k".repeat(MAX_KEY + 1);
        let line = format!(r#"{{"_ts":1,"data":{{"{long}":"v"}}}}"#);
        assert_eq!(k.of(line.as_bytes()), hash_key(long.as_bytes()));
        let fits = "k".repeat(MAX_KEY);
        let line = format!(r#"{{"_ts":1,"data":{{"{fits}":"v"}}}}"#);
        assert_eq!(k.of(line.as_bytes()), fits);
    }

    #[test]
    fn the_hash_is_stable_and_random_keys_differ() {
        assert_eq!(PartitionKey::Hash.of(b"abc"), "e71fa2190541574b");
        assert_eq!(PartitionKey::Hash.of(b""), "cbf29ce484222325");
        let (a, b) = (PartitionKey::Random.of(b"x"), PartitionKey::Random.of(b"x"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
