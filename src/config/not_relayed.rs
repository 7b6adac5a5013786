//! Entries of protocols the original daemon shipped and this version does not relay (its HTTP
//! servers, its filesystem writer, its key-value store facade): recognised, reported once at
//! start and at each reload, skipped; nothing else in them is read, so a key of theirs can never
//! stop the file from loading.

/// The protocols, as `protocol` spells them, lower case.
pub(super) const PROTOCOLS: [&str; 5] = ["fs", "http", "httptofirehose", "httptoathena", "redis2kvstore"];

#[derive(Debug, Clone)]
pub struct NotRelayed {
    pub protocol: &'static str,
}

impl NotRelayed {
    /// What is said of it. `ctx` names the file and the entry.
    pub(super) fn warning(&self, ctx: &str) -> String {
        format!(
            "{ctx}: protocol '{}' of the original daemon is not relayed by this version: the entry is skipped",
            self.protocol
        )
    }
}
