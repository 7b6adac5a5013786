//! Bad input from one client: a Redis-style protocol error and a closed connection for it, no
//! effect on another client of the same relayer, and bounded memory throughout.

use integration::timeouts::HANG;
use integration::*;

const MB: u64 = 1024;

/// Every case: the protocol error text the relayer must answer (after `ERR Protocol error: `),
/// and the connection closed; then the bystander still works.
#[test]
fn bad_input_gets_protocol_errors_and_leaves_others_alone() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut by = relayer.client();
    let mut by_n = 0u32;
    // Warm up, then the memory baseline.
    for i in 0..200 {
        assert_eq!(by.cmd(&["SET", "warm", &i.to_string()]), Reply::ok());
    }
    let rss_before = relayer.rss_kb();

    let huge_inline = vec![b'a'; 100 * 1024];
    let mut huge_inline_crlf = huge_inline.clone();
    huge_inline_crlf.extend_from_slice(b"\r\n");
    let mut garbage = vec![0u8, 1, 2, 0xff, 0xfe, b'\r', b'\n', 0x80];
    garbage.extend((0..4000u32).map(|i| (i * 7919 % 256) as u8));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad type byte +",
            b"+PING\r\n".to_vec(),
            "unexpected byte '+' at start of request",
        ),
        (
            "bad type byte $",
            b"$4\r\nPING\r\n".to_vec(),
            "unexpected byte '$' at start of request",
        ),
        (
            "bad type byte :",
            b":1\r\n".to_vec(),
            "unexpected byte ':' at start of request",
        ),
        (
            "bad type byte -",
            b"-ERR x\r\n".to_vec(),
            "unexpected byte '-' at start of request",
        ),
        (
            "binary garbage",
            garbage,
            "unexpected byte '\\x00' at start of request",
        ),
        (
            "argument not a bulk",
            b"*1\r\n:5\r\n".to_vec(),
            "expected '$', got ':'",
        ),
        (
            "negative bulk length",
            b"*1\r\n$-5\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "bulk length -1",
            b"*2\r\n$3\r\nGET\r\n$-1\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "huge bulk length",
            b"*1\r\n$99999999999999999999\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "huge multibulk length",
            b"*99999999999999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "*1000000000",
            b"*1000000000\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "600 MB bulk",
            b"*1\r\n$600000000\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "bulk without CRLF",
            b"*1\r\n$3\r\nabcde".to_vec(),
            "expected CRLF after bulk payload",
        ),
        ("100 KB inline line", huge_inline, "too big inline request"),
        (
            "100 KB inline line + CRLF",
            huge_inline_crlf,
            "too big inline request",
        ),
        (
            "unbalanced quotes",
            b"SET k \"abc\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        (
            "valid commands, then a bad one",
            b"PING\r\n*3\r\n$3\r\nSET\r\n$5\r\nbad:k\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$5\r\nbad:k\r\n*1\r\n$-5\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            "invalid bulk length",
        ),
    ];
    let mut failures = Vec::new();
    for (what, input, text) in &cases {
        // The bystander has half a command in flight during the case.
        by_n += 1;
        let frame = encode_command(&["SET", "bystander:k", &format!("v{by_n}")]);
        by.send_raw(&frame[..frame.len() / 2]);

        let mut c = relayer.client();
        // The relayer may close before it has read everything: a failed write is fine.
        let _ = c.try_send_raw(input);
        // The replies to the valid commands before it come first, in order.
        let before: Vec<Reply> = if what.starts_with("valid commands") {
            vec![Reply::status("PONG"), Reply::ok(), Reply::bulk("v")]
        } else {
            vec![]
        };
        let want_before = before.len();
        let mut got = Vec::new();
        let mut problem = None;
        for _ in 0..want_before + 1 {
            match c.try_read_reply() {
                Ok(r) => got.push(r),
                Err(e) => {
                    problem = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let want_err = Reply::Error(format!("ERR Protocol error: {text}"));
        let mut want = before;
        want.push(want_err);
        if problem.is_none() && got != want {
            problem = Some(format!("expected {want:?}, got {got:?}"));
        }
        if problem.is_none() {
            if let Err(e) = c.wait_closed(HANG) {
                problem = Some(format!("after the error: {e}"));
            }
        }
        if let Some(p) = problem {
            failures.push(format!("{what} ({}): {p}", show_bytes(input, 40)));
        }

        by.send_raw(&frame[frame.len() / 2..]);
        assert_eq!(by.read_reply(), Reply::ok(), "bystander SET after {what}");
        assert_eq!(
            by.q("GET bystander:k"),
            Reply::bulk(format!("v{by_n}")),
            "bystander GET after {what}"
        );
    }

    // A negative or zero multibulk count is skipped, as redis does.
    for input in [&b"*-5\r\nPING\r\n"[..], b"*0\r\n*-1\r\nPING\r\n"] {
        let mut c = relayer.client();
        let mut d = redis.client();
        c.send_raw(input);
        d.send_raw(input);
        assert_eq!(c.read_reply(), d.read_reply(), "{}", show_bytes(input, 40));
    }

    // Unterminated frames, then close: no reply, no effect on others.
    let partials: Vec<&[u8]> = vec![
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc",
        b"*2\r\n$3\r\nGET\r\n",
        b"*2\r\n$3\r\nGE",
        b"*2",
        b"GET bystander:k",
        b"*2\r\n$3\r\nSET\r\n$500000000\r\nabcdef",
    ];
    for p in &partials {
        let mut c = relayer.client();
        c.send_raw(p);
        c.shutdown_write();
        match c.wait_closed(HANG) {
            Ok(()) => {}
            Err(e) => failures.push(format!(
                "unterminated {} then EOF: expected a close without reply: {e}",
                show_bytes(p, 40)
            )),
        }
        assert_eq!(by.q("PING"), Reply::status("PONG"));
        assert_eq!(by.q("GET bystander:k"), Reply::bulk(format!("v{by_n}")));
    }
    // Abrupt closes in the middle of a frame, without half-close.
    for p in &partials {
        let mut c = relayer.client();
        c.send_raw(p);
        drop(c);
    }
    assert_eq!(by.q("GET bystander:k"), Reply::bulk(format!("v{by_n}")));

    // Declared-but-never-sent big payloads held open at once: nothing is allocated for them.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut c = relayer.client();
        c.send_raw(format!("*3\r\n$3\r\nSET\r\n$2\r\nk{i}\r\n$500000000\r\n").as_bytes());
        c.send_raw(&vec![b'x'; 64 * 1024]);
        held.push(c);
    }
    assert_eq!(by.q("GET bystander:k"), Reply::bulk(format!("v{by_n}")));
    let rss_held = relayer.rss_kb();
    drop(held);
    assert_eq!(by.q("GET bystander:k"), Reply::bulk(format!("v{by_n}")));
    let rss_after = relayer.rss_kb();
    eprintln!("relayer RSS: before {rss_before} kB, with 8 x 500 MB bulks declared {rss_held} kB, after {rss_after} kB");
    assert!(
        failures.is_empty(),
        "{} bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for (when, rss) in [
        ("with 8 x 500 MB declared", rss_held),
        ("after all cases", rss_after),
    ] {
        assert!(
            rss < rss_before + 64 * MB,
            "relayer RSS {when}: {rss} kB, from {rss_before} kB before"
        );
    }
    assert_eq!(relayer.client().q("PING"), Reply::status("PONG"));
}

/// Many connections sending `*1000000000` and 600 MB headers at once, repeatedly: memory stays
/// bounded and the relayer keeps serving.
#[test]
fn bad_input_storm_keeps_memory_bounded() {
    let redis = Redis::start();
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, ""));
    let mut by = relayer.client();
    assert_eq!(by.q("SET storm:k v"), Reply::ok());
    let rss_before = relayer.rss_kb();
    let r = relayer.clone();
    run_threads(20, move |id| {
        for round in 0..20 {
            let mut c = r.client_at(id % 2);
            let input: &[u8] = match (id + round) % 4 {
                0 => b"*1000000000\r\n",
                1 => b"*1\r\n$600000000\r\n",
                2 => b"*2\r\n$3\r\nGET\r\n$536870912\r\nxxxxxxxxxxxxxxxx",
                _ => b"\x00\x00\x00\x00",
            };
            let _ = c.try_send_raw(input);
            if (id + round) % 4 == 2 {
                // A valid (512 MB) length whose payload never comes: no reply, just close.
                drop(c);
                continue;
            }
            let r = c.try_read_reply().map_err(|e| format!("round {round}: {e}"))?;
            if !r.is_error_starting("ERR Protocol error: ") {
                return Err(format!("round {round}: {r:?}"));
            }
        }
        Ok(())
    });
    assert_eq!(by.q("GET storm:k"), Reply::bulk("v"));
    let rss_after = relayer.rss_kb();
    eprintln!("relayer RSS: before {rss_before} kB, after the storm {rss_after} kB");
    assert!(
        rss_after < rss_before + 64 * MB,
        "relayer RSS after the storm: {rss_after} kB, from {rss_before} kB"
    );
}
