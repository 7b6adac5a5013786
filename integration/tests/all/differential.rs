//! The differential test: the relayer answers like Redis. The command scripts of
//! integration/tests/differential (one per command family, valid and invalid commands) run on
//! a raw connection straight to Redis, then through the relayer in each mode, each family
//! from an empty server; every reply is compared byte for byte, in order (after masking the few
//! values that vary per run: `normalise`). The differences found must be exactly the rows of
//! the table `Held by the differential test` in docs/differences.md (`table`). Everything runs
//! twice: in RESP2, and in RESP3 (every connection says HELLO 3 first; modes `sync3`...).
//!
//! A single redis-server serves the direct pass and a relayer with a sync and a smart entry in
//! front of it; a Redis Cluster the same way, its direct pass made by a cluster-aware client of
//! the test's own (`conn::Target::Cluster`). Run with `DIFFERENTIAL_DUMP=1` to see every reply.

mod conn;
mod normalise;
mod script;
mod table;

use conn::{Conn, Target};
use integration::*;
use normalise::normalise;
use script::{Script, Step};
use std::collections::{BTreeMap, HashMap};
use table::Diff;

/// The replies of one pass: per family, per step, the step's replies' bytes (normalised).
type Pass = Vec<Vec<Vec<u8>>>;

/// Every family's script on `target`, each after `reset` empties the backend.
fn run_pass(scripts: &[Script], target: Target, reset: &dyn Fn(), mode: &str) -> Pass {
    let resp3 = mode.ends_with('3');
    scripts
        .iter()
        .map(|s| {
            reset();
            run_script(s, target, mode, resp3)
        })
        .collect()
}

fn run_script(script: &Script, target: Target, mode: &str, resp3: bool) -> Vec<Vec<u8>> {
    let mut conns: BTreeMap<usize, Conn> = BTreeMap::new();
    let mut out = Vec::with_capacity(script.steps.len());
    for step in &script.steps {
        let what = format!("{mode}: {}: {}", script.family, step.text);
        let c = conns
            .entry(step.conn)
            .or_insert_with(|| Conn::open(target, resp3));
        out.push(normalise(&step.args, c.run(step, &what)));
    }
    // A read on every connection the script used: it answers once all that connection sent
    // before has run (smart mode's early answers included), before the next family's reset,
    // and it checks the script left no connection inside MULTI or subscribed.
    for (n, mut c) in conns {
        let barrier = Step {
            text: "TYPE barrier{t}".into(),
            args: vec![b"TYPE".to_vec(), b"barrier{t}".to_vec()],
            conn: n,
            replies: 1,
        };
        let r = c.run(&barrier, &format!("{mode}: {}: the closing TYPE", script.family));
        assert_eq!(
            show_bytes(&r, 200),
            show_bytes(b"+none\r\n", 200),
            "{mode}: {}: connection {n} is left in a state where TYPE is not run at once",
            script.family
        );
    }
    out
}

/// Each step's label in the table: its line, with ` (#n)` for its n-th time in the family.
fn labels(script: &Script) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    script
        .steps
        .iter()
        .map(|s| {
            let n = seen.entry(&s.text).or_default();
            *n += 1;
            if *n == 1 {
                s.text.clone()
            } else {
                format!("{} (#{n})", s.text)
            }
        })
        .collect()
}

/// The steps whose replies differ between `redis` and `relayer`.
fn differences(mode: &str, scripts: &[Script], redis: &Pass, relayer: &Pass) -> Vec<Diff> {
    let mut out = Vec::new();
    for (f, s) in scripts.iter().enumerate() {
        for (i, label) in labels(s).iter().enumerate() {
            let (want, got) = (&redis[f][i], &relayer[f][i]);
            if want != got {
                out.push(Diff::new(mode, s.family, label, want, got));
            }
        }
    }
    out
}

/// The position of a table row's command in the scripts, to write the table in script order.
fn script_order(scripts: &[Script]) -> impl Fn(&Diff) -> usize {
    let mut at = HashMap::new();
    for (f, s) in scripts.iter().enumerate() {
        for (i, label) in labels(s).iter().enumerate() {
            at.insert(
                (s.family.to_string(), table::show(label.as_bytes(), usize::MAX)),
                f * 100_000 + i,
            );
        }
    }
    move |d: &Diff| {
        at.get(&(d.family.clone(), d.command.clone()))
            .copied()
            .unwrap_or(usize::MAX)
    }
}

fn dump(scripts: &[Script], passes: &[(&str, &Pass)]) {
    if std::env::var_os("DIFFERENTIAL_DUMP").is_none() {
        return;
    }
    for (f, s) in scripts.iter().enumerate() {
        for (i, step) in s.steps.iter().enumerate() {
            eprintln!("{} | {}", s.family, step.text);
            for (mode, pass) in passes {
                eprintln!("    {mode:>13}: {}", show_bytes(&pass[f][i], 300));
            }
        }
    }
}

/// The reference passes (RESP2, RESP3) and each relayer mode's, each compared with the
/// reference of its protocol; prints the summary line, and checks the differences against the
/// table.
fn compare_both(
    what: &str,
    scripts: &[Script],
    resp2: (Pass, &[(&str, Pass)]),
    resp3: (Pass, &[(&str, Pass)]),
) {
    let steps: usize = scripts.iter().map(|s| s.steps.len()).sum();
    let mut found = Vec::new();
    let mut counts = Vec::new();
    let mut names = Vec::new();
    for (reference, modes) in [&resp2, &resp3] {
        let mut passes = vec![("redis", reference)];
        passes.extend(modes.iter().map(|(m, p)| (*m, p)));
        dump(scripts, &passes);
        for (mode, pass) in modes.iter() {
            let d = differences(mode, scripts, reference, pass);
            counts.push(format!("{mode} {}", d.len()));
            found.extend(d);
            names.push(*mode);
        }
    }
    eprintln!(
        "differential {what}: {steps} commands in {} families per mode (redis, {}); differences: {}",
        scripts.len(),
        names.join(", "),
        counts.join(", ")
    );
    if let Err(e) = table::check(&found, &names, &table::documented(), &script_order(scripts)) {
        panic!("{e}");
    }
}

/// Waits until both entries of `relayer` have the backend's COMMAND reply: what the relayer
/// answers in MULTI and for subcommands depends on it.
fn wait_learned(relayer: &Relayer) {
    wait_until(
        integration::timeouts::HANG,
        "both entries learned the commands",
        || {
            relayer
                .log()
                .matches("commands learned from the backend's COMMAND")
                .count()
                >= 2
        },
    );
}

/// The port of a relayer's `i`-th listen address (`tcp://127.0.0.1:PORT`).
fn listen_port(relayer: &Relayer, i: usize) -> u16 {
    let l = &relayer.listens()[i];
    l.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("listen {l}"))
}

/// Every family's script straight to a redis-server, then through a sync and a smart relayer
/// in front of it: the differences are the table's rows of modes sync and smart.
#[test]
fn single_redis_sync_and_smart() {
    let scripts = script::load_all();
    let redis = Redis::start();
    let config = format!(
        "{}{}",
        redis_entry_mode("sync", &tcp_listen(), &redis.url(), ""),
        redis_entry_mode("smart", &tcp_listen(), &redis.url(), "")
    );
    let relayer = Relayer::start(&config);
    wait_learned(&relayer);
    let reset = || {
        let mut c = redis.client();
        for cmd in [&["FLUSHALL"][..], &["SCRIPT", "FLUSH"], &["FUNCTION", "FLUSH"]] {
            assert_eq!(c.cmd(cmd), Reply::ok(), "{cmd:?}");
        }
    };
    let reference = run_pass(&scripts, Target::Port(redis.port()), &reset, "redis");
    // The scripts test invalid input as much as valid: a family whose commands all succeed, or
    // all fail, is a script that went wrong.
    for (s, replies) in scripts.iter().zip(&reference) {
        let errors = replies.iter().filter(|r| r.starts_with(b"-")).count();
        assert!(
            errors >= 3 && replies.len() - errors >= 3,
            "{}: {errors} errors of {} replies from Redis",
            s.family,
            replies.len()
        );
    }
    let sync = run_pass(&scripts, Target::Port(listen_port(&relayer, 0)), &reset, "sync");
    let smart = run_pass(&scripts, Target::Port(listen_port(&relayer, 1)), &reset, "smart");
    let reference3 = run_pass(&scripts, Target::Port(redis.port()), &reset, "redis3");
    let sync3 = run_pass(&scripts, Target::Port(listen_port(&relayer, 0)), &reset, "sync3");
    let smart3 = run_pass(&scripts, Target::Port(listen_port(&relayer, 1)), &reset, "smart3");
    compare_both(
        "single redis",
        &scripts,
        (reference, &[("sync", sync), ("smart", smart)]),
        (reference3, &[("sync3", sync3), ("smart3", smart3)]),
    );
}

/// The same on a Redis Cluster of 3 masters: straight to the master of the scripts' slot
/// (`{t}`), then through a cluster relayer in sync and in smart mode.
#[test]
fn cluster_sync_and_smart() {
    let scripts = script::load_all();
    let cluster = Cluster::start_with(3, 0, &[]);
    let config = format!(
        "{}{}",
        cluster_entry("sync", &tcp_listen(), &cluster.seeds(), ""),
        cluster_entry("smart", &tcp_listen(), &cluster.seeds(), "")
    );
    let relayer = Relayer::start(&config);
    wait_learned(&relayer);
    let reset = || {
        cluster.flushall();
        for m in cluster.masters() {
            for cmd in [&["SCRIPT", "FLUSH"][..], &["FUNCTION", "FLUSH"]] {
                assert_eq!(cluster.cmd_on_node(m, cmd), Reply::ok(), "{cmd:?} on node {m}");
            }
        }
    };
    let reference = run_pass(&scripts, Target::Cluster(&cluster), &reset, "cluster");
    let sync = run_pass(
        &scripts,
        Target::Port(listen_port(&relayer, 0)),
        &reset,
        "cluster-sync",
    );
    let smart = run_pass(
        &scripts,
        Target::Port(listen_port(&relayer, 1)),
        &reset,
        "cluster-smart",
    );
    let reference3 = run_pass(&scripts, Target::Cluster(&cluster), &reset, "cluster3");
    let sync3 = run_pass(
        &scripts,
        Target::Port(listen_port(&relayer, 0)),
        &reset,
        "cluster-sync3",
    );
    let smart3 = run_pass(
        &scripts,
        Target::Port(listen_port(&relayer, 1)),
        &reset,
        "cluster-smart3",
    );
    compare_both(
        "redis cluster",
        &scripts,
        (reference, &[("cluster-sync", sync), ("cluster-smart", smart)]),
        (
            reference3,
            &[("cluster-sync3", sync3), ("cluster-smart3", smart3)],
        ),
    );
}
