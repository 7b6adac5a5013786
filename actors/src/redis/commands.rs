//! The command table: how the session treats each command. One place, looked up once per
//! command by its upper-cased name.

/// What the session does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Echo,
    Quit,
    Select,
    Multi,
    Exec,
    Discard,
    Hello,
    Client,
    Auth,
    Reset,
    /// Nothing is watched on a shared connection, so there is nothing to unwatch.
    Unwatch,
    /// Holds or changes the state of the connection it runs on (blocking pops, pub/sub,
    /// MONITOR, WATCH): it would stall or corrupt the connection the other clients share.
    Dedicated,
    /// XREAD and XREADGROUP: dedicated only with the BLOCK option.
    StreamRead,
    Forward,
}

/// Looks a command name up, ASCII case-insensitively, without allocating.
pub fn classify(name: &[u8]) -> Kind {
    let mut up = [0u8; 16];
    if name.len() > up.len() {
        return Kind::Forward;
    }
    for (d, s) in up.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    match &up[..name.len()] {
        b"PING" => Kind::Ping,
        b"ECHO" => Kind::Echo,
        b"QUIT" => Kind::Quit,
        b"SELECT" => Kind::Select,
        b"MULTI" => Kind::Multi,
        b"EXEC" => Kind::Exec,
        b"DISCARD" => Kind::Discard,
        b"HELLO" => Kind::Hello,
        b"CLIENT" => Kind::Client,
        b"AUTH" => Kind::Auth,
        b"RESET" => Kind::Reset,
        b"UNWATCH" => Kind::Unwatch,
        b"XREAD" | b"XREADGROUP" => Kind::StreamRead,
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" | b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE"
        | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE" | b"MONITOR" | b"WATCH" | b"SYNC" | b"PSYNC"
        | b"REPLCONF" => Kind::Dedicated,
        _ => Kind::Forward,
    }
}

/// Why a command the table forwards is refused anyway: it would put the connection it runs on
/// (shared with other clients) in another mode. On a cluster relayer, `cluster` is true.
pub fn refused_on_shared(name: &[u8], sub: Option<&[u8]>, cluster: bool) -> Option<&'static str> {
    let is = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
    if is(name, "SCRIPT") && sub.is_some_and(|s| is(s, "DEBUG")) {
        return Some("ERR relayer: 'SCRIPT DEBUG' would turn a connection shared with other clients into a debugging session");
    }
    // The flag would stay on the connection for the next command, another client's.
    if cluster && is(name, "ASKING") {
        return Some("ERR relayer: 'ASKING' is not relayed: the relayer follows ASK redirections itself");
    }
    None
}

/// Commands that Redis runs even while a script or function is busy (`allow_busy` in COMMAND
/// INFO), other than those the relayer answers itself: they go on a connection of their own
/// so that they reach a server every shared connection waits on.
pub fn reaches_busy_server(name: &[u8], sub: Option<&[u8]>) -> bool {
    let is = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
    match sub {
        _ if is(name, "SHUTDOWN") => true,
        Some(s) if is(name, "SCRIPT") => is(s, "KILL"),
        Some(s) if is(name, "FUNCTION") => is(s, "KILL") || is(s, "STATS"),
        _ => false,
    }
}

/// CLIENT subcommands that would change how the shared connection replies, or act on a
/// connection by an id or filter the client cannot know: KILL could close the connection the
/// other clients share, and the relayer's CLIENT ID is not the backend's, so KILL ID and UNBLOCK
/// would hit another backend client.
pub fn client_sub_refused(sub: &[u8]) -> bool {
    [
        "REPLY", "TRACKING", "CACHING", "NO-EVICT", "NO-TOUCH", "KILL", "UNBLOCK",
    ]
    .iter()
    .any(|s| s.as_bytes().eq_ignore_ascii_case(sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive() {
        assert_eq!(classify(b"ping"), Kind::Ping);
        assert_eq!(classify(b"SeLeCt"), Kind::Select);
        assert_eq!(classify(b"blpop"), Kind::Dedicated);
        assert_eq!(classify(b"hgetall"), Kind::Forward);
        assert_eq!(classify(b"a-very-long-command-name"), Kind::Forward);
        assert!(client_sub_refused(b"reply"));
        assert!(!client_sub_refused(b"pause"));
        assert!(client_sub_refused(b"kill"));
        assert!(client_sub_refused(b"UNBLOCK"));
        assert!(!client_sub_refused(b"list"));
        assert!(refused_on_shared(b"script", Some(b"debug"), false).is_some());
        assert!(refused_on_shared(b"SCRIPT", Some(b"KILL"), false).is_none());
        assert!(refused_on_shared(b"SCRIPT", None, false).is_none());
        assert!(refused_on_shared(b"asking", None, true).is_some());
        assert!(refused_on_shared(b"ASKING", None, false).is_none());
        assert!(reaches_busy_server(b"script", Some(b"kill")));
        assert!(reaches_busy_server(b"FUNCTION", Some(b"stats")));
        assert!(reaches_busy_server(b"shutdown", None));
        assert!(reaches_busy_server(b"SHUTDOWN", Some(b"NOSAVE")));
        assert!(!reaches_busy_server(b"SCRIPT", Some(b"FLUSH")));
        assert!(!reaches_busy_server(b"SCRIPT", None));
    }
}
