#!/usr/bin/env python3
"""Opens COUNT idle client connections to a Redis-protocol server and holds them.

Usage: idle_clients.py HOST PORT COUNT

Each connection sends one GET and reads its reply before the next one opens, so every client
has been accepted and served once (whatever a server allocates on first use is counted) and
the listen backlog never overflows. Then prints "ready COUNT" and holds the connections until
SIGTERM or SIGINT.
"""

import resource
import signal
import socket
import sys


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    # 10,000 sockets are over the usual soft limit of 1024 open files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            print(f"open files hard limit {hard} < {want}", file=sys.stderr)
            return 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    request = b"*2\r\n$3\r\nGET\r\n$15\r\nbench:idle:none\r\n"
    conns = []
    for i in range(count):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                print(f"connection {i} closed by the server", file=sys.stderr)
                return 1
            reply += chunk
        if reply.startswith(b"-"):
            print(f"connection {i}: {reply.decode(errors='replace').strip()}", file=sys.stderr)
            return 1
        conns.append(s)

    print(f"ready {len(conns)}", flush=True)
    # Not standard input: a background job's is /dev/null, already at its end.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
