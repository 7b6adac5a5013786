#!/usr/bin/env bash
# Starts smart-relayer on config/relayer.toml (tcp://127.0.0.1:6389 and unix:/tmp/smart-relayer.sock,
# relaying to 127.0.0.1:6379). Installs what is missing first (scripts/install-deps.sh) and starts a
# local redis-server on 127.0.0.1:6379 unless something already answers there. Extra arguments go
# to smart-relayer (e.g. `scripts/run.sh -d` for debug logging).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/install-deps.sh

if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "run.sh: using the redis-server already answering on 127.0.0.1:6379" >&2
else
    mkdir -p target
    logfile="$root/target/redis-6379.log"
    echo "run.sh: starting redis-server on 127.0.0.1:6379 (log: $logfile)" >&2
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --daemonize yes --logfile "$logfile" --dir "$root/target" \
        --pidfile "$root/target/redis-6379.pid"
    for _ in $(seq 1 50); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "run.sh: redis-server did not come up; see $logfile" >&2
        exit 1
    fi
    echo "run.sh: stop it later with: redis-cli -h 127.0.0.1 -p 6379 shutdown nosave" >&2
fi

exec cargo run --release --bin smart-relayer -- -c config/relayer.toml "$@"
