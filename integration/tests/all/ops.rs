//! Operational details: unix socket permissions and the open-files limit.

use integration::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn unix_sockets_are_not_world_writable() {
    let redis = Redis::start();
    let relayer = Relayer::start(&format!(
        "{}\n{}",
        redis_entry("unix:$DIR/default.sock", &redis.url(), ""),
        redis_entry(
            "unix:$DIR/owner.sock",
            &redis.url(),
            "unixSocketMode = \"0600\"\nunixSocketGroup = \"0\""
        ),
    ));
    let dir = relayer.unix_path().parent().unwrap().to_path_buf();
    assert_eq!(mode_of(&dir.join("default.sock")), 0o660);
    assert_eq!(mode_of(&dir.join("owner.sock")), 0o600);
    let mut c = Client::unix(dir.join("owner.sock"));
    assert_eq!(c.q("PING"), Reply::Status("PONG".into()));
}

#[test]
fn bad_unix_socket_settings_are_refused() {
    for (extra, key) in [
        ("unixSocketMode = \"0999\"", "unixSocketMode"),
        ("unixSocketMode = true", "unixSocketMode"),
        ("unixSocketGroup = \"no-such-group-here\"", "unixSocketGroup"),
    ] {
        let out = check_config(&redis_entry(
            "unix:/tmp/never-bound.sock",
            "tcp://127.0.0.1:1",
            extra,
        ));
        assert!(!out.status.success(), "{extra} accepted");
        assert!(out.stderr.contains(key), "{extra}: {}", out.stderr);
    }
}

#[test]
fn open_files_limit_is_raised_and_logged() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    // Logged at start, through the asynchronous logger: it may reach the file after the
    // listener answers.
    relayer.wait_log_line(&["open files limit"], Duration::from_secs(10));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relayer.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files": the soft limit now equals the hard one.
    assert_eq!(fields[3], fields[4], "{line}");
}

/// SIGTERM waits for the drain; a second SIGTERM during it exits at once, with code 1 and a
/// log line saying so, and the unix socket file is removed either way.
#[test]
fn second_stop_signal_exits_at_once() {
    let redis = Redis::start();
    let listen = tcp_listen();
    let mut relayer = Relayer::start(&format!(
        "{}\n{}",
        redis_entry_mode("smart", &listen, &redis.url(), "drainTimeout = 30"),
        redis_entry("unix:$DIR/second.sock", &redis.url(), ""),
    ));
    let sock = relayer.unix_path();
    // Writes acknowledged but held back by the paused backend keep the drain waiting.
    assert_eq!(redis.client().q("CLIENT PAUSE 20000 WRITE"), Reply::ok());
    let mut c = relayer.client();
    for i in 0..50 {
        assert_eq!(c.cmd(&["SET", &format!("second:{i}"), "v"]), Reply::ok());
    }
    relayer.signal(libc::SIGTERM);
    wait_until(Duration::from_secs(10), "the drain to start", || {
        relayer.log().contains("stopping")
    });
    assert!(
        relayer.try_wait().is_none(),
        "exited before its writes were delivered"
    );
    let started = std::time::Instant::now();
    relayer.signal(libc::SIGTERM);
    let status = relayer.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", relayer.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(relayer.log().contains("second stop signal"), "{}", relayer.log());
    assert!(!sock.exists(), "unix socket file left behind");
    redis.client().q("CLIENT UNPAUSE");
}
