//! The deadlines of the end-to-end tests, one name for each thing waited for.
//!
//! Every one is generous: a test polls and goes on as soon as what it waits for happens, so a
//! deadline is only reached when something is wrong, and a loaded machine (CI shares two cores
//! with other work) must not fail a test. A bound that is part of what a test checks (a listener
//! serves within 5 s of its reload, a drain ends by drainTimeout) is not one of these: it stays
//! with its test, named there.

use std::time::Duration;

/// Anything the relayer or a backend should do promptly: a reply, a connection closed, a log
/// line, a reload applied, a condition polled for. Past it the test calls it a hang.
pub const HANG: Duration = Duration::from_secs(30);

/// A process the harness starts (the relayer, redis-server, moto) accepts connections.
pub const START: Duration = Duration::from_secs(30);

/// The relayer, told to stop (SIGTERM, or supervisord's shutdown) or given a configuration it
/// refuses or only checks, has exited. A drain it was configured for comes on top:
/// `drainTimeout + EXIT`.
pub const EXIT: Duration = Duration::from_secs(30);

/// Writes acknowledged early (smart mode, streams) are all in the backend or at the endpoint,
/// across the relayer's retries and their backoff (up to 10 s).
pub const DELIVERY: Duration = Duration::from_secs(60);

/// A Redis Cluster agrees again on its topology after a change (start, failover, restart,
/// migration): elections wait node timeouts.
pub const CLUSTER_SETTLE: Duration = Duration::from_secs(60);

/// An external program run to completion (php, redis-py, redis-cli, redis-benchmark,
/// supervisorctl, openssl, moto's helper), or a workload of many clients' rounds.
pub const PROGRAM: Duration = Duration::from_secs(180);
