//! Everything that runs per connection and per backend: the RESP parser and reply scanner,
//! the listener, and the Redis session and target actors.
pub mod endpoint;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod redis;
pub mod resp;
