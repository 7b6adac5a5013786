//! A private `redis-server` on a free 127.0.0.1 port.

use crate::backend_client::info_value;
use crate::timeouts::START;
use crate::{child_setup, free_port, BackendClient, BackendError, Client, Reply};
use redis_async::resp::FromResp;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "redis-server";
const REDIS_CLI: &str = "redis-cli";

/// A redis-server process, killed on drop.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server with the default arguments and waits until it answers PING.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Like `start`, with more redis-server arguments (`["--enable-debug-command", "yes"]`).
    pub fn start_with(args: &[&str]) -> Redis {
        let mut r = Redis {
            child: None,
            port: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: crate::temp_dir(),
        };
        // A port found free can be taken by someone else before redis binds it: try another.
        let mut last_err = String::new();
        for _ in 0..5 {
            r.port = free_port();
            match r.spawn_and_wait() {
                Ok(()) => return r,
                // It exited (port taken?): another port.
                Err(e) if r.child.is_none() => last_err = e,
                Err(e) => panic!("could not start redis-server: {e}"),
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// Starts redis-server on `port` (chosen by the caller, e.g. a cluster node whose bus port must
    /// be free too) and waits until it answers PING. `Err`, with its log, if it exits first (the
    /// port was taken?) or does not answer in time.
    pub fn try_start_on(port: u16, args: &[&str]) -> Result<Redis, String> {
        let mut r = Redis {
            child: None,
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: crate::temp_dir(),
        };
        r.spawn_and_wait()?;
        Ok(r)
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.port))
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = File::create(self.log_path()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        child_setup(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {REDIS_SERVER}: {e} (is redis-server installed?)"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {st}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if let Ok(mut c) = Client::connect_tcp(self.port) {
                c.set_read_timeout(Duration::from_secs(5));
                // PONG, or -NOAUTH with --requirepass: either way it answers.
                match c.try_send_raw(b"PING\r\n").and_then(|_| c.try_read_reply()) {
                    Ok(Reply::Status(_)) | Ok(Reply::Error(_)) => return Ok(()),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not answer PING within {START:?}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `tcp://127.0.0.1:PORT`, for relayer configs.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// What redis-server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and in the same directory (killing it first if it
    /// runs), with `extra` arguments for this run only, and waits until it answers PING (an
    /// error such as LOADING counts).
    pub fn restart_with(&mut self, extra: &[&str]) {
        let keep = self.args.clone();
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.restart();
        self.args = keep;
    }

    /// Starts it again on the same port (killing it first if it runs), and waits for PING.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("restart redis-server: {e}"),
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// A direct connection to this redis-server.
    pub fn client(&self) -> Client {
        Client::tcp(self.port)
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS...` and returns its stdout without the trailing
    /// newline; panics if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        let (st, out, err) = redis_cli(&all);
        if !st.success() {
            panic!("redis-cli {all:?} failed with {st}: {err}");
        }
        out.trim_end_matches('\n').to_string()
    }

    /// A typed connection to this redis-server, for reading what it holds; panics if it cannot
    /// connect.
    pub fn backend_client(&self) -> BackendClient {
        BackendClient::connect(self.port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One command on a new typed connection, its reply converted to `T`; panics on an error
    /// (naming the command and the server): `redis.query::<Option<String>>(&["GET", "k"])`.
    pub fn query<T: FromResp + Unpin>(&self, args: &[&str]) -> T {
        self.try_query(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `query`, with the error instead of a panic (for polls, and for error replies a test
    /// expects).
    pub fn try_query<T: FromResp + Unpin>(&self, args: &[&str]) -> Result<T, BackendError> {
        BackendClient::connect(self.port)?.query(args)
    }

    /// The value of `field` in `INFO section`, e.g. `info_field("commandstats", "cmdstat_select")`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        info_value(&self.query::<String>(&["INFO", section]), field)
    }

    /// The `calls=` count of `cmdstat_<command>` in INFO commandstats (0 when absent).
    pub fn command_calls(&self, command: &str) -> u64 {
        let field = format!("cmdstat_{}", command.to_ascii_lowercase());
        match self.info_field("commandstats", &field) {
            None => 0,
            Some(v) => v
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("cannot read calls in {field}:{v}")),
        }
    }

    /// Its number of keys (DBSIZE of DB 0).
    pub fn dbsize(&self) -> i64 {
        self.query(&["DBSIZE"])
    }

    /// The ids of its client connections, in order: not the one asking, nor replication links
    /// (flags=S).
    pub fn connection_ids(&self) -> Vec<i64> {
        // Both on one connection (a BackendClient never reconnects), so `me` is in the list.
        let c = self.backend_client();
        let me: i64 = c.query(&["CLIENT", "ID"]).unwrap_or_else(|e| panic!("{e}"));
        let list: String = c.query(&["CLIENT", "LIST"]).unwrap_or_else(|e| panic!("{e}"));
        let mut ids: Vec<i64> = list
            .lines()
            .filter(|l| !l.contains(" flags=S"))
            .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix("id="))?.parse().ok())
            .filter(|id| *id != me)
            .collect();
        ids.sort();
        ids
    }

    /// The directory redis runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("REDIS_TEST_LOG").is_some() {
            eprintln!("--- redis-server {} log ---\n{}", self.port, self.log());
        }
        self.kill();
    }
}

/// Runs `redis-cli ARGS...`: exit status, stdout, stderr (`run_program`).
pub fn redis_cli(args: &[&str]) -> (ExitStatus, String, String) {
    crate::run_program(
        Command::new(REDIS_CLI).args(args),
        b"",
        &format!("{REDIS_CLI} {args:?} (is redis-tools installed?)"),
    )
}
