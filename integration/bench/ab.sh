#!/usr/bin/env bash
# Before and after: two relayer binaries side by side in one sitting, against one redis-server,
# every measurement taken in turn (direct, A, B) so that both see the same machine. For a change
# to the hot path, where figures from two runs of bench.sh on shared cores cannot be compared.
#
# Usage: ab.sh BEFORE_BIN AFTER_BIN
#
# Starts a private redis-server and the two relayers (sync mode, maxConnections 1) on free
# loopback ports, prefills the key space of each size, and runs redis-benchmark SET and GET for
# every size and shape REPS times, keeping the best requests/s; CPU ticks of redis-server and of
# each relayer are summed over every run against it. Prints one table: requests/s and ratio to
# direct for A and B, CPU seconds per million commands (relayer, and redis-server behind it).
#
# Environment:
#   N=100000            requests per run
#   REPS=3              runs of each measurement (best kept)
#   SIZES="100 10240"   value sizes, bytes
#   SHAPES="c50 p16"    c1 (-c 1), c50 (-c 50 -P 1), p16 (-c 50 -P 16)
#   MODE=sync           mode of both relayers
#   KEEP=1              keep the temporary directory
set -euo pipefail

[ "$#" -eq 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN" >&2; exit 2; }
bin_a=$1 bin_b=$2
N="${N:-100000}"
REPS="${REPS:-3}"
SIZES="${SIZES:-100 10240}"
SHAPES="${SHAPES:-c50 p16}"
MODE="${MODE:-sync}"

bench=ab
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for b in "$bin_a" "$bin_b"; do [ -x "$b" ] || die "no relayer binary at $b"; done

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize yes --dir "$tmp" --logfile "$tmp/redis.log" --pidfile "$tmp/redis.pid"
wait_ready redis-server "$redis_port" ping
redis_pid="$(cat "$tmp/redis.pid")"

declare -A port_of=([direct]="$redis_port") pid_of=([direct]="$redis_pid")
for side in a b; do
    bin="bin_$side"
    port="$(free_port)"
    cat >"$tmp/relayer-$side.toml" <<TOML
[[relayer]]
protocol = "redis"
mode = "$MODE"
listen = "tcp://127.0.0.1:$port"
url = "tcp://127.0.0.1:$redis_port"
maxConnections = 1
timeout = 30
TOML
    "${!bin}" -c "$tmp/relayer-$side.toml" >"$tmp/relayer-$side.log" 2>&1 &
    pids+=($!)
    port_of[$side]="$port"
    pid_of[$side]="${pids[-1]}"
    wait_ready "relayer $side" "$port" get ab:ready
done

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
declare -A shape_args=([c1]="-c 1" [c50]="-c 50" [p16]="-c 50 -P 16")
declare -A shape_label=([c1]="-c 1" [c50]="-c 50 -P 1" [p16]="-c 50 -P 16")
declare -A best=() cpu=() rcpu=() runs=()

for size in $SIZES; do
    redis-cli -p "$redis_port" flushall >/dev/null
    redis-benchmark -p "$redis_port" -t set -d "$size" -r 10000 -n 50000 -c 50 -P 16 -q >/dev/null
    for rep in $(seq 1 "$REPS"); do
        for shape in $SHAPES; do
            for cmd in set get; do
                for target in direct a b; do
                    key="$cmd|$size|$shape|$target"
                    t0="$(cpu_ticks "${pid_of[$target]}")" r0="$(cpu_ticks "$redis_pid")"
                    # shellcheck disable=SC2086 # shape_args holds several arguments
                    rps="$(redis-benchmark -p "${port_of[$target]}" ${shape_args[$shape]} -n "$N" -t "$cmd" \
                        -d "$size" -r 10000 --csv | tail -n 1 | cut -d, -f2 | tr -d '"')"
                    redis-cli -p "${port_of[$target]}" get ab:barrier >/dev/null
                    t1="$(cpu_ticks "${pid_of[$target]}")" r1="$(cpu_ticks "$redis_pid")"
                    cpu[$key]=$((${cpu[$key]:-0} + t1 - t0))
                    rcpu[$key]=$((${rcpu[$key]:-0} + r1 - r0))
                    runs[$key]=$((${runs[$key]:-0} + 1))
                    if [ -z "${best[$key]:-}" ] || awk -v a="$rps" -v b="${best[$key]}" 'BEGIN { exit !(a > b) }'; then
                        best[$key]="$rps"
                    fi
                    log "rep $rep: $cmd $size B ${shape_label[$shape]} $target: $rps req/s"
                done
            done
        done
    done
done

hz="$(getconf CLK_TCK)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
per_m() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }'; }
echo "A: $bin_a"
echo "B: $bin_b"
echo "redis-benchmark -n $N -r 10000, best of $REPS, taken in turn; CPU: s per million commands, relayer (redis-server behind it)"
echo
echo "| test | direct | A | | B | | B / A | CPU direct | CPU A | CPU B |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for size in $SIZES; do
    for shape in $SHAPES; do
        for cmd in set get; do
            k="$cmd|$size|$shape"
            d="${best[$k|direct]}" a="${best[$k|a]}" b="${best[$k|b]}"
            n=$((N * ${runs[$k|a]}))
            echo "| ${cmd^^} $size B \`${shape_label[$shape]}\` | $d | $a | $(ratio "$a" "$d") | $b | $(ratio "$b" "$d") | $(ratio "$b" "$a") |" \
                "$(per_m "${cpu[$k|direct]}" "$n") | $(per_m "${cpu[$k|a]}" "$n") ($(per_m "${rcpu[$k|a]}" "$n")) |" \
                "$(per_m "${cpu[$k|b]}" "$n") ($(per_m "${rcpu[$k|b]}" "$n")) |"
        done
    done
done
