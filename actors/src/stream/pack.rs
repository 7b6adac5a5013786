//! Packing lines into entries (a Firehose record holds up to `maxRecords` lines within its
//! limit; a Kinesis record or an SQS message holds one) and entries into calls within the
//! service's limits, and when a call must leave.

use super::call::Limits;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One entry of a call: newline-terminated lines.
#[derive(Debug)]
pub struct Entry {
    pub data: Vec<u8>,
    pub lines: usize,
    /// The number of its first line (the batcher counts the lines it accepts).
    pub seq: u64,
    /// When its first line was accepted: `retryTimeout` counts from here.
    pub born: Instant,
    /// When it must leave even if its call is not full.
    pub due: Instant,
    pub attempts: u32,
}

/// The record being filled and the records ready to leave, in order.
pub struct Packer {
    max_lines: usize,
    limits: Limits,
    flush_interval: Duration,
    open: Option<Entry>,
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    ready_lines: usize,
}

impl Packer {
    /// `max_lines` per entry (at least 1), calls within `limits` (`call_entries` may be lowered
    /// by the entry's settings); a line waits at most `flush_interval` for its call to fill.
    pub fn new(max_lines: usize, limits: Limits, flush_interval: Duration) -> Packer {
        Packer {
            max_lines: max_lines.max(1),
            limits,
            flush_interval,
            open: None,
            ready: VecDeque::new(),
            ready_bytes: 0,
            ready_lines: 0,
        }
    }

    fn close_open(&mut self) {
        if let Some(e) = self.open.take() {
            self.ready_bytes += self.cost(&e);
            self.ready_lines += e.lines;
            self.ready.push_back(e);
        }
    }

    fn cost(&self, e: &Entry) -> usize {
        e.data.len() + self.limits.entry_overhead
    }

    /// Adds line number `seq` (newline included, at most `limits.line`).
    pub fn push_line(&mut self, line: &[u8], seq: u64, now: Instant) {
        let fits = |e: &Entry| e.lines < self.max_lines && e.data.len() + line.len() <= self.limits.line;
        if self.open.as_ref().is_some_and(|e| !fits(e)) {
            self.close_open();
        }
        let due = now + self.flush_interval;
        let open = self.open.get_or_insert_with(|| Entry {
            data: Vec::new(),
            lines: 0,
            seq,
            born: now,
            due,
            attempts: 0,
        });
        open.data.extend_from_slice(line);
        open.lines += 1;
        if open.lines >= self.max_lines {
            self.close_open();
        }
    }

    /// Puts records whose backoff is over back in front, in their order: they leave with the
    /// next call, which leaves now (their `due` is `now`).
    pub fn requeue(&mut self, entries: Vec<Entry>, now: Instant) {
        for mut e in entries.into_iter().rev() {
            e.due = now;
            self.ready_bytes += self.cost(&e);
            self.ready_lines += e.lines;
            self.ready.push_front(e);
        }
    }

    /// A whole call is waiting (its entries or its bytes).
    pub fn full(&self) -> bool {
        self.ready.len() >= self.limits.call_entries || self.ready_bytes >= self.limits.call_bytes
    }

    /// When the next call must leave even if not full; None when nothing waits. Records in
    /// `ready` are in order of `due`, except requeued ones, which are in front with the
    /// earliest.
    pub fn due(&self) -> Option<Instant> {
        [self.ready.front(), self.open.as_ref()]
            .into_iter()
            .flatten()
            .map(|e| e.due)
            .min()
    }

    /// The entries of the next call, from the front, within the call's limits (the open entry
    /// too, unless the call is full without it).
    pub fn take_call(&mut self) -> Vec<Entry> {
        if !self.full() {
            self.close_open();
        }
        let mut entries = vec![];
        let mut bytes = 0;
        while let Some(e) = self.ready.front() {
            let cost = self.cost(e);
            if entries.len() == self.limits.call_entries
                || (!entries.is_empty() && bytes + cost > self.limits.call_bytes)
            {
                break;
            }
            let e = self.ready.pop_front().expect("checked above");
            bytes += cost;
            self.ready_bytes -= cost;
            self.ready_lines -= e.lines;
            entries.push(e);
        }
        entries
    }

    /// When the oldest entry at the front (or the open one) was born: the entries are in the
    /// order their lines were accepted, resent ones in front of newer ones.
    pub fn oldest(&self) -> Option<Instant> {
        [self.ready.front(), self.open.as_ref()]
            .into_iter()
            .flatten()
            .map(|e| e.born)
            .min()
    }

    /// Takes out, in their order, the entries born at or before `cutoff` (past their
    /// `retryTimeout`).
    pub fn take_born_by(&mut self, cutoff: Instant) -> Vec<Entry> {
        if self.open.as_ref().is_some_and(|e| e.born <= cutoff) {
            self.close_open();
        }
        let (old, young): (VecDeque<Entry>, VecDeque<Entry>) =
            self.ready.drain(..).partition(|e| e.born <= cutoff);
        self.ready = young;
        self.ready_bytes = self.ready.iter().map(|e| self.cost(e)).sum();
        self.ready_lines = self.ready.iter().map(|e| e.lines).sum();
        old.into()
    }

    /// Everything, for a write-off.
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.close_open();
        self.ready_bytes = 0;
        self.ready_lines = 0;
        self.ready.drain(..).collect()
    }

    /// The lines and bytes waiting for a call, the open entry's included.
    pub fn waiting(&self) -> (usize, usize) {
        let open = self.open.as_ref().map_or((0, 0), |e| (e.lines, e.data.len()));
        (self.ready_lines + open.0, self.ready_bytes + open.1)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::firehose::LIMITS;
    use crate::stream::{kinesis, sqs};

    const MAX_RECORD: usize = LIMITS.line;
    const MAX_CALL_BYTES: usize = LIMITS.call_bytes;

    fn line(n: usize) -> Vec<u8> {
        let mut l = vec![b'x'; n - 1];
        l.push(b'\n');
        l
    }

    #[test]
    fn records_hold_max_lines_and_calls_hold_500() {
        let now = Instant::now();
        let mut p = Packer::new(1, LIMITS, Duration::from_secs(1));
        for _ in 0..1200 {
            p.push_line(&line(10), 0, now);
        }
        assert!(p.full());
        let sizes: Vec<usize> = std::iter::from_fn(|| Some(p.take_call()).filter(|c| !c.is_empty()))
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        assert!(p.is_empty());

        let mut p = Packer::new(3, LIMITS, Duration::from_secs(1));
        for _ in 0..7 {
            p.push_line(&line(10), 0, now);
        }
        let call = p.take_call();
        let lines: Vec<usize> = call.iter().map(|e| e.lines).collect();
        assert_eq!(lines, vec![3, 3, 1], "the open record leaves with the call");
        assert!(call.iter().all(|e| e.data.len() == 10 * e.lines));
    }

    #[test]
    fn records_stay_within_the_record_limit_and_calls_within_4_mib() {
        let now = Instant::now();
        let mut p = Packer::new(500, LIMITS, Duration::from_secs(1));
        // Three 300,000-byte lines fit in a record, a fourth does not.
        for _ in 0..8 {
            p.push_line(&line(300_000), 0, now);
        }
        let call = p.take_call();
        assert_eq!(call.iter().map(|e| e.lines).collect::<Vec<_>>(), vec![3, 3, 2]);
        assert!(call.iter().all(|e| e.data.len() <= MAX_RECORD));
        // 1,000,000-byte lines: a record each, four in a 4 MiB call.
        for _ in 0..6 {
            p.push_line(&line(1_000_000), 0, now);
        }
        assert!(p.full(), "4 MiB waiting is a full call");
        let first = p.take_call();
        assert_eq!(first.len(), 4);
        assert!(first.iter().map(|e| e.data.len()).sum::<usize>() <= MAX_CALL_BYTES);
        assert_eq!(p.take_call().len(), 2);
    }

    #[test]
    fn due_is_the_oldest_line_plus_the_flush_interval_and_requeued_records_are_due_now() {
        let t0 = Instant::now();
        let flush = Duration::from_secs(2);
        let mut p = Packer::new(2, LIMITS, flush);
        assert_eq!(p.due(), None);
        p.push_line(&line(5), 0, t0);
        p.push_line(&line(5), 0, t0 + Duration::from_millis(500));
        p.push_line(&line(5), 0, t0 + Duration::from_secs(1));
        assert_eq!(p.due(), Some(t0 + flush), "the oldest line's");
        let call = p.take_call();
        assert_eq!(call.iter().map(|e| e.lines).sum::<usize>(), 3);
        p.push_line(&line(5), 0, t0 + Duration::from_secs(3));
        let later = t0 + Duration::from_secs(4);
        p.requeue(call, later);
        assert_eq!(
            p.due(),
            Some(later),
            "a resent record does not wait for the flush again"
        );
        let again = p.take_call();
        assert_eq!(
            again.iter().map(|e| e.born).collect::<Vec<_>>(),
            vec![t0, t0 + Duration::from_secs(1), t0 + Duration::from_secs(3)],
            "resent records first, in their order, then the newer one"
        );
    }

    #[test]
    fn entries_born_by_a_cutoff_are_taken_out_in_order() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = Packer::new(1, sqs::LIMITS, Duration::from_secs(1));
        for i in 0..5 {
            p.push_line(&line(10), i, at(i));
        }
        assert_eq!(p.oldest(), Some(t0));
        let old = p.take_born_by(at(2));
        assert_eq!(old.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(p.oldest(), Some(at(3)));
        assert!(p.take_born_by(at(2)).is_empty());
        assert_eq!(
            p.take_call().iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(p.is_empty() && p.oldest().is_none());
        assert_eq!(p.waiting(), (0, 0), "what is taken out no longer counts");
        // The entry still being filled too; an entry is as old as its first line.
        let mut p = Packer::new(2, LIMITS, Duration::from_secs(1));
        p.push_line(&line(10), 0, t0);
        assert_eq!(p.take_born_by(t0).iter().map(|e| e.lines).sum::<usize>(), 1);
        for i in 1..4 {
            p.push_line(&line(10), i, at(i));
        }
        let old = p.take_born_by(at(1));
        assert_eq!(
            old.iter().map(|e| (e.seq, e.lines)).collect::<Vec<_>>(),
            vec![(1, 2)]
        );
        assert_eq!(p.oldest(), Some(at(3)));
        let call = p.take_call();
        assert_eq!(
            call.iter().map(|e| (e.seq, e.lines)).collect::<Vec<_>>(),
            vec![(3, 1)]
        );
        assert!(p.is_empty() && !p.full());
    }

    #[test]
    fn kinesis_and_sqs_calls_keep_their_own_limits() {
        let now = Instant::now();
        // SQS: 10 messages a call, and 256 KiB for all of them.
        let mut p = Packer::new(1, sqs::LIMITS, Duration::from_secs(1));
        for i in 0..25 {
            p.push_line(&line(100), i, now);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| Some(p.take_call()).filter(|c| !c.is_empty()))
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        for i in 0..4 {
            p.push_line(&line(100_000), i, now);
        }
        let call = p.take_call();
        assert_eq!(call.len(), 2, "a third 100,000-byte message passes 256 KiB");
        assert_eq!(call.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1]);
        // Kinesis: each record counts its largest partition key too.
        let mut p = Packer::new(1, kinesis::LIMITS, Duration::from_secs(1));
        let each = 1024 * 1024 - 256;
        for i in 0..6 {
            p.push_line(&line(each), i, now);
        }
        assert!(p.full(), "five records of 1 MiB with their keys make a call");
        assert_eq!(p.take_call().len(), 5);
        assert_eq!(p.take_call().len(), 1);
    }
}
