#!/usr/bin/env python3
"""Many redis-py clients at once, with its default settings: how many connections the backend
sees for them.

    python redis_py_clients.py HOST PORT BACKEND_PORT [--clients N] [--protocol 2|3] [--rounds R]

Starts N threads (default 500), each with a redis.Redis of its own (redis-py's defaults: with
redis-py 8 every connection starts with HELLO 3, RESP3; --protocol 2 asks for RESP2), which
runs R rounds (default 20) of SET, GET, HSET, HGETALL, INCR, EXPIRE and a pipeline, checking
every reply (values read back equal what was written; keys unique to the run, a client's in
one hash slot, for a cluster relayer). Once every client has run and while
they all still hold their connections, it asks the backend directly (BACKEND_PORT on
127.0.0.1) for its CLIENT LIST, and prints one line of JSON: the clients, the errors, and the
backend's connections (all, and those speaking RESP3), not counting the one asking. Exits 1 if
any client failed.
"""

import argparse
import json
import os
import sys
import threading

import redis


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("backend_port", type=int)
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--protocol", type=int, default=None)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()

    errors = []
    done = threading.Barrier(a.clients + 1)
    release = threading.Event()
    kw = {} if a.protocol is None else {"protocol": a.protocol}
    run = os.urandom(4).hex()

    def client(i):
        try:
            r = redis.Redis(host=a.host, port=a.port, decode_responses=True, **kw)
            for n in range(a.rounds):
                k = f"rpc:{{{run}:{i}}}:{n}"
                if r.set(k, f"v{n}") is not True:
                    raise AssertionError(f"SET {k}")
                if r.get(k) != f"v{n}":
                    raise AssertionError(f"GET {k}")
                r.hset(f"rpc:{{{run}:{i}}}:h", f"f{n}", n)
                if r.hgetall(f"rpc:{{{run}:{i}}}:h").get(f"f{n}") != str(n):
                    raise AssertionError(f"HGETALL rpc:h:{i}")
                if r.incr(f"rpc:{{{run}:{i}}}:n") != n + 1:
                    raise AssertionError(f"INCR rpc:n:{i}")
                r.expire(k, 600)
                pipe = r.pipeline(transaction=(n % 2 == 0))
                pipe.set(f"{k}:p", "x").get(f"{k}:p").exists(f"{k}:missing")
                if pipe.execute() != [True, "x", 0]:
                    raise AssertionError(f"pipeline {k}")
            if r.get(f"rpc:{{{run}:{i}}}:missing") is not None:
                raise AssertionError("GET of a missing key")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(f"client {i}: {e!r}")
        try:
            done.wait(timeout=300)
        except threading.BrokenBarrierError:
            pass
        release.wait(timeout=300)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    done.wait(timeout=300)
    backend = redis.Redis(host="127.0.0.1", port=a.backend_port, protocol=2, decode_responses=True)
    listed = [c for c in backend.client_list() if c.get("cmd") != "client|list"]
    release.set()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "clients": a.clients,
                "errors": len(errors),
                "backend_connections": len(listed),
                "backend_resp3": sum(1 for c in listed if c.get("resp") == "3"),
                "redis_py": redis.__version__,
            }
        )
    )
    for e in errors[:20]:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
