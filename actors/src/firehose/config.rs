//! A Firehose entry's settings as values: what its sender, batcher, buffer and sessions are
//! built from. The daemon reads them from its file (key names, defaults, errors); what each
//! one means for the relay is said here, next to the code that uses it.

use super::record::Timestamp;
use super::sender::SenderSettings;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct FirehoseConfig {
    pub sender: SenderSettings,
    /// Lines packed into one Firehose record (0 and 1 both mean one).
    pub max_records: usize,
    /// PutRecordBatch calls in flight (`maxConnections`).
    pub max_calls: usize,
    pub flush_interval: Duration,
    /// Lines held at once (`buffer`).
    pub buffer: usize,
    /// Bytes of lines held at once (`bufferBytes`).
    pub buffer_bytes: usize,
    /// Buffer full: clients wait (true) or get an error (false).
    pub critical: bool,
    pub retry_timeout: Duration,
    pub dead_letter: Option<PathBuf>,
    pub timestamp: Timestamp,
}
