//! Session actor: one client connection. Parses its requests, keeps its own state (DB, MULTI
//! block, name), answers what the relayer answers itself and forwards the rest to the target.
//!
//! Replies leave in request order through `slots`, one per request: a local reply waits
//! behind the forwarded ones before it.

use super::commands::{classify, client_sub_refused, Kind};
use super::smart::{Budget, Table};
use super::target::{Forward, KnownDbs, Request, Target};
use crate::compress::{decode_reply_logged, Compression};
use crate::io::{
    flush_client, ClientOut, FlushClient, Gate, Gated, ReadHalf, WriteHalf, WritesToClient,
    CLIENT_READ_CAPACITY,
};
use crate::metrics::RelayerMetrics;
use crate::resp::request::{Command, Limits, RequestError, RequestParser};
use crate::resp::write::{self, error, wrong_arity};
use crate::route::{CloseClient, Frontend};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use slog::{debug, info, Logger};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use tokio_util::codec::FramedRead;

/// Replies buffered for a client that does not read them; above this the session stops
/// reading its requests.
const OUT_HIGH: usize = 1024 * 1024;

pub struct SessionSettings {
    /// Requests whose replies are not yet written; above it the client is not read.
    pub max_pending: usize,
    pub limits: Limits,
    /// The DB a new client starts on (the `/db` of a redis:// URL).
    pub initial_db: u32,
    pub known_dbs: Arc<KnownDbs>,
    /// Smart mode: writes acknowledged at once.
    pub smart: Option<Smart>,
    /// compress/uncompress/gzip/gunzip: requests compressed as the original did, replies decoded.
    pub compression: Option<Compression>,
    pub metrics: RelayerMetrics,
    pub log: Logger,
}

/// What a Redis listener's clients talk to; a reload may replace it.
#[derive(Clone)]
pub struct Current {
    pub target: Addr<Target>,
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

pub struct Smart {
    pub table: Table,
    pub budget: Arc<Budget>,
}

/// A reply for the request numbered `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reply {
    pub seq: u64,
    pub data: Bytes,
}

struct Multi {
    frames: Vec<Bytes>,
    /// A command was refused while queueing: EXEC aborts, as in Redis.
    dirty: bool,
    select: Option<u32>,
}

/// A reply the session must see before it reads further: it decides the session's DB.
enum Awaiting {
    Select { seq: u64, db: u32 },
    Exec { seq: u64, db: u32 },
}

pub struct Session {
    id: u64,
    /// Where the target and settings below come from; a reload may replace them.
    route: Rc<Route>,
    route_generation: u64,
    settings: Arc<SessionSettings>,
    target: Addr<Target>,
    out: ClientOut,
    slots: VecDeque<Option<Bytes>>,
    /// The request number of `slots[0]`.
    first_seq: u64,
    db: u32,
    multi: Option<Multi>,
    name: Option<Bytes>,
    gate: Rc<Gate>,
    awaiting: Option<Awaiting>,
    /// No more requests are read; the session ends once every reply is written.
    closing: bool,
}

impl Session {
    pub fn start(id: u64, read: ReadHalf, write: WriteHalf, route: Rc<Route>) -> Addr<Session> {
        Session::create(move |ctx| {
            route.register(id, ctx.address().downgrade());
            route.current().settings.metrics.clients.increment(1);
            let current = route.current();
            let (target, settings) = (current.target, current.settings);
            let gate = Gate::new();
            let requests =
                FramedRead::with_capacity(read, RequestParser::new(settings.limits), CLIENT_READ_CAPACITY);
            ctx.add_stream(Gated::new(requests, gate.clone()));
            Session {
                id,
                route_generation: route.generation(),
                route,
                db: settings.initial_db,
                settings,
                target,
                out: ClientOut::new(write),
                slots: VecDeque::new(),
                first_seq: 0,
                multi: None,
                name: None,
                gate,
                awaiting: None,
                closing: false,
            }
        })
    }

    /// A reply of the relayer's own.
    fn reply(&mut self, data: impl Into<Bytes>, ctx: &mut Context<Self>) {
        self.settings.metrics.local.increment(1);
        self.push_reply(data.into(), ctx);
    }

    fn push_reply(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        self.slots.push_back(Some(data));
        self.drain(ctx);
    }

    fn reply_static(&mut self, data: &'static [u8], ctx: &mut Context<Self>) {
        self.reply(Bytes::from_static(data), ctx);
    }

    fn forward(&mut self, request: Request, ctx: &mut Context<Self>) -> u64 {
        self.settings.metrics.forwarded.increment(1);
        let seq = self.first_seq + self.slots.len() as u64;
        let sent = self.target.try_send(Forward {
            reply_to: ctx.address(),
            session: self.id,
            seq,
            db: self.db,
            request,
        });
        if sent.is_ok() {
            self.slots.push_back(None);
            self.update_gate();
        } else {
            // Only a target a reload retired refuses: its replacement is in the route already.
            self.slots.push_back(Some(error(TARGET_GONE)));
            self.drain(ctx);
        }
        seq
    }

    /// Moves the replies that are ready, in order, to the output buffer.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(Some(_)) = self.slots.front() {
            let data = self.slots.pop_front().flatten().expect("checked above");
            self.first_seq += 1;
            self.out.push(&data, ctx);
        }
        self.update_gate();
        self.maybe_close(ctx);
    }

    fn update_gate(&self) {
        let full = self.slots.len() >= self.settings.max_pending || self.out.len() >= OUT_HIGH;
        if self.closing || self.awaiting.is_some() || full {
            self.gate.pause();
        } else {
            self.gate.resume();
        }
    }

    fn maybe_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing && self.slots.is_empty() && self.out.is_empty() {
            ctx.stop();
        }
    }

    fn close_after_replies(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.gate.pause();
        self.maybe_close(ctx);
    }

    fn on_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        if self.route.generation() != self.route_generation {
            let current = self.route.current();
            (self.target, self.settings) = (current.target, current.settings);
            self.route_generation = self.route.generation();
        }
        let kind = classify(cmd.arg(0));
        // What goes to the backend is compressed; what the relayer answers itself is not.
        let cmd = match &self.settings.compression {
            Some(c) if self.multi.is_some() || matches!(kind, Kind::Forward | Kind::StreamRead) => {
                c.compress_command(cmd)
            }
            _ => cmd,
        };
        if self.multi.is_some() && self.queue_in_multi(kind, &cmd, ctx) {
            return;
        }
        let argc = cmd.argc();
        match kind {
            Kind::Forward => self.forward_or_acknowledge(cmd, ctx),
            Kind::Ping => match argc {
                1 => self.reply_static(write::PONG, ctx),
                2 => self.reply(write::bulk(cmd.arg(1)), ctx),
                _ => self.reply(wrong_arity(cmd.arg(0)), ctx),
            },
            Kind::Echo if argc == 2 => self.reply(write::bulk(cmd.arg(1)), ctx),
            Kind::Quit => {
                self.reply_static(write::OK, ctx);
                self.close_after_replies(ctx);
            }
            Kind::Select if argc == 2 => self.select(cmd, ctx),
            Kind::Multi if argc == 1 => {
                self.multi = Some(Multi {
                    frames: vec![cmd.frame().clone()],
                    dirty: false,
                    select: None,
                });
                self.reply_static(write::OK, ctx);
            }
            Kind::Exec if argc == 1 && self.multi.is_some() => self.exec(ctx),
            Kind::Exec if argc == 1 => self.reply(error("ERR EXEC without MULTI"), ctx),
            Kind::Discard if argc == 1 => match self.multi.take() {
                Some(_) => self.reply_static(write::OK, ctx),
                None => self.reply(error("ERR DISCARD without MULTI"), ctx),
            },
            Kind::Hello => self.hello(&cmd, ctx),
            Kind::Client if argc >= 2 => self.client(cmd, ctx),
            Kind::Auth if argc == 2 || argc == 3 => self.auth(&cmd, ctx),
            Kind::Reset if argc == 1 => {
                self.multi = None;
                self.db = self.settings.initial_db;
                self.name = None;
                self.reply_static(b"+RESET\r\n", ctx);
            }
            Kind::Unwatch if argc == 1 => self.reply_static(write::OK, ctx),
            Kind::Dedicated => self.refuse_dedicated(&cmd, ctx),
            Kind::StreamRead if cmd.args().skip(1).any(|a| a.eq_ignore_ascii_case(b"BLOCK")) => {
                self.refuse_dedicated(&cmd, ctx)
            }
            Kind::StreamRead => {
                self.forward(Request::One(cmd.frame().clone()), ctx);
            }
            _ => self.reply(wrong_arity(cmd.arg(0)), ctx),
        }
    }

    /// In smart mode a write from the table is acknowledged now and sent in the background,
    /// while the budget allows; otherwise it waits for its real reply like any command.
    fn forward_or_acknowledge(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        if let Some(smart) = &self.settings.smart {
            if let Some(early) = smart.table.early(&cmd) {
                let len = cmd.frame().len() as u64;
                if smart.budget.try_take(len) {
                    let request = Request::Background {
                        frame: cmd.into_frame(),
                        idempotent: early.idempotent,
                    };
                    let sent = self.target.try_send(Forward {
                        reply_to: ctx.address(),
                        session: self.id,
                        seq: 0,
                        db: self.db,
                        request,
                    });
                    if sent.is_err() {
                        smart.budget.give_back(len);
                        self.reply(error(TARGET_GONE), ctx);
                        return;
                    }
                    self.settings.metrics.acknowledged.increment(1);
                    self.push_reply(Bytes::from_static(early.reply), ctx);
                    return;
                }
            }
        }
        self.forward(Request::One(cmd.into_frame()), ctx);
    }

    /// Inside MULTI: queues the command and returns true, or returns false for the commands
    /// that end or act on the block itself.
    fn queue_in_multi(&mut self, kind: Kind, cmd: &Command, ctx: &mut Context<Self>) -> bool {
        let multi = self.multi.as_mut().expect("in MULTI");
        match kind {
            Kind::Exec | Kind::Discard | Kind::Quit | Kind::Reset => return false,
            Kind::Multi => {
                self.reply(error("ERR MULTI calls can not be nested"), ctx);
                return true;
            }
            Kind::Select => {
                let db = (cmd.argc() == 2).then(|| parse_db(cmd.arg(1))).flatten();
                match db {
                    Some(db) if self.settings.known_dbs.contains(db) => multi.select = Some(db),
                    _ => {
                        multi.dirty = true;
                        let e = if cmd.argc() != 2 {
                            wrong_arity(cmd.arg(0))
                        } else {
                            error("ERR relayer: inside MULTI, SELECT only a DB this client already used before MULTI")
                        };
                        self.reply(e, ctx);
                        return true;
                    }
                }
            }
            Kind::Dedicated if cmd.name_is(b"WATCH") => {
                self.reply(error("ERR WATCH inside MULTI is not allowed"), ctx);
                return true;
            }
            Kind::Hello | Kind::Auth | Kind::Client | Kind::Unwatch => {
                multi.dirty = true;
                self.reply(error("ERR Command not allowed inside a transaction"), ctx);
                return true;
            }
            _ => {}
        }
        multi.frames.push(cmd.frame().clone());
        self.reply_static(write::QUEUED, ctx);
        true
    }

    fn exec(&mut self, ctx: &mut Context<Self>) {
        let Some(mut multi) = self.multi.take() else {
            return;
        };
        if multi.dirty {
            self.reply(
                error("EXECABORT Transaction discarded because of previous errors."),
                ctx,
            );
            return;
        }
        multi.frames.push(Bytes::from_static(b"*1\r\n$4\r\nEXEC\r\n"));
        let changes_db = multi.select.is_some();
        let seq = self.forward(
            Request::Block {
                frames: multi.frames,
                changes_db,
            },
            ctx,
        );
        if let Some(db) = multi.select {
            self.awaiting = Some(Awaiting::Exec { seq, db });
            self.update_gate();
        }
    }

    fn select(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        let arg = cmd.arg(1);
        let Ok(n) = std::str::from_utf8(arg).unwrap_or("x").parse::<i64>() else {
            self.reply(error("ERR value is not an integer or out of range"), ctx);
            return;
        };
        let Ok(db) = u32::try_from(n) else {
            self.reply(error("ERR DB index is out of range"), ctx);
            return;
        };
        if self.settings.known_dbs.contains(db) {
            self.db = db;
            self.reply_static(write::OK, ctx);
            return;
        }
        let seq = self.forward(Request::Select(db, cmd.frame().clone()), ctx);
        self.awaiting = Some(Awaiting::Select { seq, db });
        self.update_gate();
    }

    fn hello(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        let mut i = 1;
        if cmd.argc() >= 2 {
            match std::str::from_utf8(cmd.arg(1))
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                None => {
                    self.reply(
                        error("ERR Protocol version is not an integer or out of range"),
                        ctx,
                    );
                    return;
                }
                Some(2) => i = 2,
                Some(_) => {
                    self.reply(
                        error("NOPROTO sorry, this protocol version is not supported."),
                        ctx,
                    );
                    return;
                }
            }
        }
        let mut name = None;
        while i < cmd.argc() {
            let opt = cmd.arg(i);
            if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.argc() {
                if !cmd.arg(i + 1).eq_ignore_ascii_case(b"default") {
                    self.reply(
                        error("WRONGPASS invalid username-password pair or user is disabled."),
                        ctx,
                    );
                    return;
                }
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.argc() {
                name = Some(cmd.arg(i + 1));
                i += 2;
            } else {
                let text = format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(opt)
                );
                self.reply(error(&text), ctx);
                return;
            }
        }
        if let Some(n) = name {
            if !valid_name(n) {
                self.reply(error(BAD_NAME), ctx);
                return;
            }
            self.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
        }
        let mut b = BytesMut::with_capacity(160);
        write::put_array_header(&mut b, 14);
        for (k, v) in [("server", "redis"), ("version", env!("CARGO_PKG_VERSION"))] {
            write::put_bulk(&mut b, k.as_bytes());
            write::put_bulk(&mut b, v.as_bytes());
        }
        write::put_bulk(&mut b, b"proto");
        write::put_int(&mut b, 2);
        write::put_bulk(&mut b, b"id");
        write::put_int(&mut b, self.id as i64);
        for (k, v) in [("mode", "standalone"), ("role", "master")] {
            write::put_bulk(&mut b, k.as_bytes());
            write::put_bulk(&mut b, v.as_bytes());
        }
        write::put_bulk(&mut b, b"modules");
        write::put_array_header(&mut b, 0);
        self.reply(b.freeze(), ctx);
    }

    fn client(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        let sub = cmd.arg(1);
        let argc = cmd.argc();
        let arity = |s: &str| error(&format!("ERR wrong number of arguments for 'client|{s}' command"));
        if sub.eq_ignore_ascii_case(b"SETNAME") {
            if argc != 3 {
                return self.reply(arity("setname"), ctx);
            }
            let n = cmd.arg(2);
            if !valid_name(n) {
                return self.reply(error(BAD_NAME), ctx);
            }
            self.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
            self.reply_static(write::OK, ctx);
        } else if sub.eq_ignore_ascii_case(b"GETNAME") {
            if argc != 2 {
                return self.reply(arity("getname"), ctx);
            }
            match self.name.clone() {
                Some(n) => self.reply(write::bulk(&n), ctx),
                None => self.reply_static(write::NIL, ctx),
            }
        } else if sub.eq_ignore_ascii_case(b"SETINFO") {
            if argc != 4 {
                return self.reply(arity("setinfo"), ctx);
            }
            let attr = cmd.arg(2);
            if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
                self.reply_static(write::OK, ctx);
            } else {
                let text = format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(attr));
                self.reply(error(&text), ctx);
            }
        } else if sub.eq_ignore_ascii_case(b"ID") && argc == 2 {
            self.reply(Bytes::from(format!(":{}\r\n", self.id)), ctx);
        } else if client_sub_refused(sub) {
            let text = format!(
                "ERR relayer: 'CLIENT {}' would change a connection shared with other clients",
                String::from_utf8_lossy(sub).to_uppercase()
            );
            self.reply(error(&text), ctx);
        } else {
            self.forward(Request::One(cmd.frame().clone()), ctx);
        }
    }

    fn auth(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        if cmd.argc() == 3 && cmd.arg(1).eq_ignore_ascii_case(b"default") {
            self.reply_static(write::OK, ctx);
        } else if cmd.argc() == 3 {
            self.reply(
                error("WRONGPASS invalid username-password pair or user is disabled."),
                ctx,
            );
        } else {
            self.reply(
                error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"),
                ctx,
            );
        }
    }

    fn refuse_dedicated(&mut self, cmd: &Command, ctx: &mut Context<Self>) {
        let text = format!(
            "ERR relayer: '{}' needs a dedicated connection, not supported yet",
            String::from_utf8_lossy(cmd.arg(0)).to_uppercase()
        );
        self.reply(error(&text), ctx);
    }
}

const TARGET_GONE: &str = "ERR relayer: the backend target was replaced by a configuration reload, try again";

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn parse_db(arg: &[u8]) -> Option<u32> {
    std::str::from_utf8(arg).ok()?.parse::<u32>().ok()
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.route.unregister(self.id);
        self.settings.metrics.clients.decrement(1);
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
                self.reply(error(&format!("ERR Protocol error: {e}")), ctx);
                self.close_after_replies(ctx);
            }
            Err(RequestError::Io(e)) => {
                debug!(self.settings.log, "client read failed"; "session" => self.id, "error" => %e);
                ctx.stop();
            }
        }
    }

    /// The client closed its side: its outstanding replies are still written, then it ends.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close_after_replies(ctx);
    }
}

impl Handler<Reply> for Session {
    type Result = ();

    fn handle(&mut self, mut msg: Reply, ctx: &mut Context<Self>) {
        let Some(i) = msg.seq.checked_sub(self.first_seq) else {
            return;
        };
        if self.settings.compression.is_some() {
            msg.data = decode_reply_logged(msg.data, self.settings.limits.max_bulk_len, &self.settings.log);
        }
        let ok = !msg.data.starts_with(b"-");
        match self.awaiting {
            Some(Awaiting::Select { seq, db }) if seq == msg.seq => {
                if ok {
                    self.db = db;
                }
                self.awaiting = None;
            }
            Some(Awaiting::Exec { seq, db }) if seq == msg.seq => {
                if msg.data.starts_with(b"*") && !msg.data.starts_with(b"*-1") {
                    self.db = db;
                }
                self.awaiting = None;
            }
            _ => {}
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            *slot = Some(msg.data);
        }
        self.drain(ctx);
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
