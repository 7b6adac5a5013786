//! Listen and target addresses, in the URL forms the original accepted and the ones we add.

use std::fmt;
use std::path::PathBuf;

/// Where a relayer listens: `tcp://host:port`, `tcp://:port`, `tcp://[::1]:port`, `unix:/path`
/// or `unix:///path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// What a redis relayer connects to: `tcp://host:port`, `redis://[user:password@]host:port[/db]`,
/// the same with `rediss://` (TLS), or `unix:/path`.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetAddr {
    pub kind: TargetKind,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// `rediss://`: the connection is TLS (settings in the relayer's `tls*` keys).
    pub tls: bool,
    /// The URL with the password hidden, for logs and error replies.
    pub display: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Debug for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            ListenAddr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("tcp4://")) {
            let (host, port) = host_port(rest, None)?;
            let host = if host.is_empty() {
                "0.0.0.0".to_string()
            } else {
                host
            };
            Ok(ListenAddr::Tcp { host, port })
        } else if let Some(rest) = s.strip_prefix("tcp6://") {
            let (host, port) = host_port(rest, None)?;
            let host = if host.is_empty() { "::".to_string() } else { host };
            Ok(ListenAddr::Tcp { host, port })
        } else if s.starts_with("unix:") {
            Ok(ListenAddr::Unix(unix_path(s)?))
        } else {
            Err(format!(
                "'{s}' is not a listen address: use tcp://host:port, tcp://:port, unix:/path or unix:///path"
            ))
        }
    }
}

impl TargetAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = host_port(rest, None)?;
            if host.is_empty() {
                return Err(format!("'{s}' has no host"));
            }
            Ok(TargetAddr {
                kind: TargetKind::Tcp { host, port },
                user: None,
                password: None,
                db: 0,
                tls: false,
                display: s.to_string(),
            })
        } else if let Some((tls, rest)) = s
            .strip_prefix("redis://")
            .map(|r| (false, r))
            .or_else(|| s.strip_prefix("rediss://").map(|r| (true, r)))
        {
            let (userinfo, rest) = match rest.rsplit_once('@') {
                Some((u, r)) => (Some(u), r),
                None => (None, rest),
            };
            let (hostport, db) = match rest.split_once('/') {
                Some((hp, "")) => (hp, 0),
                Some((hp, db)) => (
                    hp,
                    db.parse::<u32>()
                        .map_err(|_| format!("'{db}' in '{}' is not a DB number", redact(s)))?,
                ),
                None => (rest, 0),
            };
            let (host, port) = host_port(hostport, Some(6379))?;
            if host.is_empty() {
                return Err(format!("'{}' has no host", redact(s)));
            }
            // Percent-encoded, as Go's url.Parse read them for the original (`p%40ss`).
            let decode = |part: &str, what: &str| {
                percent_decode(part).map_err(|e| format!("the {what} in '{}': {e}", redact(s)))
            };
            let (user, password) = match userinfo {
                None => (None, None),
                Some(u) => match u.split_once(':') {
                    Some(("", p)) => (None, Some(decode(p, "password")?)),
                    Some((u, p)) => (Some(decode(u, "user")?), Some(decode(p, "password")?)),
                    None => (Some(decode(u, "user")?), None),
                },
            };
            Ok(TargetAddr {
                kind: TargetKind::Tcp { host, port },
                user,
                password,
                db,
                tls,
                display: redact(s),
            })
        } else if s.starts_with("unix:") {
            Ok(TargetAddr {
                kind: TargetKind::Unix(unix_path(s)?),
                user: None,
                password: None,
                db: 0,
                tls: false,
                display: s.to_string(),
            })
        } else {
            Err(format!(
                "'{}' is not a target address: use tcp://host:port, redis://[user:password@]host:port[/db], rediss://... (TLS) or unix:/path",
                redact(s)
            ))
        }
    }
}

/// `%XX` escapes decoded, strictly as Go's url.Parse does for user info: a `%` not followed
/// by two hex digits is an error, and so are bytes that do not make UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok().filter(|_| !h.starts_with('+')));
            match hex {
                Some(byte) => out.push(byte),
                None => return Err("invalid percent escape (use %25 for a literal %)".into()),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes that do not decode to UTF-8".into())
}

/// Hides the password of a `redis://user:password@host` URL.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &s[..scheme + 3], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

fn unix_path(s: &str) -> Result<PathBuf, String> {
    let rest = &s["unix:".len()..];
    let path = if let Some(p) = rest.strip_prefix("//") {
        if !p.starts_with('/') {
            return Err(format!(
                "'{s}': a unix socket URL with // needs an absolute path (unix:///path), or use unix:/path"
            ));
        }
        p
    } else {
        rest
    };
    if path.is_empty() {
        return Err(format!("'{s}' has no socket path"));
    }
    Ok(PathBuf::from(path))
}

fn host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let s = s.trim_end_matches('/');
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}': unclosed '[' in IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("'{s}': unexpected '{after}' after IPv6 address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{p}' is not a valid port in '{s}'"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("'{s}' has no port")),
    };
    if host.contains(['/', '@', ' ']) {
        return Err(format!("'{host}' is not a valid host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            ListenAddr::parse("tcp://127.0.0.1:6389").unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 6389
            }
        );
        assert_eq!(
            ListenAddr::parse("tcp://:6389").unwrap(),
            ListenAddr::Tcp {
                host: "0.0.0.0".into(),
                port: 6389
            }
        );
        assert_eq!(
            ListenAddr::parse("tcp://[::1]:6389").unwrap(),
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 6389
            }
        );
        assert_eq!(
            ListenAddr::parse("unix:/tmp/r.sock").unwrap(),
            ListenAddr::Unix("/tmp/r.sock".into())
        );
        assert_eq!(
            ListenAddr::parse("unix:///tmp/r.sock").unwrap(),
            ListenAddr::Unix("/tmp/r.sock".into())
        );
        for bad in [
            ":6389",
            "tcp://host",
            "tcp://h:99999",
            "tcp://h:0",
            "unix:",
            "unix://tmp/x",
            "udp://:1",
        ] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_forms() {
        let t = TargetAddr::parse("redis://user:secret@db.local:6380/3").unwrap();
        assert_eq!(
            t.kind,
            TargetKind::Tcp {
                host: "db.local".into(),
                port: 6380
            }
        );
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref(), t.db),
            (Some("user"), Some("secret"), 3)
        );
        assert!(!t.display.contains("secret"));
        let t = TargetAddr::parse("redis://:pw@h").unwrap();
        assert_eq!((t.user, t.password.as_deref(), t.db), (None, Some("pw"), 0));
        assert_eq!(
            t.kind,
            TargetKind::Tcp {
                host: "h".into(),
                port: 6379
            }
        );
        assert!(!t.tls);
        let t = TargetAddr::parse("rediss://app:pw@cache.local").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref(), t.tls),
            (Some("app"), Some("pw"), true)
        );
        assert_eq!(
            t.kind,
            TargetKind::Tcp {
                host: "cache.local".into(),
                port: 6379
            }
        );
        assert_eq!(t.display, "rediss://app:***@cache.local");
        assert_eq!(
            TargetAddr::parse("tcp://127.0.0.1:6379").unwrap().kind,
            TargetKind::Tcp {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        assert_eq!(
            TargetAddr::parse("unix:/run/redis.sock").unwrap().kind,
            TargetKind::Unix("/run/redis.sock".into())
        );
        let t = TargetAddr::parse("redis://app%40x:p%40ss%3Aw%2Frd%20%25@h").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("app@x"), Some("p@ss:w/rd %"))
        );
        assert_eq!(t.display, "redis://app%40x:***@h");
        let t = TargetAddr::parse("redis://:caf%C3%A9+x@h").unwrap();
        assert_eq!(t.password.as_deref(), Some("café+x"));
        for (bad, secret) in [
            ("redis://:p%4@h", "p%4"),
            ("redis://:p%zz@h", "p%zz"),
            ("redis://:%+1@h", "%+1"),
            ("redis://:%ff@h", "%ff"),
        ] {
            let e = TargetAddr::parse(bad).unwrap_err();
            assert!(e.contains("password") && !e.contains(secret), "{bad}: {e}");
        }
        for bad in [
            "tcp://:6379",
            "redis://h/x",
            "http://h:1",
            "rediss://:1",
            "tcp://h",
        ] {
            assert!(TargetAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
