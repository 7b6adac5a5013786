//! The keys of a `protocol = "firehose"` entry, read into the Firehose relay's own settings
//! (`FirehoseConfig`, next to the code that uses them): key names, defaults and errors are the
//! file's business, so they stay here.

use super::raw::{Entry, Float, Int};
use relayer_actors::firehose::buffer::MAX_BOUND as BUFFER_MAX;
use relayer_actors::firehose::config::FirehoseConfig;
use relayer_actors::firehose::record::{Timestamp, MAX_RECORD};
use relayer_actors::firehose::sender::SenderSettings;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn parse(e: &Entry) -> Result<FirehoseConfig, String> {
    let raw = e.raw;
    let key = |k: &str| e.key(k);
    let timeout = e.seconds(raw.timeout, 15.0, "timeout")?;
    let stream = match raw.stream_name.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            return Err(format!(
                "{}: key 'streamName' is missing: the delivery stream to write to",
                e.ctx
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
    Ok(FirehoseConfig {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Config, ConfigError, Kind};

    fn firehose_of(c: &Config) -> &FirehoseConfig {
        match &c.relayers[0].kind {
            Kind::Firehose(f) => f,
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
        assert_eq!(firehose_of(&c).sender.region, None);
        let c = firehose_with("region = \"eu-west-3\"").unwrap();
        assert_eq!(firehose_of(&c).sender.region.as_deref(), Some("eu-west-3"));
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
}
