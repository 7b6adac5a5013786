//! The PHP examples (phpredis) against the relayer, over TCP and over its unix socket.

use integration::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const ITERATIONS: &str = "1000";

fn run_example(script: &str, unix: bool) {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let path = examples_dir().join("php").join(script);
    assert!(path.is_file(), "missing example {}", path.display());
    let (host, port) = if unix {
        (relayer.unix_path().to_str().unwrap().to_string(), "0".to_string())
    } else {
        ("127.0.0.1".to_string(), relayer.port().to_string())
    };
    let child = Command::new("php")
        .arg(&path)
        .args([&host, &port, ITERATIONS])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run php (Debian's php-cli)");
    let (st, out, err) = output_with_timeout(
        child,
        Duration::from_secs(120),
        &format!("php {script} {host} {port} {ITERATIONS}"),
    );
    assert!(
        st.success(),
        "php {script} {host} {port} {ITERATIONS} exited with {st}\nstdout: {out}\nstderr: {err}"
    );
    eprintln!(
        "{script} over {}: {}",
        if unix { "unix" } else { "tcp" },
        out.trim()
    );
}

#[test]
fn php_relay_loop_tcp() {
    run_example("relay_loop.php", false);
}

#[test]
fn php_relay_loop_unix() {
    run_example("relay_loop.php", true);
}

#[test]
fn php_select_check_tcp() {
    run_example("select_check.php", false);
}

#[test]
fn php_select_check_unix() {
    run_example("select_check.php", true);
}
