//! A client's MULTI block: the commands it queues (answered `+QUEUED` by the relayer), written
//! as one contiguous block at EXEC so that no other client's command runs inside it. What
//! cannot be queued is answered at once, and most of it makes EXEC abort, as in Redis.

use super::local;
use crate::cluster::admin::{keyless, Keyless};
use crate::cluster::keys::{self, Route};
use crate::cluster::placement::CROSSSLOT;
use crate::command::{Kind, Role, Spec};
use crate::error::RelayerError;
use crate::learned_commands::CommandTable;
use crate::redis::backend::KnownDbs;
use crate::resp::reply::ReplyScanner;
use crate::resp::request::Command;
use crate::resp::write::{self, error, unknown_command, unknown_subcommand, wrong_arity};
use bytes::{Bytes, BytesMut};

const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// What the block needs to know of the relayer it runs on.
pub struct Where<'a> {
    pub cluster: bool,
    /// The client's id and name, for the CLIENT subcommands the relayer answers.
    pub client_id: u64,
    pub client_name: Option<&'a Bytes>,
    /// The client speaks RESP3: the relayer's own replies are written so.
    pub resp3: bool,
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
    /// The replies of what the relayer answers itself in the block (CLIENT SETNAME, GETNAME,
    /// ID, SETINFO), by their place among the queued commands: EXEC's array gets them there.
    local: Vec<(usize, Bytes)>,
    /// The name a CLIENT SETNAME in the block gives the client if the block runs (Some(None):
    /// no name).
    name: Option<Option<Bytes>>,
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
    /// What the relayer answers in the block, by place in EXEC's array (see `splice`).
    pub local: Vec<(usize, Bytes)>,
    /// The client's name once the block ran, if a CLIENT SETNAME in it changed it.
    pub name: Option<Option<Bytes>>,
}

impl Multi {
    /// A block opened by `multi`, the MULTI frame.
    pub fn new(multi: Bytes) -> Self {
        Multi {
            frames: vec![multi],
            dirty: false,
            select: None,
            slot: None,
            local: Vec::new(),
            name: None,
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
            Kind::Client if entry.role == Role::Local => return self.client(entry, cmd, at),
            Kind::Client if entry.role.refused().is_some() || cmd.argc() < 2 => {
                return self.abort(error("ERR Command not allowed inside a transaction"))
            }
            Kind::Hello | Kind::Auth => {
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

    /// A CLIENT subcommand the relayer answers, queued as Redis queues it: its reply (what
    /// Redis would answer at EXEC, given the name the block has set so far) takes its place in
    /// EXEC's array; a wrong number of arguments is refused now.
    fn client(&mut self, entry: &Spec, cmd: &Command, at: &Where) -> Queued {
        let name = match &self.name {
            Some(n) => n.as_ref(),
            None => at.client_name,
        };
        let reply = match entry.name {
            "CLIENT SETNAME" => match local::client_setname(cmd) {
                Ok(n) => {
                    self.name = Some(n);
                    Bytes::from_static(write::OK)
                }
                Err(e) if e.starts_with(b"-ERR wrong number") => return self.abort(e),
                Err(e) => e,
            },
            "CLIENT GETNAME" if cmd.argc() != 2 => return self.abort(local::client_arity("getname")),
            "CLIENT GETNAME" => local::client_name(name, at.resp3),
            "CLIENT ID" if cmd.argc() != 2 => return self.abort(local::client_arity("id")),
            "CLIENT ID" => local::client_id(at.client_id),
            // Its replies would follow EXEC's rules; not worth it inside a block.
            _ => return self.abort(error("ERR Command not allowed inside a transaction")),
        };
        self.local.push((self.frames.len() - 1 + self.local.len(), reply));
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
            local: self.local,
            name: self.name,
        })
    }
}

/// EXEC's array with the relayer's own replies put in their places (`at` counts among all the
/// block's commands); None when `reply` is not an array Redis wrote whole (EXEC aborted, or
/// WATCH failed: nothing ran).
pub fn splice(reply: &[u8], local: &[(usize, Bytes)]) -> Option<Bytes> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let count: usize = std::str::from_utf8(reply.strip_prefix(b"*")?.get(..header_end - 1)?)
        .ok()?
        .parse()
        .ok()?;
    let mut rest = BytesMut::from(&reply[header_end + 2..]);
    let mut scanner = ReplyScanner::default();
    let mut from_redis = Vec::with_capacity(count);
    for _ in 0..count {
        from_redis.push(scanner.scan(&mut rest).ok()??);
    }
    let total = count + local.len();
    let mut out = BytesMut::with_capacity(reply.len() + local.iter().map(|(_, r)| r.len()).sum::<usize>());
    write::put_array_header(&mut out, total);
    let (mut ours, mut theirs) = (local.iter().peekable(), from_redis.into_iter());
    for i in 0..total {
        match ours.peek() {
            Some((at, r)) if *at == i => {
                out.extend_from_slice(r);
                ours.next();
            }
            _ => out.extend_from_slice(&theirs.next()?),
        }
    }
    Some(out.freeze())
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

    /// A client numbered 1 without a name, on a single Redis or a cluster.
    fn at<'a>(known: &'a KnownDbs, cluster: bool, learned: Option<&'a CommandTable>) -> Where<'a> {
        Where {
            cluster,
            client_id: 1,
            client_name: None,
            resp3: false,
            known_dbs: known,
            learned,
        }
    }

    #[test]
    fn queues_in_order_and_exec_writes_the_block() {
        let known = KnownDbs::new();
        let at = at(&known, false, None);
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
        let at = at(&known, false, None);
        for args in [
            &["SUBSCRIBE", "c"][..],
            &["MONITOR"],
            &["SCRIPT", "DEBUG", "YES"],
            &["CLIENT", "KILL", "ID", "1"],
            &["AUTH", "x"],
            &["CLIENT", "REPLY", "OFF"],
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
        let at = at(&known, false, Some(&table));
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
    fn client_names_and_ids_are_answered_in_their_place_in_execs_array() {
        let known = KnownDbs::new();
        let before = Bytes::from_static(b"before");
        let at = Where {
            cluster: false,
            client_id: 42,
            client_name: Some(&before),
            resp3: false,
            known_dbs: &known,
            learned: None,
        };
        let mut m = multi();
        for args in [
            &["CLIENT", "GETNAME"][..],
            &["SET", "k", "v"],
            &["CLIENT", "SETNAME", "after"],
            &["CLIENT", "GETNAME"],
            &["CLIENT", "SETNAME", "no spaces allowed"],
            &["GET", "k"],
            &["CLIENT", "ID"],
        ] {
            assert_eq!(queue(&mut m, args, &at), Queued::Yes, "{args:?}");
        }
        let block = m.exec().expect("runs");
        assert_eq!(block.frames.len(), 4, "MULTI, SET, GET, EXEC");
        assert_eq!(block.name, Some(Some(Bytes::from_static(b"after"))));
        let exec = b"*2\r\n+OK\r\n$1\r\nv\r\n";
        let spliced = splice(exec, &block.local).expect("an array");
        let want = format!(
            "*7\r\n$6\r\nbefore\r\n+OK\r\n+OK\r\n$5\r\nafter\r\n-{}\r\n$1\r\nv\r\n:42\r\n",
            &local::BAD_NAME
        );
        assert_eq!(std::str::from_utf8(&spliced).unwrap(), want);
        // WATCH failed, or EXEC aborted: nothing ran.
        assert_eq!(splice(b"*-1\r\n", &block.local), None);
        assert_eq!(splice(b"-EXECABORT x\r\n", &block.local), None);
        // A wrong number of arguments is refused at once, as Redis refuses it.
        let mut m = multi();
        assert!(matches!(
            queue(&mut m, &["CLIENT", "GETNAME", "x"], &at),
            Queued::No(_)
        ));
        assert!(m.dirty());
    }

    #[test]
    fn on_a_cluster_the_block_keeps_to_one_slot() {
        let known = KnownDbs::new();
        let at = at(&known, true, None);
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
