//! A worker: one thread (an actix arbiter) running a copy of every relayer entry, with its own
//! listeners on duplicates of the supervisor's sockets, its own sessions and its own backend
//! (upstream connections, stream batcher). With `workers = 1` there is one; more spread the
//! clients of every listener over more cores, the kernel handing each accepted connection to
//! one of them.

use crate::config::redis::{Mode, Settings};
use crate::config::{Kind, Relayer, StreamConfig};
use actix::prelude::*;
use relayer_actors::endpoint::TargetAddr;
use relayer_actors::learned_commands::Learned;
use relayer_actors::listener::{Listener, ListenerSettings, StdBound, StopListening};
use relayer_actors::metrics::RelayerMetrics;
use relayer_actors::redis::backend::{BackendAddr, BackendSettings, Identity, KnownDbs};
use relayer_actors::redis::dedicated::{LiveCount, Pool};
use relayer_actors::redis::delivery::Delivery;
use relayer_actors::redis::session::{Current, Route, SessionSettings, Smart};
use relayer_actors::redis::smart::Budget;
use relayer_actors::resp::request::Limits;
use relayer_actors::route::Frontend;
use relayer_actors::stream::batcher::{self, Batcher, BatcherSettings, StreamDelivery, StreamMetrics};
use relayer_actors::stream::buffer::Buffer;
use relayer_actors::stream::session as fh;
use slog::{error, info, o, warn, Logger};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Worker {
    limits: Limits,
    entries: HashMap<String, Entry>,
    /// What the backends that reloads retired left, for the stop summary.
    retired: Rc<RefCell<Left>>,
    log: Logger,
}

/// What drains left: what became of the Redis writes acknowledged early (all of them, since
/// the backend started), and of the lines stream batchers accepted (all of them too).
#[derive(Debug, Default, Clone)]
pub struct Left {
    pub redis: Delivery,
    pub stream: StreamDelivery,
}

impl std::ops::AddAssign<&Left> for Left {
    fn add_assign(&mut self, o: &Left) {
        self.redis += &o.redis;
        self.stream += o.stream;
    }
}

impl Left {
    /// Nothing acknowledged went anywhere but to the backend.
    pub fn all_delivered(&self) -> bool {
        self.redis.all_delivered() && self.stream.all_delivered()
    }
}

/// What a reload (or the start) changes, as the supervisor decided it: entries to remove, to
/// give a new backend, and to start; the others are left alone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Apply {
    pub limits: Limits,
    /// Listens of the entries to stop.
    pub remove: Vec<String>,
    /// Entries to give a new backend, behind the same listener and clients.
    pub replace: Vec<Run>,
    /// Entries to start, each with this worker's duplicate of its socket.
    pub start: Vec<(Run, StdBound)>,
}

/// An entry to start or to replace, with what its copies on every worker share.
#[derive(Clone)]
pub struct Run {
    pub relayer: Relayer,
    pub shared: Shared,
}

impl Run {
    /// `relayer` with a new `Shared`: a replaced entry starts afresh, as a new one does.
    pub fn new(relayer: Relayer) -> Run {
        Run {
            relayer,
            shared: Shared::default(),
        }
    }
}

/// What the copies of one entry on every worker share while it runs: runtime state, made when
/// the entry starts or is replaced, never part of its configuration.
#[derive(Clone, Default)]
pub struct Shared {
    /// Live dedicated connections, so that `maxDedicatedConnections` holds across workers. A
    /// replaced entry starts with a new count, while the connections its old clients still
    /// hold stay live a while: up to twice the maximum, briefly.
    pub dedicated_live: LiveCount,
    /// What the backend says of its commands, learned by the first worker's backend that asks.
    pub commands: Arc<Learned>,
    /// What it says of itself (its version, which HELLO reports).
    pub identity: Arc<Identity>,
}

/// What a backend is started from: a Redis and a Redis Cluster entry differ only in where
/// they connect.
enum BackendConfig<'a> {
    Redis(RedisTarget<'a>),
    Stream(&'a StreamConfig),
}

struct RedisTarget<'a> {
    /// A Redis entry's url, or a cluster's first seed.
    addr: &'a TargetAddr,
    cluster_seeds: Option<&'a [TargetAddr]>,
    settings: &'a Settings,
}

impl<'a> From<&'a Kind> for BackendConfig<'a> {
    fn from(kind: &'a Kind) -> Self {
        match kind {
            Kind::Redis(r) => BackendConfig::Redis(RedisTarget {
                addr: &r.target,
                cluster_seeds: None,
                settings: &r.settings,
            }),
            Kind::Cluster(c) => BackendConfig::Redis(RedisTarget {
                addr: c.first_seed(),
                cluster_seeds: Some(&c.seeds),
                settings: &c.settings,
            }),
            Kind::Stream(f) => BackendConfig::Stream(f),
        }
    }
}

/// Stop accepting, let the replies clients wait on come and drain every backend within its
/// drain timeout, then close the clients; answers what the drains left.
#[derive(Message)]
#[rtype(result = "Left")]
pub struct Stop;

impl Worker {
    /// Starts a worker on a thread of its own.
    pub fn start(id: usize, limits: Limits, log: &Logger) -> Addr<Worker> {
        let log = log.new(o!("worker" => id));
        Worker::start_in_arbiter(&Arbiter::new().handle(), move |_| Worker {
            limits,
            entries: HashMap::new(),
            retired: Rc::default(),
            log,
        })
    }

    /// A new target for `r`, and the settings its sessions use.
    fn start_target(&self, r: &Relayer, t: &RedisTarget, shared: &Shared, log: &Logger) -> Current {
        let s = t.settings;
        let addr = t.addr.clone();
        let known_dbs = KnownDbs::new();
        let (smart, budget) = match &s.mode {
            Mode::Sync => (None, None),
            Mode::Smart(table) => {
                let budget = Budget::new(s.max_pending_bytes);
                let smart = Smart {
                    table: table.clone(),
                    budget: budget.clone(),
                };
                (Some(smart), Some(budget))
            }
        };
        let metrics = RelayerMetrics::new(&r.listen_key);
        let settings = Arc::new(SessionSettings {
            max_pending: s.max_pending_replies,
            limits: self.limits,
            initial_db: addr.db,
            known_dbs: known_dbs.clone(),
            smart,
            password: s.password.clone(),
            cluster: t.cluster_seeds.is_some(),
            commands: shared.commands.clone(),
            identity: shared.identity.clone(),
            compression: s.compression,
            metrics: metrics.clone(),
            log: log.clone(),
        });
        info!(log, "relayer target started"; "backend" => %addr, "mode" => s.mode.name(), "connections" => s.connections);
        let backend = BackendSettings {
            addr: addr.clone(),
            tls: s.tls.clone(),
            connections: s.connections,
            timeout: s.timeout,
            connect_timeout: s.connect_timeout,
            max_reply_line: self.limits.max_bulk_len,
            retry_timeout: s.retry_timeout,
            budget,
            metrics,
            log: log.clone(),
            commands: shared.commands.clone(),
            identity: shared.identity.clone(),
            resp3: false,
        };
        let target = match t.cluster_seeds {
            None => BackendAddr::single(backend, known_dbs),
            Some(seeds) => BackendAddr::cluster(backend, known_dbs, seeds.to_vec()),
        };
        Current {
            target,
            settings,
            dedicated: Pool::new(
                addr,
                s.tls.clone(),
                s.connect_timeout,
                s.max_dedicated,
                shared.dedicated_live.clone(),
                self.limits.max_bulk_len,
                log.clone(),
            ),
            max_clients: r.max_clients,
        }
    }

    /// A new stream batcher for `r`, and the settings its sessions use.
    fn start_batcher(&self, r: &Relayer, f: &StreamConfig, log: &Logger) -> fh::Current {
        let service = &f.service;
        let metrics = StreamMetrics::new(service.name(), &r.listen_key);
        let limits = service.limits();
        let buffer = Arc::new(
            Buffer::new(f.buffer, f.buffer_bytes)
                .for_service(limits)
                .wake_after(f.max_entries.saturating_mul(f.max_lines.min(limits.line))),
        );
        let aws = service.aws();
        info!(log, "{} relayer started", service.name(); "target" => service.target(),
            "region" => aws.region.as_deref().unwrap_or("(from the AWS configuration)"),
            "endpoint" => aws.endpoint.as_deref().unwrap_or("(the region's)"), "calls" => f.max_calls,
            "ordered" => service.ordered(), "max_lines" => f.max_lines, "max_entries" => f.max_entries,
            "buffer" => f.buffer, "buffer_bytes" => f.buffer_bytes, "critical" => f.critical);
        let batcher = Batcher::start(
            BatcherSettings {
                service: service.clone(),
                max_lines: f.max_lines,
                max_entries: f.max_entries,
                max_calls: f.max_calls,
                flush_interval: f.flush_interval,
                retry_timeout: f.retry_timeout,
                dead_letter: f.dead_letter.clone(),
                metrics: metrics.clone(),
                log: log.clone(),
            },
            buffer.clone(),
        );
        let settings = Arc::new(fh::SessionSettings {
            limits: self.limits,
            timestamp: f.timestamp,
            critical: f.critical,
            buffer,
            metrics,
            log: log.clone(),
            service: limits,
            name: service.name(),
            title: service.title(),
            ignore: f.ignore.clone(),
            replies: f.replies,
        });
        fh::Current {
            batcher,
            settings,
            max_clients: r.max_clients,
        }
    }

    fn start_backend(&self, r: &Relayer, shared: &Shared, log: &Logger) -> Backend {
        match BackendConfig::from(&r.kind) {
            BackendConfig::Stream(f) => {
                let current = self.start_batcher(r, f, log);
                let batcher = current.batcher.clone();
                Backend::Stream {
                    route: fh::Route::new(current),
                    batcher,
                }
            }
            BackendConfig::Redis(t) => {
                let current = self.start_target(r, &t, shared, log);
                let target = current.target.clone();
                Backend::Redis {
                    route: Route::new(current),
                    target,
                }
            }
        }
    }

    fn start_entry(&mut self, run: Run, bound: StdBound) {
        let Run { relayer: r, shared } = run;
        let log = self.log.new(o!("listen" => r.listen_key.clone()));
        let bound = match bound.into_bound() {
            Ok(b) => b,
            Err(e) => {
                error!(log, "cannot use the listening socket"; "error" => %e);
                return;
            }
        };
        let backend = self.start_backend(&r, &shared, &log);
        let frontend = Rc::new(RefCell::new(backend.frontend()));
        let settings = Arc::new(ListenerSettings {
            listen: r.listen.clone(),
            log: log.clone(),
        });
        let listener = Listener::start(bound, settings, frontend.clone());
        self.entries.insert(
            r.listen_key.clone(),
            Entry {
                relayer: r,
                listener,
                frontend,
                backend,
                log,
            },
        );
    }

    /// Puts a changed entry's new backend in place: same protocol, behind the same route (its
    /// clients switch at their next command); another protocol, a new route for new clients.
    /// The old backend finishes what it owes, then stops.
    fn replace_backend(&self, e: &mut Entry, r: &Relayer, shared: &Shared) {
        let log = e.log.clone();
        let limit = e.relayer.drain_timeout;
        match (&mut e.backend, BackendConfig::from(&r.kind)) {
            (Backend::Redis { route, target }, BackendConfig::Redis(t)) => {
                let next = self.start_target(r, &t, shared, &log);
                let old = std::mem::replace(target, next.target.clone());
                route.replace(next);
                let old = Backend::Redis {
                    route: route.clone(),
                    target: old,
                };
                actix::spawn(retire_backend(old, limit, log, self.retired.clone()));
            }
            (Backend::Stream { route, batcher }, BackendConfig::Stream(f)) => {
                let next = self.start_batcher(r, f, &log);
                let old = std::mem::replace(batcher, next.batcher.clone());
                route.replace(next);
                let old = Backend::Stream {
                    route: route.clone(),
                    batcher: old,
                };
                actix::spawn(retire_backend(old, limit, log, self.retired.clone()));
            }
            _ => {
                let old = std::mem::replace(&mut e.backend, self.start_backend(r, shared, &log));
                *e.frontend.borrow_mut() = e.backend.frontend();
                actix::spawn(retire_clients(old, limit, log, self.retired.clone()));
            }
        }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        Arbiter::current().stop();
    }
}

impl Handler<Apply> for Worker {
    type Result = ();

    /// Applies what the supervisor decided. An entry this worker does not run (its socket could
    /// not be used here) is skipped when replaced or removed, until a reload starts it anew.
    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) {
        let Apply {
            limits,
            remove,
            replace,
            start,
        } = msg;
        self.limits = limits;
        for key in &remove {
            if let Some(entry) = self.entries.remove(key) {
                actix::spawn(remove_entry(entry, self.retired.clone()));
            }
        }
        for Run { relayer, shared } in replace {
            let Some(mut e) = self.entries.remove(&relayer.listen_key) else {
                continue;
            };
            self.replace_backend(&mut e, &relayer, &shared);
            info!(e.log, "relayer changed: new backend, listener kept");
            e.relayer = relayer;
            self.entries.insert(e.relayer.listen_key.clone(), e);
        }
        for (run, bound) in start {
            self.start_entry(run, bound);
        }
    }
}

impl Handler<Stop> for Worker {
    type Result = ResponseFuture<Left>;

    /// Stops accepting everywhere; commands sent from now on get an error; then each backend
    /// has its drain timeout for the replies clients wait on and what was acknowledged early.
    /// What is left is counted and logged; the clients are closed once their replies are
    /// written.
    fn handle(&mut self, _: Stop, _: &mut Context<Self>) -> Self::Result {
        let entries = std::mem::take(&mut self.entries);
        let retired = self.retired.clone();
        Box::pin(async move {
            for e in entries.values() {
                let _ = e.listener.send(StopListening).await;
                e.backend.frontend().stopping();
            }
            let started = Instant::now();
            let drains = entries.values().map(|e| async move {
                let left = e.backend.drain(e.relayer.drain_timeout, true).await;
                log_undelivered(&e.log, "stop", &left);
                let frontend = e.backend.frontend();
                frontend.close_all();
                // Their last replies written (a blocked client's, within the drain timeout), or
                // their sockets given up on.
                let deadline = (started + e.relayer.drain_timeout).max(Instant::now() + CLOSE_WAIT);
                while frontend.clients() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                left
            });
            let mut total = retired.borrow().clone();
            for left in futures_util::future::join_all(drains).await {
                total += &left;
            }
            total
        })
    }
}

/// How long stopped clients may take to read their last replies, at least.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What runs for one entry.
struct Entry {
    relayer: Relayer,
    listener: Addr<Listener>,
    /// Where the listener starts its sessions: replaced when a reload changes the protocol.
    frontend: Rc<RefCell<Rc<dyn Frontend>>>,
    backend: Backend,
    log: Logger,
}

/// The clients' route and what they talk to: a Redis target or a stream batcher.
#[derive(Clone)]
enum Backend {
    Redis {
        route: Rc<Route>,
        target: BackendAddr,
    },
    Stream {
        route: Rc<fh::Route>,
        batcher: Addr<Batcher>,
    },
}

impl Backend {
    fn frontend(&self) -> Rc<dyn Frontend> {
        match self {
            Backend::Redis { route, .. } => route.clone(),
            Backend::Stream { route, .. } => route.clone(),
        }
    }

    /// Waits within `limit` until what was acknowledged early is delivered (`everything`: and
    /// the replies clients wait for); returns what was left undelivered (for a Redis backend,
    /// what became of all its writes acknowledged early). A stream batcher accepts no more
    /// lines from the start of its drain.
    async fn drain(&self, limit: Duration, everything: bool) -> Left {
        match self {
            Backend::Redis { target, .. } => {
                let redis = match tokio::time::timeout(limit, target.drain(everything)).await {
                    Ok(_) => target.report().await,
                    Err(_) => target.give_up().await,
                };
                Left {
                    redis,
                    ..Left::default()
                }
            }
            Backend::Stream { batcher, .. } => {
                let (done, rx) = tokio::sync::oneshot::channel();
                batcher.do_send(batcher::Drain { done });
                let stream = match tokio::time::timeout(limit, rx).await {
                    Ok(Ok(left)) => left,
                    // The batcher's thread is gone: it counted what it held as lost.
                    Ok(Err(_)) => StreamDelivery::default(),
                    Err(_) => batcher.send(batcher::GiveUp).await.unwrap_or_default(),
                };
                Left {
                    stream,
                    ..Left::default()
                }
            }
        }
    }

    fn retire(&self) {
        match self {
            Backend::Redis { target, .. } => target.retire(),
            Backend::Stream { batcher, .. } => batcher.do_send(batcher::Retire),
        }
    }
}

/// A backend a reload replaced: it finishes what it owes (within the drain timeout), then stops.
async fn retire_backend(old: Backend, limit: Duration, log: Logger, retired: Rc<RefCell<Left>>) {
    let left = old.drain(limit, true).await;
    log_undelivered(&log, "replaced backend", &left);
    *retired.borrow_mut() += &left;
    old.retire();
}

/// Logs what a drain left: an error if anything acknowledged was not delivered (refused,
/// unknown, expired, lost), a warning if stream lines went to the dead-letter file, and
/// the Redis counts in any case.
fn log_undelivered(log: &Logger, what: &str, left: &Left) {
    let d = &left.redis;
    if d.total() > 0 {
        if d.all_delivered() {
            info!(log, "{what}: every acknowledged write delivered"; "delivered" => d.delivered);
        } else {
            error!(log, "{what}: acknowledged writes not delivered"; "delivered" => d.delivered,
                "refused" => d.refused_total(), "refused_by_code" => d.refused_by_code(), "unknown" => d.unknown,
                "expired" => d.expired_total(), "expired_by_code" => d.expired_by_code(), "lost" => d.lost);
        }
    }
    let f = left.stream;
    if f.lost > 0 {
        error!(log, "{what}: writes not delivered within the drain timeout, lost"; "lost" => f.lost,
            "dead_letter" => f.dead_letter);
    } else if f.dead_letter > 0 {
        warn!(log, "{what}: writes not delivered in time, written to the dead-letter file";
            "dead_letter" => f.dead_letter);
    }
}

/// A backend of another protocol replaced this one: its clients go on until the drain
/// timeout while it delivers what it acknowledged; then they are closed and it stops.
async fn retire_clients(old: Backend, limit: Duration, log: Logger, retired: Rc<RefCell<Left>>) {
    let started = Instant::now();
    let left = old.drain(limit, false).await;
    tokio::time::sleep(limit.saturating_sub(started.elapsed())).await;
    old.frontend().close_all();
    log_undelivered(&log, "replaced backend", &left);
    let left = old.drain(Duration::from_secs(1), true).await;
    *retired.borrow_mut() += &left;
    old.retire();
}

/// An entry a reload removed: it stops accepting at once; its clients may go on until the
/// drain timeout, while early acknowledgement stops and what was acknowledged is delivered;
/// then the clients are closed and the target stops.
async fn remove_entry(e: Entry, retired: Rc<RefCell<Left>>) {
    let started = Instant::now();
    let _ = e.listener.send(StopListening).await;
    info!(e.log, "relayer removed: not accepting; clients closed after the drain timeout";
        "clients" => e.backend.frontend().clients(), "drain_timeout_s" => e.relayer.drain_timeout.as_secs_f64());
    let limit = e.relayer.drain_timeout;
    let left = e.backend.drain(limit, false).await;
    tokio::time::sleep(limit.saturating_sub(started.elapsed())).await;
    e.backend.frontend().close_all();
    log_undelivered(&e.log, "removed relayer", &left);
    // The closing clients get the replies still owed, or the target's error once it retires.
    let left = e.backend.drain(Duration::from_secs(1), true).await;
    *retired.borrow_mut() += &left;
    e.backend.retire();
}
