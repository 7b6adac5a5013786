//! The end-to-end tests of smart-relayer: one test binary, one module per area. One binary links
//! once instead of once per area, and nextest still runs every test in a process of its own, so
//! the tests are as isolated as before. A test is named `<area>::<test>`: `cargo nextest run
//! --workspace relay::` (or `scripts/test.sh relay::`) runs one area, `-E 'test(/^smart::sigterm/)'`
//! a part of one.
//!
//! The harness (processes, clients, polling, logs, the named deadlines of
//! `integration::timeouts`) is the `integration` crate (integration/src); `helpers` holds what
//! several areas share that only tests need.
//!
//! A new area: a file `<area>.rs` beside this one (its `//!` says what it covers), importing
//! `integration::*`, the `integration::timeouts` it waits with and the `crate::helpers` it
//! uses, and its `mod <area>;` below, in alphabetical order. A helper a second area needs moves
//! to `helpers` (test-only) or to the harness (processes, clients, logs), not into a copy.

mod helpers;

mod auth;
mod backend_client;
mod bad_input;
mod client_kill;
mod clients;
mod cluster;
mod cluster_harness;
mod commands_audit;
mod compress;
mod config;
mod dedicated;
mod delivery;
mod differential;
mod docs;
mod fault_matrix;
mod faults;
mod firehose;
mod firehose_faults;
mod firehose_reload;
mod learned_commands;
mod limits;
mod metrics;
mod multi;
mod ops;
mod php;
mod relay;
mod reload;
mod select;
mod smart;
mod stream_faults;
mod stream_harness;
mod streams;
mod tls;
mod workers;
