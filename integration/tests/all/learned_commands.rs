//! What the relayer learns from the backend's own COMMAND: read from a live redis-server, used
//! on a cluster to route the commands the built-in table does not know by their real keys, and
//! a backend that does not answer COMMAND leaving the built-in table alone.

use integration::timeouts::HANG;
use integration::*;
use std::time::Duration;
const LEARNED: &str = "commands learned from the backend's COMMAND";
const DISAGREES: &str = "places this command's keys elsewhere";
const NO_COMMAND: &str = "the backend does not answer COMMAND";

/// `global`: lines before the entry (`workers = 2`).
fn cluster_relayer(cluster: &Cluster, global: &str) -> Relayer {
    let listen = tcp_listen();
    Relayer::start(&format!(
        "{global}\n{}",
        cluster_entry("sync", &listen, &cluster.seeds(), "")
    ))
}

/// MOVED redirections the masters answered since their stats were reset.
fn moved_total(cluster: &Cluster) -> u64 {
    cluster
        .masters()
        .into_iter()
        .map(|m| {
            cluster
                .node(m)
                .info_field("errorstats", "errorstat_MOVED")
                .and_then(|v| v.strip_prefix("count=")?.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn reset_stats(cluster: &Cluster) {
    for m in cluster.masters() {
        assert_eq!(cluster.cmd_on_node(m, &["CONFIG", "RESETSTAT"]), Reply::ok());
    }
}

/// A key whose slot's master is not the one of the slot of `other`.
fn key_away_from(cluster: &Cluster, other: &str, prefix: &str) -> String {
    let away = cluster.node_for_slot(slot_of(other));
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| cluster.node_for_slot(slot_of(k)) != away)
        .expect("a key on another master")
}

#[test]
fn a_single_redis_describes_its_commands_and_the_built_in_table_agrees() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let relayer = Relayer::start(&format!(
        "workers = 2\n{}",
        redis_entry(&listen, &redis.url(), "")
    ));
    relayer.wait_log_line(&[LEARNED], HANG);
    let log = relayer.log();
    // Every command of redis-server 7.0 (240) read from the live reply, over one connection.
    let count: usize = log_fields(&log, LEARNED).expect("logged")["commands"]
        .parse()
        .unwrap();
    assert!(count >= 200, "{count} commands learned:\n{log}");
    assert!(!log.contains(DISAGREES), "{log}");
    // Two workers' backends may both ask; one says what was learned.
    std::thread::sleep(Duration::from_millis(300));
    let log = relayer.log();
    assert_eq!(log.matches(LEARNED).count(), 1, "{log}");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));
}

/// PFDEBUG is not in the built-in table and its key is its second argument: the built-in
/// default (the first argument) sends `PFDEBUG GETREG k` to the master of GETREG's slot, which
/// redirects, and refuses it in a MULTI block whose keys are elsewhere. GET is renamed FETCH on
/// every node: Redis still lists it as `get`, so FETCH is routed by its first argument as
/// before, which is its key.
#[test]
fn a_cluster_routes_commands_the_table_does_not_know_by_their_keys() {
    let cluster = Cluster::start_with(3, 0, &["--rename-command", "GET", "FETCH"]);
    reset_stats(&cluster);
    let relayer = cluster_relayer(&cluster, "");
    relayer.wait_log_line(&[LEARNED], HANG);
    let log = relayer.log();
    assert!(!log.contains(DISAGREES), "{log}");
    let mut c = relayer.client();

    let k = key_away_from(&cluster, "GETREG", "hll-");
    // The count sees a redirection: PFDEBUG sent as its first argument would route it.
    let wrong = cluster.node_for_slot(slot_of("GETREG"));
    let moved = cluster.cmd_on_node(wrong, &["PFDEBUG", "GETREG", &k]);
    assert!(moved.is_error_starting("MOVED"), "{moved:?}");
    assert_eq!(moved_total(&cluster), 1);
    reset_stats(&cluster);
    assert_eq!(c.cmd(&["PFADD", &k, "a", "b", "c"]), Reply::int(1));
    let registers = c.cmd(&["PFDEBUG", "GETREG", &k]);
    assert!(
        matches!(&registers, Reply::Array(r) if r.len() == 16384),
        "{registers:?}"
    );
    assert_eq!(
        moved_total(&cluster),
        0,
        "PFDEBUG sent to a node that redirected it"
    );

    // In a block: its key is in the block's slot.
    let tag = key_away_from(&cluster, "GETREG", "t");
    let (a, h) = (format!("{{{tag}}}a"), format!("{{{tag}}}h"));
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &a, "1"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["PFADD", &h, "x"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["PFDEBUG", "GETREG", &h]), Reply::status("QUEUED"));
    match c.cmd(&["EXEC"]) {
        Reply::Array(r) => {
            assert_eq!(r[..2], [Reply::ok(), Reply::int(1)]);
            assert!(
                matches!(&r[2], Reply::Array(regs) if regs.len() == 16384),
                "{:?}",
                r[2]
            );
        }
        other => panic!("EXEC: {other:?}"),
    }

    // The renamed GET, on every master.
    let keys = cluster.keys_on_every_master(30);
    for key in &keys {
        assert_eq!(c.cmd(&["SET", key, key]), Reply::ok());
        assert_eq!(c.cmd(&["FETCH", key]), Reply::bulk(key.as_str()));
    }
    assert!(c.cmd(&["GET", &keys[0]]).is_error());
    assert_eq!(moved_total(&cluster), 0);
}

/// `rename-command COMMAND ""`: the relayer says so once and works with its built-in table; a
/// command that table does not know has its first argument for key, as before.
#[test]
fn a_backend_without_command_leaves_the_built_in_table() {
    let redis = Redis::start_with(&["--rename-command", "COMMAND", ""]);
    let relayer = Relayer::for_redis(&redis, "");
    relayer.wait_log_line(&[NO_COMMAND], HANG);
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));

    let cluster = Cluster::start_with(3, 0, &["--rename-command", "COMMAND", ""]);
    let relayer = cluster_relayer(&cluster, "workers = 2");
    relayer.wait_log_line(&[NO_COMMAND], HANG);
    let mut c = relayer.client();
    for key in cluster.keys_on_every_master(30) {
        assert_eq!(c.cmd(&["SET", &key, &key]), Reply::ok());
        assert_eq!(c.cmd(&["GET", &key]), Reply::bulk(key.as_str()));
    }
    let tag = key_away_from(&cluster, "GETREG", "t");
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        c.cmd(&["PFADD", &format!("{{{tag}}}h"), "x"]),
        Reply::status("QUEUED")
    );
    let queued = c.cmd(&["PFDEBUG", "GETREG", &format!("{{{tag}}}h")]);
    assert!(queued.is_error_starting("CROSSSLOT"), "{queued:?}");
    assert!(c.cmd(&["EXEC"]).is_error_starting("EXECABORT"));
    let log = relayer.log();
    assert_eq!(
        log.matches(NO_COMMAND).count(),
        1,
        "once, for both workers:\n{log}"
    );
    assert!(!log.contains(LEARNED), "{log}");
}
