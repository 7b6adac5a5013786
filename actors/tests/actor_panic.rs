//! What the sessions' `Drop` relies on: an actor whose handler panics is dropped (its task is
//! ended and freed by the runtime), the thread and its other actors go on.

use actix::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Fragile(Arc<AtomicBool>);

impl Actor for Fragile {
    type Context = Context<Self>;
}

impl Drop for Fragile {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Boom;

impl Handler<Boom> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("a bug in a handler");
    }
}

struct Steady;

impl Actor for Steady {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u32")]
struct Ping;

impl Handler<Ping> for Steady {
    type Result = u32;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> u32 {
        7
    }
}

#[actix_rt::test]
async fn a_panicking_actor_is_dropped_and_the_others_go_on() {
    let dropped = Arc::new(AtomicBool::new(false));
    let fragile = Fragile(dropped.clone()).start();
    let steady = Steady.start();
    fragile.do_send(Boom);
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the actor was not dropped after its panic"
    );
    assert_eq!(steady.send(Ping).await.unwrap(), 7);
}
