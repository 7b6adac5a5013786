//! Real clients unchanged through the relayer, in sync and smart mode: redis-py
//! (examples/python/redis_py_check.py), phpredis' multi() and pipeline() modes
//! (examples/php/multi_pipeline.php), redis-cli (arguments, stdin, --pipe, -x, -r, --scan) and
//! plain-text commands written nc-style, redis-benchmark, and the introspection commands clients
//! send (COMMAND, COMMAND DOCS, INFO, CONFIG GET, CLIENT LIST/INFO).
//!
//! Each client runs against a redis-server directly and against another one through the relayer:
//! the outputs are the same, and so is what the two servers hold afterwards.

use integration::timeouts::{DELIVERY, HANG};
use integration::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sync,
    Smart,
}

/// A relayer in `mode` in front of `redis`; its TCP port, and its unix socket in sync mode.
fn relayer_for(redis: &Redis, mode: Mode) -> Relayer {
    match mode {
        Mode::Sync => Relayer::for_redis(redis, ""),
        Mode::Smart => Relayer::smart(&redis.url(), ""),
    }
}

/// Runs a client and panics unless it exits 0; returns its stdout.
fn run_ok(mut cmd: Command, stdin: &[u8], what: &str) -> String {
    let (st, out, err) = run_program(&mut cmd, stdin, what);
    assert!(
        st.success(),
        "{what} exited with {st}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// A line redis-cli adds after a command that took half a second or more, `(1.72s)`: how
/// long a machine under load took, not what was answered.
fn is_timing(line: &str) -> bool {
    line.strip_prefix('(')
        .and_then(|l| l.strip_suffix("s)"))
        .is_some_and(|t| t.parse::<f64>().is_ok())
}

/// Panics showing the first differing line unless the two transcripts are the same (but for
/// redis-cli's timing lines).
fn assert_same_transcript(direct: &str, via: &str, what: &str) {
    fn keep(t: &str) -> Vec<&str> {
        t.lines().filter(|l| !is_timing(l)).collect()
    }
    let (d, v) = (keep(direct), keep(via));
    if d == v {
        return;
    }
    let i = d
        .iter()
        .zip(&v)
        .position(|(a, b)| a != b)
        .unwrap_or(d.len().min(v.len()));
    panic!(
        "{what}: the output through the relayer differs from redis' at line {}:\n  redis:   {:?}\n  relayer: {:?}\nwhole output through the relayer:\n{via}",
        i + 1,
        d.get(i),
        v.get(i)
    );
}

// ---------------------------------------------------------------------------------------------
// redis-py

/// redis-py 7.4 (RESP2 by default).
fn redis_py() -> PathBuf {
    python_of("redis-py")
}

/// redis-py 8 (RESP3 by default: HELLO 3 on every connection).
fn redis_py8() -> PathBuf {
    python_of("redis-py8")
}

fn python_of(venv: &str) -> PathBuf {
    let python = target_dir().join("tools").join(venv).join("bin").join("python");
    assert!(
        python.is_file(),
        "{} not found: run scripts/install-deps.sh (it installs redis-py there)",
        python.display()
    );
    python
}

fn redis_py_check(host: &str, port: u16, smart: bool) -> String {
    redis_py_check_with(&redis_py(), host, port, smart)
}

fn redis_py_check_with(python: &Path, host: &str, port: u16, smart: bool) -> String {
    let mut cmd = Command::new(python);
    cmd.arg(examples_dir().join("python").join("redis_py_check.py"))
        .args([host, &port.to_string(), "--prefix", "redis_py_check:"]);
    if smart {
        cmd.arg("--smart");
    }
    let out = run_ok(
        cmd,
        b"",
        &format!("redis_py_check.py {host} {port} smart={smart}"),
    );
    assert!(out.contains("redis_py_check: OK "), "no OK line in {out}");
    out
}

fn redis_py_matches_direct(mode: Mode, unix: bool) {
    let direct = Redis::start();
    let expected = redis_py_check("127.0.0.1", direct.port(), false);
    let redis = Redis::start();
    let relayer = relayer_for(&redis, mode);
    let via = if unix {
        redis_py_check(relayer.unix_path().to_str().unwrap(), 0, mode == Mode::Smart)
    } else {
        redis_py_check("127.0.0.1", relayer.port(), mode == Mode::Smart)
    };
    assert_same_transcript(&expected, &via, &format!("redis-py ({mode:?}, unix={unix})"));
    eprintln!("redis-py {mode:?}: {}", via.lines().last().unwrap());
}

/// redis-py (its handshake with CLIENT SETINFO and SETNAME, strings, binary and 1 MiB values,
/// lists, hashes, sets, sorted sets, scans, Lua, locks, errors, pipelines with and without a
/// transaction, errors inside them, another DB; and on a dedicated connection: blpop, brpop,
/// blmove, bzpopmin and xread(block=) released from another thread's connection and timing out,
/// pubsub() with get_message(), transaction() and pipe.watch() retried after a conflict, wait(),
/// monitor()) gives through the relayer the same results as from redis.
#[test]
fn redis_py_sync_tcp_matches_redis() {
    redis_py_matches_direct(Mode::Sync, false);
}

#[test]
fn redis_py_sync_unix_matches_redis() {
    redis_py_matches_direct(Mode::Sync, true);
}

/// In smart mode the early-acknowledged writes are read back exactly as written.
#[test]
fn redis_py_smart_matches_redis() {
    redis_py_matches_direct(Mode::Smart, false);
}

/// redis-py 8 with its default settings (RESP3: HELLO 3 on every connection) gives through
/// sync and smart relayers the same results as from redis-server, which it also reads in RESP3:
/// the whole transcript of `redis_py_check.py`, blocking commands, pub/sub, WATCH and MONITOR
/// included.
#[test]
fn redis_py8_resp3_matches_redis() {
    let direct = Redis::start();
    let expected = redis_py_check_with(&redis_py8(), "127.0.0.1", direct.port(), false);
    for mode in [Mode::Sync, Mode::Smart] {
        let redis = Redis::start();
        let relayer = relayer_for(&redis, mode);
        let via = redis_py_check_with(&redis_py8(), "127.0.0.1", relayer.port(), mode == Mode::Smart);
        assert_same_transcript(&expected, &via, &format!("redis-py 8 ({mode:?})"));
    }
}

/// `examples/python/redis_py_clients.py`: `clients` redis-py 8 clients at once, then the
/// backend's connections while they all hold theirs (the JSON line it prints).
fn redis_py_clients(port: u16, backend_port: u16, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(redis_py8());
    cmd.arg(examples_dir().join("python").join("redis_py_clients.py"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            &backend_port.to_string(),
            "--rounds",
            "5",
        ])
        .args(extra);
    let out = run_ok(cmd, b"", &format!("redis_py_clients.py {port} {extra:?}"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// 500 redis-py 8 clients with default settings at once, through sync and smart relayers and
/// a cluster relayer: no error, and the backend sees the relayer's shared connections only,
/// one RESP3 connection for all of them (and with `protocol=2`, none); in smart mode their
/// writes are acknowledged early.
#[test]
fn five_hundred_redis_py8_clients_share_the_relayers_connections() {
    for mode in [Mode::Sync, Mode::Smart] {
        let redis = Redis::start();
        let metrics = free_port();
        let extra = format!("metricsListen = \"127.0.0.1:{metrics}\"");
        let relayer = match mode {
            Mode::Sync => {
                Relayer::start(&(extra.clone() + "\n" + &redis_entry(&tcp_listen(), &redis.url(), "")))
            }
            Mode::Smart => Relayer::start(
                &(extra.clone() + "\n" + &redis_entry_mode("smart", &tcp_listen(), &redis.url(), "")),
            ),
        };
        let got = redis_py_clients(relayer.port(), redis.port(), &[]);
        assert_eq!(got["errors"], 0, "{mode:?}: {got}");
        assert_eq!(got["clients"], 500);
        assert_eq!(
            got["backend_resp3"], 1,
            "{mode:?}: one RESP3 connection for 500 clients: {got}"
        );
        assert_eq!(
            got["backend_connections"], 2,
            "{mode:?}: the RESP2 and RESP3 shared connections: {got}"
        );
        let got = redis_py_clients(relayer.port(), redis.port(), &["--protocol", "2"]);
        assert_eq!(
            (got["errors"].as_u64(), got["backend_connections"].as_u64()),
            (Some(0), Some(2)),
            "{mode:?}: {got}"
        );
        if mode == Mode::Smart {
            let page = crate::helpers::metrics_page(metrics);
            let acknowledged: f64 = page
                .lines()
                .find_map(|l| {
                    l.strip_prefix("smart_relayer_commands_total{")?
                        .split_once("outcome=\"acknowledged\"}")?
                        .1
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no acknowledged count in:\n{page}"));
            // SET, HSET and EXPIRE of 1,000 clients' five rounds.
            assert!(
                acknowledged >= 3.0 * 5.0 * 1000.0,
                "{acknowledged} acknowledged early:\n{page}"
            );
        }
    }
    let cluster = Cluster::start();
    let relayer = Relayer::for_cluster(&cluster, "smart", "");
    let master = cluster.masters()[0];
    let got = redis_py_clients(relayer.port(), cluster.port(master), &[]);
    assert_eq!(got["errors"], 0, "cluster: {got}");
    assert_eq!(
        got["backend_resp3"], 1,
        "cluster: one RESP3 connection on a master: {got}"
    );
}

// ---------------------------------------------------------------------------------------------
// phpredis

fn php_multi_pipeline(host: &str, port: u16, smart: bool) -> String {
    let mut cmd = Command::new("php");
    cmd.arg(examples_dir().join("php").join("multi_pipeline.php"))
        .args([host, &port.to_string()]);
    if smart {
        cmd.arg("smart");
    }
    let out = run_ok(
        cmd,
        b"",
        &format!("php multi_pipeline.php {host} {port} smart={smart}"),
    );
    assert!(out.contains("multi_pipeline: OK "), "no OK line in {out}");
    out
}

fn phpredis_matches_direct(mode: Mode, unix: bool) {
    let direct = Redis::start();
    let expected = php_multi_pipeline("127.0.0.1", direct.port(), false);
    let redis = Redis::start();
    let relayer = relayer_for(&redis, mode);
    let via = if unix {
        php_multi_pipeline(relayer.unix_path().to_str().unwrap(), 0, mode == Mode::Smart)
    } else {
        php_multi_pipeline("127.0.0.1", relayer.port(), mode == Mode::Smart)
    };
    assert_same_transcript(&expected, &via, &format!("phpredis ({mode:?}, unix={unix})"));
    eprintln!("phpredis {mode:?}: {}", via.lines().last().unwrap());
}

/// phpredis' multi() (chained and not), DISCARD, pipeline() and multi(Redis::PIPELINE), SELECT
/// inside a pipeline and a MULTI, a MULTI inside a pipeline; watch() with exec() false after a
/// conflict, blPop/brPop/bzPopMin/xRead released by a forked child's push and timing out, wait(),
/// subscribe()/psubscribe() fed by a child: the same results as from redis.
#[test]
fn phpredis_multi_pipeline_sync_tcp_matches_redis() {
    phpredis_matches_direct(Mode::Sync, false);
}

#[test]
fn phpredis_multi_pipeline_sync_unix_matches_redis() {
    phpredis_matches_direct(Mode::Sync, true);
}

#[test]
fn phpredis_multi_pipeline_smart_matches_redis() {
    phpredis_matches_direct(Mode::Smart, false);
}

// ---------------------------------------------------------------------------------------------
// redis-cli and plain-text commands

/// redis-cli invocations: (arguments after -h/-p, stdin).
fn cli_cases() -> Vec<(Vec<&'static str>, &'static [u8])> {
    vec![
        (vec!["PING"], b""),
        (vec!["SET", "cli:a", "hello world"], b""),
        (vec!["GET", "cli:a"], b""),
        (vec!["--no-raw", "GET", "cli:a"], b""),
        (vec!["-r", "3", "INCR", "cli:n"], b""),
        (vec!["--no-raw", "LPUSH", "cli:a", "x"], b""),
        (vec!["LPUSH", "cli:a", "x"], b""),
        (vec!["--no-raw", "NOSUCHCMD", "x"], b""),
        (vec!["-n", "4", "SET", "cli:a", "four"], b""),
        (vec!["-n", "4", "GET", "cli:a"], b""),
        (vec!["GET", "cli:a"], b""),
        // -x: the last argument is stdin.
        (vec!["-x", "SET", "cli:x"], b"from\r\nstdin\n"),
        (vec!["GET", "cli:x"], b""),
        // Commands read from stdin, one per line, quotes included.
        (
            vec![],
            b"SET cli:s \"two words\"\nGET cli:s\nRPUSH cli:l a b c\nLRANGE cli:l 0 -1\nHSET cli:h f v\nHGETALL cli:h\nEXISTS cli:s cli:l cli:nope\n",
        ),
        (vec!["--no-raw"], b"LRANGE cli:l 0 -1\nHGETALL cli:h\nGET cli:nope\nLPUSH cli:s x\n"),
        // MULTI typed line by line: QUEUED, then EXEC's array; a runtime error inside it.
        (vec!["--no-raw"], b"MULTI\nINCR cli:m\nLPUSH cli:s x\nINCR cli:m\nGET cli:m\nEXEC\n"),
        (vec!["--no-raw"], b"MULTI\nSET cli:d x\nDISCARD\nEXISTS cli:d\nEXEC\n"),
        // --pipe: mass insertion, RESP and inline lines mixed.
        (
            vec!["--pipe"],
            b"*3\r\n$3\r\nSET\r\n$6\r\ncli:p1\r\n$2\r\nv1\r\nSET cli:p2 v2\r\nINCR cli:pn\r\nLPUSH cli:p1 x\r\nINCR cli:pn\r\n",
        ),
        (vec!["MGET", "cli:p1", "cli:p2", "cli:pn"], b""),
        (vec!["--scan", "--pattern", "cli:p*"], b""),
        (vec!["--no-raw", "EVAL", "return {KEYS[1], ARGV[1], 3}", "1", "cli:k", "v"], b""),
        (vec!["DBSIZE"], b""),
        (vec!["-n", "4", "DBSIZE"], b""),
    ]
}

fn cli_transcript(port: u16) -> String {
    let port = port.to_string();
    let mut all = String::new();
    for (args, stdin) in cli_cases() {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port]).args(&args);
        let (st, out, err) = run_program(&mut cmd, stdin, &format!("redis-cli {args:?}"));
        let mut out = out;
        if args.first() == Some(&"--scan") {
            // SCAN's order is the server's hash order: compare the set of keys.
            let mut keys: Vec<&str> = out.lines().collect();
            keys.sort_unstable();
            out = keys.join("\n") + "\n";
        }
        all.push_str(&format!(
            "$ redis-cli {args:?} <<< {:?}\n[{st}] {out}{err}",
            String::from_utf8_lossy(stdin)
        ));
    }
    all
}

fn redis_cli_matches_direct(mode: Mode) {
    let direct = Redis::start();
    let expected = cli_transcript(direct.port());
    let redis = Redis::start();
    let relayer = relayer_for(&redis, mode);
    let via = cli_transcript(relayer.port());
    assert_same_transcript(&expected, &via, &format!("redis-cli ({mode:?})"));
    // The transcript holds what was checked: values read back, errors, EXEC's array.
    for want in [
        "hello world",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "\"four\"",
        "from\r\nstdin\n",
        "1) \"a\"\n2) \"b\"\n3) \"c\"",
        "1) (integer) 1\n2) (error) WRONGTYPE",
        "errors: 1, replies: 5",
        "cli:p1\ncli:p2\ncli:pn\n",
    ] {
        assert!(via.contains(want), "no {want:?} in the transcript:\n{via}");
    }
}

/// redis-cli with arguments, -n, -r, -x, --no-raw, commands on stdin (MULTI/EXEC and DISCARD
/// typed line by line), --pipe and --scan: the same output through the relayer as from redis.
#[test]
fn redis_cli_sync_matches_redis() {
    redis_cli_matches_direct(Mode::Sync);
}

#[test]
fn redis_cli_smart_matches_redis() {
    redis_cli_matches_direct(Mode::Smart);
}

/// `printf 'SET a b\r\nGET a\r\n' | nc`: plain-text commands written at once and the write side
/// closed; every reply arrives, then the connection closes. The same bytes as from redis.
fn inline_nc_style(mode: Mode) {
    let input: &[u8] = b"SET nc:a b\r\nGET nc:a\r\nINCR nc:n\nINCR nc:n\r\nSET nc:q \"x y\"\r\nGET nc:q\r\nLPUSH nc:a x\r\nPING\r\nECHO hi\r\nNOSUCHCMD\r\nMULTI\r\nINCR nc:n\r\nGET nc:a\r\nEXEC\r\nGET nc:n\r\n";
    let nc = |port: u16| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(HANG)).unwrap();
        s.write_all(input).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    };
    let direct = Redis::start();
    let redis = Redis::start();
    let relayer = relayer_for(&redis, mode);
    let (d, v) = (nc(direct.port()), nc(relayer.port()));
    assert!(
        d == v,
        "relayer {}\nredis {}",
        show_bytes(&v, 1000),
        show_bytes(&d, 1000)
    );
    assert!(
        v.ends_with(b"*2\r\n:3\r\n$1\r\nb\r\n$1\r\n3\r\n"),
        "{}",
        show_bytes(&v, 1000)
    );
}

#[test]
fn inline_commands_nc_style_sync() {
    inline_nc_style(Mode::Sync);
}

#[test]
fn inline_commands_nc_style_smart() {
    inline_nc_style(Mode::Smart);
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark

const BENCH_TESTS: &str = "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset";

/// `redis-benchmark -q -n 2000 -t BENCH_TESTS` (plus `extra`): panics unless it exits 0, reports
/// every test and prints no error or warning (it reads CONFIG GET save/appendonly at start).
fn benchmark(port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut cmd = Command::new("redis-benchmark");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-q",
        "-n",
        "2000",
        "-t",
        BENCH_TESTS,
    ])
    .args(extra);
    let (st, out, err) = run_program(&mut cmd, b"", "redis-benchmark");
    let bad: Vec<&str> = out
        .split(['\n', '\r'])
        .chain(err.split(['\n', '\r']))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("err") || l.contains("warn") || l.contains("could not")
        })
        .collect();
    let reported = out
        .split(['\n', '\r'])
        .filter(|l| l.contains("requests per second"))
        .count();
    // LRANGE_100 is preceded by its own LPUSH run.
    let expected = BENCH_TESTS.split(',').count() + 1;
    assert!(
        st.success() && bad.is_empty() && reported == expected,
        "redis-benchmark {extra:?} exited with {st}, {reported} of {expected} results, bad lines {bad:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// What redis-benchmark leaves in the server: the INCR counter, the list, set, hash and sorted
/// set, the keys.
fn bench_state(redis: &Redis) -> Vec<Reply> {
    let mut c = redis.client();
    [
        vec!["DBSIZE"],
        vec!["GET", "counter:__rand_int__"],
        vec!["GET", "key:__rand_int__"],
        vec!["LLEN", "mylist"],
        vec!["SCARD", "myset"],
        vec!["HLEN", "myhash"],
        vec!["ZCARD", "myzset"],
    ]
    .iter()
    .map(|cmd| c.cmd(cmd))
    .collect()
}

fn redis_benchmark_matches_direct(mode: Mode, extra: &[&str]) {
    let direct = Redis::start();
    benchmark(direct.port(), extra);
    let redis = Redis::start();
    let relayer = relayer_for(&redis, mode);
    let out = benchmark(relayer.port(), extra);
    eprintln!(
        "redis-benchmark {mode:?} {extra:?} through the relayer:\n{}",
        out.trim()
    );
    // Smart writes may still be on their way when redis-benchmark ends.
    let want = bench_state(&direct);
    let mut got = Vec::new();
    wait_until(DELIVERY, "the relayer's background writes", || {
        got = bench_state(&redis);
        got == want
    });
    assert_eq!(want[1], Reply::bulk("2000"), "INCR ran 2000 times: {want:?}");
}

#[test]
fn redis_benchmark_sync() {
    redis_benchmark_matches_direct(Mode::Sync, &[]);
}

#[test]
fn redis_benchmark_sync_pipelined() {
    redis_benchmark_matches_direct(Mode::Sync, &["-P", "16", "-c", "10"]);
}

#[test]
fn redis_benchmark_smart() {
    redis_benchmark_matches_direct(Mode::Smart, &[]);
}

#[test]
fn redis_benchmark_smart_pipelined() {
    redis_benchmark_matches_direct(Mode::Smart, &["-P", "16", "-c", "10"]);
}

// ---------------------------------------------------------------------------------------------
// Introspection

/// What clients ask about the server: COMMAND, COMMAND COUNT/DOCS/INFO, CONFIG GET and INFO are
/// forwarded and come back as from redis; CLIENT LIST and CLIENT INFO show the relayer's
/// upstream connection, never another client's name or DB.
#[test]
fn introspection_commands() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut direct = redis.client();
    let mut via = relayer.client();
    for cmd in [
        vec!["COMMAND", "COUNT"],
        // redis-cli's first command in interactive mode (for its hints), about 500 KB.
        vec!["COMMAND", "DOCS"],
        vec!["COMMAND", "DOCS", "GET", "SET"],
        vec!["COMMAND", "INFO", "GET", "EVAL"],
        vec!["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
        vec!["CONFIG", "GET", "maxmemory"],
        vec!["CONFIG", "GET", "save"],
        vec!["CONFIG", "GET", "appendonly"],
    ] {
        assert_eq!(via.cmd_raw(&cmd), direct.cmd_raw(&cmd), "{cmd:?}");
    }
    let all = via.cmd(&["COMMAND"]);
    assert_eq!(
        all.as_array().map(|a| a.len() as i64),
        direct.cmd(&["COMMAND", "COUNT"]).as_int(),
        "COMMAND lists every command"
    );
    let info = via.cmd(&["INFO"]).as_str().unwrap();
    assert!(info.contains("redis_version:"), "{info}");
    // CLIENT INFO and LIST: the relayer's connections; the client's own name stays with it.
    assert_eq!(via.cmd(&["CLIENT", "SETNAME", "secret-name"]), Reply::ok());
    let list = via.cmd(&["CLIENT", "LIST"]).as_str().unwrap();
    let info = via.cmd(&["CLIENT", "INFO"]).as_str().unwrap();
    eprintln!("CLIENT LIST through the relayer:\n{list}CLIENT INFO through the relayer: {info}");
    assert!(
        !list.contains("secret-name") && !info.contains("secret-name"),
        "{list}{info}"
    );
    assert!(info.starts_with("id="), "{info}");
    // KILL and UNBLOCK act on the relayer's clients (see `client_kill`), never on the backend's
    // connections: the shared connection is still there after a KILL that would have matched
    // it on the backend.
    let upstream_id = info
        .split(' ')
        .next()
        .unwrap()
        .trim_start_matches("id=")
        .to_string();
    assert!(via.cmd(&["CLIENT", "KILL", "TYPE", "normal"]).as_int().is_some());
    assert_eq!(
        via.cmd(&["client", "kill", "127.0.0.1:1"]),
        Reply::error("ERR No such client")
    );
    let info_after = via.cmd(&["CLIENT", "INFO"]).as_str().unwrap();
    assert!(
        info_after.starts_with(&format!("id={upstream_id} ")),
        "the shared connection is still there: {info_after}"
    );
}

/// HELLO's fields but the id, by name.
fn hello_fields(reply: &Reply) -> Vec<(String, Reply)> {
    let items = reply
        .as_array()
        .unwrap_or_else(|| panic!("HELLO replied {reply:?}"));
    items
        .chunks(2)
        .map(|p| (p[0].as_str().expect("a field name"), p[1].clone()))
        .filter(|(name, _)| name != "id")
        .collect()
}

/// HELLO answered by the relayer says what the backend's own HELLO says (its version, its
/// mode), but for the client's id, which is the relayer's.
#[test]
fn hello_reports_the_backends_version_and_mode() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut direct = redis.client();
    let want = hello_fields(&direct.cmd(&["HELLO", "2"]));
    let mut via = relayer.client();
    // The version is read when a connection is made, not waited for.
    poll_until(HANG, "HELLO with the backend's version", || {
        (hello_fields(&via.cmd(&["HELLO", "2"])) == want).then_some(())
    });
    let id = via.cmd(&["CLIENT", "ID"]);
    let hello = via.cmd(&["HELLO", "2"]);
    let items = hello.as_array().unwrap();
    let at = items.iter().position(|f| *f == Reply::bulk("id")).unwrap();
    assert_eq!(items[at + 1], id, "the id is the one CLIENT ID gives");
}

/// CLIENT REPLY OFF, SKIP and ON, applied by the relayer to the client's replies as Redis
/// applies them: the same bytes as redis-server for the same pipeline, in sync and smart mode.
#[test]
fn client_reply_off_skip_and_on_as_redis() {
    let redis = Redis::start();
    let sync = Relayer::for_redis(&redis, "");
    let smart = Relayer::smart(&redis.url(), "");
    let script = |p: &str| -> Vec<Vec<String>> {
        let k = format!("{p}:k");
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            v(&["CLIENT", "REPLY", "OFF"]),
            v(&["SET", &k, "1"]),
            v(&["GET", &k]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["NOSUCHCMD"]),
            v(&["CLIENT", "REPLY", "ON"]),
            v(&["GET", &k]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["SET", &k, "2"]),
            v(&["GET", &k]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["PING"]),
            v(&["ECHO", "after two skips"]),
            v(&["CLIENT", "REPLY", "BAD"]),
            v(&["CLIENT", "REPLY"]),
            v(&["CLIENT", "REPLY", "OFF"]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["PING"]),
            v(&["RESET"]),
            v(&["CLIENT", "REPLY", "SKIP"]),
            v(&["QUIT"]),
        ]
    };
    let run = |c: &mut Client, p: &str| -> Vec<u8> {
        c.send_many(&script(p));
        let mut all = Vec::new();
        while let Ok(reply) = c.try_read_raw_reply() {
            all.extend(reply);
        }
        all
    };
    let want = run(&mut redis.client(), "direct");
    assert!(!want.is_empty());
    for (name, relayer) in [("sync", &sync), ("smart", &smart)] {
        let got = run(&mut relayer.client(), name);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name}"
        );
    }
}
