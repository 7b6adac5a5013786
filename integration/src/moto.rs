//! moto's server (PyPI `moto[server]`): a real Firehose + S3 endpoint for the end-to-end tests of
//! the Firehose relayer.
//!
//! `scripts/install-deps.sh` installs it into a Python venv at `<target>/tools/moto`
//! ([`moto_venv`]); [`Moto::start`] runs `<venv>/bin/moto_server -H 127.0.0.1 -p <free port>`, killed
//! on drop. The control calls (create a bucket and a delivery stream, read S3 back, and a
//! PutRecordBatch for the harness's self-check) run a small Python script with the venv's python
//! and boto3 (`endpoint_url` = the server, region us-east-1, dummy credentials): one process per
//! call, about 0.7 s each, so poll S3 sparingly.
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

use crate::timeouts::START;
use crate::{child_setup, free_port, target_dir};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The control calls, run by the venv's python: `helper.py URL OP` with the arguments as JSON on
/// stdin; prints the result as JSON on stdout.
const HELPER: &str = r#"
import base64, json, sys
import boto3
from botocore.config import Config

url, op = sys.argv[1], sys.argv[2]
args = json.load(sys.stdin)
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
          aws_secret_access_key="testing",
          config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=30))
if op == "create_delivery_stream":
    boto3.client("s3", **kw).create_bucket(Bucket=args["bucket"])
    fh = boto3.client("firehose", **kw)
    fh.create_delivery_stream(
        DeliveryStreamName=args["name"],
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose-test",
            "BucketARN": "arn:aws:s3:::" + args["bucket"],
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        },
    )
    d = fh.describe_delivery_stream(DeliveryStreamName=args["name"])["DeliveryStreamDescription"]
    out = d["DeliveryStreamStatus"]
elif op == "put_record_batch":
    fh = boto3.client("firehose", **kw)
    r = fh.put_record_batch(
        DeliveryStreamName=args["name"],
        Records=[{"Data": base64.b64decode(d)} for d in args["records"]],
    )
    out = {"FailedPutCount": r["FailedPutCount"], "Responses": len(r["RequestResponses"])}
elif op == "s3_objects":
    s3 = boto3.client("s3", **kw)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args["bucket"]):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=args["bucket"], Key=o["Key"])["Body"].read()
            out.append([o["Key"], base64.b64encode(body).decode()])
    out.sort()
else:
    raise SystemExit("unknown op " + op)
json.dump(out, sys.stdout)
"#;

/// The venv that `scripts/install-deps.sh` makes: `<target>/tools/moto`.
pub fn moto_venv() -> PathBuf {
    target_dir().join("tools").join("moto")
}

fn venv_bin(name: &str) -> PathBuf {
    let p = moto_venv().join("bin").join(name);
    if !p.is_file() {
        panic!(
            "{} not found: install moto first: scripts/install-deps.sh",
            p.display()
        );
    }
    p
}

/// A moto server process, killed on drop. Its log (werkzeug's request lines and tracebacks) is
/// printed when the test panics, or always with `MOTO_TEST_LOG` set.
pub struct Moto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto_server on a free port and waits until it answers HTTP (about 0.5 s).
    pub fn start() -> Moto {
        let server = venv_bin("moto_server");
        let dir = crate::temp_dir();
        std::fs::write(dir.path().join("helper.py"), HELPER).unwrap();
        let mut m = Moto {
            child: None,
            port: 0,
            dir,
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

    /// Runs one control call; panics with the helper's stderr if it fails.
    fn call(&self, op: &str, args: serde_json::Value) -> serde_json::Value {
        let python = venv_bin("python");
        let (st, out, err) = crate::run_program(
            Command::new(&python)
                .arg(self.dir.path().join("helper.py"))
                .args([&self.url(), op]),
            args.to_string().as_bytes(),
            &format!("moto helper {op} ({})", python.display()),
        );
        if !st.success() {
            panic!(
                "moto helper {op} {args} failed with {st}:\n{err}\n--- moto_server log ---\n{}",
                self.log()
            );
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("moto helper {op}: bad JSON output {out:?}: {e}"))
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
