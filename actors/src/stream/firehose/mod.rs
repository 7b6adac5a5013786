//! Kinesis Data Firehose: `PutRecordBatch`, each record one or more newline-terminated lines
//! (`maxRecords` of them, or as many as fit with `concat`), through aws-sdk-firehose.

use super::aws::{self, AwsSettings};
use super::call::{Failure, Limits, Outcome, Outgoing};
use aws_config::SdkConfig;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use std::time::Duration;

/// The service's limits: a record of 1,000 KiB, 500 records and 4 MiB of record data a call.
pub const LIMITS: Limits = Limits {
    line: 1_024_000,
    call_entries: 500,
    call_bytes: 4 * 1024 * 1024,
    entry_overhead: 0,
    text_only: false,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseSettings {
    /// The delivery stream (`streamName`).
    pub stream: String,
    pub aws: AwsSettings,
}

#[derive(Clone)]
pub struct Sender {
    client: Client,
    stream: String,
    timeout: Duration,
}

impl Sender {
    pub fn new(shared: &SdkConfig, s: &FirehoseSettings) -> Sender {
        Sender {
            client: Client::new(shared),
            stream: s.stream.clone(),
            timeout: s.aws.timeout,
        }
    }

    /// One PutRecordBatch call: a record per entry, its lines as they are.
    pub async fn put(&self, entries: Vec<Outgoing>) -> Result<Outcome, Failure> {
        let n = entries.len();
        let records: Vec<Record> = entries
            .into_iter()
            .map(|e| {
                Record::builder()
                    .data(Blob::new(e.data))
                    .build()
                    .expect("data is set")
            })
            .collect();
        let call = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send();
        let out = aws::call(self.timeout, call).await?;
        aws::per_entry(out.request_responses(), n, |r| {
            r.error_code().map(|c| (c, r.error_message()))
        })
    }
}
