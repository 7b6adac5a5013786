//! Relaying: many concurrent pipelining clients, replies byte for byte, redis-cli and inline
//! commands, the commands the relayer answers itself, target URL forms.

use integration::timeouts::HANG;
use integration::*;

/// 120 clients at once (half over TCP, half over the unix socket), each pipelining batches of
/// interleaved SET/GET/INCR/APPEND/STRLEN/DEL on its own keys, with two upstream connections;
/// every reply is checked against the client's own model.
#[test]
fn concurrent_pipelining_clients_get_their_own_replies() {
    let redis = Redis::start();
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, "maxConnections = 2"));
    const CLIENTS: usize = 120;
    const ROUNDS: usize = 15;
    const BATCH: usize = 40;
    let r = relayer.clone();
    run_threads(CLIENTS, move |id| {
        let mut c = r.client_at(id % 2);
        let mut rng = Rng::new(id as u64 + 1);
        let s_key = format!("cc:{id}:s");
        let n_key = format!("cc:{id}:n");
        let mut s: Option<Vec<u8>> = None;
        let mut n: i64 = 0;
        for round in 0..ROUNDS {
            let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut want: Vec<Reply> = Vec::new();
            for _ in 0..BATCH {
                match rng.below(7) {
                    0 => {
                        let len = rng.below(64) as usize;
                        let v = rng.bytes(len);
                        cmds.push(vec![b"SET".to_vec(), s_key.clone().into(), v.clone()]);
                        want.push(Reply::ok());
                        s = Some(v);
                    }
                    1 | 2 => {
                        cmds.push(vec![b"GET".to_vec(), s_key.clone().into()]);
                        want.push(s.clone().map_or(Reply::Nil, Reply::Bulk));
                    }
                    3 => {
                        let len = rng.below(16) as usize;
                        let v = rng.bytes(len);
                        cmds.push(vec![b"APPEND".to_vec(), s_key.clone().into(), v.clone()]);
                        let cur = s.get_or_insert_with(Vec::new);
                        cur.extend_from_slice(&v);
                        want.push(Reply::Int(cur.len() as i64));
                    }
                    4 => {
                        cmds.push(vec![b"INCR".to_vec(), n_key.clone().into()]);
                        n += 1;
                        want.push(Reply::Int(n));
                    }
                    5 => {
                        cmds.push(vec![b"STRLEN".to_vec(), s_key.clone().into()]);
                        want.push(Reply::Int(s.as_ref().map_or(0, |v| v.len() as i64)));
                    }
                    _ => {
                        if rng.below(4) == 0 {
                            cmds.push(vec![b"DEL".to_vec(), s_key.clone().into()]);
                            want.push(Reply::Int(s.take().is_some() as i64));
                        } else {
                            cmds.push(vec![b"GET".to_vec(), n_key.clone().into()]);
                            want.push(if n == 0 {
                                Reply::Nil
                            } else {
                                Reply::bulk(n.to_string())
                            });
                        }
                    }
                }
            }
            let got = c.pipeline(&cmds);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if g != w {
                    return Err(format!(
                        "round {round}, command {i} {:?}: expected {w:?}, got {g:?}",
                        cmds[i].iter().map(|a| show_bytes(a, 40)).collect::<Vec<_>>()
                    ));
                }
            }
        }
        Ok(())
    });
    // The data really is in the backend.
    let mut direct = redis.client();
    for id in [0, CLIENTS / 2, CLIENTS - 1] {
        assert!(direct.cmd(&["EXISTS", &format!("cc:{id}:n")]).as_int().is_some());
    }
}

/// Read replies through the relayer are the same bytes as redis' own, for binary values with
/// CRLF and protocol-looking bytes inside, 1 and 3 MB values, empty and nil values, nested arrays
/// (EVAL, XRANGE, COMMAND INFO, SCAN, EXEC), errors and statuses inside arrays.
#[test]
fn replies_are_passed_byte_for_byte() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut via = relayer.client();
    let mut direct = redis.client();

    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let tricky = b"$5\r\nhello\r\n*1\r\n:1\r\n-ERR x\r\n+OK\r\n\r\n\r\n".to_vec();
    let mut rng = Rng::new(7);
    let one_mb = rng.bytes(1 << 20);
    let three_mb: Vec<u8> = (0..3 * (1 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let setup: Vec<Vec<Vec<u8>>> = vec![
        vec![b"SET".to_vec(), b"bb:bin".to_vec(), all_bytes.clone()],
        vec![b"SET".to_vec(), b"bb:tricky".to_vec(), tricky.clone()],
        vec![b"SET".to_vec(), b"bb:1mb".to_vec(), one_mb.clone()],
        vec![b"SET".to_vec(), b"bb:3mb".to_vec(), three_mb.clone()],
        vec![b"SET".to_vec(), b"bb:empty".to_vec(), Vec::new()],
        vec![
            b"HSET".to_vec(),
            b"bb:h".to_vec(),
            b"f\r\n1".to_vec(),
            tricky.clone(),
            b"f2".to_vec(),
            b"".to_vec(),
            b"\x00".to_vec(),
            all_bytes.clone(),
        ],
        vec![
            b"RPUSH".to_vec(),
            b"bb:l".to_vec(),
            b"a".to_vec(),
            tricky.clone(),
            b"".to_vec(),
        ],
        vec![
            b"ZADD".to_vec(),
            b"bb:z".to_vec(),
            b"1.5".to_vec(),
            b"x".to_vec(),
            b"-2".to_vec(),
            b"y\r\n".to_vec(),
        ],
        vec![
            b"XADD".to_vec(),
            b"bb:x".to_vec(),
            b"1-1".to_vec(),
            b"f".to_vec(),
            tricky.clone(),
        ],
        vec![
            b"XADD".to_vec(),
            b"bb:x".to_vec(),
            b"2-1".to_vec(),
            b"a".to_vec(),
            b"1".to_vec(),
            b"b".to_vec(),
            b"2".to_vec(),
        ],
    ];
    for r in via.pipeline(&setup) {
        assert!(!r.is_error(), "setup through the relayer failed: {r:?}");
    }
    assert_eq!(via.cmd(&[&b"GET"[..], b"bb:1mb"]), Reply::Bulk(one_mb));
    assert_eq!(via.cmd(&[&b"GET"[..], b"bb:3mb"]), Reply::Bulk(three_mb));
    assert_eq!(via.cmd(&["GET", "bb:tricky"]), Reply::Bulk(tricky));

    let reads: Vec<Vec<&str>> = vec![
        vec!["GET", "bb:bin"],
        vec!["GET", "bb:tricky"],
        vec!["GET", "bb:1mb"],
        vec!["GET", "bb:3mb"],
        vec!["GET", "bb:empty"],
        vec!["GET", "bb:missing"],
        vec!["HGETALL", "bb:h"],
        vec!["HGETALL", "bb:missing"],
        vec!["LRANGE", "bb:l", "0", "-1"],
        vec!["ZRANGE", "bb:z", "0", "-1", "WITHSCORES"],
        vec!["XRANGE", "bb:x", "-", "+"],
        vec!["TYPE", "bb:h"],
        vec!["EXISTS", "bb:bin", "bb:h", "bb:missing"],
        vec!["LPUSH", "bb:bin", "x"],
        vec![
            "EVAL",
            "return {1, {2, {3, 'x', {}}}, redis.status_reply('fine'), redis.error_reply('ERR boom'), false, 'y'}",
            "0",
        ],
        vec!["EVAL", "return redis.error_reply('MYERR custom')", "0"],
        vec!["EVAL", "return nil", "0"],
        vec!["COMMAND", "INFO", "get", "set"],
        vec!["SCAN", "0", "MATCH", "bb:*", "COUNT", "1000"],
        vec!["NOSUCHCOMMAND", "a"],
        vec!["GET"],
        vec!["MGET", "bb:bin", "bb:missing", "bb:tricky", "bb:empty"],
    ];
    // One at a time, then all pipelined in one write: the same bytes as redis' own replies.
    let mut expected = Vec::new();
    for cmd in &reads {
        let d = direct.cmd_raw(cmd);
        let v = via.cmd_raw(cmd);
        assert!(
            v == d,
            "{cmd:?}: relayer replied {} but redis {}",
            show_bytes(&v, 300),
            show_bytes(&d, 300)
        );
        expected.push(d);
    }
    via.send_many(&reads);
    for (cmd, d) in reads.iter().zip(&expected) {
        let v = via.read_raw_reply();
        assert!(
            &v == d,
            "pipelined {cmd:?}: relayer replied {} but redis {}",
            show_bytes(&v, 300),
            show_bytes(d, 300)
        );
    }

    // EXEC's array holds the replies of its commands, nested arrays and errors included.
    let block: Vec<Vec<&str>> = vec![
        vec!["HGETALL", "bb:h"],
        vec!["XRANGE", "bb:x", "-", "+"],
        vec!["LPUSH", "bb:bin", "x"],
        vec!["GET", "bb:tricky"],
        vec!["EVAL", "return {1, {2, {3}}, redis.status_reply('ok')}", "0"],
    ];
    let mut want = format!("*{}\r\n", block.len()).into_bytes();
    for cmd in &block {
        want.extend(direct.cmd_raw(cmd));
    }
    assert_eq!(via.cmd(&["MULTI"]), Reply::ok());
    for cmd in &block {
        assert_eq!(via.cmd(cmd), Reply::status("QUEUED"), "{cmd:?}");
    }
    let got = via.cmd_raw(&["EXEC"]);
    assert!(
        got == want,
        "EXEC: relayer replied {} expected {}",
        show_bytes(&got, 400),
        show_bytes(&want, 400)
    );
}

/// redis-cli works through the relayer over TCP and the unix socket, -n included, and inline
/// commands (plain text lines, quotes, bare LF, empty lines) get the same replies as from redis.
#[test]
fn redis_cli_and_inline_commands() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let port = relayer.port().to_string();
    let sock = relayer.unix_path();
    let sock = sock.to_str().unwrap();
    let cli = |args: &[&str]| -> String {
        let (st, out, err) = redis_cli(args);
        assert!(st.success(), "redis-cli {args:?}: {st} {err}");
        out.trim_end_matches('\n').to_string()
    };
    let tcp = ["-h", "127.0.0.1", "-p", &port];
    assert_eq!(cli(&[&tcp[..], &["PING"]].concat()), "PONG");
    assert_eq!(cli(&[&tcp[..], &["SET", "cli:k", "hello world"]].concat()), "OK");
    assert_eq!(cli(&[&tcp[..], &["GET", "cli:k"]].concat()), "hello world");
    assert_eq!(cli(&["-s", sock, "GET", "cli:k"]), "hello world");
    assert_eq!(cli(&["-s", sock, "INCRBY", "cli:n", "5"]), "5");
    assert_eq!(
        cli(&[&tcp[..], &["-n", "2", "SET", "cli:db2", "two"]].concat()),
        "OK"
    );
    assert_eq!(cli(&[&tcp[..], &["-n", "2", "GET", "cli:db2"]].concat()), "two");
    assert_eq!(redis.cli(&["-n", "2", "GET", "cli:db2"]), "two");
    assert_eq!(redis.cli(&["-n", "0", "EXISTS", "cli:db2"]), "0");
    assert_eq!(redis.cli(&["GET", "cli:k"]), "hello world");

    let inline: &[&[u8]] = &[
        b"PING\r\n",
        b"PING hi\r\n",
        b"SET inl:k hello\r\n",
        b"GET inl:k\n",
        b"\r\n",
        b"   \r\n",
        b"SET inl:q \"hello world\\r\\n\"\r\n",
        b"GET inl:q\r\n",
        b"SET inl:s 'single \"quoted\"'\r\n",
        b"GET inl:s\r\n",
        b"  ECHO   spaced   \r\n",
        b"get inl:k\r\n",
        b"*2\r\n$3\r\nGET\r\n$5\r\ninl:k\r\n",
        b"EXISTS inl:k inl:q nope\r\n",
    ];
    // Redis answers nothing to empty lines.
    let replies = inline.iter().filter(|l| !l.trim_ascii().is_empty()).count();
    let all: Vec<u8> = inline.concat();
    let mut direct = redis.client();
    let mut via = relayer.client();
    for c in [&mut direct, &mut via] {
        // Line by line, then everything in one write.
        for l in inline {
            c.send_raw(l);
        }
        c.send_raw(&all);
    }
    for i in 0..2 * replies {
        let d = direct.read_raw_reply();
        let v = via.read_raw_reply();
        assert!(
            v == d,
            "inline reply {i}: relayer {} redis {}",
            show_bytes(&v, 200),
            show_bytes(&d, 200)
        );
    }
    assert_eq!(via.q("GET inl:q"), Reply::bulk("hello world\r\n"));
}

/// PING, ECHO, HELLO, CLIENT SETNAME/GETNAME/SETINFO, QUIT are answered by the relayer; unknown
/// commands and wrong arity get redis' own errors; blocking commands are refused for now.
#[test]
fn commands_answered_by_the_relayer() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    let mut other = relayer.client_at(1);
    assert_eq!(c.q("PING"), Reply::status("PONG"));
    assert_eq!(c.q("ping hello"), Reply::bulk("hello"));
    assert_eq!(c.cmd(&[&b"ECHO"[..], b"a\r\nb\x00"]), Reply::bulk("a\r\nb\x00"));
    let h = c.q("HELLO 2");
    assert!(h.as_array().is_some_and(|a| !a.is_empty()), "HELLO 2: {h:?}");
    // HELLO 3 is served on a connection of the client's own (dedicated.rs).
    let h4 = c.q("HELLO 4");
    assert!(h4.is_error_starting("NOPROTO"), "HELLO 4: {h4:?}");
    assert_eq!(c.q("CLIENT SETNAME worker-1"), Reply::ok());
    assert_eq!(c.q("CLIENT GETNAME"), Reply::bulk("worker-1"));
    assert_eq!(other.q("CLIENT GETNAME"), Reply::Nil);
    // Redis' own answer (redis-server 7.0 does not know SETINFO), once the relayer knows it.
    relayer.wait_log_line(&["commands learned from the backend's COMMAND"], HANG);
    for cmd in [
        &["CLIENT", "SETINFO", "LIB-NAME", "phpredis"][..],
        &["CLIENT", "SETINFO", "LIB-VER", "6.0.2"],
    ] {
        assert_eq!(c.cmd_raw(cmd), redis.client().cmd_raw(cmd), "{cmd:?}");
    }
    // A name is the client's own: the shared upstream connection is not renamed.
    let names = redis.cli(&["CLIENT", "LIST"]);
    assert!(!names.contains("worker-1"), "upstream renamed: {names}");

    let mut direct = redis.client();
    for cmd in [
        vec!["NOSUCHCOMMAND", "x"],
        vec!["GET"],
        vec!["SET", "k"],
        vec!["PING", "a", "b"],
    ] {
        assert_eq!(c.cmd(&cmd), direct.cmd(&cmd), "{cmd:?}");
    }
    // A blocking command runs on a connection of the client's own (dedicated.rs).
    assert_eq!(c.q("BLPOP somelist 0.01"), Reply::NilArray);
    // Still usable afterwards, and replies stay in order.
    let got = c.pipeline(&[
        vec!["SET", "local:k", "v"],
        vec!["PING"],
        vec!["GET", "local:k"],
        vec!["ECHO", "e"],
        vec!["GET", "local:k"],
    ]);
    assert_eq!(
        got,
        vec![
            Reply::ok(),
            Reply::status("PONG"),
            Reply::bulk("v"),
            Reply::bulk("e"),
            Reply::bulk("v")
        ]
    );
    c.send(&["GET", "local:k"]);
    c.send(&["QUIT"]);
    c.send(&["GET", "local:k"]);
    assert_eq!(c.read_reply(), Reply::bulk("v"));
    assert_eq!(c.read_reply(), Reply::ok());
    c.expect_closed();
    assert_eq!(other.q("GET local:k"), Reply::bulk("v"));
}

/// Target URLs: redis:// with a password and a DB, and a unix socket.
#[test]
fn target_url_forms() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let sock_dir = temp_dir();
    let sock = sock_dir.path().join("redis.sock");
    let unix_redis = Redis::start_with(&["--unixsocket", sock.to_str().unwrap(), "--unixsocketperm", "700"]);
    let p = redis.port();
    let (l1, l2, l3) = (free_port(), free_port(), free_port());
    let config = [
        redis_entry(
            &format!("tcp://127.0.0.1:{l1}"),
            &format!("redis://:s3cret@127.0.0.1:{p}/4"),
            "",
        ),
        redis_entry(
            &format!("tcp://127.0.0.1:{l2}"),
            &format!("redis://default:s3cret@127.0.0.1:{p}"),
            "",
        ),
        redis_entry(
            &format!("tcp://127.0.0.1:{l3}"),
            &format!("unix:{}", sock.display()),
            "",
        ),
    ]
    .concat();
    let relayer = Relayer::start(&config);
    let mut c = relayer.client_at(0);
    assert_eq!(c.q("SET url:k in-db-4"), Reply::ok());
    assert_eq!(c.q("GET url:k"), Reply::bulk("in-db-4"));
    let mut c2 = relayer.client_at(1);
    assert_eq!(c2.q("SET url:k in-db-0"), Reply::ok());
    let mut d = redis.client();
    assert_eq!(d.q("AUTH s3cret"), Reply::ok());
    assert_eq!(d.q("GET url:k"), Reply::bulk("in-db-0"));
    assert_eq!(d.q("SELECT 4"), Reply::ok());
    assert_eq!(d.q("GET url:k"), Reply::bulk("in-db-4"));
    // SELECT 0 from a client whose default DB is 4 goes to DB 0.
    assert_eq!(c.q("SELECT 0"), Reply::ok());
    assert_eq!(c.q("GET url:k"), Reply::bulk("in-db-0"));

    let mut c3 = relayer.client_at(2);
    assert_eq!(c3.q("SET url:u via-unix"), Reply::ok());
    assert_eq!(
        unix_redis.query::<Option<String>>(&["GET", "url:u"]),
        Some("via-unix".into())
    );
}

/// Clients that leave with replies still pending (thousands of GETs sent, then the connection
/// dropped), inside a MULTI block or in the middle of a frame, do not disturb the others: their
/// replies are dropped and the other clients' replies stay aligned.
#[test]
fn clients_leaving_with_pending_replies_do_not_disturb_others() {
    let redis = Redis::start();
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, "maxConnections = 1"));
    let big = "x".repeat(4000);
    assert_eq!(relayer.client().q(&format!("SET leave:big {big}")), Reply::ok());
    let r = relayer.clone();
    run_threads(16, move |id| {
        if id % 2 == 0 {
            let mut c = r.client_at(id % 4 / 2);
            for i in 0..150 {
                let v = format!("{id}-{i}");
                let k = format!("leave:{id}");
                let got = c.pipeline(&[vec!["SET", &k, &v], vec!["GET", &k], vec!["STRLEN", "leave:big"]]);
                let want = vec![Reply::ok(), Reply::bulk(&v), Reply::Int(4000)];
                if got != want {
                    return Err(format!("iteration {i}: expected {want:?}, got {got:?}"));
                }
            }
        } else {
            for round in 0..15 {
                let mut c = r.client_at(round % 2);
                let mut out = Vec::new();
                for _ in 0..2000 {
                    out.extend(encode_command(&["GET", "leave:big"]));
                }
                match round % 3 {
                    0 => out.extend(b"*2\r\n$3\r\nGET\r\n$9\r\nleave:b"),
                    1 => {
                        out.extend(encode_command(&["MULTI"]));
                        out.extend(encode_command(&["SET", "leave:multi", "never"]));
                    }
                    _ => out.extend(encode_command(&["SELECT", "7"])),
                }
                let _ = c.try_send_raw(&out);
                drop(c);
            }
        }
        Ok(())
    });
    let mut c = relayer.client();
    assert_eq!(c.q("GET leave:multi"), Reply::Nil);
    assert_eq!(c.q("STRLEN leave:big"), Reply::Int(4000));
}

/// Status and error lines far over 64 KiB (a script's `{ok=...}` and `{err=...}`, which Redis
/// answers) pass through byte for byte, on the shared connection and on a client's own (after
/// WATCH), while another client pipelines SETs on the same shared connection: none of its
/// replies is an error. (The reply scanner refused lines over 64 KiB and reset the connection.)
#[test]
fn long_status_and_error_lines_pass_through() {
    let redis = Redis::start();
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, "maxConnections = 1"));
    let scripts = [
        "return {ok=string.rep('x',200000)}",
        "return {err=string.rep('y',300000)}",
        "return {ok=string.rep('z',70000)..'\\r'}",
    ];
    let mut direct = redis.client();
    let want: Vec<Vec<u8>> = scripts
        .iter()
        .map(|s| direct.cmd_raw(&["EVAL", s, "0"]))
        .collect();
    assert_eq!(want[0].len(), 200_003);
    assert!(want[1].starts_with(b"-yyy"), "{}", show_bytes(&want[1], 20));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (relayer, stop) = (relayer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = relayer.client();
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 20 {
                let cmds: Vec<Vec<String>> = (0..50)
                    .map(|i| vec!["SET".into(), format!("long:{i}"), format!("{rounds}")])
                    .collect();
                for (i, r) in c.pipeline(&cmds).into_iter().enumerate() {
                    assert_eq!(r, Reply::ok(), "round {rounds}, SET {i}");
                }
                rounds += 1;
            }
            rounds
        })
    };
    for round in 0..5 {
        let mut c = relayer.client_at(round % 2);
        for (s, w) in scripts.iter().zip(&want) {
            let got = c.cmd_raw(&["EVAL", s, "0"]);
            assert!(got == *w, "round {round}: {}", show_bytes(&got, 40));
        }
        // On the client's own connection too.
        assert_eq!(c.q("WATCH long:w"), Reply::ok());
        let got = c.cmd_raw(&["EVAL", scripts[0], "0"]);
        assert!(got == want[0], "after WATCH: {}", show_bytes(&got, 40));
        assert_eq!(c.q("UNWATCH"), Reply::ok());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(rounds >= 20);
    assert!(!relayer.log().contains("corrupt reply"), "{}", relayer.log());
}

/// The relayer keeps the backend from holding megabytes of replies for its one connection: 40
/// clients each pipeline 100 GETs of 10 KB at once (40 MB of replies asked for), and the output
/// buffer Redis holds for the relayer's connection (`omem` in CLIENT LIST, sampled throughout)
/// stays within the window (about 1 MiB of replies owed, plus what Redis adds while it writes).
/// Every client gets its replies, in order.
#[test]
fn the_backend_holds_no_more_than_a_window_of_replies_for_the_shared_connection() {
    const CLIENTS: usize = 40;
    const GETS: usize = 100;
    const KEYS: usize = 200;
    let redis = Redis::start();
    let mut fill = redis.client();
    let value = |k: usize| format!("{k:05}").repeat(2048);
    let sets: Vec<Vec<String>> = (0..KEYS)
        .map(|k| vec!["SET".into(), format!("big:{k}"), value(k)])
        .collect();
    assert!(fill.pipeline(&sets).iter().all(Reply::is_ok));
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, ""));
    // The relayer's connection is the one that is not ours.
    let mut sampler = redis.client();
    let own_id = sampler.cmd(&["CLIENT", "ID"]).as_int().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let list = sampler.cmd(&["CLIENT", "LIST"]).as_str().unwrap();
                for line in list.lines() {
                    let field = |name: &str| {
                        line.split(' ')
                            .find_map(|f| f.strip_prefix(name))
                            .and_then(|v| v.parse::<u64>().ok())
                    };
                    if field("id=") != Some(own_id as u64) {
                        peak = peak.max(field("omem=").unwrap_or(0));
                    }
                }
            }
            peak
        })
    };
    let r = relayer.clone();
    run_threads(CLIENTS, move |id| {
        let mut c = r.client();
        let keys: Vec<usize> = (0..GETS).map(|i| (id * 7 + i * 13) % KEYS).collect();
        let gets: Vec<Vec<String>> = keys
            .iter()
            .map(|k| vec!["GET".into(), format!("big:{k}")])
            .collect();
        let replies = c.pipeline(&gets);
        for (k, reply) in keys.iter().zip(replies) {
            if reply.as_bytes() != Some(value(*k).as_bytes()) {
                return Err(format!("client {id}: wrong reply for big:{k}"));
            }
        }
        Ok(())
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = watching.join().unwrap();
    assert!(peak > 0, "the sampler never saw replies waiting in Redis");
    assert!(
        peak < 4 << 20,
        "Redis held {peak} bytes of replies for the relayer's connection"
    );
}
