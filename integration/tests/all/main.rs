//! The end-to-end tests of smart-relayer: one test binary, one module per area. One binary links
//! once instead of once per area, and nextest still runs every test in a process of its own, so
//! the tests are as isolated as before; a test's name is `<area>::<test>`
//! (`cargo nextest run -E 'test(/^relay::/)'` runs one area).
//!
//! The harness (processes, clients, polling, logs, the named timeouts) is the `integration`
//! crate (integration/src); `helpers` holds what several areas share that only tests need.
//!
//! A new area: a file `<area>.rs` beside this one, starting with `use crate::helpers::*;` and/or
//! `use integration::*;` as it needs, and its `mod <area>;` below (in alphabetical order).

mod helpers;

mod auth;
mod bad_input;
mod clients;
mod cluster;
mod cluster_harness;
mod commands_audit;
mod compress;
mod config;
mod dedicated;
mod delivery;
mod faults;
mod firehose;
mod firehose_faults;
mod firehose_reload;
mod limits;
mod metrics;
mod multi;
mod ops;
mod php;
mod relay;
mod reload;
mod select;
mod smart;
mod tls;
mod workers;
