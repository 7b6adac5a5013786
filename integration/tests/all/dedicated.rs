//! Commands that hold a connection (blocking pops, XREAD BLOCK, WAIT, pub/sub, MONITOR, WATCH)
//! run on a connection of the client's own, while the other clients keep sharing theirs.

use integration::timeouts::HANG;
use integration::*;
use std::time::Duration;

/// The backend's connections (CLIENT LIST lines), but the one asking.
fn backend_clients(redis: &Redis) -> Vec<String> {
    client_lines(&redis.backend_client())
}

/// `backend_clients` through `c` (authenticated, when the server needs a password).
fn client_lines(c: &BackendClient) -> Vec<String> {
    let list: String = c.query(&["CLIENT", "LIST"]).unwrap_or_else(|e| panic!("{e}"));
    list.lines()
        .filter(|l| !l.contains(" cmd=client|list "))
        .map(str::to_string)
        .collect()
}

/// A blocking pop's reply: the list and the element taken from it.
fn popped(list: &str, item: &str) -> Reply {
    Reply::array(vec![Reply::bulk(list), Reply::bulk(item)])
}

fn blocked_on(redis: &Redis, cmd: &str) -> usize {
    backend_clients(redis)
        .iter()
        .filter(|l| l.contains(&format!(" cmd={cmd} ")) && l.contains("flags=b"))
        .count()
}

#[test]
fn blpop_is_released_by_an_lpush_and_blocks_nobody_else() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut waiter = relayer.client();
    waiter.send(&["BLPOP", "jobs", "0"]);
    wait_until(HANG, "BLPOP blocked on the backend", || {
        blocked_on(&redis, "blpop") == 1
    });
    // Everyone else still goes through the shared connection without waiting.
    let mut other = relayer.client();
    for i in 0..50 {
        assert_eq!(other.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
    }
    assert_eq!(other.cmd(&["LPUSH", "jobs", "job-1"]), Reply::int(1));
    assert_eq!(waiter.read_reply(), popped("jobs", "job-1"));
    // Afterwards the client is back on the shared connection, its state intact.
    assert_eq!(waiter.cmd(&["GET", "k7"]), Reply::bulk("v"));
    // A timeout gives the nil reply.
    assert_eq!(waiter.cmd(&["BRPOP", "empty", "0.1"]), Reply::NilArray);
    // Pipelined after a blocking command: in order, nothing overtakes it.
    waiter.send_many(&[
        vec!["BLPOP", "q2", "0"],
        vec!["GET", "k1"],
        vec!["SET", "after", "1"],
    ]);
    wait_until(HANG, "second BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    assert_eq!(
        other.cmd(&["EXISTS", "after"]),
        Reply::int(0),
        "SET overtook the BLPOP"
    );
    assert_eq!(other.cmd(&["RPUSH", "q2", "x"]), Reply::int(1));
    assert_eq!(
        waiter.read_replies(3),
        vec![popped("q2", "x"), Reply::bulk("v"), Reply::ok()]
    );
}

#[test]
fn other_blocking_commands_work() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut a = relayer.client();
    let mut b = relayer.client();
    a.send(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_until(HANG, "BLMOVE blocked", || blocked_on(&redis, "blmove") == 1);
    assert_eq!(b.cmd(&["RPUSH", "src", "m"]), Reply::int(1));
    assert_eq!(a.read_reply(), Reply::bulk("m"));
    a.send(&["BZPOPMIN", "z", "0"]);
    wait_until(HANG, "BZPOPMIN blocked", || blocked_on(&redis, "bzpopmin") == 1);
    assert_eq!(b.cmd(&["ZADD", "z", "1.5", "m"]), Reply::int(1));
    assert_eq!(
        a.read_reply(),
        Reply::array(vec![Reply::bulk("z"), Reply::bulk("m"), Reply::bulk("1.5")])
    );
    a.send(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_until(HANG, "XREAD blocked", || blocked_on(&redis, "xread") == 1);
    let id = b.cmd(&["XADD", "s", "*", "f", "v"]);
    let got = a.read_reply();
    let want = Reply::array(vec![Reply::array(vec![
        Reply::bulk("s"),
        Reply::array(vec![Reply::array(vec![
            id.clone(),
            Reply::array(vec![Reply::bulk("f"), Reply::bulk("v")]),
        ])]),
    ])]);
    assert_eq!(got, want);
    // Wrong arity is Redis' own answer.
    assert!(a
        .cmd(&["BLPOP", "x"])
        .is_error_starting("ERR wrong number of arguments"));
}

#[test]
fn pubsub_messages_arrive_while_others_share_the_backend_connection() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut sub = relayer.client();
    let mut publisher = relayer.client();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news", "sport"]),
        Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("news"), Reply::int(1)])
    );
    assert_eq!(
        sub.read_reply(),
        Reply::array(vec![
            Reply::bulk("subscribe"),
            Reply::bulk("sport"),
            Reply::int(2)
        ])
    );
    assert_eq!(
        sub.cmd(&["PSUBSCRIBE", "w*"]),
        Reply::array(vec![Reply::bulk("psubscribe"), Reply::bulk("w*"), Reply::int(3)])
    );
    for i in 0..20 {
        assert_eq!(publisher.cmd(&["SET", "k", &i.to_string()]), Reply::ok());
        assert_eq!(
            publisher.cmd(&["PUBLISH", "news", &format!("n{i}")]),
            Reply::int(1)
        );
        assert_eq!(
            sub.read_reply(),
            Reply::array(vec![
                Reply::bulk("message"),
                Reply::bulk("news"),
                Reply::bulk(format!("n{i}"))
            ])
        );
    }
    assert_eq!(publisher.cmd(&["PUBLISH", "weather", "rain"]), Reply::int(1));
    assert_eq!(
        sub.read_reply(),
        Reply::array(vec![
            Reply::bulk("pmessage"),
            Reply::bulk("w*"),
            Reply::bulk("weather"),
            Reply::bulk("rain")
        ])
    );
    // In subscribed mode Redis' own rules apply: PING's pub/sub form, other commands refused.
    assert_eq!(
        sub.cmd(&["PING"]),
        Reply::array(vec![Reply::bulk("pong"), Reply::bulk("")])
    );
    assert!(sub
        .cmd(&["GET", "k"])
        .is_error_starting("ERR Can't execute 'get'"));
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE", "news"]),
        Reply::array(vec![
            Reply::bulk("unsubscribe"),
            Reply::bulk("news"),
            Reply::int(2)
        ])
    );
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "gone"]), Reply::int(0));
    // RESET leaves pub/sub: the client is an ordinary one again.
    assert_eq!(sub.cmd(&["RESET"]), Reply::status("RESET"));
    assert_eq!(publisher.cmd(&["PUBLISH", "sport", "x"]), Reply::int(0));
    assert_eq!(sub.cmd(&["GET", "k"]), Reply::bulk("19"));
}

#[test]
fn watch_conflict_makes_exec_return_nil() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut a = relayer.client();
    let mut b = relayer.client();
    assert_eq!(a.cmd(&["SET", "balance", "10"]), Reply::ok());
    assert_eq!(a.cmd(&["WATCH", "balance"]), Reply::ok());
    assert_eq!(b.cmd(&["SET", "balance", "99"]), Reply::ok());
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(a.cmd(&["SET", "balance", "20"]), Reply::status("QUEUED"));
    assert_eq!(a.cmd_raw(&["EXEC"]), b"*-1\r\n");
    assert_eq!(b.cmd(&["GET", "balance"]), Reply::bulk("99"));
    // Without a conflict, EXEC runs.
    assert_eq!(a.cmd(&["WATCH", "balance"]), Reply::ok());
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(a.cmd(&["INCR", "balance"]), Reply::status("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Reply::array(vec![Reply::int(100)]));
    // UNWATCH and DISCARD drop the watch: a later change does not abort.
    assert_eq!(a.cmd(&["WATCH", "balance"]), Reply::ok());
    assert_eq!(a.cmd(&["UNWATCH"]), Reply::ok());
    assert_eq!(b.cmd(&["SET", "balance", "1"]), Reply::ok());
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(a.cmd(&["INCR", "balance"]), Reply::status("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Reply::array(vec![Reply::int(2)]));
    assert_eq!(a.cmd(&["WATCH", "balance"]), Reply::ok());
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(a.cmd(&["DISCARD"]), Reply::ok());
    assert_eq!(b.cmd(&["SET", "balance", "5"]), Reply::ok());
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(a.cmd(&["INCR", "balance"]), Reply::status("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Reply::array(vec![Reply::int(6)]));
    // Errors as Redis gives them.
    assert!(a
        .cmd(&["WATCH"])
        .is_error_starting("ERR wrong number of arguments"));
    assert_eq!(a.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        a.cmd(&["WATCH", "x"]),
        Reply::error("ERR WATCH inside MULTI is not allowed")
    );
    assert!(a
        .cmd(&["SUBSCRIBE", "c"])
        .is_error_starting("ERR relayer: 'SUBSCRIBE' inside MULTI"));
    assert!(a.cmd(&["EXEC"]).is_error_starting("EXECABORT"));
}

/// A smart-mode write acknowledged at once is seen by the client's next command, even when
/// that one runs on the dedicated connection.
#[test]
fn smart_writes_are_seen_by_the_dedicated_connection() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    for i in 0..200 {
        assert_eq!(c.cmd(&["SET", "w", &i.to_string()]), Reply::ok());
    }
    assert_eq!(c.cmd(&["WATCH", "w"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "w"]), Reply::bulk("199"));
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", "w"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(vec![Reply::int(200)]));
    // SELECT follows the client onto and off the dedicated connection: the blocking pop finds
    // what a smart write just put in DB 3 (and only there).
    assert_eq!(c.cmd(&["SELECT", "3"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "in3", "yes"]), Reply::ok());
    assert_eq!(c.cmd(&["RPUSH", "list3", "only-in-3"]), Reply::int(1));
    assert_eq!(c.cmd(&["BRPOP", "list3", "1"]), popped("list3", "only-in-3"));
    assert_eq!(c.cmd(&["GET", "in3"]), Reply::bulk("yes"));
    assert_eq!(redis.query::<i64>(&["EXISTS", "in3"]), 0);
    // And the next one, on a fresh DB 3 list, from a reused dedicated connection.
    assert_eq!(c.cmd(&["RPUSH", "list3", "again"]), Reply::int(1));
    assert_eq!(c.cmd(&["BLPOP", "list3", "1"]), popped("list3", "again"));
    assert_eq!(c.cmd(&["SELECT", "0"]), Reply::ok());
    assert_eq!(c.cmd(&["EXISTS", "in3"]), Reply::int(0));
}

#[test]
fn monitor_sees_other_clients_commands() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut mon = relayer.client();
    assert_eq!(mon.cmd(&["MONITOR"]), Reply::ok());
    let mut other = relayer.client();
    assert_eq!(other.cmd(&["SET", "monitored-key", "1"]), Reply::ok());
    let line = poll_until(HANG, "the SET in MONITOR's output", || {
        let r = mon.read_reply();
        r.as_str().filter(|s| s.contains("\"monitored-key\""))
    });
    assert!(line.contains("\"SET\""), "{line}");
    let before = backend_clients(&redis).len();
    // QUIT goes through as RESET: whatever MONITOR still streams comes before its +OK.
    mon.send(&["QUIT"]);
    poll_until(HANG, "QUIT's +OK after the monitor lines", || {
        let r = mon.read_reply();
        (r == Reply::ok()).then_some(())
    });
    mon.expect_closed();
    // The connection was reset (no longer monitoring) and is the one the next client gets.
    wait_until(HANG, "no backend connection monitoring", || {
        backend_clients(&redis).iter().all(|l| !l.contains("flags=O"))
    });
    assert_eq!(other.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    assert_eq!(backend_clients(&redis).len(), before);
}

#[test]
fn dedicated_connection_limit() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 2");
    let mut a = relayer.client();
    let mut b = relayer.client();
    a.send(&["BLPOP", "l", "0"]);
    b.send(&["BLPOP", "l", "0"]);
    wait_until(HANG, "two BLPOPs blocked", || blocked_on(&redis, "blpop") == 2);
    let mut c = relayer.client();
    assert_eq!(
        c.cmd(&["BLPOP", "l", "0"]),
        Reply::error("ERR relayer: too many dedicated connections (maxDedicatedConnections is 2): 'BLPOP' needs a connection of its own")
    );
    assert!(c
        .cmd(&["SUBSCRIBE", "x"])
        .is_error_starting("ERR relayer: too many dedicated connections"));
    // Ordinary commands are not limited.
    assert_eq!(c.cmd(&["RPUSH", "l", "1"]), Reply::int(1));
    let first = poll_until(HANG, "one BLPOP released", || {
        a.set_read_timeout(Duration::from_millis(100));
        b.set_read_timeout(Duration::from_millis(100));
        a.try_read_reply().ok().or_else(|| b.try_read_reply().ok())
    });
    assert_eq!(first, popped("l", "1"));
    // The released connection is reused: the third client gets it.
    let r = poll_until(HANG, "a dedicated connection free again", || {
        let r = c.cmd(&["BLPOP", "other", "0.01"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::NilArray);
}

/// A client that disconnects while blocked leaves nothing behind: Redis no longer holds a
/// blocked BLPOP that would eat the next push. One that disconnects while subscribed leaves no
/// subscription, and its connection is reused.
#[test]
fn disconnecting_clients_leave_no_state() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut blocked = relayer.client();
    blocked.send(&["BLPOP", "queue", "0"]);
    wait_until(HANG, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    drop(blocked);
    wait_until(HANG, "the blocked connection closed", || {
        blocked_on(&redis, "blpop") == 0
    });
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["LPUSH", "queue", "kept"]), Reply::int(1));
    assert_eq!(c.cmd(&["LLEN", "queue"]), Reply::int(1));

    let mut sub = relayer.client();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "ch"]),
        Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("ch"), Reply::int(1)])
    );
    let before = backend_clients(&redis).len();
    drop(sub);
    wait_until(HANG, "no subscriber left", || {
        c.cmd(&["PUBLISH", "ch", "x"]) == Reply::int(0)
    });
    // The next client needing a dedicated connection reuses it: no new backend connection.
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    assert_eq!(backend_clients(&redis).len(), before);
    let subscribed = backend_clients(&redis)
        .iter()
        .filter(|l| !l.contains(" sub=0 "))
        .count();
    assert_eq!(subscribed, 0, "{:?}", backend_clients(&redis));
}

#[test]
fn backend_down_gives_a_clear_error() {
    let mut redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "a", "1"]), Reply::ok());
    c.send(&["BLPOP", "never", "0"]);
    wait_until(HANG, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    redis.kill();
    let r = c.read_reply();
    assert!(r.is_error_starting("ERR relayer:"), "{r:?}");
    let r = c.cmd(&["BLPOP", "never", "0"]);
    assert!(r.is_error_starting("ERR relayer:"), "{r:?}");
    redis.restart();
    let r = poll_until(HANG, "BLPOP working again", || {
        let r = c.cmd(&["BLPOP", "none", "0.01"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::NilArray);
}

#[test]
fn replication_commands_are_refused() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    assert_eq!(
        c.cmd(&["SYNC"]),
        Reply::error("ERR relayer: 'SYNC' is not relayed")
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

/// Clients that say HELLO 3 share the relayer's RESP3 connections: redis-cli -3 prints the same
/// (RESP3 maps and doubles) through the relayer as directly, HELLO is the relayer's RESP3 map,
/// and however many clients speak RESP3 the backend sees one RESP3 connection of the relayer's;
/// RESET and HELLO 2 bring a client back to RESP2.
#[test]
fn resp3_clients_share_the_relayers_resp3_connections() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = redis.client();
    assert_eq!(c.cmd(&["HSET", "h", "f", "v", "g", "w"]), Reply::int(2));
    assert_eq!(c.cmd(&["ZADD", "z", "1.5", "m"]), Reply::int(1));
    let run = |port: u16, args: &[&str]| {
        let port = port.to_string();
        let mut all = vec!["-3", "--no-raw", "-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        let (st, out, err) = redis_cli(&all);
        assert!(st.success(), "{args:?}: {err}");
        assert!(!err.contains("HELLO 3 failed"), "{args:?}: {err}");
        out
    };
    for args in [
        vec!["HGETALL", "h"],
        vec!["ZSCORE", "z", "m"],
        vec!["GET", "missing"],
        vec!["HELLO", "3"],
    ] {
        let direct = run(redis.port(), &args);
        let relayed = run(relayer.port(), &args);
        if args[0] == "HELLO" {
            // The relayer's answer (ids differ): a RESP3 map with proto 3.
            assert!(relayed.contains("proto") && relayed.contains("3"), "{relayed}");
            continue;
        }
        assert_eq!(relayed, direct, "{args:?}");
    }
    assert!(
        run(relayer.port(), &["HGETALL", "h"]).contains("=>"),
        "not printed as a RESP3 map"
    );
    let resp3 = || {
        backend_clients(&redis)
            .iter()
            .filter(|l| l.contains(" resp=3 ") || l.ends_with(" resp=3"))
            .count()
    };
    // HELLO 3 on the raw protocol: the relayer's map, with the relayer's id for the client;
    // replies are RESP3 (a null, not $-1).
    let mut clients: Vec<Client> = (0..5).map(|_| relayer.client()).collect();
    for raw in &mut clients {
        let hello = raw.q("HELLO 3");
        let Reply::Map(fields) = &hello else {
            panic!("HELLO 3: {hello:?}")
        };
        assert!(
            fields.contains(&(Reply::bulk("proto"), Reply::int(3))),
            "{hello:?}"
        );
        let id = raw.q("CLIENT ID");
        assert!(
            fields.contains(&(Reply::bulk("id"), id.clone())),
            "{hello:?} {id:?}"
        );
        assert_eq!(raw.q("GET missing"), Reply::Null);
        assert_eq!(
            raw.q("HGETALL h"),
            Reply::Map(vec![
                (Reply::bulk("f"), Reply::bulk("v")),
                (Reply::bulk("g"), Reply::bulk("w"))
            ])
        );
    }
    assert_eq!(
        resp3(),
        1,
        "one RESP3 connection of the relayer's for five clients"
    );
    let raw = &mut clients[0];
    assert_eq!(raw.q("RESET"), Reply::status("RESET"));
    assert_eq!(raw.q("GET missing"), Reply::Nil);
    let hello = raw.q("HELLO");
    let fields = hello.as_array().unwrap_or_default();
    assert_eq!(fields.get(5), Some(&Reply::int(2)), "{hello:?}");
    let id = raw.q("CLIENT ID");
    assert_eq!(fields.get(7), Some(&id), "{hello:?}");
    let raw = &mut clients[1];
    assert!(raw.q("HELLO 2").as_array().is_some());
    assert_eq!(raw.q("GET missing"), Reply::Nil);
    assert_eq!(resp3(), 1, "no connection of a client's own");
    // Bad versions are Redis' errors.
    let mut c = relayer.client();
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        Reply::error("NOPROTO unsupported protocol version")
    );
}

/// What needs a connection of its own still gets one for a RESP3 client, speaking RESP3: a
/// blocking command's null, pub/sub pushes, WATCH; `maxDedicatedConnections` counts only
/// those, so RESP3 clients beyond it that need none are served. Each reply is compared with
/// what redis-server gives a RESP3 client directly.
#[test]
fn resp3_clients_get_a_connection_of_their_own_only_when_they_need_one() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 2");
    let mut direct = redis.client();
    let mut c = relayer.client();
    for x in [&mut direct, &mut c] {
        assert!(matches!(x.q("HELLO 3"), Reply::Map(_)));
    }
    // Each sequence pops what it pushed: the same replies both ways.
    let cmds = [
        "BLPOP missing 0.1",
        "RPUSH l a",
        "BLPOP l 0.1",
        "WATCH l",
        "MULTI",
        "GET l",
        "EXEC",
    ];
    let want: Vec<Reply> = cmds.iter().map(|cmd| direct.q(cmd)).collect();
    let got: Vec<Reply> = cmds.iter().map(|cmd| c.q(cmd)).collect();
    assert_eq!(got, want);
    assert_eq!(want[0], Reply::Null, "a RESP3 null for the timeout");
    // More RESP3 clients than dedicated connections, none needing one: all served.
    let mut many: Vec<Client> = (0..6).map(|_| relayer.client()).collect();
    for m in &mut many {
        assert!(matches!(m.q("HELLO 3"), Reply::Map(_)));
        assert!(!m.q("INCR n").is_error());
    }
    // Pub/sub: the confirmation and the message are RESP3 pushes, as from redis-server.
    let mut sub_direct = redis.client();
    let mut sub = relayer.client();
    for s in [&mut sub_direct, &mut sub] {
        assert!(matches!(s.q("HELLO 3"), Reply::Map(_)));
        assert_eq!(
            s.q("SUBSCRIBE ch"),
            Reply::Push(vec![Reply::bulk("subscribe"), Reply::bulk("ch"), Reply::int(1)])
        );
    }
    assert_eq!(redis.client().q("PUBLISH ch hi"), Reply::int(2));
    for s in [&mut sub_direct, &mut sub] {
        assert_eq!(
            s.read_reply(),
            Reply::Push(vec![Reply::bulk("message"), Reply::bulk("ch"), Reply::bulk("hi")])
        );
        // RESP3 lets a subscriber run any command.
        assert_eq!(s.q("GET missing"), Reply::Null);
    }
    for m in &mut many {
        assert_eq!(m.q("GET missing"), Reply::Null);
    }
}

/// In pub/sub and MONITOR mode commands pass through to the backend as they are: CLIENT
/// GETNAME (which Redis answers once the client unsubscribed from everything, and while it
/// monitors) gives the name the client set before, as from redis.
#[test]
fn client_name_follows_into_pubsub_and_monitor() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut sub = relayer.client();
    assert_eq!(sub.cmd(&["CLIENT", "SETNAME", "sub-1"]), Reply::ok());
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "ch"]),
        Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("ch"), Reply::int(1)])
    );
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]),
        Reply::array(vec![Reply::bulk("unsubscribe"), Reply::bulk("ch"), Reply::int(0)])
    );
    assert_eq!(sub.cmd(&["CLIENT", "GETNAME"]), Reply::bulk("sub-1"));
    assert_eq!(sub.cmd(&["CLIENT", "SETNAME", "sub-2"]), Reply::ok());
    assert_eq!(sub.cmd(&["CLIENT", "GETNAME"]), Reply::bulk("sub-2"));
    // RESET clears it, as in Redis.
    assert_eq!(sub.cmd(&["RESET"]), Reply::status("RESET"));
    assert_eq!(sub.cmd(&["CLIENT", "GETNAME"]), Reply::Nil);
    // Without a name, nothing is set.
    assert!(!sub.cmd(&["SUBSCRIBE", "ch"]).is_error());
    assert!(!sub.cmd(&["UNSUBSCRIBE"]).is_error());
    assert_eq!(sub.cmd(&["CLIENT", "GETNAME"]), Reply::Nil);

    let mut mon = relayer.client();
    assert_eq!(mon.cmd(&["CLIENT", "SETNAME", "mon-1"]), Reply::ok());
    assert_eq!(mon.cmd(&["MONITOR"]), Reply::ok());
    mon.send(&["CLIENT", "GETNAME"]);
    assert_eq!(mon.read_reply(), Reply::bulk("mon-1"));
}

/// RESET and QUIT sent right behind a command on the dedicated connection (in the same write)
/// come after its reply, as from Redis; nothing is lost and the client goes on.
#[test]
fn reset_and_quit_behind_dedicated_commands_keep_every_reply() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let cases: [(&str, usize, bool); 6] = [
        ("WATCH k\r\nRESET\r\n", 2, false),
        ("BLPOP q 0.01\r\nRESET\r\n", 2, false),
        ("WATCH k\r\nPING\r\nRESET\r\n", 3, false),
        ("SUBSCRIBE c\r\nRESET\r\n", 2, false),
        ("SUBSCRIBE c d\r\nPING\r\nRESET\r\n", 4, false),
        ("SUBSCRIBE c\r\nQUIT\r\n", 2, true),
    ];
    for (input, n, closes) in cases {
        let mut r = relayer.client();
        let mut d = redis.client();
        r.send_raw(input.as_bytes());
        d.send_raw(input.as_bytes());
        let (got, want) = (r.read_replies(n), d.read_replies(n));
        assert_eq!(got, want, "{input:?}");
        if closes {
            r.expect_closed();
        } else {
            assert_eq!(r.cmd(&["SET", "after", "1"]), Reply::ok(), "{input:?}");
            assert_eq!(
                r.cmd(&["PUBLISH", "c", "x"]),
                Reply::int(0),
                "{input:?}: still subscribed"
            );
        }
    }
}

/// A replica of `master`, in sync.
fn replica_of(master: &Redis) -> Redis {
    let port = master.port().to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]);
    wait_until(HANG, "the replica online", || {
        master
            .info_field("replication", "slave0")
            .is_some_and(|v| v.contains("state=online"))
    });
    replica
}

/// WAIT counts the replicas that have the client's writes, though they went over the shared
/// connection: with the replica stopped, a write made just before is not counted.
#[test]
fn wait_counts_replicas_that_have_the_clients_writes() {
    let master = Redis::start();
    let replica = replica_of(&master);
    let relayer = Relayer::for_redis(&master, "");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "1"]), Reply::ok());
    wait_until(HANG, "the write on the replica", || {
        replica.try_query(&["GET", "k"]) == Ok(Some("1".to_string()))
    });
    // A stopped replica acknowledges nothing: the client's next write is not on it, whatever the
    // connection WAIT runs on.
    let pid = replica.pid().unwrap();
    send_signal(pid, libc::SIGSTOP);
    assert_eq!(c.cmd(&["SET", "k", "2"]), Reply::ok());
    let stopped = c.cmd(&["WAIT", "1", "300"]);
    send_signal(pid, libc::SIGCONT);
    assert_eq!(stopped, Reply::int(0), "WAIT counted a replica without the write");
    assert_eq!(c.cmd(&["WAIT", "1", "10000"]), Reply::int(1));
    assert_eq!(replica.query::<Option<String>>(&["GET", "k"]), Some("2".into()));
    // In a pipeline, behind the write.
    send_signal(pid, libc::SIGSTOP);
    let replies = c.pipeline(&[vec!["SET", "k", "3"], vec!["WAIT", "1", "300"]]);
    send_signal(pid, libc::SIGCONT);
    assert_eq!(replies, vec![Reply::ok(), Reply::int(0)]);
    // A WATCHing client's WAIT (on the connection WATCH holds) too.
    assert_eq!(c.cmd(&["WATCH", "k"]), Reply::ok());
    send_signal(pid, libc::SIGSTOP);
    assert_eq!(c.cmd(&["SET", "k", "4"]), Reply::ok());
    let stopped = c.cmd(&["WAIT", "1", "300"]);
    send_signal(pid, libc::SIGCONT);
    assert_eq!(stopped, Reply::int(0));
}

/// The id of the backend connection whose last command was `cmd`.
fn backend_id_running(redis: &Redis, cmd: &str) -> String {
    let lines = backend_clients(redis);
    let line = lines
        .iter()
        .find(|l| l.contains(&format!(" cmd={cmd} ")))
        .unwrap_or_else(|| panic!("no connection ran {cmd}: {lines:?}"));
    line.split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .unwrap()
        .to_string()
}

/// The backend closing the connection a WATCH holds (restart, timeout, CLIENT KILL) loses the
/// WATCH: EXEC fails instead of running without it.
#[test]
fn exec_fails_once_the_watch_connection_is_lost() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    let mut other = relayer.client();
    assert_eq!(c.cmd(&["SET", "balance", "10"]), Reply::ok());
    for end in ["EXEC", "UNWATCH"] {
        assert_eq!(c.cmd(&["WATCH", "balance"]), Reply::ok());
        let id = backend_id_running(&redis, "watch");
        assert_eq!(redis.client().cmd(&["CLIENT", "KILL", "ID", &id]), Reply::int(1));
        assert_eq!(other.cmd(&["SET", "balance", "99"]), Reply::ok());
        // Only so that the relayer sees the close before EXEC (EXEC fails either way).
        std::thread::sleep(Duration::from_millis(200));
        if end == "UNWATCH" {
            // Giving the WATCH up makes the next transaction an ordinary one.
            assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok());
        }
        assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
        assert_eq!(c.cmd(&["SET", "balance", "20"]), Reply::status("QUEUED"));
        let exec = c.cmd(&["EXEC"]);
        if end == "EXEC" {
            assert!(
                exec.is_error_starting("EXECABORT") && exec.error_text().unwrap().contains("WATCH"),
                "{exec:?}"
            );
            assert_eq!(other.cmd(&["GET", "balance"]), Reply::bulk("99"));
        } else {
            assert_eq!(exec, Reply::array(vec![Reply::ok()]));
            assert_eq!(other.cmd(&["GET", "balance"]), Reply::bulk("20"));
        }
    }
    // Once EXEC reported it, the client goes on as usual.
    assert_eq!(c.cmd(&["WATCH", "balance"]), Reply::ok());
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", "balance"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(vec![Reply::int(21)]));
}

/// A backend without RESET (Redis before 6.2; here renamed away): released dedicated connections
/// are closed instead of reused (a warning says why, once), and never leak a slot of
/// `maxDedicatedConnections`; a subscriber's own RESET and QUIT still end pub/sub.
#[test]
fn released_connections_are_closed_when_the_backend_refuses_reset() {
    let redis = Redis::start_with(&["--rename-command", "RESET", ""]);
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 2");
    let mut c = relayer.client();
    for round in 0..5 {
        assert_eq!(
            c.cmd(&["BRPOP", "none", "0.01"]),
            Reply::NilArray,
            "round {round}"
        );
        assert_eq!(c.cmd(&["WATCH", "k"]), Reply::ok(), "round {round}");
        assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok(), "round {round}");
        let sub = c.cmd(&["SUBSCRIBE", "ch"]);
        assert_eq!(
            sub,
            Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("ch"), Reply::int(1)]),
            "round {round}"
        );
        assert_eq!(c.cmd(&["RESET"]), Reply::status("RESET"), "round {round}");
        assert_eq!(c.cmd(&["PUBLISH", "ch", "x"]), Reply::int(0), "round {round}");
    }
    let mut q = relayer.client();
    assert!(!q.cmd(&["SUBSCRIBE", "ch"]).is_error());
    assert_eq!(q.cmd(&["QUIT"]), Reply::ok());
    q.expect_closed();
    // Only the two listeners' shared connections are left.
    wait_until(HANG, "released connections closed", || {
        backend_clients(&redis).len() == 2
    });
    let log = relayer.log();
    assert_eq!(log.matches("refused RESET").count(), 1, "{log}");
}

/// A client of the relayer once these commands succeeded (a way into pass-through).
fn client_after(relayer: &Relayer, setup: &[Vec<&str>]) -> Client {
    let mut c = relayer.client();
    for step in setup {
        assert!(!c.cmd(step).is_error(), "{step:?}");
    }
    c
}

/// `c`, blocked in a BLPOP on `q`, leaves: no BLPOP is left blocked in Redis to eat the next
/// push, which `other` gets back.
fn leave_while_blocked(redis: &Redis, c: Client, other: &mut Client, round: usize) {
    wait_until(HANG, "BLPOP blocked", || blocked_on(redis, "blpop") == 1);
    drop(c);
    wait_until(HANG, "no BLPOP left blocked", || blocked_on(redis, "blpop") == 0);
    let item = format!("item-{round}");
    assert_eq!(other.cmd(&["LPUSH", "q", &item]), Reply::int(1));
    assert_eq!(other.cmd(&["RPOP", "q"]), Reply::bulk(&item));
}

/// A RESP3 client (or a RESP2 one that unsubscribed from everything) can run any command on its
/// connection: one that leaves while blocked leaves no blocked command in Redis to eat the next
/// push.
#[test]
fn pass_through_clients_gone_while_blocked_leave_no_blocked_command() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut other = relayer.client();
    for (i, setup) in [
        vec![vec!["HELLO", "3"]],
        vec![vec!["SUBSCRIBE", "a"], vec!["UNSUBSCRIBE", "a"]],
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = client_after(&relayer, &setup);
        c.send(&["BLPOP", "q", "0"]);
        leave_while_blocked(&redis, c, &mut other, i);
    }
}

/// After a SIGHUP that changes the url, a client's next blocking command runs on the new
/// backend, like its other commands.
#[test]
fn reload_moves_dedicated_commands_to_the_new_backend() {
    let (a, b) = (Redis::start(), Redis::start());
    let listen = tcp_listen();
    let mut relayer = Relayer::start(&redis_entry(&listen, &a.url(), ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["BRPOP", "q", "0.01"]), Reply::NilArray);
    relayer.reload(&redis_entry(&listen, &b.url(), ""));
    assert_eq!(a.client().cmd(&["RPUSH", "q", "from-a"]), Reply::int(1));
    assert_eq!(b.client().cmd(&["RPUSH", "q", "from-b"]), Reply::int(1));
    assert_eq!(c.cmd(&["BLPOP", "q", "5"]), popped("q", "from-b"));
    assert_eq!(c.cmd(&["SUBSCRIBE", "ch"]).as_array().map(|a| a.len()), Some(3));
    assert_eq!(b.client().cmd(&["PUBLISH", "ch", "m"]), Reply::int(1));
}

/// A command meant to enter pub/sub or MONITOR that the backend refuses (wrong arity, an ACL
/// without the command) leaves the client an ordinary one: its connection is given back.
#[test]
fn a_refused_subscribe_or_monitor_leaves_the_client_an_ordinary_one() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(
        admin.q("ACL SETUSER app on >secret ~* &* +@all -monitor"),
        Reply::ok()
    );
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, "maxDedicatedConnections = 1"));
    let mut c = relayer.client();
    let mut other = relayer.client();
    for refused in [vec!["SUBSCRIBE"], vec!["MONITOR"]] {
        let r = c.cmd(&refused);
        assert!(r.is_error(), "{refused:?}: {r:?}");
        // The client's commands are the relayer's again (CLIENT NO-EVICT is refused, not sent)...
        assert!(c
            .cmd(&["CLIENT", "NO-EVICT", "on"])
            .is_error_starting("ERR relayer:"));
        assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
        // ...and the one dedicated connection is free for another client.
        assert_eq!(
            other.cmd(&["BRPOP", "none", "0.01"]),
            Reply::NilArray,
            "{refused:?}"
        );
    }
}

/// Published messages are never dropped, however fast they come.
#[test]
fn a_burst_of_messages_arrives_whole_and_in_order() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "burst"]).is_error());
    let n = 5000;
    let publishes: Vec<Vec<String>> = (0..n)
        .map(|i| vec!["PUBLISH".into(), "burst".into(), format!("m{i}")])
        .collect();
    let replies = redis.client().pipeline(&publishes);
    assert!(replies.iter().all(|r| *r == Reply::int(1)));
    for i in 0..n {
        assert_eq!(
            sub.read_reply(),
            Reply::array(vec![
                Reply::bulk("message"),
                Reply::bulk("burst"),
                Reply::bulk(format!("m{i}"))
            ])
        );
    }
}

/// A subscriber that does not read is pushed back: the relayer stops reading its connection, so
/// the backlog builds up in Redis (which applies its client-output-buffer-limit for pubsub) and
/// not in the relayer. Once it reads, everything arrives.
#[test]
fn a_slow_subscriber_is_pushed_back_to_redis() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "big"]).is_error());
    let payload = "x".repeat(1024);
    let n = 16 * 1024;
    let mut publisher = redis.client();
    for chunk in 0..16 {
        let publishes: Vec<Vec<String>> = (0..n / 16)
            .map(|i| {
                vec![
                    "PUBLISH".into(),
                    "big".into(),
                    format!("{:06}{payload}", chunk * (n / 16) + i),
                ]
            })
            .collect();
        assert!(publisher.pipeline(&publishes).iter().all(|r| *r == Reply::int(1)));
    }
    let omem = || -> u64 {
        backend_clients(&redis)
            .iter()
            .filter(|l| l.contains(" sub=1 "))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("omem=")))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    wait_until(HANG, "the backlog held by Redis", || omem() > 1 << 20);
    for i in 0..n {
        let r = sub.read_reply();
        let ok = matches!(r.as_array(), Some([_, _, Reply::Bulk(b)]) if b.starts_with(format!("{i:06}").as_bytes()));
        assert!(ok, "message {i}: {:?}", r);
    }
}

/// On its own connection (RESP3, MONITOR) a client's AUTH and HELLO AUTH are still checked by
/// the relayer (they never switch the backend user), CLIENT KILL is the relayer's (about its
/// clients) and CLIENT UNBLOCK is refused; the answers come in order with the others.
#[test]
fn pass_through_keeps_the_relayers_guards() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(admin.q("ACL SETUSER app on >secret ~* &* +@all"), Reply::ok());
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, ""));

    let mut c = relayer.client();
    assert!(matches!(c.q("HELLO 3"), Reply::Map(_)));
    let replies = c.pipeline(&[
        vec!["PING"],
        vec!["AUTH", "default", "admin"],
        vec!["ACL", "WHOAMI"],
        vec!["HELLO", "3", "AUTH", "default", "admin"],
        vec!["ACL", "WHOAMI"],
        vec!["CLIENT", "KILL", "ID", "999999"],
        vec!["AUTH", "admin"],
        vec!["ECHO", "last"],
    ]);
    assert_eq!(replies[0], Reply::status("PONG"));
    // Without a listener password, AUTH default <anything> is Redis' nopass answer.
    assert_eq!(replies[1], Reply::ok());
    assert_eq!(replies[2], Reply::bulk("app"));
    assert!(matches!(replies[3], Reply::Map(_)), "{:?}", replies[3]);
    assert_eq!(replies[4], Reply::bulk("app"));
    assert_eq!(replies[5], Reply::int(0));
    assert!(
        replies[6].is_error_starting("ERR AUTH <password> called without"),
        "{:?}",
        replies[6]
    );
    assert_eq!(replies[7], Reply::bulk("last"));

    let mut mon = relayer.client();
    assert_eq!(mon.cmd(&["MONITOR"]), Reply::ok());
    mon.send_many(&[
        vec!["AUTH", "default", "admin"],
        vec!["ACL", "WHOAMI"],
        vec!["CLIENT", "UNBLOCK", "999999"],
    ]);
    // What the monitor streams (status lines with a timestamp) is left out.
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let r = mon.read_reply();
        if !matches!(&r, Reply::Status(s) if s.contains(" [")) {
            answers.push(r);
        }
    }
    assert_eq!(answers[0], Reply::ok());
    assert_eq!(answers[1], Reply::bulk("app"));
    assert!(answers[2].is_error_starting("ERR relayer:"), "{:?}", answers[2]);
}

/// `maxDedicatedConnections` holds for the listener, however many workers share it: with two
/// workers each serving three clients, two BLPOPs block and four are refused.
#[test]
fn the_dedicated_limit_holds_across_workers() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let relayer = Relayer::start(&format!(
        "workers = 2\n{}",
        redis_entry(&listen, &redis.url(), "maxDedicatedConnections = 2")
    ));
    let mut clients: Vec<Client> = clients_by_worker(&relayer, 3).into_iter().flatten().collect();
    for c in &mut clients {
        c.send(&["BLPOP", "l", "0"]);
    }
    let mut refused = 0;
    let mut waiting: Vec<usize> = (0..clients.len()).collect();
    wait_until(HANG, "every BLPOP blocked or refused", || {
        waiting.retain(|&i| {
            clients[i].set_read_timeout(Duration::from_millis(50));
            match clients[i].try_read_reply() {
                Ok(r) => {
                    assert!(
                        r.is_error_starting("ERR relayer: too many dedicated connections"),
                        "{r:?}"
                    );
                    refused += 1;
                    false
                }
                Err(_) => true,
            }
        });
        refused + blocked_on(&redis, "blpop") == clients.len()
    });
    assert_eq!(blocked_on(&redis, "blpop"), 2);
    assert_eq!(refused, 4);
}

/// When the url's ACL user may not PUBLISH to the relayer's channel, WAIT says so rather than
/// counting replicas that may not have the client's writes.
#[test]
fn wait_without_the_publish_it_needs_is_an_error() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(
        admin.q("ACL SETUSER app on >secret ~* resetchannels +@all"),
        Reply::ok()
    );
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    let r = c.cmd(&["WAIT", "0", "0"]);
    assert!(
        r.is_error_starting("ERR relayer: WAIT needs 'PUBLISH __smart-relayer:wait'")
            && r.error_text().unwrap().contains("NOPERM"),
        "{r:?}"
    );
    // The client goes on; with the channel allowed, WAIT works.
    assert_eq!(admin.q("ACL SETUSER app &__smart-relayer:wait"), Reply::ok());
    assert_eq!(c.cmd(&["WAIT", "0", "0"]), Reply::int(0));
}

/// Connections Redis accepted so far (this question's own included).
fn connections_received(redis: &Redis) -> u64 {
    redis
        .info_field("stats", "total_connections_received")
        .and_then(|v| v.parse().ok())
        .expect("total_connections_received")
}

/// A client that leaves while the relayer is not reading it (a blocking command then QUIT: the
/// relayer reads nothing after QUIT; in pass-through, nothing until QUIT's reset is answered)
/// is seen leaving, as Redis sees it: no blocked command is left to eat the next push.
#[test]
fn clients_leaving_while_not_read_leave_no_blocked_command() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut other = relayer.client();
    for (i, setup) in [vec![], vec![vec!["HELLO", "3"]]].into_iter().enumerate() {
        let mut c = client_after(&relayer, &setup);
        c.send_many(&[vec!["BLPOP", "q", "0"], vec!["QUIT"]]);
        leave_while_blocked(&redis, c, &mut other, i);
    }
}

/// Sends `BRPOP key 0` until it is not refused for want of a free dedicated connection; true
/// once it blocks in Redis (the only BRPOP there), false when it got another reply (in `got`).
fn brpop_when_free(redis: &Redis, c: &mut Client, key: &str, got: &mut Option<Reply>) -> bool {
    c.set_read_timeout(Duration::from_millis(50));
    c.send(&["BRPOP", key, "0"]);
    poll_until(HANG, "BRPOP blocked", || {
        if blocked_on(redis, "brpop") == 1 {
            return Some(true);
        }
        match c.try_read_reply() {
            Ok(r) if r.is_error_starting("ERR relayer: too many dedicated connections") => {
                c.send(&["BRPOP", key, "0"]);
                None
            }
            Ok(r) => {
                *got = Some(r);
                Some(false)
            }
            Err(_) => None,
        }
    })
}

/// A connection given back (its RESET and AUTH still on their way) can be taken and given back
/// again before their replies come: a client that takes it for a blocking command and leaves
/// while the relayer waits for its earlier commands (the barrier). Every reply the backend owes
/// is still counted, so the next owner gets its own replies, nothing else.
#[test]
fn a_connection_given_back_twice_within_a_round_trip_keeps_replies_in_place() {
    let redis = Redis::start();
    let mut admin = redis.client();
    // A user of its own, so that AUTH follows each RESET.
    assert_eq!(admin.q("ACL SETUSER app on >secret ~* &* +@all"), Reply::ok());
    let link = DelayLink::start(redis.port(), Duration::from_millis(400));
    let url = format!("redis://app:secret@127.0.0.1:{}", link.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, "maxDedicatedConnections = 1"));
    let mut b = relayer.client();
    // B's connection starts on DB 3: taking it writes a SELECT too.
    assert_eq!(b.cmd(&["SELECT", "3"]), Reply::ok());
    let mut a = relayer.client();
    assert_eq!(a.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    // Given back: RESET and AUTH are on their way. B takes it, its BLPOP waits for the barrier.
    b.send(&["BLPOP", "q", "0"]);
    b.set_read_timeout(Duration::from_millis(100));
    assert!(b.try_read_reply().is_err(), "B's BLPOP was not held");
    drop(b);
    // C gets the connection once B's is given back.
    let mut c = relayer.client();
    let mut got = None;
    let blocked = brpop_when_free(&redis, &mut c, "q2", &mut got);
    assert!(blocked, "C's BRPOP got {got:?}");
    assert_eq!(admin.cmd(&["LPUSH", "q2", "for-c"]), Reply::int(1));
    c.set_read_timeout(HANG);
    assert_eq!(c.read_reply(), popped("q2", "for-c"));
    assert_eq!(c.cmd(&["LLEN", "q2"]), Reply::int(0));
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    assert_eq!(c.cmd(&["LPUSH", "q2", "kept"]), Reply::int(1));
    assert_eq!(c.cmd(&["BLPOP", "q2", "1"]), popped("q2", "kept"));
}

/// In pass-through a client can produce any reply, `+RESET` included (a script's status
/// reply): the end of what its connection owes it is found by a token of the relayer's, made
/// when the client's RESET is sent, so its blocked command is never taken for finished, its
/// reply never lost, and its connection never given to someone else while the command is
/// still blocked.
#[test]
fn a_reply_that_looks_like_reset_does_not_end_pass_through() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 2");
    let mut pusher = redis.client();
    for (i, setup) in [
        vec![vec!["HELLO", "3"]],
        vec![vec!["SUBSCRIBE", "a"], vec!["UNSUBSCRIBE", "a"]],
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = client_after(&relayer, &setup);
        a.send_many(&[
            vec!["EVAL", "return {ok='RESET'}", "0"],
            vec!["BLPOP", "k", "0"],
            vec!["RESET"],
        ]);
        wait_until(HANG, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
        // Others' dedicated commands get their own replies.
        let mut c = relayer.client();
        for _ in 0..3 {
            assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray, "round {i}");
            assert_eq!(c.cmd(&["SET", "x", "1"]), Reply::ok(), "round {i}");
            assert_eq!(c.cmd(&["GET", "x"]), Reply::bulk("1"), "round {i}");
        }
        let item = format!("item-{i}");
        assert_eq!(pusher.cmd(&["LPUSH", "k", &item]), Reply::int(1));
        // The script's reply is held back while RESET's is awaited (it could be RESET's), but
        // comes first.
        assert_eq!(
            a.read_replies(3),
            vec![Reply::status("RESET"), popped("k", &item), Reply::status("RESET")],
            "round {i}"
        );
        assert_eq!(a.cmd(&["GET", "x"]), Reply::bulk("1"), "round {i}");
        assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray, "round {i}");
        assert_eq!(pusher.cmd(&["LLEN", "k"]), Reply::int(0));
    }
}

/// The barrier (a PING on the shared connection that says the client's earlier commands ran)
/// failing, because the shared connection was lost, proves nothing: the command waiting for it
/// gets an error instead of running.
#[test]
fn a_failed_barrier_fails_the_command_waiting_for_it() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(300));
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &link.url(), ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "a", "1"]), Reply::ok());
    let shared = backend_id_running(&redis, "set");
    c.send(&["BLPOP", "q", "0"]);
    assert_eq!(
        redis.client().cmd(&["CLIENT", "KILL", "ID", &shared]),
        Reply::int(1)
    );
    c.set_read_timeout(Duration::from_secs(10));
    let r = c.try_read_reply();
    assert!(
        matches!(&r, Ok(r) if r.is_error_starting("ERR relayer: 'BLPOP' was not sent, as the commands before it may not have run (connection to backend")),
        "{r:?}"
    );
    assert_eq!(blocked_on(&redis, "blpop"), 0);
    let mut other = relayer.client();
    let r = poll_until(HANG, "the shared connection back", || {
        let r = other.cmd(&["LPUSH", "q", "kept"]);
        (!r.is_error()).then_some(r)
    });
    assert_eq!(r, Reply::int(1));
    assert_eq!(other.cmd(&["LLEN", "q"]), Reply::int(1));
    assert_eq!(c.cmd(&["BLPOP", "q", "1"]), popped("q", "kept"));
}

/// Only the reply to the relayer's own RESET says whether the backend does RESET: a client in
/// pass-through whose script returns the same error does not make the relayer close every
/// released connection.
#[test]
fn a_client_cannot_make_the_pool_give_up_reset() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    let mut r = relayer.client();
    assert!(matches!(r.q("HELLO 3"), Reply::Map(_)));
    let fake = r.cmd(&[
        "EVAL",
        "return redis.error_reply(\"ERR unknown command 'reset', with args beginning with: \")",
        "0",
    ]);
    assert!(fake.is_error_starting("ERR unknown command 'reset'"), "{fake:?}");
    assert_eq!(r.q("RESET"), Reply::status("RESET"));
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    // Released connections are still reused: no new backend connection (but the question's).
    let before = connections_received(&redis);
    for _ in 0..3 {
        assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    }
    assert_eq!(connections_received(&redis), before + 1);
    let log = relayer.log();
    assert!(!log.contains("refused RESET"), "{log}");
}

/// A refused RESET makes released connections be closed, for a while only: a new connection
/// tries RESET again a minute later, so once the backend does it (here: restarted without the
/// command renamed away), released connections are reused. (Takes a minute.)
#[test]
fn reset_is_tried_again_a_minute_after_a_refusal() {
    let port = free_port();
    let mut old = Redis::try_start_on(port, &["--rename-command", "RESET", ""]).unwrap();
    let url = format!("tcp://127.0.0.1:{port}");
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    wait_until(HANG, "the refusal logged", || {
        relayer.log().contains("refused RESET")
    });
    old.kill();
    drop(old);
    let redis = poll_until(HANG, "redis started again on its port", || {
        Redis::try_start_on(port, &[]).ok()
    });
    wait_until(HANG, "the relayer connected again", || {
        c.cmd(&["BRPOP", "none", "0.01"]) == Reply::NilArray
    });
    // Two BRPOPs open a connection each while RESET is taken as refused; reused, one at most.
    let mut opened = || {
        let before = connections_received(&redis);
        for _ in 0..2 {
            assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
        }
        connections_received(&redis) - before - 1
    };
    assert_eq!(opened(), 2);
    poll_until(Duration::from_secs(120), "released connections reused", || {
        std::thread::sleep(Duration::from_secs(1));
        (opened() <= 1).then_some(())
    });
    assert_eq!(opened(), 0);
    assert_eq!(relayer.log().matches("refused RESET").count(), 1);
}

/// `n` clients of the entry on each of its two workers, told apart by the id of the shared
/// backend connection that serves them (CLIENT INFO is forwarded); connected from several
/// threads at once so that both workers accept.
fn clients_by_worker(relayer: &Relayer, n: usize) -> Vec<Vec<Client>> {
    let mut by_worker: std::collections::HashMap<String, Vec<Client>> = Default::default();
    for _ in 0..20 {
        let batch: Vec<(String, Client)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = relayer.client();
                        let info = c.cmd(&["CLIENT", "INFO"]).as_str().unwrap();
                        let id = info.split(' ').next().unwrap().to_string();
                        (id, c)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (id, c) in batch {
            by_worker.entry(id).or_default().push(c);
        }
        if by_worker.len() == 2 && by_worker.values().all(|v| v.len() >= n) {
            break;
        }
    }
    assert_eq!(by_worker.len(), 2, "clients did not spread over the two workers");
    by_worker
        .into_values()
        .map(|v| v.into_iter().take(n).collect())
        .collect()
}

/// An idle connection in one worker's pool counts against `maxDedicatedConnections` for the
/// whole entry: a client of another worker refused for it has it closed, so that its next try
/// gets a connection (not only once the idle one times out).
#[test]
fn idle_connections_of_another_worker_make_room() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let relayer = Relayer::start(&format!(
        "workers = 2\n{}",
        redis_entry(&listen, &redis.url(), "maxDedicatedConnections = 1")
    ));
    let mut workers = clients_by_worker(&relayer, 1);
    let mut b = workers.pop().unwrap().pop().unwrap();
    let mut a = workers.pop().unwrap().pop().unwrap();
    assert_eq!(a.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    let r = poll_until(HANG, "B's BRPOP given a connection", || {
        let r = b.cmd(&["BRPOP", "none", "0.01"]);
        if r.is_error_starting("ERR relayer: too many dedicated connections") {
            return None;
        }
        Some(r)
    });
    assert_eq!(r, Reply::NilArray);
    // And back.
    let r = poll_until(HANG, "A's BRPOP given a connection", || {
        let r = a.cmd(&["BRPOP", "none", "0.01"]);
        if r.is_error_starting("ERR relayer: too many dedicated connections") {
            return None;
        }
        Some(r)
    });
    assert_eq!(r, Reply::NilArray);
}

/// CLIENT SETINFO is the relayer's in pass-through too: it never reaches the backend, whose
/// RESET would not clear it for the connection's next owner.
#[test]
fn client_setinfo_stays_with_the_relayer_in_pass_through() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    // Answered as the backend would (a redis-server before 7.2 does not know SETINFO), which
    // the relayer knows once the backend has described its commands.
    relayer.wait_log_line(&["commands learned from the backend's COMMAND"], HANG);
    let mut c = relayer.client();
    assert!(matches!(c.q("HELLO 3"), Reply::Map(_)));
    let mut direct = redis.client();
    assert!(matches!(direct.q("HELLO 3"), Reply::Map(_)));
    for cmd in [
        &["CLIENT", "SETINFO", "LIB-NAME", "mylib"][..],
        &["CLIENT", "SETINFO", "LIB-VER", "1.2.3"],
        &["CLIENT", "SETINFO", "BAD", "x"],
        &["CLIENT", "SETINFO", "LIB-NAME"],
    ] {
        assert_eq!(
            show_bytes(&c.cmd_raw(cmd), 200),
            show_bytes(&direct.cmd_raw(cmd), 200),
            "{cmd:?}"
        );
    }
    drop(direct);
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    let lines = backend_clients(&redis);
    assert!(
        lines.iter().all(|l| !l.contains("mylib") && !l.contains("1.2.3")),
        "{lines:?}"
    );
}

/// The pub/sub output buffer Redis holds for the relayer's subscribed connections, in bytes.
fn subscribers_omem(redis: &Redis) -> u64 {
    backend_clients(redis)
        .iter()
        .filter(|l| l.contains(" sub=1 "))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("omem=")))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// `BRPOP none 0.01` until it is not refused for want of a free dedicated connection.
fn brpop_nothing(c: &mut Client) -> Reply {
    poll_until(HANG, "a dedicated connection", || {
        let r = c.cmd(&["BRPOP", "none", "0.01"]);
        (!r.is_error_starting("ERR relayer: too many dedicated connections")).then_some(r)
    })
}

/// A subscriber that leaves with a backlog held by Redis: its connection is read until push
/// mode ended (RESET, then the token), and only then given to another client, which gets its
/// own replies and none of the subscriber's messages.
#[test]
fn a_subscriber_leaving_with_a_backlog_hands_none_of_it_to_the_next_owner() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 1");
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "big"]).is_error());
    let payload = "x".repeat(1024);
    let mut publisher = redis.client();
    for _ in 0..16 {
        let publishes: Vec<Vec<&str>> = (0..1024).map(|_| vec!["PUBLISH", "big", &payload]).collect();
        assert!(publisher.pipeline(&publishes).iter().all(|r| *r == Reply::int(1)));
    }
    wait_until(HANG, "the backlog held by Redis", || {
        subscribers_omem(&redis) > 1 << 20
    });
    let mut next = relayer.client();
    drop(sub);
    assert_eq!(brpop_nothing(&mut next), Reply::NilArray);
    // On the same connection (the only one), replies in place.
    assert_eq!(
        next.pipeline(&[
            vec!["WATCH", "k"],
            vec!["GET", "k"],
            vec!["MULTI"],
            vec!["SET", "k", "v"],
            vec!["EXEC"],
            vec!["BRPOP", "none", "0.01"]
        ]),
        vec![
            Reply::ok(),
            Reply::Nil,
            Reply::ok(),
            Reply::status("QUEUED"),
            Reply::array(vec![Reply::ok()]),
            Reply::NilArray
        ]
    );
}

/// A subscriber that sends QUIT and goes away before its answer: nothing of its can be left
/// running, so its connection is reset and reused rather than closed.
#[test]
fn a_subscriber_gone_right_after_quit_leaves_its_connection_for_reuse() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(200));
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &link.url(), "maxDedicatedConnections = 1"));
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "ch"]).is_error());
    let opened = link.accepted();
    sub.send(&["QUIT"]);
    drop(sub);
    let mut next = relayer.client();
    assert_eq!(brpop_nothing(&mut next), Reply::NilArray);
    assert_eq!(
        link.accepted(),
        opened,
        "the subscriber's connection was not reused"
    );
}

/// RESET refused by the backend (here renamed away) leaves the connection subscribed: it is
/// closed at once, so no message published meanwhile reaches the client after its `+RESET`.
#[test]
fn no_message_follows_the_reset_of_a_subscriber_when_the_backend_refuses_reset() {
    let redis = Redis::start_with(&["--rename-command", "RESET", ""]);
    let relayer = Relayer::for_redis(&redis, "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = stop.clone();
        let mut p = redis.client();
        std::thread::spawn(move || {
            let publishes: Vec<Vec<&str>> = (0..100).map(|_| vec!["PUBLISH", "busy", "m"]).collect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                p.pipeline(&publishes);
            }
        })
    };
    for round in 0..5 {
        let mut sub = relayer.client();
        assert!(!sub.cmd(&["SUBSCRIBE", "busy"]).is_error());
        assert!(sub.read_reply().as_array().is_some(), "round {round}");
        sub.send(&["RESET"]);
        loop {
            let r = sub.read_reply();
            if r == Reply::status("RESET") {
                break;
            }
            // Messages, and the relayer's RESET refused (a message came in between).
            assert!(r.as_array().is_some() || r.is_error(), "round {round}: {r:?}");
        }
        assert_eq!(sub.cmd(&["GET", "k"]), Reply::Nil, "round {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
}

/// The token that ends push mode answered with an error (the url's password changed: AUTH after
/// RESET is refused, and PING gets NOAUTH) or queued (RESET unknown to the backend inside a
/// client's MULTI): the client's RESET is still answered, its connection closed.
#[test]
fn a_reset_whose_token_cannot_come_back_is_still_answered() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(admin.q("ACL SETUSER app on >secret ~* &* +@all"), Reply::ok());
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, ""));
    let mut sub = relayer.client();
    sub.set_read_timeout(Duration::from_secs(10));
    assert!(!sub.cmd(&["SUBSCRIBE", "ch"]).is_error());
    assert_eq!(admin.q("ACL SETUSER app resetpass >rotated"), Reply::ok());
    assert_eq!(sub.cmd(&["RESET"]), Reply::status("RESET"));
    assert_eq!(sub.cmd(&["GET", "k"]), Reply::Nil);
    let backend = redis.backend_client();
    assert_eq!(backend.query::<(), _>(&["AUTH", "admin"]), Ok(()));
    let lines = client_lines(&backend);
    assert!(!lines.is_empty(), "the admin's connection at least");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" sub=1 ")).count(),
        0,
        "{lines:?}"
    );

    let redis = Redis::start_with(&["--rename-command", "RESET", ""]);
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    c.set_read_timeout(Duration::from_secs(10));
    assert!(matches!(c.q("HELLO 3"), Reply::Map(_)));
    // Client tracking puts a RESP3 client on its own connection, in pass-through.
    assert_eq!(c.q("CLIENT TRACKING on"), Reply::ok());
    assert_eq!(c.q("MULTI"), Reply::ok());
    assert_eq!(c.q("SET k v"), Reply::status("QUEUED"));
    assert_eq!(c.q("RESET"), Reply::status("RESET"));
    // The transaction never ran, and the client speaks RESP2 again.
    assert_eq!(c.q("GET k"), Reply::Nil);
}

/// The end of push mode that does not come (the backend hangs) is given up after the connect
/// timeout: the client's RESET gets an error, and the client is disconnected as when its
/// connection is lost.
#[test]
fn a_reset_the_backend_does_not_answer_is_given_up() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "connectTimeout = 1");
    let mut sub = relayer.client();
    assert!(!sub.cmd(&["SUBSCRIBE", "ch"]).is_error());
    let pid = redis.pid().unwrap();
    send_signal(pid, libc::SIGSTOP);
    sub.set_read_timeout(Duration::from_secs(8));
    sub.send(&["RESET"]);
    let r = sub.try_read_reply();
    send_signal(pid, libc::SIGCONT);
    let r = r.unwrap();
    assert!(r.is_error_starting("ERR relayer:"), "{r:?}");
    sub.expect_closed();
}

/// A url user that may not run PING: the barrier's error reply still says that the client's
/// earlier commands ran (only the relayer's own errors say otherwise), and the end of push mode
/// (whose token is a PING) still answers the client's RESET.
#[test]
fn a_user_without_ping_still_gets_dedicated_connections() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(
        admin.q("ACL SETUSER app on >secret ~* &* +@all -ping"),
        Reply::ok()
    );
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &url, ""));
    let mut c = relayer.client();
    c.set_read_timeout(Duration::from_secs(10));
    assert_eq!(c.cmd(&["SET", "k", "1"]), Reply::ok());
    assert_eq!(c.cmd(&["BRPOP", "none", "0.01"]), Reply::NilArray);
    assert_eq!(c.cmd(&["WATCH", "k"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("1"));
    assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok());
    assert!(!c.cmd(&["SUBSCRIBE", "ch"]).is_error());
    assert_eq!(c.cmd(&["RESET"]), Reply::status("RESET"));
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("1"));
}

/// A client that pipelines a transaction on a dedicated connection and half-closes its side
/// gets every reply, as from Redis: only a client blocked or subscribed is dropped when it
/// closes.
#[test]
fn a_client_half_closed_after_a_pipeline_gets_every_reply() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(100));
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &link.url(), ""));
    let mut c = relayer.client();
    c.send_many(&[
        vec!["WATCH", "k"],
        vec!["GET", "k"],
        vec!["MULTI"],
        vec!["SET", "k", "v"],
        vec!["EXEC"],
    ]);
    c.shutdown_write();
    c.set_read_timeout(HANG);
    assert_eq!(
        c.read_replies(5),
        vec![
            Reply::ok(),
            Reply::Nil,
            Reply::ok(),
            Reply::status("QUEUED"),
            Reply::array(vec![Reply::ok()])
        ]
    );
    c.expect_closed();
    assert_eq!(redis.query::<Option<String>>(&["GET", "k"]), Some("v".into()));
}

/// A client that half-closes while its blocking command still waits for the commands before
/// it gets their replies, as from Redis; the blocking command is never run (it takes nothing
/// from the list), and the connection is closed.
#[test]
fn a_client_half_closed_behind_a_held_blocking_command_gets_the_replies_before_it() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(100));
    let listen = tcp_listen();
    let relayer = Relayer::start(&redis_entry(&listen, &link.url(), ""));
    let mut c = relayer.client();
    c.send_many(&[vec!["SET", "a", "1"], vec!["BLPOP", "q", "0"]]);
    c.shutdown_write();
    c.set_read_timeout(HANG);
    assert_eq!(c.read_replies(1), vec![Reply::ok()]);
    c.expect_closed();
    assert_eq!(redis.query::<Option<String>>(&["GET", "a"]), Some("1".into()));
    // No BLPOP of the gone client's is left to take an item.
    let mut other = redis.client();
    assert_eq!(other.cmd(&["RPUSH", "q", "x"]), Reply::int(1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        other.cmd(&["LRANGE", "q", "0", "-1"]),
        Reply::array(vec![Reply::bulk("x")])
    );
    // The same for SUBSCRIBE: the SET's reply, then closed, subscribed to nothing.
    let mut c = relayer.client();
    c.send_many(&[vec!["SET", "b", "1"], vec!["SUBSCRIBE", "ch"]]);
    c.shutdown_write();
    c.set_read_timeout(HANG);
    assert_eq!(c.read_replies(1), vec![Reply::ok()]);
    c.expect_closed();
    assert_eq!(
        other.cmd(&["PUBSUB", "NUMSUB", "ch"]),
        Reply::array(vec![Reply::bulk("ch"), Reply::int(0)])
    );
}

/// Server-assisted client caching as client libraries use it: after HELLO 3, CLIENT TRACKING
/// ON runs on the client's own connection, and a key it read that another client changes
/// comes as Redis' invalidation push. RESET turns tracking off there before the connection is
/// given to anyone else. Without HELLO 3 it is refused, saying why.
#[test]
fn client_tracking_after_hello_3_gets_invalidations() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut plain = relayer.client();
    assert!(plain
        .q("CLIENT TRACKING ON")
        .is_error_starting("ERR relayer: 'CLIENT TRACKING' would change a connection shared"));
    let mut c = relayer.client();
    assert!(matches!(c.q("HELLO 3"), Reply::Map(_)));
    assert_eq!(c.q("CLIENT TRACKING ON"), Reply::ok());
    assert_eq!(c.q("GET tracked"), Reply::Null);
    let tracking = || {
        backend_clients(&redis)
            .iter()
            .filter(|l| l.contains(" flags=t ") || l.contains(" flags=Pt "))
            .count()
    };
    assert_eq!(tracking(), 1, "{:?}", backend_clients(&redis));
    assert_eq!(plain.q("SET tracked v"), Reply::ok());
    assert_eq!(
        c.read_reply(),
        Reply::Push(vec![
            Reply::bulk("invalidate"),
            Reply::Array(vec![Reply::bulk("tracked")])
        ])
    );
    assert_eq!(c.q("RESET"), Reply::status("RESET"));
    wait_until(HANG, "no backend connection tracking", || tracking() == 0);
}

/// UNSUBSCRIBE and the like from a client subscribed to nothing: Redis answers once for each
/// channel named; the relayer answers the same bytes itself, on no connection of the client's
/// own (it once passed the first reply, closed the connection on the second, and the client
/// waited for the others for ever).
#[test]
fn unsubscribing_from_nothing_as_redis() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let script: &[&[&str]] = &[
        &["UNSUBSCRIBE", "foo", "bar", "quux"],
        &["PUNSUBSCRIBE", "f*", "b*"],
        &["SUNSUBSCRIBE", "s1", "s2"],
        &["UNSUBSCRIBE"],
        &["PUNSUBSCRIBE"],
        &["PING"],
    ];
    let run = |c: &mut Client| -> Vec<u8> {
        let cmds: Vec<Vec<&str>> = script.iter().map(|a| a.to_vec()).collect();
        c.send_many(&cmds);
        let mut all = Vec::new();
        loop {
            let reply = c.read_raw_reply();
            all.extend_from_slice(&reply);
            if reply == b"+PONG\r\n" {
                return all;
            }
        }
    };
    let want = run(&mut redis.client());
    let got = run(&mut relayer.client());
    assert_eq!(show_bytes(&got, 2000), show_bytes(&want, 2000));
    assert_eq!(
        backend_clients(&redis).len(),
        2,
        "the shared connection and this test's"
    );
}

/// After HELLO 3 the client's id is still the relayer's: CLIENT ID answers it (not the
/// backend connection's), so CLIENT KILL by that id reaches that client.
#[test]
fn client_id_after_hello_3_is_the_one_kill_knows() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut plain = relayer.client();
    let plain_id = plain.q("CLIENT ID");
    let mut c = relayer.client();
    let before = c.q("CLIENT ID");
    assert_ne!(before, plain_id);
    assert!(matches!(c.q("HELLO 3"), Reply::Map(_)));
    assert_eq!(c.q("CLIENT ID"), before);
    let id = before.as_int().unwrap().to_string();
    assert_eq!(plain.cmd(&["CLIENT", "KILL", "ID", &id]), Reply::int(1));
    c.wait_closed(HANG)
        .expect("the killed RESP3 client is disconnected");
    assert_eq!(plain.q("PING"), Reply::status("PONG"));
}

/// RESET turns CLIENT REPLY back on, also when it ends push mode: the replies after it are
/// written (the client waited for ever).
#[test]
fn reset_ending_push_mode_turns_replies_on() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    for enter in ["SUBSCRIBE ch", "HELLO 3"] {
        let mut c = relayer.client();
        c.send_many(&[vec!["CLIENT", "REPLY", "OFF"]]);
        c.send_many(&[enter.split(' ').collect::<Vec<_>>()]);
        if enter.starts_with("SUBSCRIBE") {
            // Redis 7.0 confirms a subscription whatever CLIENT REPLY says.
            assert!(matches!(c.read_reply(), Reply::Array(_)), "{enter}");
        }
        c.send_many(&[vec!["RESET"], vec!["PING"]]);
        let mut replies = Vec::new();
        while replies.last() != Some(&Reply::status("PONG")) {
            replies.push(c.read_reply());
        }
        assert_eq!(
            replies.first(),
            Some(&Reply::status("RESET")),
            "{enter}: {replies:?}"
        );
    }
}
