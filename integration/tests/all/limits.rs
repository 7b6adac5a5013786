//! Limits: maxClients per listener, the per-client bound on pending replies (backpressure), and
//! pipelines written whole before any reply is read (read ahead up to queryBufferLimit).

use integration::fake_firehose::FakeFirehose;
use integration::timeouts::HANG;
use integration::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A reply, or room to write, behind a pipeline of hundreds of thousands of commands: the
/// relayer and the backend may have much of it to work through first.
const BEHIND_A_PIPELINE: Duration = Duration::from_secs(60);

const MAX_REACHED: &str = "ERR max number of clients reached";

/// Opens clients until `n` of them answer PING (connections the relayer has not yet noticed as
/// closed, like the harness' readiness probe, may still count for a moment).
fn fill_to(relayer: &Relayer, listen: usize, n: usize) -> Vec<Client> {
    poll_until(HANG, "room for the clients", || {
        let mut cs = Vec::new();
        for _ in 0..n {
            let mut c = relayer.client_at(listen);
            c.set_read_timeout(HANG);
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
    c.set_read_timeout(HANG);
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
    let mut sixth = poll_until(HANG, "a free slot after a disconnect", || {
        let mut c = relayer.client();
        c.set_read_timeout(HANG);
        match c.q("GET maxc:0") {
            r if r == Reply::bulk("v") => Some(c),
            r if r == Reply::error(MAX_REACHED) => None,
            r => panic!("GET: {r:?}"),
        }
    });
    assert_eq!(sixth.q("PING"), Reply::status("PONG"));
    assert_refused(&relayer, 0);
    assert_eq!(redis.query::<i64>(&["EXISTS", "maxc:refused"]), 0);
    drop(other);
}

/// A client pipelines 200k GETs of a 1 KB value (200 MB of replies) and reads nothing for a
/// while: with maxPendingReplies = 64 the relayer stops forwarding its commands, but reads its
/// requests ahead (4.8 MB) so that it can finish writing; the relayer's RSS stays far below the
/// replies' size meanwhile; another client is served; then every reply reads back correctly and
/// the memory of the read-ahead is given back.
#[test]
fn pending_replies_are_bounded() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxPendingReplies = 64");
    const N: usize = 200_000;
    let value: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    // Over the unix socket: its small kernel buffers make a stall visible to the writer.
    let mut c = relayer.client_at(1);
    assert_eq!(c.cmd(&[&b"SET"[..], b"pend:v", &value]), Reply::ok());
    let rss_before = relayer.rss_kb();

    let mut w = c.try_clone_stream().unwrap();
    // Longer than the deadline below, which reports a writer that is stuck.
    w.set_write_timeout(Some(2 * BEHIND_A_PIPELINE)).unwrap();
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
    // The writer finishes without reading a reply (it stalled for good before: a deadlock for
    // a client that reads only once it has written everything). RSS is sampled meanwhile.
    let mut max_rss = rss_before;
    let deadline = Instant::now() + BEHIND_A_PIPELINE;
    while written.load(Ordering::Relaxed) < N {
        max_rss = max_rss.max(relayer.rss_kb());
        assert!(
            Instant::now() < deadline,
            "the writer is stuck after {} of {N} GETs: the relayer stopped reading a client that \
             reads only once it has written everything",
            written.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap().unwrap();
    // Meanwhile another client is served.
    let mut other = relayer.client();
    other.set_read_timeout(HANG);
    assert_eq!(other.q("SET pend:other x"), Reply::ok());
    assert_eq!(other.q("GET pend:other"), Reply::bulk("x"));
    max_rss = max_rss.max(relayer.rss_kb());
    eprintln!("all {N} GETs written; relayer RSS {rss_before} kB before, max {max_rss} kB while not reading");
    assert!(
        max_rss < rss_before + 64 * 1024,
        "relayer RSS grew from {rss_before} kB to {max_rss} kB while the client did not read"
    );

    // Now read everything back.
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..N {
        let r = c.read_reply();
        if r.as_bytes() != Some(&value[..]) {
            panic!("reply {i} of {N}: {r:?}");
        }
    }
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    let rss_end = relayer.rss_kb();
    eprintln!("relayer RSS after reading all replies: {rss_end} kB");
    assert!(rss_end < rss_before + 64 * 1024);
}

/// A value of `len` bytes that differ along it.
fn value_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `n` copies of the command `args`, as one buffer.
fn repeated(args: &[&[u8]], n: usize) -> Vec<u8> {
    encode_command(args).repeat(n)
}

/// Writes `bytes` whole before reading anything. A relayer that stops reading the client while
/// its replies pile up leaves the write blocked: it then fails after `HANG` without progress
/// instead of hanging the test.
fn write_before_reading(c: &Client, bytes: &[u8], what: &str) {
    let mut w = c.try_clone_stream().unwrap();
    w.set_write_timeout(Some(HANG)).unwrap();
    let started = Instant::now();
    if let Err(e) = w.write_all(bytes) {
        panic!(
            "{what}: {} bytes could not be written before reading any reply ({e} after {:?}): the \
             relayer stopped reading a client that reads only once it has written everything",
            bytes.len(),
            started.elapsed()
        );
    }
    eprintln!("{what}: {} bytes written in {:?}", bytes.len(), started.elapsed());
}

/// 300,000 `GET k` (k holds 1 KB: 6.7 MB of requests, 300 MB of replies) written whole before
/// any reply is read, as a client on a raw socket may: every reply is the value, in order.
/// The relayer's RSS meanwhile stays far below the replies' size, and the client is usable after.
fn pipeline_of_gets_written_before_reading(relayer: &Relayer, redis: &Redis) {
    const N: usize = 300_000;
    let value = value_of(1000);
    assert_eq!(
        redis.client().cmd(&[&b"SET"[..], b"pipe:get", &value]),
        Reply::ok()
    );
    let mut c = relayer.client();
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    let rss_before = relayer.rss_kb();
    let started = Instant::now();
    write_before_reading(&c, &repeated(&[b"GET", b"pipe:get"], N), "300,000 GETs");
    let rss_written = relayer.rss_kb();
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..N {
        let r = c.read_reply();
        if r.as_bytes() != Some(&value[..]) {
            panic!("reply {i} of {N}: {r:?}");
        }
    }
    assert_eq!(c.q("GET pipe:get").as_bytes(), Some(&value[..]));
    let rss_end = relayer.rss_kb();
    eprintln!(
        "300,000 GETs answered in {:?}; relayer RSS {rss_before} kB before, {rss_written} kB once written, {rss_end} kB at the end",
        started.elapsed()
    );
    // The read-ahead holds the 6.7 MB of requests, not the 300 MB of replies.
    assert!(
        rss_written.max(rss_end) < rss_before + 64 * 1024,
        "relayer RSS grew from {rss_before} kB to {rss_written} kB (written) and {rss_end} kB (end)"
    );
}

#[test]
fn pipeline_of_300k_gets_written_before_reading_sync() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    pipeline_of_gets_written_before_reading(&relayer, &redis);
}

#[test]
fn pipeline_of_300k_gets_written_before_reading_smart() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    pipeline_of_gets_written_before_reading(&relayer, &redis);
}

/// `n` SETs of `pipe:set:<i>` to `<i>` (47 MB for 1,000,000) written whole before any
/// reply is read, over the relayer's unix socket: every reply is +OK, and redis-server then
/// holds every key (DBSIZE) with its value (a sample of them). The unix socket's buffers are
/// small and fixed: over TCP on loopback, the kernel's buffers grow to hold the 5 MB of +OK
/// replies, so the relayer never stopped reading.
fn pipeline_of_sets_written_before_reading(relayer: &Relayer, redis: &Redis, n: usize) {
    let mut c = Client::unix(relayer.unix_path());
    let mut bytes = Vec::with_capacity(n * 40);
    for i in 0..n {
        let (k, v) = (format!("pipe:set:{i}"), i.to_string());
        bytes.extend_from_slice(&encode_command(&["SET", &k, &v]));
    }
    let started = Instant::now();
    write_before_reading(&c, &bytes, &format!("{n} SETs"));
    drop(bytes);
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..n {
        let r = c.read_reply();
        assert!(r == Reply::ok(), "reply {i} of {n}: {r:?}");
    }
    // Smart mode acknowledged them early: a GET after them sees the last one, so all were run.
    let last = (n - 1).to_string();
    assert_eq!(c.cmd(&["GET", &format!("pipe:set:{last}")]), Reply::bulk(&last));
    eprintln!("{n} SETs answered in {:?}", started.elapsed());
    let mut direct = redis.client();
    assert_eq!(direct.q("DBSIZE"), Reply::Int(n as i64));
    for i in (0..n).step_by(997).chain([n - 1]) {
        let k = format!("pipe:set:{i}");
        assert_eq!(direct.cmd(&["GET", &k]), Reply::bulk(i.to_string()), "{k}");
    }
}

/// 1,000,000 SETs in one pipeline, as phpredis writes them before reading.
#[test]
fn pipeline_of_1m_sets_written_before_reading_smart() {
    let redis = Redis::start();
    let relayer = Relayer::start(&redis_entry_mode(
        "smart",
        "unix:$DIR/relayer.sock",
        &redis.url(),
        "",
    ));
    pipeline_of_sets_written_before_reading(&relayer, &redis, 1_000_000);
}

#[test]
fn pipeline_of_1m_sets_written_before_reading_sync() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    pipeline_of_sets_written_before_reading(&relayer, &redis, 1_000_000);
}

/// A firehose relayer answers every command itself: 500,000 PINGs (7 MB of requests, 3.5 MB of
/// replies) written whole before reading, over its unix socket (small buffers, as for the SETs
/// above), every +PONG then read (it stopped reading at 1 MiB of unread replies before, like a
/// Redis relayer).
#[test]
fn firehose_pipeline_written_before_reading() {
    const N: usize = 500_000;
    let fake = FakeFirehose::start();
    let relayer = Relayer::start(&firehose_entry("unix:$DIR/firehose.sock", "s", &fake.url(), ""));
    let mut c = relayer.client();
    write_before_reading(
        &c,
        &repeated(&[b"PING"], N),
        "500,000 PINGs to a firehose relayer",
    );
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..N {
        let r = c.read_reply();
        assert!(r == Reply::status("PONG"), "reply {i} of {N}: {r:?}");
    }
    assert_eq!(c.q("PING"), Reply::status("PONG"));
}

/// QUIT inside a pipeline written whole before reading (100,000 GETs of 1 KB, QUIT, 100,000
/// more), over the unix socket: what follows QUIT is read and dropped, so the write completes;
/// the client reads the 100,000 values, QUIT's +OK, then the end of the connection (not a reset
/// that would lose replies it had not read), and redis-server ran only the GETs before QUIT.
#[test]
fn quit_inside_a_pipeline_written_before_reading() {
    const N: usize = 100_000;
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let value = value_of(1000);
    assert_eq!(
        redis.client().cmd(&[&b"SET"[..], b"pipe:quit", &value]),
        Reply::ok()
    );
    let calls_before = redis.command_calls("get");
    let mut c = relayer.client_at(1);
    let gets = repeated(&[b"GET", b"pipe:quit"], N);
    let bytes = [&gets[..], &encode_command(&["QUIT"]), &gets[..]].concat();
    write_before_reading(&c, &bytes, "GETs, QUIT, GETs");
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..N {
        let r = c.read_reply();
        if r.as_bytes() != Some(&value[..]) {
            panic!("reply {i} of {N}: {r:?}");
        }
    }
    assert_eq!(c.read_reply(), Reply::ok(), "QUIT's reply");
    c.expect_closed();
    assert_eq!(redis.command_calls("get") - calls_before, N as u64);
}

const QUERY_BUFFER_ERROR: &str =
    "ERR Protocol error: query buffer limit reached (queryBufferLimit = 1048576 bytes)";

/// A relayer (TCP listen 0, unix listen 1) with `queryBufferLimit = 1048576`, Redis' smallest.
fn relayer_with_1mib_query_buffer(redis: &Redis) -> Relayer {
    let tcp = tcp_listen();
    Relayer::start(&format!(
        "queryBufferLimit = 1048576\n{}\n{}",
        redis_entry(&tcp, &redis.url(), ""),
        redis_entry("unix:$DIR/relayer.sock", &redis.url(), "")
    ))
}

/// With `queryBufferLimit = 1048576`, a client that sends 1.9 MiB of GETs of a 1 KB value
/// without reading goes over it while its replies pile up: what it sends after is dropped (its
/// write completes), it reads the replies it was owed, each the value, then the error, and it is
/// closed; the relayer logs why. Another client of the same relayer is served before, during and
/// after, and redis-server saw fewer GETs than were sent (the rest never left the relayer).
#[test]
fn client_over_the_query_buffer_limit_gets_an_error_and_is_closed() {
    let redis = Redis::start();
    let relayer = relayer_with_1mib_query_buffer(&redis);
    let value = value_of(1000);
    let mut other = relayer.client();
    assert_eq!(other.cmd(&[&b"SET"[..], b"qbl:v", &value]), Reply::ok());
    let calls_before = redis.command_calls("get");

    let frame = encode_command(&["GET", "qbl:v"]);
    // Over the limit with what its replies take before they are no longer written (the unix
    // socket's buffers are small and fixed: a few hundred replies, and 1 MiB of output), and
    // within what is then dropped before the connection is cut (the limit again).
    let n = (1 << 20) * 19 / 10 / frame.len();
    let mut c = relayer.client_at(1);
    write_before_reading(&c, &frame.repeat(n), "GETs past queryBufferLimit");
    assert_eq!(
        other.q("PING"),
        Reply::status("PONG"),
        "another client is served meanwhile"
    );
    c.set_read_timeout(HANG);
    let mut answered = 0;
    let last = loop {
        match c.read_reply() {
            r if r.as_bytes() == Some(&value[..]) => answered += 1,
            r => break r,
        }
    };
    assert_eq!(last, Reply::error(QUERY_BUFFER_ERROR), "after {answered} replies");
    c.expect_closed();
    assert!(answered > 0 && answered < n, "{answered} of {n} GETs answered");
    let calls = redis.command_calls("get") - calls_before;
    assert_eq!(calls, answered as u64, "GETs run by redis-server");
    eprintln!("{answered} of {n} GETs answered before the error");
    wait_until(HANG, "the warning in the relayer's log", || {
        relayer
            .log()
            .contains("client over the query buffer limit, closing it")
    });
    // The relayer and its other clients are unaffected.
    assert_eq!(other.cmd(&["GET", "qbl:v"]).as_bytes(), Some(&value[..]));
    let mut again = relayer.client();
    assert_eq!(again.q("PING"), Reply::status("PONG"));
}

/// The limit bounds what waits for a client that does not read, not a pipeline: with
/// `queryBufferLimit = 1048576`, a client that writes 300,000 GETs (8 MB) in one go while it
/// reads the replies gets them all. The relayer reads it ahead while it waits for redis-server's
/// replies, and once the limit is read ahead it reads no further until they come.
#[test]
fn client_reading_its_replies_may_pipeline_past_the_query_buffer_limit() {
    const N: usize = 300_000;
    let redis = Redis::start();
    let relayer = relayer_with_1mib_query_buffer(&redis);
    let mut c = relayer.client();
    assert_eq!(c.q("SET qbl:small 0123456789"), Reply::ok());
    let mut w = c.try_clone_stream().unwrap();
    w.set_write_timeout(Some(BEHIND_A_PIPELINE)).unwrap();
    let writer = std::thread::spawn(move || w.write_all(&repeated(&[b"GET", b"qbl:small"], N)));
    c.set_read_timeout(BEHIND_A_PIPELINE);
    for i in 0..N {
        let r = c.read_reply();
        assert!(r == Reply::bulk("0123456789"), "reply {i} of {N}: {r:?}");
    }
    writer.join().unwrap().unwrap();
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    assert!(!relayer.log().contains("query buffer limit"), "{}", relayer.log());
}

/// Before AUTH, a client's query buffer limit is 1 MiB whatever `queryBufferLimit` says (as in
/// Redis): with a listener password, an unauthenticated client that writes 2 MB of PINGs
/// without reading gets its NOAUTH errors, then the limit's error, and is closed; once
/// authenticated, a client writes 3 MB of PINGs before reading and gets every PONG.
#[test]
fn unauthenticated_client_query_buffer_is_1mib() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "password = \"pw\"");
    let ping = encode_command(&["PING"]);
    let mut c = relayer.client_at(1);
    write_before_reading(&c, &ping.repeat(2_000_000 / ping.len()), "PINGs before AUTH");
    c.set_read_timeout(HANG);
    let mut refused = 0;
    let last = loop {
        match c.read_reply() {
            r if r == Reply::error("NOAUTH Authentication required.") => refused += 1,
            r => break r,
        }
    };
    assert_eq!(
        last,
        Reply::error("ERR Protocol error: query buffer limit reached (1048576 bytes before AUTH)"),
        "after {refused} NOAUTH errors"
    );
    c.expect_closed();

    let mut c = relayer.client_at(1);
    assert_eq!(c.q("AUTH pw"), Reply::ok());
    const N: usize = 3_000_000 / 14;
    write_before_reading(&c, &ping.repeat(N), "PINGs after AUTH");
    c.set_read_timeout(HANG);
    for i in 0..N {
        let r = c.read_reply();
        assert!(r == Reply::status("PONG"), "reply {i} of {N}: {r:?}");
    }
}

/// A client that goes on sending past the limit (20 MB of GETs, never reading) is disconnected:
/// it reads at most its replies and the error before the connection ends, and nothing hangs.
/// Other clients are served throughout.
#[test]
fn client_far_over_the_query_buffer_limit_is_disconnected() {
    let redis = Redis::start();
    let relayer = relayer_with_1mib_query_buffer(&redis);
    let value = value_of(1000);
    let mut other = relayer.client();
    assert_eq!(other.cmd(&[&b"SET"[..], b"qbl:v", &value]), Reply::ok());
    let frame = encode_command(&["GET", "qbl:v"]);
    let bytes = frame.repeat(20 * (1 << 20) / frame.len());
    let mut c = relayer.client_at(1);
    let mut w = c.try_clone_stream().unwrap();
    w.set_write_timeout(Some(HANG)).unwrap();
    // The write fails once the relayer closes the connection (reset), or completes into the
    // socket buffers; either way it must not block.
    let written = w.write_all(&bytes);
    assert!(
        !matches!(&written, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the write blocked: {written:?}"
    );
    assert_eq!(other.q("PING"), Reply::status("PONG"));
    // What it can read ends within the deadline: replies, maybe the error, then the end.
    c.set_read_timeout(HANG);
    let mut answered = 0;
    loop {
        match c.try_read_reply() {
            Ok(r) if r.as_bytes() == Some(&value[..]) => answered += 1,
            Ok(r) => {
                assert_eq!(r, Reply::error(QUERY_BUFFER_ERROR));
                c.expect_closed();
                break;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ),
                    "the connection must end, not {e}"
                );
                break;
            }
        }
    }
    eprintln!("{answered} replies read (written: {written:?})");
    wait_until(HANG, "the relayer's log", || {
        let log = relayer.log();
        log.contains("client over the query buffer limit, closing it")
            && log.contains("client still sending while closed, disconnected")
    });
    assert_eq!(other.cmd(&["GET", "qbl:v"]).as_bytes(), Some(&value[..]));
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
