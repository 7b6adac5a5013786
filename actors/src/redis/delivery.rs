//! What became of the writes acknowledged early (smart mode): delivered, refused by the backend
//! (by error code), of unknown outcome, given up at `retryTimeout`, or lost at the drain's time
//! limit. The counts are exact; they feed the metrics, the log and the stop summary, which says
//! "every acknowledged write delivered" only when nothing but `delivered` was counted.
//!
//! Also which refusals may pass: a write refused with one of those did not run, and is sent
//! again, in order, until the backend accepts it or its retry time runs out.

use std::collections::BTreeMap;
use std::ops::AddAssign;

/// The error codes of refusals that say the command did not run and that waiting may cure:
/// the dataset is loading, a script or function is busy, the primary is down or unreachable
/// for a replica, a slot is migrating, the connection reached a replica (a failover moved the
/// primary), memory is full, persistence failed, too few replicas acknowledge writes.
const TRANSIENT: [&[u8]; 8] = [
    b"LOADING",
    b"BUSY",
    b"MASTERDOWN",
    b"TRYAGAIN",
    b"READONLY",
    b"OOM",
    b"MISCONF",
    b"NOREPLICAS",
];

/// The code of an error reply: its first word (`WRONGTYPE`, `ERR`, `LOADING`...).
pub fn code(reply: &[u8]) -> &[u8] {
    let text = reply.strip_prefix(b"-").unwrap_or(reply);
    let end = text
        .iter()
        .position(|&c| c == b' ' || c == b'\r')
        .unwrap_or(text.len());
    &text[..end]
}

/// Whether `reply` is an error that says the command did not run and may run later.
pub fn is_transient(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-') && TRANSIENT.contains(&code(reply))
}

/// `READONLY`: the connection reached a replica, so it is opened again (a name may now lead to
/// the new primary).
pub fn is_readonly(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-') && code(reply) == b"READONLY"
}

/// The counts of one backend (or of the whole process): what became of the writes
/// acknowledged early.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Confirmed by the backend.
    pub delivered: u64,
    /// Refused with an error that waiting will not cure, by error code.
    pub refused: BTreeMap<String, u64>,
    /// Written, then the connection was lost before the backend answered, and not safe to send
    /// twice: it may or may not have run.
    pub unknown: u64,
    /// Refused (or the backend unreachable) until `retryTimeout` ran out, by the code of the
    /// last refusal ("unavailable" when the backend could not be reached).
    pub expired: BTreeMap<String, u64>,
    /// Not confirmed when the drain's time limit (`drainTimeout`) ran out, at a stop or when a
    /// reload retired the backend.
    pub lost: u64,
}

impl Delivery {
    /// Nothing acknowledged went anywhere but to the backend.
    pub fn all_delivered(&self) -> bool {
        self.refused.is_empty() && self.unknown == 0 && self.expired.is_empty() && self.lost == 0
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    pub fn expired_total(&self) -> u64 {
        self.expired.values().sum()
    }

    /// Every acknowledged write counted here, whatever became of it.
    pub fn total(&self) -> u64 {
        self.delivered + self.refused_total() + self.unknown + self.expired_total() + self.lost
    }

    pub fn add_refused(&mut self, code: &str) {
        *self.refused.entry(code.to_string()).or_default() += 1;
    }

    pub fn add_expired(&mut self, code: &str) {
        *self.expired.entry(code.to_string()).or_default() += 1;
    }
}

impl AddAssign<&Delivery> for Delivery {
    fn add_assign(&mut self, o: &Delivery) {
        self.delivered += o.delivered;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        self.unknown += o.unknown;
        for (k, v) in &o.expired {
            *self.expired.entry(k.clone()).or_default() += v;
        }
        self.lost += o.lost;
    }
}

/// `WRONGTYPE=3 ERR=1`, or `none`.
fn by_code(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

impl Delivery {
    /// The refusals by code, for a log field.
    pub fn refused_by_code(&self) -> String {
        by_code(&self.refused)
    }

    /// The expirations by code, for a log field.
    pub fn expired_by_code(&self) -> String {
        by_code(&self.expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_transient_refusals() {
        assert_eq!(code(b"-WRONGTYPE Operation against a key\r\n"), b"WRONGTYPE");
        assert_eq!(code(b"-ERR\r\n"), b"ERR");
        assert_eq!(code(b"-\r\n"), b"");
        for t in [
            &b"-LOADING Redis is loading the dataset in memory\r\n"[..],
            b"-BUSY Redis is busy running a script.\r\n",
            b"-MASTERDOWN Link with MASTER is down\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            b"-READONLY You can't write against a read only replica.\r\n",
            b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
            b"-MISCONF Redis is configured to save RDB snapshots\r\n",
            b"-NOREPLICAS Not enough good replicas to write.\r\n",
        ] {
            assert!(is_transient(t), "{}", String::from_utf8_lossy(t));
        }
        for t in [
            &b"-WRONGTYPE x\r\n"[..],
            b"-ERR syntax error\r\n",
            b"-NOPERM x\r\n",
            b"-BUSYKEY Target key name already exists.\r\n",
            b"-LOADINGX\r\n",
            b"+LOADING\r\n",
            b"$7\r\nLOADING\r\n",
        ] {
            assert!(!is_transient(t), "{}", String::from_utf8_lossy(t));
        }
        assert!(is_readonly(
            b"-READONLY You can't write against a read only replica.\r\n"
        ));
        assert!(!is_readonly(b"-LOADING x\r\n"));
    }

    #[test]
    fn counts_add_up_and_say_when_everything_was_delivered() {
        let mut a = Delivery {
            delivered: 5,
            ..Default::default()
        };
        assert!(a.all_delivered());
        let mut b = Delivery::default();
        b.add_refused("WRONGTYPE");
        b.add_refused("WRONGTYPE");
        b.add_expired("LOADING");
        b.unknown = 1;
        b.lost = 2;
        a += &b;
        assert!(!a.all_delivered());
        assert_eq!(a.total(), 11);
        assert_eq!(a.refused_by_code(), "WRONGTYPE=2");
        assert_eq!(a.expired_by_code(), "LOADING=1");
        assert_eq!(Delivery::default().refused_by_code(), "none");
    }
}
