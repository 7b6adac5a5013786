//! Compression compatible with the original relayer: values stored in its formats (snappy
//! behind `$sy$`, gzip) through the relayer, read back plain, and values the original wrote
//! (fixed vectors made with its Go libraries) read back plain; scripts never compressed; the
//! 256-byte boundaries; the bound on decoded sizes; config errors.

use integration::timeouts::HANG;
use integration::*;
use std::fmt::Write as _;

/// Values as the original Go relayer stored them: see fixtures/go-compress/main.go.
const GO_VECTORS: &str = include_str!("../../fixtures/go-compress/vectors.txt");

/// The plain value of the vectors (`input` in fixtures/go-compress/main.go).
fn input(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        write!(s, "{i:05} the quick brown fox jumps; ").unwrap();
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

/// (codec, level, plain length, stored bytes)
fn go_vectors() -> Vec<(String, u32, usize, Vec<u8>)> {
    GO_VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = f[3];
            let data = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                data,
            )
        })
        .collect()
}

fn go_snappy(len: usize) -> Vec<u8> {
    go_vectors()
        .into_iter()
        .find(|v| v.0 == "snappy" && v.2 == len)
        .unwrap()
        .3
}

fn stored(redis: &Redis, key: &[u8]) -> Vec<u8> {
    let value: Option<Vec<u8>> = redis
        .backend_client()
        .query(&[&b"GET"[..], key])
        .unwrap_or_else(|e| panic!("{e}"));
    value.unwrap_or_else(|| panic!("GET {} directly: nil", String::from_utf8_lossy(key)))
}

/// A flat field-value array as sorted pairs: hash order is Redis' own.
fn pairs(r: &Reply) -> Vec<(Reply, Reply)> {
    let a = r.as_array().unwrap_or_else(|| panic!("not an array: {r:?}"));
    let mut p: Vec<(Reply, Reply)> = a.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
    p.sort_by_key(|(f, _)| f.as_bytes().unwrap().to_vec());
    p
}

/// HSCAN's reply: cursor 0 and the sorted pairs.
fn scan_pairs(r: &Reply) -> Vec<(Reply, Reply)> {
    let a = r.as_array().unwrap_or_else(|| panic!("not an array: {r:?}"));
    assert_eq!(a[0], Reply::bulk(b"0"));
    pairs(&a[1])
}

/// Reads of every shape give the plain values back: GET, MGET, HGETALL, LRANGE, HSCAN, and
/// EXEC with arrays nested in arrays.
fn assert_reads_plain(c: &mut Client, v: &[u8], w: &[u8]) {
    assert_eq!(c.cmd(&[&b"GET"[..], b"c:k"]), Reply::bulk(v));
    assert_eq!(
        c.cmd(&[&b"MGET"[..], b"c:k", b"c:small", b"c:missing"]),
        Reply::array(vec![Reply::bulk(v), Reply::bulk(b"small"), Reply::Nil])
    );
    let hash = vec![
        (Reply::bulk(b"f1"), Reply::bulk(v)),
        (Reply::bulk(b"f2"), Reply::bulk(w)),
    ];
    assert_eq!(pairs(&c.cmd(&[&b"HGETALL"[..], b"c:h"])), hash);
    let list = Reply::array(vec![Reply::bulk(v), Reply::bulk(w)]);
    assert_eq!(c.cmd(&[&b"LRANGE"[..], b"c:l", b"0", b"-1"]), list);
    assert_eq!(scan_pairs(&c.cmd(&[&b"HSCAN"[..], b"c:h", b"0"])), hash);
    let got = c.pipeline(&[
        vec![&b"MULTI"[..]],
        vec![b"GET", b"c:k"],
        vec![b"HSCAN", b"c:h", b"0"],
        vec![b"LRANGE", b"c:l", b"0", b"-1"],
        vec![b"EXEC"],
    ]);
    let exec = got[4].as_array().unwrap_or_else(|| panic!("EXEC: {got:?}"));
    assert_eq!(exec.len(), 3);
    assert_eq!(exec[0], Reply::bulk(v));
    assert_eq!(scan_pairs(&exec[1]), hash);
    assert_eq!(exec[2], list);
}

fn write_shapes(c: &mut Client, v: &[u8], w: &[u8]) {
    assert_eq!(c.cmd(&[&b"SET"[..], b"c:k", v]), Reply::ok());
    assert_eq!(c.cmd(&[&b"SET"[..], b"c:small", b"small"]), Reply::ok());
    assert_eq!(c.cmd(&[&b"HSET"[..], b"c:h", b"f1", v, b"f2", w]), Reply::int(2));
    assert_eq!(c.cmd(&[&b"RPUSH"[..], b"c:l", v, w]), Reply::int(2));
}

#[test]
fn snappy_values_are_stored_as_the_original_stored_them_and_read_back_plain() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "compress = true");
    let mut c = relayer.client();
    let (v, w) = (input(300), input(10000));
    write_shapes(&mut c, &v, &w);
    // The very bytes the original's golang/snappy wrote for the same values.
    assert_eq!(stored(&redis, b"c:k"), go_snappy(300));
    assert_eq!(
        redis.query::<Option<Vec<u8>>>(&["HGET", "c:h", "f2"]),
        Some(go_snappy(10000))
    );
    assert_eq!(stored(&redis, b"c:small"), b"small");
    assert_reads_plain(&mut c, &v, &w);
    // The same through the unix listener, another session.
    assert_reads_plain(&mut relayer.client_at(1), &v, &w);

    // Longer than 256 bytes is compressed, 256 is not.
    let (at, over) = (vec![b'a'; 256], vec![b'b'; 257]);
    c.cmd(&[&b"SET"[..], b"c:256", &at]);
    c.cmd(&[&b"SET"[..], b"c:257", &over]);
    assert_eq!(stored(&redis, b"c:256"), at);
    let s = stored(&redis, b"c:257");
    assert!(s.starts_with(b"$sy$") && s.len() < 257, "{}", show_bytes(&s, 40));
    assert_eq!(c.cmd(&[&b"GET"[..], b"c:257"]), Reply::bulk(&over));

    // Keys too, as the original did: a long key is stored under its compressed name, so a key
    // the original wrote is found by its plain name.
    let long_key = input(300);
    assert_eq!(c.cmd(&[&b"SET"[..], &long_key, b"x"]), Reply::ok());
    assert_eq!(stored(&redis, &go_snappy(300)), b"x");
    redis
        .client()
        .cmd(&[&b"SET"[..], &go_snappy(10000), b"written by the original"]);
    assert_eq!(
        c.cmd(&[&b"GET"[..], &input(10000)]),
        Reply::bulk(b"written by the original")
    );
}

#[test]
fn gzip_values_are_stored_compressed_and_read_back_plain() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "gzip = 1");
    let mut c = relayer.client();
    let (v, w) = (input(300), input(10000));
    write_shapes(&mut c, &v, &w);
    let s = stored(&redis, b"c:k");
    assert!(
        s.starts_with(&[0x1f, 0x8b]) && s.len() < 300,
        "{}",
        show_bytes(&s, 40)
    );
    assert_reads_plain(&mut c, &v, &w);

    // 256 bytes and more are compressed, 255 are not.
    let (under, at) = (vec![b'a'; 255], vec![b'b'; 256]);
    c.cmd(&[&b"SET"[..], b"c:255", &under]);
    c.cmd(&[&b"SET"[..], b"c:256", &at]);
    assert_eq!(stored(&redis, b"c:255"), under);
    assert!(stored(&redis, b"c:256").starts_with(&[0x1f, 0x8b]));
    assert_eq!(c.cmd(&[&b"GET"[..], b"c:256"]), Reply::bulk(&at));
}

/// Values the original wrote (snappy, gzip levels 1 and 9, made by its Go libraries) read back
/// plain through a relayer that only decodes, and as stored through one with no compression key.
#[test]
fn values_the_original_wrote_read_back_plain() {
    let redis = Redis::start();
    let vectors = go_vectors();
    let mut direct = redis.client();
    let mut hset: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"o:h".to_vec()];
    for (i, (codec, level, len, data)) in vectors.iter().enumerate() {
        let key = format!("o:{codec}:{level}:{len}");
        assert_eq!(direct.cmd(&[b"SET", key.as_bytes(), data]), Reply::ok());
        hset.push(format!("f{i}").into_bytes());
        hset.push(data.clone());
    }
    direct.cmd(&hset);
    // A marker followed by something that is not snappy or gzip.
    let bad = b"$sy$\xff\xff\xff\xff not snappy".to_vec();
    direct.cmd(&[&b"SET"[..], b"o:bad", &bad]);
    let mut bad_gz = vectors[2].3.clone();
    let n = bad_gz.len();
    bad_gz[n - 5] ^= 0xff;
    direct.cmd(&[&b"SET"[..], b"o:badgz", &bad_gz]);

    for key in ["uncompress", "gunzip"] {
        let relayer = Relayer::for_redis(&redis, &format!("{key} = true"));
        let mut c = relayer.client();
        let mut fields = vec![];
        for (i, (codec, level, len, _)) in vectors.iter().enumerate() {
            let k = format!("o:{codec}:{level}:{len}");
            assert_eq!(c.cmd(&["GET", &k]), Reply::bulk(input(*len)), "{key}: GET {k}");
            fields.push((Reply::bulk(format!("f{i}").as_bytes()), Reply::bulk(input(*len))));
        }
        assert_eq!(pairs(&c.cmd(&["HGETALL", "o:h"])), fields);
        assert_eq!(
            c.cmd(&["GET", "o:bad"]),
            Reply::bulk(&bad),
            "invalid after the marker"
        );
        assert_eq!(
            c.cmd(&["GET", "o:badgz"]),
            Reply::bulk(&bad_gz),
            "gzip with a bad CRC"
        );
        // Decoding only: what the client writes is stored as sent.
        c.cmd(&[&b"SET"[..], b"o:plain", &input(300)]);
        assert_eq!(stored(&redis, b"o:plain"), input(300));
    }
    let plain = Relayer::for_redis(&redis, "");
    assert_eq!(
        plain.client().cmd(&["GET", "o:snappy:0:300"]),
        Reply::bulk(&vectors[0].3)
    );
}

/// EVAL and EVALSHA are never compressed: the script and its keys and arguments reach Redis as
/// sent, so scripts see and store plain values. Their replies are still decoded.
#[test]
fn scripts_are_not_compressed() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "compress = true");
    let mut c = relayer.client();
    let script = format!(
        "-- {}\nredis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]",
        "x".repeat(300)
    );
    assert!(script.len() > 256);
    let v = input(300);
    assert_eq!(
        c.cmd(&[&b"EVAL"[..], script.as_bytes(), b"1", b"e:k", &v]),
        Reply::bulk(&v)
    );
    assert_eq!(stored(&redis, b"e:k"), v, "EVAL wrote the plain value");
    let sha = match redis.client().cmd(&["SCRIPT", "LOAD", &script]) {
        Reply::Bulk(b) => b,
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    let w = input(10000);
    assert_eq!(
        c.cmd(&[&b"evalsha"[..], &sha, b"1", b"e:k2", &w]),
        Reply::bulk(&w)
    );
    assert_eq!(stored(&redis, b"e:k2"), w);
    // A script reading a compressed value returns it as stored; the relayer decodes the reply.
    c.cmd(&[&b"SET"[..], b"e:c", &v]);
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "e:c"]),
        Reply::bulk(&v)
    );
}

/// Smart mode: writes acknowledged early are compressed too.
#[test]
fn smart_mode_background_writes_are_compressed() {
    let redis = Redis::start();
    for (extra, marker) in [("compress = true", &b"$sy$"[..]), ("gzip = 9", &[0x1f, 0x8b][..])] {
        let relayer = Relayer::smart(&redis.url(), extra);
        let mut c = relayer.client();
        let v = input(10000);
        assert_eq!(c.cmd(&[&b"SET"[..], b"s:k", &v]), Reply::ok());
        assert_eq!(c.cmd(&[&b"HMSET"[..], b"s:h", b"f", &v]), Reply::ok());
        assert_eq!(c.cmd(&[&b"GET"[..], b"s:k"]), Reply::bulk(&v), "{extra}");
        assert_eq!(c.cmd(&["HGET", "s:h", "f"]), Reply::bulk(&v), "{extra}");
        assert!(stored(&redis, b"s:k").starts_with(marker), "{extra}");
    }
}

/// A value that would decode to more than maxBulkLength is passed through as stored, with a
/// warning: a zip bomb in Redis cannot make the relayer allocate without bound.
#[test]
fn decoded_size_is_bounded() {
    let redis = Redis::start();
    let writer = Relayer::for_redis(&redis, "gzip = 9");
    let zeros = vec![0u8; 1 << 20];
    assert_eq!(
        writer.client().cmd(&[&b"SET"[..], b"z:bomb", &zeros]),
        Reply::ok()
    );
    let bomb = stored(&redis, b"z:bomb");
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let small = input(300);
    writer.client().cmd(&[&b"SET"[..], b"z:small", &small]);

    let tcp = tcp_listen();
    let reader = Relayer::start(&format!(
        "maxBulkLength = 65536\n{}",
        redis_entry(&tcp, &redis.url(), "gunzip = true")
    ));
    let mut c = reader.client();
    assert_eq!(c.cmd(&["GET", "z:bomb"]), Reply::bulk(&bomb));
    assert_eq!(
        c.cmd(&["MGET", "z:small", "z:bomb"]),
        Reply::array(vec![Reply::bulk(&small), Reply::bulk(&bomb)])
    );
    wait_until(HANG, "the warning", || reader.log().contains("left as stored"));
}

#[test]
fn bad_compression_keys_are_refused() {
    let listen = tcp_listen();
    for (extra, want) in [
        (
            "gzip = 10",
            "key 'gzip': 10 is not a gzip level: 1 (fastest) to 9 (smallest), or 0 for none",
        ),
        (
            "gzip = \"fast\"",
            "key 'gzip': invalid type: string \"fast\", expected an integer",
        ),
        (
            "compress = \"yes\"",
            "key 'compress': invalid type: string \"yes\", expected true or false",
        ),
        (
            "uncompress = 1",
            "key 'uncompress': invalid type: integer `1`, expected true or false",
        ),
    ] {
        let out = check_config(&redis_entry(&listen, "tcp://127.0.0.1:6379", extra));
        assert!(!out.status.success(), "{extra}: {}", out.stderr);
        assert!(
            out.stderr.contains(want) && out.stderr.contains(&listen),
            "{extra}: {}",
            out.stderr
        );
    }
    // Both codecs: the original's choice (gzip), and a warning.
    let out = check_config(&redis_entry(
        &listen,
        "tcp://127.0.0.1:6379",
        "compress = true\ngzip = 3",
    ));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("'compress' and 'gzip' are both set: writes are compressed with gzip"),
        "{}",
        out.stderr
    );
}

/// Pub/sub and blocking pops on a dedicated connection are compressed and decoded like other
/// commands: a long message is published compressed and reaches the relayer's subscribers plain
/// (RESP2 and RESP3, commands sent in pub/sub mode too), a long list value pops plain.
#[test]
fn pubsub_and_blocking_pops_are_compressed_and_decoded() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "compress = true");
    let long = input(1000);
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "ch"]).is_error());
    let mut sub3 = relayer.client();
    assert!(matches!(sub3.q("HELLO 3"), Reply::Map(_)));
    assert!(!sub3.cmd(&["SUBSCRIBE", "ch"]).is_error());
    let mut direct = redis.client();
    assert!(!direct.cmd(&["SUBSCRIBE", "ch"]).is_error());

    let mut publisher = relayer.client();
    assert_eq!(publisher.cmd(&[&b"PUBLISH"[..], b"ch", &long]), Reply::int(3));
    let plain = Reply::array(vec![
        Reply::bulk("message"),
        Reply::bulk("ch"),
        Reply::bulk(&long),
    ]);
    assert_eq!(sub.read_reply(), plain);
    assert_eq!(
        sub3.read_reply(),
        Reply::Push(vec![
            Reply::bulk("message"),
            Reply::bulk("ch"),
            Reply::bulk(&long)
        ])
    );
    let stored = direct.read_reply();
    assert!(
        matches!(stored.as_array(), Some([_, _, Reply::Bulk(b)]) if b.starts_with(b"$sy$")),
        "{stored:?}"
    );
    // A RESP3 client publishes through its own connection: compressed all the same.
    let mut pub3 = relayer.client();
    assert!(matches!(pub3.q("HELLO 3"), Reply::Map(_)));
    assert_eq!(pub3.cmd(&[&b"PUBLISH"[..], b"ch", &long]), Reply::int(3));
    assert_eq!(sub.read_reply(), plain);
    let stored = direct.read_reply();
    assert!(
        matches!(stored.as_array(), Some([_, _, Reply::Bulk(b)]) if b.starts_with(b"$sy$")),
        "{stored:?}"
    );

    let mut waiter = relayer.client();
    waiter.send(&["BLPOP", "jobs", "0"]);
    wait_until(HANG, "BLPOP blocked", || {
        redis
            .client()
            .q("CLIENT LIST")
            .as_str()
            .unwrap()
            .contains("cmd=blpop")
    });
    assert_eq!(publisher.cmd(&[&b"LPUSH"[..], b"jobs", &long]), Reply::int(1));
    assert_eq!(
        waiter.read_reply(),
        Reply::array(vec![Reply::bulk("jobs"), Reply::bulk(&long)])
    );
}
