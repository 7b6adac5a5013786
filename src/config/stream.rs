//! The keys of a stream entry (`protocol = "firehose"`, `"kinesis"` or `"sqs"`), read into the
//! stream relay's own settings (`StreamConfig`, next to the code that uses them): key names,
//! defaults and errors are the file's business, so they stay here.

use super::raw::{Entry, Float, Int};
use relayer_actors::stream::aws::AwsSettings;
use relayer_actors::stream::buffer::MAX_BOUND as BUFFER_MAX;
use relayer_actors::stream::config::{Replies, StreamConfig};
use relayer_actors::stream::firehose::FirehoseSettings;
use relayer_actors::stream::kinesis::{KinesisSettings, PartitionKey};
use relayer_actors::stream::record::Timestamp;
use relayer_actors::stream::service::ServiceSettings;
use relayer_actors::stream::sqs::SqsSettings;
use std::path::PathBuf;
use std::time::Duration;

/// The services, as `protocol` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    Firehose,
    Kinesis,
    Sqs,
}

pub(super) fn parse(e: &Entry, service: Service, warnings: &mut Vec<String>) -> Result<StreamConfig, String> {
    let raw = e.raw;
    let key = |k: &str| e.key(k);
    let timeout = e.seconds(raw.timeout, 15.0, "timeout")?;
    if timeout == 0.0 {
        return Err(format!("{}: a call needs a timeout more than 0", key("timeout")));
    }
    let stream_name = || match raw.stream_name.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!(
            "{}: key 'streamName' is missing: the {} stream to write to",
            e.ctx,
            if service == Service::Firehose {
                "delivery"
            } else {
                "data"
            }
        )),
    };
    // Without the key, aws-config's chain decides when the relayer starts (AWS_REGION, the
    // profile's region, instance metadata), then us-east-1.
    let mut region = match raw.region.as_deref() {
        None => None,
        Some(r) if is_region(r) => Some(r.to_string()),
        Some(r) => return Err(format!("{}: '{r}' is not an AWS region", key("region"))),
    };
    let mut endpoint = match &raw.endpoint {
        None => None,
        Some(u) if url_host(u).is_some() => Some(u.clone()),
        Some(u) => {
            return Err(format!(
                "{}: '{u}' is not an endpoint URL like https://firehose.eu-west-1.amazonaws.com",
                key("endpoint")
            ))
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
        None => None,
        Some(n) if n >= 0 => Some(n as usize),
        Some(n) => return Err(format!("{}: {n} is not allowed: 0 or more", key("maxrecords"))),
    };
    // Entries a call: `maxRecords` where it counts them (0 is the default, as the original
    // read it), within the service's limit.
    let mut per_call = |limit: usize| -> usize {
        match max_records {
            None | Some(0) => limit,
            Some(n) if n > limit => {
                warnings.push(format!(
                    "{}: {n} is over the service's {limit} entries a call: {limit} are sent",
                    key("maxrecords")
                ));
                limit
            }
            Some(n) => n,
        }
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
    let replies = match raw.replies.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("redis") => Replies::Redis,
        Some("original") => Replies::Original,
        Some(other) => {
            return Err(format!(
                "{}: '{other}' is not a way to reply: use \"redis\" (+QUEUED, EXEC's array) or \"original\" (+OK)",
                key("replies")
            ))
        }
    };
    let profile = raw.profile.clone().filter(|p| !p.is_empty());
    let timeout = Duration::from_secs_f64(timeout);
    let aws = |region, endpoint| AwsSettings {
        region,
        profile: profile.clone(),
        endpoint,
        timeout,
    };
    // Lines an entry, entries a call, calls in flight by default.
    let (service, max_lines, max_entries, calls) = match service {
        Service::Firehose => {
            let limit = relayer_actors::stream::firehose::LIMITS.call_entries;
            // `concat` is the later original's: with it, `maxRecords` counts records a call and
            // lines go one a record, or as many as fit one (`concat = true`); without it,
            // `maxRecords` is the first original's, lines a record.
            let (lines, entries) = match raw.concat.map(|b| b.0) {
                None => (max_records.unwrap_or(1).max(1), limit),
                Some(false) => (1, per_call(limit)),
                Some(true) => (usize::MAX, per_call(limit)),
            };
            let f = FirehoseSettings {
                stream: stream_name()?,
                aws: aws(region, endpoint),
            };
            (ServiceSettings::Firehose(f), lines, entries, 2)
        }
        Service::Kinesis => {
            let partition_key = match raw.partition_key.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("hash") => PartitionKey::Hash,
                Some("random") => PartitionKey::Random,
                Some("key") => PartitionKey::Key,
                Some(other) => {
                    return Err(format!(
                        "{}: '{other}' is not a partition key source: use \"hash\" (of the record), \"random\" or \"key\" (the Redis key)",
                        key("partitionkey")
                    ))
                }
            };
            let entries = per_call(relayer_actors::stream::kinesis::LIMITS.call_entries);
            let k = KinesisSettings {
                stream: stream_name()?,
                partition_key,
                aws: aws(region, endpoint),
            };
            (ServiceSettings::Kinesis(k), 1, entries, 2)
        }
        Service::Sqs => {
            let url = raw.url.as_deref().map(str::trim).unwrap_or("");
            let Some(host) = url_host(url) else {
                return Err(format!(
                    "{}: the queue URL, like https://sqs.eu-west-1.amazonaws.com/123456789012/queue, is {}",
                    key("url"),
                    if url.is_empty() {
                        "missing".to_string()
                    } else {
                        format!("not '{url}'")
                    }
                ));
            };
            // The queue URL says where the queue is: its region (AWS' hosts), or the endpoint
            // itself (anything else: a VPC endpoint, a test server).
            match host
                .strip_prefix("sqs.")
                .and_then(|h| h.strip_suffix(".amazonaws.com"))
            {
                Some(r) if is_region(r) => {
                    region = region.or_else(|| Some(r.to_string()));
                }
                _ => {
                    let scheme_end = url.find("://").map_or(0, |i| i + 3);
                    endpoint = endpoint.or_else(|| Some(url[..scheme_end + host.len()].to_string()));
                }
            }
            let group = match raw.group_id.as_deref() {
                Some(g) if !g.is_empty() => g.to_string(),
                _ => default_group(raw.listen.as_deref().unwrap_or("")),
            };
            if !(1..=128).contains(&group.len()) || !group.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "{}: '{group}' is not a message group: 1 to 128 printable ASCII characters",
                    key("groupid")
                ));
            }
            let entries = per_call(relayer_actors::stream::sqs::LIMITS.call_entries);
            let q = SqsSettings {
                url: url.to_string(),
                group,
                aws: aws(region, endpoint),
            };
            (ServiceSettings::Sqs(q), 1, entries, 1)
        }
    };
    let line = service.limits().line;
    let ignore = raw
        .ignore_commands
        .clone()
        .map(|n| n.into_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Ok(StreamConfig {
        max_lines,
        max_entries,
        max_calls: at_least_one(raw.max_connections, calls, "maxconnections")?,
        flush_interval: positive_seconds(raw.flush_interval, 1.0, "flushinterval")?,
        buffer: at_least_one(raw.buffer, 10240, "buffer")?,
        // At least one line of the largest size, or a critical client would wait forever.
        buffer_bytes: at_least(raw.buffer_bytes, 64 << 20, line, "bufferbytes")?,
        critical: raw.critical.is_some_and(|b| b.0),
        retry_timeout: positive_seconds(raw.retry_timeout, 300.0, "retrytimeout")?,
        dead_letter: raw
            .dead_letter_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        timestamp,
        ignore,
        replies,
        service,
    })
}

fn is_region(r: &str) -> bool {
    !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// The host (and port) of an http(s) URL, if it is one.
fn url_host(u: &str) -> Option<&str> {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some(host)
}

/// The original's default message group: the listen address's host and port, or its path.
fn default_group(listen: &str) -> String {
    let rest = listen.split_once("://").map_or(listen, |(_, r)| r);
    let rest = rest.strip_prefix("unix:").unwrap_or(rest);
    let group: String = rest.chars().filter(|c| c.is_ascii_graphic()).take(128).collect();
    if group.is_empty() {
        "smart-relayer".to_string()
    } else {
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Config, ConfigError, Kind};
    use relayer_actors::stream::service::ServiceSettings;

    fn firehose_of(c: &Config) -> &StreamConfig {
        match &c.relayers[0].kind {
            Kind::Stream(f) => f,
            k => panic!("{k:?}"),
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
        assert_eq!(firehose_of(&c).service.aws().region, None);
        let c = firehose_with("region = \"eu-west-3\"").unwrap();
        assert_eq!(firehose_of(&c).service.aws().region.as_deref(), Some("eu-west-3"));
        let e = firehose_with("region = \"\"").unwrap_err().0;
        assert!(e.contains("'region'"), "{e}");
    }

    #[test]
    fn firehose_buffer_bounds() {
        let f = |c: Config| firehose_of(&c).clone();
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

    fn entry(protocol: &str, extra: &str) -> Result<Config, ConfigError> {
        load_str(&format!(
            "[[relayer]]\nprotocol = \"{protocol}\"\nlisten = \"tcp://127.0.0.1:7000\"\n{extra}\n"
        ))
    }

    fn stream_of(c: &Config) -> &StreamConfig {
        firehose_of(c)
    }

    #[test]
    fn kinesis_keys() {
        let c = entry("kinesis", "streamName = \"k\"").unwrap();
        let k = stream_of(&c);
        assert_eq!((k.max_lines, k.max_entries, k.max_calls), (1, 500, 2));
        assert!(!k.service.ordered(), "the hash keeps no order");
        let c = entry("kinesis", "streamName = \"k\"\npartitionKey = \"KEY\"").unwrap();
        assert!(stream_of(&c).service.ordered());
        let e = entry("kinesis", "streamName = \"k\"\npartition_key = \"shard\"")
            .unwrap_err()
            .0;
        assert!(
            e.contains("key 'partition_key': 'shard' is not a partition key source"),
            "{e}"
        );
        let e = entry("kinesis", "").unwrap_err().0;
        assert!(e.contains("key 'streamName' is missing: the data stream"), "{e}");
        let c = entry("kinesis", "streamName = \"k\"\nmaxRecords = 900").unwrap();
        assert_eq!(stream_of(&c).max_entries, 500);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("900 is over the service's 500")),
            "{:?}",
            c.warnings
        );
        let c = entry("kinesis", "streamName = \"k\"\nconcat = true\ngroupID = \"g\"").unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.ends_with("keys not used by this version: groupID, concat")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn sqs_keys() {
        let e = entry("sqs", "").unwrap_err().0;
        assert!(
            e.contains("key 'url': the queue URL") && e.contains("is missing"),
            "{e}"
        );
        let e = entry("sqs", "url = \"sqs://q\"").unwrap_err().0;
        assert!(e.contains("is not 'sqs://q'"), "{e}");
        // Not AWS' host: the URL is the endpoint too; the group defaults to the listen address.
        let c = entry("sqs", "url = \"http://127.0.0.1:4566/000000000000/q.fifo\"").unwrap();
        let q = stream_of(&c);
        match &q.service {
            ServiceSettings::Sqs(s) => {
                assert_eq!(s.aws.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
                assert_eq!(s.aws.region, None);
                assert_eq!(s.group, "127.0.0.1:7000");
                assert!(s.fifo());
            }
            s => panic!("{s:?}"),
        }
        assert_eq!((q.max_entries, q.max_calls), (10, 1));
        let c = entry(
            "sqs",
            "url = \"https://sqs.ap-south-1.amazonaws.com/1/q\"\nmaxRecords = 11\nregion = \"eu-west-1\"",
        )
        .unwrap();
        match &stream_of(&c).service {
            ServiceSettings::Sqs(s) => {
                assert_eq!(s.aws.region.as_deref(), Some("eu-west-1"), "the key wins");
                assert!(!s.fifo());
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(stream_of(&c).max_entries, 10);
        let e = entry(
            "sqs",
            "url = \"https://sqs.eu-west-1.amazonaws.com/1/q.fifo\"\ngroupID = \"a b\"",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("'a b' is not a message group"), "{e}");
        let c = entry(
            "sqs",
            "url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\nstreamName = \"s\"\npartitionKey = \"key\"",
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.ends_with("keys not used by this version: streamName, partitionKey")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn replies_ignore_commands_and_concat() {
        let c = firehose_with("replies = \"Original\"\nignoreCommands = [\"get\", \"Set\"]").unwrap();
        let f = stream_of(&c);
        assert_eq!(
            (f.replies, f.ignore.clone()),
            (Replies::Original, vec!["GET".to_string(), "SET".to_string()])
        );
        let e = firehose_with("replies = \"json\"").unwrap_err().0;
        assert!(e.contains("key 'replies': 'json' is not a way to reply"), "{e}");
        // maxRecords: lines a record without concat, records a call with it.
        let f = |extra: &str| {
            let c = firehose_with(extra).unwrap();
            let s = stream_of(&c);
            (s.max_lines, s.max_entries)
        };
        assert_eq!(f("maxRecords = 100"), (100, 500));
        assert_eq!(f("maxRecords = 100\nconcat = false"), (1, 100));
        assert_eq!(f("maxRecords = 100\nconcat = true"), (usize::MAX, 100));
        assert_eq!(f("concat = true"), (usize::MAX, 500));
        let c = load_str("[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://:1\"\nurl = \"tcp://h:2\"\nreplies = \"original\"\nignoreCommands = \"GET\"\n").unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.ends_with("keys not used by this version: ignoreCommands, replies")),
            "{:?}",
            c.warnings
        );
    }
}
