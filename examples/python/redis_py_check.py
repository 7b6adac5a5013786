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

Left out on purpose, because they need a connection of their own, which the relayer does not
give yet: r.pubsub() (SUBSCRIBE), blocking pops (r.blpop, r.brpop, r.bzpopmin, ...), r.transaction()
and pipe.watch() (WATCH), r.monitor() (MONITOR).
"""

import argparse
import hashlib
import os
import sys

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

    # Cleanup; nothing of the run is left.
    keys = list(r.scan_iter(match=p + "*", count=500))
    c.eq("delete", r.delete(*keys), len(keys))
    c.eq("nothing left", list(r.scan_iter(match=p + "*")), [])
    r.close()
    s.close()
    r5.close()
    print("redis_py_check: OK %d checks" % c.checks)


if __name__ == "__main__":
    try:
        main()
    except redis.RedisError as e:
        sys.stderr.write("redis_py_check: FAIL: %s: %s\n" % (type(e).__name__, e))
        sys.exit(1)
