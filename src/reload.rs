//! What applying a configuration changes, entry by entry (by `listen`), from what runs. A pure
//! function, so that the rules are decided, and tested, in one place: the supervisor binds,
//! sends and logs accordingly, and the workers start, replace and remove what it says.

use crate::config::{Config, Relayer};
use relayer_actors::endpoint::ListenAddr;
use relayer_actors::resp::request::Limits;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// What runs: the entries started, by listen, and the global values they were started with.
#[derive(Debug, Clone)]
pub struct Running {
    pub relayers: HashMap<String, Relayer>,
    pub limits: Limits,
    pub workers: usize,
}

impl Running {
    /// Nothing yet, with `config`'s global values: the diff from it starts every entry.
    pub fn nothing(config: &Config) -> Running {
        Running {
            relayers: HashMap::new(),
            limits: config.limits,
            workers: config.workers,
        }
    }
}

#[derive(Debug, Default)]
pub struct Changes {
    /// Entries whose listen does not run: to bind and start. In file order.
    pub added: Vec<Relayer>,
    /// Entries running with other values, or every entry running when a global request limit
    /// changed (their sessions read the limits): a new backend behind the same listener and
    /// clients. In file order.
    pub changed: Vec<Changed>,
    /// Listens of the entries running with the same values: left alone. In file order.
    pub unchanged: Vec<String>,
    /// Listens running that the file no longer has (or has with a protocol not relayed):
    /// they stop. Sorted.
    pub removed: Vec<String>,
    /// `workers` is read at start only: what the file asks for, when it is not what runs.
    pub workers_ignored: Option<usize>,
}

#[derive(Debug)]
pub struct Changed {
    pub relayer: Relayer,
    /// The unix socket file whose permission bits or group change (the socket stays bound).
    pub chmod: Option<PathBuf>,
}

/// What applying `new` changes in what runs.
pub fn diff(running: &Running, new: &Config) -> Changes {
    let limits_changed = new.limits != running.limits;
    let mut changes = Changes {
        workers_ignored: (new.workers != running.workers).then_some(new.workers),
        ..Changes::default()
    };
    for r in &new.relayers {
        match running.relayers.get(&r.listen_key) {
            None => changes.added.push(r.clone()),
            Some(old) if *old == *r && !limits_changed => changes.unchanged.push(r.listen_key.clone()),
            Some(old) => changes.changed.push(Changed {
                relayer: r.clone(),
                chmod: match &r.listen {
                    ListenAddr::Unix(path) if r.unix_access != old.unix_access => Some(path.clone()),
                    _ => None,
                },
            }),
        }
    }
    let wanted: HashSet<&str> = new.relayers.iter().map(|r| r.listen_key.as_str()).collect();
    changes.removed = running
        .relayers
        .keys()
        .filter(|k| !wanted.contains(k.as_str()))
        .cloned()
        .collect();
    changes.removed.sort();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config(s: &str) -> Config {
        load_str(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    /// What runs once `s` is applied with every listener bound.
    fn running(s: &str) -> Running {
        let c = config(s);
        Running {
            relayers: c
                .relayers
                .iter()
                .map(|r| (r.listen_key.clone(), r.clone()))
                .collect(),
            limits: c.limits,
            workers: c.workers,
        }
    }

    fn redis(listen: &str, extra: &str) -> String {
        format!("[[relayer]]\nprotocol = \"redis\"\nlisten = \"{listen}\"\nurl = \"tcp://h:6379\"\n{extra}\n")
    }

    fn cluster(listen: &str, extra: &str) -> String {
        format!(
            "[[relayer]]\nprotocol = \"redis-cluster\"\nlisten = \"{listen}\"\nurl = \"tcp://h:7000 tcp://h:7001\"\n{extra}\n"
        )
    }

    fn firehose(listen: &str, extra: &str) -> String {
        format!("[[relayer]]\nprotocol = \"firehose\"\nlisten = \"{listen}\"\nstreamName = \"s\"\n{extra}\n")
    }

    fn kinesis(listen: &str, extra: &str) -> String {
        format!("[[relayer]]\nprotocol = \"kinesis\"\nlisten = \"{listen}\"\nstreamName = \"s\"\n{extra}\n")
    }

    fn sqs(listen: &str, extra: &str) -> String {
        format!(
            "[[relayer]]\nprotocol = \"sqs\"\nlisten = \"{listen}\"\nurl = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\n{extra}\n"
        )
    }

    /// (added, changed, unchanged, removed), each by listen.
    type Keys = [&'static [&'static str]; 4];

    fn keys(c: &Changes) -> [Vec<&str>; 4] {
        [
            c.added.iter().map(|r| r.listen_key.as_str()).collect(),
            c.changed.iter().map(|c| c.relayer.listen_key.as_str()).collect(),
            c.unchanged.iter().map(String::as_str).collect(),
            c.removed.iter().map(String::as_str).collect(),
        ]
    }

    const A: &str = "tcp://:1";
    const B: &str = "tcp://:2";
    const U: &str = "unix:/tmp/reload-test.sock";

    #[test]
    fn entries_by_listen() {
        let a = redis(A, "");
        let b = redis(B, "");
        let none: &[&str] = &[];
        let cases: Vec<(&str, String, String, Keys)> = vec![
            ("the same file", a.clone(), a.clone(), [none, none, &[A], none]),
            (
                "an entry added",
                a.clone(),
                a.clone() + &b,
                [&[B], none, &[A], none],
            ),
            (
                "an entry removed",
                a.clone() + &b,
                b.clone(),
                [none, none, &[B], &[A]],
            ),
            (
                "everything replaced",
                a.clone(),
                b.clone(),
                [&[B], none, none, &[A]],
            ),
            (
                "added in file order",
                String::new(),
                b.clone() + &a,
                [&[B, A], none, none, none],
            ),
            (
                "removed sorted",
                b.clone() + &a,
                String::new(),
                [none, none, none, &[A, B]],
            ),
            (
                "a key spelled otherwise, same value",
                redis(A, "maxConnections = 3"),
                redis(A, "max_connections = 3"),
                [none, none, &[A], none],
            ),
            (
                "a key written with its default value",
                a.clone(),
                redis(A, "maxConnections = 1\ntimeout = 30"),
                [none, none, &[A], none],
            ),
            (
                "a key a redis entry does not use",
                a.clone(),
                redis(A, "streamName = \"s\"\nmaxIdleConnections = 3"),
                [none, none, &[A], none],
            ),
            (
                "asyncCommands in sync mode",
                a.clone(),
                redis(A, "asyncCommands = [\"INCR\"]"),
                [none, none, &[A], none],
            ),
            (
                "now a protocol not relayed: stopped",
                a.clone() + &b,
                a.clone() + &format!("[[relayer]]\nprotocol = \"http\"\nlisten = \"{B}\"\n"),
                [none, none, &[A], &[B]],
            ),
            (
                "a protocol not relayed: never started",
                a.clone(),
                a.clone() + &format!("[[relayer]]\nprotocol = \"redis2kvstore\"\nlisten = \"{B}\"\n"),
                [none, none, &[A], none],
            ),
            (
                "global keys read at start only",
                a.clone(),
                format!("logFormat = \"json\"\nmetricsListen = \"127.0.0.1:9121\"\nworkers = 4\n{a}"),
                [none, none, &[A], none],
            ),
        ];
        for (what, old, new, want) in cases {
            let got = diff(&running(&old), &config(&new));
            assert_eq!(keys(&got), want.map(|k| k.to_vec()), "{what}");
        }
    }

    /// Each kind of key makes its entry changed, and only it.
    #[test]
    fn a_value_changed_changes_its_entry() {
        let cases: Vec<(&str, String, String)> = vec![
            ("url", redis(A, ""), redis(A, "").replace("h:6379", "h:6380")),
            (
                "url's db",
                redis(A, ""),
                redis(A, "").replace("tcp://h:6379", "redis://h:6379/2"),
            ),
            ("mode", redis(A, ""), redis(A, "mode = \"smart\"")),
            (
                "asyncCommands in smart mode",
                redis(A, "mode = \"smart\""),
                redis(A, "mode = \"smart\"\nasyncCommands = \"INCR\""),
            ),
            ("maxConnections", redis(A, ""), redis(A, "maxConnections = 2")),
            ("timeout", redis(A, ""), redis(A, "timeout = 0")),
            ("connectTimeout", redis(A, ""), redis(A, "connectTimeout = 1")),
            (
                "maxPendingReplies",
                redis(A, ""),
                redis(A, "maxPendingReplies = 5"),
            ),
            ("maxPendingBytes", redis(A, ""), redis(A, "maxPendingBytes = 5")),
            ("retryTimeout", redis(A, ""), redis(A, "retryTimeout = 5")),
            ("password", redis(A, ""), redis(A, "password = \"p\"")),
            (
                "password's value",
                redis(A, "password = \"p\""),
                redis(A, "password = \"q\""),
            ),
            (
                "maxDedicatedConnections",
                redis(A, ""),
                redis(A, "maxDedicatedConnections = 2"),
            ),
            ("compress", redis(A, ""), redis(A, "compress = true")),
            ("gzip level", redis(A, "gzip = 1"), redis(A, "gzip = 2")),
            ("maxClients", redis(A, ""), redis(A, "maxClients = 5")),
            ("drainTimeout", redis(A, ""), redis(A, "drainTimeout = 1")),
            (
                "unixSocketMode, tcp",
                redis(A, ""),
                redis(A, "unixSocketMode = \"0600\""),
            ),
            ("redis to cluster", redis(A, ""), cluster(A, "")),
            ("redis to firehose", redis(A, ""), firehose(A, "")),
            ("firehose to redis", firehose(A, ""), redis(A, "")),
            (
                "cluster seeds",
                cluster(A, ""),
                cluster(A, "").replace(" tcp://h:7001", ""),
            ),
            ("cluster mode", cluster(A, ""), cluster(A, "mode = \"smart\"")),
            (
                "firehose streamName",
                firehose(A, ""),
                firehose(A, "").replace("\"s\"", "\"t\""),
            ),
            ("firehose buffer", firehose(A, ""), firehose(A, "buffer = 5")),
            (
                "firehose maxConnections",
                firehose(A, ""),
                firehose(A, "maxConnections = 5"),
            ),
            ("firehose timeout", firehose(A, ""), firehose(A, "timeout = 5")),
            (
                "firehose retryTimeout",
                firehose(A, ""),
                firehose(A, "retryTimeout = 5"),
            ),
            (
                "firehose critical",
                firehose(A, ""),
                firehose(A, "critical = true"),
            ),
            (
                "firehose timestamp",
                firehose(A, ""),
                firehose(A, "timestamp = \"ms\""),
            ),
            (
                "firehose ignoreCommands",
                firehose(A, ""),
                firehose(A, "ignoreCommands = \"GET\""),
            ),
            (
                "firehose replies",
                firehose(A, ""),
                firehose(A, "replies = \"original\""),
            ),
            ("firehose to kinesis", firehose(A, ""), kinesis(A, "")),
            (
                "kinesis partitionKey",
                kinesis(A, ""),
                kinesis(A, "partitionKey = \"key\""),
            ),
            ("kinesis to sqs", kinesis(A, ""), sqs(A, "")),
            ("sqs groupID", sqs(A, ""), sqs(A, "groupID = \"g\"")),
            ("sqs url", sqs(A, ""), sqs(A, "").replace("/q\"", "/r\"")),
        ];
        for (what, old, new) in cases {
            let other = redis(B, "");
            let got = diff(&running(&(old + &other)), &config(&(new + &other)));
            assert_eq!(keys(&got), [vec![], vec![A], vec![B], vec![]], "{what}");
            assert!(got.changed[0].chmod.is_none(), "{what}");
        }
    }

    #[test]
    fn a_global_limit_changes_every_entry() {
        let entries = redis(A, "") + &firehose(B, "");
        for global in [
            "maxBulkLength = 1000",
            "maxArguments = 10",
            "maxInlineLength = 100",
            "queryBufferLimit = 2097152",
        ] {
            let got = diff(&running(&entries), &config(&format!("{global}\n{entries}")));
            assert_eq!(keys(&got), [vec![], vec![A, B], vec![], vec![]], "{global}");
        }
        // Back to the defaults: a change too.
        let got = diff(
            &running(&format!("maxArguments = 10\n{entries}")),
            &config(&entries),
        );
        assert_eq!(keys(&got), [vec![], vec![A, B], vec![], vec![]]);
    }

    #[test]
    fn unix_socket_access_changed() {
        let group = |g: &str| format!("unixSocketGroup = \"{g}\"");
        for (what, old, new) in [
            ("mode", "", "unixSocketMode = \"0600\""),
            (
                "mode as TOML octal",
                "unixSocketMode = 0o660",
                "unixSocketMode = 0o666",
            ),
            ("group", "", group("0").as_str()),
        ] {
            let got = diff(&running(&redis(U, old)), &config(&redis(U, new)));
            assert_eq!(keys(&got), [vec![], vec![U], vec![], vec![]], "{what}");
            assert_eq!(
                got.changed[0].chmod.as_deref(),
                Some(std::path::Path::new("/tmp/reload-test.sock")),
                "{what}"
            );
        }
        // Changed for another reason: the socket file keeps its permissions.
        let got = diff(&running(&redis(U, "")), &config(&redis(U, "maxClients = 3")));
        assert_eq!(keys(&got), [vec![], vec![U], vec![], vec![]]);
        assert!(got.changed[0].chmod.is_none());
        // Written otherwise, the same bits: unchanged.
        let got = diff(
            &running(&redis(U, "unixSocketMode = \"0660\"")),
            &config(&redis(U, "unixSocketMode = 0o660")),
        );
        assert_eq!(keys(&got), [vec![], vec![], vec![U], vec![]]);
    }

    #[test]
    fn workers_are_read_at_start_only() {
        let a = redis(A, "");
        let got = diff(&running(&a), &config(&format!("workers = 3\n{a}")));
        assert_eq!(got.workers_ignored, Some(3));
        assert_eq!(keys(&got), [vec![], vec![], vec![A], vec![]]);
        let got = diff(
            &running(&format!("workers = 3\n{a}")),
            &config(&format!("workers = 3\n{a}")),
        );
        assert_eq!(got.workers_ignored, None);
    }

    #[test]
    fn from_nothing_every_entry_is_added() {
        let c = config(&(redis(A, "") + &firehose(B, "") + &cluster(U, "")));
        let got = diff(&Running::nothing(&c), &c);
        assert_eq!(keys(&got), [vec![A, B, U], vec![], vec![], vec![]]);
        assert!(got.workers_ignored.is_none());
    }

    /// Keys a Firehose entry does not use (warned as such) do not make it changed.
    #[test]
    fn keys_a_firehose_entry_does_not_use() {
        for extra in [
            "mode = \"smart\"",
            "password = \"p\"",
            "connectTimeout = 1",
            "maxPendingReplies = 5",
            "maxPendingBytes = 5",
            "maxDedicatedConnections = 5",
            "compress = true",
            "url = \"tcp://h:1\"",
        ] {
            let got = diff(&running(&firehose(A, "")), &config(&firehose(A, extra)));
            assert_eq!(keys(&got), [vec![], vec![], vec![A], vec![]], "{extra}");
        }
    }
}
