//! Commands to records: the data of one SET/SADD/HMSET/HSET, or of a whole MULTI/EXEC block,
//! and its JSON line, `{"_ts":<ns>,"data":{...}}\n` (or `{"ts":<ms>,...}`).

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest Firehose record, newline included (1,000 KiB).
pub const MAX_RECORD: usize = 1_024_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// `"_ts"`: Unix nanoseconds, as the original first wrote it (but exact).
    Nanos,
    /// `"ts"`: Unix milliseconds, as later versions of the original wrote it.
    Millis,
}

/// What a command inside a block does to a key holding another type, as in Redis.
#[derive(Debug, PartialEq, Eq)]
pub struct WrongType;

enum Value {
    Str(String),
    Set {
        members: Vec<String>,
        seen: HashSet<String>,
    },
    Hash(BTreeMap<String, String>),
}

/// Keys sorted, as the original's encoder sorted them.
pub struct Record {
    nanos: u128,
    data: BTreeMap<String, Value>,
    /// Arguments that were not UTF-8 (replaced by U+FFFD).
    pub invalid_utf8: u64,
    /// A running estimate of the line's size, to stop a block from growing without bound.
    pub approx_len: usize,
}

impl Record {
    /// An empty record stamped now.
    pub fn now() -> Record {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Record {
            nanos,
            data: BTreeMap::new(),
            invalid_utf8: 0,
            approx_len: 32,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn text(&mut self, b: &[u8]) -> String {
        // JSON escaping can make a string up to 6 times longer (\u0001).
        self.approx_len += b.len() + 3;
        match String::from_utf8_lossy(b) {
            Cow::Borrowed(s) => s.to_string(),
            Cow::Owned(s) => {
                self.invalid_utf8 += 1;
                s
            }
        }
    }

    /// SET: the last value of a key wins, whatever the key held.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        let (k, v) = (self.text(key), self.text(value));
        self.data.insert(k, Value::Str(v));
    }

    /// SADD: members appended in order of first appearance; returns how many were new.
    pub fn sadd<'a>(
        &mut self,
        key: &[u8],
        members: impl Iterator<Item = &'a [u8]>,
    ) -> Result<i64, WrongType> {
        let k = self.text(key);
        if matches!(self.data.get(&k), Some(Value::Str(_) | Value::Hash(_))) {
            return Err(WrongType);
        }
        let members: Vec<String> = members.map(|m| self.text(m)).collect();
        let Value::Set { members: list, seen } = self.data.entry(k).or_insert_with(|| Value::Set {
            members: vec![],
            seen: HashSet::new(),
        }) else {
            unreachable!("checked above")
        };
        let mut added = 0;
        for m in members {
            if seen.insert(m.clone()) {
                list.push(m);
                added += 1;
            }
        }
        Ok(added)
    }

    /// HMSET/HSET: fields merged, the later value wins; returns how many fields were new.
    pub fn hset<'a>(&mut self, key: &[u8], pairs: impl Iterator<Item = &'a [u8]>) -> Result<i64, WrongType> {
        let k = self.text(key);
        if matches!(self.data.get(&k), Some(Value::Str(_) | Value::Set { .. })) {
            return Err(WrongType);
        }
        let flat: Vec<String> = pairs.map(|p| self.text(p)).collect();
        let Value::Hash(map) = self.data.entry(k).or_insert_with(|| Value::Hash(BTreeMap::new())) else {
            unreachable!("checked above")
        };
        let mut added = 0;
        for pair in flat.chunks_exact(2) {
            if map.insert(pair[0].clone(), pair[1].clone()).is_none() {
                added += 1;
            }
        }
        Ok(added)
    }

    /// The JSON line, newline included.
    pub fn to_line(&self, ts: Timestamp) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.approx_len + 16);
        match ts {
            Timestamp::Nanos => {
                out.extend_from_slice(format!("{{\"_ts\":{},\"data\":", self.nanos).as_bytes())
            }
            Timestamp::Millis => {
                out.extend_from_slice(format!("{{\"ts\":{},\"data\":", self.nanos / 1_000_000).as_bytes())
            }
        }
        serde_json::to_writer(&mut out, &self.data).expect("strings and maps always serialize");
        out.extend_from_slice(b"}\n");
        out
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) => s.serialize_str(v),
            Value::Set { members, .. } => {
                let mut seq = s.serialize_seq(Some(members.len()))?;
                for m in members {
                    seq.serialize_element(m)?;
                }
                seq.end()
            }
            Value::Hash(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &Record) -> String {
        let l = String::from_utf8(r.to_line(Timestamp::Nanos)).unwrap();
        let data = l.split_once(",\"data\":").unwrap().1;
        data.to_string()
    }

    #[test]
    fn block_merges_as_the_original_does() {
        let mut r = Record::now();
        r.set(b"a", b"1");
        r.set(b"a", b"2");
        assert_eq!(r.sadd(b"l", [&b"x"[..], b"y", b"x"].into_iter()), Ok(2));
        assert_eq!(r.sadd(b"l", [&b"y"[..], b"z"].into_iter()), Ok(1));
        assert_eq!(r.hset(b"d", [&b"f"[..], b"v", b"e", b"w"].into_iter()), Ok(2));
        assert_eq!(r.hset(b"d", [&b"f"[..], b"v2"].into_iter()), Ok(0));
        assert_eq!(r.sadd(b"a", [&b"x"[..]].into_iter()), Err(WrongType));
        assert_eq!(r.hset(b"l", [&b"f"[..], b"v"].into_iter()), Err(WrongType));
        assert_eq!(
            line(&r),
            "{\"a\":\"2\",\"d\":{\"e\":\"w\",\"f\":\"v2\"},\"l\":[\"x\",\"y\",\"z\"]}}\n"
        );
    }

    #[test]
    fn timestamps_are_exact_integers() {
        let r = Record {
            nanos: 1_510_928_212_123_456_789,
            data: BTreeMap::new(),
            invalid_utf8: 0,
            approx_len: 0,
        };
        assert_eq!(
            r.to_line(Timestamp::Nanos),
            b"{\"_ts\":1510928212123456789,\"data\":{}}\n"
        );
        assert_eq!(
            r.to_line(Timestamp::Millis),
            b"{\"ts\":1510928212123,\"data\":{}}\n"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut r = Record::now();
        r.set(b"k\xff", b"<v>\"\n");
        assert_eq!(r.invalid_utf8, 1);
        assert_eq!(line(&r), "{\"k\u{fffd}\":\"<v>\\\"\\n\"}}\n");
    }
}
