//! The configuration file: TOML, read with the `config` crate, in the original daemon's format
//! (keys matched case-insensitively, snake_case accepted too) plus our own keys.
//!
//! Loading is all-or-nothing: every entry is checked before anything is bound, and an error
//! names the file, the entry (by its `listen`) and the key.
//!
//! The global keys and what every `[[relayer]]` entry has (its listener) are read here; the
//! keys of each protocol by the module named after it, into the variant of `Kind` it owns.
//! Values only: the state the running copies of an entry share (their count of dedicated
//! connections) is the worker's (`worker::Shared`).

pub mod cluster;
mod not_relayed;
mod raw;
pub mod redis;
mod stream;
mod tls;

pub use not_relayed::NotRelayed;
pub use relayer_actors::stream::config::StreamConfig;

use cluster::Cluster;
use config::{File, FileFormat, Value};
use raw::{normalize, Entry, Int, RawGlobal, RawRelayer, Table};
use redis::Redis;
use relayer_actors::endpoint::ListenAddr;
use relayer_actors::listener::UnixAccess;
use relayer_actors::resp::request::Limits;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The smallest `queryBufferLimit` (Redis' minimum for client-query-buffer-limit).
const QUERY_BUFFER_MIN: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Threads running the relayers (read at start only).
    pub workers: usize,
    /// The entries to run, in file order.
    pub relayers: Vec<Relayer>,
    /// The entries of protocols not relayed by this version: reported, not started.
    pub not_relayed: Vec<NotRelayed>,
    /// Things worth a warning that do not stop loading (unknown keys and the like).
    pub warnings: Vec<String>,
}

/// One `[[relayer]]` entry to run: its listener, and what it relays to.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayer {
    pub listen: ListenAddr,
    /// The `listen` string as written: the relayer's identity.
    pub listen_key: String,
    pub unix_access: UnixAccess,
    pub max_clients: usize,
    /// How long a drain (at stop, or when a reload removes or replaces the backend) may take.
    pub drain_timeout: Duration,
    pub kind: Kind,
}

/// What an entry relays to, by `protocol`, each with its own keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `redis` (or `redis2`): one Redis at `url`.
    Redis(Redis),
    /// `redis-cluster`: a Redis Cluster, reached through the seed nodes of `url`.
    Cluster(Cluster),
    /// `firehose`, `kinesis` or `sqs`: lines batched into the service's calls.
    Stream(StreamConfig),
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let err = |m: String| ConfigError(m);
    if !path.is_file() {
        return Err(err(format!(
            "{file}: cannot read the configuration file (missing or not a file)"
        )));
    }
    let built = config::Config::builder()
        .add_source(File::from(path).format(FileFormat::Toml))
        .build()
        .map_err(|e| err(format!("{file}: {}", strip_origin(&e.to_string()))))?;
    let root: HashMap<String, Value> = built.try_deserialize().map_err(|e| err(format!("{file}: {e}")))?;
    let mut root = Table::from(root, &file).map_err(err)?;
    let entries = match root.values.remove("relayer") {
        None => vec![],
        Some(v) => v.into_array().map_err(|_| {
            err(format!(
                "{file}: key 'relayer' must be an array of tables: write each entry as [[relayer]]"
            ))
        })?,
    };
    root.spelled.remove("relayer");
    let mut warnings = vec![];
    let global: RawGlobal = root.parse(&file, &mut warnings).map_err(err)?;
    let _ = global.comment;
    let unused: Vec<&str> = [
        (global.gogc.is_some(), "gogc"),
        (global.buffer_pool_size.is_some(), "bufferpoolsize"),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .map(|(_, k)| root.spelling(k))
    .collect();
    if !unused.is_empty() {
        warnings.push(format!(
            "{file}: keys not used by this version: {}",
            unused.join(", ")
        ));
    }
    let log_format = match global
        .log_format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(err(format!(
                "{file}: key '{}': '{other}' is not a log format: use \"text\" or \"json\"",
                root.spelling("logformat")
            )))
        }
    };
    let defaults = Limits::default();
    let limit = |v: Option<Int>, d: usize, key: &str| -> Result<usize, ConfigError> {
        match v.map(|i| i.0) {
            None => Ok(d),
            Some(n) if n < 1 => Err(err(format!(
                "{file}: key '{}': must be at least 1",
                root.spelling(key)
            ))),
            Some(n) => Ok(n as usize),
        }
    };
    let limits = Limits {
        max_bulk_len: limit(global.max_bulk_length, defaults.max_bulk_len, "maxbulklength")?,
        max_args: limit(global.max_arguments, defaults.max_args, "maxarguments")?,
        max_inline_len: limit(
            global.max_inline_length,
            defaults.max_inline_len,
            "maxinlinelength",
        )?,
        query_buffer_limit: match global.query_buffer_limit.map(|i| i.0) {
            None => defaults.query_buffer_limit,
            // Redis' own minimum for client-query-buffer-limit: less would close clients that
            // pipeline only a little more than a paused session takes.
            Some(n) if n >= QUERY_BUFFER_MIN as i64 => n as usize,
            Some(n) => {
                return Err(err(format!(
                    "{file}: key '{}': {n} is not allowed: must be at least {QUERY_BUFFER_MIN} (1 MiB)",
                    root.spelling("querybufferlimit")
                )))
            }
        },
    };

    let metrics_listen = match &global.metrics_listen {
        None => None,
        Some(s) => {
            let addr = s.strip_prefix("tcp://").unwrap_or(s);
            let addr = if addr.starts_with(':') {
                format!("0.0.0.0{addr}")
            } else {
                addr.to_string()
            };
            Some(addr.parse::<std::net::SocketAddr>().map_err(|_| {
                err(format!(
                    "{file}: key '{}': '{s}' is not an address like 127.0.0.1:9121",
                    root.spelling("metricslisten")
                ))
            })?)
        }
    };
    let workers = match global.workers.map(|i| i.0) {
        None => 1,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            return Err(err(format!(
                "{file}: key '{}': {n} is not allowed: 1 to 256 threads",
                root.spelling("workers")
            )))
        }
    };
    let mut relayers = vec![];
    let mut not_relayed = vec![];
    let mut seen = HashSet::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let map = entry
            .into_table()
            .map_err(|_| err(format!("{file}: relayer entry #{}: must be a table", i + 1)))?;
        // Name the entry by its listen before anything else can fail.
        let listen = map
            .iter()
            .find(|(k, _)| normalize(k) == "listen")
            .and_then(|(_, v)| v.clone().into_string().ok());
        let ctx = match &listen {
            Some(l) => format!("{file}: relayer listen=\"{l}\" (entry #{})", i + 1),
            None => format!("{file}: relayer entry #{}", i + 1),
        };
        let table = Table::from(map.into_iter().collect(), &ctx).map_err(err)?;
        if let Some(n) = skipped(&table, &ctx, &mut warnings) {
            not_relayed.push(n);
            continue;
        }
        let raw: RawRelayer = table.parse(&ctx, &mut warnings).map_err(err)?;
        let e = Entry {
            raw: &raw,
            table: &table,
            ctx: &ctx,
        };
        let relayer = read_entry(&e, &mut warnings).map_err(err)?;
        if !seen.insert(relayer.listen_key.clone()) {
            return Err(err(format!(
                "{ctx}: key '{}': the same listen appears twice",
                table.spelling("listen")
            )));
        }
        relayers.push(relayer);
    }
    Ok(Config {
        path: path.to_path_buf(),
        log_format,
        limits,
        metrics_listen,
        workers,
        relayers,
        not_relayed,
        warnings,
    })
}

enum Protocol {
    Redis,
    Cluster,
    Stream(stream::Service),
}

/// An entry of a protocol this version does not relay, reported and skipped before anything
/// else in it is read.
fn skipped(table: &Table, ctx: &str, warnings: &mut Vec<String>) -> Option<NotRelayed> {
    let text = |k: &str| table.values.get(k).and_then(|v| v.clone().into_string().ok());
    let protocol = text("protocol")?.to_ascii_lowercase();
    let protocol = *not_relayed::PROTOCOLS.iter().find(|p| **p == protocol)?;
    let n = NotRelayed { protocol };
    warnings.push(n.warning(ctx));
    Some(n)
}

fn read_entry(e: &Entry, warnings: &mut Vec<String>) -> Result<Relayer, String> {
    let raw = e.raw;
    let listen_key = raw
        .listen
        .clone()
        .ok_or_else(|| format!("{}: key 'listen' is missing", e.ctx))?;
    let listen = ListenAddr::parse(&listen_key).map_err(|err| format!("{}: {err}", e.key("listen")))?;
    let protocol = match raw.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => return Err(format!("{}: key 'protocol' is missing", e.ctx)),
        Some("redis") | Some("redis2") => Protocol::Redis,
        Some("redis-plus") => {
            // The original's single Redis through its cluster client's pool: here, a Redis.
            warnings.push(format!(
                "{}: 'redis-plus' is relayed as protocol 'redis' (one Redis at url)",
                e.key("protocol")
            ));
            Protocol::Redis
        }
        Some("redis-cluster") => Protocol::Cluster,
        Some("firehose") => Protocol::Stream(stream::Service::Firehose),
        Some("kinesis") => Protocol::Stream(stream::Service::Kinesis),
        Some("sqs") => Protocol::Stream(stream::Service::Sqs),
        Some(other) => {
            return Err(format!(
                "{}: unknown protocol '{other}': use redis, redis-cluster, firehose, kinesis or sqs",
                e.key("protocol")
            ))
        }
    };
    let drain_timeout = e.seconds(raw.drain_timeout, 10.0, "draintimeout")?;
    let unix_access = unix_access(e)?;
    let max_clients = e.count(raw.max_clients, 10_000, "maxclients", false)?;
    // Every entry carries the Redis keys in the original's format: an entry of another
    // protocol does not use them, but a bad value is an error there too.
    let kind = match protocol {
        Protocol::Redis => Kind::Redis(Redis::parse(e, warnings)?),
        Protocol::Cluster => Kind::Cluster(Cluster::parse(e, warnings)?),
        Protocol::Stream(service) => {
            redis::check_unused(e)?;
            Kind::Stream(stream::parse(e, service, warnings)?)
        }
    };
    if !redis::smart_mode(e)? && !redis::async_commands(e).is_empty() {
        warnings.push(format!("{}: only used in smart mode", e.key("asynccommands")));
    }
    let unused = raw.unused_keys(match &kind {
        Kind::Stream(s) => Some(s.service.name()),
        _ => None,
    });
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|k| e.table.spelling(k)).collect();
        warnings.push(format!(
            "{}: keys not used by this version: {}",
            e.ctx,
            names.join(", ")
        ));
    }
    Ok(Relayer {
        listen,
        listen_key,
        unix_access,
        max_clients,
        drain_timeout: Duration::from_secs_f64(drain_timeout),
        kind,
    })
}

/// `unixSocketMode` and `unixSocketGroup`.
fn unix_access(e: &Entry) -> Result<UnixAccess, String> {
    let gid = match &e.raw.unix_socket_group {
        None => None,
        Some(g) => Some(group_id(g).map_err(|err| format!("{}: {err}", e.key("unixsocketgroup")))?),
    };
    Ok(UnixAccess {
        mode: e.raw.unix_socket_mode.map_or(UnixAccess::default().mode, |m| m.0),
        gid,
    })
}

/// A group name or number, as the unix socket's group.
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(|_| format!("'{name}' is not a group name"))?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is read at once, before any
    // other call that could reuse its static buffer (configuration is loaded on one thread).
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        return Err(format!("no group named '{name}'"));
    }
    Ok(unsafe { (*g).gr_gid })
}

/// The config crate appends " in <path>" with a path of its own making; we name the file first.
fn strip_origin(msg: &str) -> String {
    match msg.rfind("\n in ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Loads a configuration written in the test.
#[cfg(test)]
pub(crate) fn load_str(s: &str) -> Result<Config, ConfigError> {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(s.as_bytes()).unwrap();
    load(f.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_in_any_case_and_snake_case() {
        let c = load_str(
            "[[relayer]]\nProtocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nMAXCONNECTIONS = 3\nmax_clients = 7\ntimeout = 0.5\n",
        )
        .unwrap();
        let r = &c.relayers[0];
        let Kind::Redis(redis) = &r.kind else {
            panic!("{r:?}")
        };
        assert_eq!((redis.settings.connections, r.max_clients), (3, 7));
        assert_eq!(redis.settings.timeout, Some(Duration::from_millis(500)));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn errors_name_file_entry_and_key() {
        let e = load_str("[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nmaxConnections = \"many\"\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("listen=\"tcp://:1\"") && e.contains("'maxConnections'"),
            "{e}"
        );
        let e = load_str("[[relayer]]\nprotocol = \"memcache\"\nlisten = \"tcp://:1\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("'protocol'") && e.contains("memcache"), "{e}");
        let e = load_str("[[relayer]]\nprotocol = \"redis\"\nlisten = \":1\"\nurl = \"tcp://h:2\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("'listen'"), "{e}");
    }

    #[test]
    fn unknown_keys_warn() {
        let c = load_str("colour = 1\n[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nfoo = 2\n").unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("'colour'")),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("'foo'") && w.contains("tcp://:1")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn query_buffer_limit() {
        let limit = |global: &str| {
            load_str(&format!(
                "{global}\n[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\n"
            ))
            .map(|c| c.limits.query_buffer_limit)
            .map_err(|e| e.0)
        };
        assert_eq!(limit(""), Ok(1 << 30));
        assert_eq!(limit("queryBufferLimit = 1048576"), Ok(1 << 20));
        assert_eq!(limit("query_buffer_limit = 4294967296"), Ok(4 << 30));
        for (value, want) in [
            (
                "1048575",
                "key 'queryBufferLimit': 1048575 is not allowed: must be at least 1048576 (1 MiB)",
            ),
            ("0", "key 'queryBufferLimit': 0 is not allowed"),
            ("-1", "key 'queryBufferLimit': -1 is not allowed"),
            (
                "\"1gb\"",
                "key 'queryBufferLimit': invalid type: string \"1gb\", expected an integer",
            ),
            ("1.5", "key 'queryBufferLimit': invalid type"),
        ] {
            let e = limit(&format!("queryBufferLimit = {value}")).unwrap_err();
            assert!(e.contains(want), "{value}: {e}");
        }
    }

    #[test]
    fn shipped_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let original = load(&root.join("config/relayer.conf")).unwrap();
        assert_eq!(original.relayers.len(), 4);
        let f = original
            .relayers
            .iter()
            .find_map(|r| match &r.kind {
                Kind::Stream(f) => Some(f),
                _ => None,
            })
            .unwrap();
        assert_eq!((f.max_calls, f.max_lines), (2, 100));
        assert_eq!(
            (f.service.target(), f.service.aws().region.as_deref()),
            ("testing", Some("eu-west-1"))
        );
        let ours = load(&root.join("config/relayer.toml")).unwrap();
        assert!(ours.warnings.is_empty(), "{:?}", ours.warnings);
        assert_eq!(ours.relayers.len(), 2);
    }

    /// The original's latest configuration shape loads unchanged: every protocol it shipped is
    /// relayed or skipped, its keys read as it read them, the rest reported.
    #[test]
    fn the_originals_latest_file_loads_unchanged() {
        use relayer_actors::stream::config::Replies;
        use relayer_actors::stream::kinesis::PartitionKey;
        use relayer_actors::stream::service::ServiceSettings;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = load(&root.join("integration/tests/fixtures/original-latest.conf")).unwrap();
        let kinds: Vec<&str> = c
            .relayers
            .iter()
            .map(|r| match &r.kind {
                Kind::Redis(_) => "redis",
                Kind::Cluster(_) => "cluster",
                Kind::Stream(s) => s.service.name(),
            })
            .collect();
        assert_eq!(
            kinds,
            ["redis", "redis", "cluster", "redis", "firehose", "kinesis", "sqs"]
        );
        let skipped: Vec<&str> = c.not_relayed.iter().map(|n| n.protocol).collect();
        assert_eq!(
            skipped,
            ["httptofirehose", "httptoathena", "http", "fs", "redis2kvstore"]
        );
        let stream = |i: usize| match &c.relayers[i].kind {
            Kind::Stream(s) => s,
            k => panic!("{k:?}"),
        };
        let f = stream(4);
        assert_eq!(f.ignore, ["SET", "GET"]);
        assert!(f.critical);
        assert_eq!(f.replies, Replies::Redis);
        assert_eq!(
            (f.max_lines, f.max_entries, f.max_calls, f.buffer),
            (usize::MAX, 500, 4, 10240)
        );
        match &stream(5).service {
            ServiceSettings::Kinesis(k) => {
                assert_eq!(
                    (k.stream.as_str(), k.partition_key),
                    ("events-stream", PartitionKey::Hash)
                )
            }
            s => panic!("{s:?}"),
        }
        let q = stream(6);
        match &q.service {
            ServiceSettings::Sqs(s) => {
                assert!(s.fifo());
                assert_eq!(s.group, "web");
                assert_eq!(s.aws.region.as_deref(), Some("eu-west-1"), "from the queue URL");
                assert_eq!(s.aws.endpoint, None);
            }
            s => panic!("{s:?}"),
        }
        assert_eq!((q.max_entries, q.max_calls), (10, 2));
        assert!(q.service.ordered());
        let w = c.warnings.join("\n");
        for said in [
            "keys not used by this version: gogc, bufferPoolSize",
            "'ZINCRBY' cannot be acknowledged early",
            "keys not used by this version: maxIdleConnections, minIdleConnections, maxConnectedSecs",
            "'redis-plus' is relayed as protocol 'redis'",
            "(entry #7): keys not used by this version: mode",
            "listen=\"127.0.0.1:8082\" (entry #10): protocol 'http' of the original daemon is not relayed",
        ] {
            assert!(w.contains(said), "{said}:\n{w}");
        }
        assert!(!w.contains("unknown key"), "every key is the original's:\n{w}");
        // Each skipped entry is reported once.
        assert_eq!(w.matches("is not relayed by this version").count(), 5, "{w}");
    }

    #[test]
    fn protocols_not_relayed_are_reported_apart() {
        // An HTTP entry's listen has no scheme and its keys are its own: nothing in it is read.
        let c = load_str(
            "[[relayer]]\nprotocol = \"httpToFirehose\"\nlisten = \"127.0.0.1:8080\"\ntimeout = \"5s\"\n[[relayer]]\nprotocol = \"FS\"\nlisten = \"tcp://:2\"\npath = \"/tmp\"\nshards = 32\n",
        )
        .unwrap();
        assert!(c.relayers.is_empty());
        let n: Vec<_> = c.not_relayed.iter().map(|n| n.protocol).collect();
        assert_eq!(n, ["httptofirehose", "fs"]);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("listen=\"127.0.0.1:8080\"")
                && c.warnings[0].ends_with(
                    "protocol 'httptofirehose' of the original daemon is not relayed by this version: the entry is skipped"
                ),
            "{:?}",
            c.warnings
        );
        // A protocol nobody shipped is still an error.
        let e = load_str("[[relayer]]\nprotocol = \"memcache\"\nlisten = \"tcp://:1\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("unknown protocol 'memcache'"), "{e}");
    }

    /// The Redis keys every entry of the original's format may carry are checked in entries of
    /// other protocols too, where they are not used.
    #[test]
    fn redis_keys_are_checked_in_every_entry() {
        for protocol in [
            "firehose\"\nstreamName = \"s",
            "kinesis\"\nstreamName = \"s",
            "sqs\"\nurl = \"https://sqs.eu-west-1.amazonaws.com/1/q",
        ] {
            for (extra, want) in [
                ("mode = \"turbo\"", "key 'mode': unknown mode 'turbo'"),
                ("password = \"\"", "key 'password': must not be empty"),
                ("connectTimeout = 0", "key 'connectTimeout': must be more than 0"),
                ("maxPendingBytes = 0", "key 'maxPendingBytes': 0 is not allowed"),
                ("tlsCaFile = \"ca.pem\"", "key 'tlsCaFile': only used with TLS"),
            ] {
                let e = load_str(&format!(
                    "[[relayer]]\nprotocol = \"{protocol}\"\nlisten = \"tcp://:1\"\n{extra}\n"
                ))
                .unwrap_err()
                .0;
                assert!(e.contains(want), "{protocol} {extra}: {e}");
            }
        }
    }
}
