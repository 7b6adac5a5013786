//! Operational details: unix socket permissions and the open-files limit.

use integration::*;
use std::os::unix::fs::PermissionsExt;

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
    let log = relayer.log();
    assert!(log.contains("open files limit"), "{log}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relayer.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files": the soft limit now equals the hard one.
    assert_eq!(fields[3], fields[4], "{line}");
}
