//! The relayer in front of a real Redis Cluster (3 masters, 3 replicas): commands routed by
//! slot, multi-key commands split and merged, redirections followed, and what the clients were
//! told compared with what the cluster holds.

use integration::timeouts::{DELIVERY, EXIT, HANG, PROGRAM};
use integration::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn commands_are_routed_by_slot_in_sync_and_smart_mode() {
    let cluster = Cluster::start();
    for (mode, extra) in [("sync", ""), ("smart", ""), ("smart", "maxConnections = 2")] {
        cluster.flushall();
        let relayer = Relayer::for_cluster(&cluster, mode, extra);
        let mut c = relayer.client();
        let keys = cluster.keys_on_every_master_prefixed(mode, 300);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.cmd(&["SET", k, &i.to_string()]), Reply::ok(), "{k}");
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.cmd(&["GET", k]), Reply::bulk(i.to_string()), "{k}");
            assert_eq!(cluster.get(k), Some(i.to_string()), "{k} in the cluster");
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
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
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
    let mut touch = vec!["TOUCH".to_string()];
    touch.extend(keys.iter().cloned());
    touch.push("missing-key".into());
    assert_eq!(c.cmd(&touch), Reply::int(keys.len() as i64));
    let half = keys.len() / 2;
    let mut unlink = vec!["UNLINK".to_string(), "missing-key".into()];
    unlink.extend(keys[..half].iter().cloned());
    assert_eq!(c.cmd(&unlink), Reply::int(half as i64));
    assert_eq!(cluster.dbsize_total(), (keys.len() - half) as i64);
    let mut del = vec!["DEL".to_string()];
    del.extend(keys.iter().cloned());
    del.push("missing-key".into());
    assert_eq!(c.cmd(&del), Reply::int((keys.len() - half) as i64));
    assert_eq!(cluster.dbsize_total(), 0);
}

/// PING, ECHO, HELLO and QUIT are answered by the relayer itself, as on a single Redis.
#[test]
fn ping_echo_hello_and_quit_are_answered_locally() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["PING", "hi"]), Reply::bulk("hi"));
    assert_eq!(c.cmd(&["ECHO", "hello"]), Reply::bulk("hello"));
    let hello = c.cmd(&["HELLO", "2", "SETNAME", "me"]);
    let fields = hello.as_array().expect("HELLO gives an array").to_vec();
    let at = fields
        .iter()
        .position(|f| *f == Reply::bulk("proto"))
        .expect("proto");
    assert_eq!(fields[at + 1], Reply::int(2));
    // The nodes' version and mode (as their INFO says: their own HELLO would count as a
    // HELLO that reached a node, below), once a node said.
    let info: String = cluster.node(0).query(&["INFO", "server"]);
    let of_info = |name: &str| {
        let line = info.lines().find_map(|l| l.strip_prefix(name)).expect(name);
        Reply::bulk(line.trim_start_matches(':').trim())
    };
    let (version, mode) = (of_info("redis_version"), of_info("redis_mode"));
    assert_eq!(mode, Reply::bulk("cluster"));
    let field = |reply: &Reply, name: &str| {
        let items = reply.as_array().expect("HELLO gives an array").to_vec();
        let at = items.iter().position(|f| *f == Reply::bulk(name)).expect(name);
        items[at + 1].clone()
    };
    poll_until(HANG, "HELLO with the nodes' version", || {
        let hello = c.cmd(&["HELLO", "2"]);
        (field(&hello, "version") == version && field(&hello, "mode") == mode).then_some(())
    });
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Reply::bulk("me"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["QUIT"]), Reply::ok());
    assert!(
        c.try_read_reply().is_err(),
        "the connection stays open after QUIT"
    );
    // None of it reached a node.
    for n in 0..cluster.nodes().len() {
        let stats: String = cluster.node(n).query(&["INFO", "commandstats"]);
        for cmd in ["cmdstat_echo:", "cmdstat_hello:", "cmdstat_quit:"] {
            assert!(!stats.contains(cmd), "node {n} ran {cmd}\n{stats}");
        }
    }
}

/// RESP3 clients through a cluster relayer (sync and smart): HELLO 3 is the relayer's map,
/// replies are RESP3 as the slot's master gives them, split and fanned-out commands are merged
/// in RESP3 (MGET's nulls), and each master sees one RESP3 connection of the relayer's however
/// many clients speak RESP3.
#[test]
fn resp3_clients_share_the_cluster_relayers_connections() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        let relayer = Relayer::for_cluster(&cluster, mode, "");
        let keys = cluster.keys_on_every_master_prefixed(mode, 3);
        let mut clients: Vec<Client> = (0..4).map(|_| relayer.client()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let hello = c.cmd(&["HELLO", "3"]);
            let Reply::Map(fields) = &hello else {
                panic!("{mode}: HELLO 3: {hello:?}")
            };
            assert!(
                fields.contains(&(Reply::bulk("proto"), Reply::int(3))),
                "{hello:?}"
            );
            for k in &keys {
                assert_eq!(c.cmd(&["SET", &format!("{k}:{i}"), "v"]), Reply::ok());
                assert!(!c.cmd(&["HSET", &format!("{k}:h"), "f", "v"]).is_error());
            }
        }
        let c = &mut clients[0];
        let mget: Vec<String> = keys
            .iter()
            .flat_map(|k| [format!("{k}:0"), format!("{k}:missing")])
            .collect();
        let mut args = vec!["MGET".to_string()];
        args.extend(mget.iter().cloned());
        let got = c.cmd(&args);
        let want: Vec<Reply> = mget
            .iter()
            .map(|k| {
                if k.ends_with(":missing") {
                    Reply::Null
                } else {
                    Reply::bulk("v")
                }
            })
            .collect();
        assert_eq!(
            got,
            Reply::Array(want),
            "{mode}: MGET over every master, RESP3 nulls"
        );
        for k in &keys {
            let mut owner = cluster.client(cluster.node_for_slot(Cluster::slot_of(format!("{k}:h"))));
            assert!(matches!(owner.cmd(&["HELLO", "3"]), Reply::Map(_)));
            let direct = owner.cmd(&["HGETALL", &format!("{k}:h")]);
            assert_eq!(
                c.cmd(&["HGETALL", &format!("{k}:h")]),
                direct,
                "{mode}: a map, as the master gives it"
            );
            assert_eq!(direct, Reply::Map(vec![(Reply::bulk("f"), Reply::bulk("v"))]));
            assert_eq!(c.cmd(&["GET", &format!("{k}:missing")]), Reply::Null);
        }
        let dels: Vec<String> = keys.iter().map(|k| format!("{k}:1")).collect();
        let mut args = vec!["DEL".to_string()];
        args.extend(dels.iter().cloned());
        assert_eq!(
            c.cmd(&args),
            Reply::int(dels.len() as i64),
            "{mode}: DEL summed over masters"
        );
        assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Reply::Null);
        for m in cluster.masters() {
            let lines: String = cluster.node(m).query(&["CLIENT", "LIST"]);
            let resp3 = lines.lines().filter(|l| l.ends_with(" resp=3")).count();
            assert_eq!(
                resp3, 1,
                "{mode}: master {m} has {resp3} RESP3 connections:\n{lines}"
            );
        }
        // HELLO 2: back to RESP2.
        assert!(c.cmd(&["HELLO", "2"]).as_array().is_some());
        assert_eq!(c.cmd(&["GET", &format!("{}:missing", keys[0])]), Reply::Nil);
    }
}

#[test]
fn cross_slot_commands_and_select_get_redis_errors() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
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
    assert_eq!(cluster.get::<String>(&keys[0]), None);
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
        let relayer = Relayer::for_cluster(&cluster, mode, "");
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
            assert_eq!(
                cluster.get(&k),
                Some("new".to_string()),
                "{mode} {k} in the cluster"
            );
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
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
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
    poll_until(DELIVERY, "every acknowledged write in the cluster", || {
        want.iter()
            .all(|(k, v)| cluster.try_get(k) == Ok(Some(v.to_string())))
            .then_some(())
    });
    // Sync reads work again.
    let r = poll_until(HANG, "reads through the relayer", || {
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
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(90);
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "before"]), Reply::ok());
    }
    wait_until(DELIVERY, "first writes in the cluster", || {
        keys.iter()
            .all(|k| cluster.try_get(k) == Ok(Some("before".to_string())))
    });
    cluster.wait_replicated();
    let victim = cluster.masters()[0];
    cluster.kill(victim);
    // Acknowledged at once, whichever node is down.
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "during"]), Reply::ok(), "{k}");
    }
    cluster.wait_failover_after_kill(victim);
    wait_until(
        DELIVERY,
        "every write made during the outage in the cluster",
        || {
            keys.iter()
                .all(|k| cluster.try_get(k) == Ok(Some("during".to_string())))
        },
    );
    let r = poll_until(HANG, "sync reads through the relayer", || {
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

/// `redis-cli --cluster reshard` moving slots while four clients write, half of their keys in
/// the slots it moves: no client error, and each key holds the last value its client was told
/// was written.
#[test]
fn reshard_under_load_keeps_every_client_in_order() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        let relayer = Relayer::for_cluster(&cluster, mode, "");
        let masters = cluster.masters();
        // redis-cli moves the source's first slots.
        let first = cluster.slots_of(masters[0])[0].0;
        let moved = first..first + 200;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let mut c = relayer.client();
                let mut keys = keys_in_slots(moved.clone(), 15, w);
                keys.extend(cluster.keys_on_every_master_prefixed(&format!("{mode}-w{w}-"), 15));
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
        let out = cluster.reshard_with_redis_cli(masters[0], masters[1], 200);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(cluster.node_for_slot(moved.start), masters[1], "{out}");
        assert_eq!(cluster.node_for_slot(moved.end - 1), masters[1], "{out}");
        for w in workers {
            let last = w.join().expect("a client thread failed");
            for (k, v) in last {
                assert_eq!(cluster.get(&k), Some(v.to_string()), "{mode} {k}: {out}");
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
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
    let mut c = relayer.client();
    let r = c.cmd(&["GET", "k"]);
    assert!(r.is_error_starting("ERR relayer: cluster not available"), "{r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    for &n in &all {
        cluster.nodes_mut_restart(n);
    }
    cluster.wait_settled();
    let r = poll_until(HANG, "the relayer reaching the cluster", || {
        let r = c.cmd(&["SET", "k", "v"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::ok());
    assert_eq!(cluster.get("k"), Some("v".to_string()));
}

/// Nothing listens at the seeds when the relayer starts: it answers a clear error, keeps what
/// it acknowledged in smart mode, and connects once the cluster is formed at those addresses.
#[test]
fn seeds_unreachable_at_start_then_the_cluster_appears() {
    let ports = free_node_ports(6);
    let seeds: Vec<String> = ports.iter().map(|p| format!("tcp://127.0.0.1:{p}")).collect();
    let listen = tcp_listen();
    let relayer = Relayer::start(&cluster_entry("smart", &listen, &seeds.join(" "), ""));
    let mut c = relayer.client();
    let r = c.cmd(&["GET", "k"]);
    assert!(r.is_error_starting("ERR relayer: cluster not available"), "{r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(c.cmd(&["SET", "early", "1"]), Reply::ok());
    let cluster = Cluster::start_opts(ClusterOptions {
        ports,
        ..Default::default()
    });
    let r = poll_until(HANG, "the relayer reaching the cluster", || {
        let r = c.cmd(&["GET", "k"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::Nil);
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    wait_until(HANG, "both writes in the cluster", || {
        cluster.try_get("k") == Ok(Some("v".to_string()))
            && cluster.try_get("early") == Ok(Some("1".to_string()))
    });
}

#[test]
fn cluster_url_errors_name_the_key() {
    let listen = tcp_listen();
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

// ---- concurrent clients through faults ---------------------------------------------------------

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Stops the client threads, and counts the full rounds over its keys each has made.
#[derive(Clone)]
struct Load {
    stop: Arc<AtomicBool>,
    rounds: Arc<Vec<AtomicU64>>,
    /// The first client failure, so that the test stops waiting for it.
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl Load {
    fn new(clients: usize) -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            rounds: Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect()),
            failed: Default::default(),
        }
    }

    /// `r` is what client `id` ended with: a failure is recorded.
    fn ended<T>(&self, id: usize, r: Result<T, String>) -> Result<T, String> {
        if let Err(e) = &r {
            self.failed
                .lock()
                .unwrap()
                .get_or_insert_with(|| format!("client {id}: {e}"));
        }
        r
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn round_done(&self, client: usize) {
        self.rounds[client].fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until every client has gone `n` more times over all its keys.
    fn wait_rounds(&self, n: u64) {
        let marks: Vec<u64> = self.rounds.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        wait_until(PROGRAM, "every client to write all its keys again", || {
            if let Some(e) = self.failed.lock().unwrap().as_ref() {
                panic!("{e}");
            }
            self.rounds
                .iter()
                .zip(&marks)
                .all(|(r, m)| r.load(Ordering::Relaxed) >= m + n)
        });
    }
}

/// A smart-mode client that pipelines writes of increasing values to its keys (SET, or MSET of
/// two keys on different slots: split and acknowledged at once) until stopped. Every write must
/// be acknowledged with +OK; returns the last value each key was acknowledged with.
fn smart_writer(
    mut c: Client,
    id: usize,
    keys: Vec<String>,
    mset: bool,
    first: u64,
    load: Load,
) -> Result<HashMap<String, u64>, String> {
    const BATCH: usize = 40;
    let mut last = HashMap::new();
    let (mut counter, mut at) = (first, 0usize);
    while !load.stopped() {
        let mut cmds = Vec::with_capacity(BATCH);
        let mut wrote = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            counter += 1;
            let v = counter.to_string();
            let step = if mset { 2 } else { 1 };
            let ks: Vec<String> = (0..step).map(|i| keys[(at + i) % keys.len()].clone()).collect();
            at += step;
            if at >= keys.len() {
                at -= keys.len();
                load.round_done(id);
            }
            let mut cmd = vec![if mset { "MSET" } else { "SET" }.to_string()];
            for k in &ks {
                cmd.push(k.clone());
                cmd.push(v.clone());
            }
            cmds.push(cmd);
            wrote.push((ks, counter));
        }
        c.send_many(&cmds);
        for (ks, v) in wrote {
            let r = c.try_read_reply().map_err(|e| format!("reading a reply: {e}"))?;
            if r != Reply::ok() {
                return Err(format!("{ks:?} = {v}: {r:?}"));
            }
            for k in ks {
                last.insert(k, v);
            }
        }
    }
    Ok(last)
}

/// What a sync client knows of a key: the last value a SET of it was answered +OK, and the
/// values of later SETs that got an error (which may have run).
#[derive(Default, Debug)]
struct SyncKey {
    acked: Option<u64>,
    uncertain: Vec<u64>,
}

/// A sync client: SET then GET of each of its keys in turn, until stopped. A GET after an
/// acknowledged SET must see it (or fail). Returns what it knows of each key and when it got
/// errors.
fn sync_client(
    mut c: Client,
    id: usize,
    keys: Vec<String>,
    load: Load,
) -> Result<(HashMap<String, SyncKey>, Vec<Instant>), String> {
    let mut known: HashMap<String, SyncKey> = HashMap::new();
    let mut counter = 0u64;
    let mut errors = Vec::new();
    let mut outcome = |ok: bool| {
        if !ok {
            errors.push(Instant::now());
        }
    };
    while !load.stopped() {
        for k in &keys {
            counter += 1;
            let v = counter.to_string();
            let r = c.cmd(&["SET", k, &v]);
            let entry = known.entry(k.clone()).or_default();
            if r.is_ok() {
                *entry = SyncKey {
                    acked: Some(counter),
                    uncertain: Vec::new(),
                };
                let g = c.cmd(&["GET", k]);
                if !g.is_error() && g != Reply::bulk(&v) {
                    return Err(format!("GET {k} after SET {v}: {g:?}"));
                }
                outcome(!g.is_error());
            } else if r.is_error() {
                entry.uncertain.push(counter);
                outcome(false);
            } else {
                return Err(format!("SET {k}: {r:?}"));
            }
        }
        load.round_done(id);
    }
    Ok((known, errors))
}

/// The longest stretch of errors: errors less than 2 s apart are one stretch, from the first
/// to the last.
fn longest_stretch(errors: &[Instant]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut start = None;
    for (i, &t) in errors.iter().enumerate() {
        let begin = *start.get_or_insert(t);
        longest = longest.max(t - begin);
        if errors.get(i + 1).is_none_or(|&n| n - t > Duration::from_secs(2)) {
            start = None;
        }
    }
    longest
}

/// One key in each of `n` slots spread over `slots`: the `nth` of `keys_in_slot` (a client's
/// own).
fn keys_in_slots(slots: std::ops::Range<u16>, n: usize, nth: usize) -> Vec<String> {
    let span = (slots.end - slots.start) as usize;
    (0..n)
        .map(|i| {
            let slot = slots.start + (i * span / n) as u16;
            keys_in_slot(slot, nth + 1).pop().unwrap()
        })
        .collect()
}

/// Smart-mode writers (`smart_writer`) on `keys` (one set each, the last one writing with split
/// MSETs) while `fault` happens: they go on until every key was written again after it
/// returned, then stop; returns the last value each key was acknowledged with.
fn write_through(
    relayer: &Relayer,
    keys: &[Vec<String>],
    first: u64,
    fault: impl FnOnce(),
) -> HashMap<String, u64> {
    let load = Load::new(keys.len());
    let threads: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(w, ks)| {
            let (c, load, ks) = (relayer.client(), load.clone(), ks.clone());
            let mset = w + 1 == keys.len();
            std::thread::spawn(move || load.ended(w, smart_writer(c, w, ks, mset, first, load.clone())))
        })
        .collect();
    load.wait_rounds(1);
    fault();
    load.wait_rounds(1);
    load.stop.store(true, Ordering::Relaxed);
    let mut last = HashMap::new();
    for (w, t) in threads.into_iter().enumerate() {
        let got = t.join().expect("writer panicked");
        last.extend(got.unwrap_or_else(|e| panic!("smart writer {w}: {e}\n{}", relayer.log())));
    }
    last
}

/// Every key of `last` ends with its last acknowledged value in the cluster (the writes still
/// on their way given time), never an older one.
fn assert_last_values(cluster: &Cluster, relayer: &Relayer, last: &HashMap<String, u64>, stage: &str) {
    let keys: Vec<String> = last.keys().cloned().collect();
    let deadline = Instant::now() + DELIVERY;
    loop {
        // An error (a node failing over) is polled past like a wrong value.
        let wrong: Vec<String> = match cluster.try_get_all::<String, _>(&keys) {
            Ok(values) => keys
                .iter()
                .zip(values)
                .filter(|(k, v)| *v != Some(last[*k].to_string()))
                .map(|(k, v)| format!("{k}: acknowledged {}, the cluster has {v:?}", last[k]))
                .collect(),
            Err(e) => vec![e],
        };
        if wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{stage}: {} of {} keys do not hold their last acknowledged value:\n{}\n{}",
                wrong.len(),
                keys.len(),
                wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n"),
                relayer.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Smart-mode clients pipelining writes (maxConnections = 2; one with MSETs split over slots)
/// through each fault in turn, stopped while its effects settle: every key ends with the last
/// value its client was acknowledged, never an older one. Sync clients meanwhile: every GET after
/// an acknowledged SET sees it, and errors last a few seconds at most.
#[test]
fn writers_keep_their_last_acknowledged_value_through_failover_reshard_and_kill() {
    let mut cluster = Cluster::start_opts(ClusterOptions {
        node_timeout_ms: FAST_NODE_TIMEOUT_MS,
        ..Default::default()
    });
    let smart = Relayer::for_cluster(&cluster, "smart", "maxConnections = 2");
    let sync = Relayer::for_cluster(&cluster, "sync", "maxConnections = 2");
    // The reshard moves the first 300 slots of the master of slot 0: slots 0..300.
    const MOVED: std::ops::Range<u16> = 0..300;
    let writers = 4;
    let keys: Vec<Vec<String>> = (0..writers)
        .map(|w| {
            let mut keys = keys_in_slots(MOVED, 24, w);
            keys.extend(cluster.keys_on_every_master_prefixed(&format!("w{w}:"), 24));
            keys
        })
        .collect();
    let sync_load = Load::new(2);
    let sync_threads: Vec<_> = (0..2)
        .map(|s| {
            let mut keys = keys_in_slots(MOVED, 10, writers + s);
            keys.extend(cluster.keys_on_every_master_prefixed(&format!("s{s}:"), 15));
            let (c, load) = (sync.client(), sync_load.clone());
            std::thread::spawn(move || load.ended(s, sync_client(c, s, keys, load.clone())))
        })
        .collect();
    sync_load.wait_rounds(1);

    // Connections cut: what was cut off is sent again, before what came after.
    for round in 0..3 {
        let last = write_through(&smart, &keys, round << 16, || {
            for m in cluster.masters() {
                let r = cluster
                    .client(m)
                    .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
                assert!(r.as_int().is_some(), "CLIENT KILL: {r:?}");
            }
        });
        assert_last_values(&cluster, &smart, &last, "connections killed");
    }

    let last = write_through(&smart, &keys, 1 << 20, || {
        let t = Instant::now();
        let a = cluster.node_for_slot(0);
        cluster.failover(cluster.replicas_of(a)[0]);
        eprintln!("CLUSTER FAILOVER done in {:?}", t.elapsed());
    });
    assert_last_values(&cluster, &smart, &last, "CLUSTER FAILOVER");

    let last = write_through(&smart, &keys, 2 << 20, || {
        let t = Instant::now();
        let (from, to) = (cluster.node_for_slot(0), cluster.node_for_slot(8000));
        let out = cluster.reshard_with_redis_cli(from, to, MOVED.len());
        assert_eq!(cluster.node_for_slot(MOVED.end - 1), to, "{out}");
        eprintln!("reshard of {} slots done in {:?}", MOVED.len(), t.elapsed());
    });
    assert_last_values(&cluster, &smart, &last, "reshard");

    // Every key is written again after the kill, so a write the dead master confirmed but had
    // not passed to its replica yet (Redis' loss, not the relayer's) is overwritten.
    // The writers go on until the cluster is down (CLUSTERDOWN everywhere until the replica
    // takes over): those writes are sent again until it is back.
    let victim = cluster.node_for_slot(16383);
    let replica = cluster.replicas_of(victim)[0];
    let last = write_through(&smart, &keys, 3 << 20, || {
        cluster.kill(victim);
        let other = cluster.node_for_slot(0);
        let down_or_done = poll_until(HANG, "the cluster to notice the dead master", || {
            let info = cluster
                .client(other)
                .cmd(&["CLUSTER", "INFO"])
                .as_str()
                .unwrap_or_default();
            if info.contains("cluster_state:fail") {
                Some("down")
            } else {
                let role = cluster.client(replica).cmd(&["ROLE"]);
                let promoted = role.as_array().and_then(|r| r.first()?.as_str()) == Some("master".into());
                promoted.then_some("replaced")
            }
        });
        eprintln!("killed master: cluster {down_or_done}");
    });
    let t = Instant::now();
    cluster.wait_failover_after_kill(victim);
    eprintln!("killed master replaced in {:?}", t.elapsed());
    assert_last_values(&cluster, &smart, &last, "killed master");

    sync_load.wait_rounds(2);
    sync_load.stop.store(true, Ordering::Relaxed);
    for (s, h) in sync_threads.into_iter().enumerate() {
        let (known, errors) = h
            .join()
            .expect("sync client panicked")
            .unwrap_or_else(|e| panic!("sync client {s}: {e}\n{}", sync.log()));
        let longest = longest_stretch(&errors);
        eprintln!(
            "sync client {s}: {} errors, the longest stretch {longest:?}",
            errors.len()
        );
        assert!(
            longest < Duration::from_secs(15),
            "sync client {s} failed for {longest:?}"
        );
        for (k, state) in &known {
            let v = cluster.get::<String>(k);
            let fits = state
                .acked
                .iter()
                .chain(&state.uncertain)
                .any(|n| v == Some(n.to_string()));
            assert!(
                fits,
                "sync {k}: the cluster has {v:?}, the client knows {state:?}"
            );
        }
    }
    let log = smart.log();
    for bad in ["writes lost", "unknown outcome", "refused by the backend"] {
        assert!(!log.contains(bad), "the smart relayer logs '{bad}':\n{log}");
    }
}

// ---- redirections ---------------------------------------------------------------------------

/// A slot MIGRATING on its master to a node that does not import it: the master answers ASK,
/// the other node MOVED back, and so on. After 5 redirections the client gets a clear error.
#[test]
fn five_redirections_then_a_clear_error() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
    let mut c = relayer.client();
    let key = "hops";
    let slot = slot_of(key);
    let owner = cluster.node_for_slot(slot);
    let other = cluster.masters().into_iter().find(|&m| m != owner).unwrap();
    assert_eq!(c.cmd(&["GET", key]), Reply::Nil);
    let s = slot.to_string();
    let r = cluster.cmd_on_node(owner, &["CLUSTER", "SETSLOT", &s, "MIGRATING", cluster.id(other)]);
    assert!(r.is_ok(), "{r:?}");
    let want = format!(
        "ERR relayer: too many cluster redirections (5) for slot {slot}, last: MOVED {slot} 127.0.0.1:{}",
        cluster.port(owner)
    );
    assert_eq!(c.cmd(&["GET", key]), Reply::error(&want));
    let r = cluster.cmd_on_node(owner, &["CLUSTER", "SETSLOT", &s, "STABLE"]);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(c.cmd(&["GET", key]), Reply::Nil);
}

/// MULTI blocks follow ASK (sent again whole, after ASKING) and MOVED; a multi-key command
/// that gets TRYAGAIN half way through a migration is sent again until the slot has moved.
#[test]
fn multi_blocks_and_tryagain_during_a_migration() {
    let cluster = Cluster::start();
    for mode in ["sync", "smart"] {
        cluster.flushall();
        let relayer = Relayer::for_cluster(&cluster, mode, "");
        let mut c = relayer.client();
        let slot = slot_of("{mx}");
        let from = cluster.node_for_slot(slot);
        let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
        for k in ["{mx}a", "{mx}b", "{mx}c"] {
            cluster.set(k, "1");
        }
        assert_eq!(c.cmd(&["GET", "{mx}a"]), Reply::bulk("1"));
        let migration = cluster.begin_migration(slot, from, to);
        let port = cluster.port(to).to_string();
        let args = [
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "{mx}a",
            "{mx}b",
        ];
        assert!(cluster.cmd_on_node(from, &args).is_ok());
        // a and b are on the target now: the block comes back ASK, then EXECABORT.
        assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
        assert_eq!(c.cmd(&["SET", "{mx}a", "2"]), Reply::status("QUEUED"));
        assert_eq!(c.cmd(&["INCR", "{mx}b"]), Reply::status("QUEUED"));
        assert_eq!(
            c.cmd(&["EXEC"]),
            Reply::array(vec![Reply::ok(), Reply::int(2)]),
            "{mode}"
        );
        let mut target = cluster.client(to);
        assert_eq!(target.cmd(&["ASKING"]), Reply::ok());
        assert_eq!(target.cmd(&["GET", "{mx}a"]), Reply::bulk("2"));
        // a moved, c did not: TRYAGAIN until the migration is over.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                migration.finish();
            });
            assert_eq!(
                c.cmd(&["MGET", "{mx}a", "{mx}c"]),
                Reply::array(vec![Reply::bulk("2"), Reply::bulk("1")]),
                "{mode}"
            );
        });
        // Moved back behind the relayer's back: the block comes back MOVED.
        let other = cluster
            .masters()
            .into_iter()
            .find(|&m| m != to && m != from)
            .unwrap();
        cluster.migrate_slot(slot, to, other);
        assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
        assert_eq!(c.cmd(&["INCR", "{mx}c"]), Reply::status("QUEUED"));
        assert_eq!(c.cmd(&["GET", "{mx}b"]), Reply::status("QUEUED"));
        assert_eq!(
            c.cmd(&["EXEC"]),
            Reply::array(vec![Reply::int(2), Reply::bulk("2")]),
            "{mode}"
        );
        cluster.migrate_slot(slot, other, from);
    }
}

/// One client pipelining SET then GET of keys in a slot being migrated (ASK) and then moved
/// (MOVED), back and forth, with two connections per master: every GET sees the SET just
/// before it.
#[test]
fn pipelined_read_your_writes_across_ask_and_moved() {
    let cluster = Cluster::start();
    for mode in ["smart", "sync"] {
        let relayer = Relayer::for_cluster(&cluster, mode, "maxConnections = 2");
        let slot = slot_of("{ryw}");
        let keys = keys_in_slot(slot, 30);
        let load = Load::new(1);
        let mut c = relayer.client();
        let writer = {
            let (load, keys) = (load.clone(), keys.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !load.stopped() {
                    let mut cmds = Vec::new();
                    for k in &keys {
                        n += 1;
                        cmds.push(vec!["SET".to_string(), k.clone(), n.to_string()]);
                        cmds.push(vec!["GET".to_string(), k.clone()]);
                    }
                    let replies = c.pipeline(&cmds);
                    for (pair, r) in cmds.chunks(2).zip(replies.chunks(2)) {
                        let want = [Reply::ok(), Reply::bulk(&pair[0][2])];
                        if r != want {
                            return load.ended(0, Err(format!("{pair:?}: {r:?}")));
                        }
                    }
                    load.round_done(0);
                }
                Ok(())
            })
        };
        load.wait_rounds(2);
        let from = cluster.node_for_slot(slot);
        let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
        for (a, b) in [(from, to), (to, from)] {
            let m = cluster.begin_migration(slot, a, b);
            m.move_keys(15);
            load.wait_rounds(3);
            m.finish();
            load.wait_rounds(3);
        }
        load.stop.store(true, Ordering::Relaxed);
        writer
            .join()
            .expect("writer panicked")
            .unwrap_or_else(|e| panic!("{mode}: {e}\n{}", relayer.log()));
    }
}

/// Two smart-mode writes of one client to one key: the first redirected by ASK to a node that
/// is slow to answer (CLIENT PAUSE WRITE), the second refused for now (TRYAGAIN: the MSET's
/// other key is still on the old master) and waiting to be sent again when the first comes
/// back. The first ran: it is not sent again after the second, and the key ends with the
/// second's value, the client's last write.
#[test]
fn writes_sent_again_keep_the_order_the_client_sent_them_in() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
    let mut c = relayer.client();
    let slot = slot_of("{ord}");
    let from = cluster.node_for_slot(slot);
    let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
    cluster.set("{ord}b", "0");
    assert_eq!(c.cmd(&["GET", "{ord}b"]), Reply::bulk("0"));
    let migration = cluster.begin_migration(slot, from, to);
    let r = cluster.cmd_on_node(to, &["CLIENT", "PAUSE", "700", "WRITE"]);
    assert!(r.is_ok(), "{r:?}");
    let cmds = vec![
        vec!["SET", "{ord}a", "1"],
        vec!["MSET", "{ord}a", "2", "{ord}b", "2"],
    ];
    assert_eq!(c.pipeline(&cmds), vec![Reply::ok(), Reply::ok()]);
    // The SET ran on the target once the pause ended; the MSET gets TRYAGAIN until the end.
    wait_until(HANG, "the SET on the importing node", || {
        let mut target = cluster.client(to);
        target.cmd(&["ASKING"]);
        target.cmd(&["GET", "{ord}a"]) == Reply::bulk("1")
    });
    std::thread::sleep(Duration::from_millis(500));
    migration.finish();
    // Behind whatever of its slot is still held: it sees the end state.
    assert_eq!(
        c.cmd(&["MGET", "{ord}a", "{ord}b"]),
        Reply::array(vec![Reply::bulk("2"), Reply::bulk("2")]),
        "{}",
        relayer.log()
    );
    assert_eq!(cluster.get("{ord}a"), Some("2".to_string()));
}

/// A command for every master waits until its client's earlier commands are finished: a
/// smart-mode MSET held (TRYAGAIN during a migration) and then FLUSHALL, DBSIZE and KEYS
/// from the same client: the flush comes after the MSET, and the counts see what it left.
#[test]
fn commands_for_every_master_wait_for_the_clients_held_writes() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
    let mut c = relayer.client();
    let slot = slot_of("{fan}");
    let from = cluster.node_for_slot(slot);
    let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
    cluster.set("{fan}b", "0");
    assert_eq!(c.cmd(&["GET", "{fan}b"]), Reply::bulk("0"));
    let migration = cluster.begin_migration(slot, from, to);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            migration.finish();
        });
        let cmds = vec![
            vec!["MSET", "{fan}a", "1", "{fan}b", "1"],
            vec!["FLUSHALL"],
            vec!["DBSIZE"],
            vec!["MSET", "{fan}c", "1", "{fan}b", "2"],
            vec!["KEYS", "*"],
        ];
        let got = c.pipeline(&cmds);
        let keys = Reply::array(vec![Reply::bulk("{fan}b"), Reply::bulk("{fan}c")]);
        let keys_other_order = Reply::array(vec![Reply::bulk("{fan}c"), Reply::bulk("{fan}b")]);
        assert_eq!(
            got[..4],
            [Reply::ok(), Reply::ok(), Reply::int(0), Reply::ok()],
            "{got:?}"
        );
        assert!(got[4] == keys || got[4] == keys_other_order, "{got:?}");
    });
    assert_eq!(c.cmd(&["GET", "{fan}a"]), Reply::Nil);
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::int(2));
    assert_eq!(cluster.dbsize_total(), 2);
}

// ---- keyless commands, SCAN ------------------------------------------------------------------

/// FLUSHALL, FLUSHDB, SCRIPT and FUNCTION reach every master; what would reach one node only
/// is refused; CLUSTER COUNTKEYSINSLOT goes to the slot's master.
#[test]
fn admin_commands_reach_every_master_or_are_refused() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(30);
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    assert_eq!(c.cmd(&["FLUSHALL"]), Reply::ok());
    assert_eq!(cluster.dbsize_total(), 0);
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    assert_eq!(c.cmd(&["FLUSHDB", "ASYNC"]), Reply::ok());
    wait_until(HANG, "FLUSHDB ASYNC everywhere", || cluster.dbsize_total() == 0);

    let sha = c.cmd(&["SCRIPT", "LOAD", "return 7"]);
    let sha = sha.as_str().unwrap_or_else(|| panic!("SCRIPT LOAD: {sha:?}"));
    let every = |cmd: &[&str], want: Reply| {
        for m in cluster.masters() {
            assert_eq!(cluster.cmd_on_node(m, cmd), want, "{cmd:?} on node {m}");
        }
    };
    every(&["SCRIPT", "EXISTS", &sha], Reply::array(vec![Reply::int(1)]));
    assert_eq!(
        c.cmd(&["SCRIPT", "EXISTS", &sha, "0000"]),
        Reply::array(vec![Reply::int(1), Reply::int(0)])
    );
    for k in &keys {
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", k]), Reply::int(7), "{k}");
    }
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), Reply::ok());
    every(&["SCRIPT", "EXISTS", &sha], Reply::array(vec![Reply::int(0)]));

    let lib = "#!lua name=rlib\nredis.register_function('rf', function(keys) return 3 end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), Reply::bulk("rlib"));
    for k in &keys {
        assert_eq!(c.cmd(&["FCALL", "rf", "1", k]), Reply::int(3), "{k}");
    }
    assert_eq!(c.cmd(&["FUNCTION", "FLUSH"]), Reply::ok());
    every(&["FUNCTION", "LIST"], Reply::array(vec![]));

    for refused in [
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"][..],
        &["CLUSTER", "FAILOVER"],
        &["BGSAVE"],
        &["SCRIPT", "KILL"],
    ] {
        let r = c.cmd(refused);
        assert!(
            r.is_error_starting(&format!("ERR relayer: '{}", refused[0])),
            "{refused:?}: {r:?}"
        );
    }
    assert!(c.cmd(&["CONFIG", "GET", "maxmemory"]).as_array().is_some());
    let slot = slot_of("{cnt}");
    for k in ["{cnt}a", "{cnt}b"] {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    let s = slot.to_string();
    assert_eq!(c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &s]), Reply::int(2));
    // Inside MULTI they would reach one master only.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert!(c.cmd(&["FLUSHALL"]).is_error_starting("ERR relayer:"));
    assert!(c.cmd(&["EXEC"]).is_error_starting("EXECABORT"));
    assert_eq!(c.cmd(&["GET", "{cnt}a"]), Reply::bulk("v"));
    // Without a slot, or with one argument too many: what a node itself answers.
    let node = cluster.masters()[0];
    for cmd in [
        &["CLUSTER", "COUNTKEYSINSLOT"][..],
        &["cluster", "countkeysinslot", &s, "1"],
        &["CLUSTER", "GETKEYSINSLOT"],
        &["CLUSTER", "GETKEYSINSLOT", &s],
        &["CLUSTER", "COUNTKEYSINSLOT", "x"],
        &["CLUSTER", "COUNTKEYSINSLOT", "16384"],
    ] {
        let want = cluster.cmd_on_node(node, cmd);
        assert!(want.is_error(), "{cmd:?}: {want:?}");
        assert_eq!(c.cmd(cmd), want, "{cmd:?}");
    }
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        c.cmd(&["CLUSTER", "COUNTKEYSINSLOT"]),
        Reply::error("ERR wrong number of arguments for 'cluster|countkeysinslot' command")
    );
    assert!(c.cmd(&["EXEC"]).is_error_starting("EXECABORT"));
    assert_eq!(
        c.cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "10"])
            .as_array()
            .map(|a| a.len()),
        Some(2)
    );
}

/// A full SCAN visits every master's keys even when the masters fail over half way (their
/// addresses change): the cursor names a slot, not a master.
#[test]
fn scan_visits_every_key_across_a_failover() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(240);
    for k in &keys {
        cluster.set(k, "v");
    }
    for failover_after in [3, 15] {
        let mut seen = BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut pages = 0;
        loop {
            if pages == failover_after {
                fail_over_every_master(&cluster);
                // The relayer learns the new masters (MOVED from the old ones, then a refresh).
                for k in cluster.keys_on_every_master_prefixed("probe", 6) {
                    assert_eq!(c.cmd(&["GET", &k]), Reply::Nil);
                }
            }
            let page = c.cmd(&["SCAN", &cursor, "COUNT", "10"]);
            let page = page
                .as_array()
                .unwrap_or_else(|| panic!("SCAN: {page:?}"))
                .to_vec();
            cursor = page[0].as_str().unwrap();
            seen.extend(page[1].as_array().unwrap().iter().map(|r| r.as_str().unwrap()));
            pages += 1;
            if cursor == "0" || pages > 1000 {
                break;
            }
        }
        assert_eq!(cursor, "0", "SCAN did not finish");
        let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "failover after {failover_after} pages: {} keys not seen: {missing:?}",
            missing.len()
        );
    }
}

// ---- smart mode, compression, logs ------------------------------------------------------------

/// In smart mode an MSET over several slots is acknowledged at once and its parts are sent in
/// the background; a background write a node refuses is logged naming that node.
#[test]
fn split_mset_is_acknowledged_at_once_in_smart_mode() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(3);
    let paused = cluster.node_for_slot(slot_of(&keys[1]));
    assert_eq!(c.cmd(&["GET", &keys[1]]), Reply::Nil);
    let mut admin = cluster.client(paused);
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "3000", "WRITE"]), Reply::ok());
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.extend([k.clone(), "m".to_string()]);
    }
    assert_eq!(c.cmd(&mset), Reply::ok());
    // Acknowledged while the paused master had not run its part yet (it still answers reads).
    assert_eq!(admin.cmd(&["GET", &keys[1]]), Reply::Nil);
    wait_until(HANG, "every part of the MSET in the cluster", || {
        keys.iter()
            .all(|k| cluster.try_get(k) == Ok(Some("m".to_string())))
    });
    // A refused background write names the node that refused it, not the first seed.
    let key = keys
        .iter()
        .find(|k| cluster.node_for_slot(slot_of(k)) != 0)
        .expect("a key on another node than the first seed");
    let owner = cluster.node_for_slot(slot_of(key));
    assert_eq!(c.cmd(&["HSET", key, "f", "v"]), Reply::int(1));
    wait_until(HANG, "the refused write in the log", || {
        relayer.log().contains("background write refused")
    });
    let log = relayer.log();
    let line = log
        .lines()
        .find(|l| l.contains("background write refused"))
        .unwrap();
    assert!(
        line.contains(&format!("127.0.0.1:{}", cluster.port(owner))),
        "{line}"
    );
}

/// compress = true on a cluster relayer: long values are stored compressed, as on a single
/// Redis, and come back decoded, split and merged commands included.
#[test]
fn compression_on_a_cluster_relayer() {
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "sync", "compress = true");
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master(3);
    let long = "x".repeat(1000);
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.extend([k.clone(), long.clone()]);
    }
    assert_eq!(c.cmd(&mset), Reply::ok());
    for k in &keys {
        let stored: Vec<u8> = cluster.get(k).expect("a value");
        assert!(
            stored.starts_with(b"$sy$") && stored.len() < 200,
            "{k}: stored as is"
        );
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk(&long));
    }
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    assert_eq!(
        c.cmd(&mget),
        Reply::array(keys.iter().map(|_| Reply::bulk(&long)).collect())
    );
}

// ---- finding the cluster -------------------------------------------------------------------

/// Every master the relayer knew fails over to its replica and is then killed: the relayer
/// asks the replicas it knew from the map (its seeds were the old masters only).
#[test]
fn the_map_is_found_again_when_every_known_master_is_gone() {
    let mut cluster = Cluster::start();
    let masters = cluster.masters();
    let seeds: Vec<String> = masters.iter().map(|&m| cluster.node(m).url()).collect();
    let listen = tcp_listen();
    let relayer = Relayer::start(&cluster_entry("sync", &listen, &seeds.join(" "), ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "1"]), Reply::ok());
    // Quickly, so that no periodic refresh (every 5 s) sees the new masters meanwhile.
    fail_over_every_master(&cluster);
    for &m in &masters {
        cluster.kill(m);
    }
    cluster.wait_settled();
    let r = poll_until(HANG, "the relayer finding the new masters", || {
        let r = c.cmd(&["SET", "k", "2"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::ok());
    assert_eq!(cluster.get("k"), Some("2".to_string()));
}

/// CLUSTER FAILOVER on a replica of every master, one after the other without waiting for the
/// cluster to settle in between (concurrent manual failovers can abort each other).
fn fail_over_every_master(cluster: &Cluster) {
    let replicas: Vec<usize> = cluster
        .masters()
        .into_iter()
        .map(|m| cluster.replicas_of(m)[0])
        .collect();
    for &r in &replicas {
        let ok = cluster.cmd_on_node(r, &["CLUSTER", "FAILOVER"]);
        assert!(ok.is_ok(), "CLUSTER FAILOVER on node {r}: {ok:?}");
        wait_until(HANG, &format!("node {r} to take over"), || {
            let role = cluster.cmd_on_node(r, &["ROLE"]);
            role.as_array().and_then(|a| a.first()?.as_str()).as_deref() == Some("master")
        });
    }
    cluster.wait_settled();
}

/// A reload replaces a smart relayer whose writes wait for a master that is gone (with its
/// replica): after drainTimeout they are counted and logged as lost, and the new target serves.
#[test]
fn reload_counts_writes_waiting_for_a_dead_master_as_lost() {
    let mut cluster = Cluster::start();
    let listen = tcp_listen();
    let seeds = cluster.seeds();
    let entry = |extra: &str| cluster_entry("smart", &listen, &seeds, extra);
    let mut relayer = Relayer::start(&entry("drainTimeout = 1"));
    let mut c = relayer.client();
    let victim = cluster.masters()[0];
    let keys: Vec<String> = cluster
        .keys_on_every_master_prefixed("lost:", 15)
        .into_iter()
        .filter(|k| cluster.node_for_slot(slot_of(k)) == victim)
        .collect();
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::Nil);
    for n in cluster.replicas_of(victim) {
        cluster.kill(n);
    }
    cluster.kill(victim);
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    let config = entry("drainTimeout = 1\nmaxPendingReplies = 2000");
    relayer.rewrite_config(&config);
    relayer.signal(libc::SIGHUP);
    wait_until(HANG, "the writes counted as lost", || {
        relayer.log().contains("background writes lost")
    });
    let log = relayer.log();
    let line = log
        .lines()
        .find(|l| l.contains("background writes lost"))
        .unwrap();
    assert!(line.contains(&format!("lost: {}", keys.len())), "{line}");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

/// A reload replaces a cluster target while a split MGET waits for a paused master: the old
/// target stops as soon as that last part is answered, not at the end of drainTimeout.
#[test]
fn a_replaced_target_stops_once_its_last_split_part_is_answered() {
    let cluster = Cluster::start();
    let listen = tcp_listen();
    let entry = |extra: &str| cluster_entry("sync", &listen, &cluster.seeds(), extra);
    let mut relayer = Relayer::start(&entry("drainTimeout = 120"));
    let mut c = relayer.client();
    let keys = cluster.keys_on_every_master_prefixed("drain:", 3);
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    assert_eq!(c.cmd(&mget).as_array().map(|a| a.len()), Some(keys.len()));
    let paused = cluster.node_for_slot(slot_of(&keys[0]));
    let old = cluster.node(paused).connection_ids();
    let r = cluster.cmd_on_node(paused, &["CLIENT", "PAUSE", "1500", "ALL"]);
    assert!(r.is_ok(), "{r:?}");
    c.send(&mget);
    relayer.reload(&entry("drainTimeout = 120\nmaxPendingReplies = 2000"));
    assert_eq!(c.read_reply().as_array().map(|a| a.len()), Some(keys.len()));
    let closed = (0..100).any(|_| {
        let now = cluster.node(paused).connection_ids();
        std::thread::sleep(Duration::from_millis(200));
        !old.iter().any(|id| now.contains(id))
    });
    let list = cluster.cmd_on_node(paused, &["CLIENT", "LIST"]);
    assert!(
        closed,
        "the old target's connections ({old:?}) still open: {list:?}\n{}",
        relayer.log()
    );
}

/// A client holds a dedicated connection (WATCH) to a single Redis when a reload turns its
/// relayer into a cluster relayer: commands that would be split or sent to every master get a
/// clear error (they used to panic the session); once the connection is released, the client
/// uses the cluster.
#[test]
fn a_dedicated_connection_kept_across_a_reload_to_a_cluster_does_not_panic() {
    let cluster = Cluster::start();
    let redis = Redis::start();
    let listen = tcp_listen();
    let mut relayer = Relayer::start(&redis_entry(&listen, &redis.url(), ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["WATCH", "w"]), Reply::ok());
    relayer.reload(&cluster_entry("sync", &listen, &cluster.seeds(), ""));
    let keys = cluster.keys_on_every_master_prefixed("ded:", 3);
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    for cmd in [mget.clone(), vec!["DBSIZE".to_string()]] {
        let r = c.cmd(&cmd);
        assert!(
            r.is_error_starting("ERR relayer: the configuration now names a cluster"),
            "{cmd:?}: {r:?}"
        );
    }
    assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok());
    assert_eq!(
        c.cmd(&mget),
        Reply::array(vec![Reply::Nil; keys.len()]),
        "{}",
        relayer.log()
    );
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::int(0));
}

/// A script keeps one master busy (busy-reply-threshold 100 ms) while smart SETs go to keys on
/// every master: the busy master's are refused BUSY and sent again once the script ends, in
/// order (a GET behind them sees the last), and the stop summary says every one was delivered.
/// (They were counted as background errors and never stored.)
#[test]
fn writes_refused_busy_on_a_master_are_sent_again() {
    let cluster = Cluster::start();
    let busy = cluster.masters()[0];
    for n in 0..cluster.nodes().len() {
        assert_eq!(
            cluster.cmd_on_node(n, &["CONFIG", "SET", "busy-reply-threshold", "100"]),
            Reply::ok()
        );
    }
    let mut relayer = Relayer::for_cluster(&cluster, "smart", "");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let keys = cluster.keys_on_every_master_prefixed("busy", 60);
    let script = "local t=redis.call('TIME') while true do local n=redis.call('TIME') \
                  if (n[1]-t[1])*1000000+(n[2]-t[2]) > 1500000 then break end end return 1";
    let port = cluster.port(busy);
    let runner = std::thread::spawn(move || Client::tcp(port).cmd(&["EVAL", script, "0"]));
    wait_until(HANG, "the master to be busy", || {
        cluster.client(busy).q("PING").is_error_starting("BUSY")
    });
    for round in 0..3 {
        let cmds: Vec<Vec<String>> = keys
            .iter()
            .map(|k| vec!["SET".into(), k.clone(), format!("{round}")])
            .collect();
        for r in c.pipeline(&cmds) {
            assert_eq!(r, Reply::ok());
        }
    }
    let on_busy = keys
        .iter()
        .find(|k| cluster.node_for_slot(Cluster::slot_of(k.as_bytes())) == busy)
        .unwrap();
    assert_eq!(c.cmd(&["GET", on_busy]), Reply::bulk("2"));
    assert_eq!(runner.join().unwrap(), Reply::Int(1));
    for k in &keys {
        assert_eq!(cluster.get(k), Some("2".to_string()), "{k}");
    }
    relayer.signal(libc::SIGTERM);
    assert!(relayer.wait_exit(EXIT).success());
    let (all, f) = stop_summary(&relayer.log());
    assert!(all, "{f:?}\n{}", relayer.log());
    assert_eq!(f.get("delivered").map(String::as_str), Some("180"), "{f:?}");
}

/// With every master pausing writes, a smart `SET k new` is acknowledged; a reload that only
/// changes `timeout` follows; the same client's `GET k` returns `new`: it waited until the old
/// target had delivered the SET. (It went to the new target at once and read the old value.)
#[test]
fn a_reload_keeps_each_clients_order_on_a_cluster() {
    let cluster = Cluster::start();
    let listen = tcp_listen();
    let entry = |t: u32| cluster_entry("smart", &listen, &cluster.seeds(), &format!("timeout = {t}"));
    let mut relayer = Relayer::start(&entry(30));
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let k = "{reload}k";
    assert_eq!(c.cmd(&["SET", k, "old"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", k]), Reply::bulk("old"));
    for m in cluster.masters() {
        assert_eq!(
            cluster.cmd_on_node(m, &["CLIENT", "PAUSE", "1500", "WRITE"]),
            Reply::ok()
        );
    }
    assert_eq!(c.cmd(&["SET", k, "new"]), Reply::ok());
    relayer.reload(&entry(31));
    assert_eq!(c.cmd(&["GET", k]), Reply::bulk("new"));
}
