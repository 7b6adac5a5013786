//! Credentials and TLS to the backend: rediss:// against a redis-server serving TLS with
//! certificates made by the test, client certificates, a wrong CA, a wrong server name, ACL
//! users and passwords from the url, a refused AUTH that recovers once the server accepts it, and
//! the configuration errors of the tls keys.

use integration::timeouts::HANG;
use integration::*;

/// `tlsCaFile = "..."` and more `key = "value"` lines.
fn keys(pairs: &[(&str, &std::path::Path)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} = \"{}\"\n", v.display()))
        .collect()
}

/// A direct client on the plain port of a redis-server started with `--requirepass admin`.
fn admin(redis: &Redis) -> Client {
    let mut c = redis.client();
    assert_eq!(c.q("AUTH admin"), Reply::ok());
    c
}

/// AUTH attempts the server refused for `user`, from ACL LOG (entries of the same kind are
/// counted in one).
fn refused_auths(direct: &mut Client, user: &str) -> i64 {
    let log = direct.q("ACL LOG");
    let entries = log.as_array().unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let fields = e.as_array()?;
            let field = |name: &str| {
                let at = fields.iter().position(|f| f.as_str().as_deref() == Some(name))?;
                fields.get(at + 1)
            };
            let refused = field("reason")?.as_str()? == "auth" && field("username")?.as_str()? == user;
            refused.then(|| field("count")?.as_int())?
        })
        .sum()
}

/// Lines of the relayer's log that contain every one of `parts`.
fn log_lines(relayer: &Relayer, parts: &[&str]) -> usize {
    relayer
        .log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Waits for `n` log lines containing every one of `parts` (the log is written after the
/// replies), and checks there are no more.
fn expect_log_lines(relayer: &Relayer, parts: &[&str], n: usize) {
    wait_until(HANG, &format!("{n} log lines with {parts:?}"), || {
        log_lines(relayer, parts) >= n
    });
    assert_eq!(log_lines(relayer, parts), n, "{}", relayer.log());
}

/// Sync and smart entries relay over TLS, with and without credentials in the url; values of
/// every size cross the TLS bridge intact, and the server sees them.
#[test]
fn relays_over_tls_in_sync_and_smart_mode() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, false, &["--requirepass", "admin"]);
    admin(&server.redis).q("ACL SETUSER app on >secret ~* +@all");
    let ca = keys(&[("tlsCaFile", &certs.file("ca.pem"))]);
    let config = [
        redis_entry(&tcp_listen(), &server.url("app:secret"), &ca),
        redis_entry_mode("smart", &tcp_listen(), &server.url("app:secret"), &ca),
        // No credentials: the server answers NOAUTH, passed through as without TLS.
        redis_entry(&tcp_listen(), &server.url(""), &ca),
    ]
    .concat();
    let relayer = Relayer::start(&config);

    let mut sync = relayer.client_at(0);
    assert_eq!(sync.q("SET tls:k over-tls"), Reply::ok());
    assert_eq!(sync.q("GET tls:k"), Reply::bulk("over-tls"));
    let big: Vec<u8> = Rng::new(7).bytes(300_000);
    assert_eq!(sync.cmd(&[&b"SET"[..], b"tls:big", &big]), Reply::ok());
    assert_eq!(sync.cmd(&["GET", "tls:big"]), Reply::bulk(&big));
    let cmds: Vec<Vec<String>> = (0..500)
        .map(|i| vec!["SET".into(), format!("tls:p{i}"), format!("v{i}")])
        .collect();
    assert!(sync.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));

    let mut smart = relayer.client_at(1);
    for i in 0..200 {
        assert_eq!(
            smart.cmd(&["SET", &format!("tls:s{i}"), &format!("s{i}")]),
            Reply::ok()
        );
    }
    assert_eq!(smart.q("GET tls:s199"), Reply::bulk("s199"));

    let mut direct = admin(&server.redis);
    assert_eq!(direct.q("GET tls:k"), Reply::bulk("over-tls"));
    assert_eq!(direct.q("GET tls:p499"), Reply::bulk("v499"));
    assert_eq!(direct.q("GET tls:s0"), Reply::bulk("s0"));
    // The relayer's connections came in on the TLS port, as user app.
    let clients = direct.q("CLIENT LIST").as_str().unwrap();
    let tls_laddr = format!("laddr=127.0.0.1:{}", server.tls_port);
    let app_on_tls = clients
        .lines()
        .filter(|l| l.contains(&tls_laddr) && l.contains(" user=app "))
        .count();
    assert_eq!(app_on_tls, 2, "{clients}");

    let mut anonymous = relayer.client_at(2);
    let r = anonymous.q("GET tls:k");
    assert!(r.is_error_starting("NOAUTH"), "{r:?}");
}

/// A server that requires client certificates accepts the relayer's tlsCertFile/tlsKeyFile;
/// without them the client gets an error saying so, the log says it once, and the relayer runs on.
#[test]
fn client_certificate_required_by_the_server() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, true, &[]);
    let ca = keys(&[("tlsCaFile", &certs.file("ca.pem"))]);
    let with_cert = keys(&[
        ("tlsCaFile", &certs.file("ca.pem")),
        ("tlsCertFile", &certs.file("client.pem")),
        ("tlsKeyFile", &certs.file("client.key")),
    ]);
    let config = [
        redis_entry(&tcp_listen(), &server.url(""), &with_cert),
        redis_entry(&tcp_listen(), &server.url(""), &ca),
    ]
    .concat();
    let relayer = Relayer::start(&config);
    let mut ok = relayer.client_at(0);
    assert_eq!(ok.q("SET cert:k yes"), Reply::ok());
    assert_eq!(
        server.redis.query::<Option<String>>(&["GET", "cert:k"]),
        Some("yes".into())
    );

    let mut refused = relayer.client_at(1);
    let want = format!(
        "ERR relayer: backend rediss://127.0.0.1:{} unavailable (TLS: received fatal alert: CertificateRequired: the server wants a client certificate (set tlsCertFile and tlsKeyFile))",
        server.tls_port
    );
    for _ in 0..5 {
        assert_eq!(refused.q("GET cert:k"), Reply::error(&want));
    }
    expect_log_lines(&relayer, &["cannot connect to backend", "CertificateRequired"], 1);
    assert_eq!(refused.q("PING"), Reply::status("PONG"));
    assert_eq!(ok.q("GET cert:k"), Reply::bulk("yes"));
}

/// A server certificate not signed by the CA of tlsCaFile is refused: the client's error and
/// the log name the problem; the relayer keeps serving its other entry, and retries: a reload
/// with the right CA connects.
#[test]
fn wrong_ca_is_refused() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, false, &[]);
    let good = redis_entry(
        &tcp_listen(),
        &server.url(""),
        &keys(&[("tlsCaFile", &certs.file("ca.pem"))]),
    );
    let bad_listen = tcp_listen();
    let bad = |ca: &str| {
        redis_entry(
            &bad_listen,
            &server.url(""),
            &keys(&[("tlsCaFile", &certs.file(ca))]),
        )
    };
    let mut relayer = Relayer::start(&format!("{good}{}", bad("other-ca.pem")));
    let mut c = relayer.client_at(1);
    let want = format!(
        "ERR relayer: backend rediss://127.0.0.1:{} unavailable (TLS: invalid peer certificate: UnknownIssuer: the server's certificate is not signed by a CA of {} (tlsCaFile))",
        server.tls_port,
        certs.file("other-ca.pem").display()
    );
    assert_eq!(c.q("GET k"), Reply::error(&want));
    assert_eq!(c.q("GET k"), Reply::error(&want));
    expect_log_lines(&relayer, &["cannot connect to backend", "UnknownIssuer"], 1);
    assert_eq!(relayer.client_at(0).q("SET ca:k v"), Reply::ok());

    relayer.rewrite_config(&format!("{good}{}", bad("ca.pem")));
    relayer.signal(libc::SIGHUP);
    poll_until(HANG, "the reloaded entry to reach the backend", || {
        let r = relayer.client_at(1).q("GET ca:k");
        (r == Reply::bulk("v")).then_some(())
    });
}

/// tlsServerName is the name verified: one the certificate does not have is refused, one it
/// has works even though the url names the host by its address.
#[test]
fn server_name_is_verified() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, false, &[]);
    let ca = certs.file("ca.pem");
    let entry = |name: &str| {
        redis_entry(
            &tcp_listen(),
            &server.url(""),
            &format!("{}tlsServerName = \"{name}\"\n", keys(&[("tlsCaFile", &ca)])),
        )
    };
    let relayer = Relayer::start(&format!("{}{}", entry("localhost"), entry("cache.example.com")));
    assert_eq!(relayer.client_at(0).q("SET sni:k v"), Reply::ok());
    let want = format!(
        "ERR relayer: backend rediss://127.0.0.1:{} unavailable (TLS: invalid peer certificate: certificate not valid for name \"cache.example.com\"; certificate is only valid for DnsName(\"localhost\") or IpAddress(127.0.0.1) (the name checked is 'cache.example.com': set tlsServerName to a name in the certificate))",
        server.tls_port
    );
    assert_eq!(relayer.client_at(1).q("GET sni:k"), Reply::error(&want));
    expect_log_lines(&relayer, &["cannot connect to backend", "cache.example.com"], 1);
}

/// The server closing a TLS connection is seen by the relayer, which connects again.
#[test]
fn tls_connection_closed_by_the_server_reconnects() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, false, &[]);
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &server.url(""),
        &keys(&[("tlsCaFile", &certs.file("ca.pem"))]),
    ));
    let mut c = relayer.client();
    assert_eq!(c.q("SET kill:k 1"), Reply::ok());
    let mut direct = server.redis.client();
    let killed = direct.cmd(&[
        "CLIENT",
        "KILL",
        "LADDR",
        &format!("127.0.0.1:{}", server.tls_port),
    ]);
    assert_eq!(killed, Reply::Int(1));
    wait_until(HANG, "the relayer to see the connection closed", || {
        log_lines(&relayer, &["backend connection lost"]) == 1
    });
    poll_until(HANG, "a relayed command after the reconnection", || {
        (c.q("INCR kill:k") == Reply::Int(2)).then_some(())
    });
}

/// Dedicated connections (a blocking pop, a subscription) go over TLS too, as the url's user,
/// and so does their reuse after RESET (which logs the connection out: AUTH is sent again).
#[test]
fn dedicated_connections_use_tls_and_the_url_user() {
    let certs = TestCerts::new();
    let server = TlsRedis::start(&certs, false, &["--requirepass", "admin"]);
    let mut direct = admin(&server.redis);
    assert_eq!(direct.q("ACL SETUSER app on >secret ~* &* +@all"), Reply::ok());
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &server.url("app:secret"),
        &keys(&[("tlsCaFile", &certs.file("ca.pem"))]),
    ));
    let mut other = relayer.client();
    for round in 0..2 {
        let mut waiter = relayer.client();
        waiter.send(&["BLPOP", "jobs", "0"]);
        wait_until(HANG, "BLPOP blocked on the backend", || {
            let clients = direct.q("CLIENT LIST").as_str().unwrap();
            clients
                .lines()
                .any(|l| l.contains(" user=app ") && l.contains("cmd=blpop") && l.contains("flags=b"))
        });
        let job = format!("job-{round}");
        assert_eq!(other.cmd(&["LPUSH", "jobs", &job]), Reply::int(1));
        assert_eq!(
            waiter.read_reply(),
            Reply::array(vec![Reply::bulk("jobs"), Reply::bulk(&job)])
        );
        // A subscription on the same (released, RESET, re-authenticated) connection.
        let sub = waiter.cmd(&["SUBSCRIBE", "news"]);
        assert_eq!(
            sub,
            Reply::array(vec![Reply::bulk("subscribe"), Reply::bulk("news"), Reply::int(1)])
        );
        assert_eq!(other.cmd(&["PUBLISH", "news", &job]), Reply::int(1));
        assert_eq!(
            waiter.read_reply(),
            Reply::array(vec![
                Reply::bulk("message"),
                Reply::bulk("news"),
                Reply::bulk(&job)
            ])
        );
    }
    let clients = direct.q("CLIENT LIST").as_str().unwrap();
    let tls_laddr = format!("laddr=127.0.0.1:{}", server.tls_port);
    assert!(
        clients
            .lines()
            .filter(|l| l.contains(&tls_laddr))
            .all(|l| l.contains(" user=app ")),
        "{clients}"
    );
}

/// An ACL user and its password from a redis:// url: the relayer's connection is that user.
#[test]
fn acl_user_and_password_from_the_url() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut direct = admin(&redis);
    assert_eq!(direct.q("ACL SETUSER app on >secret ~app:* +@all"), Reply::ok());
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let relayer = Relayer::start(&redis_entry(&tcp_listen(), &url, ""));
    let mut c = relayer.client();
    assert_eq!(c.q("SET app:k v"), Reply::ok());
    assert_eq!(c.q("GET app:k"), Reply::bulk("v"));
    // The user's own limits apply: keys outside ~app:* are refused by the server.
    let r = c.q("SET other:k v");
    assert!(r.is_error_starting("NOPERM"), "{r:?}");
    let clients = direct.q("CLIENT LIST").as_str().unwrap();
    assert_eq!(
        clients.lines().filter(|l| l.contains(" user=app ")).count(),
        1,
        "{clients}"
    );
}

/// A refused AUTH: clients get an error naming it (not NOAUTH from later commands), the log
/// says it once however many attempts fail, and fixing the password on the server brings the
/// relayer back without a restart.
#[test]
fn refused_auth_is_clear_and_recovers() {
    let redis = Redis::start_with(&["--requirepass", "admin"]);
    let mut direct = admin(&redis);
    assert_eq!(direct.q("ACL SETUSER app on >right ~* +@all"), Reply::ok());
    let url = format!("redis://app:wrong@127.0.0.1:{}", redis.port());
    let relayer = Relayer::start(&format!(
        "{}{}",
        redis_entry(&tcp_listen(), &url, ""),
        redis_entry_mode("smart", &tcp_listen(), &url, "")
    ));
    let want = format!(
        "ERR relayer: backend redis://app:***@127.0.0.1:{} unavailable (AUTH refused: WRONGPASS invalid username-password pair or user is disabled.)",
        redis.port()
    );
    let mut c = relayer.client();
    for _ in 0..5 {
        assert_eq!(c.q("GET k"), Reply::error(&want));
    }
    // Several attempts later, still one line per entry in the log.
    wait_until(HANG, "the relayer to retry AUTH", || {
        refused_auths(&mut direct, "app") >= 6
    });
    expect_log_lines(
        &relayer,
        &["cannot connect to backend", "AUTH refused: WRONGPASS"],
        2,
    );
    assert!(!relayer.log().contains("NOAUTH"), "{}", relayer.log());

    assert_eq!(direct.q("ACL SETUSER app >wrong"), Reply::ok());
    poll_until(
        HANG,
        "the relayer to authenticate with the fixed password",
        || (c.q("SET k fixed") == Reply::ok()).then_some(()),
    );
    let mut smart = relayer.client_at(1);
    assert_eq!(smart.q("SET k2 smart"), Reply::ok());
    assert_eq!(smart.q("GET k2"), Reply::bulk("smart"));
    assert_eq!(direct.q("GET k"), Reply::bulk("fixed"));
    // Both entries, sync and smart.
    expect_log_lines(&relayer, &["backend connection restored"], 2);
}

/// Bad tls keys fail the check, naming the file, the entry and the key, with the reason.
#[test]
fn tls_config_errors_name_the_key() {
    let certs = TestCerts::new();
    let junk = certs.file("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let f = |n: &str| certs.file(n).display().to_string();
    let tls_url = "rediss://127.0.0.1:6380";
    let l = "tcp://127.0.0.1:1";
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "tls key without rediss://",
            redis_entry(l, "redis://127.0.0.1:6379", &format!("tlsCaFile = \"{}\"", f("ca.pem"))),
            "tlsCaFile",
            "only used with TLS: the url must start with rediss://".into(),
        ),
        (
            "tls key on a firehose entry",
            format!(
                "[[relayer]]\nprotocol = \"firehose\"\nlisten = \"{l}\"\nstreamName = \"s\"\ntlsServerName = \"x\"\n"
            ),
            "tlsServerName",
            "only used with TLS: the url must start with rediss://".into(),
        ),
        (
            "missing CA file",
            redis_entry(l, tls_url, "tlsCaFile = \"/nonexistent/ca.pem\""),
            "tlsCaFile",
            "cannot read /nonexistent/ca.pem: No such file or directory (os error 2)".into(),
        ),
        (
            "CA file that is not PEM",
            redis_entry(l, tls_url, &format!("tlsCaFile = \"{}\"", junk.display())),
            "tlsCaFile",
            format!(
                "{}: no certificate in it (a PEM file with BEGIN CERTIFICATE blocks)",
                junk.display()
            ),
        ),
        (
            "certificate without key",
            redis_entry(l, tls_url, &format!("tlsCertFile = \"{}\"", f("client.pem"))),
            "tlsCertFile",
            "needs tlsKeyFile too: a client certificate goes with its private key".into(),
        ),
        (
            "key without certificate",
            redis_entry(l, tls_url, &format!("tlsKeyFile = \"{}\"", f("client.key"))),
            "tlsKeyFile",
            "needs tlsCertFile too: a private key goes with its client certificate".into(),
        ),
        (
            "key file without a key",
            redis_entry(
                l,
                tls_url,
                &format!("tlsCertFile = \"{}\"\ntlsKeyFile = \"{}\"", f("client.pem"), f("client.pem")),
            ),
            "tlsKeyFile",
            format!("{}: no private key in it", f("client.pem")),
        ),
        (
            "key of another certificate",
            redis_entry(
                l,
                tls_url,
                &format!("tlsCertFile = \"{}\"\ntlsKeyFile = \"{}\"", f("client.pem"), f("server.key")),
            ),
            "tlsKeyFile",
            format!("{} does not go with the certificate of {}", f("server.key"), f("client.pem")),
        ),
        (
            "bad server name",
            redis_entry(l, tls_url, "tlsServerName = \"not a name\""),
            "tlsServerName",
            "'not a name' is not a DNS name or an IP address".into(),
        ),
    ];
    let mut failures = vec![];
    for (what, config, key, reason) in cases {
        let out = check_config(&config);
        let want = format!("key '{key}': {reason}");
        if out.status.success() || !out.stderr.contains(&want) || !out.stderr.contains(l) {
            failures.push(format!(
                "{what}: expected '{want}', got {}: {}",
                out.status,
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let good = redis_entry(
        l,
        "rediss://app:pw@127.0.0.1:6380",
        &format!(
            "tlsCaFile = \"{}\"\ntlsCertFile = \"{}\"\ntlsKeyFile = \"{}\"\ntlsServerName = \"localhost\"",
            f("ca.pem"),
            f("client.pem"),
            f("client.key")
        ),
    );
    let out = check_config(&good);
    assert!(out.status.success(), "{}", out.stderr);
}

/// The client's error from an entry of `relayer` whose backend is unavailable.
fn unavailable(server: &TlsRedis, why: &str) -> Reply {
    Reply::error(&format!(
        "ERR relayer: backend rediss://127.0.0.1:{} unavailable (TLS: {why})",
        server.tls_port
    ))
}

/// A self-signed server certificate (`CA:TRUE`, as `openssl req -x509` makes one by default)
/// given as tlsCaFile is trusted as itself, as `redis-cli --tls --cacert` trusts it; by the url's
/// address and by a tlsServerName it has.
#[test]
fn self_signed_server_certificate_in_the_ca_file_is_accepted() {
    let certs = TestCerts::new();
    certs.self_signed("pinned");
    let server = TlsRedis::serving(&certs, "pinned", false, &[]);
    let ca = keys(&[("tlsCaFile", &certs.file("pinned.pem"))]);
    let relayer = Relayer::start(&format!(
        "{}{}",
        redis_entry(&tcp_listen(), &server.url(""), &ca),
        redis_entry(
            &tcp_listen(),
            &server.url(""),
            &format!("{ca}tlsServerName = \"localhost\"\n")
        ),
    ));
    let mut c = relayer.client_at(0);
    assert_eq!(c.q("SET pinned:k v"), Reply::ok());
    assert_eq!(c.q("GET pinned:k"), Reply::bulk("v"));
    assert_eq!(relayer.client_at(1).q("GET pinned:k"), Reply::bulk("v"));
    assert_eq!(server.redis.client().q("GET pinned:k"), Reply::bulk("v"));
}

/// A pinned certificate is still checked for the name: one it does not have is refused, with
/// the same error as for a certificate signed by a CA.
#[test]
fn self_signed_server_certificate_is_checked_for_the_name() {
    let certs = TestCerts::new();
    certs.self_signed("pinned");
    let server = TlsRedis::serving(&certs, "pinned", false, &[]);
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &server.url(""),
        &format!(
            "{}tlsServerName = \"cache.example.com\"\n",
            keys(&[("tlsCaFile", &certs.file("pinned.pem"))])
        ),
    ));
    let want = unavailable(
        &server,
        "invalid peer certificate: certificate not valid for name \"cache.example.com\"; certificate is only valid for DnsName(\"localhost\") or IpAddress(127.0.0.1) (the name checked is 'cache.example.com': set tlsServerName to a name in the certificate)",
    );
    assert_eq!(relayer.client().q("GET k"), want);
}

/// A self-signed server certificate that is not the one in tlsCaFile is refused, saying so.
#[test]
fn other_self_signed_server_certificate_is_refused() {
    let certs = TestCerts::new();
    certs.self_signed("pinned");
    certs.self_signed("other");
    let server = TlsRedis::serving(&certs, "pinned", false, &[]);
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &server.url(""),
        &keys(&[("tlsCaFile", &certs.file("other.pem"))]),
    ));
    let want = unavailable(
        &server,
        &format!(
            "invalid peer certificate: CaUsedAsEndEntity: the server's certificate is a CA certificate, and not one of {} (tlsCaFile)",
            certs.file("other.pem").display()
        ),
    );
    assert_eq!(relayer.client().q("GET k"), want);
    expect_log_lines(&relayer, &["cannot connect to backend", "other.pem"], 1);
}

/// A pinned certificate is still checked for its validity period.
#[test]
fn expired_self_signed_server_certificate_is_refused() {
    let certs = TestCerts::new();
    certs.expired_self_signed("old");
    let server = TlsRedis::serving(&certs, "old", false, &[]);
    let relayer = Relayer::start(&redis_entry(
        &tcp_listen(),
        &server.url(""),
        &keys(&[("tlsCaFile", &certs.file("old.pem"))]),
    ));
    let want = unavailable(
        &server,
        "invalid peer certificate: expired (not valid after 1577923200 UNIX time)",
    );
    assert_eq!(relayer.client().q("GET k"), want);
}
