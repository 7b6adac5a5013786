//! What the backend says of itself in `INFO server`: its version and mode, which the HELLO the
//! relayer answers for a client carries, as Redis' own would. A single Redis is asked on every
//! new connection (the same reply tells a restarted server apart); a cluster's nodes once, on
//! a node that answered CLUSTER SLOTS, until one says.

use super::*;
use crate::resp::typed::{self, FromResp, RespValue};
use std::sync::RwLock;

pub(crate) const INFO_SERVER: &[u8] = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";

/// The server behind a relayer entry, shared by its backends (which write it when a server
/// answers) and its sessions (which read it for HELLO).
#[derive(Debug, Default)]
pub struct Identity(RwLock<Option<Server>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `redis_version`.
    pub version: String,
    /// `redis_mode`: standalone, cluster, sentinel.
    pub mode: String,
}

impl Identity {
    pub fn get(&self) -> Option<Server> {
        self.0.read().ok()?.clone()
    }

    fn set(&self, server: Server) {
        if let Ok(mut s) = self.0.write() {
            *s = Some(server);
        }
    }
}

/// The text of an `INFO` reply; None when it is not one (an error, a reply cut short).
pub(crate) fn info_text(reply: &[u8]) -> Option<String> {
    match typed::decode(reply).ok()? {
        v @ RespValue::BulkString(_) => String::from_resp(v).ok(),
        _ => None,
    }
}

/// The field `name` of an INFO text.
pub(crate) fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl Server {
    fn from_info(text: &str) -> Option<Server> {
        Some(Server {
            version: field(text, "redis_version")?.to_string(),
            mode: field(text, "redis_mode").unwrap_or("standalone").to_string(),
        })
    }
}

impl<S: Shape> Backend<S> {
    /// A cluster node proven to work: asked who it is, unless a node said already or the
    /// question is on a connection not lost since.
    pub(crate) fn ask_identity(&mut self, idx: usize, ctx: &mut Context<Self>) {
        if self.still_asked(self.identity_asked) || self.settings.identity.get().is_some() {
            return;
        }
        self.identity_asked = Some((idx, self.conns[idx].up.generation));
        self.push(
            idx,
            Bytes::from_static(INFO_SERVER),
            Dest::Swallow(Swallowed::Info),
        );
        self.schedule_flush(idx, ctx);
    }

    /// What a server said in `INFO server` (an error: nothing).
    pub(crate) fn identity_reply(&mut self, text: Option<&str>) {
        self.identity_asked = None;
        if let Some(server) = text.and_then(Server::from_info) {
            self.settings.identity.set(server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_mode_of_an_info_reply() {
        let text = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:cluster\r\nrun_id:4f0e1c\r\n";
        let server = Server::from_info(text).unwrap();
        assert_eq!(
            (server.version.as_str(), server.mode.as_str()),
            ("7.0.15", "cluster")
        );
        assert_eq!(field(text, "run_id"), Some("4f0e1c"));
        // A field whose name another begins with is not taken for it.
        assert_eq!(field(text, "redis"), None);
        assert_eq!(Server::from_info("# Server\r\nrun_id:x\r\n"), None);
        let reply = format!("${}\r\n{text}\r\n", text.len());
        assert_eq!(info_text(reply.as_bytes()).as_deref(), Some(text));
        assert_eq!(info_text(b"-NOPERM no\r\n"), None);
    }
}
