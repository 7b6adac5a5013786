//! What the tests need to know about Redis Cluster itself: hash slots (CRC16 with hash tags),
//! CLUSTER NODES lines, and MOVED/ASK redirections.

use crate::Reply;

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// A contiguous range of slots and who serves it (node indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: usize,
    /// Sorted; replicas flagged as failed are not listed (as in CLUSTER SLOTS).
    pub replicas: Vec<usize>,
}

/// One line of CLUSTER NODES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// The client port (0 while the node's address is unknown).
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, `nofailover`...
    pub flags: Vec<String>,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    pub connected: bool,
    /// Slot ranges it serves (inclusive); open migrations (`[slot->-id]`) are left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave")
    }
    /// Flagged `fail` or `fail?` (suspected), or not reachable yet (`handshake`, `noaddr`).
    pub fn is_failing(&self) -> bool {
        ["fail", "fail?", "handshake", "noaddr"]
            .iter()
            .any(|f| self.has_flag(f))
    }
}

/// Parses CLUSTER NODES output.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 8, "malformed CLUSTER NODES line: {line:?}");
            // ip:port@cport[,hostname]
            let addr = f[1].split('@').next().unwrap_or("");
            let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| {
                    let parse = |n: &str| -> u16 {
                        n.parse()
                            .unwrap_or_else(|_| panic!("bad slot {s:?} in CLUSTER NODES line {line:?}"))
                    };
                    match s.split_once('-') {
                        Some((a, b)) => (parse(a), parse(b)),
                        None => (parse(s), parse(s)),
                    }
                })
                .collect();
            NodeInfo {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(str::to_string).collect(),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                connected: f[7] == "connected",
                slots,
            }
        })
        .collect()
}

/// The hash slot of a key: CRC16-XMODEM of the key, or of its hash tag (what is between the
/// first `{` and the first `}` after it, when not empty), modulo 16384.
pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16_xmodem(hashed) % SLOTS
}

/// CRC16-CCITT as Redis uses it (XMODEM: polynomial 0x1021, initial value 0, no reflection).
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// `n` distinct keys that all hash to `slot` (`{tag}:k0`, `{tag}:k1`...).
pub fn keys_in_slot(slot: u16, n: usize) -> Vec<String> {
    assert!(slot < SLOTS, "slot {slot} out of range");
    let tag = (0u64..)
        .map(|i| format!("t{i}"))
        .find(|t| slot_of(t) == slot)
        .expect("some tag hashes to every slot");
    (0..n).map(|i| format!("{{{tag}}}:k{i}")).collect()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    Moved,
    Ask,
}

/// `-MOVED slot host:port` / `-ASK slot host:port`: the kind, slot and port.
pub fn parse_redirect(reply: &Reply) -> Option<(Redirect, u16, u16)> {
    parse_redirect_text(reply.error_text()?)
}

/// `parse_redirect` of an error reply's text (without the `-`).
pub fn parse_redirect_text(text: &str) -> Option<(Redirect, u16, u16)> {
    let mut parts = text.split_whitespace();
    let kind = match parts.next()? {
        "MOVED" => Redirect::Moved,
        "ASK" => Redirect::Ask,
        _ => return None,
    };
    let slot = parts.next()?.parse().ok()?;
    let port = parts.next()?.rsplit(':').next()?.parse().ok()?;
    Some((kind, slot, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis() {
        // The check value of CRC16/XMODEM, and slots from the Redis Cluster specification.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot_of("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("bar"), 5061);
        assert_eq!(slot_of(""), 0);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}".as_bytes()));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
        assert_eq!(slot_of("foo{bar}{zap}"), slot_of("bar"));
    }

    #[test]
    fn keys_in_slot_hash_there() {
        for slot in [0, 1, 5461, 16383] {
            let keys = keys_in_slot(slot, 5);
            assert_eq!(keys.len(), 5);
            assert!(keys.iter().all(|k| slot_of(k) == slot), "{keys:?}");
        }
    }

    #[test]
    fn parses_cluster_nodes_and_redirects() {
        let text = "\
3fe8 127.0.0.1:17005@27005 slave 00bd 0 1795556599101 1 connected
96af 127.0.0.1:17002@27002 master,fail? - 0 1795556599101 2 disconnected 5461-10922 11000
00bd 127.0.0.1:17001@27001,host myself,master - 0 1795556598000 1 connected 0-5460 [5460->-96af]
";
        let n = parse_cluster_nodes(text);
        assert_eq!(n.len(), 3);
        assert!(n[0].is_replica() && n[0].master_id.as_deref() == Some("00bd") && n[0].port == 17005);
        assert!(n[1].is_master() && n[1].is_failing() && !n[1].connected);
        assert_eq!(n[1].slots, vec![(5461, 10922), (11000, 11000)]);
        assert!(n[2].has_flag("myself") && n[2].slots == vec![(0, 5460)] && n[2].port == 17001);
        assert_eq!(
            parse_redirect(&Reply::error("MOVED 3999 127.0.0.1:6381")),
            Some((Redirect::Moved, 3999, 6381))
        );
        assert_eq!(
            parse_redirect(&Reply::error("ASK 3999 127.0.0.1:6381")),
            Some((Redirect::Ask, 3999, 6381))
        );
        assert_eq!(parse_redirect(&Reply::error("ERR x")), None);
    }
}
