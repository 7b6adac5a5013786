use super::*;
use std::fmt::Write as _;

/// The plain value the fixed vectors encode (`input` in integration/fixtures/go-compress/main.go).
pub fn input(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        write!(s, "{i:05} the quick brown fox jumps; ").unwrap();
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

struct Vector {
    codec: String,
    level: u32,
    len: usize,
    data: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Vector {
                codec: f[0].to_string(),
                level: f[1].parse().unwrap(),
                len: f[2].parse().unwrap(),
                data: hex(f[3]),
            }
        })
        .collect()
}

/// Values as the original Go relayer stored them (github.com/golang/snappy, klauspost gzip).
const GO_VECTORS: &str = include_str!("../../integration/fixtures/go-compress/vectors.txt");
/// What this relayer writes for the same values; `go run main.go check` decoded each with the
/// original's libraries.
const RUST_VECTORS: &str = include_str!("../../integration/fixtures/go-compress/rust-vectors.txt");

fn bulk(v: &[u8]) -> Bytes {
    write::bulk(v)
}

#[test]
fn values_the_original_wrote_decode() {
    let v = vectors(GO_VECTORS);
    assert_eq!(v.len(), 6);
    for x in &v {
        let plain = decode_value(&x.data, usize::MAX).unwrap();
        assert_eq!(plain, input(x.len), "{} {} {}", x.codec, x.level, x.len);
        let (reply, done) = decode_reply(bulk(&x.data), 1 << 20);
        assert_eq!(reply, bulk(&input(x.len)));
        assert_eq!(done.values, 1);
    }
}

#[test]
fn snappy_output_is_the_same_bytes_as_the_originals() {
    for x in vectors(GO_VECTORS).iter().filter(|x| x.codec == "snappy") {
        assert_eq!(snappy(&input(x.len)), x.data, "snappy of {} bytes", x.len);
    }
}

/// The encoders still write the bytes the original's decoders were checked against.
#[test]
fn what_the_relayer_writes_is_what_the_original_was_checked_against() {
    let v = vectors(RUST_VECTORS);
    assert_eq!(v.len(), 6);
    for x in &v {
        let codec = match x.codec.as_str() {
            "snappy" => Codec::Snappy,
            _ => Codec::Gzip(x.level),
        };
        assert_eq!(
            codec.encode(&input(x.len)),
            x.data,
            "{} {} {}",
            x.codec,
            x.level,
            x.len
        );
    }
}

/// Prints rust-vectors.txt: `cargo test -p smart-relayer-actors print_rust_vectors -- --ignored
/// --nocapture`, then check it with the Go program.
#[test]
#[ignore]
fn print_rust_vectors() {
    println!(
        "# What smart-relayer writes (snap and flate2) for the values of vectors.txt. `go run main.go check`"
    );
    println!(
        "# decoded every line with github.com/golang/snappy and klauspost/compress gzip; the snappy lines"
    );
    println!(
        "# are the same bytes as golang/snappy's, the gzip ones differ (other deflate encoder, MTIME 0)."
    );
    println!("# codec level plain_len hex");
    for (name, codec, level) in [
        ("snappy", Codec::Snappy, 0),
        ("gzip", Codec::Gzip(1), 1),
        ("gzip", Codec::Gzip(9), 9),
    ] {
        for n in [300, 10000] {
            let h: String = codec
                .encode(&input(n))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("{name} {level} {n} {h}");
        }
    }
}

fn args(cmd: &Command) -> Vec<Vec<u8>> {
    cmd.args().map(<[u8]>::to_vec).collect()
}

fn command(a: &[&[u8]]) -> Command {
    Command::from_args(a)
}

/// `cmd` as a session compresses it, with its entry in the command table.
fn compressed(c: &Compression, cmd: Command) -> Command {
    let spec = crate::command::lookup(cmd.arg(0));
    c.compress_command(cmd, spec)
}

#[test]
fn snappy_compresses_arguments_longer_than_256_bytes() {
    let c = Compression {
        writes: Some(Codec::Snappy),
    };
    let at = vec![b'a'; 256];
    let over = vec![b'b'; 257];
    let out = compressed(&c, command(&[b"SET", &at, &over]));
    let a = args(&out);
    assert_eq!(a[1], at);
    assert_eq!(a[2], snappy(&over));
    assert!(a[2].starts_with(b"$sy$"));
    // Nothing to compress: the frame as the client sent it.
    let same = command(&[b"SET", b"k", &at]);
    assert_eq!(compressed(&c, same.clone()).frame(), same.frame());
}

#[test]
fn gzip_compresses_arguments_of_256_bytes_and_more() {
    let c = Compression {
        writes: Some(Codec::Gzip(1)),
    };
    let under = vec![b'a'; 255];
    let at = vec![b'b'; 256];
    let a = args(&compressed(&c, command(&[b"SET", &under, &at])));
    assert_eq!(a[1], under);
    assert!(a[2].starts_with(GZIP_MAGIC));
    assert_eq!(decode_value(&a[2], usize::MAX).unwrap(), at);
}

#[test]
fn every_argument_is_compressed_keys_and_names_included_but_not_scripts() {
    let c = Compression {
        writes: Some(Codec::Snappy),
    };
    let long = input(300);
    let a = args(&compressed(&c, command(&[&long, &long, b"v"])));
    assert_eq!(
        (a[0].clone(), a[1].clone(), a[2].clone()),
        (snappy(&long), snappy(&long), b"v".to_vec())
    );
    for name in [
        &b"EVAL"[..],
        b"evalsha",
        b"EVAL_RO",
        b"EvalSha_RO",
        b"FCALL",
        b"fcall_ro",
        b"SCRIPT",
        b"function",
    ] {
        let cmd = command(&[name, &long, b"1", &long]);
        assert_eq!(
            compressed(&c, cmd.clone()),
            cmd,
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    // Decoding only: requests go as sent.
    let cmd = command(&[b"SET", b"k", &long]);
    assert_eq!(compressed(&Compression { writes: None }, cmd.clone()), cmd);
}

#[test]
fn nested_arrays_are_decoded_at_any_depth() {
    let v = input(300);
    let s = snappy(&v);
    let g = gzip(9, &v);
    // EXEC of [GET, HSCAN]: *2 [ $v, *2 [ cursor, *4 [f, v, f, v] ] ]
    let mut r = BytesMut::new();
    write::put_array_header(&mut r, 3);
    write::put_bulk(&mut r, &s);
    write::put_array_header(&mut r, 2);
    write::put_bulk(&mut r, b"0");
    write::put_array_header(&mut r, 4);
    write::put_bulk(&mut r, b"f1");
    write::put_bulk(&mut r, &g);
    write::put_bulk(&mut r, b"f2");
    r.extend_from_slice(b"$-1\r\n");
    r.extend_from_slice(b":7\r\n");
    let (out, done) = decode_reply(r.freeze(), 1 << 20);
    let mut want = BytesMut::new();
    write::put_array_header(&mut want, 3);
    write::put_bulk(&mut want, &v);
    write::put_array_header(&mut want, 2);
    write::put_bulk(&mut want, b"0");
    write::put_array_header(&mut want, 4);
    write::put_bulk(&mut want, b"f1");
    write::put_bulk(&mut want, &v);
    write::put_bulk(&mut want, b"f2");
    want.extend_from_slice(b"$-1\r\n");
    want.extend_from_slice(b":7\r\n");
    assert_eq!(out, want.freeze());
    assert_eq!(
        done,
        Decoded {
            values: 2,
            over_cap: 0
        }
    );
}

#[test]
fn invalid_data_after_a_marker_passes_through() {
    let mut bad_snappy = b"$sy$".to_vec();
    bad_snappy.extend_from_slice(&[0xff; 20]);
    let mut bad_gzip = gzip(1, &input(300));
    let n = bad_gzip.len();
    bad_gzip[n - 8] ^= 1; // CRC
    let mut trailing = gzip(1, &input(300));
    trailing.extend_from_slice(b"junk");
    for v in [&b"$sy$"[..], &bad_snappy, &[0x1f, 0x8b], &bad_gzip, &trailing] {
        let reply = bulk(v);
        let (out, done) = decode_reply(reply.clone(), 1 << 20);
        assert_eq!(out, reply);
        assert_eq!(done, Decoded::default());
    }
}

#[test]
fn replies_without_markers_are_the_same_bytes() {
    for r in [
        &b"+OK\r\n"[..],
        b"$5\r\nhello\r\n",
        b"*2\r\n$1\r\na\r\n:1\r\n",
        b"-ERR x\r\n",
        b"*-1\r\n",
    ] {
        let reply = Bytes::copy_from_slice(r);
        let (out, _) = decode_reply(reply.clone(), 1 << 20);
        assert_eq!(out.as_ptr(), reply.as_ptr());
    }
    // A marker outside a bulk string (here a status line) is not a value.
    let status = Bytes::from_static(b"+$sy$abc\r\n");
    assert_eq!(decode_reply(status.clone(), 1 << 20).0, status);
}

#[test]
fn decoded_size_is_bounded_per_reply() {
    // A gzip bomb: 8 MiB of zeros in a few KB.
    let bomb = gzip(9, &vec![0; 8 << 20]);
    assert!(bomb.len() < 16 << 10);
    let reply = bulk(&bomb);
    let (out, done) = decode_reply(reply.clone(), 1 << 20);
    assert_eq!(out, reply);
    assert_eq!(
        done,
        Decoded {
            values: 0,
            over_cap: 1
        }
    );
    // snappy declares its length up front: refused before decoding.
    let big = snappy(&vec![0; 2 << 20]);
    let (out, done) = decode_reply(bulk(&big), 1 << 20);
    assert_eq!(out, bulk(&big));
    assert_eq!(done.over_cap, 1);
    // The bound is for the whole reply: the first value fits, the second does not.
    let v = input(600);
    let mut r = BytesMut::new();
    write::put_array_header(&mut r, 2);
    write::put_bulk(&mut r, &snappy(&v));
    write::put_bulk(&mut r, &snappy(&v));
    let (out, done) = decode_reply(r.freeze(), 1000);
    let mut want = BytesMut::new();
    write::put_array_header(&mut want, 2);
    write::put_bulk(&mut want, &v);
    write::put_bulk(&mut want, &snappy(&v));
    assert_eq!(out, want.freeze());
    assert_eq!(
        done,
        Decoded {
            values: 1,
            over_cap: 1
        }
    );
}
