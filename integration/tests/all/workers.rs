//! `workers`: the relayer entries run on several threads, each with its own sessions and
//! upstream connections, behind one listener.

use integration::log::STOPPED_OK;
use integration::timeouts::{EXIT, HANG};
use integration::*;

/// Upstream connections the backend sees, besides the one asking.
fn backend_connections(redis: &Redis) -> usize {
    let list: String = redis.query(&["CLIENT", "LIST"]);
    list.lines().count() - 1
}

/// With `workers = 2` and `maxConnections = 1`, clients spread over two workers, each with its
/// own upstream connection; every client's writes are read back in order, whichever worker
/// serves it.
#[test]
fn two_workers_each_have_their_own_upstream_connection() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let relayer = Relayer::start(&format!(
        "workers = 2\n{}",
        redis_entry(&listen, &redis.url(), "")
    ));
    let l = listen.clone();
    run_threads(16, move |i| {
        let mut c = Client::connect(&l).map_err(|e| e.to_string())?;
        for n in 0..200 {
            let key = format!("w:{i}");
            c.cmd(&["SET", key.as_str(), &n.to_string()]);
            let got = c.cmd(&["GET", key.as_str()]);
            if got != Reply::bulk(n.to_string()) {
                return Err(format!("{key}: wrote {n}, read {got:?}"));
            }
        }
        Ok(())
    });
    // Workers connect when they start: one connection each.
    wait_until(HANG, "two upstream connections", || {
        backend_connections(&redis) == 2
    });
    drop(relayer);
}

/// A reload that changes the backend reaches every worker; smart writes acknowledged on both
/// workers are delivered before the relayer exits on SIGTERM.
#[test]
fn reload_and_drain_reach_every_worker() {
    let (a, b) = (Redis::start(), Redis::start());
    let listen = tcp_listen();
    let config = |url: &str| format!("workers = 2\n{}", redis_entry_mode("smart", &listen, url, ""));
    let mut relayer = Relayer::start(&config(&a.url()));
    relayer.reload(&config(&b.url()));
    // New clients (spread over both workers) write through the new backend only.
    let l = listen.clone();
    run_threads(8, move |i| {
        let mut c = Client::connect(&l).map_err(|e| e.to_string())?;
        for n in 0..250 {
            let r = c.cmd(&["SET", &format!("r:{i}:{n}"), "v"]);
            if r != Reply::ok() {
                return Err(format!("SET r:{i}:{n}: {r:?}"));
            }
        }
        Ok(())
    });
    relayer.signal(libc::SIGTERM);
    let st = relayer.wait_exit(EXIT);
    assert!(st.success(), "exit status {st}");
    assert!(relayer.log().contains(STOPPED_OK), "{}", relayer.log());
    assert_eq!(b.dbsize(), 2000, "every acknowledged write on the new backend");
    assert_eq!(a.dbsize(), 0, "nothing on the old one");
}

/// `workers` outside 1..=256 is a configuration error naming the key.
#[test]
fn workers_out_of_range_is_a_config_error() {
    for bad in ["workers = 0", "workers = 1000", "workers = \"two\""] {
        let out = check_config(&format!(
            "{bad}\n{}",
            redis_entry("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "")
        ));
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", out.stderr);
        assert!(out.stderr.contains("'workers'"), "{bad}: {}", out.stderr);
    }
}
