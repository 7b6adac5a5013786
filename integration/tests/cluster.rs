//! The relayer in front of a real Redis Cluster (3 masters, 3 replicas): commands routed by
//! slot, multi-key commands split and merged, redirections followed, and what the clients were
//! told compared with what the cluster holds.

use integration::*;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn relayer_for(cluster: &Cluster, mode: &str, extra: &str) -> Relayer {
    let listen = format!("tcp://127.0.0.1:{}", free_port());
    Relayer::start(&cluster_entry(mode, &listen, &cluster.seeds(), extra))
}

#[test]
fn commands_are_routed_by_slot_in_sync_and_smart_mode() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        let relayer = relayer_for(&cluster, mode, "");
        let mut c = relayer.client();
        let keys = cluster.keys_on_every_master_prefixed(mode, 300);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.cmd(&["SET", k, &i.to_string()]), Reply::ok(), "{k}");
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.cmd(&["GET", k]), Reply::bulk(i.to_string()), "{k}");
            assert_eq!(cluster.get(k), Reply::bulk(i.to_string()), "{k} in the cluster");
        }
        // Keyless commands go to any master; PING is answered locally.
        assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
        assert!(c
            .cmd(&["INFO", "server"])
            .as_str()
            .unwrap()
            .contains("redis_version"));
        // A pipeline over every node keeps its order.
        let cmds: Vec<Vec<String>> = keys.iter().map(|k| vec!["INCR".into(), k.clone()]).collect();
        let got = c.pipeline(&cmds);
        let want: Vec<Reply> = (0..keys.len()).map(|i| Reply::int(i as i64 + 1)).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn multi_key_commands_are_split_and_merged_in_key_order() {
    let cluster = Cluster::start();
    let relayer = relayer_for(&cluster, "sync", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(12);
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in keys.iter().enumerate() {
        mset.push(k.clone());
        mset.push(format!("v{i}"));
    }
    assert_eq!(c.cmd(&mset), Reply::ok());
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    mget.insert(3, "missing-key".into());
    let mut want: Vec<Reply> = (0..keys.len()).map(|i| Reply::bulk(format!("v{i}"))).collect();
    want.insert(2, Reply::Nil);
    assert_eq!(c.cmd(&mget), Reply::array(want));
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(keys.iter().cloned());
    exists.push(keys[0].clone());
    assert_eq!(c.cmd(&exists), Reply::int(keys.len() as i64 + 1));
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::int(keys.len() as i64));
    assert_eq!(cluster.dbsize_total(), keys.len() as i64);
    let listed = c.cmd(&["KEYS", "*"]);
    let listed: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, keys.iter().cloned().collect());
    // SCAN visits every master: the union of all pages is every key, and it ends with 0.
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..1000 {
        let page = c.cmd(&["SCAN", &cursor, "COUNT", "3"]);
        let page = page.as_array().unwrap().to_vec();
        cursor = page[0].as_str().unwrap();
        seen.extend(page[1].as_array().unwrap().iter().map(|r| r.as_str().unwrap()));
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0", "SCAN did not finish");
    assert_eq!(seen, keys.iter().cloned().collect());
    let mut del = vec!["DEL".to_string()];
    del.extend(keys.iter().cloned());
    del.push("missing-key".into());
    assert_eq!(c.cmd(&del), Reply::int(keys.len() as i64));
    assert_eq!(cluster.dbsize_total(), 0);
}

#[test]
fn cross_slot_commands_and_select_get_redis_errors() {
    let cluster = Cluster::start();
    let relayer = relayer_for(&cluster, "sync", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(3);
    let crossslot = Reply::error("CROSSSLOT Keys in request don't hash to the same slot");
    assert_eq!(c.cmd(&["MSETNX", &keys[0], "1", &keys[1], "2"]), crossslot);
    assert_eq!(c.cmd(&["RENAME", &keys[0], &keys[1]]), crossslot);
    assert_eq!(c.cmd(&["SUNIONSTORE", &keys[0], &keys[1]]), crossslot);
    // The same slot (hash tags) is fine.
    assert_eq!(c.cmd(&["MSETNX", "{t}a", "1", "{t}b", "2"]), Reply::int(1));
    assert_eq!(c.cmd(&["RENAME", "{t}a", "{t}c"]), Reply::ok());
    assert_eq!(c.cmd(&["SELECT", "0"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SELECT", "1"]),
        Reply::error("ERR SELECT is not allowed in cluster mode")
    );
    // MULTI blocks on one slot run; across slots the command is refused and EXEC aborts.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", "{t}n"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["INCR", "{t}n"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(vec![Reply::int(1), Reply::int(2)]));
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &keys[0], "x"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["SET", &keys[1], "x"]), crossslot);
    assert!(c.cmd(&["EXEC"]).is_error_starting("EXECABORT"));
    assert_eq!(cluster.get(&keys[0]), Reply::Nil);
    // Wrong arity is Redis' answer.
    assert!(c.cmd(&["GET"]).is_error_starting("ERR wrong number of arguments"));
    // Connections of their own are not there yet on a cluster.
    assert!(c.cmd(&["BLPOP", "l", "0"]).is_error_starting("ERR relayer:"));
}

/// A slot moved under load with MIGRATING/IMPORTING: ASK and MOVED are followed, no client
/// error, and every write is where it belongs.
#[test]
fn slot_migration_under_load_is_followed() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        cluster.flushall();
        let relayer = relayer_for(&cluster, mode, "");
        let mut c = relayer.client();
        let slot = Cluster::slot_of("{m}");
        let from = cluster.node_for_slot(slot);
        let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
        for i in 0..200 {
            assert_eq!(c.cmd(&["SET", &format!("{{m}}{i}"), "old"]), Reply::ok());
        }
        let migration = cluster.begin_migration(slot, from, to);
        migration.move_keys(100);
        // Half moved: every key answers, old ones from either node, new ones created.
        for i in 0..300 {
            let k = format!("{{m}}{i}");
            let r = c.cmd(&["SET", &k, "new"]);
            assert_eq!(r, Reply::ok(), "{mode} {k} during migration");
            assert_eq!(c.cmd(&["GET", &k]), Reply::bulk("new"), "{mode} {k}");
        }
        migration.finish();
        for i in 0..300 {
            let k = format!("{{m}}{i}");
            assert_eq!(
                c.cmd(&["GET", &k]),
                Reply::bulk("new"),
                "{mode} {k} after migration"
            );
            assert_eq!(cluster.get(&k), Reply::bulk("new"), "{mode} {k} in the cluster");
        }
        // Move it back for the next mode.
        cluster.migrate_slot(slot, to, from);
    }
}

/// CLUSTER FAILOVER: sync commands may see brief errors, no smart write is lost, and routing
/// recovers by itself.
#[test]
fn failover_loses_no_acknowledged_write() {
    let cluster = Cluster::start();
    let relayer = relayer_for(&cluster, "smart", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(60);
    let replica = cluster.replicas()[0];
    let mut acknowledged = Vec::new();
    for round in 0..20 {
        if round == 5 {
            cluster.failover(replica);
        }
        for k in &keys {
            let v = format!("{round}");
            if c.cmd(&["SET", k, &v]) == Reply::ok() {
                acknowledged.push((k.clone(), v));
            }
        }
    }
    let want: std::collections::HashMap<_, _> = acknowledged.into_iter().collect();
    poll_until(T, "every acknowledged write in the cluster", || {
        want.iter()
            .all(|(k, v)| cluster.get(k) == Reply::bulk(v))
            .then_some(())
    });
    // Sync reads work again.
    let r = poll_until(T, "reads through the relayer", || {
        let r = c.cmd(&["GET", &keys[0]]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::bulk("19"));
}

/// A master killed (short node timeout): its replica takes over; writes acknowledged while it
/// was down are delivered to the new master, sync commands see at most brief errors, and
/// routing recovers by itself.
#[test]
fn killed_master_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start_opts(ClusterOptions {
        node_timeout_ms: FAST_NODE_TIMEOUT_MS,
        ..Default::default()
    });
    let relayer = relayer_for(&cluster, "smart", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(90);
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "before"]), Reply::ok());
    }
    wait_until(T, "first writes in the cluster", || {
        keys.iter().all(|k| cluster.get(k) == Reply::bulk("before"))
    });
    cluster.wait_replicated();
    let victim = cluster.masters()[0];
    cluster.kill(victim);
    // Acknowledged at once, whichever node is down.
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "during"]), Reply::ok(), "{k}");
    }
    cluster.wait_failover_after_kill(victim);
    wait_until(T, "every write made during the outage in the cluster", || {
        keys.iter().all(|k| cluster.get(k) == Reply::bulk("during"))
    });
    let r = poll_until(T, "sync reads through the relayer", || {
        let r = c.cmd(&["GET", &keys[0]]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::bulk("during"));
    for k in &keys {
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk("during"), "{k}");
    }
    let log = relayer.log();
    assert!(
        !log.contains("writes lost") && !log.contains("unknown outcome"),
        "the relayer reports lost writes:\n{log}"
    );
}

/// `redis-cli --cluster reshard` moving slots while four clients write: no client error, and
/// each key holds the last value its client was told was written.
#[test]
fn reshard_under_load_keeps_every_client_in_order() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        let relayer = relayer_for(&cluster, mode, "");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let mut c = relayer.client();
                let keys = cluster.keys_on_every_master_prefixed(&format!("{mode}-w{w}-"), 30);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut round = 0u64;
                    let mut last = std::collections::HashMap::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || round < 5 {
                        for k in &keys {
                            let r = c.cmd(&["SET", k, &round.to_string()]);
                            assert_eq!(r, Reply::ok(), "{k} round {round}");
                            last.insert(k.clone(), round);
                            // Read-your-writes across the moves.
                            assert_eq!(c.cmd(&["GET", k]), Reply::bulk(round.to_string()), "{k}");
                        }
                        round += 1;
                    }
                    last
                })
            })
            .collect();
        let masters = cluster.masters();
        let out = cluster.reshard_with_redis_cli(masters[0], masters[1], 200);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let last = w.join().expect("a client thread failed");
            for (k, v) in last {
                assert_eq!(cluster.get(&k), Reply::bulk(v.to_string()), "{mode} {k}: {out}");
            }
        }
    }
}

/// Every seed down at start: the relayer starts, answers with a clear error, and connects by
/// itself once the nodes are back.
#[test]
fn seeds_down_at_start_then_back() {
    let mut cluster = Cluster::start();
    let all: Vec<usize> = (0..cluster.nodes().len()).collect();
    for &n in &all {
        cluster.kill(n);
    }
    let relayer = relayer_for(&cluster, "sync", "");
    let mut c = relayer.client();
    let r = c.cmd(&["GET", "k"]);
    assert!(r.is_error_starting("ERR relayer: cluster not available"), "{r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    for &n in &all {
        cluster.nodes_mut_restart(n);
    }
    cluster.wait_settled();
    let r = poll_until(T, "the relayer reaching the cluster", || {
        let r = c.cmd(&["SET", "k", "v"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::ok());
    assert_eq!(cluster.get("k"), Reply::bulk("v"));
}

#[test]
fn seeds_unreachable_at_start_then_the_cluster_appears() {
    let dead: Vec<String> = (0..2)
        .map(|_| format!("tcp://127.0.0.1:{}", free_port()))
        .collect();
    let listen = format!("tcp://127.0.0.1:{}", free_port());
    let mut relayer = Relayer::start(&cluster_entry("sync", &listen, &dead.join(" "), ""));
    let mut c = relayer.client();
    let r = c.cmd(&["GET", "k"]);
    assert!(r.is_error_starting("ERR relayer: cluster not available"), "{r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    // The cluster comes up elsewhere: a reload points the relayer at it.
    let cluster = Cluster::start();
    relayer.rewrite_config(&cluster_entry("sync", &listen, &cluster.seeds(), ""));
    relayer.signal(libc::SIGHUP);
    let r = poll_until(T, "the relayer reaching the cluster", || {
        let r = c.cmd(&["SET", "k", "v"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::ok());
    assert_eq!(cluster.get("k"), Reply::bulk("v"));
}

#[test]
fn cluster_url_errors_name_the_key() {
    let listen = format!("tcp://127.0.0.1:{}", free_port());
    let cases = [
        ("", "no seed node"),
        ("unix:/tmp/x.sock", "cluster nodes are reached over TCP"),
        ("redis://127.0.0.1:7000/2", "a cluster has only DB 0"),
        (
            "redis://a:b@127.0.0.1:7000 redis://127.0.0.1:7001",
            "same credentials",
        ),
        ("tcp://127.0.0.1:7000 ftp://x", "ftp://x"),
    ];
    for (url, want) in cases {
        let out = check_config(&cluster_entry("sync", &listen, url, ""));
        assert!(!out.status.success(), "{url:?} accepted");
        assert!(out.stderr.contains("'url'"), "{url:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{url:?}: {}", out.stderr);
    }
    let ok = check_config(&cluster_entry(
        "smart",
        &listen,
        "tcp://127.0.0.1:7000 tcp://127.0.0.1:7001",
        "",
    ));
    assert!(ok.status.success(), "{}", ok.stderr);
}
