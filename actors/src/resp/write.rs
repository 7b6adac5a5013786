//! Replies the relayer builds itself: small, and off the forwarding path.
use bytes::{BufMut, Bytes, BytesMut};

pub const OK: &[u8] = b"+OK\r\n";
pub const QUEUED: &[u8] = b"+QUEUED\r\n";
pub const PONG: &[u8] = b"+PONG\r\n";
pub const NIL: &[u8] = b"$-1\r\n";

/// A null, as RESP3 (`resp3`) or RESP2 writes it.
pub fn null(resp3: bool) -> &'static [u8] {
    if resp3 {
        b"_\r\n"
    } else {
        NIL
    }
}
/// The UNWATCH command, as the relayer sends it to a client's own connection.
pub const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";

/// `-<text>\r\n`, with CR and LF in the text replaced so the reply stays one line.
pub fn error(text: &str) -> Bytes {
    error_of(text.as_bytes())
}

/// `error` of bytes that need not be UTF-8 (a client's arguments quoted as they came).
pub fn error_of(text: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(text.len() + 3);
    b.put_u8(b'-');
    for &c in text {
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

/// Redis' text for a command it does not know: the name and the first arguments, each cut so
/// that the quote stays within 128 bytes, as Redis cuts them.
pub fn unknown_command(args: &[&[u8]]) -> Bytes {
    const QUOTED: usize = 128;
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(&args[0][..args[0].len().min(QUOTED)]);
    text.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = 0;
    for a in &args[1..] {
        if quoted >= QUOTED {
            break;
        }
        let room = QUOTED - quoted;
        let part = &a[..a.len().min(room)];
        text.push(b'\'');
        text.extend_from_slice(part);
        text.extend_from_slice(b"' ");
        quoted += part.len() + 3;
    }
    error_of(&text)
}

/// Redis' text for a subcommand its command does not have.
pub fn unknown_subcommand(command: &[u8], sub: &[u8]) -> Bytes {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(&sub[..sub.len().min(128)]);
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(&command.to_ascii_uppercase());
    text.extend_from_slice(b" HELP.");
    error_of(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_frame() {
        assert_eq!(&select(0)[..], b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n");
        assert_eq!(&select(15)[..], b"*2\r\n$6\r\nSELECT\r\n$2\r\n15\r\n");
    }

    #[test]
    fn unknown_names_quoted_as_redis_quotes_them() {
        assert_eq!(
            &unknown_command(&[b"NOSUCHCMD", b"x", b"y"])[..],
            b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' 'y' \r\n"
        );
        assert_eq!(
            &unknown_command(&[b"nope"])[..],
            b"-ERR unknown command 'nope', with args beginning with: \r\n"
        );
        // 200 bytes of argument: 128 quoted, and nothing after it.
        let long = vec![b'a'; 200];
        let reply = unknown_command(&[b"x", &long, b"more"]);
        let want = format!(
            "-ERR unknown command 'x', with args beginning with: '{}' \r\n",
            "a".repeat(128)
        );
        assert_eq!(&reply[..], want.as_bytes());
        assert_eq!(
            &unknown_subcommand(b"config", b"NOSUCH")[..],
            b"-ERR unknown subcommand 'NOSUCH'. Try CONFIG HELP.\r\n"
        );
    }
}
