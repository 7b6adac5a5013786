//! Keyless commands on a cluster: which go to every master (and how their replies are
//! merged), which one master answers as well as any, and which the relayer refuses because the
//! one master it would reach says nothing about the cluster (or changes only that node).

use super::gather::Merge;
use crate::resp::request::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyless {
    /// Sent to every master, the replies merged.
    Every(Merge),
    /// About one slot (CLUSTER COUNTKEYSINSLOT, GETKEYSINSLOT): its master answers.
    Slot(u16),
    /// Refused, with this error.
    Refuse(String),
    /// Answered with this error, as Redis would (a wrong number of arguments).
    Invalid(String),
}

/// How a cluster relayer treats `cmd` when it is one of the keyless commands above; None for
/// every other command (routed by its keys, or to any master when it has none).
pub fn keyless(cmd: &Command) -> Option<Keyless> {
    let name = String::from_utf8_lossy(cmd.arg(0)).to_ascii_uppercase();
    let sub = (cmd.argc() >= 2).then(|| String::from_utf8_lossy(cmd.arg(1)).to_ascii_uppercase());
    let sub = sub.as_deref().unwrap_or("");
    let argc = cmd.argc();
    let every = |m| Some(Keyless::Every(m));
    let refuse = |what: &str| {
        Some(Keyless::Refuse(format!(
            "ERR relayer: '{what}' would reach one node of the cluster only: send it to each node directly"
        )))
    };
    match (name.as_str(), sub) {
        ("DBSIZE", _) if argc == 1 => every(Merge::Sum),
        ("KEYS", _) if argc == 2 => every(Merge::Concat),
        ("SCAN", _) if argc >= 2 => every(Merge::Scan),
        // FLUSHALL [ASYNC|SYNC]: +OK when every master says so, else the first error.
        ("FLUSHALL" | "FLUSHDB", _) => every(Merge::AllOk),
        ("SCRIPT", "LOAD") => every(Merge::Same),
        ("SCRIPT", "FLUSH") => every(Merge::AllOk),
        ("SCRIPT", "EXISTS") => every(Merge::And),
        ("FUNCTION", "LOAD") => every(Merge::Same),
        ("FUNCTION", "FLUSH" | "DELETE" | "RESTORE") => every(Merge::AllOk),
        ("SCRIPT", "KILL") | ("FUNCTION", "KILL") => refuse(&format!("{name} {sub}")),
        ("CONFIG", "SET" | "RESETSTAT" | "REWRITE") => refuse(&format!("{name} {sub}")),
        ("ACL", "SETUSER" | "DELUSER" | "LOAD" | "SAVE") => refuse(&format!("{name} {sub}")),
        ("LATENCY" | "SLOWLOG", "RESET") => refuse(&format!("{name} {sub}")),
        ("MODULE", "LOAD" | "LOADEX" | "UNLOAD") => refuse(&format!("{name} {sub}")),
        ("CLUSTER", "COUNTKEYSINSLOT" | "GETKEYSINSLOT") => {
            // Without its slot it would reach any master: answered here, with Redis' text.
            let arity = if sub == "COUNTKEYSINSLOT" { 3 } else { 4 };
            if argc != arity {
                return Some(Keyless::Invalid(format!(
                    "ERR wrong number of arguments for 'cluster|{}' command",
                    sub.to_ascii_lowercase()
                )));
            }
            // A slot that is not a number or out of range: any master gives Redis' error.
            let slot = std::str::from_utf8(cmd.arg(2)).ok()?.parse::<u16>().ok()?;
            (usize::from(slot) < super::slot::SLOTS).then_some(Keyless::Slot(slot))
        }
        // What describes the cluster is the same on every node; the rest is about one node.
        ("CLUSTER", "INFO" | "SLOTS" | "SHARDS" | "NODES" | "KEYSLOT" | "HELP") => None,
        ("CLUSTER", _) => refuse(&format!("CLUSTER {sub}")),
        (
            "SHUTDOWN" | "DEBUG" | "FAILOVER" | "REPLICAOF" | "SLAVEOF" | "SAVE" | "BGSAVE" | "BGREWRITEAOF"
            | "SWAPDB" | "MIGRATE" | "READONLY" | "READWRITE",
            _,
        ) => refuse(&name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(args: &[&str]) -> Option<Keyless> {
        keyless(&Command::from_args(args))
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
            Some(Keyless::Invalid(format!(
                "ERR wrong number of arguments for 'cluster|{sub}' command"
            )))
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
                Some(Keyless::Refuse(e)) => assert!(e.starts_with("ERR relayer: '"), "{e}"),
                other => panic!("{refused:?}: {other:?}"),
            }
        }
    }
}
