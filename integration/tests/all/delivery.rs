//! Acknowledged means delivered: smart-mode writes refused for a while by the backend (busy
//! script, full memory, loading after a restart, a replica after a failover) are sent again in
//! order; what cannot be delivered is counted, by reason, and the stop summary is exact.
//! Commands that would change the shared connection's mode are refused, commands that must
//! reach a busy server get there, a reload and a stop keep each client's order and replies.

use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use std::time::{Duration, Instant};

/// A script that keeps the server busy for `ms` milliseconds, then returns 1.
fn busy_script(ms: u64) -> String {
    format!(
        "local t=redis.call('TIME') while true do local n=redis.call('TIME') \
         if (n[1]-t[1])*1000000+(n[2]-t[2]) > {us} then break end end return 1",
        us = ms * 1000
    )
}

/// Stops the relayer with SIGTERM and returns its stop summary (see `stop_summary`).
fn stop(relayer: &mut Relayer) -> (bool, std::collections::HashMap<String, String>) {
    relayer.signal(libc::SIGTERM);
    let st = relayer.wait_exit(EXIT);
    assert!(st.success(), "exit status {st}; log:\n{}", relayer.log());
    stop_summary(&relayer.log())
}

fn field(fields: &std::collections::HashMap<String, String>, k: &str) -> String {
    fields
        .get(k)
        .cloned()
        .unwrap_or_else(|| panic!("no {k} in {fields:?}"))
}

/// A script keeps the server busy (run directly, busy-reply-threshold 100 ms): smart SETs are
/// answered `+OK` at once, refused `-BUSY` by the server, sent again once the script ends, in
/// order: a GET behind them sees the last one, the backend holds all of them, and the stop
/// summary counts every one delivered. (They were refused and never stored.)
#[test]
fn writes_refused_busy_are_sent_again_in_order() {
    let redis = Redis::start_with(&["--busy-reply-threshold", "100"]);
    let mut relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    assert_eq!(c.q("SET busykey before"), Reply::ok());
    assert_eq!(c.q("GET busykey"), Reply::bulk("before"));
    // Long enough that the SETs below reach it while it is busy, on a loaded machine too (at
    // 1.5 s the suite once saw them arrive after the script).
    let script = busy_script(3000);
    let busy = std::thread::spawn({
        let port = redis.port();
        move || Client::tcp(port).cmd(&["EVAL", &script, "0"])
    });
    wait_until(HANG, "the server to be busy", || {
        redis.client().q("PING").is_error_starting("BUSY")
    });
    let cmds: Vec<Vec<String>> = (0..200)
        .map(|i| vec!["SET".into(), format!("busy:{i}"), format!("v{i}")])
        .chain([vec!["SET".into(), "busykey".into(), "v".into()]])
        .collect();
    for (i, r) in c.pipeline(&cmds).into_iter().enumerate() {
        assert_eq!(r, Reply::ok(), "early reply {i}");
    }
    // Waits behind them: sees the last one.
    assert_eq!(c.q("GET busykey"), Reply::bulk("v"));
    assert_eq!(busy.join().unwrap(), Reply::Int(1));
    let mut direct = redis.client();
    for i in 0..200 {
        assert_eq!(
            direct.cmd(&["GET", &format!("busy:{i}")]),
            Reply::bulk(format!("v{i}"))
        );
    }
    let (all, f) = stop(&mut relayer);
    assert!(all, "{f:?}\n{}", relayer.log());
    assert_eq!(field(&f, "delivered"), "202");
    assert!(
        relayer.log().contains("backend accepts commands again"),
        "{}",
        relayer.log()
    );
}

/// Memory is full (maxmemory 1 byte, noeviction): smart SETs get `+OK` and are refused `-OOM`;
/// once maxmemory is raised 2 s later they are all stored, in order, with nothing counted lost.
#[test]
fn writes_refused_oom_are_stored_once_memory_is_raised() {
    let redis = Redis::start();
    let mut relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    assert_eq!(redis.client().q("CONFIG SET maxmemory 1"), Reply::ok());
    let mut direct = redis.client();
    assert!(direct.q("SET direct x").is_error_starting("OOM"));
    let cmds: Vec<Vec<String>> = (0..500)
        .map(|i| vec!["SET".into(), "oomkey".into(), format!("{i}")])
        .collect();
    for r in c.pipeline(&cmds) {
        assert_eq!(r, Reply::ok());
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        direct.q("GET oomkey"),
        Reply::Nil,
        "nothing stored while memory is full"
    );
    assert_eq!(direct.q("CONFIG SET maxmemory 0"), Reply::ok());
    assert_eq!(c.q("GET oomkey"), Reply::bulk("499"));
    let (all, f) = stop(&mut relayer);
    assert!(all, "{f:?}");
    assert_eq!(field(&f, "delivered"), "500");
}

/// A write the backend refuses for good (WRONGTYPE) is counted by its code and logged with its
/// command and key; the stop summary does not say every write was delivered.
#[test]
fn refused_writes_are_counted_by_code_in_the_stop_summary() {
    let redis = Redis::start();
    let mut relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    assert_eq!(c.q("SADD aset m"), Reply::Int(1));
    assert_eq!(c.q("SET aset x EX 100"), Reply::ok());
    assert_eq!(c.q("HSET aset f v"), Reply::Int(1));
    assert_eq!(c.q("SET fine 1"), Reply::ok());
    assert_eq!(c.q("GET fine"), Reply::bulk("1"));
    let (all, f) = stop(&mut relayer);
    assert!(!all);
    assert_eq!(field(&f, "refused"), "1", "{f:?}");
    assert_eq!(field(&f, "refused_by_code"), "WRONGTYPE=1");
    assert_eq!(field(&f, "delivered"), "3");
    assert_eq!(field(&f, "lost"), "0");
    let log = relayer.log();
    assert!(
        log.lines().any(|l| l.contains("background write refused")
            && l.contains("command: HSET")
            && l.contains("key: aset")),
        "{log}"
    );
}

/// The backend is gone and `retryTimeout` (1 s) passes: the writes acknowledged meanwhile are
/// given up, counted as expired (`unavailable`), and the stop summary says so.
#[test]
fn writes_for_an_unreachable_backend_expire_at_retry_timeout() {
    let mut redis = Redis::start();
    let mut relayer = Relayer::smart(&redis.url(), "retryTimeout = 1\ndrainTimeout = 5");
    let mut c = relayer.client();
    assert_eq!(c.q("SET before 1"), Reply::ok());
    assert_eq!(c.q("GET before"), Reply::bulk("1"));
    redis.kill();
    for i in 0..20 {
        assert_eq!(c.cmd(&["SET", &format!("gone:{i}"), "x"]), Reply::ok());
    }
    wait_until(HANG, "the writes to expire", || {
        relayer
            .log()
            .contains("not accepted by the backend within retryTimeout")
    });
    let (all, f) = stop(&mut relayer);
    assert!(!all);
    assert_eq!(field(&f, "expired"), "20", "{f:?}");
    assert_eq!(field(&f, "expired_by_code"), "unavailable=20");
    assert_eq!(field(&f, "lost"), "0");
}

/// `SCRIPT DEBUG` is refused, alone and inside MULTI (whose EXEC then aborts), and another
/// client's smart writes are all stored. (It was forwarded and put the shared connection into a
/// debugging session.)
#[test]
fn script_debug_is_refused() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    let r = c.q("SCRIPT DEBUG YES");
    assert!(r.is_error_starting("ERR relayer: 'SCRIPT DEBUG'"), "{r:?}");
    assert_eq!(c.q("MULTI"), Reply::ok());
    assert!(c
        .q("SCRIPT DEBUG SYNC")
        .is_error_starting("ERR relayer: 'SCRIPT DEBUG'"));
    assert!(c.q("EXEC").is_error_starting("EXECABORT"));
    let mut other = relayer.client();
    for i in 0..100 {
        assert_eq!(other.cmd(&["SET", &format!("dbg:{i}"), "v"]), Reply::ok());
    }
    assert_eq!(other.cmd(&["EVAL", "return 7", "0"]), Reply::Int(7));
    assert_eq!(other.q("GET dbg:99"), Reply::bulk("v"));
    assert_eq!(redis.dbsize(), 100);
}

/// A script through the relayer keeps the server busy for good: `SCRIPT KILL` from another
/// client goes on a connection of its own and kills it at once, exactly as it does directly;
/// the script's client gets Redis' error, and every client goes on. (It queued behind the script
/// on the shared connection and timed out.)
#[test]
fn script_kill_reaches_a_busy_server() {
    let redis = Redis::start_with(&["--busy-reply-threshold", "100"]);
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, "maxConnections = 1\ntimeout = 20"));
    let script = "while true do end";
    let runner = std::thread::spawn({
        let relayer = relayer.clone();
        move || {
            let mut c = relayer.client();
            c.set_read_timeout(HANG);
            c.cmd(&["EVAL", script, "0"])
        }
    });
    wait_until(HANG, "the server to be busy", || {
        redis.client().q("PING").is_error_starting("BUSY")
    });
    let mut k = relayer.client();
    k.set_read_timeout(Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(k.q("SCRIPT KILL"), Reply::ok());
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = runner.join().unwrap();
    let direct = {
        let mut d = redis.client();
        d.q("SCRIPT KILL")
    };
    assert!(r.is_error(), "{r:?}");
    assert!(direct.is_error_starting("NOTBUSY"), "{direct:?}");
    assert_eq!(
        k.q("SCRIPT KILL").error_text(),
        direct.error_text(),
        "the same answer as directly"
    );
    assert_eq!(k.q("SET after 1"), Reply::ok());
    assert_eq!(relayer.client().q("GET after"), Reply::bulk("1"));
}

/// The backend restarts with fewer databases (`--databases 4`): a new client's `SELECT 5` gets
/// Redis' error, and a client that was on DB 5 gets the SELECT's error for its commands, which
/// are never sent: nothing lands in DB 0. (The relayer answered +OK from what it knew of the old
/// server, and the SET landed in DB 0.)
#[test]
fn a_backend_with_fewer_databases_refuses_their_selects() {
    let mut redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut old = relayer.client();
    assert_eq!(old.q("SELECT 5"), Reply::ok());
    assert_eq!(old.q("SET k5 v"), Reply::ok());
    let port = redis.port();
    redis.kill();
    let mut small = Redis::try_start_on(port, &["--databases", "4"]).expect("restart on the same port");
    wait_until(HANG, "the relayer to reconnect", || {
        relayer.client().q("SET probe 1").is_ok()
    });
    let mut fresh = relayer.client();
    assert_eq!(fresh.q("SELECT 5"), Reply::error("ERR DB index is out of range"));
    let r = old.q("SET k5 again");
    assert_eq!(
        r,
        Reply::error("ERR DB index is out of range"),
        "the SELECT's error"
    );
    assert_eq!(small.dbsize(), 1, "only the probe key, in DB 0");
    assert_eq!(small.query::<Option<String>>(&["GET", "k5"]), None);
    small.kill();
}

/// With the backend pausing writes, a smart `SET k new` is acknowledged; a reload that only
/// changes `timeout` follows; the same client's `GET k` returns `new`, not the old value.
/// (The GET went to the new target at once and overtook the SET.)
#[test]
fn a_reload_keeps_each_clients_order() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let entry =
        |timeout: u32| redis_entry_mode("smart", &listen, &redis.url(), &format!("timeout = {timeout}"));
    let mut relayer = Relayer::start(&entry(30));
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    assert_eq!(c.q("SET k old"), Reply::ok());
    assert_eq!(c.q("GET k"), Reply::bulk("old"));
    assert_eq!(redis.client().q("CLIENT PAUSE 1500 WRITE"), Reply::ok());
    assert_eq!(c.q("SET k new"), Reply::ok());
    relayer.reload(&entry(31));
    assert_eq!(c.q("GET k"), Reply::bulk("new"));
}

/// SIGTERM while a client waits on `DEBUG SLEEP 1`: it gets its `+OK`; a command another open
/// client sends after the signal gets a clear error; both connections close after that, and the
/// relayer exits 0. (The waiting client got EOF at once.)
#[test]
fn sigterm_lets_commands_in_flight_finish() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let mut relayer = Relayer::for_redis(&redis, "drainTimeout = 10");
    let mut waiting = relayer.client();
    waiting.set_read_timeout(HANG);
    let mut idle = relayer.client();
    idle.set_read_timeout(HANG);
    assert_eq!(idle.q("PING"), Reply::status("PONG"));
    waiting.send(&["DEBUG", "SLEEP", "1"]);
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    relayer.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let r = idle.q("GET k");
    assert!(r.is_error_starting("ERR relayer: shutting down"), "{r:?}");
    assert_eq!(waiting.read_reply(), Reply::ok());
    assert!(signalled.elapsed() >= Duration::from_millis(700));
    waiting.expect_closed();
    idle.expect_closed();
    assert!(relayer.wait_exit(EXIT).success());
}

/// Writers for the fault tests: `n` clients pipelining smart SETs of their own keys
/// (`{prefix}:{id}:{i}` = `v{i}`) until told to stop; each counts what was acknowledged.
struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<u64>>,
    acked: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>,
}

impl Writers {
    fn start(relayer: &std::sync::Arc<Relayer>, n: usize, prefix: &str) -> Writers {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let acked: std::sync::Arc<Vec<AtomicU64>> =
            std::sync::Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let handles = (0..n)
            .map(|id| {
                let (relayer, stop, acked, prefix) =
                    (relayer.clone(), stop.clone(), acked.clone(), prefix.to_string());
                std::thread::spawn(move || {
                    let mut c = relayer.client();
                    c.set_read_timeout(HANG);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let cmds: Vec<Vec<String>> = (i..i + 100)
                            .map(|j| vec!["SET".into(), format!("{prefix}:{id}:{j}"), format!("v{j}")])
                            .collect();
                        for (k, r) in c.pipeline(&cmds).into_iter().enumerate() {
                            assert_eq!(r, Reply::ok(), "client {id}, SET #{}", i + k as u64);
                        }
                        i += 100;
                        acked[id].store(i, Ordering::Relaxed);
                    }
                    i
                })
            })
            .collect();
        Writers { stop, handles, acked }
    }

    fn acked(&self) -> u64 {
        self.acked
            .iter()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Stops them; what each had acknowledged.
    fn finish(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }
}

/// The keys of `counts` (as `Writers` wrote them) missing or wrong on `redis`.
fn missing_writes(redis: &Redis, prefix: &str, counts: &[u64]) -> Vec<String> {
    let backend = redis.backend_client();
    let mut missing = Vec::new();
    for (id, &n) in counts.iter().enumerate() {
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut args = vec!["MGET".to_string()];
            args.extend(chunk.iter().map(|j| format!("{prefix}:{id}:{j}")));
            let values: Vec<Option<String>> = backend.query(&args).unwrap_or_else(|e| panic!("{e}"));
            for (j, v) in chunk.iter().zip(&values) {
                if v.as_deref() != Some(format!("v{j}").as_str()) {
                    missing.push(format!("{prefix}:{id}:{j} = {v:?}"));
                }
            }
        }
    }
    missing
}

/// The backend (AOF, appendfsync always, 50,000 keys) is killed with SIGKILL while 4 smart
/// clients pipeline SETs, and restarted with a dataset that takes seconds to load: it answers
/// LOADING meanwhile. Every acknowledged SET is on the backend afterwards, and the stop summary
/// says every acknowledged write was delivered. (About 40% of them were missing, counted as
/// background errors, and the stop said every write was delivered.)
#[test]
fn backend_restarted_while_loading_keeps_every_acknowledged_write() {
    let mut redis = Redis::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--enable-debug-command",
        "yes",
    ]);
    let mut direct = redis.client();
    assert_eq!(direct.q("DEBUG POPULATE 50000 pre"), Reply::ok());
    assert_eq!(
        direct.q("BGREWRITEAOF"),
        Reply::status("Background append only file rewriting started")
    );
    wait_until(HANG, "the AOF rewrite", || {
        redis
            .info_field("persistence", "aof_rewrite_in_progress")
            .as_deref()
            == Some("0")
    });
    let relayer = std::sync::Arc::new(Relayer::smart(&redis.url(), "maxConnections = 2\ntimeout = 60"));
    let writers = Writers::start(&relayer, 4, "load");
    wait_until(HANG, "writes before the kill", || writers.acked() >= 2000);
    redis.kill();
    let at_kill = writers.acked();
    std::thread::sleep(Duration::from_millis(300));
    // Events are handled often while loading, so that PING (and the relayer) hear LOADING at once.
    redis.restart_with(&[
        "--key-load-delay",
        "20",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    assert!(
        redis
            .try_query::<Option<String>>(&["GET", "x"])
            .is_err_and(|e| e.reply().is_some_and(|t| t.starts_with("LOADING"))),
        "not loading"
    );
    wait_until(HANG, "writes while loading", || writers.acked() >= at_kill + 2000);
    wait_until(HANG, "the end of loading", || {
        redis.info_field("persistence", "loading").as_deref() == Some("0")
    });
    let counts = writers.finish();
    let total: u64 = counts.iter().sum();
    // Everything reaches the backend before the stop, whose drain has a time limit that a
    // loaded machine could pass (what is left then is counted, which another test checks).
    let deadline = Instant::now() + DELIVERY;
    let mut missing = missing_writes(&redis, "load", &counts);
    while !missing.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        missing = missing_writes(&redis, "load", &counts);
    }
    let mut relayer = std::sync::Arc::into_inner(relayer).expect("the writers are done");
    let (all, f) = stop(&mut relayer);
    assert!(
        missing.is_empty(),
        "{} of {total} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(all, "{f:?}");
    assert!(relayer.log().contains("LOADING"), "the relayer saw the loading");
    eprintln!("{total} writes acknowledged ({at_kill} before the kill), all on the backend; {f:?}");
}

/// A failover behind one name: the relayer reaches the primary through a link (the name), a
/// replica follows it. While 3 smart clients pipeline SETs, FAILOVER makes the replica the
/// primary and the old primary its replica, and the link then leads to the new primary. The
/// writes the old primary refuses (READONLY) are sent again on a connection opened anew, to
/// the new primary: every acknowledged SET is there, nothing is counted lost.
#[test]
fn failover_behind_a_name_keeps_every_acknowledged_write() {
    let a = Redis::start();
    let b = Redis::start_with(&["--replicaof", "127.0.0.1", &a.port().to_string()]);
    wait_until(HANG, "the replica to sync", || {
        b.info_field("replication", "master_link_status").as_deref() == Some("up")
    });
    let link = DelayLink::start(a.port(), Duration::ZERO);
    let relayer = std::sync::Arc::new(Relayer::smart(&link.url(), "maxConnections = 2"));
    let writers = Writers::start(&relayer, 3, "fo");
    wait_until(HANG, "writes before the failover", || writers.acked() >= 3000);
    let r = a
        .client()
        .cmd(&["FAILOVER", "TO", "127.0.0.1", &b.port().to_string()]);
    assert_eq!(r, Reply::ok());
    wait_until(HANG, "the old primary to be a replica", || {
        a.info_field("replication", "role").as_deref() == Some("slave")
            && b.info_field("replication", "role").as_deref() == Some("master")
    });
    let before = writers.acked();
    std::thread::sleep(Duration::from_millis(300));
    link.set_target(b.port());
    wait_until(HANG, "writes after the failover", || {
        writers.acked() >= before + 3000
    });
    let counts = writers.finish();
    let mut relayer = std::sync::Arc::into_inner(relayer).expect("the writers are done");
    let (all, f) = stop(&mut relayer);
    let total: u64 = counts.iter().sum();
    let missing = missing_writes(&b, "fo", &counts);
    assert!(
        missing.is_empty(),
        "{} of {total} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(all, "{f:?}");
    assert!(
        relayer.log().contains("READONLY"),
        "the relayer saw the replica:\n{}",
        relayer.log()
    );
}

/// The drain's time runs out while writes are on their way: sent, run by the backend, their
/// replies not back yet (a link 1.5 s away each way, drainTimeout 2 s). They are counted of
/// unknown outcome, not lost: the backend holds them all. (They were counted lost.)
#[test]
fn writes_unanswered_at_the_drain_limit_are_of_unknown_outcome_not_lost() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(1500));
    let mut relayer = Relayer::smart(&link.url(), "drainTimeout = 2");
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    // The connection is up (a reply came through the link) before the writes.
    assert_eq!(c.q("GET none"), Reply::Nil);
    let cmds: Vec<Vec<String>> = (0..100)
        .map(|i| vec!["SET".into(), format!("far:{i}"), "v".into()])
        .collect();
    for r in c.pipeline(&cmds) {
        assert_eq!(r, Reply::ok());
    }
    let (all, f) = stop(&mut relayer);
    assert!(!all, "{f:?}");
    assert_eq!(field(&f, "lost"), "0", "{f:?}");
    assert_eq!(field(&f, "unknown"), "100", "{f:?}");
    wait_until(HANG, "the writes on the backend", || redis.dbsize() == 100);
}
