//! Merging the replies of a request split over several nodes back into the one reply the
//! client expects.

use super::topology::Value;
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
    /// SCAN: the cursor (a master's index and its own cursor) as asked by the client, in the
    /// request; in the merge, the master it went to, out of `masters`.
    Scan,
    ScanOn {
        master: usize,
        masters: usize,
    },
}

/// Bits of a relayer SCAN cursor that say which master it is on.
pub const SCAN_MASTER_BITS: u32 = 10;

/// A client's SCAN cursor: (master index, that master's cursor).
pub fn scan_cursor(cursor: u64) -> (usize, u64) {
    (
        (cursor & ((1 << SCAN_MASTER_BITS) - 1)) as usize,
        cursor >> SCAN_MASTER_BITS,
    )
}

/// The client's reply from the parts' replies (in part order). The first error a part got is
/// the reply, as Redis would give one error for the whole command.
pub fn merge(how: &Merge, parts: &[Bytes]) -> Bytes {
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
        Merge::ScanOn { master, masters } => {
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
                if master + 1 < *masters {
                    (master + 1) as u64
                } else {
                    0
                }
            } else {
                match cursor.checked_mul(1 << SCAN_MASTER_BITS) {
                    Some(c) => c | *master as u64,
                    None => return write::error("ERR relayer: a node's SCAN cursor is too large to relay"),
                }
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
    write::error(&format!(
        "ERR relayer: unexpected reply from a cluster node: {shown:?}"
    ))
}

fn encode_array(items: impl ExactSizeIterator<Item = Value>) -> Bytes {
    let mut b = BytesMut::new();
    write::put_array_header(&mut b, items.len());
    for v in items {
        v.encode(&mut b);
    }
    b.freeze()
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
        assert_eq!(
            merge(&Merge::Concat, &[b("*1\r\n$1\r\nk\r\n"), b("*0\r\n")]),
            b("*1\r\n$1\r\nk\r\n")
        );
        assert!(merge(&Merge::Sum, &[b("+OK\r\n")]).starts_with(b"-ERR relayer: unexpected"));
    }
}
