//! Where a command's keys are, so a cluster relayer can route it by their slot.
//!
//! A static table for the commands whose keys are not simply the first argument (Redis'
//! "movablekeys" commands among them); every other command with an argument is routed by its
//! first argument, and commands without keys go to any master.

use super::slot::slot_of;
use crate::resp::request::Command;

/// How a multi-key command is answered when its keys are on several nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: the parts' arrays merged back in key order.
    Values,
    /// MSET: +OK when every part says so.
    Ok,
    /// DEL, UNLINK, EXISTS, TOUCH: the parts' counts summed.
    Count,
}

/// What the relayer does with a command on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No key: any master answers it.
    Any,
    /// Every key is in this slot.
    Slot(u16),
    /// Keys in several slots, for a command that can be split by key (keys at `positions`,
    /// each followed by `stride - 1` values).
    Split {
        split: Split,
        first: usize,
        stride: usize,
    },
    /// Keys in several slots, for a command that cannot be split.
    CrossSlot,
}

/// Positions of the keys of `cmd` (argument indices), or None for a keyless command. Arguments
/// that do not fit the command's form give no keys: any node answers with Redis' error.
fn key_positions(cmd: &Command) -> Option<Vec<usize>> {
    let argc = cmd.argc();
    let name = upper(cmd.arg(0));
    let from = |start: usize, end: usize, step: usize| -> Vec<usize> { (start..end).step_by(step).collect() };
    let numkeys = |at: usize| -> Option<Vec<usize>> {
        let n: usize = std::str::from_utf8(cmd.args().nth(at)?).ok()?.parse().ok()?;
        let first = at + 1;
        // checked: a client's numkeys near usize::MAX must not overflow.
        let end = first.checked_add(n).filter(|&e| e <= argc)?;
        Some(from(first, end, 1))
    };
    Some(match name.as_str() {
        "PING" | "ECHO" | "INFO" | "TIME" | "DBSIZE" | "KEYS" | "SCAN" | "RANDOMKEY" | "LASTSAVE"
        | "FLUSHALL" | "FLUSHDB" | "CONFIG" | "CLIENT" | "COMMAND" | "SCRIPT" | "FUNCTION" | "PUBLISH"
        | "PUBSUB" | "CLUSTER" | "READONLY" | "READWRITE" | "LATENCY" | "SLOWLOG" | "MEMORY" | "ACL"
        | "DEBUG" | "LOLWUT" | "ROLE" | "SAVE" | "BGSAVE" | "BGREWRITEAOF" | "WAIT" | "WAITAOF" => {
            // MEMORY USAGE <key> is the one subcommand above with a key.
            if name == "MEMORY" && argc >= 3 && cmd.arg(1).eq_ignore_ascii_case(b"USAGE") {
                return Some(vec![2]);
            }
            return None;
        }
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "MGET" | "WATCH" | "SINTER" | "SUNION" | "SDIFF"
        | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "PFCOUNT" | "PFMERGE" => from(1, argc, 1),
        "MSET" | "MSETNX" => from(1, argc, 2),
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => from(1, argc.saturating_sub(1), 1),
        "RENAME" | "RENAMENX" | "SMOVE" | "RPOPLPUSH" | "LMOVE" | "COPY" | "BRPOPLPUSH" | "BLMOVE"
        | "GEOSEARCHSTORE" | "ZRANGESTORE" | "LCS" => from(1, argc.min(3), 1),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => numkeys(2)?,
        "ZUNION" | "ZINTER" | "ZDIFF" | "ZINTERCARD" | "SINTERCARD" | "LMPOP" | "ZMPOP" => numkeys(1)?,
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => {
            let mut k = numkeys(2)?;
            k.insert(0, 1);
            k
        }
        "BLMPOP" | "BZMPOP" => numkeys(2)?,
        "BITOP" => from(2, argc, 1),
        "OBJECT" | "XINFO" | "XGROUP" => from(2, argc.min(3), 1),
        "XREAD" | "XREADGROUP" => {
            let streams = cmd.args().position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            let rest = argc - streams - 1;
            if rest == 0 || rest % 2 != 0 {
                return None;
            }
            from(streams + 1, streams + 1 + rest / 2, 1)
        }
        _ if argc >= 2 => vec![1],
        _ => return None,
    })
}

/// Decides how `cmd` is routed on a cluster.
pub fn route(cmd: &Command) -> Route {
    let positions = match key_positions(cmd) {
        Some(p) if !p.is_empty() => p,
        _ => return Route::Any,
    };
    let first = positions[0];
    let slot = slot_of(cmd.arg(first));
    if positions.iter().all(|&p| slot_of(cmd.arg(p)) == slot) {
        return Route::Slot(slot);
    }
    let name = upper(cmd.arg(0));
    match name.as_str() {
        "MGET" => Route::Split {
            split: Split::Values,
            first: 1,
            stride: 1,
        },
        "MSET" if (cmd.argc() - 1) % 2 == 0 => Route::Split {
            split: Split::Ok,
            first: 1,
            stride: 2,
        },
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" => Route::Split {
            split: Split::Count,
            first: 1,
            stride: 1,
        },
        _ => Route::CrossSlot,
    }
}

fn upper(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Command {
        Command::from_args(args)
    }

    #[test]
    fn routes() {
        assert_eq!(route(&cmd(&["GET", "foo"])), Route::Slot(12182));
        assert_eq!(route(&cmd(&["PING"])), Route::Any);
        assert_eq!(route(&cmd(&["DBSIZE"])), Route::Any);
        assert_eq!(route(&cmd(&["MEMORY", "USAGE", "foo"])), Route::Slot(12182));
        assert_eq!(route(&cmd(&["MGET", "{a}1", "{a}2"])), Route::Slot(slot_of(b"a")));
        assert!(matches!(
            route(&cmd(&["MGET", "foo", "bar"])),
            Route::Split {
                split: Split::Values,
                ..
            }
        ));
        assert!(matches!(
            route(&cmd(&["MSET", "foo", "1", "bar", "2"])),
            Route::Split {
                split: Split::Ok,
                stride: 2,
                ..
            }
        ));
        assert!(matches!(
            route(&cmd(&["DEL", "foo", "bar"])),
            Route::Split {
                split: Split::Count,
                ..
            }
        ));
        assert_eq!(route(&cmd(&["MSETNX", "foo", "1", "bar", "2"])), Route::CrossSlot);
        assert_eq!(
            route(&cmd(&["MSETNX", "foo", "1", "foo", "2"])),
            Route::Slot(12182)
        );
        assert_eq!(route(&cmd(&["RENAME", "foo", "bar"])), Route::CrossSlot);
        assert_eq!(route(&cmd(&["EVAL", "return 1", "0"])), Route::Any);
        assert_eq!(route(&cmd(&["EVAL", "return 1", "1", "foo"])), Route::Slot(12182));
        assert_eq!(route(&cmd(&["EVAL", "return 1", "2", "foo"])), Route::Any);
        // numkeys that would overflow: no keys, any node answers Redis' error.
        let max = usize::MAX.to_string();
        assert_eq!(route(&cmd(&["EVAL", "return 1", &max, "foo"])), Route::Any);
        assert_eq!(route(&cmd(&["ZUNION", &max, "foo"])), Route::Any);
        assert_eq!(route(&cmd(&["ZUNIONSTORE", "d", &max, "foo"])), Route::Any);
        assert_eq!(route(&cmd(&["BLPOP", "foo", "bar", "0"])), Route::CrossSlot);
        assert_eq!(route(&cmd(&["BLPOP", "foo", "0"])), Route::Slot(12182));
        assert_eq!(route(&cmd(&["ZUNIONSTORE", "foo", "1", "bar"])), Route::CrossSlot);
        assert_eq!(
            route(&cmd(&["XREAD", "COUNT", "1", "STREAMS", "foo", "0"])),
            Route::Slot(12182)
        );
        assert_eq!(route(&cmd(&["XREAD", "STREAMS", "foo"])), Route::Any);
        assert_eq!(
            route(&cmd(&["BITOP", "AND", "{x}d", "{x}a", "{x}b"])),
            Route::Slot(slot_of(b"x"))
        );
    }
}
