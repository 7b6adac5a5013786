//! What the actors of the Redis relay send each other: a session's requests to its backend,
//! and the replies the backend and a dedicated connection send back. Apart, so that neither
//! the backend nor a dedicated connection names the session.

use crate::error::RelayerError;
use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;

/// A command (or a MULTI block) from a session, to be written upstream on the session's DB.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward {
    pub reply_to: ReplyTo,
    pub session: u64,
    pub seq: u64,
    pub db: u32,
    pub request: Request,
    /// On a cluster: the slot of the command's keys (None: any master).
    pub slot: Option<u16>,
}

/// Several `Forward`s of one session, in order: handled exactly as that many messages (one
/// message per read of the client saves an envelope and channel push per command).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forwards(pub Vec<Forward>);

#[derive(Debug)]
pub enum Request {
    One(Bytes),
    /// `SELECT db` for a DB not yet known valid: the backend's answer decides.
    Select(u32, Bytes),
    /// MULTI, the queued commands and EXEC, written contiguously; only EXEC's reply goes back.
    Block {
        frames: Vec<Bytes>,
        changes_db: bool,
    },
    /// A write the session already acknowledged (smart mode). Its bytes were taken from the
    /// budget, which gets them back when the backend confirms it or it is given up.
    Background {
        frame: Bytes,
        idempotent: bool,
    },
    /// On a cluster: parts sent on their own (to their slots, or to every master) whose
    /// replies are merged into one.
    Gather {
        parts: Vec<(Option<u16>, Bytes)>,
        merge: crate::cluster::gather::Merge,
    },
    /// On a cluster: a keyless command for every master (DBSIZE, KEYS), or for the master a
    /// SCAN cursor names.
    FanOut {
        frame: Bytes,
        merge: crate::cluster::gather::Merge,
    },
    /// A command Redis runs even while a script is busy (SCRIPT KILL, SHUTDOWN...): sent on a
    /// connection of its own, which nothing else waits on, so that it reaches a busy server.
    Side(Bytes),
    /// Answered once every command the client sent before has been answered, and every write
    /// it had acknowledged early is confirmed or counted: the client may then go on elsewhere
    /// (a reload replaced the target) without any of them overtaking an older one.
    Barrier,
}

/// What the backend sends a session: the reply to its request numbered `seq`, or the replies
/// to several, in the order the backend had them (one message per run of replies saves an
/// envelope per reply).
#[derive(Message)]
#[rtype(result = "()")]
pub enum Replies {
    One {
        seq: u64,
        data: Bytes,
    },
    Run(Vec<(u64, Bytes)>),
    /// The relayer's own error instead of a reply: typed, so that a session can tell it from
    /// the backend's answer.
    Failed {
        seq: u64,
        error: Arc<RelayerError>,
    },
}

/// Where the backend sends a session's replies. Shared, so that each forwarded command only
/// bumps a count; a recipient, so that the backend does not name the session.
pub type ReplyTo = Arc<Recipient<Replies>>;

/// What a session's dedicated connection sends it.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromDedicated {
    Reply {
        seq: u64,
        data: Bytes,
    },
    /// Push mode: a reply or message, in the order the connection gave it.
    Pushed(Bytes),
    /// The reply to the command that was to enter push mode; `ok`: it did.
    Entered {
        data: Bytes,
        ok: bool,
    },
    /// The connection is gone; what the client waits for on it gets this error.
    Lost(RelayerError),
    /// Push mode ended after the client's RESET or QUIT: every reply before it was pushed.
    /// `reset`: by RESET, so nothing of the client's is left running on the connection.
    PushEnded {
        reset: bool,
    },
    /// The commands waiting to be written fell below `dedicated::BACKLOG_HIGH`.
    Writable,
}
