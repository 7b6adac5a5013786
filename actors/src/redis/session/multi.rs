//! A client's MULTI block: the commands it queues (answered `+QUEUED` by the relayer), written
//! as one contiguous block at EXEC so that no other client's command runs inside it. What
//! cannot be queued is answered at once, and most of it makes EXEC abort, as in Redis.

use crate::cluster::admin::{keyless, Keyless};
use crate::cluster::keys::{self, Route};
use crate::cluster::placement::CROSSSLOT;
use crate::command::{Kind, Spec};
use crate::error::RelayerError;
use crate::learned_commands::CommandTable;
use crate::redis::backend::KnownDbs;
use crate::resp::request::Command;
use crate::resp::write::{error, unknown_command, unknown_subcommand, wrong_arity};
use bytes::Bytes;

const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// What the block needs to know of the relayer it runs on.
pub struct Where<'a> {
    pub cluster: bool,
    pub known_dbs: &'a KnownDbs,
    /// What the backend said of its commands, if it did (see `cluster::keys::route`).
    pub learned: Option<&'a CommandTable>,
}

pub struct Multi {
    /// MULTI and the commands queued, as received.
    frames: Vec<Bytes>,
    /// A command was refused while queueing: EXEC aborts, as in Redis.
    dirty: bool,
    /// The DB the block leaves the connection on (a SELECT inside it).
    select: Option<u32>,
    /// On a cluster: the slot of the keys queued so far (all must share it).
    slot: Option<u16>,
}

/// What became of a command sent inside the block.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued: the client gets `+QUEUED`.
    Yes,
    /// Not queued: the client gets this error, and `dirty` says whether EXEC will abort.
    No(Bytes),
    /// It ends or acts on the block itself (EXEC, DISCARD, QUIT, RESET): the session runs it.
    Outside,
    /// The block ends, aborted with this reply (EXEC called with arguments).
    Abort(Bytes),
}

/// The block as EXEC sends it.
pub struct Block {
    /// MULTI, the queued commands and EXEC.
    pub frames: Vec<Bytes>,
    /// The DB the connection is on after it, when a SELECT inside it changed it.
    pub select: Option<u32>,
    pub slot: Option<u16>,
}

impl Multi {
    /// A block opened by `multi`, the MULTI frame.
    pub fn new(multi: Bytes) -> Self {
        Multi {
            frames: vec![multi],
            dirty: false,
            select: None,
            slot: None,
        }
    }

    /// Whether EXEC will abort.
    #[cfg(test)]
    fn dirty(&self) -> bool {
        self.dirty
    }

    /// Queues `cmd` (its entry in the command table: `spec`), or says why not.
    pub fn queue(&mut self, spec: &'static Spec, cmd: &Command, at: &Where) -> Queued {
        // As in Redis, a command it does not know, or called with the wrong number of
        // arguments, is refused before anything else, and the block with it; EXEC so called
        // ends the block.
        if spec.kind == Kind::Exec && cmd.argc() != 1 {
            return Queued::Abort(exec_with_arguments());
        }
        if let Some(refusal) = at.learned.and_then(|t| not_a_command(t, cmd)) {
            return self.abort(refusal);
        }
        let entry = spec.resolve((cmd.argc() > 1).then(|| cmd.arg(1)));
        // CLIENT's refusal inside MULTI is Redis' own (below).
        if let (Some(why), false) = (entry.role.refused(), spec.kind == Kind::Client) {
            return self.abort(super::refused(entry, why));
        }
        let name = || String::from_utf8_lossy(cmd.arg(0)).to_uppercase();
        match spec.kind {
            Kind::Exec | Kind::Discard | Kind::Quit | Kind::Reset => return Queued::Outside,
            Kind::Multi => return Queued::No(error("ERR MULTI calls can not be nested")),
            Kind::Select if cmd.argc() != 2 => return self.abort(wrong_arity(cmd.arg(0))),
            // An index Redis refuses is its error at EXEC, and leaves the DB as it was.
            Kind::Select => match super::local::select(cmd.arg(1), at.cluster) {
                Ok(db) if at.known_dbs.contains(db) => self.select = Some(db),
                Ok(_) => return self.abort(RelayerError::SelectInMulti.resp()),
                Err(_) => {}
            },
            Kind::Watch => return Queued::No(error("ERR WATCH inside MULTI is not allowed")),
            // At EXEC they would leave the shared connection subscribed or monitoring. Blocking
            // commands do not block inside MULTI: Redis runs them at EXEC, like any.
            k if k.enters_push() => {
                return self.abort(RelayerError::NotInMulti(name()).resp());
            }
            Kind::Hello | Kind::Auth | Kind::Client => {
                return self.abort(error("ERR Command not allowed inside a transaction"))
            }
            _ => {}
        }
        if at.cluster {
            let route = match keyless(cmd, spec) {
                Some(Keyless::Slot(s)) => Route::Slot(s),
                Some(Keyless::Invalid(answer)) => return self.abort(answer),
                // Inside a block it would reach one master only.
                Some(Keyless::Every(_) | Keyless::Refuse(_)) => {
                    return self.abort(RelayerError::MultiOnOneNode(name()).resp());
                }
                None => keys::route(cmd, spec, at.learned),
            };
            self.slot = match route {
                Route::Any => self.slot,
                Route::Slot(s) if self.slot.is_none_or(|m| m == s) => Some(s),
                _ => return self.abort(error(CROSSSLOT)),
            };
        }
        self.frames.push(cmd.frame().clone());
        Queued::Yes
    }

    /// The reply EXEC gets when the block aborts.
    pub fn abort_reply() -> Bytes {
        error("EXECABORT Transaction discarded because of previous errors.")
    }

    fn abort(&mut self, reply: Bytes) -> Queued {
        self.dirty = true;
        Queued::No(reply)
    }

    /// The block EXEC sends; Err: the reply EXEC gets instead, as it aborts.
    pub fn exec(mut self) -> Result<Block, Bytes> {
        if self.dirty {
            return Err(Self::abort_reply());
        }
        self.frames.push(Bytes::from_static(EXEC));
        Ok(Block {
            frames: self.frames,
            select: self.select,
            slot: self.slot,
        })
    }
}

/// What EXEC called with arguments gets, in a block or not: Redis aborts the transaction it
/// would run (if any) for the wrong number of arguments.
pub fn exec_with_arguments() -> Bytes {
    error("EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command")
}

/// Redis' refusal of `cmd` before it is queued, by what the backend said of its commands: a
/// name it does not know, a subcommand its command does not have, the wrong number of
/// arguments.
fn not_a_command(table: &CommandTable, cmd: &Command) -> Option<Bytes> {
    let Some(entry) = table.get(cmd.arg(0)) else {
        let args: Vec<&[u8]> = cmd.args().collect();
        return Some(unknown_command(&args));
    };
    let info = match (cmd.argc() > 1).then(|| cmd.arg(1)) {
        Some(sub) if entry.has_subcommands() => match entry.sub(sub) {
            Some(info) => info,
            None => return Some(unknown_subcommand(cmd.arg(0), sub)),
        },
        _ => &entry.info,
    };
    let argc = cmd.argc() as i64;
    let fits = if info.arity >= 0 {
        argc == info.arity
    } else {
        argc >= -info.arity
    };
    (!fits).then(|| wrong_arity(info.name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn queue(m: &mut Multi, args: &[&str], at: &Where) -> Queued {
        let cmd = Command::from_args(args);
        m.queue(lookup(cmd.arg(0)), &cmd, at)
    }

    fn multi() -> Multi {
        Multi::new(Bytes::from_static(b"*1\r\n$5\r\nMULTI\r\n"))
    }

    #[test]
    fn queues_in_order_and_exec_writes_the_block() {
        let known = KnownDbs::new();
        let at = Where {
            cluster: false,
            known_dbs: &known,
            learned: None,
        };
        let mut m = multi();
        assert_eq!(queue(&mut m, &["SET", "k", "v"], &at), Queued::Yes);
        assert_eq!(queue(&mut m, &["incr", "n"], &at), Queued::Yes);
        // Blocking commands are queued: they do not block inside MULTI.
        assert_eq!(queue(&mut m, &["BLPOP", "l", "0"], &at), Queued::Yes);
        assert_eq!(queue(&mut m, &["SELECT", "0"], &at), Queued::Yes);
        for outside in ["EXEC", "discard", "QUIT", "RESET"] {
            assert_eq!(queue(&mut m, &[outside], &at), Queued::Outside);
        }
        // Errors that leave the block as it was.
        assert!(matches!(queue(&mut m, &["MULTI"], &at), Queued::No(_)));
        assert!(matches!(queue(&mut m, &["WATCH", "k"], &at), Queued::No(_)));
        assert!(!m.dirty());
        let block = m.exec().expect("not dirty");
        assert_eq!(block.frames.len(), 6);
        assert_eq!(&block.frames[5][..], EXEC);
        assert_eq!(block.select, Some(0));
        assert_eq!(block.slot, None);
    }

    #[test]
    fn what_cannot_run_in_a_block_makes_exec_abort() {
        let known = KnownDbs::new();
        let at = Where {
            cluster: false,
            known_dbs: &known,
            learned: None,
        };
        for args in [
            &["SUBSCRIBE", "c"][..],
            &["MONITOR"],
            &["SCRIPT", "DEBUG", "YES"],
            &["CLIENT", "KILL", "ID", "1"],
            &["AUTH", "x"],
            &["CLIENT", "SETNAME", "x"],
            &["SELECT", "7"],
            &["SELECT"],
        ] {
            let mut m = multi();
            assert!(matches!(queue(&mut m, args, &at), Queued::No(_)), "{args:?}");
            assert!(m.dirty(), "{args:?}");
            let abort = m.exec().err().expect("aborts");
            assert!(abort.starts_with(b"-EXECABORT"), "{args:?}");
        }
    }

    /// `COMMAND INFO get set exec discard multi object config unwatch client watch`, as a
    /// redis-server 7.0 answered it.
    const REDIS_7: &[u8] = include_bytes!("../../../fixtures/command-info-multi-redis-7.0.resp");

    #[test]
    fn what_redis_refuses_before_queueing_is_refused_and_the_block_with_it() {
        let known = KnownDbs::new();
        let table = CommandTable::from_reply(REDIS_7).unwrap();
        let at = Where {
            cluster: false,
            known_dbs: &known,
            learned: Some(&table),
        };
        let refused: &[(&[&str], &str)] = &[
            (
                &["NOSUCHCMD", "x", "y"],
                "-ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' 'y' \r\n",
            ),
            (&["GET"], "-ERR wrong number of arguments for 'get' command\r\n"),
            (
                &["CONFIG"],
                "-ERR wrong number of arguments for 'config' command\r\n",
            ),
            (
                &["CONFIG", "NOSUCH"],
                "-ERR unknown subcommand 'NOSUCH'. Try CONFIG HELP.\r\n",
            ),
            (
                &["config", "get"],
                "-ERR wrong number of arguments for 'config|get' command\r\n",
            ),
            (
                &["DISCARD", "x"],
                "-ERR wrong number of arguments for 'discard' command\r\n",
            ),
            // Before WATCH's own refusal inside MULTI, which leaves the block as it was.
            (
                &["WATCH"],
                "-ERR wrong number of arguments for 'watch' command\r\n",
            ),
        ];
        for (args, reply) in refused {
            let mut m = multi();
            assert_eq!(queue(&mut m, &["SET", "k", "v"], &at), Queued::Yes);
            match queue(&mut m, args, &at) {
                Queued::No(e) => assert_eq!(std::str::from_utf8(&e).unwrap(), *reply, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
            assert!(m.dirty(), "{args:?}");
        }
        let mut m = multi();
        assert_eq!(
            queue(&mut m, &["EXEC", "x"], &at),
            Queued::Abort(exec_with_arguments())
        );
        // What Redis queues is queued: UNWATCH included.
        let mut m = multi();
        for args in [
            &["UNWATCH"][..],
            &["config", "GET", "maxmemory"],
            &["OBJECT", "ENCODING", "k"],
        ] {
            assert_eq!(queue(&mut m, args, &at), Queued::Yes, "{args:?}");
        }
        assert!(!m.dirty());
    }

    #[test]
    fn on_a_cluster_the_block_keeps_to_one_slot() {
        let known = KnownDbs::new();
        let at = Where {
            cluster: true,
            known_dbs: &known,
            learned: None,
        };
        let mut m = multi();
        assert_eq!(queue(&mut m, &["SET", "{a}1", "v"], &at), Queued::Yes);
        assert_eq!(queue(&mut m, &["PING"], &at), Queued::Yes);
        assert_eq!(queue(&mut m, &["GET", "{a}2"], &at), Queued::Yes);
        let block = m.exec().expect("one slot");
        assert_eq!(block.slot, Some(crate::cluster::slot::slot_of(b"a")));
        let mut m = multi();
        assert_eq!(queue(&mut m, &["SET", "{a}1", "v"], &at), Queued::Yes);
        assert_eq!(
            queue(&mut m, &["SET", "{b}1", "v"], &at),
            Queued::No(error(CROSSSLOT))
        );
        assert!(m.dirty());
        let mut m = multi();
        assert!(matches!(queue(&mut m, &["DBSIZE"], &at), Queued::No(_)));
        assert!(m.dirty());
    }
}
