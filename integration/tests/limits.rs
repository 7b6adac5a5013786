//! Limits: maxClients per listener, and the per-client bound on pending replies (backpressure).

use integration::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_REACHED: &str = "ERR max number of clients reached";

/// Opens clients until `n` of them answer PING (connections the relayer has not yet noticed as
/// closed, like the harness' readiness probe, may still count for a moment).
fn fill_to(relayer: &Relayer, listen: usize, n: usize) -> Vec<Client> {
    poll_until(Duration::from_secs(30), "room for the clients", || {
        let mut cs = Vec::new();
        for _ in 0..n {
            let mut c = relayer.client_at(listen);
            c.set_read_timeout(Duration::from_secs(20));
            match c.cmd(&["PING"]) {
                r if r == Reply::status("PONG") => cs.push(c),
                r if r == Reply::error(MAX_REACHED) => return None,
                r => panic!("PING: {r:?}"),
            }
        }
        Some(cs)
    })
}

fn assert_refused(relayer: &Relayer, listen: usize) {
    let mut c = relayer.client_at(listen);
    c.set_read_timeout(Duration::from_secs(20));
    // The error comes without asking; a command sent meanwhile must not be run.
    let _ = c.try_send_raw(b"SET maxc:refused x\r\n");
    assert_eq!(c.read_reply(), Reply::error(MAX_REACHED));
    c.expect_closed();
}

/// With maxClients = 5 the 6th connection gets the error and is closed; after one of the five
/// leaves, a new one is accepted. The limit is per listener.
#[test]
fn max_clients() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxClients = 5");
    let mut five = fill_to(&relayer, 0, 5);
    assert_refused(&relayer, 0);
    assert_refused(&relayer, 0);
    // The other listener has its own count.
    let other = fill_to(&relayer, 1, 5);
    assert_refused(&relayer, 1);
    // The five still work.
    for (i, c) in five.iter_mut().enumerate() {
        assert_eq!(c.cmd(&["SET", &format!("maxc:{i}"), "v"]), Reply::ok());
    }
    drop(five.pop());
    let mut sixth = poll_until(Duration::from_secs(20), "a free slot after a disconnect", || {
        let mut c = relayer.client();
        c.set_read_timeout(Duration::from_secs(20));
        match c.q("GET maxc:0") {
            r if r == Reply::bulk("v") => Some(c),
            r if r == Reply::error(MAX_REACHED) => None,
            r => panic!("GET: {r:?}"),
        }
    });
    assert_eq!(sixth.q("PING"), Reply::status("PONG"));
    assert_refused(&relayer, 0);
    assert_eq!(redis.client().q("EXISTS maxc:refused"), Reply::Int(0));
    drop(other);
}

/// A client pipelines 200k GETs of a 1 KB value (200 MB of replies) and reads nothing for a
/// while: with maxPendingReplies = 64 the relayer stops reading from it, so its RSS stays far
/// below that; another client is served meanwhile; then every reply reads back correctly.
#[test]
fn pending_replies_are_bounded() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxPendingReplies = 64");
    const N: usize = 200_000;
    let value: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    // Over the unix socket: its small kernel buffers make the stall visible to the writer.
    let mut c = relayer.client_at(1);
    assert_eq!(c.cmd(&[&b"SET"[..], b"pend:v", &value]), Reply::ok());
    let rss_before = relayer.rss_kb();

    let mut w = c.try_clone_stream().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let frame = encode_command(&["GET", "pend:v"]);
            let chunk: Vec<u8> = frame.repeat(1000);
            for _ in 0..N / 1000 {
                w.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
                written.fetch_add(1000, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    // Wait until the writer is stuck (the relayer stopped reading) or done, sampling RSS.
    let mut max_rss = rss_before;
    let mut last = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        max_rss = max_rss.max(relayer.rss_kb());
        let w = written.load(Ordering::Relaxed);
        if w != last.0 {
            last = (w, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) || w == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer neither stalls nor finishes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stalled_at = written.load(Ordering::Relaxed);
    // Meanwhile another client is served.
    let mut other = relayer.client();
    other.set_read_timeout(Duration::from_secs(20));
    assert_eq!(other.q("SET pend:other x"), Reply::ok());
    assert_eq!(other.q("GET pend:other"), Reply::bulk("x"));
    max_rss = max_rss.max(relayer.rss_kb());
    eprintln!(
        "writer stalled after {stalled_at} of {N} GETs; relayer RSS {rss_before} kB before, max {max_rss} kB while not reading"
    );
    assert!(
        max_rss < rss_before + 64 * 1024,
        "relayer RSS grew from {rss_before} kB to {max_rss} kB while the client did not read"
    );
    assert!(
        stalled_at < N,
        "the relayer read all {N} GETs without the client reading replies"
    );

    // Now read everything back.
    for i in 0..N {
        let r = c.read_reply();
        if r.as_bytes() != Some(&value[..]) {
            panic!("reply {i} of {N}: {r:?}");
        }
    }
    writer.join().unwrap().unwrap();
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    let rss_end = relayer.rss_kb();
    eprintln!("relayer RSS after reading all replies: {rss_end} kB");
    assert!(rss_end < rss_before + 64 * 1024);
}

/// A tiny pending bound (1 and 64) does not deadlock or reorder: long pipelines of forwarded and
/// local commands and MULTI blocks longer than the bound all get their replies, in order.
#[test]
fn small_pending_bounds_keep_working() {
    let redis = Redis::start();
    for bound in [1, 64] {
        let relayer = Relayer::for_redis(&redis, &format!("maxPendingReplies = {bound}"));
        for listen in 0..2 {
            let mut c = relayer.client_at(listen);
            let key = format!("small:{bound}:{listen}");
            let mut cmds: Vec<Vec<String>> = Vec::new();
            let mut want = Vec::new();
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            for i in 0..3000 {
                match i % 5 {
                    0 => {
                        cmds.push(s(&["INCR", &key]));
                        want.push(Reply::Int(i / 5 + 1));
                    }
                    1 => {
                        cmds.push(s(&["PING"]));
                        want.push(Reply::status("PONG"));
                    }
                    2 => {
                        cmds.push(s(&["GET", &key]));
                        want.push(Reply::bulk((i / 5 + 1).to_string()));
                    }
                    3 => {
                        cmds.push(s(&["ECHO", &i.to_string()]));
                        want.push(Reply::bulk(i.to_string()));
                    }
                    _ => {
                        cmds.push(s(&["SELECT", "0"]));
                        want.push(Reply::ok());
                    }
                }
            }
            cmds.push(s(&["MULTI"]));
            want.push(Reply::ok());
            for _ in 0..300 {
                cmds.push(s(&["INCR", &format!("{key}:tx")]));
                want.push(Reply::status("QUEUED"));
            }
            cmds.push(s(&["EXEC"]));
            want.push(Reply::Array((1..=300).map(Reply::Int).collect()));
            let got = c.pipeline(&cmds);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "maxPendingReplies = {bound}, command {i} {:?}", cmds[i]);
            }
        }
    }
}
