//! Smart mode: which writes of the command table's smart forms a relayer acknowledges at once
//! (and whether their arguments allow it), and the shared budget of acknowledged-but-unconfirmed
//! bytes.

use super::smart_args;
use crate::command::{self, Pairs, Smart, Spec, TABLE};
use crate::resp::request::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The background table of one relayer: the command table's smart forms that are on by default
/// (the original daemon's table), and those `asyncCommands` added.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The names added, upper case.
    added: Vec<&'static str>,
}

impl Table {
    /// The default table plus `extra` (names, any case). An unknown or unsuitable name is an
    /// error naming it.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let mut added = Vec::new();
        for name in extra {
            let spec = command::lookup(name.as_bytes());
            match spec.smart {
                Some(s) if s.by_default => {}
                Some(_) => {
                    if !added.contains(&spec.name) {
                        added.push(spec.name);
                    }
                }
                None => {
                    let mut known: Vec<&str> = TABLE
                        .iter()
                        .filter(|s| s.smart.is_some_and(|s| !s.by_default))
                        .map(|s| s.name)
                        .collect();
                    known.sort_unstable();
                    return Err(format!(
                        "'{name}' cannot be acknowledged early: its reply is not known to be a status or an integer; one of {}",
                        known.join(" ")
                    ));
                }
            }
        }
        Ok(Table { added })
    }

    /// The early reply for `cmd` (whose entry in the command table is `spec`), or None when it
    /// must wait for the real one.
    pub fn early(&self, cmd: &Command, spec: &'static Spec) -> Option<Smart> {
        let e = spec.smart?;
        if !e.by_default && !self.added.contains(&spec.name) {
            return None;
        }
        let argc = cmd.argc() as i32;
        let arity_ok = if e.arity > 0 {
            argc == e.arity
        } else {
            argc >= -e.arity
        };
        let pairs_ok = match e.pairs {
            Pairs::None => true,
            Pairs::AfterName => (argc - 1) % 2 == 0,
            Pairs::AfterKey => (argc - 2) % 2 == 0,
        };
        if !arity_ok || !pairs_ok {
            return None;
        }
        smart_args::accepted(e.check, cmd).then_some(e)
    }
}

/// Shared by a target and its sessions: the bytes acknowledged early and not yet confirmed.
#[derive(Debug)]
pub struct Budget {
    pending: AtomicU64,
    max: u64,
    draining: AtomicBool,
}

impl Budget {
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(Budget {
            pending: AtomicU64::new(0),
            max,
            draining: AtomicBool::new(false),
        })
    }

    /// Takes `n` bytes of the budget; false when that would pass the bound or the target is
    /// draining, and the write must then wait for its real reply.
    pub fn try_take(&self, n: u64) -> bool {
        if self.draining.load(Ordering::Relaxed) {
            return false;
        }
        let before = self.pending.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn give_back(&self, n: u64) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::command::{EARLY_OK, EARLY_ONE};

    fn early(t: &Table, args: &[&str]) -> Option<&'static [u8]> {
        let cmd = Command::from_args(args);
        t.early(&cmd, command::lookup(cmd.arg(0))).map(|e| e.reply)
    }

    fn smart(t: &Table, args: &[&str]) -> Option<Smart> {
        let cmd = Command::from_args(args);
        t.early(&cmd, command::lookup(cmd.arg(0)))
    }

    #[test]
    fn default_table_and_exclusions() {
        let t = Table::new(&[]).unwrap();
        assert_eq!(early(&t, &["set", "k", "v"]), Some(EARLY_OK));
        assert_eq!(early(&t, &["SET", "k", "v", "EX", "10"]), Some(EARLY_OK));
        assert_eq!(early(&t, &["SET", "k", "v", "nx"]), None);
        assert_eq!(early(&t, &["SET", "k", "v", "GET"]), None);
        assert_eq!(early(&t, &["SET", "k"]), None);
        assert_eq!(early(&t, &["HSET", "h", "f", "v", "g", "w"]), Some(EARLY_ONE));
        assert_eq!(early(&t, &["HSET", "h", "f"]), None);
        assert_eq!(early(&t, &["MSET", "a", "1", "b"]), None);
        assert_eq!(early(&t, &["EXPIRE", "k", "10"]), Some(EARLY_ONE));
        assert_eq!(early(&t, &["EXPIRE", "k", "10", "NX"]), None);
        assert_eq!(early(&t, &["ZADD", "z", "1", "incr"]), Some(EARLY_ONE));
        // Arguments Redis refuses wait for its error.
        assert_eq!(early(&t, &["SET", "k", "v", "EX", "0"]), None);
        assert_eq!(early(&t, &["ZADD", "z", "nan", "m"]), None);
        assert_eq!(early(&t, &["ZADD", "z", "XX", "INCR", "1", "m"]), None);
        assert_eq!(early(&t, &["ZADD", "z", "CH", "1", "m"]), Some(EARLY_ONE));
        assert_eq!(early(&t, &["GET", "k"]), None);
        assert_eq!(early(&t, &["LPUSH", "l", "x"]), None);
    }

    #[test]
    fn extended_table() {
        let t = Table::new(&["lpush".into(), "LSET".into()]).unwrap();
        assert_eq!(early(&t, &["LPUSH", "l", "x", "y"]), Some(EARLY_ONE));
        assert_eq!(early(&t, &["LSET", "l", "0", "y"]), Some(EARLY_OK));
        assert!(!smart(&t, &["LPUSH", "l", "x"]).unwrap().idempotent);
        assert!(Table::new(&["GET".into()]).unwrap_err().contains("'GET'"));
        // Never sent twice after a lost connection, whatever the configuration adds.
        let addable: Vec<String> = TABLE
            .iter()
            .filter(|s| s.smart.is_some_and(|s| !s.by_default))
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(addable.len(), 29);
        let t = Table::new(&addable).unwrap();
        let never_twice = [
            "INCR", "INCRBY", "DECR", "LPUSH", "RPUSH", "APPEND", "FLUSHDB", "HINCRBY", "LTRIM", "LREM",
            "PUBLISH",
        ];
        for name in never_twice {
            let arity = command::lookup(name.as_bytes()).smart.expect("addable").arity;
            let args = [name, "k", "1", "2"];
            let e = smart(&t, &args[..arity.unsigned_abs() as usize])
                .unwrap_or_else(|| panic!("{name} is in the table"));
            assert!(!e.idempotent, "{name} must not be sent twice");
        }
    }

    #[test]
    fn budget_bounds_and_drains() {
        let b = Budget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(60));
        assert!(b.try_take(40));
        b.give_back(100);
        // A write larger than the whole budget is never acknowledged early.
        assert!(!b.try_take(500));
        b.start_draining();
        assert!(!b.try_take(1));
        assert_eq!(b.pending(), 0);
    }
}
