//! Self-checks of the harness for the Kinesis and SQS relayers: a real AWS SDK (boto3) reads the
//! fault-injecting endpoints' answers as the tests mean them (successes, failed entries, every
//! call-level fault, the limits), and moto's Kinesis and SQS behave as `integration::moto`
//! says (what it checks, keeps in order, deduplicates, and where it differs from AWS).
//!
//! Each test makes its boto3 calls in as few helper processes as it can (one costs about 0.7 s):
//! the faults of a fake are set once, for the first calls of a batch (`Faults::calls`), and the
//! clean calls and refusals follow in the same batch.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use integration::boto3::{blob, unblob, AwsError, Boto3};
use integration::fake_kinesis::{self, FakeKinesis};
use integration::fake_sqs::{self, FakeSqs};
use integration::moto::{Moto, QueueKind};
use integration::Rng;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// Calls with faults drawn, at the start of a batch.
const FAULTY_CALLS: usize = 16;

/// A mix of every call-level fault and failed entries; with this seed, the first
/// `FAULTY_CALLS` calls get each kind at least once (the tests check it).
fn mixed_faults() -> fake_kinesis::Faults {
    fake_kinesis::Faults {
        fail_entries: 0.3,
        throttle: 0.15,
        server_error: 0.15,
        unavailable: 0.15,
        not_found: 0.15,
        calls: Some(FAULTY_CALLS),
        seed: 2,
        ..Default::default()
    }
}

/// The kind of an outcome, to see that every kind came up.
fn kind(o: &fake_kinesis::Outcome) -> &'static str {
    use fake_kinesis::Outcome::*;
    match o {
        Ok { failed: 0 } => "ok",
        Ok { .. } => "failed entries",
        Throttled => "throttled",
        ServerError => "server error",
        Unavailable => "unavailable",
        NotFound => "not found",
        Invalid(_) => "invalid",
    }
}

#[track_caller]
fn error(r: &Result<Value, Box<AwsError>>, what: &str) -> AwsError {
    match r {
        Err(e) => (**e).clone(),
        Ok(v) => panic!("{what}: expected an error, got {v}"),
    }
}

#[track_caller]
fn ok<'a>(r: &'a Result<Value, Box<AwsError>>, what: &str) -> &'a Value {
    r.as_ref()
        .unwrap_or_else(|e| panic!("{what}: expected success, got {e:?}"))
}

/// A Kinesis PutRecords call of `(partition key, data)` records.
fn put_records(stream: &str, records: &[(String, Vec<u8>)]) -> (&'static str, &'static str, Value) {
    let records: Vec<Value> = records
        .iter()
        .map(|(k, d)| json!({"PartitionKey": k, "Data": blob(d)}))
        .collect();
    (
        "kinesis",
        "put_records",
        json!({"StreamName": stream, "Records": records}),
    )
}

/// `n` records of `data` under `key`.
fn same_records(n: usize, key: &str, data: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![(key.to_string(), data.to_vec()); n]
}

/// Three records of call `i`: keys a, b, c, data with bytes that are not UTF-8.
fn three_records(i: usize) -> Vec<(String, Vec<u8>)> {
    ["a", "b", "c"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                format!("{k}{i}\n\u{0}")
                    .into_bytes()
                    .into_iter()
                    .chain([0xff])
                    .collect(),
            )
        })
        .collect()
}

/// boto3 reads every answer of the fake Kinesis as the fake recorded it: per-record results with
/// their shard (the MD5 range of the key among 4 shards) and sequence number, failed records with
/// their ErrorCode, each call-level fault with its status and code (and the exception class for
/// the modeled ones), the refusals for the limits; the records stored are exactly those boto3 saw
/// accepted, in order.
#[test]
fn fake_kinesis_answers_read_by_boto3() {
    let fake = FakeKinesis::start_with_shards(4);
    fake.set_faults(mixed_faults());
    let mut calls: Vec<_> = (0..FAULTY_CALLS)
        .map(|i| put_records("s", &three_records(i)))
        .collect();
    let by_arn = json!({
        "StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        "Records": [{"PartitionKey": "k", "Data": blob(b"by arn")}],
    });
    calls.push(("kinesis", "put_records", by_arn));
    calls.push(("kinesis", "describe_stream_summary", json!({"StreamName": "s"})));
    calls.push(put_records("s", &[]));
    let over = same_records(fake_kinesis::MAX_RECORDS_PER_CALL + 1, "k", b"x");
    calls.push(put_records("s", &over));
    calls.push(put_records("s", &[("k".repeat(257), b"x".to_vec())]));
    let big = same_records(6, "k", &vec![7u8; fake_kinesis::MAX_RECORD_BYTES - 1]);
    calls.push(put_records("s", &big));
    let results = Boto3::new(&fake.url()).calls(&calls);

    let infos = fake.calls();
    let mut kinds = BTreeSet::new();
    let mut accepted = Vec::new();
    for (i, (info, r)) in infos.iter().zip(&results).take(FAULTY_CALLS).enumerate() {
        kinds.insert(kind(&info.outcome));
        let what = format!("call {i} ({:?})", info.outcome);
        let (status, code, exception) = match info.outcome {
            fake_kinesis::Outcome::Ok { failed } => {
                let v = ok(r, &what);
                assert_eq!(v["FailedRecordCount"], failed, "{what}");
                let sent = three_records(i);
                let results = v["Records"].as_array().expect("Records");
                assert_eq!(results.len(), 3, "{what}: one result per record");
                for ((key, data), res) in sent.into_iter().zip(results) {
                    if let Some(code) = res["ErrorCode"].as_str() {
                        assert_eq!(code, "ProvisionedThroughputExceededException", "{what}");
                        let msg = res["ErrorMessage"].as_str().unwrap();
                        assert!(msg.starts_with("Rate exceeded for shard shardId-"), "{msg}");
                        continue;
                    }
                    let shard = fake_kinesis::shard_id(fake_kinesis::shard_for_key(&key, 4));
                    assert_eq!(res["ShardId"], shard.as_str(), "{what}: the shard of key {key}");
                    let seq = res["SequenceNumber"].as_str().unwrap().to_string();
                    accepted.push((shard, seq, key, data));
                }
                continue;
            }
            fake_kinesis::Outcome::Throttled => (
                400,
                "ProvisionedThroughputExceededException",
                "ProvisionedThroughputExceededException",
            ),
            fake_kinesis::Outcome::ServerError => (500, "InternalFailure", "ClientError"),
            fake_kinesis::Outcome::Unavailable => (503, "ServiceUnavailable", "ClientError"),
            fake_kinesis::Outcome::NotFound => {
                (400, "ResourceNotFoundException", "ResourceNotFoundException")
            }
            fake_kinesis::Outcome::Invalid(_) => panic!("{what}: refused"),
        };
        let e = error(r, &what);
        assert_eq!(
            (e.status, e.code.as_str(), e.exception.as_str()),
            (status, code, exception),
            "{what}: {e:?}"
        );
    }
    assert_eq!(kinds.len(), 6, "every kind of answer came up: {kinds:?}");

    let by_arn = ok(&results[FAULTY_CALLS], "a call naming the stream by ARN");
    assert_eq!(by_arn["FailedRecordCount"], 0);
    assert_eq!(infos[FAULTY_CALLS].stream, "s");
    let summary = &ok(&results[FAULTY_CALLS + 1], "DescribeStreamSummary")["StreamDescriptionSummary"];
    assert_eq!(
        (
            summary["StreamStatus"].as_str(),
            summary["OpenShardCount"].as_u64()
        ),
        (Some("ACTIVE"), Some(4))
    );
    let refusals: Vec<_> = results[FAULTY_CALLS + 2..]
        .iter()
        .map(|r| {
            let e = error(r, "a call over the limits");
            (e.status, e.code)
        })
        .collect();
    assert_eq!(
        refusals,
        [
            (400, "ValidationException".to_string()),
            (400, "ValidationException".to_string()),
            (400, "ValidationException".to_string()),
            (400, "InvalidArgumentException".to_string()),
        ]
    );
    assert_eq!(
        error(results.last().unwrap(), "5 MiB").message,
        "Records size exceeds 5 MB limit"
    );

    let stored: Vec<_> = fake
        .records()
        .into_iter()
        .map(|r| (r.shard_id, r.sequence_number, r.partition_key, r.data))
        .collect();
    assert_eq!(
        stored[..stored.len() - 1],
        accepted[..],
        "stored: what boto3 saw accepted, in order"
    );
    assert_eq!(stored.last().unwrap().3, b"by arn");
}

/// A SendMessageBatch call to `url` of `(Id, body)` entries with optional extra fields.
fn send(url: &str, entries: Vec<Value>) -> (&'static str, &'static str, Value) {
    (
        "sqs",
        "send_message_batch",
        json!({"QueueUrl": url, "Entries": entries}),
    )
}

fn entry(id: &str, body: &str) -> Value {
    json!({"Id": id, "MessageBody": body})
}

fn fifo_entry(id: &str, body: &str, group: &str, dedup: &str) -> Value {
    json!({"Id": id, "MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": dedup})
}

/// `(Id, Code, SenderFault)` of a SendMessageBatch answer's Failed entries.
fn failed(v: &Value) -> Vec<(String, String, bool)> {
    v["Failed"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|e| {
                    (
                        e["Id"].as_str().unwrap().to_string(),
                        e["Code"].as_str().unwrap().to_string(),
                        e["SenderFault"].as_bool().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// boto3 reads every answer of the fake SQS as the fake recorded it: Successful entries with
/// MessageId and the MD5 of the body, Failed entries with Code and SenderFault, each call-level
/// fault and refusal with the code of `x-amzn-query-error`, the model's error name as
/// QueryErrorCode and the matching exception class; FIFO entries with their sequence numbers, a
/// resent deduplication id answered with the first MessageId and not stored again; GetQueueUrl
/// and GetQueueAttributes.
#[test]
fn fake_sqs_answers_read_by_boto3() {
    let fake = FakeSqs::start();
    let (std_url, fifo_url) = (fake.queue_url("std"), fake.queue_url("f.fifo"));
    fake.set_faults(mixed_faults());
    let three = |i: usize| {
        (0..3)
            .map(|j| entry(&j.to_string(), &format!("m{i}-{j}")))
            .collect()
    };
    let mut calls: Vec<_> = (0..FAULTY_CALLS).map(|i| send(&std_url, three(i))).collect();
    calls.push(send(
        &std_url,
        vec![
            entry("h", "hello"),
            json!({"Id": "d", "MessageBody": "x", "DelaySeconds": 901}),
        ],
    ));
    calls.push(send(
        &fifo_url,
        vec![
            fifo_entry("a", "first", "g1", "d1"),
            fifo_entry("b", "second", "g2", "d2"),
            json!({"Id": "c", "MessageBody": "no group", "MessageDeduplicationId": "d3"}),
        ],
    ));
    calls.push(send(
        &fifo_url,
        vec![fifo_entry("a", "first, resent", "g1", "d1")],
    ));
    calls.push(send(&std_url, vec![]));
    calls.push(send(
        &std_url,
        (0..11).map(|j| entry(&j.to_string(), "x")).collect(),
    ));
    calls.push(send(&std_url, vec![entry("a", "x"), entry("a", "y")]));
    calls.push(send(&std_url, vec![entry("a.b", "x")]));
    let half = "x".repeat(fake_sqs::MAX_BATCH_BYTES / 2 + 1);
    calls.push(send(&std_url, vec![entry("a", &half), entry("b", &half)]));
    calls.push(("sqs", "get_queue_url", json!({"QueueName": "std"})));
    calls.push((
        "sqs",
        "get_queue_attributes",
        json!({"QueueUrl": fifo_url, "AttributeNames": ["All"]}),
    ));
    let results = Boto3::new(&fake.url()).calls(&calls);

    let infos = fake.calls();
    let mut kinds = BTreeSet::new();
    for (i, (info, r)) in infos.iter().zip(&results).take(FAULTY_CALLS).enumerate() {
        kinds.insert(kind(&info.outcome));
        let what = format!("call {i} ({:?})", info.outcome);
        let expected = match info.outcome {
            fake_sqs::Outcome::Ok { failed: n } => {
                let v = ok(r, &what);
                let f = failed(v);
                assert_eq!(f.len(), n, "{what}");
                assert!(
                    f.iter()
                        .all(|(_, code, sender)| code == "InternalError" && !sender),
                    "{what}: {f:?}"
                );
                let successful = v["Successful"].as_array().map_or(0, Vec::len);
                assert_eq!(successful + n, 3, "{what}: every entry answered");
                continue;
            }
            fake_sqs::Outcome::Throttled => (
                400,
                "RequestThrottled",
                "RequestThrottled",
                "RequestThrottled",
                "Sender",
            ),
            fake_sqs::Outcome::ServerError => (
                500,
                "InternalFailure",
                "InternalFailure",
                "ClientError",
                "Receiver",
            ),
            fake_sqs::Outcome::Unavailable => (
                503,
                "ServiceUnavailable",
                "ServiceUnavailable",
                "ClientError",
                "Receiver",
            ),
            fake_sqs::Outcome::NotFound => (
                400,
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
                "QueueDoesNotExist",
                "Sender",
            ),
            fake_sqs::Outcome::Invalid(_) => panic!("{what}: refused"),
        };
        let e = error(r, &what);
        let got = (
            e.status,
            e.code.as_str(),
            e.query_error_code.as_deref().unwrap_or(""),
            e.exception.as_str(),
            e.error_type.as_deref().unwrap_or(""),
        );
        assert_eq!(got, expected, "{what}: {e:?}");
    }
    assert_eq!(kinds.len(), 6, "every kind of answer came up: {kinds:?}");

    let mut at = FAULTY_CALLS;
    let mut next = || {
        at += 1;
        &results[at - 1]
    };
    let plain = ok(next(), "a standard queue's batch");
    // MD5("hello"), as RFC 1321's implementations give it.
    assert_eq!(
        plain["Successful"][0]["MD5OfMessageBody"],
        "5d41402abc4b2a76b9719d911017c592"
    );
    assert!(
        plain["Successful"][0].get("SequenceNumber").is_none(),
        "FIFO only"
    );
    assert_eq!(
        failed(plain),
        [("d".into(), "InvalidParameterValue".into(), true)]
    );
    let fifo = ok(next(), "a FIFO batch");
    assert_eq!(failed(fifo), [("c".into(), "MissingParameter".into(), true)]);
    let first = &fifo["Successful"][0];
    let resent = &ok(next(), "a resent deduplication id")["Successful"][0];
    assert_eq!(
        (&resent["MessageId"], &resent["SequenceNumber"]),
        (&first["MessageId"], &first["SequenceNumber"])
    );
    let refusals: Vec<_> = (0..5)
        .map(|_| {
            let e = error(next(), "a batch refused");
            assert_eq!(
                (e.status, e.error_type.as_deref()),
                (400, Some("Sender")),
                "{e:?}"
            );
            assert_eq!(
                Some(&e.exception),
                e.query_error_code.as_ref(),
                "the modeled exception: {e:?}"
            );
            e.code
        })
        .collect();
    assert_eq!(
        refusals,
        [
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.InvalidBatchEntryId",
            "AWS.SimpleQueueService.BatchRequestTooLong",
        ]
    );
    assert_eq!(ok(next(), "GetQueueUrl")["QueueUrl"], std_url.as_str());
    let attributes = &ok(next(), "GetQueueAttributes")["Attributes"];
    assert_eq!(
        (
            attributes["FifoQueue"].as_str(),
            attributes["ContentBasedDeduplication"].as_str()
        ),
        (Some("true"), Some("false"))
    );

    let fifo_stored: Vec<_> = fake
        .messages()
        .into_iter()
        .filter(|m| m.queue_url == fifo_url)
        .map(|m| (m.body, m.group_id, m.dedup_id))
        .collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        fifo_stored,
        [
            ("first".to_string(), some("g1"), some("d1")),
            ("second".to_string(), some("g2"), some("d2")),
        ]
    );
    assert_eq!(fake.deduplicated(), 1);
}

/// moto's Kinesis: records land on the shards `fake_kinesis::shard_for_key` computes (AWS's MD5
/// ranges), each shard read back in put order with sequence numbers counting from 1, no record
/// ever failed; the limits it checks and those it does not, as `integration::moto` says.
#[test]
fn moto_kinesis_round_trip() {
    let moto = Moto::start();
    let shards = moto.create_stream("s", 3);
    assert_eq!(shards, (0..3).map(fake_kinesis::shard_id).collect::<Vec<_>>());
    let mut rng = Rng::new(11);
    let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
    let batch = |rng: &mut Rng, call: usize| -> Vec<(String, Vec<u8>)> {
        (0..20)
            .map(|j| {
                let key = keys[rng.below(keys.len() as u64) as usize].clone();
                let mut data = format!("{call}-{j}:").into_bytes();
                data.extend(rng.bytes(10));
                (key, data)
            })
            .collect()
    };
    let (first, second) = (batch(&mut rng, 0), batch(&mut rng, 1));
    let over = same_records(fake_kinesis::MAX_RECORDS_PER_CALL + 1, "k", b"x");
    let results = moto.boto3().calls(&[
        put_records("s", &first),
        put_records("s", &second),
        put_records("s", &[]),
        put_records("s", &over),
        put_records("s", &[("k".into(), vec![0; fake_kinesis::MAX_RECORD_BYTES])]),
        put_records(
            "s",
            &[
                ("partial".into(), b"stored".to_vec()),
                ("k".repeat(257), b"x".to_vec()),
            ],
        ),
    ]);
    for r in &results[..2] {
        assert_eq!(
            ok(r, "a batch")["FailedRecordCount"],
            0,
            "moto never fails a record"
        );
    }
    assert_eq!(
        ok(&results[2], "no records")["Records"],
        json!([]),
        "moto takes an empty batch"
    );
    let codes: Vec<_> = results[3..].iter().map(|r| error(r, "refused").code).collect();
    assert_eq!(
        codes,
        [
            "ValidationException",
            "ValidationException",
            "InvalidArgumentException"
        ]
    );

    let read = moto.stream_records("s");
    let mut expected: Vec<(String, String, Vec<u8>)> = first
        .iter()
        .chain(&second)
        .map(|(k, d)| {
            (
                fake_kinesis::shard_id(fake_kinesis::shard_for_key(k, 3)),
                k.clone(),
                d.clone(),
            )
        })
        .chain([(
            fake_kinesis::shard_id(fake_kinesis::shard_for_key("partial", 3)),
            "partial".to_string(),
            b"stored".to_vec(),
        )])
        .collect();
    // Shard by shard, each in put order.
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = read
        .iter()
        .map(|r| (r.shard_id.clone(), r.partition_key.clone(), r.data.clone()))
        .collect();
    assert_eq!(
        got, expected,
        "the fake's shard mapping is moto's, and each shard keeps put order"
    );
    for shard in &shards {
        let seqs: Vec<&str> = read
            .iter()
            .filter(|r| &r.shard_id == shard)
            .map(|r| r.sequence_number.as_str())
            .collect();
        let counted: Vec<String> = (1..=seqs.len()).map(|n| n.to_string()).collect();
        assert_eq!(seqs, counted, "{shard}: sequence numbers count from 1");
    }
}

/// moto's SQS: standard and FIFO queues received in send order with group and deduplication ids;
/// a deduplication id is deduplicated while its message is in the queue, also with content-based
/// deduplication, and accepted again once that message is deleted; a FIFO entry without a group
/// refuses the whole call; the batch limits; and a DelaySeconds over 900 is the one entry it fails.
#[test]
fn moto_sqs_round_trip() {
    let moto = Moto::start();
    let std_url = moto.create_queue("std", QueueKind::Standard);
    let fifo_url = moto.create_queue("f.fifo", QueueKind::Fifo);
    let content_url = moto.create_queue("c.fifo", QueueKind::FifoContentDedup);
    assert!(fifo_url.ends_with("/f.fifo"), "{fifo_url}");
    let boto = moto.boto3();
    let no_group = json!({"Id": "x", "MessageBody": "x", "MessageDeduplicationId": "dx"});
    let content = |id: &str, body: &str| json!({"Id": id, "MessageBody": body, "MessageGroupId": "g"});
    let results = boto.calls(&[
        send(
            &std_url,
            vec![entry("0", "s0"), entry("1", "s1"), entry("2", "s2")],
        ),
        send(
            &fifo_url,
            vec![
                fifo_entry("0", "a1", "g1", "d1"),
                fifo_entry("1", "b1", "g2", "d2"),
                fifo_entry("2", "a2", "g1", "d3"),
            ],
        ),
        send(&fifo_url, vec![fifo_entry("0", "a1 resent", "g1", "d1")]),
        send(
            &content_url,
            vec![content("0", "same"), content("1", "same"), content("2", "other")],
        ),
        send(&fifo_url, vec![fifo_entry("0", "a3", "g1", "d4"), no_group]),
        send(
            &std_url,
            vec![
                json!({"Id": "0", "MessageBody": "late", "DelaySeconds": 901}),
                entry("1", "s3"),
            ],
        ),
        send(&std_url, (0..11).map(|j| entry(&j.to_string(), "x")).collect()),
        send(&std_url, vec![]),
    ]);
    for (i, r) in results[..4].iter().enumerate() {
        assert_eq!(failed(ok(r, &format!("call {i}"))), [], "call {i}");
    }
    let seq = ok(&results[1], "FIFO")["Successful"][0]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()),
        "{seq}"
    );
    assert_eq!(
        error(&results[4], "no group").code,
        "MissingParameter",
        "the whole call refused"
    );
    assert_eq!(
        failed(ok(&results[5], "late")),
        [("0".into(), "InvalidParameterValue".into(), true)]
    );
    let codes: Vec<_> = results[6..].iter().map(|r| error(r, "refused").code).collect();
    assert_eq!(
        codes,
        [
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest"
        ]
    );

    let bodies = |url: &str| -> Vec<String> { moto.receive_all(url).into_iter().map(|m| m.body).collect() };
    assert_eq!(bodies(&std_url), ["s0", "s1", "s2", "s3"], "send order");
    let fifo = moto.receive_all(&fifo_url);
    let got: Vec<_> = fifo
        .iter()
        .map(|m| (m.body.as_str(), m.group_id.as_deref(), m.dedup_id.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("a1", Some("g1"), Some("d1")),
            ("b1", Some("g2"), Some("d2")),
            ("a2", Some("g1"), Some("d3")),
        ],
        "send order, the resent d1 deduplicated, the refused call's a3 not stored"
    );
    assert!(fifo.iter().all(|m| m.sequence_number.is_some()));
    assert_eq!(
        bodies(&content_url),
        ["same", "other"],
        "content-based deduplication"
    );

    boto.call(
        "sqs",
        "send_message_batch",
        json!({"QueueUrl": fifo_url, "Entries": [fifo_entry("0", "a1 again", "g1", "d1")]}),
    )
    .expect("a deduplication id whose message was deleted");
    assert_eq!(
        bodies(&fifo_url),
        ["a1 again"],
        "moto forgets a deleted message's deduplication id"
    );
    // The blob helpers round-trip bytes that are not UTF-8.
    assert_eq!(unblob(&blob(b"\xff\x00")), b"\xff\x00");
}

/// A current-thread runtime for the AWS SDK for Rust's calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Makes the first `FAULTY_CALLS` calls of a fake under `mixed_faults` with `call(i)` (an AWS SDK
/// for Rust call, its error boxed) and checks each result against the outcome the fake recorded (`outcome(i)`):
/// a success with `on_ok(what, failed entries, output)`; a 500 or 503, which no model names, by
/// status and code; another error with `on_error(what, outcome, error)`. Panics unless every
/// kind of answer came up.
fn check_faulty_calls<O: Debug, E: ProvideErrorMetadata + Debug>(
    mut call: impl FnMut(usize) -> Result<O, Box<SdkError<E>>>,
    outcome: impl Fn(usize) -> fake_kinesis::Outcome,
    on_ok: impl Fn(&str, usize, O),
    on_error: impl Fn(&str, &fake_kinesis::Outcome, &E),
) {
    use fake_kinesis::Outcome;
    let mut kinds = BTreeSet::new();
    for i in 0..FAULTY_CALLS {
        let result = call(i);
        let outcome = outcome(i);
        kinds.insert(kind(&outcome));
        let what = format!("call {i} ({outcome:?})");
        let e = match (&outcome, result) {
            (Outcome::Ok { failed }, Ok(out)) => {
                on_ok(&what, *failed, out);
                continue;
            }
            (_, Ok(out)) => panic!("{what}: answered {out:?}"),
            (_, Err(e)) => e,
        };
        let status = e.raw_response().map(|r| r.status().as_u16());
        let service = e.as_service_error().unwrap_or_else(|| panic!("{what}: {e:?}"));
        let expected = match outcome {
            Outcome::ServerError => (Some(500), Some("InternalFailure")),
            Outcome::Unavailable => (Some(503), Some("ServiceUnavailable")),
            _ => {
                on_error(&what, &outcome, service);
                continue;
            }
        };
        assert_eq!((status, service.code()), expected, "{what}");
    }
    assert_eq!(kinds.len(), 6, "every kind of answer came up: {kinds:?}");
}

/// The relayer's own Kinesis client (aws-sdk-kinesis, no retries) reads the fake's answers as
/// recorded: failed records with their ErrorCode among the results, a throttled call and a
/// missing stream as the modeled error variants, the 500 and 503 by code and status, the limits
/// refused by code.
#[test]
fn rust_sdk_reads_the_fake_kinesis() {
    use aws_sdk_kinesis::config::{retry::RetryConfig, Credentials, Region};
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let fake = FakeKinesis::start_with_shards(2);
    fake.set_faults(mixed_faults());
    let config = aws_sdk_kinesis::Config::builder()
        .endpoint_url(fake.url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    let put = |records: Vec<(String, Vec<u8>)>| {
        let entries: Vec<_> = records
            .into_iter()
            .map(|(k, d)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(k)
                    .data(Blob::new(d))
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .put_records()
            .stream_name("s")
            .set_records(Some(entries))
            .send()
    };
    let rt = runtime();
    check_faulty_calls(
        |i| rt.block_on(put(three_records(i))).map_err(Box::new),
        |i| fake.calls()[i].outcome.clone(),
        |what, failed, out| {
            assert_eq!(out.failed_record_count(), Some(failed as i32), "{what}");
            let codes: Vec<_> = out.records().iter().filter_map(|r| r.error_code()).collect();
            assert_eq!(
                codes,
                vec!["ProvisionedThroughputExceededException"; failed],
                "{what}"
            );
        },
        |what, outcome, e| match outcome {
            fake_kinesis::Outcome::Throttled => {
                assert!(e.is_provisioned_throughput_exceeded_exception(), "{what}")
            }
            fake_kinesis::Outcome::NotFound => assert!(e.is_resource_not_found_exception(), "{what}"),
            _ => panic!("{what}: failed with {e:?}"),
        },
    );
    let over = same_records(fake_kinesis::MAX_RECORDS_PER_CALL + 1, "k", b"x");
    let over = rt
        .block_on(put(over))
        .expect_err("501 records")
        .into_service_error();
    assert_eq!(over.meta().code(), Some("ValidationException"));
    let big = same_records(6, "k", &vec![7u8; fake_kinesis::MAX_RECORD_BYTES - 1]);
    let big = rt.block_on(put(big)).expect_err("6 MiB").into_service_error();
    assert!(big.is_invalid_argument_exception(), "{big:?}");
}

/// The relayer's own SQS client (aws-sdk-sqs, no retries) reads the fake's answers as recorded:
/// Failed entries with Code and SenderFault, each call-level fault and refusal as its modeled
/// error variant (matched on the code of `x-amzn-query-error`), or by code and status; FIFO
/// sequence numbers and deduplication.
#[test]
fn rust_sdk_reads_the_fake_sqs() {
    use aws_sdk_sqs::config::{retry::RetryConfig, Credentials, Region};
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let fake = FakeSqs::start();
    fake.set_faults(mixed_faults());
    fake.set_entry_error(fake_sqs::EntryError::ServiceUnavailable);
    let config = aws_sdk_sqs::Config::builder()
        .endpoint_url(fake.url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_sqs::Client::from_conf(config);
    let (std_url, fifo_url) = (fake.queue_url("std"), fake.queue_url("f.fifo"));
    // (id, body, group and deduplication id)
    let send = |url: &str, entries: Vec<(String, String, Option<&str>)>| {
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(id, body, fifo)| {
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(body)
                    .set_message_group_id(fifo.map(str::to_string))
                    .set_message_deduplication_id(fifo.map(str::to_string))
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
    };
    let plain = |n: usize, body: &str| {
        (0..n)
            .map(|j| (j.to_string(), body.to_string(), None))
            .collect::<Vec<_>>()
    };
    let rt = runtime();
    check_faulty_calls(
        |i| {
            rt.block_on(send(&std_url, plain(3, &format!("m{i}"))))
                .map_err(Box::new)
        },
        |i| fake.calls()[i].outcome.clone(),
        |what, failed, out| {
            let f: Vec<_> = out
                .failed()
                .iter()
                .map(|f| (f.code(), f.sender_fault()))
                .collect();
            assert_eq!(f, vec![("ServiceUnavailable", false); failed], "{what}");
            assert_eq!(out.successful().len() + failed, 3, "{what}");
        },
        |what, outcome, e| match outcome {
            fake_sqs::Outcome::Throttled => assert!(e.is_request_throttled(), "{what}: {e:?}"),
            fake_sqs::Outcome::NotFound => assert!(e.is_queue_does_not_exist(), "{what}: {e:?}"),
            _ => panic!("{what}: failed with {e:?}"),
        },
    );

    let refused = |entries| {
        rt.block_on(send(&std_url, entries))
            .expect_err("refused")
            .into_service_error()
    };
    assert!(refused(vec![]).is_empty_batch_request());
    assert!(refused(plain(11, "x")).is_too_many_entries_in_batch_request());
    assert!(refused([plain(1, "x"), plain(1, "y")].concat()).is_batch_entry_ids_not_distinct());
    assert!(refused(vec![("a.b".into(), "x".into(), None)]).is_invalid_batch_entry_id());
    let half = "x".repeat(fake_sqs::MAX_BATCH_BYTES / 2 + 1);
    assert!(refused(plain(2, &half)).is_batch_request_too_long());

    let fifo = |id: &str, d: &'static str| (id.to_string(), format!("body {d}"), Some(d));
    let first = rt
        .block_on(send(&fifo_url, vec![fifo("0", "d1"), fifo("1", "d2")]))
        .unwrap();
    let seqs: Vec<_> = first
        .successful()
        .iter()
        .map(|s| s.sequence_number().unwrap().to_string())
        .collect();
    assert!(seqs[0] < seqs[1], "{seqs:?}");
    let again = rt.block_on(send(&fifo_url, vec![fifo("0", "d1")])).unwrap();
    assert_eq!(
        again.successful()[0].message_id(),
        first.successful()[0].message_id()
    );
    assert_eq!(fake.deduplicated(), 1);
}
