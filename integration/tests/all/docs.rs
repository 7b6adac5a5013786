//! The documentation stays true to the repository: docs/configuration.md lists exactly the keys
//! of config/reference.toml, each where it applies and with the default the reference writes;
//! links between the documents lead somewhere; the files, types and functions that README.md
//! and docs/ name exist.
//!
//! Files only: no relayer, no redis-server.

use integration::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn read(rel: &str) -> String {
    let path = workspace_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every document under docs/, by path from the workspace root.
fn documents() -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let dir = workspace_dir().join("docs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    docs.extend(names.into_iter().map(|n| format!("docs/{n}")));
    docs
}

/// Where a key of config/reference.toml is: the global keys, then the `[[relayer]]` tables in
/// order (a Redis entry, a Firehose, a Kinesis and an SQS entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Global,
    Redis,
    Firehose,
    Kinesis,
    Sqs,
}

/// The keys of config/reference.toml by scope, each with its value when the line is not
/// commented out (`key = value` sets a default; `# key = value` is an example of a key with
/// none).
fn reference_keys() -> BTreeMap<Scope, BTreeMap<String, Option<String>>> {
    let text = read("config/reference.toml");
    let mut keys: BTreeMap<Scope, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let mut scope = Scope::Global;
    for line in text.lines() {
        if line.trim() == "[[relayer]]" {
            scope = match scope {
                Scope::Global => Scope::Redis,
                Scope::Redis => Scope::Firehose,
                Scope::Firehose => Scope::Kinesis,
                Scope::Kinesis | Scope::Sqs => Scope::Sqs,
            };
            continue;
        }
        let (commented, rest) = match line.strip_prefix('#') {
            Some(r) => (true, r.trim_start()),
            None => (false, line),
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let key = key.trim_end();
        let is_key = key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_key {
            continue;
        }
        // The value, without a comment after it (no value of the reference holds a '#').
        let value = value.split(" #").next().unwrap_or(value).trim().to_string();
        let previous = keys
            .entry(scope)
            .or_default()
            .insert(key.to_string(), (!commented).then_some(value));
        assert!(
            previous.is_none(),
            "config/reference.toml: '{key}' twice in {scope:?}"
        );
    }
    keys
}

/// A row of a key table of docs/configuration.md: the section it is under, and its default.
#[derive(Debug)]
struct DocKey {
    section: String,
    default: String,
}

/// The key tables of docs/configuration.md, by the `## ` heading they are under: rows whose
/// first cell holds the key names in backticks.
fn documented_keys() -> BTreeMap<String, Vec<DocKey>> {
    let text = read("docs/configuration.md");
    let mut keys: BTreeMap<String, Vec<DocKey>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.to_string();
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 3 || cells[0] == "key" || cells[0].starts_with("---") {
            continue;
        }
        for name in cells[0].split(',').map(str::trim) {
            let key = name
                .strip_prefix('`')
                .and_then(|n| n.strip_suffix('`'))
                .unwrap_or_else(|| panic!("docs/configuration.md: a key table's first cell: {line}"));
            keys.entry(key.to_string()).or_default().push(DocKey {
                section: section.clone(),
                default: cells[1].to_string(),
            });
        }
    }
    keys
}

/// The scopes of config/reference.toml whose keys a section of docs/configuration.md lists.
fn scopes_of(section: &str) -> &'static [Scope] {
    match section {
        "Global keys" => &[Scope::Global],
        "Every entry" => &[Scope::Redis, Scope::Firehose, Scope::Kinesis, Scope::Sqs],
        "Redis and Redis Cluster entries" => &[Scope::Redis],
        "Stream entries" => &[Scope::Firehose, Scope::Kinesis, Scope::Sqs],
        "Firehose entries" => &[Scope::Firehose],
        "Kinesis entries" => &[Scope::Kinesis],
        "SQS entries" => &[Scope::Sqs],
        other => panic!("docs/configuration.md: a key table under '{other}', which no scope maps to"),
    }
}

#[test]
fn the_configuration_reference_lists_the_keys_of_reference_toml() {
    let reference = reference_keys();
    let documented = documented_keys();
    assert!(
        reference.len() == 5,
        "config/reference.toml: {:?}",
        reference.keys()
    );
    let mut problems = vec![];
    // Every key of the reference is in a table that covers its scope.
    for (scope, keys) in &reference {
        for key in keys.keys() {
            let here = documented
                .get(key)
                .is_some_and(|rows| rows.iter().any(|r| scopes_of(&r.section).contains(scope)));
            if !here {
                problems.push(format!("{key} ({scope:?}) is not in docs/configuration.md"));
            }
        }
    }
    // Every key documented is in the reference, in the scope of its table, and its default is
    // the value the reference sets ("required" and "—" for the keys without one).
    for (key, rows) in &documented {
        for row in rows {
            let scopes = scopes_of(&row.section);
            let set: Vec<(Scope, &Option<String>)> = scopes
                .iter()
                .filter_map(|s| reference.get(s).and_then(|k| k.get(key)).map(|v| (*s, v)))
                .collect();
            if set.is_empty() {
                problems.push(format!(
                    "{key}, under '{}', is not in config/reference.toml there",
                    row.section
                ));
                continue;
            }
            // A key of every entry takes its default from the first entry that sets one.
            let Some((scope, value)) = set.iter().find_map(|(s, v)| v.as_ref().map(|v| (s, v))) else {
                if !row.default.starts_with('—') {
                    problems.push(format!(
                        "{key}: config/reference.toml sets no default, the doc says {:?}",
                        row.default
                    ));
                }
                continue;
            };
            if row.default == "required" {
                continue;
            }
            if !row.default.contains(&format!("`{value}`")) {
                problems.push(format!(
                    "{key}: the default is `{value}` in config/reference.toml ({scope:?}), the doc says {:?}",
                    row.default
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of `text` outside its code blocks (their fences left out too).
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    text.lines().filter(move |line| {
        if line.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose_lines(text)
        .filter(|line| line.starts_with('#'))
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` of `text`, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = vec![];
    for line in prose_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn links_between_documents_lead_somewhere() {
    let root = workspace_dir();
    let mut problems = vec![];
    for doc in documents() {
        let text = read(&doc);
        let dir = Path::new(&doc).parent().unwrap_or(Path::new("")).to_path_buf();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (file, fragment) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target: PathBuf = if file.is_empty() {
                PathBuf::from(&doc)
            } else {
                dir.join(file)
            };
            let path = root.join(&target);
            if !path.exists() {
                problems.push(format!(
                    "{doc}: link to {link}: {} does not exist",
                    target.display()
                ));
                continue;
            }
            if let Some(fragment) = fragment {
                let there = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&there).contains(fragment) {
                    problems.push(format!(
                        "{doc}: link to {link}: no heading '#{fragment}' in {}",
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The spans in backticks of `text`, outside code blocks.
fn code_spans(text: &str) -> Vec<String> {
    let mut out = vec![];
    for line in prose_lines(text) {
        let mut parts = line.split('`');
        parts.next();
        while let (Some(span), Some(_)) = (parts.next(), parts.next()) {
            out.push(span.to_string());
        }
    }
    out
}

/// The top-level directories whose paths the documents name.
const TREES: &[&str] = &[
    "actors/",
    "src/",
    "integration/",
    "config/",
    "examples/",
    "scripts/",
    "docs/",
    ".ci/",
];

#[test]
fn the_files_the_documents_name_exist() {
    let root = workspace_dir();
    let mut problems = vec![];
    for doc in documents() {
        for span in code_spans(&read(&doc)) {
            // A path, possibly followed by arguments (`scripts/run.sh -d`).
            let path = span.split_whitespace().next().unwrap_or("");
            if !TREES.iter().any(|t| path.starts_with(t)) || path.contains(['*', '<', '$']) {
                continue;
            }
            if !root.join(path).exists() {
                problems.push(format!("{doc}: `{span}`: {path} does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every Rust source of the daemon and the actors crate, concatenated.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(&workspace_dir().join("src"), &mut out);
    walk(&workspace_dir().join("actors").join("src"), &mut out);
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `word` appears in `text` as a whole identifier after `before` (e.g. "fn ").
fn defined(text: &str, before: &str, word: &str) -> bool {
    let needle = format!("{before}{word}");
    text.match_indices(&needle).any(|(i, _)| {
        let after = text[i + needle.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Types of the crates the relayer is built on, which docs/architecture.md names too.
const EXTERNAL: &[&str] = &[
    "Addr",
    "Arbiter",
    "Bytes",
    "BytesMut",
    "Context",
    "Decoder",
    "FramedRead",
    "Recipient",
    "StreamHandler",
];

/// docs/architecture.md walks the code by name: every type (`Session`, `Replies::Run`) and
/// function (`on_command()`, `Target::forward_on()`) it names in backticks exists.
#[test]
fn the_code_the_architecture_names_exists() {
    let src = sources();
    let mut problems = vec![];
    let mut checked = 0;
    for span in code_spans(&read("docs/architecture.md")) {
        let span = span
            .strip_suffix("()")
            .map_or((span.as_str(), false), |s| (s, true));
        let (name, call) = span;
        let segments: Vec<&str> = name.split("::").collect();
        if !segments.iter().all(|s| is_ident(s)) {
            continue;
        }
        let first = segments[0];
        let is_type = first.starts_with(|c: char| c.is_ascii_uppercase())
            && first.chars().any(|c| c.is_ascii_lowercase());
        let is_fn = call && segments.len() == 1;
        if is_type && EXTERNAL.contains(&first) {
            continue;
        }
        if is_type {
            let kinds = ["struct ", "enum ", "trait ", "type "];
            if !kinds.iter().any(|k| defined(&src, k, first)) {
                problems.push(format!("type {first} (in `{name}`)"));
            }
            for s in &segments[1..] {
                let found = if s.starts_with(|c: char| c.is_ascii_lowercase()) {
                    defined(&src, "fn ", s)
                } else {
                    defined(&src, "", s)
                };
                if !found {
                    problems.push(format!("{s} (in `{name}`)"));
                }
            }
            checked += 1;
        } else if is_fn {
            if !defined(&src, "fn ", first) {
                problems.push(format!("fn {first}"));
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} names checked in docs/architecture.md"
    );
    assert!(
        problems.is_empty(),
        "not in src/ nor actors/src/:\n{}",
        problems.join("\n")
    );
}

/// README.md stays an entrance: what the relayer is, how to start it, where to read on.
#[test]
fn the_readme_is_short() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines: move the details to docs/"
    );
}
