//! boto3, the AWS SDK for Python, as a client the tests drive: moto's control calls (`moto`), and
//! any call to any endpoint ([`Boto3`]) to check that a real SDK reads the fake endpoints'
//! answers as the tests mean them.
//!
//! The calls run `boto3_helper.py` with the moto venv's python (`scripts/install-deps.sh`
//! installs both): one process per batch of calls, about 0.7 s each, so tests group their calls.
//! Region us-east-1, dummy credentials; [`Boto3`]'s calls are made once each (no retries).

use crate::target_dir;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

/// The venv that `scripts/install-deps.sh` makes, where moto and boto3 are: `<target>/tools/moto`.
pub fn moto_venv() -> PathBuf {
    target_dir().join("tools").join("moto")
}

const SCRIPT: &str = include_str!("boto3_helper.py");

/// The venv's python with the helper script written out.
pub(crate) struct Helper {
    dir: tempfile::TempDir,
}

impl Helper {
    pub fn new() -> Helper {
        let dir = crate::temp_dir();
        std::fs::write(dir.path().join("boto3_helper.py"), SCRIPT).unwrap();
        Helper { dir }
    }

    /// Runs `op` against `url`; its JSON output, or why it failed (exit status and stderr).
    pub fn run(&self, url: &str, op: &str, args: &Value) -> Result<Value, String> {
        let python = venv_bin("python");
        let (st, out, err) = crate::run_program(
            Command::new(&python)
                .arg(self.dir.path().join("boto3_helper.py"))
                .args([url, op]),
            args.to_string().as_bytes(),
            &format!("boto3 helper {op} ({})", python.display()),
        );
        if !st.success() {
            return Err(format!("boto3 helper {op} failed with {st}:\n{err}"));
        }
        serde_json::from_str(&out).map_err(|e| format!("boto3 helper {op}: bad JSON output {out:?}: {e}"))
    }
}

/// `<venv>/bin/<name>`; panics with the way to install it when missing.
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    let p = moto_venv().join("bin").join(name);
    if !p.is_file() {
        panic!(
            "{} not found: install moto first: scripts/install-deps.sh",
            p.display()
        );
    }
    p
}

/// A blob parameter (Kinesis `Data`) for [`Boto3::call`]: boto3 gets these bytes; blobs in
/// answers come back in the same form.
pub fn blob(bytes: &[u8]) -> Value {
    use base64::Engine;
    json!({"__b64": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// A blob of an answer, decoded.
pub fn unblob(v: &Value) -> Vec<u8> {
    use base64::Engine;
    let text = v["__b64"].as_str().unwrap_or_else(|| panic!("not a blob: {v}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 blob")
}

/// An error answer as botocore reads it (`ClientError.response["Error"]`); boxed in results, it
/// is large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The exception class boto3 raised: the modeled error's name, or `ClientError`.
    pub exception: String,
    /// `Error.Code`: the `__type` name, or for SQS the query code of `x-amzn-query-error`.
    pub code: String,
    pub message: String,
    /// `Error.QueryErrorCode` (SQS): the `__type` name when `x-amzn-query-error` was given.
    pub query_error_code: Option<String>,
    /// `Error.Type` (SQS): `Sender` or `Receiver`, from `x-amzn-query-error`.
    pub error_type: Option<String>,
    /// The HTTP status.
    pub status: u16,
}

/// boto3 clients of one endpoint.
pub struct Boto3 {
    url: String,
    helper: Helper,
}

impl Boto3 {
    /// Clients of the endpoint at `url` (`http://127.0.0.1:PORT`).
    pub fn new(url: &str) -> Boto3 {
        Boto3 {
            url: url.to_string(),
            helper: Helper::new(),
        }
    }

    /// Calls in order, in one process: each `(service, operation, params)` as
    /// `boto3.client(service).<operation>(**params)` (snake_case operation, parameters as the
    /// API names them, blobs made with [`blob`]); client-side parameter validation is off so
    /// that the endpoint's own checks answer. Each result is the answer without its
    /// ResponseMetadata, or the error.
    pub fn calls(&self, calls: &[(&str, &str, Value)]) -> Vec<Result<Value, Box<AwsError>>> {
        let args: Vec<Value> = calls
            .iter()
            .map(|(service, operation, params)| {
                json!({"service": service, "operation": operation, "params": params})
            })
            .collect();
        let out = self
            .helper
            .run(&self.url, "calls", &Value::Array(args))
            .unwrap_or_else(|e| panic!("{e}"));
        let results = out.as_array().expect("calls returns an array");
        assert_eq!(results.len(), calls.len(), "one result per call");
        results.iter().map(result).collect()
    }

    /// One call, as [`Boto3::calls`].
    pub fn call(&self, service: &str, operation: &str, params: Value) -> Result<Value, Box<AwsError>> {
        self.calls(&[(service, operation, params)]).remove(0)
    }
}

fn result(r: &Value) -> Result<Value, Box<AwsError>> {
    if let Some(ok) = r.get("ok") {
        return Ok(ok.clone());
    }
    let e = &r["error"];
    let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let optional = |k: &str| e[k].as_str().map(str::to_string);
    Err(Box::new(AwsError {
        exception: text("exception"),
        code: text("code"),
        message: text("message"),
        query_error_code: optional("query_error_code"),
        error_type: optional("type"),
        status: e["status"].as_u64().unwrap_or(0) as u16,
    }))
}
