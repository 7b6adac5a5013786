//! Session actor of a Firehose relayer: one client connection. Every command is answered here:
//! SET/SADD/HMSET/HSET/RAWSET and MULTI/EXEC blocks become lines handed to the batcher, the
//! rest is answered as Redis would, or refused with a clear error.
//!
//! A line is accepted only with a permit of the relayer's buffer: when there is none, the
//! client gets an error (`critical = false`), or is not read until one frees (`critical = true`),
//! so `+OK` always means the line is held.

use super::batcher::{Batcher, FirehoseMetrics, Inbox, Wake};
use super::record::{Record, Timestamp, WrongType, MAX_RECORD};
use crate::io::{
    flush_client, ClientOut, FlushClient, Gate, Gated, ReadHalf, WriteHalf, WritesToClient,
    CLIENT_READ_CAPACITY,
};
use crate::resp::request::{Command, Limits, RequestError, RequestParser};
use crate::resp::write::{self, error, wrong_arity};
use crate::route::{CloseClient, Frontend};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use slog::{debug, info, Logger};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_util::codec::FramedRead;

/// Replies buffered for a client that does not read them; above this it is not read.
const OUT_HIGH: usize = 1024 * 1024;
/// Commands queued in one MULTI block.
const MAX_BLOCK_COMMANDS: usize = 1 << 20;

pub const BUFFER_FULL: &str = "ERR firehose buffer full: record not accepted, try again later";
const STOPPING: &str = "ERR firehose relayer stopping: record not accepted";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

pub struct SessionSettings {
    pub limits: Limits,
    pub timestamp: Timestamp,
    /// Buffer full: wait for room (true) or answer an error (false).
    pub critical: bool,
    /// A permit per line held by the batcher.
    pub buffer: Arc<Semaphore>,
    /// Where lines wait for the batcher.
    pub inbox: Arc<Inbox>,
    pub metrics: FirehoseMetrics,
    pub log: Logger,
}

/// What a Firehose listener's clients talk to; a reload may replace it.
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
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Ping,
    Echo,
    Quit,
    Select,
    Set,
    Sadd,
    Hmset,
    Hset,
    Rawset,
    Multi,
    Exec,
    Discard,
    Unknown,
}

impl Op {
    fn of(name: &[u8]) -> Op {
        const TABLE: [(&[u8], Op); 12] = [
            (b"SET", Op::Set),
            (b"SADD", Op::Sadd),
            (b"HMSET", Op::Hmset),
            (b"HSET", Op::Hset),
            (b"RAWSET", Op::Rawset),
            (b"MULTI", Op::Multi),
            (b"EXEC", Op::Exec),
            (b"DISCARD", Op::Discard),
            (b"PING", Op::Ping),
            (b"ECHO", Op::Echo),
            (b"SELECT", Op::Select),
            (b"QUIT", Op::Quit),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Op::Unknown, |(_, op)| *op)
    }

    fn arity_ok(self, argc: usize) -> bool {
        match self {
            Op::Ping => argc <= 2,
            Op::Echo | Op::Select | Op::Rawset => argc == 2,
            Op::Quit => true,
            Op::Set | Op::Sadd => argc >= 3,
            Op::Hmset | Op::Hset => argc >= 4 && argc % 2 == 0,
            Op::Multi | Op::Exec | Op::Discard => argc == 1,
            Op::Unknown => true,
        }
    }
}

struct Block {
    record: Record,
    replies: Vec<Bytes>,
    /// A command was refused while queueing: EXEC aborts, as in Redis.
    dirty: bool,
    /// The record passed the Firehose limit (its size then): EXEC answers the size error.
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
}

impl Session {
    pub fn start(id: u64, read: ReadHalf, write: WriteHalf, route: Rc<Route>) -> Addr<Session> {
        Session::create(move |ctx| {
            route.register(id, ctx.address().downgrade());
            let current = route.current();
            let gate = Gate::new();
            let requests = FramedRead::with_capacity(
                read,
                RequestParser::new(current.settings.limits),
                CLIENT_READ_CAPACITY,
            );
            ctx.add_stream(Gated::new(requests, gate.clone()));
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
            }
        })
    }

    fn reply(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        self.out.push(data, ctx);
        self.update_gate();
    }

    fn update_gate(&self) {
        if self.closing || self.waiting || self.out.len() >= OUT_HIGH {
            self.gate.pause();
        } else {
            self.gate.resume();
        }
    }

    fn maybe_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing && !self.waiting && self.out.is_empty() {
            ctx.stop();
        }
    }

    fn close_after_replies(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.gate.pause();
        if self.multi.take().is_some() {
            debug!(self.settings.log, "client closed inside MULTI: block discarded"; "session" => self.id);
        }
        self.maybe_close(ctx);
    }

    fn on_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        if self.route.generation() != self.route_generation {
            let current = self.route.current();
            (self.batcher, self.settings) = (current.batcher, current.settings);
            self.route_generation = self.route.generation();
        }
        let op = Op::of(cmd.arg(0));
        if !op.arity_ok(cmd.argc()) {
            return self.refuse(&wrong_arity(cmd.arg(0)), ctx);
        }
        match op {
            Op::Quit => {
                self.reply(write::OK, ctx);
                self.close_after_replies(ctx);
            }
            Op::Unknown => {
                let text = format!(
                    "ERR unknown command '{}' for a firehose relayer",
                    String::from_utf8_lossy(cmd.arg(0))
                );
                self.refuse(&error(&text), ctx);
            }
            Op::Multi if self.multi.is_some() => self.reply(&error("ERR MULTI calls can not be nested"), ctx),
            Op::Multi => {
                self.multi = Some(Block {
                    record: Record::now(),
                    replies: vec![],
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
            Op::Rawset if self.multi.is_some() => self.refuse(
                &error("ERR RAWSET inside MULTI is not supported by a firehose relayer"),
                ctx,
            ),
            Op::Rawset => {
                let payload = cmd.arg(1);
                if payload.is_empty() {
                    return self.reply(&error("ERR empty RAWSET payload"), ctx);
                }
                let mut line = Vec::with_capacity(payload.len() + 1);
                line.extend_from_slice(payload);
                line.push(b'\n');
                self.submit(line, Bytes::from_static(write::OK), ctx);
            }
            _ if self.multi.is_some() => self.queue(op, &cmd, ctx),
            Op::Ping | Op::Echo | Op::Select => {
                let reply = apply(op, &cmd, &mut Record::now());
                self.reply(&reply, ctx);
            }
            _ => {
                let mut record = Record::now();
                let reply = apply(op, &cmd, &mut record);
                self.count_invalid(&record);
                let line = record.to_line(self.settings.timestamp);
                self.submit(line, reply, ctx);
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

    fn queue(&mut self, op: Op, cmd: &Command, ctx: &mut Context<Self>) {
        let block = self.multi.as_mut().expect("in MULTI");
        if block.replies.len() >= MAX_BLOCK_COMMANDS {
            return self.refuse(&error("ERR relayer: too many commands in one MULTI block"), ctx);
        }
        if block.too_large.is_none() {
            let reply = apply(op, cmd, &mut block.record);
            block.replies.push(reply);
            if block.record.approx_len > MAX_RECORD {
                // The estimate passed the limit: measure, and drop the data if it really did.
                let len = block.record.to_line(self.settings.timestamp).len();
                if len > MAX_RECORD {
                    block.too_large = Some(len);
                    block.record = Record::now();
                } else {
                    block.record.approx_len = len;
                }
            }
        } else {
            block.replies.push(Bytes::new());
        }
        self.reply(write::QUEUED, ctx);
    }

    fn exec(&mut self, block: Block, ctx: &mut Context<Self>) {
        if block.dirty {
            return self.reply(
                &error("EXECABORT Transaction discarded because of previous errors."),
                ctx,
            );
        }
        if let Some(len) = block.too_large {
            return self.reply(&too_large(len), ctx);
        }
        let mut replies = BytesMut::new();
        write::put_array_header(&mut replies, block.replies.len());
        for r in &block.replies {
            replies.extend_from_slice(r);
        }
        if block.record.is_empty() {
            return self.reply(&replies, ctx);
        }
        self.count_invalid(&block.record);
        let line = block.record.to_line(self.settings.timestamp);
        self.submit(line, replies.freeze(), ctx);
    }

    fn count_invalid(&self, record: &Record) {
        if record.invalid_utf8 > 0 {
            self.settings.metrics.invalid_utf8.increment(record.invalid_utf8);
        }
    }

    /// Hands `line` to the batcher and answers `reply`, if the buffer has room for it.
    fn submit(&mut self, line: Vec<u8>, reply: Bytes, ctx: &mut Context<Self>) {
        if line.len() > MAX_RECORD {
            return self.reply(&too_large(line.len()), ctx);
        }
        let taken = self.settings.buffer.try_acquire().map(|p| p.forget());
        match taken {
            Ok(()) => self.hand_over(line, &reply, ctx),
            Err(TryAcquireError::NoPermits) if self.settings.critical => {
                self.waiting = true;
                self.update_gate();
                let buffer = self.settings.buffer.clone();
                ctx.spawn(async move { buffer.acquire_owned().await }.into_actor(self).map(
                    move |permit, act, ctx| {
                        act.waiting = false;
                        match permit {
                            Ok(p) => {
                                p.forget();
                                act.hand_over(line, &reply, ctx);
                            }
                            Err(_) => act.reply(&error(STOPPING), ctx),
                        }
                        act.update_gate();
                        act.maybe_close(ctx);
                    },
                ));
            }
            Err(TryAcquireError::NoPermits) => self.reply(&error(BUFFER_FULL), ctx),
            Err(TryAcquireError::Closed) => self.reply(&error(STOPPING), ctx),
        }
    }

    /// The permit is taken: the line goes to the batcher, the client gets its reply.
    fn hand_over(&mut self, line: Vec<u8>, reply: &[u8], ctx: &mut Context<Self>) {
        // do_send: the batcher's mailbox must never refuse (a bounded one would turn a wake into
        // a refusal while the line already sits in the inbox); the inbox is bounded by permits.
        if self.batcher.connected() {
            if self.settings.inbox.push(Bytes::from(line)) {
                self.batcher.do_send(Wake);
            }
        } else {
            // Only a batcher that a reload retired is gone; its replacement is in the route.
            self.settings.buffer.add_permits(1);
            return self.reply(
                &error("ERR relayer: the firehose relayer was replaced by a reload, try again"),
                ctx,
            );
        }
        self.reply(reply, ctx);
    }
}

fn too_large(len: usize) -> Bytes {
    error(&format!(
        "ERR record of {len} bytes is over the Firehose record limit of {MAX_RECORD} bytes"
    ))
}

/// What a command does to `record`, and the reply Redis would give it.
fn apply(op: Op, cmd: &Command, record: &mut Record) -> Bytes {
    let int = |n: i64| Bytes::from(format!(":{n}\r\n"));
    let wrong = |_: WrongType| error(WRONGTYPE);
    match op {
        Op::Ping if cmd.argc() == 2 => write::bulk(cmd.arg(1)),
        Op::Ping => Bytes::from_static(write::PONG),
        Op::Echo => write::bulk(cmd.arg(1)),
        Op::Select => match std::str::from_utf8(cmd.arg(1))
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(_) => Bytes::from_static(write::OK),
            None => error("ERR value is not an integer or out of range"),
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

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.route.unregister(self.id);
        debug!(self.settings.log, "client gone"; "session" => self.id);
    }
}

impl StreamHandler<Result<Command, RequestError>> for Session {
    fn handle(&mut self, item: Result<Command, RequestError>, ctx: &mut Context<Self>) {
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
