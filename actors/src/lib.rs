//! Everything that runs per connection and per backend. A map of the crate:
//!
//! - `resp`: the bounded request parser (`resp::request`), the reply scanner that finds where a
//!   backend's reply ends without decoding it (`resp::reply`), and the replies the relayer
//!   writes itself (`resp::write`).
//! - `io`: client sockets (read ahead, the gate that pushes back, `OutBuf` for vectored writes).
//! - `listener` and `route`: accepting clients, and which backend a reload left them on.
//! - `command`: the one command table (how the relayer treats each command, its keys, its
//!   smart and cluster forms).
//! - `error`: `RelayerError`, what the relayer answers in place of the backend.
//! - `redis`: the Redis relay: `session` (one per client), `backend` (the shared upstream
//!   connections, a single Redis or a cluster), `upstream` (one connection's writes and owed
//!   replies), `dedicated` (a client's own connection), `messages` between them, `smart`
//!   (early acknowledgements and their budget), `smart_args` (whether Redis takes a write's
//!   arguments), `delivery` (what became of them), `clients` and `client_kill` (the relayer's
//!   clients as CLIENT KILL and UNBLOCK find them).
//! - `cluster`: slots, key routing, the slot map, redirections, holds and merges.
//! - `stream`: the Firehose, Kinesis and SQS relays on one batching engine (records, buffer,
//!   batcher, one sender per service).
//! - `numbers`: integers and floats in arguments, read by Redis' rules.
//! - `compress`, `tls`, `endpoint`, `metrics`, `log_limit`: what the others share.
pub mod cluster;
pub mod command;
pub mod compress;
pub mod endpoint;
pub mod error;
pub mod io;
pub mod learned_commands;
pub mod listener;
pub mod log_limit;
pub mod metrics;
pub mod numbers;
pub mod redis;
pub mod resp;
pub mod route;
pub mod stream;
pub mod tls;
