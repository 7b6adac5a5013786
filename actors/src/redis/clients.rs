//! The relayer's Redis clients, process-wide (every listener, every worker), by the id that
//! CLIENT ID gives them: what CLIENT KILL and CLIENT UNBLOCK need to find one and act on it.
//! A session is registered when it starts and removed when it is dropped; nothing here is
//! touched per command (one lock per CLIENT KILL or UNBLOCK, which are rare).

use super::messages::ReplyTo;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// CLIENT KILL: the client's connection is closed at once (what it was owed is dropped, as by
/// Redis).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kill;

/// CLIENT UNBLOCK: if the client has a connection of its own, the backend is asked to unblock
/// it there (`error`: with an error rather than as a timeout); the backend's answer goes to
/// request `seq` of `reply_to`. The result says whether it was asked: if not, the answer is 0.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unblock {
    pub error: bool,
    pub reply_to: ReplyTo,
    pub seq: u64,
}

/// One client, as CLIENT KILL's filters see it.
pub struct Client {
    /// Its address and the relayer's, as Redis writes them (`ip:port`, `[ip6]:port`, or the
    /// unix socket's path followed by `:0`).
    pub addr: String,
    pub laddr: String,
    /// The backend its commands go to: CLIENT KILL reaches the clients of the same one only,
    /// as Redis' reaches its own clients only (not another listener's with another backend).
    pub backend: String,
    /// It subscribed (SUBSCRIBE and the like) on its own connection: Redis' `pubsub` type.
    pub pubsub: Arc<AtomicBool>,
    pub kill: Recipient<Kill>,
    pub unblock: Recipient<Unblock>,
}

impl Client {
    pub fn is_pubsub(&self) -> bool {
        self.pubsub.load(Ordering::Relaxed)
    }
}

static CLIENTS: LazyLock<Mutex<HashMap<u64, Client>>> = LazyLock::new(Mutex::default);

fn clients() -> MutexGuard<'static, HashMap<u64, Client>> {
    // Nothing panics while holding it; a poisoned map is still a map.
    CLIENTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client's place in the registry, removed when this is dropped.
pub struct Registration {
    id: u64,
    pubsub: Arc<AtomicBool>,
}

impl Registration {
    /// The flag behind CLIENT KILL TYPE pubsub, for the client to set.
    pub fn pubsub(&self) -> Arc<AtomicBool> {
        self.pubsub.clone()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        clients().remove(&self.id);
    }
}

/// Registers client `id` (ids are unique in the process: see `listener::next_client_id`).
pub fn register(id: u64, client: Client) -> Registration {
    let pubsub = client.pubsub.clone();
    clients().insert(id, client);
    Registration { id, pubsub }
}

/// The clients for which `matches` holds, by id, with what kills each.
pub fn matching(matches: impl Fn(u64, &Client) -> bool) -> Vec<(u64, Recipient<Kill>)> {
    clients()
        .iter()
        .filter(|(id, c)| matches(**id, c))
        .map(|(id, c)| (*id, c.kill.clone()))
        .collect()
}

/// What asks client `id` to unblock, if it is there.
pub fn unblocker(id: u64) -> Option<Recipient<Unblock>> {
    clients().get(&id).map(|c| c.unblock.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl Actor for Nobody {
        type Context = Context<Self>;
    }
    impl Handler<Kill> for Nobody {
        type Result = ();
        fn handle(&mut self, _: Kill, _: &mut Context<Self>) {}
    }
    impl Handler<Unblock> for Nobody {
        type Result = bool;
        fn handle(&mut self, _: Unblock, _: &mut Context<Self>) -> bool {
            false
        }
    }

    /// Registered clients are found by id and by their fields until their registration is
    /// dropped.
    #[test]
    fn registered_until_dropped() {
        actix::System::new().block_on(async {
            let addr = Nobody.start();
            let client = |a: &str| Client {
                addr: a.to_string(),
                laddr: "127.0.0.1:6379".to_string(),
                backend: "redis://127.0.0.1:6379/0".to_string(),
                pubsub: Arc::default(),
                kill: addr.clone().recipient(),
                unblock: addr.clone().recipient(),
            };
            // Ids far from the ones other tests of this process may use.
            let a = register(u64::MAX - 1, client("10.0.0.1:1"));
            let b = register(u64::MAX - 2, client("10.0.0.2:2"));
            assert!(unblocker(u64::MAX - 1).is_some());
            let by_addr = matching(|_, c| c.addr == "10.0.0.2:2");
            assert_eq!(
                by_addr.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                [u64::MAX - 2]
            );
            b.pubsub().store(true, Ordering::Relaxed);
            let subscribed = matching(|id, c| id >= u64::MAX - 2 && c.is_pubsub());
            assert_eq!(subscribed.len(), 1);
            drop(a);
            assert!(unblocker(u64::MAX - 1).is_none());
            drop(b);
            assert!(matching(|id, _| id >= u64::MAX - 2).is_empty());
        });
    }
}
