//! The Firehose relay: sessions turn SET/SADD/HMSET/HSET/RAWSET and MULTI/EXEC blocks into JSON
//! lines (`record`) and leave them in the relayer's `buffer`; the batcher packs them into
//! PutRecordBatch calls within the service limits (`pack`), the sender makes the calls
//! (aws-sdk-firehose), failures are resent with backoff (`retry`), and what cannot be delivered
//! goes to the `dead_letter` file.
pub mod batcher;
pub mod buffer;
pub mod config;
pub mod dead_letter;
pub mod pack;
pub mod record;
pub mod retry;
pub mod sender;
pub mod session;
