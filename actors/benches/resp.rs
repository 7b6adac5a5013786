//! Micro-benchmarks of the two parsers on the hot path: the request parser (every client
//! command) and the reply scanner (every backend reply). Run with
//! `cargo bench -p smart-relayer-actors --bench resp`.
//!
//! Each iteration copies the input into a fresh buffer and parses all of it, the way a read
//! from a socket hands bytes to the codec; the copy is part of what is measured, and the same
//! in every case.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relayer_actors::resp::reply::ReplyScanner;
use relayer_actors::resp::request::{Command, Limits, RequestParser};
use std::hint::black_box;
use tokio_util::codec::Decoder;

fn set_frame(key: &str, value_len: usize) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    Command::from_args(&[b"SET".as_slice(), key.as_bytes(), &value])
        .frame()
        .to_vec()
}

fn bulk_reply(len: usize) -> Vec<u8> {
    let mut r = format!("${len}\r\n").into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    r.extend_from_slice(b"\r\n");
    r
}

/// Parses every command of `input`, checking how many there were.
fn parse_all(input: &[u8], expected: usize) {
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(input);
    let mut n = 0;
    while let Some(cmd) = parser.decode(&mut buf).expect("valid request") {
        black_box(&cmd);
        n += 1;
    }
    assert_eq!(n, expected);
}

/// Scans every reply of `input`, checking how many there were.
fn scan_all(input: &[u8], expected: usize) {
    let mut scanner = ReplyScanner::default();
    let mut buf = BytesMut::from(input);
    let mut n = 0;
    while let Some(reply) = scanner.decode(&mut buf).expect("valid reply") {
        black_box(&reply);
        n += 1;
    }
    assert_eq!(n, expected);
}

fn bench_group(c: &mut Criterion, group: &str, cases: &[(&str, Vec<u8>, usize)], run: fn(&[u8], usize)) {
    let mut g = c.benchmark_group(group);
    for (name, input, count) in cases {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(*name, |b| b.iter(|| run(black_box(input), *count)));
    }
    g.finish();
}

fn request_parser(c: &mut Criterion) {
    let pipeline: Vec<u8> = (0..16)
        .flat_map(|i| set_frame(&format!("key:{i:012}"), 100))
        .collect();
    let cases = [
        ("set_100b", set_frame("key:000000012345", 100), 1),
        ("pipeline_16_set_100b", pipeline, 16),
        ("set_10kb", set_frame("key:000000012345", 10 * 1024), 1),
        ("inline_set", b"SET key:000000012345 somevalue\r\n".to_vec(), 1),
    ];
    bench_group(c, "request_parser", &cases, parse_all);
}

fn reply_scanner(c: &mut Criterion) {
    // A 3-element array whose middle element is a 2-element array, as EXEC or SCAN return.
    let nested = b"*3\r\n:1\r\n*2\r\n$3\r\nfoo\r\n$-1\r\n+OK\r\n".to_vec();
    let pipeline: Vec<u8> = (0..16).flat_map(|_| bulk_reply(100)).collect();
    let cases = [
        ("status_ok", b"+OK\r\n".to_vec(), 1),
        ("bulk_100b", bulk_reply(100), 1),
        ("bulk_10kb", bulk_reply(10 * 1024), 1),
        ("nested_array", nested, 1),
        ("pipeline_16_bulk_100b", pipeline, 16),
    ];
    bench_group(c, "reply_scanner", &cases, scan_all);
}

criterion_group!(benches, request_parser, reply_scanner);
criterion_main!(benches);
