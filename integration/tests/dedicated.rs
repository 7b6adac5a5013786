//! Commands that hold a connection (blocking pops, XREAD BLOCK, WAIT, pub/sub, MONITOR, WATCH)
//! run on a connection of the client's own, while the other clients keep sharing theirs.

use integration::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The backend's connections (CLIENT LIST lines), but the one asking.
fn backend_clients(redis: &Redis) -> Vec<String> {
    let list = redis.client().cmd(&["CLIENT", "LIST"]);
    list.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains(" cmd=client|list "))
        .map(str::to_string)
        .collect()
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
    wait_until(T, "BLPOP blocked on the backend", || {
        blocked_on(&redis, "blpop") == 1
    });
    // Everyone else still goes through the shared connection without waiting.
    let mut other = relayer.client();
    for i in 0..50 {
        assert_eq!(other.cmd(&["SET", &format!("k{i}"), "v"]), Reply::ok());
    }
    assert_eq!(other.cmd(&["LPUSH", "jobs", "job-1"]), Reply::int(1));
    assert_eq!(
        waiter.read_reply(),
        Reply::array(vec![Reply::bulk("jobs"), Reply::bulk("job-1")])
    );
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
    wait_until(T, "second BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    assert_eq!(
        other.cmd(&["EXISTS", "after"]),
        Reply::int(0),
        "SET overtook the BLPOP"
    );
    assert_eq!(other.cmd(&["RPUSH", "q2", "x"]), Reply::int(1));
    assert_eq!(
        waiter.read_replies(3),
        vec![
            Reply::array(vec![Reply::bulk("q2"), Reply::bulk("x")]),
            Reply::bulk("v"),
            Reply::ok()
        ]
    );
}

#[test]
fn other_blocking_commands_work() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut a = relayer.client();
    let mut b = relayer.client();
    a.send(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_until(T, "BLMOVE blocked", || blocked_on(&redis, "blmove") == 1);
    assert_eq!(b.cmd(&["RPUSH", "src", "m"]), Reply::int(1));
    assert_eq!(a.read_reply(), Reply::bulk("m"));
    a.send(&["BZPOPMIN", "z", "0"]);
    wait_until(T, "BZPOPMIN blocked", || blocked_on(&redis, "bzpopmin") == 1);
    assert_eq!(b.cmd(&["ZADD", "z", "1.5", "m"]), Reply::int(1));
    assert_eq!(
        a.read_reply(),
        Reply::array(vec![Reply::bulk("z"), Reply::bulk("m"), Reply::bulk("1.5")])
    );
    a.send(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_until(T, "XREAD blocked", || blocked_on(&redis, "xread") == 1);
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
    assert_eq!(a.cmd(&["WAIT", "0", "0"]), Reply::int(0));
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
    // SELECT follows the client onto and off the dedicated connection.
    assert_eq!(c.cmd(&["SELECT", "3"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "in3", "yes"]), Reply::ok());
    assert_eq!(c.cmd(&["BRPOP", "none", "0.05"]), Reply::NilArray);
    assert_eq!(c.cmd(&["GET", "in3"]), Reply::bulk("yes"));
    assert_eq!(redis.client().cmd(&["EXISTS", "in3"]), Reply::int(0));
}

#[test]
fn monitor_sees_other_clients_commands() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut mon = relayer.client();
    assert_eq!(mon.cmd(&["MONITOR"]), Reply::ok());
    let mut other = relayer.client();
    assert_eq!(other.cmd(&["SET", "monitored-key", "1"]), Reply::ok());
    let line = poll_until(T, "the SET in MONITOR's output", || {
        let r = mon.read_reply();
        r.as_str().filter(|s| s.contains("\"monitored-key\""))
    });
    assert!(line.contains("\"SET\""), "{line}");
    assert_eq!(mon.cmd(&["QUIT"]), Reply::ok());
}

#[test]
fn dedicated_connection_limit() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxDedicatedConnections = 2");
    let mut a = relayer.client();
    let mut b = relayer.client();
    a.send(&["BLPOP", "l", "0"]);
    b.send(&["BLPOP", "l", "0"]);
    wait_until(T, "two BLPOPs blocked", || blocked_on(&redis, "blpop") == 2);
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
    let first = poll_until(T, "one BLPOP released", || {
        a.set_read_timeout(Duration::from_millis(100));
        b.set_read_timeout(Duration::from_millis(100));
        a.try_read_reply().ok().or_else(|| b.try_read_reply().ok())
    });
    assert_eq!(first, Reply::array(vec![Reply::bulk("l"), Reply::bulk("1")]));
    // The released connection is reused: the third client gets it.
    let r = poll_until(T, "a dedicated connection free again", || {
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
    wait_until(T, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    drop(blocked);
    wait_until(T, "the blocked connection closed", || {
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
    wait_until(T, "no subscriber left", || {
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
    wait_until(T, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    redis.kill();
    let r = c.read_reply();
    assert!(r.is_error_starting("ERR relayer:"), "{r:?}");
    let r = c.cmd(&["BLPOP", "never", "0"]);
    assert!(r.is_error_starting("ERR relayer:"), "{r:?}");
    redis.restart();
    let r = poll_until(T, "BLPOP working again", || {
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

/// A client that says HELLO 3 gets a connection of its own speaking RESP3: redis-cli -3 prints
/// the same (RESP3 maps and doubles) through the relayer as directly.
#[test]
fn resp3_clients_get_their_own_connection() {
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
            // Redis' own HELLO answer (ids differ): a RESP3 map with proto 3.
            assert!(relayed.contains("proto") && relayed.contains("3"), "{relayed}");
            continue;
        }
        assert_eq!(relayed, direct, "{args:?}");
    }
    assert!(
        run(relayer.port(), &["HGETALL", "h"]).contains("=>"),
        "not printed as a RESP3 map"
    );
    // HELLO 3 on the raw protocol: the reply is a map; RESET goes back to RESP2 and sharing.
    let mut raw = relayer.client();
    raw.send_raw(b"HELLO 3\r\n");
    let mut first = [0u8; 1];
    use std::io::Read;
    let mut s = raw.try_clone_stream().unwrap();
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"%");
    // Bad versions are Redis' errors.
    let mut c = relayer.client();
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        Reply::error("NOPROTO unsupported protocol version")
    );
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
