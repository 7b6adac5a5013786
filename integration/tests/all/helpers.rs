//! What several test areas share that only tests need (the harness, `integration`, has what
//! starts processes, clients, polling and logs).

use integration::log::record_field;
use integration::timeouts::HANG;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in nanoseconds since the epoch, the unit of a stream line's `_ts`.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// `GET /metrics` on 127.0.0.1:`port` (the relayer's `metricsListen`): the page, after checking
/// that it was served (200).
pub fn metrics_page(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metricsListen");
    s.set_read_timeout(Some(HANG)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200"),
        "metrics endpoint answered:\n{body}"
    );
    body
}

/// `GET /metrics` on 127.0.0.1:`port`: the value of `name{listen="<listen>"}`, None if absent.
pub fn metric(port: u16, name: &str, listen: &str) -> Option<f64> {
    let body = metrics_page(port);
    let key = format!("{name}{{listen=\"{listen}\"}}");
    body.lines()
        .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
}

/// The `name: N` fields of every log record (text log) containing `msg`, summed; and how many
/// such records there are.
pub fn sum_field(log: &str, msg: &str, name: &str) -> (u64, usize) {
    let mut sum = 0;
    let mut n = 0;
    for line in log.lines().filter(|l| l.contains(msg)) {
        n += 1;
        sum += record_field(line, name).unwrap_or(0);
    }
    (sum, n)
}

/// The lines of the dead-letter file at `path` (none if it does not exist), newlines removed,
/// each read with `parse`; panics if the file does not end with a newline or a line does not
/// parse (it is not a line the relayer would have sent).
pub fn dead_letter_lines<T>(path: &Path, parse: impl Fn(&[u8]) -> Result<T, String>) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.is_empty() {
        return Vec::new();
    }
    assert!(
        bytes.ends_with(b"\n"),
        "the dead-letter file {} does not end with a newline",
        path.display()
    );
    bytes[..bytes.len() - 1]
        .split(|&b| b == b'\n')
        .map(|l| parse(l).unwrap_or_else(|e| panic!("dead-letter file {}: {e}", path.display())))
        .collect()
}

/// The number of complete lines in the file at `path` (0 if it does not exist): a dead-letter
/// file's count.
pub fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// A line's identity in the stream fault suites: the client that sent it and its sequence
/// number.
pub type LineId = (usize, u64);

/// What an endpoint stored compared with what was acknowledged.
#[derive(Debug)]
pub struct Delivery {
    /// Lines stored.
    pub lines: usize,
    /// Extra copies (a line stored three times counts 2).
    pub duplicates: usize,
    /// Acknowledged lines not there.
    pub missing: Vec<LineId>,
    /// Lines there that were not acknowledged (refused, or never sent).
    pub unexpected: Vec<LineId>,
}

/// Parses every line an endpoint stored with `parse` (panics on a bad one: the relayer sent a
/// line other than the one acknowledged) and compares them with `acked`.
pub fn delivery<'a>(
    stored: impl IntoIterator<Item = &'a [u8]>,
    acked: &HashSet<LineId>,
    parse: impl Fn(&[u8]) -> Result<LineId, String>,
) -> Delivery {
    let mut lines = 0;
    let mut seen: HashMap<LineId, usize> = HashMap::new();
    for raw in stored {
        let id = parse(raw).unwrap_or_else(|e| panic!("the endpoint got a bad line: {e}"));
        *seen.entry(id).or_default() += 1;
        lines += 1;
    }
    let mut missing: Vec<LineId> = acked
        .iter()
        .filter(|id| !seen.contains_key(id))
        .copied()
        .collect();
    missing.sort();
    let mut unexpected: Vec<LineId> = seen.keys().filter(|id| !acked.contains(id)).copied().collect();
    unexpected.sort();
    Delivery {
        lines,
        duplicates: seen.values().map(|n| n - 1).sum(),
        missing,
        unexpected,
    }
}

/// Line ids for a message: how many, and the first ten.
pub fn show_ids(ids: &[LineId]) -> String {
    let more = if ids.len() > 10 { ", ..." } else { "" };
    format!("{} ids: {:?}{more}", ids.len(), &ids[..ids.len().min(10)])
}

/// Ok when a line's `_ts` (ns) is the time of a command sent now: within the last hour, and not
/// more than a minute ahead.
pub fn command_time(ts: u64) -> Result<(), String> {
    let now = now_ns();
    if ts > now + 60_000_000_000 || ts < now - 3_600_000_000_000 {
        return Err(format!("_ts {ts} is not the time of the command (now {now})"));
    }
    Ok(())
}
