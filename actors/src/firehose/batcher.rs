//! The batcher: one per Firehose relayer, on its own thread (signing and encoding a 4 MiB call
//! must not stall the sessions). It packs lines into Firehose records (up to `maxRecords` lines
//! and 1,000 KiB) and records into PutRecordBatch calls (500 records, 4 MiB), keeps at most
//! `maxConnections` calls in flight, resends what failed with backoff, and after
//! `retryTimeout` writes what it could not deliver to the dead-letter file, or counts it lost.
//!
//! Every line holds one permit of the relayer's buffer semaphore from the moment a session
//! accepted it; the permit comes back when the line is delivered, dead-lettered or lost.

use super::record::MAX_RECORD;
use super::sender::{Outcome, Sender, SenderSettings};
use crate::log_limit::LogLimit;
use actix::prelude::*;
use bytes::Bytes;
use metrics::{counter, gauge, Counter, Gauge};
use slog::{error, info, warn, Logger};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// Records in one PutRecordBatch call.
pub const MAX_CALL_RECORDS: usize = 500;
/// Bytes of record data in one PutRecordBatch call.
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub struct BatcherSettings {
    pub sender: SenderSettings,
    /// Lines packed into one Firehose record (at least 1).
    pub max_records: usize,
    pub max_calls: usize,
    pub flush_interval: Duration,
    pub retry_timeout: Duration,
    pub dead_letter: Option<PathBuf>,
    pub metrics: FirehoseMetrics,
    pub log: Logger,
}

#[derive(Clone)]
pub struct FirehoseMetrics {
    pub lines: Counter,
    pub delivered: Counter,
    pub retries: Counter,
    pub dead_letter: Counter,
    pub lost: Counter,
    pub invalid_utf8: Counter,
    pub buffered: Gauge,
}

impl FirehoseMetrics {
    pub fn new(listen: &str) -> Self {
        let c = |name: &'static str| counter!(name, "listen" => listen.to_string());
        FirehoseMetrics {
            lines: c("relayer_firehose_lines_total"),
            delivered: c("relayer_firehose_delivered_total"),
            retries: c("relayer_firehose_retries_total"),
            dead_letter: c("relayer_firehose_dead_letter_total"),
            lost: c("relayer_firehose_lost_total"),
            invalid_utf8: c("relayer_firehose_invalid_utf8_total"),
            buffered: gauge!("relayer_firehose_buffered", "listen" => listen.to_string()),
        }
    }
}

/// One Firehose record: newline-terminated lines.
struct Entry {
    data: Vec<u8>,
    lines: usize,
    /// When its first line was accepted: `retryTimeout` counts from here.
    born: Instant,
    /// When it became ready to leave (or due again, for a retry): the flush clock.
    queued: Instant,
    attempts: u32,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            data: Vec::new(),
            lines: 0,
            born: now,
            queued: now,
            attempts: 0,
        }
    }
}

pub struct Batcher {
    settings: BatcherSettings,
    buffer: Arc<Semaphore>,
    inbox: Arc<Inbox>,
    sender: Option<Sender>,
    /// The record being filled.
    open: Option<Entry>,
    /// Records ready to leave, in order.
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    /// Records that failed, waiting for their backoff.
    retry: Vec<(Instant, Entry)>,
    in_flight: HashMap<u64, Vec<Entry>>,
    /// Lines held, wherever they are.
    held: usize,
    next_call: u64,
    /// Whole calls failed in a row: no call leaves before `pause_until`.
    call_failures: u32,
    pause_until: Option<Instant>,
    wake_at: Option<Instant>,
    drain: Option<oneshot::Sender<()>>,
    given_up: bool,
    fail_log: LogLimit,
}

/// Lines accepted by sessions, their buffer permits already taken, waiting for the batcher.
/// Sessions run on another thread: a message per line would wake that thread per line, so
/// they queue here and only the line that finds the queue empty sends a `Wake`.
#[derive(Default)]
pub struct Inbox(Mutex<Vec<Bytes>>);

impl Inbox {
    /// Queues a line; true when the batcher must be woken.
    pub fn push(&self, line: Bytes) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push(line);
        q.len() == 1
    }

    fn take(&self) -> Vec<Bytes> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The inbox has lines.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Send everything now, and answer when nothing is left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub done: oneshot::Sender<()>,
}

/// The drain timeout passed: what is left goes to the dead-letter file or is counted lost;
/// answers how many lines were not delivered. New lines are refused from then on.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct GiveUp;

/// Stop (after a drain): a reload replaced or removed this relayer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Batcher {
    /// Starts the batcher on a thread of its own; `buffer` holds a permit per line held.
    pub fn start(settings: BatcherSettings, buffer: Arc<Semaphore>, inbox: Arc<Inbox>) -> Addr<Batcher> {
        let arbiter = Arbiter::new();
        Batcher::start_in_arbiter(&arbiter.handle(), move |_| Batcher {
            settings,
            buffer,
            inbox,
            sender: None,
            open: None,
            ready: VecDeque::new(),
            ready_bytes: 0,
            retry: vec![],
            in_flight: HashMap::new(),
            held: 0,
            next_call: 0,
            call_failures: 0,
            pause_until: None,
            wake_at: None,
            drain: None,
            given_up: false,
            fail_log: LogLimit::default(),
        })
    }

    fn close_open(&mut self) {
        if let Some(e) = self.open.take() {
            self.ready_bytes += e.data.len();
            self.ready.push_back(e);
        }
    }

    fn push_line(&mut self, line: &[u8], now: Instant) {
        let fits = |e: &Entry| e.lines < self.settings.max_records && e.data.len() + line.len() <= MAX_RECORD;
        if self.open.as_ref().is_some_and(|e| !fits(e)) {
            self.close_open();
        }
        self.held += 1;
        let open = self.open.get_or_insert_with(|| Entry::new(now));
        open.data.extend_from_slice(line);
        open.lines += 1;
        if open.lines >= self.settings.max_records {
            self.close_open();
        }
    }

    /// Sends what may leave now, and sets a timer for what must leave later.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.retry.len() {
            if self.retry[i].0 <= now {
                let (_, mut e) = self.retry.swap_remove(i);
                e.queued = now;
                self.ready_bytes += e.data.len();
                self.ready.push_back(e);
            } else {
                i += 1;
            }
        }
        let mut wake: Option<Instant> = self.retry.iter().map(|(due, _)| *due).min();
        loop {
            let Some(sender) = self.sender.clone() else {
                break;
            };
            if self.in_flight.len() >= self.settings.max_calls {
                break;
            }
            if let Some(p) = self.pause_until.filter(|p| *p > now) {
                wake = Some(wake.map_or(p, |w| w.min(p)));
                break;
            }
            let oldest = [self.ready.front(), self.open.as_ref()]
                .into_iter()
                .flatten()
                .map(|e| e.queued)
                .min();
            let Some(oldest) = oldest else {
                break;
            };
            let full = self.ready.len() >= MAX_CALL_RECORDS || self.ready_bytes >= MAX_CALL_BYTES;
            let due = oldest + self.settings.flush_interval;
            if !full && due > now && self.drain.is_none() {
                wake = Some(wake.map_or(due, |w| w.min(due)));
                break;
            }
            if !full {
                self.close_open();
            }
            self.send_call(sender, ctx);
        }
        self.settings.metrics.buffered.set(self.held as f64);
        if let Some(at) = wake {
            if self.wake_at.is_none_or(|w| at < w || w <= now) {
                self.wake_at = Some(at);
                ctx.run_later(at.saturating_duration_since(now), |act, ctx| {
                    act.wake_at = None;
                    act.pump(ctx);
                });
            }
        }
        self.check_drained();
    }

    fn send_call(&mut self, sender: Sender, ctx: &mut Context<Self>) {
        let mut entries = vec![];
        let mut bytes = 0;
        while let Some(e) = self.ready.front() {
            if entries.len() == MAX_CALL_RECORDS
                || (!entries.is_empty() && bytes + e.data.len() > MAX_CALL_BYTES)
            {
                break;
            }
            let e = self.ready.pop_front().expect("checked above");
            bytes += e.data.len();
            self.ready_bytes -= e.data.len();
            entries.push(e);
        }
        if entries.is_empty() {
            return;
        }
        let records: Vec<Bytes> = entries.iter().map(|e| Bytes::copy_from_slice(&e.data)).collect();
        let id = self.next_call;
        self.next_call += 1;
        self.in_flight.insert(id, entries);
        ctx.spawn(
            async move { sender.put(records).await }
                .into_actor(self)
                .map(move |res, act, ctx| act.answered(id, res, ctx)),
        );
    }

    fn answered(&mut self, id: u64, res: Result<Outcome, String>, ctx: &mut Context<Self>) {
        let Some(entries) = self.in_flight.remove(&id) else {
            // Given up on at the drain timeout, and already written off.
            return;
        };
        let now = Instant::now();
        match res {
            Ok(outcome) => {
                self.call_failures = 0;
                self.pause_until = None;
                let mut failed = 0;
                let mut first_error = None;
                for (e, err) in entries.into_iter().zip(outcome) {
                    match err {
                        None => self.release(e.lines, |m| &m.delivered),
                        Some(err) => {
                            failed += 1;
                            first_error.get_or_insert(err);
                            self.retry_later(e, now);
                        }
                    }
                }
                if failed > 0 && self.fail_log.allow() {
                    warn!(self.settings.log, "firehose records refused, resending them";
                        "records" => failed, "error" => first_error.unwrap_or_default());
                }
            }
            Err(err) => {
                self.call_failures += 1;
                self.pause_until = Some(now + backoff(self.call_failures));
                if self.fail_log.allow() {
                    warn!(self.settings.log, "firehose call failed, resending";
                        "records" => entries.len(), "failures_in_a_row" => self.call_failures, "error" => err);
                }
                for e in entries {
                    self.retry_later(e, now);
                }
            }
        }
        self.pump(ctx);
    }

    fn retry_later(&mut self, mut e: Entry, now: Instant) {
        self.settings.metrics.retries.increment(e.lines as u64);
        e.attempts += 1;
        if now.duration_since(e.born) >= self.settings.retry_timeout {
            let reason = format!(
                "not delivered within retryTimeout ({:?})",
                self.settings.retry_timeout
            );
            self.write_off(vec![e], &reason);
            return;
        }
        self.retry.push((now + backoff(e.attempts), e));
    }

    fn release(&mut self, lines: usize, counter: impl Fn(&FirehoseMetrics) -> &Counter) {
        counter(&self.settings.metrics).increment(lines as u64);
        self.held -= lines;
        self.buffer.add_permits(lines);
    }

    /// Lines that will not be delivered: to the dead-letter file if there is one, else lost.
    /// Returns the write, to be awaited where the process is about to end.
    fn write_off(&mut self, entries: Vec<Entry>, reason: &str) -> Option<tokio::task::JoinHandle<()>> {
        let lines: usize = entries.iter().map(|e| e.lines).sum();
        if lines == 0 {
            return None;
        }
        let log = self.settings.log.clone();
        let reason = reason.to_string();
        let Some(path) = self.settings.dead_letter.clone() else {
            self.release(lines, |m| &m.lost);
            error!(log, "firehose records lost"; "records" => lines, "reason" => reason);
            return None;
        };
        self.held -= lines;
        self.buffer.add_permits(lines);
        let (dead, lost) = (
            self.settings.metrics.dead_letter.clone(),
            self.settings.metrics.lost.clone(),
        );
        // A file write may block: off the actor's thread.
        Some(tokio::task::spawn_blocking(move || {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| {
                    for e in &entries {
                        f.write_all(&e.data)?;
                    }
                    f.flush()
                });
            match written {
                Ok(()) => {
                    dead.increment(lines as u64);
                    info!(log, "firehose records written to the dead-letter file";
                        "records" => lines, "file" => %path.display(), "reason" => reason);
                }
                Err(e) => {
                    lost.increment(lines as u64);
                    error!(log, "firehose records lost"; "records" => lines,
                        "reason" => format!("{reason}; the dead-letter file {} failed: {e}", path.display()));
                }
            }
        }))
    }

    fn check_drained(&mut self) {
        if self.drain.is_some()
            && self.open.is_none()
            && self.ready.is_empty()
            && self.retry.is_empty()
            && self.in_flight.is_empty()
        {
            let _ = self.drain.take().expect("checked").send(());
        }
    }
}

/// 100 ms doubling up to 10 s, each delay drawn between half and all of it (jitter, so that
/// the relayers of many hosts do not retry in step).
fn backoff(attempt: u32) -> Duration {
    let full = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    full.mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Actor for Batcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.sender.clone();
        ctx.spawn(
            async move { Sender::new(&settings).await }
                .into_actor(self)
                .map(|sender, act, ctx| {
                    act.sender = Some(sender);
                    act.pump(ctx);
                }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        Arbiter::current().stop();
    }
}

impl Handler<Wake> for Batcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let lines = self.inbox.take();
        let now = Instant::now();
        if self.given_up {
            // Only sessions that took their permits before the give-up get here.
            self.held += lines.len();
            let entries = lines
                .iter()
                .map(|l| Entry {
                    data: l.to_vec(),
                    lines: 1,
                    ..Entry::new(now)
                })
                .collect();
            self.write_off(entries, "arrived after the drain timeout");
            return;
        }
        self.settings.metrics.lines.increment(lines.len() as u64);
        for line in &lines {
            self.push_line(line, now);
        }
        // A call that is full leaves at once; otherwise the flush timer is set (earlier than a
        // retry's timer, if one is pending).
        self.pump(ctx);
    }
}

impl Handler<Drain> for Batcher {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        self.drain = Some(msg.done);
        self.pump(ctx);
    }
}

impl Handler<GiveUp> for Batcher {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: GiveUp, _: &mut Context<Self>) -> Self::Result {
        self.given_up = true;
        // Sessions waiting for room (critical) get an error instead of waiting forever.
        self.buffer.close();
        let now = Instant::now();
        for line in self.inbox.take() {
            self.push_line(&line, now);
        }
        self.close_open();
        let mut left: Vec<Entry> = self.ready.drain(..).collect();
        self.ready_bytes = 0;
        left.extend(self.retry.drain(..).map(|(_, e)| e));
        // Calls still in flight may yet succeed: written off too, a duplicate rather than a loss.
        left.extend(self.in_flight.drain().flat_map(|(_, v)| v));
        let lines = left.iter().map(|e| e.lines).sum();
        let write = self.write_off(left, "drain timeout reached");
        Box::pin(async move {
            if let Some(w) = write {
                let _ = w.await;
            }
            lines
        })
    }
}

impl Handler<Retire> for Batcher {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
