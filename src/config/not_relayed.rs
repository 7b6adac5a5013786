//! Entries of protocols the original daemon relayed and this version does not: read and
//! checked like any other entry, reported, never started.

/// The protocols, as `protocol` spells them.
pub(super) const PROTOCOLS: [&str; 2] = ["redis-plus", "sqs"];

#[derive(Debug, Clone)]
pub struct NotRelayed {
    pub listen_key: String,
    pub protocol: &'static str,
}

impl NotRelayed {
    /// What is said of it at start and at each reload. `ctx` names the file and the entry.
    pub(super) fn warning(&self, ctx: &str) -> String {
        format!(
            "{ctx}: protocol '{}' is not supported by this version yet: the entry is not started",
            self.protocol
        )
    }
}
