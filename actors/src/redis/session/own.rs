//! The client's own upstream connection (a dedicated connection from the pool), while it needs
//! one: for commands that would stall or change a shared connection (blocking commands, WATCH,
//! WAIT, pub/sub, MONITOR, RESP3). The session holds it as an `Own`; this type keeps its state
//! and writes to the connection, and never calls the session back.
//!
//! ## Lifecycle
//!
//! | state | what it means | events, and what each does |
//! |---|---|---|
//! | (none) | the client has no connection of its own | a command that needs one: a connection is taken from the pool and a barrier (a PING) goes on the shared connection behind the client's earlier commands -> **Taking** |
//! | **Taking** | the command waits for its barrier; the client is not read | barrier answered: the command is written -> **Waited**, or **Entering** for one that enters push mode; barrier failed (the shared connection was lost): the command gets an error -> released if idle; connection lost: the command gets its error -> (none) |
//! | **Waited** | commands are written and answered one by one (`owed`); WATCH and a blocking command are noted | a reply: one less owed, and released once nothing is owed, watched or waited (-> none); a command entering push mode: the PUBLISH that moves the replication offset, the client's name, the command -> **Entering**; RESET: UNWATCH and SELECT of the first DB are written, released once idle |
//! | **Entering** | the command entering push mode is written; the client is not read | its reply: push mode began -> **Push**, or it was refused -> **Waited** |
//! | **Push** | everything passes through, replies as the connection gives them; the relayer's own answers are put in their place (`answer`) | RESET or QUIT: sent as RESET with an end token (`EndPush`) -> **Ending** |
//! | **Ending** | push mode is ending; the client is not read | the connection says it ended: released (reused when its RESET worked), the client gets `+RESET` or `+OK` -> (none) |
//!
//! In every state, the connection being lost gives its error to what is owed (and to a command
//! waiting for its barrier, or entering push mode; a subscriber is closed); a WATCH then lost
//! makes the next EXEC abort. A client that leaves while blocked, entering or in push mode is
//! let go at once (`drops_on_close`): nothing is left running for it, as Redis does.

use crate::command::Kind;
use crate::redis::dedicated::{self, Handle, ReplyFor};
use crate::resp::request::Command;
use crate::resp::write;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The client's `pubsub` flag (CLIENT KILL TYPE pubsub): set once SUBSCRIBE and the like put
/// the connection in push mode, cleared when the client lets the connection go, however.
struct Pubsub {
    flag: Arc<AtomicBool>,
    /// The command entering push mode is a pub/sub one.
    entering: bool,
}

impl Drop for Pubsub {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Relaxed);
    }
}

/// A command waiting for its barrier.
pub struct Held {
    pub cmd: Command,
    pub kind: Kind,
    /// The request number of its barrier.
    pub barrier: u64,
}

impl Held {
    /// Its client gone, it is not sent: all but a WATCH, which blocks nothing and is sent and
    /// answered like the commands before it.
    fn dropped_on_close(&self) -> bool {
        enters_push(self.kind) || self.kind != Kind::Watch
    }
}

/// Whether a command of `kind` starts push mode on the client's own connection: pub/sub,
/// MONITOR, and HELLO 3 (RESP3, where the server may push at any time).
pub fn enters_push(kind: Kind) -> bool {
    kind.enters_push() || kind == Kind::Hello
}

/// See the lifecycle above.
pub enum State {
    Taking(Held),
    Waited,
    Entering,
    Push,
    /// By the client's RESET or QUIT.
    Ending(Kind),
}

/// What a lost connection leaves to the session.
pub struct Lost {
    /// The requests whose replies were owed, in order.
    pub owed: VecDeque<u64>,
    pub watching: bool,
    /// The command that waited for its barrier.
    pub held: Option<Held>,
    pub entering: bool,
    pub push: bool,
}

pub struct Own {
    pub handle: Handle,
    state: State,
    /// The requests whose replies it owes, in order.
    owed: VecDeque<u64>,
    /// The client could have run any command on it (RESP3, MONITOR, commands sent after
    /// pub/sub ones): released, it is closed rather than reset, as one may still be blocked.
    open: bool,
    /// WATCH is in effect: kept until EXEC, DISCARD or UNWATCH.
    watching: bool,
    /// The request number of the last command sent that can block (BLPOP, XREAD BLOCK,
    /// WAIT...): it may be running while its reply is owed.
    blocking: Option<u64>,
    pubsub: Pubsub,
}

impl Own {
    /// A connection just taken, with `held` waiting for its barrier; `pubsub`: the client's
    /// flag (see `Pubsub`).
    pub fn taking(handle: Handle, held: Held, pubsub: Arc<AtomicBool>) -> Self {
        Own {
            pubsub: Pubsub {
                flag: pubsub,
                entering: false,
            },
            handle,
            state: State::Taking(held),
            owed: VecDeque::new(),
            open: false,
            watching: false,
            blocking: None,
        }
    }

    pub fn in_push(&self) -> bool {
        matches!(self.state, State::Push | State::Ending(_))
    }

    /// Neither being taken nor entering or in push mode: what the client has on it, it
    /// waits on, one reply a command (so no subscription).
    pub fn settled(&self) -> bool {
        matches!(self.state, State::Waited)
    }

    pub fn watching(&self) -> bool {
        self.watching
    }

    /// The barrier numbered `barrier` was answered: the command it held, if it is this one's.
    /// The connection is then ready for it.
    pub fn barrier_answered(&mut self, barrier: u64) -> Option<Held> {
        match &self.state {
            State::Taking(h) if h.barrier == barrier => {}
            _ => return None,
        }
        match std::mem::replace(&mut self.state, State::Waited) {
            State::Taking(h) => Some(h),
            _ => unreachable!("matched above"),
        }
    }

    /// Whether the client is not read for its sake: a command waits for its barrier, push mode
    /// is beginning or ending, or too much waits to be written to it.
    pub fn holds_client(&self) -> bool {
        matches!(self.state, State::Taking(_) | State::Entering | State::Ending(_))
            || self.handle.unsent.get() >= dedicated::BACKLOG_HIGH
    }

    /// Whether Redis would drop what runs for the client if it closed now: it is blocked, or
    /// in push mode (where a reply may be a message), or its command waiting for the barrier
    /// would have run. Otherwise Redis answers what the client sent before closing.
    pub fn drops_on_close(&self) -> bool {
        let blocked = self
            .blocking
            .is_some_and(|b| self.owed.front().is_some_and(|&first| first <= b));
        let held = matches!(&self.state, State::Taking(h) if h.dropped_on_close());
        blocked || held || matches!(self.state, State::Entering | State::Push | State::Ending(_))
    }

    /// The client left while its command waited for the barrier: that command is never sent
    /// (all but a WATCH). True when it was dropped.
    pub fn drop_held_on_close(&mut self) -> bool {
        if matches!(&self.state, State::Taking(h) if h.dropped_on_close()) {
            self.state = State::Waited;
            return true;
        }
        false
    }

    /// Nothing needs it any more: it may go back to the pool.
    pub fn idle(&self) -> bool {
        self.owed.is_empty() && !self.watching && matches!(self.state, State::Waited)
    }

    /// Writes `frames`, the last one answering request `seq`.
    pub fn send(&mut self, frames: Vec<(Bytes, ReplyFor)>, seq: u64) {
        self.owed.push_back(seq);
        self.write(frames);
    }

    /// A command waited on (`kind`) is written: WATCH is noted, and anything else that needs
    /// a connection of its own may block.
    pub fn sent(&mut self, kind: Kind, seq: u64) {
        match kind {
            Kind::Watch => self.watching = true,
            _ => self.blocking = Some(seq),
        }
    }

    /// Writes the command that enters push mode (`kind`): first the PUBLISH that moves the
    /// connection's replication offset past the client's writes on the shared one (a WAIT sent
    /// through later counts them), then the client's name (CLIENT GETNAME passes through from
    /// then on), then the command.
    pub fn enter_push(&mut self, cmd: Command, kind: Kind, name: Option<&Bytes>) {
        let mut frames = vec![(dedicated::wait_offset_frame(), ReplyFor::Swallow("PUBLISH"))];
        if let Some(name) = name {
            let setname = Command::from_args(&[&b"CLIENT"[..], b"SETNAME", name]);
            frames.push((setname.into_frame(), ReplyFor::Swallow("CLIENT SETNAME")));
        }
        // MONITOR and RESP3 clients can run anything (a blocking command included).
        self.open = kind != Kind::Subscribe;
        self.pubsub.entering = kind == Kind::Subscribe;
        frames.push((cmd.into_frame(), ReplyFor::EnterPush));
        self.state = State::Entering;
        self.write(frames);
    }

    /// The reply to the command entering push mode came: `ok`, push mode began.
    pub fn entered(&mut self, ok: bool) {
        self.state = if ok { State::Push } else { State::Waited };
        if ok && self.pubsub.entering {
            self.pubsub.flag.store(true, Ordering::Relaxed);
        }
    }

    /// Push mode: `cmd` passes through. `open`: not a pub/sub command, so after it the client
    /// may have anything running on the connection.
    pub fn pass(&mut self, frame: Bytes, open: bool) {
        self.open |= open;
        self.write(vec![(frame, ReplyFor::Pass)]);
    }

    /// Push mode: `answer` (the relayer's) goes to the client after the replies to everything it
    /// sent before.
    pub fn answer(&self, answer: Bytes) {
        self.handle.addr.do_send(dedicated::Answer(answer));
    }

    /// Push mode: the client's RESET or QUIT (`kind`) ends it.
    pub fn end_push(&mut self, kind: Kind) {
        self.state = State::Ending(kind);
        self.handle
            .addr
            .do_send(dedicated::EndPush { may_block: self.open });
    }

    /// How push mode was ended, once the connection says it is over.
    pub fn ending(&self) -> Option<Kind> {
        match self.state {
            State::Ending(kind) => Some(kind),
            _ => None,
        }
    }

    /// A reply to a command waited on came.
    pub fn replied(&mut self) {
        self.owed.pop_front();
    }

    /// WATCH ends (EXEC, DISCARD, UNWATCH).
    pub fn unwatched(&mut self) {
        self.watching = false;
    }

    /// WATCH ends with no command of the client's reaching the connection (an EXEC that
    /// aborted in the relayer): the keys are unwatched there, quietly.
    pub fn unwatch(&mut self) {
        if std::mem::take(&mut self.watching) {
            self.write(vec![(
                Bytes::from_static(write::UNWATCH),
                ReplyFor::Swallow("UNWATCH"),
            )]);
        }
    }

    /// RESET outside push mode: the WATCH and DB it holds are undone (what it owes still
    /// comes, its slots ahead of RESET's).
    pub fn reset(&mut self, db: u32, initial: u32) {
        let mut frames = Vec::new();
        if std::mem::take(&mut self.watching) {
            frames.push((Bytes::from_static(write::UNWATCH), ReplyFor::Swallow("UNWATCH")));
        }
        if db != initial {
            frames.push((write::select(initial), ReplyFor::Swallow("SELECT")));
        }
        if !frames.is_empty() {
            self.write(frames);
        }
    }

    /// Gives the connection back. `reset`: push mode ended, by the client's own RESET if true;
    /// None: it may be reused unless the client could have left a command running there.
    pub fn release(self, reset: Option<bool>) {
        let reuse = reset.unwrap_or(!self.open);
        self.handle.pause_reading(false);
        self.handle.addr.do_send(dedicated::Release { reuse });
    }

    /// The connection is gone.
    pub fn lost(self) -> Lost {
        let (held, entering, push) = match self.state {
            State::Taking(h) => (Some(h), false, false),
            State::Entering => (None, true, false),
            State::Push | State::Ending(_) => (None, false, true),
            State::Waited => (None, false, false),
        };
        Lost {
            owed: self.owed,
            watching: self.watching,
            held,
            entering,
            push,
        }
    }

    /// Writes `frames`, counting them as not yet written.
    fn write(&mut self, frames: Vec<(Bytes, ReplyFor)>) {
        let len: usize = frames.iter().map(|(f, _)| f.len()).sum();
        self.handle.unsent.set(self.handle.unsent.get() + len);
        self.handle.addr.do_send(dedicated::Send { frames });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::TargetAddr;
    use crate::redis::dedicated::{LiveCount, Pool};
    use crate::redis::messages::FromDedicated;
    use actix::prelude::*;
    use std::time::Duration;

    /// Takes what a dedicated connection says to its owner.
    struct Owner;
    impl Actor for Owner {
        type Context = Context<Self>;
    }
    impl Handler<FromDedicated> for Owner {
        type Result = ();
        fn handle(&mut self, _: FromDedicated, _: &mut Context<Self>) {}
    }

    fn held(args: &[&str], kind: Kind, barrier: u64) -> Held {
        Held {
            cmd: Command::from_args(args),
            kind,
            barrier,
        }
    }

    /// The states and what each says to the session, through a whole life: taken, a blocking
    /// command, WATCH, push mode entered and ended; and what a lost connection leaves.
    #[test]
    fn states_and_transitions() {
        actix::System::new().block_on(async {
            // Nothing answers there: the connection's writes go nowhere, which is all this
            // test needs of it.
            let addr = TargetAddr::parse("tcp://127.0.0.1:1").unwrap();
            let log = slog::Logger::root(slog::Discard, slog::o!());
            let pool = Pool::new(
                addr,
                None,
                Duration::from_secs(1),
                16,
                LiveCount::default(),
                1024,
                log,
            );
            let owner = Owner.start().recipient();
            let take =
                |pool: &std::rc::Rc<Pool>| pool.acquire(owner.clone(), 0, false).expect("a connection");
            let flag = Arc::new(AtomicBool::new(false));

            let mut own = Own::taking(
                take(&pool),
                held(&["BLPOP", "l", "0"], Kind::Blocking, 7),
                flag.clone(),
            );
            assert!(own.holds_client() && own.drops_on_close() && !own.idle());
            assert!(own.barrier_answered(6).is_none(), "another barrier's");
            let h = own.barrier_answered(7).expect("its barrier");
            assert_eq!(h.kind, Kind::Blocking);
            assert!(!own.holds_client() && !own.drops_on_close());
            own.send(vec![(Bytes::from_static(b"x"), ReplyFor::Client(1))], 1);
            own.sent(Kind::Blocking, 1);
            assert!(own.drops_on_close(), "blocked");
            own.replied();
            assert!(!own.drops_on_close() && own.idle());
            own.send(vec![(Bytes::from_static(b"w"), ReplyFor::Client(2))], 2);
            own.sent(Kind::Watch, 2);
            own.replied();
            assert!(own.watching() && !own.idle() && !own.drops_on_close());
            own.unwatched();
            assert!(own.idle());
            own.enter_push(Command::from_args(&["SUBSCRIBE", "c"]), Kind::Subscribe, None);
            assert!(own.holds_client() && own.drops_on_close() && !own.in_push());
            own.entered(true);
            assert!(own.in_push() && !own.holds_client() && !own.idle());
            assert!(flag.load(Ordering::Relaxed), "a subscriber");
            own.end_push(Kind::Reset);
            assert_eq!(own.ending(), Some(Kind::Reset));
            assert!(own.holds_client() && own.in_push() && own.drops_on_close());
            let lost = own.lost();
            assert!(lost.push && !lost.entering && lost.held.is_none() && lost.owed.is_empty());
            assert!(
                !flag.load(Ordering::Relaxed),
                "no longer a subscriber once it let go"
            );

            // A WATCH waiting for its barrier is still sent when its client leaves.
            let mut own = Own::taking(take(&pool), held(&["WATCH", "k"], Kind::Watch, 8), flag.clone());
            assert!(!own.drops_on_close() && !own.drop_held_on_close());
            own.release(None);
            let mut own = Own::taking(
                take(&pool),
                held(&["SUBSCRIBE", "c"], Kind::Subscribe, 9),
                flag.clone(),
            );
            assert!(own.drop_held_on_close() && own.idle());
            let mut own = Own::taking(
                take(&pool),
                held(&["BLPOP", "l", "0"], Kind::Blocking, 10),
                flag.clone(),
            );
            own.send(vec![(Bytes::from_static(b"x"), ReplyFor::Client(3))], 3);
            let lost = own.lost();
            assert!(lost.held.is_some() && lost.owed == [3]);
            // Push mode refused: an ordinary client again.
            let mut own = Own::taking(take(&pool), held(&["MONITOR"], Kind::Monitor, 11), flag.clone());
            own.barrier_answered(11);
            own.enter_push(
                Command::from_args(&["MONITOR"]),
                Kind::Monitor,
                Some(&Bytes::from_static(b"n")),
            );
            own.entered(false);
            assert!(own.idle() && !own.in_push());
            let lost = own.lost();
            assert!(!lost.entering && !lost.push);
        });
    }
}
