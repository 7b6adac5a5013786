//! Kinesis (`protocol = "kinesis"`) and SQS (`protocol = "sqs"`, standard and FIFO queues)
//! relayers against the fault-injecting endpoints of the integration crate (`fake_kinesis`,
//! `fake_sqs`): throttled calls, 500 and 503 answers and failed entries while clients write at
//! once, answers slower than the call's `timeout`, an endpoint down for a few seconds, an
//! endpoint down for longer than `retryTimeout` (with and without a dead-letter file), entries
//! refused until `retryTimeout`, a stream or queue that does not exist. Nothing acknowledged is lost, each line not delivered is
//! counted, and the stop summary and the metrics are exact; where the service keeps an order
//! (Kinesis with `partitionKey = "key"`, a FIFO queue), each key's (the group's) lines arrive in
//! the order the relayer accepted them whatever fails whole.
//!
//! Every line the tests send is `SET c<client>:k<seq % 3> <value>`, the value starting with
//! `<client>.<seq>.` and then a pattern of both, so each record or message that arrives is
//! checked byte for byte, identified, and counted: missing lines fail a test, and so do
//! duplicates wherever no call could have been stored and then given up on.

use crate::helpers::{self, command_time, complete_lines, metric, show_ids, sum_field, Delivery, LineId};
use integration::fake_aws::{Endpoint, Faults, Outcome};
use integration::fake_kinesis::{self, FakeKinesis};
use integration::fake_sqs::{self, FakeSqs};
use integration::log::{record_field, STOPPED_DEAD_LETTER, STOPPED_LOST, STOPPED_OK};
use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Id = LineId;

/// Redis keys a client writes to in turn: with `partitionKey = "key"`, each is a Kinesis
/// partition key whose records must keep their order.
const KEYS: u64 = 3;

/// The FIFO queue's message group.
const GROUP: &str = "g";

/// How long the endpoint stays down in the outage tests: several failed calls in a row, so the
/// backoff has grown when it comes back.
const OUTAGE: Duration = Duration::from_millis(2500);

/// The relayers under test: the service and what decides its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Svc {
    /// Kinesis, partition keys hashed from the record (no order kept).
    Kinesis,
    /// Kinesis with `partitionKey = "key"`: each Redis key's records in order.
    KinesisByKey,
    /// A standard queue (no order kept).
    Sqs,
    /// A FIFO queue: the group's messages in order, a deduplication id per line.
    SqsFifo,
}

impl Svc {
    /// As `protocol` spells it, and as it names the metrics and the log.
    fn name(self) -> &'static str {
        match self {
            Svc::Kinesis | Svc::KinesisByKey => "kinesis",
            Svc::Sqs | Svc::SqsFifo => "sqs",
        }
    }

    fn ordered(self) -> bool {
        matches!(self, Svc::KinesisByKey | Svc::SqsFifo)
    }

    /// Entry keys making a few hundred lines dozens of calls: Kinesis calls of 10 records, as
    /// SQS calls hold 10 messages anyway.
    fn small_calls(self) -> &'static str {
        match self {
            Svc::Kinesis | Svc::KinesisByKey => "maxRecords = 10",
            Svc::Sqs | Svc::SqsFifo => "",
        }
    }
}

fn key(id: Id) -> String {
    format!("c{}:k{}", id.0, id.1 % KEYS)
}

/// The value of line `id`: its prefix `<client>.<seq>.` and a pattern depending on both and on
/// the position, so a cut, shifted or mixed-up value is seen.
fn value(id: Id) -> String {
    let len = 20 + (id.1 as usize * 7 + id.0) % 40;
    let mut v = format!("{}.{}.", id.0, id.1);
    let start = v.len();
    v.extend((start..len).map(|i| (b'a' + ((i * 7 + id.1 as usize + id.0) % 26) as u8) as char));
    v
}

/// Checks that `raw` (a record's data, a message's body: a line without its newline) is exactly
/// the line of `SET key(id) value(id)` (ns timestamp, within the last hour) and returns `id`.
fn parse_line(raw: &[u8]) -> Result<Id, String> {
    let show = || show_bytes(raw, 160);
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON ({e}): {}", show()))?;
    let (Some(ts), Some(data)) = (v["_ts"].as_u64(), v["data"].as_object()) else {
        return Err(format!("not {{\"_ts\":<n>,\"data\":{{..}}}}: {}", show()));
    };
    command_time(ts).map_err(|e| format!("{e}: {}", show()))?;
    let (Some((k, Value::String(val))), 1) = (data.iter().next(), data.len()) else {
        return Err(format!("data is not one string field: {}", show()));
    };
    let mut parts = val.splitn(3, '.');
    let id: Id = match (parts.next().map(str::parse), parts.next().map(str::parse)) {
        (Some(Ok(c)), Some(Ok(s))) => (c, s),
        _ => return Err(format!("value of {k} is not one the test sent: {}", show())),
    };
    if *k != key(id) || *val != value(id) {
        return Err(format!("key or value of line {id:?} not as sent: {}", show()));
    }
    let expected = format!(
        "{{\"_ts\":{ts},\"data\":{{{}:{}}}}}",
        Value::from(k.as_str()),
        Value::from(val.as_str())
    );
    if raw != expected.as_bytes() {
        return Err(format!("bytes differ from serde_json's {expected}: {}", show()));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// The endpoints

enum Fake {
    Kinesis(FakeKinesis),
    Sqs(FakeSqs),
}

/// A line as the endpoint stored it, in arrival order: the record's data or the message's body,
/// and its partition key (Kinesis) or message group (a FIFO queue; empty on a standard one).
struct Stored {
    data: Vec<u8>,
    key: String,
}

/// A call as the endpoint answered it: its outcome and how many entries it carried.
type Call = (Outcome, usize);

/// The endpoint a relayer under test sends to.
struct Target {
    svc: Svc,
    fake: Fake,
}

impl Target {
    fn start(svc: Svc) -> Target {
        let fake = match svc {
            Svc::Kinesis | Svc::KinesisByKey => Fake::Kinesis(FakeKinesis::start_with_shards(2)),
            Svc::Sqs | Svc::SqsFifo => Fake::Sqs(FakeSqs::start()),
        };
        Target { svc, fake }
    }

    fn endpoint(&self) -> &Endpoint {
        match &self.fake {
            Fake::Kinesis(k) => k,
            Fake::Sqs(s) => s,
        }
    }

    fn set_faults(&self, f: Faults) {
        match &self.fake {
            Fake::Kinesis(k) => k.set_faults(f),
            Fake::Sqs(s) => s.set_faults(f),
        }
    }

    /// Entries failed from now on get the other error the service gives: Kinesis
    /// `InternalFailure` (after `ProvisionedThroughputExceededException`), SQS `RequestThrottled`
    /// with SenderFault true (after `InternalError`).
    fn other_entry_error(&self) {
        match &self.fake {
            Fake::Kinesis(k) => k.set_entry_error(fake_kinesis::EntryError::InternalFailure),
            Fake::Sqs(s) => s.set_entry_error(fake_sqs::EntryError::RequestThrottled),
        }
    }

    /// The `[[relayer]]` entry of `listen` sending here, flushing every 0.05 s; `extra` is
    /// appended.
    fn entry(&self, listen: &str, extra: &str) -> String {
        let target = match (&self.fake, self.svc) {
            (Fake::Kinesis(k), Svc::KinesisByKey) => {
                format!(
                    "streamName = \"s\"\nendpoint = \"{}\"\npartitionKey = \"key\"",
                    k.url()
                )
            }
            (Fake::Kinesis(k), _) => format!("streamName = \"s\"\nendpoint = \"{}\"", k.url()),
            (Fake::Sqs(s), Svc::SqsFifo) => {
                format!("url = \"{}\"\ngroupID = \"{GROUP}\"", s.queue_url("q.fifo"))
            }
            (Fake::Sqs(s), _) => format!("url = \"{}\"", s.queue_url("q")),
        };
        format!(
            "[[relayer]]\nprotocol = \"{}\"\nlisten = \"{listen}\"\n{target}\nregion = \"us-east-1\"\n\
             flushInterval = 0.05\n{extra}\n",
            self.svc.name()
        )
    }

    fn stored(&self) -> Vec<Stored> {
        match &self.fake {
            Fake::Kinesis(k) => k
                .records()
                .into_iter()
                .map(|r| Stored {
                    data: r.data,
                    key: r.partition_key,
                })
                .collect(),
            Fake::Sqs(s) => s
                .messages()
                .into_iter()
                .map(|m| Stored {
                    data: m.body.into_bytes(),
                    key: m.group_id.unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn stored_count(&self) -> usize {
        match &self.fake {
            Fake::Kinesis(k) => k.record_count(),
            Fake::Sqs(s) => s.message_count(),
        }
    }

    fn calls(&self) -> Vec<Call> {
        match &self.fake {
            Fake::Kinesis(k) => k.calls().into_iter().map(|c| (c.outcome, c.records)).collect(),
            Fake::Sqs(s) => s.calls().into_iter().map(|c| (c.outcome, c.entries)).collect(),
        }
    }

    /// FIFO entries answered Successful and not stored again: resends of a stored line.
    fn deduplicated(&self) -> usize {
        match &self.fake {
            Fake::Kinesis(_) => 0,
            Fake::Sqs(s) => s.deduplicated(),
        }
    }
}

/// Entries the endpoint did not store, as the relayer must count them in its retries: the failed
/// entries of the calls answered 200, every entry of the calls failed whole. Panics on a call the
/// endpoint found invalid (the relayer must never make one).
fn entries_failed(calls: &[Call]) -> usize {
    calls
        .iter()
        .map(|(outcome, entries)| match outcome {
            Outcome::Ok { failed } => *failed,
            Outcome::Invalid(e) => panic!("the relayer made a call the service refuses: {e}"),
            _ => *entries,
        })
        .sum()
}

/// A one-line summary of the calls.
fn calls_summary(calls: &[Call]) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| calls.iter().filter(|(o, _)| f(o)).count();
    format!(
        "{} calls: {} answered 200 ({} entries failed), {} throttled, {} 500, {} 503, {} not found",
        calls.len(),
        count(&|o| matches!(o, Outcome::Ok { .. })),
        calls
            .iter()
            .map(|(o, _)| match o {
                Outcome::Ok { failed } => *failed,
                _ => 0,
            })
            .sum::<usize>(),
        count(&|o| *o == Outcome::Throttled),
        count(&|o| *o == Outcome::ServerError),
        count(&|o| *o == Outcome::Unavailable),
        count(&|o| *o == Outcome::NotFound),
    )
}

/// Every line `target` stored compared with `acked`.
fn delivery(target: &Target, acked: &HashSet<Id>) -> Delivery {
    let stored = target.stored();
    helpers::delivery(stored.iter().map(|s| &s.data[..]), acked, parse_line)
}

/// Waits until every line of `acked` is stored, then returns the delivery, checked to hold no
/// line that was not acknowledged. Panics after `DELIVERY` naming what is missing.
fn wait_delivered(target: &Target, acked: &HashSet<Id>, what: &str) -> Delivery {
    let deadline = Instant::now() + DELIVERY;
    loop {
        if target.stored_count() >= acked.len() {
            let d = delivery(target, acked);
            if d.missing.is_empty() {
                assert!(
                    d.unexpected.is_empty(),
                    "{what}: lines never acknowledged were stored: {}",
                    show_ids(&d.unexpected)
                );
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {} acknowledged lines never stored within {DELIVERY:?} ({}); {} stored, {} \
                 duplicates; {}",
                d.missing.len(),
                acked.len(),
                show_ids(&d.missing),
                d.lines,
                d.duplicates,
                calls_summary(&target.calls())
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "{what}: {} lines stored within {DELIVERY:?}, {} acknowledged; {}",
                target.stored_count(),
                acked.len(),
                calls_summary(&target.calls())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Panics unless each key's lines (Kinesis by key: each partition key's records, which must be
/// the line's Redis key; a FIFO queue: each client's messages, all in the one group) were first
/// stored in the order they were sent. A line stored again later (a call stored, then given up
/// on by the relayer and resent) does not count: its first copy is where it arrived. Returns
/// the number of lines checked.
fn check_order(target: &Target, what: &str) -> usize {
    let mut seen = HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for s in target.stored() {
        let id = parse_line(&s.data).unwrap_or_else(|e| panic!("{what}: bad line: {e}"));
        let order_key = match target.svc {
            Svc::KinesisByKey => {
                assert_eq!(s.key, key(id), "{what}: the partition key of line {id:?}");
                s.key.clone()
            }
            Svc::SqsFifo => {
                assert_eq!(s.key, GROUP, "{what}: the group of line {id:?}");
                format!("client {}", id.0)
            }
            other => panic!("{other:?} keeps no order"),
        };
        if !seen.insert(id) {
            continue;
        }
        if let Some(prev) = last.insert(order_key.clone(), id.1) {
            assert!(
                id.1 > prev,
                "{what}: {order_key}'s line {} arrived after its line {prev}, in the order the endpoint \
                 stored them",
                id.1
            );
        }
    }
    seen.len()
}

// ---------------------------------------------------------------------------------------------
// The relayer and its clients

/// Clients writing at once, each on its connection: `SET`s of `seqs`, in pipelines of 10, 25 ms
/// apart (up to 400 lines a second each), every reply `+OK`; until `seqs` ends or they are told to stop.
struct Writers {
    acked: Arc<Mutex<HashSet<Id>>>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Writers {
    fn start(listen: &str, clients: Range<usize>, seqs: Range<u64>) -> Writers {
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (listen, a, s) = (listen.to_string(), acked.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let first = clients.start;
            run_threads(clients.len(), move |i| {
                let client = first + i;
                let mut c = Client::connect(&listen).map_err(|e| e.to_string())?;
                c.set_read_timeout(HANG);
                let mut seq = seqs.start;
                while seq < seqs.end && !s.load(Ordering::SeqCst) {
                    let ids: Vec<Id> = (seq..(seq + 10).min(seqs.end)).map(|q| (client, q)).collect();
                    let cmds: Vec<Vec<String>> = ids
                        .iter()
                        .map(|&id| vec!["SET".to_string(), key(id), value(id)])
                        .collect();
                    c.send_many(&cmds);
                    for &id in &ids {
                        let r = c.try_read_reply().map_err(|e| format!("SET {}: {e}", key(id)))?;
                        if r != Reply::ok() {
                            return Err(format!("SET {} of line {id:?} replied {r:?}", key(id)));
                        }
                        a.lock().unwrap().insert(id);
                    }
                    seq += ids.len() as u64;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Ok(())
            })
        });
        Writers { acked, stop, handle }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_count(&self, n: usize, what: &str) {
        wait_until(HANG, what, || self.count() >= n);
    }

    /// Waits for the clients to be done; the lines acknowledged.
    fn join(self) -> HashSet<Id> {
        if let Err(p) = self.handle.join() {
            std::panic::resume_unwind(p);
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }

    /// Tells the clients to stop, then `join`s.
    fn finish(self) -> HashSet<Id> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }
}

/// How the relayer said it stopped: the stop summary's record.
struct StopLine {
    msg: &'static str,
    record: String,
    log: String,
}

impl StopLine {
    fn field(&self, name: &str) -> u64 {
        record_field(&self.record, name)
            .unwrap_or_else(|| panic!("no {name} in the stop summary: {}", self.record))
    }

    /// Panics unless the summary is `msg` and says `lines_delivered: delivered`, and (other than
    /// for `STOPPED_OK`) `dead_letter` and `lost` as given.
    fn expect(&self, msg: &str, delivered: usize, dead_letter: usize, lost: usize) {
        assert_eq!(self.msg, msg, "the stop summary; log:\n{}", self.log);
        assert_eq!(
            self.field("lines_delivered"),
            delivered as u64,
            "lines_delivered in the stop summary: {}",
            self.record
        );
        if msg != STOPPED_OK {
            assert_eq!(
                self.field("dead_letter"),
                dead_letter as u64,
                "dead_letter in the stop summary: {}",
                self.record
            );
        }
        if msg == STOPPED_LOST {
            assert_eq!(
                self.field("lost"),
                lost as u64,
                "lost in the stop summary: {}",
                self.record
            );
        }
    }
}

/// A relayer with one entry sending to a fake endpoint, and its metrics endpoint.
struct Run {
    target: Target,
    relayer: Relayer,
    listen: String,
    metrics_port: u16,
    started: Instant,
}

impl Run {
    /// Starts the endpoint with `faults`, then a relayer with the entry `target.entry(extra)`.
    fn start(svc: Svc, faults: Faults, extra: &str) -> Run {
        let target = Target::start(svc);
        target.set_faults(faults);
        let (listen, metrics_port) = (tcp_listen(), free_port());
        let config =
            format!("metricsListen = \"127.0.0.1:{metrics_port}\"\n") + &target.entry(&listen, extra);
        let relayer = Relayer::start(&config);
        Run {
            target,
            relayer,
            listen,
            metrics_port,
            started: Instant::now(),
        }
    }

    fn writers(&self, clients: Range<usize>, seqs: Range<u64>) -> Writers {
        Writers::start(&self.listen, clients, seqs)
    }

    /// The counter `relayer_<service>_<what>_total` of the entry; 0 while it was never counted.
    fn counter(&self, what: &str) -> u64 {
        let name = format!("relayer_{}_{what}_total", self.target.svc.name());
        metric(self.metrics_port, &name, &self.listen).unwrap_or(0.0) as u64
    }

    /// Waits until the counter is `n` (the relayer counts an answer once it has it, a moment
    /// after the endpoint stored what it answers for).
    fn wait_counter(&self, what: &str, n: usize) {
        wait_until(HANG, &format!("{what} = {n}"), || self.counter(what) == n as u64);
    }

    /// Panics unless the metrics count `lines` lines accepted, `delivered` delivered,
    /// `dead_letter` and `lost`, none held; returns the retries counted.
    fn check_counters(&self, lines: usize, delivered: usize, dead_letter: usize, lost: usize) -> u64 {
        self.wait_counter("delivered", delivered);
        let name = format!("relayer_{}_buffered", self.target.svc.name());
        wait_until(HANG, "nothing held", || {
            metric(self.metrics_port, &name, &self.listen) == Some(0.0)
        });
        let got = [
            self.counter("lines"),
            self.counter("delivered"),
            self.counter("dead_letter"),
            self.counter("lost"),
        ];
        let want = [lines, delivered, dead_letter, lost].map(|n| n as u64);
        assert_eq!(got, want, "the metrics lines, delivered, dead_letter, lost");
        self.counter("retries")
    }

    /// SIGTERM: the relayer must exit 0 with one stop summary.
    fn stop(&mut self) -> StopLine {
        self.relayer.signal(libc::SIGTERM);
        let status = self.relayer.wait_exit(EXIT);
        let log = self.relayer.log();
        assert!(status.success(), "exit status {status}; log:\n{log}");
        let found: Vec<(&'static str, &str)> = [STOPPED_OK, STOPPED_DEAD_LETTER, STOPPED_LOST]
            .into_iter()
            .flat_map(|m| log.lines().filter(move |l| l.contains(m)).map(move |l| (m, l)))
            .collect();
        assert_eq!(found.len(), 1, "one stop summary; log:\n{log}");
        let (msg, record) = (found[0].0, found[0].1.to_string());
        StopLine { msg, record, log }
    }

    fn dead_letter_path(&self) -> PathBuf {
        self.relayer.dir().join("dead.jsonl")
    }
}

/// The lines of the dead-letter file at `path`, checked and identified.
fn dead_letter_ids(path: &std::path::Path) -> Vec<Id> {
    crate::helpers::dead_letter_lines(path, parse_line)
}

// ---------------------------------------------------------------------------------------------
// Throttling, 5xx and failed entries

/// Four clients write `per_phase` lines each, in three phases, each once the lines before it are
/// delivered: the first eight calls throttled, answered 500 or 503 (half of them);
/// then entries failed (15%, one entry error) and fewer calls failing whole (3% each); then the
/// same with the service's other entry error. Every acknowledged line is stored exactly once
/// (nothing the endpoint stored is resent: a FIFO queue deduplicates nothing); the retries
/// counted are exactly the entries the endpoint did not store; the metrics and the stop summary
/// count every line delivered.
fn faults_lose_nothing(svc: Svc, per_phase: u64) {
    let what = format!("{svc:?} under throttling, 5xx and failed entries");
    let mut run = Run::start(
        svc,
        Faults {
            throttle: 0.25,
            server_error: 0.1,
            unavailable: 0.1,
            // No entry fails, so the faults are drawn per call whatever the batching: this seed
            // throttles the first call, answers the third 503 and the eighth 500; then none (a
            // streak of failures would pause the calls for seconds).
            seed: 3,
            calls: Some(8),
            ..Faults::default()
        },
        &format!("maxConnections = 4\n{}", svc.small_calls()),
    );
    let entries = Faults {
        fail_entries: 0.15,
        throttle: 0.03,
        server_error: 0.03,
        unavailable: 0.03,
        seed: 7,
        ..Faults::default()
    };
    let mut acked = HashSet::new();
    let mut phases = vec![];
    for phase in 0..3u64 {
        match phase {
            1 => run.target.set_faults(entries.clone()),
            2 => run.target.other_entry_error(),
            _ => {}
        }
        let from = run.target.calls().len();
        acked.extend(
            run.writers(0..4, phase * per_phase..(phase + 1) * per_phase)
                .join(),
        );
        wait_delivered(&run.target, &acked, &what);
        run.wait_counter("delivered", acked.len());
        phases.push(from..run.target.calls().len());
        eprintln!(
            "{what}: phase {phase} done at {:?}; {}",
            run.started.elapsed(),
            calls_summary(&run.target.calls()[from..])
        );
    }
    let d = delivery(&run.target, &acked);
    let calls = run.target.calls();
    eprintln!(
        "{what}: {} lines acknowledged, {} stored, {} duplicates; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        calls_summary(&calls)
    );
    assert_eq!(
        d.duplicates, 0,
        "{what}: lines the endpoint stored were sent again: only what it did not store may be"
    );
    assert_eq!(
        run.target.deduplicated(),
        0,
        "{what}: stored messages were resent"
    );
    let whole = &calls[phases[0].clone()];
    let of = |o: Outcome| whole.iter().filter(|(c, _)| *c == o).count();
    assert!(
        of(Outcome::Throttled) > 0 && of(Outcome::ServerError) > 0 && of(Outcome::Unavailable) > 0,
        "{what}: not every fault came up: the test proved nothing; {}",
        calls_summary(whole)
    );
    for phase in &phases[1..] {
        let failed: usize = calls[phase.clone()]
            .iter()
            .map(|(o, _)| match o {
                Outcome::Ok { failed } => *failed,
                _ => 0,
            })
            .sum();
        assert!(
            failed > 0,
            "{what}: no entry failed in calls {phase:?}: the test proved nothing; {}",
            calls_summary(&calls[phase.clone()])
        );
    }
    let retries = run.check_counters(acked.len(), acked.len(), 0, 0);
    assert_eq!(
        retries,
        entries_failed(&calls) as u64,
        "{what}: the retries counted are the entries the endpoint did not store; {}",
        calls_summary(&calls)
    );
    run.stop().expect(STOPPED_OK, acked.len(), 0, 0);
}

/// Throttled calls (`ProvisionedThroughputExceededException`), 500 `InternalFailure`, 503;
/// `ProvisionedThroughputExceededException` then `InternalFailure` records.
#[test]
fn kinesis_throttling_errors_and_failed_records_lose_nothing() {
    faults_lose_nothing(Svc::Kinesis, 40);
}

/// Throttled calls (`RequestThrottled`), 500, 503; `Failed` entries (`InternalError`, then
/// `RequestThrottled` with SenderFault true).
#[test]
fn sqs_throttling_errors_and_failed_messages_lose_nothing() {
    faults_lose_nothing(Svc::Sqs, 40);
}

/// The same on a FIFO queue (one call in flight, failed entries resent first).
#[test]
fn sqs_fifo_throttling_errors_and_failed_messages_lose_nothing() {
    faults_lose_nothing(Svc::SqsFifo, 15);
}

// ---------------------------------------------------------------------------------------------
// Timeouts

/// The first three calls are answered after 1.5 s, with `timeout = 0.5`: the endpoint stores
/// them at once, the relayer gives them up and sends their lines again. Every line is stored;
/// Kinesis and a standard queue store the given-up calls' lines twice (duplicates > 0: the
/// timeouts happened); a FIFO queue drops the resends by their deduplication id (each line once,
/// deduplicated > 0). The relayer counts each line delivered once, so the stop summary's
/// `lines_delivered` is the number of lines acknowledged, not of records stored; where the
/// service keeps an order, it is kept.
fn timeouts_resend(svc: Svc) {
    let what = format!("{svc:?} with calls answered after their timeout");
    let mut run = Run::start(
        svc,
        Faults {
            delay: Duration::from_millis(1500),
            calls: Some(3),
            ..Faults::default()
        },
        "timeout = 0.5\nmaxConnections = 4",
    );
    let acked = run.writers(0..2, 0..60).join();
    wait_delivered(&run.target, &acked, &what);
    // The endpoint stores a call before its delay: what the relayer did with the slow calls is
    // known once it counts every line delivered.
    let retries = run.check_counters(acked.len(), acked.len(), 0, 0);
    assert!(retries > 0, "{what}: no retry counted");
    let d = delivery(&run.target, &acked);
    let calls = run.target.calls();
    eprintln!(
        "{what}: {} lines acknowledged, {} stored, {} duplicates, {} deduplicated; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        run.target.deduplicated(),
        calls_summary(&calls)
    );
    let log = run.relayer.log();
    let failed = format!("{} call failed", svc.name());
    assert!(
        log.lines().any(|l| l.contains(&failed) && l.contains("timeout")),
        "{what}: no call failed for its timeout, as the log says; log:\n{log}"
    );
    if svc == Svc::SqsFifo {
        assert_eq!(d.duplicates, 0, "{what}: a FIFO queue stores each line once");
        assert!(
            run.target.deduplicated() > 0,
            "{what}: no resend was dropped by its deduplication id: the resends had new ids, or none \
             were made"
        );
    } else {
        assert!(
            d.duplicates > 0,
            "{what}: calls answered after the timeout were not sent again: no duplicate"
        );
    }
    if svc.ordered() {
        check_order(&run.target, &what);
    }
    run.stop().expect(STOPPED_OK, acked.len(), 0, 0);
}

#[test]
fn kinesis_timeouts_duplicate_but_lose_nothing() {
    timeouts_resend(Svc::Kinesis);
}

#[test]
fn kinesis_by_key_timeouts_duplicate_but_keep_each_keys_order() {
    timeouts_resend(Svc::KinesisByKey);
}

#[test]
fn sqs_timeouts_duplicate_but_lose_nothing() {
    timeouts_resend(Svc::Sqs);
}

#[test]
fn sqs_fifo_timeouts_resend_with_the_same_deduplication_id() {
    timeouts_resend(Svc::SqsFifo);
}

// ---------------------------------------------------------------------------------------------
// Order

/// With `maxConnections = 4` (which an ordered service overrides: one call in flight), four
/// clients write while the endpoint throttles a quarter of the calls and answers 10% 500 and 10%
/// 503, every answer 20 ms late (calls would overlap); then two calls time out. Each key's (the
/// group's) lines are stored in the order they were sent, every one, and on a FIFO queue each
/// once; the counts are exact.
fn order_survives_calls_failing_whole(svc: Svc, per_client: u64) {
    let what = format!("{svc:?} order under throttling, 5xx and timeouts");
    let mut run = Run::start(
        svc,
        Faults {
            throttle: 0.25,
            server_error: 0.1,
            unavailable: 0.1,
            delay: Duration::from_millis(20),
            // No entry fails, so the faults are drawn per call whatever the batching: this seed
            // throttles the first call, answers the third 503 and the eighth 500.
            seed: 3,
            ..Faults::default()
        },
        &format!("timeout = 0.5\nmaxConnections = 4\n{}", svc.small_calls()),
    );
    let half = per_client / 2;
    let mut acked = run.writers(0..4, 0..half).join();
    wait_delivered(&run.target, &acked, &what);
    run.wait_counter("delivered", acked.len());
    let before = run.target.calls().len();
    run.target.set_faults(Faults {
        delay: Duration::from_millis(1200),
        calls: Some(2),
        ..Faults::default()
    });
    acked.extend(run.writers(0..4, half..per_client).join());
    wait_delivered(&run.target, &acked, &what);
    // The slow calls were stored before their delay: everything is settled once the relayer
    // counts every line delivered.
    let retries = run.check_counters(acked.len(), acked.len(), 0, 0);
    assert!(retries > 0, "{what}: no retry counted");
    let d = delivery(&run.target, &acked);
    let calls = run.target.calls();
    eprintln!(
        "{what}: {} lines acknowledged, {} stored, {} duplicates, {} deduplicated; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        run.target.deduplicated(),
        calls_summary(&calls)
    );
    let of = |o: Outcome| calls[..before].iter().filter(|(c, _)| *c == o).count();
    assert!(
        of(Outcome::Throttled) > 0 && of(Outcome::ServerError) > 0 && of(Outcome::Unavailable) > 0,
        "{what}: not every fault came up: the test proved nothing; {}",
        calls_summary(&calls[..before])
    );
    // The calls given up on were stored: resent, they are stored again, or deduplicated.
    if svc == Svc::SqsFifo {
        assert_eq!(d.duplicates, 0, "{what}: a FIFO queue stores each line once");
        assert!(run.target.deduplicated() > 0, "{what}: no slow call was resent");
    } else {
        assert!(d.duplicates > 0, "{what}: no slow call was resent");
    }
    let checked = check_order(&run.target, &what);
    assert_eq!(checked, acked.len());
    run.stop().expect(STOPPED_OK, acked.len(), 0, 0);
}

#[test]
fn kinesis_by_key_keeps_each_keys_order_when_calls_fail_whole() {
    order_survives_calls_failing_whole(Svc::KinesisByKey, 60);
}

#[test]
fn sqs_fifo_keeps_the_groups_order_when_calls_fail_whole() {
    order_survives_calls_failing_whole(Svc::SqsFifo, 40);
}

// ---------------------------------------------------------------------------------------------
// Outages

/// Four clients keep writing while the endpoint goes down (connections refused, open ones cut)
/// for `OUTAGE`, and after it comes back: every line acknowledged, during the outage too, is
/// stored (a FIFO queue: once; elsewhere a call cut after the endpoint stored it may come twice),
/// in order where the service keeps one; the counts are exact.
fn outage_loses_nothing(svc: Svc) {
    let what = format!("{svc:?} with the endpoint down for {OUTAGE:?}");
    // Where the service keeps an order, one call is in flight whatever maxConnections says.
    let calls = if svc.ordered() { "maxConnections = 4" } else { "" };
    let mut run = Run::start(svc, Faults::default(), &format!("buffer = 100000\n{calls}"));
    let writers = run.writers(0..4, 0..u64::MAX);
    writers.wait_count(200, "the clients writing");
    run.target.endpoint().go_down();
    let before = writers.count();
    std::thread::sleep(OUTAGE);
    let during = writers.count() - before;
    run.target.endpoint().come_up();
    let n = writers.count();
    writers.wait_count(n + 200, "more writes after the endpoint is back");
    let acked = writers.finish();
    assert!(
        during > 0,
        "{what}: no client could write while the endpoint was down"
    );
    let d = wait_delivered(&run.target, &acked, &what);
    eprintln!(
        "{what}: {} lines acknowledged ({during} while down), {} stored, {} duplicates; {}",
        acked.len(),
        d.lines,
        d.duplicates,
        calls_summary(&run.target.calls())
    );
    if svc == Svc::SqsFifo {
        assert_eq!(d.duplicates, 0, "{what}: a FIFO queue stores each line once");
    }
    if svc.ordered() {
        check_order(&run.target, &what);
    }
    let retries = run.check_counters(acked.len(), acked.len(), 0, 0);
    assert!(retries > 0, "{what}: no retry counted");
    run.stop().expect(STOPPED_OK, acked.len(), 0, 0);
}

#[test]
fn kinesis_by_key_outage_loses_nothing_and_keeps_each_keys_order() {
    outage_loses_nothing(Svc::KinesisByKey);
}

#[test]
fn sqs_outage_loses_nothing() {
    outage_loses_nothing(Svc::Sqs);
}

#[test]
fn sqs_fifo_outage_loses_nothing_and_keeps_the_order() {
    outage_loses_nothing(Svc::SqsFifo);
}

/// `retryTimeout = 1`: 50 lines delivered, then the endpoint goes down and 80 more are written.
/// The 80 are dead-lettered (the file holds exactly them, each once, as they would have been
/// sent) or, without a dead-letter file, counted lost (the log's `records lost` add up to 80),
/// all of them, though a call of SQS takes only 10 and few leave while calls fail; none is sent
/// once the endpoint is back. The metrics and the stop summary count exactly 50 delivered and 80
/// dead-lettered or lost.
fn outage_past_retry_timeout(svc: Svc, dead_letter: bool) {
    let what = format!("{svc:?} down past retryTimeout (dead-letter file: {dead_letter})");
    let extra = if dead_letter {
        "retryTimeout = 1\ndeadLetterFile = \"$DIR/dead.jsonl\""
    } else {
        "retryTimeout = 1"
    };
    let mut run = Run::start(svc, Faults::default(), extra);
    let path = run.dead_letter_path();
    let first = run.writers(0..1, 0..50).join();
    wait_delivered(&run.target, &first, &what);
    // Answered, not only stored: a call cut after the endpoint stored it would be resent.
    run.wait_counter("delivered", first.len());
    run.target.endpoint().go_down();
    let held = run.writers(1..2, 0..80).join();
    if dead_letter {
        wait_until(HANG, "80 lines in the dead-letter file", || {
            complete_lines(&path) >= 80
        });
    } else {
        run.wait_counter("lost", 80);
    }
    let retries = if dead_letter {
        run.check_counters(130, 50, 80, 0)
    } else {
        run.check_counters(130, 50, 0, 80)
    };
    assert!(retries > 0, "{what}: no retry counted");
    run.target.endpoint().come_up();
    let dead = dead_letter_ids(&path);
    let stop = run.stop();
    // The relayer is gone: the endpoint holds all it will ever hold.
    let d = delivery(&run.target, &first);
    assert_eq!(
        (d.lines, d.duplicates, d.missing.len(), d.unexpected.len()),
        (50, 0, 0, 0),
        "{what}: the 50 lines sent while up, each once, and none of those held while down"
    );
    let log = &stop.log;
    if dead_letter {
        let unique: HashSet<Id> = dead.iter().copied().collect();
        assert_eq!(dead.len(), 80, "{what}: 80 lines in the dead-letter file");
        assert_eq!(
            unique, held,
            "{what}: the dead-letter file holds the lines held, each once"
        );
        let msg = format!("{} records written to the dead-letter file", svc.name());
        assert_eq!(sum_field(log, &msg, "records").0, 80, "log:\n{log}");
        stop.expect(STOPPED_DEAD_LETTER, 50, 80, 0);
    } else {
        assert!(dead.is_empty());
        let msg = format!("{} records lost", svc.name());
        assert_eq!(sum_field(log, &msg, "records").0, 80, "log:\n{log}");
        stop.expect(STOPPED_LOST, 50, 0, 80);
    }
}

#[test]
fn kinesis_outage_past_retry_timeout_dead_letters_exactly_the_lines_held() {
    outage_past_retry_timeout(Svc::KinesisByKey, true);
}

#[test]
fn kinesis_outage_past_retry_timeout_without_dead_letter_file_counts_them_lost() {
    outage_past_retry_timeout(Svc::Kinesis, false);
}

#[test]
fn sqs_outage_past_retry_timeout_without_dead_letter_file_counts_them_lost() {
    outage_past_retry_timeout(Svc::Sqs, false);
}

#[test]
fn sqs_fifo_outage_past_retry_timeout_dead_letters_exactly_the_lines_held() {
    outage_past_retry_timeout(Svc::SqsFifo, true);
}

/// Every entry refused (Kinesis `ProvisionedThroughputExceededException` records, SQS `Failed`
/// messages) in calls answered 200, `retryTimeout = 1`, a dead-letter file: the lines are resent
/// until retryTimeout, then dead-lettered, each once; the retries counted are exactly the entries
/// refused, the metrics (nothing held any more) and the stop summary count them dead-lettered.
fn refused_entries_past_retry_timeout(svc: Svc) {
    const LINES: usize = 10;
    let what = format!("{svc:?} with every entry refused");
    let mut run = Run::start(
        svc,
        Faults {
            fail_entries: 1.0,
            ..Faults::default()
        },
        "retryTimeout = 1\ndeadLetterFile = \"$DIR/dead.jsonl\"",
    );
    let path = run.dead_letter_path();
    let acked = run.writers(0..2, 0..LINES as u64 / 2).join();
    wait_until(HANG, "every line in the dead-letter file", || {
        complete_lines(&path) >= LINES
    });
    let dead = dead_letter_ids(&path);
    assert_eq!(dead.len(), LINES, "{what}: the lines in the dead-letter file");
    assert_eq!(
        dead.iter().copied().collect::<HashSet<Id>>(),
        acked,
        "{what}: the dead-letter file holds the lines sent, each once"
    );
    let retries = run.check_counters(LINES, 0, LINES, 0);
    let calls = run.target.calls();
    assert!(
        calls.len() >= 2,
        "{what}: refused lines must be resent until retryTimeout; {}",
        calls_summary(&calls)
    );
    assert_eq!(
        retries,
        entries_failed(&calls) as u64,
        "{what}: {}",
        calls_summary(&calls)
    );
    assert_eq!(run.target.stored_count(), 0);
    run.stop().expect(STOPPED_DEAD_LETTER, 0, LINES, 0);
}

#[test]
fn kinesis_records_refused_past_retry_timeout_are_dead_lettered() {
    refused_entries_past_retry_timeout(Svc::Kinesis);
}

#[test]
fn sqs_fifo_messages_refused_past_retry_timeout_are_dead_lettered() {
    refused_entries_past_retry_timeout(Svc::SqsFifo);
}

// ---------------------------------------------------------------------------------------------
// A stream or queue that does not exist

/// Every call answered as for a stream (queue) that does not exist, `retryTimeout = 1`, a
/// dead-letter file, ten lines (one SQS call): the relayer says so once at error level, naming
/// `code`, as needing an operator; it resends the lines until retryTimeout (every line at least
/// twice, as the backoff allows), then dead-letters them. The file holds exactly the ten lines,
/// the retries counted are exactly the entries refused, and the metrics and the stop summary
/// count ten dead-lettered, none delivered.
fn missing_target(svc: Svc, code: &str) {
    const LINES: usize = 10;
    let what = format!("{svc:?} sending to a target that does not exist");
    let mut run = Run::start(
        svc,
        Faults {
            not_found: 1.0,
            ..Faults::default()
        },
        "retryTimeout = 1\ndeadLetterFile = \"$DIR/dead.jsonl\"",
    );
    let path = run.dead_letter_path();
    let acked = run.writers(0..2, 0..LINES as u64 / 2).join();
    wait_until(HANG, "every line in the dead-letter file", || {
        complete_lines(&path) >= LINES
    });
    let dead = dead_letter_ids(&path);
    let unique: HashSet<Id> = dead.iter().copied().collect();
    assert_eq!(dead.len(), LINES, "{what}: the lines in the dead-letter file");
    assert_eq!(
        unique, acked,
        "{what}: the dead-letter file holds the lines sent, each once"
    );
    let retries = run.check_counters(LINES, 0, LINES, 0);
    let calls = run.target.calls();
    assert!(
        calls.iter().all(|(o, _)| *o == Outcome::NotFound),
        "{what}: {}",
        calls_summary(&calls)
    );
    let sent: usize = calls.iter().map(|(_, n)| n).sum();
    assert!(
        sent >= 2 * LINES,
        "{what}: {sent} entries sent for {LINES} lines: refused lines must be resent until retryTimeout"
    );
    assert_eq!(
        retries, sent as u64,
        "{what}: every refused entry is a retry counted"
    );
    assert_eq!(run.target.stored_count(), 0);
    let stop = run.stop();
    let log = &stop.log;
    let refuses = format!("{} refuses the records", svc.name());
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(&refuses)).collect();
    assert_eq!(
        errors.len(),
        1,
        "{what}: one error record for every refusal; log:\n{log}"
    );
    assert!(
        errors[0].contains("ERRO") && errors[0].contains(&format!("code: {code}")),
        "{what}: at error level, with the code {code}: {}",
        errors[0]
    );
    stop.expect(STOPPED_DEAD_LETTER, 0, LINES, 0);
}

#[test]
fn kinesis_missing_stream_is_an_error_and_dead_letters_after_retry_timeout() {
    missing_target(Svc::Kinesis, "ResourceNotFoundException");
}

#[test]
fn sqs_missing_queue_is_an_error_and_dead_letters_after_retry_timeout() {
    missing_target(Svc::Sqs, "AWS.SimpleQueueService.NonExistentQueue");
}
