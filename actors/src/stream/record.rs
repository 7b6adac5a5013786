//! Commands to records: the data of one SET/SADD/HMSET/HSET, or of a whole MULTI/EXEC block,
//! and its JSON line, `{"_ts":<ns>,"data":{...}}\n` (or `{"ts":<ms>,...}`).

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// A value and the length of its JSON text.
struct Item {
    value: Value,
    len: usize,
}

/// Keys sorted, as the original's encoder sorted them. The length of the line is kept exactly
/// as commands change the record, so a block is measured without serializing it, and a command
/// that would take it over the record limit is measured before anything is copied.
pub struct Record {
    nanos: u128,
    ts: Timestamp,
    data: BTreeMap<String, Item>,
    /// Length of `data`'s JSON text.
    data_len: usize,
    /// Arguments that were not UTF-8 (replaced by U+FFFD).
    pub invalid_utf8: u64,
}

/// Bytes as text, invalid UTF-8 replaced by U+FFFD (and counted in `invalid`); borrowed when
/// valid.
fn lossy<'a>(b: &'a [u8], invalid: &mut u64) -> Cow<'a, str> {
    let s = String::from_utf8_lossy(b);
    if let Cow::Owned(_) = s {
        *invalid += 1;
    }
    s
}

/// Length of `s` as a JSON string, quotes included, escaped as serde_json does (`"`, `\\` and
/// the control characters; `\b \f \n \r \t` in two bytes, the others as `\u00XX`).
pub fn json_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Length of a JSON string of `b` made valid UTF-8 as `lossy` does, without making it.
pub fn lossy_json_len(b: &[u8]) -> usize {
    b.utf8_chunks()
        .map(|c| json_len(c.valid()) - 2 + if c.invalid().is_empty() { 0 } else { 3 })
        .sum::<usize>()
        + 2
}

fn digits(mut n: u128) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl Record {
    /// An empty record stamped now, its line to be written with `ts`.
    pub fn now(ts: Timestamp) -> Record {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Record {
            nanos,
            ts,
            data: BTreeMap::new(),
            data_len: 2,
            invalid_utf8: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The length of `to_line()`, newline included.
    pub fn line_len(&self) -> usize {
        self.line_len_with(self.data_len)
    }

    fn line_len_with(&self, data_len: usize) -> usize {
        let ts = match self.ts {
            Timestamp::Nanos => "{\"_ts\":".len() + digits(self.nanos),
            Timestamp::Millis => "{\"ts\":".len() + digits(self.nanos / 1_000_000),
        };
        ts + ",\"data\":".len() + data_len + "}\n".len()
    }

    /// `data_len` with a new key of JSON length `key_len` and a value of `value_len`.
    fn with_new_key(&self, key_len: usize, value_len: usize) -> usize {
        self.data_len + usize::from(!self.data.is_empty()) + key_len + 1 + value_len
    }

    /// SET: the last value of a key wins, whatever the key held.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        let k = lossy(key, &mut self.invalid_utf8);
        let v = lossy(value, &mut self.invalid_utf8).into_owned();
        let len = json_len(&v);
        if let Some(item) = self.data.get_mut(&*k) {
            self.data_len = self.data_len - item.len + len;
            *item = Item {
                value: Value::Str(v),
                len,
            };
        } else {
            self.data_len = self.with_new_key(json_len(&k), len);
            self.data.insert(
                k.into_owned(),
                Item {
                    value: Value::Str(v),
                    len,
                },
            );
        }
    }

    /// The line's length after `set(key, value)`, nothing copied.
    pub fn len_after_set(&self, key: &[u8], value: &[u8]) -> usize {
        let len = lossy_json_len(value);
        let data_len = match self.data.get(&*String::from_utf8_lossy(key)) {
            Some(item) => self.data_len - item.len + len,
            None => self.with_new_key(lossy_json_len(key), len),
        };
        self.line_len_with(data_len)
    }

    /// SADD: members appended in order of first appearance; returns how many were new.
    pub fn sadd<'a>(
        &mut self,
        key: &[u8],
        members: impl Iterator<Item = &'a [u8]>,
    ) -> Result<i64, WrongType> {
        let k = lossy(key, &mut self.invalid_utf8);
        let new_key = match self.data.get(&*k).map(|i| &i.value) {
            Some(Value::Str(_) | Value::Hash(_)) => return Err(WrongType),
            Some(Value::Set { .. }) => None,
            None => Some(json_len(&k)),
        };
        if let Some(key_len) = new_key {
            self.data_len = self.with_new_key(key_len, 2);
        }
        let mut invalid = 0;
        let item = self.data.entry(k.into_owned()).or_insert_with(|| Item {
            value: Value::Set {
                members: vec![],
                seen: HashSet::new(),
            },
            len: 2,
        });
        let Value::Set { members: list, seen } = &mut item.value else {
            unreachable!("checked above")
        };
        let before = item.len;
        let mut added = 0;
        for m in members {
            let m = lossy(m, &mut invalid);
            if !seen.contains(&*m) {
                let m = m.into_owned();
                item.len += usize::from(!list.is_empty()) + json_len(&m);
                seen.insert(m.clone());
                list.push(m);
                added += 1;
            }
        }
        self.data_len += item.len - before;
        self.invalid_utf8 += invalid;
        Ok(added)
    }

    /// The line's length after `sadd(key, members)`, nothing copied (but members that are not
    /// UTF-8).
    pub fn len_after_sadd<'a>(
        &self,
        key: &[u8],
        members: impl Iterator<Item = &'a [u8]>,
    ) -> Result<usize, WrongType> {
        let (mut value_len, mut count, seen) = match self.data.get(&*String::from_utf8_lossy(key)) {
            Some(Item {
                value: Value::Set { members, seen },
                len,
            }) => (*len, members.len(), Some(seen)),
            Some(_) => return Err(WrongType),
            None => (2, 0, None),
        };
        let mut new: HashSet<Cow<str>> = HashSet::new();
        for m in members {
            let m = String::from_utf8_lossy(m);
            if seen.is_some_and(|s| s.contains(&*m)) || new.contains(&m) {
                continue;
            }
            value_len += usize::from(count > 0) + json_len(&m);
            count += 1;
            new.insert(m);
        }
        let data_len = match seen {
            Some(_) => self.data_len - self.data[&*String::from_utf8_lossy(key)].len + value_len,
            None => self.with_new_key(lossy_json_len(key), value_len),
        };
        Ok(self.line_len_with(data_len))
    }

    /// HMSET/HSET: fields merged, the later value wins; returns how many fields were new.
    pub fn hset<'a>(&mut self, key: &[u8], pairs: impl Iterator<Item = &'a [u8]>) -> Result<i64, WrongType> {
        let k = lossy(key, &mut self.invalid_utf8);
        let new_key = match self.data.get(&*k).map(|i| &i.value) {
            Some(Value::Str(_) | Value::Set { .. }) => return Err(WrongType),
            Some(Value::Hash(_)) => None,
            None => Some(json_len(&k)),
        };
        if let Some(key_len) = new_key {
            self.data_len = self.with_new_key(key_len, 2);
        }
        let mut invalid = 0;
        let item = self.data.entry(k.into_owned()).or_insert_with(|| Item {
            value: Value::Hash(BTreeMap::new()),
            len: 2,
        });
        let Value::Hash(map) = &mut item.value else {
            unreachable!("checked above")
        };
        let before = item.len;
        let mut added = 0;
        let mut pairs = pairs;
        while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
            let (f, v) = (lossy(f, &mut invalid), lossy(v, &mut invalid).into_owned());
            match map.get_mut(&*f) {
                Some(old) => {
                    item.len = item.len - json_len(old) + json_len(&v);
                    *old = v;
                }
                None => {
                    item.len += usize::from(!map.is_empty()) + json_len(&f) + 1 + json_len(&v);
                    map.insert(f.into_owned(), v);
                    added += 1;
                }
            }
        }
        self.data_len += item.len;
        self.data_len -= before;
        self.invalid_utf8 += invalid;
        Ok(added)
    }

    /// The line's length after `hset(key, pairs)`, nothing copied (but fields and values that
    /// are not UTF-8).
    pub fn len_after_hset<'a>(
        &self,
        key: &[u8],
        pairs: impl Iterator<Item = &'a [u8]>,
    ) -> Result<usize, WrongType> {
        let (mut value_len, existing) = match self.data.get(&*String::from_utf8_lossy(key)) {
            Some(Item {
                value: Value::Hash(map),
                len,
            }) => (*len, Some(map)),
            Some(_) => return Err(WrongType),
            None => (2, None),
        };
        // The last value of each field, as `hset` leaves it.
        let mut last: HashMap<Cow<str>, Cow<str>> = HashMap::new();
        let mut pairs = pairs;
        while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
            last.insert(String::from_utf8_lossy(f), String::from_utf8_lossy(v));
        }
        let mut count = existing.map_or(0, |m| m.len());
        for (f, v) in &last {
            match existing.and_then(|m| m.get(&**f)) {
                Some(old) => value_len = value_len - json_len(old) + json_len(v),
                None => {
                    value_len += usize::from(count > 0) + json_len(f) + 1 + json_len(v);
                    count += 1;
                }
            }
        }
        let data_len = match existing {
            Some(_) => self.data_len - self.data[&*String::from_utf8_lossy(key)].len + value_len,
            None => self.with_new_key(lossy_json_len(key), value_len),
        };
        Ok(self.line_len_with(data_len))
    }

    /// The JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.line_len());
        match self.ts {
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

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
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
    use proptest::prelude::*;

    fn line(r: &Record) -> String {
        let l = String::from_utf8(r.to_line()).unwrap();
        let data = l.split_once(",\"data\":").unwrap().1;
        data.to_string()
    }

    #[test]
    fn block_merges_as_the_original_does() {
        let mut r = Record::now(Timestamp::Nanos);
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
        assert_eq!(r.line_len(), r.to_line().len());
    }

    #[test]
    fn timestamps_are_exact_integers() {
        let mut r = Record::now(Timestamp::Nanos);
        r.nanos = 1_510_928_212_123_456_789;
        assert_eq!(r.to_line(), b"{\"_ts\":1510928212123456789,\"data\":{}}\n");
        assert_eq!(r.line_len(), r.to_line().len());
        r.ts = Timestamp::Millis;
        assert_eq!(r.to_line(), b"{\"ts\":1510928212123,\"data\":{}}\n");
        assert_eq!(r.line_len(), r.to_line().len());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut r = Record::now(Timestamp::Nanos);
        r.set(b"k\xff", b"<v>\"\n");
        assert_eq!(r.invalid_utf8, 1);
        assert_eq!(line(&r), "{\"k\u{fffd}\":\"<v>\\\"\\n\"}}\n");
    }

    #[test]
    fn json_lengths_match_serde_json() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            "",
            "abc",
            "é<&>",
            "\u{1}\u{1f}\u{7f}",
            "\"\\\n\r\t\u{8}\u{c}",
            &all,
        ] {
            assert_eq!(json_len(s), serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
        for b in [
            &b"\xff"[..],
            b"a\xffb\xfe\xfd",
            b"\xe2\x82",
            b"ok\xc3",
            b"\x01\xff\"",
        ] {
            let s = String::from_utf8_lossy(b);
            assert_eq!(
                lossy_json_len(b),
                serde_json::to_string(&s).unwrap().len(),
                "{b:?}"
            );
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(Vec<u8>, Vec<u8>),
        Sadd(Vec<u8>, Vec<Vec<u8>>),
        Hset(Vec<u8>, Vec<Vec<u8>>),
    }

    /// Few distinct keys, fields and members, so that commands meet each other; bytes that
    /// JSON escapes and bytes that are not UTF-8.
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(vec![b'a', b'b', b'"', b'\\', b'\n', 0x01, 0xff, 0xc3, 0xa9]),
            0..4,
        )
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (bytes(), bytes()).prop_map(|(k, v)| Op::Set(k, v)),
            (bytes(), prop::collection::vec(bytes(), 1..5)).prop_map(|(k, m)| Op::Sadd(k, m)),
            (bytes(), prop::collection::vec(bytes(), 1..3)).prop_map(|(k, f)| {
                let pairs = f
                    .iter()
                    .flat_map(|f| [f.clone(), f.iter().rev().copied().collect()])
                    .collect();
                Op::Hset(k, pairs)
            }),
        ]
    }

    proptest! {
        /// The length kept, and the one predicted before a command, are the line's.
        #[test]
        fn lengths_are_exact(ops in prop::collection::vec(op(), 0..30), ms in any::<bool>()) {
            let mut r = Record::now(if ms { Timestamp::Millis } else { Timestamp::Nanos });
            for op in &ops {
                let predicted = match op {
                    Op::Set(k, v) => Ok(r.len_after_set(k, v)),
                    Op::Sadd(k, m) => r.len_after_sadd(k, m.iter().map(Vec::as_slice)),
                    Op::Hset(k, p) => r.len_after_hset(k, p.iter().map(Vec::as_slice)),
                };
                let applied = match op {
                    Op::Set(k, v) => {
                        r.set(k, v);
                        Ok(0)
                    }
                    Op::Sadd(k, m) => r.sadd(k, m.iter().map(Vec::as_slice)),
                    Op::Hset(k, p) => r.hset(k, p.iter().map(Vec::as_slice)),
                };
                prop_assert_eq!(predicted.is_err(), applied.is_err());
                let real = r.to_line().len();
                prop_assert_eq!(r.line_len(), real);
                if let Ok(p) = predicted {
                    prop_assert_eq!(p, real, "predicted for {:?}", op);
                }
            }
        }
    }
}
