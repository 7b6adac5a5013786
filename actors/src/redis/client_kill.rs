//! CLIENT KILL's and CLIENT UNBLOCK's arguments, read as Redis 7.0 reads them (same checks in
//! the same order, same error texts), and which of the relayer's clients a KILL names.

use super::clients::Client;
use crate::numbers::integer;
use crate::resp::request::Command;
use crate::resp::write::{error, error_of};
use bytes::Bytes;

const SYNTAX: &str = "ERR syntax error";

/// Redis' client types, as CLIENT KILL TYPE names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Normal,
    Pubsub,
    /// `master`, `replica` or `slave`: never one of the relayer's clients (replication commands
    /// are not relayed).
    Replication,
}

/// Which clients a CLIENT KILL names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kill {
    /// `CLIENT KILL addr:port`: answered `+OK` or `No such client`, and may kill the caller.
    old_form: bool,
    id: Option<u64>,
    addr: Option<Vec<u8>>,
    laddr: Option<Vec<u8>>,
    kind: Option<Type>,
    skipme: bool,
}

impl Kill {
    /// Whether it names client `id`, `client`, when `me` asks.
    pub fn matches(&self, id: u64, client: &Client, me: u64) -> bool {
        let kind = if client.is_pubsub() {
            Type::Pubsub
        } else {
            Type::Normal
        };
        self.addr
            .as_ref()
            .is_none_or(|a| a[..] == *client.addr.as_bytes())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| a[..] == *client.laddr.as_bytes())
            && self.kind.is_none_or(|k| k == kind)
            && self.id.is_none_or(|i| i == id)
            && !(self.skipme && id == me)
    }

    /// The answer once `killed` clients were.
    pub fn answer(&self, killed: usize) -> Bytes {
        match (self.old_form, killed) {
            (true, 0) => error("ERR No such client"),
            (true, _) => Bytes::from_static(b"+OK\r\n"),
            (false, n) => Bytes::from(format!(":{n}\r\n")),
        }
    }
}

/// CLIENT KILL's filters; Err: the error reply.
pub fn kill(cmd: &Command) -> Result<Kill, Bytes> {
    let argc = cmd.argc();
    if argc < 3 {
        return Err(error("ERR wrong number of arguments for 'client|kill' command"));
    }
    if argc == 3 {
        return Ok(Kill {
            old_form: true,
            addr: Some(cmd.arg(2).to_vec()),
            ..Kill::default()
        });
    }
    let mut k = Kill {
        skipme: true,
        ..Kill::default()
    };
    let mut i = 2;
    while i < argc {
        let (option, value) = (cmd.arg(i), (i + 1 < argc).then(|| cmd.arg(i + 1)));
        let Some(value) = value else {
            return Err(error(SYNTAX));
        };
        match option.to_ascii_lowercase().as_slice() {
            b"id" => match integer(value) {
                Some(n) if n >= 1 => k.id = Some(n as u64),
                _ => return Err(error("ERR client-id should be greater than 0")),
            },
            b"type" => {
                k.kind = Some(match value.to_ascii_lowercase().as_slice() {
                    b"normal" => Type::Normal,
                    b"pubsub" => Type::Pubsub,
                    b"master" | b"replica" | b"slave" => Type::Replication,
                    _ => return Err(quoted("ERR Unknown client type '", value)),
                })
            }
            b"addr" => k.addr = Some(value.to_vec()),
            b"laddr" => k.laddr = Some(value.to_vec()),
            // The relayer's clients are all the default user: it has no other.
            b"user" if value == b"default" => {}
            b"user" => return Err(quoted("ERR No such user '", value)),
            b"skipme" => match value.to_ascii_lowercase().as_slice() {
                b"yes" => k.skipme = true,
                b"no" => k.skipme = false,
                _ => return Err(error(SYNTAX)),
            },
            _ => return Err(error(SYNTAX)),
        }
        i += 2;
    }
    Ok(k)
}

/// CLIENT UNBLOCK's client id and whether it is unblocked with an error; Err: the error reply.
/// An id no client has (negative, say) is not an error: it unblocks nothing.
pub fn unblock(cmd: &Command) -> Result<(i64, bool), Bytes> {
    match cmd.argc() {
        0..=2 => {
            return Err(error(
                "ERR wrong number of arguments for 'client|unblock' command",
            ))
        }
        3 | 4 => {}
        _ => {
            let mut text = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
            let sub = cmd.arg(1);
            text.extend_from_slice(&sub[..sub.len().min(128)]);
            text.extend_from_slice(b"'. Try ");
            text.extend_from_slice(&cmd.arg(0).to_ascii_uppercase());
            text.extend_from_slice(b" HELP.");
            return Err(error_of(&text));
        }
    }
    let with_error = match cmd.argc() {
        3 => false,
        _ => match cmd.arg(3).to_ascii_lowercase().as_slice() {
            b"timeout" => false,
            b"error" => true,
            _ => return Err(error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
        },
    };
    match integer(cmd.arg(2)) {
        Some(id) => Ok((id, with_error)),
        None => Err(error("ERR value is not an integer or out of range")),
    }
}

fn quoted(head: &str, value: &[u8]) -> Bytes {
    let mut text = head.as_bytes().to_vec();
    text.extend_from_slice(value);
    text.push(b'\'');
    error_of(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::clients::{Kill as KillMsg, Unblock};
    use actix::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn cmd(s: &str) -> Command {
        Command::from_args(&s.split(' ').collect::<Vec<_>>())
    }

    fn err(s: &str) -> Result<Kill, Bytes> {
        Err(error(s))
    }

    /// The errors redis-server 7.0 gives for the same arguments.
    #[test]
    fn kill_errors_as_redis() {
        let syntax = || err(SYNTAX);
        assert_eq!(
            kill(&cmd("CLIENT KILL")),
            err("ERR wrong number of arguments for 'client|kill' command")
        );
        assert_eq!(kill(&cmd("CLIENT KILL ID 1 SKIPME")), syntax());
        assert_eq!(kill(&cmd("CLIENT KILL a b c")), syntax());
        assert_eq!(kill(&cmd("CLIENT KILL FOO bar")), syntax());
        assert_eq!(kill(&cmd("CLIENT KILL MAXAGE 10")), syntax());
        assert_eq!(kill(&cmd("CLIENT KILL TYPE normal SKIPME maybe")), syntax());
        for id in ["0", "abc", "-1", "99999999999999999999", "01"] {
            assert_eq!(
                kill(&cmd(&format!("CLIENT KILL ID {id}"))),
                err("ERR client-id should be greater than 0")
            );
        }
        assert_eq!(
            kill(&cmd("CLIENT KILL TYPE foo")),
            err("ERR Unknown client type 'foo'")
        );
        assert_eq!(
            kill(&cmd("CLIENT KILL USER nobody")),
            err("ERR No such user 'nobody'")
        );
        // Checked in order: the first bad option is the one reported.
        assert_eq!(
            kill(&cmd("CLIENT KILL TYPE foo BAR x")),
            err("ERR Unknown client type 'foo'")
        );
    }

    #[test]
    fn unblock_errors_as_redis() {
        let e = |s: &str| Err(error(s));
        assert_eq!(
            unblock(&cmd("CLIENT UNBLOCK")),
            e("ERR wrong number of arguments for 'client|unblock' command")
        );
        assert_eq!(
            unblock(&cmd("cLiEnt UnBlock 1 timeout x")),
            e("ERR unknown subcommand or wrong number of arguments for 'UnBlock'. Try CLIENT HELP.")
        );
        assert_eq!(
            unblock(&cmd("CLIENT UNBLOCK abc foo")),
            e("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        );
        assert_eq!(
            unblock(&cmd("CLIENT UNBLOCK abc")),
            e("ERR value is not an integer or out of range")
        );
        assert_eq!(unblock(&cmd("CLIENT UNBLOCK -5")), Ok((-5, false)));
        assert_eq!(unblock(&cmd("CLIENT UNBLOCK 7 error")), Ok((7, true)));
        assert_eq!(unblock(&cmd("CLIENT UNBLOCK 7 TIMEOUT")), Ok((7, false)));
    }

    struct Nobody;
    impl Actor for Nobody {
        type Context = Context<Self>;
    }
    impl Handler<KillMsg> for Nobody {
        type Result = ();
        fn handle(&mut self, _: KillMsg, _: &mut Context<Self>) {}
    }
    impl Handler<Unblock> for Nobody {
        type Result = bool;
        fn handle(&mut self, _: Unblock, _: &mut Context<Self>) -> bool {
            false
        }
    }

    #[test]
    fn filters_and_answers() {
        actix::System::new().block_on(async {
            let addr = Nobody.start();
            let pubsub = Arc::new(AtomicBool::new(false));
            let client = Client {
                addr: "127.0.0.1:5000".to_string(),
                laddr: "127.0.0.1:6379".to_string(),
                backend: "redis://127.0.0.1:6379/0".to_string(),
                pubsub: pubsub.clone(),
                kill: addr.clone().recipient(),
                unblock: addr.recipient(),
            };
            let names = |args: &str, me: u64| kill(&cmd(args)).unwrap().matches(7, &client, me);
            assert!(names("CLIENT KILL ID 7", 1));
            assert!(!names("CLIENT KILL ID 8", 1));
            assert!(!names("CLIENT KILL ID 7", 7), "SKIPME yes by default");
            assert!(names("CLIENT KILL ID 7 SKIPME no", 7));
            assert!(
                names("CLIENT KILL 127.0.0.1:5000", 7),
                "the old form kills the caller too"
            );
            assert!(!names("CLIENT KILL 127.0.0.1:5001", 1));
            assert!(names("CLIENT KILL ADDR 127.0.0.1:5000 LADDR 127.0.0.1:6379", 1));
            assert!(!names("CLIENT KILL LADDR 127.0.0.1:6380", 1));
            assert!(names("CLIENT KILL USER default TYPE normal", 1));
            assert!(!names("CLIENT KILL TYPE pubsub", 1));
            assert!(!names("CLIENT KILL TYPE replica", 1));
            pubsub.store(true, Ordering::Relaxed);
            assert!(names("CLIENT KILL TYPE PUBSUB", 1));
            assert!(!names("CLIENT KILL TYPE normal", 1));

            let old = kill(&cmd("CLIENT KILL 1.2.3.4:5")).unwrap();
            assert_eq!(old.answer(0), error("ERR No such client"));
            assert_eq!(old.answer(1), Bytes::from_static(b"+OK\r\n"));
            assert_eq!(
                kill(&cmd("CLIENT KILL ID 3")).unwrap().answer(2),
                Bytes::from_static(b":2\r\n")
            );
        });
    }
}
