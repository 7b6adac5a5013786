//! The Kinesis Data Streams (`protocol = "kinesis"`) and SQS (`protocol = "sqs"`) relayers end
//! to end against moto's server: every command kind, read back with GetRecords from every shard
//! and ReceiveMessage until the queue is empty, compared record by record with what was sent;
//! partition keys, per-key order on a shard, FIFO order, groups and deduplication ids; the
//! original's replies and `ignoreCommands`; the original's latest configuration file.
//!
//! Every test that reads the service back stops the relayer with SIGTERM first: it drains its
//! buffer, so the service then holds everything it will ever hold, and the comparison is exact.

use integration::log::STOPPED_OK;
use integration::moto::{Moto, QueueKind, ReceivedMessage, StreamRecord};
use integration::timeouts::EXIT;
use integration::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One stream entry on `listen` of `protocol`, its target line (`streamName = ...` or
/// `url = ...`) and moto's endpoint; flushes after 0.2 s. `extra` is appended.
fn stream_entry(protocol: &str, listen: &str, target: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[relayer]]\nprotocol = \"{protocol}\"\nlisten = \"{listen}\"\n{target}\nregion = \"us-east-1\"\n\
         endpoint = \"{endpoint}\"\nflushInterval = 0.2\n{extra}\n"
    )
}

/// SIGTERM; the relayer must exit 0 saying every acknowledged write was delivered, and that
/// `lines` lines were.
fn stop_drained(relayer: &mut Relayer, lines: usize) {
    relayer.signal(libc::SIGTERM);
    let st = relayer.wait_exit(EXIT);
    let log = relayer.log();
    assert!(st.success(), "exit {st} after SIGTERM; log:\n{log}");
    let last = log
        .lines()
        .find(|l| l.contains(STOPPED_OK))
        .unwrap_or_else(|| panic!("no '{STOPPED_OK}' in the log:\n{log}"));
    assert!(
        last.contains(&format!("lines_delivered: {lines}")),
        "the stop line must count {lines} lines delivered: {last}"
    );
}

/// FNV-1a, 64 bits, in hex: the partition key the relayer derives from a record by default,
/// written here again from its definition.
fn fnv_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The commands of every kind a stream relayer turns into lines, with Redis' replies, and the
/// `data` each line must carry (None: a RAWSET, whose line is its payload).
fn every_kind(c: &mut Client, prefix: &str) -> Vec<(Option<Value>, Vec<u8>)> {
    let k = |s: &str| format!("{prefix}:{s}");
    let mut want = vec![];
    assert_eq!(c.cmd(&["SET", &k("set"), "hello"]), Reply::ok());
    want.push((Some(json!({ k("set"): "hello" })), vec![]));
    assert_eq!(c.cmd(&["SADD", &k("sadd"), "a", "b", "a"]), Reply::int(2));
    want.push((Some(json!({ k("sadd"): ["a", "b"] })), vec![]));
    assert_eq!(c.cmd(&["HMSET", &k("hmset"), "z", "1", "a", "2"]), Reply::ok());
    want.push((Some(json!({ k("hmset"): {"a": "2", "z": "1"} })), vec![]));
    assert_eq!(c.cmd(&["HSET", &k("hset"), "f", "v"]), Reply::int(1));
    want.push((Some(json!({ k("hset"): {"f": "v"} })), vec![]));
    let escapes = "quote\" nl\n é 😀";
    assert_eq!(c.cmd(&["SET", &k("esc"), escapes]), Reply::ok());
    want.push((Some(json!({ k("esc"): escapes })), vec![]));
    let raw = format!("raw payload of {prefix}, not JSON");
    assert_eq!(c.cmd(&["RAWSET", &raw]), Reply::ok());
    want.push((None, raw.into_bytes()));
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &k("m1"), "x"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["SADD", &k("m2"), "y"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(vec![Reply::ok(), Reply::int(1)]));
    want.push((Some(json!({ k("m1"): "x", k("m2"): ["y"] })), vec![]));
    let big = "0123456789".repeat(20_000);
    assert_eq!(c.cmd(&["SET", &k("big"), &big]), Reply::ok());
    want.push((Some(json!({ k("big"): big })), vec![]));
    // Not a stream write: answered, nothing sent.
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    want
}

/// Checks that `got` (record data or message bodies, in any order) are exactly the lines of
/// `want`: one each, JSON lines with a `_ts` and the expected data, RAWSET payloads verbatim,
/// none ending in a newline.
fn assert_lines(got: &[Vec<u8>], want: &[(Option<Value>, Vec<u8>)], what: &str) {
    let mut expected: Vec<String> = want
        .iter()
        .map(|(data, raw)| match data {
            Some(d) => format!("json {d}"),
            None => format!("raw {}", String::from_utf8_lossy(raw)),
        })
        .collect();
    let mut seen: Vec<String> = got
        .iter()
        .map(|b| {
            assert!(!b.ends_with(b"\n"), "{what}: a record ends in a newline");
            match serde_json::from_slice::<Value>(b) {
                Ok(v) if v.get("_ts").is_some_and(Value::is_u64) => format!("json {}", v["data"]),
                _ => format!("raw {}", String::from_utf8_lossy(b)),
            }
        })
        .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "{what}: the records are not the lines sent");
}

#[test]
fn kinesis_every_command_kind_reaches_every_shard_with_the_hash_as_partition_key() {
    let moto = Moto::start();
    let shards = moto.create_stream("events", 4);
    let mut relayer = Relayer::start(&stream_entry(
        "kinesis",
        &tcp_listen(),
        "streamName = \"events\"",
        &moto.url(),
        "",
    ));
    let mut want = vec![];
    for i in 0..3 {
        want.extend(every_kind(&mut relayer.client(), &format!("k{i}")));
    }
    stop_drained(&mut relayer, want.len());
    let records = moto.stream_records("events");
    let data: Vec<Vec<u8>> = records.iter().map(|r| r.data.clone()).collect();
    assert_lines(&data, &want, "kinesis");
    for r in &records {
        assert_eq!(r.partition_key, fnv_hex(&r.data), "the default partition key");
    }
    let used: std::collections::BTreeSet<&str> = records.iter().map(|r| r.shard_id.as_str()).collect();
    assert!(
        used.len() > 1,
        "24 hashes on {} shards all went to {used:?}",
        shards.len()
    );
}

/// `partitionKey = "key"`: each Redis key's records reach one shard, in the order the clients
/// wrote them, while several clients write at once (each its own keys).
#[test]
fn kinesis_key_partitions_keep_each_keys_order_on_its_shard() {
    let moto = Moto::start();
    moto.create_stream("ordered", 3);
    let mut relayer = Relayer::start(&stream_entry(
        "kinesis",
        &tcp_listen(),
        "streamName = \"ordered\"",
        &moto.url(),
        "partitionKey = \"key\"\nmaxConnections = 4",
    ));
    const CLIENTS: usize = 4;
    const KEYS: usize = 3;
    const WRITES: usize = 150;
    let port = relayer.port();
    run_threads(CLIENTS, move |c| {
        let mut cl = Client::connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        for n in 0..WRITES {
            let key = format!("c{c}:k{}", n % KEYS);
            assert_eq!(cl.cmd(&["SET", &key, &n.to_string()]), Reply::ok());
        }
        Ok(())
    });
    stop_drained(&mut relayer, CLIENTS * WRITES);
    let records = moto.stream_records("ordered");
    assert_eq!(records.len(), CLIENTS * WRITES);
    let mut by_key: BTreeMap<String, Vec<&StreamRecord>> = BTreeMap::new();
    for r in &records {
        by_key.entry(r.partition_key.clone()).or_default().push(r);
    }
    assert_eq!(by_key.len(), CLIENTS * KEYS);
    for (key, recs) in by_key {
        let shard = &recs[0].shard_id;
        assert!(
            recs.iter().all(|r| &r.shard_id == shard),
            "{key} on several shards"
        );
        let values: Vec<usize> = recs
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_slice(&r.data).unwrap();
                v["data"][&key].as_str().unwrap().parse().unwrap()
            })
            .collect();
        let expected: Vec<usize> = (0..WRITES)
            .filter(|n| format!("k{}", n % KEYS) == key[3..])
            .collect();
        assert_eq!(values, expected, "{key}: its records out of order on {shard}");
    }
}

#[test]
fn sqs_every_command_kind_becomes_one_message_each() {
    let moto = Moto::start();
    let url = moto.create_queue("events", QueueKind::Standard);
    let mut relayer = Relayer::start(&stream_entry(
        "sqs",
        &tcp_listen(),
        &format!("url = \"{url}\""),
        &moto.url(),
        "maxConnections = 3",
    ));
    let mut want = vec![];
    for i in 0..3 {
        want.extend(every_kind(&mut relayer.client(), &format!("q{i}")));
    }
    stop_drained(&mut relayer, want.len());
    let got = moto.receive_all(&url);
    let bodies: Vec<Vec<u8>> = got.iter().map(|m| m.body.clone().into_bytes()).collect();
    assert_lines(&bodies, &want, "sqs");
    assert!(got.iter().all(|m| m.group_id.is_none() && m.dedup_id.is_none()));
}

/// A FIFO queue: one group (`groupID`, or the listen address), the messages in the order the
/// relayer accepted them, each with a deduplication id of its own; the queue URL gives the
/// endpoint (no `endpoint` key).
#[test]
fn sqs_fifo_keeps_the_order_with_a_group_and_a_deduplication_id_per_line() {
    let moto = Moto::start();
    let url = moto.create_queue("events.fifo", QueueKind::Fifo);
    let (named, unnamed) = (tcp_listen(), tcp_listen());
    let entry = |listen: &str, extra: &str| {
        format!(
            "[[relayer]]\nprotocol = \"sqs\"\nlisten = \"{listen}\"\nurl = \"{url}\"\n\
             region = \"us-east-1\"\nflushInterval = 0.01\n{extra}\n"
        )
    };
    let mut relayer =
        Relayer::start(&(entry(&named, "groupID = \"web\"\nmaxConnections = 4") + &entry(&unnamed, "")));
    const CLIENTS: usize = 3;
    const WRITES: usize = 60;
    let port = relayer.port();
    run_threads(CLIENTS, move |c| {
        let mut cl = Client::connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        for n in 0..WRITES {
            assert_eq!(cl.cmd(&["SET", &format!("c{c}"), &n.to_string()]), Reply::ok());
        }
        Ok(())
    });
    let mut other = Client::connect(&unnamed).unwrap();
    assert_eq!(other.cmd(&["SET", "default-group", "1"]), Reply::ok());
    stop_drained(&mut relayer, CLIENTS * WRITES + 1);
    let got: Vec<ReceivedMessage> = moto.receive_all(&url);
    assert_eq!(got.len(), CLIENTS * WRITES + 1);
    let group_of_default = unnamed.trim_start_matches("tcp://");
    let mut next = [0usize; CLIENTS];
    for m in &got {
        let v: Value = serde_json::from_str(&m.body).unwrap();
        let (key, value) = v["data"].as_object().unwrap().iter().next().unwrap();
        if key == "default-group" {
            assert_eq!(m.group_id.as_deref(), Some(group_of_default));
            continue;
        }
        assert_eq!(m.group_id.as_deref(), Some("web"));
        let c: usize = key[1..].parse().unwrap();
        let n: usize = value.as_str().unwrap().parse().unwrap();
        assert_eq!(n, next[c], "client {c}'s writes out of order in the FIFO queue");
        next[c] += 1;
    }
    assert_eq!(next, [WRITES; CLIENTS]);
    let mut ids: Vec<&str> = got.iter().map(|m| m.dedup_id.as_deref().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        got.len(),
        "deduplication ids must differ from line to line"
    );
}

/// `replies = "original"` answers MULTI blocks as the original did; `ignoreCommands` are
/// answered `+OK` and never sent, inside MULTI too.
#[test]
fn original_replies_and_ignored_commands() {
    let moto = Moto::start();
    let url = moto.create_queue("orig", QueueKind::Standard);
    let mut relayer = Relayer::start(&stream_entry(
        "sqs",
        &tcp_listen(),
        &format!("url = \"{url}\""),
        &moto.url(),
        "replies = \"original\"\nignoreCommands = \"GET hset\"",
    ));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["GET", "anything"]), Reply::ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "a", "1"]), Reply::ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["SADD", "s", "m"]), Reply::ok());
    assert_eq!(c.cmd(&["EXEC"]), Reply::ok());
    // Errors are still Redis' errors.
    assert!(matches!(c.cmd(&["EXEC"]), Reply::Error(e) if e == "ERR EXEC without MULTI"));
    stop_drained(&mut relayer, 1);
    let got = moto.receive_all(&url);
    let bodies: Vec<Vec<u8>> = got.iter().map(|m| m.body.clone().into_bytes()).collect();
    assert_lines(&bodies, &[(Some(json!({"a": "1", "s": ["m"]})), vec![])], "sqs");
}

/// The original's PHP load loop (examples/php/original_stream.php, reading replies as phpiredis
/// did) passes against an entry with `replies = "original"`, and its lines arrive; against the
/// default replies (Redis') it fails at the first command inside MULTI, which is why the key
/// exists.
#[test]
fn a_php_client_written_for_the_original_keeps_working() {
    let moto = Moto::start();
    moto.create_stream("php", 2);
    let (original, redis) = (tcp_listen(), tcp_listen());
    let config = stream_entry(
        "kinesis",
        &original,
        "streamName = \"php\"",
        &moto.url(),
        "replies = \"original\"",
    ) + &stream_entry("kinesis", &redis, "streamName = \"php\"", &moto.url(), "");
    let mut relayer = Relayer::start(&config);
    let php = |listen: &str| {
        let port = listen.rsplit(':').next().unwrap().to_string();
        run_program(
            std::process::Command::new("php")
                .arg(examples_dir().join("php").join("original_stream.php"))
                .args(["127.0.0.1", &port, "10"]),
            b"",
            "php original_stream.php",
        )
    };
    let (st, out, err) = php(&original);
    assert!(st.success(), "stdout: {out}\nstderr: {err}");
    let run = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run="))
        .unwrap_or_else(|| panic!("no run= in {out:?}"))
        .to_string();
    let (st, _, err) = php(&redis);
    assert!(!st.success(), "Redis' replies must fail the original's checks");
    assert!(
        err.contains("SET or:") && err.contains("answered 'QUEUED'"),
        "{err}"
    );
    stop_drained(&mut relayer, 2 * 10);
    let records = moto.stream_records("php");
    for i in 0..10 {
        let block = json!({
            format!("or:{run}:{i}"): format!("v{i}"),
            format!("or:{run}:list:{i}"): ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd", "eeeeeeeeee"],
            format!("or:{run}:dict:{i}"): {"f0": "AAAAAAAAAA", "f1": "BBBBBBBBBB", "f2": "CCCCCCCCCC", "f3": "DDDDDDDDDD", "f4": "EEEEEEEEEE"},
        });
        // As PHP's json_encode writes it: keys in their order.
        let raw = format!(r#"{{"run":"{run}","i":{i}}}"#);
        let found = |want: &dyn Fn(&[u8]) -> bool| records.iter().filter(|r| want(&r.data)).count();
        assert_eq!(
            found(&|d| serde_json::from_slice::<Value>(d).is_ok_and(|v| v["data"] == block)),
            1,
            "iteration {i}'s block"
        );
        assert_eq!(found(&|d| d == raw.as_bytes()), 1, "iteration {i}'s RAWSET");
    }
}

/// A call that is full leaves at once, even when part of it was packed before its flush timer
/// was set: one line, then (once the batcher packed it and set its timer) nine more make the
/// ten messages of an SQS call, delivered long before a flush interval of two minutes.
#[test]
fn a_full_call_does_not_wait_for_the_flush_timer() {
    let fake = integration::fake_sqs::FakeSqs::start();
    let url = fake.queue_url("q");
    let mut relayer = Relayer::start(&format!(
        "[[relayer]]\nprotocol = \"sqs\"\nlisten = \"{}\"\nurl = \"{url}\"\nregion = \"us-east-1\"\nflushInterval = 120\n",
        tcp_listen()
    ));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "first", "1"]), Reply::ok());
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 0..9 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
    }
    wait_until(
        integration::timeouts::HANG,
        "the full call, before the flush interval",
        || fake.message_count() == 10,
    );
    stop_drained(&mut relayer, 10);
}

/// The original's latest configuration shape (integration/tests/fixtures/original-latest.conf)
/// passes `--check`: every protocol it shipped recognised, nothing refused.
#[test]
fn the_originals_latest_configuration_passes_check() {
    let path = workspace_dir().join("integration/tests/fixtures/original-latest.conf");
    let out = check_config_file(&path);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("configuration OK, 12 relayer(s)"), "{out:?}");
    for p in [
        "httptofirehose",
        "httptoathena",
        "'http'",
        "'fs'",
        "redis2kvstore",
    ] {
        assert!(
            out.stderr
                .lines()
                .filter(|l| l.contains(p) && l.contains("is not relayed"))
                .count()
                == 1,
            "{p} reported once: {}",
            out.stderr
        );
    }
}
