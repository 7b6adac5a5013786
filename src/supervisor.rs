//! The supervisor: reads the configuration, binds every listener once, and runs the relayer
//! entries on `workers` worker threads (each with duplicates of the sockets). On SIGHUP it
//! applies a reloaded configuration as `reload::diff` decides (new entries start, removed ones
//! drain and stop, changed ones get a new backend behind the same listener and clients,
//! unchanged ones are left alone): it binds, sends the workers what to do and logs; and on
//! SIGTERM or SIGINT it drains what was acknowledged early and stops.

use crate::config::{self, Config};
use crate::reload::{self, Changes, Running};
use crate::worker::{Apply, Left, Run, Stop, Worker};
use actix::Addr;
use relayer_actors::listener::{bind, SocketFile, StdBound};
use relayer_actors::resp::request::Limits;
use slog::{error, info, warn, Logger};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Runs until a stop signal; returns the process exit code.
pub fn run(config: Config, log: Logger) -> i32 {
    actix::System::new().block_on(serve(config, log))
}

struct Supervisor {
    path: PathBuf,
    workers: Vec<Addr<Worker>>,
    /// The entries running, by listen, and the limits they run with.
    running: Running,
    /// The sockets bound, kept so each later worker message can carry duplicates.
    sockets: HashMap<String, (StdBound, Option<SocketFile>)>,
    log: Logger,
}

async fn serve(config: Config, log: Logger) -> i32 {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!(log, "cannot install signal handlers"; "error" => %e);
            return 1;
        }
    };
    if let Some(addr) = config.metrics_listen {
        // Installed before any relayer starts, so that their counters are real ones.
        let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install();
        match installed {
            Ok(()) => info!(log, "metrics endpoint listening"; "address" => %addr),
            Err(e) => {
                error!(log, "cannot start the metrics endpoint, not starting"; "address" => %addr, "error" => %e);
                return 1;
            }
        }
    }
    let running = Running::nothing(&config);
    let changes = reload::diff(&running, &config);
    // Bind everything first: at start, a listener that cannot bind stops the process before
    // any client is accepted anywhere.
    let mut sockets = HashMap::new();
    for r in &changes.added {
        match bind(&r.listen, r.unix_access) {
            Ok(b) => {
                sockets.insert(r.listen_key.clone(), b);
            }
            Err(e) => {
                error!(log, "cannot listen, not starting"; "file" => %config.path.display(), "listen" => &r.listen_key, "error" => %e);
                return 1;
            }
        }
    }
    if changes.added.is_empty() {
        warn!(log, "no relayer to start in the configuration"; "file" => %config.path.display());
    }
    if config.workers > 1 {
        info!(log, "starting workers"; "workers" => config.workers);
    }
    let workers = (0..config.workers)
        .map(|i| Worker::start(i, config.limits, &log))
        .collect();
    let mut sup = Supervisor {
        path: config.path.clone(),
        workers,
        running,
        sockets,
        log,
    };
    sup.apply(config.limits, changes, &HashSet::new()).await;
    // Signals are handled one at a time: reloads never overlap, and a stop waits for a reload.
    let first = loop {
        match signals.next(&sup.log).await {
            Sig::Reload => sup.reload().await,
            Sig::Stop(name) => break name,
        }
    };
    info!(sup.log, "stopping: draining what was acknowledged"; "signal" => first);
    let log = sup.log.clone();
    let code = tokio::select! {
        _ = sup.stop() => 0,
        second = signals.stop_requested(&log) => {
            error!(log, "second stop signal: exiting at once, without waiting for the drain"; "signal" => second);
            1
        }
    };
    actix::System::current().stop();
    code
}

impl Supervisor {
    /// Sends every worker what changes, with duplicates of the sockets of the entries added
    /// (but those in `not_bound`), waits until each has applied it, and records what runs.
    async fn apply(&mut self, limits: Limits, changes: Changes, not_bound: &HashSet<String>) {
        // One `Run` per entry started or replaced, the same for every worker: its copies share
        // what it holds.
        let start: Vec<Run> = changes
            .added
            .into_iter()
            .filter(|r| !not_bound.contains(&r.listen_key))
            .map(Run::new)
            .collect();
        let replace: Vec<Run> = changes.changed.into_iter().map(|c| Run::new(c.relayer)).collect();
        let mut applied = vec![];
        for w in &self.workers {
            let mut bound = vec![];
            for run in &start {
                let key = &run.relayer.listen_key;
                let Some((socket, _)) = self.sockets.get(key) else {
                    continue;
                };
                match socket.try_clone() {
                    Ok(s) => bound.push((run.clone(), s)),
                    Err(e) => {
                        error!(self.log, "cannot duplicate a listening socket"; "listen" => key, "error" => %e)
                    }
                }
            }
            applied.push(w.send(Apply {
                limits,
                remove: changes.removed.clone(),
                replace: replace.clone(),
                start: bound,
            }));
        }
        futures_util::future::join_all(applied).await;
        let running = &mut self.running;
        for key in &changes.removed {
            running.relayers.remove(key);
        }
        for run in replace.into_iter().chain(start) {
            running
                .relayers
                .insert(run.relayer.listen_key.clone(), run.relayer);
        }
        running.limits = limits;
    }

    /// Reads and validates the whole file, then applies what changes. A bad file changes
    /// nothing; a listener that cannot bind is skipped (and tried again at the next reload).
    async fn reload(&mut self) {
        let config = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                error!(self.log, "reload failed, configuration unchanged"; "error" => %e);
                return;
            }
        };
        for w in &config.warnings {
            warn!(self.log, "{}", w);
        }
        let changes = reload::diff(&self.running, &config);
        if let Some(configured) = changes.workers_ignored {
            warn!(self.log, "workers is read at start only: restart to change it";
                "running" => self.workers.len(), "configured" => configured);
        }
        for key in &changes.removed {
            // The workers stop listening on their duplicates; a unix socket's file goes now.
            self.sockets.remove(key);
        }
        for c in &changes.changed {
            if let Some(path) = &c.chmod {
                if let Err(err) = c.relayer.unix_access.apply(path) {
                    warn!(self.log, "cannot change the unix socket's permissions"; "listen" => &c.relayer.listen_key, "error" => %err);
                }
            }
        }
        let mut failed = HashSet::new();
        for r in &changes.added {
            match bind(&r.listen, r.unix_access) {
                Ok(b) => {
                    self.sockets.insert(r.listen_key.clone(), b);
                }
                Err(e) => {
                    error!(self.log, "cannot listen, entry skipped until the next reload"; "listen" => &r.listen_key, "error" => %e);
                    failed.insert(r.listen_key.clone());
                }
            }
        }
        let (added, changed) = (changes.added.len() - failed.len(), changes.changed.len());
        let (removed, unchanged) = (changes.removed.len(), changes.unchanged.len());
        self.apply(config.limits, changes, &failed).await;
        info!(self.log, "configuration reloaded"; "file" => %self.path.display(), "added" => added,
            "changed" => changed, "removed" => removed, "unchanged" => unchanged, "not_bound" => failed.len());
    }

    /// Stops every worker: each stops accepting and drains within the drain timeouts; what is
    /// left is counted and logged as lost. Unix socket files are removed.
    async fn stop(mut self) {
        // Closed here too, so that new connections are refused while the workers drain.
        self.sockets.clear();
        let stops = self.workers.iter().map(|w| w.send(Stop));
        let mut left = Left::default();
        for u in futures_util::future::join_all(stops).await {
            left += &u.unwrap_or_default();
        }
        // One line with the exact counts, whatever they are.
        let (d, f) = (&left.redis, left.stream);
        if left.all_delivered() {
            info!(self.log, "stopped, every acknowledged write delivered"; "relayers" => self.running.relayers.len(),
                "delivered" => d.delivered, "lines_delivered" => f.delivered);
        } else if !d.all_delivered() || f.lost > 0 {
            error!(self.log, "stopped with acknowledged writes not delivered";
                "delivered" => d.delivered, "refused" => d.refused_total(), "refused_by_code" => d.refused_by_code(),
                "unknown" => d.unknown, "expired" => d.expired_total(), "expired_by_code" => d.expired_by_code(),
                "lost" => d.lost + f.lost, "dead_letter" => f.dead_letter, "lines_delivered" => f.delivered);
        } else {
            warn!(self.log, "stopped, writes not delivered in time written to the dead-letter file";
                "dead_letter" => f.dead_letter, "delivered" => d.delivered, "lines_delivered" => f.delivered);
        }
    }
}

enum Sig {
    Reload,
    Stop(&'static str),
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self, log: &Logger) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.int.recv() => Sig::Stop("SIGINT"),
            _ = self.hup.recv() => {
                info!(log, "SIGHUP received: reloading the configuration");
                Sig::Reload
            }
        }
    }

    /// Waits for SIGTERM or SIGINT; SIGHUP is ignored while stopping.
    async fn stop_requested(&mut self, log: &Logger) -> &'static str {
        loop {
            if let Sig::Stop(name) = self.next(log).await {
                return name;
            }
        }
    }
}
