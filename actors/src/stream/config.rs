//! A stream entry's settings as values: what its service, batcher, buffer and sessions are
//! built from. The daemon reads them from its file (key names, defaults, errors); what each
//! one means for the relay is said here, next to the code that uses it.

use super::record::Timestamp;
use super::service::ServiceSettings;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub service: ServiceSettings,
    /// Lines packed into one entry (a Firehose record; one for Kinesis and SQS).
    pub max_lines: usize,
    /// Entries in one call (at most the service's limit).
    pub max_entries: usize,
    /// Calls in flight (`maxConnections`); one when the service keeps an order.
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
    /// Commands answered `+OK` and not sent (`ignoreCommands`), upper case.
    pub ignore: Vec<String>,
    pub replies: Replies,
}

/// How MULTI blocks are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replies {
    /// As Redis: `+QUEUED` to each command, EXEC's array of replies.
    Redis,
    /// As the original daemon: `+OK` to each command inside MULTI and to EXEC, for clients
    /// written against it that check those replies.
    Original,
}
