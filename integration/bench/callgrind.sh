#!/usr/bin/env bash
# Instructions per relayed command, counted by valgrind's callgrind: unlike time, the count
# repeats from run to run on a noisy shared machine, so a change to the hot path shows as a
# before/after difference of a few percent.
#
# Builds the relayer (release, with line tables), starts a private redis-server, and runs the
# relayer (sync mode, maxConnections 1) under `valgrind --tool=callgrind` once per variant:
#   baseline   started, one GET (also opens the upstream connection), stopped: no benchmark
#   the rest   the same, plus redis-benchmark -c CG_CLIENTS -n CG_N -t <test> -d <size> -P <p>
#              for every test of CG_TESTS, size of CG_SIZES and pipeline of CG_PIPELINES (SET
#              before GET, so the GETs find values of their size)
# Each run ends with SIGTERM and the relayer's clean exit (callgrind writes its counts then).
# Prints, per variant, (instructions of the run - baseline) / commands relayed, so startup and
# shutdown are not counted. Everything it started is stopped on exit.
#
# Usage: callgrind.sh [--annotate]
#   --annotate  also print the top CG_TOP functions of each run (callgrind_annotate, self cost)
#
# Environment:
#   CG_N=20000       requests per run
#   CG_CLIENTS=10    redis-benchmark connections
#   CG_TESTS="set get"     redis-benchmark tests, one run each
#   CG_SIZES="100 10240"   value sizes, bytes
#   CG_PIPELINES="1 16"    redis-benchmark -P values
#   CG_TOP=25        functions shown by --annotate
#   RELAYER_BIN=...  use this relayer binary instead of building target/release/smart-relayer
#   KEEP=1           keep the temporary directory (callgrind.out files, configs, logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

annotate=0
for arg in "$@"; do
    case "$arg" in
        --annotate) annotate=1 ;;
        *) echo "usage: $0 [--annotate]" >&2; exit 2 ;;
    esac
done

CG_N="${CG_N:-20000}"
CG_CLIENTS="${CG_CLIENTS:-10}"
CG_TESTS="${CG_TESTS:-set get}"
CG_SIZES="${CG_SIZES:-100 10240}"
CG_PIPELINES="${CG_PIPELINES:-1 16}"
CG_TOP="${CG_TOP:-25}"

bench=callgrind
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for cmd in redis-server redis-cli redis-benchmark valgrind callgrind_annotate; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (run scripts/install-bench-deps.sh)"
done

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

# Runs the relayer under callgrind, drives it with the given redis-benchmark arguments (none:
# the baseline), stops it, and sets run_total to the instructions it executed. Not a $(...)
# subshell: the relayer's pid must reach common.sh's cleanup.
run_total=""
run() {
    local name=$1
    shift
    local port out pid rc total
    port="$(free_port)"
    out="$tmp/callgrind.out.$name"
    cat >"$tmp/relayer-$name.toml" <<TOML
[[relayer]]
protocol = "redis"
mode = "sync"
listen = "tcp://127.0.0.1:$port"
url = "tcp://127.0.0.1:$redis_port"
maxConnections = 1
timeout = 30
TOML
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$relayer_bin" -c "$tmp/relayer-$name.toml" >"$tmp/relayer-$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    # Startup under valgrind takes seconds. Probes refused before the listener binds cost the
    # relayer nothing; the first one answered is a forwarded GET in every run, baseline included.
    for _ in $(seq 1 600); do
        redis-cli -h 127.0.0.1 -p "$port" get callgrind:ready >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || die "relayer under valgrind exited: $(tail -n 20 "$tmp/relayer-$name.log")"
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p "$port" get callgrind:ready >/dev/null 2>&1 \
        || die "relayer under valgrind does not answer on $port"
    if [ "$#" -gt 0 ]; then
        redis-benchmark -h 127.0.0.1 -p "$port" "$@" -q >"$tmp/benchmark-$name.out" 2>&1 \
            || die "redis-benchmark ($name) failed: $(tail -n 5 "$tmp/benchmark-$name.out")"
    fi
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || die "relayer under valgrind exited with $rc at SIGTERM: $(tail -n 20 "$tmp/relayer-$name.log")"
    [ -s "$out" ] || die "no callgrind output written to $out"
    total="$(awk '/^(totals|summary):/ { print $2; exit }' "$out")"
    [ -n "$total" ] || die "no totals in $out"
    run_total="$total"
}

common=(-c "$CG_CLIENTS" -n "$CG_N" -r 10000)

log "baseline run (start, one GET, stop)"
run baseline
base="$run_total"
log "  $base instructions"
declare -A total_of=() label_of=()
variants=()
for size in $CG_SIZES; do
    for p in $CG_PIPELINES; do
        for t in $CG_TESTS; do
            v="$t-$size-P$p"
            variants+=("$v")
            label_of[$v]="${t^^} $size B -P $p"
            log "run with redis-benchmark ${common[*]} -t $t -d $size -P $p"
            run "$v" "${common[@]}" -t "$t" -d "$size" -P "$p"
            total_of[$v]="$run_total"
            log "  ${total_of[$v]} instructions"
        done
    done
done

echo "callgrind: smart-relayer sync mode, maxConnections 1; redis-benchmark ${common[*]}"
echo "user-space instructions of the relayer process (not the kernel's), baseline subtracted"
printf '%-28s %16s %10s %14s\n' run instructions commands "per command"
printf '%-28s %16s %10s %14s\n' "baseline (start, GET, stop)" "$base" 0 -
for v in "${variants[@]}"; do
    per="$(awk -v t="${total_of[$v]}" -v b="$base" -v n="$CG_N" 'BEGIN { printf "%.0f", (t - b) / n }')"
    printf '%-28s %16s %10s %14s\n' "${label_of[$v]}" "${total_of[$v]}" "$CG_N" "$per"
done

if [ "$annotate" = 1 ]; then
    for v in "${variants[@]}"; do
        echo
        echo "top $CG_TOP functions by own instructions, ${label_of[$v]} run (startup included):"
        # The function table follows the "file:function" header and its rule line. awk reads
        # to the end: exiting early would kill callgrind_annotate with SIGPIPE (pipefail).
        # Shortened: no object file, no cargo registry or rustc source prefix.
        callgrind_annotate "$tmp/callgrind.out.$v" 2>/dev/null \
            | awk -v top="$CG_TOP" '
                seen == 2 && NF > 0 && n < top { print; n++ }
                seen == 1 && /^-+$/ { seen = 2 }
                /file:function/ { seen = 1 }' \
            | sed -E 's# \[[^]]*\]$##; s#[^ ]*/registry/src/[^/]+/##; s#/rustc/[0-9a-f]+/##'
    done
fi
