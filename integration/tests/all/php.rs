//! The PHP examples (phpredis) against the relayer, over TCP and over its unix socket, the
//! smart-mode loop through a smart relayer, and pipelines written whole before reading.

use integration::*;
use std::process::Command;
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
    let (st, out, err) = run_program(
        Command::new("php").arg(&path).args([&host, &port, ITERATIONS]),
        b"",
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

/// `smart_loop.php` (SETEX, HSET, EXPIRE per iteration, one GET at the end) through a smart
/// relayer whose backend is behind a 0.5 ms link, 200 iterations: it exits 0, and the backend holds
/// every key of the run with its value and TTL. Not timed: `integration/bench/smart-bench.sh`
/// measures it.
#[test]
fn php_smart_loop_through_the_smart_relayer() {
    const N: usize = 200;
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_micros(500));
    let relayer = Relayer::smart(&link.url(), "");
    let path = examples_dir().join("php").join("smart_loop.php");
    let port = relayer.port().to_string();
    let (st, out, err) = run_program(
        Command::new("php")
            .arg(&path)
            .args(["127.0.0.1", &port, &N.to_string()]),
        b"",
        "php smart_loop.php",
    );
    assert!(
        st.success(),
        "php smart_loop.php exited with {st}\nstdout: {out}\nstderr: {err}"
    );
    eprintln!(
        "smart_loop.php through the smart relayer: {}",
        out.trim().replace('\n', " ")
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name}= line in {out:?}"))
            .to_string()
    };
    let run = field("run");
    field("elapsed_s").parse::<f64>().expect("elapsed_s is a number");

    let mut direct = redis.client();
    let keys = direct.cmd(&["KEYS", &format!("smart_loop:{run}:*")]);
    assert_eq!(keys.as_array().map(|k| k.len()), Some(2 * N), "keys of run {run}");
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    for i in 0..N {
        let mut value = format!("{run}:{i}:").into_bytes();
        value.resize(1024, letters[i % 26]);
        let (s, h) = (
            format!("smart_loop:{run}:s:{i}"),
            format!("smart_loop:{run}:h:{i}"),
        );
        assert_eq!(direct.cmd(&["GET", &s]), Reply::Bulk(value.clone()), "{s}");
        assert_eq!(direct.cmd(&["HGET", &h, "f"]), Reply::Bulk(value), "{h} f");
        for k in [&s, &h] {
            let ttl = direct.cmd(&["TTL", k]).as_int().unwrap();
            assert!((1..=3600).contains(&ttl), "TTL of {k} is {ttl}");
        }
    }
    // The script's own check of the backend agrees.
    let (st, out, err) = run_program(
        Command::new("php").arg(&path).args([
            "127.0.0.1",
            &redis.port().to_string(),
            &N.to_string(),
            "verify",
            &run,
        ]),
        b"",
        "php smart_loop.php verify",
    );
    assert!(st.success(), "verify: {st}\nstdout: {out}\nstderr: {err}");
    assert_eq!(out.trim(), format!("verified={}", 2 * N));
}

/// `pipeline_before_read.php` through `relayer` at `host` `port`, with the counts that once hung
/// the relayer:
/// a phpredis pipeline (multi(Redis::PIPELINE), written whole at exec() before any reply is read)
/// of 300,000 GETs of a 1 KB value, every reply the value, then one of 1,000,000 SETs, every
/// reply true; redis-server then holds every key. Not timed (it prints its times).
fn php_pipeline_before_read(redis: &Redis, host: &str, port: u16) {
    let path = examples_dir().join("php").join("pipeline_before_read.php");
    let (st, out, err) = run_program(
        Command::new("php")
            .arg(&path)
            .args([host, &port.to_string(), "300000", "1000000"]),
        b"",
        "php pipeline_before_read.php",
    );
    assert!(
        st.success(),
        "php pipeline_before_read.php {host} {port} exited with {st}\nstdout: {out}\nstderr: {err}"
    );
    eprintln!("{}", out.trim());
    let run = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run="))
        .unwrap_or_else(|| panic!("no run= in {out:?}"));
    let mut direct = redis.client();
    // The value and the SETs' keys.
    assert_eq!(direct.q("DBSIZE"), Reply::Int(1_000_001));
    for i in (0..1_000_000).step_by(9973).chain([999_999]) {
        let k = format!("pipeline_before_read:{run}:set:{i}");
        assert_eq!(direct.cmd(&["GET", &k]), Reply::bulk(i.to_string()), "{k}");
    }
}

/// Through a sync relayer's unix socket (its small buffers: a relayer that stops reading a
/// client whose replies pile up deadlocks on either pipeline).
#[test]
fn php_pipeline_written_before_reading_sync_unix() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    php_pipeline_before_read(&redis, relayer.unix_path().to_str().unwrap(), 0);
}

/// Through a smart relayer over TCP, as the case first reported (its SETs acknowledged early).
#[test]
fn php_pipeline_written_before_reading_smart_tcp() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    php_pipeline_before_read(&redis, "127.0.0.1", relayer.port());
}
