//! SELECT: per-client DB on a shared upstream connection, redundant SELECTs not sent (shown by
//! the backend's INFO commandstats), redis' own errors.

use integration::*;

/// Many clients alternate between DB 0 and DB 1 on one shared upstream connection, interleaving
/// SET/GET, and each sees its data in the right DB; the backend gets strictly fewer SELECTs than
/// the clients sent.
#[test]
fn clients_keep_their_own_db_and_redundant_selects_are_not_sent() {
    let redis = Redis::start();
    let relayer = std::sync::Arc::new(Relayer::for_redis(&redis, "maxConnections = 1"));
    assert_eq!(redis.client().q("CONFIG RESETSTAT"), Reply::ok());
    const CLIENTS: usize = 40;
    const ROUNDS: usize = 40;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r = relayer.clone();
    let sent2 = sent.clone();
    run_threads(CLIENTS, move |id| {
        let mut c = r.client_at(id % 2);
        let key = format!("sel:{id}");
        let mut model: [Option<String>; 2] = [None, None];
        let mut selects = 0u64;
        for round in 0..ROUNDS {
            let a = round % 2;
            let b = 1 - a;
            let va = format!("db{a}:{id}:{round}");
            let vb = format!("db{b}:{id}:{round}");
            let cmds: Vec<Vec<String>> = vec![
                vec!["SELECT".into(), a.to_string()],
                vec!["GET".into(), key.clone()],
                vec!["SET".into(), key.clone(), va.clone()],
                vec!["SELECT".into(), a.to_string()], // redundant, as PHP apps do
                vec!["GET".into(), key.clone()],
                vec!["INCR".into(), format!("{key}:n")],
                vec!["SELECT".into(), b.to_string()],
                vec!["GET".into(), key.clone()],
                vec!["SET".into(), key.clone(), vb.clone()],
                vec!["GET".into(), key.clone()],
            ];
            selects += 3;
            let old_a = model[a].clone();
            let old_b = model[b].clone();
            let want = vec![
                Reply::ok(),
                old_a.map_or(Reply::Nil, Reply::bulk),
                Reply::ok(),
                Reply::ok(),
                Reply::bulk(&va),
                Reply::Int(round as i64 / 2 + 1),
                Reply::ok(),
                old_b.map_or(Reply::Nil, Reply::bulk),
                Reply::ok(),
                Reply::bulk(&vb),
            ];
            model[a] = Some(va);
            model[b] = Some(vb);
            let got = c.pipeline(&cmds);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if g != w {
                    return Err(format!(
                        "round {round}, command {i} {:?}: expected {w:?}, got {g:?}",
                        cmds[i]
                    ));
                }
            }
        }
        sent2.fetch_add(selects, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    // In the backend, each DB holds what the clients wrote there last.
    let d = redis.backend_client();
    for db in 0..2 {
        assert_eq!(d.query::<(), _>(&["SELECT", &db.to_string()]), Ok(()));
        for id in 0..CLIENTS {
            // The last round wrote both DBs.
            let want = format!("db{db}:{id}:{}", ROUNDS - 1);
            assert_eq!(
                d.query::<Option<String>, _>(&["GET", &format!("sel:{id}")]),
                Ok(Some(want)),
                "db {db}"
            );
        }
    }
    let client_selects = sent.load(std::sync::atomic::Ordering::Relaxed);
    let upstream = redis.command_calls("select");
    eprintln!("SELECTs sent by clients: {client_selects}, received by redis: {upstream}");
    assert!(
        upstream < client_selects,
        "redis received {upstream} SELECTs for {client_selects} sent by the clients"
    );
}

/// A client repeating SELECT 3 a thousand times causes at most a handful of SELECTs upstream.
#[test]
fn repeated_select_is_sent_at_most_a_few_times() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "maxConnections = 1");
    let mut d = redis.client();
    assert_eq!(d.q("CONFIG RESETSTAT"), Reply::ok());
    let mut c = relayer.client();
    let batch: Vec<Vec<&str>> = (0..100).map(|_| vec!["SELECT", "3"]).collect();
    for _ in 0..10 {
        for r in c.pipeline(&batch) {
            assert_eq!(r, Reply::ok());
        }
    }
    assert_eq!(c.q("SET rep:k in3"), Reply::ok());
    for _ in 0..10 {
        assert_eq!(c.q("SELECT 3"), Reply::ok());
        assert_eq!(c.q("GET rep:k"), Reply::bulk("in3"));
    }
    let upstream = redis.command_calls("select");
    eprintln!("1010 SELECT 3 from the client, {upstream} at redis");
    assert!(
        upstream <= 5,
        "1010 x SELECT 3 caused {upstream} SELECTs upstream"
    );
    let b = redis.backend_client();
    assert_eq!(b.query::<(), _>(&["SELECT", "3"]), Ok(()));
    assert_eq!(
        b.query::<Option<String>, _>(&["GET", "rep:k"]),
        Ok(Some("in3".into()))
    );
}

/// Bad SELECTs get redis' own error texts and leave the client on its DB.
#[test]
fn select_errors_match_redis_and_keep_the_db() {
    let redis = Redis::start();
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    let mut d = redis.client();
    assert_eq!(c.q("SELECT 2"), Reply::ok());
    assert_eq!(c.q("SET selerr:k in2"), Reply::ok());
    for cmd in [
        vec!["SELECT", "abc"],
        vec!["SELECT", "1.5"],
        vec!["SELECT", ""],
        vec!["SELECT", "99999"],
        vec!["SELECT", "16"],
        vec!["SELECT", "-1"],
        vec!["SELECT", "99999999999999999999999"],
        // Redis reads integers strictly: no sign but '-', no leading zero, no space.
        vec!["SELECT", "09"],
        vec!["SELECT", "+9"],
        vec!["SELECT", " 1"],
        vec!["SELECT", "-0"],
        vec!["SELECT", "4294967296"],
        vec!["SELECT", "2147483648"],
        vec!["SELECT"],
        vec!["SELECT", "1", "2"],
    ] {
        let want = d.cmd(&cmd);
        assert!(want.is_error(), "redis accepted {cmd:?}");
        let got = c.cmd(&cmd);
        assert_eq!(got, want, "{cmd:?}: relayer vs redis");
        assert_eq!(
            c.q("GET selerr:k"),
            Reply::bulk("in2"),
            "after {cmd:?} the client left DB 2"
        );
    }
    assert_eq!(c.q("SET selerr:k2 still2"), Reply::ok());
    assert_eq!(d.q("SELECT 2"), Reply::ok());
    assert_eq!(d.q("GET selerr:k2"), Reply::bulk("still2"));
    // Another client is on DB 0, unaffected.
    let mut other = relayer.client();
    assert_eq!(other.q("GET selerr:k"), Reply::Nil);
    // A valid DB not used before (checked upstream), then back.
    assert_eq!(c.q("SELECT 15"), Reply::ok());
    assert_eq!(c.q("SET selerr:k in15"), Reply::ok());
    assert_eq!(c.q("SELECT 2"), Reply::ok());
    assert_eq!(c.q("GET selerr:k"), Reply::bulk("in2"));
    assert_eq!(d.q("SELECT 15"), Reply::ok());
    assert_eq!(d.q("GET selerr:k"), Reply::bulk("in15"));
    // Inside MULTI a SELECT Redis refuses is queued, and is its error in EXEC's array.
    let block = [
        vec!["MULTI"],
        vec!["SELECT", "09"],
        vec!["GET", "selerr:k"],
        vec!["EXEC"],
    ];
    assert_eq!(d.q("SELECT 2"), Reply::ok());
    let want: Vec<Vec<u8>> = block.iter().map(|cmd| d.cmd_raw(cmd)).collect();
    let got: Vec<Vec<u8>> = block.iter().map(|cmd| c.cmd_raw(cmd)).collect();
    assert_eq!(got, want);
}

/// With `--databases 4` on the backend, SELECT 5 is refused with redis' text (the relayer does not
/// assume 16 DBs).
#[test]
fn select_out_of_range_follows_the_backend() {
    let redis = Redis::start_with(&["--databases", "4"]);
    let relayer = Relayer::for_redis(&redis, "");
    let mut c = relayer.client();
    let mut d = redis.client();
    assert_eq!(c.q("SELECT 3"), Reply::ok());
    assert_eq!(c.q("SET oor:k in3"), Reply::ok());
    let want = d.q("SELECT 5");
    assert!(want.is_error());
    assert_eq!(c.q("SELECT 5"), want);
    assert_eq!(c.q("SELECT 5"), want, "second time (cached)");
    assert_eq!(c.q("GET oor:k"), Reply::bulk("in3"));
}
