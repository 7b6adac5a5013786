//! Harness for the end-to-end tests of smart-relayer: real `redis-server` processes, a real Redis
//! Cluster (`cluster`), the real relayer binary, a small synchronous RESP client for talking to
//! the relayer byte for byte (`resp`), and a typed client for reading what the backends hold
//! (`backend_client`, on redis-async). For the stream relayers: moto's Firehose, Kinesis and SQS
//! (`moto`), boto3 as a client of any endpoint (`boto3`), and endpoints of our own that fail on
//! demand (`fake_firehose`, `fake_kinesis`, `fake_sqs`, on `fake_aws`).
//!
//! Everything listens on 127.0.0.1 only, on ports found free at run time; configs, logs, redis
//! working directories and unix sockets live in temporary directories. Every process a test starts
//! is killed when its handle is dropped (also when the test panics), and gets SIGKILL if the test
//! process dies (`PR_SET_PDEATHSIG`; start processes from the thread that owns them).
//!
//! Waiting is always polling against a generous deadline (named in `timeouts`), never a fixed
//! sleep. The tests are one binary, tests/all, with a module per area.

pub mod backend_client;
pub mod boto3;
pub mod cluster;
pub mod fake_aws;
pub mod fake_firehose;
pub mod fake_kinesis;
pub mod fake_sqs;
pub mod faults;
pub mod link;
pub mod log;
pub mod moto;
mod ports;
mod redis;
mod relayer;
mod resp;
pub mod timeouts;
pub mod tls;

pub use backend_client::{BackendClient, BackendError};
pub use cluster::{
    cluster_entry, free_node_ports, keys_in_slot, slot_of, Cluster, ClusterOptions, FAST_NODE_TIMEOUT_MS,
};
pub use link::DelayLink;
pub use log::{log_fields, stop_summary};
pub use ports::{free_port, tcp_listen};
pub use redis::{redis_cli, Redis};
pub use relayer::{
    check_config, check_config_file, output_with_timeout, run_program, CheckOutput, Relayer, Reload,
};
pub use resp::{encode_command, parse_reply, show_bytes, Client, Reply, Stream};
pub use tls::{TestCerts, TlsRedis};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration crate has a parent directory")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the workspace) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace_dir().join(d),
        _ => workspace_dir().join("target"),
    }
}

/// The relayer binary: `SMART_RELAYER_BIN`, else `<target>/debug/smart-relayer`. Panics with a
/// hint when it does not exist.
pub fn relayer_bin() -> PathBuf {
    let bin = match std::env::var_os("SMART_RELAYER_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => target_dir().join("debug").join("smart-relayer"),
    };
    if !bin.is_file() {
        panic!(
            "smart-relayer binary not found at {}: build it first: cargo build --bins",
            bin.display()
        );
    }
    bin
}

/// The `examples/` directory of the workspace.
pub fn examples_dir() -> PathBuf {
    workspace_dir().join("examples")
}

/// A temporary directory with a short path (unix socket paths must stay under 108 bytes).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sr-it-")
        .tempdir_in("/tmp")
        .expect("create a temporary directory")
}

/// Calls `f` every 20-200 ms until it returns `Some`, and returns that; panics with `what` after
/// `timeout`.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// `poll_until` for a condition.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    poll_until(timeout, what, || f().then_some(()))
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A listen address of the relayer config, resolved for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port` to connect to (an empty host becomes 127.0.0.1).
    Tcp(String),
    Unix(PathBuf),
}

/// Parses `tcp://host:port`, `tcp://:port`, `tcp://[::1]:port`, `unix:/path`, `unix:///path`.
pub fn parse_listen(listen: &str) -> Option<ListenAddr> {
    if let Some(rest) = listen.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        if let Some(port) = rest.strip_prefix(':') {
            return Some(ListenAddr::Tcp(format!("127.0.0.1:{port}")));
        }
        let host_end = if rest.starts_with('[') {
            rest.find(']')? + 1
        } else {
            rest.rfind(':')?
        };
        let (host, port) = rest.split_at(host_end);
        let port = port.strip_prefix(':')?;
        let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
        return Some(ListenAddr::Tcp(format!("{host}:{port}")));
    }
    if let Some(rest) = listen.strip_prefix("unix://") {
        return Some(ListenAddr::Unix(PathBuf::from(rest)));
    }
    if let Some(rest) = listen.strip_prefix("unix:") {
        return Some(ListenAddr::Unix(PathBuf::from(rest)));
    }
    None
}

/// The `listen` values of a relayer config (TOML, key matched case-insensitively), in order.
pub fn config_listens(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (key, value) = line.split_once('=')?;
            if !key.trim().eq_ignore_ascii_case("listen") {
                return None;
            }
            let value = value.trim();
            let value = value.split_once(" #").map_or(value, |(v, _)| v).trim();
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_string())
        })
        .collect()
}

/// One `[[relayer]]` entry relaying `listen` to `url` in sync mode; `extra` is appended as is
/// (more `key = value` lines).
pub fn redis_entry(listen: &str, url: &str, extra: &str) -> String {
    redis_entry_mode("sync", listen, url, extra)
}

/// One `[[relayer]]` entry relaying `listen` to `url` in `mode` (`sync`, `smart`); `extra` is
/// appended as is.
pub fn redis_entry_mode(mode: &str, listen: &str, url: &str, extra: &str) -> String {
    format!(
        "[[relayer]]\nprotocol = \"redis\"\nmode = \"{mode}\"\nlisten = \"{listen}\"\nurl = \"{url}\"\n{extra}\n"
    )
}

/// One `[[relayer]]` entry of protocol firehose on `listen`, sending stream `stream` to the
/// Firehose API at `endpoint` (moto or the fake endpoint, region us-east-1); `extra` (more
/// `key = value` lines) is appended as is.
pub fn firehose_entry(listen: &str, stream: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"{listen}\"\nstreamName = \"{stream}\"\n\
         region = \"us-east-1\"\nendpoint = \"{endpoint}\"\n{extra}\n"
    )
}

/// Every spawned process gets SIGKILL when the thread that started it dies (a test killed by a
/// harness timeout leaves nothing behind).
pub fn child_setup(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Sends `sig` to `pid`.
pub fn send_signal(pid: u32, sig: i32) {
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r != 0 {
        panic!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
}

/// Panics unless `reply` is an error made by the relayer about the backend at `backend_addr`
/// (`127.0.0.1:PORT`): `ERR relayer: backend ... unavailable/timed out` or
/// `ERR relayer: connection to backend ... lost`.
pub fn assert_backend_error(reply: &Reply, backend_addr: &str, context: &str) {
    let ok = reply.error_text().is_some_and(|t| {
        (t.starts_with("ERR relayer: backend ") || t.starts_with("ERR relayer: connection to backend "))
            && t.contains(backend_addr)
    });
    assert!(
        ok,
        "{context}: expected a relayer error naming backend {backend_addr}, got {reply:?}"
    );
}

/// True if `reply` is an error made by the relayer about a backend (any of the three forms).
pub fn is_backend_error(reply: &Reply) -> bool {
    reply.is_error_starting("ERR relayer: backend ")
        || reply.is_error_starting("ERR relayer: connection to backend ")
}

/// A small deterministic PRNG (xorshift64*) for test data, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// `len` random bytes, \r and \n over-represented.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| match self.below(8) {
                0 => b'\r',
                1 => b'\n',
                _ => self.next_u64() as u8,
            })
            .collect()
    }
}

/// Runs `f` on `n` threads (`f(i)` on thread i) and panics listing the failures (an `Err` or a
/// panic) if any thread failed.
pub fn run_threads<F>(n: usize, f: F)
where
    F: Fn(usize) -> Result<(), String> + Send + Sync + 'static,
{
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::Builder::new()
                .name(format!("client-{i}"))
                .spawn(move || f(i))
                .expect("spawn a client thread")
        })
        .collect();
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("client {i}: {e}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("client {i} panicked: {msg}"));
            }
        }
    }
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(10).cloned().collect();
        panic!("{} of {n} clients failed:\n{}", failures.len(), shown.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        let wire = b"*4\r\n+OK\r\n-ERR x\r\n*2\r\n:5\r\n$-1\r\n$5\r\na\r\nbc\r\n*-1\r\n";
        let (r, n) = parse_reply(wire).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::array(vec![
                Reply::ok(),
                Reply::error("ERR x"),
                Reply::array(vec![Reply::Int(5), Reply::Nil]),
                Reply::bulk("a\r\nbc"),
            ])
        );
        assert_eq!(r.encode(), &wire[..n]);
        assert_eq!(parse_reply(&wire[n..]).unwrap().unwrap().0, Reply::NilArray);
        for cut in 0..n {
            assert_eq!(parse_reply(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse_reply(b"?x\r\n").is_err());
    }

    #[test]
    fn parses_listen_addresses() {
        let tcp = |s: &str| Some(ListenAddr::Tcp(s.to_string()));
        assert_eq!(parse_listen("tcp://127.0.0.1:6389"), tcp("127.0.0.1:6389"));
        assert_eq!(parse_listen("tcp://:6389"), tcp("127.0.0.1:6389"));
        assert_eq!(parse_listen("tcp://[::1]:6389"), tcp("[::1]:6389"));
        let unix = Some(ListenAddr::Unix(PathBuf::from("/tmp/x.sock")));
        assert_eq!(parse_listen("unix:/tmp/x.sock"), unix);
        assert_eq!(parse_listen("unix:///tmp/x.sock"), unix);
        assert_eq!(
            config_listens("[[relayer]]\nListen = \"tcp://:1\" # c\nlisten='unix:/a'\nlistenx = 1\n"),
            vec!["tcp://:1".to_string(), "unix:/a".to_string()]
        );
    }
}
