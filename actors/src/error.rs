//! The relayer's own errors: what it answers in place of the backend, and why. One type,
//! rendered as RESP in one place (`resp`), so that code that must tell the relayer's failure
//! from the backend's answer (a barrier, a lost WATCH) matches a variant instead of reading
//! text. Every text starts with `ERR relayer:` so that a client's logs say who answered.

use crate::resp::write;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayerError {
    // The backend could not be used.
    /// No connection to it: `reason` is the last failure.
    Unavailable {
        backend: String,
        reason: String,
    },
    /// The connection the command was written on was lost before its reply.
    ConnectionLost {
        backend: String,
        reason: String,
    },
    /// No reply within the configured `timeout`.
    TimedOut {
        backend: String,
        after: Duration,
    },
    /// Queued behind refused writes for longer than `retryTimeout` (no refusal to show).
    QueuedTooLong,
    /// A reload closed the connection it waited on.
    ClosedByReload,
    /// A reload replaced the backend while the client waited for it.
    TargetReplaced,
    /// SIGTERM: the relayer only finishes what it sent.
    ShuttingDown,

    // A client's own (dedicated) connection.
    DedicatedClosed,
    DedicatedLost(String),
    UnexpectedReply,
    AuthRefused(String),
    /// The PUBLISH a WAIT needs first was refused.
    WaitOffsetRefused {
        channel: String,
        error: String,
    },
    ResetFailed(String),
    /// RESET was written to end push mode and nothing came back.
    PushNotEnded(Duration),
    NoDedicatedOnCluster(String),
    TooManyDedicated {
        max: usize,
        command: String,
    },
    DedicatedOnCluster,
    /// A command that waited for the replies before it: these failed, so it was not sent.
    NotSent {
        command: String,
        because: Box<RelayerError>,
    },

    // Commands the relayer does not relay.
    /// `why` completes "'COMMAND' ...".
    Refused {
        command: String,
        why: String,
    },
    NotRelayed(String),
    SelectInMulti,
    NotInMulti(String),
    MultiOnOneNode(String),
    OneNodeOnly(String),
    AskingNotRelayed,
    TooManyInBlock,
    BlockRepliesTooLarge(usize),

    // A cluster.
    ClusterUnavailable(String),
    TooManyRedirections {
        hops: u8,
        slot: u16,
        last: String,
    },
    NoNode,
    MastersDiffer,
    ScanCursorTooLarge,
    BadScan,
    UnexpectedNodeReply(String),
    /// A barrier waited for writes being sent again after a redirection.
    StillResending(Duration),
    /// A command held while its slot moves got no answer in time.
    SlotMoving {
        after: Duration,
        slot: Option<u16>,
    },
}

impl RelayerError {
    /// The error reply a client gets.
    pub fn resp(&self) -> Bytes {
        write::error(&format!("ERR relayer: {self}"))
    }
}

/// `1.5s`: durations as the configuration writes them.
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl fmt::Display for RelayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RelayerError::*;
        match self {
            Unavailable { backend, reason } => write!(f, "backend {backend} unavailable ({reason})"),
            ConnectionLost { backend, reason } => {
                write!(f, "connection to backend {backend} lost ({reason})")
            }
            TimedOut { backend, after } => write!(f, "backend {backend} timed out after {}", secs(*after)),
            QueuedTooLong => f.write_str("backend timed out"),
            ClosedByReload => f.write_str("backend connection closed by a configuration reload"),
            TargetReplaced => f.write_str("the backend target was replaced by a configuration reload, try again"),
            ShuttingDown => f.write_str("shutting down, command not sent"),
            DedicatedClosed => f.write_str("dedicated connection closed by the backend"),
            DedicatedLost(e) => write!(f, "dedicated connection to the backend lost ({e})"),
            UnexpectedReply => f.write_str("unexpected reply from the backend"),
            AuthRefused(e) => write!(f, "backend refused AUTH: {e}"),
            WaitOffsetRefused { channel, error } => write!(
                f,
                "WAIT needs 'PUBLISH {channel}' on its connection first, and the backend refused it: {error}"
            ),
            ResetFailed(e) => write!(f, "RESET failed ({e}) on a reused dedicated connection"),
            PushNotEnded(t) => write!(
                f,
                "the backend did not end pub/sub, MONITOR or RESP3 within {t:?} (no reply to RESET)"
            ),
            NoDedicatedOnCluster(c) => write!(
                f,
                "'{c}' needs a connection of its own, not available on a cluster relayer yet"
            ),
            TooManyDedicated { max, command } => write!(
                f,
                "too many dedicated connections (maxDedicatedConnections is {max}): '{command}' needs a connection of its own"
            ),
            DedicatedOnCluster => f.write_str(
                "the configuration now names a cluster, but this client still holds a connection of its own to the Redis of before (WATCH...): end it (EXEC, DISCARD, UNWATCH, RESET) or reconnect",
            ),
            NotSent { command, because } => write!(
                f,
                "'{command}' was not sent, as the commands before it may not have run ({because})"
            ),
            Refused { command, why } => write!(f, "'{command}' {why}"),
            NotRelayed(c) => write!(f, "'{c}' is not relayed"),
            SelectInMulti => f.write_str("inside MULTI, SELECT only a DB this client already used before MULTI"),
            NotInMulti(c) => write!(f, "'{c}' inside MULTI is not supported"),
            MultiOnOneNode(c) => write!(f, "'{c}' inside MULTI would reach one node of the cluster only"),
            OneNodeOnly(c) => write!(
                f,
                "'{c}' would reach one node of the cluster only: send it to each node directly"
            ),
            AskingNotRelayed => f.write_str("'ASKING' is not relayed: the relayer follows ASK redirections itself"),
            TooManyInBlock => f.write_str("too many commands in one MULTI block"),
            BlockRepliesTooLarge(max) => write!(
                f,
                "the replies of this MULTI block would pass {max} bytes: command not queued"
            ),
            ClusterUnavailable(e) => write!(f, "cluster not available ({e})"),
            TooManyRedirections { hops, slot, last } => write!(
                f,
                "too many cluster redirections ({hops}) for slot {slot}, last: {last}"
            ),
            NoNode => f.write_str("no cluster node to ask"),
            MastersDiffer => f.write_str("the masters answered differently"),
            ScanCursorTooLarge => f.write_str("a node's SCAN cursor is too large to relay"),
            BadScan => f.write_str("bad SCAN request"),
            UnexpectedNodeReply(shown) => write!(f, "unexpected reply from a cluster node: {shown:?}"),
            StillResending(t) => write!(
                f,
                "no reply within {}: earlier commands of this client are still being sent again",
                secs(*t)
            ),
            SlotMoving { after, slot: Some(s) } => write!(
                f,
                "no reply within {}: slot {s} is moving or failing over",
                secs(*after)
            ),
            SlotMoving { after, slot: None } => {
                write!(f, "no reply within {}: the cluster is failing over", secs(*after))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_as_one_error_line_naming_the_relayer() {
        let e = RelayerError::ConnectionLost {
            backend: "tcp://127.0.0.1:6379".into(),
            reason: "reset\r\nby peer".into(),
        };
        assert_eq!(
            &e.resp()[..],
            &b"-ERR relayer: connection to backend tcp://127.0.0.1:6379 lost (reset  by peer)\r\n"[..]
        );
    }

    #[test]
    fn not_sent_names_the_failure_without_repeating_the_prefix() {
        let e = RelayerError::NotSent {
            command: "BLPOP".into(),
            because: Box::new(RelayerError::TimedOut {
                backend: "b".into(),
                after: Duration::from_millis(1500),
            }),
        };
        assert_eq!(
            e.to_string(),
            "'BLPOP' was not sent, as the commands before it may not have run (backend b timed out after 1.5s)"
        );
    }
}
