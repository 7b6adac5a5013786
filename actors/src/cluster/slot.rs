//! Hash slots: which of the 16384 slots a key belongs to, as Redis Cluster computes it.

pub const SLOTS: usize = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster uses; table-driven,
/// as in Redis' crc16.c.
pub fn crc16(data: &[u8]) -> u16 {
    const TABLE: [u16; 256] = {
        let mut t = [0u16; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = (i as u16) << 8;
            let mut b = 0;
            while b < 8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
                b += 1;
            }
            t[i] = crc;
            i += 1;
        }
        t
    };
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ TABLE[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// The slot of `key`: only the part between the first `{` and the next `}` is hashed when
/// that part is not empty (a "hash tag"), so related keys can share a slot.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The XMODEM check value, and the example of the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_as_redis_computes_them() {
        // Values from CLUSTER KEYSLOT on a real node.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b""), 0);
        assert_eq!(slot_of(b"somekey"), 11058);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"{user1000}.followers"), slot_of(b"user1000"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(slot_of(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(slot_of(b"foo{bar}{zap}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"{unclosed"), crc16(b"{unclosed") % 16384);
    }
}
