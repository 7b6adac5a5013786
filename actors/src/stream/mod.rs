//! The stream relays: Kinesis Data Firehose, Kinesis Data Streams and SQS on one engine.
//!
//! Sessions (`session`) turn SET/SADD/HMSET/HSET/RAWSET and MULTI/EXEC blocks into JSON lines
//! (`record`) and leave them in the relayer's `buffer`; the `batcher` packs them into entries
//! and calls within the service's limits (`pack`), keeps a bounded number of calls in flight,
//! resends what failed with backoff (`retry`), and writes what it cannot deliver to the
//! `dead_letter` file. Each service (`firehose`, `kinesis`, `sqs`) supplies its limits, how a
//! line becomes one of its entries, and its sender; `service` puts them behind one interface,
//! `call` holds what a call is to all of them, and `aws` what their SDK clients share.
pub mod aws;
pub mod batcher;
pub mod buffer;
pub mod call;
pub mod config;
pub mod dead_letter;
pub mod firehose;
pub mod kinesis;
pub mod pack;
pub mod record;
pub mod retry;
pub mod service;
pub mod session;
pub mod sqs;
