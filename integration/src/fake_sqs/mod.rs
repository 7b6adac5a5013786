//! An SQS endpoint of our own that can fail on demand: moto never fails a message, this one
//! answers some entries, some calls or every connection with the errors AWS gives.
//!
//! It is the shared fake server (`fake_aws`) speaking SQS's AWS JSON 1.0 protocol (what
//! aws-sdk-sqs and botocore speak): a POST to any path (clients post to the queue URL), header
//! `X-Amz-Target: AmazonSQS.<operation>`, answers in `application/x-amz-json-1.0`.
//!
//! - `SendMessageBatch`, body `{"QueueUrl":"...","Entries":[{"Id":"0","MessageBody":"...",
//!   "MessageGroupId":"g","MessageDeduplicationId":"d","DelaySeconds":0},...]}`: HTTP 200 with
//!   `{"Successful":[{"Id","MessageId","MD5OfMessageBody","SequenceNumber" (FIFO only)}],
//!   "Failed":[{"Id","SenderFault","Code","Message"}]}`.
//! - The queue is named by the last segment of its URL; every queue exists (unless a fault says
//!   otherwise), FIFO when its name ends in `.fifo`. The URLs the fake gives are
//!   `http://127.0.0.1:PORT/123456789012/<name>` ([`FakeSqs::queue_url`]).
//! - The call refused as a whole (HTTP 400, nothing stored) as SQS does: `EmptyBatchRequest`,
//!   `TooManyEntriesInBatchRequest` (over 10), `InvalidBatchEntryId`, `BatchEntryIdsNotDistinct`,
//!   `BatchRequestTooLong` (bodies and attributes over 262,144 bytes, [`MAX_BATCH_BYTES`]).
//! - An entry failed with SenderFault true, as SQS does: on a FIFO queue without
//!   `MessageGroupId` (`MissingParameter`), without `MessageDeduplicationId` when content-based
//!   deduplication is off (`InvalidParameterValue`), or with a `DelaySeconds`; a deduplication id
//!   on a standard queue; a body with characters XML does not allow (`InvalidMessageContents`).
//! - FIFO deduplication as SQS does it: a message whose deduplication id (given, or the SHA-256
//!   of its body with content-based deduplication, [`FakeSqs::set_content_based_dedup`]) was
//!   accepted on that queue within the last 5 minutes is answered Successful, with the first
//!   one's MessageId and SequenceNumber, and not stored again ([`FakeSqs::deduplicated`]).
//! - Injected faults ([`Faults`]): per entry `InternalError` (SenderFault false; or
//!   `ServiceUnavailable`, or `RequestThrottled` with SenderFault true, [`EntryError`]); per call
//!   HTTP 400 `QueueDoesNotExist`, HTTP 400 `RequestThrottled` (or `ThrottlingException`,
//!   [`Throttle`]), HTTP 500 `InternalFailure`, HTTP 503 `ServiceUnavailable`; delays, outages.
//! - Minimal `GetQueueUrl` and `GetQueueAttributes`; anything else: HTTP 400
//!   `UnknownOperationException`.
//!
//! Errors are `{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"..."}` with the header
//! `x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender`: SQS moved from the query
//! protocol to JSON keeping its old error codes there, and the SDKs read them from it (aws-sdk-sqs
//! matches its error variants on that code; botocore reports it as `Error.Code`, the `__type`
//! name as `Error.QueryErrorCode`, and raises the exception class of the latter).
//!
//! Accepted messages are kept in arrival order with their queue, group id and deduplication id
//! ([`FakeSqs::messages`]); every SendMessageBatch call is described ([`FakeSqs::calls`]). For
//! long benchmarks, [`FakeSqs::discard_messages`] keeps the counts only (and the deduplication
//! ids, so that a resend is still dropped).

mod batch;

use crate::fake_aws::http::{Answer, Request};
use crate::fake_aws::{CallFault, Endpoint, FaultState, Protocol, Service, Shared};
use crate::Rng;
use batch::{Entry, Refusal};
use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::fake_aws::{Faults, Outcome};
pub use batch::{MAX_BATCH_BYTES, MAX_ENTRIES_PER_CALL, MAX_ENTRY_ID_CHARS};

/// How long SQS remembers a deduplication id.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);

const ACCOUNT: &str = "123456789012";

const PROTOCOL: Protocol = Protocol {
    name: "sqs",
    content_type: "application/x-amz-json-1.0",
    target_prefix: "AmazonSQS",
    any_path: true,
};

/// The error of an entry failed by `Faults::fail_entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryError {
    /// SenderFault false: what SQS is seen to answer when it fails an entry on its side.
    #[default]
    InternalError,
    /// SenderFault false.
    ServiceUnavailable,
    /// SenderFault true, as the error's type is Sender: a client that gives up on sender faults
    /// loses a message it could have resent.
    RequestThrottled,
}

/// The error of a call throttled by `Faults::throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Throttle {
    /// The error SQS's API model names for SendMessageBatch.
    #[default]
    RequestThrottled,
    /// The AWS-wide throttling error.
    ThrottlingException,
}

/// One message stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The queue's URL as the call gave it.
    pub queue_url: String,
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    /// As given, or made from the body by content-based deduplication (FIFO only).
    pub dedup_id: Option<String>,
    /// FIFO only.
    pub sequence_number: Option<String>,
    pub delay_seconds: Option<u32>,
}

/// One SendMessageBatch call as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct BatchCall {
    pub queue_url: String,
    pub entries: usize,
    /// Bytes of the call's messages as SQS counts them against its limit.
    pub bytes: usize,
    /// `Ok { failed }` counts the entries in `Failed`, entry checks included.
    pub outcome: Outcome,
    /// Where the messages of this call that were stored are in `messages()`.
    pub accepted: Range<usize>,
    /// Entries answered Successful but not stored: duplicates within the deduplication window.
    pub deduplicated: usize,
    /// When the request was complete.
    pub at: Instant,
    /// The region of the request's SigV4 signature; empty if unsigned.
    pub region: String,
}

/// The answer given to a deduplication id, and when.
struct Remembered {
    at: Instant,
    message_id: String,
    sequence_number: Option<String>,
}

struct State {
    faults: FaultState,
    entry_error: EntryError,
    throttle: Throttle,
    content_based_dedup: bool,
    max_batch_bytes: usize,
    dedup_window: Duration,
    /// `http://127.0.0.1:PORT`.
    base_url: String,
    /// Per queue name, per deduplication id.
    dedup: HashMap<String, HashMap<String, Remembered>>,
    messages: Vec<Message>,
    /// Messages stored since the start, kept or not.
    message_count: usize,
    /// False: messages are counted, not kept (`discard_messages`).
    keep: bool,
    deduplicated: usize,
    calls: Vec<BatchCall>,
    /// The last FIFO sequence number given.
    sequence: u128,
    /// For MessageIds.
    rng: Rng,
}

/// The fault-injecting SQS endpoint. Stopped (listener closed, connections shut) on drop.
pub struct FakeSqs {
    state: Arc<Shared<State>>,
    endpoint: Endpoint,
}

impl FakeSqs {
    /// Starts listening on 127.0.0.1 and a free port, with no faults, content-based
    /// deduplication off, the 256 KiB batch limit.
    pub fn start() -> FakeSqs {
        let state = Shared::new(State {
            faults: FaultState::new(),
            entry_error: EntryError::default(),
            throttle: Throttle::default(),
            content_based_dedup: false,
            max_batch_bytes: MAX_BATCH_BYTES,
            dedup_window: DEDUP_WINDOW,
            base_url: String::new(),
            dedup: HashMap::new(),
            messages: Vec::new(),
            message_count: 0,
            keep: true,
            deduplicated: 0,
            calls: Vec::new(),
            sequence: 0,
            rng: Rng::new(7),
        });
        let endpoint = Endpoint::start(&PROTOCOL, state.clone());
        state.lock().base_url = endpoint.url();
        FakeSqs { state, endpoint }
    }

    /// The URL of queue `name` here: `http://127.0.0.1:PORT/123456789012/<name>`.
    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/{ACCOUNT}/{name}", self.url())
    }

    /// Replaces the faults (and restarts the generator from their seed) for the calls that
    /// arrive from now on.
    pub fn set_faults(&self, f: Faults) {
        self.state.lock().faults.set(f);
    }

    /// The error of the entries failed by `Faults::fail_entries` from now on.
    pub fn set_entry_error(&self, e: EntryError) {
        self.state.lock().entry_error = e;
    }

    /// The error of the calls throttled by `Faults::throttle` from now on.
    pub fn set_throttle_error(&self, t: Throttle) {
        self.state.lock().throttle = t;
    }

    /// Content-based deduplication of every FIFO queue (off at the start).
    pub fn set_content_based_dedup(&self, on: bool) {
        self.state.lock().content_based_dedup = on;
    }

    /// The size limit of a call's messages ([`MAX_BATCH_BYTES`] at the start; 1,048,576 is
    /// AWS's since 2025).
    pub fn set_max_batch_bytes(&self, bytes: usize) {
        self.state.lock().max_batch_bytes = bytes;
    }

    /// How long a deduplication id is remembered ([`DEDUP_WINDOW`] at the start), so that tests
    /// can see it expire.
    pub fn set_dedup_window(&self, window: Duration) {
        self.state.lock().dedup_window = window;
    }

    /// Every message stored, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().messages.clone()
    }

    /// Number of messages stored so far, kept or not.
    pub fn message_count(&self) -> usize {
        self.state.lock().message_count
    }

    /// From now on, only count the messages stored (`message_count`), do not keep them
    /// (`messages`, `BatchCall::accepted` and GetQueueAttributes' `ApproximateNumberOfMessages`
    /// then miss them): for long benchmarks. Deduplication ids are still remembered.
    pub fn discard_messages(&self) {
        self.state.lock().keep = false;
    }

    /// Number of SendMessageBatch calls so far (cheaper than `calls().len()`).
    pub fn call_count(&self) -> usize {
        self.state.lock().calls.len()
    }

    /// Entries answered Successful but not stored as duplicates, so far.
    pub fn deduplicated(&self) -> usize {
        self.state.lock().deduplicated
    }

    /// Every SendMessageBatch call so far, in arrival order.
    pub fn calls(&self) -> Vec<BatchCall> {
        self.state.lock().calls.clone()
    }
}

/// The fake's server: its port and URL, going down and up.
impl std::ops::Deref for FakeSqs {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Service for Shared<State> {
    fn delay(&self) -> Duration {
        self.lock().faults.delay()
    }

    fn answer(&self, operation: &str, req: &Request) -> Option<Answer> {
        match operation {
            "SendMessageBatch" => {
                // Decoded outside the lock: connections are served in parallel.
                let parsed = batch::parse(&req.body);
                Some(send_batch(parsed, req.region(), &mut self.lock()))
            }
            "GetQueueUrl" => Some(get_queue_url(&req.body, &self.lock())),
            "GetQueueAttributes" => Some(get_queue_attributes(&req.body, &self.lock())),
            _ => None,
        }
    }
}

/// An SQS error: HTTP `status`, `code` (the API model's shape name, in `__type`) and the code of
/// the query protocol with the fault's side in `x-amzn-query-error`.
fn error(status: u16, code: &str, message: &str) -> Answer {
    let (query_code, side) = match code {
        "QueueDoesNotExist" => ("AWS.SimpleQueueService.NonExistentQueue", "Sender"),
        "EmptyBatchRequest" => ("AWS.SimpleQueueService.EmptyBatchRequest", "Sender"),
        "TooManyEntriesInBatchRequest" => ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "Sender"),
        "InvalidBatchEntryId" => ("AWS.SimpleQueueService.InvalidBatchEntryId", "Sender"),
        "BatchEntryIdsNotDistinct" => ("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Sender"),
        "BatchRequestTooLong" => ("AWS.SimpleQueueService.BatchRequestTooLong", "Sender"),
        "InternalFailure" | "ServiceUnavailable" => (code, "Receiver"),
        _ => (code, "Sender"),
    };
    Answer::error(status, &format!("com.amazonaws.sqs#{code}"), message)
        .with_header("x-amzn-query-error", format!("{query_code};{side}"))
}

fn refused(r: &Refusal) -> Answer {
    error(400, r.code, &r.message)
}

/// The queue's name: the last segment of its URL.
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn get_queue_url(body: &[u8], st: &State) -> Answer {
    match body_json(body).get("QueueName").and_then(Value::as_str) {
        Some(name) => Answer::json(
            200,
            json!({"QueueUrl": format!("{}/{ACCOUNT}/{name}", st.base_url)}),
        ),
        None => error(
            400,
            "MissingParameter",
            "The request must contain the parameter QueueName.",
        ),
    }
}

fn get_queue_attributes(body: &[u8], st: &State) -> Answer {
    let v = body_json(body);
    let Some(url) = v.get("QueueUrl").and_then(Value::as_str) else {
        return error(
            400,
            "MissingParameter",
            "The request must contain the parameter QueueUrl.",
        );
    };
    let name = queue_name(url);
    let stored = st
        .messages
        .iter()
        .filter(|m| queue_name(&m.queue_url) == name)
        .count();
    let mut all = json!({
        "QueueArn": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"),
        "ApproximateNumberOfMessages": stored.to_string(),
        "ApproximateNumberOfMessagesNotVisible": "0",
        "ApproximateNumberOfMessagesDelayed": "0",
        "CreatedTimestamp": "1700000000",
        "LastModifiedTimestamp": "1700000000",
        "DelaySeconds": "0",
        "MaximumMessageSize": st.max_batch_bytes.to_string(),
        "MessageRetentionPeriod": "345600",
        "ReceiveMessageWaitTimeSeconds": "0",
        "VisibilityTimeout": "30",
        "SqsManagedSseEnabled": "true",
    });
    if name.ends_with(".fifo") {
        all["FifoQueue"] = json!("true");
        all["ContentBasedDeduplication"] = json!(st.content_based_dedup.to_string());
        all["DeduplicationScope"] = json!("queue");
        all["FifoThroughputLimit"] = json!("perQueue");
    }
    let names: Vec<&str> = v
        .get("AttributeNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let all = all.as_object().cloned().unwrap_or_default();
    let chosen: serde_json::Map<String, Value> = all
        .into_iter()
        .filter(|(k, _)| names.contains(&"All") || names.contains(&k.as_str()))
        .collect();
    if chosen.is_empty() {
        return Answer::json(200, json!({}));
    }
    Answer::json(200, json!({ "Attributes": chosen }))
}

/// A MessageId: a random UUID (version 4 form).
fn message_id(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers a decoded SendMessageBatch, storing what is accepted.
fn send_batch(parsed: Result<(String, Vec<Entry>), Refusal>, region: String, st: &mut State) -> Answer {
    let mut info = BatchCall {
        queue_url: String::new(),
        entries: 0,
        bytes: 0,
        outcome: Outcome::Invalid(String::new()),
        accepted: st.messages.len()..st.messages.len(),
        deduplicated: 0,
        at: Instant::now(),
        region,
    };
    let max_bytes = st.max_batch_bytes;
    let checked = parsed.and_then(|(url, entries)| {
        info.queue_url = url.clone();
        info.entries = entries.len();
        info.bytes = entries.iter().map(Entry::size).sum();
        match batch::check_call(&entries, max_bytes) {
            Some(r) => Err(r),
            None => Ok((url, entries)),
        }
    });
    let (url, entries) = match checked {
        Ok(ok) => ok,
        Err(r) => {
            info.outcome = Outcome::Invalid(format!("{}: {}", r.code, r.message));
            st.calls.push(info);
            return refused(&r);
        }
    };
    let faults = match st.faults.for_call() {
        Ok(faults) => faults,
        Err(fault) => {
            let (status, code, msg) = match fault {
                CallFault::NotFound => (400, "QueueDoesNotExist", "The specified queue does not exist."),
                CallFault::Throttled => match st.throttle {
                    Throttle::RequestThrottled => (400, "RequestThrottled", "Request is throttled."),
                    Throttle::ThrottlingException => (400, "ThrottlingException", "Rate exceeded"),
                },
                CallFault::ServerError => (
                    500,
                    "InternalFailure",
                    "We encountered an internal error. Please try again.",
                ),
                CallFault::Unavailable => (
                    503,
                    "ServiceUnavailable",
                    "Service is unavailable. Please try again later.",
                ),
            };
            info.outcome = fault.outcome();
            st.calls.push(info);
            return error(status, code, msg);
        }
    };
    let name = queue_name(&url).to_string();
    let fifo = name.ends_with(".fifo");
    let first = st.messages.len();
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for e in entries {
        let refusal = batch::check_entry(&e, fifo, st.content_based_dedup);
        let injected = refusal.is_none() && st.faults.fail_entry(&faults);
        if let Some(r) = refusal {
            failed.push(json!({"Id": e.id, "SenderFault": true, "Code": r.code, "Message": r.message}));
            continue;
        }
        if injected {
            let (code, sender, msg) = match st.entry_error {
                EntryError::InternalError => ("InternalError", false, "An internal error occurred."),
                EntryError::ServiceUnavailable => ("ServiceUnavailable", false, "Service is unavailable."),
                EntryError::RequestThrottled => ("RequestThrottled", true, "Request is throttled."),
            };
            failed.push(json!({"Id": e.id, "SenderFault": sender, "Code": code, "Message": msg}));
            continue;
        }
        let md5 = hex(&Md5::digest(e.body.as_bytes()));
        let dedup_id = fifo.then(|| {
            e.dedup_id
                .clone()
                .unwrap_or_else(|| hex(&Sha256::digest(e.body.as_bytes())))
        });
        let window = st.dedup_window;
        let earlier = dedup_id
            .as_ref()
            .and_then(|d| st.dedup.get(&name)?.get(d))
            .filter(|r| r.at.elapsed() < window);
        let mut ok = json!({"Id": e.id, "MD5OfMessageBody": md5});
        if let Some(r) = earlier {
            ok["MessageId"] = json!(r.message_id);
            ok["SequenceNumber"] = json!(r.sequence_number);
            successful.push(ok);
            info.deduplicated += 1;
            continue;
        }
        let message_id = message_id(&mut st.rng);
        let sequence_number = fifo.then(|| {
            st.sequence += 1;
            // The shape of SQS's: 20 decimal digits, increasing.
            format!("{}", 18_000_000_000_000_000_000u128 + st.sequence)
        });
        ok["MessageId"] = json!(message_id);
        if let Some(s) = &sequence_number {
            ok["SequenceNumber"] = json!(s);
        }
        successful.push(ok);
        if let Some(d) = &dedup_id {
            let remembered = Remembered {
                at: Instant::now(),
                message_id: message_id.clone(),
                sequence_number: sequence_number.clone(),
            };
            st.dedup
                .entry(name.clone())
                .or_default()
                .insert(d.clone(), remembered);
        }
        st.message_count += 1;
        if st.keep {
            st.messages.push(Message {
                queue_url: url.clone(),
                message_id,
                body: e.body,
                group_id: e.group_id,
                dedup_id,
                sequence_number,
                delay_seconds: e.delay_seconds,
            });
        }
    }
    st.deduplicated += info.deduplicated;
    info.accepted = first..st.messages.len();
    info.outcome = Outcome::Ok { failed: failed.len() };
    st.calls.push(info);
    Answer::json(200, json!({"Successful": successful, "Failed": failed}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_aws::test_client::{header, Conn};

    const JSON: &str = "application/x-amz-json-1.0";
    const TARGET: &str = "AmazonSQS.SendMessageBatch";

    fn send(c: &mut Conn, url: &str, entries: Value) -> (u16, Vec<(String, String)>, Value) {
        c.send(
            TARGET,
            JSON,
            &json!({"QueueUrl": url, "Entries": entries}).to_string(),
            "",
        );
        c.read()
    }

    #[test]
    fn fifo_dedup_within_the_window() {
        let fake = FakeSqs::start();
        let url = fake.queue_url("q.fifo");
        let mut c = Conn::open(fake.port());
        let e = |id: &str, d: &str| json!({"Id": id, "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": d});
        let (status, headers, first) = send(&mut c, &url, json!([e("0", "d1"), e("1", "d2")]));
        assert_eq!((status, header(&headers, "content-type")), (200, Some(JSON)));
        // MD5("b") = 92eb5ffee6ae2fec3ad71c777531578f
        assert_eq!(
            first["Successful"][0]["MD5OfMessageBody"],
            "92eb5ffee6ae2fec3ad71c777531578f"
        );
        let (_, _, again) = send(&mut c, &url, json!([e("0", "d1"), e("1", "d3")]));
        assert_eq!(
            again["Successful"][0]["MessageId"],
            first["Successful"][0]["MessageId"]
        );
        assert_eq!(
            again["Successful"][0]["SequenceNumber"],
            first["Successful"][0]["SequenceNumber"]
        );
        assert_eq!((fake.message_count(), fake.deduplicated()), (3, 1));
        assert_eq!(fake.calls()[1].deduplicated, 1);
        let other = fake.queue_url("other.fifo");
        send(&mut c, &other, json!([e("0", "d1")]));
        assert_eq!(fake.message_count(), 4, "deduplication is per queue");
        fake.set_dedup_window(Duration::ZERO);
        send(&mut c, &url, json!([e("0", "d1")]));
        assert_eq!(
            (fake.message_count(), fake.deduplicated()),
            (5, 1),
            "an expired id is new"
        );
        let seqs: Vec<_> = fake
            .messages()
            .iter()
            .map(|m| m.sequence_number.clone().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "sequence numbers increase: {seqs:?}"
        );
    }

    #[test]
    fn refusals_faults_and_entry_failures() {
        let fake = FakeSqs::start();
        let url = fake.queue_url("q");
        let mut c = Conn::open(fake.port());
        let (status, headers, v) = send(&mut c, &url, json!([]));
        assert_eq!(
            (status, v["__type"].as_str()),
            (400, Some("com.amazonaws.sqs#EmptyBatchRequest"))
        );
        assert_eq!(
            header(&headers, "x-amzn-query-error"),
            Some("AWS.SimpleQueueService.EmptyBatchRequest;Sender")
        );
        fake.set_faults(Faults {
            not_found: 1.0,
            calls: Some(1),
            ..Faults::default()
        });
        let one = json!([{"Id": "a", "MessageBody": "x"}]);
        let (status, headers, _) = send(&mut c, &url, one.clone());
        assert_eq!(status, 400);
        assert_eq!(
            header(&headers, "x-amzn-query-error"),
            Some("AWS.SimpleQueueService.NonExistentQueue;Sender")
        );
        fake.set_faults(Faults {
            fail_entries: 1.0,
            ..Faults::default()
        });
        fake.set_entry_error(EntryError::RequestThrottled);
        let two = json!([{"Id": "a", "MessageBody": "x"}, {"Id": "b", "MessageBody": "y", "MessageDeduplicationId": "d"}]);
        let (_, _, v) = send(&mut c, &url, two);
        let failed: Vec<_> = v["Failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["Id"].as_str().unwrap(),
                    f["Code"].as_str().unwrap(),
                    f["SenderFault"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            failed,
            vec![
                ("a", "RequestThrottled", true),
                ("b", "InvalidParameterValue", true)
            ]
        );
        fake.set_faults(Faults {
            server_error: 1.0,
            ..Faults::default()
        });
        let (status, headers, _) = send(&mut c, &url, one);
        assert_eq!(
            (status, header(&headers, "x-amzn-query-error")),
            (500, Some("InternalFailure;Receiver"))
        );
        let outcomes: Vec<_> = fake.calls().iter().map(|c| c.outcome.clone()).collect();
        assert_eq!(
            outcomes[1..],
            [Outcome::NotFound, Outcome::Ok { failed: 2 }, Outcome::ServerError]
        );
        assert_eq!(fake.message_count(), 0);
        c.send("AmazonSQS.GetQueueUrl", JSON, r#"{"QueueName":"q"}"#, "");
        assert_eq!(c.read().2["QueueUrl"], url.as_str());

        fake.set_faults(Faults::default());
        send(&mut c, &url, json!([{"Id": "a", "MessageBody": "x"}]));
        fake.discard_messages();
        let (_, _, v) = send(
            &mut c,
            &url,
            json!([{"Id": "a", "MessageBody": "y"}, {"Id": "b", "MessageBody": "z"}]),
        );
        assert_eq!(v["Successful"].as_array().map(Vec::len), Some(2));
        assert_eq!(fake.message_count(), 3, "counted");
        assert_eq!(fake.messages().len(), 1, "not kept");
        assert_eq!(fake.call_count(), 6);
    }
}
