//! The supervisor: owns one running relayer per `[[relayer]]` entry, keyed by its `listen`.
//! It starts them, applies a reloaded configuration on SIGHUP (new entries start, removed ones
//! drain and stop, changed ones get a new target behind the same listener and clients,
//! unchanged ones are left alone), and on SIGTERM or SIGINT drains what smart mode
//! acknowledged and stops.

use crate::config::{self, Config, Protocol, Relayer};
use actix::{Actor, Addr};
use relayer_actors::endpoint::ListenAddr;
use relayer_actors::listener::{bind, Bound, Listener, ListenerSettings, StopListening};
use relayer_actors::metrics::RelayerMetrics;
use relayer_actors::redis::route::{Current, Route};
use relayer_actors::redis::session::{SessionSettings, Smart};
use relayer_actors::redis::smart::Budget;
use relayer_actors::redis::target::{Drain, GiveUp, KnownDbs, Retire, Target, TargetSettings};
use relayer_actors::resp::request::Limits;
use slog::{error, info, o, warn, Logger};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Runs until a stop signal; returns the process exit code.
pub fn run(config: Config, log: Logger) -> i32 {
    actix::System::new().block_on(serve(config, log))
}

/// What runs for one entry.
struct Entry {
    relayer: Relayer,
    listener: Addr<Listener>,
    route: Rc<Route>,
    target: Addr<Target>,
    log: Logger,
}

struct Supervisor {
    path: PathBuf,
    limits: Limits,
    entries: HashMap<String, Entry>,
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
    let relayers = redis_entries(&config);
    // Bind everything first: at start, a listener that cannot bind stops the process before
    // any client is accepted anywhere.
    let mut bound = Vec::with_capacity(relayers.len());
    for r in &relayers {
        match bind(&r.listen, r.unix_access) {
            Ok(b) => bound.push(b),
            Err(e) => {
                error!(log, "cannot listen, not starting"; "file" => %config.path.display(), "listen" => &r.listen_key, "error" => %e);
                return 1;
            }
        }
    }
    if relayers.is_empty() {
        warn!(log, "no relayer to start in the configuration"; "file" => %config.path.display());
    }
    let mut sup = Supervisor {
        path: config.path.clone(),
        limits: config.limits,
        entries: HashMap::new(),
        log,
    };
    for (r, b) in relayers.into_iter().zip(bound) {
        sup.start_entry(r, b);
    }
    // Signals are handled one at a time: reloads never overlap, and a stop waits for a reload.
    let first = loop {
        match signals.next(&sup.log).await {
            Sig::Reload => sup.reload(),
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

fn redis_entries(config: &Config) -> Vec<Relayer> {
    config
        .relayers
        .iter()
        .filter(|r| r.protocol == Protocol::Redis)
        .cloned()
        .collect()
}

impl Supervisor {
    /// A new target for `r`, and the settings its sessions use.
    fn start_target(&self, r: &Relayer, log: &Logger) -> Current {
        let addr = r.target.clone().expect("redis relayers have a url");
        let known_dbs = KnownDbs::new();
        let budget = r.smart_table.as_ref().map(|_| Budget::new(r.max_pending_bytes));
        let smart = r
            .smart_table
            .clone()
            .zip(budget.clone())
            .map(|(table, budget)| Smart { table, budget });
        let metrics = RelayerMetrics::new(&r.listen_key);
        let settings = Arc::new(SessionSettings {
            max_pending: r.max_pending_replies,
            limits: self.limits,
            initial_db: addr.db,
            known_dbs: known_dbs.clone(),
            smart,
            metrics: metrics.clone(),
            log: log.clone(),
        });
        info!(log, "relayer target started"; "backend" => %addr, "mode" => ?r.mode, "connections" => r.max_connections);
        let target = Target::new(
            TargetSettings {
                addr,
                connections: r.max_connections,
                timeout: r.timeout,
                connect_timeout: r.connect_timeout,
                budget,
                metrics,
                log: log.clone(),
            },
            known_dbs,
        )
        .start();
        Current {
            target,
            settings,
            max_clients: r.max_clients,
        }
    }

    fn start_entry(&mut self, r: Relayer, bound: Bound) {
        let log = self.log.new(o!("listen" => r.listen_key.clone()));
        let current = self.start_target(&r, &log);
        let target = current.target.clone();
        let route = Route::new(current);
        let settings = Arc::new(ListenerSettings {
            listen: r.listen.clone(),
            log: log.clone(),
        });
        let listener = Listener::start(bound, settings, route.clone());
        self.entries.insert(
            r.listen_key.clone(),
            Entry {
                relayer: r,
                listener,
                route,
                target,
                log,
            },
        );
    }

    /// Reads and validates the whole file, then applies it entry by entry. A bad file changes
    /// nothing; a listener that cannot bind is skipped (and tried again at the next reload).
    fn reload(&mut self) {
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
        let limits_changed = config.limits != self.limits;
        self.limits = config.limits;
        let wanted = redis_entries(&config);
        let keys: HashSet<&str> = wanted.iter().map(|r| r.listen_key.as_str()).collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !keys.contains(k.as_str()))
            .cloned()
            .collect();
        let (mut added, mut changed, mut unchanged, mut failed) = (0, 0, 0, 0);
        for key in &gone {
            let entry = self.entries.remove(key).expect("listed above");
            actix::spawn(remove_entry(entry));
        }
        for r in wanted {
            match self.entries.get(&r.listen_key) {
                Some(e) if e.relayer == r && !limits_changed => unchanged += 1,
                Some(e) => {
                    let log = e.log.clone();
                    let next = self.start_target(&r, &log);
                    let e = self.entries.get_mut(&r.listen_key).expect("present");
                    if let (ListenAddr::Unix(path), true) =
                        (&r.listen, r.unix_access != e.relayer.unix_access)
                    {
                        if let Err(err) = r.unix_access.apply(path) {
                            warn!(log, "cannot change the unix socket's permissions"; "error" => %err);
                        }
                    }
                    e.target = next.target.clone();
                    let old = e.route.replace(next);
                    actix::spawn(retire_target(old, e.relayer.drain_timeout, log.clone()));
                    info!(log, "relayer changed: new target, listener and clients kept");
                    e.relayer = r;
                    changed += 1;
                }
                None => match bind(&r.listen, r.unix_access) {
                    Ok(b) => {
                        self.start_entry(r, b);
                        added += 1;
                    }
                    Err(e) => {
                        error!(self.log, "cannot listen, entry skipped until the next reload"; "listen" => &r.listen_key, "error" => %e);
                        failed += 1;
                    }
                },
            }
        }
        info!(self.log, "configuration reloaded"; "file" => %self.path.display(), "added" => added,
            "changed" => changed, "removed" => gone.len(), "unchanged" => unchanged, "not_bound" => failed);
    }

    /// Stops accepting everywhere, then gives each target its drain timeout to deliver what
    /// was acknowledged early; what is left is counted and logged as lost.
    async fn stop(self) {
        for e in self.entries.values() {
            let _ = e.listener.send(StopListening).await;
        }
        let drains = self.entries.values().map(|e| async move {
            let lost = drain(&e.target, e.relayer.drain_timeout, false).await;
            if lost > 0 {
                error!(e.log, "drain timeout reached"; "lost" => lost);
            }
            lost
        });
        let lost: usize = futures_util::future::join_all(drains).await.into_iter().sum();
        if lost > 0 {
            error!(self.log, "stopped with background writes lost"; "lost" => lost);
        } else {
            info!(self.log, "stopped, every acknowledged write delivered"; "relayers" => self.entries.len());
        }
    }
}

/// Drains `target` within `limit`; returns the background writes left undelivered.
async fn drain(target: &Addr<Target>, limit: Duration, everything: bool) -> usize {
    let (done, rx) = tokio::sync::oneshot::channel();
    target.do_send(Drain { done, everything });
    match tokio::time::timeout(limit, rx).await {
        Ok(_) => 0,
        Err(_) => target.send(GiveUp).await.unwrap_or(0),
    }
}

/// A target a reload replaced: it finishes what it owes (within the drain timeout), then stops.
async fn retire_target(target: Addr<Target>, limit: Duration, log: Logger) {
    let lost = drain(&target, limit, true).await;
    if lost > 0 {
        error!(log, "replaced target: drain timeout reached"; "lost" => lost);
    }
    target.do_send(Retire);
}

/// An entry a reload removed: it stops accepting at once; its clients may go on until the
/// drain timeout, while early acknowledgement stops and what was acknowledged is delivered;
/// then the clients are closed and the target stops.
async fn remove_entry(e: Entry) {
    let started = Instant::now();
    let _ = e.listener.send(StopListening).await;
    info!(e.log, "relayer removed: not accepting; clients closed after the drain timeout";
        "clients" => e.route.clients(), "drain_timeout_s" => e.relayer.drain_timeout.as_secs_f64());
    let limit = e.relayer.drain_timeout;
    let lost = drain(&e.target, limit, false).await;
    tokio::time::sleep(limit.saturating_sub(started.elapsed())).await;
    e.route.close_all();
    if lost > 0 {
        error!(e.log, "removed relayer: drain timeout reached"; "lost" => lost);
    }
    // The closing clients get the replies still owed, or the target's error once it retires.
    let _ = drain(&e.target, Duration::from_secs(1), true).await;
    e.target.do_send(Retire);
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
