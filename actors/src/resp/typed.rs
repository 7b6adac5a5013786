//! Replies to the relayer's own queries (CLUSTER SLOTS, INFO, COMMAND), decoded into typed
//! values with redis-async's RESP codec: the project's specified Redis client, a maintained
//! codec. Only ever given one complete reply that the reply scanner framed; never what
//! clients send, nor the replies relayed to them. A RESP3 reply (from a connection that said
//! `HELLO 3`) is first written in RESP2's forms (`resp2`), which the codec reads: a map as a
//! flat array of pairs, a set or push as an array, a null as a null bulk string, as Redis
//! itself writes them in RESP2.

use super::reply::find_crlf;
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
    let reply = resp2_forms(reply).ok_or("reply not valid RESP")?;
    let reply = &reply[..];
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

/// `b` with its RESP3 types written as RESP2 has them (maps as arrays of pairs, sets and pushes
/// as arrays, null as a null bulk string, booleans as 1 and 0, doubles, big numbers and
/// verbatim strings as bulk strings, blob errors as error lines); None when it is not RESP (an
/// attribute, which only a debugging server sends, included).
fn resp2_forms(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut at = 0;
    while at < b.len() {
        let eol = at + find_crlf(&b[at..]).filter(|&e| e > 0)?;
        let (kind, line) = (b[at], &b[at + 1..eol]);
        let start = at;
        at = eol + 2;
        let n = || std::str::from_utf8(line).ok()?.parse::<i64>().ok();
        // A payload of `len` bytes and its CRLF, after the header.
        let payload = |at: usize, len: i64| -> Option<&[u8]> {
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            (b.get(end..end + 2)? == b"\r\n").then(|| &b[at..end])
        };
        match kind {
            b'+' | b'-' | b':' | b'*' => out.extend_from_slice(&b[start..at]),
            b'$' => {
                let len = n()?;
                out.extend_from_slice(&b[start..at]);
                if len >= 0 {
                    out.extend_from_slice(payload(at, len)?);
                    out.extend_from_slice(b"\r\n");
                    at += len as usize + 2;
                }
            }
            b'%' => out.extend_from_slice(format!("*{}\r\n", n()?.checked_mul(2)?).as_bytes()),
            b'~' | b'>' => out.extend_from_slice(format!("*{}\r\n", n()?).as_bytes()),
            b'_' if line.is_empty() => out.extend_from_slice(b"$-1\r\n"),
            b'#' if line == b"t" => out.extend_from_slice(b":1\r\n"),
            b'#' if line == b"f" => out.extend_from_slice(b":0\r\n"),
            b',' | b'(' => {
                out.extend_from_slice(format!("${}\r\n", line.len()).as_bytes());
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            // Verbatim: `=<len>\r\n<fmt>:<text>\r\n`, the text as a bulk string.
            b'=' => {
                let len = n()?;
                let text = payload(at, len)?.get(4..)?;
                out.extend_from_slice(format!("${}\r\n", text.len()).as_bytes());
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
                at += len as usize + 2;
            }
            b'!' => {
                let len = n()?;
                let text = payload(at, len)?;
                out.push(b'-');
                out.extend(
                    text.iter()
                        .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
                );
                out.extend_from_slice(b"\r\n");
                at += len as usize + 2;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Walks the headers of `b` without decoding anything: false when arrays nest deeper than
/// `max`, or when `b` is not RESP the codec could read.
fn depth_within(b: &[u8], max: usize) -> bool {
    // Elements still owed by each open array, innermost last.
    let mut open: Vec<i64> = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&b[at..]).filter(|&e| e > 0) else {
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
    fn resp3_replies_decode_as_their_resp2_forms() {
        let hello = b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n";
        let bulk = |s: &str| RespValue::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            decode(hello).unwrap(),
            RespValue::Array(vec![
                bulk("server"),
                bulk("redis"),
                bulk("proto"),
                RespValue::Integer(3),
                bulk("modules"),
                RespValue::Array(vec![]),
            ])
        );
        // INFO as RESP3 writes it: a verbatim string whose text follows `txt:`.
        assert_eq!(
            decode(b"=19\r\ntxt:redis_version:7\r\n").unwrap(),
            bulk("redis_version:7")
        );
        assert_eq!(
            decode(b"*6\r\n_\r\n#t\r\n#f\r\n,1.5\r\n(12345678901234567890\r\n~1\r\n>1\r\n$1\r\n\r\r\n")
                .unwrap(),
            RespValue::Array(vec![
                RespValue::Nil,
                RespValue::Integer(1),
                RespValue::Integer(0),
                bulk("1.5"),
                bulk("12345678901234567890"),
                RespValue::Array(vec![RespValue::Array(vec![bulk("\r")])]),
            ])
        );
        assert_eq!(
            decode(b"!10\r\nERR a\r\nb c\r\n").unwrap(),
            RespValue::Error("ERR a  b c".into())
        );
        // An attribute, and truncated payloads, are not decoded.
        assert!(decode(b"|1\r\n+a\r\n+b\r\n+c\r\n").is_err());
        assert!(decode(b"=10\r\ntxt:ab\r\n").is_err());
        assert!(decode(b"%2\r\n+a\r\n").is_err());
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
