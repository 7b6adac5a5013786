//! Keyless commands on a cluster: which go to every master (and how their replies are
//! merged), which one master answers as well as any, and which the relayer refuses because the
//! one master it would reach says nothing about the cluster (or changes only that node). The
//! command table says which is which (`command::Cluster`).

use super::gather::Merge;
use crate::command::{self, Cluster, Spec};
use crate::error::RelayerError;
use crate::resp::request::Command;
use crate::resp::write;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyless {
    /// Sent to every master, the replies merged.
    Every(Merge),
    /// About one slot (CLUSTER COUNTKEYSINSLOT, GETKEYSINSLOT): its master answers.
    Slot(u16),
    /// Refused: it would reach one node only.
    Refuse(RelayerError),
    /// Answered with this error reply, as is (Redis' for a wrong number of arguments).
    Invalid(Bytes),
}

/// How a cluster relayer treats `cmd` (whose entry in the command table is `spec`) when it is
/// one of the keyless commands above; None for every other command (routed by its keys, or to
/// any master when it has none).
pub fn keyless(cmd: &Command, spec: &'static Spec) -> Option<Keyless> {
    let sub = (cmd.argc() >= 2).then(|| cmd.arg(1));
    let entry = spec.resolve(sub);
    let argc = cmd.argc();
    match entry.cluster {
        Cluster::ByKeys | Cluster::Split { .. } => None,
        Cluster::EveryMaster {
            merge,
            argc: n,
            at_least,
        } => {
            let fits = n == 0 || argc == n || (at_least && argc >= n);
            fits.then(|| Keyless::Every(merge_of(merge)))
        }
        Cluster::SlotArgument { argc: n } => {
            // Without its slot it would reach any master: answered here, with Redis' text.
            if argc != n {
                let sub = entry.name.split_once(' ').map_or("", |(_, s)| s);
                return Some(Keyless::Invalid(write::error(&format!(
                    "ERR wrong number of arguments for 'cluster|{}' command",
                    sub.to_ascii_lowercase()
                ))));
            }
            // A slot that is not a number or out of range: any master gives Redis' error.
            let slot = u16::try_from(crate::numbers::integer(cmd.arg(2))?).ok()?;
            (usize::from(slot) < super::slot::SLOTS).then_some(Keyless::Slot(slot))
        }
        Cluster::Refused => {
            // Named as the client would name it: with its subcommand where it has some.
            let what = match sub {
                Some(s) if !spec.subs.is_empty() => {
                    format!(
                        "{} {}",
                        spec.name,
                        String::from_utf8_lossy(s).to_ascii_uppercase()
                    )
                }
                _ => spec.name.to_string(),
            };
            Some(Keyless::Refuse(RelayerError::OneNodeOnly(what)))
        }
        // Answered as it is, inside MULTI too.
        Cluster::RefusedAsking => Some(Keyless::Invalid(RelayerError::AskingNotRelayed.resp())),
    }
}

fn merge_of(m: command::Merge) -> Merge {
    match m {
        command::Merge::Sum => Merge::Sum,
        command::Merge::Concat => Merge::Concat,
        command::Merge::Scan => Merge::Scan,
        command::Merge::AllOk => Merge::AllOk,
        command::Merge::Same => Merge::Same,
        command::Merge::And => Merge::And,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(args: &[&str]) -> Option<Keyless> {
        let cmd = Command::from_args(args);
        keyless(&cmd, command::lookup(cmd.arg(0)))
    }

    #[test]
    fn keyless_commands() {
        assert_eq!(k(&["flushall"]), Some(Keyless::Every(Merge::AllOk)));
        assert_eq!(k(&["FLUSHDB", "ASYNC"]), Some(Keyless::Every(Merge::AllOk)));
        assert_eq!(k(&["DBSIZE"]), Some(Keyless::Every(Merge::Sum)));
        assert_eq!(
            k(&["SCRIPT", "load", "return 1"]),
            Some(Keyless::Every(Merge::Same))
        );
        assert_eq!(k(&["SCRIPT", "EXISTS", "a"]), Some(Keyless::Every(Merge::And)));
        assert_eq!(k(&["CLUSTER", "COUNTKEYSINSLOT", "7"]), Some(Keyless::Slot(7)));
        assert_eq!(k(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]), None);
        assert_eq!(
            k(&["CLUSTER", "GETKEYSINSLOT", "7", "10"]),
            Some(Keyless::Slot(7))
        );
        // Without a slot (or with too many arguments): Redis' arity error, never a panic.
        let arity = |sub: &str| {
            Some(Keyless::Invalid(write::error(&format!(
                "ERR wrong number of arguments for 'cluster|{sub}' command"
            ))))
        };
        assert_eq!(k(&["cluster", "countkeysinslot"]), arity("countkeysinslot"));
        assert_eq!(
            k(&["CLUSTER", "COUNTKEYSINSLOT", "1", "2"]),
            arity("countkeysinslot")
        );
        assert_eq!(k(&["CLUSTER", "GetKeysInSlot"]), arity("getkeysinslot"));
        assert_eq!(k(&["CLUSTER", "GETKEYSINSLOT", "7"]), arity("getkeysinslot"));
        assert_eq!(k(&["CLUSTER", "INFO"]), None);
        assert_eq!(k(&["CONFIG", "GET", "maxmemory"]), None);
        assert_eq!(k(&["INFO"]), None);
        assert_eq!(k(&["GET", "k"]), None);
        for refused in [
            &["CONFIG", "SET", "maxmemory", "1"][..],
            &["CLUSTER", "FAILOVER"],
            &["SHUTDOWN"],
            &["BGSAVE"],
            &["SCRIPT", "KILL"],
        ] {
            match k(refused) {
                Some(Keyless::Refuse(RelayerError::OneNodeOnly(what))) => {
                    assert!(what.starts_with(&refused[0].to_uppercase()), "{what}")
                }
                other => panic!("{refused:?}: {other:?}"),
            }
        }
    }
}
