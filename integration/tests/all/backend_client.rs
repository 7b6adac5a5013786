//! `BackendClient`, the harness's typed client of what a redis-server holds: typed replies, errors
//! that name the command and the server, a bound on every reply, and no silent reconnect after
//! the server went away (which redis-async's own paired connection does).

use integration::backend_client::Failure;
use integration::timeouts::HANG;
use integration::*;
use std::time::{Duration, Instant};

#[test]
fn replies_are_converted_to_the_types_asked_for() {
    let redis = Redis::start();
    let mut admin = redis.client();
    let binary = b"a\r\nb\0c".to_vec();
    assert_eq!(admin.cmd(&[&b"SET"[..], b"bin", &binary]), Reply::ok());
    assert_eq!(admin.cmd(&["RPUSH", "list", "x", "y"]), Reply::int(2));
    let c = redis.backend_client();
    assert_eq!(c.query::<i64, _>(&["DBSIZE"]), Ok(2));
    assert_eq!(
        c.query::<Option<Vec<u8>>, _>(&["GET", "bin"]),
        Ok(Some(binary.clone()))
    );
    assert_eq!(c.query::<Option<String>, _>(&["GET", "nothing"]), Ok(None));
    assert_eq!(
        c.query::<Vec<String>, _>(&["LRANGE", "list", "0", "-1"]),
        Ok(vec!["x".to_string(), "y".to_string()])
    );
    assert_eq!(
        c.query::<Vec<Option<Vec<u8>>>, _>(&["MGET", "nothing", "bin"]),
        Ok(vec![None, Some(binary)])
    );
    // Pipelined, replies in order; a failed command fails alone.
    let replies = c
        .pipeline::<String, _, _>(&[vec!["PING"], vec!["GET", "list"], vec!["ECHO", "e"]])
        .expect("the connection");
    assert_eq!(replies[0], Ok("PONG".to_string()));
    assert!(
        replies[1].as_ref().is_err_and(|e| e.reply().is_some()),
        "{:?}",
        replies[1]
    );
    assert_eq!(replies[2], Ok("e".to_string()));
    // The harness's helpers on it.
    assert_eq!(redis.dbsize(), 2);
    assert!(
        redis
            .info_field("keyspace", "db0")
            .is_some_and(|v| v.starts_with("keys=2,")),
        "{:?}",
        redis.info_field("keyspace", "db0")
    );
    assert_eq!(redis.command_calls("lrange"), 1);
    let admin_id = admin.cmd(&["CLIENT", "ID"]).as_int().unwrap();
    let c_id: i64 = c.query(&["CLIENT", "ID"]).unwrap();
    let ids = redis.connection_ids();
    assert!(ids.contains(&admin_id) && ids.contains(&c_id), "{ids:?}");
    // Dropping the client closes its connection.
    drop(c);
    wait_until(HANG, "the dropped client's connection closed", || {
        !redis.connection_ids().contains(&c_id)
    });
}

#[test]
fn errors_name_the_command_and_the_server() {
    let redis = Redis::start();
    assert_eq!(redis.client().cmd(&["RPUSH", "list", "x"]), Reply::int(1));
    let c = redis.backend_client();
    let e = c.query::<Option<String>, _>(&["GET", "list"]).unwrap_err();
    assert_eq!(e.command, "GET list");
    assert_eq!(e.server, redis.addr());
    assert!(e.reply().is_some_and(|t| t.starts_with("WRONGTYPE")), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("GET list on {}: error reply -WRONGTYPE", redis.addr())),
        "{e}"
    );
    // A reply of another type than asked for.
    let e = c.query::<i64, _>(&["ECHO", "x"]).unwrap_err();
    assert!(matches!(e.failure, Failure::Type(_)), "{e:?}");
    // Neither loses the connection.
    assert_eq!(c.query::<String, _>(&["PING"]), Ok("PONG".to_string()));
    // Long commands are cut in messages.
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys);
    let e = c.query::<i64, _>(&mget).unwrap_err();
    assert_eq!(e.command, "MGET k0 k1 k2 ... (1001 arguments)");
    // Nothing listens.
    let port = free_port();
    let start = Instant::now();
    let e = BackendClient::connect(port).err().expect("nothing listens");
    assert_eq!(
        (e.command.as_str(), e.server.clone()),
        ("connect", format!("127.0.0.1:{port}"))
    );
    assert!(e.is_lost(), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// redis-async's paired connection reconnects by itself once it finds its socket closed; a
/// `BackendClient` stops instead, so a restarted server is not silently read through a new
/// connection (one helper's CLIENT ID and CLIENT LIST must be on one connection).
#[test]
fn a_killed_server_is_noticed_and_not_read_through_a_new_connection() {
    let mut redis = Redis::start();
    let c = redis.backend_client();
    let raw = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let paired = raw
        .block_on(redis_async::client::paired_connect("127.0.0.1", redis.port()))
        .expect("redis-async connects");
    // A name marks the raw connection: a new one has none.
    let named = raw.block_on(paired.send::<String>(redis_async::resp_array!["CLIENT", "SETNAME", "first"]));
    assert_eq!(named.ok().as_deref(), Some("OK"));
    assert_eq!(c.query::<i64, _>(&["DBSIZE"]), Ok(0));
    redis.restart();
    let e = c.query::<i64, _>(&["CLIENT", "ID"]).unwrap_err();
    assert!(e.is_lost(), "{e:?}");
    assert!(c.is_lost());
    // Every later query fails too, with the first error.
    for _ in 0..5 {
        let e = c.query::<i64, _>(&["CLIENT", "ID"]).unwrap_err();
        assert!(e.to_string().contains("earlier: "), "{e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // redis-async's own connection fails a command or two, then answers from a new connection.
    // (Its reconnect is a task of the runtime: it runs while the runtime does, hence the sleep.)
    let answered = poll_until(HANG, "redis-async to reconnect", || {
        raw.block_on(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            paired
                .send::<Option<String>>(redis_async::resp_array!["CLIENT", "GETNAME"])
                .await
        })
        .ok()
    });
    assert_eq!(answered, None, "redis-async answered from its first connection");
    // A new client reads the restarted server.
    assert_eq!(redis.dbsize(), 0);
}

/// A reply that does not come (the server paused) fails the query after the client's timeout,
/// and the client is not used again (the late reply could still come).
#[test]
fn a_reply_that_does_not_come_times_out() {
    let redis = Redis::start();
    let c = BackendClient::connect_timeout(redis.port(), Duration::from_millis(500)).unwrap();
    assert_eq!(
        redis.client().cmd(&["CLIENT", "PAUSE", "3000", "ALL"]),
        Reply::ok()
    );
    let start = Instant::now();
    let e = c.query::<i64, _>(&["DBSIZE"]).unwrap_err();
    assert_eq!(e.failure, Failure::Timeout(Duration::from_millis(500)));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let e = c.query::<i64, _>(&["DBSIZE"]).unwrap_err();
    assert!(e.is_lost(), "{e:?}");
    // Once the pause is over, a new client reads again.
    assert_eq!(redis.dbsize(), 0);
}
