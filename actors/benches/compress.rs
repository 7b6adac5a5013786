//! What compression costs per command (compress.rs): compressing a SET's arguments, and
//! checking or decoding a reply. Run with `cargo bench -p smart-relayer-actors --bench compress`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relayer_actors::compress::{decode_reply, gzip, snappy, Codec, Compression};
use relayer_actors::resp::request::Command;
use relayer_actors::resp::write;
use std::hint::black_box;

/// Text-like values, as compressible as the fixed vectors of the tests.
fn value(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{i:05} the quick brown fox jumps; "));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("compress_command");
    for len in [100, 10_000] {
        let cmd = Command::from_args(&[b"SET".as_slice(), b"key:000001", &value(len)]);
        g.throughput(Throughput::Bytes(len as u64));
        for (name, codec) in [
            ("snappy", Codec::Snappy),
            ("gzip1", Codec::Gzip(1)),
            ("gzip9", Codec::Gzip(9)),
        ] {
            let comp = Compression { writes: Some(codec) };
            g.bench_function(format!("{name}/{len}"), |b| {
                let spec = relayer_actors::command::lookup(b"SET");
                b.iter(|| black_box(comp.compress_command(black_box(cmd.clone()), spec)))
            });
        }
    }
    g.finish();
}

fn replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_reply");
    for len in [100, 10_000] {
        let v = value(len);
        g.throughput(Throughput::Bytes(len as u64));
        let cases = [
            ("plain", write::bulk(&v)),
            ("snappy", write::bulk(&snappy(&v))),
            ("gzip", write::bulk(&gzip(1, &v))),
        ];
        for (name, reply) in cases {
            g.bench_function(format!("{name}/{len}"), |b| {
                b.iter(|| black_box(decode_reply(black_box(Bytes::clone(&reply)), 1 << 29)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
