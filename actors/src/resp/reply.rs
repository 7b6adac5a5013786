//! Reply scanner: finds where one complete backend reply ends, without decoding it, so the
//! bytes can be passed to the client as they are: replies are never decoded and re-encoded
//! on the hot path.
//!
//! Resumable with two numbers: the offset reached and how many elements are still owed. An
//! aggregate header adds its element count to what is owed, so nesting needs no stack.

use bytes::{Bytes, BytesMut};
use std::cell::Cell;
use std::io;
use std::rc::Rc;
use tokio_util::codec::Decoder;

/// Caps what a backend may declare, so a corrupt stream fails the connection instead of
/// making the relayer wait for gigabytes that will never come.
const MAX_BULK: i64 = 1 << 32;
const MAX_ELEMENTS: i64 = 1 << 32;
/// The longest status or error line by default: Redis answers any length (a script can return
/// `{ok=string.rep('x', 200000)}`), so only a stream that cannot be Redis' is refused.
pub const DEFAULT_MAX_LINE: usize = 512 * 1024 * 1024;

#[derive(Debug)]
pub struct ReplyScanner {
    pos: usize,
    owed: u64,
    /// Where the search for the end of the line at `pos` goes on: a long line arriving over
    /// many reads is searched once, not from its start at every read.
    line_scanned: usize,
    max_line: usize,
    /// The buffer length at which the bulk being read is complete (0: none is).
    bulk_end: usize,
}

/// The most room made at once for the rest of a bulk reply being read: a value up to this size
/// is read into a buffer that holds it whole, a larger one in steps of this.
const BULK_AHEAD: usize = 4 << 20;

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl ReplyScanner {
    /// A scanner that refuses status, error and header lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        ReplyScanner {
            pos: 0,
            owed: 0,
            line_scanned: 0,
            max_line,
            bulk_end: 0,
        }
    }

    /// Returns the next complete reply, split off the front of `buf`.
    pub fn scan(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if self.owed == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            self.pos = 0;
            self.owed = 1;
        }
        while self.owed > 0 {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Ok(None);
            };
            let from = self.line_scanned.max(start + 1);
            let Some(eol) = find_crlf(&buf[from..]).map(|i| from + i - (start + 1)) else {
                if buf.len() - start > self.max_line {
                    return Err(corrupt("reply line too long"));
                }
                // A '\r' at the end may be the first half of the CRLF.
                self.line_scanned = buf.len().saturating_sub(1).max(start + 1);
                return Ok(None);
            };
            self.line_scanned = 0;
            let line = &buf[start + 1..start + 1 + eol];
            let after = start + 1 + eol + 2;
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                    self.pos = after;
                    self.owed -= 1;
                }
                b'$' | b'!' | b'=' => {
                    let n = parse_int(line)?;
                    if n < 0 {
                        self.pos = after;
                    } else {
                        if n > MAX_BULK {
                            return Err(corrupt("bulk length out of range"));
                        }
                        let end = after + n as usize + 2;
                        if buf.len() < end {
                            self.bulk_end = end;
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(corrupt("bulk not terminated by CRLF"));
                        }
                        self.pos = end;
                    }
                    self.owed -= 1;
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(line)?;
                    if n > MAX_ELEMENTS {
                        return Err(corrupt("aggregate length out of range"));
                    }
                    let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                    self.pos = after;
                    self.owed = self.owed - 1 + n.max(0) as u64 * per;
                }
                other => {
                    return Err(corrupt(&format!("unexpected reply type byte 0x{other:02x}")));
                }
            }
        }
        let end = self.pos;
        self.pos = 0;
        Ok(Some(buf.split_to(end).freeze()))
    }

    /// After `scan` found a reply incomplete: makes room in `buf` for the rest of the bulk being
    /// read (up to [`BULK_AHEAD`]), so that it comes in one read and the buffer is not grown,
    /// and copied, a few KB at a time.
    pub fn make_room(&mut self, buf: &mut BytesMut) {
        let rest = std::mem::take(&mut self.bulk_end)
            .saturating_sub(buf.len())
            .min(BULK_AHEAD);
        if buf.capacity() - buf.len() < rest {
            buf.reserve(rest);
        }
    }
}

impl Decoder for ReplyScanner {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let reply = self.scan(src)?;
        if reply.is_none() {
            self.make_room(src);
        }
        Ok(reply)
    }
}

/// Every complete reply of one read at once: the target hands the replies of a run to each
/// session as one message instead of one each (see `Target::send_reply`).
#[derive(Default)]
pub struct ReplyBatches {
    scanner: ReplyScanner,
    /// An error found after some replies: given on the next call, after them.
    error: Option<io::Error>,
    /// The size of the last batch, to size a new vector at once.
    hint: usize,
    /// A vector the consumer gave back emptied, used for the next batch: none is allocated
    /// per read once it is there.
    spare: Rc<Cell<Vec<Bytes>>>,
}

impl ReplyBatches {
    pub fn new(spare: Rc<Cell<Vec<Bytes>>>, max_line: usize) -> Self {
        ReplyBatches {
            spare,
            scanner: ReplyScanner::new(max_line),
            ..Self::default()
        }
    }
}

impl Decoder for ReplyBatches {
    type Item = Vec<Bytes>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<Bytes>>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let first = match self.scanner.scan(src)? {
            Some(r) => r,
            None => {
                self.scanner.make_room(src);
                return Ok(None);
            }
        };
        let mut batch = self.spare.take();
        if batch.capacity() == 0 {
            batch.reserve(self.hint.clamp(1, 64));
        }
        batch.push(first);
        loop {
            match self.scanner.scan(src) {
                Ok(Some(r)) => batch.push(r),
                Ok(None) => {
                    self.scanner.make_room(src);
                    break;
                }
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        self.hint = batch.len();
        Ok(Some(batch))
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt reply from backend: {what}"),
    )
}

pub(crate) fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|&c| c == b'\r') {
        let at = from + i;
        match b.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn parse_int(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| corrupt("bad length"))
}

/// True when a complete reply is an error (`-...`).
pub fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

/// An error reply's text, without the `-` and the CRLF (for logs and messages).
pub fn error_text(reply: &[u8]) -> String {
    let end = reply.len().saturating_sub(2).max(1);
    String::from_utf8_lossy(reply.get(1..end).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Bytes> {
        let mut s = ReplyScanner::default();
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(r) = s.scan(&mut buf).unwrap() {
            out.push(r);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn scans_every_kind() {
        let input: &[u8] =
            b"+OK\r\n-ERR x\r\n:12\r\n$3\r\na\r\n\r\n$-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n*0\r\n%1\r\n+a\r\n+b\r\n";
        let got = all(input);
        assert_eq!(got.len(), 9);
        assert_eq!(&got[3][..], b"$3\r\na\r\n\r\n");
        assert_eq!(&got[6][..], b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n");
        assert_eq!(&got[8][..], b"%1\r\n+a\r\n+b\r\n");
    }

    #[test]
    fn batches_give_every_complete_reply_then_a_late_error() {
        let mut d = ReplyBatches::new(Rc::default(), DEFAULT_MAX_LINE);
        let mut buf = BytesMut::from(&b"+OK\r\n:1\r\n$2\r\nab\r\n$3\r\nab"[..]);
        let got = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(got, vec![&b"+OK\r\n"[..], b":1\r\n", b"$2\r\nab\r\n"]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"c\r\n+x\r\n?bad\r\n");
        let got = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(got, vec![&b"$3\r\nabc\r\n"[..], b"+x\r\n"]);
        assert!(d.decode(&mut buf).is_err());
    }

    #[test]
    fn resumes_byte_by_byte() {
        let input: &[u8] = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n+x\r\n:7\r\n";
        let mut s = ReplyScanner::default();
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(r) = s.scan(&mut buf).unwrap() {
                out.push(r);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][..], &input[..input.len() - 4]);
        assert_eq!(&out[1][..], b":7\r\n");
    }

    /// A status line of 200,000 bytes (what a script can return), arriving in pieces of 4 KiB
    /// with the CRLF split over two reads, is one reply; a line over the scanner's bound fails.
    #[test]
    fn long_lines_pass_up_to_the_bound() {
        let mut line = b"+".to_vec();
        line.extend(std::iter::repeat_n(b'x', 200_000));
        line.extend_from_slice(b"\r\n-ERR short\r\n");
        let mut s = ReplyScanner::new(300_000);
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for piece in line.chunks(4096) {
            buf.extend_from_slice(piece);
            while let Some(r) = s.scan(&mut buf).unwrap() {
                out.push(r);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), 200_003);
        assert_eq!(&out[1][..], b"-ERR short\r\n");
        let mut s = ReplyScanner::new(100_000);
        let mut buf = BytesMut::from(&line[..150_000]);
        assert!(s.scan(&mut buf).is_err());
    }

    /// A bulk reply read in pieces gets room for the rest of it at once.
    #[test]
    fn room_for_the_rest_of_a_bulk() {
        let mut d = ReplyBatches::new(Rc::default(), DEFAULT_MAX_LINE);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"+OK\r\n$100000\r\nxyz");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap(), vec![&b"+OK\r\n"[..]]);
        assert!(
            buf.capacity() - buf.len() >= 100_000 - 3 + 2,
            "{}",
            buf.capacity()
        );
        let mut s = ReplyScanner::default();
        let mut buf = BytesMut::from(&b"$100000000\r\n"[..]);
        assert!(s.decode(&mut buf).unwrap().is_none());
        let room = buf.capacity() - buf.len();
        assert!((BULK_AHEAD..2 * BULK_AHEAD).contains(&room), "{room}");
    }

    #[test]
    fn rejects_corrupt_streams() {
        for bad in [&b"?x\r\n"[..], b"$abc\r\n", b"$3\r\nabcXY", b"*99999999999\r\n"] {
            let mut buf = BytesMut::from(bad);
            assert!(ReplyScanner::default().scan(&mut buf).is_err(), "{bad:?}");
        }
    }
}
