#!/usr/bin/env bash
# The benchmark of smart-relayer: direct to redis-server, through the relayer in sync
# mode, through the relayer in smart mode, through twemproxy and through HAProxy in TCP mode, side
# by side in one run, with the results written as ratios to BENCHMARKS.md at the repository root.
#
# Installs what is missing (scripts/install-bench-deps.sh), builds the relayer and the delay link
# in release mode, starts a private redis-server, two relayers (sync and smart, maxConnections 1),
# nutcracker (one server connection) and haproxy (TCP mode, one thread, a server connection per
# client) on free loopback ports, then measures:
#   1. resident memory per idle client: RSS (VmRSS) of each server before and after
#      IDLE_CLIENTS connections are opened (idle_clients.py), on fresh processes (haproxy: as
#      many as its open-files limit allows, two descriptors a client);
#   2. redis-benchmark SET and GET, 100-byte and 10 KB values, random keys from a prefilled key
#      space, at -c 1 (requests/s, p50 and p99 latency), -c 50 -P 1 and -c 50 -P 16, every target
#      in turn, REPS times (the best figure of each is kept); and in RESP3 (-3) at -c 50, 100 B,
#      for the targets that speak it;
#   3. CPU seconds per million commands of each process (utime+stime from /proc/PID/stat, delta
#      over every redis-benchmark run against it, divided by the requests it was sent);
#   4. the smart-mode PHP loop over a delaying link (smart-bench.sh, run as it is);
#   5. optionally, instructions per relayed command under callgrind (callgrind.sh) and the
#      criterion micro-benchmarks of the parser and reply scanner.
# Figures are printed, never asserted. Everything started is stopped on exit (common.sh).
#
# Environment:
#   N=100000          requests per redis-benchmark run at -c 50
#   N1=20000          requests per redis-benchmark run at -c 1
#   REPS=3            repetitions of every redis-benchmark measurement (best kept)
#   IDLE_CLIENTS=10000  idle connections for the memory measurement
#   ITERATIONS=1000   iterations of the smart-mode PHP loop (smart-bench.sh)
#   SMART_REPS=3      runs of the PHP loop each way (best kept)
#   DELAY_US=500      delay of the link each way for the PHP loop, in microseconds
#   QUICK=1           smoke run: N=10000 N1=2000 REPS=1 IDLE_CLIENTS=1000 ITERATIONS=200
#                     SMART_REPS=1 (each can still be set)
#   CALLGRIND=1       also run callgrind.sh (instructions per relayed command; a few minutes)
#   CRITERION=1       also run the criterion benches (cargo bench, short measurement time)
#   OUT=BENCHMARKS.md the report (a relative path is from the repository root)
#   RELAYER_BIN=...   use this relayer binary instead of building target/release/smart-relayer
#   DELAY_LINK_BIN=...  use this delay-link binary instead of building it
#   KEEP=1            keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
here="$root/integration/bench"

# The command as given, knobs included, for the report.
command_line=""
for var in QUICK N N1 REPS IDLE_CLIENTS ITERATIONS SMART_REPS DELAY_US CALLGRIND CRITERION OUT; do
    [ -n "${!var:-}" ] && command_line+="$var=${!var} "
done
command_line+="integration/bench/bench.sh"

if [ "${QUICK:-0}" = 1 ]; then
    N="${N:-10000}" N1="${N1:-2000}" REPS="${REPS:-1}" IDLE_CLIENTS="${IDLE_CLIENTS:-1000}"
    ITERATIONS="${ITERATIONS:-200}" SMART_REPS="${SMART_REPS:-1}"
fi
N="${N:-100000}"
N1="${N1:-20000}"
REPS="${REPS:-3}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
ITERATIONS="${ITERATIONS:-1000}"
SMART_REPS="${SMART_REPS:-3}"
DELAY_US="${DELAY_US:-500}"
CALLGRIND="${CALLGRIND:-0}"
CRITERION="${CRITERION:-0}"
OUT="${OUT:-BENCHMARKS.md}"

bench=bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$here/common.sh"

log "installing what is missing"
"$root/scripts/install-bench-deps.sh"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${RELAYER_BIN:-}" ]; then
    relayer_bin="$RELAYER_BIN"
else
    log "building smart-relayer (release)"
    cargo build --release --bin smart-relayer
    relayer_bin="$target_dir/release/smart-relayer"
fi
if [ -n "${DELAY_LINK_BIN:-}" ]; then
    link_bin="$DELAY_LINK_BIN"
else
    log "building delay-link (release)"
    cargo build --release -p integration --bin delay-link
    link_bin="$target_dir/release/delay-link"
fi
[ -x "$relayer_bin" ] || die "no relayer binary at $relayer_bin"
[ -x "$link_bin" ] || die "no delay-link binary at $link_bin"

# Room for the idle clients plus the benchmark's own connections, in every server.
max_clients=$((IDLE_CLIENTS + 1000))
[ "$max_clients" -ge 10000 ] || max_clients=10000
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((max_clients + 100)) ]; then
    die "open files hard limit $(ulimit -Hn) is below $((max_clients + 100)): lower IDLE_CLIENTS"
fi

# --- the servers -------------------------------------------------------------------------------

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --maxclients "$max_clients" --daemonize yes --dir "$tmp" --logfile "$tmp/redis.log" \
    --pidfile "$tmp/redis.pid"
wait_ready redis-server "$redis_port" ping
redis_pid="$(cat "$tmp/redis.pid")"

start_relayer() {
    local mode=$1 port=$2 workers=${3:-1} label=${4:-$1}
    cat >"$tmp/relayer-$label.toml" <<TOML
workers = $workers

[[relayer]]
protocol = "redis"
mode = "$mode"
listen = "tcp://127.0.0.1:$port"
url = "tcp://127.0.0.1:$redis_port"
maxConnections = 1
maxClients = $max_clients
timeout = 30
TOML
    "$relayer_bin" -c "$tmp/relayer-$label.toml" >"$tmp/relayer-$label.log" 2>&1 &
    pids+=($!)
    wait_ready "smart-relayer ($label)" "$port" get bench:ready
}
sync_port="$(free_port)"
start_relayer sync "$sync_port"
sync_pid="${pids[-1]}"
smart_port="$(free_port)"
start_relayer smart "$smart_port"
smart_pid="${pids[-1]}"
# The sync relayer again with workers = 2, for the workers table (100 B, -c 50 only).
sync2_port="$(free_port)"
start_relayer sync "$sync2_port" 2 sync2
sync2_pid="${pids[-1]}"

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
# nutcracker does not raise its own open-files limit, and derives its client limit from it.
(
    ulimit -n $((max_clients + 100))
    exec nutcracker -c "$tmp/nutcracker.yml" -o "$tmp/nutcracker.log" -s "$(free_port)" -a 127.0.0.1
) &
pids+=($!)
twem_pid="${pids[-1]}"
wait_ready nutcracker "$twem_port" get bench:ready

# HAProxy as teams put it in front of Redis: TCP mode, a connection to the server per client,
# one thread like the relayer's one worker and twemproxy. It holds two descriptors a client, so
# its client limit is what the open-files hard limit allows.
hard_nofile="$(ulimit -Hn)"
[ "$hard_nofile" = unlimited ] && hard_nofile=$((2 * max_clients + 1000))
haproxy_maxconn=$(((hard_nofile - 200) / 2))
[ "$haproxy_maxconn" -le "$max_clients" ] || haproxy_maxconn="$max_clients"
haproxy_port="$(free_port)"
cat >"$tmp/haproxy.cfg" <<CFG
global
    maxconn $haproxy_maxconn
    nbthread 1
    pidfile $tmp/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend redis
    bind 127.0.0.1:$haproxy_port
    default_backend redis
backend redis
    server redis 127.0.0.1:$redis_port
CFG
haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
pids+=($!)
haproxy_pid="${pids[-1]}"
wait_ready haproxy "$haproxy_port" get bench:ready

targets=(direct sync smart twemproxy haproxy)
declare -A port_of=([direct]="$redis_port" [sync]="$sync_port" [smart]="$smart_port" [twemproxy]="$twem_port"
    [haproxy]="$haproxy_port" [sync2]="$sync2_port")
declare -A pid_of=([direct]="$redis_pid" [sync]="$sync_pid" [smart]="$smart_pid" [twemproxy]="$twem_pid"
    [haproxy]="$haproxy_pid" [sync2]="$sync2_pid")
declare -A name_of=([direct]="redis-server" [sync]="relayer (sync)" [smart]="relayer (smart)"
    [twemproxy]="twemproxy" [haproxy]="haproxy" [sync2]="relayer (sync, 2 workers)")

clk_tck="$(getconf CLK_TCK)"

# utime + stime of a process (all its threads), in clock ticks. The command name in field 2
# may hold spaces, so fields are counted after its closing parenthesis.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# A command through a target whose reply comes after everything sent before it: with one
# upstream connection, the smart relayer's backlog of early-acknowledged writes is delivered by
# then, so its cost is counted in the run that caused it and does not slow the next one.
barrier() { redis-cli -h 127.0.0.1 -p "${port_of[$1]}" get bench:barrier >/dev/null; }

# --- 1. memory per idle client -----------------------------------------------------------------

declare -A rss_before=() rss_after=() idle_n=()
for target in "${targets[@]}"; do
    pid="${pid_of[$target]}"
    idle_n[$target]="$IDLE_CLIENTS"
    if [ "$target" = haproxy ] && [ "$IDLE_CLIENTS" -gt $((haproxy_maxconn - 100)) ]; then
        idle_n[$target]=$((haproxy_maxconn - 100))
    fi
    rss_before[$target]="$(rss_kib "$pid")"
    : >"$tmp/idle.out" # exists before the background job's redirection creates it
    python3 "$here/idle_clients.py" 127.0.0.1 "${port_of[$target]}" "${idle_n[$target]}" \
        >"$tmp/idle.out" 2>"$tmp/idle.err" &
    idle_pid=$!
    pids+=("$idle_pid")
    for _ in $(seq 1 1200); do
        grep -q '^ready' "$tmp/idle.out" && break
        kill -0 "$idle_pid" 2>/dev/null || die "idle_clients.py against $target failed: $(cat "$tmp/idle.err")"
        sleep 0.1
    done
    grep -q '^ready' "$tmp/idle.out" || die "idle_clients.py against $target did not get ready"
    sleep 1 # let the server finish whatever the last accepts started
    rss_after[$target]="$(rss_kib "$pid")"
    kill "$idle_pid"
    wait "$idle_pid" 2>/dev/null || true
    log "memory: ${name_of[$target]}: VmRSS ${rss_before[$target]} KiB, with ${idle_n[$target]} idle" \
        "clients ${rss_after[$target]} KiB"
    sleep 1 # the closes reach the server before the next one is measured
done

# --- 2, 3. redis-benchmark, CPU per command ----------------------------------------------------

sizes=(100 10240)
shapes=(c1 c50 p16)
declare -A shape_args=([c1]="-c 1 -n $N1" [c50]="-c 50 -n $N" [p16]="-c 50 -n $N -P 16"
    [c50r3]="-3 -c 50 -n $N" [p16r3]="-3 -c 50 -n $N -P 16")
declare -A shape_n=([c1]="$N1" [c50]="$N" [p16]="$N" [c50r3]="$N" [p16r3]="$N")
declare -A shape_label=([c1]="-c 1" [c50]="-c 50 -P 1" [p16]="-c 50 -P 16" [c50r3]="-3 -c 50 -P 1"
    [p16r3]="-3 -c 50 -P 16")
# RESP3 (redis-benchmark -3: HELLO 3 on every connection), small values, the targets that speak
# it (twemproxy does not); kept out of `shapes`, whose sums and tables are RESP2's.
shapes_resp3=(c50r3 p16r3)
declare -A size_label=([100]="100 B" [10240]="10 KB")
# Random keys from a key space prefilled with values of the run's size, so every GET finds one;
# about 100 MB of values at 10 KB.
declare -A keyspace=([100]=100000 [10240]=10000)

# Best figures by "<target>|<cmd>|<size>|<shape>"; CPU ticks and requests by "<target>|<shape>".
declare -A best_rps=() best_p50=() best_p99=() cpu=() redis_cpu=() cmds=()

# Sets key:000000000000 ... as redis-benchmark's -r names them, each to a SIZE-byte value.
prefill() {
    local size=$1 keys=$2
    redis-cli -h 127.0.0.1 -p "$redis_port" flushall >/dev/null
    awk -v n="$keys" -v d="$size" 'BEGIN {
        v = ""; while (length(v) < d) v = v "xxxxxxxxxxxxxxxx"; v = substr(v, 1, d)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, d, v
        }
    }' | redis-cli -h 127.0.0.1 -p "$redis_port" --pipe >"$tmp/prefill.out" 2>&1 \
        || die "prefill failed: $(cat "$tmp/prefill.out")"
    [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" dbsize)" = "$keys" ] || die "prefill: wrong key count"
}

is_less() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

measure() {
    local target=$1 cmd=$2 size=$3 shape=$4
    local key="$target|$cmd|$size|$shape" pid="${pid_of[$target]}" t0 r0 t1 r1 csv
    local name rps p50 p99 _
    t0="$(cpu_ticks "$pid")"
    r0="$(cpu_ticks "$redis_pid")"
    # shellcheck disable=SC2086 # shape_args holds several arguments
    csv="$(redis-benchmark -h 127.0.0.1 -p "${port_of[$target]}" ${shape_args[$shape]} \
        -t "${cmd,,}" -d "$size" -r "${keyspace[$size]}" --csv 2>"$tmp/benchmark.err")" \
        || die "redis-benchmark against $target failed: $(cat "$tmp/benchmark.err")"
    barrier "$target"
    t1="$(cpu_ticks "$pid")"
    r1="$(cpu_ticks "$redis_pid")"
    # test, rps, avg, min, p50, p95, p99, max (ms)
    IFS=, read -r name rps _ _ p50 _ p99 _ < <(grep -v '^"test"' <<<"$csv" | tr -d '"\r' | tail -n 1) || true
    { [ "${name:-}" = "$cmd" ] && [ -n "${p99:-}" ]; } || die "unexpected redis-benchmark output against $target: $csv"
    cpu["$target|$shape"]=$((${cpu["$target|$shape"]:-0} + t1 - t0))
    redis_cpu["$target|$shape"]=$((${redis_cpu["$target|$shape"]:-0} + r1 - r0))
    cmds["$target|$shape"]=$((${cmds["$target|$shape"]:-0} + ${shape_n[$shape]}))
    if [ -z "${best_rps[$key]:-}" ] || is_less "${best_rps[$key]}" "$rps"; then best_rps[$key]="$rps"; fi
    if [ -z "${best_p50[$key]:-}" ] || is_less "$p50" "${best_p50[$key]}"; then best_p50[$key]="$p50"; fi
    if [ -z "${best_p99[$key]:-}" ] || is_less "$p99" "${best_p99[$key]}"; then best_p99[$key]="$p99"; fi
    printf '  %-10s %-4s %-6s %-12s %10s req/s  p50 %6s ms  p99 %6s ms  (%s ticks)\n' "$target" "$cmd" \
        "${size_label[$size]}" "${shape_label[$shape]}" "$rps" "$p50" "$p99" "$((t1 - t0))" >&2
}

for size in "${sizes[@]}"; do
    log "prefilling ${keyspace[$size]} keys of ${size_label[$size]}"
    prefill "$size" "${keyspace[$size]}"
    for rep in $(seq 1 "$REPS"); do
        log "redis-benchmark, ${size_label[$size]} values, repetition $rep/$REPS"
        for shape in "${shapes[@]}"; do
            for cmd in SET GET; do
                for target in "${targets[@]}"; do
                    measure "$target" "$cmd" "$size" "$shape"
                done
                if [ "$size" = 100 ] && [ "$shape" != c1 ]; then
                    measure sync2 "$cmd" "$size" "$shape"
                fi
            done
        done
        if [ "$size" = 100 ]; then
            for shape in "${shapes_resp3[@]}"; do
                for cmd in SET GET; do
                    for target in direct sync smart; do
                        measure "$target" "$cmd" "$size" "$shape"
                    done
                done
            done
        fi
    done
done

# --- 4. the smart-mode PHP loop ----------------------------------------------------------------

log "smart-mode PHP loop (smart-bench.sh)"
smart_out="$(RELAYER_BIN="$relayer_bin" DELAY_LINK_BIN="$link_bin" ITERATIONS="$ITERATIONS" \
    REPS="$SMART_REPS" DELAY_US="$DELAY_US" "$here/smart-bench.sh")" || die "smart-bench.sh failed"
php_direct="$(sed -n 's/^direct over the link  *\([0-9.]*\) s$/\1/p' <<<"$smart_out")"
php_relayer="$(sed -n 's/^through the relayer over the link  *\([0-9.]*\) s$/\1/p' <<<"$smart_out")"
php_link="$(sed -n 's/^link: //p' <<<"$smart_out")"
{ [ -n "$php_direct" ] && [ -n "$php_relayer" ]; } || die "unexpected smart-bench.sh output: $smart_out"

# --- 5. optional: callgrind, criterion ---------------------------------------------------------

callgrind_out=""
if [ "$CALLGRIND" = 1 ]; then
    log "instructions per command (callgrind.sh)"
    callgrind_out="$(RELAYER_BIN="$relayer_bin" "$here/callgrind.sh")" || die "callgrind.sh failed"
fi

criterion_out=""
if [ "$CRITERION" = 1 ]; then
    log "criterion micro-benchmarks"
    cargo bench -p smart-relayer-actors --bench resp -- --warm-up-time 1 --measurement-time 2 \
        >"$tmp/criterion.out" 2>"$tmp/criterion.err" || die "cargo bench failed: $(tail "$tmp/criterion.err")"
    # "name  time: [low mid high]" (the name on a line of its own when it is long), then
    # "thrpt: [low mid high]"; a "change:" block, against an earlier run, repeats both.
    criterion_out="$(awk '
        $1 == "change:" { change = 1; next }
        /time:/ || /thrpt:/ {
            if ($1 != "time:" && $1 != "thrpt:") name = $1
            what = /time:/ ? "time" : "thrpt"
            sub(/.*: *\[/, ""); sub(/\].*/, "")
            if (change) { if (what == "thrpt") change = 0; next }
            if (what == "time") time = $3 " " $4
            else printf "| `%s` | %s | %s %s |\n", name, time, $3, $4
            next
        }
        NF == 1 { name = $1 }
    ' "$tmp/criterion.out")"
fi

# --- the report --------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
us() { awk -v ms="$1" 'BEGIN { printf "%.0f", ms * 1000 }'; }
# Mean time per request in µs at -c 1, from requests/s: finer than redis-benchmark's latency
# histogram, whose buckets are 8 µs wide below about 2 ms.
mean_us() { awk -v rps="$1" 'BEGIN { printf "%.0f", 1e6 / rps }'; }
# CPU seconds per million requests.
per_m() { awk -v t="$1" -v hz="$clk_tck" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", t / hz / n * 1e6; else print "-" }'; }
sum_over_shapes() {
    local -n arr=$1
    local total=0 s
    for s in "${shapes[@]}"; do total=$((total + ${arr["$2|$s"]:-0})); done
    echo "$total"
}
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "**not met**"; fi; }

# Worst sync/direct ratio over SET/GET at a shape and the given sizes, and which test it is.
worst_ratio() {
    local shape=$1 worst="" which="" cmd size r
    shift
    for size in "$@"; do
        for cmd in SET GET; do
            r="$(awk -v a="${best_rps["sync|$cmd|$size|$shape"]}" -v b="${best_rps["direct|$cmd|$size|$shape"]}" \
                'BEGIN { printf "%.2f", a / b }')"
            if [ -z "$worst" ] || is_less "$r" "$worst"; then worst="$r" which="$cmd ${size_label[$size]}"; fi
        done
    done
    echo "$worst|$which"
}
# Largest added p50 or p99 (µs, by the array named) of a target over direct at -c 1, and which
# test it is.
worst_added() {
    local target=$1 worst="" which="" cmd size a
    local -n lat=$2
    for size in "${sizes[@]}"; do
        for cmd in SET GET; do
            a="$(awk -v r="${lat["$target|$cmd|$size|c1"]}" -v d="${lat["direct|$cmd|$size|c1"]}" \
                'BEGIN { printf "%.0f", (r - d) * 1000 }')"
            if [ -z "$worst" ] || is_less "$worst" "$a"; then worst="$a" which="$cmd ${size_label[$size]}"; fi
        done
    done
    echo "$worst|$which"
}

IFS='|' read -r r_p1 r_p1_which < <(worst_ratio c50 100)
IFS='|' read -r r_p16 r_p16_which < <(worst_ratio p16 100)
IFS='|' read -r r_big1 r_big1_which < <(worst_ratio c50 10240)
IFS='|' read -r r_big16 r_big16_which < <(worst_ratio p16 10240)
IFS='|' read -r added added_which < <(worst_added sync best_p50)
IFS='|' read -r added99 added99_which < <(worst_added sync best_p99)
# CPU per million commands of a target at a shape.
cpu_at() { per_m "${cpu["$1|$2"]}" "${cmds["$1|$2"]}"; }
# Rows where the sync relayer's CPU per command is not below both peers'.
cpu_losses=""
for shape in "${shapes[@]}"; do
    for peer in twemproxy haproxy; do
        is_less "$(cpu_at sync "$shape")" "$(cpu_at "$peer" "$shape")" || cpu_losses+=" ${shape_label[$shape]} vs $peer;"
    done
done
cpu_p1="$(ratio "$(cpu_at sync c50)" "$(cpu_at direct c50)")"
cpu_p16="$(ratio "$(cpu_at sync p16)" "$(cpu_at direct p16)")"
per_client() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }'; }
mem_of() { per_client "${rss_before[$1]}" "${rss_after[$1]}" "${idle_n[$1]}"; }
mem_sync="$(mem_of sync)"
speedup="$(awk -v d="$php_direct" -v r="$php_relayer" 'BEGIN { printf "%.1f", d / r }')"

cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
cores="$(grep -c '^processor' /proc/cpuinfo)"
commit="$(measured_commit)"

report="$tmp/report.md"
{
    echo "# Benchmarks"
    echo
    echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M UTC'); re-run it to refresh."
    echo
    echo "- machine: ${cpu_model:-unknown CPU}, $cores cores, Linux $(uname -r)"
    echo "- smart-relayer $("$relayer_bin" --version 2>/dev/null | awk '{print $NF}') ($commit, release)," \
        "maxConnections 1; redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p');" \
        "$(nutcracker --version 2>&1 | sed -n 's/^This is //p') (twemproxy), server_connections 1;" \
        "HAProxy $(haproxy -v 2>/dev/null | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p'), TCP mode, nbthread 1, a server connection per client"
    echo "- redis-benchmark: \`-c 1 -n $N1\`, \`-c 50 -n $N\`, \`-c 50 -n $N -P 16\`, \`-t set\` / \`-t get\`," \
        "\`-d 100\` (\`-r 100000\`) and \`-d 10240\` (\`-r 10000\`), keys prefilled; best of $REPS;" \
        "all processes on the same $cores cores, loopback TCP"
    echo "- ratios are the target's requests/s over redis-server's direct; on a shared machine the" \
        "figures are noisy, compare ratios from the same run only"
    echo
    echo "## Targets"
    echo
    echo "| target | goal | measured | |"
    echo "|---|---|---|---|"
    echo "| 100 B \`-c 50 -P 1\`, sync relayer / direct | ≥ 1.0x | ${r_p1}x (worst: $r_p1_which) | $(met "$r_p1 >= 1.0") |"
    echo "| 100 B \`-c 50 -P 16\`, sync relayer / direct | ≥ 0.9x | ${r_p16}x (worst: $r_p16_which) | $(met "$r_p16 >= 0.9") |"
    echo "| 10 KB \`-c 50 -P 1\`, sync relayer / direct | ≥ 0.9x | ${r_big1}x (worst: $r_big1_which) | $(met "$r_big1 >= 0.9") |"
    echo "| 10 KB \`-c 50 -P 16\`, sync relayer / direct | ≥ 0.75x | ${r_big16}x (worst: $r_big16_which) | $(met "$r_big16 >= 0.75") |"
    echo "| added p50 latency at \`-c 1\`, sync relayer | ≤ 20 µs | $added µs (worst: $added_which) | $(met "$added <= 20") |"
    echo "| added p99 latency at \`-c 1\`, sync relayer | ≤ 40 µs | $added99 µs (worst: $added99_which) | $(met "$added99 <= 40") |"
    echo "| relayer CPU per command at \`-c 50 -P 1\` / redis-server's direct | ≤ 1.0x | $cpu_p1 | $(met "${cpu_p1%x} <= 1.0") |"
    echo "| relayer CPU per command at \`-c 50 -P 16\` / redis-server's direct | ≤ 0.8x | $cpu_p16 | $(met "${cpu_p16%x} <= 0.8") |"
    echo "| relayer CPU per command below twemproxy's and haproxy's, every row | all rows | ${cpu_losses:- all rows} | $(met "${#cpu_losses} == 0") |"
    echo "| memory per idle client, sync relayer | ≤ 1 KiB | $(awk -v b="$mem_sync" 'BEGIN { printf "%.1f", b / 1024 }') KiB | $(met "$mem_sync <= 1024") |"
    echo "| smart PHP loop over the link, relayer vs direct | ≥ 20x faster | ${speedup}x | $(met "$speedup >= 20") |"
    echo
    echo "## Throughput (requests/s)"
    echo
    echo "| test | direct | sync relayer | | smart relayer | | twemproxy | | haproxy | | sync / twemproxy | sync / haproxy |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for shape in "${shapes[@]}"; do
        for size in "${sizes[@]}"; do
            for cmd in SET GET; do
                k="$cmd|$size|$shape"
                d="${best_rps["direct|$k"]}" s="${best_rps["sync|$k"]}" m="${best_rps["smart|$k"]}" t="${best_rps["twemproxy|$k"]}"
                h="${best_rps["haproxy|$k"]}"
                echo "| $cmd ${size_label[$size]} \`${shape_label[$shape]}\` | $(int "$d") | $(int "$s") | $(ratio "$s" "$d") | $(int "$m") | $(ratio "$m" "$d") | $(int "$t") | $(ratio "$t" "$d") | $(int "$h") | $(ratio "$h" "$d") | $(ratio "$s" "$t") | $(ratio "$s" "$h") |"
            done
        done
    done
    echo
    echo "## RESP3 (requests/s)"
    echo
    echo "\`redis-benchmark -3\`: every connection says HELLO 3; through the relayer the clients share its" \
        "RESP3 connections. 100-byte values; twemproxy does not speak RESP3 (haproxy, which passes bytes, is not measured here)."
    echo
    echo "| test | direct | sync relayer | | smart relayer | |"
    echo "|---|---:|---:|---:|---:|---:|"
    for shape in "${shapes_resp3[@]}"; do
        for cmd in SET GET; do
            k="$cmd|100|$shape"
            d="${best_rps["direct|$k"]}" s="${best_rps["sync|$k"]}" m="${best_rps["smart|$k"]}"
            echo "| $cmd 100 B \`${shape_label[$shape]}\` | $(int "$d") | $(int "$s") | $(ratio "$s" "$d") | $(int "$m") | $(ratio "$m" "$d") |"
        done
    done
    echo
    echo "## Latency at \`-c 1\` (µs)"
    echo
    echo "p50 / p99 from redis-benchmark (its histogram has 8 µs buckets at this scale), and the mean" \
        "from requests/s (1 / rate: one client, one request at a time). Added: minus direct's."
    echo
    echo "| test | direct p50 / p99 / mean | sync relayer | added p50 / p99 / mean | smart relayer | added p50 / p99 / mean | twemproxy | added p50 / p99 / mean | haproxy | added p50 / p99 / mean |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for size in "${sizes[@]}"; do
        for cmd in SET GET; do
            k="$cmd|$size|c1"
            row="| $cmd ${size_label[$size]} | $(us "${best_p50["direct|$k"]}") / $(us "${best_p99["direct|$k"]}") / $(mean_us "${best_rps["direct|$k"]}") |"
            for target in sync smart twemproxy haproxy; do
                row+=" $(us "${best_p50["$target|$k"]}") / $(us "${best_p99["$target|$k"]}") / $(mean_us "${best_rps["$target|$k"]}") |"
                row+=" $(awk -v r="${best_p50["$target|$k"]}" -v d="${best_p50["direct|$k"]}" 'BEGIN { printf "%+.0f", (r - d) * 1000 }') /"
                row+=" $(awk -v r="${best_p99["$target|$k"]}" -v d="${best_p99["direct|$k"]}" 'BEGIN { printf "%+.0f", (r - d) * 1000 }') /"
                row+=" $(awk -v r="${best_rps["$target|$k"]}" -v d="${best_rps["direct|$k"]}" 'BEGIN { printf "%+.0f", 1e6 / r - 1e6 / d }') |"
            done
            echo "$row"
        done
    done
    echo
    echo "## CPU seconds per million commands"
    echo
    echo "utime+stime from /proc/PID/stat over every redis-benchmark run against the target, divided by" \
        "the requests sent (SET and GET, both sizes, all repetitions). Proxy columns: the proxy" \
        "process, and in brackets redis-server behind it."
    echo
    echo "| runs | redis-server, direct | sync relayer | smart relayer | twemproxy | haproxy | sync / direct | sync / twemproxy | sync / haproxy |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for shape in "${shapes[@]}" all; do
        if [ "$shape" = all ]; then label="all"; else label="\`${shape_label[$shape]}\`"; fi
        row="| $label |"
        declare -A figure=()
        for target in "${targets[@]}"; do
            if [ "$shape" = all ]; then
                t="$(sum_over_shapes cpu "$target")" r="$(sum_over_shapes redis_cpu "$target")" n="$(sum_over_shapes cmds "$target")"
            else
                t="${cpu["$target|$shape"]}" r="${redis_cpu["$target|$shape"]}" n="${cmds["$target|$shape"]}"
            fi
            figure[$target]="$(per_m "$t" "$n")"
            if [ "$target" = direct ]; then
                row+=" ${figure[$target]} |"
            else
                row+=" ${figure[$target]} ($(per_m "$r" "$n")) |"
            fi
        done
        row+=" $(ratio "${figure[sync]}" "${figure[direct]}") | $(ratio "${figure[sync]}" "${figure[twemproxy]}") | $(ratio "${figure[sync]}" "${figure[haproxy]}") |"
        echo "$row"
    done
    echo
    echo "## Memory with $IDLE_CLIENTS idle clients"
    echo
    echo "VmRSS of the process before and after $IDLE_CLIENTS clients connect and send one GET each" \
        "(integration/bench/idle_clients.py), on fresh processes; haproxy holds two descriptors a" \
        "client, so it is measured with as many as the open-files limit allows (the clients column)."
    echo
    echo "| process | clients | before (KiB) | with the clients (KiB) | per client (bytes) | vs twemproxy |"
    echo "|---|---:|---:|---:|---:|---:|"
    twem_per="$(mem_of twemproxy)"
    for target in "${targets[@]}"; do
        p="$(mem_of "$target")"
        echo "| ${name_of[$target]} | ${idle_n[$target]} | ${rss_before[$target]} | ${rss_after[$target]} | $p | $(ratio "$p" "$twem_per") |"
    done
    echo
    echo "## Workers"
    echo
    echo "The sync relayer with \`workers = 1\` and \`workers = 2\` (maxConnections 1 per worker), 100 B values," \
        "best of $REPS, same run; CPU per million commands over these runs."
    echo
    echo "| test | direct | 1 worker | | 2 workers | | 2 / 1 |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for shape in c50 p16; do
        for cmd in SET GET; do
            k="$cmd|100|$shape"
            d="${best_rps["direct|$k"]}" one="${best_rps["sync|$k"]}" two="${best_rps["sync2|$k"]}"
            echo "| $cmd \`${shape_label[$shape]}\` | $d | $one | $(ratio "$one" "$d") | $two | $(ratio "$two" "$d") | $(ratio "$two" "$one") |"
        done
    done
    echo
    echo "CPU seconds per million commands, 2 workers: $(per_m "$(( ${cpu["sync2|c50"]:-0} + ${cpu["sync2|p16"]:-0} ))" "$(( ${cmds["sync2|c50"]:-0} + ${cmds["sync2|p16"]:-0} ))")."
    echo
    echo "## Smart mode: the PHP loop over a delaying link"
    echo
    echo "\`integration/bench/smart-bench.sh\`: examples/php/smart_loop.php, $ITERATIONS iterations" \
        "(SETEX 1 KB, HSET, EXPIRE; one GET), best of $SMART_REPS; link: $php_link."
    echo
    echo "| direct over the link | through the smart relayer | speed-up |"
    echo "|---:|---:|---:|"
    echo "| $php_direct s | $php_relayer s | ${speedup}x |"
    if [ -n "$callgrind_out" ]; then
        echo
        echo "## Instructions per relayed command (callgrind)"
        echo
        echo "\`integration/bench/callgrind.sh\`: the sync relayer under valgrind --tool=callgrind; a start" \
            "and stop with no commands is subtracted."
        echo
        echo '```'
        echo "$callgrind_out"
        echo '```'
    fi
    if [ -n "$criterion_out" ]; then
        echo
        echo "## Micro-benchmarks (criterion)"
        echo
        echo "\`cargo bench -p smart-relayer-actors --bench resp -- --warm-up-time 1 --measurement-time 2\`," \
            "median time per iteration."
        echo
        echo "| benchmark | time | throughput |"
        echo "|---|---:|---:|"
        echo "$criterion_out"
    fi
} >"$report"

case "$OUT" in /*) out_path="$OUT" ;; *) out_path="$root/$OUT" ;; esac
# The sections other scripts write (cluster-bench.sh, firehose-bench.sh) are kept.
for title in "${owned_sections[@]}"; do
    if [ -f "$out_path" ] && grep -qxF "## $title" "$out_path"; then
        { echo; awk -v title="## $title" '/^## / { on = ($0 == title) } on' "$out_path"; } >>"$report"
    fi
done
cp "$report" "$out_path"
echo
cat "$report"
log "written to $out_path"
