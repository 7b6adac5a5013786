//! The services a stream relayer sends to, side by side: what each one's limits are, whether
//! its records keep an order, and its sender, behind one interface the batcher calls.

use super::aws::{self, AwsSettings, RegionFrom};
use super::firehose::{self, FirehoseSettings};
use super::kinesis::{self, KinesisSettings, PartitionKey};
use super::sqs::{self, SqsSettings};

/// What a service takes, as the batcher and the sessions must respect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line a session accepts, newline included (for Firehose, the longest record
    /// lines are packed into).
    pub line: usize,
    /// Entries (records, messages) in one call.
    pub call_entries: usize,
    /// Bytes in one call: entries' data plus `entry_overhead` each.
    pub call_bytes: usize,
    /// What the service counts per entry besides its data (Kinesis: the partition key).
    pub entry_overhead: usize,
    /// Entries must be text (SQS message bodies): a RAWSET payload is made text before it is
    /// measured.
    pub text_only: bool,
}

/// Why a call, or one entry of it, was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The service's error code (`ThrottlingException`, `ResourceNotFoundException`...), when
    /// there is one (not for a timeout or a refused connection).
    pub code: Option<String>,
    pub message: String,
}

/// The outcome of a call that was answered: per entry, `None` when stored, else why not.
pub type Outcome = Vec<Option<Failure>>;

/// One entry of a call as the sender gets it: a copy of its data (the batcher keeps the
/// original for a resend) and the number of its first line, stable across resends.
pub struct Outgoing {
    pub data: Vec<u8>,
    pub seq: u64,
}

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

/// FNV-1a, 64 bits: a hash stable across runs and versions (std's is not promised to be), for
/// partition keys and deduplication ids.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
