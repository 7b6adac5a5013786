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
    }
}
