//! Kinesis Data Streams: `PutRecords`, each line one record (without its newline), through
//! aws-sdk-kinesis; the partition key as `partitionKey` says (`partition`).

mod partition;

pub use partition::PartitionKey;

use super::aws::{self, AwsSettings};
use super::call::{Failure, Limits, Outcome, Outgoing};
use aws_config::SdkConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use std::time::Duration;

/// The service's limits: a record's data and partition key together at most 1 MiB, 500
/// records and 5 MiB (partition keys included) a call. The line's newline is not sent; the
/// partition key is at most `partition::MAX_KEY` bytes.
pub const LIMITS: Limits = Limits {
    line: 1024 * 1024 - partition::MAX_KEY + 1,
    call_entries: 500,
    call_bytes: 5 * 1024 * 1024,
    entry_overhead: partition::MAX_KEY,
    text_only: false,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisSettings {
    /// The data stream (`streamName`).
    pub stream: String,
    pub partition_key: PartitionKey,
    pub aws: AwsSettings,
}

#[derive(Clone)]
pub struct Sender {
    client: Client,
    stream: String,
    partition_key: PartitionKey,
    timeout: Duration,
}

impl Sender {
    pub fn new(shared: &SdkConfig, s: &KinesisSettings) -> Sender {
        Sender {
            client: Client::new(shared),
            stream: s.stream.clone(),
            partition_key: s.partition_key,
            timeout: s.aws.timeout,
        }
    }

    /// One PutRecords call: a record per entry (one line each).
    pub async fn put(&self, entries: Vec<Outgoing>) -> Result<Outcome, Failure> {
        let n = entries.len();
        let records: Vec<PutRecordsRequestEntry> = entries
            .into_iter()
            .map(|e| {
                let mut data = e.data;
                if data.last() == Some(&b'\n') {
                    data.pop();
                }
                let key = self.partition_key.of(&data);
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data))
                    .partition_key(key)
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let call = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send();
        let out = aws::call(self.timeout, call).await?;
        aws::per_entry(out.records(), n, |r| {
            r.error_code().map(|c| (c, r.error_message()))
        })
    }
}
