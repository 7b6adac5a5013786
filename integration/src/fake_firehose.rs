//! A Firehose endpoint of our own that can fail on demand: moto never fails a record, this one
//! answers some entries, some calls or every connection with the errors AWS gives.
//!
//! It is the shared fake server (`fake_aws`: HTTP/1.1 on 127.0.0.1, going down and up)
//! speaking the Firehose JSON protocol (awsJson1_1) the way AWS does:
//!
//! - `X-Amz-Target: Firehose_20150804.PutRecordBatch`, body
//!   `{"DeliveryStreamName":"s","Records":[{"Data":"<base64>"},...]}`: HTTP 200 with
//!   `{"FailedPutCount":N,"Encrypted":false,"RequestResponses":[...]}`, one response per record in
//!   order, `{"RecordId":"..."}` or `{"ErrorCode":"ServiceUnavailableException","ErrorMessage":
//!   "Slow down."}`. A call over the service limits (more than 500 records, more than 4 MiB of
//!   record data, a record over 1,000 KiB, no records) is refused as AWS does: HTTP 400
//!   `InvalidArgumentException`, nothing stored.
//! - `PutRecord` (one `Record`) and a minimal `DescribeDeliveryStream`.
//! - Injected faults ([`Faults`]): HTTP 400 `ThrottlingException`, HTTP 500 `InternalFailure`,
//!   HTTP 503 `ServiceUnavailableException`, HTTP 400 `ResourceNotFoundException` (a stream that
//!   does not exist), a delay before every answer; for every call or only the next few.
//! - Anything else: HTTP 400 `UnknownOperationException` (404 for another method or path).
//!
//! Errors carry `{"__type":"...","message":"..."}` and the `x-amzn-ErrorType` header, which is what
//! botocore and the AWS SDK for Rust read for awsJson1_1 (checked against boto3).
//!
//! What was accepted is kept in arrival order ([`FakeFirehose::records`], [`FakeFirehose::lines`]),
//! and every call is described ([`FakeFirehose::calls`]: records, bytes, outcome, arrival time,
//! the region it was signed for). The records of a call are stored when it
//! is answered with success, before the delay: a client that gives up on a slow call and sends it
//! again makes duplicates, as with the real service. For long benchmarks,
//! [`FakeFirehose::discard_records`] keeps the counts only.

use crate::fake_aws::http::{Answer, Request};
use crate::fake_aws::{CallFault, Endpoint, FaultState, Protocol, Service, Shared};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::fake_aws::{count_lines, split_lines, CallInfo, Faults, Outcome};

/// Firehose limits, as AWS enforces them.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Bytes of record data (decoded) in one PutRecordBatch call: 4 MiB.
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Bytes of one record (decoded): 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

const PROTOCOL: Protocol = Protocol {
    name: "firehose",
    content_type: "application/x-amz-json-1.1",
    target_prefix: "Firehose_20150804",
    any_path: false,
};

struct State {
    faults: FaultState,
    records: Vec<Vec<u8>>,
    /// Records and lines stored since the start, kept or not.
    record_count: usize,
    line_count: usize,
    /// False: records are counted, not kept (`discard_records`).
    keep: bool,
    calls: Vec<CallInfo>,
    /// The last RecordId given.
    next_id: u64,
}

/// The fault-injecting Firehose endpoint. Stopped (listener closed, connections shut) on drop.
pub struct FakeFirehose {
    state: Arc<Shared<State>>,
    endpoint: Endpoint,
}

impl FakeFirehose {
    /// Starts listening on 127.0.0.1 and a free port, with no faults.
    pub fn start() -> FakeFirehose {
        let state = Shared::new(State {
            faults: FaultState::new(),
            records: Vec::new(),
            record_count: 0,
            line_count: 0,
            keep: true,
            calls: Vec::new(),
            next_id: 0,
        });
        let endpoint = Endpoint::start(&PROTOCOL, state.clone());
        FakeFirehose { state, endpoint }
    }

    /// Replaces the faults (and restarts the generator from their seed) for the calls that
    /// arrive from now on.
    pub fn set_faults(&self, f: Faults) {
        self.state.lock().faults.set(f);
    }

    /// Every record stored, decoded, in arrival order.
    pub fn records(&self) -> Vec<Vec<u8>> {
        self.state.lock().records.clone()
    }

    /// The stored records split into lines, without their `\n`, in arrival order. A record's
    /// bytes after its last `\n` (there should be none) count as one more line.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        split_lines(&self.state.lock().records)
    }

    /// Number of lines stored so far, kept or not (cheaper than `lines().len()`).
    pub fn line_count(&self) -> usize {
        self.state.lock().line_count
    }

    /// Number of records stored so far, kept or not.
    pub fn record_count(&self) -> usize {
        self.state.lock().record_count
    }

    /// From now on, only count the records stored (`line_count`, `record_count`), do not keep
    /// them (`records`, `lines` and `CallInfo::accepted` then miss them): for long benchmarks.
    pub fn discard_records(&self) {
        self.state.lock().keep = false;
    }

    /// Every PutRecordBatch/PutRecord call so far, in arrival order.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.state.lock().calls.clone()
    }

    /// Number of PutRecordBatch/PutRecord calls so far (cheaper than `calls().len()`).
    pub fn call_count(&self) -> usize {
        self.state.lock().calls.len()
    }
}

impl Service for Shared<State> {
    fn delay(&self) -> Duration {
        self.lock().faults.delay()
    }

    fn answer(&self, operation: &str, req: &Request) -> Option<Answer> {
        match operation {
            "PutRecordBatch" | "PutRecord" => {
                // Decoded outside the lock: connections are served in parallel.
                let parsed = parse_put(operation, &req.body);
                Some(put_records(operation, parsed, req.region(), &mut self.lock()))
            }
            "DescribeDeliveryStream" => Some(describe(&req.body)),
            _ => None,
        }
    }
}

/// The fake's server: its port and URL, going down and up.
impl std::ops::Deref for FakeFirehose {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

fn describe(body: &[u8]) -> Answer {
    let name = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("DeliveryStreamName")?.as_str().map(str::to_string));
    let Some(name) = name else {
        return Answer::error(400, "SerializationException", "DeliveryStreamName is required");
    };
    Answer::json(
        200,
        json!({"DeliveryStreamDescription": {
            "DeliveryStreamName": name,
            "DeliveryStreamARN": format!("arn:aws:firehose:us-east-1:123456789012:deliverystream/{name}"),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "Destinations": [],
            "HasMoreDestinations": false
        }}),
    )
}

/// Answers a decoded PutRecordBatch or PutRecord (`parsed`: stream and records), storing what is
/// accepted.
fn put_records(
    operation: &str,
    parsed: Result<(String, Vec<Vec<u8>>), String>,
    region: String,
    st: &mut State,
) -> Answer {
    let at = Instant::now();
    let mut info = CallInfo {
        operation: operation.to_string(),
        stream: String::new(),
        records: 0,
        bytes: 0,
        max_record: 0,
        outcome: Outcome::Invalid(String::new()),
        accepted: st.records.len()..st.records.len(),
        at,
        region,
    };
    let records = match parsed {
        Ok((stream, records)) => {
            info.stream = stream;
            info.records = records.len();
            info.bytes = records.iter().map(Vec::len).sum();
            info.max_record = records.iter().map(Vec::len).max().unwrap_or(0);
            records
        }
        Err(e) => {
            let a = Answer::error(400, "SerializationException", &e);
            info.outcome = Outcome::Invalid(e);
            st.calls.push(info);
            return a;
        }
    };
    let over = if records.is_empty() {
        Some("Records must contain at least 1 record".to_string())
    } else if records.len() > MAX_RECORDS_PER_CALL {
        Some(format!(
            "{} records in one call, over the limit of {MAX_RECORDS_PER_CALL}",
            records.len()
        ))
    } else if info.bytes > MAX_BYTES_PER_CALL {
        Some(format!(
            "{} bytes of record data in one call, over the limit of {MAX_BYTES_PER_CALL}",
            info.bytes
        ))
    } else if info.max_record > MAX_RECORD_BYTES {
        Some(format!(
            "a record of {} bytes, over the limit of {MAX_RECORD_BYTES}",
            info.max_record
        ))
    } else {
        None
    };
    if let Some(e) = over {
        let a = Answer::error(400, "InvalidArgumentException", &e);
        info.outcome = Outcome::Invalid(e);
        st.calls.push(info);
        return a;
    }
    let faults = match st.faults.for_call() {
        Ok(faults) => faults,
        Err(fault) => {
            let (status, ty, msg) = match fault {
                CallFault::NotFound => (
                    400,
                    "ResourceNotFoundException",
                    "Firehose s under account 123456789012 not found.",
                ),
                CallFault::Throttled => (400, "ThrottlingException", "Rate exceeded"),
                CallFault::ServerError => (500, "InternalFailure", "We encountered an internal error."),
                CallFault::Unavailable => (503, "ServiceUnavailableException", "Slow down."),
            };
            info.outcome = fault.outcome();
            st.calls.push(info);
            return Answer::error(status, ty, msg);
        }
    };
    let first = st.records.len();
    let mut failed = 0;
    let mut responses = Vec::with_capacity(records.len());
    for r in records {
        if st.faults.fail_entry(&faults) {
            failed += 1;
            responses.push(json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
        } else {
            st.next_id += 1;
            responses.push(json!({"RecordId": format!("{:056x}", st.next_id)}));
            st.record_count += 1;
            st.line_count += count_lines(&r);
            if st.keep {
                st.records.push(r);
            }
        }
    }
    info.accepted = first..st.records.len();
    info.outcome = Outcome::Ok { failed };
    st.calls.push(info);
    if operation == "PutRecord" {
        if failed > 0 {
            return Answer::error(503, "ServiceUnavailableException", "Slow down.");
        }
        let id = responses[0]["RecordId"].clone();
        return Answer::json(200, json!({"RecordId": id, "Encrypted": false}));
    }
    Answer::json(
        200,
        json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}),
    )
}

/// The stream name and decoded records of a PutRecordBatch (`Records`) or PutRecord (`Record`).
fn parse_put(operation: &str, body: &[u8]) -> Result<(String, Vec<Vec<u8>>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let stream = v
        .get("DeliveryStreamName")
        .and_then(Value::as_str)
        .ok_or("DeliveryStreamName missing")?
        .to_string();
    let items: Vec<&Value> = if operation == "PutRecord" {
        vec![v.get("Record").ok_or("Record missing")?]
    } else {
        v.get("Records")
            .and_then(Value::as_array)
            .ok_or("Records missing")?
            .iter()
            .collect()
    };
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let data = item
            .get("Data")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("record {i}: Data missing"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("record {i}: Data is not base64: {e}"))?;
        records.push(bytes);
    }
    Ok((stream, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_aws::test_client::{header, Conn};
    use std::net::{TcpListener, TcpStream};

    const JSON: &str = "application/x-amz-json-1.1";
    const TARGET: &str = "Firehose_20150804.PutRecordBatch";

    fn batch_body(records: &[&[u8]]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let recs: Vec<Value> = records.iter().map(|r| json!({"Data": b64.encode(r)})).collect();
        json!({"DeliveryStreamName": "s", "Records": recs}).to_string()
    }

    /// Over one keep-alive connection: a batch stored, an entry failure, a throttled call, an
    /// unknown operation, and a call over the limits; then down (refused) and up again.
    #[test]
    fn serves_put_record_batch_over_keep_alive() {
        let fake = FakeFirehose::start();
        let mut c = Conn::open(fake.port());

        c.send(TARGET, JSON, &batch_body(&[b"a\n", b"b\nc\n"]), "");
        let (status, headers, body) = c.read();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some(JSON));
        assert_eq!(body["FailedPutCount"], 0);
        assert_eq!(body["RequestResponses"].as_array().unwrap().len(), 2);
        assert!(body["RequestResponses"][1]["RecordId"].is_string());
        assert_eq!(fake.lines(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);

        fake.set_faults(Faults {
            fail_entries: 1.0,
            ..Faults::default()
        });
        c.send(TARGET, JSON, &batch_body(&[b"x\n"]), "");
        let (status, _, body) = c.read();
        assert_eq!(status, 200);
        assert_eq!(body["FailedPutCount"], 1);
        assert_eq!(
            body["RequestResponses"][0]["ErrorCode"],
            "ServiceUnavailableException"
        );

        fake.set_faults(Faults {
            throttle: 1.0,
            ..Faults::default()
        });
        c.send(TARGET, JSON, &batch_body(&[b"y\n"]), "");
        let (status, headers, body) = c.read();
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("ThrottlingException"))
        );
        assert_eq!(header(&headers, "x-amzn-errortype"), Some("ThrottlingException"));

        fake.set_faults(Faults::default());
        c.send("Firehose_20150804.Nope", JSON, "{}", "");
        let (status, _, body) = c.read();
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("UnknownOperationException"))
        );

        let big = vec![b'x'; MAX_RECORD_BYTES + 1];
        c.send(TARGET, JSON, &batch_body(&[&big]), "");
        let (status, _, body) = c.read();
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("InvalidArgumentException"))
        );

        let calls = fake.calls();
        let outcomes: Vec<_> = calls.iter().map(|c| c.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Ok { failed: 0 },
                Outcome::Ok { failed: 1 },
                Outcome::Throttled,
                Outcome::Invalid(format!(
                    "a record of {} bytes, over the limit of {MAX_RECORD_BYTES}",
                    MAX_RECORD_BYTES + 1
                )),
            ]
        );
        assert_eq!((calls[0].records, calls[0].bytes, calls[0].max_record), (2, 6, 4));
        assert_eq!(calls[0].accepted, 0..2);
        assert_eq!(
            fake.records().len(),
            2,
            "failed and refused entries are not stored"
        );

        fake.go_down();
        assert!(c.closed(), "go_down closes open connections");
        assert!(
            TcpStream::connect(("127.0.0.1", fake.port())).is_err(),
            "refused while down"
        );
        assert!(
            TcpListener::bind(("127.0.0.1", fake.port())).is_err(),
            "the port stays reserved while down"
        );
        fake.come_up();
        let mut c = Conn::open(fake.port());
        c.send(TARGET, JSON, &batch_body(&[b"z\n"]), "Connection: close\r\n");
        let (status, headers, _) = c.read();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_eq!((fake.line_count(), fake.record_count()), (4, 3));
        fake.discard_records();
        let mut c = Conn::open(fake.port());
        c.send(TARGET, JSON, &batch_body(&[b"d\ne\n"]), "");
        assert_eq!(c.read().0, 200);
        assert_eq!((fake.line_count(), fake.record_count()), (6, 4), "counted");
        assert_eq!(fake.records().len(), 3, "not kept");
    }
}
