//! The HTTP/1.1 of the fake endpoints: reading a request (`Content-Length` or chunked body,
//! `Expect: 100-continue`) and writing an answer with the headers the AWS SDKs read.

use serde_json::{json, Value};
use std::io::{self, BufRead, Read, Write};

/// Largest request head and body read (a 5 MiB Kinesis call is about 7 MB of JSON).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One HTTP request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`.
    pub fn keep_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The operation named by `X-Amz-Target: <prefix>.<operation>`, or "" for another prefix.
    pub fn operation(&self, prefix: &str) -> &str {
        self.header("x-amz-target")
            .and_then(|t| t.strip_prefix(prefix)?.strip_prefix('.'))
            .unwrap_or("")
    }

    /// The region of the request's SigV4 signature (`Credential=<key>/<date>/<region>/...` in its
    /// Authorization header); empty if unsigned.
    pub fn region(&self) -> String {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(2))
            .unwrap_or("")
            .to_string()
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads a line ending in `\n` (at most `MAX_HEAD` bytes) without the line end. `Ok(None)` at
/// EOF before any byte.
pub(crate) fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(bad("header line too long or cut"));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("header line is not UTF-8"))
}

/// Reads one request. `Ok(None)` on a clean EOF between requests. Answers
/// `Expect: 100-continue` on `w` before reading the body.
pub(crate) fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Option<Request>> {
    let request_line = loop {
        match read_line(r)? {
            None => return Ok(None),
            // Tolerate empty lines between requests (RFC 9112 2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("unsupported version {version:?}")));
    }
    let mut headers = Vec::new();
    let mut head_bytes = request_line.len();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("EOF inside the headers"))?;
        if line.is_empty() {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD {
            return Err(bad("headers too large"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        read_chunked(r, &mut req.body)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// A chunked body, its trailers skipped.
fn read_chunked(r: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let size_line = read_line(r)?.ok_or_else(|| bad("EOF in a chunk size"))?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(r)?
                .ok_or_else(|| bad("EOF in the trailers"))?
                .is_empty()
            {}
            return Ok(());
        }
        let old = body.len();
        body.resize(old + size, 0);
        r.read_exact(&mut body[old..])?;
        let end = read_line(r)?.ok_or_else(|| bad("EOF after a chunk"))?;
        if !end.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// Headers besides Content-Type, Content-Length, the request id and Connection.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    /// An error of the AWS JSON protocols: `{"__type":..,"message":..}` and the same type in
    /// `x-amzn-ErrorType`, which botocore and the AWS SDK for Rust read (either is enough).
    pub fn error(status: u16, error_type: &str, message: &str) -> Answer {
        Answer {
            status,
            headers: vec![("x-amzn-ErrorType", error_type.to_string())],
            body: json!({"__type": error_type, "message": message})
                .to_string()
                .into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `a` in one write, with `content_type` and `x-amzn-RequestId` made of `request_id`.
pub(crate) fn write_answer(
    w: &mut impl Write,
    a: &Answer,
    content_type: &str,
    request_id: u64,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: 00000000-0000-4000-8000-{:012x}\r\n",
        a.status,
        reason(a.status),
        a.body.len(),
        request_id
    );
    for (name, value) in &a.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&a.body);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_chunked_and_expect() {
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloPOST /x HTTP/1.1\r\n\
            Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        let mut r = &wire[..];
        let mut out = Vec::new();
        let a = read_request(&mut r, &mut out).unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), &a.body[..]),
            ("POST", "/", &b"hello"[..])
        );
        assert_eq!(a.header("x-a"), Some("b"));
        assert!(out.is_empty());
        let b = read_request(&mut r, &mut out).unwrap().unwrap();
        assert_eq!((b.path.as_str(), &b.body[..]), ("/x", &b"abcde"[..]));
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(read_request(&mut r, &mut out).unwrap().is_none(), "clean EOF");
        let mut cut = &wire[..30];
        assert!(
            read_request(&mut cut, &mut out).is_err(),
            "EOF inside the headers"
        );
    }

    #[test]
    fn reads_target_and_region() {
        let wire = b"POST / HTTP/1.1\r\nX-Amz-Target: AmazonSQS.SendMessageBatch\r\nAuthorization: AWS4-HMAC-SHA256 \
            Credential=AKID/20240101/eu-west-1/sqs/aws4_request, SignedHeaders=host\r\n\r\n";
        let req = read_request(&mut &wire[..], &mut Vec::new()).unwrap().unwrap();
        assert_eq!(req.operation("AmazonSQS"), "SendMessageBatch");
        assert_eq!(req.operation("Kinesis_20131202"), "");
        assert_eq!(req.region(), "eu-west-1");
    }
}
