//! The table of differences the test holds: the section `## Held by the differential test` of
//! docs/differences.md. A row is `| modes | family | command | Redis | relayer | why |`; the
//! modes are a comma-separated list (the row holds for each), the other cells but `why` are
//! code spans written by `show`, so that the test compares them exactly.

use integration::workspace_dir;
use std::collections::{BTreeMap, BTreeSet};

pub const SECTION: &str = "## Held by the differential test";
const HEADER: &str = "| modes | family | command | Redis | relayer | why |\n|---|---|---|---|---|---|\n";
/// Longer replies are cut in the table (and compared cut).
const CELL: usize = 120;

/// A difference: what one command got from Redis and through the relayer in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub mode: String,
    pub family: String,
    /// The script line, with ` (#n)` for the n-th time the same line appears in its family.
    pub command: String,
    pub redis: String,
    pub relayer: String,
}

impl Diff {
    pub fn new(mode: &str, family: &str, command: &str, redis: &[u8], relayer: &[u8]) -> Diff {
        Diff {
            mode: mode.into(),
            family: family.into(),
            command: show(command.as_bytes(), usize::MAX),
            redis: show(redis, CELL),
            relayer: show(relayer, CELL),
        }
    }
    fn key(&self) -> (String, String, String) {
        (self.mode.clone(), self.family.clone(), self.command.clone())
    }
}

/// Bytes as the text of a code span in a table cell: printable ASCII as is but for `\`, `|` and
/// the backtick; \r, \n, and everything else escaped (`\r`, `\n`, `\xHH`); cut after `max`
/// characters with `...`.
pub fn show(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            b'|' | b'`' => s.push_str(&format!("\\x{c:02x}")),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
        if s.len() > max {
            s.push_str("...");
            break;
        }
    }
    s
}

/// A row of the table (`modes` expanded).
#[derive(Debug, Clone)]
pub struct Row {
    pub modes: Vec<String>,
    pub diff: Diff,
    pub why: String,
}

/// The rows of the section in docs/differences.md.
pub fn documented() -> Vec<Row> {
    let path = workspace_dir().join("docs/differences.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    let start = text
        .find(&format!("\n{SECTION}\n"))
        .ok_or_else(|| format!("no section '{SECTION}'"))?;
    let mut rows = Vec::new();
    for line in text[start + 1..].lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        if !line.starts_with('|') || line.starts_with("| modes ") || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, modes, family, command, redis, relayer, why, _] = cells[..] else {
            return Err(format!("a row without 6 cells: {line}"));
        };
        let code = |c: &str| -> Result<String, String> {
            c.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .map(str::to_string)
                .ok_or_else(|| format!("not a code span: {c} in {line}"))
        };
        rows.push(Row {
            modes: modes.split(',').map(|m| m.trim().to_string()).collect(),
            diff: Diff {
                mode: String::new(),
                family: family.to_string(),
                command: code(command)?,
                redis: code(redis)?,
                relayer: code(relayer)?,
            },
            why: why.to_string(),
        });
    }
    Ok(rows)
}

/// Checks the differences found in `modes` against the rows documented for those modes; Err:
/// what does not match, and the whole section's table with the rows of `modes` made again
/// from what was found (their `why` kept, `TODO` for new ones) to paste in its place.
pub fn check(
    found: &[Diff],
    modes: &[&str],
    rows: &[Row],
    order: &dyn Fn(&Diff) -> usize,
) -> Result<(), String> {
    let mut listed: BTreeMap<(String, String, String), (&Diff, &str)> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in rows {
        if row.why.is_empty() || row.why.starts_with("TODO") {
            problems.push(format!(
                "a row without its why: {} {}",
                row.diff.family, row.diff.command
            ));
        }
        for m in row.modes.iter().filter(|m| modes.contains(&m.as_str())) {
            let mut d = row.diff.clone();
            d.mode = m.clone();
            if listed.insert(d.key(), (&row.diff, &row.why)).is_some() {
                problems.push(format!("listed twice: {m} {} {}", d.family, d.command));
            }
        }
    }
    let found_keys: BTreeSet<_> = found.iter().map(Diff::key).collect();
    for d in found {
        match listed.get(&d.key()) {
            None => problems.push(format!(
                "not listed: {} {} `{}`: Redis `{}`, relayer `{}`",
                d.mode, d.family, d.command, d.redis, d.relayer
            )),
            Some((l, _)) if l.redis != d.redis || l.relayer != d.relayer => problems.push(format!(
                "replies changed: {} {} `{}`: Redis `{}` (listed `{}`), relayer `{}` (listed `{}`)",
                d.mode, d.family, d.command, d.redis, l.redis, d.relayer, l.relayer
            )),
            Some(_) => {}
        }
    }
    for (key, (l, _)) in &listed {
        if !found_keys.contains(key) {
            problems.push(format!(
                "listed but no longer differs: {} {} `{}` (listed: Redis `{}`, relayer `{}`)",
                key.0, key.1, key.2, l.redis, l.relayer
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let whys: BTreeMap<_, _> = listed
        .iter()
        .map(|(k, (_, why))| (k.clone(), why.to_string()))
        .collect();
    let mut all: Vec<(Diff, String)> = found
        .iter()
        .map(|d| {
            let why = whys.get(&d.key()).cloned().unwrap_or_else(|| "TODO: why".into());
            (d.clone(), why)
        })
        .collect();
    for row in rows {
        for m in row.modes.iter().filter(|m| !modes.contains(&m.as_str())) {
            let mut d = row.diff.clone();
            d.mode = m.clone();
            all.push((d, row.why.clone()));
        }
    }
    Err(format!(
        "{} problem(s) with the table of docs/differences.md, section '{SECTION}':\n{}\n\n\
         The table with the rows of {modes:?} as found (paste it in place of the section's):\n\n{}",
        problems.len(),
        problems.join("\n"),
        render(all, order)
    ))
}

/// The table: rows that differ only by mode merged into one, in script order.
pub fn render(mut all: Vec<(Diff, String)>, order: &dyn Fn(&Diff) -> usize) -> String {
    const MODES: &[&str] = &[
        "sync",
        "smart",
        "sync3",
        "smart3",
        "cluster-sync",
        "cluster-smart",
        "cluster-sync3",
        "cluster-smart3",
    ];
    let mode_rank = |m: &str| MODES.iter().position(|x| *x == m).unwrap_or(MODES.len());
    all.sort_by_key(|(d, _)| (order(d), mode_rank(&d.mode)));
    let mut merged: Vec<(Vec<String>, Diff, String)> = Vec::new();
    for (d, why) in all {
        let same = merged.iter_mut().find(|(_, m, w)| {
            m.family == d.family
                && m.command == d.command
                && m.redis == d.redis
                && m.relayer == d.relayer
                && *w == why
        });
        match same {
            Some((modes, _, _)) => modes.push(d.mode.clone()),
            None => merged.push((vec![d.mode.clone()], d, why)),
        }
    }
    let mut out = HEADER.to_string();
    for (modes, d, why) in merged {
        out.push_str(&format!(
            "| {} | {} | `{}` | `{}` | `{}` | {why} |\n",
            modes.join(", "),
            d.family,
            d.command,
            d.redis,
            d.relayer
        ));
    }
    out
}

#[test]
fn a_table_reads_back_as_written() {
    let d = |mode: &str, redis: &[u8]| Diff::new(mode, "hashes", "HSET h a|b `c`", redis, b":1\r\n");
    let rows = vec![
        (d("smart", b":2\r\n"), "acknowledged".to_string()),
        (d("cluster-smart", b":2\r\n"), "acknowledged".to_string()),
        (d("sync", b"-ERR \\ x\r\n"), "other".to_string()),
    ];
    let text = format!(
        "# x\n\n{SECTION}\n\n{}\n## Next\n| a | b |\n",
        render(rows, &|_| 0)
    );
    let back = parse(&text).unwrap();
    assert_eq!(back.len(), 2, "{text}");
    // Rows of one command sort by mode; those that differ only by mode are one.
    assert_eq!(back[0].modes, ["sync"]);
    assert_eq!(back[0].diff.redis, "-ERR \\\\ x\\r\\n");
    assert_eq!(back[1].modes, ["smart", "cluster-smart"]);
    assert_eq!(back[1].diff.command, "HSET h a\\x7cb \\x60c\\x60");
    let found = [d("smart", b":2\r\n")];
    assert!(
        check(&found, &["smart", "sync"], &back, &|_| 0).is_err(),
        "sync no longer differs"
    );
    let found = [d("smart", b":2\r\n"), d("sync", b"-ERR \\ x\r\n")];
    assert!(check(&found, &["smart", "sync"], &back, &|_| 0).is_ok());
    let found = [d("smart", b":3\r\n"), d("sync", b"-ERR \\ x\r\n")];
    assert!(
        check(&found, &["smart", "sync"], &back, &|_| 0).is_err(),
        "a reply changed"
    );
    let other = Diff::new("sync", "hashes", "HGET h a", b"$1\r\n1\r\n", b"$-1\r\n");
    let found = [d("smart", b":2\r\n"), d("sync", b"-ERR \\ x\r\n"), other];
    assert!(
        check(&found, &["smart", "sync"], &back, &|_| 0).is_err(),
        "not listed"
    );
    assert_eq!(show(&[b'a'; 10], 4), "aaaaa...");
}
