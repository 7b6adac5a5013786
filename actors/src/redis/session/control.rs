//! CLIENT KILL and CLIENT UNBLOCK between the relayer's own clients: the session as the one
//! that asks, and as the one named (found in `clients`, the process-wide registry).
//!
//! A killed client's session stops at once, like Redis' freeClient: what it was owed is
//! dropped, and a dedicated connection with a command still running is closed rather than
//! given back (`Release`). A client blocked on its own connection is unblocked by the backend
//! itself: `CLIENT UNBLOCK <that connection's id>` goes on the side connection, and the
//! backend's answer (0 when nothing was blocked after all) is the asker's; the blocked command
//! then gets from Redis what Redis gives it.

use super::Session;
use crate::io::ReadHalf;
use crate::redis::client_kill;
use crate::redis::clients::{self, Client, Kill, Registration, Unblock};
use crate::redis::messages::{Forward, Request};
use crate::resp::request::Command;
use actix::prelude::*;
use bytes::Bytes;
use slog::info;

const ZERO: &[u8] = b":0\r\n";

/// Why CLIENT UNBLOCK is refused in push mode (RESP3, MONITOR): its answer comes from another
/// connection, later than the replies to what the client sends after it.
pub(super) const UNBLOCK_IN_PUSH: &str =
    "is not answered on a connection in push mode (RESP3, MONITOR): its answer would come out of order";

/// Registers the session of client `id`, connected on `read`.
pub(super) fn register(
    id: u64,
    read: &ReadHalf,
    backend: String,
    ctx: &mut Context<Session>,
) -> Registration {
    let (addr, laddr) = read.addresses();
    let me = ctx.address();
    clients::register(
        id,
        Client {
            addr,
            laddr,
            backend,
            pubsub: Default::default(),
            kill: me.clone().recipient(),
            unblock: me.recipient(),
        },
    )
}

impl Session {
    /// CLIENT KILL: the answer, and whether this client is among the killed (it then closes
    /// once answered, as in Redis). The others are told now.
    pub(super) fn kill_clients(&self, cmd: &Command) -> (Bytes, bool) {
        let filter = match client_kill::kill(cmd) {
            Ok(f) => f,
            Err(e) => return (e, false),
        };
        let backend = self.pool.backend();
        let killed = clients::matching(|id, c| c.backend == backend && filter.matches(id, c, self.id));
        let mut me = false;
        for (id, kill) in &killed {
            if *id == self.id {
                me = true;
            } else {
                kill.do_send(Kill);
            }
        }
        if !killed.is_empty() {
            info!(self.settings.log, "CLIENT KILL"; "session" => self.id, "killed" => killed.len());
        }
        (filter.answer(killed.len()), me)
    }

    pub(super) fn client_kill(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        let (answer, me) = self.kill_clients(cmd);
        self.reply(answer, ctx);
        if me {
            self.close_after_replies(ctx);
        }
    }

    /// In push mode, killed by its own CLIENT KILL: it goes once the answers before it are
    /// handled, as in Redis; the answer itself may not reach it.
    pub(super) fn kill_self(&self) {
        let me = self.id;
        for (_, kill) in clients::matching(|id, _| id == me) {
            kill.do_send(Kill);
        }
    }

    /// CLIENT UNBLOCK: 0 unless the client named has a connection of its own, whose backend
    /// then answers (see the module's note).
    pub(super) fn client_unblock(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        let (id, error) = match client_kill::unblock(cmd) {
            Ok(a) => a,
            Err(e) => return self.reply(e, ctx),
        };
        // This client is not blocked: it is running this command.
        let other = u64::try_from(id).ok().filter(|&id| id != self.id);
        let Some(unblock) = other.and_then(clients::unblocker) else {
            return self.reply(Bytes::from_static(ZERO), ctx);
        };
        self.settings.metrics.local.increment(1);
        let seq = self.slots.push_owed();
        // As in Redis, it runs after the client's earlier commands (a push it sent before may
        // be what the blocked client was waiting for): sent once they are all answered.
        self.flush_forwards(ctx);
        self.unblock_after = Some((seq, unblock, error));
        self.update_gate();
        self.send_unblock_when_due(ctx);
    }

    /// The CLIENT UNBLOCK waiting for the client's earlier commands, sent once they are all
    /// answered (its reply is the next one owed).
    pub(super) fn send_unblock_when_due(&mut self, ctx: &mut Context<Self>) {
        match &self.unblock_after {
            Some((seq, ..)) if self.slots.next_to_write() == *seq => {}
            _ => return,
        }
        let Some((seq, unblock, error)) = self.unblock_after.take() else {
            return;
        };
        self.update_gate();
        let msg = Unblock {
            error,
            reply_to: self.me.clone(),
            seq,
        };
        ctx.spawn(unblock.send(msg).into_actor(self).map(move |asked, act, ctx| {
            // Not asked, or gone meanwhile: nothing of its was blocked.
            if !matches!(asked, Ok(true)) {
                act.on_reply(seq, Bytes::from_static(ZERO), ctx);
            }
        }));
    }
}

impl Handler<Kill> for Session {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        info!(self.settings.log, "client killed by CLIENT KILL"; "session" => self.id);
        ctx.stop();
    }
}

impl Handler<Unblock> for Session {
    type Result = bool;

    fn handle(&mut self, msg: Unblock, _: &mut Context<Self>) -> bool {
        let Some(server_id) = self.own.as_deref().and_then(|own| own.handle.server_id.get()) else {
            return false;
        };
        let id = server_id.to_string();
        let how: &[u8] = if msg.error { b"ERROR" } else { b"TIMEOUT" };
        let frame = Command::from_args(&[&b"CLIENT"[..], b"UNBLOCK", id.as_bytes(), how]).into_frame();
        // The side connection: the one that reaches the backend past anything waiting.
        let forward = Forward {
            reply_to: msg.reply_to,
            session: self.id,
            seq: msg.seq,
            db: self.db,
            request: Request::Side(frame),
            slot: None,
        };
        self.target.try_send(forward).is_ok()
    }
}
