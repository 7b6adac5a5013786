//! The commands a session answers itself, as Redis would answer them for the client's own
//! connection: HELLO, CLIENT SETNAME/GETNAME/SETINFO/ID, AUTH, SELECT's argument. Each is read
//! (and answered) here; the session keeps the state they change.

use crate::numbers;
use crate::redis::backend::Server;
use crate::resp::request::Command;
use crate::resp::write::{self, error, wrong_arity};
use bytes::{Bytes, BytesMut};

pub const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// A name CLIENT SETNAME and HELLO SETNAME accept (empty clears the name).
pub fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// HELLO's version and options.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello<'c> {
    pub version: Option<u8>,
    /// Where its AUTH option is: `AUTH user password` at this index and the two after it.
    pub auth_at: Option<usize>,
    /// The name SETNAME gives, checked by `valid_name` by the caller.
    pub name: Option<&'c [u8]>,
}

impl<'c> Hello<'c> {
    /// The AUTH option's user and password.
    pub fn auth<'a>(&self, cmd: &'a Command) -> Option<(&'a [u8], &'a [u8])> {
        self.auth_at.map(|at| (cmd.arg(at + 1), cmd.arg(at + 2)))
    }
}

/// Reads HELLO's arguments as Redis does; Err: the error reply.
pub fn hello(cmd: &Command) -> Result<Hello<'_>, Bytes> {
    let mut hello = Hello {
        version: None,
        auth_at: None,
        name: None,
    };
    let mut i = 1;
    if cmd.argc() >= 2 {
        match numbers::integer(cmd.arg(1)) {
            None => return Err(error("ERR Protocol version is not an integer or out of range")),
            Some(v @ (2 | 3)) => hello.version = Some(v as u8),
            Some(_) => return Err(error("NOPROTO unsupported protocol version")),
        }
        i = 2;
    }
    while i < cmd.argc() {
        let opt = cmd.arg(i);
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.argc() {
            hello.auth_at = Some(i);
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.argc() {
            hello.name = Some(cmd.arg(i + 1));
            i += 2;
        } else {
            let text = format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            );
            return Err(error(&text));
        }
    }
    Ok(hello)
}

/// HELLO's answer, for the client numbered `id`, with the backend's version and mode as it said
/// them (before any server has answered: the relayer's own version, standalone): a map in
/// RESP3 (`resp3`), the same pairs in an array in RESP2.
pub fn hello_reply(id: u64, server: Option<Server>, resp3: bool) -> Bytes {
    let (version, mode) = match &server {
        Some(s) => (s.version.as_str(), s.mode.as_str()),
        None => (env!("CARGO_PKG_VERSION"), "standalone"),
    };
    let mut b = BytesMut::with_capacity(160);
    if resp3 {
        b.extend_from_slice(b"%7\r\n");
    } else {
        write::put_array_header(&mut b, 14);
    }
    for (k, v) in [("server", "redis"), ("version", version)] {
        write::put_bulk(&mut b, k.as_bytes());
        write::put_bulk(&mut b, v.as_bytes());
    }
    write::put_bulk(&mut b, b"proto");
    write::put_int(&mut b, if resp3 { 3 } else { 2 });
    write::put_bulk(&mut b, b"id");
    write::put_int(&mut b, id as i64);
    for (k, v) in [("mode", mode), ("role", "master")] {
        write::put_bulk(&mut b, k.as_bytes());
        write::put_bulk(&mut b, v.as_bytes());
    }
    write::put_bulk(&mut b, b"modules");
    write::put_array_header(&mut b, 0);
    b.freeze()
}

/// Whether a server of `version` (as its INFO says it) speaks RESP3: Redis 6 and later.
pub fn speaks_resp3(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_none_or(|major| major >= 6)
}

/// HELLO 3 as the client's own connection gets it: with the client's name, never its AUTH
/// (checked by the relayer).
pub fn hello3(name: Option<&Bytes>) -> Command {
    let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
    if let Some(n) = name {
        args.extend([&b"SETNAME"[..], n]);
    }
    Command::from_args(&args)
}

/// AUTH's user (None: the default one) and password; Err: the error reply.
pub fn auth(cmd: &Command) -> Result<(Option<&[u8]>, &[u8]), Bytes> {
    match cmd.argc() {
        2 => Ok((None, cmd.arg(1))),
        3 => Ok((Some(cmd.arg(1)), cmd.arg(2))),
        n if n > 3 => Err(error("ERR syntax error")),
        _ => Err(wrong_arity(cmd.arg(0))),
    }
}

/// The error of a CLIENT subcommand given the wrong number of arguments.
pub fn client_arity(sub: &str) -> Bytes {
    error(&format!(
        "ERR wrong number of arguments for 'client|{sub}' command"
    ))
}

/// CLIENT ID's answer: the relayer's id for the client.
pub fn client_id(id: u64) -> Bytes {
    Bytes::from(format!(":{id}\r\n"))
}

/// CLIENT GETNAME's answer, in RESP3 when `resp3`.
pub fn client_name(name: Option<&Bytes>, resp3: bool) -> Bytes {
    name.map_or(Bytes::from_static(write::null(resp3)), |n| write::bulk(n))
}

/// CLIENT SETNAME's name; Err: the error reply.
pub fn client_setname(cmd: &Command) -> Result<Option<Bytes>, Bytes> {
    if cmd.argc() != 3 {
        return Err(client_arity("setname"));
    }
    let n = cmd.arg(2);
    if !valid_name(n) {
        return Err(error(BAD_NAME));
    }
    Ok((!n.is_empty()).then(|| Bytes::copy_from_slice(n)))
}

/// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE from a client subscribed to nothing: Redis' reply
/// for each channel named (for none: one, with a nil channel), a count of 0 in each; pushes in
/// RESP3 (`resp3`).
pub fn unsubscribed(cmd: &Command, resp3: bool) -> Bytes {
    let kind = cmd.arg(0).to_ascii_lowercase();
    let mut b = BytesMut::with_capacity(32 * cmd.argc());
    let mut one = |channel: Option<&[u8]>| {
        if resp3 {
            b.extend_from_slice(b">3\r\n");
        } else {
            write::put_array_header(&mut b, 3);
        }
        write::put_bulk(&mut b, &kind);
        match channel {
            Some(c) => write::put_bulk(&mut b, c),
            None => b.extend_from_slice(write::null(resp3)),
        }
        write::put_int(&mut b, 0);
    };
    if cmd.argc() == 1 {
        one(None);
    }
    for channel in cmd.args().skip(1) {
        one(Some(channel));
    }
    b.freeze()
}

/// What CLIENT REPLY asks of the replies that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// The next command's reply is not written.
    Skip,
}

/// CLIENT REPLY's mode, when the command is one Redis runs (else Redis' error, which the
/// session answers like any reply).
pub fn client_reply(cmd: &Command) -> Option<ReplyMode> {
    if cmd.argc() != 3 || !cmd.arg(1).eq_ignore_ascii_case(b"REPLY") {
        return None;
    }
    let mode = cmd.arg(2);
    [
        (&b"ON"[..], ReplyMode::On),
        (b"OFF", ReplyMode::Off),
        (b"SKIP", ReplyMode::Skip),
    ]
    .into_iter()
    .find_map(|(name, m)| mode.eq_ignore_ascii_case(name).then_some(m))
}

/// The error of CLIENT REPLY Redis does not run.
pub fn client_reply_refusal(cmd: &Command) -> Bytes {
    if cmd.argc() != 3 {
        client_arity("reply")
    } else {
        error("ERR syntax error")
    }
}

/// What Redis answers a client none of whose connection modes is on (no tracking, no
/// NO-EVICT or NO-TOUCH), where the answer does not change a connection: turning a mode off,
/// CACHING without tracking, and the errors of the arguments. None: the command would turn a
/// mode on, which the relayer refuses (`entry`'s reason).
pub fn client_without_mode(entry: &str, cmd: &Command) -> Option<Bytes> {
    let sub = entry.strip_prefix("CLIENT ")?;
    let lower = sub.to_ascii_lowercase();
    if cmd.argc() < 3 {
        return Some(client_arity(&lower));
    }
    let arg = cmd.arg(2);
    match sub {
        "CACHING" if cmd.argc() == 3 => Some(error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        )),
        "CACHING" => Some(client_arity(&lower)),
        "NO-EVICT" | "NO-TOUCH" if cmd.argc() != 3 => Some(client_arity(&lower)),
        "TRACKING" | "NO-EVICT" | "NO-TOUCH" if arg.eq_ignore_ascii_case(b"ON") => None,
        "TRACKING" | "NO-EVICT" | "NO-TOUCH" if arg.eq_ignore_ascii_case(b"OFF") && cmd.argc() == 3 => {
            Some(Bytes::from_static(write::OK))
        }
        // TRACKING OFF with options: what they ask of a client not tracking is Redis' to say.
        "TRACKING" if arg.eq_ignore_ascii_case(b"OFF") => None,
        "TRACKING" | "NO-EVICT" | "NO-TOUCH" => Some(error("ERR syntax error")),
        _ => None,
    }
}

/// CLIENT SETINFO, checked as Redis does and kept nowhere (nothing reads it back).
pub fn client_setinfo(cmd: &Command) -> Bytes {
    if cmd.argc() != 4 {
        return client_arity("setinfo");
    }
    let attr = cmd.arg(2);
    if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
        Bytes::from_static(write::OK)
    } else {
        error(&format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ))
    }
}

/// What SELECT's argument asks for: a DB index, or the error reply, as Redis reads it (an
/// integer by `numbers::c_int`, not negative). On a cluster only DB 0
/// exists.
pub fn select(arg: &[u8], cluster: bool) -> Result<u32, Bytes> {
    let n = numbers::c_int(arg).map_err(error)?;
    if cluster && n != 0 {
        return Err(error("ERR SELECT is not allowed in cluster mode"));
    }
    u32::try_from(n).map_err(|_| error("ERR DB index is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Command {
        Command::from_args(args)
    }

    #[test]
    fn resp3_from_redis_6_on() {
        for (v, yes) in [
            ("7.0.15", true),
            ("6.0.0", true),
            ("10.1", true),
            ("5.0.14", false),
            ("4", false),
        ] {
            assert_eq!(speaks_resp3(v), yes, "{v}");
        }
        // A version the relayer cannot read is not held against the server.
        assert!(speaks_resp3("unstable"));
    }

    #[test]
    fn hello_reads_its_version_and_options_as_redis() {
        let c = cmd(&["HELLO"]);
        assert_eq!(hello(&c).unwrap().version, None);
        let c = cmd(&["HELLO", "3", "setname", "me", "AUTH", "u", "p"]);
        let h = hello(&c).unwrap();
        assert_eq!(
            (h.version, h.name, h.auth_at),
            (Some(3), Some(&b"me"[..]), Some(4))
        );
        assert_eq!(h.auth(&c), Some((&b"u"[..], &b"p"[..])));
        assert_eq!(
            hello(&cmd(&["HELLO", "4"])).unwrap_err(),
            error("NOPROTO unsupported protocol version")
        );
        assert_eq!(
            hello(&cmd(&["HELLO", "x"])).unwrap_err(),
            error("ERR Protocol version is not an integer or out of range")
        );
        assert_eq!(
            hello(&cmd(&["HELLO", "2", "AUTH", "u"])).unwrap_err(),
            error("ERR Syntax error in HELLO option 'AUTH'")
        );
        // Redis reads the version as it reads integers.
        assert_eq!(
            hello(&cmd(&["HELLO", "+2"])).unwrap_err(),
            error("ERR Protocol version is not an integer or out of range")
        );
        let reply = hello_reply(7, None, false);
        assert!(reply.starts_with(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
        assert!(reply.windows(12).any(|w| w == b"$2\r\nid\r\n:7\r\n"));
        let server = Server {
            version: "7.0.15".into(),
            mode: "cluster".into(),
        };
        let reply = hello_reply(7, Some(server), false);
        assert!(reply.starts_with(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n"));
        let mode = b"$4\r\nmode\r\n$7\r\ncluster\r\n";
        assert!(reply.windows(mode.len()).any(|w| w == mode));
        assert_eq!(hello3(Some(&Bytes::from_static(b"n"))).argc(), 4);
    }

    #[test]
    fn unsubscribing_from_nothing() {
        assert_eq!(
            &unsubscribed(&cmd(&["UNSUBSCRIBE", "foo", "quux"]), false)[..],
            b"*3\r\n$11\r\nunsubscribe\r\n$3\r\nfoo\r\n:0\r\n*3\r\n$11\r\nunsubscribe\r\n$4\r\nquux\r\n:0\r\n"
        );
        assert_eq!(
            &unsubscribed(&cmd(&["punsubscribe"]), false)[..],
            b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
        );
    }

    #[test]
    fn client_modes_of_a_client_that_has_none() {
        let answer = |entry: &str, args: &[&str]| client_without_mode(entry, &cmd(args));
        let ok = Some(Bytes::from_static(write::OK));
        assert_eq!(answer("CLIENT TRACKING", &["CLIENT", "TRACKING", "off"]), ok);
        assert_eq!(answer("CLIENT NO-EVICT", &["client", "no-evict", "OFF"]), ok);
        assert_eq!(answer("CLIENT TRACKING", &["CLIENT", "TRACKING", "on"]), None);
        assert_eq!(answer("CLIENT NO-EVICT", &["CLIENT", "NO-EVICT", "on"]), None);
        assert_eq!(
            answer("CLIENT NO-EVICT", &["CLIENT", "NO-EVICT", "on", "x"]),
            Some(error(
                "ERR wrong number of arguments for 'client|no-evict' command"
            ))
        );
        assert_eq!(
            answer("CLIENT TRACKING", &["CLIENT", "TRACKING", "OFF", "BCAST"]),
            None
        );
        assert_eq!(
            answer("CLIENT TRACKING", &["CLIENT", "TRACKING", "maybe"]),
            Some(error("ERR syntax error"))
        );
        assert_eq!(
            answer("CLIENT TRACKING", &["CLIENT", "TRACKING"]),
            Some(error(
                "ERR wrong number of arguments for 'client|tracking' command"
            ))
        );
        assert!(answer("CLIENT CACHING", &["CLIENT", "CACHING", "yes"])
            .unwrap()
            .starts_with(b"-ERR CLIENT CACHING can be called only"));
        assert_eq!(answer("CLIENT KILL", &["CLIENT", "KILL", "ID", "1"]), None);
    }

    #[test]
    fn client_and_auth_arguments() {
        assert_eq!(
            client_setname(&cmd(&["CLIENT", "SETNAME", "a"])),
            Ok(Some(Bytes::from_static(b"a")))
        );
        assert_eq!(client_setname(&cmd(&["CLIENT", "SETNAME", ""])), Ok(None));
        assert_eq!(
            client_setname(&cmd(&["CLIENT", "SETNAME", "a b"])),
            Err(error(BAD_NAME))
        );
        assert_eq!(
            client_setname(&cmd(&["CLIENT", "SETNAME"])),
            Err(client_arity("setname"))
        );
        assert_eq!(
            client_setinfo(&cmd(&["CLIENT", "SETINFO", "lib-name", "x"]))[..],
            *write::OK
        );
        assert!(client_setinfo(&cmd(&["CLIENT", "SETINFO", "other", "x"]))
            .starts_with(b"-ERR Unrecognized option"));
        assert_eq!(auth(&cmd(&["AUTH", "p"])), Ok((None, &b"p"[..])));
        assert_eq!(auth(&cmd(&["AUTH", "u", "p"])), Ok((Some(&b"u"[..]), &b"p"[..])));
        assert_eq!(
            auth(&cmd(&["AUTH", "u", "p", "x"])),
            Err(error("ERR syntax error"))
        );
        assert!(auth(&cmd(&["AUTH"]))
            .unwrap_err()
            .starts_with(b"-ERR wrong number"));
    }

    #[test]
    fn select_argument() {
        assert_eq!(select(b"5", false), Ok(5));
        assert_eq!(
            select(b"x", false),
            Err(error("ERR value is not an integer or out of range"))
        );
        assert_eq!(select(b"-1", false), Err(error("ERR DB index is out of range")));
        for not_integer in [&b"09"[..], b"+9", b" 1", b"-0", b""] {
            assert_eq!(
                select(not_integer, false),
                Err(error("ERR value is not an integer or out of range"))
            );
        }
        for out_of_range in [&b"4294967296"[..], b"2147483648", b"-2147483649"] {
            assert_eq!(
                select(out_of_range, true),
                Err(error(
                    "ERR value is out of range, value must between -2147483648 and 2147483647"
                ))
            );
        }
        assert_eq!(select(b"0", true), Ok(0));
        assert_eq!(
            select(b"1", true),
            Err(error("ERR SELECT is not allowed in cluster mode"))
        );
        assert_eq!(
            select(b"x", true),
            Err(error("ERR value is not an integer or out of range"))
        );
    }
}
