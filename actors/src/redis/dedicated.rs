//! Dedicated upstream connections: one client's own connection to the backend while it runs
//! commands that hold or change the state of the connection they run on (blocking pops,
//! XREAD BLOCK, WAIT, pub/sub, MONITOR, WATCH). On the shared connections they would stall or
//! corrupt everyone else's commands.
//!
//! Pub/sub and MONITOR keep the connection in push mode (everything passes through as it
//! comes) until the client resets, quits or leaves.
//!
//! A `Pool` per target bounds how many exist (`maxDedicatedConnections`) and keeps released
//! ones for reuse: a released connection is RESET (which ends pub/sub, MONITOR, WATCH and goes
//! back to DB 0) and authenticated again before another client gets it. One released in the
//! middle of a blocking command is closed instead: Redis unblocks a client that disconnects,
//! and RESET would only run once the command returned.

use super::session::FromDedicated;
use crate::endpoint::TargetAddr;
use crate::io::{OutBuf, ReadHalf};
use crate::resp::reply::{is_error, ReplyScanner};
use crate::resp::request::Command;
use crate::tls::TlsClient;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use slog::{debug, warn, Logger};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio_util::codec::FramedRead;

/// A released connection nobody takes within this time is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// The dedicated connections of one target (per worker).
pub struct Pool {
    addr: TargetAddr,
    tls: Option<TlsClient>,
    connect_timeout: Duration,
    max: usize,
    live: Cell<usize>,
    idle: RefCell<Vec<Addr<Dedicated>>>,
    log: Logger,
}

impl Pool {
    pub fn new(
        addr: TargetAddr,
        tls: Option<TlsClient>,
        connect_timeout: Duration,
        max: usize,
        log: Logger,
    ) -> Rc<Self> {
        Rc::new(Pool {
            addr,
            tls,
            connect_timeout,
            max,
            live: Cell::new(0),
            idle: RefCell::new(Vec::new()),
            log,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A connection for `owner`, idle or new; None when `max` are in use.
    pub fn acquire(self: &Rc<Self>, owner: Recipient<FromDedicated>, db: u32) -> Option<Addr<Dedicated>> {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(addr) => {
                addr.do_send(Take { owner, db });
                Some(addr)
            }
            None if self.live.get() < self.max => {
                self.live.set(self.live.get() + 1);
                let mut d = Dedicated::new(Rc::downgrade(self));
                // Known before it connects, so a failed connect reaches the client.
                d.take(owner, db);
                Some(Dedicated::create(|ctx| {
                    ctx.set_mailbox_capacity(0);
                    d
                }))
            }
            None => None,
        }
    }

    fn put_back(&self, addr: Addr<Dedicated>) {
        self.idle.borrow_mut().push(addr);
    }

    fn gone(&self, addr: &Addr<Dedicated>) {
        self.live.set(self.live.get().saturating_sub(1));
        self.idle.borrow_mut().retain(|a| a != addr);
    }
}

/// Where the reply to a written command goes.
enum Dest {
    Client(u64),
    /// AUTH, SELECT and MULTI parts the relayer wrote itself; their errors are logged (and an
    /// AUTH error ends the connection).
    Swallow(&'static str),
    /// The command that puts the connection in push mode (SUBSCRIBE..., MONITOR): its reply
    /// and everything after it are passed on as they come.
    EnterPush,
    /// RESET on release: replies before it belong to nobody.
    Reset,
}

pub struct Dedicated {
    pool: Weak<Pool>,
    owner: Option<Recipient<FromDedicated>>,
    out: Option<OutBuf>,
    /// Frames written before the connection is up.
    early: Vec<Bytes>,
    pending: VecDeque<Dest>,
    /// Pub/sub or MONITOR: every reply goes to the owner as it comes, until release.
    push: bool,
    flush_scheduled: bool,
    write_blocked: bool,
    /// Bumped by each Take and release: a stale idle timer does nothing.
    lease: u64,
    log: Logger,
}

impl Dedicated {
    fn new(pool: Weak<Pool>) -> Self {
        let log = pool
            .upgrade()
            .map(|p| p.log.clone())
            .unwrap_or_else(|| Logger::root(slog::Discard, slog::o!()));
        Dedicated {
            pool,
            owner: None,
            out: None,
            early: Vec::new(),
            pending: VecDeque::new(),
            push: false,
            flush_scheduled: false,
            write_blocked: false,
            lease: 0,
            log,
        }
    }

    fn write(&mut self, frame: Bytes, dest: Option<Dest>, ctx: &mut Context<Self>) {
        self.queue(frame, dest);
        self.schedule_flush(ctx);
    }

    fn queue(&mut self, frame: Bytes, dest: Option<Dest>) {
        if let Some(d) = dest {
            self.pending.push_back(d);
        }
        match &mut self.out {
            Some(out) => out.push_bytes(frame),
            None => self.early.push(frame),
        }
    }

    fn take(&mut self, owner: Recipient<FromDedicated>, db: u32) {
        self.lease += 1;
        self.owner = Some(owner);
        if db != 0 {
            let select = Command::from_args(&[b"SELECT".to_vec(), db.to_string().into_bytes()]);
            self.queue(select.into_frame(), Some(Dest::Swallow("SELECT")));
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled && !self.write_blocked && self.out.is_some() {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    /// The connection is gone: whoever waits gets `text`, and the actor ends.
    fn fail(&mut self, text: &str, ctx: &mut Context<Self>) {
        if self.owner.is_some() {
            warn!(self.log, "dedicated connection lost"; "error" => text);
        } else {
            debug!(self.log, "idle dedicated connection lost"; "error" => text);
        }
        if let Some(owner) = self.owner.take() {
            let _ = owner.try_send(FromDedicated::Lost(crate::resp::write::error(text)));
        }
        ctx.stop();
    }

    fn on_reply(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        if self.push && self.pending.is_empty() {
            if let Some(owner) = &self.owner {
                let _ = owner.try_send(FromDedicated::Pushed(data));
            }
            return;
        }
        let Some(dest) = self.pending.pop_front() else {
            warn!(self.log, "unexpected reply on a dedicated connection, closing it");
            return self.fail("ERR relayer: unexpected reply from the backend", ctx);
        };
        match dest {
            Dest::Client(seq) => {
                if let Some(owner) = &self.owner {
                    let _ = owner.try_send(FromDedicated::Reply { seq, data });
                }
            }
            Dest::Swallow(what) => {
                if is_error(&data) {
                    let text = String::from_utf8_lossy(&data[1..data.len().saturating_sub(2)]).into_owned();
                    match what {
                        "AUTH" => self.fail(&format!("ERR relayer: backend refused AUTH: {text}"), ctx),
                        // Reported to the client by EXEC.
                        "MULTI" => debug!(self.log, "command refused inside MULTI"; "error" => &text),
                        _ => {
                            warn!(self.log, "backend refused a command on a dedicated connection"; "command" => what, "error" => &text)
                        }
                    }
                }
            }
            Dest::EnterPush => {
                self.push = true;
                if let Some(owner) = &self.owner {
                    let _ = owner.try_send(FromDedicated::Pushed(data));
                }
            }
            Dest::Reset => {
                if &data[..] != b"+RESET\r\n" {
                    // Something of the previous client's arrived first; RESET's own reply
                    // is still to come.
                    self.pending.push_front(Dest::Reset);
                    return;
                }
                self.push = false;
                self.auth(ctx);
                let Some(pool) = self.pool.upgrade() else {
                    return ctx.stop();
                };
                pool.put_back(ctx.address());
                let lease = self.lease;
                ctx.run_later(IDLE_CLOSE, move |act, ctx| {
                    if act.lease == lease && act.owner.is_none() {
                        debug!(act.log, "idle dedicated connection closed");
                        ctx.stop();
                    }
                });
            }
        }
    }

    fn auth(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else { return };
        if let Some(pw) = &pool.addr.password {
            let mut args = vec![&b"AUTH"[..]];
            if let Some(user) = &pool.addr.user {
                args.push(user.as_bytes());
            }
            args.push(pw.as_bytes());
            self.write(
                Command::from_args(&args).into_frame(),
                Some(Dest::Swallow("AUTH")),
                ctx,
            );
        }
    }
}

impl Actor for Dedicated {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return ctx.stop();
        };
        // Authenticated (and over TLS for rediss://) before it is used.
        let conn = super::connect::open(pool.addr.clone(), pool.tls.clone(), pool.log.clone());
        let limit = pool.connect_timeout;
        let display = pool.addr.display.clone();
        let fut = async move {
            match tokio::time::timeout(limit, conn).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok((r, w)) => act.connected(r, OutBuf::new(w), ctx),
            Err(e) => act.fail(&format!("ERR relayer: backend {display} unavailable ({e})"), ctx),
        }));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.gone(&ctx.address());
        }
    }
}

impl Dedicated {
    fn connected(&mut self, r: ReadHalf, out: OutBuf, ctx: &mut Context<Self>) {
        let replies = FramedRead::new(r, ReplyScanner::new())
            .map(Some)
            .chain(futures_util::stream::once(async { None }));
        ctx.add_stream(replies.map(|item| match item {
            Some(Ok(b)) => Upstream(Ok(Some(b))),
            Some(Err(e)) => Upstream(Err(e)),
            None => Upstream(Ok(None)),
        }));
        // The connection is authenticated already (connect::open).
        let queued = std::mem::take(&mut self.early);
        self.out = Some(out);
        if let Some(o) = self.out.as_mut() {
            for f in queued {
                o.push_bytes(f);
            }
        }
        self.schedule_flush(ctx);
    }
}

struct Upstream(io::Result<Option<Bytes>>);

impl StreamHandler<Upstream> for Dedicated {
    fn handle(&mut self, Upstream(item): Upstream, ctx: &mut Context<Self>) {
        match item {
            Ok(Some(data)) => self.on_reply(data, ctx),
            Ok(None) => self.fail("ERR relayer: dedicated connection closed by the backend", ctx),
            Err(e) => self.fail(
                &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                ctx,
            ),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Dedicated {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        let Some(out) = self.out.as_mut() else { return };
        match out.flush() {
            Ok(true) => {}
            Ok(false) => {
                self.write_blocked = true;
                let w = out.writer();
                ctx.spawn(
                    async move { w.writable().await }
                        .into_actor(self)
                        .map(|res, act, ctx| {
                            act.write_blocked = false;
                            match res {
                                Ok(()) => act.schedule_flush(ctx),
                                Err(e) => act.fail(
                                    &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                                    ctx,
                                ),
                            }
                        }),
                );
            }
            Err(e) => self.fail(
                &format!("ERR relayer: dedicated connection to the backend lost ({e})"),
                ctx,
            ),
        }
    }
}

/// A session takes the connection; it starts on `db`.
#[derive(Message)]
#[rtype(result = "()")]
struct Take {
    owner: Recipient<FromDedicated>,
    db: u32,
}

impl Handler<Take> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Take, ctx: &mut Context<Self>) {
        self.take(msg.owner, msg.db);
        self.schedule_flush(ctx);
    }
}

/// Frames from the owner. `push`: this command puts the connection in push mode.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Send {
    pub frames: Vec<(Bytes, Option<u64>)>,
    pub push: bool,
}

impl Handler<Send> for Dedicated {
    type Result = ();

    fn handle(&mut self, msg: Send, ctx: &mut Context<Self>) {
        let in_push = self.push || self.pending.iter().any(|d| matches!(d, Dest::EnterPush));
        let last = msg.frames.len().saturating_sub(1);
        for (i, (frame, seq)) in msg.frames.into_iter().enumerate() {
            let dest = if in_push {
                None
            } else if msg.push && i == last {
                Some(Dest::EnterPush)
            } else {
                Some(match seq {
                    Some(s) => Dest::Client(s),
                    None => Dest::Swallow("MULTI"),
                })
            };
            self.write(frame, dest, ctx);
        }
    }
}

/// The owner is done with the connection (or gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for Dedicated {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Context<Self>) {
        self.owner = None;
        self.lease += 1;
        let blocked = self.pending.iter().any(|d| matches!(d, Dest::Client(_)));
        if blocked || self.out.is_none() {
            debug!(
                self.log,
                "dedicated connection closed: released while a command was running"
            );
            return ctx.stop();
        }
        // Whatever comes before RESET's reply (messages, replies nobody waits for) is dropped.
        self.pending.clear();
        self.push = false;
        self.write(
            Bytes::from_static(b"*1\r\n$5\r\nRESET\r\n"),
            Some(Dest::Reset),
            ctx,
        );
    }
}
