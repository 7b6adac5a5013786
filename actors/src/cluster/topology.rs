//! The slot map: which master serves each slot, read from a node's CLUSTER SLOTS reply.

use super::slot::SLOTS;

/// A master's address, as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Slot -> master, for the whole key space. Slots no master serves are None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Masters, sorted by address when read; a MOVED to a new one appends it.
    pub masters: Vec<Node>,
    /// The replicas CLUSTER SLOTS listed: asked for the map when no master answers.
    pub replicas: Vec<Node>,
    /// Index into `masters` for each slot; `u16::MAX` when unserved.
    owner: Vec<u16>,
}

const NONE: u16 = u16::MAX;

/// Arrays nested deeper than this in a reply the relayer reads are refused.
const MAX_DEPTH: usize = 32;

impl SlotMap {
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        self.masters.get(self.owner[slot as usize] as usize)
    }

    /// The index in `masters` of the master serving `slot`.
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        let i = self.owner[slot as usize] as usize;
        (i < self.masters.len()).then_some(i)
    }

    pub fn covers_all(&self) -> bool {
        self.owner.iter().all(|&o| o != NONE)
    }

    /// The masters in the order a relayer SCAN visits them: by the first slot each serves,
    /// with that slot. A failover keeps a master's slots, so the order survives it.
    pub fn scan_order(&self) -> Vec<(u16, &Node)> {
        let mut seen = vec![false; self.masters.len()];
        let mut order = Vec::with_capacity(self.masters.len());
        for (slot, &o) in self.owner.iter().enumerate() {
            if o != NONE && !seen[o as usize] {
                seen[o as usize] = true;
                order.push((slot as u16, &self.masters[o as usize]));
            }
        }
        order
    }

    /// Moves one slot to `node` (a MOVED redirection), adding the node if it is new.
    pub fn assign(&mut self, slot: u16, node: Node) {
        let idx = match self.masters.iter().position(|m| *m == node) {
            Some(i) => i,
            None => {
                self.masters.push(node);
                self.masters.len() - 1
            }
        };
        self.owner[slot as usize] = idx as u16;
    }

    /// Reads a CLUSTER SLOTS reply. `asked` is the node that gave it: an empty host in the
    /// reply means that node.
    pub fn from_cluster_slots(reply: &[u8], asked: &Node) -> Result<SlotMap, String> {
        let (value, _) = Value::parse(reply).ok_or("CLUSTER SLOTS reply is not valid RESP")?;
        let ranges = match value {
            Value::Array(r) => r,
            Value::Error(e) => return Err(e),
            _ => return Err("CLUSTER SLOTS reply is not an array".into()),
        };
        let mut by_slot = vec![None; SLOTS];
        let mut replicas = Vec::new();
        for range in &ranges {
            let Value::Array(parts) = range else {
                return Err("CLUSTER SLOTS range is not an array".into());
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err("CLUSTER SLOTS range without start, end and master".into());
            };
            let (Some(Value::Bulk(host)), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
                return Err("CLUSTER SLOTS master without host and port".into());
            };
            let host = String::from_utf8_lossy(host).into_owned();
            let node = Node {
                host: if host.is_empty() || host == "?" {
                    asked.host.clone()
                } else {
                    host
                },
                port: u16::try_from(*port).map_err(|_| format!("bad port {port}"))?,
            };
            if !(0..SLOTS as i64).contains(start) || !(*start..SLOTS as i64).contains(end) {
                return Err(format!("bad slot range {start}-{end}"));
            }
            for slot in *start..=*end {
                by_slot[slot as usize] = Some(node.clone());
            }
            for r in parts.iter().skip(3) {
                if let Value::Array(r) = r {
                    if let (Some(Value::Bulk(h)), Some(Value::Int(p))) = (r.first(), r.get(1)) {
                        let host = String::from_utf8_lossy(h).into_owned();
                        if let (false, Ok(port)) = (host.is_empty() || host == "?", u16::try_from(*p)) {
                            replicas.push(Node { host, port });
                        }
                    }
                }
            }
        }
        replicas.sort();
        replicas.dedup();
        let mut masters: Vec<Node> = by_slot.iter().flatten().cloned().collect();
        masters.sort();
        masters.dedup();
        let owner = by_slot
            .iter()
            .map(|n| match n {
                Some(n) => masters.binary_search(n).map_or(NONE, |i| i as u16),
                None => NONE,
            })
            .collect();
        Ok(SlotMap {
            masters,
            replicas,
            owner,
        })
    }
}

/// A RESP2 value, decoded: only for the few replies the relayer reads itself (CLUSTER SLOTS,
/// SCAN), never on the path of every command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
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

    fn node(port: u16) -> Node {
        Node {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn reads_cluster_slots() {
        let reply = b"*2\r\n\
*4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nid\r\n\
*3\r\n:8192\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n";
        let map = SlotMap::from_cluster_slots(reply, &node(7002)).unwrap();
        assert_eq!(map.masters, vec![node(7001), node(7002)]);
        assert_eq!(map.replicas, vec![node(7004)]);
        assert_eq!(map.scan_order(), vec![(0, &node(7001)), (8192, &node(7002))]);
        assert_eq!(map.owner(0), Some(&node(7001)));
        assert_eq!(map.owner(8191), Some(&node(7001)));
        assert_eq!(map.owner(8192), Some(&node(7002)));
        assert!(map.covers_all());
        let mut moved = map.clone();
        moved.assign(5, node(7003));
        assert_eq!(moved.owner(5), Some(&node(7003)));
        assert_eq!(moved.owner(6), Some(&node(7001)));
        // A new master with a slot before the others' first: visited where its slot is.
        moved.assign(0, node(7000));
        assert_eq!(
            moved.scan_order(),
            vec![
                (0, &node(7000)),
                (1, &node(7001)),
                (5, &node(7003)),
                (8192, &node(7002))
            ]
        );
    }

    #[test]
    fn partial_and_bad_replies() {
        let partial = b"*1\r\n*3\r\n:0\r\n:10\r\n*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n";
        let map = SlotMap::from_cluster_slots(partial, &node(1)).unwrap();
        assert!(!map.covers_all());
        assert_eq!(map.owner(11), None);
        assert!(SlotMap::from_cluster_slots(
            b"-ERR This instance has cluster support disabled\r\n",
            &node(1)
        )
        .unwrap_err()
        .contains("cluster support disabled"));
        assert!(SlotMap::from_cluster_slots(b"*1\r\n:5\r\n", &node(1)).is_err());
        assert!(
            SlotMap::from_cluster_slots(b"*1\r\n*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", &node(1))
                .is_err()
        );
        assert!(SlotMap::from_cluster_slots(b"*5\r\n", &node(1)).is_err());
        // Nothing a node sends panics or overflows the stack.
        assert_eq!(Value::parse(b"\r\n"), None);
        assert_eq!(Value::parse(b"*1\r\n\r\n"), None);
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(Value::parse(&deep), None);
        assert!(SlotMap::from_cluster_slots(&deep, &node(1)).is_err());
    }
}
