//! Client authentication against a listener's `password` (Redis' `requirepass`).

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// A listener's password, kept as its SHA-256 digest: compared in constant time, as Redis
/// does, so neither the password nor its length shows in how long a wrong AUTH takes.
#[derive(Clone, PartialEq, Eq)]
pub struct Password([u8; 32]);

impl Password {
    pub fn new(plain: &str) -> Self {
        Password(Sha256::digest(plain.as_bytes()).into())
    }

    pub fn matches(&self, attempt: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(attempt).into();
        self.0.ct_eq(&digest).into()
    }
}

/// Never printed: configs are logged with `{:?}`.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
pub const NO_PASSWORD_SET: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// The outcome of `AUTH [user] password` (or HELLO's AUTH option) on a listener.
pub fn check(password: Option<&Password>, user: Option<&[u8]>, attempt: &[u8]) -> Result<(), &'static str> {
    let default_user = user.is_none_or(|u| u == b"default");
    match password {
        // Like Redis' nopass default user: `AUTH default <anything>` is accepted.
        None if user.is_some() && default_user => Ok(()),
        None if user.is_some() => Err(WRONGPASS),
        None => Err(NO_PASSWORD_SET),
        Some(p) if default_user && p.matches(attempt) => Ok(()),
        Some(_) => Err(WRONGPASS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let p = Password::new("s3cret");
        assert!(p.matches(b"s3cret"));
        assert!(!p.matches(b"s3cre"));
        assert!(!p.matches(b""));
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert_eq!(check(Some(&p), None, b"s3cret"), Ok(()));
        assert_eq!(check(Some(&p), Some(b"default"), b"s3cret"), Ok(()));
        assert_eq!(check(Some(&p), Some(b"other"), b"s3cret"), Err(WRONGPASS));
        assert_eq!(check(Some(&p), None, b"nope"), Err(WRONGPASS));
        assert_eq!(check(None, None, b"x"), Err(NO_PASSWORD_SET));
        assert_eq!(check(None, Some(b"default"), b"x"), Ok(()));
        assert_eq!(check(None, Some(b"bob"), b"x"), Err(WRONGPASS));
    }
}
