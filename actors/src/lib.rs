//! Everything that runs per connection and per backend: the RESP parser and reply scanner,
//! the listener, the Redis session and target actors, and the Firehose session and batcher.
pub mod cluster;
pub mod command;
pub mod compress;
pub mod endpoint;
pub mod firehose;
pub mod io;
pub mod learned_commands;
pub mod listener;
pub mod log_limit;
pub mod metrics;
pub mod redis;
pub mod resp;
pub mod route;
pub mod tls;
