//! The file as read: each table's keys matched the way the original daemon matched them
//! (case-insensitively, snake_case too), values typed as strictly as TOML writes them, and the
//! keys nobody reads collected for a warning. What the values mean is decided elsewhere.

use config::{Value, ValueKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// Integers, floats and booleans as TOML has them: the config crate would turn `true` into 1 and
/// 2.5 into 2, and a typo must not become a number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Int(pub i64);
#[derive(Debug, Clone, Copy)]
pub(super) struct Float(pub f64);
#[derive(Debug, Clone, Copy)]
pub(super) struct Bool(pub bool);

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
pub(super) struct Mode8(pub u32);

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
pub(super) enum Names {
    List(Vec<String>),
    Words(String),
}

impl Names {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Names::List(v) => v,
            Names::Words(s) => s.split_whitespace().map(str::to_string).collect(),
        }
    }
}

// Field names are the keys with case and underscores removed, which is how keys are matched.
#[derive(Deserialize, Default)]
pub(super) struct RawGlobal {
    pub comment: Option<String>,
    // The original's tuning of its own runtime: read, reported as unused.
    pub gogc: Option<Int>,
    #[serde(rename = "bufferpoolsize")]
    pub buffer_pool_size: Option<Int>,
    #[serde(rename = "logformat")]
    pub log_format: Option<String>,
    #[serde(rename = "maxbulklength")]
    pub max_bulk_length: Option<Int>,
    #[serde(rename = "maxarguments")]
    pub max_arguments: Option<Int>,
    #[serde(rename = "maxinlinelength")]
    pub max_inline_length: Option<Int>,
    #[serde(rename = "querybufferlimit")]
    pub query_buffer_limit: Option<Int>,
    #[serde(rename = "metricslisten")]
    pub metrics_listen: Option<String>,
    pub workers: Option<Int>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawRelayer {
    pub protocol: Option<String>,
    pub mode: Option<String>,
    pub listen: Option<String>,
    pub url: Option<String>,
    #[serde(rename = "maxconnections")]
    pub max_connections: Option<Int>,
    pub timeout: Option<Float>,
    #[serde(rename = "connecttimeout")]
    pub connect_timeout: Option<Float>,
    #[serde(rename = "maxclients")]
    pub max_clients: Option<Int>,
    #[serde(rename = "maxpendingreplies")]
    pub max_pending_replies: Option<Int>,
    // "asynCommands" is how later versions of the original spelled it.
    #[serde(rename = "asynccommands", alias = "asyncommands")]
    pub async_commands: Option<Names>,
    #[serde(rename = "maxpendingbytes")]
    pub max_pending_bytes: Option<Int>,
    #[serde(rename = "draintimeout")]
    pub drain_timeout: Option<Float>,
    #[serde(rename = "unixsocketmode")]
    pub unix_socket_mode: Option<Mode8>,
    #[serde(rename = "unixsocketgroup")]
    pub unix_socket_group: Option<String>,
    #[serde(rename = "tlscafile")]
    pub tls_ca_file: Option<String>,
    #[serde(rename = "tlscertfile")]
    pub tls_cert_file: Option<String>,
    #[serde(rename = "tlskeyfile")]
    pub tls_key_file: Option<String>,
    #[serde(rename = "tlsservername")]
    pub tls_server_name: Option<String>,
    pub password: Option<String>,
    #[serde(rename = "maxdedicatedconnections")]
    pub max_dedicated_connections: Option<Int>,
    // Keys of the original format that this version reads but does not use yet.
    #[serde(rename = "maxidleconnections")]
    pub max_idle_connections: Option<Int>,
    #[serde(rename = "minidleconnections")]
    pub min_idle_connections: Option<Int>,
    #[serde(rename = "maxconnectedsecs")]
    pub max_connected_secs: Option<Int>,
    pub compress: Option<Bool>,
    pub uncompress: Option<Bool>,
    pub gzip: Option<Int>,
    pub gunzip: Option<Bool>,
    pub parallel: Option<Bool>,
    pub pipeline: Option<Int>,
    #[serde(rename = "maxrecords")]
    pub max_records: Option<Int>,
    #[serde(rename = "streamname")]
    pub stream_name: Option<String>,
    #[serde(rename = "groupid")]
    pub group_id: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub spin: Option<Float>,
    // Firehose.
    pub endpoint: Option<String>,
    #[serde(rename = "flushinterval")]
    pub flush_interval: Option<Float>,
    pub buffer: Option<Int>,
    #[serde(rename = "bufferbytes")]
    pub buffer_bytes: Option<Int>,
    pub critical: Option<Bool>,
    #[serde(rename = "retrytimeout")]
    pub retry_timeout: Option<Float>,
    #[serde(rename = "deadletterfile")]
    pub dead_letter_file: Option<String>,
    pub timestamp: Option<String>,
    // Stream entries (the original's keys, and ours).
    pub concat: Option<Bool>,
    #[serde(rename = "ignorecommands")]
    pub ignore_commands: Option<Names>,
    pub replies: Option<String>,
    #[serde(rename = "partitionkey")]
    pub partition_key: Option<String>,
}

impl RawRelayer {
    /// Keys that parse but change nothing in this version, for a warning. `stream`: the
    /// entry's protocol when it is a stream's (`firehose`, `kinesis`, `sqs`).
    pub(super) fn unused_keys(&self, stream: Option<&str>) -> Vec<&'static str> {
        let streamed = stream.is_some();
        let (is, sqs) = (|p: &str| stream == Some(p), stream == Some("sqs"));
        let mut v = vec![];
        let set = [
            (self.max_idle_connections.is_some(), "maxidleconnections"),
            (self.min_idle_connections.is_some(), "minidleconnections"),
            (self.max_connected_secs.is_some(), "maxconnectedsecs"),
            (self.compress.is_some() && streamed, "compress"),
            (self.uncompress.is_some() && streamed, "uncompress"),
            (self.gzip.is_some() && streamed, "gzip"),
            (self.gunzip.is_some() && streamed, "gunzip"),
            (self.parallel.is_some(), "parallel"),
            (self.pipeline.is_some(), "pipeline"),
            (self.group_id.is_some() && !sqs, "groupid"),
            (self.spin.is_some(), "spin"),
            (self.max_records.is_some() && !streamed, "maxrecords"),
            (
                self.stream_name.is_some() && !is("firehose") && !is("kinesis"),
                "streamname",
            ),
            (self.region.is_some() && !streamed, "region"),
            (self.profile.is_some() && !streamed, "profile"),
            (self.endpoint.is_some() && !streamed, "endpoint"),
            (self.flush_interval.is_some() && !streamed, "flushinterval"),
            (self.buffer.is_some() && !streamed, "buffer"),
            (self.buffer_bytes.is_some() && !streamed, "bufferbytes"),
            (self.critical.is_some() && !streamed, "critical"),
            (self.dead_letter_file.is_some() && !streamed, "deadletterfile"),
            (self.timestamp.is_some() && !streamed, "timestamp"),
            // Stream relayers answer everything themselves: no mode, no url but the queue's.
            (self.mode.is_some() && streamed, "mode"),
            (self.url.is_some() && streamed && !sqs, "url"),
            (self.concat.is_some() && !is("firehose"), "concat"),
            (self.ignore_commands.is_some() && !streamed, "ignorecommands"),
            (self.replies.is_some() && !streamed, "replies"),
            (self.partition_key.is_some() && !is("kinesis"), "partitionkey"),
            (self.max_pending_bytes.is_some() && streamed, "maxpendingbytes"),
            (
                self.max_pending_replies.is_some() && streamed,
                "maxpendingreplies",
            ),
            (self.async_commands.is_some() && streamed, "asynccommands"),
            (self.connect_timeout.is_some() && streamed, "connecttimeout"),
            (self.password.is_some() && streamed, "password"),
            (
                self.max_dedicated_connections.is_some() && streamed,
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
pub(super) fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A table with normalized keys, and the spelling each key had in the file.
pub(super) struct Table {
    pub values: HashMap<String, Value>,
    pub spelled: HashMap<String, String>,
}

impl Table {
    pub(super) fn from(map: HashMap<String, Value>, ctx: &str) -> Result<Self, String> {
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

    pub(super) fn spelling<'a>(&'a self, key: &'a str) -> &'a str {
        self.spelled.get(key).map(String::as_str).unwrap_or(key)
    }

    /// Deserializes the table, collecting the keys nobody reads.
    pub(super) fn parse<T: DeserializeOwned>(
        &self,
        ctx: &str,
        unknown: &mut Vec<String>,
    ) -> Result<T, String> {
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

/// One `[[relayer]]` entry as read, and how its errors name it and its keys.
pub(super) struct Entry<'a> {
    pub raw: &'a RawRelayer,
    pub table: &'a Table,
    /// `<file>: relayer listen="..." (entry #n)`
    pub ctx: &'a str,
}

impl Entry<'_> {
    /// The context and the key, spelled as in the file.
    pub fn key(&self, k: &str) -> String {
        format!("{}: key '{}'", self.ctx, self.table.spelling(k))
    }

    /// Seconds, 0 included, up to a year.
    pub fn seconds(&self, v: Option<Float>, default: f64, k: &str) -> Result<f64, String> {
        match v.map(|f| f.0) {
            None => Ok(default),
            Some(s) if s.is_finite() && (0.0..=86400.0 * 365.0).contains(&s) => Ok(s),
            Some(s) => Err(format!("{}: {s} is not a number of seconds", self.key(k))),
        }
    }

    /// A count of at least 1; with `zero_is_default`, 0 means the default, as in the original.
    pub fn count(
        &self,
        v: Option<Int>,
        default: usize,
        k: &str,
        zero_is_default: bool,
    ) -> Result<usize, String> {
        match v.map(|i| i.0) {
            None => Ok(default),
            Some(0) if zero_is_default => Ok(default),
            Some(n) if n >= 1 => Ok(n as usize),
            Some(n) => Err(format!("{}: {n} is not allowed: must be at least 1", self.key(k))),
        }
    }
}
