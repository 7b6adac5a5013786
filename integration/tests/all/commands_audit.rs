//! docs/commands.md lists every command and subcommand of the redis-server the tests run, each
//! once, under what the relayer does with it; the ones it lists as refused are refused.

use integration::*;
use std::collections::{BTreeMap, BTreeSet};

/// The backticked names of docs/commands.md, by section, from its first section to the one
/// about newer versions.
fn audited() -> BTreeMap<String, Vec<String>> {
    let path = workspace_dir().join("docs").join("commands.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            if title.starts_with("Newer than") {
                break;
            }
            section = Some(title.to_string());
            continue;
        }
        let Some(s) = &section else { continue };
        // A list line: names in backticks and nothing else (prose mentions them too).
        let is_list = !line.is_empty()
            && line
                .split_whitespace()
                .all(|w| w.len() > 2 && w.starts_with('`') && w.ends_with('`'));
        if !is_list {
            continue;
        }
        let names = line.split_whitespace().map(|w| w.trim_matches('`').to_string());
        sections.entry(s.clone()).or_default().extend(names);
    }
    sections
}

#[test]
fn every_command_of_the_backend_is_audited_once() {
    let redis = Redis::start();
    let list: Vec<String> = redis.query(&["COMMAND", "LIST"]);
    let server: BTreeSet<String> = list.iter().map(|name| name.to_ascii_lowercase()).collect();
    assert!(server.len() > 200, "{} commands", server.len());
    let sections = audited();
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (section, names) in &sections {
        for n in names {
            seen.entry(n).or_default().push(section);
        }
    }
    let missing: Vec<&String> = server.iter().filter(|c| !seen.contains_key(c.as_str())).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, s)| s.len() > 1).collect();
    let unknown: Vec<&&str> = seen.keys().filter(|n| !server.contains(**n)).collect();
    assert!(missing.is_empty(), "not audited in docs/commands.md: {missing:?}");
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    assert!(
        unknown.is_empty(),
        "not commands of this redis-server: {unknown:?}"
    );
}

/// Each command listed as refused gets the relayer's error, and never reaches the backend.
#[test]
fn the_commands_listed_as_refused_are_refused() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let refused = audited().remove("Refused").expect("a Refused section");
    assert!(refused.len() >= 5, "{refused:?}");
    let mut c = relayer.client();
    for name in &refused {
        let mut args: Vec<&str> = name.split('|').collect();
        args.extend(["1", "2"]);
        let r = c.cmd(&args);
        assert!(r.is_error_starting("ERR relayer: "), "{name}: {r:?}");
        assert_eq!(c.q("PING"), Reply::status("PONG"), "after {name}");
    }
    let stats: String = redis.query(&["INFO", "commandstats"]);
    for name in &refused {
        let stat = format!("cmdstat_{name}:");
        assert!(!stats.contains(&stat), "{name} reached the backend:\n{stats}");
    }
}
