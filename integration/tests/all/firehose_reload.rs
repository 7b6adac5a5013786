//! Firehose relayers under SIGHUP: added, changed (a new batcher behind the same listener and
//! clients), removed (drained), and an entry switched between redis and firehose behind the
//! same listener. Every line acknowledged before a change must reach the endpoint.

use integration::fake_firehose::FakeFirehose;
use integration::log::{STOPPED_LOST, STOPPED_OK};
use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use std::time::{Duration, Instant};

/// A firehose entry; `flush` is its flushInterval (long to keep lines in the batcher).
fn entry(listen: &str, fake: &FakeFirehose, stream: &str, flush: f64) -> String {
    firehose_entry(
        listen,
        stream,
        &fake.url(),
        &format!("flushInterval = {flush}\ndrainTimeout = 1"),
    )
}

/// The stream names of the calls that carried `key`'s line.
fn streams_of(fake: &FakeFirehose, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\"");
    let records = fake.records();
    let mut out = vec![];
    for call in fake.calls() {
        if records[call.accepted.clone()]
            .iter()
            .any(|r| String::from_utf8_lossy(r).contains(&needle))
        {
            out.push(call.stream.clone());
        }
    }
    out
}

fn wait_for_line(fake: &FakeFirehose, key: &str) {
    let needle = format!("\"{key}\"");
    wait_until(DELIVERY, &format!("the line of {key} at the endpoint"), || {
        fake.lines()
            .iter()
            .any(|l| String::from_utf8_lossy(l).contains(&needle))
    });
}

/// A firehose entry added by a reload serves; changing its stream moves a client connected
/// before the change to the new batcher at its next command, while what the old batcher held is
/// delivered under the old stream; removing it delivers what it acknowledged and frees the port.
#[test]
fn firehose_entry_added_changed_and_removed() {
    let fake = FakeFirehose::start();
    let redis = Redis::start();
    let base = redis_entry(&tcp_listen(), &redis.url(), "");
    let mut relayer = Relayer::start(&base);
    let fh = tcp_listen();

    relayer.reload(&format!("{base}\n{}", entry(&fh, &fake, "one", 0.1)));
    let mut c = Client::connect(&fh).expect("the added firehose entry accepts");
    assert_eq!(c.cmd(&["SET", "added", "1"]), Reply::ok());
    wait_for_line(&fake, "added");

    // Held back by a long flush interval, so the old batcher still owes it at the change.
    relayer.reload(&format!("{base}\n{}", entry(&fh, &fake, "one", 30.0)));
    assert_eq!(c.cmd(&["SET", "before-change", "1"]), Reply::ok());
    relayer.reload(&format!("{base}\n{}", entry(&fh, &fake, "two", 0.1)));
    assert_eq!(
        c.cmd(&["SET", "after-change", "1"]),
        Reply::ok(),
        "the client connected before the change keeps its connection"
    );
    wait_for_line(&fake, "after-change");
    wait_for_line(&fake, "before-change");
    assert_eq!(streams_of(&fake, "after-change"), vec!["two".to_string()]);
    assert_eq!(
        streams_of(&fake, "before-change"),
        vec!["one".to_string()],
        "the replaced batcher delivers what it held, to its own stream"
    );

    relayer.reload(&format!("{base}\n{}", entry(&fh, &fake, "two", 30.0)));
    assert_eq!(c.cmd(&["SET", "before-removal", "1"]), Reply::ok());
    relayer.reload(&base);
    wait_for_line(&fake, "before-removal");
    wait_until(HANG, "the removed entry's port refused", || {
        Client::connect(&fh).is_err()
    });
    c.wait_closed(HANG)
        .expect("the removed entry's client is closed after drainTimeout");
    let lines = fake.lines();
    for key in ["added", "before-change", "after-change", "before-removal"] {
        let n = lines
            .iter()
            .filter(|l| String::from_utf8_lossy(l).contains(&format!("\"{key}\"")))
            .count();
        assert_eq!(n, 1, "{key}: delivered exactly once");
    }
}

/// An entry switched from redis to firehose and back keeps its listener: new clients get the
/// new protocol at once, a client of the old one finishes on the old backend and is closed after
/// drainTimeout, and its writes landed there.
#[test]
fn protocol_switch_behind_the_same_listener() {
    let fake = FakeFirehose::start();
    let redis = Redis::start();
    let listen = tcp_listen();
    let as_redis = redis_entry(&listen, &redis.url(), "drainTimeout = 1");
    let as_firehose = entry(&listen, &fake, "s", 0.1);
    let mut relayer = Relayer::start(&as_redis);

    let mut old = Client::connect(&listen).unwrap();
    assert_eq!(old.cmd(&["SET", "k:redis", "1"]), Reply::ok());
    relayer.reload(&as_firehose);
    let started = Instant::now();
    let mut new = Client::connect(&listen).expect("the listener stays");
    assert_eq!(new.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(new.cmd(&["SET", "k:firehose", "1"]), Reply::ok());
    assert!(
        new.cmd(&["GET", "k:redis"])
            .is_error_starting("ERR unknown command 'GET' for a firehose relayer"),
        "a new client talks to the firehose relayer"
    );
    wait_for_line(&fake, "k:firehose");
    // The old client still reaches Redis until its drain timeout.
    let r = old.cmd(&["GET", "k:redis"]);
    if started.elapsed() < Duration::from_millis(800) {
        assert_eq!(r, Reply::bulk("1"), "the old client still talks to redis");
    }
    old.wait_closed(HANG)
        .expect("the old protocol's client is closed after drainTimeout");
    assert_eq!(
        redis.query::<Option<String>>(&["GET", "k:redis"]),
        Some("1".into())
    );

    relayer.reload(&as_redis);
    let mut back = Client::connect(&listen).unwrap();
    assert_eq!(
        back.cmd(&["GET", "k:redis"]),
        Reply::bulk("1"),
        "redis again behind the listener"
    );
    new.wait_closed(HANG)
        .expect("the firehose client is closed after drainTimeout");
    assert!(
        fake.lines()
            .iter()
            .filter(|l| String::from_utf8_lossy(l).contains("k:firehose"))
            .count()
            == 1,
        "the firehose line delivered once"
    );
}

/// `entry` with more keys.
fn firehose_entry_with(listen: &str, fake: &FakeFirehose, stream: &str, extra: &str) -> String {
    format!("{}{extra}\n", entry(listen, fake, stream, 0.1))
}

/// The `name: N` field of the one log record containing `msg`; panics unless there is exactly one.
fn field_of(log: &str, msg: &str, name: &str) -> u64 {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(msg)).collect();
    assert_eq!(lines.len(), 1, "one '{msg}' record; log:\n{log}");
    let rest = lines[0]
        .split(&format!("{name}: "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in {}", lines[0]));
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn set_many(c: &mut Client, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}:{i}");
            assert_eq!(c.cmd(&["SET", &key, "v"]), Reply::ok(), "SET {key}");
            key
        })
        .collect()
}

/// The endpoint is down. A reload changes an entry that has a dead-letter file: its old batcher
/// gives up after drainTimeout and writes the 50 lines it held to the file, and the log says so
/// with the count. The client goes on with the new batcher (no dead-letter file); a reload then
/// removes the entry: its 20 lines are counted lost, and the log says that, with the count.
#[test]
fn drain_timeout_at_a_reload_dead_letters_or_counts_the_lines() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let other = entry(&tcp_listen(), &fake, "other", 0.1);
    let fh = tcp_listen();
    let mut relayer = Relayer::start(&format!(
        "{other}\n{}",
        firehose_entry_with(&fh, &fake, "one", "deadLetterFile = \"$DIR/dead.jsonl\"")
    ));
    let path = relayer.dir().join("dead.jsonl");
    let mut c = Client::connect(&fh).unwrap();
    let first = set_many(&mut c, "first", 50);
    relayer.reload(&format!("{other}\n{}", entry(&fh, &fake, "two", 0.1)));
    let second = set_many(&mut c, "second", 20);
    let replaced = "replaced backend: writes not delivered in time, written to the dead-letter file";
    wait_until(HANG, "the replaced batcher's give-up", || {
        relayer.log().contains(replaced)
    });
    let log = relayer.log();
    assert_eq!(field_of(&log, replaced, "dead_letter"), 50, "log:\n{log}");
    // Every line once, in no particular order (records in flight, waiting, packed...).
    let dead = std::fs::read_to_string(&path).unwrap();
    let mut dead_keys: Vec<String> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["data"].as_object().unwrap().keys().next().unwrap().clone()
        })
        .collect();
    dead_keys.sort();
    let mut want = first.clone();
    want.sort();
    assert_eq!(dead_keys, want, "the dead-letter file holds the 50 lines");

    relayer.reload(&other);
    let removed = "removed relayer: writes not delivered within the drain timeout, lost";
    wait_until(HANG, "the removed batcher's give-up", || {
        relayer.log().contains(removed)
    });
    let log = relayer.log();
    assert_eq!(
        field_of(&log, removed, "lost"),
        second.len() as u64,
        "log:\n{log}"
    );
    assert_eq!(field_of(&log, removed, "dead_letter"), 0, "log:\n{log}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        50,
        "nothing more in the dead-letter file"
    );
    // The stop summary counts what the reloads left too: it does not say everything was
    // delivered.
    relayer.signal(libc::SIGTERM);
    assert!(relayer.wait_exit(EXIT).success());
    let log = relayer.log();
    assert!(!log.contains(STOPPED_OK), "log:\n{log}");
    assert_eq!(
        field_of(&log, STOPPED_LOST, "lost"),
        second.len() as u64,
        "log:\n{log}"
    );
    assert_eq!(field_of(&log, STOPPED_LOST, "dead_letter"), 50, "log:\n{log}");
}

/// Three clients keep writing while two reloads change the entry's stream, with a small buffer
/// and `critical = true` so that they often wait for room: none of them gets an error (their
/// lines go to the new batcher, waiting ones included), and every line answered `+OK` arrives
/// exactly once.
#[test]
fn reloads_while_clients_write_lose_no_acknowledged_line() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let fake = FakeFirehose::start();
    let fh = tcp_listen();
    let keys = "critical = true\nbuffer = 20";
    let mut relayer = Relayer::start(&firehose_entry_with(&fh, &fake, "one", keys));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = Client::connect(&fh).unwrap();
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let keys: Vec<String> = (i..i + 5).map(|j| format!("w{w}:{j}")).collect();
                    let cmds: Vec<Vec<&str>> = keys.iter().map(|k| vec!["SET", k.as_str(), "v"]).collect();
                    c.send_many(&cmds);
                    for k in keys {
                        let r = c.read_reply();
                        assert_eq!(r, Reply::ok(), "SET {k} during the reloads");
                        acked.lock().unwrap().insert(k);
                    }
                    i += 5;
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    let count = || acked.lock().unwrap().len();
    for stream in ["two", "one"] {
        let n = count();
        wait_until(HANG, "writes before the reload", || count() >= n + 300);
        relayer.reload(&firehose_entry_with(&fh, &fake, stream, keys));
    }
    let n = count();
    wait_until(HANG, "writes after the reloads", || count() >= n + 300);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer got something else than +OK");
    }
    let acked = acked.lock().unwrap().clone();
    wait_until(DELIVERY, "every acknowledged line at the endpoint", || {
        fake.line_count() >= acked.len()
    });
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in fake.lines() {
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        for k in v["data"].as_object().unwrap().keys() {
            *seen.entry(k.clone()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = acked.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged lines missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(seen.values().all(|n| *n == 1), "a line arrived twice");
    assert_eq!(seen.len(), acked.len(), "lines never acknowledged arrived");
    let streams: HashSet<String> = fake.calls().iter().map(|c| c.stream.clone()).collect();
    assert_eq!(streams.len(), 2, "both streams were written: {streams:?}");
    relayer.signal(libc::SIGTERM);
    assert!(relayer.wait_exit(EXIT).success());
    assert!(relayer.log().contains(STOPPED_OK), "{}", relayer.log());
}

/// `critical = true`, `buffer = 1`, endpoint down: a client's second SET waits for room. A reload
/// replaces the batcher: the old one gives up on the first line (dead-letter file), and the
/// waiting SET goes to the new batcher (+OK, not an error), which delivers it to the new stream
/// once the endpoint is back.
#[test]
fn a_client_waiting_for_room_moves_to_the_new_batcher() {
    let fake = FakeFirehose::start();
    fake.go_down();
    let fh = tcp_listen();
    let keys = "critical = true\nbuffer = 1\ndeadLetterFile = \"$DIR/dead.jsonl\"";
    let mut relayer = Relayer::start(&firehose_entry_with(&fh, &fake, "one", keys));
    let path = relayer.dir().join("dead.jsonl");
    let mut c = Client::connect(&fh).unwrap();
    assert_eq!(c.cmd(&["SET", "held", "1"]), Reply::ok());
    c.send(&["SET", "waiting", "1"]);
    c.set_read_timeout(Duration::from_secs(1));
    assert!(c.try_read_reply().is_err(), "the second SET waits for room");
    relayer.reload(&firehose_entry_with(&fh, &fake, "two", keys));
    c.set_read_timeout(HANG);
    assert_eq!(
        c.read_reply(),
        Reply::ok(),
        "the waiting SET, taken by the new batcher"
    );
    wait_until(HANG, "the first line in the dead-letter file", || {
        std::fs::read_to_string(&path).is_ok_and(|d| d.contains("\"held\""))
    });
    fake.come_up();
    wait_for_line(&fake, "waiting");
    assert_eq!(streams_of(&fake, "waiting"), vec!["two".to_string()]);
    assert!(
        streams_of(&fake, "held").is_empty(),
        "the dead-lettered line was not sent"
    );
}
