//! The Prometheus endpoint: its counters move as traffic goes through the relayer.

use crate::helpers::metrics_page;
use integration::timeouts::{EXIT, HANG};
use integration::*;
use std::collections::HashMap;

/// GET /metrics, as `metric{labels}` -> value, for the lines of smart-relayer's own metrics.
fn scrape(port: u16) -> HashMap<String, f64> {
    metrics_page(port)
        .lines()
        .filter(|l| l.starts_with("smart_relayer_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, name: &str, listen: &str, outcome: Option<&str>) -> f64 {
    let key = match outcome {
        Some(o) => format!("{name}{{listen=\"{listen}\",outcome=\"{o}\"}}"),
        None => format!("{name}{{listen=\"{listen}\"}}"),
    };
    m.get(&key)
        .copied()
        .unwrap_or_else(|| panic!("no {key} in {m:#?}"))
}

#[test]
fn counters_move_with_traffic() {
    let redis = Redis::start();
    let metrics_port = free_port();
    let listen = tcp_listen();
    let relayer = Relayer::start(&format!(
        "metricsListen = \"127.0.0.1:{metrics_port}\"\n{}",
        redis_entry_mode("smart", &listen, &redis.url(), "")
    ));
    // The listener accepts once bound, which is before its worker has registered the entry's
    // metrics: they appear a moment later. The connection that saw the relayer ready is closed,
    // and counted gone once its session saw the close: the gauge is 0 then.
    let gauge = format!("smart_relayer_clients_connected{{listen=\"{listen}\"}}");
    let before = poll_until(HANG, "the entry's metrics, no client connected", || {
        Some(scrape(metrics_port)).filter(|m| m.get(&gauge) == Some(&0.0))
    });
    let count =
        |m: &HashMap<String, f64>, outcome| value(m, "smart_relayer_commands_total", &listen, Some(outcome));
    assert_eq!(
        value(&before, "smart_relayer_clients_connected", &listen, None),
        0.0
    );

    let mut c = relayer.client();
    for i in 0..10 {
        assert_eq!(c.cmd(&["SET", &format!("m:{i}"), "v"]), Reply::ok()); // acknowledged
        assert_eq!(c.cmd(&["GET", &format!("m:{i}")]), Reply::bulk("v")); // forwarded
    }
    for _ in 0..5 {
        assert_eq!(c.q("PING"), Reply::Status("PONG".into())); // local
    }
    // A background write the backend refuses, and a dropped upstream connection.
    assert_eq!(c.cmd(&["HSET", "m:0", "f", "v"]), Reply::Int(1));
    redis.client().q("CLIENT KILL TYPE normal");
    wait_until(HANG, "the metrics to show the traffic", || {
        let now = scrape(metrics_port);
        value(&now, "smart_relayer_background_errors_total", &listen, None) >= 1.0
            && value(&now, "smart_relayer_reconnects_total", &listen, None) >= 1.0
    });
    let after = scrape(metrics_port);
    assert_eq!(
        value(&after, "smart_relayer_clients_connected", &listen, None),
        1.0
    );
    assert_eq!(
        count(&after, "acknowledged") - count(&before, "acknowledged"),
        11.0
    );
    assert_eq!(count(&after, "forwarded") - count(&before, "forwarded"), 10.0);
    assert_eq!(count(&after, "local") - count(&before, "local"), 5.0);
    drop(c);
    wait_until(HANG, "the client gauge to drop", || {
        value(
            &scrape(metrics_port),
            "smart_relayer_clients_connected",
            &listen,
            None,
        ) == 0.0
    });
}

#[test]
fn metrics_port_in_use_stops_the_start() {
    let redis = Redis::start();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let listen = tcp_listen();
    let mut relayer = Relayer::spawn(&format!(
        "metricsListen = \"127.0.0.1:{port}\"\n{}",
        redis_entry(&listen, &redis.url(), "")
    ));
    let status = relayer.wait_exit(EXIT);
    assert!(!status.success(), "started with its metrics port taken");
    assert!(
        relayer.log().contains("cannot start the metrics endpoint"),
        "{}",
        relayer.log()
    );
}
