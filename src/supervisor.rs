//! The supervisor: binds every listener of the configuration, starts their targets and
//! listeners, and stops them on SIGTERM or SIGINT.

use crate::config::{Config, Protocol, Relayer};
use actix::Actor;
use relayer_actors::endpoint::ListenAddr;
use relayer_actors::listener::{bind, Bound, Listener, ListenerSettings};
use relayer_actors::redis::session::SessionSettings;
use relayer_actors::redis::target::{KnownDbs, Target, TargetSettings};
use slog::{error, info, o, warn, Logger};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Runs until a stop signal; returns the process exit code.
pub fn run(config: Config, log: Logger) -> i32 {
    let system = actix::System::new();
    system.block_on(serve(config, log))
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
        match bind(&r.listen) {
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
    let mut unix_paths = vec![];
    for (r, b) in redis.into_iter().zip(bound) {
        if let ListenAddr::Unix(p) = &r.listen {
            unix_paths.push(p.clone());
        }
        start_relayer(&config, r, b, &log);
    }
    let code = wait_for_stop(&log).await;
    for p in unix_paths {
        let _ = std::fs::remove_file(p);
    }
    actix::System::current().stop();
    code
}

fn start_relayer(config: &Config, r: &Relayer, bound: Bound, log: &Logger) {
    let log = log.new(o!("listen" => r.listen_key.clone()));
    let target = r.target.clone().expect("redis relayers have a url");
    let known_dbs = KnownDbs::new();
    let session = Arc::new(SessionSettings {
        max_pending: r.max_pending_replies,
        limits: config.limits,
        initial_db: target.db,
        known_dbs: known_dbs.clone(),
        log: log.clone(),
    });
    info!(log, "relayer started"; "backend" => %target, "mode" => ?r.mode, "connections" => r.max_connections);
    let target = Target::new(
        TargetSettings {
            addr: target,
            connections: r.max_connections,
            timeout: r.timeout,
            connect_timeout: r.connect_timeout,
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
    Listener::start(bound, settings, target);
}

async fn wait_for_stop(log: &Logger) -> i32 {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!(log, "cannot install signal handlers");
        return 1;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { info!(log, "SIGTERM received, stopping"); return 0; }
            _ = int.recv() => { info!(log, "SIGINT received, stopping"); return 0; }
            _ = hup.recv() => { warn!(log, "SIGHUP received: reloading is not supported yet, configuration unchanged"); }
        }
    }
}
