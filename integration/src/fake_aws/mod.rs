//! What the fault-injecting AWS endpoints (`fake_firehose`, `fake_kinesis`, `fake_sqs`) share:
//! the HTTP/1.1 server (`server`: 127.0.0.1, std threads, one per connection, keep-alive,
//! `Content-Length` and chunked request bodies, `Expect: 100-continue`, going down and up on
//! the same port), the answers of the AWS JSON protocols (`http`), and the faults: what to get
//! wrong ([`Faults`]), drawn the same way for every service, and how a call was answered
//! ([`Outcome`]).
//!
//! Each fake stores what it accepts when it decides the answer, before the delay: a client that
//! gives up on a slow call and sends it again makes duplicates, as with the real services.

pub(crate) mod http;
mod server;

pub use server::Endpoint;
pub(crate) use server::{Protocol, Service};

use crate::Rng;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A fake's state, locked by each request it answers and each look the test takes.
pub(crate) struct Shared<S>(Mutex<S>);

impl<S> Shared<S> {
    pub fn new(state: S) -> Arc<Shared<S>> {
        Arc::new(Shared(Mutex::new(state)))
    }

    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an endpoint does wrong, from the next call on. Fractions are in 0.0..=1.0 and drawn from
/// a deterministic generator seeded with `seed`; a call is first checked for `not_found`, then
/// `throttle`, then `server_error`, then `unavailable`, and only a call that passes all four has
/// its entries failed at the rate `fail_entries`. What each fault is answered with is the
/// service's own (see each fake's module documentation).
#[derive(Debug, Clone)]
pub struct Faults {
    /// Fraction of the entries of a successful call answered with an entry error (not stored).
    pub fail_entries: f64,
    /// Fraction of calls answered HTTP 400 with the service's throttling error (nothing stored).
    pub throttle: f64,
    /// Fraction of calls answered HTTP 500 `InternalFailure` (nothing stored).
    pub server_error: f64,
    /// Fraction of calls answered HTTP 503 (nothing stored).
    pub unavailable: f64,
    /// Fraction of calls answered HTTP 400 as for a stream or queue that does not exist (nothing
    /// stored).
    pub not_found: f64,
    /// The faults apply to this many calls that carry records or messages from `set_faults` on,
    /// then none (the delay included); None: to every call.
    pub calls: Option<usize>,
    /// Wait before answering any request (the outcome, and the storing, is decided before).
    pub delay: Duration,
    pub seed: u64,
}

impl Default for Faults {
    /// No faults.
    fn default() -> Faults {
        Faults {
            fail_entries: 0.0,
            throttle: 0.0,
            server_error: 0.0,
            unavailable: 0.0,
            not_found: 0.0,
            calls: None,
            delay: Duration::ZERO,
            seed: 1,
        }
    }
}

/// How a call that carries records or messages was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200; `failed` entries answered with an error (the others stored, or deduplicated).
    Ok { failed: usize },
    /// HTTP 400, the service's throttling error.
    Throttled,
    /// HTTP 500 InternalFailure.
    ServerError,
    /// HTTP 503.
    Unavailable,
    /// HTTP 400, the stream or queue does not exist.
    NotFound,
    /// HTTP 400 for a malformed call or one over the limits (the text says why).
    Invalid(String),
}

/// One call that carried records (Firehose PutRecordBatch or PutRecord, Kinesis PutRecords) as
/// the endpoint saw it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// `PutRecordBatch`, `PutRecord` or `PutRecords`.
    pub operation: String,
    pub stream: String,
    /// Records in the call.
    pub records: usize,
    /// Bytes of the call as the service counts them against its limit: Firehose the record data
    /// (decoded), Kinesis the data and the partition keys.
    pub bytes: usize,
    /// Size of its largest record, counted the same way.
    pub max_record: usize,
    pub outcome: Outcome,
    /// Where the records of this call that were stored are in the fake's `records()` (empty if
    /// none, or if records are discarded).
    pub accepted: Range<usize>,
    /// When the request was complete.
    pub at: Instant,
    /// The region of the request's SigV4 signature; empty if unsigned.
    pub region: String,
}

/// A fault of a whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallFault {
    NotFound,
    Throttled,
    ServerError,
    Unavailable,
}

impl CallFault {
    pub fn outcome(self) -> Outcome {
        match self {
            CallFault::NotFound => Outcome::NotFound,
            CallFault::Throttled => Outcome::Throttled,
            CallFault::ServerError => Outcome::ServerError,
            CallFault::Unavailable => Outcome::Unavailable,
        }
    }
}

/// The faults in force and their generator.
pub(crate) struct FaultState {
    faults: Faults,
    rng: Rng,
}

impl FaultState {
    pub fn new() -> FaultState {
        let faults = Faults::default();
        FaultState {
            rng: Rng::new(faults.seed),
            faults,
        }
    }

    /// Replaces the faults and restarts the generator from their seed.
    pub fn set(&mut self, f: Faults) {
        self.rng = Rng::new(f.seed);
        self.faults = f;
    }

    /// The delay before answering a request arriving now.
    pub fn delay(&self) -> Duration {
        if self.faults.calls == Some(0) {
            Duration::ZERO
        } else {
            self.faults.delay
        }
    }

    /// For a call that carries records or messages (counted against `Faults::calls`): the fault
    /// drawn for the whole call, or the faults its entries are drawn under.
    pub fn for_call(&mut self) -> Result<Faults, CallFault> {
        let f = match self.faults.calls {
            Some(0) => Faults::default(),
            Some(n) => {
                self.faults.calls = Some(n - 1);
                self.faults.clone()
            }
            None => self.faults.clone(),
        };
        let drawn = [
            (f.not_found, CallFault::NotFound),
            (f.throttle, CallFault::Throttled),
            (f.server_error, CallFault::ServerError),
            (f.unavailable, CallFault::Unavailable),
        ]
        .into_iter()
        .find(|&(fraction, _)| self.draw(fraction));
        match drawn {
            Some((_, fault)) => Err(fault),
            None => Ok(f),
        }
    }

    /// True if an entry of a call under `f` (from `for_call`) is to fail.
    pub fn fail_entry(&mut self, f: &Faults) -> bool {
        self.draw(f.fail_entries)
    }

    fn draw(&mut self, fraction: f64) -> bool {
        fraction > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= fraction
    }
}

/// Splits records into lines (without `\n`); bytes after a record's last `\n` are one more line.
pub fn split_lines(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for r in records {
        let mut rest = &r[..];
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    lines.push(rest[..p].to_vec());
                    rest = &rest[p + 1..];
                }
                None => {
                    lines.push(rest.to_vec());
                    rest = &[];
                }
            }
        }
    }
    lines
}

/// Number of lines `split_lines` makes of one record.
pub fn count_lines(r: &[u8]) -> usize {
    let n = r.iter().filter(|&&b| b == b'\n').count();
    n + usize::from(!r.is_empty() && !r.ends_with(b"\n"))
}

/// A raw HTTP client for the fakes' unit tests: requests written on one keep-alive connection.
#[cfg(test)]
pub(crate) mod test_client {
    use super::http::read_line;
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    pub struct Conn {
        w: TcpStream,
        r: BufReader<TcpStream>,
    }

    /// An answer: status, headers (lowercased names), body as JSON.
    pub type Response = (u16, Vec<(String, String)>, Value);

    impl Conn {
        pub fn open(port: u16) -> Conn {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(crate::timeouts::HANG)).unwrap();
            Conn {
                w: s.try_clone().unwrap(),
                r: BufReader::new(s),
            }
        }

        /// Writes a POST to `/` with `X-Amz-Target: target` and `extra_headers` (whole lines).
        pub fn send(&mut self, target: &str, content_type: &str, body: &str, extra_headers: &str) {
            let req = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {target}\r\nContent-Type: {content_type}\r\n\
                 {extra_headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            self.w.write_all(req.as_bytes()).unwrap();
        }

        pub fn read(&mut self) -> Response {
            read_response(&mut self.r)
        }

        /// True once the server closed or reset the connection.
        pub fn closed(&mut self) -> bool {
            let mut buf = [0u8; 1];
            matches!(self.r.read(&mut buf), Ok(0) | Err(_))
        }
    }

    pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn read_response(r: &mut impl BufRead) -> Response {
        let status_line = read_line(r).unwrap().expect("a status line");
        let status: u16 = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = read_line(r).unwrap().unwrap();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_records() {
        let recs = vec![b"a\nbb\n".to_vec(), b"c".to_vec(), Vec::new(), b"\n".to_vec()];
        assert_eq!(
            split_lines(&recs),
            vec![b"a".to_vec(), b"bb".to_vec(), b"c".to_vec(), Vec::new()]
        );
        assert_eq!(recs.iter().map(|r| count_lines(r)).sum::<usize>(), 4);
    }

    #[test]
    fn faults_count_down_and_draw_in_order() {
        let mut st = FaultState::new();
        assert!(st.for_call().is_ok(), "none by default");
        st.set(Faults {
            throttle: 1.0,
            unavailable: 1.0,
            calls: Some(2),
            delay: Duration::from_millis(5),
            ..Faults::default()
        });
        assert_eq!(st.delay(), Duration::from_millis(5));
        for _ in 0..2 {
            let fault = st.for_call().unwrap_err();
            assert_eq!(fault, CallFault::Throttled, "throttle before unavailable");
        }
        assert_eq!(
            st.delay(),
            Duration::ZERO,
            "the delay ends with the counted calls"
        );
        let f = st.for_call().unwrap();
        assert!(!st.fail_entry(&f));
    }
}
