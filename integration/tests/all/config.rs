//! Configuration: shipped files, refused configs and what the error names, unknown keys, unix
//! socket files, ports in use, --version, log format.

use integration::timeouts::{EXIT, HANG};
use integration::*;
use std::os::unix::net::UnixListener;
use std::time::Duration;

fn assert_check_ok(out: &CheckOutput) {
    assert!(
        out.status.success(),
        "--check {} failed with {}:\nstdout: {}\nstderr: {}",
        out.path.display(),
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn shipped_configs_pass_check() {
    let dir = workspace_dir().join("config");
    let mut checked = 0;
    for name in ["relayer.conf", "relayer.toml"] {
        let out = check_config_file(&dir.join(name));
        assert_check_ok(&out);
        checked += 1;
    }
    // Any other shipped file (the documented reference) must be valid too.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if (name.ends_with(".toml") || name.ends_with(".conf"))
            && name != "relayer.conf"
            && name != "relayer.toml"
        {
            assert_check_ok(&check_config_file(&path));
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn version_flag() {
    let (st, out, err) = output_with_timeout(
        std::process::Command::new(relayer_bin())
            .arg("--version")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        EXIT,
        "smart-relayer --version",
    );
    assert!(st.success(), "--version: {st} {err}");
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {out:?}"
    );
}

/// Each bad config exits non-zero, and stderr names the file, the entry (its listen) and the key.
#[test]
fn bad_configs_are_refused_naming_file_entry_and_key() {
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let good = |body: &str| {
        format!(
            "[[relayer]]\nprotocol = \"redis\"\nmode = \"sync\"\nlisten = \"tcp://127.0.0.1:{}\"\nurl = \"tcp://127.0.0.1:6379\"\n\n[[relayer]]\n{body}\n",
            free_port()
        )
    };
    let entry = |protocol: &str, mode: &str, listen: &str, url: &str, extra: &str| {
        good(&format!(
            "protocol = \"{protocol}\"\nmode = \"{mode}\"\nlisten = \"{listen}\"\nurl = \"{url}\"\n{extra}"
        ))
    };
    let url = "tcp://127.0.0.1:6379";
    // (what, config, the listen that must be named (None: no entry to name), key)
    let cases: Vec<(&str, String, Option<&str>, Option<&str>)> = vec![
        (
            "bad TOML",
            good(&format!(
                "protocol = \"redis\"\nlisten = \"{listen}\"\nurl = \"tcp://127.0.0.1:6379\n"
            )),
            None,
            None,
        ),
        (
            "unknown protocol",
            entry("memcached", "sync", &listen, url, ""),
            Some(&listen),
            Some("protocol"),
        ),
        (
            "bad listen URL",
            entry("redis", "sync", "http://127.0.0.1:1234", url, ""),
            Some("http://127.0.0.1:1234"),
            Some("listen"),
        ),
        (
            "listen without a port",
            entry("redis", "sync", "tcp://127.0.0.1", url, ""),
            Some("tcp://127.0.0.1"),
            Some("listen"),
        ),
        (
            "type error",
            entry("redis", "sync", &listen, url, "maxConnections = \"many\""),
            Some(&listen),
            Some("maxConnections"),
        ),
        (
            "type error, snake_case",
            entry("redis", "sync", &listen, url, "max_clients = true"),
            Some(&listen),
            Some("max_clients"),
        ),
        (
            "fractional count",
            entry("redis", "sync", &listen, url, "maxConnections = 2.5"),
            Some(&listen),
            Some("maxConnections"),
        ),
        (
            "unknown mode",
            entry("redis", "turbo", &listen, url, ""),
            Some(&listen),
            Some("mode"),
        ),
        (
            "bad target URL",
            entry("redis", "sync", &listen, "ftp://127.0.0.1:21", ""),
            Some(&listen),
            Some("url"),
        ),
        (
            "negative timeout",
            entry("redis", "sync", &listen, url, "timeout = -1"),
            Some(&listen),
            Some("timeout"),
        ),
        (
            "zero retryTimeout",
            entry("redis", "smart", &listen, url, "retryTimeout = 0"),
            Some(&listen),
            Some("retryTimeout"),
        ),
        (
            "negative retryTimeout",
            entry("redis", "smart", &listen, url, "retryTimeout = -5"),
            Some(&listen),
            Some("retryTimeout"),
        ),
        (
            "retryTimeout not a number",
            entry("redis", "smart", &listen, url, "retry_timeout = \"soon\""),
            Some(&listen),
            Some("retry_timeout"),
        ),
        (
            "queryBufferLimit under Redis' minimum (1 MiB)",
            format!(
                "queryBufferLimit = 1048575\n{}",
                entry("redis", "sync", &listen, url, "")
            ),
            None,
            Some("queryBufferLimit"),
        ),
        (
            "queryBufferLimit not an integer",
            format!(
                "query_buffer_limit = \"1gb\"\n{}",
                entry("redis", "sync", &listen, url, "")
            ),
            None,
            Some("query_buffer_limit"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, config, entry_listen, key) in &cases {
        let out = check_config(config);
        let path = out.path.display().to_string();
        let err = out.stderr.to_lowercase();
        let mut missing = Vec::new();
        if out.status.success() {
            missing.push("a non-zero exit".to_string());
        }
        if !out.stderr.contains(&path) {
            missing.push(format!("the file {path}"));
        }
        if let Some(l) = entry_listen {
            if !out.stderr.contains(l) {
                missing.push(format!("the entry {l}"));
            }
        }
        if let Some(k) = key {
            let k = k.to_lowercase();
            let snake = k.replace('_', "");
            if !err.contains(&k) && !err.contains(&snake) {
                missing.push(format!("the key {k}"));
            }
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{what}: expected {} (exit {}); stderr: {}",
                missing.join(", "),
                out.status,
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A config whose second entry is bad exits non-zero without ever listening on the first.
#[test]
fn bad_config_binds_nothing() {
    let first = free_port();
    let config = format!(
        "{}{}",
        redis_entry(&format!("tcp://127.0.0.1:{first}"), "tcp://127.0.0.1:6379", ""),
        redis_entry(&tcp_listen(), "tcp://127.0.0.1:6379", "maxConnections = \"many\"")
    );
    let mut r = Relayer::spawn(&config);
    loop {
        if let Some(st) = r.try_wait() {
            assert!(!st.success(), "exit status {st}");
            break;
        }
        assert!(
            Client::connect_tcp(first).is_err(),
            "the first entry was bound although the config is bad"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(r.log().contains("maxConnections"), "log: {}", r.log());
}

/// An unknown key only warns, naming it, and the relayer still starts.
#[test]
fn unknown_key_warns_and_starts() {
    let redis = Redis::start();
    let config = format!(
        "fancyGlobal = 1\n{}",
        redis_entry(&tcp_listen(), &redis.url(), "frobnicateLevel = 3")
    );
    let out = check_config(&config);
    assert_check_ok(&out);
    assert!(
        out.stderr.contains("frobnicateLevel") && out.stderr.contains("fancyGlobal"),
        "--check should warn about the unknown keys: {}",
        out.stderr
    );
    let relayer = Relayer::start(&config);
    let mut c = relayer.client();
    assert_eq!(c.q("SET uk:k v"), Reply::ok());
    assert_eq!(c.q("GET uk:k"), Reply::bulk("v"));
    wait_until(HANG, "the warning in the log", || {
        relayer.log().contains("frobnicateLevel")
    });
}

/// Keys are matched in any case and in snake_case, and `logFormat = "json"` logs JSON lines.
#[test]
fn key_spellings_and_json_log() {
    let redis = Redis::start();
    let port = free_port();
    let config = format!(
        "LOGFORMAT = \"json\"\n[[relayer]]\nPROTOCOL = \"redis\"\nMode = \"sync\"\nListen = \"tcp://127.0.0.1:{port}\"\nURL = \"{}\"\nmax_connections = 2\nMaxClients = 50\nmax_pending_replies = 10\nconnect_timeout = 2.5\nTimeout = 0.5\n",
        redis.url()
    );
    assert_check_ok(&check_config(&config));
    let relayer = Relayer::start(&config);
    let mut c = relayer.client();
    assert_eq!(c.q("SET ks:k v"), Reply::ok());
    assert_eq!(c.q("GET ks:k"), Reply::bulk("v"));
    wait_until(HANG, "something in the log", || !relayer.log().trim().is_empty());
    for line in relayer.log().lines().filter(|l| !l.trim().is_empty()) {
        let l = line.trim();
        assert!(l.starts_with('{') && l.ends_with('}'), "not a JSON line: {line}");
    }
}

/// A unix socket file left by a dead process is replaced.
#[test]
fn stale_unix_socket_is_replaced() {
    let redis = Redis::start();
    let dir = temp_dir();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
    assert!(path.exists());
    let relayer = Relayer::start(&redis_entry(
        &format!("unix:{}", path.display()),
        &redis.url(),
        "",
    ));
    let mut c = Client::unix(&path);
    assert_eq!(c.q("SET stale:k v"), Reply::ok());
    assert_eq!(c.q("GET stale:k"), Reply::bulk("v"));
    drop(relayer);
}

/// The `unix:///path` form works too.
#[test]
fn unix_triple_slash_listen() {
    let redis = Redis::start();
    let relayer = Relayer::start(&redis_entry("unix://$DIR/r.sock", &redis.url(), ""));
    let mut c = Client::unix(relayer.dir().join("r.sock"));
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    assert_eq!(c.q("SET u3:k v"), Reply::ok());
}

/// A unix socket path that a live process answers on is an error, and is left alone.
#[test]
fn live_unix_socket_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("live.sock");
    let live = UnixListener::bind(&path).unwrap();
    let mut r = Relayer::spawn(&redis_entry(
        &format!("unix:{}", path.display()),
        "tcp://127.0.0.1:6379",
        "",
    ));
    let st = r.wait_exit(EXIT);
    assert!(!st.success(), "exit status {st}; log: {}", r.log());
    assert!(
        r.log().contains(path.to_str().unwrap()),
        "the error should name the socket: {}",
        r.log()
    );
    // The live socket still works.
    let _c = std::os::unix::net::UnixStream::connect(&path).expect("the live socket was removed");
    live.accept().unwrap();
}

/// A port in use: exits non-zero, naming it, before serving any client on the other entries.
#[test]
fn port_in_use_is_refused_before_serving_others() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let other = free_port();
    let config = [
        redis_entry("unix:$DIR/first.sock", "tcp://127.0.0.1:6379", ""),
        redis_entry(&format!("tcp://127.0.0.1:{other}"), "tcp://127.0.0.1:6379", ""),
        redis_entry(
            &format!("tcp://127.0.0.1:{busy_port}"),
            "tcp://127.0.0.1:6379",
            "",
        ),
    ]
    .concat();
    let mut r = Relayer::spawn(&config);
    let sock = r.dir().join("first.sock");
    // The entries are bound in order, so a connection can land in the kernel's backlog of an
    // earlier one for a moment; it must never be served.
    fn served(c: std::io::Result<Client>) -> bool {
        let Ok(mut c) = c else { return false };
        c.set_read_timeout(Duration::from_secs(2));
        c.try_send_raw(b"PING\r\n").is_ok() && c.try_read_reply().is_ok()
    }
    let status = loop {
        if let Some(st) = r.try_wait() {
            break st;
        }
        assert!(
            !served(Client::connect_tcp(other)),
            "tcp://127.0.0.1:{other} served a client before the busy port was found"
        );
        assert!(
            !served(Client::connect_unix(&sock)),
            "{} served a client before the busy port was found",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(!status.success(), "exit status {status}");
    assert!(
        r.log().contains(&busy_port.to_string()),
        "the error should name the busy listen address: {}",
        r.log()
    );
    assert!(
        !sock.exists(),
        "{} left behind by a relayer that refused to start",
        sock.display()
    );
    drop(busy);
}

/// SIGTERM stops the relayer with exit status 0; clients see their connection closed.
#[test]
fn sigterm_stops_the_relayer() {
    let redis = Redis::start();
    let mut relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    assert_eq!(c.q("SET term:k v"), Reply::ok());
    relayer.signal(libc::SIGTERM);
    let st = relayer.wait_exit(EXIT);
    assert!(
        st.success(),
        "exit status after SIGTERM: {st}; log: {}",
        relayer.log()
    );
    c.expect_closed();
}
