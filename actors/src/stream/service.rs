//! The services a stream relayer sends to, side by side: what each one's limits are, whether
//! its records keep an order, and its sender, behind one interface the batcher calls.

use super::aws::{self, AwsSettings, RegionFrom};
use super::call::{Failure, Limits, Outcome, Outgoing};
use super::firehose::{self, FirehoseSettings};
use super::kinesis::{self, KinesisSettings, PartitionKey};
use super::sqs::{self, SqsSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceSettings {
    Firehose(FirehoseSettings),
    Kinesis(KinesisSettings),
    Sqs(SqsSettings),
}

impl ServiceSettings {
    /// As the protocol is spelled: names metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceSettings::Firehose(_) => "firehose",
            ServiceSettings::Kinesis(_) => "kinesis",
            ServiceSettings::Sqs(_) => "sqs",
        }
    }

    /// As people write it, in error replies.
    pub fn title(&self) -> &'static str {
        match self {
            ServiceSettings::Firehose(_) => "Firehose",
            ServiceSettings::Kinesis(_) => "Kinesis",
            ServiceSettings::Sqs(_) => "SQS",
        }
    }

    pub fn limits(&self) -> Limits {
        match self {
            ServiceSettings::Firehose(_) => firehose::LIMITS,
            ServiceSettings::Kinesis(_) => kinesis::LIMITS,
            ServiceSettings::Sqs(_) => sqs::LIMITS,
        }
    }

    /// Whether entries must arrive in the order they were accepted (Kinesis with the Redis key
    /// as partition key, a FIFO queue): then one call is in flight at a time, and a failed
    /// entry is resent before anything newer leaves.
    pub fn ordered(&self) -> bool {
        match self {
            ServiceSettings::Firehose(_) => false,
            ServiceSettings::Kinesis(k) => k.partition_key == PartitionKey::Key,
            ServiceSettings::Sqs(s) => s.fifo(),
        }
    }

    /// The stream or queue, for the log.
    pub fn target(&self) -> &str {
        match self {
            ServiceSettings::Firehose(f) => &f.stream,
            ServiceSettings::Kinesis(k) => &k.stream,
            ServiceSettings::Sqs(s) => &s.url,
        }
    }

    pub fn aws(&self) -> &AwsSettings {
        match self {
            ServiceSettings::Firehose(f) => &f.aws,
            ServiceSettings::Kinesis(k) => &k.aws,
            ServiceSettings::Sqs(s) => &s.aws,
        }
    }
}

/// A service's client, ready for calls.
#[derive(Clone)]
pub enum Service {
    Firehose(firehose::Sender),
    Kinesis(kinesis::Sender),
    Sqs(sqs::Sender),
}

impl Service {
    /// Resolves region, profile and credentials; returns the region used and its origin.
    pub async fn new(s: &ServiceSettings) -> (Service, String, RegionFrom) {
        let (shared, region, from) = aws::load(s.aws()).await;
        let service = match s {
            ServiceSettings::Firehose(f) => Service::Firehose(firehose::Sender::new(&shared, f)),
            ServiceSettings::Kinesis(k) => Service::Kinesis(kinesis::Sender::new(&shared, k)),
            ServiceSettings::Sqs(q) => Service::Sqs(sqs::Sender::new(&shared, q)),
        };
        (service, region, from)
    }

    /// One call. Err: the call as a whole failed (nothing known to be stored).
    pub async fn put(&self, entries: Vec<Outgoing>) -> Result<Outcome, Failure> {
        match self {
            Service::Firehose(s) => s.put(entries).await,
            Service::Kinesis(s) => s.put(entries).await,
            Service::Sqs(s) => s.put(entries).await,
        }
    }
}
