//! THE command table: for every command the relayer treats in a way of its own, one entry that
//! says everything it decides about it: how a session treats it (answered locally, a connection
//! of the client's own, the side connection, refused, forwarded), its smart-mode form, where its
//! keys are (for routing by slot), its policy on a cluster, whether compression leaves its
//! arguments alone, and what a stream relayer (Firehose) makes of it. Subcommands that differ
//! from their command have entries of their own.
//!
//! A command not in the table is forwarded on the shared connections, and a stream relayer
//! refuses it; on a cluster its keys are where the backend's COMMAND says
//! (`learned_commands`), else its first argument. Names are upper-cased once, by `lookup`.

/// How a session treats a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Echo,
    Quit,
    Select,
    Multi,
    Exec,
    Discard,
    Hello,
    /// CLIENT: its subcommand decides (`Spec::sub`).
    Client,
    Auth,
    Reset,
    /// Nothing is watched on a shared connection, so there is nothing to unwatch there.
    Unwatch,
    /// Blocks the connection it runs on (blocking pops): the client's own connection.
    Blocking,
    /// WAIT, WAITAOF: the client's own connection, after a PUBLISH that moves its replication
    /// offset past the client's writes on the shared one.
    Wait,
    /// WATCH: the client's own connection, until EXEC, DISCARD or UNWATCH.
    Watch,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: the client's own connection, in push mode.
    Subscribe,
    /// MONITOR: the client's own connection, in push mode; anything may follow it there.
    Monitor,
    /// UNSUBSCRIBE and the like: pub/sub commands, on the client's own connection.
    Unsubscribe,
    /// XREAD, XREADGROUP: on the client's own connection only with BLOCK.
    StreamRead,
    /// SYNC, PSYNC, REPLCONF: they would make the connection a replica's; refused.
    Replication,
    Forward,
}

impl Kind {
    /// Needs a connection of the client's own, whatever its arguments.
    pub fn needs_own_connection(self) -> bool {
        matches!(
            self,
            Kind::Blocking | Kind::Wait | Kind::Watch | Kind::Subscribe | Kind::Monitor | Kind::Unsubscribe
        )
    }

    /// Puts the connection in push mode: replies and messages come as the connection gives them.
    pub fn enters_push(self) -> bool {
        matches!(self, Kind::Subscribe | Kind::Monitor)
    }

    /// Sent to the backend (not answered by the relayer, nor refused before): what compression
    /// applies to.
    pub fn reaches_backend(self) -> bool {
        matches!(self, Kind::Forward | Kind::StreamRead | Kind::Replication) || self.needs_own_connection()
    }

    /// What a RESP2 subscriber may send: nothing of it can block or outlive a RESET.
    pub fn is_pubsub(self) -> bool {
        matches!(self, Kind::Subscribe | Kind::Unsubscribe | Kind::Ping)
    }
}

/// How a subcommand is treated where it differs from its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// As its command.
    AsCommand,
    /// Answered by the relayer (CLIENT SETNAME, GETNAME, SETINFO, ID, REPLY, KILL, UNBLOCK).
    Local,
    /// Redis runs it even while a script is busy (`allow_busy`): sent on the side connection,
    /// which nothing else waits on, so that it reaches a busy server.
    Side,
    /// It would change the shared connection's mode, or act on a connection the client cannot
    /// name: refused with this error.
    Refused(&'static str),
    /// As `Refused`, but run on the client's own connection once it is in pass-through (after
    /// `HELLO 3`): CLIENT TRACKING and CACHING, whose RESET undoes them there.
    OwnConnectionOnly(&'static str),
}

impl Role {
    /// Why it is refused on the shared connections, if it is.
    pub fn refused(self) -> Option<&'static str> {
        match self {
            Role::Refused(why) | Role::OwnConnectionOnly(why) => Some(why),
            _ => None,
        }
    }
}

/// Where a command's keys are (argument indices), for routing by slot on a cluster. Arguments
/// that do not fit the form give no keys: any node then answers with Redis' error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The first argument, when there is one.
    First,
    /// No keys.
    None,
    /// Every `step`-th argument from `from` to the end.
    All { from: usize, step: usize },
    /// Every argument from 1 but the last (a timeout): BLPOP.
    AllButLast,
    /// At most `count` arguments from `from`: RENAME, OBJECT.
    Some { from: usize, count: usize },
    /// A count of keys at `at`, the keys after it: EVAL, ZUNION.
    NumKeys { at: usize },
    /// The destination (argument 1), then a count at 2 and the keys after it: ZUNIONSTORE.
    DestNumKeys,
    /// Half of what follows STREAMS: XREAD.
    Streams,
    /// MEMORY USAGE: its key is argument 2; the other MEMORY subcommands have none.
    MemoryUsage,
}

/// How a multi-key command whose keys are on several slots is split and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: the parts' arrays merged back in key order.
    Values,
    /// MSET: +OK when every part says so.
    Ok,
    /// DEL, UNLINK, EXISTS, TOUCH: the parts' counts summed.
    Count,
}

/// How the replies of a keyless command sent to every master are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Sum,
    Concat,
    Scan,
    AllOk,
    Same,
    And,
}

/// What a cluster relayer does with a command beyond routing it by its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Routed by its keys (none: any master).
    ByKeys,
    /// Keys on several slots: split by slot (`first` key, each followed by `stride - 1` values).
    Split {
        split: Split,
        first: usize,
        stride: usize,
    },
    /// Keyless, about the whole dataset: sent to every master when it has `argc` arguments
    /// (0: any number), the replies merged.
    EveryMaster {
        merge: Merge,
        argc: usize,
        at_least: bool,
    },
    /// About one slot, named by argument 2 (CLUSTER COUNTKEYSINSLOT): its master answers.
    SlotArgument { argc: usize },
    /// About one node, so one master would answer for the cluster: refused.
    Refused,
    /// ASKING: the flag would stay on the connection for another client's command.
    RefusedAsking,
}

/// What a stream relayer (Firehose) makes of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOp {
    Set,
    Sadd,
    Hmset,
    Hset,
    Rawset,
    Multi,
    Exec,
    Discard,
    Ping,
    Echo,
    Select,
    Quit,
    /// Refused with an error: nothing else reaches a stream.
    Unknown,
}

/// Smart mode: how a write is acknowledged at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smart {
    pub reply: &'static [u8],
    /// In the table without `asyncCommands`.
    pub by_default: bool,
    /// Sending it again after a dropped connection leaves the same data.
    pub idempotent: bool,
    /// Redis-style arity: exact when positive, a minimum when negative.
    pub arity: i32,
    pub pairs: Pairs,
    pub check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    None,
    /// MSET k v [k v ...]: the arguments after the name come in pairs.
    AfterName,
    /// HSET key f v [f v ...]: the arguments after the key come in pairs.
    AfterKey,
}

/// What a smart form's arguments must be for Redis to take them (`redis::smart_args`); a
/// write whose arguments fail it waits for Redis' own reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    /// SET's options: one expiry at most (NX, XX and GET change the reply).
    Set,
    /// SETEX, PSETEX: a positive time at argument 2.
    SetEx(Unit),
    /// EXPIRE and the like: a time at argument 2, no flags.
    Expire(Unit),
    /// ZADD's flags, pairs and scores (INCR changes the reply).
    Zadd,
    /// These arguments are integers.
    Integers(&'static [usize]),
    /// DECRBY: an integer Redis can negate.
    Decrement,
    SetBit,
    SetRange,
    /// ZREMRANGEBYSCORE's bounds.
    ScoreRange,
    GeoAdd,
    /// FLUSHDB [SYNC|ASYNC].
    FlushDb,
}

/// The unit of an expiry time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
}

pub const EARLY_OK: &[u8] = b"+OK\r\n";
pub const EARLY_ONE: &[u8] = b":1\r\n";

/// One command or subcommand.
#[derive(Debug)]
pub struct Spec {
    /// Upper case; a subcommand's is `COMMAND SUB`.
    pub name: &'static str,
    pub kind: Kind,
    pub role: Role,
    pub keys: Keys,
    pub cluster: Cluster,
    pub smart: Option<Smart>,
    /// Compression leaves its arguments as sent: scripts and functions see them, or are them.
    pub keeps_arguments: bool,
    pub stream: StreamOp,
    /// Subcommands that differ from it, upper case.
    pub subs: &'static [Spec],
}

impl Spec {
    const fn new(name: &'static str) -> Spec {
        Spec {
            name,
            kind: Kind::Forward,
            role: Role::AsCommand,
            keys: Keys::First,
            cluster: Cluster::ByKeys,
            smart: None,
            keeps_arguments: false,
            stream: StreamOp::Unknown,
            subs: &[],
        }
    }
    const fn kind(mut self, kind: Kind) -> Spec {
        self.kind = kind;
        self
    }
    const fn role(mut self, role: Role) -> Spec {
        self.role = role;
        self
    }
    const fn keys(mut self, keys: Keys) -> Spec {
        self.keys = keys;
        self
    }
    const fn cluster(mut self, cluster: Cluster) -> Spec {
        self.cluster = cluster;
        self
    }
    const fn stream(mut self, op: StreamOp) -> Spec {
        self.stream = op;
        self
    }
    const fn keeps_arguments(mut self) -> Spec {
        self.keeps_arguments = true;
        self
    }
    const fn subs(mut self, subs: &'static [Spec]) -> Spec {
        self.subs = subs;
        self
    }
    const fn smart(mut self, reply: &'static [u8], arity: i32, pairs: Pairs, check: Check) -> Spec {
        self.smart = Some(Smart {
            reply,
            by_default: true,
            idempotent: true,
            arity,
            pairs,
            check,
        });
        self
    }
    /// `asyncCommands` may add it: its reply is a status or an integer, so an early `+OK` or
    /// `:1` has the kind the client expects. `idempotent`: it leaves the same data run twice
    /// in a row; counters, pushes, trims by count and FLUSHDB (which would also empty what
    /// other clients wrote since) are not, whatever the configuration asks.
    const fn addable(mut self, reply: &'static [u8], arity: i32, idempotent: bool) -> Spec {
        self.smart = Some(Smart {
            reply,
            by_default: false,
            idempotent,
            arity,
            pairs: Pairs::None,
            check: Check::None,
        });
        self
    }
    /// An addable form whose arguments Redis checks (`check`).
    const fn checked(mut self, check: Check) -> Spec {
        if let Some(smart) = &mut self.smart {
            smart.check = check;
        }
        self
    }

    /// The entry of subcommand `sub` (any case), or None when it is treated as its command.
    pub fn sub(&self, sub: &[u8]) -> Option<&'static Spec> {
        let prefix = self.name.len() + 1;
        self.subs
            .iter()
            .find(|s| s.name.as_bytes()[prefix..].eq_ignore_ascii_case(sub))
    }

    /// The entry that decides for a command with these arguments: its subcommand's when it has
    /// one of its own, else its own.
    pub fn resolve(&'static self, sub: Option<&[u8]>) -> &'static Spec {
        match sub {
            Some(s) if !self.subs.is_empty() => self.sub(s).unwrap_or(self),
            _ => self,
        }
    }
}

/// The entry for a command not in the table.
pub static FORWARDED: Spec = Spec::new("");

const fn every(name: &'static str, merge: Merge) -> Spec {
    Spec::new(name).keys(Keys::None).cluster(Cluster::EveryMaster {
        merge,
        argc: 0,
        at_least: true,
    })
}

const fn refused_on_cluster(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::None).cluster(Cluster::Refused)
}

const fn keyless(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::None)
}

const CLIENT_REFUSED: &str = "would change a connection shared with other clients";

/// Refused on the shared connections, but not on the client's own in pass-through.
const fn client_own_only(name: &'static str) -> Spec {
    Spec::new(name)
        .kind(Kind::Client)
        .keys(Keys::None)
        .role(Role::OwnConnectionOnly(CLIENT_OWN_ONLY))
}

const CLIENT_OWN_ONLY: &str =
    "would change a connection shared with other clients; after HELLO 3 it runs on the client's own connection";

const fn client_refused(name: &'static str) -> Spec {
    Spec::new(name)
        .kind(Kind::Client)
        .keys(Keys::None)
        .role(Role::Refused(CLIENT_REFUSED))
}

const fn client_local(name: &'static str) -> Spec {
    Spec::new(name)
        .kind(Kind::Client)
        .keys(Keys::None)
        .role(Role::Local)
}

const fn own(name: &'static str, kind: Kind, keys: Keys) -> Spec {
    Spec::new(name).kind(kind).keys(keys)
}

static CLIENT_SUBS: [Spec; 11] = [
    client_local("CLIENT SETNAME"),
    client_local("CLIENT GETNAME"),
    client_local("CLIENT SETINFO"),
    client_local("CLIENT ID"),
    client_local("CLIENT REPLY"),
    client_own_only("CLIENT TRACKING"),
    client_own_only("CLIENT CACHING"),
    client_refused("CLIENT NO-EVICT"),
    client_refused("CLIENT NO-TOUCH"),
    client_local("CLIENT KILL"),
    client_local("CLIENT UNBLOCK"),
];

static SCRIPT_SUBS: [Spec; 5] = [
    every("SCRIPT LOAD", Merge::Same).keeps_arguments(),
    every("SCRIPT FLUSH", Merge::AllOk).keeps_arguments(),
    every("SCRIPT EXISTS", Merge::And).keeps_arguments(),
    refused_on_cluster("SCRIPT KILL")
        .keeps_arguments()
        .role(Role::Side),
    keyless("SCRIPT DEBUG").keeps_arguments().role(Role::Refused(
        "would turn a connection shared with other clients into a debugging session",
    )),
];

static FUNCTION_SUBS: [Spec; 6] = [
    every("FUNCTION LOAD", Merge::Same).keeps_arguments(),
    every("FUNCTION FLUSH", Merge::AllOk).keeps_arguments(),
    every("FUNCTION DELETE", Merge::AllOk).keeps_arguments(),
    every("FUNCTION RESTORE", Merge::AllOk).keeps_arguments(),
    refused_on_cluster("FUNCTION KILL")
        .keeps_arguments()
        .role(Role::Side),
    keyless("FUNCTION STATS").keeps_arguments().role(Role::Side),
];

static CONFIG_SUBS: [Spec; 3] = [
    refused_on_cluster("CONFIG SET"),
    refused_on_cluster("CONFIG RESETSTAT"),
    refused_on_cluster("CONFIG REWRITE"),
];

static ACL_SUBS: [Spec; 4] = [
    refused_on_cluster("ACL SETUSER"),
    refused_on_cluster("ACL DELUSER"),
    refused_on_cluster("ACL LOAD"),
    refused_on_cluster("ACL SAVE"),
];

static LATENCY_SUBS: [Spec; 1] = [refused_on_cluster("LATENCY RESET")];
static SLOWLOG_SUBS: [Spec; 1] = [refused_on_cluster("SLOWLOG RESET")];

static MODULE_SUBS: [Spec; 3] = [
    refused_on_cluster("MODULE LOAD"),
    refused_on_cluster("MODULE LOADEX"),
    refused_on_cluster("MODULE UNLOAD"),
];

static MEMORY_SUBS: [Spec; 1] = [Spec::new("MEMORY USAGE").keys(Keys::MemoryUsage)];

/// What describes the cluster is the same on every node; the rest is about one node. Without
/// its slot, COUNTKEYSINSLOT would reach any master.
static CLUSTER_SUBS: [Spec; 8] = [
    keyless("CLUSTER INFO"),
    keyless("CLUSTER SLOTS"),
    keyless("CLUSTER SHARDS"),
    keyless("CLUSTER NODES"),
    keyless("CLUSTER KEYSLOT"),
    keyless("CLUSTER HELP"),
    keyless("CLUSTER COUNTKEYSINSLOT").cluster(Cluster::SlotArgument { argc: 3 }),
    keyless("CLUSTER GETKEYSINSLOT").cluster(Cluster::SlotArgument { argc: 4 }),
];

static PING: Spec = keyless("PING").kind(Kind::Ping).stream(StreamOp::Ping);
static ECHO: Spec = keyless("ECHO").kind(Kind::Echo).stream(StreamOp::Echo);
static QUIT: Spec = keyless("QUIT").kind(Kind::Quit).stream(StreamOp::Quit);
static SELECT: Spec = keyless("SELECT").kind(Kind::Select).stream(StreamOp::Select);
static MULTI: Spec = keyless("MULTI").kind(Kind::Multi).stream(StreamOp::Multi);
static EXEC: Spec = keyless("EXEC").kind(Kind::Exec).stream(StreamOp::Exec);
static DISCARD: Spec = keyless("DISCARD").kind(Kind::Discard).stream(StreamOp::Discard);
static HELLO: Spec = keyless("HELLO").kind(Kind::Hello);
static CLIENT: Spec = keyless("CLIENT").kind(Kind::Client).subs(&CLIENT_SUBS);
static AUTH: Spec = keyless("AUTH").kind(Kind::Auth);
static RESET: Spec = keyless("RESET").kind(Kind::Reset);
static UNWATCH: Spec = keyless("UNWATCH").kind(Kind::Unwatch);

static BLPOP: Spec = own("BLPOP", Kind::Blocking, Keys::AllButLast);
static BRPOP: Spec = own("BRPOP", Kind::Blocking, Keys::AllButLast);
static BZPOPMIN: Spec = own("BZPOPMIN", Kind::Blocking, Keys::AllButLast);
static BZPOPMAX: Spec = own("BZPOPMAX", Kind::Blocking, Keys::AllButLast);
static BRPOPLPUSH: Spec = own("BRPOPLPUSH", Kind::Blocking, Keys::Some { from: 1, count: 2 });
static BLMOVE: Spec = own("BLMOVE", Kind::Blocking, Keys::Some { from: 1, count: 2 });
static BLMPOP: Spec = own("BLMPOP", Kind::Blocking, Keys::NumKeys { at: 2 });
static BZMPOP: Spec = own("BZMPOP", Kind::Blocking, Keys::NumKeys { at: 2 });
static WAIT: Spec = own("WAIT", Kind::Wait, Keys::None);
static WAITAOF: Spec = own("WAITAOF", Kind::Wait, Keys::None);
static WATCH: Spec = own("WATCH", Kind::Watch, Keys::All { from: 1, step: 1 });
static SUBSCRIBE: Spec = own("SUBSCRIBE", Kind::Subscribe, Keys::First);
static PSUBSCRIBE: Spec = own("PSUBSCRIBE", Kind::Subscribe, Keys::First);
static SSUBSCRIBE: Spec = own("SSUBSCRIBE", Kind::Subscribe, Keys::First);
static MONITOR: Spec = own("MONITOR", Kind::Monitor, Keys::None);
static UNSUBSCRIBE: Spec = own("UNSUBSCRIBE", Kind::Unsubscribe, Keys::First);
static PUNSUBSCRIBE: Spec = own("PUNSUBSCRIBE", Kind::Unsubscribe, Keys::First);
static SUNSUBSCRIBE: Spec = own("SUNSUBSCRIBE", Kind::Unsubscribe, Keys::First);
static XREAD: Spec = own("XREAD", Kind::StreamRead, Keys::Streams);
static XREADGROUP: Spec = own("XREADGROUP", Kind::StreamRead, Keys::Streams);
static SYNC: Spec = own("SYNC", Kind::Replication, Keys::None);
static PSYNC: Spec = own("PSYNC", Kind::Replication, Keys::None);
static REPLCONF: Spec = own("REPLCONF", Kind::Replication, Keys::None);

static SET: Spec = Spec::new("SET")
    .smart(EARLY_OK, -3, Pairs::None, Check::Set)
    .stream(StreamOp::Set);
static SETEX: Spec = Spec::new("SETEX").smart(EARLY_OK, 4, Pairs::None, Check::SetEx(Unit::Seconds));
static PSETEX: Spec = Spec::new("PSETEX").smart(EARLY_OK, 4, Pairs::None, Check::SetEx(Unit::Milliseconds));
static MSET: Spec = Spec::new("MSET")
    .keys(Keys::All { from: 1, step: 2 })
    .cluster(Cluster::Split {
        split: Split::Ok,
        first: 1,
        stride: 2,
    })
    .smart(EARLY_OK, -3, Pairs::AfterName, Check::None);
static HMSET: Spec = Spec::new("HMSET")
    .smart(EARLY_OK, -4, Pairs::AfterKey, Check::None)
    .stream(StreamOp::Hmset);
static HSET: Spec = Spec::new("HSET")
    .smart(EARLY_ONE, -4, Pairs::AfterKey, Check::None)
    .stream(StreamOp::Hset);
static SADD: Spec = Spec::new("SADD")
    .smart(EARLY_ONE, -3, Pairs::None, Check::None)
    .stream(StreamOp::Sadd);
static ZADD: Spec = Spec::new("ZADD").smart(EARLY_ONE, -4, Pairs::None, Check::Zadd);
static EXPIRE: Spec = Spec::new("EXPIRE").smart(EARLY_ONE, -3, Pairs::None, Check::Expire(Unit::Seconds));
static EXPIREAT: Spec = Spec::new("EXPIREAT").smart(EARLY_ONE, -3, Pairs::None, Check::Expire(Unit::Seconds));
static PEXPIRE: Spec =
    Spec::new("PEXPIRE").smart(EARLY_ONE, -3, Pairs::None, Check::Expire(Unit::Milliseconds));
static PEXPIREAT: Spec =
    Spec::new("PEXPIREAT").smart(EARLY_ONE, -3, Pairs::None, Check::Expire(Unit::Milliseconds));
static RAWSET: Spec = Spec::new("RAWSET").stream(StreamOp::Rawset);

const fn split_count(name: &'static str) -> Spec {
    Spec::new(name)
        .keys(Keys::All { from: 1, step: 1 })
        .cluster(Cluster::Split {
            split: Split::Count,
            first: 1,
            stride: 1,
        })
}

static DEL: Spec = split_count("DEL").addable(EARLY_ONE, -2, true);
static UNLINK: Spec = split_count("UNLINK").addable(EARLY_ONE, -2, true);
static EXISTS: Spec = split_count("EXISTS");
static TOUCH: Spec = split_count("TOUCH");
static MGET: Spec = Spec::new("MGET")
    .keys(Keys::All { from: 1, step: 1 })
    .cluster(Cluster::Split {
        split: Split::Values,
        first: 1,
        stride: 1,
    });

const fn all_keys(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::All { from: 1, step: 1 })
}

static SINTER: Spec = all_keys("SINTER");
static SUNION: Spec = all_keys("SUNION");
static SDIFF: Spec = all_keys("SDIFF");
static SINTERSTORE: Spec = all_keys("SINTERSTORE");
static SUNIONSTORE: Spec = all_keys("SUNIONSTORE");
static SDIFFSTORE: Spec = all_keys("SDIFFSTORE");
static PFCOUNT: Spec = all_keys("PFCOUNT");
static PFMERGE: Spec = all_keys("PFMERGE");
static MSETNX: Spec = Spec::new("MSETNX").keys(Keys::All { from: 1, step: 2 });

const fn two_keys(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::Some { from: 1, count: 2 })
}

static RENAME: Spec = two_keys("RENAME");
static RENAMENX: Spec = two_keys("RENAMENX");
static SMOVE: Spec = two_keys("SMOVE");
static RPOPLPUSH: Spec = two_keys("RPOPLPUSH");
static LMOVE: Spec = two_keys("LMOVE");
static COPY: Spec = two_keys("COPY");
static GEOSEARCHSTORE: Spec = two_keys("GEOSEARCHSTORE");
static ZRANGESTORE: Spec = two_keys("ZRANGESTORE");
static LCS: Spec = two_keys("LCS");

const fn script(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::NumKeys { at: 2 }).keeps_arguments()
}

static EVAL: Spec = script("EVAL");
static EVALSHA: Spec = script("EVALSHA");
static EVAL_RO: Spec = script("EVAL_RO");
static EVALSHA_RO: Spec = script("EVALSHA_RO");
static FCALL: Spec = script("FCALL");
static FCALL_RO: Spec = script("FCALL_RO");

const fn numkeys1(name: &'static str) -> Spec {
    Spec::new(name).keys(Keys::NumKeys { at: 1 })
}

static ZUNION: Spec = numkeys1("ZUNION");
static ZINTER: Spec = numkeys1("ZINTER");
static ZDIFF: Spec = numkeys1("ZDIFF");
static ZINTERCARD: Spec = numkeys1("ZINTERCARD");
static SINTERCARD: Spec = numkeys1("SINTERCARD");
static LMPOP: Spec = numkeys1("LMPOP");
static ZMPOP: Spec = numkeys1("ZMPOP");
static ZUNIONSTORE: Spec = Spec::new("ZUNIONSTORE").keys(Keys::DestNumKeys);
static ZINTERSTORE: Spec = Spec::new("ZINTERSTORE").keys(Keys::DestNumKeys);
static ZDIFFSTORE: Spec = Spec::new("ZDIFFSTORE").keys(Keys::DestNumKeys);
static BITOP: Spec = Spec::new("BITOP").keys(Keys::All { from: 2, step: 1 });
static OBJECT: Spec = Spec::new("OBJECT").keys(Keys::Some { from: 2, count: 1 });
static XINFO: Spec = Spec::new("XINFO").keys(Keys::Some { from: 2, count: 1 });
static XGROUP: Spec = Spec::new("XGROUP").keys(Keys::Some { from: 2, count: 1 });

static DBSIZE: Spec = keyless("DBSIZE").cluster(Cluster::EveryMaster {
    merge: Merge::Sum,
    argc: 1,
    at_least: false,
});
static KEYS: Spec = keyless("KEYS").cluster(Cluster::EveryMaster {
    merge: Merge::Concat,
    argc: 2,
    at_least: false,
});
static SCAN: Spec = keyless("SCAN").cluster(Cluster::EveryMaster {
    merge: Merge::Scan,
    argc: 2,
    at_least: true,
});
static FLUSHALL: Spec = every("FLUSHALL", Merge::AllOk);
static FLUSHDB: Spec = every("FLUSHDB", Merge::AllOk)
    .addable(EARLY_OK, -1, false)
    .checked(Check::FlushDb);
static SCRIPT: Spec = keyless("SCRIPT").keeps_arguments().subs(&SCRIPT_SUBS);
static FUNCTION: Spec = keyless("FUNCTION").keeps_arguments().subs(&FUNCTION_SUBS);
static CONFIG: Spec = keyless("CONFIG").subs(&CONFIG_SUBS);
static ACL: Spec = keyless("ACL").subs(&ACL_SUBS);
static LATENCY: Spec = keyless("LATENCY").subs(&LATENCY_SUBS);
static SLOWLOG: Spec = keyless("SLOWLOG").subs(&SLOWLOG_SUBS);
static MODULE: Spec = Spec::new("MODULE").subs(&MODULE_SUBS);
static MEMORY: Spec = keyless("MEMORY").subs(&MEMORY_SUBS);
static CLUSTER: Spec = keyless("CLUSTER").cluster(Cluster::Refused).subs(&CLUSTER_SUBS);
static SHUTDOWN: Spec = refused_on_cluster("SHUTDOWN").role(Role::Side);
static DEBUG: Spec = refused_on_cluster("DEBUG");
static FAILOVER: Spec = refused_on_cluster("FAILOVER");
static REPLICAOF: Spec = refused_on_cluster("REPLICAOF");
static SLAVEOF: Spec = refused_on_cluster("SLAVEOF");
static SAVE: Spec = refused_on_cluster("SAVE");
static BGSAVE: Spec = refused_on_cluster("BGSAVE");
static BGREWRITEAOF: Spec = refused_on_cluster("BGREWRITEAOF");
static SWAPDB: Spec = Spec::new("SWAPDB").cluster(Cluster::Refused);
static MIGRATE: Spec = Spec::new("MIGRATE").cluster(Cluster::Refused);
static READONLY: Spec = refused_on_cluster("READONLY");
static READWRITE: Spec = refused_on_cluster("READWRITE");
static ASKING: Spec = keyless("ASKING").cluster(Cluster::RefusedAsking);
static INFO: Spec = keyless("INFO");
static TIME: Spec = keyless("TIME");
static RANDOMKEY: Spec = keyless("RANDOMKEY");
static LASTSAVE: Spec = keyless("LASTSAVE");
static COMMAND: Spec = keyless("COMMAND");
static PUBLISH: Spec = keyless("PUBLISH").addable(EARLY_ONE, 3, false);
static PUBSUB: Spec = keyless("PUBSUB");
static LOLWUT: Spec = keyless("LOLWUT");
static ROLE: Spec = keyless("ROLE");

const fn add(name: &'static str, reply: &'static [u8], arity: i32, idempotent: bool) -> Spec {
    Spec::new(name).addable(reply, arity, idempotent)
}

static APPEND: Spec = add("APPEND", EARLY_ONE, 3, false);
static DECR: Spec = add("DECR", EARLY_ONE, 2, false);
static DECRBY: Spec = add("DECRBY", EARLY_ONE, 3, false).checked(Check::Decrement);
static GEOADD: Spec = add("GEOADD", EARLY_ONE, -5, true).checked(Check::GeoAdd);
static HDEL: Spec = add("HDEL", EARLY_ONE, -3, true);
static HINCRBY: Spec = add("HINCRBY", EARLY_ONE, 4, false).checked(Check::Integers(&[3]));
static HSETNX: Spec = add("HSETNX", EARLY_ONE, 4, true);
static INCR: Spec = add("INCR", EARLY_ONE, 2, false);
static INCRBY: Spec = add("INCRBY", EARLY_ONE, 3, false).checked(Check::Integers(&[2]));
static LPUSH: Spec = add("LPUSH", EARLY_ONE, -3, false);
static LPUSHX: Spec = add("LPUSHX", EARLY_ONE, -3, false);
static LREM: Spec = add("LREM", EARLY_ONE, 4, false).checked(Check::Integers(&[2]));
static LSET: Spec = add("LSET", EARLY_OK, 4, true).checked(Check::Integers(&[2]));
static LTRIM: Spec = add("LTRIM", EARLY_OK, 4, false).checked(Check::Integers(&[2, 3]));
static PERSIST: Spec = add("PERSIST", EARLY_ONE, 2, true);
static PFADD: Spec = add("PFADD", EARLY_ONE, -2, true);
static RPUSH: Spec = add("RPUSH", EARLY_ONE, -3, false);
static RPUSHX: Spec = add("RPUSHX", EARLY_ONE, -3, false);
static SETBIT: Spec = add("SETBIT", EARLY_ONE, 4, true).checked(Check::SetBit);
static SETNX: Spec = add("SETNX", EARLY_ONE, 3, true);
static SETRANGE: Spec = add("SETRANGE", EARLY_ONE, 4, true).checked(Check::SetRange);
static SREM: Spec = add("SREM", EARLY_ONE, -3, true);
static ZREM: Spec = add("ZREM", EARLY_ONE, -3, true);
static ZREMRANGEBYRANK: Spec = add("ZREMRANGEBYRANK", EARLY_ONE, 4, false).checked(Check::Integers(&[2, 3]));
static ZREMRANGEBYSCORE: Spec = add("ZREMRANGEBYSCORE", EARLY_ONE, 4, true).checked(Check::ScoreRange);

/// Every entry of the table (subcommands inside theirs).
pub static TABLE: &[&Spec] = &[
    &PING,
    &ECHO,
    &QUIT,
    &SELECT,
    &MULTI,
    &EXEC,
    &DISCARD,
    &HELLO,
    &CLIENT,
    &AUTH,
    &RESET,
    &UNWATCH,
    &BLPOP,
    &BRPOP,
    &BZPOPMIN,
    &BZPOPMAX,
    &BRPOPLPUSH,
    &BLMOVE,
    &BLMPOP,
    &BZMPOP,
    &WAIT,
    &WAITAOF,
    &WATCH,
    &SUBSCRIBE,
    &PSUBSCRIBE,
    &SSUBSCRIBE,
    &MONITOR,
    &UNSUBSCRIBE,
    &PUNSUBSCRIBE,
    &SUNSUBSCRIBE,
    &XREAD,
    &XREADGROUP,
    &SYNC,
    &PSYNC,
    &REPLCONF,
    &SET,
    &SETEX,
    &PSETEX,
    &MSET,
    &HMSET,
    &HSET,
    &SADD,
    &ZADD,
    &EXPIRE,
    &EXPIREAT,
    &PEXPIRE,
    &PEXPIREAT,
    &RAWSET,
    &DEL,
    &UNLINK,
    &EXISTS,
    &TOUCH,
    &MGET,
    &SINTER,
    &SUNION,
    &SDIFF,
    &SINTERSTORE,
    &SUNIONSTORE,
    &SDIFFSTORE,
    &PFCOUNT,
    &PFMERGE,
    &MSETNX,
    &RENAME,
    &RENAMENX,
    &SMOVE,
    &RPOPLPUSH,
    &LMOVE,
    &COPY,
    &GEOSEARCHSTORE,
    &ZRANGESTORE,
    &LCS,
    &EVAL,
    &EVALSHA,
    &EVAL_RO,
    &EVALSHA_RO,
    &FCALL,
    &FCALL_RO,
    &ZUNION,
    &ZINTER,
    &ZDIFF,
    &ZINTERCARD,
    &SINTERCARD,
    &LMPOP,
    &ZMPOP,
    &ZUNIONSTORE,
    &ZINTERSTORE,
    &ZDIFFSTORE,
    &BITOP,
    &OBJECT,
    &XINFO,
    &XGROUP,
    &DBSIZE,
    &KEYS,
    &SCAN,
    &FLUSHALL,
    &FLUSHDB,
    &SCRIPT,
    &FUNCTION,
    &CONFIG,
    &ACL,
    &LATENCY,
    &SLOWLOG,
    &MODULE,
    &MEMORY,
    &CLUSTER,
    &SHUTDOWN,
    &DEBUG,
    &FAILOVER,
    &REPLICAOF,
    &SLAVEOF,
    &SAVE,
    &BGSAVE,
    &BGREWRITEAOF,
    &SWAPDB,
    &MIGRATE,
    &READONLY,
    &READWRITE,
    &ASKING,
    &INFO,
    &TIME,
    &RANDOMKEY,
    &LASTSAVE,
    &COMMAND,
    &PUBLISH,
    &PUBSUB,
    &LOLWUT,
    &ROLE,
    &APPEND,
    &DECR,
    &DECRBY,
    &GEOADD,
    &HDEL,
    &HINCRBY,
    &HSETNX,
    &INCR,
    &INCRBY,
    &LPUSH,
    &LPUSHX,
    &LREM,
    &LSET,
    &LTRIM,
    &PERSIST,
    &PFADD,
    &RPUSH,
    &RPUSHX,
    &SETBIT,
    &SETNX,
    &SETRANGE,
    &SREM,
    &ZREM,
    &ZREMRANGEBYRANK,
    &ZREMRANGEBYSCORE,
];

/// The longest name in the table.
const LONGEST: usize = 16;

/// A name of at most `LONGEST` bytes, upper-cased and packed into one number.
pub(crate) fn packed(name: &[u8]) -> Option<u128> {
    if name.len() > LONGEST {
        return None;
    }
    let mut up = [0u8; LONGEST];
    for (d, s) in up.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    Some(u128::from_be_bytes(up))
}

/// The table by packed name, sorted: a lookup is a binary search of numbers (about eight
/// comparisons), with no hashing and no allocation on the path of every command.
fn index() -> &'static [(u128, &'static Spec)] {
    static INDEX: std::sync::OnceLock<Vec<(u128, &'static Spec)>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut v: Vec<(u128, &'static Spec)> = TABLE
            .iter()
            .map(|s| (packed(s.name.as_bytes()).expect("names fit"), *s))
            .collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    })
}

/// The entry of the command named `name` (any case), or `FORWARDED`.
pub fn lookup(name: &[u8]) -> &'static Spec {
    let Some(key) = packed(name) else {
        return &FORWARDED;
    };
    let index = index();
    match index.binary_search_by_key(&key, |(k, _)| *k) {
        Ok(i) => index[i].1,
        Err(_) => &FORWARDED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_found_by_its_name_in_any_case() {
        for spec in TABLE {
            assert!(spec.name.len() <= LONGEST, "{}", spec.name);
            assert!(std::ptr::eq(lookup(spec.name.as_bytes()), *spec), "{}", spec.name);
            let lower = spec.name.to_ascii_lowercase();
            assert!(std::ptr::eq(lookup(lower.as_bytes()), *spec), "{lower}");
            for sub in spec.subs {
                let (command, name) = sub.name.split_once(' ').expect("COMMAND SUB");
                assert_eq!(command, spec.name);
                assert!(std::ptr::eq(
                    spec.sub(name.to_ascii_lowercase().as_bytes()).unwrap(),
                    sub
                ));
            }
        }
        assert!(std::ptr::eq(lookup(b"hgetall"), &FORWARDED));
        assert!(std::ptr::eq(lookup(b"a-very-long-command-name"), &FORWARDED));
        assert!(std::ptr::eq(lookup(b""), &FORWARDED));
    }

    #[test]
    fn the_table_names_each_command_once() {
        let mut names: Vec<&str> = TABLE.iter().map(|s| s.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name twice in TABLE");
    }

    #[test]
    fn kinds_roles_and_subcommands() {
        assert_eq!(lookup(b"ping").kind, Kind::Ping);
        assert_eq!(lookup(b"SeLeCt").kind, Kind::Select);
        assert_eq!(lookup(b"blpop").kind, Kind::Blocking);
        assert!(lookup(b"blpop").kind.needs_own_connection());
        assert!(lookup(b"monitor").kind.enters_push());
        assert!(!lookup(b"watch").kind.enters_push());
        assert_eq!(lookup(b"hgetall").kind, Kind::Forward);
        let client = lookup(b"client");
        assert_eq!(client.resolve(Some(b"kill")).role, Role::Local);
        assert_eq!(
            client.resolve(Some(b"no-evict")).role,
            Role::Refused(CLIENT_REFUSED)
        );
        assert_eq!(client.resolve(Some(b"reply")).role, Role::Local);
        assert_eq!(
            client.resolve(Some(b"tracking")).role.refused(),
            Some(CLIENT_OWN_ONLY)
        );
        assert_eq!(client.resolve(Some(b"setname")).role, Role::Local);
        assert_eq!(client.resolve(Some(b"LIST")).role, Role::AsCommand);
        assert_eq!(lookup(b"script").resolve(Some(b"kill")).role, Role::Side);
        assert!(matches!(
            lookup(b"script").resolve(Some(b"debug")).role,
            Role::Refused(_)
        ));
        assert_eq!(lookup(b"function").resolve(Some(b"stats")).role, Role::Side);
        assert_eq!(lookup(b"shutdown").resolve(Some(b"NOSAVE")).role, Role::Side);
        assert_eq!(lookup(b"SCRIPT").resolve(None).role, Role::AsCommand);
        assert!(lookup(b"evalsha_ro").keeps_arguments);
        assert!(lookup(b"script").resolve(Some(b"load")).keeps_arguments);
        assert!(!lookup(b"set").keeps_arguments);
        assert_eq!(lookup(b"rawset").stream, StreamOp::Rawset);
        assert_eq!(lookup(b"get").stream, StreamOp::Unknown);
    }
}
