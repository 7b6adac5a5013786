//! The slot map: which master serves each slot, read from a node's CLUSTER SLOTS reply.

use super::slot::SLOTS;
use crate::resp::typed::{self, RespValue};

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
        let ranges = typed::array(typed::decode(reply)?, "CLUSTER SLOTS reply")?;
        let mut by_slot = vec![None; SLOTS];
        let mut replicas = Vec::new();
        // Host and port of a node entry ([host, port, id, ...]); None for one without them.
        let host_port = |v: &RespValue| -> Option<(String, i64)> {
            let RespValue::Array(n) = v else { return None };
            Some((typed::text(n.first()?)?, typed::int(n.get(1)?)?))
        };
        for range in ranges {
            let RespValue::Array(parts) = range else {
                return Err("CLUSTER SLOTS range is not an array".into());
            };
            let (Some(start), Some(end), Some(master)) = (
                parts.first().and_then(typed::int),
                parts.get(1).and_then(typed::int),
                parts.get(2),
            ) else {
                return Err("CLUSTER SLOTS range without start, end and master".into());
            };
            let (host, port) = host_port(master).ok_or("CLUSTER SLOTS master without host and port")?;
            let node = Node {
                host: if host.is_empty() || host == "?" {
                    asked.host.clone()
                } else {
                    host
                },
                port: u16::try_from(port).map_err(|_| format!("bad port {port}"))?,
            };
            if !(0..SLOTS as i64).contains(&start) || !(start..SLOTS as i64).contains(&end) {
                return Err(format!("bad slot range {start}-{end}"));
            }
            for slot in start..=end {
                by_slot[slot as usize] = Some(node.clone());
            }
            for (host, port) in parts.iter().skip(3).filter_map(host_port) {
                if let (false, Ok(port)) = (host.is_empty() || host == "?", u16::try_from(port)) {
                    replicas.push(Node { host, port });
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
        assert!(SlotMap::from_cluster_slots(b"\r\n", &node(1)).is_err());
        assert!(SlotMap::from_cluster_slots(b"*1\r\n\r\n", &node(1)).is_err());
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert!(SlotMap::from_cluster_slots(&deep, &node(1)).is_err());
    }
}
