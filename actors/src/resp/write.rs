//! Replies the relayer builds itself: small, and off the forwarding path.
use bytes::{BufMut, Bytes, BytesMut};

pub const OK: &[u8] = b"+OK\r\n";
pub const QUEUED: &[u8] = b"+QUEUED\r\n";
pub const PONG: &[u8] = b"+PONG\r\n";
pub const NIL: &[u8] = b"$-1\r\n";

/// `-<text>\r\n`, with CR and LF in the text replaced so the reply stays one line.
pub fn error(text: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(text.len() + 3);
    b.put_u8(b'-');
    for c in text.bytes() {
        b.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
    }
    b.put_slice(b"\r\n");
    b.freeze()
}

pub fn bulk(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut b, data);
    b.freeze()
}

pub fn put_bulk(b: &mut BytesMut, data: &[u8]) {
    b.put_u8(b'$');
    b.put_slice(data.len().to_string().as_bytes());
    b.put_slice(b"\r\n");
    b.put_slice(data);
    b.put_slice(b"\r\n");
}

pub fn put_int(b: &mut BytesMut, n: i64) {
    b.put_u8(b':');
    b.put_slice(n.to_string().as_bytes());
    b.put_slice(b"\r\n");
}

pub fn put_array_header(b: &mut BytesMut, n: usize) {
    b.put_u8(b'*');
    b.put_slice(n.to_string().as_bytes());
    b.put_slice(b"\r\n");
}

/// `SELECT db`: the one frame the relayer writes to move a connection to a DB.
pub fn select(db: u32) -> Bytes {
    let db = db.to_string();
    let mut b = BytesMut::with_capacity(24 + db.len());
    put_array_header(&mut b, 2);
    put_bulk(&mut b, b"SELECT");
    put_bulk(&mut b, db.as_bytes());
    b.freeze()
}

/// Redis' text for a command called with the wrong number of arguments.
pub fn wrong_arity(name: &[u8]) -> Bytes {
    error(&format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_frame() {
        assert_eq!(&select(0)[..], b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n");
        assert_eq!(&select(15)[..], b"*2\r\n$6\r\nSELECT\r\n$2\r\n15\r\n");
    }
}
