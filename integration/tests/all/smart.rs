//! Smart mode against real redis-server: writes of the background table are answered at once
//! (`+OK` / `:1`) and sent in the background, in order with the client's other commands, bounded by
//! `maxPendingBytes`, resent after a dropped connection, and drained at SIGTERM.

use integration::timeouts::{DELIVERY, EXIT, HANG};
use integration::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The string values of `keys` on `redis` (MGET in batches), `None` for a missing key.
fn mget(redis: &mut Client, keys: &[String]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut args = vec!["MGET".to_string()];
        args.extend(chunk.iter().cloned());
        match redis.cmd(&args) {
            Reply::Array(items) => out.extend(items.into_iter().map(|r| match r {
                Reply::Bulk(b) => Some(b),
                _ => None,
            })),
            other => panic!("MGET replied {other:?}"),
        }
    }
    out
}

/// The keys of `expected` whose value on `redis` is not the expected one, with what is there.
fn string_mismatches(redis: &mut Client, expected: &BTreeMap<String, String>) -> Vec<String> {
    let keys: Vec<String> = expected.keys().cloned().collect();
    let got = mget(redis, &keys);
    keys.iter()
        .zip(got)
        .filter(|(k, v)| v.as_deref() != Some(expected[*k].as_bytes()))
        .map(|(k, v)| format!("{k}: expected {:?}, found {:?}", expected[k], v.map(|b| s(&b))))
        .collect()
}

/// A hash as a map.
fn hgetall(redis: &mut Client, key: &str) -> BTreeMap<String, String> {
    let r = redis.cmd(&["HGETALL", key]);
    let items = r
        .as_array()
        .unwrap_or_else(|| panic!("HGETALL {key} replied {r:?}"));
    items
        .chunks(2)
        .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect()
}

fn smembers(redis: &mut Client, key: &str) -> BTreeSet<String> {
    let r = redis.cmd(&["SMEMBERS", key]);
    let items = r
        .as_array()
        .unwrap_or_else(|| panic!("SMEMBERS {key} replied {r:?}"));
    items.iter().map(|m| m.as_str().unwrap()).collect()
}

/// A sorted set as member -> score (integer scores).
fn zscores(redis: &mut Client, key: &str) -> BTreeMap<String, i64> {
    let r = redis.cmd(&["ZRANGE", key, "0", "-1", "WITHSCORES"]);
    let items = r
        .as_array()
        .unwrap_or_else(|| panic!("ZRANGE {key} replied {r:?}"));
    items
        .chunks(2)
        .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap().parse().unwrap()))
        .collect()
}

/// Sends a sync `GET key` until it gets something other than a relayer error about the backend
/// (a connection dropped a moment ago, a backend still restarting), within `DELIVERY`.
fn sync_get(c: &mut Client, key: &str) -> Result<Reply, String> {
    let deadline = Instant::now() + DELIVERY;
    loop {
        let r = c
            .try_read_reply_after(&["GET", key])
            .map_err(|e| format!("GET {key}: {e}"))?;
        if !is_backend_error(&r) {
            return Ok(r);
        }
        if Instant::now() >= deadline {
            return Err(format!("GET {key} still fails after {DELIVERY:?}: {r:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

trait TryCmd {
    fn try_read_reply_after(&mut self, args: &[&str]) -> std::io::Result<Reply>;
}

impl TryCmd for Client {
    fn try_read_reply_after(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        self.try_send_raw(&encode_command(args))?;
        self.try_read_reply()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// 100 clients, random mixes of smart writes and reads of their own keys

/// What a reply must be.
#[derive(Debug)]
enum Expect {
    Is(Reply),
    /// An integer in this range (TTL).
    IntIn(i64, i64),
    /// An error starting with this.
    ErrorStarting(&'static str),
}

impl Expect {
    fn check(&self, r: &Reply) -> bool {
        match self {
            Expect::Is(e) => e == r,
            Expect::IntIn(lo, hi) => r.as_int().is_some_and(|n| *lo <= n && n <= *hi),
            Expect::ErrorStarting(p) => r.is_error_starting(p),
        }
    }
}

/// What one client's keys hold, as far as it knows.
#[derive(Default)]
struct Model {
    s: Option<String>,
    s2: Option<String>,
    /// The value of `e` and the TTL (seconds) it was given, with when.
    e: Option<(String, i64, Instant)>,
    h: BTreeMap<String, String>,
    set: BTreeSet<String>,
    z: BTreeMap<String, i64>,
}

impl Model {
    fn ttl_expect(&self) -> Expect {
        match &self.e {
            // A TTL counts down; allow for a slow machine.
            Some((_, ttl, at)) => {
                let gone = at.elapsed().as_secs() as i64;
                Expect::IntIn(ttl - gone - 5, *ttl + 1)
            }
            None => Expect::Is(Reply::Int(-2)),
        }
    }

    /// The next command at random, with the reply it must get, the model updated.
    fn step(&mut self, rng: &mut Rng, k: &Keys, n: u64) -> (Vec<String>, Expect) {
        let v = || format!("v{n}-{}", "x".repeat((n % 50) as usize));
        let f = format!("f{}", rng.below(5));
        let m = format!("m{}", rng.below(8));
        let ok = || Expect::Is(Reply::ok());
        let one = || Expect::Is(Reply::Int(1));
        let cmd = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match rng.below(24) {
            0 | 1 => {
                let v = v();
                self.s = Some(v.clone());
                (cmd(&["SET", &k.s, &v]), ok())
            }
            2 => {
                let (v, ttl) = (v(), 1000 + rng.below(1000) as i64);
                self.e = Some((v.clone(), ttl, Instant::now()));
                (cmd(&["SETEX", &k.e, &ttl.to_string(), &v]), ok())
            }
            3 => {
                let (v, ms) = (v(), 1_000_000 + rng.below(1_000_000) as i64);
                self.e = Some((v.clone(), ms / 1000, Instant::now()));
                (cmd(&["PSETEX", &k.e, &ms.to_string(), &v]), ok())
            }
            4 | 5 => {
                let v = v();
                self.h.insert(f.clone(), v.clone());
                // `:1` whether the field is new or not: the early reply.
                (cmd(&["HSET", &k.h, &f, &v]), one())
            }
            6 => {
                self.set.insert(m.clone());
                (cmd(&["SADD", &k.set, &m]), one())
            }
            7 => {
                let score = rng.below(1000) as i64 - 500;
                self.z.insert(m.clone(), score);
                (cmd(&["ZADD", &k.z, &score.to_string(), &m]), one())
            }
            8 => {
                let ttl = 1000 + rng.below(1000) as i64;
                if let Some(e) = &mut self.e {
                    e.1 = ttl;
                    e.2 = Instant::now();
                }
                // `:1` even when the key does not exist: the early reply.
                (cmd(&["EXPIRE", &k.e, &ttl.to_string()]), one())
            }
            9 => {
                let ms = 1_000_000 + rng.below(1_000_000) as i64;
                if let Some(e) = &mut self.e {
                    e.1 = ms / 1000;
                    e.2 = Instant::now();
                }
                (cmd(&["PEXPIRE", &k.e, &ms.to_string()]), one())
            }
            10 => {
                let ttl = 1000 + rng.below(1000) as i64;
                if let Some(e) = &mut self.e {
                    e.1 = ttl;
                    e.2 = Instant::now();
                }
                let at = (unix_now() as i64 + ttl).to_string();
                (cmd(&["EXPIREAT", &k.e, &at]), one())
            }
            11 => {
                let (v1, v2) = (v(), format!("{}-2", v()));
                self.s = Some(v1.clone());
                self.s2 = Some(v2.clone());
                (cmd(&["MSET", &k.s, &v1, &k.s2, &v2]), ok())
            }
            12 => {
                let (v1, v2) = (v(), format!("{}-2", v()));
                let f2 = format!("f{}", rng.below(5));
                self.h.insert(f.clone(), v1.clone());
                self.h.insert(f2.clone(), v2.clone());
                (cmd(&["HMSET", &k.h, &f, &v1, &f2, &v2]), ok())
            }
            13 | 14 => (
                cmd(&["GET", &k.s]),
                Expect::Is(self.s.as_deref().map_or(Reply::Nil, Reply::bulk)),
            ),
            15 => (
                cmd(&["GET", &k.s2]),
                Expect::Is(self.s2.as_deref().map_or(Reply::Nil, Reply::bulk)),
            ),
            16 => (
                cmd(&["HGET", &k.h, &f]),
                Expect::Is(self.h.get(&f).map_or(Reply::Nil, Reply::bulk)),
            ),
            17 => (
                cmd(&["SISMEMBER", &k.set, &m]),
                Expect::Is(Reply::Int(self.set.contains(&m) as i64)),
            ),
            18 => (
                cmd(&["ZSCORE", &k.z, &m]),
                Expect::Is(
                    self.z
                        .get(&m)
                        .map_or(Reply::Nil, |sc| Reply::bulk(sc.to_string())),
                ),
            ),
            19 => (cmd(&["TTL", &k.e]), self.ttl_expect()),
            20 => {
                // Sync forms: their real reply.
                match rng.below(5) {
                    0 => {
                        let v = v();
                        let r = if self.s2.is_some() {
                            Reply::Nil
                        } else {
                            self.s2 = Some(v.clone());
                            Reply::ok()
                        };
                        (cmd(&["SET", &k.s2, &v, "NX"]), Expect::Is(r))
                    }
                    1 => {
                        let v = v();
                        let old = self.s.replace(v.clone());
                        (
                            cmd(&["SET", &k.s, &v, "GET"]),
                            Expect::Is(old.as_deref().map_or(Reply::Nil, Reply::bulk)),
                        )
                    }
                    2 => {
                        let v = v();
                        let r = if self.s2.is_some() {
                            self.s2 = Some(v.clone());
                            Reply::ok()
                        } else {
                            Reply::Nil
                        };
                        (cmd(&["SET", &k.s2, &v, "XX"]), Expect::Is(r))
                    }
                    3 => {
                        let score = self.z.entry(m.clone()).or_insert(0);
                        *score += 3;
                        (
                            cmd(&["ZADD", &k.z, "INCR", "3", &m]),
                            Expect::Is(Reply::bulk(score.to_string())),
                        )
                    }
                    _ => {
                        // `e` always has a TTL when it exists: NX never applies.
                        (cmd(&["EXPIRE", &k.e, "5000", "NX"]), Expect::Is(Reply::Int(0)))
                    }
                }
            }
            21 => {
                // EXPIRE ... XX applies when the key has a TTL, which `e` always has.
                let r = match &mut self.e {
                    Some(e) => {
                        e.1 = 1500;
                        e.2 = Instant::now();
                        1
                    }
                    None => 0,
                };
                (cmd(&["EXPIRE", &k.e, "1500", "XX"]), Expect::Is(Reply::Int(r)))
            }
            22 => {
                // Wrong number of arguments: Redis' own error, nothing changes.
                let c = match rng.below(3) {
                    0 => cmd(&["HSET", &k.h, &f]),
                    1 => cmd(&["SET", &k.s]),
                    _ => cmd(&["MSET", &k.s, "a", &k.s2]),
                };
                (c, Expect::ErrorStarting("ERR wrong number of arguments"))
            }
            _ => (
                cmd(&["GET", &k.e]),
                Expect::Is(self.e.as_ref().map_or(Reply::Nil, |(v, _, _)| Reply::bulk(v))),
            ),
        }
    }

    /// Compares with what the backend holds (a direct connection).
    fn check_backend(&self, redis: &mut Client, k: &Keys) -> Result<(), String> {
        let got = mget(redis, &[k.s.clone(), k.s2.clone(), k.e.clone()]);
        let want = [
            self.s.clone(),
            self.s2.clone(),
            self.e.as_ref().map(|e| e.0.clone()),
        ];
        for ((key, g), w) in [&k.s, &k.s2, &k.e].iter().zip(got).zip(want) {
            if g.as_deref() != w.as_ref().map(|w| w.as_bytes()) {
                return Err(format!("backend {key}: {:?}, expected {w:?}", g.map(|b| s(&b))));
            }
        }
        let h = hgetall(redis, &k.h);
        if h != self.h {
            return Err(format!("backend {}: {h:?}, expected {:?}", k.h, self.h));
        }
        let set = smembers(redis, &k.set);
        if set != self.set {
            return Err(format!("backend {}: {set:?}, expected {:?}", k.set, self.set));
        }
        let z = zscores(redis, &k.z);
        if z != self.z {
            return Err(format!("backend {}: {z:?}, expected {:?}", k.z, self.z));
        }
        Ok(())
    }
}

struct Keys {
    s: String,
    s2: String,
    e: String,
    h: String,
    set: String,
    z: String,
}

impl Keys {
    fn new(id: usize) -> Keys {
        let k = |n: &str| format!("mix:{id}:{n}");
        Keys {
            s: k("s"),
            s2: k("s2"),
            e: k("e"),
            h: k("h"),
            set: k("set"),
            z: k("z"),
        }
    }
}

/// 100 concurrent clients each run random batches (one command, or a pipeline of up to 8) of smart
/// writes, sync forms (SET NX/XX/GET, ZADD INCR, EXPIRE NX/XX, wrong arity) and reads of their
/// own keys: the table commands get exactly `+OK` / `:1`, the sync forms and reads get the real
/// reply of a backend that has seen every earlier write of the client, and at the end the backend
/// holds what each client's model says.
#[test]
fn mixed_writes_and_reads_of_100_clients() {
    let redis = Redis::start();
    let relayer = Arc::new(Relayer::smart(&redis.url(), "maxConnections = 2"));
    let port = redis.port();
    const CLIENTS: usize = 100;
    const ROUNDS: u64 = 40;
    let r = relayer.clone();
    run_threads(CLIENTS, move |id| {
        let mut rng = Rng::new(1000 + id as u64);
        let keys = Keys::new(id);
        let mut model = Model::default();
        let mut c = r.client();
        c.set_read_timeout(HANG);
        let mut n = 0u64;
        for round in 0..ROUNDS {
            let size = if rng.below(3) == 0 { 1 } else { 2 + rng.below(7) };
            let batch: Vec<(Vec<String>, Expect)> = (0..size)
                .map(|_| {
                    n += 1;
                    model.step(&mut rng, &keys, n)
                })
                .collect();
            let replies = if size == 1 {
                vec![c.cmd(&batch[0].0)]
            } else {
                let cmds: Vec<Vec<String>> = batch.iter().map(|(c, _)| c.clone()).collect();
                c.pipeline(&cmds)
            };
            for ((cmd, want), got) in batch.iter().zip(&replies) {
                if !want.check(got) {
                    return Err(format!(
                        "round {round} (batch of {size}): {} replied {got:?}, expected {want:?}",
                        cmd.join(" ")
                    ));
                }
            }
        }
        // A sync read last: everything before it reached the backend.
        let marker = c.cmd(&["GET", &keys.s]);
        if marker != model.s.as_deref().map_or(Reply::Nil, Reply::bulk) {
            return Err(format!("final GET replied {marker:?}, expected {:?}", model.s));
        }
        model.check_backend(&mut Client::tcp(port), &keys)
    });
}

// ---------------------------------------------------------------------------------------------
// Bursts

/// The `i`-th write of client `id` in a burst, with its early reply; `Bursts` knows what the
/// backend must hold afterwards.
fn burst_write(prefix: &str, id: usize, i: usize) -> (Vec<String>, Reply) {
    let v = format!("{id}:{i}:{}", "b".repeat(i % 64));
    let key = |n: &str| format!("{prefix}:{id}:{n}");
    match i % 6 {
        0 | 1 => (vec!["SET".into(), key(&format!("s{i}")), v], Reply::ok()),
        2 => (vec!["HSET".into(), key("h"), format!("f{i}"), v], Reply::Int(1)),
        3 => (vec!["SADD".into(), key("set"), format!("m{i}")], Reply::Int(1)),
        4 => (
            vec!["ZADD".into(), key("z"), i.to_string(), format!("m{i}")],
            Reply::Int(1),
        ),
        _ => (
            vec!["SETEX".into(), key(&format!("e{i}")), "3600".into(), v],
            Reply::ok(),
        ),
    }
}

/// What the writes `0..n` of client `id` leave on the backend.
#[derive(Default)]
struct Expected {
    strings: BTreeMap<String, String>,
    hashes: BTreeMap<String, BTreeMap<String, String>>,
    sets: BTreeMap<String, BTreeSet<String>>,
    zsets: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Expected {
    fn add(&mut self, cmd: &[String]) {
        match cmd[0].as_str() {
            "SET" => {
                self.strings.insert(cmd[1].clone(), cmd[2].clone());
            }
            "SETEX" => {
                self.strings.insert(cmd[1].clone(), cmd[3].clone());
            }
            "HSET" => {
                self.hashes
                    .entry(cmd[1].clone())
                    .or_default()
                    .insert(cmd[2].clone(), cmd[3].clone());
            }
            "SADD" => {
                self.sets
                    .entry(cmd[1].clone())
                    .or_default()
                    .insert(cmd[2].clone());
            }
            "ZADD" => {
                self.zsets
                    .entry(cmd[1].clone())
                    .or_default()
                    .insert(cmd[3].clone(), cmd[2].parse().unwrap());
            }
            other => panic!("no model for {other}"),
        }
    }

    fn keys(&self) -> usize {
        self.strings.len() + self.hashes.len() + self.sets.len() + self.zsets.len()
    }

    /// What differs on the backend (at most a few lines).
    fn mismatches(&self, redis: &mut Client) -> Vec<String> {
        let mut out = string_mismatches(redis, &self.strings);
        for (k, want) in &self.hashes {
            let got = hgetall(redis, k);
            if &got != want {
                let missing = want.keys().filter(|f| got.get(*f) != want.get(*f)).count();
                out.push(format!(
                    "{k}: {missing} of {} fields missing or wrong",
                    want.len()
                ));
            }
        }
        for (k, want) in &self.sets {
            let got = smembers(redis, k);
            if &got != want {
                out.push(format!(
                    "{k}: {} members, expected {} ({} missing)",
                    got.len(),
                    want.len(),
                    want.difference(&got).count()
                ));
            }
        }
        for (k, want) in &self.zsets {
            let got = zscores(redis, k);
            if &got != want {
                out.push(format!("{k}: {} members, expected {}", got.len(), want.len()));
            }
        }
        out
    }
}

/// Sends writes `0..n` of client `id` (chunks of `chunk`, pipelined) and checks their early
/// replies; calls `progress` after each chunk. Returns what they leave on the backend.
/// A thread that, once `start_after` writes of a burst are done, runs `fault` (which returns
/// how many connections it hit) `times` times, `every` apart, unless the burst ends first.
struct FaultsDuringBurst {
    done_writes: Arc<AtomicUsize>,
    finished: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i64, usize)>>,
}

impl FaultsDuringBurst {
    fn start(
        start_after: usize,
        times: usize,
        every: Duration,
        mut fault: impl FnMut() -> i64 + Send + 'static,
    ) -> Self {
        let done_writes = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let (done, fin) = (done_writes.clone(), finished.clone());
        let thread = std::thread::spawn(move || {
            wait_until(HANG, "the burst to start", || {
                done.load(Ordering::Relaxed) >= start_after || fin.load(Ordering::Relaxed)
            });
            let mut hits = Vec::new();
            for _ in 0..times {
                if fin.load(Ordering::Relaxed) {
                    break;
                }
                hits.push((fault(), done.load(Ordering::Relaxed)));
                std::thread::sleep(every);
            }
            hits
        });
        FaultsDuringBurst {
            done_writes,
            finished,
            thread,
        }
    }

    /// Ends the faults; returns (connections hit, writes done by then) for each.
    fn stop(self) -> Vec<(i64, usize)> {
        self.finished.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `clients` clients each send `n` background writes (pipelines of 50, counted in `done`), then
/// a sync GET of their last string write, which must see it; returns what each one expects.
fn burst_with_final_get(
    relayer: &Arc<Relayer>,
    prefix: &'static str,
    clients: usize,
    n: usize,
    done: &Arc<AtomicUsize>,
) -> Vec<Expected> {
    let all = Arc::new(Mutex::new(Vec::new()));
    let (r, a, d) = (relayer.clone(), all.clone(), done.clone());
    run_threads(clients, move |id| {
        let mut c = r.client();
        c.set_read_timeout(HANG);
        let expected = write_burst(&mut c, prefix, id, n, 50, |k| {
            d.fetch_add(k, Ordering::Relaxed);
        })?;
        let last = (0..n).rev().find(|i| i % 6 < 2).unwrap();
        let (cmd, _) = burst_write(prefix, id, last);
        let got = sync_get(&mut c, &cmd[1])?;
        if got != Reply::bulk(&cmd[2]) {
            return Err(format!(
                "final GET {} replied {got:?}, expected {:?}",
                cmd[1], cmd[2]
            ));
        }
        a.lock().unwrap().push(expected);
        Ok(())
    });
    Arc::try_unwrap(all)
        .ok()
        .expect("the client threads are done")
        .into_inner()
        .unwrap()
}

/// Runs `check` until it finds no mismatch or `settle` has passed (writes may still be on their
/// way to the backend); returns the last mismatches found.
fn settled_mismatches(settle: Duration, mut check: impl FnMut() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + settle;
    loop {
        let m = check();
        if m.is_empty() || Instant::now() >= deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What every client was told is what the backend holds: each expected key (polled for up to
/// `settle`, for writes still on their way) and no other key.
fn assert_backend_holds(redis: &Redis, all: &[Expected], settle: Duration) {
    let mut direct = redis.client();
    let mismatches = settled_mismatches(settle, || {
        all.iter().flat_map(|e| e.mismatches(&mut direct)).collect()
    });
    assert!(
        mismatches.is_empty(),
        "{} keys miss acknowledged writes {settle:?} after the burst, e.g.:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
    let keys: usize = all.iter().map(|e| e.keys()).sum();
    assert_eq!(redis.dbsize(), keys as i64, "keys on the backend");
}

fn write_burst(
    c: &mut Client,
    prefix: &str,
    id: usize,
    n: usize,
    chunk: usize,
    mut progress: impl FnMut(usize),
) -> Result<Expected, String> {
    let mut expected = Expected::default();
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let batch: Vec<_> = (i..end).map(|j| burst_write(prefix, id, j)).collect();
        let cmds: Vec<Vec<String>> = batch.iter().map(|(c, _)| c.clone()).collect();
        c.try_send_raw(&cmds.iter().flat_map(|c| encode_command(c)).collect::<Vec<u8>>())
            .map_err(|e| format!("sending writes {i}..{end}: {e}"))?;
        for (j, (cmd, want)) in batch.iter().enumerate() {
            let got = c
                .try_read_reply()
                .map_err(|e| format!("reply to write {}: {e}", i + j))?;
            if &got != want {
                return Err(format!("{} replied {got:?}, expected {want:?}", cmd.join(" ")));
            }
            expected.add(cmd);
        }
        progress(end - i);
        i = end;
    }
    Ok(expected)
}

/// 20 clients × 2000 background writes (SET, SETEX, HSET, SADD, ZADD), in pipelines of 1 to 500,
/// then a sync GET each: the backend then holds exactly what was written, no more keys.
#[test]
fn burst_lands_exactly_as_written() {
    let redis = Redis::start();
    let relayer = Arc::new(Relayer::smart(&redis.url(), "maxConnections = 2"));
    const CLIENTS: usize = 20;
    const N: usize = 2000;
    let all = Arc::new(Mutex::new(Vec::new()));
    let (r, a) = (relayer.clone(), all.clone());
    run_threads(CLIENTS, move |id| {
        let mut c = r.client();
        c.set_read_timeout(HANG);
        let chunk = [1, 10, 100, 500][id % 4];
        let expected = write_burst(&mut c, "burst", id, N, chunk, |_| {})?;
        // The sync marker: a GET of the last SET key sees it.
        let last = (0..N).rev().find(|i| i % 6 < 2).unwrap();
        let (cmd, _) = burst_write("burst", id, last);
        let got = c.cmd(&["GET", &cmd[1]]);
        if got != Reply::bulk(&cmd[2]) {
            return Err(format!("GET {} replied {got:?}, expected {:?}", cmd[1], cmd[2]));
        }
        a.lock().unwrap().push(expected);
        Ok(())
    });
    // Each client's last command was a sync GET, so its writes are there already.
    assert_backend_holds(&redis, &all.lock().unwrap(), Duration::ZERO);
}

/// `CLIENT KILL TYPE normal` on the backend, several times while 20 clients send background writes
/// (maxConnections = 2): the early replies keep coming, and once the burst and a sync GET per client
/// are done every acknowledged write is on the backend.
#[test]
fn client_kill_in_the_middle_of_a_burst() {
    let redis = Redis::start();
    let relayer = Arc::new(Relayer::smart(
        &redis.url(),
        "maxConnections = 2\nconnectTimeout = 2\ntimeout = 10",
    ));
    const CLIENTS: usize = 20;
    const N: usize = 5000;
    // Kills every normal client of the backend (the relayer's upstream connections; not the
    // killer itself) every 40 ms, 6 times, once the burst is under way.
    let mut killer = Client::tcp(redis.port());
    let faults = FaultsDuringBurst::start(CLIENTS * N / 20, 6, Duration::from_millis(40), move || {
        killer
            .q("CLIENT KILL TYPE normal")
            .as_int()
            .expect("CLIENT KILL replies a count")
    });
    let start = Instant::now();
    let all = burst_with_final_get(&relayer, "kill", CLIENTS, N, &faults.done_writes);
    let took = start.elapsed();
    let killed = faults.stop();
    let effective = killed.iter().filter(|(n, _)| *n > 0).count();
    eprintln!(
        "burst of {} writes in {took:?}; kills (connections killed, writes done by then): {killed:?}",
        CLIENTS * N
    );
    assert!(
        effective >= 2,
        "the burst ended before the kills hit the relayer twice ({killed:?}): make it longer"
    );
    assert_backend_holds(&redis, &all, DELIVERY);
    assert!(
        relayer.log().contains("backend connection lost"),
        "the relayer did not log the dropped connections:\n{}",
        relayer.log()
    );
}

/// The network drops the upstream connections (a delay link of 0.5 ms each way in front of the
/// backend closes them all, losing what it had in flight) several times while 10 clients send
/// background writes: every acknowledged write still ends up on the backend.
#[test]
fn link_cut_in_the_middle_of_a_burst() {
    let redis = Redis::start();
    let link = Arc::new(DelayLink::start(redis.port(), Duration::from_micros(500)));
    let relayer = Arc::new(Relayer::smart(
        &link.url(),
        "maxConnections = 2\nconnectTimeout = 2\ntimeout = 10",
    ));
    const CLIENTS: usize = 10;
    const N: usize = 5000;
    let cutter = link.clone();
    let faults = FaultsDuringBurst::start(CLIENTS * N / 20, 5, Duration::from_millis(60), move || {
        cutter.cut_all() as i64
    });
    let all = burst_with_final_get(&relayer, "cut", CLIENTS, N, &faults.done_writes);
    let cuts = faults.stop();
    eprintln!("cuts (connections closed, writes done by then): {cuts:?}");
    assert!(
        cuts.iter().filter(|(n, _)| *n > 0).count() >= 2,
        "the burst ended before two cuts hit the relayer ({cuts:?}): make it longer"
    );
    assert_backend_holds(&redis, &all, DELIVERY);
}

/// The backend stops executing writes for 3 s (`CLIENT PAUSE 3000 WRITE`) while 10 clients write
/// 12 MB of 1 KB SETs through a relayer with maxPendingBytes = 1 MiB: the writers are held back
/// (the burst cannot end before the pause does), the relayer's memory stays bounded, and every
/// write is on the backend afterwards.
#[test]
fn paused_backend_slows_writers_and_memory_stays_bounded() {
    let redis = Redis::start();
    let relayer = Arc::new(Relayer::smart(
        &redis.url(),
        "maxPendingBytes = 1048576\ntimeout = 30",
    ));
    const CLIENTS: usize = 10;
    const N: usize = 1200;
    const CHUNK: usize = 20;
    let value = |id: usize, i: usize| {
        let head = format!("{id}:{i}:");
        format!("{head}{}", "p".repeat(1024 - head.len()))
    };
    let start_rss = relayer.rss_kb();
    let done_writes = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(start_rss));
    let sampler = {
        let (finished, max_rss, pid) = (finished.clone(), max_rss.clone(), relayer.pid());
        std::thread::spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                max_rss.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let paused_at = Arc::new(Mutex::new(None::<Instant>));
    let pauser = {
        let (done_writes, paused_at, port) = (done_writes.clone(), paused_at.clone(), redis.port());
        std::thread::spawn(move || {
            let mut c = Client::tcp(port);
            // 1 MB written: 11 MB still to go, ten times maxPendingBytes.
            wait_until(HANG, "the burst to start", || {
                done_writes.load(Ordering::Relaxed) >= 1000
            });
            assert_eq!(c.q("CLIENT PAUSE 3000 WRITE"), Reply::ok());
            *paused_at.lock().unwrap() = Some(Instant::now());
        })
    };
    let (r, d) = (relayer.clone(), done_writes.clone());
    run_threads(CLIENTS, move |id| {
        let mut c = r.client();
        c.set_read_timeout(HANG);
        for start in (0..N).step_by(CHUNK) {
            let cmds: Vec<Vec<String>> = (start..start + CHUNK)
                .map(|i| vec!["SET".into(), format!("pause:{id}:{i}"), value(id, i)])
                .collect();
            for (i, got) in c.pipeline(&cmds).into_iter().enumerate() {
                if got != Reply::ok() {
                    return Err(format!("SET pause:{id}:{} replied {got:?}", start + i));
                }
            }
            d.fetch_add(CHUNK, Ordering::Relaxed);
        }
        Ok(())
    });
    let ended = Instant::now();
    finished.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    pauser.join().unwrap();
    let paused_at = paused_at.lock().unwrap().expect("the pause was issued");
    let held = ended.duration_since(paused_at);
    let grown = max_rss.load(Ordering::Relaxed).saturating_sub(start_rss);
    eprintln!("burst went on {held:?} after the pause; relayer RSS grew by {grown} KiB at most");
    assert!(
        held >= Duration::from_secs(2),
        "the writers finished {held:?} after a 3 s write pause with 10x maxPendingBytes still to write: \
         they were not held back"
    );
    assert!(
        grown < 40 * 1024,
        "relayer RSS grew by {grown} KiB during the burst (from {start_rss} KiB), more than 40 MiB"
    );
    let mut direct = redis.client();
    let expected: BTreeMap<String, String> = (0..CLIENTS)
        .flat_map(|id| (0..N).map(move |i| (format!("pause:{id}:{i}"), value(id, i))))
        .collect();
    let mismatches = settled_mismatches(DELIVERY, || string_mismatches(&mut direct, &expected));
    assert!(
        mismatches.is_empty(),
        "{} writes missing on the backend, e.g.:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(5)].join("\n")
    );
    assert_eq!(redis.dbsize(), expected.len() as i64);
}

// ---------------------------------------------------------------------------------------------
// Refused writes, SIGTERM, backend restarts, asyncCommands

/// A background HSET on a string key gets `:1` at once; the backend's WRONGTYPE is logged with the
/// command and the key, and the client's later commands get their right replies.
#[test]
fn wrongtype_on_a_background_hset_is_logged_and_harmless() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    assert_eq!(c.q("SET wt:k string"), Reply::ok());
    assert_eq!(c.q("HSET wt:k f v"), Reply::Int(1), "the early reply");
    assert_eq!(c.q("GET wt:k"), Reply::bulk("string"));
    assert_eq!(c.q("SET wt:other v2"), Reply::ok());
    assert_eq!(c.q("GET wt:other"), Reply::bulk("v2"));
    // Once more on a pipeline, and a different command.
    let replies = c.pipeline(&[
        vec!["SADD", "wt:k", "m"],
        vec!["GET", "wt:k"],
        vec!["HSET", "wt:h", "f", "v"],
        vec!["HGET", "wt:h", "f"],
    ]);
    assert_eq!(
        replies,
        vec![
            Reply::Int(1),
            Reply::bulk("string"),
            Reply::Int(1),
            Reply::bulk("v")
        ]
    );
    let line = relayer.wait_log_line(
        &[
            "background write refused by the backend",
            "hset",
            "wt:k",
            "WRONGTYPE",
        ],
        HANG,
    );
    eprintln!("logged: {line}");
    let line = relayer.wait_log_line(&["background write refused by the backend", "sadd", "wt:k"], HANG);
    eprintln!("logged: {line}");
    let mut direct = redis.client();
    assert_eq!(direct.q("GET wt:k"), Reply::bulk("string"));
    assert_eq!(direct.q("HGET wt:h f"), Reply::bulk("v"));
}

/// Writes of the background table whose arguments Redis refuses are not acknowledged early:
/// each gets the bytes Redis answers to the same command, nothing is stored, and the writes
/// around them keep their early replies and their order.
#[test]
fn arguments_redis_refuses_wait_for_its_error() {
    let redis = Redis::start();
    let relayer = Relayer::smart(&redis.url(), "");
    let mut c = relayer.client();
    let mut direct = redis.client();
    let refused: &[&[&str]] = &[
        &["SET", "ra:k", "v", "EX", "0"],
        &["SET", "ra:k", "v", "BADOPT"],
        &["SET", "ra:k", "v", "EX", "10", "PX", "10"],
        &["SETEX", "ra:k", "-5", "v"],
        &["PSETEX", "ra:k", "0", "v"],
        &["EXPIRE", "ra:k", "abc"],
        &["EXPIRE", "ra:k", "010"],
        &["ZADD", "ra:z", "nan", "m"],
        &["ZADD", "ra:z", "NX", "XX", "1", "m"],
        &["ZADD", "ra:z", "GT", "LT", "1", "m"],
        &["ZADD", "ra:z", "1", "m", "2"],
    ];
    for args in refused {
        let want = direct.cmd_raw(args);
        assert!(want.starts_with(b"-"), "{args:?}: Redis answered {:?}", s(&want));
        assert_eq!(s(&c.cmd_raw(args)), s(&want), "{args:?}");
    }
    assert_eq!(direct.q("EXISTS ra:k ra:z"), Reply::Int(0), "nothing stored");
    // Valid forms are still answered at once, and land in order.
    let replies = c.pipeline(&[
        vec!["SET", "ra:k", "v1", "EX", "100"],
        vec!["ZADD", "ra:z", "-inf", "m"],
        vec!["SET", "ra:k", "v", "EX", "0"],
        vec!["GET", "ra:k"],
    ]);
    assert_eq!(replies[..2], [Reply::ok(), Reply::Int(1)]);
    assert!(
        matches!(&replies[2], Reply::Error(e) if e.contains("invalid expire time")),
        "{replies:?}"
    );
    assert_eq!(replies[3], Reply::bulk("v1"));
    assert_eq!(direct.q("ZSCORE ra:z m"), Reply::bulk("-inf"));
}

/// A 1 KB value: 10 MB in all, so that the link has plenty in flight at SIGTERM.
fn term_value(i: usize) -> String {
    format!("{i:0>1024}")
}

/// 10,000 background writes (1 KB values) pipelined through a relayer whose backend is 5 ms away each way
/// (one upstream connection): once their early replies are read the relayer gets SIGTERM; it
/// exits 0 and all 10,000 are on the backend.
#[test]
fn sigterm_delivers_pending_writes_behind_a_slow_link() {
    let redis = Redis::start();
    let link = DelayLink::start(redis.port(), Duration::from_millis(5));
    let mut relayer = Relayer::smart(&link.url(), "maxConnections = 1\ndrainTimeout = 30");
    const N: usize = 10_000;
    let mut c = relayer.client();
    c.set_read_timeout(HANG);
    let cmds: Vec<Vec<String>> = (0..N)
        .map(|i| vec!["SET".into(), format!("term:{i}"), term_value(i)])
        .collect();
    for (i, r) in c.pipeline(&cmds).into_iter().enumerate() {
        assert_eq!(r, Reply::ok(), "early reply to SET term:{i}");
    }
    let mut direct = redis.client();
    let before = redis.dbsize();
    relayer.signal(libc::SIGTERM);
    // drainTimeout, then the exit.
    let st = relayer.wait_exit(Duration::from_secs(30) + EXIT);
    eprintln!("{before} of {N} writes were on the backend at SIGTERM");
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after SIGTERM; log:\n{}",
        relayer.log()
    );
    assert_eq!(redis.dbsize(), N as i64, "keys on the backend after exit");
    let expected: BTreeMap<String, String> = (0..N).map(|i| (format!("term:{i}"), term_value(i))).collect();
    let mismatches = string_mismatches(&mut direct, &expected);
    assert!(
        mismatches.is_empty(),
        "e.g. {:?}",
        &mismatches[..mismatches.len().min(5)]
    );
    assert!(
        !relayer.log().contains("background writes lost"),
        "log:\n{}",
        relayer.log()
    );
}

/// SIGTERM while the backend executes no writes (paused for 2 s): the drain waits for their
/// confirmation, the relayer exits 0 and every write is there.
#[test]
fn sigterm_waits_for_writes_the_backend_has_not_confirmed() {
    let redis = Redis::start();
    let mut relayer = Relayer::smart(&redis.url(), "drainTimeout = 20");
    let mut direct = redis.client();
    assert_eq!(direct.q("CLIENT PAUSE 2000 WRITE"), Reply::ok());
    let paused = Instant::now();
    let mut c = relayer.client();
    let cmds: Vec<Vec<String>> = (0..1000)
        .map(|i| vec!["SET".into(), format!("tp:{i}"), format!("v{i}")])
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| r.is_ok()));
    assert_eq!(redis.dbsize(), 0, "the pause holds the writes");
    relayer.signal(libc::SIGTERM);
    // drainTimeout, then the exit.
    let st = relayer.wait_exit(Duration::from_secs(20) + EXIT);
    assert_eq!(st.code(), Some(0), "exit status; log:\n{}", relayer.log());
    assert!(
        paused.elapsed() >= Duration::from_millis(1500),
        "exited {:?} into a 2 s pause: before the writes were confirmed",
        paused.elapsed()
    );
    assert_eq!(redis.dbsize(), 1000);
}

/// The backend is down at SIGTERM with 100 background writes waiting: after drainTimeout (1 s)
/// the relayer stops and logs them as lost, with the count.
#[test]
fn sigterm_with_the_backend_down_logs_the_lost_writes() {
    let mut redis = Redis::start();
    let mut relayer = Relayer::smart(&redis.url(), "drainTimeout = 1\nconnectTimeout = 1");
    let mut c = relayer.client();
    assert_eq!(c.q("SET lost:warm v"), Reply::ok());
    assert_eq!(sync_get(&mut c, "lost:warm").unwrap(), Reply::bulk("v"));
    redis.kill();
    let cmds: Vec<Vec<String>> = (0..100)
        .map(|i| vec!["SET".into(), format!("lost:{i}"), format!("v{i}")])
        .collect();
    let replies = c.pipeline(&cmds);
    assert!(
        replies.iter().all(|r| r.is_ok()),
        "early replies with the backend down: {replies:?}"
    );
    let sent = Instant::now();
    relayer.signal(libc::SIGTERM);
    relayer.wait_exit(EXIT);
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "exited after {:?}, before drainTimeout",
        sent.elapsed()
    );
    let line = relayer.wait_log_line(&["background writes lost"], HANG);
    assert!(
        line.split(|ch: char| !ch.is_ascii_digit()).any(|n| n == "100"),
        "the lost-writes line does not give the count 100: {line}"
    );
}

/// The backend is killed and restarted on the same port (empty) while 8 clients keep writing in
/// the background, with sync GETs now and then: while it is down the writes are still acknowledged
/// (the GETs fail fast), and every write sent after the kill is on the new backend once it is back.
#[test]
fn backend_restart_keeps_writes_acknowledged_while_it_was_down() {
    let mut redis = Redis::start();
    let relayer = Arc::new(Relayer::smart(
        &redis.url(),
        "maxConnections = 2\nconnectTimeout = 1\ntimeout = 10",
    ));
    const CLIENTS: usize = 8;
    // 0: before the kill, 1: down, 2: restarted.
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let during_down = Arc::new(AtomicU64::new(0));
    let get_errors = Arc::new(AtomicU64::new(0));
    let after_kill = Arc::new(Mutex::new(BTreeMap::new()));
    let worker = {
        let (r, phase, stop) = (relayer.clone(), phase.clone(), stop.clone());
        let (during_down, get_errors, after_kill) =
            (during_down.clone(), get_errors.clone(), after_kill.clone());
        std::thread::spawn(move || {
            run_threads(CLIENTS, move |id| {
                let mut c = r.client();
                c.set_read_timeout(HANG);
                let mut mine = BTreeMap::new();
                let mut i = 0usize;
                let mut batch_no = 0;
                while !stop.load(Ordering::Relaxed) {
                    batch_no += 1;
                    let p = phase.load(Ordering::SeqCst);
                    let cmds: Vec<Vec<String>> = (i..i + 10)
                        .map(|j| vec!["SET".into(), format!("rs:{id}:{j}"), format!("{id}:{j}:{p}")])
                        .collect();
                    let replies = c.pipeline(&cmds);
                    for (cmd, r) in cmds.iter().zip(&replies) {
                        if r.is_ok() {
                            if p >= 1 {
                                mine.insert(cmd[1].clone(), cmd[2].clone());
                            }
                            if p == 1 {
                                during_down.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if !is_backend_error(r) {
                            return Err(format!("{} replied {r:?}", cmd.join(" ")));
                        }
                    }
                    let last = &cmds[9];
                    i += 10;
                    if batch_no % 5 == 0 {
                        match c.cmd(&["GET", &last[1]]) {
                            r if is_backend_error(&r) => {
                                get_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            Reply::Nil => {}
                            Reply::Bulk(b) if b == last[2].as_bytes() => {}
                            r => return Err(format!("GET {} replied {r:?}, wrote {}", last[1], last[2])),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let key = format!("rs:{id}:{}", i - 1);
                sync_get(&mut c, &key)?;
                after_kill.lock().unwrap().extend(mine);
                Ok(())
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // Only writes sent once the old backend is gone count: one sent just before could have been
    // executed by it and lost with it, legitimately.
    redis.kill();
    phase.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    redis.restart();
    phase.store(2, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let expected = after_kill.lock().unwrap();
    eprintln!(
        "{} writes acknowledged after the kill, {} of them while the backend was down; {} GETs failed",
        expected.len(),
        during_down.load(Ordering::Relaxed),
        get_errors.load(Ordering::Relaxed)
    );
    assert!(
        during_down.load(Ordering::Relaxed) > 0,
        "no write was acknowledged while the backend was down"
    );
    let mut direct = redis.client();
    let mismatches = settled_mismatches(DELIVERY, || string_mismatches(&mut direct, &expected));
    assert!(
        mismatches.is_empty(),
        "{} of {} writes acknowledged after the kill are not on the restarted backend, e.g.:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
}

/// `asyncCommands = ["LPUSH"]` (and the space-separated form): LPUSH is answered `:1` at once,
/// every time, and the list on the backend has every element in order; RPUSH, not added, keeps its
/// real reply.
#[test]
fn async_commands_extend_the_table() {
    let redis = Redis::start();
    for (i, extra) in ["asyncCommands = [\"LPUSH\"]", "asyncCommands = \"LPUSH SREM\""]
        .into_iter()
        .enumerate()
    {
        let relayer = Relayer::smart(&redis.url(), extra);
        let mut c = relayer.client();
        let key = format!("lp:{i}");
        let cmds: Vec<Vec<String>> = (0..500)
            .map(|j| vec!["LPUSH".into(), key.clone(), format!("e{j}")])
            .collect();
        let replies = c.pipeline(&cmds);
        assert!(
            replies.iter().all(|r| *r == Reply::Int(1)),
            "{extra}: LPUSH replies {:?}",
            replies
                .iter()
                .filter(|r| **r != Reply::Int(1))
                .take(3)
                .collect::<Vec<_>>()
        );
        assert_eq!(c.cmd(&["LPUSH", &key, "one-at-a-time"]), Reply::Int(1));
        assert_eq!(c.cmd(&["LLEN", &key]), Reply::Int(501), "{extra}");
        assert_eq!(
            c.cmd(&["RPUSH", &key, "tail"]),
            Reply::Int(502),
            "{extra}: RPUSH is not added"
        );
        let got: Vec<String> = redis.query(&["LRANGE", &key, "0", "-1"]);
        let mut want: Vec<String> = (0..500).rev().map(|j| format!("e{j}")).collect();
        want.insert(0, "one-at-a-time".into());
        want.push("tail".into());
        assert_eq!(got, want, "{extra}: the list on the backend");
    }
}
