#!/usr/bin/env bash
# The case smart mode exists for: a PHP request that writes a lot, to a backend in another
# availability zone.
#
# Builds the relayer and the delay link (release), starts a private redis-server, a delay link in
# front of it (DELAY_US each way, 500 us by default: a backend in another availability zone), and a
# smart relayer whose url goes through the link. Then runs examples/php/smart_loop.php (ITERATIONS x
# SETEX with a 1 KB value, HSET, EXPIRE, then one GET of the last key, checked)
#   directly over the link            (every command waits a round trip)
#   through the relayer over the link (writes answered at once, sent in the background)
# alternating, REPS times each, verifies every key of every run on the backend (2 x ITERATIONS keys
# per run with their values and TTLs), and prints the best time of each and the speed-up.
# Everything it started is stopped on exit.
#
# Environment:
#   ITERATIONS=1000   loop iterations per run
#   REPS=3            runs of each (the best is reported)
#   DELAY_US=500      delay of the link in each direction, in microseconds
#   RELAYER_BIN=...   use this relayer binary instead of building target/release/smart-relayer
#   DELAY_LINK_BIN=...  use this delay-link binary instead of building it
#   KEEP=1            keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

ITERATIONS="${ITERATIONS:-1000}"
REPS="${REPS:-3}"
DELAY_US="${DELAY_US:-500}"
script="$root/examples/php/smart_loop.php"

bench=smart-bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for cmd in redis-server redis-cli php; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (run scripts/install-deps.sh)"
done
php -r 'exit(extension_loaded("redis") ? 0 : 1);' || die "the phpredis extension (php-redis) is not loaded"

target="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${RELAYER_BIN:-}" ]; then
    relayer_bin="$RELAYER_BIN"
else
    log "building smart-relayer (release)"
    cargo build --release --bin smart-relayer
    relayer_bin="$target/release/smart-relayer"
fi
if [ -n "${DELAY_LINK_BIN:-}" ]; then
    link_bin="$DELAY_LINK_BIN"
else
    log "building delay-link (release)"
    cargo build --release -p integration --bin delay-link
    link_bin="$target/release/delay-link"
fi
[ -x "$relayer_bin" ] || die "no relayer binary at $relayer_bin"
[ -x "$link_bin" ] || die "no delay-link binary at $link_bin"


redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize yes --dir "$tmp" --logfile "$tmp/redis.log" --pidfile "$tmp/redis.pid"
wait_ready redis-server "$redis_port" ping

# The link picks its own port (no race for it) and prints it. The file exists before the
# background job's own redirection creates it, so the first read below cannot fail.
: >"$tmp/link.out"
"$link_bin" 0 "$redis_port" "$DELAY_US" >"$tmp/link.out" 2>"$tmp/link.log" &
pids+=($!)
link_port=""
for _ in $(seq 1 100); do
    link_port="$(sed -n 's/^listening on //p' "$tmp/link.out")"
    [ -n "$link_port" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || die "delay-link exited: $(cat "$tmp/link.log")"
    sleep 0.05
done
[ -n "$link_port" ] || die "delay-link did not report its port"
wait_ready delay-link "$link_port" ping

relayer_port="$(free_port)"
cat >"$tmp/relayer.toml" <<TOML
[[relayer]]
protocol = "redis"
mode = "smart"
listen = "tcp://127.0.0.1:$relayer_port"
url = "tcp://127.0.0.1:$link_port"
maxConnections = 1
TOML
"$relayer_bin" -c "$tmp/relayer.toml" >"$tmp/relayer.log" 2>&1 &
pids+=($!)
wait_ready smart-relayer "$relayer_port" get smart-bench:ready

# The PING round trip over the link, as redis-cli sees it in 1 s (for the report).
rtt_ms="$(redis-cli -h 127.0.0.1 -p "$link_port" --latency --raw </dev/null 2>/dev/null | awk '{print $3}' || true)"

declare -A port_of=([direct]="$link_port" [relayer]="$relayer_port")
declare -A best=()
runs=0

# One run of the loop against a target, then the check of its keys on the backend itself.
measure() {
    local name=$1 out run elapsed
    out="$(php "$script" 127.0.0.1 "${port_of[$name]}" "$ITERATIONS" 2>"$tmp/php.err")" \
        || die "smart_loop.php via $name failed: $(cat "$tmp/php.err") $out"
    run="$(sed -n 's/^run=//p' <<<"$out")"
    elapsed="$(sed -n 's/^elapsed_s=//p' <<<"$out")"
    if [ -z "$run" ] || [ -z "$elapsed" ]; then
        die "unexpected output of smart_loop.php via $name: $out"
    fi
    php "$script" 127.0.0.1 "$redis_port" "$ITERATIONS" verify "$run" >"$tmp/verify.out" 2>&1 \
        || die "run $run via $name: keys on the backend: $(cat "$tmp/verify.out")"
    runs=$((runs + 1))
    if [ -z "${best[$name]:-}" ] || awk -v a="$elapsed" -v b="${best[$name]}" 'BEGIN { exit !(a < b) }'; then
        best[$name]="$elapsed"
    fi
    printf '  %-8s %9.4f s  (run %s, %s)\n' "$name" "$elapsed" "$run" "$(cat "$tmp/verify.out")" >&2
}

log "smart_loop.php x $ITERATIONS iterations, link delay ${DELAY_US} us each way, $REPS repetitions"
for rep in $(seq 1 "$REPS"); do
    log "repetition $rep/$REPS"
    measure direct
    measure relayer
done

keys="$(redis-cli -h 127.0.0.1 -p "$redis_port" dbsize)"
[ "$keys" = "$((runs * 2 * ITERATIONS))" ] || die "$keys keys on the backend, expected $((runs * 2 * ITERATIONS))"

speedup="$(awk -v d="${best[direct]}" -v r="${best[relayer]}" 'BEGIN { printf "%.1fx", d / r }')"
echo
echo "smart-relayer smart-mode benchmark: examples/php/smart_loop.php, $ITERATIONS iterations" \
    "(SETEX 1 KB, HSET, EXPIRE; one GET), best of $REPS, $(nproc) cores"
echo "link: ${DELAY_US} us each way${rtt_ms:+ (redis-cli PING round trip ${rtt_ms} ms)}; relayer: smart mode, maxConnections 1"
echo "every key of all $runs runs verified on the backend ($keys keys)"
echo
printf '%-34s %10s\n' "direct over the link" "${best[direct]} s"
printf '%-34s %10s\n' "through the relayer over the link" "${best[relayer]} s"
printf '%-34s %10s\n' "speed-up" "$speedup"
