//! Where a command's keys are, so a cluster relayer can route it by their slot: the command
//! table says where (`command::Keys`) and whether keys on several slots can be split; for a
//! command it does not know, what the backend's COMMAND said (`learned_commands`), else its
//! first argument.

use super::slot::slot_of;
use crate::command::{self, Keys, Spec, Split};
use crate::learned_commands::CommandTable;
use crate::resp::request::Command;

/// What the relayer does with a command on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No key: any master answers it.
    Any,
    /// Every key is in this slot.
    Slot(u16),
    /// Keys in several slots, for a command that can be split by key (keys from `first`, each
    /// followed by `stride - 1` values).
    Split {
        split: Split,
        first: usize,
        stride: usize,
    },
    /// Keys in several slots, for a command that cannot be split.
    CrossSlot,
}

/// Positions of the keys of `cmd` (argument indices) as `keys` says, or None for a keyless
/// command. Arguments that do not fit the command's form give no keys: any node answers with
/// Redis' error.
fn key_positions(cmd: &Command, keys: Keys) -> Option<Vec<usize>> {
    let argc = cmd.argc();
    let from = |start: usize, end: usize, step: usize| -> Vec<usize> { (start..end).step_by(step).collect() };
    let numkeys = |at: usize| -> Option<Vec<usize>> {
        let n = usize::try_from(crate::numbers::integer(cmd.args().nth(at)?)?).ok()?;
        let first = at + 1;
        // checked: a client's numkeys near usize::MAX must not overflow.
        let end = first.checked_add(n).filter(|&e| e <= argc)?;
        Some(from(first, end, 1))
    };
    Some(match keys {
        Keys::None => return None,
        Keys::First if argc >= 2 => vec![1],
        Keys::First => return None,
        Keys::All { from: start, step } => from(start, argc, step),
        Keys::AllButLast => from(1, argc.saturating_sub(1), 1),
        Keys::Some { from: start, count } => from(start, argc.min(start + count), 1),
        Keys::NumKeys { at } => numkeys(at)?,
        Keys::DestNumKeys => {
            let mut k = numkeys(2)?;
            k.insert(0, 1);
            k
        }
        Keys::MemoryUsage if argc >= 3 => vec![2],
        Keys::MemoryUsage => return None,
        Keys::Streams => {
            let streams = cmd.args().position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            let rest = argc - streams - 1;
            if rest == 0 || rest % 2 != 0 {
                return None;
            }
            from(streams + 1, streams + 1 + rest / 2, 1)
        }
    })
}

/// Decides how `cmd`, whose entry in the command table is `spec`, is routed on a cluster;
/// `learned`: the backend's own description of its commands, if it gave one, for a command
/// the table does not know.
pub fn route(cmd: &Command, spec: &'static Spec, learned: Option<&CommandTable>) -> Route {
    let spec = spec.resolve((cmd.argc() > 1).then(|| cmd.arg(1)));
    let unknown = std::ptr::eq(spec, &command::FORWARDED);
    // Most commands have one key, the first argument: its slot, without a list of positions.
    if !unknown && matches!(spec.keys, Keys::First) && cmd.argc() >= 2 {
        return Route::Slot(slot_of(cmd.arg(1)));
    }
    let positions = if unknown {
        learned
            .and_then(|t| t.key_positions(cmd))
            .or_else(|| key_positions(cmd, Keys::First))
    } else {
        key_positions(cmd, spec.keys)
    };
    let positions = match positions {
        Some(p) if !p.is_empty() => p,
        _ => return Route::Any,
    };
    let first = positions[0];
    let slot = slot_of(cmd.arg(first));
    if positions[1..].iter().all(|&p| slot_of(cmd.arg(p)) == slot) {
        return Route::Slot(slot);
    }
    match spec.cluster {
        // MSET's values must come in pairs to be split.
        command::Cluster::Split { split, first, stride } if (cmd.argc() - first) % stride == 0 => {
            Route::Split { split, first, stride }
        }
        _ => Route::CrossSlot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Command {
        Command::from_args(args)
    }

    fn route(cmd: &Command) -> Route {
        super::route(cmd, command::lookup(cmd.arg(0)), None)
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
