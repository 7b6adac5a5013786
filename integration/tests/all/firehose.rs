//! The Firehose relayer (`protocol = "firehose"`) end to end against moto's server, a real
//! Firehose + S3 emulator: every command kind from a Rust client and from phpredis, read back from
//! S3 and compared line by line with what was sent; the exact replies (those Redis would give,
//! see docs/modes.md, "Firehose"); bad input; config errors; the PHP example.
//!
//! Every test that reads S3 stops the relayer with SIGTERM first: it drains its buffer, so S3 then
//! holds everything it will ever hold, and the comparison is exact (a missing line, an extra line
//! and a duplicate all fail).

use crate::helpers::{metric, now_ns};
use integration::log::STOPPED_OK;
use integration::moto::Moto;
use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use serde_json::{json, Value};
use std::process::Command;

/// How far outside the window measured around a command its `_ts` may be: the relayer reads the
/// clock itself, a millisecond is room for a clock read before our own, not for a wrong time.
const TS_SLACK_NS: u64 = 1_000_000;
/// The spec's limit of one record (line), JSON text + newline.
const RECORD_LIMIT: usize = 1_024_000;

/// The arguments of a command, any mix of `&str`, `String`, `&[u8]`, `Vec<u8>`, as byte vectors.
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(AsRef::<[u8]>::as_ref(&$a).to_vec()),*] };
}

/// One firehose `[[relayer]]` entry sending to `endpoint`, with a 0.2 s flush interval; `extra`
/// (more `key = value` lines) is appended.
fn entry(listen: &str, stream: &str, endpoint: &str, extra: &str) -> String {
    firehose_entry(listen, stream, endpoint, &format!("flushInterval = 0.2\n{extra}"))
}

/// moto with the stream `stream` writing to `bucket`, and a relayer with one firehose entry on
/// a TCP port sending to it.
fn start_one(stream: &str, bucket: &str, extra: &str) -> (Moto, Relayer) {
    let moto = Moto::start();
    moto.create_delivery_stream(stream, bucket);
    let relayer = Relayer::start(&entry(&tcp_listen(), stream, &moto.url(), extra));
    (moto, relayer)
}

/// SIGTERM, then the relayer must exit 0 (within `EXIT`) saying that every acknowledged write was
/// delivered (it drains its buffer on stop).
fn stop_drained(relayer: &mut Relayer) {
    relayer.signal(libc::SIGTERM);
    let st = relayer.wait_exit(EXIT);
    let log = relayer.log();
    assert!(
        st.success(),
        "the relayer exited with {st} after SIGTERM; its log:\n{log}"
    );
    assert!(
        log.contains(STOPPED_OK),
        "after SIGTERM the relayer's log must end with '{STOPPED_OK}'; its log:\n{log}"
    );
}

/// Serializes a JSON value with the keys of every object sorted, the form the spec fixes for a
/// record's `data` (strings escaped as serde_json does: no `\u003c` for `<`).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut kv: Vec<_> = m.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), canonical(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Bytes as the relayer must put them in JSON: invalid UTF-8 replaced by U+FFFD.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ts {
    /// `{"_ts":<ns>,"data":...}`
    Ns,
    /// `{"ts":<ms>,"data":...}`
    Ms,
}

struct WantLine {
    what: String,
    data: Value,
    /// The command's send window, ns since the epoch.
    from: u64,
    to: u64,
}

/// What must be in one bucket, and nothing else: JSON lines with their `data` and time window,
/// and RAWSET payloads.
struct Expect {
    ts: Ts,
    lines: Vec<WantLine>,
    raws: Vec<(String, Vec<u8>)>,
}

impl Expect {
    fn new(ts: Ts) -> Expect {
        Expect {
            ts,
            lines: Vec::new(),
            raws: Vec::new(),
        }
    }

    fn line(&mut self, what: impl Into<String>, data: Value, window: (u64, u64)) {
        self.lines.push(WantLine {
            what: what.into(),
            data,
            from: window.0,
            to: window.1,
        });
    }

    fn raw(&mut self, what: impl Into<String>, payload: &[u8]) {
        self.raws.push((what.into(), payload.to_vec()));
    }

    /// Compares the objects of the bucket with what is expected; returns the problems.
    ///
    /// moto writes each PutRecordBatch call as one object, the records' bytes concatenated (see
    /// integration::moto): each RAWSET payload must appear verbatim followed by a newline at a
    /// line start (it may itself hold newlines); it is taken out, and what is left must be
    /// newline-terminated JSON lines, each matching one expected line exactly once: `data` equal
    /// as JSON, the time key an exact integer within the command's window, and the text exactly
    /// `{"_ts":N,"data":{...}}` with sorted keys.
    fn check(&self, objects: &[(String, Vec<u8>)]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for (key, body) in objects {
            if !body.is_empty() && !body.ends_with(b"\n") {
                problems.push(format!(
                    "object {key} does not end with a newline: ...{}",
                    show_bytes(&body[body.len().saturating_sub(80)..], 80)
                ));
            }
            bodies.push(body.clone());
        }
        for (what, payload) in &self.raws {
            let mut needle = payload.clone();
            needle.push(b'\n');
            let found = bodies.iter_mut().any(|body| {
                let at = (0..body.len().saturating_sub(needle.len() - 1))
                    .find(|&p| (p == 0 || body[p - 1] == b'\n') && body[p..].starts_with(&needle));
                if let Some(p) = at {
                    body.drain(p..p + needle.len());
                }
                at.is_some()
            });
            if !found {
                problems.push(format!(
                    "RAWSET {what}: no object holds its payload + newline at a line start: {}",
                    show_bytes(payload, 120)
                ));
            }
        }
        let tkey = match self.ts {
            Ts::Ns => "_ts",
            Ts::Ms => "ts",
        };
        let mut used = vec![false; self.lines.len()];
        for body in &bodies {
            for line in body.split_inclusive(|&b| b == b'\n') {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                let v: Value = match serde_json::from_slice(text) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(format!("a line is not JSON ({e}): {}", show_bytes(text, 200)));
                        continue;
                    }
                };
                let shown = show_bytes(text, 300);
                let Some(obj) = v.as_object() else {
                    problems.push(format!("a line is not a JSON object: {shown}"));
                    continue;
                };
                if obj.len() != 2 || !obj.contains_key("data") || !obj.contains_key(tkey) {
                    problems.push(format!(
                        "a line has other keys than {tkey:?} and \"data\": {shown}"
                    ));
                    continue;
                }
                let Some(ts) = obj[tkey].as_u64() else {
                    problems.push(format!("{tkey} is not an exact non-negative integer: {shown}"));
                    continue;
                };
                let Some(i) = (0..self.lines.len()).find(|&i| !used[i] && self.lines[i].data == obj["data"])
                else {
                    problems.push(format!(
                        "unexpected line (no command sent it, or it is a duplicate): {shown}"
                    ));
                    continue;
                };
                used[i] = true;
                let want = &self.lines[i];
                let (lo, hi) = (want.from.saturating_sub(TS_SLACK_NS), want.to + TS_SLACK_NS);
                let in_window = match self.ts {
                    Ts::Ns => (lo..=hi).contains(&ts),
                    Ts::Ms => (lo / 1_000_000..=hi / 1_000_000).contains(&ts),
                };
                if !in_window {
                    problems.push(format!(
                        "{}: {tkey} = {ts} is outside the send window [{}, {}] ns: {shown}",
                        want.what, want.from, want.to
                    ));
                }
                let exact = format!("{{\"{tkey}\":{ts},\"data\":{}}}", canonical(&want.data));
                if text != exact.as_bytes() {
                    problems.push(format!(
                        "{}: the line's text is not the spec's form\n  got:  {shown}\n  want: {}",
                        want.what,
                        show_bytes(exact.as_bytes(), 300)
                    ));
                }
            }
        }
        for (i, want) in self.lines.iter().enumerate() {
            if !used[i] {
                problems.push(format!(
                    "{}: missing line with data {}",
                    want.what,
                    canonical(&want.data)
                ));
            }
        }
        problems
    }
}

/// Reads the bucket and panics listing every difference from `exp` (the first 40).
fn assert_bucket(moto: &Moto, bucket: &str, exp: &Expect) {
    let objects = moto.s3_objects(bucket);
    let problems = exp.check(&objects);
    let lines: usize = objects
        .iter()
        .map(|(_, b)| b.iter().filter(|&&c| c == b'\n').count())
        .sum();
    eprintln!(
        "bucket {bucket}: {} objects, {lines} newline-terminated lines; expected {} JSON lines and {} RAWSETs",
        objects.len(),
        exp.lines.len(),
        exp.raws.len()
    );
    assert!(
        problems.is_empty(),
        "bucket {bucket}: {} problems:\n{}",
        problems.len(),
        problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Sends one command, asserts its reply, returns the send window.
fn sent(c: &mut Client, args: Vec<Vec<u8>>, want: Reply) -> (u64, u64) {
    let from = now_ns();
    let got = c.cmd(&args);
    let to = now_ns();
    assert_eq!(got, want, "reply to {}", show_args(&args));
    (from, to)
}

fn show_args(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| show_bytes(a, 60))
        .collect::<Vec<_>>()
        .join(" ")
}

/// MULTI, the commands (each must answer +QUEUED), EXEC (must answer `exec`); the window runs
/// from before MULTI to after EXEC.
fn block(c: &mut Client, cmds: &[Vec<Vec<u8>>], exec: Reply) -> (u64, u64) {
    let from = now_ns();
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok(), "MULTI");
    for cmd in cmds {
        assert_eq!(
            c.cmd(cmd),
            Reply::status("QUEUED"),
            "{} inside MULTI",
            show_args(cmd)
        );
    }
    let got = c.cmd(&["EXEC"]);
    let to = now_ns();
    assert_eq!(
        got,
        exec,
        "EXEC of {:?}",
        cmds.iter().map(|c| show_args(c)).collect::<Vec<_>>()
    );
    (from, to)
}

/// Runs examples/php/firehose_stream.php against `host` `port` (port 0: a unix socket path) for
/// `count` iterations; asserts it exits 0 with its summary line; returns the run id and the send
/// window.
fn run_php_example(host: &str, port: u16, count: usize) -> (String, (u64, u64)) {
    let path = examples_dir().join("php").join("firehose_stream.php");
    assert!(path.is_file(), "missing example {}", path.display());
    let from = now_ns();
    let what = format!("php firehose_stream.php {host} {port} {count}");
    let (st, out, err) = run_program(
        Command::new("php")
            .arg(&path)
            .args([host, &port.to_string(), &count.to_string()]),
        b"",
        &format!("{what} (Debian's php-cli)"),
    );
    let to = now_ns();
    assert!(
        st.success(),
        "{what} exited with {st}\nstdout: {out}\nstderr: {err}"
    );
    eprintln!("{}", out.trim());
    let line = out.trim();
    assert!(
        line.starts_with("firehose_stream: OK run=") && !line.contains('\n'),
        "{what}: expected one summary line 'firehose_stream: OK run=...', got {out:?}"
    );
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{what}: no {name}= in {line:?}"))
            .to_string()
    };
    let discarded = count.div_ceil(10);
    for (name, want) in [
        ("iterations", count),
        ("records", 5 * count),
        ("rawsets", count),
        ("blocks", count),
        ("discarded", discarded),
    ] {
        assert_eq!(field(name), want.to_string(), "{what}: {name}= in {line:?}");
    }
    (field("run"), (from, to))
}

/// The lines the PHP example's run `run` of `count` iterations must have produced (see the
/// script's header).
fn expect_php(exp: &mut Expect, run: &str, count: usize, window: (u64, u64)) {
    let p = format!("fs:{run}");
    for i in 0..count {
        let what = |k: &str| format!("php iteration {i} {k}");
        exp.line(
            what("SET"),
            json!({ format!("{p}:set:{i}"): format!("value {i} é <&>") }),
            window,
        );
        exp.line(
            what("SADD"),
            json!({ format!("{p}:sadd:{i}"): ["a", "b", format!("m{i}")] }),
            window,
        );
        exp.line(
            what("HMSET"),
            json!({ format!("{p}:hmset:{i}"): {"f1": format!("x{i}"), "f2": "y"} }),
            window,
        );
        exp.line(
            what("HSET"),
            json!({ format!("{p}:hset:{i}"): {"f": i.to_string()} }),
            window,
        );
        exp.raw(what("RAWSET"), format!("raw {p}:{i} {{\"i\":{i}}}").as_bytes());
        exp.line(
            what("MULTI block"),
            json!({
                format!("{p}:multi:{i}:h"): {"a": "1", "b": "2"},
                format!("{p}:multi:{i}:s"): "last",
                format!("{p}:multi:{i}:set"): ["p", "q", "r"],
            }),
            window,
        );
    }
}

/// The checker of the other tests is strict: a missing line or RAWSET, a duplicate, a time outside
/// the window or not an integer, unsorted keys, Go-style `\u003c` escaping, an extra key, a missing
/// final newline and a RAWSET payload not at a line start are each reported.
#[test]
fn s3_line_checker_reports_every_difference() {
    let mut exp = Expect::new(Ts::Ns);
    let w = (10_000_000, 20_000_000);
    exp.line("kv", json!({"k": "v"}), w);
    exp.line("sorted", json!({"b": "1", "a": {"y": "2", "x": ["<"]}}), w);
    exp.raw("raw", b"x\ny");
    let good_kv = r#"{"_ts":15000000,"data":{"k":"v"}}"#;
    let good_sorted = r#"{"_ts":15000000,"data":{"a":{"x":["<"],"y":"2"},"b":"1"}}"#;
    let obj = |parts: &[&str]| vec![("o".to_string(), parts.concat().into_bytes())];
    let good = obj(&[good_kv, "\n", "x\ny\n", good_sorted, "\n"]);
    assert_eq!(exp.check(&good), Vec::<String>::new(), "the good case passes");
    type Objects = Vec<(String, Vec<u8>)>;
    let cases: Vec<(&str, Objects, &str)> = vec![
        ("nothing", vec![], "missing line"),
        ("no raw", obj(&[good_kv, "\n", good_sorted, "\n"]), "RAWSET raw"),
        (
            "raw not at a line start",
            obj(&[good_kv, "\n", "zx\ny\n", good_sorted, "\n"]),
            "RAWSET raw",
        ),
        (
            "duplicate",
            obj(&[good_kv, "\n", good_kv, "\n", "x\ny\n", good_sorted, "\n"]),
            "unexpected line",
        ),
        (
            "late ts",
            obj(&[
                r#"{"_ts":25000000,"data":{"k":"v"}}"#,
                "\n",
                "x\ny\n",
                good_sorted,
                "\n",
            ]),
            "outside the send window",
        ),
        (
            "float ts",
            obj(&[
                r#"{"_ts":1.5e7,"data":{"k":"v"}}"#,
                "\n",
                "x\ny\n",
                good_sorted,
                "\n",
            ]),
            "not an exact",
        ),
        (
            "unsorted keys",
            obj(&[
                good_kv,
                "\n",
                "x\ny\n",
                r#"{"_ts":15000000,"data":{"b":"1","a":{"x":["<"],"y":"2"}}}"#,
                "\n",
            ]),
            "not the spec's form",
        ),
        (
            "Go escaping",
            obj(&[
                good_kv,
                "\n",
                "x\ny\n",
                r#"{"_ts":15000000,"data":{"a":{"x":["\u003c"],"y":"2"},"b":"1"}}"#,
                "\n",
            ]),
            "not the spec's form",
        ),
        (
            "data first",
            obj(&[
                r#"{"data":{"k":"v"},"_ts":15000000}"#,
                "\n",
                "x\ny\n",
                good_sorted,
                "\n",
            ]),
            "not the spec's form",
        ),
        (
            "extra key",
            obj(&[
                r#"{"_ts":15000000,"data":{"k":"v"},"x":1}"#,
                "\n",
                "x\ny\n",
                good_sorted,
                "\n",
            ]),
            "other keys",
        ),
        (
            "no final newline",
            obj(&[good_kv, "\n", "x\ny\n", good_sorted]),
            "does not end with a newline",
        ),
    ];
    for (what, objects, want) in &cases {
        let problems = exp.check(objects);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{what}: expected a problem containing {want:?}, got {problems:?}"
        );
    }
    let mut ms = Expect::new(Ts::Ms);
    ms.line("ms", json!({"k": "v"}), (15_000_000_000, 15_500_000_000));
    assert_eq!(
        ms.check(&obj(&[r#"{"ts":15200,"data":{"k":"v"}}"#, "\n"])),
        Vec::<String>::new()
    );
    let problems = ms.check(&obj(&[r#"{"ts":15600,"data":{"k":"v"}}"#, "\n"]));
    assert!(
        problems.iter().any(|p| p.contains("outside")),
        "ms out of window: {problems:?}"
    );
    let problems = ms.check(&obj(&[r#"{"_ts":15200000000,"data":{"k":"v"}}"#, "\n"]));
    assert!(
        problems.iter().any(|p| p.contains("other keys")),
        "_ts in ms mode: {problems:?}"
    );
}

/// The harness itself: moto starts, a DirectPut stream to S3 is created, and two PutRecordBatch
/// calls made with boto3 come back as two S3 objects holding the calls' records concatenated,
/// byte for byte (what `Expect::check` relies on).
#[test]
fn moto_harness_round_trip() {
    let moto = Moto::start();
    moto.create_delivery_stream("selfcheck", "selfcheck-bucket");
    assert_eq!(
        moto.s3_objects("selfcheck-bucket"),
        vec![],
        "a new bucket is empty"
    );
    let first: [&[u8]; 3] = [b"a\n", b"\xff\x00\r\n", b"no newline"];
    assert_eq!(moto.put_record_batch("selfcheck", &first), (0, 3));
    assert_eq!(moto.put_record_batch("selfcheck", &[b"second call\n"]), (0, 1));
    let objects = moto.s3_objects("selfcheck-bucket");
    assert_eq!(objects.len(), 2, "one object per call: {objects:?}");
    let mut bodies: Vec<&[u8]> = objects.iter().map(|(_, b)| b.as_slice()).collect();
    bodies.sort();
    assert_eq!(bodies, vec![&b"a\n\xff\x00\r\nno newline"[..], b"second call\n"]);
    for (key, _) in &objects {
        assert!(
            key.contains("/selfcheck-1-"),
            "object key {key:?} names the stream and its version"
        );
    }
}

/// Every command kind end to end: from the Rust client plain SET (options ignored), SADD with a
/// duplicate member, HMSET with a repeated field, HSET, RAWSET of arbitrary bytes (NUL, CR, LF,
/// invalid UTF-8, a JSON look-alike), JSON escaping, invalid UTF-8 in keys, members, fields and
/// values (U+FFFD), a 100 KB value, 200 pipelined SETs, MULTI blocks (last SET wins, SADD appends,
/// HMSET/HSET merge, SET overwrites a set); from phpredis (examples/php/firehose_stream.php) its
/// records; and a second entry with `timestamp = "ms"` and `maxRecords = 10`. The metrics count
/// every line accepted and delivered, none retried or lost, and the invalid UTF-8. After a
/// draining SIGTERM, each bucket holds exactly these lines, each with its time inside its
/// command's window.
#[test]
fn every_command_kind_reaches_s3_line_by_line() {
    let moto = Moto::start();
    moto.create_delivery_stream("events", "records");
    moto.create_delivery_stream("events-ms", "records-ms");
    let ns_listen = tcp_listen();
    let ms_listen = tcp_listen();
    let metrics_port = free_port();
    let config = format!("metricsListen = \"127.0.0.1:{metrics_port}\"\n")
        + &entry(&ns_listen, "events", &moto.url(), "")
        + &entry(
            &ms_listen,
            "events-ms",
            &moto.url(),
            "timestamp = \"ms\"\nmaxRecords = 10",
        );
    let mut relayer = Relayer::start(&config);
    let mut ns = Expect::new(Ts::Ns);
    let mut ms = Expect::new(Ts::Ms);

    // The phpredis client runs while the Rust client sends, on the same entry.
    let port = relayer.port();
    let php = std::thread::spawn(move || run_php_example("127.0.0.1", port, 20));

    let mut c = relayer.client_at(0);
    let w = sent(&mut c, args!["SET", "rs:set", "hello"], Reply::ok());
    ns.line("SET", json!({"rs:set": "hello"}), w);
    let w = sent(
        &mut c,
        args!["SET", "rs:set:opts", "v", "EX", "100", "NX"],
        Reply::ok(),
    );
    ns.line("SET with options", json!({"rs:set:opts": "v"}), w);
    let w = sent(
        &mut c,
        args!["SADD", "rs:sadd", "a", "b", "a", "c", "b"],
        Reply::int(3),
    );
    ns.line("SADD", json!({"rs:sadd": ["a", "b", "c"]}), w);
    let w = sent(&mut c, args!["SADD", "rs:sadd:one", "only"], Reply::int(1));
    ns.line("SADD one member", json!({"rs:sadd:one": ["only"]}), w);
    let w = sent(
        &mut c,
        args!["HMSET", "rs:hmset", "z", "1", "a", "2", "z", "3"],
        Reply::ok(),
    );
    ns.line("HMSET", json!({"rs:hmset": {"a": "2", "z": "3"}}), w);
    let w = sent(
        &mut c,
        args!["HSET", "rs:hset", "f1", "v1", "f2", "v2", "f1", "v3"],
        Reply::int(2),
    );
    ns.line("HSET", json!({"rs:hset": {"f1": "v3", "f2": "v2"}}), w);
    let escapes = "quote\" backslash\\ <tag>&amp; tab\t nl\n cr\r nul\0 bell\x07 é ✓ \u{2028} 😀";
    let w = sent(&mut c, args!["SET", "rs:escapes", escapes], Reply::ok());
    ns.line(
        "SET with characters JSON escapes",
        json!({ "rs:escapes": escapes }),
        w,
    );
    let bin_value: &[u8] = b"a\xffb\x80c\xfe";
    let w = sent(&mut c, args!["SET", "rs:bin", bin_value], Reply::ok());
    ns.line("SET of invalid UTF-8", json!({"rs:bin": lossy(bin_value)}), w);
    assert_eq!(lossy(bin_value), "a\u{FFFD}b\u{FFFD}c\u{FFFD}");
    let bin_key: &[u8] = b"rs:bin:\xfe";
    let w = sent(&mut c, args!["SADD", bin_key, b"m\xff", "m2"], Reply::int(2));
    ns.line(
        "SADD with invalid UTF-8",
        json!({ lossy(bin_key): [lossy(b"m\xff"), "m2"] }),
        w,
    );
    let w = sent(
        &mut c,
        args!["HMSET", "rs:bin:h", b"f\xff", b"\x80v"],
        Reply::ok(),
    );
    ns.line(
        "HMSET with invalid UTF-8",
        json!({"rs:bin:h": { lossy(b"f\xff"): lossy(b"\x80v") }}),
        w,
    );
    let big = "0123456789".repeat(10_000);
    let w = sent(&mut c, args!["SET", "rs:big", &big], Reply::ok());
    ns.line("SET of 100 KB", json!({ "rs:big": big }), w);

    let raw: &[u8] = b"raw:rs:1 \x00\x01\xff\xfe\r\n{\"not\":json}\ttail\r";
    sent(&mut c, args!["RAWSET", raw], Reply::ok());
    ns.raw("RAWSET of arbitrary bytes", raw);
    let raw_json = br#"{"_ts":1,"data":{"raw:rs:2":"a JSON look-alike is not wrapped"}}"#;
    sent(&mut c, args!["RAWSET", raw_json], Reply::ok());
    ns.raw("RAWSET of JSON", raw_json);

    let w = block(
        &mut c,
        &[
            args!["SET", "rs:m:s", "first"],
            args!["SADD", "rs:m:set", "a", "b"],
            args!["HMSET", "rs:m:h", "f", "1", "g", "2"],
            args!["SET", "rs:m:s", "last"],
            args!["SADD", "rs:m:set", "b", "c", "a", "d"],
            args!["HMSET", "rs:m:h", "f", "3"],
            args!["HSET", "rs:m:h", "h", "4", "g", "5"],
            args!["SET", "rs:m:other", b"x\xff"],
        ],
        Reply::array(vec![
            Reply::ok(),
            Reply::int(2),
            Reply::ok(),
            Reply::ok(),
            Reply::int(2),
            Reply::ok(),
            Reply::int(1),
            Reply::ok(),
        ]),
    );
    ns.line(
        "MULTI block",
        json!({
            "rs:m:h": {"f": "3", "g": "5", "h": "4"},
            "rs:m:other": "x\u{FFFD}",
            "rs:m:s": "last",
            "rs:m:set": ["a", "b", "c", "d"],
        }),
        w,
    );
    let w = block(
        &mut c,
        &[args!["SADD", "rs:m2:k", "a"], args!["SET", "rs:m2:k", "v"]],
        Reply::array(vec![Reply::int(1), Reply::ok()]),
    );
    ns.line("MULTI block, SET over a set", json!({"rs:m2:k": "v"}), w);

    // 200 SETs in one write: many records per PutRecordBatch call.
    let cmds: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| args!["SET", format!("rs:pipe:{i}"), format!("v{i}")])
        .collect();
    let from = now_ns();
    let replies = c.pipeline(&cmds);
    let w = (from, now_ns());
    assert!(
        replies.iter().all(|r| *r == Reply::ok()),
        "200 pipelined SETs: {replies:?}"
    );
    for i in 0..200 {
        ns.line(
            format!("pipelined SET {i}"),
            json!({ format!("rs:pipe:{i}"): format!("v{i}") }),
            w,
        );
    }

    // The timestamp = "ms" entry.
    let mut m = relayer.client_at(1);
    let w = sent(&mut m, args!["SET", "ms:set", "v"], Reply::ok());
    ms.line("SET (ms)", json!({"ms:set": "v"}), w);
    let w = sent(&mut m, args!["HSET", "ms:h", "f", "v"], Reply::int(1));
    ms.line("HSET (ms)", json!({"ms:h": {"f": "v"}}), w);
    let w = block(
        &mut m,
        &[args!["SET", "ms:m", "a"], args!["SADD", "ms:m2", "x"]],
        Reply::array(vec![Reply::ok(), Reply::int(1)]),
    );
    ms.line("MULTI block (ms)", json!({"ms:m": "a", "ms:m2": ["x"]}), w);
    sent(&mut m, args!["RAWSET", "raw ms payload"], Reply::ok());
    ms.raw("RAWSET (ms)", b"raw ms payload");
    for i in 0..25 {
        let w = sent(&mut m, args!["SET", format!("ms:n:{i}"), "x"], Reply::ok());
        ms.line(format!("SET {i} (ms)"), json!({ format!("ms:n:{i}"): "x" }), w);
    }

    let (run, window) = php.join().expect("the php thread");
    expect_php(&mut ns, &run, 20, window);

    // The metrics: every accepted line counted and delivered, nothing buffered, the arguments
    // with invalid UTF-8 counted (4 commands had some: at least 4, whatever the unit).
    for (listen, exp) in [(&ns_listen, &ns), (&ms_listen, &ms)] {
        let lines = (exp.lines.len() + exp.raws.len()) as f64;
        let get = |name: &str| metric(metrics_port, name, listen);
        wait_until(DELIVERY, &format!("{lines} lines delivered on {listen}"), || {
            get("relayer_firehose_delivered_total") == Some(lines)
        });
        assert_eq!(
            get("relayer_firehose_lines_total"),
            Some(lines),
            "lines accepted on {listen}"
        );
        assert_eq!(
            get("relayer_firehose_buffered"),
            Some(0.0),
            "lines buffered on {listen}"
        );
        for name in [
            "relayer_firehose_retries_total",
            "relayer_firehose_dead_letter_total",
            "relayer_firehose_lost_total",
        ] {
            assert_eq!(get(name), Some(0.0), "{name} on {listen} (moto fails nothing)");
        }
    }
    let invalid = metric(metrics_port, "relayer_firehose_invalid_utf8_total", &ns_listen);
    assert!(
        invalid.is_some_and(|n| n >= 4.0),
        "relayer_firehose_invalid_utf8_total on {ns_listen}: {invalid:?}, expected at least 4"
    );
    assert_eq!(
        metric(metrics_port, "relayer_firehose_invalid_utf8_total", &ms_listen),
        Some(0.0),
        "no invalid UTF-8 was sent to {ms_listen}"
    );

    stop_drained(&mut relayer);
    assert_bucket(&moto, "records", &ns);
    assert_bucket(&moto, "records-ms", &ms);
}

/// Every reply text of the spec's "Replies" section, asserted exactly, on one connection:
/// PING/ECHO/SELECT, the write commands and their counts, the arity error of each command, unknown
/// commands, MULTI/QUEUED/EXEC arrays (counts relative to the block), nested MULTI, DISCARD,
/// EXEC/DISCARD without MULTI, RAWSET/unknown/wrong arity inside MULTI making EXEC answer
/// EXECABORT, WRONGTYPE elements inside an EXEC array, empty blocks, a pipelined block, inline
/// commands, QUIT. Then
/// S3 holds exactly the records of the accepted writes: nothing from discarded, aborted or empty
/// blocks, nor from a block whose connection closed inside MULTI (while a SET sent afterwards by
/// another client is there).
#[test]
fn replies_are_exactly_the_specs() {
    let (moto, mut relayer) = start_one("replies", "replies-bucket", "");
    let mut exp = Expect::new(Ts::Ns);
    let mut lines: Vec<(&str, Value)> = Vec::new();
    let start = now_ns();
    let mut c = relayer.client();
    let err = Reply::error;
    let arity = |name: &str| Reply::Error(format!("ERR wrong number of arguments for '{name}' command"));
    let unknown = |name: &str| Reply::Error(format!("ERR unknown command '{name}' for a firehose relayer"));
    let queued = || Reply::status("QUEUED");
    let wrongtype = || err("WRONGTYPE Operation against a key holding the wrong kind of value");
    let execabort = || err("EXECABORT Transaction discarded because of previous errors.");
    let exec_without = || err("ERR EXEC without MULTI");

    // (command, reply), in order on one connection.
    let plain: Vec<(Vec<Vec<u8>>, Reply)> = vec![
        (args!["PING"], Reply::status("PONG")),
        (args!["ping"], Reply::status("PONG")),
        (args!["PING", "hello x"], Reply::bulk("hello x")),
        (args!["ECHO", "e\r\n\0"], Reply::bulk("e\r\n\0")),
        (args!["SELECT", "3"], Reply::ok()),
        (args!["SELECT", "0"], Reply::ok()),
        (
            args!["SELECT", "abc"],
            err("ERR value is not an integer or out of range"),
        ),
        // Read as Redis reads integers.
        (
            args!["SELECT", "09"],
            err("ERR value is not an integer or out of range"),
        ),
        (
            args!["SELECT", "4294967296"],
            err("ERR value is out of range, value must between -2147483648 and 2147483647"),
        ),
        (args!["SET", "r:set", "v"], Reply::ok()),
        (args!["SET", "r:set:opts", "v", "EX", "10", "NX"], Reply::ok()),
        (args!["SADD", "r:sadd", "a", "b", "a"], Reply::int(2)),
        (args!["SADD", "r:sadd", "a"], Reply::int(1)),
        (args!["HMSET", "r:hmset", "f", "v"], Reply::ok()),
        (args!["HMSET", "r:hmset", "f", "v", "g", "w"], Reply::ok()),
        (args!["HSET", "r:hset", "f", "v"], Reply::int(1)),
        (
            args!["HSET", "r:hset", "f", "v", "f", "w", "g", "x"],
            Reply::int(2),
        ),
        (args!["RAWSET", "r:raw payload"], Reply::ok()),
        (args!["RAWSET", ""], err("ERR empty RAWSET payload")),
        (args!["SET"], arity("set")),
        (args!["SET", "k"], arity("set")),
        (args!["Set", "k"], arity("set")),
        (args!["SADD"], arity("sadd")),
        (args!["SADD", "k"], arity("sadd")),
        (args!["HMSET", "k"], arity("hmset")),
        (args!["HMSET", "k", "f"], arity("hmset")),
        (args!["HMSET", "k", "f", "v", "g"], arity("hmset")),
        (args!["HSET", "k", "f"], arity("hset")),
        (args!["hset", "k", "f", "v", "g"], arity("hset")),
        (args!["RAWSET"], arity("rawset")),
        (args!["RAWSET", "a", "b"], arity("rawset")),
        (args!["ECHO"], arity("echo")),
        (args!["ECHO", "a", "b"], arity("echo")),
        (args!["PING", "a", "b"], arity("ping")),
        (args!["MULTI", "x"], arity("multi")),
        (args!["EXEC", "x"], arity("exec")),
        (args!["DISCARD", "x"], arity("discard")),
        (args!["SELECT"], arity("select")),
        (args!["SELECT", "1", "2"], arity("select")),
        (args!["GET", "r:set"], unknown("GET")),
        (args!["del", "r:set"], unknown("del")),
        (args!["EXISTS", "r:set"], unknown("EXISTS")),
        (args!["FLUSHALL"], unknown("FLUSHALL")),
        (args!["EXEC"], exec_without()),
        (args!["DISCARD"], err("ERR DISCARD without MULTI")),
        // A block: counts relative to the block, nested MULTI refused without aborting it.
        (args!["MULTI"], Reply::ok()),
        (args!["MULTI"], err("ERR MULTI calls can not be nested")),
        (args!["SET", "r:m:a", "1"], queued()),
        (args!["SADD", "r:m:s", "a", "b"], queued()),
        (args!["SADD", "r:m:s", "b", "c"], queued()),
        (args!["HMSET", "r:m:h", "f", "v"], queued()),
        (args!["HSET", "r:m:h", "f", "w", "g", "x"], queued()),
        (args!["PING"], queued()),
        (args!["PING", "p"], queued()),
        (args!["ECHO", "e"], queued()),
        (args!["SELECT", "2"], queued()),
        (args!["SET", "r:m:a", "2"], queued()),
        (
            args!["EXEC"],
            Reply::array(vec![
                Reply::ok(),
                Reply::int(2),
                Reply::int(1),
                Reply::ok(),
                Reply::int(1),
                Reply::status("PONG"),
                Reply::bulk("p"),
                Reply::bulk("e"),
                Reply::ok(),
                Reply::ok(),
            ]),
        ),
        (args!["EXEC"], exec_without()),
        // DISCARD drops the block.
        (args!["MULTI"], Reply::ok()),
        (args!["SET", "r:discarded", "v"], queued()),
        (args!["DISCARD"], Reply::ok()),
        (args!["EXEC"], exec_without()),
        // RAWSET inside MULTI aborts the block; commands after the error are still queued.
        (args!["MULTI"], Reply::ok()),
        (args!["SET", "r:aborted:1", "v"], queued()),
        (
            args!["RAWSET", "x"],
            err("ERR RAWSET inside MULTI is not supported by a firehose relayer"),
        ),
        (args!["SET", "r:aborted:1", "w"], queued()),
        (args!["EXEC"], execabort()),
        (args!["EXEC"], exec_without()),
        // An unknown command inside MULTI aborts it.
        (args!["MULTI"], Reply::ok()),
        (args!["SET", "r:aborted:2", "v"], queued()),
        (args!["GET", "r:aborted:2"], unknown("GET")),
        (args!["EXEC"], execabort()),
        (args!["MULTI"], Reply::ok()),
        (args!["get", "k"], unknown("get")),
        (args!["EXEC"], execabort()),
        // Wrong arity inside MULTI aborts it.
        (args!["MULTI"], Reply::ok()),
        (args!["SADD", "r:aborted:3", "a"], queued()),
        (args!["SET", "k"], arity("set")),
        (args!["HSET", "k", "f"], arity("hset")),
        (args!["EXEC"], execabort()),
        // Type conflicts: that element is WRONGTYPE and has no effect; SET overwrites anything.
        (args!["MULTI"], Reply::ok()),
        (args!["SET", "r:wt:str", "v"], queued()),
        (args!["SADD", "r:wt:str", "a"], queued()),
        (args!["HMSET", "r:wt:str", "f", "v"], queued()),
        (args!["HSET", "r:wt:str", "f", "v"], queued()),
        (args!["SADD", "r:wt:set", "a"], queued()),
        (args!["HMSET", "r:wt:set", "f", "v"], queued()),
        (args!["HSET", "r:wt:set", "f", "v"], queued()),
        (args!["HMSET", "r:wt:hash", "f", "v"], queued()),
        (args!["SADD", "r:wt:hash", "m"], queued()),
        (args!["SET", "r:wt:set", "s"], queued()),
        (args!["SADD", "r:wt:set", "z"], queued()),
        (
            args!["EXEC"],
            Reply::array(vec![
                Reply::ok(),
                wrongtype(),
                wrongtype(),
                wrongtype(),
                Reply::int(1),
                wrongtype(),
                wrongtype(),
                Reply::ok(),
                wrongtype(),
                Reply::ok(),
                wrongtype(),
            ]),
        ),
        // Blocks without writes make no record.
        (args!["MULTI"], Reply::ok()),
        (args!["PING"], queued()),
        (args!["EXEC"], Reply::array(vec![Reply::status("PONG")])),
        (args!["MULTI"], Reply::ok()),
        (args!["EXEC"], Reply::array(vec![])),
        (args!["PING"], Reply::status("PONG")),
    ];
    lines.push(("SET", json!({"r:set": "v"})));
    lines.push(("SET with options", json!({"r:set:opts": "v"})));
    lines.push(("SADD a b a", json!({"r:sadd": ["a", "b"]})));
    lines.push(("SADD a", json!({"r:sadd": ["a"]})));
    lines.push(("HMSET f", json!({"r:hmset": {"f": "v"}})));
    lines.push(("HMSET f g", json!({"r:hmset": {"f": "v", "g": "w"}})));
    lines.push(("HSET f", json!({"r:hset": {"f": "v"}})));
    lines.push(("HSET f f g", json!({"r:hset": {"f": "w", "g": "x"}})));
    exp.raw("RAWSET", b"r:raw payload");
    lines.push((
        "the block",
        json!({"r:m:a": "2", "r:m:h": {"f": "w", "g": "x"}, "r:m:s": ["a", "b", "c"]}),
    ));
    lines.push((
        "the block with type conflicts",
        json!({"r:wt:hash": {"f": "v"}, "r:wt:set": "s", "r:wt:str": "v"}),
    ));
    let mut failures = Vec::new();
    for (cmd, want) in &plain {
        let got = c.cmd(cmd);
        if got != *want {
            failures.push(format!("{}: expected {want:?}, got {got:?}", show_args(cmd)));
        }
    }

    // A whole block in one write.
    let got = c.pipeline(&[
        args!["MULTI"],
        args!["SET", "r:pipe:k", "v"],
        args!["SADD", "r:pipe:s", "a"],
        args!["EXEC"],
        args!["PING"],
    ]);
    let want = vec![
        Reply::ok(),
        queued(),
        queued(),
        Reply::array(vec![Reply::ok(), Reply::int(1)]),
        Reply::status("PONG"),
    ];
    if got != want {
        failures.push(format!("pipelined block: expected {want:?}, got {got:?}"));
    }
    lines.push(("pipelined block", json!({"r:pipe:k": "v", "r:pipe:s": ["a"]})));

    // Inline commands (telnet, redis-cli's fallback) are commands too.
    c.send_raw(b"SET r:inline v\r\nPING\r\n");
    let got = c.read_replies(2);
    if got != vec![Reply::ok(), Reply::status("PONG")] {
        failures.push(format!("inline SET and PING: expected [+OK, +PONG], got {got:?}"));
    }
    lines.push(("inline SET", json!({"r:inline": "v"})));

    // A connection closed inside MULTI sends nothing for its block.
    let mut gone = relayer.client();
    assert_eq!(gone.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(gone.cmd(&["SET", "r:closed:k", "v"]), queued());
    assert_eq!(gone.cmd(&["SADD", "r:closed:s", "a"]), queued());
    drop(gone);
    let mut other = relayer.client();
    assert_eq!(other.cmd(&["SET", "r:after-close", "v"]), Reply::ok());
    lines.push((
        "SET after the other client closed inside MULTI",
        json!({"r:after-close": "v"}),
    ));

    // QUIT: +OK, then the relayer closes the connection.
    let got = c.cmd(&["QUIT"]);
    if got != Reply::ok() {
        failures.push(format!("QUIT: expected +OK, got {got:?}"));
    }
    if let Err(e) = c.wait_closed(HANG) {
        failures.push(format!("after QUIT: expected the connection closed: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} replies differ from the spec:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let end = now_ns();
    for (what, data) in lines {
        exp.line(what, data, (start, end));
    }
    stop_drained(&mut relayer);
    assert_bucket(&moto, "replies-bucket", &exp);
}

/// The size of the line `{"_ts":<19 digits>,"data":{"<key>":"<value>"}}` + newline, the record of
/// `SET key value` (value without characters JSON escapes).
fn set_line_len(key: &str, value_len: usize) -> usize {
    format!("{{\"_ts\":{},\"data\":{{\"{key}\":\"\"}}}}\n", "1".repeat(19)).len() + value_len
}

/// Bad input, each case on its own connection, with its error asserted, and a bystander client
/// (and a new client) served after each: malformed RESP and huge lengths get `-ERR Protocol
/// error: ...` and a closed connection; binary garbage too; a SET, a block and a RAWSET whose line
/// is over 1,024,000 bytes get the size error naming the line's size (the connection goes on),
/// while a RAWSET whose line is exactly the limit is accepted; the inputs that crashed the
/// original (SET/SADD with too few arguments, RAWSET without one, EXEC as the first command,
/// SADD/HMSET on a key of another type inside MULTI) get their errors. S3 then holds exactly the
/// accepted records.
#[test]
fn bad_input_is_refused_and_the_relayer_keeps_serving() {
    let (moto, mut relayer) = start_one("badinput", "badinput-bucket", "");
    let mut exp = Expect::new(Ts::Ns);
    let start = now_ns();
    let mut bystander = relayer.client();
    let mut by_n = 0;
    let mut by_lines = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut still_serving = |relayer: &mut Relayer, bystander: &mut Client, after: &str| {
        by_n += 1;
        let key = format!("bad:by:{by_n}");
        assert_eq!(
            bystander.cmd(&["SET", &key, "v"]),
            Reply::ok(),
            "the bystander's SET after {after}"
        );
        by_lines.push((after.to_string(), json!({ key: "v" })));
        assert!(relayer.try_wait().is_none(), "the relayer exited after {after}");
        assert_eq!(
            relayer.client().cmd(&["PING"]),
            Reply::status("PONG"),
            "a new client's PING after {after}"
        );
    };

    let mut garbage = vec![0u8, 1, 2, 0xff, 0xfe, b'\r', b'\n', 0x80];
    garbage.extend((0..4000u32).map(|i| (i * 7919 % 256) as u8));
    let protocol_errors: Vec<(&str, Vec<u8>)> = vec![
        ("a bulk length that is not a number", b"*1\r\n$x\r\n".to_vec()),
        ("an integer as an argument", b"*2\r\n$3\r\nSET\r\n:1\r\n".to_vec()),
        ("*1000000000", b"*1000000000\r\n".to_vec()),
        (
            "$2000000000 after a valid header",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000000\r\n".to_vec(),
        ),
        ("binary garbage", garbage),
    ];
    for (what, input) in &protocol_errors {
        let mut c = relayer.client();
        // The relayer may close before it has read everything: a failed write is fine.
        let _ = c.try_send_raw(input);
        match c.try_read_reply() {
            Ok(r) if r.is_error_starting("ERR Protocol error: ") => {
                if let Err(e) = c.wait_closed(HANG) {
                    failures.push(format!(
                        "{what}: after {r:?}, expected the connection closed: {e}"
                    ));
                }
            }
            other => failures.push(format!(
                "{what} ({}): expected -ERR Protocol error: ..., got {other:?}",
                show_bytes(input, 40)
            )),
        }
        still_serving(&mut relayer, &mut bystander, what);
    }

    // Records over the limit: the size error, and the connection goes on.
    let over = 1_100_000;
    let size_err = |n: usize| {
        Reply::Error(format!(
            "ERR record of {n} bytes is over the Firehose record limit of {RECORD_LIMIT} bytes"
        ))
    };
    let big = "x".repeat(over);
    let mut c = relayer.client();
    let got = c.cmd(&["SET", "bad:big", &big]);
    if got != size_err(set_line_len("bad:big", over)) {
        failures.push(format!(
            "SET of a {over}-byte value: expected {:?}, got {got:?}",
            size_err(set_line_len("bad:big", over))
        ));
    }
    assert_eq!(
        c.cmd(&["PING"]),
        Reply::status("PONG"),
        "PING after the too-big SET"
    );
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "bad:bigm", &big]), Reply::status("QUEUED"));
    let got = c.cmd(&["EXEC"]);
    if got != size_err(set_line_len("bad:bigm", over)) {
        failures.push(format!(
            "EXEC of a block with a {over}-byte value: expected {:?}, got {got:?}",
            size_err(set_line_len("bad:bigm", over))
        ));
    }
    assert_eq!(
        c.cmd(&["EXEC"]),
        Reply::error("ERR EXEC without MULTI"),
        "EXEC after the too-big block"
    );
    let got = c.cmd(&["RAWSET", &big]);
    if got != size_err(over + 1) {
        failures.push(format!(
            "RAWSET of {over} bytes: expected {:?}, got {got:?}",
            size_err(over + 1)
        ));
    }
    let mut at_limit = b"raw bad:at-limit ".to_vec();
    at_limit.resize(RECORD_LIMIT - 1, b'r');
    let got = c.cmd(&[&b"RAWSET"[..], &at_limit]);
    if got != Reply::ok() {
        failures.push(format!(
            "RAWSET whose line is exactly {RECORD_LIMIT} bytes: expected +OK, got {got:?}"
        ));
    }
    exp.raw("RAWSET at the limit", &at_limit);
    let mut past_limit = at_limit.clone();
    past_limit.push(b'r');
    let got = c.cmd(&[&b"RAWSET"[..], &past_limit]);
    if got != size_err(RECORD_LIMIT + 1) {
        failures.push(format!(
            "RAWSET whose line is {} bytes: expected {:?}, got {got:?}",
            RECORD_LIMIT + 1,
            size_err(RECORD_LIMIT + 1)
        ));
    }
    drop(c);
    still_serving(&mut relayer, &mut bystander, "the records over the limit");

    // The inputs that crashed the original daemon.
    let arity = |name: &str| Reply::Error(format!("ERR wrong number of arguments for '{name}' command"));
    type Case<'a> = (&'a str, Vec<Vec<Vec<u8>>>, Vec<Reply>);
    let crashers: Vec<Case> = vec![
        ("SET without arguments", vec![args!["SET"]], vec![arity("set")]),
        ("SET with a key only", vec![args!["SET", "k"]], vec![arity("set")]),
        ("SADD without arguments", vec![args!["SADD"]], vec![arity("sadd")]),
        (
            "SADD with a key only",
            vec![args!["SADD", "k"]],
            vec![arity("sadd")],
        ),
        (
            "RAWSET without argument",
            vec![args!["RAWSET"]],
            vec![arity("rawset")],
        ),
        (
            "EXEC as the first command",
            vec![args!["EXEC"]],
            vec![Reply::error("ERR EXEC without MULTI")],
        ),
        (
            "SADD/HMSET on a key of another type inside MULTI",
            vec![
                args!["MULTI"],
                args!["SET", "bad:t:k", "v"],
                args!["SADD", "bad:t:k", "a"],
                args!["HMSET", "bad:t:k", "f", "v"],
                args!["SADD", "bad:t:s", "a"],
                args!["HMSET", "bad:t:s", "f", "v"],
                args!["EXEC"],
            ],
            {
                let q = Reply::status("QUEUED");
                let wt = Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value");
                vec![
                    Reply::ok(),
                    q.clone(),
                    q.clone(),
                    q.clone(),
                    q.clone(),
                    q,
                    Reply::array(vec![Reply::ok(), wt.clone(), wt.clone(), Reply::int(1), wt]),
                ]
            },
        ),
    ];
    for (what, cmds, want) in &crashers {
        let mut c = relayer.client();
        let got: Vec<Reply> = cmds.iter().map(|cmd| c.cmd(cmd)).collect();
        if got != *want {
            failures.push(format!("{what}: expected {want:?}, got {got:?}"));
        }
        assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"), "PING after {what}");
        drop(c);
        still_serving(&mut relayer, &mut bystander, what);
    }
    let end = now_ns();
    exp.line(
        "the block with type conflicts",
        json!({"bad:t:k": "v", "bad:t:s": ["a"]}),
        (start, end),
    );
    for (after, data) in by_lines {
        exp.line(format!("bystander SET after {after}"), data, (start, end));
    }
    assert!(
        failures.is_empty(),
        "{} bad-input cases differ from the spec:\n{}",
        failures.len(),
        failures.join("\n")
    );
    stop_drained(&mut relayer);
    assert_bucket(&moto, "badinput-bucket", &exp);
}

/// Bad firehose entries: `--check` exits with status 2 and its output names the key, for
/// streamName missing, timestamp = "s", buffer = 0, maxConnections = 0, flushInterval = 0, an
/// invalid endpoint URL and negative numbers; a start on such a file exits 2 as well. Valid
/// entries (every key of the spec, snake_case keys) pass `--check`.
#[test]
fn firehose_config_errors_exit_2_naming_the_key() {
    let entry = |body: &str| {
        format!(
            "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"tcp://127.0.0.1:{}\"\n{body}\n",
            free_port()
        )
    };
    let with = |extra: &str| {
        entry(&format!(
            "streamName = \"events\"\nregion = \"us-east-1\"\n{extra}"
        ))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "streamName missing",
            entry("region = \"us-east-1\""),
            "streamName",
        ),
        ("timestamp = \"s\"", with("timestamp = \"s\""), "timestamp"),
        ("buffer = 0", with("buffer = 0"), "buffer"),
        ("maxConnections = 0", with("maxConnections = 0"), "maxConnections"),
        ("flushInterval = 0", with("flushInterval = 0"), "flushInterval"),
        (
            "flushInterval negative",
            with("flushInterval = -0.5"),
            "flushInterval",
        ),
        ("endpoint not a URL", with("endpoint = \"not a url\""), "endpoint"),
        ("maxRecords negative", with("maxRecords = -1"), "maxRecords"),
        ("drainTimeout negative", with("drainTimeout = -1"), "drainTimeout"),
        ("retryTimeout negative", with("retryTimeout = -5"), "retryTimeout"),
        ("timeout negative", with("timeout = -1"), "timeout"),
    ];
    let mut failures = Vec::new();
    for (what, config, key) in &cases {
        let out = check_config(config);
        let text = format!("{}\n{}", out.stdout, out.stderr).to_lowercase();
        let key_l = key.to_lowercase();
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit status 2, got {}", out.status));
        }
        if !text.contains(&key_l) && !text.contains(&snake(key)) {
            problems.push(format!("the key {key} named"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{what}: expected {}; stdout: {} stderr: {}",
                problems.join(", "),
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
    }

    // A start on a bad file exits 2 too, naming the key.
    let mut r = Relayer::spawn(&with("buffer = 0"));
    let st = r.wait_exit(EXIT);
    if st.code() != Some(2) || !r.log().contains("buffer") {
        failures.push(format!(
            "starting on a file with buffer = 0: expected exit status 2 and 'buffer' in the log, got {st}; log: {}",
            r.log().trim()
        ));
    }

    let valid: Vec<(&str, String)> = vec![
        ("minimal", with("")),
        (
            "every key",
            with(
                "endpoint = \"http://127.0.0.1:4566\"\nmaxRecords = 100\nmaxConnections = 4\n\
                 flushInterval = 0.2\nbuffer = 20000\ncritical = true\ndrainTimeout = 5\n\
                 retryTimeout = 300\ndeadLetterFile = \"$DIR/dead.jsonl\"\ntimestamp = \"ms\"\n\
                 timeout = 15\nmaxClients = 100",
            ),
        ),
        ("a profile", with("profile = \"relayer\"")),
        ("timestamp = \"ns\"", with("timestamp = \"ns\"\nmaxRecords = 0")),
        (
            "snake_case keys",
            entry(
                "stream_name = \"events\"\nmax_connections = 3\nflush_interval = 1\n\
                 drain_timeout = 2\nmax_records = 1\ndead_letter_file = \"$DIR/dead.jsonl\"",
            ),
        ),
        ("a unix listen", {
            "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"unix:$DIR/fh.sock\"\nstreamName = \"events\"\n"
                .to_string()
        }),
    ];
    for (what, config) in &valid {
        let out = check_config(config);
        if !out.status.success() {
            failures.push(format!(
                "valid entry ({what}) refused by --check with {}: stdout: {} stderr: {}",
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `maxConnections` -> `max_connections`.
fn snake(key: &str) -> String {
    let mut s = String::new();
    for ch in key.chars() {
        if ch.is_ascii_uppercase() {
            s.push('_');
        }
        s.push(ch.to_ascii_lowercase());
    }
    s
}

/// The PHP example (examples/php/firehose_stream.php, phpredis) over the relayer's unix socket,
/// 150 iterations: it exits 0 with its summary line and counts; its lines reach S3 while the
/// relayer runs (flushInterval), and after a draining SIGTERM S3 holds exactly its records (SET, SADD, HMSET, HSET, RAWSET, one line per MULTI block, nothing
/// for the discarded blocks), line by line.
#[test]
fn php_firehose_stream_example_over_unix_socket() {
    const N: usize = 150;
    let moto = Moto::start();
    moto.create_delivery_stream("php", "php-bucket");
    let mut relayer = Relayer::start(&entry(
        "unix:$DIR/firehose.sock",
        "php",
        &moto.url(),
        "maxRecords = 50",
    ));
    let sock = relayer.unix_path();
    let (run, window) = run_php_example(sock.to_str().unwrap(), 0, N);
    let mut exp = Expect::new(Ts::Ns);
    expect_php(&mut exp, &run, N, window);
    // Delivered within the flush interval, without waiting for a stop: every line (a RAWSET
    // payload here holds no newline) reaches S3 while the relayer runs.
    let want = exp.lines.len() + exp.raws.len();
    wait_until(DELIVERY, &format!("{want} lines in S3 before any stop"), || {
        let objects = moto.s3_objects("php-bucket");
        objects
            .iter()
            .map(|(_, b)| b.iter().filter(|&&c| c == b'\n').count())
            .sum::<usize>()
            >= want
    });
    stop_drained(&mut relayer);
    assert_bucket(&moto, "php-bucket", &exp);
}
