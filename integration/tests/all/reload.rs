//! Reload on SIGHUP: an unchanged listener keeps its clients and its backend connection under
//! redis-benchmark load while 20 reloads add, change and remove other entries; invalid files change
//! nothing (and a port in use skips only that listener, retried at the next reload); a removed
//! smart entry stops accepting at once, delivers what it acknowledged and closes its clients after
//! drainTimeout; and the same cycle under a real supervisord (`supervisorctl signal HUP`, `stop`).

use integration::log::{nth_record, record_field, RELOADED, RELOAD_FAILED};
use integration::timeouts::{DELIVERY, EXIT, HANG, START};
use integration::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What it logs for a listener that cannot bind.
const CANNOT_LISTEN: &str = "cannot listen";
/// How long an added or changed listener may take to serve once its reload is logged.
const SERVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a removed listener may keep accepting once its reload is logged.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Log records

/// Err unless the `configuration reloaded` record gives these counts.
fn check_counts(record: &str, added: u64, changed: u64, removed: u64, unchanged: u64) -> Result<(), String> {
    let want = [
        ("added", added),
        ("changed", changed),
        ("removed", removed),
        ("unchanged", unchanged),
    ];
    let wrong: Vec<String> = want
        .iter()
        .filter(|(name, n)| record_field(record, name) != Some(*n))
        .map(|(name, n)| format!("{name} {:?} instead of {n}", record_field(record, name)))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "reload record with {}: {}",
            wrong.join(", "),
            record.trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Keys unique in this test process.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}:{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One command; an I/O error or a hung reply is an Err naming the connection and the command.
fn try_cmd(c: &mut Client, args: &[&str]) -> Result<Reply, String> {
    c.try_send_raw(&encode_command(args))
        .map_err(|e| format!("{}: sending {args:?}: {e}", c.name()))?;
    c.try_read_reply()
        .map_err(|e| format!("{}: reply to {args:?}: {e}", c.name()))
}

/// One command whose reply must be `want`.
fn expect(c: &mut Client, args: &[&str], want: &Reply) -> Result<(), String> {
    let got = try_cmd(c, args)?;
    if &got == want {
        Ok(())
    } else {
        Err(format!(
            "{}: {args:?} answered {got:?}, expected {want:?}",
            c.name()
        ))
    }
}

/// PING, then a SET and a GET of a new key, on this connection.
fn round_trip(c: &mut Client) -> Result<(), String> {
    let key = unique("rt");
    expect(c, &["PING"], &Reply::status("PONG"))?;
    expect(c, &["SET", &key, "v"], &Reply::ok())?;
    expect(c, &["GET", &key], &Reply::bulk("v"))
}

/// A new connection to `listen` that answers PING, SET and GET, polled for until `timeout`;
/// Err with the last failure.
fn serves_within(listen: &str, timeout: Duration) -> Result<Client, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = Client::connect(listen)
            .map_err(|e| format!("connect to {listen}: {e}"))
            .and_then(|mut c| {
                c.set_read_timeout(Duration::from_secs(5));
                round_trip(&mut c).map(|_| c)
            });
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("{listen} does not serve within {timeout:?}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn serves(listen: &str) -> Result<Client, String> {
    serves_within(listen, SERVE_TIMEOUT)
}

/// Waits until `listen` refuses connections (a unix socket: its file is gone too); returns how long
/// that took, or Err if it still accepts after `timeout`.
fn refused_within(listen: &str, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let file_left = match parse_listen(listen) {
            Some(ListenAddr::Unix(p)) => p.exists(),
            _ => false,
        };
        if !file_left && Client::connect(listen).is_err() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(if file_left {
                format!("the socket file of removed {listen} still exists after {timeout:?}")
            } else {
                format!("removed {listen} still accepts connections after {timeout:?}")
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SET `key` `value` through `c`, then Err unless `holder` has it and `other` does not.
fn set_lands_in(c: &mut Client, key: &str, holder: &Redis, other: &Redis) -> Result<(), String> {
    expect(c, &["SET", key, "landed"], &Reply::ok())?;
    let in_holder: Option<String> = holder.try_query(&["GET", key])?;
    let in_other: Option<String> = other.try_query(&["GET", key])?;
    if in_holder.as_deref() == Some("landed") && in_other.is_none() {
        Ok(())
    } else {
        Err(format!(
            "{}: SET {key} through it: {} has {in_holder:?}, {} has {in_other:?}; expected it in {} only",
            c.name(),
            holder.addr(),
            other.addr(),
            holder.addr()
        ))
    }
}

/// Panics listing `failures` (the first 20) if there are any.
fn assert_no_failures(failures: &[String], what: &str) {
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(20).map(String::as_str).collect();
        panic!("{} {what} failures:\n{}", failures.len(), shown.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. 20 reloads under load

/// One `redis-benchmark -c 20 -n 20000 -t set,get,incr -q` run against 127.0.0.1:`port`: Err
/// unless it exits 0, reports the three tests and prints no error.
fn benchmark_once(port: u16) -> Result<(), String> {
    let port = port.to_string();
    let (st, out, err) = run_program(
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port, "-c", "20", "-n", "20000"])
            .args(["-t", "set,get,incr", "-q"]),
        b"",
        "redis-benchmark (is redis-tools installed?)",
    );
    let errors: Vec<&str> = out
        .split(['\n', '\r'])
        .chain(err.split(['\n', '\r']))
        .filter(|l| l.contains("Error") || l.contains("ERR"))
        .collect();
    let reported = out.matches("requests per second").count();
    if !st.success() || !errors.is_empty() || reported != 3 {
        return Err(format!(
            "redis-benchmark exited with {st}, {reported} of 3 results, error lines {errors:?}; stderr: {}",
            err.trim()
        ));
    }
    Ok(())
}

/// An unchanged sync listener under redis-benchmark (run after run) and 4 clients doing INCRs on
/// their own connections, while 20 reloads alternate between two files that add, change and
/// remove the other entries (TCP and unix, sync and smart). After each reload the added and
/// changed listeners serve, the removed ones refuse connections (unix socket file gone), a client
/// of the changed listener connected at the start still works and its SETs land in the new
/// target; at the end no benchmark run and no INCR failed, the unchanged listener's client
/// connected before the reloads still works and its backend connection is the one it had.
#[test]
fn twenty_reloads_under_load_leave_the_unchanged_listener_alone() {
    let r0 = Redis::start(); // behind the unchanged listener only
    let ra = Redis::start();
    let rb = Redis::start();
    let tcp = || tcp_listen();
    let (u, c1, tx, ty) = (tcp(), tcp(), tcp(), tcp());
    let (c2, ux, uy) = ("unix:$DIR/changed.sock", "unix:$DIR/x.sock", "unix:$DIR/y.sock");
    let unchanged = redis_entry(&u, &r0.url(), "");
    // X and Y: c1 moves between ra and rb, c2 between 1 and 2 upstream connections; tx and ux
    // exist only in X, ty and uy only in Y. The unchanged entry is at another place in each.
    let config_x = [
        unchanged.clone(),
        redis_entry(&c1, &ra.url(), "drainTimeout = 1"),
        redis_entry(c2, &ra.url(), "maxConnections = 1\ndrainTimeout = 1"),
        redis_entry_mode("smart", &tx, &ra.url(), "drainTimeout = 1"),
        redis_entry(ux, &rb.url(), "drainTimeout = 1"),
    ]
    .concat();
    let config_y = [
        redis_entry(&c1, &rb.url(), "drainTimeout = 1"),
        redis_entry(c2, &ra.url(), "maxConnections = 2\ndrainTimeout = 1"),
        unchanged,
        redis_entry(&ty, &rb.url(), "drainTimeout = 1"),
        redis_entry_mode("smart", uy, &ra.url(), "drainTimeout = 1"),
    ]
    .concat();
    let mut relayer = Relayer::start(&config_x);
    let dir = relayer.dir().to_str().unwrap().to_string();
    let (c2, ux, uy) = (
        c2.replace("$DIR", &dir),
        ux.replace("$DIR", &dir),
        uy.replace("$DIR", &dir),
    );

    // Clients connected before any reload.
    let mut u_client = Client::connect(&u).unwrap();
    round_trip(&mut u_client).unwrap();
    let mut c1_client = Client::connect(&c1).unwrap();
    set_lands_in(&mut c1_client, &unique("c1:start"), &ra, &rb).unwrap();
    let mut c2_client = Client::connect(&c2).unwrap();
    round_trip(&mut c2_client).unwrap();
    let upstream = r0.connection_ids();
    assert!(
        !upstream.is_empty(),
        "no relayer connection on the unchanged listener's backend"
    );

    // The load on the unchanged listener.
    let stop = Arc::new(AtomicBool::new(false));
    let bench_runs = Arc::new(AtomicU64::new(0));
    let bench = {
        let (stop, runs, port) = (stop.clone(), bench_runs.clone(), relayer.port());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                runs.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = benchmark_once(port) {
                    failures.push(e);
                }
            }
            failures
        })
    };
    let incrs: Vec<_> = (0..4)
        .map(|i| {
            let (stop, listen) = (stop.clone(), u.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut c = Client::connect(&listen).map_err(|e| e.to_string())?;
                let key = unique("sticky");
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let r = try_cmd(&mut c, &["INCR", &key])?;
                    if r != Reply::Int(n as i64) {
                        return Err(format!("INCR client {i}: INCR {key} #{n} answered {r:?}"));
                    }
                }
                Ok(n)
            })
        })
        .collect();
    wait_until(HANG, "redis-benchmark to start", || {
        bench_runs.load(Ordering::SeqCst) > 0
    });
    std::thread::sleep(Duration::from_millis(300));

    let mut failures = Vec::new();
    let started = Instant::now();
    for i in 0..20 {
        let to_y = i % 2 == 0;
        let (config, name) = if to_y { (&config_y, "Y") } else { (&config_x, "X") };
        let (target, old) = if to_y { (&rb, &ra) } else { (&ra, &rb) };
        let (added, removed) = if to_y {
            ([&ty, &uy], [&tx, &ux])
        } else {
            ([&tx, &ux], [&ty, &uy])
        };
        let mut fail = |e: String| failures.push(format!("reload {} (to {name}): {e}", i + 1));
        let record = relayer.reload(config);
        if let Err(e) = check_counts(&record, 2, 2, 2, 1) {
            fail(e);
        }
        for l in removed {
            if let Err(e) = refused_within(l, REFUSE_TIMEOUT) {
                fail(e);
            }
        }
        for l in added.into_iter().chain([&c1, &c2]) {
            if let Err(e) = serves(l) {
                fail(e);
            }
        }
        match serves(&c1) {
            Ok(mut fresh) => {
                if let Err(e) = set_lands_in(&mut fresh, &unique("c1:new"), target, old) {
                    fail(format!("new client of the changed listener: {e}"));
                }
            }
            Err(e) => fail(e),
        }
        if let Err(e) = set_lands_in(&mut c1_client, &unique("c1:old"), target, old) {
            fail(format!(
                "client connected to the changed listener before the reloads: {e}"
            ));
        }
        if let Err(e) = round_trip(&mut c2_client) {
            fail(format!(
                "client connected to the changed unix listener before the reloads: {e}"
            ));
        }
        if let Err(e) = round_trip(&mut u_client) {
            fail(format!(
                "client connected to the unchanged listener before the reloads: {e}"
            ));
        }
    }
    let reload_time = started.elapsed();
    let runs_during = bench_runs.load(Ordering::SeqCst);

    stop.store(true, Ordering::SeqCst);
    let bench_failures = bench.join().expect("the redis-benchmark thread panicked");
    for (i, h) in incrs.into_iter().enumerate() {
        match h.join().expect("an INCR thread panicked") {
            Ok(n) => assert!(n > 0, "INCR client {i} made no progress"),
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "20 reloads in {reload_time:?}, redis-benchmark runs: {}",
        bench_runs.load(Ordering::SeqCst)
    );
    failures.extend(bench_failures);
    assert_no_failures(&failures, "reload-under-load");
    assert!(runs_during >= 1, "redis-benchmark did not run during the reloads");

    round_trip(&mut u_client).expect("the unchanged listener's first client after the reloads");
    assert_eq!(
        r0.connection_ids(),
        upstream,
        "the unchanged listener's backend connections changed across the reloads"
    );
    assert!(
        !relayer.log().contains(RELOAD_FAILED),
        "a reload failed: {}",
        nth_record(&relayer.log(), RELOAD_FAILED, 0).unwrap()
    );

    // Two SIGHUPs back to back (the second during the first reload, or coalesced with it): every
    // reload applies completely, and the result is the file.
    relayer.rewrite_config(&config_y);
    let before = relayer.log().matches(RELOADED).count();
    relayer.signal(libc::SIGHUP);
    relayer.signal(libc::SIGHUP);
    wait_until(HANG, "a reload after two SIGHUPs", || {
        relayer.log().matches(RELOADED).count() > before
    });
    std::thread::sleep(Duration::from_millis(500));
    let log = relayer.log();
    check_counts(&nth_record(&log, RELOADED, before).unwrap(), 2, 2, 2, 1).unwrap();
    let after = log.matches(RELOADED).count();
    for n in before + 1..after {
        check_counts(&nth_record(&log, RELOADED, n).unwrap(), 0, 0, 0, 5).unwrap();
    }
    assert!(after - before <= 2, "{} reloads for two SIGHUPs", after - before);
    for l in [&u, &c1, &c2, &ty, &uy] {
        serves(l).unwrap();
    }
    for l in [&tx, &ux] {
        refused_within(l, REFUSE_TIMEOUT).unwrap();
    }
    round_trip(&mut u_client).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Invalid files

/// Err unless `record` names the config file, `listen` (if any) and `key` (if any; its camelCase
/// or snake_case spelling, case-insensitively) and contains every one of `also`.
fn names(
    record: &str,
    file: &Path,
    listen: Option<&str>,
    key: Option<&str>,
    also: &[String],
) -> Result<(), String> {
    let lower = record.to_lowercase();
    let mut missing = Vec::new();
    let file = file.display().to_string();
    if !record.contains(&file) {
        missing.push(format!("the file {file}"));
    }
    if let Some(l) = listen {
        if !record.contains(l) {
            missing.push(format!("the entry {l}"));
        }
    }
    if let Some(k) = key {
        let k = k.to_lowercase();
        if !lower.contains(&k) && !lower.contains(&k.replace('_', "")) {
            missing.push(format!("the key {k}"));
        }
    }
    for a in also {
        if !record.contains(a.as_str()) {
            missing.push(format!("{a:?}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("does not name {}: {}", missing.join(", "), record.trim()))
    }
}

/// Invalid files applied by SIGHUP (bad TOML, unknown protocol, bad listen URL, type errors in a
/// new and in an existing entry), each with a valid new entry too: each is logged naming the file,
/// the entry and the key, nothing of it applies (the valid new entry does not listen) and the old
/// entries serve, their client too. Then a file whose new entry's port is taken by another process:
/// `cannot listen` naming it, the file's other changes apply; at the next reload, the port free,
/// it starts.
#[test]
fn invalid_reloads_change_nothing() {
    let redis = Redis::start();
    let other = Redis::start();
    let e = tcp_listen();
    let base_unix = redis_entry("unix:$DIR/e.sock", &redis.url(), "");
    let base = format!("{}{base_unix}", redis_entry(&e, &redis.url(), ""));
    let mut relayer = Relayer::start(&base);
    let eu = relayer.listens()[1].clone();
    let file = relayer.config_path().to_path_buf();
    let mut held = Client::connect(&e).unwrap();
    set_lands_in(&mut held, &unique("held"), &redis, &other).unwrap();

    // A valid new entry in every bad file: it must not start.
    let n = tcp_listen();
    let with_new = |body: &str| format!("{base}{}{body}", redis_entry(&n, &redis.url(), ""));
    let bad = tcp_listen();
    let bad_toml = with_new(&format!(
        "[[relayer]]\nprotocol = \"redis\"\nlisten = \"{bad}\"\nurl = \"{}\n",
        redis.url()
    ));
    let bad_toml_line = format!("line {}", bad_toml.lines().count());
    let http = format!("http://127.0.0.1:{}", free_port());
    // (what, file, the entry it must name, the key, more text it must contain)
    type Case<'a> = (&'a str, String, Option<&'a str>, Option<&'a str>, Vec<String>);
    let cases: Vec<Case> = vec![
        ("bad TOML", bad_toml, None, None, vec![bad_toml_line]),
        (
            "unknown protocol",
            with_new(&format!(
                "[[relayer]]\nprotocol = \"memcached\"\nlisten = \"{bad}\"\nurl = \"{}\"\n",
                redis.url()
            )),
            Some(&bad),
            Some("protocol"),
            vec!["memcached".into()],
        ),
        (
            "bad listen URL",
            with_new(&redis_entry(&http, &redis.url(), "")),
            Some(&http),
            Some("listen"),
            vec![],
        ),
        (
            "type error in a new entry",
            with_new(&redis_entry(&bad, &redis.url(), "maxConnections = \"many\"")),
            Some(&bad),
            Some("maxConnections"),
            vec![],
        ),
        (
            "type error in an existing entry that also changes its url",
            format!(
                "{}{base_unix}{}",
                redis_entry(&e, &other.url(), "timeout = \"soon\""),
                redis_entry(&n, &redis.url(), "")
            ),
            Some(&e),
            Some("timeout"),
            vec![],
        ),
    ];
    let mut failures = Vec::new();
    for (what, config, listen, key, also) in &cases {
        let mut fail = |e: String| failures.push(format!("{what}: {e}"));
        let reloaded = relayer.log().matches(RELOADED).count();
        relayer.rewrite_config(config);
        match relayer.sighup() {
            Reload::Applied(record) => fail(format!("the invalid file was applied: {}", record.trim())),
            Reload::Failed(record) => {
                if let Err(e) = names(&record, &file, *listen, *key, also) {
                    fail(e);
                }
            }
        }
        if relayer.log().matches(RELOADED).count() != reloaded {
            fail("a 'configuration reloaded' line was logged for it".into());
        }
        if let Err(e) = set_lands_in(&mut held, &unique("held"), &redis, &other) {
            fail(format!("the client connected before: {e}"));
        }
        for l in [&e, &eu] {
            if let Err(e) = serves(l) {
                fail(e);
            }
        }
        for l in [&n, &bad] {
            if Client::connect(l).is_ok() {
                fail(format!("{l} of the rejected file accepts connections"));
            }
        }
    }
    assert_no_failures(&failures, "invalid-reload");

    // A new entry whose port another process holds, with a valid new entry and a changed one.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = format!("tcp://127.0.0.1:{}", holder.local_addr().unwrap().port());
    let config = format!(
        "{}{base_unix}{}{}",
        redis_entry(&e, &other.url(), ""),
        redis_entry(&n, &redis.url(), ""),
        redis_entry(&taken, &redis.url(), "")
    );
    let cannot = relayer.log().matches(CANNOT_LISTEN).count();
    let record = relayer.reload(&config);
    let line = nth_record(&relayer.log(), CANNOT_LISTEN, cannot)
        .unwrap_or_else(|| panic!("no '{CANNOT_LISTEN}' line for {taken}"));
    assert!(
        line.contains(&taken),
        "the '{CANNOT_LISTEN}' line does not name {taken}: {line}"
    );
    check_counts(&record, 1, 1, 0, 1).unwrap();
    serves(&n).expect("the valid new entry of the file with a port in use");
    serves(&eu).expect("the unchanged entry");
    set_lands_in(&mut held, &unique("held"), &other, &redis)
        .expect("the changed entry of the file with a port in use: its client's SET");
    let mut fresh = serves(&e).unwrap();
    set_lands_in(&mut fresh, &unique("fresh"), &other, &redis).expect("a new client of the changed entry");

    // The port is free again: the next reload of the same file starts it.
    drop(holder);
    let record = match relayer.sighup() {
        Reload::Applied(record) => record,
        Reload::Failed(record) => panic!("the retry failed: {record}"),
    };
    check_counts(&record, 1, 0, 0, 3).unwrap();
    let mut c = serves(&taken).expect("the entry whose port was in use, after the next reload");
    set_lands_in(&mut c, &unique("taken"), &redis, &other).unwrap();
    round_trip(&mut held).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. A removed smart entry

/// A 1 KB value.
fn big_value(i: usize) -> String {
    format!("{i:0>1024}")
}

/// A smart entry with 2,000 writes (1 KB) acknowledged and pending behind a 250 ms link is removed
/// by a reload: its port refuses connections right away (well before drainTimeout = 1 s), every
/// acknowledged write reaches the backend, its client is closed after drainTimeout, its backend
/// connection is closed, and the other entry keeps serving.
#[test]
fn removed_smart_entry_drains_and_closes_its_clients_after_drain_timeout() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(250));
    let kept = tcp_listen();
    let removed = tcp_listen();
    let kept_entry = redis_entry(&kept, &redis.url(), "");
    let config = format!(
        "{kept_entry}{}",
        redis_entry_mode(
            "smart",
            &removed,
            &link.url(),
            "maxConnections = 1\ndrainTimeout = 1"
        )
    );
    let mut relayer = Relayer::start(&config);
    let mut kept_client = Client::connect(&kept).unwrap();
    round_trip(&mut kept_client).unwrap();

    const N: usize = 2000;
    let mut c = Client::connect(&removed).unwrap();
    let cmds: Vec<Vec<String>> = (0..N)
        .map(|i| vec!["SET".into(), format!("rm:{i}"), big_value(i)])
        .collect();
    for (i, r) in c.pipeline(&cmds).into_iter().enumerate() {
        assert_eq!(r, Reply::ok(), "early reply to SET rm:{i}");
    }
    let before = redis.dbsize();

    relayer.rewrite_config(&kept_entry);
    let hup = Instant::now();
    let record = match relayer.sighup() {
        Reload::Applied(record) => record,
        Reload::Failed(record) => panic!("the reload failed: {record}"),
    };
    check_counts(&record, 0, 0, 1, 1).unwrap();
    refused_within(&removed, REFUSE_TIMEOUT).unwrap();
    let refused = hup.elapsed();
    let closed = c.wait_closed(HANG).map(|_| hup.elapsed());
    eprintln!(
        "{before} of {N} writes on the backend at SIGHUP; port refused after {refused:?}, client closed after {closed:?}"
    );
    assert!(
        refused < Duration::from_millis(900),
        "the removed port still accepted {refused:?} after SIGHUP (drainTimeout is 1 s)"
    );
    let closed = closed.unwrap_or_else(|e| panic!("the removed entry's client: {e}"));
    assert!(
        closed >= Duration::from_millis(900),
        "the removed entry's client was closed {closed:?} after SIGHUP, before drainTimeout (1 s)"
    );

    wait_until(DELIVERY, "every acknowledged write on the backend", || {
        redis.dbsize() >= N as i64
    });
    let mut direct = redis.client();
    let mut wrong = Vec::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut args = vec!["MGET".to_string()];
        args.extend(chunk.iter().map(|i| format!("rm:{i}")));
        let values = direct.cmd(&args);
        for (i, v) in chunk.iter().zip(values.as_array().expect("MGET")) {
            if v != &Reply::bulk(big_value(*i)) {
                wrong.push(format!("rm:{i} = {v:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} writes wrong on the backend, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let log = relayer.log().to_lowercase();
    assert!(!log.contains("lost"), "the log mentions lost writes");
    wait_until(HANG, "the removed entry's backend connection to close", || {
        link.open_connections() == 0
    });
    round_trip(&mut kept_client).unwrap();
    serves(&kept).unwrap();
    assert!(relayer.try_wait().is_none(), "the relayer exited");
}

// ---------------------------------------------------------------------------------------------
// 4. Under a real supervisord

/// supervisord (`-n`) on its own config in a temporary directory; on drop (a failed test) the
/// relayer it runs and itself are killed, and their logs printed.
struct Supervisord {
    child: Option<Child>,
    dir: tempfile::TempDir,
    conf: PathBuf,
    relayer_pid: Option<u32>,
}

impl Supervisord {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `supervisorctl -c CONF ARGS...`: its exit status and stdout + stderr.
    fn ctl(&self, args: &[&str]) -> (ExitStatus, String) {
        let (st, out, err) = run_program(
            Command::new("supervisorctl").arg("-c").arg(&self.conf).args(args),
            b"",
            &format!("supervisorctl {args:?}"),
        );
        (st, format!("{out}{err}"))
    }

    fn status(&self) -> String {
        self.ctl(&["status", "relayer"]).1
    }

    fn alive(pid: u32) -> bool {
        // Gone, or a zombie: not running.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')))
            .is_some_and(|zombie| !zombie)
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        if let Some(pid) = self.relayer_pid {
            if Supervisord::alive(pid) {
                let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- supervisord log ---\n{}\n--- supervisord output ---\n{}\n--- relayer log ---\n{}",
                self.read("supervisord.log"),
                self.read("supervisord.out"),
                self.read("relayer.log")
            );
        }
    }
}

/// The relayer run by Debian's supervisord: RUNNING, `supervisorctl signal HUP` after the file
/// gained an entry (the new listener serves, the old client and the process stay), `supervisorctl
/// stop` (STOPPED, exit status 0, the relayer logged its stop), `supervisorctl shutdown` (nothing
/// left running).
#[test]
fn under_supervisord_signal_hup_then_stop() {
    let redis = Redis::start();
    let dir = temp_dir();
    let d = dir.path().to_path_buf();
    let first = tcp_listen();
    let added = tcp_listen();
    let relayer_conf = d.join("relayer.toml");
    std::fs::write(
        &relayer_conf,
        redis_entry(&first, &redis.url(), "drainTimeout = 2"),
    )
    .unwrap();
    // The relayer gets SIGKILL if supervisord dies (setpriv execs it: same pid), so a test killed
    // from outside leaves nothing behind.
    let pdeathsig = Command::new("setpriv")
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--pdeathsig"));
    let command = format!(
        "{}{} -c {}",
        if pdeathsig {
            "setpriv --pdeathsig KILL -- "
        } else {
            ""
        },
        relayer_bin().display(),
        relayer_conf.display()
    );
    let conf = d.join("supervisord.conf");
    let p = |name: &str| d.join(name).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "[unix_http_server]\nfile={sock}\nchmod=0700\n\n\
             [supervisord]\nlogfile={log}\npidfile={pid}\nchildlogdir={dir}\nnodaemon=true\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{sock}\n\n\
             [program:relayer]\ncommand={command}\nautostart=true\nautorestart=false\nstartsecs=1\n\
             stopsignal=TERM\nstopwaitsecs=20\nredirect_stderr=true\nstdout_logfile={relayer_log}\n\
             stdout_logfile_maxbytes=0\n",
            sock = p("supervisor.sock"),
            log = p("supervisord.log"),
            pid = p("supervisord.pid"),
            dir = d.display(),
            relayer_log = p("relayer.log"),
        ),
    )
    .unwrap();
    let out = std::fs::File::create(d.join("supervisord.out")).unwrap();
    let mut cmd = Command::new("supervisord");
    cmd.arg("-n")
        .arg("-c")
        .arg(&conf)
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    child_setup(&mut cmd);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn supervisord (is Debian's supervisor installed?): {e}"));
    let mut sv = Supervisord {
        child: Some(child),
        dir,
        conf,
        relayer_pid: None,
    };

    poll_until(START, "the relayer RUNNING under supervisord", || {
        let status = sv.status();
        for bad in ["FATAL", "EXITED", "BACKOFF"] {
            assert!(!status.contains(bad), "relayer status: {status}");
        }
        status.contains("RUNNING").then_some(())
    });
    let pid_of = |sv: &Supervisord| -> u32 {
        let (_, out) = sv.ctl(&["pid", "relayer"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("supervisorctl pid relayer: {out}"))
    };
    let pid = pid_of(&sv);
    sv.relayer_pid = Some(pid);
    let mut before = serves_within(&first, START).unwrap();

    // A new entry, reloaded by supervisorctl signal HUP.
    let new_conf = d.join("relayer.toml.new");
    std::fs::write(
        &new_conf,
        format!(
            "{}{}",
            redis_entry(&first, &redis.url(), "drainTimeout = 2"),
            redis_entry(&added, &redis.url(), "drainTimeout = 2")
        ),
    )
    .unwrap();
    std::fs::rename(&new_conf, &relayer_conf).unwrap();
    let (st, out) = sv.ctl(&["signal", "HUP", "relayer"]);
    assert!(
        st.success() && out.contains("signalled"),
        "supervisorctl signal HUP: {st}: {out}"
    );
    let record = poll_until(HANG, "the reload under supervisord", || {
        nth_record(&sv.read("relayer.log"), RELOADED, 0)
    });
    check_counts(&record, 1, 0, 0, 1).unwrap();
    let mut c = serves(&added).unwrap();
    let key = unique("supervised");
    expect(&mut c, &["SET", &key, "v"], &Reply::ok()).unwrap();
    assert_eq!(redis.query::<Option<String>>(&["GET", &key]), Some("v".into()));
    round_trip(&mut before).expect("the client connected before the reload");
    assert_eq!(pid_of(&sv), pid, "the relayer was restarted instead of reloaded");
    assert!(
        sv.status().contains("RUNNING"),
        "status after the reload: {}",
        sv.status()
    );
    drop(c);
    drop(before);

    // supervisorctl stop: SIGTERM, a clean exit.
    let (st, out) = sv.ctl(&["stop", "relayer"]);
    assert!(
        st.success() && out.contains("stopped"),
        "supervisorctl stop: {st}: {out}"
    );
    let status = sv.status();
    assert!(status.contains("STOPPED"), "status after stop: {status}");
    let sd_log = sv.read("supervisord.log");
    assert!(
        sd_log.contains("stopped: relayer (exit status 0)"),
        "supervisord did not log an exit status 0 for the stop"
    );
    let log = sv.read("relayer.log");
    assert!(log.contains("stopping"), "the relayer did not log its stop");
    assert!(log.contains("stopped"), "the relayer did not log that it stopped");
    assert!(
        !Supervisord::alive(pid),
        "the relayer process {pid} is still running"
    );
    for l in [&first, &added] {
        refused_within(l, REFUSE_TIMEOUT).unwrap();
    }

    // supervisorctl shutdown: supervisord exits, nothing left.
    let (st, out) = sv.ctl(&["shutdown"]);
    assert!(
        st.success() && out.contains("Shut down"),
        "supervisorctl shutdown: {st}: {out}"
    );
    let mut child = sv.child.take().unwrap();
    let deadline = Instant::now() + EXIT;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            sv.child = Some(child);
            panic!("supervisord still running {EXIT:?} after shutdown");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(st.success(), "supervisord exited with {st}");
    assert!(
        !Supervisord::alive(pid),
        "the relayer process {pid} outlived supervisord"
    );
    assert!(
        !sv.path("supervisor.sock").exists(),
        "supervisord left its socket behind"
    );
}
