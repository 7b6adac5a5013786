//! The smart-relayer binary, run on a config written to a temporary directory.

use crate::log::{nth_record, RELOADED, RELOAD_FAILED};
use crate::timeouts::{EXIT, HANG, PROGRAM, START};
use crate::{child_setup, config_listens, parse_listen, relayer_bin, Client, ListenAddr};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running smart-relayer, killed on drop. Its stderr goes to a file (`log()`), printed when the
/// test panics or when `RELAYER_TEST_LOG` is set.
pub struct Relayer {
    child: Option<Child>,
    status: Option<ExitStatus>,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    listens: Vec<String>,
}

impl Relayer {
    /// Writes `config` (every `$DIR` replaced by the relayer's own temporary directory, for unix
    /// sockets) to a file, starts the relayer on it and waits until every `listen` of the config
    /// accepts connections. Panics (with the relayer's log) if it exits or is not ready in `START`.
    pub fn start(config: &str) -> Relayer {
        let mut r = Relayer::spawn(config);
        r.wait_ready();
        r
    }

    /// A relayer for `redis` with two sync entries: `tcp://127.0.0.1:<free port>` (listen 0) and
    /// `unix:$DIR/relayer.sock` (listen 1); `extra` (more `key = value` lines) goes into both.
    pub fn for_redis(redis: &crate::Redis, extra: &str) -> Relayer {
        let tcp = crate::tcp_listen();
        let config = format!(
            "{}\n{}",
            crate::redis_entry(&tcp, &redis.url(), extra),
            crate::redis_entry("unix:$DIR/relayer.sock", &redis.url(), extra)
        );
        Relayer::start(&config)
    }

    /// A smart-mode relayer with one entry, `tcp://127.0.0.1:<free port>`, relaying to `url`
    /// (`tcp://HOST:PORT`: a redis-server, or a `DelayLink` in front of one); `extra` (more
    /// `key = value` lines) goes into the entry.
    pub fn smart(url: &str, extra: &str) -> Relayer {
        Relayer::start(&crate::redis_entry_mode(
            "smart",
            &crate::tcp_listen(),
            url,
            extra,
        ))
    }

    /// A relayer with one entry, `tcp://127.0.0.1:<free port>`, in `mode` (`sync`, `smart`) in
    /// front of `cluster`; `extra` (more `key = value` lines) goes into the entry.
    pub fn for_cluster(cluster: &crate::Cluster, mode: &str, extra: &str) -> Relayer {
        Relayer::start(&crate::cluster_entry(
            mode,
            &crate::tcp_listen(),
            &cluster.seeds(),
            extra,
        ))
    }

    /// Like `start`, with more environment variables (or test ones replaced; an empty value
    /// removes the variable), `$DIR` in their values replaced as in the config.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Relayer {
        let mut r = Relayer::spawn_with_env(config, env);
        r.wait_ready();
        r
    }

    /// Like `start` without waiting: for configs the relayer must refuse.
    pub fn spawn(config: &str) -> Relayer {
        Relayer::spawn_with_env(config, &[])
    }

    /// `spawn` with more environment variables, as `start_with_env`.
    pub fn spawn_with_env(config: &str, env: &[(&str, &str)]) -> Relayer {
        let dir = crate::temp_dir();
        let config = config.replace("$DIR", dir.path().to_str().unwrap());
        let config_path = dir.path().join("relayer.toml");
        std::fs::write(&config_path, &config).unwrap();
        let log_path = dir.path().join("relayer.log");
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new(relayer_bin());
        cmd.arg("-c").arg(&config_path);
        if std::env::var_os("RELAYER_TEST_DEBUG").is_some_and(|v| !v.is_empty()) {
            cmd.arg("-d");
        }
        // Firehose relayers resolve AWS credentials at start: give them test ones, so nothing
        // waits for an instance metadata service or reaches a real account.
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ] {
            cmd.env(k, v);
        }
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v.replace("$DIR", dir.path().to_str().unwrap()));
            }
        }
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        child_setup(&mut cmd);
        let child = cmd.spawn().expect("spawn smart-relayer");
        Relayer {
            child: Some(child),
            status: None,
            dir,
            config_path,
            log_path,
            listens: config_listens(&config),
        }
    }

    /// Waits until every listen address of the config accepts a connection.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START;
        for listen in self.listens.clone() {
            loop {
                if let Some(st) = self.try_wait() {
                    panic!(
                        "smart-relayer exited with {st} before {listen} was ready; its log:\n{}",
                        self.log()
                    );
                }
                if Client::connect(&listen).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "smart-relayer not accepting on {listen} after {START:?}; its log:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("relayer process").id()
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`...).
    pub fn signal(&self, sig: i32) {
        crate::send_signal(self.pid(), sig);
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Waits for the process to exit; panics (with its log) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "smart-relayer still running after {timeout:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGHUP and waits (within `HANG`) for the next `configuration reloaded` or `reload
    /// failed` record. Panics (the relayer prints its log) if the relayer exits or neither comes.
    pub fn sighup(&mut self) -> Reload {
        let log = self.log();
        let (ok, failed) = (log.matches(RELOADED).count(), log.matches(RELOAD_FAILED).count());
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + HANG;
        loop {
            let log = self.log();
            if log.matches(RELOAD_FAILED).count() > failed {
                // A multi-line record may still be on its way to the file.
                std::thread::sleep(Duration::from_millis(100));
                return Reload::Failed(nth_record(&self.log(), RELOAD_FAILED, failed).unwrap());
            }
            if let Some(record) = nth_record(&log, RELOADED, ok) {
                return Reload::Applied(record);
            }
            if let Some(st) = self.try_wait() {
                panic!("the relayer exited with {st} after SIGHUP");
            }
            if Instant::now() >= deadline {
                panic!("neither '{RELOADED}' nor '{RELOAD_FAILED}' logged within {HANG:?} of SIGHUP");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the config file (`rewrite_config`), sends SIGHUP and returns the `configuration
    /// reloaded` record; panics if the reload failed.
    pub fn reload(&mut self, config: &str) -> String {
        self.rewrite_config(config);
        match self.sighup() {
            Reload::Applied(record) => record,
            Reload::Failed(record) => panic!("the reload of a valid file failed: {record}"),
        }
    }

    /// The first log line that contains every one of `needles` (case-insensitively), polled for
    /// until `timeout`; panics with the log after that.
    pub fn wait_log_line(&self, needles: &[&str], timeout: Duration) -> String {
        let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| {
                let l = l.to_ascii_lowercase();
                needles.iter().all(|n| l.contains(n.as_str()))
            }) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                panic!("no log line with all of {needles:?} within {timeout:?}; the log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the relayer wrote on stderr/stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn print_log(&self) {
        eprintln!(
            "--- smart-relayer log ({}) ---\n{}",
            self.log_path.display(),
            self.log()
        );
    }

    /// Resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        crate::rss_kb(self.pid())
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file with `config` (every `$DIR` replaced, as in `start`), for a
    /// reload: written to a new file renamed over the old one, so the relayer never reads half a
    /// file. `listens()` (and `client_at`) then follow the new file. Sends no signal.
    pub fn rewrite_config(&mut self, config: &str) {
        let config = config.replace("$DIR", self.dir.path().to_str().unwrap());
        let tmp = self.config_path.with_extension("toml.new");
        std::fs::write(&tmp, &config).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &self.config_path)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), self.config_path.display()));
        self.listens = config_listens(&config);
    }

    /// The relayer's temporary directory (what `$DIR` stood for).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `listen` values of its config, `$DIR` replaced.
    pub fn listens(&self) -> &[String] {
        &self.listens
    }

    /// The port of the first TCP listen address.
    pub fn port(&self) -> u16 {
        self.listens
            .iter()
            .find_map(|l| match parse_listen(l) {
                Some(ListenAddr::Tcp(a)) => a.rsplit(':').next()?.parse().ok(),
                _ => None,
            })
            .expect("the config has a tcp listen address")
    }

    /// The path of the first unix listen address.
    pub fn unix_path(&self) -> PathBuf {
        self.listens
            .iter()
            .find_map(|l| match parse_listen(l) {
                Some(ListenAddr::Unix(p)) => Some(p),
                _ => None,
            })
            .expect("the config has a unix listen address")
    }

    /// A new client on the first listen address.
    pub fn client(&self) -> Client {
        self.client_at(0)
    }

    /// A new client on the `i`-th listen address of the config.
    pub fn client_at(&self, i: usize) -> Client {
        let listen = &self.listens[i];
        Client::connect(listen).unwrap_or_else(|e| panic!("connect to the relayer at {listen}: {e}"))
    }
}

impl Drop for Relayer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("RELAYER_TEST_LOG").is_some() {
            self.print_log();
        }
    }
}

/// The outcome of one SIGHUP (`Relayer::sighup`).
pub enum Reload {
    /// The `configuration reloaded` record.
    Applied(String),
    /// The `reload failed, configuration unchanged` record.
    Failed(String),
}

/// The outcome of `smart-relayer --check -c FILE`.
#[derive(Debug)]
pub struct CheckOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The config file that was checked.
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Writes `config` to a temporary file (`$DIR` replaced by its directory) and runs
/// `smart-relayer --check -c FILE` on it.
pub fn check_config(config: &str) -> CheckOutput {
    let dir = crate::temp_dir();
    let config = config.replace("$DIR", dir.path().to_str().unwrap());
    let path = dir.path().join("check.toml");
    std::fs::write(&path, config).unwrap();
    let mut out = check_config_file(&path);
    out._dir = Some(dir);
    out
}

/// Runs `smart-relayer --check -c PATH`.
pub fn check_config_file(path: &Path) -> CheckOutput {
    let mut cmd = Command::new(relayer_bin());
    cmd.arg("--check")
        .arg("-c")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    child_setup(&mut cmd);
    let child = cmd.spawn().expect("spawn smart-relayer --check");
    let (status, stdout, stderr) = output_with_timeout(child, EXIT, "smart-relayer --check");
    CheckOutput {
        status,
        stdout,
        stderr,
        path: path.to_path_buf(),
        _dir: None,
    }
}

/// Runs `cmd` to completion (within `PROGRAM`) with `stdin` written to it, then closed: its exit
/// status, stdout and stderr. It gets SIGKILL if the test dies first.
pub fn run_program(cmd: &mut Command, stdin: &[u8], what: &str) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    child_setup(cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A program that exits early closes the pipe: not an error here, its output says why.
        let _ = input.write_all(&data);
    });
    let r = output_with_timeout(child, PROGRAM, what);
    writer.join().unwrap();
    r
}

/// Collects a child's stdout and stderr and waits for it; kills it and panics after `timeout`.
pub fn output_with_timeout(mut child: Child, timeout: Duration, what: &str) -> (ExitStatus, String, String) {
    fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    }
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}
