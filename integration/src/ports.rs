//! Free loopback ports for the servers the tests start, reserved across test processes.
//!
//! nextest runs every test in its own process, so a port found free by one test can be found
//! free by another a moment later, before either has bound it (seen: a relayer test connected to
//! a port another test's server had just taken). Each port handed out is therefore also locked
//! with `flock` on a file named after it in a shared directory; the lock lives as long as the
//! test process (the kernel drops it when the process ends, crashed or not), and no other test
//! process hands that port out meanwhile.
//!
//! Ports come from below the kernel's ephemeral range when it leaves room: a port that an
//! outgoing connection holds as its local port cannot be listened on.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

/// The ports this process holds, with their lock files (kept open: closing drops the lock).
static HELD: Mutex<Option<(HashSet<u16>, Vec<File>)>> = Mutex::new(None);

/// The cluster bus listens on the node's port + 10000.
pub const BUS_PORT_OFFSET: u16 = 10000;

/// A 127.0.0.1 TCP port that is free and reserved for this process.
pub fn free_port() -> u16 {
    free_with(&[0])
}

/// A relayer `listen` value on a free port: `tcp://127.0.0.1:<free_port()>`.
pub fn tcp_listen() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

/// A port `p` such that `p` and `p + BUS_PORT_OFFSET` are both free and reserved (a Redis
/// Cluster node and its bus).
pub fn free_node_port() -> u16 {
    free_with(&[0, BUS_PORT_OFFSET])
}

/// A port `p` with `p + o` free and reserved for every offset `o` in `offsets`.
fn free_with(offsets: &[u16]) -> u16 {
    let top = *offsets.iter().max().unwrap_or(&0);
    let lo = ephemeral_low();
    // Below the ephemeral range when there is room for a decent span, else above 20000.
    let (base, span) = if lo >= 10_000 + top + 2000 {
        (10_000, lo - 10_000 - top)
    } else {
        (20_000, 65_535 - 20_000 - top)
    };
    // Different in every test process.
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let mut rng = crate::Rng::new(seed);
    let mut held = HELD.lock().unwrap();
    let (seen, files) = held.get_or_insert_with(Default::default);
    for _ in 0..2000 {
        let port = base + rng.below(span as u64) as u16;
        let ports: Vec<u16> = offsets.iter().map(|o| port + o).collect();
        if ports.iter().any(|p| seen.contains(p)) {
            continue;
        }
        let mut locks = Vec::new();
        for &p in &ports {
            match lock(p) {
                Some(f) => locks.push(f),
                None => break,
            }
        }
        if locks.len() < ports.len() {
            continue; // another test process holds one of them; ours are unlocked on drop
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if ports.iter().all(|&p| free(p)) {
            seen.extend(&ports);
            files.extend(locks);
            return port;
        }
    }
    panic!("no free port found in {base}..{}", base + span);
}

/// The lock of `port`, when no other process holds it.
fn lock(port: u16) -> Option<File> {
    let dir = lock_dir();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .unwrap_or_else(|e| panic!("open a port lock file in {}: {e}", dir.display()));
    // SAFETY: flock on a file descriptor this function owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (r == 0).then_some(file)
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("smart-relayer-test-ports");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The low end of the kernel's ephemeral port range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}
