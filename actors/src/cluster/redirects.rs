//! Replies on a cluster connection: MOVED and ASK followed (up to `MAX_HOPS`), TRYAGAIN,
//! CLUSTERDOWN and LOADING sent again after a delay, MULTI blocks sent again whole, commands
//! cut off with their connection; the rest goes on to its destination.

use super::backend::Cluster;
use super::hold::{hold_key, Job};
use super::topology::Node;
use crate::error::RelayerError;
use crate::redis::backend::*;
use crate::redis::delivery;
use crate::resp::reply::{error_text, is_error};
use actix::prelude::*;
use bytes::Bytes;
use slog::{debug, warn};
use std::sync::Arc;

/// Redirections followed for one command before its client gets an error.
const MAX_HOPS: u8 = 5;
/// Times a waited command is sent again after TRYAGAIN, CLUSTERDOWN or LOADING before its
/// client gets that error: about 4 s with the backoff, longer than a failover usually takes.
/// Writes acknowledged early are sent again until confirmed (or the drain gives up).
const MAX_TRIES: u8 = 7;

enum Kind {
    Redirect {
        ask: bool,
        slot: u16,
        node: Node,
    },
    /// Not run, and worth sending again shortly.
    Retry,
    Other,
}

fn is_redirect(data: &[u8]) -> bool {
    data.starts_with(b"-MOVED ") || data.starts_with(b"-ASK ")
}

/// What `data`, a reply from node `from`, asks the relayer to do. A write acknowledged early
/// is also sent again after any other refusal that may pass (BUSY, OOM, READONLY...: see
/// `delivery::is_transient`); a command waited on gets those as Redis gave them.
fn kind(data: &[u8], from: &Node, background: bool) -> Kind {
    if is_redirect(data) {
        if let Some((ask, slot, node)) = parse_redirect(data, from) {
            return Kind::Redirect { ask, slot, node };
        }
    }
    let retry = [&b"-TRYAGAIN"[..], b"-CLUSTERDOWN", b"-LOADING"];
    if retry.iter().any(|p| data.starts_with(p)) || (background && delivery::is_transient(data)) {
        return Kind::Retry;
    }
    Kind::Other
}

impl Backend<Cluster> {
    /// A reply on cluster connection `idx`: None when the command was sent again (or the
    /// reply delivered here), else where the reply goes and what it is.
    pub(crate) fn cluster_reply(
        &mut self,
        idx: usize,
        mut p: Pending,
        data: Bytes,
        ctx: &mut Context<Self>,
    ) -> Option<(Dest, Bytes)> {
        // A command queued in a MULTI block: a redirection or retryable error makes EXEC
        // abort; it says what to do with the block.
        if let Dest::Swallow(Swallowed::BlockPart) = p.dest {
            let redirected_or_retry = !matches!(kind(&data, &self.cl().conn_node[idx], false), Kind::Other);
            let c = &mut self.conns[idx];
            if c.block_note.is_none() && redirected_or_retry {
                c.block_note = Some(data.clone());
            }
            return Some((p.dest, data));
        }
        let Some(r) = p.resend.take() else {
            return Some((p.dest, data));
        };
        let key = hold_key(r.slot);
        let session = r.session;
        self.settle(p.displaced, &r);
        let mut data = data;
        if let Body::Block(_) = r.body {
            let note = self.conns[idx].block_note.take();
            if let (true, Some(n)) = (data.starts_with(b"-EXECABORT"), note) {
                data = n;
            }
        }
        let job = Job {
            r,
            dest: p.dest,
            ask: None,
        };
        let background = matches!(job.dest, Dest::Background { .. });
        let out = match kind(&data, &self.cl().conn_node[idx], background) {
            Kind::Redirect { ask, slot, node } => self.redirected(job, ask, slot, node, &data, ctx),
            Kind::Retry => self.retry_later(job, &data, ctx),
            Kind::Other => {
                if is_redirect(&data) && self.cl().bad_redirect_log.allow() {
                    // Not followed (a slot out of range, no port): the client gets it as is.
                    warn!(self.settings.log, "cluster node sent a redirection the relayer cannot follow";
                        "backend" => %self.conns[idx].addr, "reply" => error_text(&data));
                }
                self.ran(job, data)
            }
        };
        if out.is_some() {
            self.job_done(session, ctx);
        }
        self.maybe_release(key, ctx);
        out
    }

    pub(crate) fn redirected(
        &mut self,
        mut job: Job,
        ask: bool,
        slot: u16,
        node: Node,
        data: &Bytes,
        ctx: &mut Context<Self>,
    ) -> Option<(Dest, Bytes)> {
        if job.r.hops >= MAX_HOPS {
            let last = error_text(data);
            warn!(self.settings.log, "too many cluster redirections"; "slot" => slot, "hops" => job.r.hops, "last" => &last);
            if let Dest::Background { .. } = job.dest {
                // Acknowledged already: it goes again once the map has been asked again.
                job.r.hops = 0;
                self.park(job);
                self.refresh_soon(ctx);
                return None;
            }
            let err = RelayerError::TooManyRedirections {
                hops: MAX_HOPS,
                slot,
                last,
            };
            return Some((job.dest, err.resp()));
        }
        if !ask {
            let stale = self
                .cl()
                .map
                .as_ref()
                .is_some_and(|m| m.owner(slot) != Some(&node));
            if stale {
                let mut map = self.cl().map.take().expect("checked above");
                map.assign(slot, node.clone());
                self.conns_of(&node);
                self.set_map(map);
                // What is in flight for the slot on its old master comes back MOVED.
                self.mark_all(slot);
            }
            self.cl().refresh_hint = Some(node.clone());
            self.refresh_soon(ctx);
        }
        job.r.hops += 1;
        job.ask = ask.then_some(node);
        self.resend(job, ctx);
        None
    }

    /// TRYAGAIN (a multi-key command during a migration), CLUSTERDOWN (a failover under way),
    /// LOADING: the command did not run, and goes again after a short delay.
    pub(crate) fn retry_later(
        &mut self,
        mut job: Job,
        data: &Bytes,
        ctx: &mut Context<Self>,
    ) -> Option<(Dest, Bytes)> {
        let waited = !matches!(job.dest, Dest::Background { .. });
        if waited && job.r.tries >= MAX_TRIES {
            return Some((job.dest, data.clone()));
        }
        if !data.starts_with(b"-TRYAGAIN") {
            self.refresh_soon(ctx);
        }
        debug!(self.settings.log, "cluster command sent again later"; "slot" => job.r.slot, "tries" => job.r.tries, "reply" => error_text(data));
        // The slot's other commands in flight may run before this one: newer ones wait.
        if let Some(s) = job.r.slot {
            self.mark_all(s);
        }
        job.r.tries = job.r.tries.saturating_add(1);
        job.r.last = Some(data.clone());
        job.ask = None;
        if !waited {
            let code = String::from_utf8_lossy(delivery::code(data)).into_owned();
            self.settings.metrics.retried(&code);
        }
        self.park(job);
        None
    }

    /// The command ran (or failed for good). A write acknowledged early that ran while an
    /// older command of its client waits to run again is sent again after it, so that the
    /// older one cannot overwrite it: only writes safe to send twice.
    pub(crate) fn ran(&mut self, mut job: Job, data: Bytes) -> Option<(Dest, Bytes)> {
        if let Dest::Background { idempotent: true, .. } = job.dest {
            let older = self.older_waits(hold_key(job.r.slot), job.r.session, job.r.order);
            if !is_error(&data) && older {
                job.r.applied = true;
                self.park(job);
                return None;
            }
        }
        Some((job.dest, data))
    }

    /// A command its connection lost: waited ones get `err`; writes acknowledged early wait to
    /// be sent again where the map then says, when that is safe (not written yet, or
    /// idempotent). True when it waits to be sent again.
    pub(crate) fn cluster_cut_off(
        &mut self,
        idx: usize,
        p: Pending,
        err: &Arc<RelayerError>,
        written: u64,
        reason: &str,
        ctx: &mut Context<Self>,
    ) -> bool {
        let session = p.resend.as_ref().map(|r| r.session);
        if let Some(r) = &p.resend {
            self.settle(p.displaced, r);
        }
        match p.dest {
            Dest::Swallow(Swallowed::Slots) => self.slots_failed(idx, reason, ctx),
            Dest::Background { idempotent, .. } if idempotent || p.end > written => {
                if let Some(r) = p.resend {
                    self.park(Job {
                        r,
                        dest: p.dest,
                        ask: None,
                    });
                    return true;
                }
            }
            Dest::Background { frame, .. } => self.unknown_outcome(idx, &frame),
            dest => self.answer(dest, err.resp()),
        }
        if let Some(session) = session {
            self.job_done(session, ctx);
        }
        false
    }
}

/// `-MOVED 3999 127.0.0.1:6381` or `-ASK ...` from node `from` -> (is ASK, slot, node). An
/// empty host (`:6381`, a node that does not know its own address) means `from`'s host, as in
/// CLUSTER SLOTS; a slot out of range is no redirection.
fn parse_redirect(data: &[u8], from: &Node) -> Option<(bool, u16, Node)> {
    let text = std::str::from_utf8(data.get(1..data.len().checked_sub(2)?)?).ok()?;
    let mut it = text.split(' ');
    let ask = match it.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = it.next()?.parse().ok()?;
    if usize::from(slot) >= crate::cluster::slot::SLOTS {
        return None;
    }
    let (host, port) = it.next()?.rsplit_once(':')?;
    let host = if host.is_empty() || host == "?" {
        from.host.clone()
    } else {
        host.to_string()
    };
    Some((
        ask,
        slot,
        Node {
            host,
            port: port.parse().ok()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn redirects() {
        let n = |p| Node {
            host: "127.0.0.1".into(),
            port: p,
        };
        let from = n(7005);
        let parse = |d: &[u8]| parse_redirect(d, &from);
        assert_eq!(
            parse(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some((false, 3999, n(6381)))
        );
        assert_eq!(parse(b"-ASK 1 127.0.0.1:7000\r\n"), Some((true, 1, n(7000))));
        assert_eq!(parse(b"-MOVED 16383 127.0.0.1:1\r\n"), Some((false, 16383, n(1))));
        assert_eq!(parse(b"-MOVED x 127.0.0.1:1\r\n"), None);
        assert_eq!(parse(b"-ERR x\r\n"), None);
        // A slot out of range is no redirection (the map has 16384 slots).
        assert_eq!(parse(b"-MOVED 16384 127.0.0.1:1\r\n"), None);
        assert_eq!(parse(b"-ASK 20000 127.0.0.1:1\r\n"), None);
        assert!(matches!(
            kind(b"-MOVED 20000 127.0.0.1:1\r\n", &from, false),
            Kind::Other
        ));
        // BUSY and the like: sent again only for a write acknowledged early.
        assert!(matches!(kind(b"-BUSY x\r\n", &from, true), Kind::Retry));
        assert!(matches!(kind(b"-OOM x\r\n", &from, true), Kind::Retry));
        assert!(matches!(kind(b"-BUSY x\r\n", &from, false), Kind::Other));
        assert!(matches!(kind(b"-WRONGTYPE x\r\n", &from, true), Kind::Other));
        // No host: the node that answered.
        let other = Node {
            host: "10.0.0.9".into(),
            port: 6381,
        };
        let there = Node {
            host: "10.0.0.9".into(),
            port: 1,
        };
        assert_eq!(
            parse_redirect(b"-MOVED 5 :6381\r\n", &there),
            Some((false, 5, other.clone()))
        );
        assert_eq!(
            parse_redirect(b"-ASK 5 :6381\r\n", &there),
            Some((true, 5, other))
        );
        assert_eq!(parse(b"-MOVED 5 127.0.0.1:\r\n"), None);
        assert_eq!(parse(b"-MOVED 5\r\n"), None);
        assert_eq!(parse(b"-MOVED\r\n"), None);
        assert_eq!(parse(b"-\r\n"), None);
        let kind = |d: &[u8]| kind(d, &from, false);
        assert!(matches!(
            kind(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Kind::Retry
        ));
        assert!(matches!(
            kind(b"-CLUSTERDOWN The cluster is down\r\n"),
            Kind::Retry
        ));
        assert!(matches!(
            kind(b"-LOADING Redis is loading the dataset in memory\r\n"),
            Kind::Retry
        ));
        assert!(matches!(kind(b"-ERR x\r\n"), Kind::Other));
        assert!(matches!(kind(b"+OK\r\n"), Kind::Other));
    }
}
