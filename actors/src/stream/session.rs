//! Session actor of a stream relayer (Firehose, Kinesis, SQS): one client connection. Every
//! command is answered here: SET/SADD/HMSET/HSET/RAWSET and MULTI/EXEC blocks become lines
//! handed to the batcher, the rest is answered as Redis would, or refused with a clear error.
//!
//! A line is accepted only with room in the relayer's buffer (a line, its bytes): when there is
//! none, the client gets an error (`critical = false`), or is not read until room frees
//! (`critical = true`), so `+OK` always means the line is held. Once the batcher drains (stop,
//! reload) the buffer refuses lines: the client gets an error, or, when a reload replaced the
//! batcher, the line goes to the new one.

use super::batcher::{Batcher, StreamMetrics, Wake};
use super::buffer::{Buffer, NoRoom, Pushed};
use super::call;
use super::config::Replies;
use super::record::{Record, Timestamp, WrongType};
use crate::command::{self, StreamOp};
use crate::error::RelayerError;
use crate::io::{
    flush_client, is_query_buffer_limit, ClientOut, ClientRequests, FlushClient, Gate, Parsed, ReadAhead,
    ReadHalf, WriteHalf, WritesToClient,
};
use crate::numbers;
use crate::resp::request::{Command, Limits, RequestError, RequestParser};
use crate::resp::write::{self, error, wrong_arity};
use crate::route::{CloseClient, Frontend, Stopping};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use slog::{debug, info, Logger};
use std::rc::Rc;
use std::sync::Arc;

/// Replies buffered for a client that does not read them; above this it is not read.
const OUT_HIGH: usize = 1024 * 1024;
/// Commands queued in one MULTI block.
const MAX_BLOCK_COMMANDS: usize = 1 << 20;
/// The replies a MULTI block keeps for EXEC (ECHO and PING with a message among them).
const MAX_BLOCK_REPLIES: usize = 1_024_000;
/// Redis quotes at most this much of an unknown command's name.
const MAX_NAME_IN_ERROR: usize = 128;
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// The error for a line refused because the buffer is full; `name`: the protocol, as
/// `SessionSettings::name`.
pub fn buffer_full(name: &str) -> String {
    format!("ERR {name} buffer full: record not accepted, try again later")
}

/// The error for a line refused because the relayer drains.
pub fn stopping(name: &str) -> String {
    format!("ERR {name} relayer stopping: record not accepted")
}

pub struct SessionSettings {
    pub limits: Limits,
    pub timestamp: Timestamp,
    /// Buffer full: wait for room (true) or answer an error (false).
    pub critical: bool,
    /// Bounds the lines the batcher holds; where lines wait for it.
    pub buffer: Arc<Buffer>,
    pub metrics: StreamMetrics,
    pub log: Logger,
    /// What the service takes: the longest line, text only.
    pub service: call::Limits,
    /// The protocol (`firehose`) and the service as people write it (`Firehose`), for replies.
    pub name: &'static str,
    pub title: &'static str,
    /// Commands answered `+OK` and not sent (`ignoreCommands`), upper case.
    pub ignore: Vec<String>,
    pub replies: Replies,
}

impl SessionSettings {
    fn ignores(&self, name: &[u8]) -> bool {
        self.ignore
            .iter()
            .any(|i| i.as_bytes().eq_ignore_ascii_case(name))
    }

    /// What a command queued in MULTI is answered.
    fn queued(&self) -> &'static [u8] {
        match self.replies {
            Replies::Redis => write::QUEUED,
            Replies::Original => write::OK,
        }
    }

    fn too_large(&self, len: usize) -> Bytes {
        error(&format!(
            "ERR record of {len} bytes is over the {} record limit of {} bytes",
            self.title, self.service.line
        ))
    }
}

/// What a stream listener's clients talk to; a reload may replace it.
#[derive(Clone)]
pub struct Current {
    pub batcher: Addr<Batcher>,
    pub settings: Arc<SessionSettings>,
    pub max_clients: usize,
}

pub type Route = crate::route::Route<Current, Session>;

impl Frontend for Route {
    fn clients(&self) -> usize {
        crate::route::Route::clients(self)
    }

    fn max_clients(&self) -> usize {
        self.current().max_clients
    }

    fn start_session(self: Rc<Self>, id: u64, read: ReadHalf, write: WriteHalf) {
        Session::start(id, read, write, self);
    }

    fn close_all(&self) {
        crate::route::Route::close_all(self)
    }

    fn stopping(&self) {
        crate::route::Route::stopping_all(self)
    }
}

/// What a stream relayer does with a command: the command table's `StreamOp`.
type Op = StreamOp;

/// Whether `argc` arguments fit `op`: the arities of the commands a stream relayer answers.
fn arity_ok(op: Op, argc: usize) -> bool {
    match op {
        Op::Ping => argc <= 2,
        Op::Echo | Op::Select | Op::Rawset => argc == 2,
        Op::Quit => true,
        Op::Set | Op::Sadd => argc >= 3,
        Op::Hmset | Op::Hset => argc >= 4 && argc % 2 == 0,
        Op::Multi | Op::Exec | Op::Discard => argc == 1,
        Op::Unknown => true,
    }
}

struct Block {
    record: Record,
    /// The replies for EXEC's array, one after the other (at most `MAX_BLOCK_REPLIES` bytes).
    replies: BytesMut,
    commands: usize,
    /// A command was refused while queueing: EXEC aborts, as in Redis.
    dirty: bool,
    /// The record passed the service's limit (its size then): EXEC answers the size error, and
    /// nothing more is kept meanwhile.
    too_large: Option<usize>,
}

pub struct Session {
    id: u64,
    route: Rc<Route>,
    route_generation: u64,
    settings: Arc<SessionSettings>,
    batcher: Addr<Batcher>,
    out: ClientOut,
    gate: Rc<Gate>,
    multi: Option<Block>,
    /// Waiting for room in the buffer (critical): nothing more is read meanwhile.
    waiting: bool,
    closing: bool,
    /// The relayer is stopping: new commands get `stopping()`.
    stopping: bool,
    /// The client closed its side (its request stream ended).
    input_ended: bool,
}

impl Session {
    pub fn start(id: u64, read: ReadHalf, write: WriteHalf, route: Rc<Route>) -> Addr<Session> {
        Session::create(move |ctx| {
            route.register(id, ctx.address().downgrade());
            let current = route.current();
            let gate = Gate::new();
            let limits = current.settings.limits;
            ctx.add_stream(ClientRequests::new(
                ReadAhead::new(read),
                RequestParser::new(limits),
                gate.clone(),
                limits.query_buffer_limit,
            ));
            Session {
                id,
                route_generation: route.generation(),
                route,
                settings: current.settings,
                batcher: current.batcher,
                out: ClientOut::new(write),
                gate,
                multi: None,
                waiting: false,
                closing: false,
                stopping: false,
                input_ended: false,
            }
        })
    }

    fn reply(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        self.out.push(data, ctx);
        self.update_gate();
    }

    fn update_gate(&self) {
        let out_full = self.out.len() >= OUT_HIGH;
        if self.closing || self.waiting || out_full {
            self.gate.pause();
        } else {
            self.gate.resume();
        }
        // Its replies wait for it to read them: past queryBufferLimit, it gets an error.
        self.gate.waits_for_client(out_full);
    }

    fn maybe_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing
            && !self.waiting
            && self.out.is_empty()
            && self.out.may_end(&self.gate, self.input_ended, ctx)
        {
            ctx.stop();
        }
    }

    fn close_after_replies(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        // What it still sends is dropped: a client that reads only once it has written
        // everything then gets its replies.
        self.gate.drop_input();
        if self.multi.take().is_some() {
            debug!(self.settings.log, "client closed inside MULTI: block discarded"; "session" => self.id);
        }
        self.maybe_close(ctx);
    }

    /// Takes the batcher and settings a reload installed, if any; true if there were.
    fn follow_route(&mut self) -> bool {
        if self.route.generation() == self.route_generation {
            return false;
        }
        let current = self.route.current();
        (self.batcher, self.settings) = (current.batcher, current.settings);
        self.route_generation = self.route.generation();
        true
    }

    fn on_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        self.follow_route();
        let op = command::lookup(cmd.arg(0)).stream;
        if self.stopping && op != Op::Quit {
            return self.reply(&error(&stopping(self.settings.name)), ctx);
        }
        if self.settings.ignores(cmd.arg(0)) {
            return self.ignored(ctx);
        }
        if !arity_ok(op, cmd.argc()) {
            return self.refuse(&wrong_arity(cmd.arg(0)), ctx);
        }
        match op {
            Op::Quit => {
                self.reply(write::OK, ctx);
                self.close_after_replies(ctx);
            }
            Op::Unknown => {
                let name = cmd.arg(0);
                let text = format!(
                    "ERR unknown command '{}' for a {} relayer",
                    String::from_utf8_lossy(&name[..name.len().min(MAX_NAME_IN_ERROR)]),
                    self.settings.name
                );
                self.refuse(&error(&text), ctx);
            }
            Op::Multi if self.multi.is_some() => self.reply(&error("ERR MULTI calls can not be nested"), ctx),
            Op::Multi => {
                self.multi = Some(Block {
                    record: Record::now(self.settings.timestamp),
                    replies: BytesMut::new(),
                    commands: 0,
                    dirty: false,
                    too_large: None,
                });
                self.reply(write::OK, ctx);
            }
            Op::Exec => match self.multi.take() {
                Some(block) => self.exec(block, ctx),
                None => self.reply(&error("ERR EXEC without MULTI"), ctx),
            },
            Op::Discard => match self.multi.take() {
                Some(_) => self.reply(write::OK, ctx),
                None => self.reply(&error("ERR DISCARD without MULTI"), ctx),
            },
            Op::Rawset if self.multi.is_some() => {
                let text = format!(
                    "ERR RAWSET inside MULTI is not supported by a {} relayer",
                    self.settings.name
                );
                self.refuse(&error(&text), ctx)
            }
            Op::Rawset => {
                let payload = cmd.arg(1);
                if payload.is_empty() {
                    return self.reply(&error("ERR empty RAWSET payload"), ctx);
                }
                // Measured before it is copied (as text it may grow: 3 bytes an invalid byte).
                let bound = if self.settings.service.text_only { 3 } else { 1 } * payload.len();
                if payload.len() + 1 > self.settings.service.line {
                    return self.reply(&self.settings.too_large(payload.len() + 1), ctx);
                }
                let mut line = Vec::with_capacity(bound + 1);
                if self.settings.service.text_only {
                    line.extend_from_slice(crate::stream::sqs::text(payload).as_bytes());
                } else {
                    line.extend_from_slice(payload);
                }
                line.push(b'\n');
                self.submit(Bytes::from(line), Bytes::from_static(write::OK), ctx);
            }
            _ if self.multi.is_some() => self.queue(op, &cmd, ctx),
            Op::Ping | Op::Echo | Op::Select => {
                let reply = apply(op, &cmd, &mut Record::now(self.settings.timestamp));
                self.reply(&reply, ctx);
            }
            _ => {
                let mut record = Record::now(self.settings.timestamp);
                match write_to(op, &cmd, &mut record, self.settings.service.line) {
                    Err(len) => self.reply(&self.settings.too_large(len), ctx),
                    Ok(reply) => {
                        self.count_invalid(&record);
                        self.submit(Bytes::from(record.to_line()), reply, ctx);
                    }
                }
            }
        }
    }

    /// An error for a command; inside MULTI it also makes EXEC abort, as in Redis.
    fn refuse(&mut self, reply: &[u8], ctx: &mut Context<Self>) {
        if let Some(block) = &mut self.multi {
            block.dirty = true;
        }
        self.reply(reply, ctx);
    }

    /// A command of `ignoreCommands`: `+OK`, nothing sent; inside MULTI, queued with that
    /// reply.
    fn ignored(&mut self, ctx: &mut Context<Self>) {
        let Some(block) = self.multi.as_mut() else {
            return self.reply(write::OK, ctx);
        };
        if block.commands >= MAX_BLOCK_COMMANDS {
            return self.refuse(&RelayerError::TooManyInBlock.resp(), ctx);
        }
        block.commands += 1;
        if block.too_large.is_none() {
            block.replies.extend_from_slice(write::OK);
        }
        let queued = self.settings.queued();
        self.reply(queued, ctx);
    }

    fn queue(&mut self, op: Op, cmd: &Command, ctx: &mut Context<Self>) {
        let queued = self.settings.queued();
        let line_limit = self.settings.service.line;
        let block = self.multi.as_mut().expect("in MULTI");
        if block.commands >= MAX_BLOCK_COMMANDS {
            return self.refuse(&RelayerError::TooManyInBlock.resp(), ctx);
        }
        block.commands += 1;
        if block.too_large.is_some() {
            // EXEC answers the size error: nothing more to keep.
            return self.reply(queued, ctx);
        }
        // The reply is bounded before it is built (an ECHO may be 512 MB).
        let reply_bound = 32
            + if matches!(op, Op::Ping | Op::Echo) && cmd.argc() == 2 {
                cmd.arg(1).len()
            } else {
                0
            };
        if block.replies.len() + reply_bound > MAX_BLOCK_REPLIES {
            block.commands -= 1;
            return self.refuse(&RelayerError::BlockRepliesTooLarge(MAX_BLOCK_REPLIES).resp(), ctx);
        }
        let reply = match op {
            Op::Ping | Op::Echo | Op::Select => apply(op, cmd, &mut block.record),
            _ => match write_to(op, cmd, &mut block.record, line_limit) {
                Ok(reply) => reply,
                Err(len) => {
                    block.too_large = Some(len);
                    block.record = Record::now(self.settings.timestamp);
                    block.replies = BytesMut::new();
                    return self.reply(queued, ctx);
                }
            },
        };
        block.replies.extend_from_slice(&reply);
        self.reply(queued, ctx);
    }

    fn exec(&mut self, block: Block, ctx: &mut Context<Self>) {
        if block.dirty {
            return self.reply(
                &error("EXECABORT Transaction discarded because of previous errors."),
                ctx,
            );
        }
        if let Some(len) = block.too_large {
            return self.reply(&self.settings.too_large(len), ctx);
        }
        let replies = match self.settings.replies {
            Replies::Original => BytesMut::from(write::OK),
            Replies::Redis => {
                let mut replies = BytesMut::with_capacity(block.replies.len() + 16);
                write::put_array_header(&mut replies, block.commands);
                replies.extend_from_slice(&block.replies);
                replies
            }
        };
        if block.record.is_empty() {
            return self.reply(&replies, ctx);
        }
        self.count_invalid(&block.record);
        self.submit(Bytes::from(block.record.to_line()), replies.freeze(), ctx);
    }

    fn count_invalid(&self, record: &Record) {
        if record.invalid_utf8 > 0 {
            self.settings.metrics.invalid_utf8.increment(record.invalid_utf8);
        }
    }

    /// Hands `line` to the batcher and answers `reply`, if the buffer has room for it.
    fn submit(&mut self, line: Bytes, reply: Bytes, ctx: &mut Context<Self>) {
        if line.len() > self.settings.service.line {
            return self.reply(&self.settings.too_large(line.len()), ctx);
        }
        let (settings, batcher) = (self.settings.clone(), self.batcher.clone());
        match settings.buffer.try_take(line.len()) {
            Ok(()) => self.hand_over(&settings, &batcher, line, reply, ctx),
            Err(NoRoom::Full) if settings.critical => {
                // The client is not read until there is room. Its line waits here meanwhile,
                // outside the buffer's bounds: one line (at most a record) per waiting client,
                // so at most maxClients of them.
                self.waiting = true;
                self.update_gate();
                let buffer = settings.buffer.clone();
                let len = line.len();
                ctx.spawn(async move { buffer.take(len).await }.into_actor(self).map(
                    move |room, act, ctx| {
                        act.waiting = false;
                        match room {
                            Ok(()) => act.hand_over(&settings, &batcher, line, reply, ctx),
                            Err(_) => act.closed(line, reply, ctx),
                        }
                        act.update_gate();
                        act.maybe_close(ctx);
                    },
                ));
            }
            Err(NoRoom::Full) => self.reply(&error(&buffer_full(settings.name)), ctx),
            Err(NoRoom::Closed) => self.closed(line, reply, ctx),
        }
    }

    /// The buffer the line was meant for is closed: its batcher drains. After a reload that
    /// replaced it, the line goes to the new one; otherwise the relayer is stopping.
    fn closed(&mut self, line: Bytes, reply: Bytes, ctx: &mut Context<Self>) {
        if self.follow_route() {
            return self.submit(line, reply, ctx);
        }
        self.reply(&error(&stopping(self.settings.name)), ctx);
    }

    /// The room is taken: the line goes to the batcher, the client gets its reply.
    fn hand_over(
        &mut self,
        settings: &SessionSettings,
        batcher: &Addr<Batcher>,
        line: Bytes,
        reply: Bytes,
        ctx: &mut Context<Self>,
    ) {
        let len = line.len();
        match settings.buffer.push(line) {
            // do_send: the batcher's mailbox must never refuse (a bounded one would turn a
            // wake into a refusal while the line already sits in the inbox); the inbox is
            // bounded by the buffer.
            Ok(Pushed::Wake) => batcher.do_send(Wake),
            Ok(Pushed::Queued) => {}
            Err(line) => {
                settings.buffer.give_back(1, len);
                return self.closed(line, reply, ctx);
            }
        }
        self.reply(&reply, ctx);
    }
}

/// Applies a write to `record` and returns Redis' reply, unless that would take the line over
/// `limit`: then `Err` with the length it would have had, and `record` is unchanged.
/// Nothing is copied before that is known (a value may be 512 MB).
fn write_to(op: Op, cmd: &Command, record: &mut Record, limit: usize) -> Result<Bytes, usize> {
    // A bound first, without reading the bytes: JSON makes a byte at most 6 (\u00XX), a string
    // takes 2 quotes, a key or member 1 separator, a set or hash 2 brackets.
    let bound = record.line_len() + 4 + cmd.args().skip(1).map(|a| 6 * a.len() + 3).sum::<usize>();
    if bound > limit {
        let exact = match op {
            Op::Set => Ok(record.len_after_set(cmd.arg(1), cmd.arg(2))),
            Op::Sadd => record.len_after_sadd(cmd.arg(1), cmd.args().skip(2)),
            Op::Hset | Op::Hmset => record.len_after_hset(cmd.arg(1), cmd.args().skip(2)),
            _ => unreachable!("only writes"),
        };
        // WRONGTYPE changes nothing: applied below for its reply.
        if let Ok(len) = exact {
            if len > limit {
                return Err(len);
            }
        }
    }
    Ok(apply(op, cmd, record))
}

/// What a command does to `record`, and the reply Redis would give it.
fn apply(op: Op, cmd: &Command, record: &mut Record) -> Bytes {
    let int = |n: i64| Bytes::from(format!(":{n}\r\n"));
    let wrong = |_: WrongType| error(WRONGTYPE);
    match op {
        Op::Ping if cmd.argc() == 2 => write::bulk(cmd.arg(1)),
        Op::Ping => Bytes::from_static(write::PONG),
        Op::Echo => write::bulk(cmd.arg(1)),
        // Any DB: a stream has none; the index is read as Redis reads it.
        Op::Select => match numbers::c_int(cmd.arg(1)) {
            Ok(_) => Bytes::from_static(write::OK),
            Err(e) => error(e),
        },
        Op::Set => {
            record.set(cmd.arg(1), cmd.arg(2));
            Bytes::from_static(write::OK)
        }
        Op::Sadd => record
            .sadd(cmd.arg(1), cmd.args().skip(2))
            .map_or_else(wrong, int),
        Op::Hset => record
            .hset(cmd.arg(1), cmd.args().skip(2))
            .map_or_else(wrong, int),
        Op::Hmset => record
            .hset(cmd.arg(1), cmd.args().skip(2))
            .map_or_else(wrong, |_| Bytes::from_static(write::OK)),
        Op::Quit | Op::Rawset | Op::Multi | Op::Exec | Op::Discard | Op::Unknown => {
            unreachable!("answered by the session")
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;
}

/// Settled on drop, not in `stopped`: a panic in a handler (a bug) skips `stopped`, and would
/// leave a client slot taken for good.
impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            slog::error!(self.settings.log, "client connection closed by an internal error"; "session" => self.id);
        }
        self.route.unregister(self.id);
        debug!(self.settings.log, "client gone"; "session" => self.id);
    }
}

impl StreamHandler<Parsed<Result<Command, RequestError>>> for Session {
    fn handle(&mut self, item: Parsed<Result<Command, RequestError>>, ctx: &mut Context<Self>) {
        let item = match item {
            Parsed::Request(item) | Parsed::Last(item) => item,
            // Each command is handed to the batcher as it comes: nothing is gathered.
            Parsed::Idle => return,
        };
        if let Err(RequestError::Io(e)) = &item {
            if is_query_buffer_limit(e) {
                return self.query_buffer_full(e, ctx);
            }
        }
        if self.closing {
            return;
        }
        match item {
            Ok(cmd) => self.on_command(cmd, ctx),
            Err(RequestError::Protocol(e)) => {
                info!(self.settings.log, "protocol error, closing client"; "session" => self.id, "error" => %e);
                self.reply(&error(&format!("ERR Protocol error: {e}")), ctx);
                self.close_after_replies(ctx);
            }
            Err(RequestError::Io(e)) => {
                debug!(self.settings.log, "client read failed"; "session" => self.id, "error" => %e);
                ctx.stop();
            }
        }
    }

    /// The client closed its side: its replies are still written, then it ends.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.input_ended = true;
        self.close_after_replies(ctx);
    }
}

impl Session {
    /// The client sent more than `queryBufferLimit` ahead of what the session could take (its
    /// replies not read, or its line waiting for room): an error after its replies, then it is
    /// closed (see the Redis session's `query_buffer_full`).
    fn query_buffer_full(&mut self, e: &std::io::Error, ctx: &mut Context<Self>) {
        if self.closing {
            info!(self.settings.log, "client still sending while closed, disconnected"; "session" => self.id, "error" => %e);
            return ctx.stop();
        }
        slog::warn!(self.settings.log, "client over the query buffer limit, closing it"; "session" => self.id, "error" => %e);
        self.reply(&error(&format!("ERR Protocol error: {e}")), ctx);
        self.close_after_replies(ctx);
    }
}

impl Handler<FlushClient> for Session {
    type Result = ();

    fn handle(&mut self, _: FlushClient, ctx: &mut Context<Self>) {
        flush_client(self, ctx);
    }
}

impl WritesToClient for Session {
    fn client_out(&mut self) -> &mut ClientOut {
        &mut self.out
    }

    fn written(&mut self, ctx: &mut Context<Self>) {
        self.update_gate();
        self.maybe_close(ctx);
    }

    fn write_failed(&mut self, e: std::io::Error, ctx: &mut Context<Self>) {
        debug!(self.settings.log, "client write failed"; "session" => self.id, "error" => %e);
        ctx.stop();
    }
}

impl Handler<CloseClient> for Session {
    type Result = ();

    fn handle(&mut self, _: CloseClient, ctx: &mut Context<Self>) {
        self.close_after_replies(ctx);
    }
}

impl Handler<Stopping> for Session {
    type Result = ();

    fn handle(&mut self, _: Stopping, _ctx: &mut Context<Self>) {
        self.stopping = true;
    }
}
