//! What the backend says of its own commands: its `COMMAND` reply, asked once when a
//! connection is proven to work, turned into arity, flags and where each command's keys are.
//!
//! The built-in table (`command`) stays authoritative: it is looked up first, and this table
//! only for the names it does not know (module commands, commands newer than the relayer), so
//! that a cluster relayer routes those by their real keys instead of by their first argument.
//! A backend that does not answer COMMAND (renamed away, an ACL user without it) leaves only
//! the built-in table.
//!
//! Redis 7 describes keys with key specifications (where the search begins: an index or a
//! keyword; how keys are found from there: a range or a count of keys); they are read here as
//! Redis reads them. Redis 6 gives only first key, last key and step, which say nothing of
//! `movablekeys` commands whose first key is 0: those are marked `keys_unknown`, and routed as
//! a command the relayer knows nothing of. Redis names a renamed command by its original
//! name, so a renamed command is not learned under its new name.

use crate::command::{self, Keys, Spec};
use crate::resp::request::Command;
use crate::resp::typed::{self, RespValue};
use slog::{info, warn, Logger};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Flags of a command, as COMMAND lists them (those the relayer may use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    pub const WRITE: Flags = Flags(1);
    pub const READONLY: Flags = Flags(1 << 1);
    pub const DENYOOM: Flags = Flags(1 << 2);
    pub const ADMIN: Flags = Flags(1 << 3);
    pub const PUBSUB: Flags = Flags(1 << 4);
    pub const NOSCRIPT: Flags = Flags(1 << 5);
    pub const BLOCKING: Flags = Flags(1 << 6);
    pub const LOADING: Flags = Flags(1 << 7);
    pub const STALE: Flags = Flags(1 << 8);
    pub const FAST: Flags = Flags(1 << 9);
    pub const MOVABLEKEYS: Flags = Flags(1 << 10);
    pub const NO_MULTI: Flags = Flags(1 << 11);

    fn named(name: &str) -> Flags {
        match name.to_ascii_lowercase().as_str() {
            "write" => Flags::WRITE,
            "readonly" => Flags::READONLY,
            "denyoom" => Flags::DENYOOM,
            "admin" => Flags::ADMIN,
            "pubsub" => Flags::PUBSUB,
            "noscript" => Flags::NOSCRIPT,
            "blocking" => Flags::BLOCKING,
            "loading" => Flags::LOADING,
            "stale" => Flags::STALE,
            "fast" => Flags::FAST,
            "movablekeys" => Flags::MOVABLEKEYS,
            "no_multi" => Flags::NO_MULTI,
            _ => Flags(0),
        }
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// Where a key search begins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Begin {
    Index(usize),
    /// After this argument (any case), searched from `from` (negative: from the end, backwards).
    Keyword {
        keyword: Vec<u8>,
        from: i64,
    },
}

/// How keys are found from where the search begins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Find {
    /// To `last` (negative: from the end), every `step`-th; `limit` > 1: only that fraction of
    /// what follows (XREAD's STREAMS: half are keys).
    Range { last: i64, step: usize, limit: usize },
    /// A count of keys at `count_at`, the keys from `first` after the beginning.
    KeyNum {
        count_at: usize,
        first: usize,
        step: usize,
    },
}

/// One key specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    begin: Begin,
    find: Find,
}

impl KeySpec {
    /// Pushes the positions of the keys this spec finds in `cmd`; nothing when the arguments
    /// do not fit it (the node then answers with its error).
    fn positions(&self, cmd: &Command, out: &mut Vec<usize>) {
        let argc = cmd.argc() as i64;
        let first = match &self.begin {
            Begin::Index(i) => *i as i64,
            Begin::Keyword { keyword, from } => {
                let (start, end) = if *from > 0 {
                    (*from, argc - 1)
                } else {
                    (argc + from, 1)
                };
                let mut i = start;
                let mut found = None;
                // As Redis searches: forwards up to the argument before the last (a key
                // follows the keyword), backwards down to the second.
                while i != end && (1..argc).contains(&i) {
                    if cmd.arg(i as usize).eq_ignore_ascii_case(keyword) {
                        found = Some(i + 1);
                        break;
                    }
                    i += if start <= end { 1 } else { -1 };
                }
                match found {
                    Some(f) => f,
                    None => return,
                }
            }
        };
        let (first, last, step) = match self.find {
            Find::Range { last, step, limit } => {
                let last = match (last >= 0, limit) {
                    (true, _) => first + last,
                    (false, 0 | 1) => argc + last,
                    (false, limit) => first + ((argc - first) / limit as i64 + last),
                };
                (first, last, step)
            }
            Find::KeyNum {
                count_at,
                first: key,
                step,
            } => {
                let at = first + count_at as i64;
                if at >= argc {
                    return;
                }
                let Some(n) = std::str::from_utf8(cmd.arg(at as usize))
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|&n| n >= 0 && n < argc)
                else {
                    return;
                };
                let first = first + key as i64;
                (first, first + n - 1, step)
            }
        };
        if step == 0 || first < 1 || last >= argc || last < first {
            return;
        }
        out.extend((first as usize..=last as usize).step_by(step));
    }
}

/// First key, last key (negative: from the end), step.
pub type Range = (i64, i64, i64);

/// One command or subcommand, as the backend describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// As Redis names it: lower case, a subcommand's `command|sub`.
    pub name: String,
    /// Redis-style: exact when positive, a minimum when negative.
    pub arity: i64,
    pub flags: Flags,
    /// First key, last key, step, as listed (the old description of keys).
    pub range: Range,
    specs: Vec<KeySpec>,
    /// Its keys move with its arguments in a way neither the range nor a key specification
    /// says.
    pub keys_unknown: bool,
}

impl Info {
    /// Where the keys of `cmd` are, by the backend's description; None when it cannot say.
    pub fn key_positions(&self, cmd: &Command) -> Option<Vec<usize>> {
        if self.keys_unknown {
            return None;
        }
        let mut out = Vec::new();
        for s in &self.specs {
            s.positions(cmd, &mut out);
        }
        Some(out)
    }
}

/// A command and its subcommands.
#[derive(Debug, Clone)]
pub struct Entry {
    pub info: Info,
    /// By subcommand name, upper case.
    subs: Vec<(Vec<u8>, Info)>,
}

impl Entry {
    /// The entry of subcommand `sub` when the command has subcommands and it is one, else the
    /// command's own.
    pub fn resolve(&self, sub: Option<&[u8]>) -> &Info {
        sub.and_then(|s| self.sub(s)).unwrap_or(&self.info)
    }

    /// Whether it is a container of subcommands (CONFIG, CLIENT...).
    pub fn has_subcommands(&self) -> bool {
        !self.subs.is_empty()
    }

    /// Its subcommand `sub` (any case).
    pub fn sub(&self, sub: &[u8]) -> Option<&Info> {
        self.subs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(sub))
            .map(|(_, i)| i)
    }
}

/// Every command the backend listed.
#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    /// By packed name (as the built-in table packs them), sorted: a lookup allocates nothing.
    short: Vec<(u128, Entry)>,
    /// Names too long to pack, upper case.
    long: Vec<(Vec<u8>, Entry)>,
}

impl CommandTable {
    /// Reads a `COMMAND` reply (or `COMMAND INFO`'s: the same entries).
    pub fn from_reply(reply: &[u8]) -> Result<CommandTable, String> {
        let entries = typed::array(typed::decode(reply)?, "COMMAND reply")?;
        let mut t = CommandTable::default();
        for e in entries {
            // COMMAND INFO answers nil for a name it does not know.
            if e == RespValue::Nil {
                continue;
            }
            let (info, subs) = read_entry(e)?;
            let subs = subs
                .into_iter()
                .map(|s| {
                    let (sub, _) = read_entry(s)?;
                    let short = sub.name.rsplit('|').next().unwrap_or_default();
                    Ok((short.to_ascii_uppercase().into_bytes(), sub))
                })
                .collect::<Result<_, String>>()?;
            let name = info.name.to_ascii_uppercase().into_bytes();
            let entry = Entry { info, subs };
            match command::packed(&name) {
                Some(k) => t.short.push((k, entry)),
                None => t.long.push((name, entry)),
            }
        }
        t.short.sort_unstable_by_key(|(k, _)| *k);
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The command named `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        match command::packed(name) {
            Some(k) => {
                let i = self.short.binary_search_by_key(&k, |(k, _)| *k).ok()?;
                Some(&self.short[i].1)
            }
            None => self
                .long
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, e)| e),
        }
    }

    /// Where the keys of `cmd` are, for a command the built-in table does not know: None when
    /// the backend did not list it or cannot say.
    pub fn key_positions(&self, cmd: &Command) -> Option<Vec<usize>> {
        let entry = self.get(cmd.arg(0))?;
        entry
            .resolve((cmd.argc() > 1).then(|| cmd.arg(1)))
            .key_positions(cmd)
    }

    /// Commands of the built-in table whose keys the backend places elsewhere (a server whose
    /// commands changed): (name, built-in first/last/step, the backend's). Only entries whose
    /// keys route a cluster command, and whose keys first/last/step can say.
    pub fn disagreements(&self) -> Vec<(String, Range, Range)> {
        let mut out = Vec::new();
        for spec in command::TABLE
            .iter()
            .flat_map(|s| std::iter::once(*s).chain(s.subs))
        {
            let Some(builtin) = builtin_range(spec) else {
                continue;
            };
            let (name, sub) = match spec.name.split_once(' ') {
                Some((n, s)) => (n, Some(s)),
                None => (spec.name, None),
            };
            let Some(entry) = self.get(name.as_bytes()) else {
                continue;
            };
            let learned: Vec<&Info> = match sub {
                Some(s) => match entry
                    .subs
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(s.as_bytes()))
                {
                    Some((_, i)) => vec![i],
                    None => continue,
                },
                // A command with subcommands: its keyed subcommands that have no entry of
                // their own in the built-in table.
                None if !entry.subs.is_empty() => entry
                    .subs
                    .iter()
                    .filter(|(n, i)| i.range.0 > 0 && spec.sub(n).is_none())
                    .map(|(_, i)| i)
                    .collect(),
                None => vec![&entry.info],
            };
            for info in learned {
                // A range that leaves keys out (movablekeys) is not comparable.
                if info.flags.contains(Flags::MOVABLEKEYS) || same_keys(builtin, info.range) {
                    continue;
                }
                out.push((info.name.to_ascii_uppercase(), builtin, info.range));
            }
        }
        out
    }
}

/// First/last/step of a built-in entry whose keys route a cluster command, when its form has
/// them. Commands for a connection of the client's own are refused on a cluster relayer:
/// their keys route nothing.
fn builtin_range(spec: &Spec) -> Option<Range> {
    let routed = matches!(
        spec.cluster,
        command::Cluster::ByKeys | command::Cluster::Split { .. }
    );
    if !routed || spec.kind.needs_own_connection() {
        return None;
    }
    Some(match spec.keys {
        Keys::None => (0, 0, 0),
        Keys::First => (1, 1, 1),
        Keys::All { from, step } => (from as i64, -1, step as i64),
        Keys::AllButLast => (1, -2, 1),
        Keys::Some { from, count } => (from as i64, (from + count - 1) as i64, 1),
        Keys::MemoryUsage => (2, 2, 1),
        Keys::NumKeys { .. } | Keys::DestNumKeys | Keys::Streams => return None,
    })
}

/// Two first/last/step triples that find the same keys (a keyless one's last and step mean
/// nothing).
fn same_keys(a: Range, b: Range) -> bool {
    a == b || (a.0 == 0 && b.0 == 0) || (a.0 == a.1 && a.0 == b.0 && b.0 == b.1)
}

/// One entry of the reply: the command, and its subcommands' entries (Redis 7).
fn read_entry(e: RespValue) -> Result<(Info, Vec<RespValue>), String> {
    let mut f = typed::array(e, "COMMAND entry")?.into_iter();
    let short = "COMMAND entry with fewer than six fields";
    let name = f.next().as_ref().and_then(typed::text).ok_or(short)?;
    let arity = f.next().as_ref().and_then(typed::int).ok_or(short)?;
    let flags = typed::array(f.next().ok_or(short)?, "COMMAND flags")?
        .iter()
        .filter_map(typed::text)
        .fold(Flags(0), |acc, n| acc | Flags::named(&n));
    let mut range = [0i64; 3];
    for r in &mut range {
        *r = f.next().as_ref().and_then(typed::int).ok_or(short)?;
    }
    let range = (range[0], range[1], range[2]);
    // Redis 7: ACL categories, tips, key specifications, subcommands.
    let _categories = f.next();
    let _tips = f.next();
    let specs = match f.next() {
        Some(s) => typed::array(s, "COMMAND key specifications")?,
        None => Vec::new(),
    };
    let subs = match f.next() {
        Some(s) => typed::array(s, "COMMAND subcommands")?,
        None => Vec::new(),
    };
    let described = !specs.is_empty();
    let mut known = Vec::new();
    let mut unknown_spec = false;
    for s in specs {
        match read_spec(s)? {
            Some(k) => known.push(k),
            None => unknown_spec = true,
        }
    }
    if !described && range.0 > 0 {
        // No key specifications (Redis 6): the range is all there is.
        known.push(KeySpec {
            begin: Begin::Index(range.0 as usize),
            find: Find::Range {
                last: if range.1 < 0 { range.1 } else { range.1 - range.0 },
                step: range.2.max(1) as usize,
                limit: 0,
            },
        });
    }
    let movable = flags.contains(Flags::MOVABLEKEYS);
    // Keys a spec of an unknown kind describes (SORT's BY and GET patterns) are not looked for:
    // the ones found route it. Nothing found at all, for a command whose keys move: unknown.
    let keys_unknown = movable && known.is_empty() && (unknown_spec || !described);
    Ok((
        Info {
            name,
            arity,
            flags,
            range,
            specs: known,
            keys_unknown,
        },
        subs,
    ))
}

/// A key specification (a flat map of its fields); None for one of a kind not known here.
fn read_spec(s: RespValue) -> Result<Option<KeySpec>, String> {
    let fields = typed::array(s, "COMMAND key specification")?;
    let field = |fields: &[RespValue], name: &str| -> Option<RespValue> {
        fields
            .chunks(2)
            .find(|kv| typed::text(&kv[0]).is_some_and(|k| k == name))
            .and_then(|kv| kv.get(1).cloned())
    };
    // {type: ..., spec: {...}}: the type and the spec's fields.
    let part = |name: &str| -> Result<(String, Vec<RespValue>), String> {
        let p = field(&fields, name).ok_or_else(|| format!("key specification without {name}"))?;
        let p = typed::array(p, name)?;
        let kind = field(&p, "type")
            .as_ref()
            .and_then(typed::text)
            .unwrap_or_default();
        let spec = match field(&p, "spec") {
            Some(v) => typed::array(v, name)?,
            None => Vec::new(),
        };
        Ok((kind, spec))
    };
    let int = |spec: &[RespValue], name: &str| field(spec, name).as_ref().and_then(typed::int);
    let (bkind, bspec) = part("begin_search")?;
    let begin = match bkind.as_str() {
        "index" => match int(&bspec, "index") {
            Some(i) if i > 0 => Begin::Index(i as usize),
            _ => return Ok(None),
        },
        "keyword" => match (
            field(&bspec, "keyword").as_ref().and_then(typed::text),
            int(&bspec, "startfrom"),
        ) {
            (Some(k), Some(from)) if from != 0 => Begin::Keyword {
                keyword: k.into_bytes(),
                from,
            },
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let (fkind, fspec) = part("find_keys")?;
    let find = match fkind.as_str() {
        "range" => match (
            int(&fspec, "lastkey"),
            int(&fspec, "keystep"),
            int(&fspec, "limit"),
        ) {
            (Some(last), Some(step), Some(limit)) if step > 0 && limit >= 0 => Find::Range {
                last,
                step: step as usize,
                limit: limit as usize,
            },
            _ => return Ok(None),
        },
        "keynum" => match (
            int(&fspec, "keynumidx"),
            int(&fspec, "firstkey"),
            int(&fspec, "keystep"),
        ) {
            (Some(at), Some(first), Some(step)) if at >= 0 && first >= 0 && step > 0 => Find::KeyNum {
                count_at: at as usize,
                first: first as usize,
                step: step as usize,
            },
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(KeySpec { begin, find }))
}

/// The table a backend learned, shared with the sessions that route by it (a cluster
/// relayer's), and by the copies of the entry on every worker. Set once, read without a lock.
#[derive(Debug, Default)]
pub struct Learned {
    table: OnceLock<CommandTable>,
    /// The backend refused COMMAND: not asked again.
    refused: AtomicBool,
}

impl Learned {
    pub fn table(&self) -> Option<&CommandTable> {
        self.table.get()
    }

    /// Nothing learned yet, and the backend did not refuse: worth asking.
    pub fn wanted(&self) -> bool {
        self.table.get().is_none() && !self.refused.load(Ordering::Relaxed)
    }

    /// The backend's answer to COMMAND (an error that may pass is the caller's to ask again):
    /// kept, or the refusal noted. Logged by the first backend that answers only.
    pub fn learn(&self, reply: &[u8], backend: &str, log: &Logger) {
        let table = match typed::decode(reply) {
            Ok(RespValue::Error(e)) => {
                if !self.refused.swap(true, Ordering::Relaxed) {
                    info!(log, "the backend does not answer COMMAND: commands the built-in table does not know are routed by their first argument";
                        "backend" => backend, "error" => e);
                }
                return;
            }
            Ok(_) => CommandTable::from_reply(reply),
            Err(e) => Err(e),
        };
        let table = match table {
            Ok(t) => t,
            Err(e) => {
                if !self.refused.swap(true, Ordering::Relaxed) {
                    warn!(log, "the backend's COMMAND reply cannot be read: the built-in table only";
                        "backend" => backend, "error" => e);
                }
                return;
            }
        };
        let disagree = table.disagreements();
        let count = table.len();
        if self.table.set(table).is_err() {
            return;
        }
        info!(log, "commands learned from the backend's COMMAND"; "backend" => backend, "commands" => count);
        for (name, builtin, learned) in disagree {
            warn!(log, "the backend places this command's keys elsewhere than the built-in table: routed as the built-in table says";
                "backend" => backend, "command" => name, "builtin" => format!("{builtin:?}"), "backend_keys" => format!("{learned:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `COMMAND INFO get mset object migrate pfdebug georadius xread sort blpop ping`, as a
    /// redis-server 7.0 answered it.
    const REDIS_7: &[u8] = include_bytes!("../fixtures/command-info-redis-7.0.resp");

    fn cmd(args: &[&str]) -> Command {
        Command::from_args(args)
    }

    fn keys(t: &CommandTable, args: &[&str]) -> Option<Vec<usize>> {
        t.key_positions(&cmd(args))
    }

    #[test]
    fn reads_a_redis_7_reply() {
        let t = CommandTable::from_reply(REDIS_7).unwrap();
        assert_eq!(t.len(), 10);
        let get = &t.get(b"get").unwrap().info;
        assert_eq!((get.name.as_str(), get.arity, get.range), ("get", 2, (1, 1, 1)));
        assert!(get.flags.contains(Flags::READONLY) && get.flags.contains(Flags::FAST));
        assert!(!get.flags.contains(Flags::WRITE));
        assert!(t
            .get(b"MSET")
            .unwrap()
            .info
            .flags
            .contains(Flags::WRITE | Flags::DENYOOM));
        assert!(t.get(b"migrate").unwrap().info.flags.contains(Flags::MOVABLEKEYS));
        assert!(t.get(b"hgetall").is_none());

        assert_eq!(keys(&t, &["GET", "k"]), Some(vec![1]));
        assert_eq!(keys(&t, &["MSET", "a", "1", "b", "2"]), Some(vec![1, 3]));
        assert_eq!(keys(&t, &["PING"]), Some(vec![]));
        assert_eq!(keys(&t, &["BLPOP", "a", "b", "0"]), Some(vec![1, 2]));
        assert_eq!(keys(&t, &["pfdebug", "GETREG", "h"]), Some(vec![2]));
        // Subcommands, by the names Redis gives them.
        let object = t.get(b"OBJECT").unwrap();
        assert_eq!(object.resolve(Some(b"encoding")).name, "object|encoding");
        assert_eq!(object.resolve(Some(b"nope")).name, "object");
        assert_eq!(keys(&t, &["OBJECT", "ENCODING", "k"]), Some(vec![2]));
        assert_eq!(keys(&t, &["OBJECT", "HELP"]), Some(vec![]));
        // Keywords: STREAMS, half of what follows; KEYS, searched from the end.
        assert_eq!(
            keys(&t, &["XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"]),
            Some(vec![4, 5])
        );
        // (The empty key at 3 is found too: specifications do not say it may be empty.)
        assert_eq!(
            keys(&t, &["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"]),
            Some(vec![3, 7, 8])
        );
        assert_eq!(
            keys(&t, &["MIGRATE", "h", "6379", "k", "0", "5000"]),
            Some(vec![3])
        );
        assert_eq!(
            keys(&t, &["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"]),
            Some(vec![1, 7])
        );
        // SORT's BY and GET patterns are keys of a kind no specification says: its key is found.
        assert_eq!(keys(&t, &["SORT", "l", "BY", "w_*"]), Some(vec![1]));
        assert!(!t.get(b"sort").unwrap().info.keys_unknown);
        // Arguments that do not fit: no keys, the node answers.
        assert_eq!(keys(&t, &["GET"]), Some(vec![]));
        assert_eq!(keys(&t, &["XREAD", "STREAMS"]), Some(vec![]));
    }

    #[test]
    fn keynum_specs_and_redis_6_entries() {
        // EVAL as Redis 7 lists it: keys counted at argument 2.
        let eval = "*1\r\n*10\r\n$4\r\neval\r\n:-3\r\n*2\r\n+noscript\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n\
*1\r\n*6\r\n$5\r\nflags\r\n*0\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n\
$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n$9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n*0\r\n";
        let t = CommandTable::from_reply(eval.as_bytes()).unwrap();
        assert_eq!(keys(&t, &["EVAL", "s", "2", "a", "b", "x"]), Some(vec![3, 4]));
        assert_eq!(keys(&t, &["EVAL", "s", "0"]), Some(vec![]));
        assert_eq!(keys(&t, &["EVAL", "s", "3", "a"]), Some(vec![]));
        assert_eq!(keys(&t, &["EVAL", "s", "-1", "a"]), Some(vec![]));
        assert_eq!(
            keys(&t, &["EVAL", "s", "99999999999999999999", "a"]),
            Some(vec![])
        );
        // Redis 6: six fields. A module command with movable keys and no range: unknown.
        let six = "*3\r\n\
*6\r\n$7\r\nmod.get\r\n:-2\r\n*1\r\n+readonly\r\n:2\r\n:-1\r\n:2\r\n\
*6\r\n$8\r\nmod.eval\r\n:-3\r\n*1\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n\
*6\r\n$8\r\nmod.ping\r\n:1\r\n*0\r\n:0\r\n:0\r\n:0\r\n";
        let t = CommandTable::from_reply(six.as_bytes()).unwrap();
        assert_eq!(keys(&t, &["MOD.GET", "x", "a", "y", "b"]), Some(vec![2, 4]));
        assert!(t.get(b"mod.eval").unwrap().info.keys_unknown);
        assert_eq!(keys(&t, &["MOD.EVAL", "a", "1", "k"]), None);
        assert_eq!(keys(&t, &["mod.ping"]), Some(vec![]));
        // What cannot be a COMMAND reply is refused, not guessed at.
        assert!(CommandTable::from_reply(b"*1\r\n*2\r\n$3\r\nget\r\n:2\r\n").is_err());
        assert!(CommandTable::from_reply(b":1\r\n").is_err());
        assert!(CommandTable::from_reply(b"-ERR unknown command 'COMMAND'\r\n").is_err());
    }

    #[test]
    fn the_built_in_table_agrees_with_redis_7() {
        let t = CommandTable::from_reply(REDIS_7).unwrap();
        assert_eq!(t.disagreements(), vec![]);
        // A server whose MSET took its keys elsewhere is named.
        let moved = String::from_utf8_lossy(REDIS_7).replacen(
            "$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n",
            "$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:2\r\n:-1\r\n:2\r\n",
            1,
        );
        let t = CommandTable::from_reply(moved.as_bytes()).unwrap();
        assert_eq!(
            t.disagreements(),
            vec![("MSET".to_string(), (1, -1, 2), (2, -1, 2))]
        );
    }
}
