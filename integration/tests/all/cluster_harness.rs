//! The Redis Cluster harness itself (integration/src/cluster.rs): that it forms a real cluster,
//! hashes keys as Redis does, and produces the faults the relayer's cluster tests rely on.

use integration::cluster::{ClusterOptions, FAST_NODE_TIMEOUT_MS, SLOTS};
use integration::{keys_in_slot, slot_of, Cluster, Redis, Reply, Rng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn values(keys: &[String]) -> Vec<Option<String>> {
    keys.iter().map(|k| Some(format!("v-{k}"))).collect()
}

fn set_all(c: &Cluster, keys: &[String]) {
    for k in keys {
        c.set(k, format!("v-{k}"));
    }
}

#[test]
fn cluster_forms_with_three_masters_and_three_replicas() {
    let t = Instant::now();
    let c = Cluster::start();
    eprintln!("cluster of 6 nodes formed in {:?}", t.elapsed());

    let masters = c.masters();
    let replicas = c.replicas();
    assert_eq!(masters.len(), 3, "masters {masters:?}");
    assert_eq!(replicas.len(), 3, "replicas {replicas:?}");
    let all: BTreeSet<usize> = masters.iter().chain(&replicas).copied().collect();
    assert_eq!(all, (0..6).collect());
    for &m in &masters {
        let rs = c.replicas_of(m);
        assert_eq!(rs.len(), 1, "replicas of {m}: {rs:?}");
        assert_eq!(c.master_of(rs[0]), Some(m));
    }
    let map = c.slot_map();
    let covered: u32 = map.iter().map(|r| (r.end - r.start) as u32 + 1).sum();
    assert_eq!(covered, SLOTS as u32);
    assert_eq!(c.node_for_slot(0), map[0].master);
    assert_eq!(c.node_for_slot(SLOTS - 1), map.last().unwrap().master);
    let seeds: Vec<String> = c
        .nodes()
        .iter()
        .map(|n| format!("tcp://127.0.0.1:{}", n.port()))
        .collect();
    assert_eq!(c.seeds(), seeds.join(" "));
    for n in c.nodes() {
        assert!(
            n.dir().join("nodes.conf").is_file(),
            "no nodes.conf in {}",
            n.dir().display()
        );
    }

    // Keys over every master, written and read through the cluster-aware client.
    let keys = c.keys_on_every_master(300);
    assert_eq!(keys.len(), 300);
    for &m in &masters {
        let on_m = keys.iter().filter(|k| c.node_for_slot(slot_of(k)) == m).count();
        assert_eq!(on_m, 100, "keys on master {m}");
    }
    set_all(&c, &keys);
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.get(&keys[0]), Some(format!("v-{}", keys[0])));
    assert_eq!(c.dbsize_total(), 300);
    let expected: BTreeSet<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    assert_eq!(c.all_keys(), expected);
    for &m in &masters {
        assert_eq!(c.node(m).dbsize(), 100);
    }

    // A node that does not serve the key redirects, and the harness follows.
    let key = &keys[0];
    let owner = c.node_for_slot(slot_of(key));
    let other = *masters.iter().find(|&&m| m != owner).unwrap();
    assert_eq!(
        c.cmd_on_node(other, &["GET", key]),
        Reply::Error(format!("MOVED {} 127.0.0.1:{}", slot_of(key), c.port(owner)))
    );
    assert_eq!(
        c.cmd_on_owner(&["STRLEN", key]),
        Reply::Int(format!("v-{key}").len() as i64)
    );
    c.flushall();
    assert_eq!(c.dbsize_total(), 0);

    // Dropping the cluster kills every node.
    let pids: Vec<u32> = c.nodes().iter().map(|n| n.pid().unwrap()).collect();
    drop(c);
    for pid in pids {
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(
            !alive,
            "redis-server {pid} still runs after the cluster was dropped"
        );
    }
}

#[test]
fn fewer_than_three_masters_is_refused_before_starting_anything() {
    let r = std::panic::catch_unwind(|| Cluster::start_with(2, 1, &[]));
    let msg = r
        .err()
        .and_then(|p| p.downcast::<String>().ok())
        .expect("a panic with a message");
    assert!(msg.contains("at least 3 masters"), "{msg}");
}

#[test]
fn slot_of_matches_cluster_keyslot() {
    // CLUSTER KEYSLOT needs a cluster-enabled node, not a formed cluster.
    let r = Redis::start_with(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
    let mut keys: Vec<Vec<u8>> = [
        "",
        "a",
        "foo",
        "bar",
        "123456789",
        "{",
        "}",
        "{}",
        "}{",
        "{}a",
        "a{}",
        "{a}",
        "{a}b",
        "b{a}",
        "a{b}{c}",
        "{{a}}",
        "{a{b}}",
        "x{}{y}",
        "{user1000}.following",
        "{user1000}.followers",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut rng = Rng::new(4);
    for i in 0..3000 {
        let len = 1 + rng.below(24) as usize;
        let mut k = rng.bytes(len);
        // Braces often, so hash tags of every shape occur.
        if i % 2 == 0 {
            let at = rng.below(k.len() as u64 + 1) as usize;
            k.insert(at, b'{');
            let at = rng.below(k.len() as u64 + 1) as usize;
            k.insert(at, b'}');
        }
        keys.push(k);
    }
    let cmds: Vec<Vec<&[u8]>> = keys
        .iter()
        .map(|k| vec![b"CLUSTER".as_slice(), b"KEYSLOT", k])
        .collect();
    let replies = r.client().pipeline(&cmds);
    for (k, reply) in keys.iter().zip(replies) {
        assert_eq!(
            reply,
            Reply::Int(slot_of(k) as i64),
            "key {}",
            integration::show_bytes(k, 60)
        );
    }
    for slot in [0, 1, 8000, SLOTS - 1] {
        for k in keys_in_slot(slot, 3) {
            assert_eq!(
                r.client().cmd(&["CLUSTER", "KEYSLOT", &k]),
                Reply::Int(slot as i64),
                "{k}"
            );
        }
    }
}

#[test]
fn failover_swaps_roles_and_keeps_the_data() {
    let c = Cluster::start();
    let keys = c.keys_on_every_master(300);
    set_all(&c, &keys);
    let master = c.node_for_slot(slot_of(&keys[0]));
    let replica = c.replicas_of(master)[0];
    c.wait_replicated();

    let t = Instant::now();
    c.failover(replica);
    eprintln!("CLUSTER FAILOVER done and agreed in {:?}", t.elapsed());

    assert!(c.masters().contains(&replica), "masters {:?}", c.masters());
    assert!(c.replicas().contains(&master), "replicas {:?}", c.replicas());
    assert_eq!(c.master_of(master), Some(replica));
    assert_eq!(c.node_for_slot(slot_of(&keys[0])), replica);
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.dbsize_total(), 300);
    // The old master now redirects to its successor.
    assert_eq!(
        c.cmd_on_node(master, &["GET", &keys[0]]),
        Reply::Error(format!(
            "MOVED {} 127.0.0.1:{}",
            slot_of(&keys[0]),
            c.port(replica)
        ))
    );
}

#[test]
fn killed_master_is_replaced_by_its_replica_and_restarts_as_a_replica() {
    let mut c = Cluster::start_opts(ClusterOptions {
        node_timeout_ms: FAST_NODE_TIMEOUT_MS,
        ..ClusterOptions::default()
    });
    let keys = c.keys_on_every_master(300);
    set_all(&c, &keys);
    let master = c.node_for_slot(slot_of(&keys[0]));
    let replica = c.replicas_of(master)[0];
    c.wait_replicated();

    let t = Instant::now();
    let new_master = c.wait_failover_after_kill(master);
    eprintln!(
        "a replica took over {:?} after the master was killed",
        t.elapsed()
    );
    assert_eq!(new_master, replica);
    assert!(!c.is_alive(master));
    assert_eq!(c.masters().len(), 3);
    assert!(!c.masters().contains(&master));
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.dbsize_total(), 300);

    c.restart(master);
    assert!(c.is_alive(master));
    assert_eq!(c.master_of(master), Some(new_master));
    assert!(c.replicas().contains(&master));
    assert_eq!(c.get_all(&keys), values(&keys));
    // It resynced from its successor.
    let held = c.node(new_master).dbsize();
    integration::wait_until(
        integration::timeouts::CLUSTER_SETTLE,
        "the restarted node to resync",
        || c.node(master).try_query::<i64>(&["DBSIZE"]) == Ok(held),
    );
}

#[test]
fn killed_replica_restarts_and_resyncs() {
    let mut c = Cluster::start();
    let keys = c.keys_on_every_master(90);
    set_all(&c, &keys[..45]);
    let replica = c.replicas()[0];
    let master = c.master_of(replica).unwrap();
    c.kill(replica);
    assert!(!c.is_alive(replica));
    // The masters serve on while a replica is down.
    set_all(&c, &keys[45..]);
    assert_eq!(c.get_all(&keys), values(&keys));

    c.restart(replica);
    assert_eq!(c.master_of(replica), Some(master));
    c.wait_replicated();
    assert_eq!(c.node(replica).dbsize(), c.node(master).dbsize());
    assert_eq!(c.dbsize_total(), 90);
}

#[test]
fn slot_migration_moves_the_keys_and_answers_ask_half_way() {
    let c = Cluster::start();
    let slot = 100;
    let keys = keys_in_slot(slot, 250);
    set_all(&c, &keys);
    let from = c.node_for_slot(slot);
    let to = *c.masters().iter().find(|&&m| m != from).unwrap();

    let m = c.begin_migration(slot, from, to);
    assert_eq!(m.keys_left(), 250);
    // Open, nothing moved: the source still answers for its keys.
    assert_eq!(
        c.cmd_on_node(from, &["GET", &keys[0]]),
        Reply::bulk(format!("v-{}", keys[0]))
    );
    assert_eq!(m.move_keys(120), 120);
    assert_eq!(m.keys_left(), 130);

    let moved = &keys
        .iter()
        // The source answers ASK for a key it no longer has, whatever the command.
        .find(|k| {
            c.cmd_on_node(from, &["EXISTS", k.as_str()])
                .is_error_starting("ASK ")
        })
        .expect("a moved key")
        .clone();
    let kept = &keys
        .iter()
        .find(|k| c.cmd_on_node(from, &["EXISTS", k.as_str()]) == Reply::Int(1))
        .expect("a key not moved yet")
        .clone();
    let ask = Reply::Error(format!("ASK {slot} 127.0.0.1:{}", c.port(to)));
    assert_eq!(c.cmd_on_node(from, &["GET", moved]), ask);
    assert_eq!(
        c.cmd_on_node(from, &["GET", kept]),
        Reply::bulk(format!("v-{kept}"))
    );
    // The target refuses without ASKING, and answers with it.
    let moved_reply = Reply::Error(format!("MOVED {slot} 127.0.0.1:{}", c.port(from)));
    assert_eq!(c.cmd_on_node(to, &["GET", moved]), moved_reply);
    let mut direct = c.client(to);
    assert_eq!(
        direct.pipeline(&[vec!["ASKING"], vec!["GET", moved]]),
        vec![Reply::ok(), Reply::bulk(format!("v-{moved}"))]
    );
    // The harness's own client follows ASK, and the map still names the source.
    assert_eq!(c.get(moved), Some(format!("v-{moved}")));
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.node_for_slot(slot), from);

    m.finish();
    assert_eq!(c.node_for_slot(slot), to);
    assert_eq!(
        c.cmd_on_node(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]),
        Reply::Int(250)
    );
    assert_eq!(
        c.cmd_on_node(from, &["GET", kept]),
        Reply::Error(format!("MOVED {slot} 127.0.0.1:{}", c.port(to)))
    );
    assert_eq!(c.get_all(&keys), values(&keys));

    // And back in one call, an empty slot too.
    c.migrate_slot(slot, to, from);
    assert_eq!(c.node_for_slot(slot), from);
    let empty = slot + 1;
    let owner = c.node_for_slot(empty);
    c.migrate_slot(empty, owner, to);
    assert_eq!(c.node_for_slot(empty), to);
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.dbsize_total(), 250);
}

#[test]
fn reshard_with_redis_cli_moves_slots_and_their_keys() {
    let c = Cluster::start();
    let from = c.node_for_slot(0);
    let to = *c.masters().iter().find(|&&m| m != from).unwrap();
    let (first, _) = c.slots_of(from)[0];
    let mut keys = Vec::new();
    for s in first..first + 40 {
        keys.extend(keys_in_slot(s, 5));
    }
    keys.extend(c.keys_on_every_master(60));
    set_all(&c, &keys);

    // Writes from another thread while redis-cli moves the slots: the harness's client is
    // shared, and follows ASK and MOVED as the slots move.
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[n % keys.len()];
                let r = c.cmd_on_owner(&["SET", key, &format!("v-{key}")]);
                assert!(r.is_ok(), "SET {key} during the reshard: {r:?}");
                n += 1;
            }
            n
        });
        c.reshard_with_redis_cli(from, to, 40);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap()
    });
    assert!(written > 0);

    for s in first..first + 40 {
        assert_eq!(c.node_for_slot(s), to, "slot {s}");
    }
    assert_eq!(c.node_for_slot(first + 40), from);
    assert_eq!(c.get_all(&keys), values(&keys));
    assert_eq!(c.dbsize_total(), keys.len() as i64);
}

#[test]
fn master_without_replica_restarts_empty_with_its_slots() {
    let mut c = Cluster::start_with(3, 0, &[]);
    assert_eq!(c.nodes().len(), 3);
    assert_eq!(c.masters(), vec![0, 1, 2]);
    assert!(c.replicas().is_empty());
    let keys = c.keys_on_every_master(30);
    set_all(&c, &keys);
    let victim = c.node_for_slot(slot_of(&keys[0]));
    let slots = c.slots_of(victim);
    let id = c.id(victim).to_string();

    c.kill(victim);
    c.restart(victim);

    // Same id and slots (nodes.conf), no keys (no persistence).
    assert_eq!(c.cmd_on_node(victim, &["CLUSTER", "MYID"]), Reply::bulk(&id));
    assert_eq!(c.slots_of(victim), slots);
    for (k, v) in keys.iter().zip(c.get_all(&keys)) {
        let expected = if c.node_for_slot(slot_of(k)) == victim {
            None
        } else {
            Some(format!("v-{k}"))
        };
        assert_eq!(v, expected, "{k}");
    }
    assert_eq!(c.dbsize_total(), 20);
}

/// A pooled connection whose reply does not come in time is not retried on a fresh connection:
/// the command may have run, or run later (INCR would run twice).
#[test]
fn a_command_whose_reply_times_out_is_not_sent_again() {
    let c = Cluster::start();
    let key = "harness:incr";
    let owner = c.node_for_slot(slot_of(key));
    // A pooled connection to the owner exists (cmd_on_owner's pool, not the typed reads').
    assert_eq!(c.cmd_on_owner(&["GET", key]), Reply::Nil);
    // Writes wait on the owner for longer than the harness's read timeout (10 s).
    let mut admin = c.client(owner);
    let paused = Instant::now();
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "11500", "WRITE"]), Reply::ok());
    let r = c.try_cmd_on_owner(&["INCR", key]);
    assert!(r.is_err(), "INCR sent again after its reply timed out: {r:?}");
    std::thread::sleep(std::time::Duration::from_millis(12500).saturating_sub(paused.elapsed()));
    let v = c.client(owner).cmd(&["GET", key]);
    assert!(
        v == Reply::Nil || v == Reply::bulk("1"),
        "INCR ran more than once: {v:?}"
    );
}
