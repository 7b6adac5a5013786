//! The keys of a `protocol = "redis-cluster"` entry: the seed nodes of `url`, and what it
//! shares with a Redis entry.

use super::raw::Entry;
use super::redis::{self, Settings};
use relayer_actors::endpoint::{TargetAddr, TargetKind};

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// At least one; the relayer asks them, in order, for the slot map.
    pub seeds: Vec<TargetAddr>,
    pub settings: Settings,
}

impl Cluster {
    /// The first seed, which stands where a Redis entry's url does: the target's address, the
    /// dedicated connections' node, the name the `tls*` keys are checked against.
    pub fn first_seed(&self) -> &TargetAddr {
        &self.seeds[0]
    }

    pub(super) fn parse(e: &Entry, warnings: &mut Vec<String>) -> Result<Cluster, String> {
        let seeds = seeds(redis::url(e)?).map_err(|err| format!("{}: {err}", e.key("url")))?;
        let settings = Settings::parse(e, &seeds[0], warnings)?;
        Ok(Cluster { seeds, settings })
    }
}

/// The seed nodes of a cluster url: addresses separated by spaces, as in the original; TCP
/// only, DB 0 only, one set of credentials for every node.
fn seeds(url: &str) -> Result<Vec<TargetAddr>, String> {
    let seeds = url
        .split_whitespace()
        .map(TargetAddr::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(
            "no seed node: list one or more tcp://host:port or redis://host:port separated by spaces".into(),
        );
    }
    for s in &seeds {
        if !matches!(s.kind, TargetKind::Tcp { .. }) {
            return Err(format!("'{s}': cluster nodes are reached over TCP"));
        }
        if s.db != 0 {
            return Err(format!("'{s}': a cluster has only DB 0"));
        }
        if (&s.user, &s.password, s.tls) != (&seeds[0].user, &seeds[0].password, seeds[0].tls) {
            return Err("every seed node must have the same credentials and scheme".into());
        }
    }
    Ok(seeds)
}
