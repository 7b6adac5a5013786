//! `BackendClient`: the typed client with which the harness and the tests read what a
//! redis-server holds (a backend behind the relayer, a cluster node), to check the relayer's
//! work: keys, DBSIZE, INFO, CLIENT LIST. It is redis-async's paired connection (replies
//! converted with `FromResp` into `i64`, `String`, `Option<Vec<u8>>`, `Vec<...>`), driven by a
//! runtime of its own so that synchronous tests can call it.
//!
//! What talks to the relayer stays on `resp::Client`: those tests compare the relayer's replies
//! with redis-server's byte for byte and speak RESP3, and redis-async only parses RESP2 into
//! values.
//!
//! Once a paired connection finds its socket gone, redis-async reconnects on its own and the
//! next commands run on a new connection. A `BackendClient` stops at the first lost connection
//! instead: every later query fails with that first error, so the commands of one helper (CLIENT
//! ID, then CLIENT LIST) always run on one connection, and a server restarted under a client is
//! noticed, not silently read through a new connection.

use crate::timeouts::HANG;
use redis_async::client::{ConnectionBuilder, PairedConnection};
use redis_async::error::Error;
use redis_async::resp::{FromResp, RespValue};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// A connection to one redis-server for typed queries, each bounded by a timeout (`HANG` unless
/// set). Dropping it closes the connection.
pub struct BackendClient {
    // Declared first so that it is dropped before the runtime that drives it.
    conn: PairedConnection,
    rt: tokio::runtime::Runtime,
    server: String,
    timeout: Duration,
    /// Why the connection is gone, once it is (see the module notes).
    lost: Mutex<Option<String>>,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered this error reply (`WRONGTYPE ...`, `MOVED 3999 127.0.0.1:7001`).
    Reply(String),
    /// The reply is not of the type asked for.
    Type(String),
    /// No connection: it could not be made, or it was closed (now or by an earlier query).
    Lost(String),
    /// No reply within the client's timeout.
    Timeout(Duration),
}

/// A failed query: which command, on which server, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub command: String,
    pub server: String,
    pub failure: Failure,
}

impl BackendError {
    /// The server's error reply, if that is why it failed.
    pub fn reply(&self) -> Option<&str> {
        match &self.failure {
            Failure::Reply(text) => Some(text),
            _ => None,
        }
    }

    /// The connection is gone (refused, closed), as opposed to an answer or a timeout.
    pub fn is_lost(&self) -> bool {
        matches!(self.failure, Failure::Lost(_))
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: ", self.command, self.server)?;
        match &self.failure {
            Failure::Reply(text) => write!(f, "error reply -{text}"),
            Failure::Type(why) => write!(f, "unexpected reply: {why}"),
            Failure::Lost(why) => write!(f, "connection lost: {why}"),
            Failure::Timeout(t) => write!(f, "no reply within {t:?}"),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<BackendError> for String {
    fn from(e: BackendError) -> String {
        e.to_string()
    }
}

/// A command for messages: its first arguments, lossy UTF-8, cut after 4 (MGET of 1,000 keys).
fn show_command<A: AsRef<[u8]>>(args: &[A]) -> String {
    let mut shown: Vec<String> = args
        .iter()
        .take(4)
        .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
        .collect();
    if args.len() > 4 {
        shown.push(format!("... ({} arguments)", args.len()));
    }
    shown.join(" ")
}

impl BackendClient {
    /// Connects to the redis-server on 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Result<BackendClient, BackendError> {
        BackendClient::connect_timeout(port, HANG)
    }

    /// `connect`, with another bound on each reply (and on the connect itself).
    pub fn connect_timeout(port: u16, timeout: Duration) -> Result<BackendClient, BackendError> {
        let server = format!("127.0.0.1:{port}");
        let fail = |failure| BackendError {
            command: "connect".into(),
            server: server.clone(),
            failure,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(Failure::Lost(format!("cannot start a runtime: {e}"))))?;
        let mut builder =
            ConnectionBuilder::new("127.0.0.1", port).map_err(|e| fail(Failure::Lost(e.to_string())))?;
        // One attempt (redis-async makes 10 by default): a server that is down fails at once,
        // and the fault matrix polls servers while they are down.
        builder.reconnect_attempts(1).reconnect_timeout(timeout);
        let conn = rt
            .block_on(builder.paired_connect())
            .map_err(|e| fail(Failure::Lost(e.to_string())))?;
        Ok(BackendClient {
            conn,
            rt,
            server,
            timeout,
            lost: Mutex::new(None),
        })
    }

    /// `127.0.0.1:PORT`
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether the connection is gone (every query fails from then on).
    pub fn is_lost(&self) -> bool {
        self.lost.lock().unwrap().is_some()
    }

    /// Sends one command and converts its reply to `T`: `query::<i64>(&["DBSIZE"])`,
    /// `query::<Option<Vec<u8>>>(&["GET", key])`.
    pub fn query<T, A>(&self, args: &[A]) -> Result<T, BackendError>
    where
        T: FromResp + Unpin,
        A: AsRef<[u8]>,
    {
        self.pipeline::<T, _, _>(&[args])?.remove(0)
    }

    /// Sends every command at once and returns their replies in order, each converted to `T`
    /// or the error for that command (an error reply, a reply of another type). The outer
    /// `Err` is for the connection: lost, or a reply that did not come in time.
    pub fn pipeline<T, C, A>(&self, cmds: &[C]) -> Result<Vec<Result<T, BackendError>>, BackendError>
    where
        T: FromResp + Unpin,
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        let error = |i: usize, failure| BackendError {
            command: show_command(cmds[i].as_ref()),
            server: self.server.clone(),
            failure,
        };
        if let Some(why) = self.lost.lock().unwrap().clone() {
            return Err(error(0, Failure::Lost(format!("earlier: {why}"))));
        }
        let result = self.rt.block_on(async {
            // Sent from inside the runtime: a send that finds the connection gone spawns
            // redis-async's reconnect task.
            let replies: Vec<_> = cmds
                .iter()
                .map(|c| {
                    let args = c.as_ref().iter();
                    let msg =
                        RespValue::Array(args.map(|a| RespValue::BulkString(a.as_ref().to_vec())).collect());
                    self.conn.send::<T>(msg)
                })
                .collect();
            let mut out = Vec::with_capacity(replies.len());
            for (i, reply) in replies.into_iter().enumerate() {
                match tokio::time::timeout(self.timeout, reply).await {
                    Err(_) => return Err(error(i, Failure::Timeout(self.timeout))),
                    Ok(Ok(v)) => out.push(Ok(v)),
                    Ok(Err(Error::Remote(text))) => out.push(Err(error(i, Failure::Reply(text)))),
                    Ok(Err(e @ Error::Resp(..))) => out.push(Err(error(i, Failure::Type(e.to_string())))),
                    Ok(Err(e)) => return Err(error(i, Failure::Lost(e.to_string()))),
                }
            }
            Ok(out)
        });
        if let Err(e) = &result {
            // A timed-out reply may still come: the connection is not trusted after it either.
            *self.lost.lock().unwrap() = Some(e.to_string());
        }
        result
    }
}

/// The value of `field` in the text of an INFO reply (`field:value` lines).
pub fn info_value(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}
