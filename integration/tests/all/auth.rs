//! AUTH from clients: a listener's `password` works as Redis' requirepass. Every exchange is
//! run against a real redis-server started with the same requirepass and the replies compared
//! (errors exactly; successful HELLO replies differ in server fields and are checked apart).

use integration::timeouts::HANG;
use integration::*;

const PASSWORD: &str = "s3cret pass";

fn relayer_with_password(redis: &Redis, password: &str) -> Relayer {
    Relayer::for_redis(redis, &format!("password = {password:?}"))
}

/// Runs one client's exchange against both servers and returns the first difference.
fn same_replies(relayed: &mut Client, direct: &mut Client, steps: &[Vec<&str>]) -> Vec<String> {
    let mut diffs = Vec::new();
    for step in steps {
        let (a, b) = (relayed.cmd(step), direct.cmd(step));
        if a != b {
            diffs.push(format!("{step:?}: relayer {a:?}, redis {b:?}"));
        }
    }
    diffs
}

#[test]
fn password_works_like_requirepass() {
    let backend = Redis::start();
    let reference = Redis::start_with(&["--requirepass", PASSWORD]);
    let relayer = relayer_with_password(&backend, PASSWORD);
    let (mut r, mut d) = (relayer.client(), reference.client());
    let steps: Vec<Vec<&str>> = vec![
        vec!["PING"],
        vec!["GET", "k"],
        vec!["SET", "k", "v"],
        vec!["MULTI"],
        vec!["SELECT", "0"],
        vec!["CLIENT", "SETNAME", "x"],
        vec!["HELLO", "2"],
        vec!["HELLO", "2", "AUTH", "default", "wrong"],
        vec!["HELLO", "2", "AUTH", "bob", PASSWORD],
        vec!["AUTH"],
        vec!["AUTH", "a", "b", "c"],
        vec!["AUTH", "wrong"],
        vec!["AUTH", "s3cret pas"],
        vec!["AUTH", "bob", PASSWORD],
        vec!["AUTH", "default", "wrong"],
        vec!["PING"],
        vec!["AUTH", PASSWORD],
        vec!["PING"],
        vec!["SET", "k", "v"],
        vec!["GET", "k"],
        vec!["AUTH", "wrong"],
        // A failed AUTH after a good one keeps the client authenticated, as in Redis.
        vec!["GET", "k"],
        vec!["RESET"],
        vec!["GET", "k"],
        vec!["AUTH", "default", PASSWORD],
        vec!["GET", "k"],
    ];
    let diffs = same_replies(&mut r, &mut d, &steps);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    // HELLO with the right AUTH authenticates (its reply names the server, so not compared).
    let (mut r, mut d) = (relayer.client(), reference.client());
    for c in [&mut r, &mut d] {
        let hello = c.cmd(&["HELLO", "2", "AUTH", "default", PASSWORD]);
        assert!(hello.as_array().is_some(), "{hello:?}");
        assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));
    }

    // Unauthenticated clients may QUIT.
    let (mut r, mut d) = (relayer.client(), reference.client());
    let diffs = same_replies(&mut r, &mut d, &[vec!["QUIT"]]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    r.wait_closed(HANG).unwrap();
}

/// Before AUTH, Redis refuses more than 10 arguments and arguments over 16 KiB with a protocol
/// error and closes the connection; after AUTH both are fine.
#[test]
fn tighter_parser_limits_before_auth() {
    let backend = Redis::start();
    let reference = Redis::start_with(&["--requirepass", PASSWORD]);
    let relayer = relayer_with_password(&backend, PASSWORD);
    let eleven: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..10).map(|i| format!("k{i}")))
        .collect();
    let big = "x".repeat(16 * 1024 + 1);
    let at_limit = "y".repeat(16 * 1024);
    let cases: Vec<Vec<&str>> = vec![eleven.iter().map(String::as_str).collect(), vec!["AUTH", &big]];
    for case in &cases {
        let mut r = relayer.client();
        let mut d = reference.client();
        let (a, b) = (r.cmd(case), d.cmd(case));
        assert_eq!(a, b, "{} arguments", case.len());
        assert!(
            a.is_error_starting("ERR Protocol error: unauthenticated"),
            "{a:?}"
        );
        r.wait_closed(HANG).unwrap();
    }
    // At the limits: a normal (wrong) AUTH reply, and the connection stays.
    let mut r = relayer.client();
    let mut d = reference.client();
    let diffs = same_replies(&mut r, &mut d, &[vec!["AUTH", &at_limit], vec!["AUTH", PASSWORD]]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Authenticated: no such limits.
    let args: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_eq!(r.cmd(&args), Reply::int(0));
    assert_eq!(r.cmd(&["SET", "big", &big]), Reply::ok());
    assert_eq!(r.cmd(&["STRLEN", "big"]), Reply::int(big.len() as i64));
}

/// Without a password, AUTH gets the answer of a Redis with no password set.
#[test]
fn auth_without_password_answers_like_redis() {
    let backend = Redis::start();
    let relayer = Relayer::for_redis(&backend, "");
    let (mut r, mut d) = (relayer.client(), backend.client());
    let steps: Vec<Vec<&str>> = vec![
        vec!["AUTH", "anything"],
        vec!["AUTH", "default", "anything"],
        vec!["AUTH", "bob", "anything"],
        vec!["AUTH"],
        // User names are case-sensitive: DEFAULT is not the default user.
        vec!["AUTH", "DEFAULT", "anything"],
        vec!["HELLO", "2", "AUTH", "DEFAULT", "anything"],
        vec!["HELLO", "2", "AUTH", "Default", "anything", "SETNAME", "x"],
        vec!["PING"],
    ];
    let diffs = same_replies(&mut r, &mut d, &steps);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// One client's failures do not touch another's session; an authenticated client keeps working
/// while others are refused.
#[test]
fn clients_authenticate_independently() {
    let backend = Redis::start();
    let relayer = relayer_with_password(&backend, PASSWORD);
    let mut good = relayer.client();
    assert_eq!(good.cmd(&["AUTH", PASSWORD]), Reply::ok());
    let mut bad = relayer.client();
    for _ in 0..20 {
        assert!(bad.cmd(&["AUTH", "guess"]).is_error_starting("WRONGPASS"));
        assert!(bad.cmd(&["SET", "k", "stolen"]).is_error_starting("NOAUTH"));
        assert!(!good.cmd(&["INCR", "n"]).is_error());
    }
    assert_eq!(backend.query::<Option<String>>(&["GET", "n"]), Some("20".into()));
    assert_eq!(backend.query::<i64>(&["EXISTS", "k"]), 0);
}

/// Smart mode: a write from an unauthenticated client is refused, never acknowledged.
#[test]
fn smart_mode_refuses_writes_before_auth() {
    let backend = Redis::start();
    let relayer = Relayer::smart(&backend.url(), &format!("password = {PASSWORD:?}"));
    let mut c = relayer.client();
    assert!(c.cmd(&["SET", "k", "v"]).is_error_starting("NOAUTH"));
    assert_eq!(c.cmd(&["AUTH", PASSWORD]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn empty_password_is_a_config_error() {
    let out = check_config(&format!(
        "[[relayer]]\nprotocol = \"redis\"\nlisten = \"tcp://127.0.0.1:{}\"\nurl = \"tcp://127.0.0.1:6379\"\npassword = \"\"\n",
        free_port()
    ));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("'password': must not be empty"),
        "{}",
        out.stderr
    );
}

/// The url's user and password are percent-decoded, as Go's url.Parse did for the original's
/// configs: `p%40ss` is the password `p@ss`.
#[test]
fn url_credentials_are_percent_decoded() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut admin = redis.client();
    assert_eq!(admin.cmd(&["AUTH", "admin"]), Reply::ok());
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "app@x",
            "on",
            ">p@ss:w/rd %",
            "~*",
            "&*",
            "+@all"
        ]),
        Reply::ok()
    );
    let url = format!("redis://app%40x:p%40ss%3Aw%2Frd%20%25@127.0.0.1:{}", redis.port());
    let relayer = Relayer::start(&redis_entry(&tcp_listen(), &url, ""));
    let mut c = relayer.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Reply::bulk("app@x"));
    // A bad escape is a configuration error naming the url (without the password).
    let out = check_config(&redis_entry(&tcp_listen(), "redis://app:p%4@127.0.0.1:6379", ""));
    assert!(!out.status.success());
    assert!(out.stderr.contains("percent"), "{}", out.stderr);
    assert!(!out.stderr.contains("p%4"), "{}", out.stderr);
}
