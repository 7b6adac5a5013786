//! SQS: `SendMessageBatch`, each line one message (without its newline), through aws-sdk-sqs.
//! A FIFO queue (its URL ends in `.fifo`) gets the entry's group and a deduplication id per
//! line (`message`).

mod message;

pub use message::text;

use super::aws::{self, entry_failure, AwsSettings};
use super::call::{Failure, Limits, Outcome, Outgoing};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use std::time::Duration;

/// The service's limits: 10 messages a call, and 256 KiB for a message and for the whole call.
/// The line's newline is not sent.
pub const LIMITS: Limits = Limits {
    line: 262_144 + 1,
    call_entries: 10,
    call_bytes: 262_144,
    entry_overhead: 0,
    text_only: true,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSettings {
    /// The queue URL (`url`).
    pub url: String,
    /// MessageGroupId on a FIFO queue (`groupID`; default: the listen address).
    pub group: String,
    pub aws: AwsSettings,
}

impl SqsSettings {
    pub fn fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }
}

#[derive(Clone)]
pub struct Sender {
    client: Client,
    url: String,
    /// The group, on a FIFO queue.
    group: Option<String>,
    /// Makes the deduplication ids of this run differ from any earlier run's.
    run: u64,
    timeout: Duration,
}

impl Sender {
    pub fn new(shared: &SdkConfig, s: &SqsSettings) -> Sender {
        Sender {
            client: Client::new(shared),
            url: s.url.clone(),
            group: s.fifo().then(|| s.group.clone()),
            run: fastrand::u64(..),
            timeout: s.aws.timeout,
        }
    }

    /// One SendMessageBatch call: a message per entry (one line each), its Id the entry's
    /// index in the call.
    pub async fn put(&self, entries: Vec<Outgoing>) -> Result<Outcome, Failure> {
        let n = entries.len();
        let batch: Vec<SendMessageBatchRequestEntry> = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let body = message::body(&e.data);
                let mut entry = SendMessageBatchRequestEntry::builder().id(i.to_string());
                if let Some(group) = &self.group {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(message::deduplication_id(&body, self.run, e.seq));
                }
                entry.message_body(body).build().expect("id and body are set")
            })
            .collect();
        let call = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(batch))
            .send();
        let out = aws::call(self.timeout, call).await?;
        let mut outcome: Vec<Option<Option<Failure>>> = vec![None; n];
        let mut place = |id: &str, what: Option<Failure>| -> Result<(), Failure> {
            match id.parse::<usize>().ok().filter(|i| *i < n) {
                Some(i) => {
                    outcome[i] = Some(what);
                    Ok(())
                }
                None => Err(Failure {
                    code: None,
                    message: format!("the answer names an entry '{id}' that was not sent"),
                }),
            }
        };
        for ok in out.successful() {
            place(ok.id(), None)?;
        }
        for f in out.failed() {
            place(f.id(), Some(entry_failure(f.code(), f.message())))?;
        }
        // An entry the answer does not mention was not stored, as far as anyone knows.
        Ok(outcome
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Some(Failure {
                        code: None,
                        message: "the answer does not mention the message".to_string(),
                    })
                })
            })
            .collect())
    }
}
