//! The Firehose relay: sessions turn SET/SADD/HMSET/HSET/RAWSET and MULTI/EXEC blocks into JSON
//! lines (`record`), the batcher packs them into PutRecordBatch calls within the service limits
//! and the sender makes the calls (aws-sdk-firehose).
pub mod batcher;
pub mod record;
pub mod sender;
pub mod session;
