//! Whether Redis takes a smart write's arguments: a write is acknowledged early only when Redis
//! is certain to answer it with the early reply's kind, so its arguments are checked here as
//! Redis checks them (options and their conflicts, integers by `numbers::integer`, scores and
//! coordinates by `numbers::float`, expiry times and their range). Anything not certain waits
//! for Redis' own answer, which the client then gets as Redis wrote it.

use crate::command::{Check, Unit};
use crate::numbers::{float, integer};
use crate::resp::request::Command;

/// Expiry times further than this (about 31,700 years in seconds, and as many milliseconds
/// in milliseconds) wait for Redis: near the ends of 64 bits Redis refuses a time that, added
/// to the clock, would overflow.
const FAR: i64 = 1_000_000_000_000;

/// The largest string SETRANGE and SETBIT may make is the server's `proto-max-bulk-len`,
/// which may be set as low as 1 MB: past that, they wait for Redis' answer.
const MAX_STRING: i64 = 1024 * 1024;

/// Whether `cmd` (whose arity and pairs were checked) passes `check` as Redis would take it.
pub fn accepted(check: Check, cmd: &Command) -> bool {
    match check {
        Check::None => true,
        Check::Set => set_options(cmd),
        Check::SetEx(unit) => time(cmd.arg(2), unit).is_some_and(|t| t > 0),
        Check::Expire(unit) => cmd.argc() == 3 && time(cmd.arg(2), unit).is_some(),
        Check::Zadd => zadd(cmd),
        Check::Integers(at) => at.iter().all(|&i| integer(cmd.arg(i)).is_some()),
        Check::Decrement => integer(cmd.arg(2)).is_some_and(|d| d != i64::MIN),
        Check::SetBit => {
            integer(cmd.arg(2)).is_some_and(|o| (0..MAX_STRING * 8).contains(&o))
                && matches!(cmd.arg(3), b"0" | b"1")
        }
        Check::SetRange => integer(cmd.arg(2))
            .is_some_and(|o| o >= 0 && o.saturating_add(cmd.arg(3).len() as i64) <= MAX_STRING),
        Check::ScoreRange => score_bound(cmd.arg(2)) && score_bound(cmd.arg(3)),
        Check::GeoAdd => geoadd(cmd),
        Check::FlushDb => match cmd.argc() {
            1 => true,
            2 => cmd.arg(1).eq_ignore_ascii_case(b"SYNC") || cmd.arg(1).eq_ignore_ascii_case(b"ASYNC"),
            _ => false,
        },
    }
}

/// An expiry time in `unit`, within `FAR`.
fn time(arg: &[u8], unit: Unit) -> Option<i64> {
    let t = integer(arg)?;
    let far = match unit {
        Unit::Seconds => FAR,
        Unit::Milliseconds => FAR * 1000,
    };
    (t.abs() <= far).then_some(t)
}

/// SET key value [options]: early only with expiry options (one of EX, PX, EXAT, PXAT with a
/// positive time, or KEEPTTL); NX, XX and GET change the reply, and anything else is Redis'
/// syntax error.
fn set_options(cmd: &Command) -> bool {
    let mut expiry = false;
    let mut i = 3;
    while i < cmd.argc() {
        let opt = cmd.arg(i);
        let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
        if expiry {
            return false;
        }
        expiry = true;
        if is(b"KEEPTTL") {
            i += 1;
            continue;
        }
        let unit = if is(b"EX") || is(b"EXAT") {
            Unit::Seconds
        } else if is(b"PX") || is(b"PXAT") {
            Unit::Milliseconds
        } else {
            return false;
        };
        if i + 1 >= cmd.argc() || time(cmd.arg(i + 1), unit).is_none_or(|t| t <= 0) {
            return false;
        }
        i += 2;
    }
    true
}

/// ZADD key [NX|XX] [GT|LT] [CH] score member [score member ...], without INCR (whose reply is
/// the score): flags that go together, pairs, and scores that are floats and not NaN.
fn zadd(cmd: &Command) -> bool {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    let mut i = 2;
    while i < cmd.argc() {
        let a = cmd.arg(i);
        let is = |name: &[u8]| a.eq_ignore_ascii_case(name);
        if is(b"NX") {
            nx = true;
        } else if is(b"XX") {
            xx = true;
        } else if is(b"GT") {
            gt = true;
        } else if is(b"LT") {
            lt = true;
        } else if is(b"INCR") {
            return false;
        } else if !is(b"CH") {
            break;
        }
        i += 1;
    }
    let elements = cmd.argc() - i;
    if elements == 0 || elements % 2 != 0 || (nx && xx) || (nx && (gt || lt)) || (gt && lt) {
        return false;
    }
    (i..cmd.argc()).step_by(2).all(|s| float(cmd.arg(s)).is_some())
}

/// A bound of ZREMRANGEBYSCORE: a float, exclusive when it starts with `(`.
fn score_bound(arg: &[u8]) -> bool {
    float(arg.strip_prefix(b"(").unwrap_or(arg)).is_some()
}

/// GEOADD key [NX|XX] [CH] longitude latitude member [...]: flags that go together, triples,
/// and coordinates Redis can index.
fn geoadd(cmd: &Command) -> bool {
    const LAT: f64 = 85.05112878;
    let (mut nx, mut xx) = (false, false);
    let mut i = 2;
    while i < cmd.argc() {
        let a = cmd.arg(i);
        if a.eq_ignore_ascii_case(b"NX") {
            nx = true;
        } else if a.eq_ignore_ascii_case(b"XX") {
            xx = true;
        } else if !a.eq_ignore_ascii_case(b"CH") {
            break;
        }
        i += 1;
    }
    let elements = cmd.argc() - i;
    if elements == 0 || elements % 3 != 0 || (nx && xx) {
        return false;
    }
    (i..cmd.argc()).step_by(3).all(|at| {
        let lon = float(cmd.arg(at)).filter(|v| (-180.0..=180.0).contains(v));
        let lat = float(cmd.arg(at + 1)).filter(|v| (-LAT..=LAT).contains(v));
        lon.is_some() && lat.is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(check: Check, args: &[&str]) -> bool {
        accepted(check, &Command::from_args(args))
    }

    #[test]
    fn set_takes_only_expiries_redis_takes() {
        for args in [
            &["SET", "k", "v"][..],
            &["SET", "k", "v", "EX", "10"],
            &["SET", "k", "v", "px", "1"],
            &["SET", "k", "v", "EXAT", "1700000000"],
            &["SET", "k", "v", "PXAT", "1700000000000"],
            &["SET", "k", "v", "KEEPTTL"],
        ] {
            assert!(ok(Check::Set, args), "{args:?}");
        }
        for args in [
            &["SET", "k", "v", "EX", "0"][..],
            &["SET", "k", "v", "EX", "-5"],
            &["SET", "k", "v", "EX", "abc"],
            &["SET", "k", "v", "EX", "010"],
            &["SET", "k", "v", "EX"],
            &["SET", "k", "v", "EX", "10", "PX", "10"],
            &["SET", "k", "v", "KEEPTTL", "EX", "10"],
            &["SET", "k", "v", "BADOPT"],
            &["SET", "k", "v", "NX"],
            &["SET", "k", "v", "XX"],
            &["SET", "k", "v", "GET"],
            &["SET", "k", "v", "PERSIST"],
            &["SET", "k", "v", "EX", "9223372036854775"],
        ] {
            assert!(!ok(Check::Set, args), "{args:?}");
        }
    }

    #[test]
    fn expiry_times() {
        assert!(ok(Check::SetEx(Unit::Seconds), &["SETEX", "k", "5", "v"]));
        assert!(!ok(Check::SetEx(Unit::Seconds), &["SETEX", "k", "-5", "v"]));
        assert!(!ok(Check::SetEx(Unit::Milliseconds), &["PSETEX", "k", "0", "v"]));
        assert!(!ok(
            Check::SetEx(Unit::Milliseconds),
            &["PSETEX", "k", "1.5", "v"]
        ));
        assert!(ok(Check::Expire(Unit::Seconds), &["EXPIRE", "k", "10"]));
        // A time in the past deletes the key: Redis takes it.
        assert!(ok(Check::Expire(Unit::Seconds), &["EXPIRE", "k", "-10"]));
        assert!(!ok(Check::Expire(Unit::Seconds), &["EXPIRE", "k", "abc"]));
        assert!(!ok(Check::Expire(Unit::Seconds), &["EXPIRE", "k", "10", "NX"]));
        assert!(!ok(
            Check::Expire(Unit::Seconds),
            &["EXPIRE", "k", "9223372036854775807"]
        ));
    }

    #[test]
    fn zadd_flags_pairs_and_scores() {
        for args in [
            &["ZADD", "z", "1", "m"][..],
            &["ZADD", "z", "CH", "1", "m", "-inf", "n"],
            &["ZADD", "z", "XX", "GT", "1.5", "m"],
            &["ZADD", "z", "nx", "1e3", "m"],
        ] {
            assert!(ok(Check::Zadd, args), "{args:?}");
        }
        for args in [
            &["ZADD", "z", "nan", "m"][..],
            &["ZADD", "z", "NX", "XX", "1", "m"],
            &["ZADD", "z", "GT", "LT", "1", "m"],
            &["ZADD", "z", "NX", "GT", "1", "m"],
            &["ZADD", "z", "1", "m", "2"],
            &["ZADD", "z", "INCR", "1", "m"],
            &["ZADD", "z", "abc", "m"],
            &["ZADD", "z", "CH"],
        ] {
            assert!(!ok(Check::Zadd, args), "{args:?}");
        }
    }

    #[test]
    fn the_addable_forms() {
        assert!(ok(Check::Integers(&[2, 3]), &["LTRIM", "l", "0", "-1"]));
        assert!(!ok(Check::Integers(&[2, 3]), &["LTRIM", "l", "0", "x"]));
        assert!(!ok(Check::Decrement, &["DECRBY", "k", "-9223372036854775808"]));
        assert!(ok(Check::Decrement, &["DECRBY", "k", "-9223372036854775807"]));
        assert!(ok(Check::SetBit, &["SETBIT", "b", "7", "1"]));
        assert!(!ok(Check::SetBit, &["SETBIT", "b", "7", "2"]));
        assert!(!ok(Check::SetBit, &["SETBIT", "b", "-1", "1"]));
        assert!(!ok(Check::SetBit, &["SETBIT", "b", "4294967296", "1"]));
        // Past what the smallest proto-max-bulk-len allows: Redis may refuse it.
        assert!(!ok(Check::SetBit, &["SETBIT", "b", "10000000", "1"]));
        assert!(!ok(Check::SetRange, &["SETRANGE", "s", "2000000", "x"]));
        assert!(ok(Check::SetRange, &["SETRANGE", "s", "5", "xy"]));
        assert!(!ok(Check::SetRange, &["SETRANGE", "s", "-1", "xy"]));
        assert!(!ok(Check::SetRange, &["SETRANGE", "s", "1048575", "xy"]));
        assert!(ok(Check::ScoreRange, &["ZREMRANGEBYSCORE", "z", "(1", "+inf"]));
        assert!(!ok(Check::ScoreRange, &["ZREMRANGEBYSCORE", "z", "[1", "2"]));
        assert!(ok(
            Check::GeoAdd,
            &["GEOADD", "g", "CH", "13.36", "38.11", "Palermo"]
        ));
        assert!(!ok(Check::GeoAdd, &["GEOADD", "g", "13.36", "86", "Pole"]));
        assert!(!ok(
            Check::GeoAdd,
            &["GEOADD", "g", "NX", "XX", "13.36", "38.11", "P"]
        ));
        assert!(!ok(Check::GeoAdd, &["GEOADD", "g", "13.36", "38.11"]));
        assert!(ok(Check::FlushDb, &["FLUSHDB", "async"]));
        assert!(!ok(Check::FlushDb, &["FLUSHDB", "later"]));
    }
}
