//! Reading the relayer's log (its text format): the messages the tests wait for, its records
//! (a record may go on over several lines, e.g. a TOML parse error) and their fields.

use std::collections::HashMap;

/// Logged after each reload that applied, with the counts `added`, `changed`, `removed`,
/// `unchanged`.
pub const RELOADED: &str = "configuration reloaded";
/// Logged when a reload's new file is invalid.
pub const RELOAD_FAILED: &str = "reload failed, configuration unchanged";
/// The stop summary when every write acknowledged early was delivered.
pub const STOPPED_OK: &str = "stopped, every acknowledged write delivered";
/// The stop summary when some were not (with the counts by reason).
pub const STOPPED_LOST: &str = "stopped with acknowledged writes not delivered";
/// The stop summary when every stream line not delivered went to the dead-letter file (none
/// lost), with the count `dead_letter`.
pub const STOPPED_DEAD_LETTER: &str = "stopped, writes not delivered in time written to the dead-letter file";

/// True if `line` starts a log record (text: `Nov 24 17:28:06.718 INFO ...`; JSON: `{...`); other
/// lines continue the record before them (a multi-line error, e.g. a TOML parse error).
pub fn starts_record(line: &str) -> bool {
    let b = line.as_bytes();
    line.starts_with('{')
        || (b.len() > 16
            && b[..3].iter().all(u8::is_ascii_alphabetic)
            && b[3] == b' '
            && b[6] == b' '
            && b[9] == b':')
}

/// The whole record (with its continuation lines) holding the `n`-th (from 0) occurrence of
/// `needle` in `log`.
pub fn nth_record(log: &str, needle: &str, n: usize) -> Option<String> {
    let (pos, _) = log.match_indices(needle).nth(n)?;
    let start = log[..pos].rfind('\n').map_or(0, |i| i + 1);
    let mut out = String::new();
    for (i, line) in log[start..].lines().enumerate() {
        if i > 0 && starts_record(line) {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// The number logged as field `name` in `record`: `name: 2` (text) or `"name":2` (JSON).
pub fn record_field(record: &str, name: &str) -> Option<u64> {
    for (pos, _) in record.match_indices(name) {
        let word_start = record[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        if !word_start {
            continue;
        }
        let rest = record[pos + name.len()..].trim_start_matches('"');
        let Some(rest) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')) else {
            continue;
        };
        let digits: String = rest
            .trim_start()
            .trim_start_matches('"')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
    }
    None
}

/// The fields (`key: value`) of the last line of `log` that contains `msg`, in the relayer's
/// text log format; None when no line does.
pub fn log_fields(log: &str, msg: &str) -> Option<HashMap<String, String>> {
    let line = log.lines().rev().find(|l| l.contains(msg))?;
    let fields = line
        .split(", ")
        .filter_map(|part| {
            let (k, v) = part.split_once(": ")?;
            let k = k.rsplit(' ').next()?;
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    Some(fields)
}

/// What the relayer's stop summary says became of the writes acknowledged early: the fields of
/// its last `stopped` line (`delivered`, `refused`, `refused_by_code`, `unknown`, `expired`,
/// `expired_by_code`, `lost`), and whether it said every one was delivered.
pub fn stop_summary(log: &str) -> (bool, HashMap<String, String>) {
    match (log_fields(log, STOPPED_OK), log_fields(log, STOPPED_LOST)) {
        (Some(f), None) => (true, f),
        (None, Some(f)) => (false, f),
        _ => panic!("expected one stop summary in the log:\n{log}"),
    }
}
