//! What several test areas share that only tests need (the harness, `integration`, has what
//! starts processes, clients, polling and logs).

use integration::timeouts::HANG;
use std::io::{Read, Write};
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
