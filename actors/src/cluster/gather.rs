//! Merging the replies of a request split over several nodes back into the one reply the
//! client expects.

use crate::error::RelayerError;
use crate::resp::write;
use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// DEL, UNLINK, EXISTS, TOUCH split by slot, DBSIZE over masters: the counts summed.
    Sum,
    /// MSET split by slot: +OK when every part says so.
    AllOk,
    /// MGET split by slot: part `i`'s values go to `positions[i]` of an array of `total`.
    Values {
        positions: Vec<Vec<usize>>,
        total: usize,
    },
    /// KEYS over masters: the arrays one after the other.
    Concat,
    /// SCRIPT LOAD, FUNCTION LOAD over masters: every master gives the same reply (a SHA, a
    /// library name), which is the reply; a difference is an error.
    Same,
    /// SCRIPT EXISTS over masters: 1 where every master has the script.
    And,
    /// SCAN: the cursor as asked by the client, in the request; in the merge, `ScanOn`.
    Scan,
    /// The SCAN part sent to the master serving `slot` (the first slot of the master the
    /// cursor is on), whose address has the tag `tag`; `next` is the first slot of the master
    /// after it, if any.
    ScanOn { slot: u16, tag: u16, next: Option<u16> },
}

/// A relayer SCAN cursor, from the low bits: the slot (14 bits) whose master it is on, so the
/// order of masters survives them coming, going or changing address; a tag of that master's
/// address (16 bits): a node's own cursor means nothing on another node (keys sit in other
/// buckets), so after a failover that master is scanned again from its start; then that
/// node's own cursor.
pub const SCAN_SLOT_BITS: u32 = 14;
const SCAN_TAG_BITS: u32 = 16;
const SCAN_OWN_SHIFT: u32 = SCAN_SLOT_BITS + SCAN_TAG_BITS;

/// A client's SCAN cursor: (slot of the master it is on, tag of its address, its own cursor).
pub fn scan_cursor(cursor: u64) -> (u16, u16, u64) {
    (
        (cursor & ((1 << SCAN_SLOT_BITS) - 1)) as u16,
        (cursor >> SCAN_SLOT_BITS) as u16,
        cursor >> SCAN_OWN_SHIFT,
    )
}

/// The tag of a node's address in a SCAN cursor.
pub fn scan_tag(addr: &str) -> u16 {
    super::slot::crc16(addr.as_bytes())
}

/// The client's reply from the parts' replies (in part order). The first error a part got is
/// the reply, as Redis would give one error for the whole command.
pub fn merge(how: &Merge, parts: &[Bytes]) -> Bytes {
    if parts.is_empty() {
        return RelayerError::NoNode.resp();
    }
    if let Some(e) = parts.iter().find(|p| p.starts_with(b"-")) {
        return e.clone();
    }
    match how {
        Merge::Sum => {
            let mut sum = 0i64;
            for p in parts {
                match Value::parse(p) {
                    Some((Value::Int(n), _)) => sum += n,
                    _ => return unexpected(p),
                }
            }
            Bytes::from(format!(":{sum}\r\n"))
        }
        Merge::AllOk => Bytes::from_static(write::OK),
        Merge::Values { positions, total } => {
            let mut out: Vec<Option<Value>> = vec![None; *total];
            for (p, pos) in parts.iter().zip(positions) {
                let Some((Value::Array(items), _)) = Value::parse(p) else {
                    return unexpected(p);
                };
                if items.len() != pos.len() {
                    return unexpected(p);
                }
                for (v, &i) in items.into_iter().zip(pos) {
                    out[i] = Some(v);
                }
            }
            encode_array(out.into_iter().map(|v| v.unwrap_or(Value::Nil)))
        }
        Merge::Scan => unexpected(&parts[0]),
        Merge::Same => match parts.iter().find(|p| *p != &parts[0]) {
            None => parts[0].clone(),
            Some(_) => RelayerError::MastersDiffer.resp(),
        },
        Merge::And => {
            let mut all: Option<Vec<i64>> = None;
            for p in parts {
                let Some((Value::Array(items), _)) = Value::parse(p) else {
                    return unexpected(p);
                };
                let mut flags = Vec::with_capacity(items.len());
                for v in items {
                    match v {
                        Value::Int(n) => flags.push(n),
                        _ => return unexpected(p),
                    }
                }
                all = Some(match all {
                    None => flags,
                    Some(a) if a.len() == flags.len() => {
                        a.iter().zip(flags).map(|(x, y)| (*x).min(y)).collect()
                    }
                    Some(_) => return unexpected(p),
                });
            }
            encode_array(all.unwrap_or_default().into_iter().map(Value::Int))
        }
        Merge::ScanOn { slot, tag, next } => {
            let Some((Value::Array(mut reply), _)) = Value::parse(&parts[0]) else {
                return unexpected(&parts[0]);
            };
            let cursor = match reply.first() {
                Some(Value::Bulk(c)) => std::str::from_utf8(c).ok().and_then(|c| c.parse::<u64>().ok()),
                _ => None,
            };
            let Some(cursor) = cursor else {
                return unexpected(&parts[0]);
            };
            // Done on this master: the next one from its start, or the end of the scan.
            let next = if cursor == 0 {
                next.map_or(0, u64::from)
            } else if cursor >> (64 - SCAN_OWN_SHIFT) != 0 {
                return RelayerError::ScanCursorTooLarge.resp();
            } else {
                (cursor << SCAN_OWN_SHIFT) | (u64::from(*tag) << SCAN_SLOT_BITS) | u64::from(*slot)
            };
            reply[0] = Value::Bulk(next.to_string().into_bytes());
            encode_array(reply.into_iter())
        }
        Merge::Concat => {
            let mut all = Vec::new();
            for p in parts {
                let Some((Value::Array(items), _)) = Value::parse(p) else {
                    return unexpected(p);
                };
                all.extend(items);
            }
            encode_array(all.into_iter())
        }
    }
}

fn unexpected(part: &Bytes) -> Bytes {
    let shown = String::from_utf8_lossy(&part[..part.len().min(40)]).into_owned();
    RelayerError::UnexpectedNodeReply(shown).resp()
}

fn encode_array(items: impl ExactSizeIterator<Item = Value>) -> Bytes {
    let mut b = BytesMut::new();
    write::put_array_header(&mut b, items.len());
    for v in items {
        v.encode(&mut b);
    }
    b.freeze()
}

/// Arrays nested deeper than this in a part's reply are refused.
const MAX_DEPTH: usize = 32;

/// A reply of a part, decoded to be merged and encoded again: the parts' replies go to a
/// client, so they are read here, by what the merge needs, never by a general codec. Only
/// split and fanned-out commands, never on the path of every command. The parts of a RESP3
/// client's request come from RESP3 connections: their null is kept as it came (`Null`), so the
/// merged reply is in the client's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    /// RESP3's null.
    Null,
    Array(Vec<Value>),
}

impl Value {
    /// Encodes the value back to RESP2.
    pub fn encode(&self, b: &mut bytes::BytesMut) {
        use bytes::BufMut;
        match self {
            Value::Simple(t) => b.put_slice(format!("+{t}\r\n").as_bytes()),
            Value::Error(t) => b.put_slice(format!("-{t}\r\n").as_bytes()),
            Value::Int(n) => crate::resp::write::put_int(b, *n),
            Value::Bulk(d) => crate::resp::write::put_bulk(b, d),
            Value::Nil => b.put_slice(b"$-1\r\n"),
            Value::Null => b.put_slice(b"_\r\n"),
            Value::Array(items) => {
                crate::resp::write::put_array_header(b, items.len());
                for v in items {
                    v.encode(b);
                }
            }
        }
    }

    /// Decodes one value from the front of `b`; returns it and the bytes it took. None for
    /// anything else, arrays nested deeper than `MAX_DEPTH` included (no stack overflow).
    pub fn parse(b: &[u8]) -> Option<(Value, usize)> {
        Self::parse_at(b, 0)
    }

    fn parse_at(b: &[u8], depth: usize) -> Option<(Value, usize)> {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(b.get(1..end)?).ok()?;
        let next = end + 2;
        match b.first()? {
            b'+' => Some((Value::Simple(line.into()), next)),
            b'-' => Some((Value::Error(line.into()), next)),
            b':' => Some((Value::Int(line.parse().ok()?), next)),
            b'_' if line.is_empty() => Some((Value::Null, next)),
            b'$' => {
                let n: i64 = line.parse().ok()?;
                if n < 0 {
                    return Some((Value::Nil, next));
                }
                let stop = next.checked_add(usize::try_from(n).ok()?)?;
                let data = b.get(next..stop)?.to_vec();
                (b.get(stop..stop.checked_add(2)?)? == b"\r\n").then_some((Value::Bulk(data), stop + 2))
            }
            b'*' => {
                let n: i64 = line.parse().ok()?;
                if n < 0 {
                    return Some((Value::Nil, next));
                }
                if depth >= MAX_DEPTH {
                    return None;
                }
                let mut items = Vec::with_capacity((n as usize).min(1024));
                let mut at = next;
                for _ in 0..n {
                    let (v, used) = Value::parse_at(&b[at..], depth + 1)?;
                    items.push(v);
                    at += used;
                }
                Some((Value::Array(items), at))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn merges() {
        assert_eq!(merge(&Merge::Sum, &[b(":2\r\n"), b(":3\r\n")]), b(":5\r\n"));
        assert_eq!(merge(&Merge::AllOk, &[b("+OK\r\n"), b("+OK\r\n")]), b("+OK\r\n"));
        assert_eq!(
            merge(&Merge::AllOk, &[b("+OK\r\n"), b("-ERR x\r\n")]),
            b("-ERR x\r\n")
        );
        let how = Merge::Values {
            positions: vec![vec![0, 2], vec![1]],
            total: 3,
        };
        assert_eq!(
            merge(&how, &[b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nb\r\n")]),
            b("*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n")
        );
        // From RESP3 connections, RESP3's null stays.
        assert_eq!(
            merge(&how, &[b("*2\r\n$1\r\na\r\n_\r\n"), b("*1\r\n_\r\n")]),
            b("*3\r\n$1\r\na\r\n_\r\n_\r\n")
        );
        assert_eq!(
            merge(&Merge::Concat, &[b("*1\r\n$1\r\nk\r\n"), b("*0\r\n")]),
            b("*1\r\n$1\r\nk\r\n")
        );
        assert!(merge(&Merge::Sum, &[b("+OK\r\n")]).starts_with(b"-ERR relayer: unexpected"));
        let sha = b("$3\r\nabc\r\n");
        assert_eq!(merge(&Merge::Same, &[sha.clone(), sha.clone()]), sha);
        assert!(merge(&Merge::Same, &[sha, b("$3\r\nabd\r\n")]).starts_with(b"-ERR relayer:"));
        assert_eq!(
            merge(&Merge::And, &[b("*2\r\n:1\r\n:1\r\n"), b("*2\r\n:0\r\n:1\r\n")]),
            b("*2\r\n:0\r\n:1\r\n")
        );
    }

    #[test]
    fn scan_cursors_name_a_slot() {
        let page = |c: &str| b(&format!("*2\r\n${}\r\n{c}\r\n*1\r\n$1\r\nk\r\n", c.len()));
        // Not done on the master of slot 5461: its cursor, with the slot.
        let on = |slot, next| Merge::ScanOn { slot, tag: 77, next };
        let r = merge(&on(5461, Some(10923)), &[page("7")]);
        let c = (7u64 << SCAN_OWN_SHIFT) | (77 << SCAN_SLOT_BITS) | 5461;
        assert_eq!(r, page(&c.to_string()));
        assert_eq!(scan_cursor(c), (5461, 77, 7));
        // Done: the next master from its start, or the end.
        let r = merge(&on(5461, Some(10923)), &[page("0")]);
        assert_eq!(r, page("10923"));
        assert_eq!(scan_cursor(10923), (10923, 0, 0));
        let r = merge(&on(10923, None), &[page("0")]);
        assert_eq!(r, page("0"));
        let huge = (1u64 << 40).to_string();
        assert!(merge(&on(0, None), &[page(&huge)]).starts_with(b"-ERR relayer:"));
    }

    #[test]
    fn part_replies_never_panic_nor_overflow_the_stack() {
        assert_eq!(Value::parse(b"\r\n"), None);
        assert_eq!(Value::parse(b"*1\r\n\r\n"), None);
        assert_eq!(Value::parse(&b"*1\r\n".repeat(100_000)), None);
        assert!(merge(&Merge::Concat, &[b(&"*1\r\n".repeat(100_000))]).starts_with(b"-ERR relayer:"));
    }
}
