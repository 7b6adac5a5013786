//! A real Redis Cluster for the tests: redis-server processes in cluster mode on free 127.0.0.1
//! ports, formed with `redis-cli --cluster create`, a cluster-aware client to check what the
//! cluster holds, and the faults the relayer must survive (failover, killed nodes, slot
//! migration).
//!
//! Nodes are named by their index in `nodes()`, which never changes; their roles do (failovers),
//! so `masters()`, `replicas()` and the slot map are read from the cluster each time. Every
//! process is killed when the `Cluster` is dropped (each node is a `Redis`).

mod topology;

pub use topology::{
    crc16_xmodem, keys_in_slot, parse_cluster_nodes, parse_redirect, parse_redirect_text, slot_of, NodeInfo,
    Redirect, SlotRange, SLOTS,
};

use crate::timeouts::CLUSTER_SETTLE;
use crate::{encode_command, wait_until, BackendClient, BackendError, Client, Redis, Reply};
use redis_async::resp::FromResp;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Mutex;
use std::time::Duration;

/// `cluster-node-timeout` of `Cluster::start`, in milliseconds.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 2000;
/// A short `cluster-node-timeout` for fault tests: a killed master is replaced within a few
/// seconds, and a busy test machine still answers pings well within it.
pub const FAST_NODE_TIMEOUT_MS: u64 = 1000;
/// Keys per MIGRATE in `SlotMigration::move_keys`.
const MIGRATE_BATCH: usize = 100;
const MAX_REDIRECTS: usize = 10;
/// Read timeout of the harness's own connections to nodes, so a hung node fails the test.
const NODE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// At least 3 (`redis-cli --cluster create` refuses fewer).
    pub masters: usize,
    pub replicas_per_master: usize,
    pub node_timeout_ms: u64,
    /// More redis-server arguments for every node.
    pub extra_args: Vec<String>,
    /// The nodes' ports (`masters * (1 + replicas_per_master)` of them, from `free_node_ports`),
    /// e.g. where a relayer already looks for seeds; empty: free ports found at start.
    pub ports: Vec<u16>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: DEFAULT_NODE_TIMEOUT_MS,
            extra_args: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// One `[[relayer]]` entry relaying `listen` to the cluster at `seeds` (`Cluster::seeds()`) in
/// `mode` (`sync`, `smart`); `extra` (more `key = value` lines) is appended as is.
pub fn cluster_entry(mode: &str, listen: &str, seeds: &str, extra: &str) -> String {
    format!(
        "[[relayer]]\nprotocol = \"redis-cluster\"\nmode = \"{mode}\"\nlisten = \"{listen}\"\nurl = \"{seeds}\"\n{extra}\n"
    )
}

/// `n` ports for cluster nodes (each with its bus port free too), nothing listening on them yet.
pub fn free_node_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| crate::ports::free_node_port()).collect()
}

/// A Redis Cluster of redis-server processes, all killed on drop.
pub struct Cluster {
    nodes: Vec<Redis>,
    /// Node ids (CLUSTER MYID), kept across restarts by nodes.conf.
    ids: Vec<String>,
    opts: ClusterOptions,
    /// Connections of the cluster-aware client, by port: taken out while in use, so threads
    /// sharing the `Cluster` never wait for each other.
    conns: Mutex<HashMap<u16, Vec<Client>>>,
    /// The typed connections that read what the nodes hold, pooled the same way.
    typed: Mutex<HashMap<u16, Vec<BackendClient>>>,
    /// Owner port of every slot as last seen (0: unknown), updated by MOVED.
    routes: Mutex<Vec<u16>>,
}

impl Cluster {
    /// 3 masters with one replica each, `cluster-node-timeout` 2000 ms.
    pub fn start() -> Cluster {
        Cluster::start_opts(ClusterOptions::default())
    }

    /// `masters` masters with `replicas_per_master` replicas each; `extra_args` go to every
    /// redis-server.
    pub fn start_with(masters: usize, replicas_per_master: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_opts(ClusterOptions {
            masters,
            replicas_per_master,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ..ClusterOptions::default()
        })
    }

    /// Starts the nodes, forms the cluster with `redis-cli --cluster create` and waits until every
    /// node says `cluster_state:ok`, all agree on the slot map and every replica is in sync.
    pub fn start_opts(opts: ClusterOptions) -> Cluster {
        assert!(
            opts.masters >= 3,
            "a Redis Cluster needs at least 3 masters (redis-cli --cluster create refuses {})",
            opts.masters
        );
        let count = opts.masters * (1 + opts.replicas_per_master);
        let timeout = opts.node_timeout_ms.to_string();
        let mut args: Vec<&str> = vec![
            "--cluster-enabled",
            "yes",
            // Relative to --dir, the node's own temporary directory: <dir>/nodes.conf.
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            // Diskless full syncs otherwise wait 5 s for more replicas to join.
            "--repl-diskless-sync-delay",
            "0",
            // CLUSTER SLOTS leaves out replicas whose replication offset is still 0, and without
            // writes a master only moves it with these pings (every 10 s by default).
            "--repl-ping-replica-period",
            "1",
        ];
        args.extend(opts.extra_args.iter().map(String::as_str));
        let mut nodes = Vec::with_capacity(count);
        if opts.ports.is_empty() {
            for _ in 0..count {
                nodes.push(Cluster::start_node(&args));
            }
        } else {
            assert_eq!(opts.ports.len(), count, "one port per node");
            for &port in &opts.ports {
                let node = Redis::try_start_on(port, &args)
                    .unwrap_or_else(|e| panic!("cluster node on port {port}: {e}"));
                nodes.push(node);
            }
        }
        let ids = nodes
            .iter()
            .map(|n| {
                n.client()
                    .cmd(&["CLUSTER", "MYID"])
                    .as_str()
                    .expect("CLUSTER MYID returns the id")
            })
            .collect();
        let cluster = Cluster {
            nodes,
            ids,
            opts,
            conns: Mutex::new(HashMap::new()),
            typed: Mutex::new(HashMap::new()),
            routes: Mutex::new(vec![0; SLOTS as usize]),
        };
        let addrs: Vec<String> = cluster.nodes.iter().map(Redis::addr).collect();
        let mut cli: Vec<&str> = vec!["--cluster", "create"];
        cli.extend(addrs.iter().map(String::as_str));
        let replicas = cluster.opts.replicas_per_master.to_string();
        cli.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let (st, out, err) = crate::redis_cli(&cli);
        if !st.success() {
            panic!("redis-cli {cli:?} failed with {st}:\n{out}\n{err}");
        }
        cluster.wait_settled();
        cluster
    }

    fn start_node(args: &[&str]) -> Redis {
        // A port found free can be taken before redis binds it (or its bus port): try another.
        let mut last_err = String::new();
        for _ in 0..5 {
            match Redis::try_start_on(crate::ports::free_node_port(), args) {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a cluster node: {last_err}");
    }

    /// Every node, by index (the index of a node never changes).
    pub fn nodes(&self) -> &[Redis] {
        &self.nodes
    }

    pub fn node(&self, node: usize) -> &Redis {
        &self.nodes[node]
    }

    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port()
    }

    /// The node's cluster id.
    pub fn id(&self, node: usize) -> &str {
        &self.ids[node]
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The node at `port`, if it is one of ours.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    fn index_of_id(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// False once `kill` stopped it (until `restart`).
    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].pid().is_some()
    }

    /// Every node, `tcp://127.0.0.1:PORT` separated by spaces: the relayer's `url`.
    pub fn seeds(&self) -> String {
        self.nodes.iter().map(Redis::url).collect::<Vec<_>>().join(" ")
    }

    /// A direct (not cluster-aware) connection to a node.
    pub fn client(&self, node: usize) -> Client {
        self.nodes[node].client()
    }

    // ---- what the cluster says ----------------------------------------------------------------

    /// CLUSTER NODES as `node` sees it.
    pub fn cluster_nodes(&self, node: usize) -> Vec<NodeInfo> {
        let text = self.cmd_on_node(node, &["CLUSTER", "NODES"]);
        parse_cluster_nodes(&text.as_str().unwrap_or_else(|| panic!("CLUSTER NODES: {text:?}")))
    }

    /// CLUSTER NODES as the first live node that answers sees it.
    fn view(&self) -> Vec<NodeInfo> {
        for i in 0..self.nodes.len() {
            if !self.is_alive(i) {
                continue;
            }
            if let Ok(Reply::Bulk(b)) = self.try_cmd_on_port(self.port(i), &["CLUSTER", "NODES"]) {
                return parse_cluster_nodes(&String::from_utf8_lossy(&b));
            }
        }
        panic!("no cluster node answers CLUSTER NODES");
    }

    /// The masters as the cluster currently sees them (not failing), by index.
    pub fn masters(&self) -> Vec<usize> {
        self.role_members(NodeInfo::is_master)
    }

    /// The replicas as the cluster currently sees them (not failing), by index.
    pub fn replicas(&self) -> Vec<usize> {
        self.role_members(NodeInfo::is_replica)
    }

    fn role_members(&self, role: fn(&NodeInfo) -> bool) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .view()
            .iter()
            .filter(|n| role(n) && !n.is_failing())
            .filter_map(|n| self.index_of_port(n.port))
            .collect();
        v.sort_unstable();
        v
    }

    /// The replicas of `master` (failing ones included), as the cluster sees them.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let id = self.id(master);
        let mut v: Vec<usize> = self
            .view()
            .iter()
            .filter(|n| n.is_replica() && n.master_id.as_deref() == Some(id))
            .filter_map(|n| self.index_of_port(n.port))
            .collect();
        v.sort_unstable();
        v
    }

    /// The master of `replica`, as the replica itself sees it.
    pub fn master_of(&self, replica: usize) -> Option<usize> {
        let me = self.myself(replica);
        me.master_id.and_then(|id| self.index_of_id(&id))
    }

    /// The node's own line of its CLUSTER NODES.
    fn myself(&self, node: usize) -> NodeInfo {
        self.cluster_nodes(node)
            .into_iter()
            .find(|n| n.has_flag("myself"))
            .expect("CLUSTER NODES has a myself line")
    }

    /// The slot map from CLUSTER SLOTS of the first live node that answers.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        for i in 0..self.nodes.len() {
            if self.is_alive(i) {
                if let Ok(map) = self.try_slot_map(i) {
                    return map;
                }
            }
        }
        panic!("no cluster node answers CLUSTER SLOTS");
    }

    fn try_slot_map(&self, node: usize) -> Result<Vec<SlotRange>, String> {
        let reply = self
            .try_cmd_on_port(self.port(node), &["CLUSTER", "SLOTS"])
            .map_err(|e| e.to_string())?;
        let bad = || format!("unexpected CLUSTER SLOTS reply from node {node}: {reply:?}");
        let mut map = Vec::new();
        for range in reply.as_array().ok_or_else(bad)? {
            let r = range.as_array().ok_or_else(bad)?;
            let int = |i: usize| r.get(i).and_then(Reply::as_int).ok_or_else(bad);
            let mut servers = Vec::new();
            for s in r.get(2..).unwrap_or_default() {
                let port = s.as_array().and_then(|s| s.get(1)?.as_int()).ok_or_else(bad)?;
                let idx = self
                    .index_of_port(port as u16)
                    .ok_or_else(|| format!("CLUSTER SLOTS names an unknown node: {reply:?}"))?;
                servers.push(idx);
            }
            let master = *servers.first().ok_or_else(bad)?;
            let mut replicas = servers[1..].to_vec();
            replicas.sort_unstable();
            map.push(SlotRange {
                start: int(0)? as u16,
                end: int(1)? as u16,
                master,
                replicas,
            });
        }
        map.sort_by_key(|r| r.start);
        Ok(map)
    }

    /// The master serving `slot`, per the slot map.
    pub fn node_for_slot(&self, slot: u16) -> usize {
        self.slot_map()
            .iter()
            .find(|r| r.start <= slot && slot <= r.end)
            .unwrap_or_else(|| panic!("slot {slot} is not served"))
            .master
    }

    /// The slot ranges `master` serves, per the slot map.
    pub fn slots_of(&self, master: usize) -> Vec<(u16, u16)> {
        self.slot_map()
            .iter()
            .filter(|r| r.master == master)
            .map(|r| (r.start, r.end))
            .collect()
    }

    /// The hash slot of `key` (see the free function `slot_of`).
    pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
        slot_of(key)
    }

    /// `n` keys (`key:N`) spread evenly over the current masters: each gets `n / masters` or one
    /// more. Panics if `n` is smaller than the number of masters.
    pub fn keys_on_every_master(&self, n: usize) -> Vec<String> {
        self.keys_on_every_master_prefixed("key:", n)
    }

    /// `keys_on_every_master` with keys named `<prefix>N`.
    pub fn keys_on_every_master_prefixed(&self, prefix: &str, n: usize) -> Vec<String> {
        let map = self.slot_map();
        let masters: BTreeSet<usize> = map.iter().map(|r| r.master).collect();
        assert!(
            n >= masters.len(),
            "{n} keys cannot cover {} masters",
            masters.len()
        );
        let quota = n.div_ceil(masters.len());
        let mut per_master: HashMap<usize, usize> = HashMap::new();
        let mut keys = Vec::with_capacity(n);
        for i in 0u64.. {
            if keys.len() == n {
                break;
            }
            let key = format!("{prefix}{i}");
            let slot = slot_of(&key);
            let owner = map
                .iter()
                .find(|r| r.start <= slot && slot <= r.end)
                .unwrap_or_else(|| panic!("slot {slot} is not served"))
                .master;
            let count = per_master.entry(owner).or_default();
            if *count < quota {
                *count += 1;
                keys.push(key);
            }
        }
        keys
    }

    // ---- settling ------------------------------------------------------------------------------

    /// Ok when every live node says `cluster_state:ok`, all give the same CLUSTER SLOTS covering
    /// every slot, every live node is in that map (as master or non-failed replica), and every
    /// live replica's link to its master is up; else what is not there yet.
    pub fn settled(&self) -> Result<(), String> {
        let mut agreed: Option<(usize, Vec<SlotRange>)> = None;
        for i in (0..self.nodes.len()).filter(|&i| self.is_alive(i)) {
            let port = self.port(i);
            let info = self
                .try_cmd_on_port(port, &["CLUSTER", "INFO"])
                .map_err(|e| format!("node {i}: CLUSTER INFO: {e}"))?
                .as_str()
                .unwrap_or_default();
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(format!("node {i} (port {port}) is not cluster_state:ok"));
            }
            let map = self.try_slot_map(i)?;
            let covered: u32 = map.iter().map(|r| (r.end - r.start) as u32 + 1).sum();
            if covered != SLOTS as u32 {
                return Err(format!("node {i} maps {covered} slots: {map:?}"));
            }
            match &agreed {
                None => agreed = Some((i, map)),
                Some((j, m)) if *m != map => {
                    return Err(format!(
                        "nodes {j} and {i} disagree on the slot map:\n{m:?}\n{map:?}"
                    ))
                }
                Some(_) => {}
            }
            let nodes = match self.try_cmd_on_port(port, &["CLUSTER", "NODES"]) {
                Ok(Reply::Bulk(b)) => parse_cluster_nodes(&String::from_utf8_lossy(&b)),
                other => return Err(format!("node {i}: CLUSTER NODES: {other:?}")),
            };
            let me = nodes
                .iter()
                .find(|n| n.has_flag("myself"))
                .ok_or_else(|| format!("node {i}: no myself line"))?;
            if me.is_replica() {
                let repl = self
                    .try_cmd_on_port(port, &["INFO", "replication"])
                    .map_err(|e| format!("node {i}: INFO: {e}"))?
                    .as_str()
                    .unwrap_or_default();
                if !repl.lines().any(|l| l.trim() == "master_link_status:up") {
                    return Err(format!(
                        "replica {i} (port {port}) is not in sync with its master"
                    ));
                }
            }
        }
        let (_, map) = agreed.ok_or("no live node")?;
        for i in (0..self.nodes.len()).filter(|&i| self.is_alive(i)) {
            let listed = map.iter().any(|r| r.master == i || r.replicas.contains(&i));
            if !listed {
                return Err(format!(
                    "node {i} (port {}) is not in the slot map yet",
                    self.port(i)
                ));
            }
        }
        Ok(())
    }

    /// Waits (up to `CLUSTER_SETTLE`) until `settled()`.
    pub fn wait_settled(&self) {
        let mut last = String::new();
        let ok = (|| {
            let deadline = std::time::Instant::now() + CLUSTER_SETTLE;
            let mut pause = Duration::from_millis(20);
            while std::time::Instant::now() < deadline {
                match self.settled() {
                    Ok(()) => return true,
                    Err(e) => last = e,
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            false
        })();
        if !ok {
            panic!("cluster not settled after {CLUSTER_SETTLE:?}: {last}");
        }
        self.forget_routes();
    }

    /// Waits until every live replica has all the writes its master had when this was called
    /// (replication offsets), e.g. before killing a master whose data must survive.
    pub fn wait_replicated(&self) {
        let offset = |node: usize, field: &str| -> Option<i64> {
            let info = self
                .try_cmd_on_port(self.port(node), &["INFO", "replication"])
                .ok()?;
            info.as_str()?
                .lines()
                .find_map(|l| l.trim().strip_prefix(field)?.strip_prefix(':')?.parse().ok())
        };
        let mut targets = Vec::new();
        for r in self.replicas() {
            if !self.is_alive(r) {
                continue;
            }
            let m = self.master_of(r).expect("a replica has a master");
            let want = offset(m, "master_repl_offset")
                .unwrap_or_else(|| panic!("no master_repl_offset on master {m}"));
            targets.push((r, want));
        }
        wait_until(CLUSTER_SETTLE, "replicas to catch up with their masters", || {
            targets
                .iter()
                .all(|&(r, want)| offset(r, "slave_repl_offset").is_some_and(|o| o >= want))
        });
    }

    // ---- the cluster-aware client --------------------------------------------------------------

    /// Sends one command to the node at `port` on a pooled connection (a fresh one if the pooled
    /// one turns out dead and the command is safe to send twice: the node may have been
    /// restarted).
    fn try_cmd_on_port<A: AsRef<[u8]>>(&self, port: u16, args: &[A]) -> io::Result<Reply> {
        self.try_pipeline_on_port(port, &[args]).map(|mut v| v.remove(0))
    }

    fn try_pipeline_on_port<A: AsRef<[u8]>>(&self, port: u16, cmds: &[&[A]]) -> io::Result<Vec<Reply>> {
        let mut wire = Vec::new();
        for c in cmds {
            wire.extend_from_slice(&encode_command(c));
        }
        let pooled = self.conns.lock().unwrap().get_mut(&port).and_then(Vec::pop);
        let run = |c: &mut Client| -> io::Result<Vec<Reply>> {
            c.try_send_raw(&wire)?;
            (0..cmds.len()).map(|_| c.try_read_reply()).collect()
        };
        let (conn, replies) = match pooled {
            Some(mut c) => match run(&mut c) {
                Ok(r) => (c, r),
                // The pooled connection may be to a node that was restarted since: the commands
                // may also have run, so only those that may run twice are sent again (never
                // MIGRATE, INCR...), and only when the node closed the connection (not when a
                // live node is slow to answer).
                Err(e) if closed(&e) && cmds.iter().all(|c| repeatable(c)) => {
                    let mut c = Client::connect_tcp(port)?;
                    c.set_read_timeout(NODE_READ_TIMEOUT);
                    let r = run(&mut c)?;
                    (c, r)
                }
                Err(e) => return Err(e),
            },
            None => {
                let mut c = Client::connect_tcp(port)?;
                c.set_read_timeout(NODE_READ_TIMEOUT);
                let r = run(&mut c)?;
                (c, r)
            }
        };
        // A connection a command left in some state is not reused (ASKING lasts one command).
        const STATEFUL: [&[u8]; 9] = [
            b"READONLY",
            b"MULTI",
            b"WATCH",
            b"SUBSCRIBE",
            b"PSUBSCRIBE",
            b"SSUBSCRIBE",
            b"MONITOR",
            b"CLIENT",
            b"HELLO",
        ];
        let clean = !cmds.iter().any(|c| {
            c.first()
                .is_some_and(|a| STATEFUL.iter().any(|s| a.as_ref().eq_ignore_ascii_case(s)))
        });
        if clean {
            self.conns.lock().unwrap().entry(port).or_default().push(conn);
        }
        Ok(replies)
    }

    /// Sends one command to `node` and returns its reply (no redirection followed); panics if the
    /// node cannot be reached. For stateless commands: a test that needs a connection of its own
    /// (MULTI, SUBSCRIBE...) takes `client(node)`.
    pub fn cmd_on_node<A: AsRef<[u8]>>(&self, node: usize, args: &[A]) -> Reply {
        self.try_cmd_on_port(self.port(node), args)
            .unwrap_or_else(|e| panic!("node {node} (port {}): {e}", self.port(node)))
    }

    /// Forgets the cached slot owners (after a change of the slot map).
    fn forget_routes(&self) {
        self.routes.lock().unwrap().fill(0);
    }

    fn owner_port(&self, slot: u16) -> u16 {
        let known = self.routes.lock().unwrap()[slot as usize];
        if known != 0 {
            return known;
        }
        let map = self.slot_map();
        let mut routes = self.routes.lock().unwrap();
        for r in &map {
            let port = self.port(r.master);
            routes[r.start as usize..=r.end as usize].fill(port);
        }
        routes[slot as usize]
    }

    /// Sends a command whose first key is `args[1]` to the master serving its slot, following
    /// MOVED (and remembering it) and ASK (with ASKING), at most 10 hops. Any other reply,
    /// errors included, is returned.
    pub fn try_cmd_on_owner<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Reply, String> {
        assert!(args.len() >= 2, "cmd_on_owner needs a key in args[1]");
        let slot = slot_of(args[1].as_ref());
        let mut port = self.owner_port(slot);
        let mut asking = false;
        for _ in 0..MAX_REDIRECTS {
            let reply = if asking {
                let asking_cmd: &[&[u8]] = &[b"ASKING"];
                let cmd: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
                let mut r = self
                    .try_pipeline_on_port(port, &[asking_cmd, &cmd])
                    .map_err(|e| format!("port {port}: {e}"))?;
                r.pop().unwrap()
            } else {
                self.try_cmd_on_port(port, args)
                    .map_err(|e| format!("port {port}: {e}"))?
            };
            match parse_redirect(&reply) {
                Some((Redirect::Moved, s, to)) => {
                    self.routes.lock().unwrap()[s as usize] = to;
                    port = to;
                    asking = false;
                }
                Some((Redirect::Ask, _, to)) => {
                    port = to;
                    asking = true;
                }
                None => return Ok(reply),
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirections for slot {slot}"))
    }

    /// `try_cmd_on_owner`, panicking when a node cannot be reached.
    pub fn cmd_on_owner<A: AsRef<[u8]>>(&self, args: &[A]) -> Reply {
        self.try_cmd_on_owner(args)
            .unwrap_or_else(|e| panic!("cmd_on_owner: {e}"))
    }

    /// GET `key` from the master serving it, as `T` (`String`, `Vec<u8>`; nil is `None`); panics
    /// on an error reply or when the node cannot be reached.
    pub fn get<T: FromResp + Unpin>(&self, key: impl AsRef<[u8]>) -> Option<T> {
        self.try_get(key).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `get`, with the error instead of a panic (for polls across a failover or a migration).
    pub fn try_get<T: FromResp + Unpin>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, String> {
        self.query_on_owner(&[b"GET".as_slice(), key.as_ref()])
    }

    /// SET `key` `value` on the master serving it; panics unless it says OK.
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let r = self.cmd_on_owner(&[b"SET".as_slice(), key.as_ref(), value.as_ref()]);
        assert!(
            r.is_ok(),
            "SET {:?}: {r:?}",
            String::from_utf8_lossy(key.as_ref())
        );
    }

    /// GET of every key as `T`, in order: pipelined to each owner, redirected ones sent again
    /// one by one; panics on any error.
    pub fn get_all<T: FromResp + Unpin, K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<T>> {
        self.try_get_all(keys).unwrap_or_else(|e| panic!("get_all: {e}"))
    }

    /// `get_all`, with the first error (an error reply, a node that cannot be reached) instead
    /// of a panic.
    pub fn try_get_all<T: FromResp + Unpin, K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>, String> {
        let mut by_port: HashMap<u16, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            by_port.entry(self.owner_port(slot_of(k))).or_default().push(i);
        }
        let mut out: Vec<Option<T>> = keys.iter().map(|_| None).collect();
        for (port, idx) in by_port {
            let cmds: Vec<[&[u8]; 2]> = idx
                .iter()
                .map(|&i| [b"GET".as_slice(), keys[i].as_ref()])
                .collect();
            let replies = self.with_backend(port, |c| c.pipeline::<Option<T>, _, _>(&cmds))?;
            for (&i, r) in idx.iter().zip(replies) {
                out[i] = match r {
                    Ok(v) => v,
                    Err(e) if e.reply().and_then(parse_redirect_text).is_some() => self.try_get(&keys[i])?,
                    Err(e) => return Err(e.into()),
                };
            }
        }
        Ok(out)
    }

    /// Sends a read whose first key is `args[1]` to the master serving its slot on a typed
    /// connection, following MOVED (and remembering it) and ASK (with ASKING) like
    /// `try_cmd_on_owner`, and converts the reply to `T`. Any other error reply is an `Err`.
    pub fn query_on_owner<T, A>(&self, args: &[A]) -> Result<T, String>
    where
        T: FromResp + Unpin,
        A: AsRef<[u8]>,
    {
        assert!(args.len() >= 2, "query_on_owner needs a key in args[1]");
        let slot = slot_of(args[1].as_ref());
        let mut port = self.owner_port(slot);
        let mut asking = false;
        for _ in 0..MAX_REDIRECTS {
            let reply = self.with_backend(port, |c| {
                if asking {
                    c.query::<(), _>(&["ASKING"])?;
                }
                c.query::<T, _>(args)
            });
            match reply {
                Ok(v) => return Ok(v),
                Err(e) => match e.reply().and_then(parse_redirect_text) {
                    Some((Redirect::Moved, s, to)) => {
                        self.routes.lock().unwrap()[s as usize] = to;
                        port = to;
                        asking = false;
                    }
                    Some((Redirect::Ask, _, to)) => {
                        port = to;
                        asking = true;
                    }
                    None => return Err(e.into()),
                },
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirections for slot {slot}"))
    }

    /// Runs `read` on a typed connection to `port`, pooled or new. Reads only: when a pooled
    /// connection turns out to be closed (its node was restarted since), `read` runs again on a
    /// new one; not when a live node is slow to answer.
    fn with_backend<R>(
        &self,
        port: u16,
        read: impl Fn(&BackendClient) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        let pooled = self.typed.lock().unwrap().get_mut(&port).and_then(Vec::pop);
        let (client, r) = match pooled {
            Some(c) => match read(&c) {
                Err(e) if e.is_lost() => {
                    let c = BackendClient::connect(port)?;
                    let r = read(&c);
                    (c, r)
                }
                r => (c, r),
            },
            None => {
                let c = BackendClient::connect(port)?;
                let r = read(&c);
                (c, r)
            }
        };
        if !client.is_lost() {
            self.typed.lock().unwrap().entry(port).or_default().push(client);
        }
        r
    }

    /// Forgets the pooled connections to `port` (its node was killed or restarted).
    fn forget_conns(&self, port: u16) {
        self.conns.lock().unwrap().remove(&port);
        self.typed.lock().unwrap().remove(&port);
    }

    /// DBSIZE summed over the current masters.
    pub fn dbsize_total(&self) -> i64 {
        self.masters().into_iter().map(|m| self.node(m).dbsize()).sum()
    }

    /// Every key of every current master (SCAN on each).
    pub fn all_keys(&self) -> BTreeSet<Vec<u8>> {
        let mut keys = BTreeSet::new();
        for m in self.masters() {
            let c = self.node(m).backend_client();
            let mut cursor = "0".to_string();
            loop {
                let (next, found): (String, Vec<Vec<u8>>) = c
                    .query(&["SCAN", &cursor, "COUNT", "1000"])
                    .unwrap_or_else(|e| panic!("node {m}: {e}"));
                cursor = next;
                keys.extend(found);
                if cursor == "0" {
                    break;
                }
            }
        }
        keys
    }

    /// FLUSHALL on every current master.
    pub fn flushall(&self) {
        for m in self.masters() {
            let r = self.cmd_on_node(m, &["FLUSHALL"]);
            assert!(r.is_ok(), "FLUSHALL on node {m}: {r:?}");
        }
    }

    // ---- faults --------------------------------------------------------------------------------

    /// SIGKILL to a node (nothing is waited for: the cluster notices after the node timeout).
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
        self.forget_conns(self.port(node));
        self.forget_routes();
    }

    /// Starts a killed node again, on its port with its nodes.conf (so the same id), and waits
    /// until the cluster has settled with it. It comes back empty (no persistence): a killed
    /// master that was not replaced comes back with its slots and no keys; one that was replaced
    /// comes back as a replica of its successor.
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart();
        self.forget_conns(self.port(node));
        self.wait_settled();
    }

    /// Starts a killed node again without waiting for the cluster to settle (when several
    /// nodes come back at once, call `wait_settled` after the last).
    pub fn nodes_mut_restart(&mut self, node: usize) {
        self.nodes[node].restart();
        self.forget_conns(self.port(node));
    }

    /// CLUSTER FAILOVER on `replica`: waits until it is a master and the cluster has settled.
    pub fn failover(&self, replica: usize) {
        self.failover_mode(replica, None);
    }

    /// CLUSTER FAILOVER with `FORCE` or `TAKEOVER` (or none).
    pub fn failover_mode(&self, replica: usize, mode: Option<&str>) {
        assert!(
            self.myself(replica).is_replica(),
            "node {replica} is not a replica"
        );
        let mut cmd = vec!["CLUSTER", "FAILOVER"];
        cmd.extend(mode);
        let r = self.cmd_on_node(replica, &cmd);
        assert!(r.is_ok(), "{cmd:?} on node {replica}: {r:?}");
        wait_until(
            CLUSTER_SETTLE,
            &format!("node {replica} to become master"),
            || self.myself(replica).is_master(),
        );
        self.wait_settled();
    }

    /// Kills `master` (if it is not dead already) and waits until one of its replicas took over
    /// and the cluster has settled; returns the new master. Takes about the node timeout plus an
    /// election (start the cluster with `FAST_NODE_TIMEOUT_MS`).
    pub fn wait_failover_after_kill(&mut self, master: usize) -> usize {
        let replicas = self.replicas_of(master);
        assert!(!replicas.is_empty(), "node {master} has no replica to take over");
        if self.is_alive(master) {
            self.kill(master);
        }
        let new = crate::poll_until(
            CLUSTER_SETTLE,
            &format!("a replica of node {master} to take over"),
            || {
                replicas
                    .iter()
                    .copied()
                    .find(|&r| self.is_alive(r) && self.myself(r).is_master())
            },
        );
        self.wait_settled();
        new
    }

    /// Moves `slot` from master `from` to master `to` with its keys, step by step as
    /// `redis-cli --cluster reshard` does, and waits until every node agrees.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize) {
        let m = self.begin_migration(slot, from, to);
        m.move_keys(usize::MAX);
        m.finish();
    }

    /// Starts moving `slot` from `from` to `to` (SETSLOT IMPORTING on `to`, then MIGRATING on
    /// `from`) and returns the migration, to move keys and finish when the test wants: meanwhile
    /// `from` answers ASK for keys it no longer holds, and `to` MOVED unless sent ASKING.
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize) -> SlotMigration<'_> {
        let owner = self.node_for_slot(slot);
        assert_eq!(owner, from, "slot {slot} is served by node {owner}, not {from}");
        assert_ne!(from, to, "migrating slot {slot} to the node that has it");
        let s = slot.to_string();
        let r = self.cmd_on_node(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", self.id(from)]);
        assert!(r.is_ok(), "SETSLOT {s} IMPORTING on node {to}: {r:?}");
        let r = self.cmd_on_node(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", self.id(to)]);
        assert!(r.is_ok(), "SETSLOT {s} MIGRATING on node {from}: {r:?}");
        SlotMigration {
            cluster: self,
            slot,
            from,
            to,
        }
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots (its choice: the first ones) from master
    /// `from` to master `to`, then waits until every node agrees. Returns redis-cli's output.
    pub fn reshard_with_redis_cli(&self, from: usize, to: usize, slots: usize) -> String {
        let addr = self.nodes[from].addr();
        let n = slots.to_string();
        let args = [
            "--cluster",
            "reshard",
            &addr,
            "--cluster-from",
            self.id(from),
            "--cluster-to",
            self.id(to),
            "--cluster-slots",
            &n,
            "--cluster-yes",
        ];
        let (st, out, err) = crate::redis_cli(&args);
        if !st.success() || out.contains("[ERR]") {
            panic!("redis-cli {args:?} failed with {st}:\n{out}\n{err}");
        }
        self.wait_settled();
        out
    }
}

/// The connection was closed or reset by the other side (not a timeout).
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Commands the harness may send twice without changing the outcome.
fn repeatable<A: AsRef<[u8]>>(cmd: &[A]) -> bool {
    let name = |i: usize| {
        cmd.get(i)
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase())
    };
    let Some(n) = name(0) else { return false };
    match n.as_str() {
        "GET" | "SET" | "MGET" | "EXISTS" | "DBSIZE" | "SCAN" | "KEYS" | "INFO" | "PING" | "ECHO"
        | "FLUSHALL" | "FLUSHDB" | "CONFIG" | "ASKING" | "TYPE" | "TTL" | "ROLE" | "DEL" => true,
        // CLUSTER FAILOVER or RESET twice is not the same as once.
        "CLUSTER" => !matches!(name(1).as_deref(), Some("FAILOVER" | "RESET")),
        _ => false,
    }
}

/// A slot being moved between two masters (`Cluster::begin_migration`).
#[must_use = "a migration left unfinished keeps its slot open"]
pub struct SlotMigration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    from: usize,
    to: usize,
}

impl SlotMigration<'_> {
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Keys of the slot still on the source.
    pub fn keys_left(&self) -> usize {
        let s = self.slot.to_string();
        let r = self
            .cluster
            .cmd_on_node(self.from, &["CLUSTER", "COUNTKEYSINSLOT", &s]);
        r.as_int().unwrap_or_else(|| panic!("COUNTKEYSINSLOT {s}: {r:?}")) as usize
    }

    /// MIGRATEs up to `max` keys of the slot (CLUSTER GETKEYSINSLOT, in batches of 100) to the
    /// target; returns how many moved.
    pub fn move_keys(&self, max: usize) -> usize {
        let c = self.cluster;
        let s = self.slot.to_string();
        let port = c.port(self.to).to_string();
        let mut moved = 0;
        while moved < max {
            let n = (max - moved).min(MIGRATE_BATCH).to_string();
            let r = c.cmd_on_node(self.from, &["CLUSTER", "GETKEYSINSLOT", &s, &n]);
            let keys = r
                .as_array()
                .unwrap_or_else(|| panic!("GETKEYSINSLOT {s}: {r:?}"))
                .to_vec();
            if keys.is_empty() {
                break;
            }
            let mut cmd: Vec<&[u8]> = vec![
                b"MIGRATE",
                b"127.0.0.1",
                port.as_bytes(),
                b"",
                b"0",
                b"5000",
                b"KEYS",
            ];
            cmd.extend(keys.iter().map(|k| k.as_bytes().expect("a key")));
            let r = c.cmd_on_node(self.from, &cmd);
            assert!(
                r.is_ok(),
                "MIGRATE of {} keys of slot {s} from node {} to node {}: {r:?}",
                keys.len(),
                self.from,
                self.to
            );
            moved += keys.len();
        }
        moved
    }

    /// Moves what is left, gives the slot to the target (SETSLOT NODE on the target, the source,
    /// then every other master) and waits until every node agrees.
    pub fn finish(self) {
        self.move_keys(usize::MAX);
        let c = self.cluster;
        let s = self.slot.to_string();
        let mut order = vec![self.to, self.from];
        order.extend(
            c.masters()
                .into_iter()
                .filter(|&m| m != self.to && m != self.from),
        );
        for m in order {
            let r = c.cmd_on_node(m, &["CLUSTER", "SETSLOT", &s, "NODE", c.id(self.to)]);
            assert!(r.is_ok(), "SETSLOT {s} NODE on node {m}: {r:?}");
        }
        wait_until(
            CLUSTER_SETTLE,
            &format!("every node to give slot {s} to node {}", self.to),
            || c.settled().is_ok() && c.node_for_slot(self.slot) == self.to,
        );
        c.wait_settled();
    }
}
