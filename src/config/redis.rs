//! The keys of a `protocol = "redis"` entry (one backend at `url`), and `Settings`: what it
//! shares with a Redis Cluster entry, everything but where the backend is.

use super::raw::{Bool, Entry, Names};
use super::tls;
use relayer_actors::compress::{Codec, Compression};
use relayer_actors::endpoint::TargetAddr;
use relayer_actors::redis::auth::Password;
use relayer_actors::redis::smart::Table as SmartTable;
use relayer_actors::tls::TlsClient;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Redis {
    pub target: TargetAddr,
    pub settings: Settings,
}

/// How writes are answered: all forwarded and waited on, or the smart ones acknowledged at once.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Sync,
    /// The background table: the default one plus `asyncCommands`.
    Smart(SmartTable),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Sync => "Sync",
            Mode::Smart(_) => "Smart",
        }
    }
}

/// What a Redis and a Redis Cluster entry share.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    /// A `rediss://` target's TLS settings, files read and checked.
    pub tls: Option<TlsClient>,
    /// Persistent upstream connections (per master for a cluster), per worker.
    pub connections: usize,
    /// How long a forwarded command may wait for its reply; None: no limit.
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub max_pending_replies: usize,
    /// Smart mode: bytes acknowledged early and not yet confirmed.
    pub max_pending_bytes: u64,
    /// How long a write acknowledged early is sent again after refusals that may pass
    /// (LOADING, BUSY...), or waits for an unreachable backend, before it is given up.
    pub retry_timeout: Duration,
    /// Clients must AUTH with this first (`password`), as with Redis' requirepass.
    pub password: Option<Password>,
    /// Upstream connections held for one client each (blocking commands, pub/sub, WATCH,
    /// MONITOR, RESP3), for the entry across its workers.
    pub max_dedicated: usize,
    /// compress, uncompress, gzip, gunzip.
    pub compression: Option<Compression>,
}

impl Redis {
    pub(super) fn parse(e: &Entry, warnings: &mut Vec<String>) -> Result<Redis, String> {
        let target = TargetAddr::parse(url(e)?).map_err(|err| format!("{}: {err}", e.key("url")))?;
        let settings = Settings::parse(e, &target, warnings)?;
        Ok(Redis { target, settings })
    }
}

impl Settings {
    /// `target`: where the entry connects (a cluster's first seed), for the `tls*` keys.
    pub(super) fn parse(
        e: &Entry,
        target: &TargetAddr,
        warnings: &mut Vec<String>,
    ) -> Result<Settings, String> {
        let smart = smart_mode(e)?;
        let tls = tls::client(e, Some(target))?;
        let timeout = timeout(e)?;
        let retry_timeout = retry_timeout(e)?;
        let mode = if smart {
            // The original answered `+OK` for any name: a name that cannot be acknowledged early
            // is reported and left to be sent and waited on, never a reason not to start.
            let mut names = vec![];
            for name in async_commands(e) {
                match SmartTable::new(std::slice::from_ref(&name)) {
                    Ok(_) => names.push(name),
                    Err(err) => warnings.push(format!(
                        "{}: {err}: it is sent and waited on",
                        e.key("asynccommands")
                    )),
                }
            }
            let table = SmartTable::new(&names).expect("every name was taken alone");
            Mode::Smart(table)
        } else {
            Mode::Sync
        };
        let compression = compression(e, warnings)?;
        let connect_timeout = connect_timeout(e)?;
        let password = password(e)?;
        Ok(Settings {
            mode,
            tls,
            connections: connections(e)?,
            timeout,
            connect_timeout,
            max_pending_replies: max_pending_replies(e)?,
            max_pending_bytes: max_pending_bytes(e)?,
            retry_timeout,
            password,
            max_dedicated: max_dedicated(e)?,
            compression,
        })
    }
}

/// The Redis keys of an entry of another protocol, unused there, are still checked as in a
/// Redis entry: a bad value is an error whatever the protocol.
pub(super) fn check_unused(e: &Entry) -> Result<(), String> {
    smart_mode(e)?;
    tls::client(e, None)?;
    timeout(e)?;
    retry_timeout(e)?;
    connect_timeout(e)?;
    password(e)?;
    connections(e)?;
    max_pending_replies(e)?;
    max_pending_bytes(e)?;
    max_dedicated(e)?;
    Ok(())
}

/// The backend's url, as written: one address, or a cluster's seeds.
pub(super) fn url<'a>(e: &Entry<'a>) -> Result<&'a str, String> {
    e.raw
        .url
        .as_deref()
        .ok_or_else(|| format!("{}: key 'url' is missing", e.ctx))
}

/// `mode`: smart (or async, as the original said) rather than sync.
pub(super) fn smart_mode(e: &Entry) -> Result<bool, String> {
    match e.raw.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("sync") => Ok(false),
        Some("smart") | Some("async") => Ok(true),
        Some(other) => Err(format!(
            "{}: unknown mode '{other}': use sync or smart",
            e.key("mode")
        )),
    }
}

/// `asyncCommands`: names added to smart mode's background table.
pub(super) fn async_commands(e: &Entry) -> Vec<String> {
    e.raw
        .async_commands
        .clone()
        .map(Names::into_vec)
        .unwrap_or_default()
}

fn timeout(e: &Entry) -> Result<Option<Duration>, String> {
    let s = e.seconds(e.raw.timeout, 30.0, "timeout")?;
    Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
}

fn retry_timeout(e: &Entry) -> Result<Duration, String> {
    let s = e.seconds(e.raw.retry_timeout, 60.0, "retrytimeout")?;
    if s == 0.0 {
        return Err(format!(
            "{}: {s} is not allowed: a number of seconds more than 0",
            e.key("retrytimeout")
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

fn connect_timeout(e: &Entry) -> Result<Duration, String> {
    let s = e.seconds(e.raw.connect_timeout, 5.0, "connecttimeout")?;
    if s == 0.0 {
        return Err(format!("{}: must be more than 0", e.key("connecttimeout")));
    }
    Ok(Duration::from_secs_f64(s))
}

fn password(e: &Entry) -> Result<Option<Password>, String> {
    match e.raw.password.as_deref() {
        None => Ok(None),
        Some("") => Err(format!(
            "{}: must not be empty (leave it out for no password)",
            e.key("password")
        )),
        Some(p) => Ok(Some(Password::new(p))),
    }
}

fn connections(e: &Entry) -> Result<usize, String> {
    // 0 meant "unset" in the original, where redis relayers ignored the key.
    e.count(e.raw.max_connections, 1, "maxconnections", true)
}

fn max_pending_replies(e: &Entry) -> Result<usize, String> {
    e.count(e.raw.max_pending_replies, 1024, "maxpendingreplies", false)
}

fn max_pending_bytes(e: &Entry) -> Result<u64, String> {
    Ok(e.count(e.raw.max_pending_bytes, 64 << 20, "maxpendingbytes", false)? as u64)
}

fn max_dedicated(e: &Entry) -> Result<usize, String> {
    e.count(
        e.raw.max_dedicated_connections,
        64,
        "maxdedicatedconnections",
        false,
    )
}

/// The original's keys: `compress` (snappy), `gzip = <level>`, and `uncompress` / `gunzip`
/// (decode replies only). Any of them decodes replies of both kinds.
fn compression(e: &Entry, warnings: &mut Vec<String>) -> Result<Option<Compression>, String> {
    let raw = e.raw;
    let on = |b: Option<Bool>| b.is_some_and(|b| b.0);
    let gzip = match raw.gzip.map(|i| i.0) {
        None | Some(0) => None,
        Some(n @ 1..=9) => Some(Codec::Gzip(n as u32)),
        Some(n) => {
            return Err(format!(
                "{}: {n} is not a gzip level: 1 (fastest) to 9 (smallest), or 0 for none",
                e.key("gzip")
            ))
        }
    };
    let snappy = on(raw.compress).then_some(Codec::Snappy);
    if gzip.is_some() && snappy.is_some() {
        // The original checked gzip first: keep its choice, but say so.
        warnings.push(format!(
            "{}: keys '{}' and '{}' are both set: writes are compressed with gzip, as the original did (snappy values are still decoded)",
            e.ctx,
            e.table.spelling("compress"),
            e.table.spelling("gzip")
        ));
    }
    let writes = gzip.or(snappy);
    let decode = writes.is_some() || on(raw.uncompress) || on(raw.gunzip);
    Ok(decode.then_some(Compression { writes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Config, ConfigError, Kind};

    fn compression_of(c: &Config) -> Option<Compression> {
        match &c.relayers[0].kind {
            Kind::Redis(r) => r.settings.compression,
            k => panic!("{k:?}"),
        }
    }

    fn redis_with(extra: &str) -> Result<Config, ConfigError> {
        load_str(&format!(
            "[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\n{extra}\n"
        ))
    }

    #[test]
    fn compression_keys() {
        let c = |extra: &str| compression_of(&redis_with(extra).unwrap());
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
            compression_of(&cfg),
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
}
