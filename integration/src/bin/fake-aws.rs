//! `fake-aws SERVICE`: one of the tests' AWS endpoints as a process, without faults, for the
//! benchmark (integration/bench/firehose-bench.sh). SERVICE is `firehose`
//! (`integration::fake_firehose`), `kinesis` (`fake_kinesis`, streams of one shard) or `sqs`
//! (`fake_sqs`: any queue URL on it, FIFO when the name ends in `.fifo`).
//!
//! Prints `listening on PORT`, then `lines N calls M` on every change of the counts (checked ten
//! times a second), until it is killed: N the lines stored (Firehose: the lines in its records;
//! Kinesis: records; SQS: messages, FIFO duplicates dropped), M the calls that carried records or
//! messages. Only the counts are kept: a benchmark sends millions of records.

use integration::fake_firehose::FakeFirehose;
use integration::fake_kinesis::FakeKinesis;
use integration::fake_sqs::FakeSqs;
use std::io::Write;
use std::time::Duration;

/// Lines stored and calls so far.
type Counts = Box<dyn Fn() -> (usize, usize)>;

fn start(service: &str) -> Option<(u16, Counts)> {
    Some(match service {
        "firehose" => {
            let fake = FakeFirehose::start();
            fake.discard_records();
            (
                fake.port(),
                Box::new(move || (fake.line_count(), fake.call_count())),
            )
        }
        "kinesis" => {
            let fake = FakeKinesis::start();
            fake.discard_records();
            (
                fake.port(),
                Box::new(move || (fake.record_count(), fake.call_count())),
            )
        }
        "sqs" => {
            let fake = FakeSqs::start();
            fake.discard_messages();
            (
                fake.port(),
                Box::new(move || (fake.message_count(), fake.call_count())),
            )
        }
        _ => return None,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((port, counts)) = (args.len() == 1).then(|| start(&args[0])).flatten() else {
        eprintln!("usage: fake-aws firehose|kinesis|sqs");
        std::process::exit(2);
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {port}");
    let _ = out.flush();
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (lines, calls) = counts();
        if last != Some((lines, calls)) {
            last = Some((lines, calls));
            if writeln!(out, "lines {lines} calls {calls}")
                .and_then(|_| out.flush())
                .is_err()
            {
                return;
            }
        }
    }
}
