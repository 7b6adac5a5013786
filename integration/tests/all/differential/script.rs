//! The command scripts of integration/tests/differential: one file per command family, one
//! step per line (the format is described in that directory's README.md).

use integration::workspace_dir;
use std::path::PathBuf;

/// The families, in the order they run and appear in the table of differences; each is
/// `<family>.txt` in `dir()`, and the directory holds no other script.
pub const FAMILIES: &[&str] = &[
    "strings",
    "bitmaps",
    "hashes",
    "lists",
    "sets",
    "sorted_sets",
    "streams",
    "geo",
    "hyperloglog",
    "keyspace",
    "scripting",
    "functions",
    "transactions",
    "pubsub",
    "blocking",
    "client",
    "server",
];

/// One line of a script.
#[derive(Debug, Clone)]
pub struct Step {
    /// The line as written (directives too): what the table of differences names.
    pub text: String,
    /// The arguments sent; empty for a line that only reads (pushed messages).
    pub args: Vec<Vec<u8>>,
    /// The script's connection it runs on, from 1.
    pub conn: usize,
    /// How many replies it reads.
    pub replies: usize,
}

pub struct Script {
    pub family: &'static str,
    pub steps: Vec<Step>,
}

pub fn dir() -> PathBuf {
    workspace_dir().join("integration/tests/differential")
}

/// Every family's script, parsed; panics naming the file and line of a malformed one.
pub fn load_all() -> Vec<Script> {
    FAMILIES
        .iter()
        .map(|&family| {
            let path = dir().join(format!("{family}.txt"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let steps = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Script { family, steps }
        })
        .collect()
}

/// The steps of a script's text.
pub fn parse(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let step = parse_line(line).map_err(|e| format!("line {}: {e}: {line}", i + 1))?;
        steps.push(step);
    }
    Ok(steps)
}

fn parse_line(line: &str) -> Result<Step, String> {
    let mut conn = 1;
    let mut replies = 1;
    let mut rest = line;
    // Directives come first; a command name never starts with '@'.
    while let Some(d) = rest.strip_prefix('@') {
        let (word, after) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("directive @{word} without a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("directive @{word}: not a number"))?;
        match key {
            "conn" if (1..=9).contains(&n) => conn = n,
            "replies" if n >= 1 => replies = n,
            _ => return Err(format!("unknown directive @{word}")),
        }
        rest = after.trim_start();
    }
    let args = split_args(rest)?;
    Ok(Step {
        text: line.to_string(),
        args,
        conn,
        replies,
    })
}

/// Splits like a shell (and redis-cli): whitespace separates arguments; "double quotes" take
/// the escapes \" \\ \n \r \t \xHH; 'single quotes' take everything as is but \'.
pub fn split_args(s: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        while i < b.len() && !b[i].is_ascii_whitespace() {
            match b[i] {
                b'"' => {
                    i += 1;
                    loop {
                        match b.get(i) {
                            None => return Err("unclosed double quote".into()),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                let (c, used) = escape(&b[i + 1..])?;
                                arg.push(c);
                                i += 1 + used;
                                continue;
                            }
                            Some(&c) => arg.push(c),
                        }
                        i += 1;
                    }
                    i += 1;
                }
                b'\'' => {
                    i += 1;
                    loop {
                        match b.get(i) {
                            None => return Err("unclosed single quote".into()),
                            Some(b'\'') => break,
                            Some(b'\\') if b.get(i + 1) == Some(&b'\'') => {
                                arg.push(b'\'');
                                i += 1;
                            }
                            Some(&c) => arg.push(c),
                        }
                        i += 1;
                    }
                    i += 1;
                }
                c => {
                    arg.push(c);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

/// The byte of the escape after a backslash, and how many bytes it took.
fn escape(after: &[u8]) -> Result<(u8, usize), String> {
    Ok(match after.first() {
        Some(b'n') => (b'\n', 1),
        Some(b'r') => (b'\r', 1),
        Some(b't') => (b'\t', 1),
        Some(b'"') => (b'"', 1),
        Some(b'\\') => (b'\\', 1),
        Some(b'x') => {
            let hex = after
                .get(1..3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("\\x needs two hex digits")?;
            (hex, 3)
        }
        _ => return Err("unknown escape in double quotes".into()),
    })
}

#[test]
fn lines_split_like_a_shell() {
    let args = |s: &str| -> Vec<String> {
        split_args(s)
            .unwrap()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    };
    assert_eq!(args("SET  k v"), ["SET", "k", "v"]);
    assert_eq!(
        args(r#"SET k "a b" '' "x\"y" 'it\'s' "\x41\r\n""#),
        ["SET", "k", "a b", "", "x\"y", "it's", "A\r\n"]
    );
    assert_eq!(args(r#"a"b c"d"#), ["ab cd"]);
    assert!(split_args("\"open").is_err());
    assert!(split_args("\"\\q\"").is_err());
    let s = parse("# c\n\n@conn=2 @replies=3 SUBSCRIBE a\n@replies=1\nPING\n").unwrap();
    assert_eq!((s[0].conn, s[0].replies, s[0].args.len()), (2, 3, 2));
    assert_eq!((s[1].conn, s[1].replies, s[1].args.len()), (1, 1, 0));
    assert_eq!((s[2].conn, s[2].replies), (1, 1));
    assert!(parse("@bogus=1 PING").is_err());
    assert!(parse("@conn=0 PING").is_err());
}

/// Every file of the directory is a family that runs, and none is trivially short (that each
/// has valid and invalid commands is checked on Redis' replies, in `single_redis_sync_and_smart`).
#[test]
fn every_script_file_is_a_family() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".txt").map(str::to_string))
        .collect();
    files.sort();
    let mut families: Vec<String> = FAMILIES.iter().map(|f| f.to_string()).collect();
    families.sort();
    assert_eq!(
        files,
        families,
        "the .txt files of {} and FAMILIES",
        dir().display()
    );
    for s in load_all() {
        assert!(s.steps.len() >= 20, "{}: only {} steps", s.family, s.steps.len());
    }
}
