//! moto's server (PyPI `moto[server]`): real Firehose + S3, Kinesis Data Streams and SQS
//! endpoints for the end-to-end tests of the stream relayers.
//!
//! `scripts/install-deps.sh` installs it into a Python venv at `<target>/tools/moto`
//! ([`moto_venv`]); [`Moto::start`] runs `<venv>/bin/moto_server -H 127.0.0.1 -p <free port>`, killed
//! on drop. The control calls (create a delivery stream, a Kinesis stream, a queue; read S3, the
//! shards, the queue back) run boto3 with the venv's python (`boto3`): one process per call,
//! about 0.7 s each, so read back sparingly. [`Moto::boto3`] makes any other call.
//!
//! # Firehose
//!
//! How moto 5.2.5 delivers (moto/firehose/models.py, `put_s3_records`): every PutRecord or
//! PutRecordBatch call on a DirectPut stream with an (Extended)S3 destination is written at once,
//! synchronously, as ONE S3 object holding the `Data` of the call's records concatenated in
//! order, with nothing added between them (so the relayer's own newlines are what separates
//! lines). BufferingHints are accepted and ignored; moto never fails a record (`FailedPutCount` is
//! always 0). The object key is `YYYY/MM/DD/HH/<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid4>`
//! (UTC, after the destination's Prefix): keys sort by the second of the call, and calls within
//! the same second in random order. Order across objects therefore says nothing; order within an
//! object is the order of the call's records.
//!
//! # Kinesis Data Streams (moto/kinesis/models.py)
//!
//! - A stream is ACTIVE as soon as it is created. Its N shards split the 128-bit hash space as
//!   AWS's do (ranges of 2^128 / N, the last one to the end), and a record goes to the shard of
//!   the MD5 of its partition key, so keys land on the same shards as with AWS and
//!   `fake_kinesis::shard_for_key`.
//! - PutRecords checks, before storing anything: more than 500 records (ValidationException),
//!   data and partition keys over 5 MiB in all (InvalidArgumentException "Records size exceeds
//!   5 MB limit"), a record's data and key over 1 MiB (ValidationException). It does not refuse
//!   an empty Records list (HTTP 200, nothing stored) nor an empty partition key; a key over 256
//!   characters is refused (InvalidArgumentException) only when its record is reached, after the
//!   records before it in the call are stored, which AWS never does.
//! - It never fails a record (`FailedRecordCount` is always 0) and never throttles.
//! - Sequence numbers count per shard from "1" in put order (AWS's are 56-digit numbers), and
//!   GetRecords returns a shard's records in that order: per shard, and so per key, the order of
//!   the calls and of the records in each call.
//!
//! # SQS (moto/sqs/models.py, responses.py; the JSON protocol)
//!
//! - Errors as SQS gives them: `{"__type":"com.amazonaws.sqs#<Error>", ...}` with
//!   `x-amzn-query-error: <query code>;Sender`.
//! - SendMessageBatch refuses the whole call for an entry Id that is not 1 to 80 letters, digits,
//!   `-` or `_` (InvalidBatchEntryId), bodies over 1 MiB in all (BatchRequestTooLong: moto
//!   counts body characters only, against 1,048,576, AWS's limit since 2025; the fake's default is
//!   the 262,144 bytes of before), repeated Ids, more than 10 entries, none.
//! - A FIFO queue's entries are all checked before any is stored, and one without
//!   MessageGroupId (MissingParameter), without MessageDeduplicationId when content-based
//!   deduplication is off (InvalidParameterValue), or with a DelaySeconds refuses the WHOLE
//!   call, where SQS fails that entry only (as the fake does). The one failed entry moto ever
//!   answers is a DelaySeconds over 900 on a standard queue; otherwise it never fails an entry,
//!   and never throttles.
//! - FIFO deduplication: a message whose deduplication id (given, or the SHA-256 of its body with
//!   content-based deduplication) is that of a message sent within 5 minutes AND STILL IN THE
//!   QUEUE is answered Successful (with a new MessageId) and not stored. Once that message is
//!   received and deleted, the same id is accepted again, where SQS remembers it for 5 minutes.
//! - SequenceNumber is 20 random digits (so it says nothing of order), and only when the entry
//!   gave its MessageDeduplicationId.
//! - Messages are kept in send order and ReceiveMessage returns them in that order, for standard
//!   queues too (where SQS promises no order); a FIFO group is held back only while messages of
//!   it received by an earlier call are neither deleted nor visible again. Messages with a
//!   DelaySeconds are invisible until it passes, and so missed by [`Moto::receive_all`].

pub use crate::boto3::moto_venv;
use crate::boto3::{unblob, venv_bin, Boto3, Helper};
use crate::timeouts::START;
use crate::{child_setup, free_port};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server process, killed on drop. Its log (werkzeug's request lines and tracebacks) is
/// printed when the test panics, or always with `MOTO_TEST_LOG` set.
pub struct Moto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    helper: Helper,
}

impl Moto {
    /// Starts moto_server on a free port and waits until it answers HTTP (about 0.5 s).
    pub fn start() -> Moto {
        let server = venv_bin("moto_server");
        let mut m = Moto {
            child: None,
            port: 0,
            dir: crate::temp_dir(),
            helper: Helper::new(),
        };
        // A port found free can be taken before moto binds it: then it exits, and another port.
        let mut last_err = String::new();
        for _ in 0..5 {
            m.port = free_port();
            let log = File::create(m.log_path()).unwrap();
            let mut cmd = Command::new(&server);
            cmd.args(["-H", "127.0.0.1", "-p", &m.port.to_string()])
                .current_dir(m.dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            child_setup(&mut cmd);
            m.child = Some(
                cmd.spawn()
                    .unwrap_or_else(|e| panic!("spawn {}: {e}", server.display())),
            );
            match m.wait_ready() {
                Ok(()) => return m,
                Err(e) => {
                    last_err = e;
                    m.kill();
                }
            }
        }
        panic!("could not start moto_server: {last_err}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!(
                    "moto_server on port {} exited with {st}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if self
                .http_get("/moto-api/")
                .is_some_and(|r| r.starts_with("HTTP/1."))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "moto_server on port {} not answering HTTP after {START:?}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A bare HTTP/1.0 GET; the response's first bytes, or None if it cannot connect or read.
    fn http_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("moto-{}.log", self.port))
    }

    /// What moto_server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the `endpoint` of a firehose relayer entry.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one control call; panics with the helper's stderr and moto's log if it fails.
    fn call(&self, op: &str, args: serde_json::Value) -> serde_json::Value {
        self.helper
            .run(&self.url(), op, &args)
            .unwrap_or_else(|e| panic!("{e}\n--- moto_server log ---\n{}", self.log()))
    }

    /// boto3 clients of this server, for any other call.
    pub fn boto3(&self) -> Boto3 {
        Boto3::new(&self.url())
    }

    /// Creates the S3 bucket `bucket` and a DirectPut delivery stream `name` writing to it
    /// (ExtendedS3 destination, BufferingHints 1 MB / 60 s, which moto ignores: it writes each
    /// call at once). Bucket names need 3 to 63 lowercase letters, digits, dots or hyphens.
    pub fn create_delivery_stream(&self, name: &str, bucket: &str) {
        let status = self.call(
            "create_delivery_stream",
            serde_json::json!({"name": name, "bucket": bucket}),
        );
        assert_eq!(status, "ACTIVE", "delivery stream {name} after creation");
    }

    /// One PutRecordBatch call with these records, straight from boto3 (the harness's
    /// self-check); returns `(FailedPutCount, number of RequestResponses)`.
    pub fn put_record_batch(&self, name: &str, records: &[&[u8]]) -> (u64, u64) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let records: Vec<String> = records.iter().map(|r| b64.encode(r)).collect();
        let out = self.call(
            "put_record_batch",
            serde_json::json!({"name": name, "records": records}),
        );
        (
            out["FailedPutCount"].as_u64().expect("FailedPutCount"),
            out["Responses"].as_u64().expect("Responses"),
        )
    }

    /// Every object of `bucket`, `(key, body)`, sorted by key (see the module doc for what the
    /// order means: nothing across objects written in the same second).
    pub fn s3_objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = self.call("s3_objects", serde_json::json!({ "bucket": bucket }));
        out.as_array()
            .expect("s3_objects returns an array")
            .iter()
            .map(|o| {
                let key = o[0].as_str().expect("key").to_string();
                let body = b64.decode(o[1].as_str().expect("body")).expect("base64 body");
                (key, body)
            })
            .collect()
    }

    /// Creates Kinesis stream `name` with `shards` shards, waits until it is ACTIVE, and returns
    /// its shard ids in order.
    pub fn create_stream(&self, name: &str, shards: usize) -> Vec<String> {
        let out = self.call(
            "create_stream",
            serde_json::json!({"name": name, "shards": shards}),
        );
        assert_eq!(out["status"], "ACTIVE", "stream {name} after creation");
        strings(&out["shards"])
    }

    /// Every record of stream `name`: shard by shard (in shard order), each shard's records in
    /// its order, read with GetRecords from TRIM_HORIZON until the shard has no more.
    pub fn stream_records(&self, name: &str) -> Vec<StreamRecord> {
        let out = self.call("stream_records", serde_json::json!({ "name": name }));
        out.as_array()
            .expect("stream_records returns an array")
            .iter()
            .map(|r| StreamRecord {
                shard_id: text(&r[0]),
                sequence_number: text(&r[1]),
                partition_key: text(&r[2]),
                data: unblob(&r[3]),
            })
            .collect()
    }

    /// Creates SQS queue `name` (a FIFO queue's name ends in `.fifo`) and returns its URL.
    pub fn create_queue(&self, name: &str, kind: QueueKind) -> String {
        let fifo = kind != QueueKind::Standard;
        assert_eq!(
            fifo,
            name.ends_with(".fifo"),
            "queue {name}: FIFO queue names end in .fifo"
        );
        let out = self.call(
            "create_queue",
            serde_json::json!({
                "name": name,
                "fifo": fifo,
                "content_based_dedup": kind == QueueKind::FifoContentDedup,
            }),
        );
        text(&out)
    }

    /// Receives every visible message of the queue at `queue_url` (ReceiveMessage, 10 at a time,
    /// with their group id, deduplication id and sequence number) and deletes them, until the
    /// queue has none; in the order received.
    pub fn receive_all(&self, queue_url: &str) -> Vec<ReceivedMessage> {
        let out = self.call("receive_all", serde_json::json!({ "url": queue_url }));
        let optional = |v: &serde_json::Value| v.as_str().map(str::to_string);
        out.as_array()
            .expect("receive_all returns an array")
            .iter()
            .map(|m| ReceivedMessage {
                message_id: text(&m[0]),
                body: text(&m[1]),
                group_id: optional(&m[2]),
                dedup_id: optional(&m[3]),
                sequence_number: optional(&m[4]),
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("MOTO_TEST_LOG").is_some() {
            let log = self.log();
            // The request lines are many; the end says what went wrong.
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- moto_server {} log (last lines) ---\n{}",
                self.port,
                tail.join("\n")
            );
        }
    }
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(text)
        .collect()
}

/// A Kinesis record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// What kind of SQS queue to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Standard,
    /// FIFO; every message needs a MessageDeduplicationId.
    Fifo,
    /// FIFO with ContentBasedDeduplication.
    FifoContentDedup,
}

/// An SQS message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
}
