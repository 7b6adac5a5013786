//! Firehose relayers under SIGHUP: added, changed (a new batcher behind the same listener and
//! clients), removed (drained), and an entry switched between redis and firehose behind the
//! same listener. Every line acknowledged before a change must reach the endpoint.

use integration::fake_firehose::FakeFirehose;
use integration::*;
use std::time::{Duration, Instant};

const RELOADED: &str = "configuration reloaded";
const WAIT: Duration = Duration::from_secs(20);

/// A firehose entry; `flush` is its flushInterval (long to keep lines in the batcher).
fn firehose_entry(listen: &str, fake: &FakeFirehose, stream: &str, flush: f64) -> String {
    format!(
        "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"{listen}\"\nstreamName = \"{stream}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nflushInterval = {flush}\ndrainTimeout = 1\n",
        fake.url()
    )
}

/// Rewrites the file, sends SIGHUP and waits for the reload's log record.
fn reload(relayer: &mut Relayer, config: &str) {
    let before = relayer.log().matches(RELOADED).count();
    relayer.rewrite_config(config);
    relayer.signal(libc::SIGHUP);
    wait_until(WAIT, "the reload's log record", || {
        relayer.log().matches(RELOADED).count() > before
    });
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
    wait_until(WAIT, &format!("the line of {key} at the endpoint"), || {
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
    let base = redis_entry(&format!("tcp://127.0.0.1:{}", free_port()), &redis.url(), "");
    let mut relayer = Relayer::start(&base);
    let fh = format!("tcp://127.0.0.1:{}", free_port());

    reload(
        &mut relayer,
        &format!("{base}\n{}", firehose_entry(&fh, &fake, "one", 0.1)),
    );
    let mut c = Client::connect(&fh).expect("the added firehose entry accepts");
    assert_eq!(c.cmd(&["SET", "added", "1"]), Reply::ok());
    wait_for_line(&fake, "added");

    // Held back by a long flush interval, so the old batcher still owes it at the change.
    reload(
        &mut relayer,
        &format!("{base}\n{}", firehose_entry(&fh, &fake, "one", 30.0)),
    );
    assert_eq!(c.cmd(&["SET", "before-change", "1"]), Reply::ok());
    reload(
        &mut relayer,
        &format!("{base}\n{}", firehose_entry(&fh, &fake, "two", 0.1)),
    );
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

    reload(
        &mut relayer,
        &format!("{base}\n{}", firehose_entry(&fh, &fake, "two", 30.0)),
    );
    assert_eq!(c.cmd(&["SET", "before-removal", "1"]), Reply::ok());
    reload(&mut relayer, &base);
    wait_for_line(&fake, "before-removal");
    wait_until(WAIT, "the removed entry's port refused", || {
        Client::connect(&fh).is_err()
    });
    c.wait_closed(WAIT)
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
    let listen = format!("tcp://127.0.0.1:{}", free_port());
    let as_redis = redis_entry(&listen, &redis.url(), "drainTimeout = 1");
    let as_firehose = firehose_entry(&listen, &fake, "s", 0.1);
    let mut relayer = Relayer::start(&as_redis);

    let mut old = Client::connect(&listen).unwrap();
    assert_eq!(old.cmd(&["SET", "k:redis", "1"]), Reply::ok());
    reload(&mut relayer, &as_firehose);
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
    old.wait_closed(WAIT)
        .expect("the old protocol's client is closed after drainTimeout");
    assert_eq!(redis.client().cmd(&["GET", "k:redis"]), Reply::bulk("1"));

    reload(&mut relayer, &as_redis);
    let mut back = Client::connect(&listen).unwrap();
    assert_eq!(
        back.cmd(&["GET", "k:redis"]),
        Reply::bulk("1"),
        "redis again behind the listener"
    );
    new.wait_closed(WAIT)
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
