//! The supervisor: binds every listener of the configuration, starts their targets and
//! listeners, and on SIGTERM or SIGINT stops accepting, drains what smart mode acknowledged
//! and exits.

use crate::config::{Config, Protocol, Relayer};
use actix::{Actor, Addr};
use relayer_actors::listener::{bind, Bound, Listener, ListenerSettings, StopListening};
use relayer_actors::redis::session::{SessionSettings, Smart};
use relayer_actors::redis::smart::Budget;
use relayer_actors::redis::target::{Drain, GiveUp, KnownDbs, Target, TargetSettings};
use slog::{error, info, o, warn, Logger};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What runs for one `[[relayer]]` entry.
struct Running {
    listen: String,
    listener: Addr<Listener>,
    target: Addr<Target>,
    drain_timeout: Duration,
}

/// Runs until a stop signal; returns the process exit code.
pub fn run(config: Config, log: Logger) -> i32 {
    actix::System::new().block_on(serve(config, log))
}

async fn serve(config: Config, log: Logger) -> i32 {
    let redis: Vec<&Relayer> = config
        .relayers
        .iter()
        .filter(|r| r.protocol == Protocol::Redis)
        .collect();
    // Bind everything first: a listener that cannot bind stops the start before any client
    // is accepted anywhere.
    let mut bound = Vec::with_capacity(redis.len());
    for r in &redis {
        match bind(&r.listen, r.unix_access) {
            Ok(b) => bound.push(b),
            Err(e) => {
                error!(log, "cannot listen, not starting"; "file" => %config.path.display(), "listen" => &r.listen_key, "error" => %e);
                return 1;
            }
        }
    }
    if redis.is_empty() {
        warn!(log, "no relayer to start in the configuration"; "file" => %config.path.display());
    }
    let running: Vec<Running> = redis
        .into_iter()
        .zip(bound)
        .map(|(r, b)| start_relayer(&config, r, b, &log))
        .collect();
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!(log, "cannot install signal handlers"; "error" => %e);
            return 1;
        }
    };
    let first = signals.stop_requested(&log).await;
    info!(log, "stopping: draining what was acknowledged"; "signal" => first);
    let code = tokio::select! {
        _ = stop(running, &log) => 0,
        second = signals.stop_requested(&log) => {
            error!(log, "second stop signal: exiting at once, without waiting for the drain"; "signal" => second);
            1
        }
    };
    actix::System::current().stop();
    code
}

fn start_relayer(config: &Config, r: &Relayer, bound: Bound, log: &Logger) -> Running {
    let log = log.new(o!("listen" => r.listen_key.clone()));
    let target = r.target.clone().expect("redis relayers have a url");
    let known_dbs = KnownDbs::new();
    let budget = r.smart_table.as_ref().map(|_| Budget::new(r.max_pending_bytes));
    let smart = r
        .smart_table
        .clone()
        .zip(budget.clone())
        .map(|(table, budget)| Smart { table, budget });
    let session = Arc::new(SessionSettings {
        max_pending: r.max_pending_replies,
        limits: config.limits,
        initial_db: target.db,
        known_dbs: known_dbs.clone(),
        smart,
        log: log.clone(),
    });
    info!(log, "relayer started"; "backend" => %target, "mode" => ?r.mode, "connections" => r.max_connections);
    let target = Target::new(
        TargetSettings {
            addr: target,
            connections: r.max_connections,
            timeout: r.timeout,
            connect_timeout: r.connect_timeout,
            budget,
            log: log.clone(),
        },
        known_dbs,
    )
    .start();
    let settings = Arc::new(ListenerSettings {
        listen: r.listen.clone(),
        max_clients: r.max_clients,
        session,
        log,
    });
    let listener = Listener::start(bound, settings, target.clone());
    Running {
        listen: r.listen_key.clone(),
        listener,
        target,
        drain_timeout: r.drain_timeout,
    }
}

/// Stops accepting everywhere, then gives each target its drain timeout to deliver what was
/// acknowledged early; what is left is counted and logged as lost.
async fn stop(running: Vec<Running>, log: &Logger) {
    for r in &running {
        let _ = r.listener.send(StopListening).await;
    }
    let drains = running.iter().map(|r| async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        r.target.do_send(Drain(tx));
        match tokio::time::timeout(r.drain_timeout, rx).await {
            Ok(_) => 0,
            Err(_) => {
                let lost = r.target.send(GiveUp).await.unwrap_or(0);
                error!(log, "drain timeout reached"; "listen" => &r.listen, "lost" => lost);
                lost
            }
        }
    });
    let lost: usize = futures_util::future::join_all(drains).await.into_iter().sum();
    if lost > 0 {
        error!(log, "stopped with background writes lost"; "lost" => lost);
    } else {
        info!(log, "stopped, every acknowledged write delivered"; "relayers" => running.len());
    }
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

    /// Waits for SIGTERM or SIGINT, returning its name; SIGHUP is logged and ignored for now.
    async fn stop_requested(&mut self, log: &Logger) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    warn!(log, "SIGHUP received: reloading is not supported yet, configuration unchanged");
                }
            }
        }
    }
}
