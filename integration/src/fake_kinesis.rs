//! A Kinesis Data Streams endpoint of our own that can fail on demand: moto never fails a record,
//! this one answers some entries, some calls or every connection with the errors AWS gives.
//!
//! It is the shared fake server (`fake_aws`) speaking the Kinesis JSON protocol (awsJson1_1):
//!
//! - `X-Amz-Target: Kinesis_20131202.PutRecords`, body `{"StreamName":"s","Records":[{"Data":
//!   "<base64>","PartitionKey":"k"},...]}` (or `StreamARN` instead of the name): HTTP 200 with
//!   `{"FailedRecordCount":N,"Records":[...],"EncryptionType":"NONE"}`, one result per record in
//!   order, `{"SequenceNumber":"...","ShardId":"shardId-000000000000"}` or `{"ErrorCode":
//!   "ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard ..."}`
//!   (or `InternalFailure`, [`FakeKinesis::set_entry_error`]).
//! - The limits as AWS checks them, the whole call refused with HTTP 400 and nothing stored:
//!   `ValidationException` for what the API model bounds (no records or more than 500, a partition
//!   key of 0 or more than 256 characters, data over 1 MiB), then `InvalidArgumentException` for a
//!   record whose data and partition key together exceed 1 MiB, or a call whose data and
//!   partition keys exceed 5 MiB ("Records size exceeds 5 MB limit"). These are the defaults of a
//!   stream; AWS lets a stream raise its record size to 10 MiB, which the fake does not model.
//! - Shards: every stream has the fake's N shards (`start_with_shards`), each owning an equal
//!   range of the 128-bit hash space as a new stream has; a record goes to the shard owning the
//!   MD5 of its partition key ([`shard_for_key`]), or its `ExplicitHashKey`. Sequence numbers
//!   increase in arrival order (so within each shard).
//! - Injected faults ([`Faults`]): HTTP 400 `ProvisionedThroughputExceededException` (or
//!   `LimitExceededException`, [`FakeKinesis::set_throttle_error`]), HTTP 500 `InternalFailure`,
//!   HTTP 503 `ServiceUnavailable`, HTTP 400 `ResourceNotFoundException` (a stream that does not
//!   exist), a delay before every answer; for every call or only the next few.
//! - A minimal `DescribeStreamSummary`; anything else: HTTP 400 `UnknownOperationException`.
//!
//! Accepted records are kept in arrival order with their stream, shard, sequence number and
//! partition key ([`FakeKinesis::records`]), so tests can check the order per shard and per key;
//! every PutRecords call is described ([`FakeKinesis::calls`]). For long benchmarks,
//! [`FakeKinesis::discard_records`] keeps the counts only.

use crate::fake_aws::http::{Answer, Request};
use crate::fake_aws::{CallFault, Endpoint, FaultState, Protocol, Service, Shared};
use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::fake_aws::{split_lines, CallInfo, Faults, Outcome};

/// Records in one PutRecords call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Data (decoded) plus partition key (UTF-8) of one record: 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Data plus partition keys of one call: 5 MiB.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Characters of a partition key (at least 1).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

const ACCOUNT: &str = "123456789012";

/// The error code of a failed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryError {
    #[default]
    ProvisionedThroughputExceeded,
    InternalFailure,
}

/// The error of a throttled call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Throttle {
    #[default]
    ProvisionedThroughputExceeded,
    LimitExceeded,
}

/// One record stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: String,
    /// `shardId-000000000000` and on.
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The shard id of the shard at `index`, as Kinesis names the shards of a new stream.
pub fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// The index of the shard that owns `hash` among `shards` shards splitting the 128-bit hash
/// space in equal ranges (the last one takes the remainder), as in a new stream.
pub fn shard_for_hash(hash: u128, shards: usize) -> usize {
    assert!(shards > 0, "a stream has at least one shard");
    if shards == 1 {
        return 0;
    }
    let n = shards as u128;
    // The range size is 2^128 / n, which does not fit in a u128 for n = 1 only.
    let step = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    ((hash / step) as usize).min(shards - 1)
}

/// The hash of a partition key: its MD5 (of its UTF-8) read as a big-endian 128-bit number.
pub fn key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The index of the shard a record with `partition_key` goes to among `shards` shards.
pub fn shard_for_key(partition_key: &str, shards: usize) -> usize {
    shard_for_hash(key_hash(partition_key), shards)
}

/// One entry of a PutRecords call, decoded.
struct Entry {
    data: Vec<u8>,
    partition_key: String,
    explicit_hash: Option<u128>,
}

impl Entry {
    /// What the record counts against the size limits.
    fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// An HTTP 400 refusal: error type and message.
type Refusal = (&'static str, String);

const PROTOCOL: Protocol = Protocol {
    name: "kinesis",
    content_type: "application/x-amz-json-1.1",
    target_prefix: "Kinesis_20131202",
    any_path: false,
};

struct State {
    faults: FaultState,
    entry_error: EntryError,
    throttle: Throttle,
    shards: usize,
    records: Vec<Record>,
    /// Records stored since the start, kept or not.
    record_count: usize,
    /// False: records are counted, not kept (`discard_records`).
    keep: bool,
    calls: Vec<CallInfo>,
    /// The last sequence number given.
    sequence: u64,
}

/// The fault-injecting Kinesis Data Streams endpoint. Stopped (listener closed, connections
/// shut) on drop.
pub struct FakeKinesis {
    state: Arc<Shared<State>>,
    endpoint: Endpoint,
}

impl FakeKinesis {
    /// Starts listening on 127.0.0.1 and a free port, streams of one shard, no faults.
    pub fn start() -> FakeKinesis {
        FakeKinesis::start_with_shards(1)
    }

    /// Starts with streams of `shards` shards.
    pub fn start_with_shards(shards: usize) -> FakeKinesis {
        assert!(shards > 0, "a stream has at least one shard");
        let state = Shared::new(State {
            faults: FaultState::new(),
            entry_error: EntryError::default(),
            throttle: Throttle::default(),
            shards,
            records: Vec::new(),
            record_count: 0,
            keep: true,
            calls: Vec::new(),
            sequence: 0,
        });
        let endpoint = Endpoint::start(&PROTOCOL, state.clone());
        FakeKinesis { state, endpoint }
    }

    /// Number of shards of every stream.
    pub fn shards(&self) -> usize {
        self.state.lock().shards
    }

    /// Replaces the faults (and restarts the generator from their seed) for the calls that
    /// arrive from now on.
    pub fn set_faults(&self, f: Faults) {
        self.state.lock().faults.set(f);
    }

    /// The error code of the entries failed by `Faults::fail_entries` from now on.
    pub fn set_entry_error(&self, e: EntryError) {
        self.state.lock().entry_error = e;
    }

    /// The error of the calls throttled by `Faults::throttle` from now on.
    pub fn set_throttle_error(&self, t: Throttle) {
        self.state.lock().throttle = t;
    }

    /// Every record stored, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.state.lock().records.clone()
    }

    /// The data of the stored records split into lines, without their `\n`, in arrival order.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        let data: Vec<Vec<u8>> = self.state.lock().records.iter().map(|r| r.data.clone()).collect();
        split_lines(&data)
    }

    /// Number of records stored so far, kept or not.
    pub fn record_count(&self) -> usize {
        self.state.lock().record_count
    }

    /// From now on, only count the records stored (`record_count`), do not keep them
    /// (`records`, `lines` and `CallInfo::accepted` then miss them): for long benchmarks.
    pub fn discard_records(&self) {
        self.state.lock().keep = false;
    }

    /// Number of PutRecords calls so far (cheaper than `calls().len()`).
    pub fn call_count(&self) -> usize {
        self.state.lock().calls.len()
    }

    /// Every PutRecords call so far, in arrival order.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.state.lock().calls.clone()
    }
}

impl Service for Shared<State> {
    fn delay(&self) -> Duration {
        self.lock().faults.delay()
    }

    fn answer(&self, operation: &str, req: &Request) -> Option<Answer> {
        match operation {
            "PutRecords" => {
                // Decoded outside the lock: connections are served in parallel.
                let parsed = parse_put(&req.body);
                Some(put_records(parsed, req.region(), &mut self.lock()))
            }
            "DescribeStreamSummary" => Some(describe(&req.body, self.lock().shards)),
            _ => None,
        }
    }
}

/// The fake's server: its port and URL, going down and up.
impl std::ops::Deref for FakeKinesis {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The stream's name from `StreamName`, or from `StreamARN` (`arn:...:stream/<name>`).
fn stream_name(v: &Value) -> Option<String> {
    if let Some(name) = v.get("StreamName").and_then(Value::as_str) {
        return Some(name.to_string());
    }
    let arn = v.get("StreamARN").and_then(Value::as_str)?;
    Some(arn.rsplit_once("stream/").map_or(arn, |(_, n)| n).to_string())
}

fn describe(body: &[u8], shards: usize) -> Answer {
    let name = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| stream_name(&v));
    let Some(name) = name else {
        return Answer::error(400, "ValidationException", "StreamName or StreamARN is required");
    };
    Answer::json(
        200,
        json!({"StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 1.7e9,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": shards,
            "ConsumerCount": 0
        }}),
    )
}

/// The stream and decoded entries of a PutRecords body, or the HTTP 400 it gets.
fn parse_put(body: &[u8]) -> Result<(String, Vec<Entry>), Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ("SerializationException", format!("body is not JSON: {e}")))?;
    let stream = stream_name(&v).ok_or((
        "ValidationException",
        "Either StreamName or StreamARN should be provided.".to_string(),
    ))?;
    let items = v.get("Records").and_then(Value::as_array).ok_or((
        "ValidationException",
        "1 validation error detected: Value null at 'records' failed to satisfy constraint: \
         Member must not be null"
            .to_string(),
    ))?;
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let serialization = |what: String| ("SerializationException", format!("record {i}: {what}"));
        let data = item
            .get("Data")
            .and_then(Value::as_str)
            .ok_or_else(|| serialization("Data missing".into()))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| serialization(format!("Data is not base64: {e}")))?;
        let partition_key = item
            .get("PartitionKey")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let explicit_hash = match item.get("ExplicitHashKey").and_then(Value::as_str) {
            None => None,
            Some(h) => Some(h.parse::<u128>().map_err(|_| {
                (
                    "InvalidArgumentException",
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"),
                )
            })?),
        };
        entries.push(Entry {
            data,
            partition_key,
            explicit_hash,
        });
    }
    Ok((stream, entries))
}

/// Why AWS refuses these entries as a whole, if it does: the API model's bounds first
/// (ValidationException), then the size limits (InvalidArgumentException).
fn over_limits(entries: &[Entry]) -> Option<Refusal> {
    let validation = |what: String| {
        Some((
            "ValidationException",
            format!("1 validation error detected: {what}"),
        ))
    };
    if entries.is_empty() {
        return validation(
            "Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1"
                .into(),
        );
    }
    if entries.len() > MAX_RECORDS_PER_CALL {
        return validation(format!(
            "Value at 'records' failed to satisfy constraint: Member must have length less than or equal to \
             {MAX_RECORDS_PER_CALL} ({} records)",
            entries.len()
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        let at = i + 1;
        let chars = e.partition_key.chars().count();
        if chars == 0 {
            return validation(format!(
                "Value '' at 'records.{at}.member.partitionKey' failed to satisfy constraint: Member must have \
                 length greater than or equal to 1"
            ));
        }
        if chars > MAX_PARTITION_KEY_CHARS {
            return validation(format!(
                "Value at 'records.{at}.member.partitionKey' failed to satisfy constraint: Member must have \
                 length less than or equal to {MAX_PARTITION_KEY_CHARS}"
            ));
        }
        if e.data.len() > MAX_RECORD_BYTES {
            return validation(format!(
                "Value at 'records.{at}.member.data' failed to satisfy constraint: Member must have length \
                 less than or equal to {MAX_RECORD_BYTES}"
            ));
        }
    }
    if let Some(i) = entries.iter().position(|e| e.size() > MAX_RECORD_BYTES) {
        return Some((
            "InvalidArgumentException",
            format!(
                "Record {} of {} bytes (data and partition key) exceeds the limit of {MAX_RECORD_BYTES}",
                i + 1,
                entries[i].size()
            ),
        ));
    }
    let total: usize = entries.iter().map(Entry::size).sum();
    (total > MAX_BYTES_PER_CALL).then(|| {
        (
            "InvalidArgumentException",
            "Records size exceeds 5 MB limit".into(),
        )
    })
}

/// Answers a decoded PutRecords, storing what is accepted.
fn put_records(parsed: Result<(String, Vec<Entry>), Refusal>, region: String, st: &mut State) -> Answer {
    let mut info = CallInfo {
        operation: "PutRecords".to_string(),
        stream: String::new(),
        records: 0,
        bytes: 0,
        max_record: 0,
        outcome: Outcome::Invalid(String::new()),
        accepted: st.records.len()..st.records.len(),
        at: Instant::now(),
        region,
    };
    let checked = parsed.and_then(|(stream, entries)| {
        info.stream = stream.clone();
        info.records = entries.len();
        info.bytes = entries.iter().map(Entry::size).sum();
        info.max_record = entries.iter().map(Entry::size).max().unwrap_or(0);
        match over_limits(&entries) {
            Some(refusal) => Err(refusal),
            None => Ok((stream, entries)),
        }
    });
    let (stream, entries) = match checked {
        Ok(ok) => ok,
        Err((ty, msg)) => {
            let a = Answer::error(400, ty, &msg);
            info.outcome = Outcome::Invalid(msg);
            st.calls.push(info);
            return a;
        }
    };
    let faults = match st.faults.for_call() {
        Ok(faults) => faults,
        Err(fault) => {
            let rate = format!("Rate exceeded for stream {stream} under account {ACCOUNT}.");
            let (status, ty, msg) = match fault {
                CallFault::NotFound => (
                    400,
                    "ResourceNotFoundException",
                    format!("Stream {stream} under account {ACCOUNT} not found."),
                ),
                CallFault::Throttled => match st.throttle {
                    Throttle::ProvisionedThroughputExceeded => {
                        (400, "ProvisionedThroughputExceededException", rate)
                    }
                    Throttle::LimitExceeded => (400, "LimitExceededException", rate),
                },
                CallFault::ServerError => (500, "InternalFailure", "Internal service failure.".into()),
                CallFault::Unavailable => (503, "ServiceUnavailable", "Service Unavailable".into()),
            };
            info.outcome = fault.outcome();
            st.calls.push(info);
            return Answer::error(status, ty, &msg);
        }
    };
    let first = st.records.len();
    let mut failed = 0;
    let mut results = Vec::with_capacity(entries.len());
    for e in entries {
        let hash = e.explicit_hash.unwrap_or_else(|| key_hash(&e.partition_key));
        let shard_id = shard_id(shard_for_hash(hash, st.shards));
        if st.faults.fail_entry(&faults) {
            failed += 1;
            results.push(match st.entry_error {
                EntryError::ProvisionedThroughputExceeded => json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": format!(
                        "Rate exceeded for shard {shard_id} in stream {stream} under account {ACCOUNT}."
                    ),
                }),
                EntryError::InternalFailure => {
                    json!({"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."})
                }
            });
            continue;
        }
        st.sequence += 1;
        // The shape of AWS's: 56 decimal digits, increasing.
        let sequence_number = format!("49{:054}", st.sequence);
        results.push(json!({"SequenceNumber": sequence_number, "ShardId": shard_id}));
        st.record_count += 1;
        if st.keep {
            st.records.push(Record {
                stream: stream.clone(),
                shard_id,
                sequence_number,
                partition_key: e.partition_key,
                data: e.data,
            });
        }
    }
    info.accepted = first..st.records.len();
    info.outcome = Outcome::Ok { failed };
    st.calls.push(info);
    Answer::json(
        200,
        json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_aws::test_client::{header, Conn};

    const JSON: &str = "application/x-amz-json-1.1";
    const TARGET: &str = "Kinesis_20131202.PutRecords";

    fn body(records: &[(&str, &[u8])]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let recs: Vec<Value> = records
            .iter()
            .map(|(k, d)| json!({"PartitionKey": k, "Data": b64.encode(d)}))
            .collect();
        json!({"StreamName": "s", "Records": recs}).to_string()
    }

    #[test]
    fn hash_ranges_split_the_space_evenly() {
        assert_eq!(shard_for_hash(u128::MAX, 1), 0);
        assert_eq!(shard_for_hash(u128::MAX / 2, 2), 0);
        assert_eq!(shard_for_hash(u128::MAX / 2 + 1, 2), 1);
        assert_eq!(shard_for_hash(u128::MAX, 2), 1);
        // 2^128 / 3 rounded down: shard 0 ends one below it, the last one takes the remainder.
        let step = u128::MAX / 3;
        assert_eq!((shard_for_hash(step - 1, 3), shard_for_hash(step, 3)), (0, 1));
        assert_eq!(shard_for_hash(u128::MAX, 3), 2);
        // MD5("a") = 0cc175b9c0f1b6a8..., in the first sixteenth; MD5("b") = 92eb5ffe..., past half.
        assert_eq!((shard_for_key("a", 16), shard_for_key("b", 2)), (0, 1));
        assert_eq!(shard_id(12), "shardId-000000000012");
    }

    #[test]
    fn serves_put_records_limits_and_faults() {
        let fake = FakeKinesis::start_with_shards(2);
        let mut c = Conn::open(fake.port());
        c.send(
            TARGET,
            JSON,
            &body(&[("a", b"1\n"), ("b", b"2\n"), ("a", b"3\n")]),
            "",
        );
        let (status, headers, v) = c.read();
        assert_eq!((status, header(&headers, "content-type")), (200, Some(JSON)));
        assert_eq!(v["FailedRecordCount"], 0);
        let shards: Vec<_> = v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ShardId"].clone())
            .collect();
        assert_eq!(
            shards,
            vec![
                "shardId-000000000000",
                "shardId-000000000001",
                "shardId-000000000000"
            ]
        );
        let recs = fake.records();
        assert!(recs[0].sequence_number < recs[2].sequence_number);
        assert_eq!(recs[1].partition_key, "b");
        assert_eq!(fake.lines(), vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);

        let refused = |c: &mut Conn, body: &str| {
            c.send(TARGET, JSON, body, "");
            let (status, _, v) = c.read();
            assert_eq!(status, 400, "{v}");
            v["__type"].as_str().unwrap().to_string()
        };
        assert_eq!(refused(&mut c, &body(&[])), "ValidationException");
        assert_eq!(refused(&mut c, &body(&[("", b"x")])), "ValidationException");
        let key = "k".repeat(MAX_PARTITION_KEY_CHARS + 1);
        assert_eq!(refused(&mut c, &body(&[(&key, b"x")])), "ValidationException");
        let full = vec![0u8; MAX_RECORD_BYTES];
        assert_eq!(
            refused(&mut c, &body(&[("k", &full)])),
            "InvalidArgumentException"
        );
        let many: Vec<(&str, &[u8])> = vec![("k", b"x"); MAX_RECORDS_PER_CALL + 1];
        assert_eq!(refused(&mut c, &body(&many)), "ValidationException");
        let big = vec![0u8; MAX_RECORD_BYTES - 1];
        let six: Vec<(&str, &[u8])> = vec![("k", &big); 6];
        assert_eq!(refused(&mut c, &body(&six)), "InvalidArgumentException");
        assert_eq!(fake.record_count(), 3, "nothing stored from refused calls");

        fake.set_faults(Faults {
            fail_entries: 1.0,
            ..Faults::default()
        });
        fake.set_entry_error(EntryError::InternalFailure);
        c.send(TARGET, JSON, &body(&[("a", b"x")]), "");
        let v = c.read().2;
        assert_eq!(
            (
                v["FailedRecordCount"].as_u64(),
                v["Records"][0]["ErrorCode"].as_str()
            ),
            (Some(1), Some("InternalFailure"))
        );
        fake.set_faults(Faults {
            throttle: 1.0,
            ..Faults::default()
        });
        fake.set_throttle_error(Throttle::LimitExceeded);
        c.send(TARGET, JSON, &body(&[("a", b"x")]), "");
        let (status, headers, _) = c.read();
        assert_eq!(
            (status, header(&headers, "x-amzn-errortype")),
            (400, Some("LimitExceededException"))
        );
        let outcomes: Vec<_> = fake.calls().iter().map(|c| c.outcome.clone()).collect();
        assert_eq!(outcomes[0], Outcome::Ok { failed: 0 });
        assert_eq!(outcomes[7..], [Outcome::Ok { failed: 1 }, Outcome::Throttled]);
        assert_eq!(fake.record_count(), 3);
        assert_eq!(fake.call_count(), 9);

        fake.set_faults(Faults::default());
        fake.discard_records();
        c.send(TARGET, JSON, &body(&[("a", b"4\n"), ("b", b"5\n")]), "");
        assert_eq!(c.read().2["FailedRecordCount"], 0);
        assert_eq!(fake.record_count(), 5, "counted");
        assert_eq!(fake.records().len(), 3, "not kept");
    }
}
