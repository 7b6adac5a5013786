//! The fault matrix: evidence that a write the relayer acknowledged early is delivered, or
//! counted by the relayer as not delivered, whatever the backend, the link or the relayer itself
//! goes through. Used by `tests/all/fault_matrix.rs` (short rows, invariants asserted) and by the
//! `faults` binary (`integration/bench/faults.sh`: full-size rows, `RELIABILITY.md`).
//!
//! A row: a fresh backend (a single Redis reached through a `DelayLink`, which stands for the
//! name the relayer knows, or a `Cluster`), a smart relayer in front of it, and `clients`
//! threads writing through it while one fault is injected. Afterwards the backend is read and
//! compared with what every client was acknowledged and with what the relayer counted.
//!
//! The relayer has two entries to the same backend: `sets` (the default smart table) and `list`
//! (`asyncCommands = ["RPUSH"]`). Each client has a connection to each and pipelines batches of
//! `SET fm:<id>:<i> <i>` on the first and `RPUSH fm:list <id>:<i>` on the second. Two entries,
//! because the relayer counts per entry (its `stop:` lines carry the `listen`), not per command,
//! and the invariants differ: a SET is safe to send twice (sent again after a lost connection,
//! never of unknown outcome), an RPUSH is not (written and unconfirmed when its connection is
//! lost, it is counted of unknown outcome: it may or may not have run).
//!
//! Invariants of every row (`Row::violations`):
//! - SET: counted not delivered (refused + expired + lost) <= missing <= that + unknown, the
//!   unknown ones only at a time limit (written, not answered when the drain gave up), no
//!   key holding another value;
//! - RPUSH: counted not delivered <= missing <= counted not delivered + unknown;
//! - no duplicate and no order violation in the list (an item of a client after a larger one
//!   of the same client);
//! - nothing counted not delivered when the fault is shorter than `retryTimeout` (and the drain
//!   shorter than `drainTimeout`); the rows that outlast them on purpose must count something;
//! - the stop summary equals the sum of the entries' lines, the relayer exits 0, nothing hangs.
//!
//! Rows that count writes as lost or expired are made so that those writes surely did not run
//! (the backend paused writes and the connections holding them were closed): a write the
//! relayer could not confirm may otherwise have run, and "missing" would be below "counted".

use crate::backend_client::info_value;
use crate::log::{RELOADED, STOPPED_LOST, STOPPED_OK};
use crate::timeouts::HANG;
use crate::{
    cluster_entry, free_port, redis_entry_mode, BackendClient, Client, Cluster, ClusterOptions, DelayLink,
    Redis, Relayer, Reply, FAST_NODE_TIMEOUT_MS,
};
use std::collections::{BTreeMap, HashMap};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The list every client appends to.
pub const LIST: &str = "fm:list";

/// The key of client `id`'s `i`-th SET.
pub fn set_key(id: usize, i: u64) -> String {
    format!("fm:{id}:{i}")
}

/// The item of client `id`'s `i`-th RPUSH.
fn list_item(id: usize, i: u64) -> String {
    format!("{id}:{i}")
}

/// The script that keeps a server busy until SCRIPT KILL (it writes nothing, so it can be
/// killed).
const BUSY_SCRIPT: &str = "while true do end";

/// Time a supervisor takes to start a killed redis-server again.
const RESTART_AFTER: Duration = Duration::from_millis(300);
/// Time a name (DNS) takes to follow a failover.
const NAME_FOLLOWS_AFTER: Duration = Duration::from_millis(500);
/// How long the SIGHUP row's backlog is held (CLIENT PAUSE WRITE).
const SIGHUP_BACKLOG: Duration = Duration::from_secs(1);
/// `retryTimeout` and `drainTimeout` of the rows that outlast them on purpose.
const SHORT_LIMIT_S: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Single,
    Cluster,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Single => "single",
            Kind::Cluster => "cluster",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Single: SIGKILL, restarted loading its dataset (AOF, appendfsync always). Cluster: SIGKILL
    /// of a master, its replica takes over (the master's writes paused and replicated first).
    KillLoading,
    /// A script keeps the server busy (busy-reply-threshold 100 ms), then SCRIPT KILL.
    ScriptKill,
    /// `CLIENT KILL TYPE normal`, `client_kills` times.
    ClientKill,
    /// `CLIENT PAUSE <pause> WRITE`.
    ClientPause,
    /// The link's connections reset, and new ones refused, for `link_down`.
    LinkCut,
    /// The link holds every byte for `link_down`.
    LinkStall,
    /// FAILOVER to the replica; the name then leads to it.
    Failover,
    /// maxmemory 1 for `oom`, then 0.
    Oom,
    /// SIGHUP with a changed entry (a new backend, the listener kept) while a backlog is held.
    Sighup,
    /// SIGTERM while a backlog is held (CLIENT PAUSE WRITE), shorter than drainTimeout.
    Sigterm,
    /// Clients that write `pipeline_commands` commands before reading any reply.
    WholePipeline,
    /// SIGTERM with a backlog held past drainTimeout (1 s): the rest is counted lost.
    SigtermPastDrain,
    /// The backend unreachable past retryTimeout (1 s): what waited longer is counted expired.
    UnreachablePastRetry,
}

impl Fault {
    pub const ALL: [Fault; 13] = [
        Fault::KillLoading,
        Fault::ScriptKill,
        Fault::ClientKill,
        Fault::ClientPause,
        Fault::LinkCut,
        Fault::LinkStall,
        Fault::Failover,
        Fault::Oom,
        Fault::Sighup,
        Fault::Sigterm,
        Fault::WholePipeline,
        Fault::SigtermPastDrain,
        Fault::UnreachablePastRetry,
    ];

    /// A short name, for the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLoading => "kill-loading",
            Fault::ScriptKill => "script-kill",
            Fault::ClientKill => "client-kill",
            Fault::ClientPause => "client-pause",
            Fault::LinkCut => "link-cut",
            Fault::LinkStall => "link-stall",
            Fault::Failover => "failover",
            Fault::Oom => "oom",
            Fault::Sighup => "sighup",
            Fault::Sigterm => "sigterm",
            Fault::WholePipeline => "whole-pipeline",
            Fault::SigtermPastDrain => "sigterm-past-drain",
            Fault::UnreachablePastRetry => "unreachable-past-retry",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the row exists for this kind of backend: the link and the name are the single
    /// Redis' (cluster nodes announce their own addresses); a cluster fails over by itself.
    pub fn applies(self, kind: Kind) -> bool {
        match self {
            Fault::LinkCut | Fault::LinkStall | Fault::Failover | Fault::UnreachablePastRetry => {
                kind == Kind::Single
            }
            _ => true,
        }
    }

    /// Rows whose fault outlasts a time limit of the relayer on purpose: writes must be counted.
    pub fn outlasts_limits(self) -> bool {
        matches!(self, Fault::SigtermPastDrain | Fault::UnreachablePastRetry)
    }

    /// What the row does, for the table.
    pub fn title(self, kind: Kind, s: &Sizes) -> String {
        let single = kind == Kind::Single;
        match self {
            Fault::KillLoading if single => format!(
                "kill -9, restart loading {} keys (AOF always)",
                thousands(s.preload_keys)
            ),
            Fault::KillLoading => "kill -9 of a master (paused, replicated), replica takes over".into(),
            Fault::ScriptKill if single => {
                format!("busy script {}, SCRIPT KILL through the relayer", secs(s.busy))
            }
            Fault::ScriptKill => format!("busy script on a master {}, SCRIPT KILL", secs(s.busy)),
            Fault::ClientKill => format!(
                "CLIENT KILL TYPE normal x{}{}",
                s.client_kills,
                if single { "" } else { " (every node)" }
            ),
            Fault::ClientPause => format!(
                "CLIENT PAUSE WRITE {}{}",
                secs(s.pause),
                if single { "" } else { " (every master)" }
            ),
            Fault::LinkCut => format!(
                "link cut (connections reset, new ones closed) {}",
                secs(s.link_down)
            ),
            Fault::LinkStall => format!("link stalled (bytes held) {}", secs(s.link_down)),
            Fault::Failover => "failover behind one name".into(),
            Fault::Oom => format!("maxmemory reached (OOM) {}, then raised", secs(s.oom)),
            Fault::Sighup => format!("SIGHUP changing the entry, backlog held {}", secs(SIGHUP_BACKLOG)),
            Fault::Sigterm => format!("SIGTERM with a backlog held {}", secs(s.pause)),
            Fault::WholePipeline => format!(
                "{} whole-pipeline client{} ({} SET + {} RPUSH each before reading)",
                s.pipeline_clients,
                if s.pipeline_clients == 1 { "" } else { "s" },
                thousands(s.pipeline_commands),
                thousands(s.pipeline_commands)
            ),
            Fault::SigtermPastDrain => format!(
                "SIGTERM, backlog held past drainTimeout ({})",
                secs(Duration::from_secs_f64(SHORT_LIMIT_S))
            ),
            Fault::UnreachablePastRetry => format!(
                "backend unreachable past retryTimeout ({})",
                secs(Duration::from_secs_f64(SHORT_LIMIT_S))
            ),
        }
    }
}

/// How big and how long a row is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Writing clients (each with a connection to each entry).
    pub clients: usize,
    /// SETs (and as many RPUSHes) per pipelined batch.
    pub batch: usize,
    /// A client's pause between two batches.
    pub interval: Duration,
    /// Writing before the fault.
    pub before: Duration,
    /// Writing after the recovery.
    pub after: Duration,
    /// Keys in the dataset of the kill -9 row (single Redis).
    pub preload_keys: u64,
    /// redis-server `--key-load-delay` at the restart (0: none): makes a small dataset load
    /// for seconds.
    pub key_load_delay: u32,
    pub busy: Duration,
    pub client_kills: u32,
    pub kill_every: Duration,
    pub pause: Duration,
    pub link_down: Duration,
    pub oom: Duration,
    /// Commands of each kind a whole-pipeline client writes before reading, and such clients.
    pub pipeline_commands: u64,
    pub pipeline_clients: usize,
    /// `retryTimeout` and `drainTimeout` of the relayer, seconds.
    pub retry_timeout: f64,
    pub drain_timeout: f64,
    /// A reply (or a step) that takes longer is a hang.
    pub hang: Duration,
}

impl Sizes {
    /// The sizes.
    pub fn full() -> Sizes {
        Sizes {
            clients: 4,
            batch: 50,
            interval: Duration::from_millis(2),
            before: Duration::from_secs(2),
            after: Duration::from_secs(2),
            preload_keys: 1_000_000,
            key_load_delay: 0,
            busy: Duration::from_secs(3),
            client_kills: 10,
            kill_every: Duration::from_millis(500),
            pause: Duration::from_secs(2),
            link_down: Duration::from_secs(5),
            oom: Duration::from_secs(3),
            pipeline_commands: 300_000,
            pipeline_clients: 4,
            retry_timeout: 60.0,
            drain_timeout: 10.0,
            hang: Duration::from_secs(120),
        }
    }

    /// Short rows for the tests: a small dataset made slow to load, faults of about a second.
    pub fn test() -> Sizes {
        Sizes {
            clients: 3,
            batch: 20,
            interval: Duration::from_millis(1),
            before: Duration::from_millis(500),
            after: Duration::from_millis(300),
            preload_keys: 20_000,
            key_load_delay: 20,
            busy: Duration::from_secs(1),
            client_kills: 10,
            kill_every: Duration::from_millis(100),
            pause: Duration::from_secs(1),
            link_down: Duration::from_secs(1),
            oom: Duration::from_secs(1),
            pipeline_commands: 300_000,
            pipeline_clients: 1,
            retry_timeout: 60.0,
            drain_timeout: 10.0,
            hang: HANG,
        }
    }
}

/// `2 s`, `0.5 s`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- what the relayer counted ------------------------------------------------------------------

/// What the relayer says became of the writes it acknowledged early (one entry, or all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub delivered: u64,
    pub refused: BTreeMap<String, u64>,
    pub unknown: u64,
    pub expired: BTreeMap<String, u64>,
    pub lost: u64,
}

impl Counted {
    /// Refused, expired and lost: surely not delivered (unknown aside).
    pub fn not_delivered(&self) -> u64 {
        self.refused.values().sum::<u64>() + self.expired.values().sum::<u64>() + self.lost
    }

    /// `refused WRONGTYPE=1, expired unavailable=3, lost 2`, or empty.
    pub fn reasons(&self) -> String {
        let mut parts = Vec::new();
        let codes = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.refused.is_empty() {
            parts.push(format!("refused {}", codes(&self.refused)));
        }
        if !self.expired.is_empty() {
            parts.push(format!("expired {}", codes(&self.expired)));
        }
        if self.lost > 0 {
            parts.push(format!("lost {}", self.lost));
        }
        parts.join(", ")
    }

    fn add(&mut self, o: &Counted) {
        self.delivered += o.delivered;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        self.unknown += o.unknown;
        for (k, v) in &o.expired {
            *self.expired.entry(k.clone()).or_default() += v;
        }
        self.lost += o.lost;
    }

    fn from_fields(f: &HashMap<String, String>) -> Counted {
        let n = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let codes = |k: &str| -> BTreeMap<String, u64> {
            f.get(k)
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|kv| {
                            let (code, n) = kv.split_once('=')?;
                            Some((code.to_string(), n.parse().ok()?))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Counted {
            delivered: n("delivered"),
            refused: codes("refused_by_code"),
            unknown: n("unknown"),
            expired: codes("expired_by_code"),
            lost: n("lost"),
        }
    }
}

/// `k: v` fields of the rest of a text log line after its message.
fn fields_after(rest: &str) -> HashMap<String, String> {
    rest.split(", ")
        .filter_map(|p| p.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The counts of each entry (by `listen`) from the relayer's text log: the sum of its lines
/// for a stop, a replaced backend (a reload) and a removed entry, over every worker.
pub fn entry_counts(log: &str) -> BTreeMap<String, Counted> {
    const WHAT: [&str; 3] = ["stop: ", "replaced backend: ", "removed relayer: "];
    const MSG: [&str; 2] = [
        "every acknowledged write delivered",
        "acknowledged writes not delivered",
    ];
    let mut out: BTreeMap<String, Counted> = BTreeMap::new();
    for line in log.lines() {
        let found = WHAT.iter().find_map(|w| {
            MSG.iter().find_map(|m| {
                let pat = format!("{w}{m}");
                line.find(&pat).map(|p| p + pat.len())
            })
        });
        let Some(at) = found else { continue };
        let fields = fields_after(&line[at..]);
        if let Some(listen) = fields.get("listen") {
            out.entry(listen.clone())
                .or_default()
                .add(&Counted::from_fields(&fields));
        }
    }
    out
}

/// The process's stop summary (its last `stopped` line), if there is one.
pub fn summary_counts(log: &str) -> Option<Counted> {
    const MSG: [&str; 2] = [STOPPED_OK, STOPPED_LOST];
    log.lines().rev().find_map(|line| {
        MSG.iter().find_map(|m| {
            let at = line.find(m)? + m.len();
            Some(Counted::from_fields(&fields_after(&line[at..])))
        })
    })
}

// ---- the rows ---------------------------------------------------------------------------------

/// What became of one kind of write (SET or RPUSH) in a row.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Acknowledged to the clients.
    pub acknowledged: u64,
    /// Acknowledged and on the backend (SET: with the value written).
    pub found: u64,
    /// Acknowledged and not on the backend.
    pub missing: u64,
    /// SET: acknowledged, and the key holds another value.
    pub wrong: u64,
    /// On the backend though the client got an error (a write that ran, its reply lost).
    pub unacknowledged_found: u64,
    /// RPUSH: items found more than once.
    pub duplicates: u64,
    /// RPUSH: items after a larger item of the same client.
    pub order_violations: u64,
    /// RPUSH: items that are no client's.
    pub foreign: u64,
    /// What the relayer counted for the entry.
    pub counted: Counted,
    /// A few of the missing ones, for the report.
    pub examples: Vec<String>,
}

/// One row of the matrix.
#[derive(Clone, Debug)]
pub struct Row {
    pub fault: Fault,
    pub kind: Kind,
    pub title: String,
    /// From the start of the fault to its end (see `RELIABILITY.md` for each row's end).
    pub fault_secs: f64,
    /// From the end of the fault until every client's first SET acknowledged after it is on the
    /// backend; None where it does not apply (the relayer stopped, no fault) or never came.
    pub recover_secs: Option<f64>,
    pub set: Outcome,
    pub list: Outcome,
    /// Error replies and connection errors the clients saw, by kind.
    pub client_errors: BTreeMap<String, u64>,
    /// The relayer's stop summary (all entries).
    pub summary: Option<Counted>,
    pub relayer_exit: Option<ExitStatus>,
    /// Something did not answer within `hang`.
    pub hang: Option<String>,
    /// The harness itself failed (a panic while running the row).
    pub failure: Option<String>,
    /// Whether the fault outlasts `retryTimeout`/`drainTimeout` on purpose.
    pub expect_counted: bool,
    pub notes: Vec<String>,
    /// Lines of the relayer's log worth showing when an invariant fails.
    pub log_excerpt: Vec<String>,
    pub wall_secs: f64,
}

impl Row {
    fn new(fault: Fault, kind: Kind, sizes: &Sizes) -> Row {
        Row {
            fault,
            kind,
            title: fault.title(kind, sizes),
            fault_secs: 0.0,
            recover_secs: None,
            set: Outcome::default(),
            list: Outcome::default(),
            client_errors: BTreeMap::new(),
            summary: None,
            relayer_exit: None,
            hang: None,
            failure: None,
            expect_counted: fault.outlasts_limits(),
            notes: Vec::new(),
            log_excerpt: Vec::new(),
            wall_secs: 0.0,
        }
    }

    /// A row whose run panicked (the driver goes on with the next).
    pub fn failed(fault: Fault, kind: Kind, sizes: &Sizes, why: String) -> Row {
        let mut r = Row::new(fault, kind, sizes);
        r.failure = Some(why);
        r
    }

    /// The invariants this row breaks (see the module notes); empty when it holds them all.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(f) = &self.failure {
            v.push(format!("the row failed to run: {f}"));
            return v;
        }
        if let Some(h) = &self.hang {
            v.push(format!("hang: {h}"));
        }
        let (s, l) = (&self.set, &self.list);
        let s_counted = s.counted.not_delivered();
        // A SET written and not answered when the drain's time ran out may or may not have run.
        if s.missing < s_counted || s.missing > s_counted + s.counted.unknown {
            v.push(format!(
                "SET: {} missing, outside [counted {s_counted}, counted + unknown {}] (e.g. {})",
                s.missing,
                s_counted + s.counted.unknown,
                s.examples.join(", ")
            ));
        }
        // After a lost connection a SET is sent again: its outcome is unknown only at a time
        // limit.
        if s.counted.unknown > 0 && !self.expect_counted {
            v.push(format!(
                "SET: {} counted of unknown outcome (a SET is sent again)",
                s.counted.unknown
            ));
        }
        if s.wrong > 0 {
            v.push(format!("SET: {} keys hold another value", s.wrong));
        }
        let l_counted = l.counted.not_delivered();
        if l.missing < l_counted || l.missing > l_counted + l.counted.unknown {
            v.push(format!(
                "RPUSH: {} missing, outside [counted {l_counted}, counted + unknown {}] (e.g. {})",
                l.missing,
                l_counted + l.counted.unknown,
                l.examples.join(", ")
            ));
        }
        if l.duplicates > 0 {
            v.push(format!("RPUSH: {} duplicates in the list", l.duplicates));
        }
        if l.order_violations > 0 {
            v.push(format!(
                "RPUSH: {} order violations in the list",
                l.order_violations
            ));
        }
        if l.foreign > 0 {
            v.push(format!("RPUSH: {} items of no client in the list", l.foreign));
        }
        if self.expect_counted {
            // Written and not answered at the time limit: counted of unknown outcome.
            if s_counted + l_counted + s.counted.unknown + l.counted.unknown == 0 {
                v.push("the fault outlasted the relayer's limit, yet nothing was counted".into());
            }
        } else if s_counted + l_counted > 0 {
            v.push(format!(
                "{} writes counted not delivered ({}; {}) though the fault was shorter than retryTimeout",
                s_counted + l_counted,
                s.counted.reasons(),
                l.counted.reasons()
            ));
        }
        let mut both = s.counted.clone();
        both.add(&l.counted);
        match &self.summary {
            None => v.push("no stop summary in the relayer's log".into()),
            Some(total) if *total != both => v.push(format!(
                "the stop summary {total:?} is not the sum of the entries' lines {both:?}"
            )),
            Some(_) => {}
        }
        match self.relayer_exit {
            Some(st) if !st.success() => v.push(format!("the relayer exited with {st}")),
            None if self.hang.is_none() => v.push("the relayer did not exit".into()),
            _ => {}
        }
        v
    }

    fn errors_total(&self) -> u64 {
        self.client_errors.values().sum()
    }

    /// One line for the driver's progress output.
    pub fn summary_line(&self) -> String {
        let v = self.violations();
        format!(
            "{:<8} {:<24} acked {}/{} missing {}/{} counted {}/{} unknown {}/{} order {} dup {} errors {} recover {} -> {}",
            self.kind.name(),
            self.fault.name(),
            self.set.acknowledged,
            self.list.acknowledged,
            self.set.missing,
            self.list.missing,
            self.set.counted.not_delivered(),
            self.list.counted.not_delivered(),
            self.set.counted.unknown,
            self.list.counted.unknown,
            self.list.order_violations,
            self.list.duplicates,
            self.errors_total(),
            self.recover_secs
                .map_or("-".to_string(), |r| format!("{r:.2} s")),
            if v.is_empty() {
                "ok".to_string()
            } else {
                v.join("; ")
            }
        )
    }
}

fn pair(a: u64, b: u64) -> String {
    format!("{} / {}", thousands(a), thousands(b))
}

/// The Markdown table of `rows`.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| backend | fault | fault s | acknowledged SET / RPUSH | found | missing | counted not delivered (reasons) \
         | unknown SET / RPUSH | order violations | duplicates | client errors | recover s | invariants |\n\
         |---|---|--:|--:|--:|--:|---|--:|--:|--:|---|--:|---|\n",
    );
    for r in rows {
        if r.failure.is_some() {
            t.push_str(&format!(
                "| {} | {} | | | | | | | | | | | FAILED: {} |\n",
                r.kind.name(),
                r.title,
                r.violations().join("; ").replace('|', "/")
            ));
            continue;
        }
        let reasons = [&r.set.counted, &r.list.counted]
            .iter()
            .zip(["SET", "RPUSH"])
            .filter(|(c, _)| c.not_delivered() > 0)
            .map(|(c, k)| format!("{k}: {}", c.reasons()))
            .collect::<Vec<_>>()
            .join("; ");
        let counted = pair(r.set.counted.not_delivered(), r.list.counted.not_delivered());
        let counted = if reasons.is_empty() {
            counted
        } else {
            format!("{counted} ({reasons})")
        };
        let errors = if r.client_errors.is_empty() {
            "0".to_string()
        } else {
            let kinds: Vec<String> = r.client_errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!("{} ({})", thousands(r.errors_total()), kinds.join(", "))
        };
        let v = r.violations();
        t.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.kind.name(),
            r.title,
            r.fault_secs,
            pair(r.set.acknowledged, r.list.acknowledged),
            pair(r.set.found, r.list.found),
            pair(r.set.missing, r.list.missing),
            counted,
            pair(r.set.counted.unknown, r.list.counted.unknown),
            r.list.order_violations,
            r.list.duplicates,
            errors.replace('|', "/"),
            r.recover_secs.map_or("–".to_string(), |s| format!("{s:.2}")),
            if v.is_empty() {
                "hold".to_string()
            } else {
                format!("FAILED: {}", v.join("; ").replace('|', "/"))
            },
        ));
    }
    t
}

// ---- the clients --------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Batches until told to stop.
    Continuous,
    /// Everything written before any reply is read, then every reply read.
    WholePipeline(u64),
}

struct Progress {
    /// Bumped at every batch written and every reply read: a client whose count stands still
    /// for `hang` is stuck.
    activity: AtomicU64,
    /// The index of the first write not sent yet (everything from it on is sent later).
    sent: AtomicU64,
    /// The largest index of a SET acknowledged so far (-1: none).
    last_set: AtomicI64,
}

#[derive(Default)]
struct ClientReport {
    set_acked: Vec<bool>,
    list_acked: Vec<bool>,
    errors: BTreeMap<String, u64>,
    /// A reply (or a write) that did not come within `hang`.
    timed_out: Option<String>,
}

impl ClientReport {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// An error reply, by kind: its code, and for the relayer's own errors (`ERR relayer: ...`)
/// their text up to the first detail, addresses left out.
fn reply_kind(r: &Reply) -> String {
    match r.error_text() {
        Some(t) if t.starts_with("ERR relayer:") => {
            let head = t.split([',', '(']).next().unwrap_or(t);
            head.split_whitespace()
                .map(|w| {
                    if w.contains("://") || w.contains("127.0.0.1") {
                        "<address>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        Some(t) => t.split_whitespace().next().unwrap_or("").to_string(),
        None => format!("unexpected reply {r:?}"),
    }
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed".into(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => "connection reset".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        k => format!("io {k:?}"),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A client's connection to one entry, opened again after an error.
struct Conn {
    listen: String,
    client: Option<Client>,
    timeout: Duration,
    /// The last connect failed (its error is counted once per outage).
    failing: bool,
}

impl Conn {
    fn new(listen: &str, timeout: Duration) -> Conn {
        Conn {
            listen: listen.to_string(),
            client: None,
            timeout,
            failing: false,
        }
    }

    fn get(&mut self, report: &mut ClientReport) -> Option<&mut Client> {
        if self.client.is_none() {
            match Client::connect(&self.listen) {
                Ok(mut c) => {
                    c.set_read_timeout(self.timeout);
                    if let Ok(s) = c.try_clone_stream() {
                        let _ = s.set_write_timeout(Some(self.timeout));
                    }
                    self.client = Some(c);
                    self.failing = false;
                }
                Err(e) => {
                    if !self.failing {
                        report.error(format!("connect: {}", io_kind(&e)));
                    }
                    self.failing = true;
                }
            }
        }
        self.client.as_mut()
    }
}

fn wire(cmds: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(&crate::encode_command(&c));
    }
    out
}

fn set_cmd(id: usize, j: u64) -> Vec<String> {
    vec!["SET".into(), set_key(id, j), j.to_string()]
}

fn rpush_cmd(id: usize, j: u64) -> Vec<String> {
    vec!["RPUSH".into(), LIST.into(), list_item(id, j)]
}

/// `count` replies of writes `first..first+count` on connection `k` (0: SETs, 1: RPUSHes);
/// false if the connection failed.
fn read_replies(
    conn: &mut Conn,
    k: usize,
    first: u64,
    count: u64,
    report: &mut ClientReport,
    progress: &Progress,
) -> bool {
    let Some(c) = conn.client.as_mut() else {
        return false;
    };
    for j in first..first + count {
        match c.try_read_reply() {
            Ok(r) => {
                progress.activity.fetch_add(1, Ordering::Relaxed);
                let ok = if k == 0 {
                    r == Reply::ok()
                } else {
                    matches!(r, Reply::Int(_))
                };
                if ok {
                    if k == 0 {
                        report.set_acked[j as usize] = true;
                        progress.last_set.fetch_max(j as i64, Ordering::Relaxed);
                    } else {
                        report.list_acked[j as usize] = true;
                    }
                } else {
                    report.error(reply_kind(&r));
                }
            }
            Err(e) => {
                if is_timeout(&e) {
                    report.timed_out = Some(format!("no reply within {:?}: {e}", conn.timeout));
                }
                report.error(io_kind(&e));
                conn.client = None;
                return false;
            }
        }
    }
    true
}

/// What one client does.
struct ClientSpec {
    id: usize,
    listens: [String; 2],
    mode: Mode,
    batch: u64,
    interval: Duration,
    hang: Duration,
}

fn run_client(spec: ClientSpec, stop: &AtomicBool, progress: &Progress) -> ClientReport {
    let ClientSpec {
        id,
        listens,
        mode,
        batch,
        interval,
        hang,
    } = spec;
    let mut report = ClientReport::default();
    let mut conns = [Conn::new(&listens[0], hang), Conn::new(&listens[1], hang)];
    match mode {
        Mode::Continuous => {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && report.timed_out.is_none() {
                let end = i + batch;
                progress.sent.store(end, Ordering::Relaxed);
                report.set_acked.resize(end as usize, false);
                report.list_acked.resize(end as usize, false);
                let wires = [
                    wire((i..end).map(|j| set_cmd(id, j))),
                    wire((i..end).map(|j| rpush_cmd(id, j))),
                ];
                let mut sent = [false; 2];
                for k in 0..2 {
                    if let Some(c) = conns[k].get(&mut report) {
                        match c.try_send_raw(&wires[k]) {
                            Ok(()) => {
                                sent[k] = true;
                                progress.activity.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                if is_timeout(&e) {
                                    report.timed_out = Some(format!("write blocked for {hang:?}"));
                                }
                                report.error(io_kind(&e));
                                conns[k].client = None;
                            }
                        }
                    }
                }
                for k in 0..2 {
                    if sent[k] {
                        read_replies(&mut conns[k], k, i, batch, &mut report, progress);
                    }
                }
                if sent == [false, false] {
                    // The relayer cannot be reached (stopped): do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                i = end;
                if !interval.is_zero() {
                    std::thread::sleep(interval);
                }
            }
        }
        Mode::WholePipeline(n) => {
            report.set_acked.resize(n as usize, false);
            report.list_acked.resize(n as usize, false);
            progress.sent.store(n, Ordering::Relaxed);
            const CHUNK: u64 = 1000;
            let mut sent = [false; 2];
            for (k, conn) in conns.iter_mut().enumerate() {
                let Some(c) = conn.get(&mut report) else { continue };
                let mut ok = true;
                for from in (0..n).step_by(CHUNK as usize) {
                    let to = (from + CHUNK).min(n);
                    let bytes = if k == 0 {
                        wire((from..to).map(|j| set_cmd(id, j)))
                    } else {
                        wire((from..to).map(|j| rpush_cmd(id, j)))
                    };
                    progress.activity.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = c.try_send_raw(&bytes) {
                        if is_timeout(&e) {
                            report.timed_out = Some(format!(
                                "writing the whole pipeline blocked for {hang:?} after {from} commands"
                            ));
                        }
                        report.error(io_kind(&e));
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    conn.client = None;
                    if report.timed_out.is_some() {
                        return report;
                    }
                    continue;
                }
                sent[k] = true;
            }
            for k in 0..2 {
                if sent[k] {
                    read_replies(&mut conns[k], k, 0, n, &mut report, progress);
                }
            }
        }
    }
    report
}

/// The writing clients of a row.
struct Workload {
    stop: Arc<AtomicBool>,
    progress: Arc<Vec<Progress>>,
    done: mpsc::Receiver<(usize, ClientReport)>,
    clients: usize,
}

impl Workload {
    fn start(listens: &[String; 2], mode: Mode, clients: usize, s: &Sizes) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let progress: Arc<Vec<Progress>> = Arc::new(
            (0..clients)
                .map(|_| Progress {
                    activity: AtomicU64::new(0),
                    sent: AtomicU64::new(0),
                    last_set: AtomicI64::new(-1),
                })
                .collect(),
        );
        let (tx, done) = mpsc::channel();
        for id in 0..clients {
            let (stop, progress, tx, listens) = (stop.clone(), progress.clone(), tx.clone(), listens.clone());
            let (batch, interval, hang) = (s.batch as u64, s.interval, s.hang);
            std::thread::Builder::new()
                .name(format!("fm-client-{id}"))
                .spawn(move || {
                    let spec = ClientSpec {
                        id,
                        listens,
                        mode,
                        batch,
                        interval,
                        hang,
                    };
                    let r = run_client(spec, &stop, &progress[id]);
                    let _ = tx.send((id, r));
                })
                .expect("spawn a client thread");
        }
        Workload {
            stop,
            progress,
            done,
            clients,
        }
    }

    /// Waits until `before` has passed and every client had a SET acknowledged.
    fn warm_up(&self, before: Duration, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let all = self
                .progress
                .iter()
                .all(|p| p.last_set.load(Ordering::Relaxed) >= 0);
            if all && start.elapsed() >= before {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("no SET acknowledged to every client within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients and collects their reports (see `collect`).
    fn finish(self, stuck: Duration) -> Vec<Option<ClientReport>> {
        self.stop.store(true, Ordering::Relaxed);
        self.collect(stuck)
    }

    /// The clients' reports once they are done; None for those still running when none of
    /// them has written or read anything for `stuck` (they hang: the caller kills the relayer
    /// under them).
    fn collect(&self, stuck: Duration) -> Vec<Option<ClientReport>> {
        let mut out: Vec<Option<ClientReport>> = (0..self.clients).map(|_| None).collect();
        let activity = || -> u64 {
            self.progress
                .iter()
                .map(|p| p.activity.load(Ordering::Relaxed))
                .sum()
        };
        let (mut last, mut since) = (activity(), Instant::now());
        let mut left = self.clients;
        while left > 0 {
            match self.done.recv_timeout(Duration::from_millis(100)) {
                Ok((id, r)) => {
                    out[id] = Some(r);
                    left -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now = activity();
                    if now != last {
                        (last, since) = (now, Instant::now());
                    } else if since.elapsed() >= stuck {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        out
    }
}

impl Drop for Workload {
    /// A row that fails half way stops its clients too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---- the system under test ----------------------------------------------------------------------

/// A fresh connection to 127.0.0.1:`port` for one command; Err when it cannot be reached.
fn direct(port: u16, args: &[&str]) -> Result<Reply, String> {
    let mut c = Client::connect_tcp(port).map_err(|e| format!("connect to {port}: {e}"))?;
    c.set_read_timeout(HANG);
    c.try_send_raw(&crate::encode_command(args))
        .map_err(|e| format!("{args:?} on {port}: {e}"))?;
    c.try_read_reply().map_err(|e| format!("{args:?} on {port}: {e}"))
}

/// `direct`, which must answer +OK.
fn direct_ok(port: u16, args: &[&str]) -> Result<(), String> {
    match direct(port, args)? {
        r if r.is_ok() => Ok(()),
        r => Err(format!("{args:?} on {port}: {r:?}")),
    }
}

/// The value of `field` in `INFO section` of the server on `port`; None when it cannot be read
/// (down, restarting).
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let info: String = BackendClient::connect(port)
        .ok()?
        .query(&["INFO", section])
        .ok()?;
    info_value(&info, field)
}

/// Polls `f` every 10 ms until it is true; Err naming `what` after `limit`.
fn poll(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where the backend's data is read, on typed connections (`BackendClient`): a new one for each
/// read of a single Redis, since the faults kill and restart servers under any connection kept;
/// the cluster's own pooled ones for a cluster (it drops those of a node it kills or restarts,
/// and replaces one found closed).
enum Store<'a> {
    Single(u16),
    Cluster(&'a Cluster),
}

impl Store<'_> {
    /// The value of `key`; None when it is not there or cannot be read.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Store::Single(port) => BackendClient::connect(*port).ok()?.query(&["GET", key]).ok()?,
            Store::Cluster(c) => c.try_get(key).ok()?,
        }
    }

    /// The value of every key, in order (None: not there).
    fn values(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        match self {
            Store::Single(port) => {
                let c = BackendClient::connect(*port)?;
                for chunk in keys.chunks(1000) {
                    let mut args = vec!["MGET"];
                    args.extend(chunk.iter().map(String::as_str));
                    let values: Vec<Option<Vec<u8>>> = c.query(&args)?;
                    if values.len() != chunk.len() {
                        return Err(format!(
                            "MGET of {} keys on {}: {} values",
                            chunk.len(),
                            c.server(),
                            values.len()
                        ));
                    }
                    out.extend(values);
                }
            }
            // Each key from the master that serves its slot (Cluster::try_get_all).
            Store::Cluster(c) => {
                for chunk in keys.chunks(100_000) {
                    out.extend(c.try_get_all(chunk)?);
                }
            }
        }
        Ok(out)
    }

    /// Every item of the list, read in slices (one huge reply would be parsed again and again
    /// as it arrives).
    fn list(&self) -> Result<Vec<Vec<u8>>, String> {
        const SLICE: usize = 10_000;
        let port = match self {
            Store::Single(port) => *port,
            // The master that serves the list's slot.
            Store::Cluster(c) => c.port(c.node_for_slot(crate::slot_of(LIST))),
        };
        let c = BackendClient::connect(port)?;
        let mut items = Vec::new();
        loop {
            let (from, to) = (items.len().to_string(), (items.len() + SLICE - 1).to_string());
            let got: Vec<Vec<u8>> = c.query(&["LRANGE", LIST, &from, &to])?;
            let n = got.len();
            items.extend(got);
            if n < SLICE {
                return Ok(items);
            }
        }
    }
}

/// The backend, the relayer and what the faults act on.
struct System {
    kind: Kind,
    redis: Option<Redis>,
    replica: Option<Redis>,
    link: Option<DelayLink>,
    cluster: Option<Cluster>,
    /// Single: the port of the server holding the data (the replica's after a failover).
    primary: u16,
    url: String,
    listens: [String; 2],
    retry_timeout: f64,
    drain_timeout: f64,
    relayer: Relayer,
}

impl System {
    fn start(fault: Fault, kind: Kind, s: &Sizes) -> Result<System, String> {
        let (mut redis, mut replica, mut link, mut cluster) = (None, None, None, None);
        let (url, primary) = match kind {
            Kind::Single => {
                let mut args: Vec<&str> = Vec::new();
                match fault {
                    Fault::KillLoading => args.extend([
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--enable-debug-command",
                        "yes",
                    ]),
                    Fault::ScriptKill => args.extend(["--busy-reply-threshold", "100"]),
                    _ => {}
                }
                let r = Redis::start_with(&args);
                if fault == Fault::KillLoading {
                    preload(r.port(), s.preload_keys, s.hang)?;
                }
                if fault == Fault::Failover {
                    let b = Redis::start_with(&["--replicaof", "127.0.0.1", &r.port().to_string()]);
                    poll(s.hang, "the replica to sync", || {
                        info_field(b.port(), "replication", "master_link_status").as_deref() == Some("up")
                    })?;
                    replica = Some(b);
                }
                let l = DelayLink::start(r.port(), Duration::ZERO);
                let url = l.url();
                let primary = r.port();
                redis = Some(r);
                link = Some(l);
                (url, primary)
            }
            Kind::Cluster => {
                let mut opts = ClusterOptions::default();
                if fault == Fault::KillLoading {
                    opts.node_timeout_ms = FAST_NODE_TIMEOUT_MS;
                }
                if fault == Fault::ScriptKill {
                    opts.extra_args = vec!["--busy-reply-threshold".into(), "100".into()];
                }
                let c = Cluster::start_opts(opts);
                let url = c.seeds();
                cluster = Some(c);
                (url, 0)
            }
        };
        // The whole pipeline over unix sockets, as PHP on the host writes it: their buffers are
        // small, so a relayer that stops reading the client shows (loopback TCP buffers would
        // hold a pipeline of small replies).
        let listens = if fault == Fault::WholePipeline {
            [
                "unix:$DIR/sets.sock".to_string(),
                "unix:$DIR/list.sock".to_string(),
            ]
        } else {
            [
                format!("tcp://127.0.0.1:{}", free_port()),
                format!("tcp://127.0.0.1:{}", free_port()),
            ]
        };
        let retry_timeout = if fault == Fault::UnreachablePastRetry {
            SHORT_LIMIT_S
        } else {
            s.retry_timeout
        };
        let drain_timeout = if fault == Fault::SigtermPastDrain {
            SHORT_LIMIT_S
        } else {
            s.drain_timeout
        };
        let config = relayer_config(kind, &url, &listens, retry_timeout, drain_timeout, 30);
        let relayer = Relayer::start(&config);
        let listens = [relayer.listens()[0].clone(), relayer.listens()[1].clone()];
        Ok(System {
            kind,
            redis,
            replica,
            link,
            cluster,
            primary,
            url,
            listens,
            retry_timeout,
            drain_timeout,
            relayer,
        })
    }

    fn config(&self, timeout: u32) -> String {
        relayer_config(
            self.kind,
            &self.url,
            &self.listens,
            self.retry_timeout,
            self.drain_timeout,
            timeout,
        )
    }

    fn store(&self) -> Store<'_> {
        match &self.cluster {
            Some(c) => Store::Cluster(c),
            None => Store::Single(self.primary),
        }
    }

    /// The ports of the servers that take writes: the primary, or every master.
    fn masters(&self) -> Vec<u16> {
        match &self.cluster {
            Some(c) => c.masters().into_iter().map(|m| c.port(m)).collect(),
            None => vec![self.primary],
        }
    }

    /// Every live server.
    fn nodes(&self) -> Vec<u16> {
        match &self.cluster {
            Some(c) => (0..c.nodes().len())
                .filter(|&n| c.is_alive(n))
                .map(|n| c.port(n))
                .collect(),
            None => vec![self.primary],
        }
    }

    /// Cluster: the master holding the list.
    fn list_master(&self) -> usize {
        let c = self.cluster.as_ref().expect("a cluster");
        c.node_for_slot(crate::slot_of(LIST))
    }

    /// SIGTERM, and waits for the exit; Err after `limit`.
    fn stop_relayer(&mut self, limit: Duration) -> Result<(ExitStatus, f64), String> {
        let start = Instant::now();
        self.relayer.signal(libc::SIGTERM);
        loop {
            if let Some(st) = self.relayer.try_wait() {
                return Ok((st, start.elapsed().as_secs_f64()));
            }
            if start.elapsed() > limit {
                return Err(format!("the relayer still runs {limit:?} after SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Two smart entries to the same backend: SETs (listens[0]) and RPUSHes (listens[1]).
fn relayer_config(
    kind: Kind,
    url: &str,
    listens: &[String; 2],
    retry: f64,
    drain: f64,
    timeout: u32,
) -> String {
    let common =
        format!("maxConnections = 2\ntimeout = {timeout}\nretryTimeout = {retry}\ndrainTimeout = {drain}");
    let list = format!("{common}\nasyncCommands = [\"RPUSH\"]");
    let entry = |listen: &str, extra: &str| match kind {
        Kind::Single => redis_entry_mode("smart", listen, url, extra),
        Kind::Cluster => cluster_entry("smart", listen, url, extra),
    };
    format!("{}\n{}", entry(&listens[0], &common), entry(&listens[1], &list))
}

/// `keys` keys in the dataset, rewritten into the AOF's base so a restart loads them.
fn preload(port: u16, keys: u64, limit: Duration) -> Result<(), String> {
    let mut c = Client::connect_tcp(port).map_err(|e| e.to_string())?;
    c.set_read_timeout(limit);
    let r = c.cmd(&["DEBUG", "POPULATE", &keys.to_string(), "pre"]);
    if !r.is_ok() {
        return Err(format!("DEBUG POPULATE: {r:?}"));
    }
    let r = c.cmd(&["BGREWRITEAOF"]);
    if r.is_error() {
        return Err(format!("BGREWRITEAOF: {r:?}"));
    }
    poll(limit, "the AOF rewrite", || {
        info_field(port, "persistence", "aof_rewrite_in_progress").as_deref() == Some("0")
            && info_field(port, "persistence", "aof_rewrite_scheduled").as_deref() == Some("0")
    })
}

/// What an injector reports.
struct Injected {
    start: Instant,
    end: Instant,
    /// The injector stopped the relayer (its exit status).
    relayer_exit: Option<ExitStatus>,
    /// A node to start again once the recovery is measured (cluster, kill -9).
    restart_node: Option<usize>,
    notes: Vec<String>,
}

impl Injected {
    fn at(start: Instant) -> Injected {
        Injected {
            start,
            end: start,
            relayer_exit: None,
            restart_node: None,
            notes: Vec::new(),
        }
    }
}

/// Where a busy script is run: through the relayer, or on a server directly.
enum ScriptVia {
    Relayer(String),
    Direct(u16),
}

/// Runs the busy script on a thread of its own, which returns what its client got once the
/// script is killed.
fn busy_script_on(via: ScriptVia, hang: Duration) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let c = match &via {
            ScriptVia::Relayer(listen) => Client::connect(listen),
            ScriptVia::Direct(port) => Client::connect_tcp(*port),
        };
        let mut c = match c {
            Ok(c) => c,
            Err(e) => return format!("connect: {e}"),
        };
        c.set_read_timeout(hang);
        c.try_send_raw(&crate::encode_command(&["EVAL", BUSY_SCRIPT, "0"]))
            .and_then(|_| c.try_read_reply())
            .map_or_else(|e| format!("io: {e}"), |r| format!("{r:?}"))
    })
}

fn inject(fault: Fault, sys: &mut System, s: &Sizes) -> Result<Injected, String> {
    let hang = s.hang;
    let mut inj = Injected::at(Instant::now());
    match (fault, sys.kind) {
        (Fault::KillLoading, Kind::Single) => {
            let r = sys.redis.as_mut().expect("a single redis");
            r.kill();
            std::thread::sleep(RESTART_AFTER);
            let delay = s.key_load_delay.to_string();
            if s.key_load_delay > 0 {
                r.restart_with(&["--key-load-delay", &delay]);
            } else {
                r.restart();
            }
            let restarted = Instant::now();
            let port = r.port();
            let was_loading = info_field(port, "persistence", "loading").as_deref() == Some("1");
            poll(hang, "the end of loading", || {
                info_field(port, "persistence", "loading").as_deref() == Some("0")
            })?;
            inj.end = Instant::now();
            inj.notes.push(format!(
                "restarted {:.1} s after the kill; {} for {:.1} s",
                (restarted - inj.start).as_secs_f64(),
                if was_loading {
                    "loading"
                } else {
                    "loading (not seen)"
                },
                inj.end.duration_since(restarted).as_secs_f64()
            ));
        }
        (Fault::KillLoading, Kind::Cluster) => {
            let victim = sys.list_master();
            let port = sys.cluster.as_ref().unwrap().port(victim);
            // A master's writes reach its replica asynchronously: what it confirmed and had
            // not sent yet dies with it, whatever the relayer does. Paused and replicated
            // first, the row measures the relayer.
            direct_ok(port, &["CLIENT", "PAUSE", "600000", "WRITE"])?;
            let c = sys.cluster.as_mut().unwrap();
            c.wait_replicated();
            inj.start = Instant::now();
            let new = c.wait_failover_after_kill(victim);
            inj.end = Instant::now();
            inj.restart_node = Some(victim);
            inj.notes.push(format!(
                "node {victim} (the list's master) killed; node {new} took over"
            ));
        }
        (Fault::ScriptKill, kind) => {
            let (script, busy_port) = match kind {
                Kind::Single => (
                    busy_script_on(ScriptVia::Relayer(sys.listens[0].clone()), hang),
                    sys.primary,
                ),
                Kind::Cluster => {
                    let c = sys.cluster.as_ref().unwrap();
                    let port = c.port(sys.list_master());
                    (busy_script_on(ScriptVia::Direct(port), hang), port)
                }
            };
            poll(hang, "the server to be busy", || {
                direct(busy_port, &["PING"]).is_ok_and(|r| r.is_error_starting("BUSY"))
            })?;
            std::thread::sleep(s.busy);
            let kill = match kind {
                Kind::Single => {
                    let mut c = Client::connect(&sys.listens[0]).map_err(|e| e.to_string())?;
                    c.set_read_timeout(hang);
                    c.try_send_raw(&crate::encode_command(&["SCRIPT", "KILL"]))
                        .and_then(|_| c.try_read_reply())
                        .map_err(|e| format!("SCRIPT KILL through the relayer: {e}"))?
                }
                Kind::Cluster => direct(busy_port, &["SCRIPT", "KILL"])?,
            };
            inj.end = Instant::now();
            if !kill.is_ok() {
                return Err(format!("SCRIPT KILL answered {kill:?}"));
            }
            let ended = script.join().unwrap_or_default();
            inj.notes.push(format!("the script's client got {ended}"));
        }
        (Fault::ClientKill, _) => {
            let mut killed = 0;
            for k in 0..s.client_kills {
                if k > 0 {
                    std::thread::sleep(s.kill_every);
                }
                for port in sys.nodes() {
                    killed += direct(port, &["CLIENT", "KILL", "TYPE", "normal"])?
                        .as_int()
                        .unwrap_or(0);
                }
            }
            inj.end = Instant::now();
            inj.notes.push(format!("{killed} connections killed"));
        }
        (Fault::ClientPause, _) => {
            let ms = s.pause.as_millis().to_string();
            for port in sys.masters() {
                direct_ok(port, &["CLIENT", "PAUSE", &ms, "WRITE"])?;
            }
            std::thread::sleep(s.pause);
            inj.end = Instant::now();
        }
        (Fault::LinkCut, Kind::Single) => {
            let link = sys.link.as_ref().unwrap();
            link.set_target(free_port());
            let cut = link.cut_all();
            std::thread::sleep(s.link_down);
            link.set_target(sys.primary);
            inj.end = Instant::now();
            inj.notes.push(format!("{cut} connections reset"));
        }
        (Fault::LinkStall, Kind::Single) => {
            let link = sys.link.as_ref().unwrap();
            link.hold(true);
            std::thread::sleep(s.link_down);
            link.hold(false);
            inj.end = Instant::now();
        }
        (Fault::Failover, Kind::Single) => {
            let (a, b) = (sys.primary, sys.replica.as_ref().unwrap().port());
            direct_ok(a, &["FAILOVER", "TO", "127.0.0.1", &b.to_string()])?;
            poll(hang, "the old primary to be a replica", || {
                info_field(a, "replication", "role").as_deref() == Some("slave")
                    && info_field(b, "replication", "role").as_deref() == Some("master")
            })?;
            std::thread::sleep(NAME_FOLLOWS_AFTER);
            sys.link.as_ref().unwrap().set_target(b);
            sys.primary = b;
            inj.end = Instant::now();
        }
        (Fault::Oom, _) => {
            let masters = sys.masters();
            for &port in &masters {
                direct_ok(port, &["CONFIG", "SET", "maxmemory", "1"])?;
            }
            std::thread::sleep(s.oom);
            for &port in &masters {
                direct_ok(port, &["CONFIG", "SET", "maxmemory", "0"])?;
            }
            inj.end = Instant::now();
        }
        (Fault::Sighup, _) => {
            let ms = SIGHUP_BACKLOG.as_millis().to_string();
            for port in sys.masters() {
                direct_ok(port, &["CLIENT", "PAUSE", &ms, "WRITE"])?;
            }
            let before = sys.relayer.log().matches(RELOADED).count();
            let config = sys.config(31);
            sys.relayer.rewrite_config(&config);
            sys.relayer.signal(libc::SIGHUP);
            poll(hang, "the reload", || {
                sys.relayer.log().matches(RELOADED).count() > before
            })?;
            let paused_until = inj.start + SIGHUP_BACKLOG;
            std::thread::sleep(paused_until.saturating_duration_since(Instant::now()));
            inj.end = Instant::now();
        }
        (Fault::Sigterm, _) => {
            let ms = s.pause.as_millis().to_string();
            for port in sys.masters() {
                direct_ok(port, &["CLIENT", "PAUSE", &ms, "WRITE"])?;
            }
            std::thread::sleep(s.pause / 4);
            let (st, drain) = sys.stop_relayer(Duration::from_secs_f64(sys.drain_timeout) + hang)?;
            inj.end = Instant::now();
            inj.relayer_exit = Some(st);
            inj.notes.push(format!("exited {drain:.1} s after SIGTERM"));
        }
        (Fault::SigtermPastDrain, _) => {
            let masters = sys.masters();
            for &port in &masters {
                direct_ok(port, &["CLIENT", "PAUSE", "600000", "WRITE"])?;
            }
            std::thread::sleep(Duration::from_millis(300));
            let (st, drain) = sys.stop_relayer(Duration::from_secs_f64(sys.drain_timeout) + hang)?;
            inj.relayer_exit = Some(st);
            forget_paused_writes(sys, &masters, hang)?;
            inj.end = Instant::now();
            inj.notes.push(format!("exited {drain:.1} s after SIGTERM"));
        }
        (Fault::UnreachablePastRetry, Kind::Single) => {
            let port = sys.primary;
            direct_ok(port, &["CLIENT", "PAUSE", "600000", "WRITE"])?;
            std::thread::sleep(Duration::from_millis(200));
            let link = sys.link.as_ref().unwrap();
            link.set_target(free_port());
            link.cut_all();
            forget_paused_writes(sys, &[port], hang)?;
            let link = sys.link.as_ref().unwrap();
            let limit = Duration::from_secs_f64(sys.retry_timeout);
            std::thread::sleep(limit + Duration::from_secs(1));
            poll(hang, "writes given up at retryTimeout", || {
                sys.relayer.log().contains("within retryTimeout")
            })?;
            link.set_target(port);
            inj.end = Instant::now();
        }
        (Fault::WholePipeline, _) => {}
        (f, k) => return Err(format!("{} does not apply to a {} backend", f.name(), k.name())),
    }
    Ok(inj)
}

/// The connections that held paused writes are gone (the relayer exited, or the link was cut):
/// closes what is left of them on the servers, so that their unexecuted writes are dropped, and
/// lets the servers go on.
fn forget_paused_writes(sys: &System, ports: &[u16], hang: Duration) -> Result<(), String> {
    if let Some(link) = &sys.link {
        poll(hang, "the link's connections to close", || {
            link.open_connections() == 0
        })?;
    }
    for &port in ports {
        direct(port, &["CLIENT", "KILL", "TYPE", "normal"])?;
        direct_ok(port, &["CLIENT", "UNPAUSE"])?;
    }
    Ok(())
}

/// Seconds from `end` until every client's first SET acknowledged after it is on the backend
/// (writes of a client reach the backend in order, so the backlog held during the fault is
/// through by then); None if that does not happen within `limit`.
fn measure_recovery(w: &Workload, store: &Store, end: Instant, limit: Duration) -> Option<f64> {
    let marks: Vec<u64> = w
        .progress
        .iter()
        .map(|p| p.sent.load(Ordering::Relaxed))
        .collect();
    let mut done = vec![false; marks.len()];
    let deadline = Instant::now() + limit;
    loop {
        for (c, p) in w.progress.iter().enumerate() {
            if done[c] {
                continue;
            }
            let last = p.last_set.load(Ordering::Relaxed);
            if last >= marks[c] as i64 {
                let want = last.to_string().into_bytes();
                if store.get(&set_key(c, last as u64)) == Some(want) {
                    done[c] = true;
                }
            }
        }
        if done.iter().all(|&d| d) {
            return Some(end.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Compares the backend with what every client was acknowledged.
fn verify(store: &Store, reports: &[Option<ClientReport>], row: &mut Row) -> Result<(), String> {
    // SETs: every key written, acknowledged or not (an error reply may hide a write that ran).
    for (id, r) in reports.iter().enumerate() {
        let Some(r) = r else { continue };
        let keys: Vec<String> = (0..r.set_acked.len() as u64).map(|j| set_key(id, j)).collect();
        let values = store.values(&keys)?;
        for (j, v) in values.iter().enumerate() {
            let acked = r.set_acked[j];
            let right = v.as_deref() == Some(j.to_string().as_bytes());
            match (acked, v) {
                (true, _) if right => row.set.found += 1,
                (true, None) => {
                    row.set.missing += 1;
                    if row.set.examples.len() < 5 {
                        row.set.examples.push(keys[j].clone());
                    }
                }
                (true, _) => row.set.wrong += 1,
                (false, None) => {}
                (false, _) => row.set.unacknowledged_found += 1,
            }
            if acked {
                row.set.acknowledged += 1;
            }
        }
    }
    // The list: each client's items in list order.
    let items = store.list()?;
    let mut seqs: Vec<Vec<u64>> = vec![Vec::new(); reports.len()];
    for item in &items {
        let parsed = std::str::from_utf8(item).ok().and_then(|s| {
            let (id, i) = s.split_once(':')?;
            Some((id.parse::<usize>().ok()?, i.parse::<u64>().ok()?))
        });
        match parsed {
            Some((id, i)) if id < seqs.len() => seqs[id].push(i),
            _ => row.list.foreign += 1,
        }
    }
    for (id, r) in reports.iter().enumerate() {
        let Some(r) = r else { continue };
        let mut seen = vec![false; r.list_acked.len()];
        let mut max: Option<u64> = None;
        for &i in &seqs[id] {
            if max.is_some_and(|m| i < m) {
                row.list.order_violations += 1;
            }
            max = max.max(Some(i));
            match seen.get_mut(i as usize) {
                Some(s) if *s => row.list.duplicates += 1,
                Some(s) => *s = true,
                None => row.list.foreign += 1,
            }
        }
        for (j, &acked) in r.list_acked.iter().enumerate() {
            match (acked, seen[j]) {
                (true, true) => row.list.found += 1,
                (true, false) => {
                    row.list.missing += 1;
                    if row.list.examples.len() < 5 {
                        row.list.examples.push(list_item(id, j as u64));
                    }
                }
                (false, true) => row.list.unacknowledged_found += 1,
                (false, false) => {}
            }
            if acked {
                row.list.acknowledged += 1;
            }
        }
    }
    Ok(())
}

/// Log lines worth showing next to a failed invariant: what was counted, refused, lost.
fn log_excerpt(log: &str) -> Vec<String> {
    const WORTH: [&str; 8] = [
        "not delivered",
        "unknown outcome",
        "retryTimeout",
        "writes lost",
        "refused by the backend",
        "panicked",
        "stopped",
        "already applied",
    ];
    log.lines()
        .filter(|l| WORTH.iter().any(|w| l.contains(w)))
        .take(20)
        .map(str::to_string)
        .collect()
}

/// What the relayer's log shows it went through: refusals that may pass (by code), connections
/// lost, failed connects; empty when none.
fn relayer_saw(log: &str) -> String {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines() {
        let what = if line.contains("refused a command with an error that may pass") {
            let code = line
                .split(", ")
                .find_map(|f| f.strip_prefix("error: "))
                .and_then(|e| e.split_whitespace().next())
                .unwrap_or("?");
            format!("{code} refusals")
        } else if line.contains("backend connection lost") {
            "connections lost".into()
        } else if line.contains("cannot connect to backend") {
            "failed connects".into()
        } else {
            continue;
        };
        *seen.entry(what).or_default() += 1;
    }
    seen.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one row: a fresh backend and relayer, the clients, the fault, the comparison.
pub fn run_row(fault: Fault, kind: Kind, s: &Sizes) -> Row {
    let wall = Instant::now();
    let mut row = Row::new(fault, kind, s);
    if let Err(e) = run_row_into(fault, kind, s, &mut row) {
        row.failure = Some(e);
    }
    row.wall_secs = wall.elapsed().as_secs_f64();
    row
}

fn run_row_into(fault: Fault, kind: Kind, s: &Sizes, row: &mut Row) -> Result<(), String> {
    if !fault.applies(kind) {
        return Err(format!(
            "{} does not apply to a {} backend",
            fault.name(),
            kind.name()
        ));
    }
    let mut sys = System::start(fault, kind, s)?;
    let whole = fault == Fault::WholePipeline;
    let (mode, clients) = if whole {
        (Mode::WholePipeline(s.pipeline_commands), s.pipeline_clients)
    } else {
        (Mode::Continuous, s.clients)
    };
    let workload = Workload::start(&sys.listens, mode, clients, s);
    // Clients that make no progress for this long hang: the relayer is then killed under them.
    let finish_limit = s.hang;
    let reports = if whole {
        let start = Instant::now();
        let reports = workload.collect(finish_limit);
        if reports
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| r.timed_out.is_none()))
        {
            row.notes.push(format!(
                "the clients were done in {:.1} s",
                start.elapsed().as_secs_f64()
            ));
        }
        reports
    } else {
        workload.warm_up(s.before, s.hang)?;
        let inj = inject(fault, &mut sys, s)?;
        row.fault_secs = inj.end.duration_since(inj.start).as_secs_f64();
        row.notes.extend(inj.notes);
        row.relayer_exit = inj.relayer_exit;
        if inj.relayer_exit.is_none() {
            row.recover_secs = measure_recovery(&workload, &sys.store(), inj.end, s.hang);
            if row.recover_secs.is_none() {
                row.hang = Some(format!(
                    "the writes acknowledged after the fault were not on the backend within {:?}",
                    s.hang
                ));
            }
        }
        if let Some(node) = inj.restart_node {
            sys.cluster.as_mut().unwrap().restart(node);
        }
        std::thread::sleep(s.after);
        workload.finish(finish_limit)
    };
    let unfinished = reports.iter().filter(|r| r.is_none()).count();
    if unfinished > 0 {
        row.hang = Some(format!(
            "{unfinished} of {} clients stuck: nothing written or read for {finish_limit:?}",
            reports.len()
        ));
    }
    for r in reports.iter().flatten() {
        for (k, n) in &r.errors {
            *row.client_errors.entry(k.clone()).or_default() += n;
        }
        if let Some(t) = &r.timed_out {
            row.hang.get_or_insert_with(|| format!("a client: {t}"));
        }
    }
    if row.relayer_exit.is_none() {
        match sys.stop_relayer(Duration::from_secs_f64(sys.drain_timeout) + s.hang) {
            Ok((st, _)) => row.relayer_exit = Some(st),
            Err(e) => {
                row.hang.get_or_insert(e);
            }
        }
    }
    let log = sys.relayer.log();
    let counts = entry_counts(&log);
    row.set.counted = counts.get(&sys.listens[0]).cloned().unwrap_or_default();
    row.list.counted = counts.get(&sys.listens[1]).cloned().unwrap_or_default();
    row.summary = summary_counts(&log);
    row.log_excerpt = log_excerpt(&log);
    let saw = relayer_saw(&log);
    if !saw.is_empty() {
        // Rate-limited lines: evidence of what happened, not counts.
        row.notes.push(format!("the relayer logged {saw}"));
    }
    verify(&sys.store(), &reports, row)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read-back of a single Redis: values in order (MGET in chunks of 1,000), the list in
    /// slices of 10,000; and errors, not panics, once the server is gone (the driver goes on
    /// with the next row).
    #[test]
    fn the_read_back_reads_what_the_server_holds_and_errs_once_it_is_down() {
        let mut redis = Redis::start();
        let mut c = redis.client();
        let keys: Vec<String> = (0..2500).map(|j| set_key(0, j)).collect();
        let mut mset = vec!["MSET".to_string()];
        for (j, k) in keys.iter().enumerate().filter(|(j, _)| j % 7 != 3) {
            mset.extend([k.clone(), j.to_string()]);
        }
        assert!(c.cmd(&mset).is_ok());
        let mut rpush = vec!["RPUSH".to_string(), LIST.to_string()];
        rpush.extend((0..10_005).map(|i| list_item(1, i)));
        assert_eq!(c.cmd(&rpush), Reply::int(10_005));

        let store = Store::Single(redis.port());
        let values = store.values(&keys).unwrap();
        assert_eq!(values.len(), keys.len());
        for (j, v) in values.iter().enumerate() {
            let want = (j % 7 != 3).then(|| j.to_string().into_bytes());
            assert_eq!(*v, want, "{}", keys[j]);
        }
        let items = store.list().unwrap();
        assert_eq!(items.len(), 10_005);
        assert!(items
            .iter()
            .enumerate()
            .all(|(i, item)| *item == list_item(1, i as u64).into_bytes()));
        assert_eq!(store.get(&keys[1]), Some(b"1".to_vec()));
        assert_eq!(store.get(&keys[3]), None);
        assert_eq!(
            info_field(redis.port(), "keyspace", "db0").map(|v| v.starts_with("keys=")),
            Some(true)
        );

        redis.kill();
        let e = store.values(&keys).unwrap_err();
        assert!(e.starts_with(&format!("connect on {}: ", redis.addr())), "{e}");
        assert!(store.list().is_err());
        assert_eq!(store.get(&keys[1]), None);
        assert_eq!(info_field(redis.port(), "keyspace", "db0"), None);
    }

    #[test]
    fn counts_per_entry_and_in_total_from_the_log() {
        let log = "\
Dec 06 18:12:54.727 INFO stopping: draining what was acknowledged, signal: SIGTERM
Dec 06 18:12:50.100 INFO replaced backend: every acknowledged write delivered, delivered: 7, listen: tcp://127.0.0.1:2, worker: 0
Dec 06 18:12:54.727 INFO stop: every acknowledged write delivered, delivered: 2, listen: tcp://127.0.0.1:2, worker: 0
Dec 06 18:12:54.728 ERRO stop: acknowledged writes not delivered, lost: 3, expired_by_code: LOADING=2 unavailable=1, expired: 3, unknown: 4, refused_by_code: WRONGTYPE=1, refused: 1, delivered: 1, listen: tcp://127.0.0.1:1, worker: 0
Dec 06 18:12:54.728 ERRO stopped with acknowledged writes not delivered, dead_letter: 0, lost: 3, expired_by_code: LOADING=2 unavailable=1, expired: 3, unknown: 4, refused_by_code: WRONGTYPE=1, refused: 1, delivered: 10
";
        let counts = entry_counts(log);
        let one = &counts["tcp://127.0.0.1:1"];
        assert_eq!(one.delivered, 1);
        assert_eq!(one.unknown, 4);
        assert_eq!(one.lost, 3);
        assert_eq!(one.not_delivered(), 1 + 3 + 3);
        assert_eq!(
            one.reasons(),
            "refused WRONGTYPE=1, expired LOADING=2 unavailable=1, lost 3"
        );
        assert_eq!(
            counts["tcp://127.0.0.1:2"].delivered, 9,
            "the reload's line counts too"
        );
        let mut both = one.clone();
        both.add(&counts["tcp://127.0.0.1:2"]);
        assert_eq!(summary_counts(log), Some(both));
        assert_eq!(summary_counts("nothing"), None);
    }

    #[test]
    fn error_kinds_leave_addresses_out() {
        let k = |t: &str| reply_kind(&Reply::error(t));
        assert_eq!(
            k("ERR relayer: shutting down, command not sent"),
            "ERR relayer: shutting down"
        );
        assert_eq!(
            k("ERR relayer: backend tcp://127.0.0.1:6379 unavailable (connection refused)"),
            "ERR relayer: backend <address> unavailable"
        );
        assert_eq!(k("OOM command not allowed"), "OOM");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
    }
}
