//! Smart mode: which writes are acknowledged at once and sent in the background, with what
//! reply, and the shared budget of acknowledged-but-unconfirmed bytes.

use crate::resp::request::Command;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub const EARLY_OK: &[u8] = b"+OK\r\n";
pub const EARLY_ONE: &[u8] = b":1\r\n";

/// How a background command is acknowledged and whether it may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Early {
    pub reply: &'static [u8],
    /// Sending it again after a dropped connection leaves the same data.
    pub idempotent: bool,
    /// Redis-style arity: exact when positive, a minimum when negative.
    arity: i32,
    /// Arity holds only in key-value pairs after the name and key (MSET, HMSET, HSET).
    pairs: Pairs,
    check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairs {
    None,
    /// MSET k v [k v ...]: the arguments after the name come in pairs.
    AfterName,
    /// HSET key f v [f v ...]: the arguments after the key come in pairs.
    AfterKey,
}

/// Options that change the kind of reply, so the command must wait for the real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Set,
    Expire,
    Zadd,
}

const fn entry(reply: &'static [u8], arity: i32, pairs: Pairs, check: Check) -> Early {
    Early {
        reply,
        idempotent: true,
        arity,
        pairs,
        check,
    }
}

/// The original daemon's table (§3.3 of its reference).
fn default_table() -> Vec<(&'static str, Early)> {
    use Check as C;
    use Pairs as P;
    vec![
        ("SET", entry(EARLY_OK, -3, P::None, C::Set)),
        ("SETEX", entry(EARLY_OK, 4, P::None, C::None)),
        ("PSETEX", entry(EARLY_OK, 4, P::None, C::None)),
        ("MSET", entry(EARLY_OK, -3, P::AfterName, C::None)),
        ("HMSET", entry(EARLY_OK, -4, P::AfterKey, C::None)),
        ("HSET", entry(EARLY_ONE, -4, P::AfterKey, C::None)),
        ("SADD", entry(EARLY_ONE, -3, P::None, C::None)),
        ("ZADD", entry(EARLY_ONE, -4, P::None, C::Zadd)),
        ("EXPIRE", entry(EARLY_ONE, -3, P::None, C::Expire)),
        ("EXPIREAT", entry(EARLY_ONE, -3, P::None, C::Expire)),
        ("PEXPIRE", entry(EARLY_ONE, -3, P::None, C::Expire)),
        ("PEXPIREAT", entry(EARLY_ONE, -3, P::None, C::Expire)),
    ]
}

/// Commands that `asyncCommands` may add: their reply is a status or an integer, so an early
/// `+OK` or `:1` has the kind the client expects. (name, reply, arity, idempotent)
///
/// `idempotent` says whether the write may be sent again after a connection was lost before
/// the backend confirmed it, which runs it twice when the first one ran: only for writes that
/// leave the same data run twice in a row. Counters, pushes, trims by count and FLUSHDB (which
/// would also empty what other clients wrote since) are not, whatever the configuration asks.
const ADDABLE: &[(&str, &[u8], i32, bool)] = &[
    ("APPEND", EARLY_ONE, 3, false),
    ("DECR", EARLY_ONE, 2, false),
    ("DECRBY", EARLY_ONE, 3, false),
    ("DEL", EARLY_ONE, -2, true),
    ("FLUSHDB", EARLY_OK, -1, false),
    ("GEOADD", EARLY_ONE, -5, true),
    ("HDEL", EARLY_ONE, -3, true),
    ("HINCRBY", EARLY_ONE, 4, false),
    ("HSETNX", EARLY_ONE, 4, true),
    ("INCR", EARLY_ONE, 2, false),
    ("INCRBY", EARLY_ONE, 3, false),
    ("LPUSH", EARLY_ONE, -3, false),
    ("LPUSHX", EARLY_ONE, -3, false),
    ("LREM", EARLY_ONE, 4, false),
    ("LSET", EARLY_OK, 4, true),
    ("LTRIM", EARLY_OK, 4, false),
    ("PERSIST", EARLY_ONE, 2, true),
    ("PFADD", EARLY_ONE, -2, true),
    ("PUBLISH", EARLY_ONE, 3, false),
    ("RPUSH", EARLY_ONE, -3, false),
    ("RPUSHX", EARLY_ONE, -3, false),
    ("SETBIT", EARLY_ONE, 4, true),
    ("SETNX", EARLY_ONE, 3, true),
    ("SETRANGE", EARLY_ONE, 4, true),
    ("SREM", EARLY_ONE, -3, true),
    ("UNLINK", EARLY_ONE, -2, true),
    ("ZREM", EARLY_ONE, -3, true),
    ("ZREMRANGEBYRANK", EARLY_ONE, 4, false),
    ("ZREMRANGEBYSCORE", EARLY_ONE, 4, true),
];

/// The background table of one relayer.
#[derive(Debug, Clone, PartialEq)]
pub struct Table(HashMap<Vec<u8>, Early>);

impl Table {
    /// The default table plus `extra` (names, any case). An unknown or unsuitable name is an
    /// error naming it.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let mut map: HashMap<Vec<u8>, Early> = default_table()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        for name in extra {
            let up = name.to_ascii_uppercase();
            if map.contains_key(up.as_bytes()) {
                continue;
            }
            let Some(&(_, reply, arity, idempotent)) = ADDABLE.iter().find(|(n, ..)| *n == up) else {
                let known: Vec<&str> = ADDABLE.iter().map(|(n, ..)| *n).collect();
                return Err(format!(
                    "'{name}' cannot be acknowledged early: its reply is not known to be a status or an integer; one of {}",
                    known.join(" ")
                ));
            };
            let e = Early {
                reply,
                idempotent,
                arity,
                pairs: Pairs::None,
                check: Check::None,
            };
            map.insert(up.into_bytes(), e);
        }
        Ok(Table(map))
    }

    /// The early reply for `cmd`, or None when it must wait for the real one.
    pub fn early(&self, cmd: &Command) -> Option<Early> {
        let name = cmd.arg(0);
        if name.len() > 16 {
            return None;
        }
        let mut up = [0u8; 16];
        for (d, s) in up.iter_mut().zip(name) {
            *d = s.to_ascii_uppercase();
        }
        let e = *self.0.get(&up[..name.len()])?;
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
        let has = |opts: &[&[u8]], from: usize| {
            cmd.args()
                .skip(from)
                .any(|a| opts.iter().any(|o| a.eq_ignore_ascii_case(o)))
        };
        let plain = match e.check {
            Check::None => true,
            // SET key value [NX|XX] [GET] [EX..]: NX, XX and GET change the reply.
            Check::Set => !has(&[b"NX", b"XX", b"GET"], 3),
            Check::Expire => argc == 3,
            // Scores and members may look like options; only flags before the first score count.
            Check::Zadd => !zadd_has_incr(cmd),
        };
        plain.then_some(e)
    }
}

fn zadd_has_incr(cmd: &Command) -> bool {
    const FLAGS: [&[u8]; 6] = [b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"];
    for a in cmd.args().skip(2) {
        if a.eq_ignore_ascii_case(b"INCR") {
            return true;
        }
        if !FLAGS.iter().any(|f| a.eq_ignore_ascii_case(f)) {
            return false;
        }
    }
    false
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

    fn early(t: &Table, args: &[&str]) -> Option<&'static [u8]> {
        t.early(&Command::from_args(args)).map(|e| e.reply)
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
        assert!(
            !t.early(&Command::from_args(&["LPUSH", "l", "x"]))
                .unwrap()
                .idempotent
        );
        assert!(Table::new(&["GET".into()]).unwrap_err().contains("'GET'"));
        // Never sent twice after a lost connection, whatever the configuration adds.
        let t = Table::new(&ADDABLE.iter().map(|(n, ..)| n.to_string()).collect::<Vec<_>>()).unwrap();
        let never_twice = [
            "INCR", "INCRBY", "DECR", "LPUSH", "RPUSH", "APPEND", "FLUSHDB", "HINCRBY", "LTRIM", "LREM",
            "PUBLISH",
        ];
        for &(name, _, arity, _) in ADDABLE.iter().filter(|(n, ..)| never_twice.contains(n)) {
            let args = [name, "k", "1", "2"];
            let cmd = Command::from_args(&args[..arity.unsigned_abs() as usize]);
            let e = t.early(&cmd).unwrap_or_else(|| panic!("{name} is in the table"));
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
