//! The backend's own COMMAND, asked once on a connection proven to work (a single Redis: the
//! one that answered `INFO server`; a cluster: the node that answered CLUSTER SLOTS), never
//! waited for: clients' commands go on around it. What it says is published to the sessions
//! through `BackendSettings::commands` (see `learned_commands`).

use super::*;

const COMMAND: &[u8] = b"*1\r\n$7\r\nCOMMAND\r\n";

impl<S: Shape> Backend<S> {
    /// Asks COMMAND on connection `idx`, unless it is known or refused already, or asked on a
    /// connection that has not been lost since.
    pub(crate) fn ask_commands(&mut self, idx: usize, ctx: &mut Context<Self>) {
        if !self.settings.commands.wanted() {
            return;
        }
        if self.still_asked(self.commands_asked) {
            return;
        }
        self.commands_asked = Some((idx, self.conns[idx].up.generation));
        self.push(
            idx,
            Bytes::from_static(COMMAND),
            Dest::Swallow(Swallowed::Commands),
        );
        self.schedule_flush(idx, ctx);
    }

    /// Whether a question asked on (connection, generation) may still be answered: that
    /// connection was not lost since.
    pub(crate) fn still_asked(&self, asked: Option<(usize, u64)>) -> bool {
        asked.is_some_and(|(i, generation)| self.conns[i].up.generation == generation)
    }

    /// Its answer: learned, or refused for good; a refusal that may pass (BUSY, LOADING) is
    /// asked again on the next connection proven to work.
    pub(crate) fn commands_reply(&mut self, idx: usize, data: &Bytes) {
        self.commands_asked = None;
        if is_error(data) && delivery::is_transient(data) {
            debug!(self.settings.log, "COMMAND refused for now: asked again later"; "backend" => %self.conns[idx].addr, "error" => error_text(data));
            return;
        }
        let addr = self.conns[idx].addr.to_string();
        self.settings.commands.learn(data, &addr, &self.settings.log);
    }
}
