//! Rate limiting for log lines about one kind of trouble.

use std::time::{Duration, Instant};

/// At most a few log lines a second for one kind of trouble; the counts in the lines that do
/// get through tell how many there were.
#[derive(Default)]
pub struct LogLimit {
    window: Option<Instant>,
    in_window: u32,
}

impl LogLimit {
    const PER_SECOND: u32 = 10;

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        match self.window {
            Some(w) if now.duration_since(w) < Duration::from_secs(1) => {
                self.in_window += 1;
                self.in_window <= Self::PER_SECOND
            }
            _ => {
                self.window = Some(now);
                self.in_window = 1;
                true
            }
        }
    }
}
