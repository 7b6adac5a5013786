//! The fault matrix at full size (`integration/bench/faults.sh` runs it): every row of
//! `integration::faults` for a single Redis and for a Redis Cluster, each printed as it finishes,
//! then `RELIABILITY.md` at the repository root with the table, the machine, the date and the
//! commit. Exits 1 when a row breaks an invariant (the report is written first).
//!
//! The relayer binary is `SMART_RELAYER_BIN`, else `target/release/smart-relayer`.

use integration::faults::{markdown_table, run_row, secs, Fault, Kind, Row, Sizes};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const USAGE: &str = "\
usage: faults [options]
  --quick                the tests' sizes (a smoke run)
  --rows NAME,...        rows to run (default: all): kill-loading script-kill client-kill
                         client-pause link-cut link-stall failover oom sighup sigterm
                         whole-pipeline sigterm-past-drain unreachable-past-retry
  --backends K,...       single, cluster (default: both)
  --clients N            writing clients (default 4)
  --batch N              SETs (and RPUSHes) per pipelined batch (default 50)
  --preload N            keys loaded after the kill -9 (default 1000000)
  --key-load-delay N     redis-server --key-load-delay at that restart (default 0)
  --pipeline N           commands of each kind a whole-pipeline client writes (default 300000)
  --pipeline-clients N   whole-pipeline clients (default 4)
  --before S --after S   seconds of writing before the fault and after the recovery
  --busy S --pause S --link-down S --oom S   fault lengths in seconds (3, 2, 5, 3)
  --kills N              CLIENT KILL rounds (default 10)
  --retry-timeout S --drain-timeout S       the relayer's (default 60, 10)
  --hang S               a step longer than this is a hang (default 120)
  --out PATH             the report (default RELIABILITY.md at the repository root; - for none)
";

struct Args {
    sizes: Sizes,
    rows: Vec<Fault>,
    kinds: Vec<Kind>,
    out: Option<PathBuf>,
}

fn fail(msg: &str) -> ! {
    eprintln!("faults: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn parse_args(argv: &[String]) -> Args {
    let quick = argv.iter().any(|a| a == "--quick");
    let mut sizes = if quick { Sizes::test() } else { Sizes::full() };
    let mut rows = Fault::ALL.to_vec();
    let mut kinds = vec![Kind::Single, Kind::Cluster];
    let mut out = Some(integration::workspace_dir().join("RELIABILITY.md"));
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--quick" {
            continue;
        }
        if flag == "-h" || flag == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let num = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| fail(&format!("{flag}: not a number: {value}")))
        };
        let secs = || -> Duration {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| fail(&format!("{flag}: not a number of seconds: {value}")))
        };
        match flag.as_str() {
            "--rows" => {
                rows = value
                    .split(',')
                    .map(|n| Fault::parse(n.trim()).unwrap_or_else(|| fail(&format!("no row named {n}"))))
                    .collect()
            }
            "--backends" => {
                kinds = value
                    .split(',')
                    .map(|k| match k.trim() {
                        "single" => Kind::Single,
                        "cluster" => Kind::Cluster,
                        other => fail(&format!("no backend named {other}")),
                    })
                    .collect()
            }
            "--clients" => sizes.clients = num() as usize,
            "--batch" => sizes.batch = num() as usize,
            "--preload" => sizes.preload_keys = num(),
            "--key-load-delay" => sizes.key_load_delay = num() as u32,
            "--pipeline" => sizes.pipeline_commands = num(),
            "--pipeline-clients" => sizes.pipeline_clients = num() as usize,
            "--kills" => sizes.client_kills = num() as u32,
            "--before" => sizes.before = secs(),
            "--after" => sizes.after = secs(),
            "--busy" => sizes.busy = secs(),
            "--pause" => sizes.pause = secs(),
            "--link-down" => sizes.link_down = secs(),
            "--oom" => sizes.oom = secs(),
            "--retry-timeout" => sizes.retry_timeout = secs().as_secs_f64(),
            "--drain-timeout" => sizes.drain_timeout = secs().as_secs_f64(),
            "--hang" => sizes.hang = secs(),
            "--out" => out = (value != "-").then(|| PathBuf::from(value)),
            other => fail(&format!("unknown option {other}")),
        }
    }
    if sizes.clients == 0 || sizes.batch == 0 || sizes.pipeline_clients == 0 {
        fail("--clients, --batch and --pipeline-clients must be at least 1");
    }
    Args {
        sizes,
        rows,
        kinds,
        out,
    }
}

/// A command's first line of output, or `unknown`.
fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    format!(
        "{cpus} CPUs ({model}), {mem_gib} memory, Linux {}, {}",
        output("uname", &["-r"]),
        output("redis-server", &["--version"])
    )
}

fn commit() -> String {
    let root = integration::workspace_dir();
    let root = root.to_str().unwrap_or(".");
    let head = output("git", &["-C", root, "rev-parse", "HEAD"]);
    let dirty = Command::new("git")
        .args([
            "-C",
            root,
            "diff",
            "--quiet",
            "HEAD",
            "--",
            ".",
            ":(exclude)RELIABILITY.md",
        ])
        .status()
        .is_ok_and(|s| !s.success());
    if dirty {
        format!("{head}, with uncommitted changes")
    } else {
        head
    }
}

fn report(args: &Args, argv: &[String], rows: &[Row], relayer: &str) -> String {
    let s = &args.sizes;
    let command = std::env::var("FAULTS_COMMAND").unwrap_or_else(|_| {
        let mut c = vec!["faults".to_string()];
        c.extend(argv.iter().cloned());
        c.join(" ")
    });
    let mut r = String::new();
    r.push_str("# Reliability: the fault matrix\n\n");
    r.push_str(
        "Evidence that \"acknowledged means delivered\": smart clients write numbered values through \
         the relayer while a fault is injected; afterwards the backend is read and compared with what \
         every client was acknowledged and with what the relayer counted as not delivered. Written by \
         `integration/bench/faults.sh` (the `faults` binary of the integration crate, on \
         `integration::faults`); `integration/tests/all/fault_matrix.rs` runs the same rows, short, and \
         asserts the same invariants.\n\n",
    );
    r.push_str(&format!("- Machine: {}\n", machine()));
    r.push_str(&format!(
        "- Date: {}\n",
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    ));
    r.push_str(&format!("- Commit: {}\n", commit()));
    r.push_str(&format!("- Relayer: `{relayer}`\n"));
    r.push_str(&format!("- Command: `{command}`\n"));
    r.push_str(&format!(
        "- Sizes: {} clients, each pipelining batches of {} SETs and {} RPUSHes every {} ms; \
         {} of writing before each fault and {} after its recovery; the relayer's \
         `retryTimeout` {} s, `drainTimeout` {} s, `maxConnections = 2` per entry\n\n",
        s.clients,
        s.batch,
        s.batch,
        s.interval.as_millis(),
        secs(s.before),
        secs(s.after),
        s.retry_timeout,
        s.drain_timeout
    ));
    r.push_str("## Results\n\n");
    r.push_str(&markdown_table(rows));
    r.push('\n');
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.violations().is_empty()).collect();
    if failed.is_empty() {
        r.push_str("Every row holds every invariant.\n\n");
    } else {
        r.push_str("### Invariants that failed\n\n");
        for row in failed {
            r.push_str(&format!("- {} / {}:\n", row.kind.name(), row.title));
            for v in row.violations() {
                r.push_str(&format!("  - {v}\n"));
            }
            for l in &row.log_excerpt {
                r.push_str(&format!("  - relayer log: `{l}`\n"));
            }
        }
        r.push('\n');
    }
    r.push_str(WHAT_IT_MEANS);
    r.push_str("\n## Notes of this run\n\n");
    for row in rows {
        let mut notes = row.notes.clone();
        if row.list.counted.unknown > 0 {
            notes.push(format!(
                "of the {} RPUSHes of unknown outcome, {} ran",
                row.list.counted.unknown,
                (row.list.counted.unknown + row.list.counted.not_delivered())
                    .saturating_sub(row.list.missing)
            ));
        }
        let found_anyway = row.set.unacknowledged_found + row.list.unacknowledged_found;
        if found_anyway > 0 {
            notes.push(format!(
                "{found_anyway} writes answered with an error were on the backend all the same"
            ));
        }
        notes.push(format!("row run in {:.0} s", row.wall_secs));
        r.push_str(&format!(
            "- {} / {}: {}\n",
            row.kind.name(),
            row.fault.name(),
            notes.join("; ")
        ));
    }
    r
}

const WHAT_IT_MEANS: &str = "\
## How to read it

Each row starts a fresh backend and a fresh relayer (the binary above) with two smart entries to
it: one for the SETs, one with `asyncCommands = [\"RPUSH\"]` for the list (the relayer counts per
entry, not per command, and the two kinds differ: a SET is safe to send twice, an RPUSH is not).
Every client has a connection to each entry and pipelines `SET fm:<client>:<i> <i>` and
`RPUSH fm:list <client>:<i>`. A single Redis is reached through a TCP forwarder that stands for
the name the relayer knows (it can be cut, stalled, or made to lead elsewhere).

Columns:

- **fault s**: from the start of the fault to its end, the moment the backend takes writes again:
  kill -9: the restarted server has loaded its dataset (the restart comes 0.3 s after the kill);
  cluster kill: the replica serves the slots; script: SCRIPT KILL answered; CLIENT KILL: the last
  round; pause, OOM, link: lifted; failover: the name leads to the new primary (0.5 s after the
  roles swapped); SIGHUP: the reload is logged and the backlog's pause is over; SIGTERM: the relayer
  exited.
- **acknowledged SET / RPUSH**: writes whose reply (`+OK`, `:1`) the clients received.
- **found**: acknowledged and on the backend afterwards (a SET with the value written).
- **missing**: acknowledged and not on the backend.
- **counted not delivered**: what the relayer's log says of the entry (its lines at the stop and
  at a reload): refused (by error code), expired at `retryTimeout` (by the last refusal's code,
  `unavailable` when the backend could not be reached), lost at `drainTimeout`.
- **unknown SET / RPUSH**: writes the relayer counted of unknown outcome: written, and no reply
  came. An RPUSH is not safe to send twice, so after a lost connection it is not sent again; it
  may or may not have run (the notes say how many did). A SET is sent again after a lost
  connection, so it is of unknown outcome only when the stop's drain ran out of time while it
  was written and not answered.
- **order violations**: list items after a larger item of the same client.
- **duplicates**: list items found more than once.
- **client errors**: error replies and connection errors the clients saw; those writes were not
  acknowledged. After SIGTERM every command gets `ERR relayer: shutting down`, then the connection
  closes, and the clients go on trying until the row ends.
- **recover s**: from the end of the fault until, for every client, its newest SET acknowledged
  after that end is on the backend. A client's writes reach the backend in order, so by then the
  backlog the fault held has drained. `–` where the relayer was stopped or no fault is injected.

Invariants (checked for every row, here and in `integration/tests/all/fault_matrix.rs`):

1. SET: counted not delivered <= missing <= counted not delivered + unknown, the unknown ones only
   at a time limit (written, not answered when the drain gave up), no key with another value.
2. RPUSH: counted not delivered <= missing <= counted not delivered + unknown.
3. No duplicate and no order violation in the list.
4. Counted not delivered = 0 where the fault is shorter than `retryTimeout` (and the drain shorter
   than `drainTimeout`): every row but the last ones of each backend.
5. The stop summary is the sum of the entries' lines; the relayer exits 0; nothing hangs (a
   reply, or a step, longer than the hang limit).

The two rows that outlast a limit on purpose (SIGTERM past `drainTimeout`, the backend
unreachable past `retryTimeout`, both set to 1 s there) must count writes, and show that what is
counted is exactly what is missing. They pause the backend's writes before the connections
holding them are closed, so that what the relayer could not confirm surely did not run: a write
that was not confirmed may otherwise have run, and missing would then be below counted.

The cluster's kill -9 row pauses the master's writes and waits until its replica has all of them
before the SIGKILL: a master confirms writes before its replica has them (replication is
asynchronous), and those die with it whatever a client does; the row measures the relayer, not
that. The master killed is the one holding the list, so RPUSHes in flight are cut off.

The busy script runs with `busy-reply-threshold 100` (other clients get BUSY after 100 ms instead
of 5 s): on a single Redis it is sent through the relayer by a client of its own and killed by
SCRIPT KILL through the relayer; a cluster relayer refuses SCRIPT KILL (it would reach one node),
so there the script runs on the list's master and is killed there. The whole-pipeline rows write
over unix sockets, as PHP on the host does: their buffers are small, so a relayer that stops
reading a client that does not read shows as a hang.
";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&argv);
    if std::env::var_os("SMART_RELAYER_BIN").is_none_or(|v| v.is_empty()) {
        let release = integration::target_dir().join("release").join("smart-relayer");
        std::env::set_var("SMART_RELAYER_BIN", &release);
    }
    let relayer = integration::relayer_bin();
    // The relayer runs in a directory of its own: a relative path would not find it there.
    let relayer = std::fs::canonicalize(&relayer).unwrap_or(relayer);
    std::env::set_var("SMART_RELAYER_BIN", &relayer);
    let relayer_shown = relayer
        .strip_prefix(integration::workspace_dir())
        .unwrap_or(&relayer)
        .display()
        .to_string();
    eprintln!("faults: relayer {}", relayer.display());
    let mut rows = Vec::new();
    for &kind in &args.kinds {
        for &fault in &args.rows {
            if !fault.applies(kind) {
                continue;
            }
            eprintln!("faults: {} / {} ...", kind.name(), fault.name());
            let sizes = args.sizes.clone();
            let row = std::panic::catch_unwind(|| run_row(fault, kind, &sizes)).unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Row::failed(fault, kind, &sizes, msg)
            });
            println!("{}", row.summary_line());
            for n in &row.notes {
                println!("    {n}");
            }
            rows.push(row);
        }
    }
    if let Some(out) = &args.out {
        let text = report(&args, &argv, &rows, &relayer_shown);
        std::fs::write(out, text).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
        eprintln!("faults: wrote {}", out.display());
    }
    let failed = rows.iter().filter(|r| !r.violations().is_empty()).count();
    if failed > 0 {
        eprintln!("faults: {failed} of {} rows break an invariant", rows.len());
        std::process::exit(1);
    }
}
