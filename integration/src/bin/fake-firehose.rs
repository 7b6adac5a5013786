//! `fake-firehose`: the tests' Firehose endpoint (`integration::fake_firehose`) as a process,
//! for the benchmark. Prints `listening on PORT`, then `lines N` on every change of the count of
//! lines stored (checked ten times a second), until it is killed.

use integration::fake_firehose::FakeFirehose;
use std::io::Write;
use std::time::Duration;

fn main() {
    let fake = FakeFirehose::start();
    // Counts only: a benchmark sends millions of records.
    fake.discard_records();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", fake.port());
    let _ = out.flush();
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let n = fake.line_count();
        if n != last {
            last = n;
            if writeln!(out, "lines {n}").and_then(|_| out.flush()).is_err() {
                return;
            }
        }
    }
}
