//! A call to a service, as the engine and every service's sender share it: what goes out
//! (`Outgoing`), what comes back (`Outcome`, `Failure`), and the limits it must keep (`Limits`).

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
