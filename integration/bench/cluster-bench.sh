#!/usr/bin/env bash
# The Redis Cluster benchmark: redis-benchmark with random keys through a cluster
# relayer, against `redis-benchmark --cluster` straight to the masters, in the same run.
#
# Builds the relayer in release mode, starts a Redis Cluster of 3 masters and 3 replicas
# (redis-server on free loopback ports, formed with `redis-cli --cluster create`) and a sync
# cluster relayer (maxConnections 1 per master) in front of it, then runs
#   redis-benchmark -r 1000000 -t set,get -c 50 -n N        (and the same with -P 16)
# through the relayer, and with --cluster against a master directly, alternating, REPS times
# each (the best figure is kept). Prints a table of requests/s with the relayer's ratio to
# direct, and writes it as the "Redis Cluster" section of the report (replaced if there, else
# appended). Figures are printed, never asserted. Everything started is stopped on exit.
#
# Environment:
#   N=200000          requests per redis-benchmark run
#   REPS=3            repetitions of every measurement (best kept)
#   QUICK=1           smoke run: N=20000 REPS=1 (each can still be set)
#   OUT=BENCHMARKS.md the report (a relative path is from the repository root)
#   RELAYER_BIN=...   use this relayer binary instead of building target/release/smart-relayer
#   KEEP=1            keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

command_line=""
for var in QUICK N REPS OUT; do
    [ -n "${!var:-}" ] && command_line+="$var=${!var} "
done
command_line+="integration/bench/cluster-bench.sh"

if [ "${QUICK:-0}" = 1 ]; then
    N="${N:-20000}" REPS="${REPS:-1}"
fi
N="${N:-200000}"
REPS="${REPS:-3}"
OUT="${OUT:-BENCHMARKS.md}"
KEYSPACE=1000000

bench=cluster-bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for cmd in redis-server redis-cli redis-benchmark; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (run scripts/install-bench-deps.sh)"
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${RELAYER_BIN:-}" ]; then
    relayer_bin="$RELAYER_BIN"
    build="given binary"
else
    log "building smart-relayer (release)"
    cargo build --release --bin smart-relayer
    relayer_bin="$target_dir/release/smart-relayer"
    build="release"
fi
[ -x "$relayer_bin" ] || die "no relayer binary at $relayer_bin"

# --- the cluster -------------------------------------------------------------------------------

# A node needs its port and the cluster bus port (port + 10000) free.
free_node_port() {
    local port
    for _ in $(seq 1 100); do
        port="$(free_port)"
        if [ $((port + 10000)) -le 65535 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port pair (port, port + 10000) found"
}

node_ports=()
for i in 0 1 2 3 4 5; do
    port="$(free_node_port)"
    mkdir -p "$tmp/node$i"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --daemonize yes --dir "$tmp/node$i" --logfile "$tmp/node$i.log" --pidfile "$tmp/node$i.pid"
    node_ports+=("$port")
    wait_ready "redis-server (node $i)" "$port" ping
done

# common.sh's cleanup stops these: their pids are in the list.
for i in 0 1 2 3 4 5; do
    pids+=("$(cat "$tmp/node$i.pid")")
done

addrs=()
for port in "${node_ports[@]}"; do
    addrs+=("127.0.0.1:$port")
done
log "forming the cluster (3 masters, 3 replicas)"
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$tmp/create.log" 2>&1 \
    || die "redis-cli --cluster create failed: $(tail "$tmp/create.log")"
for _ in $(seq 1 300); do
    ok=1
    for port in "${node_ports[@]}"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info | grep -q '^cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
done
[ "$ok" = 1 ] || die "the cluster did not reach cluster_state:ok"
master_port="$(redis-cli -h 127.0.0.1 -p "${node_ports[0]}" cluster nodes | awk '$3 ~ /master/ { split($2, a, "[:@]"); print a[2]; exit }')"
[ -n "$master_port" ] || die "no master in CLUSTER NODES"

relayer_port="$(free_port)"
seeds=""
for port in "${node_ports[@]}"; do
    seeds+="tcp://127.0.0.1:$port "
done
cat >"$tmp/relayer.toml" <<TOML
[[relayer]]
protocol = "redis-cluster"
mode = "sync"
listen = "tcp://127.0.0.1:$relayer_port"
url = "${seeds% }"
maxConnections = 1
timeout = 30
TOML
"$relayer_bin" -c "$tmp/relayer.toml" >"$tmp/relayer.log" 2>&1 &
pids+=($!)
wait_ready "smart-relayer (cluster)" "$relayer_port" set bench:ready 1

# --- redis-benchmark ---------------------------------------------------------------------------

shapes=(p1 p16)
declare -A shape_args=([p1]="-c 50" [p16]="-c 50 -P 16")
declare -A shape_label=([p1]="-c 50 -P 1" [p16]="-c 50 -P 16")
targets=(direct relayer)
declare -A best=()

is_less() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

measure() {
    local target=$1 cmd=$2 shape=$3 args csv name rps _
    case "$target" in
        direct) args="--cluster -h 127.0.0.1 -p $master_port" ;;
        relayer) args="-h 127.0.0.1 -p $relayer_port" ;;
    esac
    # shellcheck disable=SC2086 # args and shape_args hold several arguments
    csv="$(redis-benchmark $args ${shape_args[$shape]} -n "$N" -r "$KEYSPACE" -t "${cmd,,}" --csv \
        2>"$tmp/benchmark.err")" || die "redis-benchmark against $target failed: $(cat "$tmp/benchmark.err")"
    IFS=, read -r name rps _ < <(grep -v '^"test"' <<<"$csv" | tr -d '"\r' | grep "^$cmd," | tail -n 1) || true
    { [ "${name:-}" = "$cmd" ] && [ -n "${rps:-}" ]; } || die "unexpected redis-benchmark output against $target: $csv"
    local key="$target|$cmd|$shape"
    if [ -z "${best[$key]:-}" ] || is_less "${best[$key]}" "$rps"; then best[$key]="$rps"; fi
    printf '  %-8s %-4s %-12s %10s req/s\n' "$target" "$cmd" "${shape_label[$shape]}" "$rps" >&2
}

for rep in $(seq 1 "$REPS"); do
    log "redis-benchmark, repetition $rep/$REPS"
    for shape in "${shapes[@]}"; do
        for cmd in SET GET; do
            for target in "${targets[@]}"; do
                measure "$target" "$cmd" "$shape"
            done
        done
    done
done
grep -q 'ERRO\|CRIT' "$tmp/relayer.log" && log "the relayer logged errors: see $tmp/relayer.log"

# --- the report --------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

cores="$(grep -c '^processor' /proc/cpuinfo)"
commit="$(measured_commit)"

section="$tmp/section.md"
{
    echo "## Redis Cluster"
    echo
    echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- a cluster of 3 masters and 3 replicas (redis-server" \
        "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), formed with \`redis-cli --cluster create\`)," \
        "a sync cluster relayer in front of it (smart-relayer $commit, $build, maxConnections 1 per master)"
    echo "- \`redis-benchmark -r $KEYSPACE -n $N -t set|get\`, at \`-c 50\` and \`-c 50 -P 16\`: direct is" \
        "\`redis-benchmark --cluster\` against a master (it sends each command to its slot's master)," \
        "relayer is plain \`redis-benchmark\` against the relayer; best of $REPS, alternating, same run," \
        "all on the same $cores cores, loopback TCP"
    echo
    echo "| test | direct (\`--cluster\`) | through the relayer | relayer / direct |"
    echo "|---|---:|---:|---:|"
    for shape in "${shapes[@]}"; do
        for cmd in SET GET; do
            d="${best[direct|$cmd|$shape]}" r="${best[relayer|$cmd|$shape]}"
            echo "| $cmd \`${shape_label[$shape]}\` | $(int "$d") | $(int "$r") | $(ratio "$r" "$d") |"
        done
    done
} >"$section"

case "$OUT" in /*) out_path="$OUT" ;; *) out_path="$root/$OUT" ;; esac
write_section "$out_path" "Redis Cluster" "$section"
echo
cat "$section"
log "written to $out_path"
