//! Firehose relayer against the fault-injecting endpoint of the integration crate
//! (`fake_firehose`): the batching limits, the flush interval, entry failures, throttling and 5xx
//! answers, slow answers, an endpoint down for 10 s, both buffer-full policies, the retry timeout
//! and dead-letter file, the drain at stop, and the record size limit.
//!
//! Every line the tests send is `SET c<client>:<seq> <value>`, the value a deterministic function
//! of client, sequence number and length, so each line that arrives is checked byte for byte
//! (`{"_ts":<ns>,"data":{"c1:7":"..."}}`), identified, and counted: missing lines fail a test,
//! duplicates are printed (and must be 0 where no call can have been stored and then given up).

use crate::helpers::{self, command_time, complete_lines, show_ids, sum_field, Delivery, LineId};
use integration::fake_firehose::{CallInfo, FakeFirehose, Faults, Outcome};
use integration::fake_firehose::{MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, MAX_RECORD_BYTES};
use integration::log::{STOPPED_DEAD_LETTER, STOPPED_LOST, STOPPED_OK};
use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUFFER_FULL: &str = "ERR firehose buffer full: record not accepted, try again later";
const DEAD_LETTER_MSG: &str = "firehose records written to the dead-letter file";
const LOST_MSG: &str = "firehose records lost";
const STOPPING: &str = "ERR firehose relayer stopping: record not accepted";

type Id = LineId;

/// One firehose entry on a free port writing to `fake` (stream `s`, flush every 0.2 s); `extra`
/// (more `key = value` lines) goes into the entry and may override nothing set here.
fn config(fake: &FakeFirehose, extra: &str) -> String {
    firehose_entry(&tcp_listen(), "s", &fake.url(), extra)
}

/// `config` with `flushInterval = 0.2` unless `extra` sets it.
fn start(fake: &FakeFirehose, extra: &str) -> Relayer {
    let flush = if extra.to_ascii_lowercase().contains("flushinterval") {
        ""
    } else {
        "flushInterval = 0.2\n"
    };
    Relayer::start(&config(fake, &format!("{flush}{extra}")))
}

fn key(id: Id) -> String {
    format!("c{}:{}", id.0, id.1)
}

/// The value of line `id` with `len` bytes (at least its prefix `<client>.<seq>.`): a pattern that
/// depends on the id and the position, so a cut, shifted or mixed-up value is seen.
fn value(id: Id, len: usize) -> String {
    let mut v = format!("{}.{}.", id.0, id.1);
    let start = v.len();
    v.extend((start..len).map(|i| (b'a' + ((i * 7 + id.1 as usize + id.0) % 26) as u8) as char));
    v
}

/// The exact line (without `\n`) the relayer writes for `SET key value` at `ts` (ns).
fn line_for(ts: u64, key: &str, value: &str) -> String {
    format!(
        "{{\"_ts\":{ts},\"data\":{{{}:{}}}}}",
        Value::from(key),
        Value::from(value)
    )
}

/// Size of the line (JSON text + `\n`) of `SET key <value of len bytes>` with a 19-digit `_ts`.
fn line_size(key: &str, value_len: usize) -> usize {
    line_for(1_000_000_000_000_000_000, key, &"x".repeat(value_len)).len() + 1
}

/// Checks that `raw` is exactly the line of a `SET c<client>:<seq> <value(id, len)>` (ns
/// timestamp, within the last hour) and returns its id.
fn parse_line(raw: &[u8]) -> Result<Id, String> {
    let show = || show_bytes(raw, 160);
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("line is not JSON ({e}): {}", show()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("line is not an object: {}", show()))?;
    let ts = obj.get("_ts").and_then(Value::as_u64);
    let data = obj.get("data").and_then(Value::as_object);
    let (Some(ts), Some(data), 2) = (ts, data, obj.len()) else {
        return Err(format!(
            "expected {{\"_ts\":<integer>,\"data\":{{..}}}}, got {}",
            show()
        ));
    };
    command_time(ts).map_err(|e| format!("{e}: {}", show()))?;
    let (Some((k, Value::String(val))), 1) = (data.iter().next(), data.len()) else {
        return Err(format!("data is not one string field: {}", show()));
    };
    let id = k
        .strip_prefix('c')
        .and_then(|r| r.split_once(':'))
        .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| format!("key {k:?} is not one the test sent: {}", show()))?;
    if *val != value(id, val.len()) {
        return Err(format!("value of {k} is not the one sent: {}", show()));
    }
    let expected = line_for(ts, k, val);
    if raw != expected.as_bytes() {
        return Err(format!(
            "line bytes differ from serde_json's {}: {}",
            show_bytes(expected.as_bytes(), 160),
            show()
        ));
    }
    Ok(id)
}

/// Sends `SET`s for `seqs` of `client` in pipelines of `pipeline`, values of `len(seq)` bytes;
/// every reply must be `+OK`. Returns the ids sent.
fn set_lines(
    c: &mut Client,
    client: usize,
    seqs: std::ops::Range<u64>,
    len: impl Fn(u64) -> usize,
    pipeline: usize,
) -> Result<Vec<Id>, String> {
    let ids: Vec<Id> = seqs.map(|s| (client, s)).collect();
    for chunk in ids.chunks(pipeline.max(1)) {
        let cmds: Vec<Vec<String>> = chunk
            .iter()
            .map(|&id| vec!["SET".to_string(), key(id), value(id, len(id.1))])
            .collect();
        c.send_many(&cmds);
        for &id in chunk {
            let r = c.try_read_reply().map_err(|e| format!("SET {}: {e}", key(id)))?;
            if r != Reply::ok() {
                return Err(format!("SET {} replied {r:?}", key(id)));
            }
        }
    }
    Ok(ids)
}

/// Every line stored by `fake` compared with `acked`.
fn delivery(fake: &FakeFirehose, acked: &HashSet<Id>) -> Delivery {
    let lines = fake.lines();
    helpers::delivery(lines.iter().map(|l| &l[..]), acked, parse_line)
}

/// A one-line summary of the calls the endpoint got.
fn calls_summary(calls: &[CallInfo]) -> String {
    let mut ok = 0;
    let mut failed_entries = 0;
    let mut refused = 0;
    let mut invalid = Vec::new();
    for c in calls {
        match &c.outcome {
            Outcome::Ok { failed } => {
                ok += 1;
                failed_entries += failed;
            }
            Outcome::Invalid(e) => invalid.push(e.clone()),
            _ => refused += 1,
        }
    }
    format!(
        "{} calls: {ok} answered 200 ({failed_entries} entries failed), {refused} failed whole, {} invalid {:?}",
        calls.len(),
        invalid.len(),
        invalid.iter().take(3).collect::<Vec<_>>()
    )
}

/// Waits until every line of `acked` has reached `fake`, then returns the delivery (which has no
/// missing line). Panics after `timeout` naming what is missing.
fn wait_delivered(fake: &FakeFirehose, acked: &HashSet<Id>, timeout: Duration, what: &str) -> Delivery {
    let deadline = Instant::now() + timeout;
    loop {
        if fake.line_count() >= acked.len() {
            let d = delivery(fake, acked);
            if d.missing.is_empty() {
                return d;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what}: {} of {} acknowledged lines never reached the endpoint within {timeout:?} \
                     ({}); {} lines stored, {} duplicates; {}",
                    d.missing.len(),
                    acked.len(),
                    show_ids(&d.missing),
                    d.lines,
                    d.duplicates,
                    calls_summary(&fake.calls())
                );
            }
        } else if Instant::now() >= deadline {
            panic!(
                "{what}: {} lines reached the endpoint within {timeout:?}, {} acknowledged; {}",
                fake.line_count(),
                acked.len(),
                calls_summary(&fake.calls())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Panics unless every call the endpoint got was a PutRecordBatch to stream `s` within the
/// service limits (at most 500 records, 4 MiB of data, 1,024,000 bytes a record), every record
/// holds at most `max_lines` newline-terminated lines.
fn check_calls_within_limits(fake: &FakeFirehose, max_lines: usize) {
    let calls = fake.calls();
    let records = fake.records();
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(
            (c.operation.as_str(), c.stream.as_str()),
            ("PutRecordBatch", "s"),
            "call {i}: the relayer must use PutRecordBatch on the configured stream"
        );
        if let Outcome::Invalid(e) = &c.outcome {
            panic!("call {i} was refused by the endpoint as AWS would refuse it: {e}");
        }
        assert!(
            c.records <= MAX_RECORDS_PER_CALL,
            "call {i} has {} records, over {MAX_RECORDS_PER_CALL}",
            c.records
        );
        assert!(
            c.bytes <= MAX_BYTES_PER_CALL,
            "call {i} has {} bytes of data, over {MAX_BYTES_PER_CALL}",
            c.bytes
        );
        assert!(
            c.max_record <= MAX_RECORD_BYTES,
            "call {i} has a record of {} bytes, over {MAX_RECORD_BYTES}",
            c.max_record
        );
    }
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.ends_with(b"\n"),
            "record {i} does not end with a newline: {}",
            show_bytes(&r[r.len().saturating_sub(80)..], 80)
        );
        let lines = r.iter().filter(|&&b| b == b'\n').count();
        assert!(
            lines <= max_lines,
            "record {i} packs {lines} lines, over maxRecords ({max_lines})"
        );
    }
}

/// The lines of the dead-letter file at `path`, checked and identified.
fn dead_letter_ids(path: &std::path::Path) -> Vec<Id> {
    crate::helpers::dead_letter_lines(path, parse_line)
}

// ---------------------------------------------------------------------------------------------
// Batching

/// Four clients pipelining small SETs, with a few lines near the limits in between (1,000,000
/// and 300,000 bytes), through a relayer with `maxRecords = max_records` and `maxConnections =
/// max_connections`: every call and record is within the service limits and maxRecords, every line
/// arrives exactly once, in order per client (within each call; across calls too with one
/// connection), and lines are packed when maxRecords allows it.
fn batching(max_records: usize, max_connections: usize) {
    let fake = FakeFirehose::start();
    let relayer = Arc::new(start(
        &fake,
        &format!("maxRecords = {max_records}\nmaxConnections = {max_connections}"),
    ));
    const CLIENTS: usize = 4;
    const SMALL: u64 = 1500;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    {
        let (relayer, acked) = (relayer.clone(), acked.clone());
        run_threads(CLIENTS, move |client| {
            let mut c = relayer.client();
            c.set_read_timeout(HANG);
            let small = |s: u64| 20 + (s as usize * 37 + client * 11) % 180;
            let mut ids = set_lines(&mut c, client, 0..SMALL / 2, small, 100)?;
            // Near the limits: client 0 five lines of 1,000,000 bytes (four fit in a call),
            // client 1 ten of 300,000 (three fit in a record).
            let big = match client {
                0 => 5,
                1 => 10,
                _ => 0,
            };
            let big_len = if client == 0 { 1_000_000 } else { 300_000 };
            ids.extend(set_lines(
                &mut c,
                client,
                SMALL / 2..SMALL / 2 + big,
                |_| big_len,
                1,
            )?);
            ids.extend(set_lines(
                &mut c,
                client,
                SMALL / 2 + big..SMALL + big,
                small,
                100,
            )?);
            acked.lock().unwrap().extend(ids);
            Ok(())
        });
    }
    let acked = acked.lock().unwrap().clone();
    let d = wait_delivered(&fake, &acked, DELIVERY, "batching");
    let max_lines = max_records.max(1);
    check_calls_within_limits(&fake, max_lines);
    assert_eq!(d.duplicates, 0, "with no fault, no line may arrive twice");
    assert!(
        d.unexpected.is_empty(),
        "lines never sent arrived: {}",
        show_ids(&d.unexpected)
    );
    assert_eq!(d.lines, acked.len(), "every line exactly once");

    // Order per client: within each call always; across calls with a single call in flight.
    let calls = fake.calls();
    let records = fake.records();
    let ids_of = |range: std::ops::Range<usize>| -> Vec<Id> {
        records[range]
            .iter()
            .flat_map(|r| {
                r[..r.len() - 1]
                    .split(|&b| b == b'\n')
                    .map(|l| parse_line(l).unwrap())
            })
            .collect()
    };
    let check_order = |ids: &[Id], what: &str| {
        let mut last: HashMap<usize, u64> = HashMap::new();
        for &(client, seq) in ids {
            if let Some(prev) = last.insert(client, seq) {
                assert!(
                    seq > prev,
                    "{what}: client {client}'s line {seq} came after its line {prev}"
                );
            }
        }
    };
    for (i, c) in calls.iter().enumerate() {
        check_order(&ids_of(c.accepted.clone()), &format!("call {i}"));
    }
    if max_connections == 1 {
        check_order(&ids_of(0..records.len()), "with maxConnections = 1, all calls");
    }

    let most_lines = records
        .iter()
        .map(|r| r.iter().filter(|&&b| b == b'\n').count())
        .max();
    let most_records = calls.iter().map(|c| c.records).max();
    let most_bytes = calls.iter().map(|c| c.bytes).max();
    eprintln!(
        "maxRecords {max_records}: {} lines in {} records, {} calls; most lines a record {most_lines:?}, \
         most records a call {most_records:?}, most bytes a call {most_bytes:?}",
        d.lines,
        records.len(),
        calls.len()
    );
    if max_records > 1 {
        assert!(
            most_lines > Some(1),
            "maxRecords = {max_records}: {} lines pipelined by {CLIENTS} clients and not one record \
             packs two of them",
            d.lines
        );
    }
}

/// maxRecords = 0: one line per record, calls of at most 500 records and 4 MiB, one call in flight:
/// every line once and in order per client.
#[test]
fn batching_max_records_0() {
    batching(0, 1);
}

/// maxRecords = 1: one line per record, like 0; four calls in flight.
#[test]
fn batching_max_records_1() {
    batching(1, 4);
}

/// maxRecords = 50: at most 50 lines and 1,024,000 bytes a record; four calls in flight.
#[test]
fn batching_max_records_50() {
    batching(50, 4);
}

/// maxRecords = 500: records filled by size (300,000-byte lines: three to a record) as much as by
/// count, one call in flight: in order per client.
#[test]
fn batching_max_records_500() {
    batching(500, 1);
}

/// A single SET with a long maxRecords and nothing else sent leaves after flushInterval, alone
/// in its call: within 2 s with flushInterval = 0.2; not within 1 s with flushInterval = 5 (but
/// within 10 s).
#[test]
fn flush_interval_sends_a_lone_line() {
    for (flush, not_before, by) in [(0.2, Duration::ZERO, 2), (5.0, Duration::from_secs(1), 10)] {
        let fake = FakeFirehose::start();
        let relayer = start(&fake, &format!("maxRecords = 500\nflushInterval = {flush}"));
        let mut c = relayer.client();
        let start = Instant::now();
        let ids: HashSet<Id> = set_lines(&mut c, 0, 0..1, |_| 10, 1)
            .unwrap()
            .into_iter()
            .collect();
        if !not_before.is_zero() {
            std::thread::sleep(not_before);
            assert_eq!(
                fake.line_count(),
                0,
                "flushInterval = {flush}: the line left before {not_before:?}"
            );
        }
        let d = wait_delivered(
            &fake,
            &ids,
            Duration::from_secs(by) - start.elapsed(),
            &format!("a lone SET with flushInterval = {flush}"),
        );
        eprintln!(
            "flushInterval = {flush}: a lone SET reached the endpoint {:?} after it was sent",
            start.elapsed()
        );
        assert_eq!((d.lines, d.duplicates), (1, 0));
        let calls = fake.calls();
        assert_eq!(calls.len(), 1, "one call: {calls:?}");
        assert_eq!(
            (calls[0].records, calls[0].outcome.clone()),
            (1, Outcome::Ok { failed: 0 })
        );
    }
}

/// 1200 lines pipelined at once with maxRecords = 1, one call in flight and a flush interval far
/// longer than the sending: calls leave as soon as they are full, with 500, 500, then the last
/// 200 records at the flush.
#[test]
fn calls_are_filled_when_lines_wait() {
    let fake = FakeFirehose::start();
    let relayer = start(&fake, "maxRecords = 1\nmaxConnections = 1\nflushInterval = 3");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let ids: HashSet<Id> = set_lines(&mut c, 0, 0..1200, |_| 30, 100)
        .unwrap()
        .into_iter()
        .collect();
    let d = wait_delivered(&fake, &ids, DELIVERY, "1200 lines");
    assert_eq!((d.lines, d.duplicates), (1200, 0));
    let sizes: Vec<usize> = fake.calls().iter().map(|c| c.records).collect();
    assert_eq!(sizes, vec![500, 500, 200], "records per call");
}

// ---------------------------------------------------------------------------------------------
// Faults

/// Config of the fault tests: records of up to 10 lines (a failed entry is a record of several
/// lines), a flush every 0.05 s so that the writes of `send_under_faults` make dozens of calls.
const FAULTS_CONFIG: &str = "maxRecords = 10\nflushInterval = 0.05";

/// Four clients send 1000 SETs each, in 50 pipelines of 20 about 10 ms apart, through `relayer`
/// (configured with `FAULTS_CONFIG`) while `fake` has its faults; every line must arrive. Returns
/// the acknowledged ids and the delivery.
fn send_under_faults(fake: &FakeFirehose, relayer: Relayer, what: &str) -> (HashSet<Id>, Delivery) {
    const CLIENTS: usize = 4;
    const PER_CLIENT: u64 = 1000;
    let relayer = Arc::new(relayer);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    {
        let (relayer, acked) = (relayer.clone(), acked.clone());
        run_threads(CLIENTS, move |client| {
            let mut c = relayer.client();
            c.set_read_timeout(HANG);
            for wave in (0..PER_CLIENT).step_by(20) {
                let ids = set_lines(&mut c, client, wave..wave + 20, |s| 30 + (s as usize % 50), 20)?;
                acked.lock().unwrap().extend(ids);
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });
    }
    let acked = acked.lock().unwrap().clone();
    let d = wait_delivered(fake, &acked, DELIVERY, what);
    check_calls_within_limits(fake, 10);
    assert!(
        d.unexpected.is_empty(),
        "{what}: lines never sent arrived: {}",
        show_ids(&d.unexpected)
    );
    eprintln!(
        "{what}: {} lines acknowledged, {} stored, {} duplicates; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        calls_summary(&fake.calls())
    );
    (acked, d)
}

/// 30% of the entries of every call answered with an ErrorCode (FailedPutCount > 0): every line
/// arrives, and no line twice (only the failed entries are resent).
#[test]
fn failed_entries_are_resent_alone() {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        fail_entries: 0.3,
        seed: 3,
        ..Faults::default()
    });
    let relayer = start(&fake, FAULTS_CONFIG);
    let (_, d) = send_under_faults(&fake, relayer, "30% of entries failing");
    let failed: usize = fake
        .calls()
        .iter()
        .map(|c| match c.outcome {
            Outcome::Ok { failed } => failed,
            _ => 0,
        })
        .sum();
    assert!(
        failed > 0,
        "the endpoint failed no entry: the test proved nothing"
    );
    assert_eq!(
        d.duplicates, 0,
        "entries stored by the endpoint were sent again: only the failed ones may be"
    );
}

/// Half the calls answered HTTP 400 ThrottlingException: every line arrives, none twice (a
/// throttled call stored nothing).
#[test]
fn throttled_calls_are_retried() {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        throttle: 0.5,
        // The draws of this seed throttle the first call (and later ones), however the relayer
        // happens to batch.
        seed: 4,
        ..Faults::default()
    });
    let relayer = start(&fake, FAULTS_CONFIG);
    let (_, d) = send_under_faults(&fake, relayer, "50% of calls throttled");
    let throttled = fake
        .calls()
        .iter()
        .filter(|c| c.outcome == Outcome::Throttled)
        .count();
    assert!(throttled > 0, "no call was throttled: the test proved nothing");
    assert_eq!(
        d.duplicates, 0,
        "a throttled call stores nothing, yet lines arrived twice"
    );
}

/// Half the calls answered HTTP 500 InternalFailure, and a few more 503
/// ServiceUnavailableException: every line arrives, none twice.
#[test]
fn server_errors_are_retried() {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        server_error: 0.5,
        unavailable: 0.2,
        // The draws of this seed answer the first call 500 and the second 503.
        seed: 25,
        ..Faults::default()
    });
    let relayer = start(&fake, FAULTS_CONFIG);
    let (_, d) = send_under_faults(&fake, relayer, "50% of calls 500, 20% of the others 503");
    let calls = fake.calls();
    let n500 = calls.iter().filter(|c| c.outcome == Outcome::ServerError).count();
    let n503 = calls.iter().filter(|c| c.outcome == Outcome::Unavailable).count();
    assert!(
        n500 > 0 && n503 > 0,
        "{n500} calls got 500 and {n503} got 503: the test proved nothing"
    );
    assert_eq!(
        d.duplicates, 0,
        "a call answered 5xx stores nothing, yet lines arrived twice"
    );
}

/// Answers delayed 1.5 s with `timeout = 1` for 3 s, then prompt: the relayer gives the slow calls
/// up and sends them again, so every line arrives; duplicates (calls the endpoint stored but the
/// relayer gave up on) are allowed, and printed.
#[test]
fn slow_answers_past_the_timeout_are_retried() {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        delay: Duration::from_millis(1500),
        ..Faults::default()
    });
    let relayer = Arc::new(start(&fake, "timeout = 1\nmaxRecords = 10"));
    let slow_until = Instant::now() + Duration::from_secs(3);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let writers = {
        let (relayer, acked) = (relayer.clone(), acked.clone());
        std::thread::spawn(move || {
            run_threads(2, move |client| {
                let mut c = relayer.client();
                c.set_read_timeout(HANG);
                let mut seq = 0;
                // Writes while it is slow and a little after.
                while Instant::now() < slow_until + Duration::from_secs(1) {
                    let ids = set_lines(&mut c, client, seq..seq + 10, |_| 40, 10)?;
                    acked.lock().unwrap().extend(ids);
                    seq += 10;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })
        })
    };
    while Instant::now() < slow_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    fake.set_faults(Faults::default());
    writers.join().expect("writers");
    let acked = acked.lock().unwrap().clone();
    let d = wait_delivered(&fake, &acked, DELIVERY, "after slow answers");
    check_calls_within_limits(&fake, 10);
    let log = relayer.log();
    assert!(
        log.lines()
            .any(|l| l.contains("firehose call failed")
                && (l.contains("timed out") || l.contains("no answer in"))),
        "no call timed out, as far as the relayer's log says; log:\n{log}"
    );
    // The endpoint stores a call before its delay: a call given up and sent again arrives twice.
    assert!(
        d.duplicates > 0,
        "calls answered after the timeout were not sent again: no duplicate; {}",
        calls_summary(&fake.calls())
    );
    assert!(
        d.unexpected.is_empty(),
        "lines never sent arrived: {}",
        show_ids(&d.unexpected)
    );
    eprintln!(
        "slow answers: {} lines acknowledged, {} stored, {} duplicates (calls given up after the endpoint \
         stored them); {}",
        acked.len(),
        d.lines,
        d.duplicates,
        calls_summary(&fake.calls())
    );
}

/// The endpoint goes down (connections refused, open ones cut) for 10 s while four clients keep
/// writing, then comes back: every acknowledged line arrives (duplicates, from calls cut after the
/// endpoint stored them, are printed).
#[test]
fn endpoint_down_for_ten_seconds() {
    let fake = FakeFirehose::start();
    let relayer = Arc::new(start(&fake, "buffer = 100000\nmaxRecords = 10"));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let writers = {
        let (relayer, acked, stop) = (relayer.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            run_threads(4, move |client| {
                let mut c = relayer.client();
                c.set_read_timeout(HANG);
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    let ids = set_lines(&mut c, client, seq..seq + 5, |s| 20 + s as usize % 30, 5)?;
                    acked.lock().unwrap().extend(ids);
                    seq += 5;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            })
        })
    };
    let count = || acked.lock().unwrap().len();
    wait_until(HANG, "the clients writing", || count() >= 200);
    fake.go_down();
    let down_at = Instant::now();
    let before = count();
    while down_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = count() - before;
    fake.come_up();
    let n = count();
    wait_until(HANG, "more writes after the endpoint is back", || {
        count() >= n + 200
    });
    stop.store(true, Ordering::SeqCst);
    writers.join().expect("writers");
    assert!(during > 0, "no client could write while the endpoint was down");
    let acked = acked.lock().unwrap().clone();
    let d = wait_delivered(&fake, &acked, DELIVERY, "after 10 s down");
    check_calls_within_limits(&fake, 10);
    assert!(
        d.unexpected.is_empty(),
        "lines never sent arrived: {}",
        show_ids(&d.unexpected)
    );
    eprintln!(
        "10 s down: {} lines acknowledged ({during} while down), {} stored, {} duplicates; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        calls_summary(&fake.calls())
    );
}

// ---------------------------------------------------------------------------------------------
// Buffer policies

/// `buffer = 100`, `critical = false`, endpoint down from the start: the first 100 SETs get `+OK`,
/// later ones the buffer-full error (on this and another connection, which both go on working);
/// once the endpoint is back every `+OK`'d line arrives, no refused one does, and a new SET is
/// accepted again.
#[test]
fn buffer_full_refuses_when_not_critical() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let relayer = start(&fake, "buffer = 100\ncritical = false\nmaxRecords = 0");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let mut acked = HashSet::new();
    for seq in 0..100 {
        let id = (0, seq);
        let r = c.cmd(&["SET".to_string(), key(id), value(id, 40)]);
        assert_eq!(r, Reply::ok(), "SET #{seq} of 100 with buffer = 100");
        acked.insert(id);
    }
    let mut other = relayer.client();
    other.set_read_timeout(HANG);
    for seq in 100..110 {
        let id = (0, seq);
        let client = if seq % 2 == 0 { &mut c } else { &mut other };
        let r = client.cmd(&["SET".to_string(), key(id), value(id, 40)]);
        assert_eq!(r, Reply::error(BUFFER_FULL), "SET #{seq} with the buffer full");
    }
    assert_eq!(
        c.cmd(&["PING"]),
        Reply::status("PONG"),
        "the refused client goes on"
    );
    assert_eq!(other.cmd(&["PING"]), Reply::status("PONG"));
    fake.come_up();
    let d = wait_delivered(&fake, &acked, DELIVERY, "after the endpoint is back");
    assert!(
        d.unexpected.is_empty(),
        "refused lines arrived: {}",
        show_ids(&d.unexpected)
    );
    assert_eq!(d.duplicates, 0, "nothing was stored while down, so nothing twice");
    // The endpoint stores a call before it answers, and the relayer frees the buffer when the
    // answer comes: a SET may still be refused for a moment.
    let deadline = Instant::now() + HANG;
    let mut seq = 0;
    loop {
        let id = (1, seq);
        let r = other.cmd(&["SET".to_string(), key(id), value(id, 40)]);
        if r == Reply::ok() {
            acked.insert(id);
            break;
        }
        assert_eq!(
            r,
            Reply::error(BUFFER_FULL),
            "SET {} once the endpoint is back",
            key(id)
        );
        assert!(
            Instant::now() < deadline,
            "every line delivered, yet the buffer still has no room after {HANG:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        seq += 1;
    }
    let d = wait_delivered(&fake, &acked, DELIVERY, "a SET after the buffer emptied");
    assert!(
        d.unexpected.is_empty(),
        "refused lines arrived: {}",
        show_ids(&d.unexpected)
    );
    check_calls_within_limits(&fake, 1);
}

/// `buffer = 100`, `critical = true`, endpoint down: 100 SETs get `+OK`; the 101st (and a PING
/// after it on the same connection) get no reply while the endpoint is down; once it is back the
/// SET gets `+OK`, then the PING `+PONG`, and all 101 lines arrive.
#[test]
fn buffer_full_makes_the_client_wait_when_critical() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let relayer = start(&fake, "buffer = 100\ncritical = true\nmaxRecords = 0");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let mut acked: HashSet<Id> = set_lines(&mut c, 0, 0..100, |_| 40, 1)
        .unwrap()
        .into_iter()
        .collect();
    let id = (0, 100);
    c.send(&["SET".to_string(), key(id), value(id, 40)]);
    c.send(&["PING"]);
    c.set_read_timeout(Duration::from_secs(2));
    match c.try_read_reply() {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("with the buffer full and critical = true, the 101st SET must wait, got {other:?}"),
    }
    fake.come_up();
    c.set_read_timeout(HANG);
    assert_eq!(c.read_reply(), Reply::ok(), "the waiting SET once there is room");
    assert_eq!(
        c.read_reply(),
        Reply::status("PONG"),
        "the PING after it, in order"
    );
    acked.insert(id);
    let d = wait_delivered(&fake, &acked, DELIVERY, "critical buffer");
    assert!(
        d.unexpected.is_empty(),
        "lines never sent arrived: {}",
        show_ids(&d.unexpected)
    );
    assert_eq!(d.duplicates, 0);
    check_calls_within_limits(&fake, 1);
}

// ---------------------------------------------------------------------------------------------
// Retry timeout, dead letters, stop

/// Endpoint down, `retryTimeout = 1`, `deadLetterFile`: the lines go to the file, newline-terminated
/// and byte for byte what would have been sent, and the log says so with the count; they are not
/// sent once the endpoint is back.
#[test]
fn retry_timeout_writes_the_dead_letter_file() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let relayer = start(&fake, "retryTimeout = 1\ndeadLetterFile = \"$DIR/dead.jsonl\"");
    let path = relayer.dir().join("dead.jsonl");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let sent: HashSet<Id> = set_lines(&mut c, 0, 0..50, |s| 10 + s as usize, 10)
        .unwrap()
        .into_iter()
        .collect();
    wait_until(HANG, "50 lines in the dead-letter file", || {
        complete_lines(&path) >= 50
    });
    let dead = dead_letter_ids(&path);
    let unique: HashSet<Id> = dead.iter().copied().collect();
    assert_eq!(unique, sent, "the dead-letter file holds exactly the lines sent");
    assert_eq!(dead.len(), 50, "each line once in the dead-letter file");
    wait_until(HANG, "the dead-letter log record", || {
        sum_field(&relayer.log(), DEAD_LETTER_MSG, "records").0 >= 50
    });
    let log = relayer.log();
    assert_eq!(
        sum_field(&log, DEAD_LETTER_MSG, "records").0,
        50,
        "'{DEAD_LETTER_MSG}' records should add up to 50; log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(DEAD_LETTER_MSG) && l.contains(path.to_str().unwrap())),
        "the dead-letter log record names the file; log:\n{log}"
    );
    // Back up: a new line arrives, and none of the dead-lettered ones is sent after all.
    fake.come_up();
    let later: HashSet<Id> = set_lines(&mut c, 1, 0..1, |_| 10, 1)
        .unwrap()
        .into_iter()
        .collect();
    let d = wait_delivered(&fake, &later, DELIVERY, "a line after the endpoint is back");
    assert!(
        d.unexpected.is_empty(),
        "dead-lettered lines were sent as well: {}",
        show_ids(&d.unexpected)
    );
}

/// Endpoint down, `retryTimeout = 1`, no dead-letter file: the log says `firehose records lost`
/// with the count and a reason.
#[test]
fn retry_timeout_without_dead_letter_file_logs_the_loss() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let relayer = start(&fake, "retryTimeout = 1");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    set_lines(&mut c, 0, 0..30, |_| 20, 10).unwrap();
    wait_until(HANG, "'firehose records lost' for 30 records", || {
        sum_field(&relayer.log(), LOST_MSG, "records").0 >= 30
    });
    let log = relayer.log();
    assert_eq!(sum_field(&log, LOST_MSG, "records").0, 30, "log:\n{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains(LOST_MSG))
            .all(|l| l.contains("reason")),
        "every '{LOST_MSG}' record gives a reason; log:\n{log}"
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"), "the relayer goes on");
}

/// SIGTERM with lines buffered (flushInterval = 30, so nothing would leave for a while): they are
/// all delivered before the exit, with status 0 and `stopped, every acknowledged write delivered`.
#[test]
fn stop_delivers_buffered_lines() {
    let fake = FakeFirehose::start();
    let mut relayer = start(&fake, "flushInterval = 30\nmaxRecords = 500");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let sent: HashSet<Id> = set_lines(&mut c, 0, 0..300, |_| 50, 50)
        .unwrap()
        .into_iter()
        .collect();
    let before = fake.line_count();
    relayer.signal(libc::SIGTERM);
    let status = relayer.wait_exit(EXIT);
    assert!(status.success(), "exit status {status}; log:\n{}", relayer.log());
    let d = delivery(&fake, &sent);
    assert!(
        d.missing.is_empty(),
        "{} of 300 acknowledged lines not delivered at exit ({}); log:\n{}",
        d.missing.len(),
        show_ids(&d.missing),
        relayer.log()
    );
    assert_eq!((d.duplicates, d.unexpected.len()), (0, 0));
    check_calls_within_limits(&fake, 500);
    assert!(relayer.log().contains(STOPPED_OK), "log:\n{}", relayer.log());
    eprintln!("stop: {before} of 300 lines had left before SIGTERM");
}

/// Endpoint down, `drainTimeout = 1`, a dead-letter file: at SIGTERM the relayer gives up after
/// the drain timeout, writes every buffered line to the file and logs the count, and exits.
#[test]
fn stop_with_endpoint_down_writes_the_dead_letter_file() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let mut relayer = start(&fake, "drainTimeout = 1\ndeadLetterFile = \"$DIR/dead.jsonl\"");
    let path = relayer.dir().join("dead.jsonl");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let sent: HashSet<Id> = set_lines(&mut c, 0, 0..200, |_| 30, 50)
        .unwrap()
        .into_iter()
        .collect();
    let t = Instant::now();
    relayer.signal(libc::SIGTERM);
    let status = relayer.wait_exit(EXIT);
    eprintln!("stop with the endpoint down: {status} after {:?}", t.elapsed());
    let log = relayer.log();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    let dead = dead_letter_ids(&path);
    let unique: HashSet<Id> = dead.iter().copied().collect();
    assert_eq!(unique.len(), dead.len(), "a line twice in the dead-letter file");
    assert!(
        unique == sent,
        "the dead-letter file holds {} of the 200 lines ({} others); log:\n{log}",
        unique.intersection(&sent).count(),
        unique.difference(&sent).count()
    );
    assert_eq!(
        sum_field(&log, DEAD_LETTER_MSG, "records").0,
        200,
        "'{DEAD_LETTER_MSG}' records should add up to 200; log:\n{log}"
    );
    assert_eq!(
        sum_field(&log, STOPPED_DEAD_LETTER, "dead_letter"),
        (200, 1),
        "the final record says the 200 lines went to the dead-letter file; log:\n{log}"
    );
    assert!(
        !log.contains(STOPPED_OK) && !log.contains(STOPPED_LOST) && !log.contains(LOST_MSG),
        "nothing said delivered or lost; log:\n{log}"
    );
}

/// Without a dead-letter file, the same stop counts the lines lost: `stopped with acknowledged
/// writes not delivered` with `lost: 200`.
#[test]
fn stop_with_endpoint_down_and_no_dead_letter_file_counts_the_loss() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let mut relayer = start(&fake, "drainTimeout = 1");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    set_lines(&mut c, 0, 0..200, |_| 30, 50).unwrap();
    relayer.signal(libc::SIGTERM);
    let status = relayer.wait_exit(EXIT);
    let log = relayer.log();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert_eq!(sum_field(&log, STOPPED_LOST, "lost"), (200, 1), "log:\n{log}");
    assert_eq!(sum_field(&log, LOST_MSG, "records"), (200, 1), "log:\n{log}");
    assert!(
        !log.contains(STOPPED_OK) && !log.contains(STOPPED_DEAD_LETTER),
        "log:\n{log}"
    );
}

/// Four clients keep writing through the SIGTERM, against an endpoint that answers in 0.3 s,
/// with a dead-letter file: from the drain on they get the stopping error (or a closed
/// connection), and every line answered `+OK` is at the endpoint or in the dead-letter file; the
/// final log record says which, with the count.
#[test]
fn stop_while_clients_write_loses_no_acknowledged_line() {
    stop_while_clients_write(false);
}

/// The same with the endpoint down: the drain times out (drainTimeout = 1), and every line
/// answered `+OK` is in the dead-letter file.
#[test]
fn stop_while_clients_write_with_the_endpoint_down_dead_letters_every_acknowledged_line() {
    stop_while_clients_write(true);
}

fn stop_while_clients_write(down: bool) {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        delay: Duration::from_millis(300),
        ..Faults::default()
    });
    let drain = if down { 1 } else { 5 };
    let mut relayer = start(
        &fake,
        &format!("drainTimeout = {drain}\nmaxRecords = 10\ndeadLetterFile = \"$DIR/dead.jsonl\""),
    );
    if down {
        fake.go_down();
    }
    let path = relayer.dir().join("dead.jsonl");
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let writers: Vec<_> = (0..4)
        .map(|client| {
            let mut c = relayer.client();
            c.set_read_timeout(HANG);
            let (acked, refused) = (acked.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                loop {
                    let cmds: Vec<Vec<String>> = (seq..seq + 5)
                        .map(|s| vec!["SET".to_string(), key((client, s)), value((client, s), 40)])
                        .collect();
                    let wire: Vec<u8> = cmds.iter().flat_map(|c| encode_command(c)).collect();
                    if c.try_send_raw(&wire).is_err() {
                        return;
                    }
                    for s in seq..seq + 5 {
                        match c.try_read_reply() {
                            Ok(r) if r == Reply::ok() => {
                                acked.lock().unwrap().insert((client, s));
                            }
                            Ok(r) if r == Reply::error(STOPPING) => *refused.lock().unwrap() += 1,
                            Ok(r) => panic!("SET {} got {r:?}", key((client, s))),
                            // The process exited.
                            Err(_) => return,
                        }
                    }
                    seq += 5;
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    wait_until(HANG, "500 lines acknowledged", || {
        acked.lock().unwrap().len() >= 500
    });
    relayer.signal(libc::SIGTERM);
    let status = relayer.wait_exit(EXIT);
    for w in writers {
        w.join().expect("writer");
    }
    let log = relayer.log();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    let acked = acked.lock().unwrap().clone();
    let dead: HashSet<Id> = dead_letter_ids(&path).into_iter().collect();
    let d = delivery(&fake, &acked);
    let missing: Vec<Id> = d
        .missing
        .iter()
        .filter(|id| !dead.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged lines neither delivered nor dead-lettered ({}); log:\n{log}",
        missing.len(),
        show_ids(&missing)
    );
    assert!(
        d.unexpected.is_empty(),
        "lines never acknowledged arrived: {}",
        show_ids(&d.unexpected)
    );
    if down {
        assert!(
            d.lines == 0 && dead.len() == acked.len(),
            "endpoint down: {} of {} acknowledged lines in the dead-letter file",
            dead.len(),
            acked.len()
        );
    }
    if dead.is_empty() {
        assert!(log.contains(STOPPED_OK), "log:\n{log}");
    } else {
        assert_eq!(
            sum_field(&log, STOPPED_DEAD_LETTER, "dead_letter"),
            (dead.len() as u64, 1),
            "log:\n{log}"
        );
    }
    assert!(!log.contains(STOPPED_LOST), "log:\n{log}");
    // The drain lasts at least one 0.3 s answer: clients writing meanwhile are refused.
    assert!(
        *refused.lock().unwrap() > 0,
        "no write was refused during the drain"
    );
    eprintln!(
        "stop while writing (endpoint down: {down}): {} acknowledged, {} delivered, {} dead-lettered, {} refused while stopping",
        acked.len(),
        d.lines,
        dead.len(),
        refused.lock().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Record size

/// A line of exactly 1,024,000 bytes (JSON + newline) is accepted and arrives as one record; one
/// byte more, and a 2 MB one, are refused with the size and the limit; the connection goes on and
/// nothing refused arrives.
#[test]
fn record_over_the_limit_is_refused() {
    let fake = FakeFirehose::start();
    let relayer = start(&fake, "maxRecords = 500");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let fit = (0, 0);
    let fit_len = MAX_RECORD_BYTES - line_size(&key(fit), 0);
    assert_eq!(line_size(&key(fit), fit_len), MAX_RECORD_BYTES);
    let r = c.cmd(&["SET".to_string(), key(fit), value(fit, fit_len)]);
    assert_eq!(r, Reply::ok(), "a line of exactly {MAX_RECORD_BYTES} bytes");
    for (id, len) in [((0, 1), fit_len + 1), ((0, 2), 2_000_000)] {
        let size = line_size(&key(id), len);
        let r = c.cmd(&["SET".to_string(), key(id), value(id, len)]);
        assert_eq!(
            r,
            Reply::error(&format!(
                "ERR record of {size} bytes is over the Firehose record limit of 1024000 bytes"
            )),
            "a line of {size} bytes"
        );
    }
    let small = (0, 3);
    assert_eq!(
        c.cmd(&["SET".to_string(), key(small), value(small, 10)]),
        Reply::ok()
    );
    let acked: HashSet<Id> = [fit, small].into_iter().collect();
    let d = wait_delivered(&fake, &acked, DELIVERY, "the fitting lines");
    assert!(
        d.unexpected.is_empty(),
        "refused lines arrived: {}",
        show_ids(&d.unexpected)
    );
    assert_eq!(d.duplicates, 0);
    check_calls_within_limits(&fake, 500);
    assert!(
        fake.records().iter().any(|r| r.len() == MAX_RECORD_BYTES),
        "the 1,024,000-byte line is a record of its own"
    );
}

// ---------------------------------------------------------------------------------------------
// Retry timing

/// The gaps between successive calls, in ms.
fn gaps_ms(calls: &[CallInfo]) -> Vec<u128> {
    calls
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect()
}

/// One line, and the first `failures` calls fail (`faults` with `calls` set): the same record is
/// resent after a backoff of 100-200 ms that doubles at each failure (never a tight loop, never a
/// flush interval on top), and arrives once the faults are over.
fn resent_with_backoff(faults: Faults, failures: usize, what: &str) {
    let fake = FakeFirehose::start();
    // A short flush interval: a resend waits for its backoff, not for a flush.
    let relayer = start(&fake, "flushInterval = 0.02");
    fake.set_faults(Faults {
        calls: Some(failures),
        ..faults
    });
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let ids: HashSet<Id> = set_lines(&mut c, 0, 0..1, |_| 10, 1)
        .unwrap()
        .into_iter()
        .collect();
    let d = wait_delivered(&fake, &ids, DELIVERY, what);
    assert_eq!((d.lines, d.duplicates), (1, 0), "{what}");
    let calls = fake.calls();
    assert_eq!(calls.len(), failures + 1, "{what}: {}", calls_summary(&calls));
    assert!(
        calls.iter().all(|c| c.records == 1),
        "{what}: the same record each time"
    );
    let gaps = gaps_ms(&calls);
    eprintln!("{what}: calls {gaps:?} ms apart");
    for (i, g) in gaps.iter().enumerate() {
        assert!(
            (90..=11_000).contains(g),
            "{what}: resend {} came {g} ms after the call before it (backoff is 100 ms..10 s): {gaps:?}",
            i + 1
        );
    }
    assert!(
        gaps[0] <= 1000,
        "{what}: the first resend waited {} ms (backoff 100-200 ms)",
        gaps[0]
    );
    // Each wait is within [ceiling/2, ceiling] and the ceiling doubles: two steps later it is
    // always longer.
    for i in 0..gaps.len() - 2 {
        assert!(
            gaps[i + 2] > gaps[i],
            "{what}: the backoff does not grow: {gaps:?}"
        );
    }
}

/// Whole calls throttled five times in a row: resent 100-200 ms, then 200-400 ms... later.
#[test]
fn throttled_calls_back_off() {
    resent_with_backoff(
        Faults {
            throttle: 1.0,
            ..Faults::default()
        },
        5,
        "five throttled calls",
    );
}

/// An entry failed (FailedPutCount) five times in a row: resent with the same backoff.
#[test]
fn failed_entries_back_off() {
    resent_with_backoff(
        Faults {
            fail_entries: 1.0,
            ..Faults::default()
        },
        5,
        "an entry failed five times",
    );
}

/// flushInterval = 3 and 100 lines: their call leaves after 3 s; its entries fail (then a
/// throttled call, on a second round): they are resent after their backoff, not after another
/// flushInterval.
#[test]
fn resent_records_do_not_wait_for_the_flush_interval() {
    let fake = FakeFirehose::start();
    let relayer = start(&fake, "flushInterval = 3\nmaxRecords = 1");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    for (round, faults) in [
        Faults {
            fail_entries: 1.0,
            ..Faults::default()
        },
        Faults {
            throttle: 1.0,
            ..Faults::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let before = fake.calls().len();
        fake.set_faults(Faults {
            calls: Some(1),
            ..faults
        });
        let ids: HashSet<Id> = set_lines(&mut c, round, 0..100, |_| 20, 100)
            .unwrap()
            .into_iter()
            .collect();
        wait_delivered(&fake, &ids, DELIVERY, "100 lines");
        let calls = &fake.calls()[before..];
        assert_eq!(calls.len(), 2, "round {round}: {}", calls_summary(calls));
        let gap = calls[1].at.duration_since(calls[0].at);
        assert!(
            gap >= Duration::from_millis(90) && gap < Duration::from_millis(1500),
            "round {round}: the records were resent {gap:?} after the failed call (backoff 100-200 ms, \
             flushInterval 3 s)"
        );
    }
}

/// The stream does not exist (ResourceNotFoundException) for the first calls: the relayer says
/// so once at error level, naming the code, and delivers when the stream is there.
#[test]
fn refusals_that_need_an_operator_are_errors() {
    let fake = FakeFirehose::start();
    fake.set_faults(Faults {
        not_found: 1.0,
        calls: Some(4),
        ..Faults::default()
    });
    let relayer = start(&fake, "");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let ids: HashSet<Id> = set_lines(&mut c, 0, 0..10, |_| 10, 10)
        .unwrap()
        .into_iter()
        .collect();
    wait_delivered(&fake, &ids, DELIVERY, "after the stream appeared");
    let log = relayer.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("firehose refuses the records"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one error record for the four refusals; log:\n{log}"
    );
    assert!(
        errors[0].contains("ERRO") && errors[0].contains("code: ResourceNotFoundException"),
        "at error level, with the code: {}",
        errors[0]
    );
    let refused = fake
        .calls()
        .iter()
        .filter(|c| c.outcome == Outcome::NotFound)
        .count();
    assert_eq!(refused, 4);
}

// ---------------------------------------------------------------------------------------------
// Buffer bytes, region

/// `bufferBytes = 1024000`, `critical = false`, endpoint down: three lines of ~300,000 bytes are
/// held, a fourth is refused (buffer full) while small lines still fit; once the endpoint is
/// back, the accepted lines arrive and a big line is accepted again.
#[test]
fn buffer_bytes_bounds_what_is_held() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let relayer = start(&fake, "bufferBytes = 1024000\nmaxRecords = 10");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let mut acked: HashSet<Id> = set_lines(&mut c, 0, 0..3, |_| 300_000, 1)
        .unwrap()
        .into_iter()
        .collect();
    let id = (0, 3);
    assert_eq!(
        c.cmd(&["SET".to_string(), key(id), value(id, 300_000)]),
        Reply::error(BUFFER_FULL),
        "a fourth 300,000-byte line"
    );
    acked.extend(set_lines(&mut c, 0, 4..6, |_| 1000, 1).unwrap());
    fake.come_up();
    wait_delivered(&fake, &acked, DELIVERY, "the held lines");
    let id = (0, 6);
    wait_until(HANG, "room for a big line again", || {
        let r = c.cmd(&["SET".to_string(), key(id), value(id, 300_000)]);
        r == Reply::ok()
    });
    acked.insert(id);
    let d = wait_delivered(&fake, &acked, DELIVERY, "the last big line");
    assert!(
        d.unexpected.is_empty(),
        "refused lines arrived: {}",
        show_ids(&d.unexpected)
    );
}

/// Without a `region` key, the region comes from AWS_REGION, else from the profile's region,
/// else it is us-east-1 with a warning: the calls are signed for it.
#[test]
fn region_from_the_aws_configuration() {
    let entry = |fake: &FakeFirehose, extra: &str| {
        format!(
            "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"tcp://127.0.0.1:{}\"\nstreamName = \"s\"\n\
             endpoint = \"{}\"\nflushInterval = 0.1\n{extra}\n",
            free_port(),
            fake.url()
        )
    };
    let profile_file = temp_dir();
    let aws_config = profile_file.path().join("config");
    std::fs::write(&aws_config, "[profile relayer]\nregion = ap-south-1\n").unwrap();
    /// What, the entry's extra keys, the environment, the region the calls must be signed for.
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "the region key",
            "region = \"eu-west-3\"".into(),
            vec![("AWS_REGION", "eu-north-1".into())],
            "eu-west-3",
        ),
        (
            "AWS_REGION",
            String::new(),
            vec![("AWS_REGION", "eu-north-1".into())],
            "eu-north-1",
        ),
        (
            "the profile",
            "profile = \"relayer\"".into(),
            vec![("AWS_CONFIG_FILE", aws_config.to_str().unwrap().into())],
            "ap-south-1",
        ),
        ("nothing", String::new(), vec![], "us-east-1"),
    ];
    for (what, extra, env, want) in cases {
        let fake = FakeFirehose::start();
        // What the test's own environment may hold goes, unless the case sets it.
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for k in ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"] {
            if !env.iter().any(|(e, _)| *e == k) {
                env.push((k, ""));
            }
        }
        let relayer = Relayer::start_with_env(&entry(&fake, &extra), &env);
        let mut c = relayer.client();
        c.set_read_timeout(HANG);
        let ids: HashSet<Id> = set_lines(&mut c, 0, 0..1, |_| 10, 1)
            .unwrap()
            .into_iter()
            .collect();
        wait_delivered(&fake, &ids, DELIVERY, what);
        let regions: Vec<String> = fake.calls().iter().map(|c| c.region.clone()).collect();
        assert_eq!(regions, vec![want.to_string()], "{what}; log:\n{}", relayer.log());
        let warned = relayer.log().contains("no firehose region in the entry");
        assert_eq!(
            warned,
            what == "nothing",
            "{what}: the default's warning; log:\n{}",
            relayer.log()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Client input bounds

/// Inside MULTI, ECHO replies are kept for EXEC up to 1,024,000 bytes: an ECHO of 2 MB, or the
/// ECHO that takes them over, is refused at once (not queued) and EXEC answers EXECABORT; the
/// connection goes on. An unknown command's name is quoted up to 128 bytes, as Redis does.
#[test]
fn multi_replies_and_error_texts_are_bounded() {
    let fake = FakeFirehose::start();
    let relayer = start(&fake, "");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let too_many = Reply::error(
        "ERR relayer: the replies of this MULTI block would pass 1024000 bytes: command not queued",
    );
    let abort = Reply::error("EXECABORT Transaction discarded because of previous errors.");
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["ECHO".to_string(), "e".repeat(2_000_000)]), too_many);
    assert_eq!(c.cmd(&["EXEC"]), abort);

    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    let msg = "m".repeat(10_000);
    let mut queued = 0;
    loop {
        let r = c.cmd(&["ECHO", &msg]);
        if r != Reply::status("QUEUED") {
            assert_eq!(r, too_many, "after {queued} ECHOs of 10,000 bytes");
            break;
        }
        queued += 1;
        assert!(queued <= 102, "{queued} ECHOs of 10,000 bytes queued");
    }
    assert!(queued >= 100, "only {queued} ECHOs of 10,000 bytes queued");
    assert_eq!(c.cmd(&["EXEC"]), abort);

    // Under the bound, EXEC answers every reply.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    for _ in 0..50 {
        assert_eq!(c.cmd(&["ECHO", &msg]), Reply::status("QUEUED"));
    }
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::status("QUEUED"));
    let mut want = vec![Reply::bulk(&msg); 50];
    want.push(Reply::ok());
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(want));

    let name = "X".repeat(1000);
    assert_eq!(
        c.cmd(&[name.as_str(), "a"]),
        Reply::error(&format!(
            "ERR unknown command '{}' for a firehose relayer",
            &name[..128]
        ))
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    wait_until(HANG, "the block's line", || fake.line_count() == 1);
}
