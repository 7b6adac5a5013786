//! A slot's hold: the commands of a slot kept back so that none overtakes an older one of the
//! same client, and the jobs it holds. What a hold is for and when it ends is written at the
//! top of `holds.rs`, beside the backend's code that keeps the holds.

use super::topology::Node;
use crate::redis::backend::{Dest, Resend};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A command (or MULTI block) on its way to the node of its slot.
pub(crate) struct Job {
    pub r: Resend,
    pub dest: Dest,
    /// Redirected by ASK: sent to this node, after ASKING.
    pub ask: Option<Node>,
}

/// The hold key of a job without a slot (a keyless write acknowledged early).
pub(crate) const ANY_SLOT: u16 = u16::MAX;

pub(crate) fn hold_key(slot: Option<u16>) -> u16 {
    slot.unwrap_or(ANY_SLOT)
}

/// First delay before `front` is sent again (in ticks of 100 ms).
pub(crate) const RETRY_FIRST: u64 = 1;

/// A slot's commands in flight that are not counted as displaced: how many, and the mark
/// they were sent under (a command sent under an older mark than the slot's is displaced).
#[derive(Default, Clone, Copy)]
pub(crate) struct Flight {
    pub mark: u32,
    pub unmarked: u32,
}

pub(crate) struct Hold {
    pub displaced: usize,
    /// By job number (`Resend::order`): oldest first.
    pub front: BTreeMap<u64, Job>,
    /// The oldest job number in `front` of each client.
    pub(crate) front_first: HashMap<u64, u64>,
    pub back: VecDeque<Job>,
    /// When `front` may be sent again.
    pub(crate) retry_at: Option<u64>,
    pub(crate) backoff: u64,
    /// The last tick `displaced` went down (or the hold began).
    pub(crate) moved: u64,
}

impl Hold {
    pub(crate) fn new(tick: u64) -> Self {
        Hold {
            displaced: 0,
            front: BTreeMap::new(),
            front_first: HashMap::new(),
            back: VecDeque::new(),
            retry_at: None,
            backoff: RETRY_FIRST,
            moved: tick,
        }
    }
}

impl Hold {
    pub(crate) fn wait_in_front(&mut self, job: Job) {
        self.wait_in_front_at(job.r.order, job);
    }

    pub(crate) fn wait_in_front_at(&mut self, order: u64, job: Job) {
        self.front_first
            .entry(job.r.session)
            .and_modify(|o| *o = (*o).min(order))
            .or_insert(order);
        self.front.insert(order, job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::backend::Body;
    use bytes::Bytes;

    pub(crate) fn job(session: u64, order: u64) -> Job {
        let frame = Bytes::from(format!("*1\r\n$1\r\n{order}\r\n"));
        Job {
            r: Resend::new(Some(1), session, Body::One(frame.clone()), 0, order),
            dest: Dest::Background {
                frame,
                db: 0,
                idempotent: true,
                since: 0,
            },
            ask: None,
        }
    }

    /// Jobs parked in any order wait in the order they came; each client's oldest is known
    /// without a walk.
    #[test]
    pub(crate) fn front_keeps_the_order_jobs_came_in() {
        let mut h = Hold::new(0);
        for (session, order) in [(7, 5), (7, 2), (8, 3), (7, 9), (8, 1)] {
            h.wait_in_front(job(session, order));
        }
        let orders: Vec<u64> = h.front.values().map(|j| j.r.order).collect();
        assert_eq!(orders, vec![1, 2, 3, 5, 9]);
        assert_eq!(h.front_first.get(&7), Some(&2));
        assert_eq!(h.front_first.get(&8), Some(&1));
        assert_eq!(h.front_first.get(&9), None);
    }
}
