//! MULTI/EXEC: blocks from many clients at once stay atomic; DISCARD and the error cases.

use integration::timeouts::HANG;
use integration::*;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The script `script(prefix)` (keys prefixed per side) straight to redis-server and through
/// the relayer: every reply the same bytes, in order.
fn assert_same_replies(direct: &mut Client, via: &mut Client, script: impl Fn(&str) -> Vec<Vec<String>>) {
    let want: Vec<Vec<u8>> = script("direct").iter().map(|cmd| direct.cmd_raw(cmd)).collect();
    let got: Vec<Vec<u8>> = script("via").iter().map(|cmd| via.cmd_raw(cmd)).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g == w,
            "command {i} {:?}: relayer {} redis {}",
            script("via")[i],
            show_bytes(g, 200),
            show_bytes(w, 200)
        );
    }
}

/// 50 clients run transactions on shared keys while 10 others send plain commands on the same
/// keys: every EXEC shows its own block's effects only (consecutive INCRs, its own SET read back),
/// plain clients never get QUEUED, and a few clients send 500-command blocks.
#[test]
fn concurrent_transactions_stay_atomic() {
    let redis = Redis::start();
    let relayer = Arc::new(Relayer::for_redis(&redis, "maxConnections = 2"));
    const TX_CLIENTS: usize = 50;
    const PLAIN: usize = 10;
    const BIG: usize = 3;
    const ROUNDS: usize = 30;
    let plain_incrs = Arc::new(AtomicI64::new(0));
    let r = relayer.clone();
    let incrs = plain_incrs.clone();
    run_threads(TX_CLIENTS + PLAIN + BIG, move |id| {
        let mut c = r.client_at(id % 2);
        if id < TX_CLIENTS {
            for round in 0..ROUNDS {
                let mine = format!("tx{id}:{round}");
                let cmds: Vec<Vec<String>> = vec![
                    vec!["MULTI".into()],
                    vec!["INCR".into(), "tx:counter".into()],
                    vec!["INCR".into(), "tx:counter".into()],
                    vec!["GET".into(), "tx:counter".into()],
                    vec!["SET".into(), "tx:shared".into(), mine.clone()],
                    vec!["GET".into(), "tx:shared".into()],
                    vec!["APPEND".into(), "tx:shared".into(), "+".into()],
                    vec!["GET".into(), "tx:shared".into()],
                    vec!["EXEC".into()],
                ];
                let got = c.pipeline(&cmds);
                let bad = |what: &str| Err(format!("round {round}: {what}: {got:?}"));
                if got[0] != Reply::ok() {
                    return bad("MULTI");
                }
                if got[1..8].iter().any(|r| *r != Reply::status("QUEUED")) {
                    return bad("not QUEUED");
                }
                let Some(e) = got[8].as_array() else {
                    return bad("EXEC");
                };
                let (Some(n1), Some(n2)) = (e[0].as_int(), e[1].as_int()) else {
                    return bad("INCR");
                };
                let want = vec![
                    Reply::Int(n1),
                    Reply::Int(n1 + 1),
                    Reply::bulk((n1 + 1).to_string()),
                    Reply::ok(),
                    Reply::bulk(&mine),
                    Reply::Int(mine.len() as i64 + 1),
                    Reply::bulk(format!("{mine}+")),
                ];
                if n2 != n1 + 1 || e != want.as_slice() {
                    return bad("interleaved");
                }
            }
        } else if id < TX_CLIENTS + PLAIN {
            for round in 0..ROUNDS * 3 {
                let got = c.pipeline(&[
                    vec!["INCR", "tx:counter"],
                    vec!["GET", "tx:shared"],
                    vec!["SET", "tx:plain", "x"],
                    vec!["GET", "tx:plain"],
                ]);
                incrs.fetch_add(1, Ordering::Relaxed);
                let ok = got[0].as_int().is_some()
                    && matches!(got[1], Reply::Bulk(_) | Reply::Nil)
                    && got[2] == Reply::ok()
                    && got[3] == Reply::bulk("x");
                if !ok {
                    return Err(format!("plain round {round}: {got:?}"));
                }
            }
        } else {
            for round in 0..5 {
                let key = format!("tx:big:{id}");
                let mut cmds: Vec<Vec<String>> = vec![vec!["MULTI".into()]];
                for i in 0..500 {
                    cmds.push(vec!["RPUSH".into(), key.clone(), i.to_string()]);
                }
                cmds.push(vec!["LLEN".into(), key.clone()]);
                cmds.push(vec!["DEL".into(), key.clone()]);
                cmds.push(vec!["EXEC".into()]);
                let got = c.pipeline(&cmds);
                let want: Vec<Reply> = (1..=500)
                    .map(Reply::Int)
                    .chain([Reply::Int(500), Reply::Int(1)])
                    .collect();
                if got.last() != Some(&Reply::Array(want)) {
                    return Err(format!("big block {round}: EXEC {:?}", got.last()));
                }
            }
        }
        Ok(())
    });
    let total: Option<String> = redis.query(&["GET", "tx:counter"]);
    let want = (TX_CLIENTS * ROUNDS * 2) as i64 + plain_incrs.load(Ordering::Relaxed);
    assert_eq!(total, Some(want.to_string()));
}

/// DISCARD, EXEC/DISCARD without MULTI, nested MULTI, a runtime error inside a block, and a
/// command redis refuses to queue: the same replies as redis itself (for the last: EXEC fails).
#[test]
fn discard_and_transaction_errors() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    let mut d = redis.client();

    // The same script against redis and through the relayer; keys are prefixed per side.
    let script = |p: &str| -> Vec<Vec<String>> {
        let k = |s: &str| format!("{p}:{s}");
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            v(&["EXEC"]),
            v(&["DISCARD"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "1"]),
            v(&["MULTI"]),
            v(&["INCR", &k("a")]),
            v(&["DISCARD"]),
            v(&["GET", &k("a")]),
            v(&["EXEC"]),
            v(&["SET", &k("str"), "s"]),
            v(&["MULTI"]),
            v(&["SET", &k("b"), "x"]),
            v(&["LPUSH", &k("str"), "y"]),
            v(&["INCR", &k("b")]),
            v(&["GET", &k("b")]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["EXEC"]),
            v(&["GET", &k("b")]),
        ]
    };
    assert_same_replies(&mut d, &mut c, script);
    assert_eq!(c.q("GET via:a"), Reply::Nil, "DISCARD must drop the block");

    // A command redis refuses to queue (wrong arity): EXEC fails, nothing of the block runs.
    assert_eq!(c.q("MULTI"), Reply::ok());
    let _ = c.q("SET via:never x");
    let _ = c.q("GET");
    let e = c.q("EXEC");
    assert!(e.is_error(), "EXEC of a block with a bad command: {e:?}");
    assert_eq!(c.q("GET via:never"), Reply::Nil);
    // The connection is fine after all this.
    assert_eq!(c.q("SET via:after ok"), Reply::ok());
    assert_eq!(c.q("GET via:after"), Reply::bulk("ok"));

    // QUIT inside a block: OK and closed; the block never runs.
    let mut q = relayer.client();
    assert_eq!(q.q("MULTI"), Reply::ok());
    assert_eq!(q.q("SET via:quit x"), Reply::status("QUEUED"));
    q.send(&["QUIT"]);
    assert_eq!(q.read_reply(), Reply::ok());
    q.expect_closed();
    assert_eq!(c.q("GET via:quit"), Reply::Nil);
    // A client that disconnects inside a block leaves nothing behind either.
    let mut gone = relayer.client();
    assert_eq!(gone.q("MULTI"), Reply::ok());
    assert_eq!(gone.q("SET via:gone x"), Reply::status("QUEUED"));
    drop(gone);
    assert_eq!(c.q("GET via:gone"), Reply::Nil);
}

/// What Redis refuses before queueing (an unknown command or subcommand, the wrong number of
/// arguments, EXEC or DISCARD with arguments) is refused at once, as Redis words it, and flags
/// the block; EXEC with arguments ends it. UNWATCH is queued. The same bytes as redis itself,
/// once the relayer has learned the backend's commands.
#[test]
fn queue_time_errors_as_redis_answers_them() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    relayer.wait_log_line(&["commands learned from the backend's COMMAND"], HANG);
    let mut c = relayer.client();
    let mut d = redis.client();
    let script = |p: &str| -> Vec<Vec<String>> {
        let k = |s: &str| format!("{p}:{s}");
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            v(&["MULTI"]),
            v(&["SET", &k("a"), "1"]),
            v(&["NOSUCHCMD", "x", "y"]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "2"]),
            v(&["GET"]),
            v(&["CONFIG", "NOSUCH"]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "3"]),
            v(&["EXEC", "x"]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "4"]),
            v(&["DISCARD", "x"]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "5"]),
            v(&["UNWATCH"]),
            v(&["WATCH"]),
            v(&["EXEC"]),
            v(&["MULTI"]),
            v(&["SET", &k("a"), "6"]),
            v(&["UNWATCH"]),
            v(&["EXEC"]),
            v(&["GET", &k("a")]),
        ]
    };
    assert_same_replies(&mut d, &mut c, script);
    assert_eq!(d.q("GET via:a"), Reply::bulk("6"));
}

/// An EXEC the relayer aborts ends WATCH, as Redis' does: a later transaction of the client is
/// not failed by a key it watched before.
#[test]
fn an_aborted_exec_unwatches() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    relayer.wait_log_line(&["commands learned from the backend's COMMAND"], HANG);
    let mut d = redis.client();
    // Aborted by an unknown command (Redis' refusal), and by one the relayer refuses in a block.
    for (p, c, bad) in [
        ("direct", &mut redis.client(), "NOSUCHCMD"),
        ("via-subscribe", &mut relayer.client(), "SUBSCRIBE c"),
        ("via", &mut relayer.client(), "NOSUCHCMD"),
    ] {
        let k = format!("{p}:watched");
        assert_eq!(c.cmd(&["WATCH", &k]), Reply::ok());
        assert_eq!(c.q("MULTI"), Reply::ok());
        assert!(c.q(bad).is_error(), "{p}");
        assert!(c.q("EXEC").is_error(), "{p}: the block aborts");
        // The watched key changes; no WATCH is in effect any more, so the next block runs.
        assert_eq!(d.cmd(&["SET", &k, "changed"]), Reply::ok());
        assert_eq!(c.q("MULTI"), Reply::ok());
        assert_eq!(c.cmd(&["SET", &k, "mine"]), Reply::status("QUEUED"));
        assert_eq!(c.q("EXEC"), Reply::Array(vec![Reply::ok()]), "{p}");
        assert_eq!(d.cmd(&["GET", &k]), Reply::bulk("mine"), "{p}");
    }
}

/// CLIENT SETNAME and GETNAME inside MULTI are queued as Redis queues them: their replies come
/// in their places in EXEC's array, and the name changes only if the block runs (not when
/// WATCH fails it). The same bytes as redis-server.
#[test]
fn client_names_inside_multi_as_redis() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut d = redis.client();
    let mut sides = Vec::new();
    for (p, c) in [("direct", &mut redis.client()), ("via", &mut relayer.client())] {
        let k = format!("{p}:named");
        let mut replies = Vec::new();
        let mut run = |c: &mut Client, args: &[&str]| replies.push(show_bytes(&c.cmd_raw(args), 300));
        run(c, &["CLIENT", "SETNAME", "first"]);
        run(c, &["MULTI"]);
        run(c, &["CLIENT", "GETNAME"]);
        run(c, &["CLIENT", "SETNAME", "second"]);
        run(c, &["SET", &k, "v"]);
        run(c, &["CLIENT", "GETNAME"]);
        run(c, &["CLIENT", "SETNAME", "no spaces"]);
        run(c, &["GET", &k]);
        run(c, &["EXEC"]);
        run(c, &["CLIENT", "GETNAME"]);
        // A block WATCH fails leaves the name as it was.
        run(c, &["WATCH", &k]);
        assert_eq!(d.cmd(&["SET", &k, "changed"]), Reply::ok());
        run(c, &["MULTI"]);
        run(c, &["CLIENT", "SETNAME", "third"]);
        run(c, &["EXEC"]);
        run(c, &["CLIENT", "GETNAME"]);
        // A discarded one too.
        run(c, &["MULTI"]);
        run(c, &["CLIENT", "SETNAME", "fourth"]);
        run(c, &["DISCARD"]);
        run(c, &["CLIENT", "GETNAME"]);
        sides.push(replies.join("\n"));
    }
    assert_eq!(sides[1], sides[0]);
}

/// EXEC with arguments, outside MULTI too, ends WATCH as Redis' EXECABORT does: a later
/// block is not failed by the key watched before.
#[test]
fn exec_with_arguments_unwatches() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut d = redis.client();
    for (p, c) in [("direct", &mut redis.client()), ("via", &mut relayer.client())] {
        let k = format!("{p}:wk");
        assert_eq!(c.cmd(&["WATCH", &k]), Reply::ok());
        assert!(c.q("EXEC x").is_error_starting("EXECABORT"), "{p}");
        assert_eq!(d.cmd(&["SET", &k, "2"]), Reply::ok());
        assert_eq!(c.q("MULTI"), Reply::ok());
        assert_eq!(c.cmd(&["SET", &k, "3"]), Reply::status("QUEUED"));
        assert_eq!(c.q("EXEC"), Reply::Array(vec![Reply::ok()]), "{p}");
    }
}
