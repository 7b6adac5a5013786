//! Backend faults: killed and restarted under load, down from the start, slow (DEBUG SLEEP)
//! against `timeout`.

use integration::timeouts::HANG;
use integration::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a SET+GET may take while the backend is down or back: the relayer's own limits in
/// these configs are a few seconds; this is far above them.
const SLOW_COMMAND: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Progress {
    ok: AtomicU64,
    errors: AtomicU64,
    ok_after_error: AtomicU64,
}

/// 20 clients (TCP and unix) keep pipelining SET/GET while the backend is killed with SIGKILL and
/// later restarted on the same port: while it is down every command gets an error naming the
/// backend (no hang), and every client recovers on its own connection afterwards.
#[test]
fn backend_killed_and_restarted_under_load() {
    let mut redis = Redis::start();
    let relayer = Arc::new(Relayer::for_redis(
        &redis,
        "maxConnections = 2\nconnectTimeout = 2\ntimeout = 10",
    ));
    let addr = redis.addr();
    let port = redis.port();
    const CLIENTS: usize = 20;
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<Progress>> = Arc::new((0..CLIENTS).map(|_| Progress::default()).collect());
    let worker = {
        let (relayer, stop, progress, addr) = (relayer.clone(), stop.clone(), progress.clone(), addr.clone());
        std::thread::spawn(move || {
            run_threads(CLIENTS, move |id| {
                let mut c = relayer.client_at(id % 2);
                c.set_read_timeout(HANG);
                let p = &progress[id];
                let key = format!("kill:{id}");
                // Half the clients work in DB 1: a new upstream connection must be put back on it.
                let db = (id / 2) % 2;
                if db == 1 {
                    assert_eq!(c.q("SELECT 1"), Reply::ok());
                }
                let mut i = 0u64;
                let mut seen_error = false;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let v = format!("{id}:{i}");
                    let start = Instant::now();
                    c.send_many(&[vec!["SET", &key, &v], vec!["GET", &key]]);
                    let set = c.try_read_reply().map_err(|e| format!("SET #{i}: {e}"))?;
                    let get = c.try_read_reply().map_err(|e| format!("GET #{i}: {e}"))?;
                    let took = start.elapsed();
                    for r in [&set, &get] {
                        if r.is_error() {
                            if !is_backend_error(r) || !r.error_text().unwrap().contains(&addr) {
                                return Err(format!("#{i}: unexpected error {r:?}"));
                            }
                            seen_error = true;
                            p.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let set_ok = set.is_ok();
                    let get_ok = match &get {
                        Reply::Bulk(b) if b == v.as_bytes() => true,
                        // Another value, or a reply meant for another command.
                        Reply::Bulk(_) => {
                            return Err(format!("#{i}: SET {set:?} then GET {get:?}, wrote {v}"))
                        }
                        // The SET failed, or the backend restarted empty in between.
                        Reply::Nil | Reply::Error(_) => false,
                        other => return Err(format!("#{i}: GET replied {other:?}")),
                    };
                    if !set.is_ok() && !set.is_error() {
                        return Err(format!("#{i}: SET replied {set:?}"));
                    }
                    if set_ok && get_ok {
                        p.ok.fetch_add(1, Ordering::Relaxed);
                        if seen_error {
                            p.ok_after_error.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if took > SLOW_COMMAND {
                        return Err(format!("#{i}: SET+GET took {took:?}"));
                    }
                    if set.is_error() {
                        // Down: don't spin.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                // After the recovery, writes land in the client's DB.
                let last = format!("{id}:final");
                if c.cmd(&["SET", &key, &last]) != Reply::ok() {
                    return Err("final SET failed".into());
                }
                let mut d = Client::tcp(port);
                d.cmd(&["SELECT", &db.to_string()]);
                let got = d.cmd(&["GET", &key]);
                if got != Reply::bulk(&last) {
                    return Err(format!("after recovery, GET {key} in DB {db} directly: {got:?}"));
                }
                Ok(())
            })
        })
    };
    let all = |f: &dyn Fn(&Progress) -> bool| progress.iter().all(f);
    wait_until(HANG, "all clients running", || {
        all(&|p| p.ok.load(Ordering::Relaxed) >= 20)
    });
    redis.kill();
    wait_until(HANG, "every client to see an error", || {
        all(&|p| p.errors.load(Ordering::Relaxed) >= 3)
    });
    // A new client while it is down: local commands work, forwarded ones fail fast.
    let mut fresh = relayer.client();
    fresh.set_read_timeout(HANG);
    assert_eq!(fresh.q("PING"), Reply::status("PONG"));
    let r = fresh.q("GET kill:0");
    assert_backend_error(&r, &addr, "GET while the backend is down");
    assert!(
        r.error_text().unwrap().contains("unavailable"),
        "while down, a new command should say the backend is unavailable: {r:?}"
    );
    redis.restart();
    wait_until(HANG, "every client to recover", || {
        all(&|p| p.ok_after_error.load(Ordering::Relaxed) >= 20)
    });
    stop.store(true, Ordering::Relaxed);
    let sum = |f: &dyn Fn(&Progress) -> u64| progress.iter().map(f).sum::<u64>();
    eprintln!(
        "{CLIENTS} clients: {} SET+GET ok, {} backend errors, {} ok after an error",
        sum(&|p| p.ok.load(Ordering::Relaxed)),
        sum(&|p| p.errors.load(Ordering::Relaxed)),
        sum(&|p| p.ok_after_error.load(Ordering::Relaxed))
    );
    worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    // The fresh client recovered too.
    wait_until(HANG, "the fresh client to recover", || {
        fresh.q("SET kill:fresh 1").is_ok()
    });
    assert_eq!(fresh.q("GET kill:fresh"), Reply::bulk("1"));
}

/// A backend that is not there from the start: forwarded commands fail fast naming it, local
/// ones work; when it appears, the same connection works.
#[test]
fn backend_down_from_the_start() {
    let port = free_port();
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &format!("tcp://127.0.0.1:{port}"),
        "connectTimeout = 2",
    ));
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    for i in 0..5 {
        let r = c.q("GET down:k");
        assert_backend_error(&r, &format!("127.0.0.1:{port}"), &format!("GET #{i}"));
    }
    // Pipelined: every one gets its error, in order with local replies.
    let got = c.pipeline(&[
        vec!["GET", "a"],
        vec!["PING"],
        vec!["SET", "a", "b"],
        vec!["ECHO", "e"],
    ]);
    assert!(is_backend_error(&got[0]) && is_backend_error(&got[2]), "{got:?}");
    assert_eq!((&got[1], &got[3]), (&Reply::status("PONG"), &Reply::bulk("e")));
}

/// `DEBUG SLEEP 3` with `timeout = 1`: the sleeping command and one queued behind it get the
/// timed-out error (not the late reply), and later commands work again with correct replies.
#[test]
fn slow_backend_times_out() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let relayer = Relayer::for_redis(&redis, "maxConnections = 1\ntimeout = 1");
    let addr = redis.addr();
    let mut a = relayer.client();
    let mut b = relayer.client();
    a.set_read_timeout(HANG);
    b.set_read_timeout(HANG);
    assert_eq!(b.q("SELECT 1"), Reply::ok());
    assert_eq!(b.q("SET slow:b before"), Reply::ok());
    a.send(&["DEBUG", "SLEEP", "3"]);
    std::thread::sleep(Duration::from_millis(200)); // so that b's GET is queued behind it
    b.send(&["GET", "slow:b"]);
    let ra = a.read_reply();
    assert_backend_error(&ra, &addr, "DEBUG SLEEP 3");
    assert!(
        ra.error_text().unwrap().contains("timed out after"),
        "DEBUG SLEEP 3 with timeout = 1: {ra:?}"
    );
    let rb = b.read_reply();
    assert_backend_error(&rb, &addr, "GET queued behind DEBUG SLEEP");
    // Later commands work again, and no late reply shows up in their place.
    for (name, c) in [("a", &mut a), ("b", &mut b)] {
        let key = format!("slow:{name}:after");
        let mut n = 0;
        wait_until(HANG, "commands to work again", || {
            n += 1;
            let v = format!("v{n}");
            let got = c.pipeline(&[vec!["SET", &key, &v], vec!["GET", &key], vec!["PING"]]);
            for r in &got {
                if r.is_error() {
                    assert_backend_error(r, &addr, "while recovering");
                }
            }
            assert_eq!(got[2], Reply::status("PONG"));
            if got[0].is_error() || got[1].is_error() {
                return false;
            }
            assert_eq!(
                (&got[0], &got[1]),
                (&Reply::ok(), &Reply::bulk(&v)),
                "after the timeout"
            );
            true
        });
    }
    assert_eq!(b.q("GET slow:b"), Reply::bulk("before"));
    // b is still on DB 1 after the upstream connection was replaced, a on DB 0.
    let d = redis.backend_client();
    let exists = ["EXISTS", "slow:a:after", "slow:b:after", "slow:b"];
    assert_eq!(d.query::<i64, _>(&exists), Ok(1), "DB 0");
    assert_eq!(d.query::<(), _>(&["SELECT", "1"]), Ok(()));
    assert_eq!(d.query::<i64, _>(&exists), Ok(2), "DB 1");
}

/// `timeout = 0` means no reply timeout: a 2 s DEBUG SLEEP just answers.
#[test]
fn zero_timeout_waits() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let relayer = Relayer::for_redis(&redis, "timeout = 0");
    let mut a = relayer.client();
    a.set_read_timeout(HANG);
    assert_eq!(a.q("DEBUG SLEEP 2"), Reply::ok());
    assert_eq!(a.q("PING"), Reply::status("PONG"));
}

/// Commands in flight when the backend dies get the "connection lost" error (not a hang, not the
/// "unavailable" error for commands that never left), and the clients recover after a restart.
#[test]
fn in_flight_commands_get_connection_lost() {
    let mut redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let relayer = Relayer::for_redis(&redis, "maxConnections = 1\ntimeout = 60");
    let addr = redis.addr();
    let mut a = relayer.client();
    let mut b = relayer.client_at(1);
    a.set_read_timeout(HANG);
    b.set_read_timeout(HANG);
    assert_eq!(b.q("SET lost:k v"), Reply::ok());
    a.send(&["DEBUG", "SLEEP", "30"]);
    // Redis is asleep once a direct PING gets no answer.
    let mut probe = redis.client();
    probe.set_read_timeout(std::time::Duration::from_millis(300));
    wait_until(HANG, "redis to be in DEBUG SLEEP", || {
        probe.send(&["PING"]);
        probe.try_read_reply().is_err()
    });
    b.send_many(&[vec!["GET", "lost:k"], vec!["PING"], vec!["GET", "lost:k"]]);
    redis.kill();
    for (name, r) in [
        ("DEBUG SLEEP", a.read_reply()),
        ("GET", b.read_reply()),
        ("PING", b.read_reply()),
        ("second GET", b.read_reply()),
    ] {
        if name == "PING" {
            assert_eq!(r, Reply::status("PONG"));
            continue;
        }
        assert_backend_error(&r, &addr, name);
        if name != "second GET" {
            assert!(
                r.error_text().unwrap().contains("lost"),
                "{name} was in flight when the backend died: {r:?}"
            );
        }
    }
    redis.restart();
    for c in [&mut a, &mut b] {
        wait_until(HANG, "recovery", || c.q("SET lost:k w").is_ok());
        assert_eq!(c.q("GET lost:k"), Reply::bulk("w"));
    }
}
