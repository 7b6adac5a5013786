//! The fault matrix, short (`integration/src/faults.rs`; the full-size rows are run by
//! `integration/bench/faults.sh`): smart clients write numbered SETs and RPUSHes through the
//! relayer while one fault is injected; afterwards every write acknowledged is on the backend, or
//! counted by the relayer as not delivered (exactly, for SETs), the list has no duplicate and no
//! item out of its client's order, and nothing is counted where the fault is shorter than
//! `retryTimeout`. Times are reported, never asserted.

use integration::faults::{run_row, Fault, Kind, Sizes};
use integration::*;
use std::time::Duration;

/// Runs the row with the test sizes and asserts its invariants.
fn check(fault: Fault, kind: Kind) {
    let row = run_row(fault, kind, &Sizes::test());
    eprintln!("{}", row.summary_line());
    for n in &row.notes {
        eprintln!("  {n}");
    }
    let v = row.violations();
    assert!(
        v.is_empty(),
        "{} ({}):\n{}\nclient errors: {:?}\nnotes: {:?}\nrelayer log:\n{}",
        row.title,
        kind.name(),
        v.join("\n"),
        row.client_errors,
        row.notes,
        row.log_excerpt.join("\n")
    );
}

// ---- a single Redis, reached through a link (the name the relayer knows) -----------------------

/// SIGKILL (AOF, appendfsync always), restarted with a dataset that loads for seconds.
#[test]
fn single_kill_restart_loading() {
    check(Fault::KillLoading, Kind::Single);
}

/// A script through the relayer keeps the server busy; SCRIPT KILL through the relayer ends it.
#[test]
fn single_busy_script_then_script_kill() {
    check(Fault::ScriptKill, Kind::Single);
}

/// `CLIENT KILL TYPE normal` ten times: RPUSHes in flight are of unknown outcome, SETs resent.
#[test]
fn single_client_kill() {
    check(Fault::ClientKill, Kind::Single);
}

#[test]
fn single_client_pause_write() {
    check(Fault::ClientPause, Kind::Single);
}

/// The link resets its connections and refuses new ones for a while.
#[test]
fn single_link_cut() {
    check(Fault::LinkCut, Kind::Single);
}

/// The link holds every byte for a while, then delivers them.
#[test]
fn single_link_stall() {
    check(Fault::LinkStall, Kind::Single);
}

/// FAILOVER to the replica; the name then leads to the new primary.
#[test]
fn single_failover_behind_a_name() {
    check(Fault::Failover, Kind::Single);
}

#[test]
fn single_oom_then_memory_raised() {
    check(Fault::Oom, Kind::Single);
}

/// A reload that changes both entries while a backlog is held.
#[test]
fn single_sighup_changing_the_entry() {
    check(Fault::Sighup, Kind::Single);
}

/// SIGTERM while the backend pauses writes: the drain delivers the backlog.
#[test]
fn single_sigterm_with_a_backlog() {
    check(Fault::Sigterm, Kind::Single);
}

/// A client writes 300,000 SETs and as many RPUSHes over unix sockets before reading any reply.
#[test]
fn single_whole_pipeline_clients() {
    check(Fault::WholePipeline, Kind::Single);
}

/// The drain outlasted: what is left is counted lost, and exactly that is missing.
#[test]
fn single_sigterm_past_drain_timeout_counts_lost() {
    check(Fault::SigtermPastDrain, Kind::Single);
}

/// The backend unreachable past retryTimeout: what waited longer is counted expired, and
/// exactly that is missing.
#[test]
fn single_unreachable_past_retry_timeout_counts_expired() {
    check(Fault::UnreachablePastRetry, Kind::Single);
}

// ---- a Redis Cluster -----------------------------------------------------------------------------

/// The list's master killed (its writes paused and replicated first); its replica takes over.
#[test]
fn cluster_kill_a_master() {
    check(Fault::KillLoading, Kind::Cluster);
}

#[test]
fn cluster_busy_script_then_script_kill() {
    check(Fault::ScriptKill, Kind::Cluster);
}

#[test]
fn cluster_client_kill() {
    check(Fault::ClientKill, Kind::Cluster);
}

#[test]
fn cluster_client_pause_write() {
    check(Fault::ClientPause, Kind::Cluster);
}

#[test]
fn cluster_oom_then_memory_raised() {
    check(Fault::Oom, Kind::Cluster);
}

#[test]
fn cluster_sighup_changing_the_entry() {
    check(Fault::Sighup, Kind::Cluster);
}

#[test]
fn cluster_sigterm_with_a_backlog() {
    check(Fault::Sigterm, Kind::Cluster);
}

#[test]
fn cluster_whole_pipeline_clients() {
    check(Fault::WholePipeline, Kind::Cluster);
}

#[test]
fn cluster_sigterm_past_drain_timeout_counts_lost() {
    check(Fault::SigtermPastDrain, Kind::Cluster);
}

// ---- found while building the matrix -------------------------------------------------------------

/// A name whose server accepts connections and closes them at once (a proxy or load balancer with
/// nothing behind it, a forwarder whose target is down, Redis at maxclients): the relayer keeps
/// trying with backoff, and logs the losses a bounded number of times. (It reconnects at once
/// after every connection that opened: the link-cut row saw about 1,700 connections and as many
/// `backend connection lost` lines in one second.)
#[test]
fn a_backend_that_closes_every_connection_is_retried_with_backoff() {
    // A rate: counted over a window (a slower machine only makes fewer attempts).
    const WINDOW: Duration = Duration::from_secs(2);
    // Nothing listens where the link leads: it accepts, then closes.
    let link = DelayLink::start(free_port(), Duration::ZERO);
    let relayer = Relayer::smart(&link.url(), "");
    let mut c = relayer.client();
    assert_eq!(c.q("SET k v"), Reply::ok(), "acknowledged, held for the backend");
    let before = link.accepted();
    std::thread::sleep(WINDOW);
    let attempts = link.accepted() - before;
    let logged = relayer.log().matches("backend connection lost").count();
    eprintln!("{attempts} connections in 2 s, {logged} 'backend connection lost' lines");
    assert!(attempts <= 40, "{attempts} connections in 2 s: no backoff");
    assert!(logged <= 40, "{logged} 'backend connection lost' lines");
}
