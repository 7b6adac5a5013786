//! The configuration file: TOML, read with the `config` crate, in the original daemon's format
//! (keys matched case-insensitively, snake_case accepted too) plus our own keys.
//!
//! Loading is all-or-nothing: every entry is checked before anything is bound, and an error
//! names the file, the entry (by its `listen`) and the key.

use config::{File, FileFormat, Value, ValueKind};
use relayer_actors::compress::{Codec, Compression};
use relayer_actors::endpoint::{ListenAddr, TargetAddr, TargetKind};
use relayer_actors::firehose::buffer::MAX_BOUND as BUFFER_MAX;
use relayer_actors::firehose::record::{Timestamp, MAX_RECORD};
use relayer_actors::firehose::sender::SenderSettings;
use relayer_actors::listener::UnixAccess;
use relayer_actors::redis::auth::Password;
use relayer_actors::redis::dedicated::LiveCount;
use relayer_actors::redis::smart::Table as SmartTable;
use relayer_actors::resp::request::Limits;
use relayer_actors::tls::{TlsClient, TlsOptions};
use serde::de::DeserializeOwned;
use serde::Deserialize;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Redis,
    /// A Redis Cluster, reached through the seed nodes of `url`.
    RedisCluster,
    Firehose,
    /// Known to the original daemon but not relayed by this version yet.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Smart,
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
    pub relayers: Vec<Relayer>,
    /// Things worth a warning that do not stop loading (unknown keys and the like).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relayer {
    pub protocol: Protocol,
    pub mode: Mode,
    pub listen: ListenAddr,
    /// The `listen` string as written: the relayer's identity.
    pub listen_key: String,
    pub target: Option<TargetAddr>,
    /// A `rediss://` target's TLS settings, files read and checked.
    pub tls: Option<TlsClient>,
    pub max_connections: usize,
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub max_clients: usize,
    pub max_pending_replies: usize,
    /// Smart mode's background table (the default one plus `asyncCommands`).
    pub smart_table: Option<SmartTable>,
    pub max_pending_bytes: u64,
    pub drain_timeout: Duration,
    /// Redis relayers: how long a write acknowledged early is sent again after refusals that
    /// may pass (LOADING, BUSY...), or waits for an unreachable backend, before it is given up.
    pub retry_timeout: Duration,
    pub unix_access: UnixAccess,
    pub firehose: Option<Firehose>,
    /// Clients must AUTH with this first (`password`), as with Redis' requirepass.
    pub password: Option<Password>,
    /// `protocol = "redis-cluster"`: the seed nodes of `url` (`target` is the first).
    pub cluster_seeds: Option<Vec<TargetAddr>>,
    /// Upstream connections held for one client each (blocking commands, pub/sub, WATCH,
    /// MONITOR, RESP3), for the entry across its workers: they share `dedicated_live`.
    pub max_dedicated: usize,
    pub dedicated_live: LiveCount,
    /// compress, uncompress, gzip, gunzip (redis relayers).
    pub compression: Option<Compression>,
}

/// The keys of a firehose entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Firehose {
    pub sender: SenderSettings,
    /// Lines packed into one Firehose record (0 and 1 both mean one).
    pub max_records: usize,
    /// PutRecordBatch calls in flight (`maxConnections`).
    pub max_calls: usize,
    pub flush_interval: Duration,
    /// Lines held at once (`buffer`).
    pub buffer: usize,
    /// Bytes of lines held at once (`bufferBytes`).
    pub buffer_bytes: usize,
    pub critical: bool,
    pub retry_timeout: Duration,
    pub dead_letter: Option<PathBuf>,
    pub timestamp: Timestamp,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Integers, floats and booleans as TOML has them: the config crate would turn `true` into 1 and
/// 2.5 into 2, and a typo must not become a number.
#[derive(Debug, Clone, Copy)]
struct Int(i64);
#[derive(Debug, Clone, Copy)]
struct Float(f64);
#[derive(Debug, Clone, Copy)]
struct Bool(bool);

struct Strict<T>(std::marker::PhantomData<T>);

impl<'de> serde::de::Visitor<'de> for Strict<Int> {
    type Value = Int;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom("integer too large"))
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<Float> {
    type Value = Float;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Float, E> {
        Ok(Float(v as f64))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Float, E> {
        Ok(Float(v as f64))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Float, E> {
        Ok(Float(v))
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<Bool> {
    type Value = Bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Bool, E> {
        Ok(Bool(v))
    }
}

macro_rules! strict {
    ($($t:ident),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Strict::<$t>(std::marker::PhantomData))
            }
        }
    )*};
}
strict!(Int, Float, Bool);

/// Permission bits: a TOML integer (0o660) or an octal string ("0660").
#[derive(Debug, Clone, Copy)]
struct Mode8(u32);

impl<'de> Deserialize<'de> for Mode8 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Mode8;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("permission bits, as 0o660 or \"0660\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Mode8, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .map(Mode8)
                    .ok_or_else(|| E::custom("not in 0..0o777"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Mode8, E> {
                self.visit_i64(v as i64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Mode8, E> {
                let digits = v.trim_start_matches("0o");
                u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .map(Mode8)
                    .ok_or_else(|| E::custom(format!("'{v}' is not octal permission bits like \"0660\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of names, as a TOML array or as one space-separated string (the original's form).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Names {
    List(Vec<String>),
    Words(String),
}

impl Names {
    fn into_vec(self) -> Vec<String> {
        match self {
            Names::List(v) => v,
            Names::Words(s) => s.split_whitespace().map(str::to_string).collect(),
        }
    }
}

// Field names are the keys with case and underscores removed, which is how keys are matched.
#[derive(Deserialize, Default)]
struct RawGlobal {
    comment: Option<String>,
    gogc: Option<Int>,
    #[serde(rename = "logformat")]
    log_format: Option<String>,
    #[serde(rename = "maxbulklength")]
    max_bulk_length: Option<Int>,
    #[serde(rename = "maxarguments")]
    max_arguments: Option<Int>,
    #[serde(rename = "maxinlinelength")]
    max_inline_length: Option<Int>,
    #[serde(rename = "querybufferlimit")]
    query_buffer_limit: Option<Int>,
    #[serde(rename = "metricslisten")]
    metrics_listen: Option<String>,
    workers: Option<Int>,
}

#[derive(Deserialize, Default)]
struct RawRelayer {
    protocol: Option<String>,
    mode: Option<String>,
    listen: Option<String>,
    url: Option<String>,
    #[serde(rename = "maxconnections")]
    max_connections: Option<Int>,
    timeout: Option<Float>,
    #[serde(rename = "connecttimeout")]
    connect_timeout: Option<Float>,
    #[serde(rename = "maxclients")]
    max_clients: Option<Int>,
    #[serde(rename = "maxpendingreplies")]
    max_pending_replies: Option<Int>,
    // "asynCommands" is how later versions of the original spelled it.
    #[serde(rename = "asynccommands", alias = "asyncommands")]
    async_commands: Option<Names>,
    #[serde(rename = "maxpendingbytes")]
    max_pending_bytes: Option<Int>,
    #[serde(rename = "draintimeout")]
    drain_timeout: Option<Float>,
    #[serde(rename = "unixsocketmode")]
    unix_socket_mode: Option<Mode8>,
    #[serde(rename = "unixsocketgroup")]
    unix_socket_group: Option<String>,
    #[serde(rename = "tlscafile")]
    tls_ca_file: Option<String>,
    #[serde(rename = "tlscertfile")]
    tls_cert_file: Option<String>,
    #[serde(rename = "tlskeyfile")]
    tls_key_file: Option<String>,
    #[serde(rename = "tlsservername")]
    tls_server_name: Option<String>,
    password: Option<String>,
    #[serde(rename = "maxdedicatedconnections")]
    max_dedicated_connections: Option<Int>,
    // Keys of the original format that this version reads but does not use yet.
    #[serde(rename = "maxidleconnections")]
    max_idle_connections: Option<Int>,
    compress: Option<Bool>,
    uncompress: Option<Bool>,
    gzip: Option<Int>,
    gunzip: Option<Bool>,
    parallel: Option<Bool>,
    pipeline: Option<Int>,
    #[serde(rename = "maxrecords")]
    max_records: Option<Int>,
    #[serde(rename = "streamname")]
    stream_name: Option<String>,
    #[serde(rename = "groupid")]
    group_id: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    spin: Option<Float>,
    // Firehose.
    endpoint: Option<String>,
    #[serde(rename = "flushinterval")]
    flush_interval: Option<Float>,
    buffer: Option<Int>,
    #[serde(rename = "bufferbytes")]
    buffer_bytes: Option<Int>,
    critical: Option<Bool>,
    #[serde(rename = "retrytimeout")]
    retry_timeout: Option<Float>,
    #[serde(rename = "deadletterfile")]
    dead_letter_file: Option<String>,
    timestamp: Option<String>,
}

impl RawRelayer {
    /// Keys that parse but change nothing in this version, for a warning.
    fn unused_keys(&self, protocol: Protocol) -> Vec<&'static str> {
        let mut v = vec![];
        let firehose = protocol == Protocol::Firehose;
        let set = [
            (self.max_idle_connections.is_some(), "maxidleconnections"),
            (self.compress.is_some() && firehose, "compress"),
            (self.uncompress.is_some() && firehose, "uncompress"),
            (self.gzip.is_some() && firehose, "gzip"),
            (self.gunzip.is_some() && firehose, "gunzip"),
            (self.parallel.is_some(), "parallel"),
            (self.pipeline.is_some(), "pipeline"),
            (self.group_id.is_some(), "groupid"),
            (self.spin.is_some(), "spin"),
            (self.max_records.is_some() && !firehose, "maxrecords"),
            (self.stream_name.is_some() && !firehose, "streamname"),
            (self.region.is_some() && !firehose, "region"),
            (self.profile.is_some() && !firehose, "profile"),
            (self.endpoint.is_some() && !firehose, "endpoint"),
            (self.flush_interval.is_some() && !firehose, "flushinterval"),
            (self.buffer.is_some() && !firehose, "buffer"),
            (self.buffer_bytes.is_some() && !firehose, "bufferbytes"),
            (self.critical.is_some() && !firehose, "critical"),
            (self.dead_letter_file.is_some() && !firehose, "deadletterfile"),
            (self.timestamp.is_some() && !firehose, "timestamp"),
            // Firehose relayers answer everything themselves: no mode, no url.
            (self.mode.is_some() && firehose, "mode"),
            (self.url.is_some() && firehose, "url"),
            (self.max_pending_bytes.is_some() && firehose, "maxpendingbytes"),
            (
                self.max_pending_replies.is_some() && firehose,
                "maxpendingreplies",
            ),
            (self.async_commands.is_some() && firehose, "asynccommands"),
            (self.connect_timeout.is_some() && firehose, "connecttimeout"),
            (self.password.is_some() && firehose, "password"),
            (
                self.max_dedicated_connections.is_some() && firehose,
                "maxdedicatedconnections",
            ),
        ];
        for (present, k) in set {
            if present {
                v.push(k);
            }
        }
        v
    }
}

/// How keys are compared: `maxConnections`, `maxconnections` and `max_connections` are one key.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A table with normalized keys, and the spelling each key had in the file.
struct Table {
    values: HashMap<String, Value>,
    spelled: HashMap<String, String>,
}

impl Table {
    fn from(map: HashMap<String, Value>, ctx: &str) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut spelled = HashMap::new();
        for (k, v) in map {
            let n = normalize(&k);
            if let Some(first) = spelled.get(&n) {
                return Err(format!("{ctx}: keys '{first}' and '{k}' are the same key"));
            }
            spelled.insert(n.clone(), k);
            values.insert(n, v);
        }
        Ok(Table { values, spelled })
    }

    fn spelling<'a>(&'a self, key: &'a str) -> &'a str {
        self.spelled.get(key).map(String::as_str).unwrap_or(key)
    }

    /// Deserializes the table, collecting the keys nobody reads.
    fn parse<T: DeserializeOwned>(&self, ctx: &str, unknown: &mut Vec<String>) -> Result<T, String> {
        let value = Value::new(None, ValueKind::Table(self.values.clone().into_iter().collect()));
        let mut ignored = vec![];
        let mut note = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let de = serde_ignored::Deserializer::new(value, &mut note);
        let r: Result<T, _> = serde_path_to_error::deserialize(de);
        let out = r.map_err(|e| {
            let key = e.path().to_string();
            let msg = e.into_inner().to_string();
            // The config crate names the key itself, in its normalized form; we name it as written.
            let msg = msg.split(" for key `").next().unwrap_or(&msg).to_string();
            format!("{ctx}: key '{}': {msg}", self.spelling(&key))
        })?;
        for k in ignored {
            let top = k.split('.').next().unwrap_or(&k).to_string();
            unknown.push(format!("{ctx}: unknown key '{}' ignored", self.spelling(&top)));
        }
        Ok(out)
    }
}

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
    let _ = (global.comment, global.gogc);
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
        let raw: RawRelayer = table.parse(&ctx, &mut warnings).map_err(err)?;
        let r = relayer(&raw, &table, &ctx, &mut warnings).map_err(err)?;
        if !seen.insert(r.listen_key.clone()) {
            return Err(err(format!(
                "{ctx}: key '{}': the same listen appears twice",
                table.spelling("listen")
            )));
        }
        relayers.push(r);
    }
    Ok(Config {
        path: path.to_path_buf(),
        log_format,
        limits,
        metrics_listen,
        workers,
        relayers,
        warnings,
    })
}

/// The seed nodes of a cluster url: addresses separated by spaces, as in the original; TCP
/// only, DB 0 only, one set of credentials for every node.
fn cluster_seeds(url: &str) -> Result<Vec<TargetAddr>, String> {
    let seeds = url
        .split_whitespace()
        .map(TargetAddr::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(
            "no seed node: list one or more tcp://host:port or redis://host:port separated by spaces".into(),
        );
    }
    for s in &seeds {
        if !matches!(s.kind, relayer_actors::endpoint::TargetKind::Tcp { .. }) {
            return Err(format!("'{s}': cluster nodes are reached over TCP"));
        }
        if s.db != 0 {
            return Err(format!("'{s}': a cluster has only DB 0"));
        }
        if (&s.user, &s.password, s.tls) != (&seeds[0].user, &seeds[0].password, seeds[0].tls) {
            return Err("every seed node must have the same credentials and scheme".into());
        }
    }
    Ok(seeds)
}

fn relayer(raw: &RawRelayer, t: &Table, ctx: &str, warnings: &mut Vec<String>) -> Result<Relayer, String> {
    let key = |k: &str| format!("{ctx}: key '{}'", t.spelling(k));
    let listen_key = raw
        .listen
        .clone()
        .ok_or_else(|| format!("{ctx}: key 'listen' is missing"))?;
    let listen = ListenAddr::parse(&listen_key).map_err(|e| format!("{}: {e}", key("listen")))?;
    let protocol = match raw.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => return Err(format!("{ctx}: key 'protocol' is missing")),
        Some("redis") | Some("redis2") => Protocol::Redis,
        Some("redis-cluster") => Protocol::RedisCluster,
        Some("redis-plus") => Protocol::Unsupported("redis-plus"),
        Some("firehose") => Protocol::Firehose,
        Some("sqs") => Protocol::Unsupported("sqs"),
        Some(other) => {
            return Err(format!(
                "{}: unknown protocol '{other}': use redis, redis-cluster or firehose",
                key("protocol")
            ))
        }
    };
    let mode = match raw.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("sync") => Mode::Sync,
        Some("smart") | Some("async") => Mode::Smart,
        Some(other) => {
            return Err(format!(
                "{}: unknown mode '{other}': use sync or smart",
                key("mode")
            ))
        }
    };
    let mut cluster_seeds_found = None;
    let target = match (protocol, &raw.url) {
        (Protocol::Redis, None) => return Err(format!("{ctx}: key 'url' is missing")),
        (Protocol::Redis, Some(u)) => Some(TargetAddr::parse(u).map_err(|e| format!("{}: {e}", key("url")))?),
        (Protocol::RedisCluster, None) => return Err(format!("{ctx}: key 'url' is missing")),
        (Protocol::RedisCluster, Some(u)) => {
            let seeds = cluster_seeds(u).map_err(|e| format!("{}: {e}", key("url")))?;
            let first = seeds[0].clone();
            cluster_seeds_found = Some(seeds);
            Some(first)
        }
        _ => None,
    };
    let tls = tls(raw, t, ctx, target.as_ref())?;
    let count = |v: Option<Int>, default: usize, k: &str, zero_is_default: bool| -> Result<usize, String> {
        match v.map(|i| i.0) {
            None => Ok(default),
            Some(0) if zero_is_default => Ok(default),
            Some(n) if n >= 1 => Ok(n as usize),
            Some(n) => Err(format!("{}: {n} is not allowed: must be at least 1", key(k))),
        }
    };
    let seconds = |v: Option<Float>, default: f64, k: &str| -> Result<f64, String> {
        match v.map(|f| f.0) {
            None => Ok(default),
            Some(s) if s.is_finite() && (0.0..=86400.0 * 365.0).contains(&s) => Ok(s),
            Some(s) => Err(format!("{}: {s} is not a number of seconds", key(k))),
        }
    };
    let timeout_default = if protocol == Protocol::Firehose {
        15.0
    } else {
        30.0
    };
    let timeout = seconds(raw.timeout, timeout_default, "timeout")?;
    let drain_timeout = seconds(raw.drain_timeout, 10.0, "draintimeout")?;
    let retry_timeout = seconds(raw.retry_timeout, 60.0, "retrytimeout")?;
    if retry_timeout == 0.0 {
        return Err(format!(
            "{}: {retry_timeout} is not allowed: a number of seconds more than 0",
            key("retrytimeout")
        ));
    }
    let gid = match &raw.unix_socket_group {
        None => None,
        Some(g) => Some(group_id(g).map_err(|e| format!("{}: {e}", key("unixsocketgroup")))?),
    };
    let unix_access = UnixAccess {
        mode: raw.unix_socket_mode.map_or(UnixAccess::default().mode, |m| m.0),
        gid,
    };
    let async_commands = raw
        .async_commands
        .clone()
        .map(Names::into_vec)
        .unwrap_or_default();
    let smart_table = match mode {
        Mode::Smart if matches!(protocol, Protocol::Redis | Protocol::RedisCluster) => {
            Some(SmartTable::new(&async_commands).map_err(|e| format!("{}: {e}", key("asynccommands")))?)
        }
        _ => None,
    };
    let firehose = match protocol {
        Protocol::Firehose => Some(firehose(raw, t, ctx, timeout)?),
        _ => None,
    };
    let compression = match protocol {
        Protocol::Redis | Protocol::RedisCluster => compression(raw, t, ctx, warnings)?,
        _ => None,
    };
    let connect_timeout = seconds(raw.connect_timeout, 5.0, "connecttimeout")?;
    if connect_timeout == 0.0 {
        return Err(format!("{}: must be more than 0", key("connecttimeout")));
    }
    let password = match raw.password.as_deref() {
        None => None,
        Some("") => {
            return Err(format!(
                "{}: must not be empty (leave it out for no password)",
                key("password")
            ))
        }
        Some(p) => Some(Password::new(p)),
    };
    let r = Relayer {
        protocol,
        mode,
        listen,
        listen_key,
        target,
        tls,
        // 0 meant "unset" in the original, where redis relayers ignored the key.
        max_connections: match &firehose {
            Some(f) => f.max_calls,
            None => count(raw.max_connections, 1, "maxconnections", true)?,
        },
        timeout: (timeout > 0.0).then(|| Duration::from_secs_f64(timeout)),
        connect_timeout: Duration::from_secs_f64(connect_timeout),
        max_clients: count(raw.max_clients, 10_000, "maxclients", false)?,
        max_pending_replies: count(raw.max_pending_replies, 1024, "maxpendingreplies", false)?,
        smart_table,
        max_pending_bytes: count(raw.max_pending_bytes, 64 << 20, "maxpendingbytes", false)? as u64,
        drain_timeout: Duration::from_secs_f64(drain_timeout),
        retry_timeout: Duration::from_secs_f64(retry_timeout),
        unix_access,
        firehose,
        password,
        cluster_seeds: cluster_seeds_found,
        max_dedicated: count(
            raw.max_dedicated_connections,
            64,
            "maxdedicatedconnections",
            false,
        )?,
        // A reload that changes the entry starts it with a new count, while the connections
        // its old clients still hold stay live a while: up to twice the maximum, briefly.
        dedicated_live: LiveCount::default(),
        compression,
    };
    if let Protocol::Unsupported(p) = protocol {
        warnings.push(format!(
            "{ctx}: protocol '{p}' is not supported by this version yet: the entry is not started"
        ));
    } else {
        if mode == Mode::Sync && !async_commands.is_empty() {
            warnings.push(format!("{}: only used in smart mode", key("asynccommands")));
        }
        let unused = raw.unused_keys(protocol);
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|k| t.spelling(k)).collect();
            warnings.push(format!(
                "{ctx}: keys not used by this version: {}",
                names.join(", ")
            ));
        }
    }
    Ok(r)
}

/// The original's keys: `compress` (snappy), `gzip = <level>`, and `uncompress` / `gunzip`
/// (decode replies only). Any of them decodes replies of both kinds.
fn compression(
    raw: &RawRelayer,
    t: &Table,
    ctx: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Compression>, String> {
    let key = |k: &str| format!("{ctx}: key '{}'", t.spelling(k));
    let on = |b: Option<Bool>| b.is_some_and(|b| b.0);
    let gzip = match raw.gzip.map(|i| i.0) {
        None | Some(0) => None,
        Some(n @ 1..=9) => Some(Codec::Gzip(n as u32)),
        Some(n) => {
            return Err(format!(
                "{}: {n} is not a gzip level: 1 (fastest) to 9 (smallest), or 0 for none",
                key("gzip")
            ))
        }
    };
    let snappy = on(raw.compress).then_some(Codec::Snappy);
    if gzip.is_some() && snappy.is_some() {
        // The original checked gzip first: keep its choice, but say so.
        warnings.push(format!(
            "{ctx}: keys '{}' and '{}' are both set: writes are compressed with gzip, as the original did (snappy values are still decoded)",
            t.spelling("compress"),
            t.spelling("gzip")
        ));
    }
    let writes = gzip.or(snappy);
    let decode = writes.is_some() || on(raw.uncompress) || on(raw.gunzip);
    Ok(decode.then_some(Compression { writes }))
}

fn firehose(raw: &RawRelayer, t: &Table, ctx: &str, timeout: f64) -> Result<Firehose, String> {
    let key = |k: &str| format!("{ctx}: key '{}'", t.spelling(k));
    let stream = match raw.stream_name.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            return Err(format!(
                "{ctx}: key 'streamName' is missing: the delivery stream to write to"
            ))
        }
    };
    // Without the key, aws-config's chain decides when the relayer starts (AWS_REGION, the
    // profile's region, instance metadata), then us-east-1.
    let region = match raw.region.as_deref() {
        None => None,
        Some(r) if !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') => {
            Some(r.to_string())
        }
        Some(r) => return Err(format!("{}: '{r}' is not an AWS region", key("region"))),
    };
    let endpoint = match &raw.endpoint {
        None => None,
        Some(u) => {
            let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
            let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
            match host {
                Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Some(u.clone()),
                _ => {
                    return Err(format!(
                        "{}: '{u}' is not an endpoint URL like https://firehose.eu-west-1.amazonaws.com",
                        key("endpoint")
                    ))
                }
            }
        }
    };
    let at_least = |v: Option<Int>, default: usize, min: usize, k: &str| -> Result<usize, String> {
        match v.map(|i| i.0) {
            None => Ok(default),
            Some(n) if n >= min as i64 && n as u64 <= BUFFER_MAX as u64 => Ok(n as usize),
            Some(n) if n >= min as i64 => Err(format!("{}: {n} is too large: at most {BUFFER_MAX}", key(k))),
            Some(n) => Err(format!("{}: {n} is not allowed: must be at least {min}", key(k))),
        }
    };
    let at_least_one = |v: Option<Int>, default: usize, k: &str| at_least(v, default, 1, k);
    let positive_seconds = |v: Option<Float>, default: f64, k: &str| -> Result<Duration, String> {
        match v.map(|f| f.0) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(s) if s.is_finite() && s > 0.0 && s <= 86400.0 * 365.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(format!(
                "{}: {s} is not allowed: a number of seconds more than 0",
                key(k)
            )),
        }
    };
    let max_records = match raw.max_records.map(|i| i.0) {
        None => 1,
        Some(n) if n >= 0 => (n as usize).max(1),
        Some(n) => return Err(format!("{}: {n} is not allowed: 0 or more", key("maxrecords"))),
    };
    let timestamp = match raw.timestamp.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("ns") => Timestamp::Nanos,
        Some("ms") => Timestamp::Millis,
        Some(other) => {
            return Err(format!(
                "{}: '{other}' is not a timestamp form: use \"ns\" (\"_ts\" in nanoseconds) or \"ms\" (\"ts\" in milliseconds)",
                key("timestamp")
            ))
        }
    };
    if timeout == 0.0 {
        return Err(format!(
            "{}: a firehose call needs a timeout more than 0",
            key("timeout")
        ));
    }
    Ok(Firehose {
        sender: SenderSettings {
            stream,
            region,
            profile: raw.profile.clone().filter(|p| !p.is_empty()),
            endpoint,
            timeout: Duration::from_secs_f64(timeout),
        },
        max_records,
        max_calls: at_least_one(raw.max_connections, 2, "maxconnections")?,
        flush_interval: positive_seconds(raw.flush_interval, 1.0, "flushinterval")?,
        buffer: at_least_one(raw.buffer, 10240, "buffer")?,
        // At least one line of the largest size, or a critical client would wait forever.
        buffer_bytes: at_least(raw.buffer_bytes, 64 << 20, MAX_RECORD, "bufferbytes")?,
        critical: raw.critical.is_some_and(|b| b.0),
        retry_timeout: positive_seconds(raw.retry_timeout, 300.0, "retrytimeout")?,
        dead_letter: raw
            .dead_letter_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        timestamp,
    })
}

/// The `tls*` keys: only with a `rediss://` url, files read and checked now so that a bad one
/// fails the check (or the reload) instead of every connection.
fn tls(
    raw: &RawRelayer,
    t: &Table,
    ctx: &str,
    target: Option<&TargetAddr>,
) -> Result<Option<TlsClient>, String> {
    let key = |k: &str| format!("{ctx}: key '{}'", t.spelling(k));
    let path = |v: &Option<String>, k: &str| -> Result<Option<PathBuf>, String> {
        match v.as_deref() {
            None => Ok(None),
            Some("") => Err(format!("{}: is empty: the path of a PEM file", key(k))),
            Some(p) => Ok(Some(PathBuf::from(p))),
        }
    };
    let options = TlsOptions {
        ca_file: path(&raw.tls_ca_file, "tlscafile")?,
        cert_file: path(&raw.tls_cert_file, "tlscertfile")?,
        key_file: path(&raw.tls_key_file, "tlskeyfile")?,
        server_name: raw.tls_server_name.clone(),
    };
    let given = [
        (options.ca_file.is_some(), "tlscafile"),
        (options.cert_file.is_some(), "tlscertfile"),
        (options.key_file.is_some(), "tlskeyfile"),
        (options.server_name.is_some(), "tlsservername"),
    ];
    match target {
        Some(TargetAddr {
            tls: true,
            kind: TargetKind::Tcp { host, .. },
            ..
        }) => TlsClient::load(&options, host).map(Some).map_err(|e| {
            // As written in the file, or as documented when it is not there.
            let k = normalize(e.key);
            let name = if t.spelled.contains_key(&k) {
                t.spelling(&k)
            } else {
                e.key
            };
            format!("{ctx}: key '{name}': {}", e.message)
        }),
        _ => match given.iter().find(|(set, _)| *set) {
            Some((_, k)) => Err(format!(
                "{}: only used with TLS: the url must start with rediss://",
                key(k)
            )),
            None => Ok(None),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(s: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(s.as_bytes()).unwrap();
        load(f.path())
    }

    #[test]
    fn keys_match_in_any_case_and_snake_case() {
        let c = load_str(
            "[[relayer]]\nProtocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nMAXCONNECTIONS = 3\nmax_clients = 7\ntimeout = 0.5\n",
        )
        .unwrap();
        let r = &c.relayers[0];
        assert_eq!((r.max_connections, r.max_clients), (3, 7));
        assert_eq!(r.timeout, Some(Duration::from_millis(500)));
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

    fn redis_with(extra: &str) -> Result<Config, ConfigError> {
        load_str(&format!(
            "[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\n{extra}\n"
        ))
    }

    #[test]
    fn compression_keys() {
        let c = |extra: &str| redis_with(extra).unwrap().relayers[0].compression;
        assert_eq!(c(""), None);
        assert_eq!(c("compress = false\ngzip = 0"), None);
        let snappy = Some(Compression {
            writes: Some(Codec::Snappy),
        });
        assert_eq!(c("compress = true"), snappy);
        assert_eq!(
            c("gzip = 9"),
            Some(Compression {
                writes: Some(Codec::Gzip(9))
            })
        );
        let decode_only = Some(Compression { writes: None });
        assert_eq!(c("uncompress = true"), decode_only);
        assert_eq!(c("GUNZIP = true"), decode_only);
        let cfg = redis_with("compress = true\ngzip = 1").unwrap();
        assert_eq!(
            cfg.relayers[0].compression,
            Some(Compression {
                writes: Some(Codec::Gzip(1))
            })
        );
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.contains("'compress' and 'gzip' are both set: writes are compressed with gzip")),
            "{:?}",
            cfg.warnings
        );
        assert!(redis_with("compress = true").unwrap().warnings.is_empty());
    }

    #[test]
    fn compression_errors() {
        for (extra, want) in [
            (
                "gzip = 10",
                "key 'gzip': 10 is not a gzip level: 1 (fastest) to 9 (smallest), or 0 for none",
            ),
            (
                "gzip = -1",
                "key 'gzip': -1 is not a gzip level: 1 (fastest) to 9 (smallest), or 0 for none",
            ),
            (
                "gzip = true",
                "key 'gzip': invalid type: boolean `true`, expected an integer",
            ),
            (
                "compress = \"yes\"",
                "key 'compress': invalid type: string \"yes\", expected true or false",
            ),
            (
                "gunzip = 1",
                "key 'gunzip': invalid type: integer `1`, expected true or false",
            ),
        ] {
            let e = redis_with(extra).unwrap_err().0;
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    fn firehose_with(extra: &str) -> Result<Config, ConfigError> {
        load_str(&format!(
            "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"tcp://:1\"\nstreamName = \"s\"\n{extra}\n"
        ))
    }

    #[test]
    fn firehose_region_is_left_to_the_aws_chain_when_missing() {
        let c = firehose_with("").unwrap();
        assert_eq!(c.relayers[0].firehose.as_ref().unwrap().sender.region, None);
        let c = firehose_with("region = \"eu-west-3\"").unwrap();
        assert_eq!(
            c.relayers[0].firehose.as_ref().unwrap().sender.region.as_deref(),
            Some("eu-west-3")
        );
        let e = firehose_with("region = \"\"").unwrap_err().0;
        assert!(e.contains("'region'"), "{e}");
    }

    #[test]
    fn firehose_buffer_bounds() {
        let f = |c: Config| c.relayers[0].firehose.clone().unwrap();
        let d = f(firehose_with("").unwrap());
        assert_eq!((d.buffer, d.buffer_bytes), (10240, 64 << 20));
        let e = firehose_with(&format!("buffer = {}", BUFFER_MAX as u64 + 1))
            .unwrap_err()
            .0;
        assert!(e.contains("'buffer'") && e.contains("too large"), "{e}");
        let e = firehose_with("buffer = 9223372036854775807").unwrap_err().0;
        assert!(e.contains("'buffer'") && e.contains("too large"), "{e}");
        assert_eq!(
            f(firehose_with(&format!("buffer = {BUFFER_MAX}")).unwrap()).buffer,
            BUFFER_MAX
        );
        let e = firehose_with("bufferBytes = 1000").unwrap_err().0;
        assert!(e.contains("'bufferBytes'") && e.contains("1024000"), "{e}");
        let e = firehose_with("bufferBytes = 9223372036854775807").unwrap_err().0;
        assert!(e.contains("'bufferBytes'") && e.contains("too large"), "{e}");
        assert_eq!(
            f(firehose_with("buffer_bytes = 1024000").unwrap()).buffer_bytes,
            1_024_000
        );
        let c = load_str("[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nbufferBytes = 5\n").unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("bufferBytes")),
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
        let fh = original
            .relayers
            .iter()
            .find(|r| r.protocol == Protocol::Firehose)
            .unwrap();
        let f = fh.firehose.as_ref().unwrap();
        assert_eq!((f.max_calls, f.max_records), (2, 100));
        assert_eq!(
            (f.sender.stream.as_str(), f.sender.region.as_deref()),
            ("testing", Some("eu-west-1"))
        );
        let ours = load(&root.join("config/relayer.toml")).unwrap();
        assert!(ours.warnings.is_empty(), "{:?}", ours.warnings);
        assert_eq!(ours.relayers.len(), 2);
    }
}
