//! Running a script's steps on one target: a redis-server, a relayer, or a cluster through a
//! cluster-aware client of its own. Each step's replies are kept as their exact bytes.

use super::script::Step;
use integration::cluster::parse_redirect_text;
use integration::{Client, Cluster};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Duration;

/// Longest wait for the reply of a command: past it the target hung, and the test says so.
const REPLY: Duration = Duration::from_secs(10);
/// Wait for a pushed message (a line that only reads): a relayer that never delivers it (a
/// cluster relayer refuses SUBSCRIBE) costs this much, not a hang.
const PUSHED: Duration = Duration::from_secs(2);
/// The reply recorded for a pushed message that did not come.
pub const NO_REPLY: &[u8] = b"(no reply)";

/// Where a script's connections go.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A redis-server, or a relayer's tcp listener: a plain connection to 127.0.0.1:port.
    Port(u16),
    /// A Redis Cluster, to the master owning the slot of `{t}` (every key of the scripts has
    /// that hash tag, and keyless commands go there too); MOVED is followed.
    Cluster(&'a Cluster),
}

/// One of a script's connections.
pub struct Conn<'a> {
    main: Client,
    target: Target<'a>,
    /// Every connection says HELLO 3 first (its reply is not recorded).
    resp3: bool,
    /// Connections to other cluster nodes, opened when MOVED sends a command there.
    others: HashMap<u16, Client>,
}

impl<'a> Conn<'a> {
    /// `resp3`: the connections speak RESP3 (HELLO 3 first).
    pub fn open(target: Target<'a>, resp3: bool) -> Conn<'a> {
        let port = match target {
            Target::Port(p) => p,
            Target::Cluster(c) => c.port(c.node_for_slot(integration::slot_of("{t}"))),
        };
        Conn {
            main: connect(port, resp3),
            target,
            resp3,
            others: HashMap::new(),
        }
    }

    /// Runs one step: its replies' bytes, one after the other. A command's first error reply
    /// ends it (a refused SUBSCRIBE of two channels answers once).
    pub fn run(&mut self, step: &Step, what: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if step.args.is_empty() {
            self.main.set_read_timeout(PUSHED);
            for _ in 0..step.replies {
                match self.main.try_read_raw_reply() {
                    Ok(r) => out.extend_from_slice(&r),
                    Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                        out.extend_from_slice(NO_REPLY);
                        break;
                    }
                    Err(e) => panic!("{what}: reading a pushed message: {e}"),
                }
            }
            return out;
        }
        self.main.set_read_timeout(REPLY);
        self.main.send(&step.args);
        let first = self.read(what);
        let first = self.follow_moved(step, first, what);
        let failed = first.starts_with(b"-");
        out.extend_from_slice(&first);
        if !failed {
            for _ in 1..step.replies {
                let r = self.read(what);
                out.extend_from_slice(&r);
            }
        }
        out
    }

    fn read(&mut self, what: &str) -> Vec<u8> {
        self.main
            .try_read_raw_reply()
            .unwrap_or_else(|e| panic!("{what}: no reply: {e}"))
    }

    /// On a cluster, a MOVED reply's command sent again to the node it names (once).
    fn follow_moved(&mut self, step: &Step, reply: Vec<u8>, what: &str) -> Vec<u8> {
        if !matches!(self.target, Target::Cluster(_)) || !reply.starts_with(b"-MOVED ") {
            return reply;
        }
        let text = String::from_utf8_lossy(&reply[1..reply.len() - 2]).into_owned();
        let (_, _, port) = parse_redirect_text(&text).unwrap_or_else(|| panic!("{what}: {text}"));
        let resp3 = self.resp3;
        let c = self.others.entry(port).or_insert_with(|| connect(port, resp3));
        c.send(&step.args);
        c.try_read_raw_reply()
            .unwrap_or_else(|e| panic!("{what}: no reply after {text}: {e}"))
    }
}

/// A connection to 127.0.0.1:`port`, in RESP3 when `resp3` (its HELLO 3 answered first).
fn connect(port: u16, resp3: bool) -> Client {
    let mut c = Client::tcp(port);
    if resp3 {
        let hello = c.cmd(&["HELLO", "3"]);
        assert!(
            matches!(hello, integration::Reply::Map(_)),
            "HELLO 3 on {port}: {hello:?}"
        );
    }
    c
}
