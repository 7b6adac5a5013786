//! CLIENT KILL and CLIENT UNBLOCK act on the relayer's own clients, by the ids CLIENT ID gives
//! and the addresses they connected from: a killed client is disconnected, a client blocked on
//! its own connection is unblocked there by the backend, and the replies (the caller's and the
//! blocked client's) are the bytes redis-server gives for the same sequence.

use integration::timeouts::HANG;
use integration::*;

fn id_of(c: &mut Client) -> String {
    match c.cmd(&["CLIENT", "ID"]) {
        Reply::Int(id) => id.to_string(),
        r => panic!("CLIENT ID: {r:?}"),
    }
}

/// The local address of `c`'s TCP connection, as CLIENT KILL ADDR names it.
fn local_addr(c: &Client) -> String {
    match c.try_clone_stream().expect("the stream") {
        Stream::Tcp(s) => s.local_addr().expect("its address").to_string(),
        Stream::Unix(_) => panic!("a TCP client"),
    }
}

/// The backend's connections blocked in `cmd`.
fn blocked_on(redis: &Redis, cmd: &str) -> usize {
    let list: String = redis
        .backend_client()
        .query(&["CLIENT", "LIST"])
        .unwrap_or_else(|e| panic!("{e}"));
    list.lines()
        .filter(|l| l.contains(&format!(" cmd={cmd} ")) && l.contains("flags=b"))
        .count()
}

fn gone(c: &mut Client) {
    if let Err(e) = c.wait_closed(HANG) {
        panic!("the killed client is still connected: {e}");
    }
}

/// KILL ID closes that client, on another listener too (ids are the relayer's, unique in the
/// process); an id nobody has kills nothing.
#[test]
fn kill_by_id_disconnects_that_client() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut killer = relayer.client();
    let mut victim = relayer.client();
    let mut over_unix = relayer.client_at(1);
    let (vid, uid) = (id_of(&mut victim), id_of(&mut over_unix));
    assert_ne!(vid, uid, "one id per client, whatever its listener");
    assert_eq!(killer.cmd(&["CLIENT", "KILL", "ID", &vid]), Reply::int(1));
    gone(&mut victim);
    assert_eq!(killer.cmd(&["CLIENT", "KILL", "ID", &vid]), Reply::int(0));
    assert_eq!(killer.cmd(&["client", "kill", "id", &uid]), Reply::int(1));
    gone(&mut over_unix);
    assert_eq!(killer.cmd(&["CLIENT", "KILL", "ID", "999999"]), Reply::int(0));
    assert_eq!(killer.cmd(&["PING"]), Reply::status("PONG"));
}

/// SKIPME (yes unless said): the caller is not killed by its own filter; with SKIPME no it is,
/// once answered. The old form `CLIENT KILL addr:port` answers +OK or `No such client`.
#[test]
fn kill_skipme_and_the_old_form() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut me = relayer.client();
    let my_id = id_of(&mut me);
    assert_eq!(me.cmd(&["CLIENT", "KILL", "ID", &my_id]), Reply::int(0));
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "ID", &my_id, "SKIPME", "yes"]),
        Reply::int(0)
    );
    assert_eq!(me.cmd(&["PING"]), Reply::status("PONG"));

    let mut victim = relayer.client();
    let addr = local_addr(&victim);
    assert_eq!(me.cmd(&["CLIENT", "KILL", &addr]), Reply::ok());
    gone(&mut victim);
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", &addr]),
        Reply::error("ERR No such client")
    );

    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "ID", &my_id, "SKIPME", "no"]),
        Reply::int(1)
    );
    gone(&mut me);
}

/// ADDR (the client's address), LADDR (the listener's), USER (default: every client of the
/// relayer) and TYPE (normal, pubsub) select which clients are killed.
#[test]
fn kill_by_addr_laddr_user_and_type() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut me = relayer.client();
    let mut a = relayer.client();
    let mut b = relayer.client();
    let addr = local_addr(&a);
    assert_eq!(me.cmd(&["CLIENT", "KILL", "ADDR", &addr]), Reply::int(1));
    gone(&mut a);
    let laddr = format!("127.0.0.1:{}", relayer.port());
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "LADDR", "127.0.0.1:1", "ADDR", &local_addr(&b)]),
        Reply::int(0)
    );
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "LADDR", &laddr, "ADDR", &local_addr(&b)]),
        Reply::int(1)
    );
    gone(&mut b);

    let mut sub = relayer.client();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "ch"]),
        Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("ch"), Reply::int(1)])
    );
    let mut plain = relayer.client();
    assert_eq!(plain.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(me.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), Reply::int(0));
    assert_eq!(me.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]), Reply::int(1));
    gone(&mut sub);
    assert_eq!(plain.cmd(&["PING"]), Reply::status("PONG"));
    let mut c = relayer.client();
    assert_eq!(
        me.cmd(&["CLIENT", "KILL", "USER", "default", "TYPE", "normal"]),
        Reply::int(2)
    );
    gone(&mut plain);
    gone(&mut c);
    assert_eq!(me.cmd(&["PING"]), Reply::status("PONG"));
}

/// A client killed while blocked on its own connection: that connection is closed, not given
/// to another client with the BLPOP still running (it would take the next push).
#[test]
fn a_killed_blocked_client_leaves_nothing_blocked() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut victim = relayer.client();
    let vid = id_of(&mut victim);
    victim.send(&["BLPOP", "queue", "0"]);
    wait_until(HANG, "BLPOP blocked", || blocked_on(&redis, "blpop") == 1);
    let mut me = relayer.client();
    assert_eq!(me.cmd(&["CLIENT", "KILL", "ID", &vid]), Reply::int(1));
    gone(&mut victim);
    wait_until(HANG, "nothing blocked", || blocked_on(&redis, "blpop") == 0);
    assert_eq!(me.cmd(&["LPUSH", "queue", "kept"]), Reply::int(1));
    assert_eq!(me.cmd(&["LLEN", "queue"]), Reply::int(1));
}

/// What the caller and the blocked client read, for CLIENT UNBLOCK `how` on a client blocked in
/// `BLPOP nokey 0`; then CLIENT UNBLOCK of the same client, no longer blocked. `blocked` says
/// when the BLPOP is blocked.
fn unblock_sequence(
    mut caller: Client,
    mut victim: Client,
    how: &str,
    blocked: impl Fn() -> bool,
) -> Vec<Vec<u8>> {
    let id = id_of(&mut victim);
    victim.send(&["BLPOP", "nokey", "0"]);
    wait_until(HANG, "BLPOP blocked", blocked);
    let mut out = vec![caller.cmd_raw(&["CLIENT", "UNBLOCK", &id, how])];
    victim.set_read_timeout(HANG);
    out.push(victim.read_raw_reply());
    out.push(caller.cmd_raw(&["CLIENT", "UNBLOCK", &id, how]));
    out.push(victim.cmd_raw(&["PING"]));
    out
}

/// CLIENT UNBLOCK TIMEOUT and ERROR: the same bytes as redis-server's, for the caller (1, then
/// 0 once nothing is blocked) and for the blocked client (nil, or the UNBLOCKED error).
#[test]
fn unblock_timeout_and_error_as_redis() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let direct_blocked = || {
        let list: String = redis.query(&["CLIENT", "LIST"]);
        list.lines()
            .any(|l| l.contains(" cmd=blpop ") && l.contains("flags=b"))
    };
    for how in ["TIMEOUT", "ERROR", "error"] {
        let direct = unblock_sequence(redis.client(), redis.client(), how, direct_blocked);
        let via = unblock_sequence(relayer.client(), relayer.client(), how, || {
            blocked_on(&redis, "blpop") == 1
        });
        assert_eq!(
            via.iter().map(|b| String::from_utf8_lossy(b)).collect::<Vec<_>>(),
            direct
                .iter()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>(),
            "CLIENT UNBLOCK {how}"
        );
        assert_eq!(via[0], b":1\r\n");
    }
    // Not blocked, or not there: 0; the caller itself is never blocked.
    let mut c = relayer.client();
    let mut other = relayer.client();
    let other_id = id_of(&mut other);
    let own = id_of(&mut c);
    for id in [other_id.as_str(), own.as_str(), "999999", "-5"] {
        assert_eq!(c.cmd_raw(&["CLIENT", "UNBLOCK", id]), b":0\r\n", "{id}");
    }
    // A client holding its own connection for WATCH, not blocked: the backend says 0.
    assert_eq!(other.cmd(&["WATCH", "k"]), Reply::ok());
    assert_eq!(c.cmd_raw(&["CLIENT", "UNBLOCK", &other_id, "ERROR"]), b":0\r\n");
    assert_eq!(other.cmd(&["PING"]), Reply::status("PONG"));
}

/// Bad arguments get redis-server's errors, byte for byte.
#[test]
fn kill_and_unblock_errors_as_redis() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut direct = redis.client();
    let mut via = relayer.client();
    let cases: &[&[&str]] = &[
        &["CLIENT", "KILL"],
        &["CLIENT", "KILL", "127.0.0.1:1"],
        &["CLIENT", "KILL", "ID"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "ID", "-1"],
        &["CLIENT", "KILL", "ID", "1", "SKIPME"],
        &["CLIENT", "KILL", "TYPE", "foo"],
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "USER", "nobody"],
        &["CLIENT", "KILL", "FOO", "bar"],
        &["CLIENT", "KILL", "a", "b", "c"],
        &["CLIENT", "KILL", "ADDR", "1.2.3.4:5"],
        &["CLIENT", "KILL", "TYPE", "master"],
        &["CLIENT", "UNBLOCK"],
        &["CLIENT", "UNBLOCK", "abc"],
        &["CLIENT", "UNBLOCK", "1", "foo"],
        &["CLIENT", "UNBLOCK", "abc", "foo"],
        &["cLiEnt", "UnBlock", "1", "timeout", "x"],
        &["CLIENT", "UNBLOCK", "999999"],
    ];
    for args in cases {
        let want = direct.cmd_raw(args);
        assert_eq!(
            String::from_utf8_lossy(&via.cmd_raw(args)),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
    }
    // Nothing was killed on the way.
    assert_eq!(via.cmd(&["PING"]), Reply::status("PONG"));
}

/// CLIENT KILL reaches the clients whose commands go to the same backend only, as Redis'
/// reaches its own clients only: not those of a listener in front of another server.
#[test]
fn kill_reaches_the_clients_of_the_same_backend_only() {
    let (one, two) = (Redis::start(), Redis::start());
    let config = format!(
        "{}{}",
        redis_entry_mode("sync", &tcp_listen(), &one.url(), ""),
        redis_entry_mode("sync", &tcp_listen(), &two.url(), "")
    );
    let relayer = Relayer::start(&config);
    let mut caller = relayer.client_at(0);
    let mut other_backend = relayer.client_at(1);
    let id = id_of(&mut other_backend);
    assert_eq!(caller.cmd(&["CLIENT", "KILL", "ID", &id]), Reply::int(0));
    assert_eq!(caller.cmd(&["CLIENT", "KILL", "TYPE", "normal"]), Reply::int(0));
    assert_eq!(other_backend.q("PING"), Reply::status("PONG"));
}

/// CLIENT UNBLOCK runs after the caller's earlier commands, as in Redis: a push pipelined
/// before it serves the blocked client, and the UNBLOCK then finds nothing blocked (it once
/// overtook the push: the client got a timeout and the value stayed in the list).
#[test]
fn unblock_runs_after_the_callers_earlier_commands() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut caller = relayer.client();
    for round in 0..5 {
        let key = format!("ub:{round}");
        let mut blocked = relayer.client();
        let id = id_of(&mut blocked);
        blocked.send(&["BLPOP", &key, "0"]);
        wait_until(HANG, "the client blocked", || blocked_on(&redis, "blpop") == 1);
        // A command that takes a while first: the UNBLOCK must wait for it too.
        let replies = caller.pipeline(&[
            vec!["BLPOP", "ub:nothing", "0.05"],
            vec!["LPUSH", &key, "x"],
            vec!["CLIENT", "UNBLOCK", &id],
        ]);
        assert_eq!(
            replies,
            vec![Reply::NilArray, Reply::int(1), Reply::int(0)],
            "round {round}"
        );
        assert_eq!(
            blocked.read_reply(),
            Reply::Array(vec![Reply::bulk(&key), Reply::bulk("x")]),
            "round {round}"
        );
    }
}
