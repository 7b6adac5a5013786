#!/usr/bin/env python3
"""Checks that redis-py works unchanged through smart-relayer (or against any Redis).

    python redis_py_check.py HOST PORT [--smart] [--prefix P]

PORT 0 means HOST is a unix socket path. Every check compares what redis-py returns with what
Redis returns (values read back equal what was written, MULTI/EXEC and pipeline results in
order, errors where Redis gives errors) and prints one line per check: run against a redis-server
directly and through the relayer, the transcripts are the same. Any mismatch prints a message on
stderr and exits 1. Keys start with a prefix unique to the run (shown as <p> in the transcript)
and are deleted at the end.

--smart: the relayer acknowledges some writes at once (SET, SETEX, PSETEX, MSET, HMSET, HSET,
SADD, ZADD, EXPIRE, EXPIREAT, PEXPIRE, PEXPIREAT) with +OK or :1, so the integer replies of those
commands are not checked against Redis'; everything read back still is. Inside MULTI the
replies are real.

The commands that need a connection of their own (the relayer gives them one) are checked with
a second connection acting on the first: blocking pops (blpop, brpop, blmove, bzpopmin) and
xread(block=...) run in a thread and are released by a push or an XADD once the server counts a
blocked client (INFO's blocked_clients, so the push is known to come after the block), and their
timeout forms give None; r.pubsub() subscribe, psubscribe and ssubscribe read with get_message()
what another connection publishes, then unsubscribe; r.transaction(func, key) and pipe.watch()
see a WATCH conflict made by another connection (WatchError, then a retry that succeeds);
wait(0, 0); r.monitor() sees another connection's command. Stream IDs are shown as <id>.

In smart mode a SET is acknowledged before it runs, so the conflicting write is followed by a
read on the same connection: the read sees the SET, so the SET ran before the EXEC it conflicts
with.
"""

import argparse
import hashlib
import os
import sys
import threading
import time

try:
    import redis
except ImportError:
    sys.stderr.write("redis_py_check: FAIL: redis-py is not installed (scripts/install-deps.sh)\n")
    sys.exit(1)

# The early replies of the relayer's smart table.
SMART = {"SET", "SETEX", "PSETEX", "MSET", "HMSET", "HSET", "SADD", "ZADD", "EXPIRE",
         "EXPIREAT", "PEXPIRE", "PEXPIREAT"}


class Checker:
    def __init__(self, prefix, smart):
        self.prefix = prefix
        self.smart = smart
        self.checks = 0

    def show(self, v):
        """repr() with the run's prefix replaced, and exceptions as Class('message')."""
        if isinstance(v, Exception):
            text = "%s(%r)" % (type(v).__name__, str(v))
        elif isinstance(v, (set, frozenset)):
            text = "{" + ", ".join(sorted(self.show(x) for x in v)) + "}"
        elif isinstance(v, list):
            text = "[" + ", ".join(self.show(x) for x in v) + "]"
        else:
            text = repr(v)
        return text.replace(self.prefix, "<p>")

    def fail(self, msg):
        sys.stderr.write("redis_py_check: FAIL: %s\n" % msg.replace(self.prefix, "<p>"))
        sys.exit(1)

    def eq(self, label, got, want):
        self.checks += 1
        if self.show(got) != self.show(want):
            self.fail("%s: got %s, expected %s" % (label, self.show(got), self.show(want)))
        print("%s: %s" % (label, self.show(got)))

    def write(self, label, command, got, want):
        """A write's reply: in smart mode, the table's commands may be acknowledged early."""
        if self.smart and command.upper() in SMART:
            early = True if command.upper() in ("SET", "SETEX", "PSETEX", "MSET", "HMSET") else 1
            if self.show(got) not in (self.show(want), self.show(early)):
                self.fail("%s: got %s, expected %s or the early %s" % (
                    label, self.show(got), self.show(want), self.show(early)))
            self.checks += 1
            print("%s: %s" % (label, self.show(want)))
        else:
            self.eq(label, got, want)

    def raises(self, label, f, cls, text):
        """f() raises cls with message text (exactly)."""
        try:
            got = f()
        except redis.RedisError as e:
            self.eq(label, e, cls(text))
            return e
        self.fail("%s: returned %s, expected %s(%r)" % (label, self.show(got), cls.__name__, text))


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--smart", action="store_true")
    ap.add_argument("--prefix", default="redis_py_check:%d:%s:" % (os.getpid(), os.urandom(4).hex()))
    a = ap.parse_args()
    p = a.prefix
    c = Checker(p, a.smart)

    def conn(**kw):
        kw.setdefault("socket_timeout", 30)
        if a.port == 0:
            return redis.Redis(unix_socket_path=a.host, **kw)
        return redis.Redis(host=a.host, port=a.port, **kw)

    # client_name: CLIENT SETNAME on connect, after CLIENT SETINFO LIB-NAME and LIB-VER.
    r = conn(client_name="redis-py-check")
    s = conn(decode_responses=True)

    # Connection commands.
    c.eq("ping", r.ping(), True)
    c.eq("echo", r.echo(b"a\r\nb\x00"), b"a\r\nb\x00")
    c.eq("client_getname", r.client_getname(), "redis-py-check")
    c.eq("client_setname", r.client_setname("renamed"), True)
    c.eq("client_getname after setname", r.client_getname(), "renamed")
    c.raises("client_setname with a space", lambda: r.client_setname("a b"), redis.ResponseError,
             "Client names cannot contain spaces, newlines or special characters.")
    c.eq("client_id is an int", isinstance(r.client_id(), int), True)
    hello = s.execute_command("HELLO", 2)
    hello = dict(zip(hello[::2], hello[1::2]))
    c.eq("HELLO 2 proto", hello.get("proto"), 2)
    c.eq("HELLO 2 server", hello.get("server"), "redis")
    c.raises("HELLO 4", lambda: s.execute_command("HELLO", 4), redis.ResponseError,
             "NOPROTO unsupported protocol version")
    c.raises("unknown command", lambda: r.execute_command("NOSUCHCMD", "x"), redis.ResponseError,
             "unknown command 'NOSUCHCMD', with args beginning with: 'x' ")
    c.raises("wrong arity", lambda: r.execute_command("GET"), redis.ResponseError,
             "wrong number of arguments for 'get' command")

    # Strings.
    k = p + "str"
    c.write("set", "SET", r.set(k, "v1"), True)
    c.eq("get", r.get(k), b"v1")
    c.eq("set nx on an existing key", r.set(k, "v2", nx=True), None)
    c.eq("set xx", r.set(k, "v2", xx=True), True)
    c.eq("set get", r.set(k, "v3", get=True), b"v2")
    c.eq("getset", r.getset(k, "v4"), b"v3")
    c.eq("append", r.append(k, "+"), 3)
    c.eq("strlen", r.strlen(k), 3)
    c.eq("setrange", r.setrange(k, 1, "X"), 3)
    c.eq("getrange", r.getrange(k, 0, -1), b"vX+")
    c.eq("getdel", r.getdel(k), b"vX+")
    c.eq("get after getdel", r.get(k), None)
    c.write("set ex", "SET", r.set(k, "v", ex=100), True)
    ttl = r.ttl(k)
    c.eq("ttl within ex", 90 <= ttl <= 100, True)
    c.write("setex", "SETEX", r.execute_command("SETEX", p + "setex", 100, "x"), True)
    c.eq("get setex", r.get(p + "setex"), b"x")
    n = p + "n"
    c.eq("incr", r.incr(n), 1)
    c.eq("incrby", r.incrby(n, 41), 42)
    c.eq("decr", r.decr(n), 41)
    c.eq("incrbyfloat", r.incrbyfloat(n, 0.5), 41.5)
    c.raises("incr on a float", lambda: r.incr(n), redis.ResponseError,
             "value is not an integer or out of range")
    c.write("mset", "MSET", r.mset({p + "m1": "a", p + "m2": "b"}), True)
    c.eq("mget with a missing key", r.mget([p + "m1", p + "missing", p + "m2"]), [b"a", None, b"b"])
    binary = bytes(range(256)) * 4 + b"\r\n*1\r\n$4\r\nPING\r\n"
    c.write("set binary", "SET", r.set(p + "bin", binary), True)
    c.eq("get binary", r.get(p + "bin") == binary, True)
    big = os.urandom(512 * 1024) * 2
    c.write("set 1 MiB", "SET", r.set(p + "big", big), True)
    c.eq("get 1 MiB", r.get(p + "big") == big, True)
    c.eq("get empty value", (r.set(p + "empty", ""), r.get(p + "empty"))[1], b"")

    # Lists, and WRONGTYPE.
    lk = p + "list"
    c.eq("rpush", r.rpush(lk, "a", "b", "c"), 3)
    c.eq("lpush", r.lpush(lk, "z"), 4)
    c.eq("lrange", r.lrange(lk, 0, -1), [b"z", b"a", b"b", b"c"])
    c.eq("lpop count", r.lpop(lk, 2), [b"z", b"a"])
    c.eq("rpop", r.rpop(lk), b"c")
    c.eq("llen", r.llen(lk), 1)
    c.eq("lmove", r.lmove(lk, p + "list2", "LEFT", "RIGHT"), b"b")
    c.eq("lpop of an empty list", r.lpop(lk), None)
    c.raises("lpush on a string", lambda: r.lpush(p + "m1", "x"), redis.ResponseError, WRONGTYPE)
    c.raises("get on a list", lambda: r.get(p + "list2"), redis.ResponseError, WRONGTYPE)

    # Hashes.
    hk = p + "hash"
    c.write("hset mapping", "HSET", r.hset(hk, mapping={"f1": "1", "f2": "2", "f3": "3"}), 3)
    c.eq("hgetall", r.hgetall(hk), {b"f1": b"1", b"f2": b"2", b"f3": b"3"})
    c.eq("hincrby", r.hincrby(hk, "f1", 10), 11)
    c.eq("hmget", r.hmget(hk, ["f1", "nope", "f3"]), [b"11", None, b"3"])
    c.eq("hdel", r.hdel(hk, "f2", "nope"), 1)
    c.eq("hexists", r.hexists(hk, "f2"), False)
    c.eq("hlen", r.hlen(hk), 2)
    c.eq("hscan_iter", sorted(s.hscan_iter(hk)), [("f1", "11"), ("f3", "3")])

    # Sets and sorted sets.
    sk = p + "set"
    c.write("sadd", "SADD", r.sadd(sk, "a", "b", "c", "a"), 3)
    c.eq("smembers", s.smembers(sk), {"a", "b", "c"})
    c.eq("sismember", r.sismember(sk, "b"), 1)
    c.eq("srem", r.srem(sk, "b", "x"), 1)
    c.eq("scard", r.scard(sk), 2)
    zk = p + "zset"
    c.write("zadd", "ZADD", r.zadd(zk, {"a": 1, "b": 2, "c": 3}), 3)
    c.eq("zrange withscores", r.zrange(zk, 0, -1, withscores=True), [(b"a", 1.0), (b"b", 2.0), (b"c", 3.0)])
    c.eq("zincrby", r.zincrby(zk, 5, "a"), 6.0)
    c.eq("zscore", r.zscore(zk, "a"), 6.0)
    c.eq("zrank", r.zrank(zk, "a"), 2)
    c.eq("zpopmin", r.zpopmin(zk), [(b"b", 2.0)])
    c.eq("zadd xx ch", r.zadd(zk, {"c": 9}, xx=True, ch=True), 1)

    # Keys, scans, scripts.
    c.eq("exists", r.exists(p + "m1", p + "m2", p + "missing"), 2)
    c.eq("type", r.type(hk), b"hash")
    c.write("expire", "EXPIRE", r.expire(p + "m1", 100), True)
    c.eq("persist", r.persist(p + "m1"), True)
    c.eq("ttl after persist", r.ttl(p + "m1"), -1)
    c.eq("rename", r.rename(p + "m2", p + "m3"), True)
    c.eq("scan_iter", sorted(s.scan_iter(match=p + "m*", count=2)), [p + "m1", p + "m3"])
    c.eq("eval", r.eval("return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}", 1, p + "m1", "arg"),
         [p.encode() + b"m1", b"arg", b"a"])
    sha = r.script_load("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    c.eq("evalsha", r.evalsha(sha, 1, p + "counter", 5), 5)
    script = "return redis.call('LPUSH', KEYS[1], 'x')"
    c.raises("eval runtime error", lambda: r.eval(script, 1, p + "m1"), redis.ResponseError,
             "%s script: %s, on @user_script:1." % (WRONGTYPE, hashlib.sha1(script.encode()).hexdigest()))
    lock = r.lock(p + "lock", timeout=30)
    c.eq("lock acquire", lock.acquire(blocking=False), True)
    c.eq("lock held elsewhere", r.lock(p + "lock").acquire(blocking=False), False)
    lock.release()
    c.eq("lock released", r.exists(p + "lock"), 0)

    # Server commands: forwarded, only their shape is checked.
    c.eq("info has redis_version", "redis_version" in r.info("server"), True)
    c.eq("config_get maxmemory", list(r.config_get("maxmemory")), ["maxmemory"])
    c.eq("command_count is an int", isinstance(r.command_count(), int), True)

    # Pipelines without a transaction: every reply in order, the errors in place.
    pipe = r.pipeline(transaction=False)
    pipe.set(p + "pl", "1").incr(p + "pl").get(p + "pl").lpush(p + "pl", "x").get(p + "nope")
    pipe.hset(p + "plh", "f", "v").hgetall(p + "plh").execute_command("NOSUCHCMD")
    got = pipe.execute(raise_on_error=False)
    c.eq("pipeline results", got[:3] + got[4:7], [True, 2, b"2", None, 1, {b"f": b"v"}])
    c.eq("pipeline WRONGTYPE in place", got[3], redis.ResponseError(WRONGTYPE))
    c.eq("pipeline unknown command in place", got[7],
         redis.ResponseError("unknown command 'NOSUCHCMD', with args beginning with: "))
    pipe = r.pipeline(transaction=False)
    pipe.set(p + "pl2", "a").lpush(p + "pl2", "x").set(p + "pl3", "b")
    c.raises("pipeline raise_on_error", pipe.execute, redis.ResponseError,
             "Command # 2 (LPUSH <p>pl2 x) of pipeline caused error: " + WRONGTYPE)
    c.eq("pipeline went on after the error", r.mget([p + "pl2", p + "pl3"]), [b"a", b"b"])
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(p + "many:%d" % i, i)
    for i in range(1000):
        pipe.get(p + "many:%d" % i)
    got = pipe.execute()
    c.eq("pipeline of 2000", got == [True] * 1000 + [str(i).encode() for i in range(1000)], True)

    # Transactions (MULTI/EXEC): EXEC's array, runtime errors inside it.
    pipe = r.pipeline(transaction=True)
    pipe.set(p + "tx", "1").incr(p + "tx").get(p + "tx").lpush(p + "tx", "x").incrby(p + "tx", 10)
    got = pipe.execute(raise_on_error=False)
    c.eq("multi results", got[:3] + got[4:], [True, 2, b"2", 12])
    c.eq("multi WRONGTYPE inside EXEC", got[3], redis.ResponseError(WRONGTYPE))
    c.eq("multi applied", r.get(p + "tx"), b"12")
    pipe = r.pipeline(transaction=True)
    pipe.set(p + "tx2", "a").lpush(p + "tx2", "x").set(p + "tx3", "b")
    c.raises("multi raise_on_error", pipe.execute, redis.ResponseError,
             "Command # 2 (LPUSH <p>tx2 x) of pipeline caused error: " + WRONGTYPE)
    c.eq("multi applied around the error", r.mget([p + "tx2", p + "tx3"]), [b"a", b"b"])
    # An error while queueing (wrong arity, unknown command) aborts the whole block. Redis
    # refuses the command itself (redis-py raises that error); the relayer answers QUEUED to every
    # command inside MULTI and only EXEC fails, with EXECABORT (redis-py's ExecAbortError, a
    # ResponseError too). Both abort with nothing applied: the transcript shows that, the same.
    for label, bad, redis_error in [
        ("multi with a wrong arity", ("SET", p + "txa"),
         "Command # 2 (SET <p>txa) of pipeline caused error: wrong number of arguments for 'set' command"),
        ("multi with an unknown command", ("NOSUCHCMD", "x"),
         "Command # 2 (NOSUCHCMD x) of pipeline caused error: "
         "unknown command 'NOSUCHCMD', with args beginning with: 'x' "),
    ]:
        pipe = r.pipeline(transaction=True)
        pipe.set(p + "txa", "1").execute_command(*bad).set(p + "txb", "2")
        try:
            got = pipe.execute()
        except redis.ResponseError as e:
            got = e
        if c.show(got) not in (c.show(redis.ResponseError(redis_error)),
                               c.show(redis.exceptions.ExecAbortError("Transaction discarded because of previous errors."))):
            c.fail("%s: got %s, expected %s or the relayer's EXECABORT" % (label, c.show(got), redis_error))
        c.eq(label, isinstance(got, redis.ResponseError), True)
    c.eq("nothing of the aborted blocks applied", r.mget([p + "txa", p + "txb"]), [None, None])
    with r.pipeline() as pipe:
        pipe.multi()
        pipe.hset(p + "txh", mapping={"a": "1", "b": "2"}).hgetall(p + "txh").sadd(p + "txs", "x", "y")
        c.eq("multi with hash and set", pipe.execute(), [2, {b"a": b"1", b"b": b"2"}, 2])

    # Another DB: Redis(db=N) sends SELECT on connect; keys stay apart.
    r5 = conn(db=5)
    c.eq("db 5 does not see db 0", r5.get(p + "m1"), None)
    c.write("db 5 set", "SET", r5.set(p + "m1", "five"), True)
    c.eq("db 5 get", r5.get(p + "m1"), b"five")
    c.eq("db 0 unchanged", r.get(p + "m1"), b"a")
    pipe = r5.pipeline(transaction=True)
    pipe.incr(p + "n5").get(p + "m1")
    c.eq("db 5 multi", pipe.execute(), [1, b"five"])
    c.eq("db 5 cleanup", r5.delete(p + "m1", p + "n5"), 2)

    dedicated_checks(c, p, r, s, conn)

    # Cleanup; nothing of the run is left.
    keys = list(r.scan_iter(match=p + "*", count=500))
    c.eq("delete", r.delete(*keys), len(keys))
    c.eq("nothing left", list(r.scan_iter(match=p + "*")), [])
    r.close()
    s.close()
    r5.close()
    print("redis_py_check: OK %d checks" % c.checks)


def dedicated_checks(c, p, r, s, conn):
    """The commands that hold a connection: blocking pops, XREAD BLOCK, WAIT, pub/sub, WATCH,
    MONITOR. `r` and `s` are separate connections (pools); what releases or conflicts comes from
    the one not waiting."""

    def wait_blocked(n):
        # INFO is the server's (forwarded through the relayer): its own count of blocked clients.
        deadline = time.monotonic() + 20
        while r.info("clients")["blocked_clients"] != n:
            if time.monotonic() > deadline:
                c.fail("the server never counted %d blocked client(s)" % n)
            time.sleep(0.002)

    def released(blocking, release):
        """Runs blocking() in a thread; once the server holds it blocked, release() here: both
        results."""
        box = {}

        def run():
            try:
                box["r"] = blocking()
            except Exception as e:  # shown in the transcript
                box["r"] = e

        t = threading.Thread(target=run)
        t.start()
        wait_blocked(1)
        got_release = release()
        t.join(30)
        if t.is_alive():
            c.fail("the blocked call was not released")
        wait_blocked(0)
        return got_release, box["r"]

    # Blocking pops released by a push from another connection.
    q = p + "queue"
    pushed, got = released(lambda: r.blpop(q, timeout=0), lambda: s.rpush(q, "job-1"))
    c.eq("blpop released by rpush", (pushed, got), (1, (q.encode(), b"job-1")))
    pushed, got = released(lambda: r.brpop([p + "q1", p + "q2"], timeout=0),
                           lambda: s.lpush(p + "q2", "a", "b"))
    c.eq("brpop on two lists released by lpush", (pushed, got), (2, (p.encode() + b"q2", b"a")))
    c.eq("brpop left the rest", r.lrange(p + "q2", 0, -1), [b"b"])
    pushed, got = released(lambda: r.blmove(p + "src", p + "dst", 0, "LEFT", "RIGHT"),
                           lambda: s.rpush(p + "src", "m"))
    c.eq("blmove released by rpush", (pushed, got), (1, b"m"))
    c.eq("blmove moved it", r.lrange(p + "dst", 0, -1), [b"m"])
    added, got = released(lambda: r.bzpopmin(p + "z", timeout=0), lambda: s.zadd(p + "z", {"m": 1.5}))
    c.write("zadd releasing bzpopmin", "ZADD", added, 1)
    c.eq("bzpopmin released by zadd", got, (p.encode() + b"z", b"m", 1.5))
    # Timeouts: nil, which redis-py gives as None.
    c.eq("blpop timeout", r.blpop(p + "nolist", timeout=0.05), None)
    c.eq("brpop timeout", r.brpop([p + "nolist", p + "nolist2"], timeout=0.05), None)
    c.eq("blmove timeout", r.blmove(p + "nolist", p + "dst", 0.05, "LEFT", "RIGHT"), None)
    c.eq("bzpopmin timeout", r.bzpopmin(p + "nozset", timeout=0.05), None)
    c.eq("blpop on a non-empty list", (r.rpush(q, "x"), r.blpop(q, timeout=0)), (1, (q.encode(), b"x")))
    c.raises("blpop on a string", lambda: (r.set(p + "bstr", "v"), r.blpop(p + "bstr", timeout=0.05)),
             redis.ResponseError, WRONGTYPE)
    c.raises("blpop with a negative timeout", lambda: r.blpop(q, timeout=-1), redis.ResponseError,
             "timeout is negative")
    # In a pipeline: in order with what surrounds them; inside MULTI they do not block.
    pipe = r.pipeline(transaction=False)
    pipe.rpush(q, "p1").blpop(q, timeout=0).blpop(q, timeout=0.05).incr(p + "after")
    c.eq("pipeline with blocking pops", pipe.execute(), [1, (q.encode(), b"p1"), None, 1])
    pipe = r.pipeline(transaction=True)
    pipe.blpop(q, timeout=0).rpush(q, "t1").brpop(q, timeout=0)
    c.eq("blocking pops inside MULTI", pipe.execute(), [None, 1, (q.encode(), b"t1")])

    # On another DB the dedicated connection is on the client's DB: a list of the same name in
    # DB 0 does not release the pop, and WATCH watches the DB 5 key.
    r5, s5 = conn(db=5), conn(db=5)
    q5 = p + "db5queue"
    c.eq("db 0 list of the same name", s.rpush(q5, "db0"), 1)
    pushed, got = released(lambda: r5.blpop(q5, timeout=0), lambda: s5.rpush(q5, "db5"))
    c.eq("db 5 blpop released by a db 5 push", (pushed, got), (1, (q5.encode(), b"db5")))
    c.eq("db 0 list untouched", r.lrange(q5, 0, -1), [b"db0"])
    calls5 = []

    def db5_tx(pipe):
        calls5.append(pipe.get(q5 + ":n"))
        if len(calls5) == 1:
            s5.incr(q5 + ":n")
        pipe.multi()
        pipe.incr(q5 + ":n")

    c.eq("db 5 transaction retried after a conflict", r5.transaction(db5_tx, q5 + ":n"), [2])
    c.eq("db 5 transaction saw", calls5, [None, b"1"])
    c.eq("db 5 transaction cleanup", r5.delete(q5 + ":n"), 1)
    r5.close()
    s5.close()

    # XREAD BLOCK released by an XADD; the IDs are the server's clock, shown as <id>.
    st = p + "stream"

    def no_ids(v, ids):
        if isinstance(v, (list, tuple)):
            return type(v)(no_ids(x, ids) for x in v)
        return "<id>" if isinstance(v, bytes) and v in ids else v

    added, got = released(lambda: r.xread({st: "$"}, block=0), lambda: s.xadd(st, {"f": "v"}))
    added = added.encode()  # `s` decodes replies
    c.eq("xread block released by xadd", no_ids(got, {added}), [[st.encode(), [("<id>", {b"f": b"v"})]]])
    c.eq("xread block timeout", r.xread({st: "$"}, block=50), [])
    c.eq("xread block on data already there", no_ids(r.xread({st: "0"}, block=50), {added}),
         [[st.encode(), [("<id>", {b"f": b"v"})]]])

    # WAIT: no replicas, so at once.
    c.eq("wait", r.wait(0, 0), 0)

    # Pub/sub: another connection publishes; confirmations and messages through get_message().
    ps = r.pubsub()
    ps.subscribe(p + "news", p + "sport")

    def message(timeout=5):
        m = ps.get_message(timeout=timeout)
        if m is None and timeout >= 1:
            c.fail("no pub/sub message within %ss" % timeout)
        return m

    c.eq("subscribe news", message(), {"type": "subscribe", "pattern": None,
                                       "channel": p.encode() + b"news", "data": 1})
    c.eq("subscribe sport", message(), {"type": "subscribe", "pattern": None,
                                        "channel": p.encode() + b"sport", "data": 2})
    ps.psubscribe(p + "w*")
    c.eq("psubscribe", message(), {"type": "psubscribe", "pattern": None,
                                   "channel": p.encode() + b"w*", "data": 3})
    for i in range(3):
        c.eq("publish news %d" % i, s.publish(p + "news", "n%d" % i), 1)
    for i in range(3):
        c.eq("message %d" % i, message(), {"type": "message", "pattern": None,
                                           "channel": p.encode() + b"news", "data": b"n%d" % i})
    c.eq("publish to the pattern", s.publish(p + "weather", "rain"), 1)
    c.eq("pmessage", message(), {"type": "pmessage", "pattern": p.encode() + b"w*",
                                 "channel": p.encode() + b"weather", "data": b"rain"})
    c.eq("numsub", s.pubsub_numsub(p + "news", p + "none"), [(p + "news", 1), (p + "none", 0)])
    ps.ping()
    c.eq("ping while subscribed", message(), {"type": "pong", "pattern": None, "channel": None, "data": b""})
    ps.unsubscribe(p + "news")
    c.eq("unsubscribe news", message(), {"type": "unsubscribe", "pattern": None,
                                         "channel": p.encode() + b"news", "data": 2})
    c.eq("publish after unsubscribe", s.publish(p + "news", "gone"), 0)
    ps.punsubscribe()
    c.eq("punsubscribe", message(), {"type": "punsubscribe", "pattern": None,
                                     "channel": p.encode() + b"w*", "data": 1})
    ps.unsubscribe()
    c.eq("unsubscribe all", message(), {"type": "unsubscribe", "pattern": None,
                                        "channel": p.encode() + b"sport", "data": 0})
    c.eq("nothing more", message(timeout=0.05), None)
    ps.close()
    c.eq("publish with nobody subscribed", s.publish(p + "sport", "x"), 0)
    # Sharded pub/sub (Redis 7): SSUBSCRIBE, SPUBLISH.
    ps = r.pubsub()
    ps.ssubscribe(p + "shard")
    c.eq("ssubscribe", ps.get_sharded_message(timeout=5), {"type": "ssubscribe", "pattern": None,
                                                           "channel": p.encode() + b"shard", "data": 1})
    c.eq("spublish", s.spublish(p + "shard", "s1"), 1)
    c.eq("smessage", ps.get_sharded_message(timeout=5), {"type": "smessage", "pattern": None,
                                                         "channel": p.encode() + b"shard", "data": b"s1"})
    ps.sunsubscribe()
    c.eq("sunsubscribe", ps.get_sharded_message(timeout=5), {"type": "sunsubscribe", "pattern": None,
                                                             "channel": p.encode() + b"shard", "data": 0})
    ps.close()
    # The connection of a subscriber that went away serves ordinary commands again.
    c.eq("after pub/sub", (r.set(p + "ps", "ok"), r.get(p + "ps"))[1], b"ok")

    # WATCH: a change by another connection aborts EXEC (WatchError); the retry succeeds.
    wk = p + "balance"
    c.write("watched key set", "SET", r.set(wk, 10), True)
    calls = []

    def add_one(pipe):
        v = int(pipe.get(wk))
        calls.append(v)
        if len(calls) == 1:
            # A smart SET is acknowledged before it runs: the GET after it makes sure it ran.
            s.set(wk, 100)
            s.get(wk)
        pipe.multi()
        pipe.set(wk, v + 1)

    c.eq("transaction retried after a conflict", r.transaction(add_one, wk), [True])
    c.eq("transaction saw", calls, [10, 100])
    c.eq("transaction result", r.get(wk), b"101")
    c.eq("transaction value_from_callable",
         r.transaction(lambda pipe: int(pipe.get(wk)), wk, value_from_callable=True), 101)
    with r.pipeline() as pipe:
        pipe.watch(wk, p + "other")
        c.eq("watch: immediate get", pipe.get(wk), b"101")
        s.set(wk, "changed")
        s.get(wk)
        pipe.multi()
        pipe.set(wk, "mine").get(wk)
        c.raises("watch conflict", pipe.execute, redis.WatchError, "Watched variable changed.")
        c.eq("the conflicting value stays", r.get(wk), b"changed")
        pipe.watch(wk)
        c.eq("watch again", pipe.get(wk), b"changed")
        pipe.multi()
        pipe.set(wk, "mine").get(wk)
        c.eq("exec without a conflict", pipe.execute(), [True, b"mine"])
        pipe.watch(wk)
        pipe.unwatch()
        s.set(wk, "again")
        s.get(wk)
        pipe.multi()
        pipe.incr(p + "unwatched")
        c.eq("exec after unwatch", pipe.execute(), [1])
        # A pipeline reset while watching sends UNWATCH; the next transaction is unaffected.
        pipe.watch(wk)
        pipe.reset()
        s.set(wk, "later")
        s.get(wk)
        pipe.multi()
        pipe.get(wk)
        c.eq("exec after reset", pipe.execute(), [b"later"])
    one = conn(single_connection_client=True)
    c.eq("multi by hand", one.execute_command("MULTI"), b"OK")
    c.raises("watch inside multi", lambda: one.execute_command("WATCH", wk), redis.ResponseError,
             "WATCH inside MULTI is not allowed")
    c.eq("discard that multi", one.execute_command("DISCARD"), b"OK")
    one.close()

    # MONITOR sees another connection's command.
    with r.monitor() as m:
        s.get(p + "monitored")
        for _ in range(1000):
            cmd = m.next_command()
            if p + "monitored" in cmd["command"]:
                break
        c.eq("monitor", (cmd["command"], cmd["db"]), ("GET %smonitored" % p, 0))
    c.eq("after monitor", r.get(p + "ps"), b"ok")


if __name__ == "__main__":
    try:
        main()
    except redis.RedisError as e:
        sys.stderr.write("redis_py_check: FAIL: %s: %s\n" % (type(e).__name__, e))
        sys.exit(1)
