//! Replies to the relayer's own queries (CLUSTER SLOTS, INFO, COMMAND), decoded into typed
//! values with redis-async's RESP codec: the project's specified Redis client, a maintained
//! codec. Only ever given one complete reply that the reply scanner framed; never what
//! clients send, nor the replies relayed to them.

use bytes::BytesMut;
use redis_async::resp::RespCodec;
pub use redis_async::resp::{FromResp, RespValue};
use tokio_util::codec::Decoder;

/// Arrays nested deeper than this are refused: the codec decodes nested arrays recursively,
/// so a backend's deep nesting would otherwise overflow the stack. The deepest of our queries'
/// replies (COMMAND's key specifications) nest 5 deep.
const MAX_DEPTH: usize = 16;

/// Decodes one complete reply. An error reply is `Ok(RespValue::Error)`: what it means is the
/// caller's to say.
pub fn decode(reply: &[u8]) -> Result<RespValue, String> {
    if !depth_within(reply, MAX_DEPTH) {
        return Err(format!("reply not valid RESP, or nested deeper than {MAX_DEPTH}"));
    }
    let mut buf = BytesMut::from(reply);
    match RespCodec.decode(&mut buf) {
        Ok(Some(v)) if buf.is_empty() => Ok(v),
        Ok(Some(_)) => Err("more than one reply".into()),
        Ok(None) => Err("incomplete reply".into()),
        Err(e) => Err(format!("reply not valid RESP: {e}")),
    }
}

/// Walks the headers of `b` without decoding anything: false when arrays nest deeper than
/// `max`, or when `b` is not RESP the codec could read.
fn depth_within(b: &[u8], max: usize) -> bool {
    // Elements still owed by each open array, innermost last.
    let mut open: Vec<i64> = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = memchr::memmem::find(&b[at..], b"\r\n").filter(|&e| e > 0) else {
            return false;
        };
        let (kind, line) = (b[at], &b[at + 1..at + eol]);
        at += eol + 2;
        let n = || std::str::from_utf8(line).ok()?.parse::<i64>().ok();
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => match n() {
                Some(len) if len >= 0 => match usize::try_from(len)
                    .ok()
                    .and_then(|l| l.checked_add(2))
                    .and_then(|l| at.checked_add(l))
                {
                    Some(end) if end <= b.len() => at = end,
                    _ => return false,
                },
                Some(_) => {}
                None => return false,
            },
            b'*' => match n() {
                Some(count) if count > 0 => {
                    if open.len() == max {
                        return false;
                    }
                    open.push(count);
                    continue;
                }
                Some(_) => {}
                None => return false,
            },
            _ => return false,
        }
        // One element done: close every array it completes.
        loop {
            match open.last_mut() {
                None => return at == b.len(),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// The array's elements, or Err naming `what` was expected.
pub fn array(v: RespValue, what: &str) -> Result<Vec<RespValue>, String> {
    match v {
        RespValue::Array(items) => Ok(items),
        RespValue::Error(e) => Err(e),
        other => Err(format!("{what}: not an array ({other:?})")),
    }
}

/// A bulk or status string's text (lossy), or None.
pub fn text(v: &RespValue) -> Option<String> {
    match v {
        RespValue::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RespValue::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The integer, or None.
pub fn int(v: &RespValue) -> Option<i64> {
    match v {
        RespValue::Integer(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_complete_reply() {
        let v = decode(b"*3\r\n:1\r\n$3\r\nabc\r\n*1\r\n+OK\r\n").unwrap();
        assert_eq!(
            v,
            RespValue::Array(vec![
                RespValue::Integer(1),
                RespValue::BulkString(b"abc".to_vec()),
                RespValue::Array(vec![RespValue::SimpleString("OK".into())]),
            ])
        );
        assert_eq!(decode(b"$-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(decode(b"*0\r\n").unwrap(), RespValue::Array(vec![]));
        assert_eq!(
            decode(b"-ERR unknown command 'COMMAND'\r\n").unwrap(),
            RespValue::Error("ERR unknown command 'COMMAND'".into())
        );
        // A bulk string may hold CRLFs and headers: they are data.
        assert_eq!(
            decode(b"$8\r\n*9\r\n:1\r\n\r\n").unwrap(),
            RespValue::BulkString(b"*9\r\n:1\r\n".to_vec())
        );
    }

    #[test]
    fn refuses_what_is_not_one_complete_reply() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\r\n").is_err());
        assert!(decode(b"*2\r\n:1\r\n").is_err());
        assert!(decode(b":1\r\n:2\r\n").is_err());
        assert!(decode(b"$5\r\nabc\r\n").is_err());
        assert!(decode(b"?x\r\n").is_err());
        assert!(decode(b"*x\r\n").is_err());
        // Deep nesting is refused before the codec recurses into it: no stack overflow.
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert!(decode(&deep).unwrap_err().contains("nested"));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert!(decode(&ok).is_ok());
    }
}
