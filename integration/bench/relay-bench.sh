#!/usr/bin/env bash
# Throughput of smart-relayer against redis-server directly, in the same run.
#
# Builds the relayer (release), starts a private redis-server and the relayer (sync mode,
# maxConnections 1) on free loopback ports with a temporary config, then runs
#   redis-benchmark -c CLIENTS -n N -t set,get -q          (no pipelining)
#   redis-benchmark -c CLIENTS -n N -t set,get -q -P 16    (client pipelining)
# directly against redis and through the relayer, alternating, REPS times each, and prints the
# best requests/s of each and the ratio relayer/direct. Everything it started is stopped on exit.
#
# Environment:
#   N=200000        requests per redis-benchmark run
#   CLIENTS=50      redis-benchmark connections
#   REPS=2          repetitions of each measurement (the best is reported)
#   PIPELINE=16     the -P value of the pipelined runs
#   TWEMPROXY=1     also measure Debian's twemproxy (nutcracker, one server connection),
#                   installing the package if it is missing
#   RELAYER_BIN=... use this binary instead of building target/release/smart-relayer
#   KEEP=1          keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
REPS="${REPS:-2}"
PIPELINE="${PIPELINE:-16}"
TWEMPROXY="${TWEMPROXY:-0}"

bench=relay-bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for cmd in redis-server redis-cli redis-benchmark; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (run scripts/install-deps.sh)"
done

if [ "$TWEMPROXY" = 1 ] && ! command -v nutcracker >/dev/null 2>&1; then
    log "installing nutcracker"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nutcracker >/dev/null
fi

if [ -n "${RELAYER_BIN:-}" ]; then
    relayer_bin="$RELAYER_BIN"
else
    log "building smart-relayer (release)"
    cargo build --release --bin smart-relayer
    relayer_bin="${CARGO_TARGET_DIR:-$root/target}/release/smart-relayer"
fi
[ -x "$relayer_bin" ] || die "no relayer binary at $relayer_bin"


redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize yes --dir "$tmp" --logfile "$tmp/redis.log" --pidfile "$tmp/redis.pid"
wait_ready redis-server "$redis_port" ping

relayer_port="$(free_port)"
cat >"$tmp/relayer.toml" <<TOML
[[relayer]]
protocol = "redis"
mode = "sync"
listen = "tcp://127.0.0.1:$relayer_port"
url = "tcp://127.0.0.1:$redis_port"
maxConnections = 1
timeout = 30
TOML
"$relayer_bin" -c "$tmp/relayer.toml" >"$tmp/relayer.log" 2>&1 &
pids+=($!)
wait_ready smart-relayer "$relayer_port" get relay-bench:ready

targets=(direct relayer)
declare -A port_of=([direct]="$redis_port" [relayer]="$relayer_port")
if [ "$TWEMPROXY" = 1 ]; then
    twem_port="$(free_port)"
    cat >"$tmp/nutcracker.yml" <<YAML
bench:
  listen: 127.0.0.1:$twem_port
  redis: true
  hash: fnv1a_64
  distribution: ketama
  server_connections: 1
  auto_eject_hosts: false
  timeout: 30000
  servers:
    - 127.0.0.1:$redis_port:1
YAML
    nutcracker -c "$tmp/nutcracker.yml" -o "$tmp/nutcracker.log" -s "$(free_port)" &
    pids+=($!)
    wait_ready nutcracker "$twem_port" get relay-bench:ready
    targets+=(twemproxy)
    port_of[twemproxy]="$twem_port"
fi

# Best requests/s per "<target> <test>" key, e.g. best["relayer SET -P 16"].
declare -A best=()
tests=()

# Runs redis-benchmark once against a target and records SET and GET figures.
measure() {
    local target=$1 label=$2
    shift 2
    local out line name rps key
    out="$(redis-benchmark -h 127.0.0.1 -p "${port_of[$target]}" -c "$CLIENTS" -n "$N" \
        -t set,get -q "$@" 2>"$tmp/benchmark.err" | tr '\r' '\n')" \
        || die "redis-benchmark against $target failed: $(cat "$tmp/benchmark.err")"
    for name in SET GET; do
        line="$(grep -E "^$name: [0-9.]+ requests per second" <<<"$out" | tail -n 1 || true)"
        [ -n "$line" ] || die "no $name result from redis-benchmark against $target: $out"
        rps="$(awk '{print $2}' <<<"$line")"
        key="$name$label"
        case " ${tests[*]:-} " in *" $key "*) ;; *) tests+=("$key") ;; esac
        if awk -v a="$rps" -v b="${best["$target $key"]:-0}" 'BEGIN { exit !(a > b) }'; then
            best["$target $key"]="$rps"
        fi
    done
    printf '  %-10s %-8s SET %10s  GET %10s\n' "$target" "${label:+-P ${label#_P}}" \
        "${best["$target SET$label"]}" "${best["$target GET$label"]}" >&2
}

log "redis-benchmark -c $CLIENTS -n $N -t set,get, $REPS repetitions, targets: ${targets[*]}"
for rep in $(seq 1 "$REPS"); do
    log "repetition $rep/$REPS (best so far)"
    for target in "${targets[@]}"; do
        measure "$target" ""
    done
    for target in "${targets[@]}"; do
        measure "$target" "_P$PIPELINE" -P "$PIPELINE"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
echo "smart-relayer benchmark: redis-benchmark -c $CLIENTS -n $N, best of $REPS, $(nproc) cores, $(redis-server --version | awk '{print $3}')"
echo "relayer: $("$relayer_bin" --version 2>/dev/null || echo "$relayer_bin"), sync mode, maxConnections 1"
echo
if [ "$TWEMPROXY" = 1 ]; then
    printf '%-12s %14s %14s %8s %14s %8s\n' test "direct rps" "relayer rps" ratio "twemproxy rps" ratio
    printf '%-12s %14s %14s %8s %14s %8s\n' ------------ -------------- -------------- -------- -------------- --------
else
    printf '%-12s %14s %14s %8s\n' test "direct rps" "relayer rps" ratio
    printf '%-12s %14s %14s %8s\n' ------------ -------------- -------------- --------
fi
for key in "${tests[@]}"; do
    name="${key/_P/ -P }"
    d="${best["direct $key"]}"
    r="${best["relayer $key"]}"
    if [ "$TWEMPROXY" = 1 ]; then
        t="${best["twemproxy $key"]}"
        printf '%-12s %14s %14s %8s %14s %8s\n' "$name" "$d" "$r" "$(ratio "$r" "$d")" "$t" "$(ratio "$t" "$d")"
    else
        printf '%-12s %14s %14s %8s\n' "$name" "$d" "$r" "$(ratio "$r" "$d")"
    fi
done
