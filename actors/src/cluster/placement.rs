//! Where a client's command goes on a cluster relayer: to the master of its keys' slot, split
//! into one part per slot (multi-key commands that Redis Cluster would refuse, the replies
//! merged back), to every master (keyless commands about the whole dataset), or not sent at
//! all (keys on several slots for a command that cannot be split, commands one node cannot
//! answer for the cluster). The session asks; the backend then sends what it is given.

use super::admin::{keyless, Keyless};
use super::gather::Merge;
use super::keys::{self, Route};
use super::slot::slot_of;
use crate::command::{Spec, Split};
use crate::learned_commands::CommandTable;
use crate::redis::messages::Request;
use crate::resp::request::Command;
use crate::resp::write;
use bytes::Bytes;
use std::collections::HashMap;

/// Redis Cluster's answer to keys on several slots.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

#[derive(Debug)]
pub enum Placement {
    /// To the master of this slot (None: any master).
    Slot(Option<u16>),
    /// Keys on several slots: one part per slot, the replies merged (a `Request::Gather`).
    Split(Request),
    /// To every master, the replies merged (a `Request::FanOut`), or to the master a SCAN
    /// cursor names.
    FanOut(Request),
    /// Not sent: this error reply is the answer.
    Refused(Bytes),
}

/// Where `cmd` (whose entry in the command table is `spec`) goes; `learned`: the backend's
/// own description of its commands, for those the table does not know.
pub fn place(cmd: &Command, spec: &'static Spec, learned: Option<&CommandTable>) -> Placement {
    match keyless(cmd, spec) {
        Some(Keyless::Every(merge)) => {
            let frame = cmd.frame().clone();
            return Placement::FanOut(Request::FanOut { frame, merge });
        }
        Some(Keyless::Slot(s)) => return Placement::Slot(Some(s)),
        Some(Keyless::Refuse(err)) => return Placement::Refused(err.resp()),
        Some(Keyless::Invalid(answer)) => return Placement::Refused(answer),
        None => {}
    }
    match keys::route(cmd, spec, learned) {
        Route::Any => Placement::Slot(None),
        Route::Slot(s) => Placement::Slot(Some(s)),
        Route::CrossSlot => Placement::Refused(write::error(CROSSSLOT)),
        Route::Split { split, first, stride } => Placement::Split(split_by_slot(cmd, split, first, stride)),
    }
}

/// A multi-key command whose keys are on several slots, as one part per slot, keys in the
/// order they came (each with its `stride - 1` values).
fn split_by_slot(cmd: &Command, split: Split, first: usize, stride: usize) -> Request {
    let nkeys = (cmd.argc() - first) / stride;
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    // The group of each slot by index: a scan of the groups per key was keys x slots.
    let mut group_of: HashMap<u16, usize> = HashMap::new();
    for k in 0..nkeys {
        let slot = slot_of(cmd.arg(first + k * stride));
        let g = *group_of.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(k);
    }
    let parts = groups
        .iter()
        .map(|(slot, ks)| {
            let mut args: Vec<&[u8]> = vec![cmd.arg(0)];
            for &k in ks {
                let pos = first + k * stride;
                args.extend((pos..pos + stride).map(|i| cmd.arg(i)));
            }
            (Some(*slot), Command::from_args(&args).into_frame())
        })
        .collect();
    let merge = match split {
        Split::Values => Merge::Values {
            positions: groups.into_iter().map(|(_, ks)| ks).collect(),
            total: nkeys,
        },
        Split::Ok => Merge::AllOk,
        Split::Count => Merge::Sum,
    };
    Request::Gather { parts, merge }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command;
    use crate::redis::messages::Request;

    fn place_args(args: &[&str]) -> Placement {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let cmd = Command::from_args(&args);
        place(&cmd, command::lookup(cmd.arg(0)), None)
    }

    fn slot(key: &str) -> u16 {
        slot_of(key.as_bytes())
    }

    /// Keys on different slots: "a" is on 15495, "b" on 3300, "{a}x" with "a".
    #[test]
    fn one_slot_goes_to_its_master() {
        assert!(matches!(place_args(&["GET", "a"]), Placement::Slot(Some(s)) if s == slot("a")));
        assert!(matches!(place_args(&["MGET", "a", "{a}x"]), Placement::Slot(Some(s)) if s == slot("a")));
        assert!(matches!(place_args(&["PING"]), Placement::Slot(None)));
    }

    #[test]
    fn mset_over_two_slots_is_split_keeping_each_keys_value() {
        let Placement::Split(Request::Gather { parts, merge }) =
            place_args(&["MSET", "a", "1", "b", "2", "{a}x", "3"])
        else {
            panic!("not split")
        };
        assert_eq!(merge, Merge::AllOk);
        let parts: Vec<(Option<u16>, Bytes)> = parts;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, Some(slot("a")));
        assert_eq!(
            parts[0].1,
            Command::from_args(&[&b"MSET"[..], b"a", b"1", b"{a}x", b"3"]).into_frame()
        );
        assert_eq!(
            parts[1],
            (
                Some(slot("b")),
                Command::from_args(&[&b"MSET"[..], b"b", b"2"]).into_frame()
            )
        );
    }

    #[test]
    fn mget_over_slots_merges_values_back_in_the_clients_order() {
        let Placement::Split(Request::Gather { merge, .. }) = place_args(&["MGET", "a", "b", "{a}x"]) else {
            panic!("not split")
        };
        assert_eq!(
            merge,
            Merge::Values {
                positions: vec![vec![0, 2], vec![1]],
                total: 3
            }
        );
    }

    #[test]
    fn what_cannot_be_split_or_sent_is_answered_here() {
        match place_args(&["SUNIONSTORE", "a", "b"]) {
            Placement::Refused(e) => assert!(e.starts_with(b"-CROSSSLOT"), "{e:?}"),
            other => panic!("{other:?}"),
        }
        match place_args(&["CLUSTER", "FAILOVER"]) {
            Placement::Refused(e) => assert!(e.starts_with(b"-ERR relayer: 'CLUSTER FAILOVER'"), "{e:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            place_args(&["DBSIZE"]),
            Placement::FanOut(Request::FanOut {
                merge: Merge::Sum,
                ..
            })
        ));
    }
}
