//! The batcher: one per stream relayer (and worker), on its own thread (signing and encoding a
//! 5 MiB call must not stall the sessions). It packs lines into entries and calls (`pack`),
//! keeps at most `maxConnections` calls in flight, resends what failed with backoff (`retry`),
//! and after `retryTimeout` writes what it could not deliver to the dead-letter file
//! (`dead_letter`), or counts it lost. The service it calls (`service`) is the only thing that
//! differs between Firehose, Kinesis and SQS, besides their limits.
//!
//! When the service keeps an order (`ServiceSettings::ordered`), one call is in flight at a time
//! and a failed entry goes back in front at once, nothing leaving until its backoff is over: no
//! newer entry overtakes it. Entries of one call that the service answers separately can still
//! land out of order (a later one stored, an earlier one refused and resent): the services do
//! not promise an order within a call either.
//!
//! Every line holds its room in the relayer's `Buffer` from the moment a session accepted it;
//! the room comes back when the line is delivered, dead-lettered (once written) or counted lost.
//! A drain (stop, reload) closes the buffer first, so nothing is acknowledged after it that the
//! batcher would not see, and it is over only when no line is held at all.

use super::aws::RegionFrom;
use super::buffer::Buffer;
use super::call::{Failure, Outcome, Outgoing};
use super::dead_letter;
use super::pack::{Entry, Packer};
use super::retry::{backoff, jitter, needs_operator};
use super::service::{Service, ServiceSettings};
use crate::log_limit::LogLimit;
use actix::prelude::*;
use bytes::Bytes;
use metrics::{counter, gauge, Counter, Gauge};
use slog::{error, info, warn, Logger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How often a refusal that needs an operator is logged again, per error code.
const OPERATOR_LOG_EVERY: Duration = Duration::from_secs(60);

pub struct BatcherSettings {
    pub service: ServiceSettings,
    /// Lines packed into one entry (at least 1).
    pub max_lines: usize,
    /// Entries in one call (at most the service's limit).
    pub max_entries: usize,
    pub max_calls: usize,
    pub flush_interval: Duration,
    pub retry_timeout: Duration,
    pub dead_letter: Option<PathBuf>,
    pub metrics: StreamMetrics,
    pub log: Logger,
}

#[derive(Clone)]
pub struct StreamMetrics {
    pub lines: Counter,
    pub delivered: Counter,
    pub retries: Counter,
    pub dead_letter: Counter,
    pub lost: Counter,
    pub invalid_utf8: Counter,
    pub buffered: Gauge,
}

impl StreamMetrics {
    /// `relayer_<service>_...`, labelled with the listen address.
    pub fn new(service: &str, listen: &str) -> Self {
        let c =
            |what: &str| counter!(format!("relayer_{service}_{what}_total"), "listen" => listen.to_string());
        StreamMetrics {
            lines: c("lines"),
            delivered: c("delivered"),
            retries: c("retries"),
            dead_letter: c("dead_letter"),
            lost: c("lost"),
            invalid_utf8: c("invalid_utf8"),
            buffered: gauge!(format!("relayer_{service}_buffered"), "listen" => listen.to_string()),
        }
    }
}

/// What became of the lines a batcher accepted, over its life: delivered, written to the
/// dead-letter file, or lost. What a stop or a reload reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamDelivery {
    pub delivered: u64,
    pub dead_letter: u64,
    pub lost: u64,
}

impl StreamDelivery {
    pub fn all_delivered(&self) -> bool {
        self.dead_letter == 0 && self.lost == 0
    }
}

impl std::ops::AddAssign for StreamDelivery {
    fn add_assign(&mut self, o: StreamDelivery) {
        self.delivered += o.delivered;
        self.dead_letter += o.dead_letter;
        self.lost += o.lost;
    }
}

/// Where a line ended.
#[derive(Clone, Copy)]
enum Fate {
    Delivered,
    DeadLetter,
    Lost,
}

pub struct Batcher {
    settings: BatcherSettings,
    buffer: Arc<Buffer>,
    service: Option<Service>,
    pack: Packer,
    /// The number the next accepted line gets.
    next_line: u64,
    /// Records that failed, waiting for their backoff.
    retry: Vec<(Instant, Entry)>,
    in_flight: HashMap<u64, Vec<Entry>>,
    /// Lines (and their bytes) held, wherever they are: packed, in flight, waiting to be
    /// resent, being written to the dead-letter file.
    held_lines: usize,
    held_bytes: usize,
    next_call: u64,
    /// Whole calls failed in a row: no call leaves before `pause_until`.
    call_failures: u32,
    pause_until: Option<Instant>,
    wake_at: Option<Instant>,
    /// A drain started (stop, reload): the buffer is closed, calls leave without waiting.
    draining: bool,
    drained: Option<oneshot::Sender<StreamDelivery>>,
    /// What became of the lines accepted so far.
    delivery: StreamDelivery,
    /// Dead-letter writes under way, and who waits for them to end.
    writing: usize,
    idle: Vec<oneshot::Sender<()>>,
    fail_log: LogLimit,
    /// When each refusal that needs an operator was last logged.
    operator_log: HashMap<String, Instant>,
}

/// The buffer's inbox has lines.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Accept nothing more, send everything now, and answer when nothing is held (with what
/// became of every line it accepted, `StreamDelivery`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub done: oneshot::Sender<StreamDelivery>,
}

/// The drain timeout passed: what is left goes to the dead-letter file or is counted lost;
/// answers once that is done, with what became of every line it accepted.
#[derive(Message)]
#[rtype(result = "StreamDelivery")]
pub struct GiveUp;

/// Stop (after a drain): a reload replaced or removed this relayer. Anything still held then
/// is written off first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Batcher {
    /// Starts the batcher on a thread of its own; its sessions share `buffer`.
    pub fn start(settings: BatcherSettings, buffer: Arc<Buffer>) -> Addr<Batcher> {
        let arbiter = Arbiter::new();
        let mut limits = settings.service.limits();
        limits.call_entries = settings.max_entries.clamp(1, limits.call_entries);
        Batcher::start_in_arbiter(&arbiter.handle(), move |_| Batcher {
            pack: Packer::new(settings.max_lines, limits, settings.flush_interval),
            settings,
            buffer,
            service: None,
            next_line: 0,
            retry: vec![],
            in_flight: HashMap::new(),
            held_lines: 0,
            held_bytes: 0,
            next_call: 0,
            call_failures: 0,
            pause_until: None,
            wake_at: None,
            draining: false,
            drained: None,
            delivery: StreamDelivery::default(),
            writing: 0,
            idle: vec![],
            fail_log: LogLimit::default(),
            operator_log: HashMap::new(),
        })
    }

    /// Lines from the buffer's inbox, their room already taken.
    /// `since`: when the oldest of them reached the inbox (now if unknown); their flush
    /// interval and retry timeout run from then.
    fn accept(&mut self, lines: Vec<Bytes>, since: Option<Instant>) {
        if lines.is_empty() {
            return;
        }
        self.settings.metrics.lines.increment(lines.len() as u64);
        let now = since.unwrap_or_else(Instant::now);
        for line in &lines {
            self.held_lines += 1;
            self.held_bytes += line.len();
            self.pack.push_line(line, self.next_line, now);
            self.next_line += 1;
        }
    }

    /// Sends what may leave now, and sets a timer for what must leave later.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let (lines, since) = self.buffer.take_lines();
        self.accept(lines, since);
        let now = Instant::now();
        let mut back = vec![];
        let mut i = 0;
        while i < self.retry.len() {
            if self.retry[i].0 <= now {
                back.push(self.retry.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        back.sort_by_key(|e| e.born);
        self.pack.requeue(back, now);
        let mut wake: Option<Instant> = self.retry.iter().map(|(due, _)| *due).min();
        let earliest = |w: Option<Instant>, at: Instant| Some(w.map_or(at, |w| w.min(at)));
        if let Some(at) = self.expire_waiting(now, ctx) {
            wake = earliest(wake, at);
        }
        loop {
            let Some(service) = self.service.clone() else {
                break;
            };
            if self.in_flight.len() >= self.max_calls() {
                break;
            }
            if let Some(p) = self.pause_until.filter(|p| *p > now) {
                wake = earliest(wake, p);
                break;
            }
            let Some(due) = self.pack.due() else {
                break;
            };
            let full = self.pack.full() || self.buffer.no_room();
            if !full && due > now && !self.draining {
                wake = earliest(wake, due);
                break;
            }
            self.send_call(service, ctx);
        }
        self.settings.metrics.buffered.set(self.held_lines as f64);
        if let Some(at) = wake {
            if self.wake_at.is_none_or(|w| at < w || w <= now) {
                self.wake_at = Some(at);
                ctx.run_later(at.saturating_duration_since(now), |act, ctx| {
                    act.wake_at = None;
                    act.pump(ctx);
                });
            }
        }
        // Lines need not wake the batcher while it comes back by itself within a flush
        // interval: a timer that soon (or one ending a pause, before which nothing leaves
        // anyway), or calls in flight up to the limit, whose answers pump.
        let paused = self.pause_until.is_some_and(|p| p > now);
        let looking = self
            .wake_at
            .is_some_and(|w| paused || w <= now + self.settings.flush_interval)
            || self.in_flight.len() >= self.max_calls();
        // What is packed counts toward the call the next lines may fill, when one could leave.
        let packed = (!paused && self.in_flight.len() < self.max_calls() && self.service.is_some())
            .then(|| self.pack.waiting());
        if self.buffer.settle(looking, packed) {
            ctx.notify(Wake);
        }
        self.check_drained();
    }

    /// The service's name, for the log.
    fn name(&self) -> &'static str {
        self.settings.service.name()
    }

    fn max_calls(&self) -> usize {
        if self.settings.service.ordered() {
            1
        } else {
            self.settings.max_calls
        }
    }

    fn send_call(&mut self, service: Service, ctx: &mut Context<Self>) {
        let entries = self.pack.take_call();
        if entries.is_empty() {
            return;
        }
        let outgoing: Vec<Outgoing> = entries
            .iter()
            .map(|e| Outgoing {
                data: e.data.clone(),
                seq: e.seq,
            })
            .collect();
        let id = self.next_call;
        self.next_call += 1;
        self.in_flight.insert(id, entries);
        ctx.spawn(
            async move { service.put(outgoing).await }
                .into_actor(self)
                .map(move |res, act, ctx| act.answered(id, res, ctx)),
        );
    }

    fn answered(&mut self, id: u64, res: Result<Outcome, Failure>, ctx: &mut Context<Self>) {
        let Some(entries) = self.in_flight.remove(&id) else {
            // Given up on at the drain timeout, and already written off.
            return;
        };
        let now = Instant::now();
        // One draw for the call: its records go back together.
        let jitter = jitter();
        let mut expired = vec![];
        let mut resend = vec![];
        match res {
            Ok(outcome) => {
                self.call_failures = 0;
                self.pause_until = None;
                let mut failed = 0;
                let mut first = None;
                for (e, failure) in entries.into_iter().zip(outcome) {
                    match failure {
                        None => self.release(e.lines, e.data.len(), Fate::Delivered),
                        Some(f) => {
                            failed += 1;
                            first.get_or_insert(f);
                            resend.extend(self.failed(e, now, jitter, &mut expired));
                        }
                    }
                }
                if let Some(f) = first {
                    let what = format!("{} records refused, resending them", self.name());
                    self.report(&f, failed, &what);
                }
            }
            Err(f) => {
                self.call_failures += 1;
                self.pause_until = Some(now + backoff(self.call_failures, jitter));
                let what = format!("{} call failed, resending", self.name());
                self.report(&f, entries.len(), &what);
                for e in entries {
                    resend.extend(self.failed(e, now, jitter, &mut expired));
                }
            }
        }
        self.resend(resend, now);
        if !expired.is_empty() {
            self.write_off(expired, &self.expired_reason(), ctx);
        }
        self.pump(ctx);
    }

    fn expired_reason(&self) -> String {
        format!(
            "not delivered within retryTimeout ({:?})",
            self.settings.retry_timeout
        )
    }

    /// Writes off the entries waiting (to leave, or to be resent after their backoff) whose
    /// `retryTimeout` is over: while calls fail, few leave (one at a time in order, none during
    /// a pause), and a line must not be held past it for want of a call. Entries in flight are
    /// given up when their call fails. Returns when the next waiting entry's is over.
    fn expire_waiting(&mut self, now: Instant, ctx: &mut Context<Self>) -> Option<Instant> {
        let timeout = self.settings.retry_timeout;
        let over = |born: Instant| now.duration_since(born) >= timeout;
        let mut expired = vec![];
        if self.pack.oldest().is_some_and(over) {
            expired = self.pack.take_born_by(now - timeout);
        }
        let mut i = 0;
        while i < self.retry.len() {
            if over(self.retry[i].1.born) {
                expired.push(self.retry.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        if !expired.is_empty() {
            expired.sort_by_key(|e| e.born);
            self.write_off(expired, &self.expired_reason(), ctx);
        }
        let retry = self.retry.iter().map(|(_, e)| e.born);
        retry.chain(self.pack.oldest()).min().map(|born| born + timeout)
    }

    /// Logs a failure: at error level, once a minute per code, when it needs an operator (it
    /// will not pass by itself); otherwise as a warning, rate-limited.
    fn report(&mut self, f: &Failure, records: usize, what: &str) {
        let log = &self.settings.log;
        if let Some(code) = f.code.as_deref().filter(|c| needs_operator(c)) {
            let now = Instant::now();
            let last = self.operator_log.get(code);
            if last.is_none_or(|t| now.duration_since(*t) >= OPERATOR_LOG_EVERY) {
                self.operator_log.insert(code.to_string(), now);
                error!(log, "{} refuses the records: check the stream, the credentials and permissions, \
                    and the relayer's settings; resending until retryTimeout", self.name();
                    "code" => code, "stream" => self.settings.service.target(), "records" => records,
                    "error" => &f.message);
            }
        } else if self.fail_log.allow() {
            warn!(log, "{}", what; "records" => records, "failures_in_a_row" => self.call_failures,
                "error" => &f.message);
        }
    }

    /// A failed entry with the time of its resend, or None once `retryTimeout` is over: then
    /// it is in `expired` (written off together, one write for the call).
    fn failed(
        &mut self,
        mut e: Entry,
        now: Instant,
        jitter: f64,
        expired: &mut Vec<Entry>,
    ) -> Option<(Instant, Entry)> {
        self.settings.metrics.retries.increment(e.lines as u64);
        e.attempts += 1;
        if now.duration_since(e.born) >= self.settings.retry_timeout {
            expired.push(e);
            return None;
        }
        Some((now + backoff(e.attempts, jitter), e))
    }

    /// Schedules the resends of a call's failed entries (in their order). In order, they go
    /// back in front at once and nothing leaves before the latest of their backoffs is over.
    fn resend(&mut self, entries: Vec<(Instant, Entry)>, now: Instant) {
        if !self.settings.service.ordered() {
            self.retry.extend(entries);
            return;
        }
        if let Some(until) = entries.iter().map(|(due, _)| *due).max() {
            self.pause_until = Some(self.pause_until.map_or(until, |p| p.max(until)));
        }
        self.pack
            .requeue(entries.into_iter().map(|(_, e)| e).collect(), now);
    }

    fn release(&mut self, lines: usize, bytes: usize, fate: Fate) {
        let (m, d) = (&self.settings.metrics, &mut self.delivery);
        let (counter, count) = match fate {
            Fate::Delivered => (&m.delivered, &mut d.delivered),
            Fate::DeadLetter => (&m.dead_letter, &mut d.dead_letter),
            Fate::Lost => (&m.lost, &mut d.lost),
        };
        counter.increment(lines as u64);
        *count += lines as u64;
        self.held_lines -= lines;
        self.held_bytes -= bytes;
        self.buffer.give_back(lines, bytes);
    }

    /// Lines that will not be delivered: to the dead-letter file if there is one, else lost.
    /// They stay held (in the buffer's bounds, and for the drain) until written.
    fn write_off(&mut self, entries: Vec<Entry>, reason: &str, ctx: &mut Context<Self>) {
        let lines: usize = entries.iter().map(|e| e.lines).sum();
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        if lines == 0 {
            return;
        }
        let Some(path) = self.settings.dead_letter.clone() else {
            self.release(lines, bytes, Fate::Lost);
            error!(self.settings.log, "{} records lost", self.name(); "records" => lines, "reason" => reason);
            return;
        };
        self.writing += 1;
        let records: Vec<Vec<u8>> = entries.into_iter().map(|e| e.data).collect();
        let reason = reason.to_string();
        let file = path.clone();
        // A file write may block: off the actor's thread.
        let write = tokio::task::spawn_blocking(move || dead_letter::append(&file, &records));
        ctx.spawn(write.into_actor(self).map(move |res, act, _| {
            let log = act.settings.log.clone();
            match res.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(()) => {
                    act.release(lines, bytes, Fate::DeadLetter);
                    warn!(log, "{} records written to the dead-letter file", act.name();
                        "records" => lines, "file" => %path.display(), "reason" => &reason);
                }
                Err(e) => {
                    act.release(lines, bytes, Fate::Lost);
                    error!(log, "{} records lost", act.name(); "records" => lines,
                        "reason" => format!("{reason}; the dead-letter file {} failed: {e}", path.display()));
                }
            }
            act.writing -= 1;
            if act.writing == 0 {
                for w in act.idle.drain(..) {
                    let _ = w.send(());
                }
            }
            act.check_drained();
        }));
    }

    /// Resolves once no dead-letter write is under way.
    fn when_idle(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.writing == 0 {
            let _ = tx.send(());
        } else {
            self.idle.push(tx);
        }
        rx
    }

    /// Closes the buffer (nothing more is accepted) and takes in what its inbox still holds.
    fn close(&mut self) {
        self.draining = true;
        let left = self.buffer.close();
        self.accept(left, None);
    }

    /// Every record held, wherever it is. Calls still in flight may yet succeed: written off
    /// too, a duplicate rather than a loss (their answers are then ignored).
    fn take_everything(&mut self) -> Vec<Entry> {
        let mut left = self.pack.take_all();
        left.extend(self.retry.drain(..).map(|(_, e)| e));
        left.extend(self.in_flight.drain().flat_map(|(_, v)| v));
        left
    }

    fn check_drained(&mut self) {
        if self.draining && self.held_lines == 0 {
            if let Some(done) = self.drained.take() {
                let _ = done.send(self.delivery);
            }
        }
    }
}

impl Actor for Batcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.service.clone();
        ctx.spawn(async move { Service::new(&settings).await }.into_actor(self).map(
            |(service, region, from), act, ctx| {
                let (log, name) = (&act.settings.log, act.name());
                match from {
                    RegionFrom::Config => {}
                    RegionFrom::Chain => info!(log, "{} region from the AWS configuration \
                            (AWS_REGION, the profile, instance metadata)", name; "region" => &region),
                    RegionFrom::Default => {
                        warn!(log, "no {} region in the entry, AWS_REGION, the profile \
                            or instance metadata: using the default", name; "region" => &region)
                    }
                }
                act.service = Some(service);
                act.pump(ctx);
            },
        ));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Retire writes everything off first; anything still here (a line that came in after,
        // a dead-letter write cut short) is at least counted and logged.
        let left = self.buffer.close();
        let lines = self.held_lines + left.len();
        if lines > 0 {
            self.settings.metrics.lost.increment(lines as u64);
            error!(self.settings.log, "{} records lost", self.name(); "records" => lines,
                "reason" => "the relayer stopped with them still held");
        }
        Arbiter::current().stop();
    }
}

impl Handler<Wake> for Batcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        // Takes the inbox: a call that is full leaves at once; otherwise the flush timer is
        // set (earlier than a retry's timer, if one is pending).
        self.pump(ctx);
    }
}

impl Handler<Drain> for Batcher {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        self.close();
        self.drained = Some(msg.done);
        self.pump(ctx);
    }
}

impl Handler<GiveUp> for Batcher {
    type Result = ResponseActFuture<Self, StreamDelivery>;

    fn handle(&mut self, _: GiveUp, ctx: &mut Context<Self>) -> Self::Result {
        self.close();
        let left = self.take_everything();
        self.write_off(left, "drain timeout reached", ctx);
        let idle = self.when_idle();
        Box::pin(
            async move {
                let _ = idle.await;
            }
            .into_actor(self)
            .map(|_, act, _| act.delivery),
        )
    }
}

impl Handler<Retire> for Batcher {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) -> Self::Result {
        self.close();
        let left = self.take_everything();
        self.write_off(left, "the relayer was retired by a reload", ctx);
        let idle = self.when_idle();
        Box::pin(
            async move {
                let _ = idle.await;
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
