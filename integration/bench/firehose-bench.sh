#!/usr/bin/env bash
# Records per second into a local Firehose endpoint, and the relayer's CPU per million records.
#
# Builds the relayer and the tests' fake Firehose endpoint (release), starts both on free
# loopback ports (relayer: one firehose entry pointing at the fake with `endpoint`), then, for
# each MAXRECORDS value, sends N SETs with VALUE-byte values from CLIENTS redis-benchmark
# connections (random keys) and waits until the relayer reports every line delivered
# (relayer_firehose_delivered_total on its metrics endpoint). Prints, per run: the clients'
# requests/s (acknowledgements), records/s end to end (first SET to last line delivered), and the
# relayer's CPU seconds (utime+stime from /proc) per million records. The fake endpoint's own line
# count is checked against N at the end.
#
# Environment:
#   N=500000          SETs per run
#   CLIENTS=50        redis-benchmark connections
#   VALUE=100         bytes per value
#   MAXRECORDS="0 500"  maxRecords values to measure (lines packed per Firehose record)
#   RELAYER_BIN=...   use this relayer binary instead of building target/release/smart-relayer
#   FAKE_BIN=...      use this fake-firehose binary instead of building it
#   OUT=BENCHMARKS.md the report whose "Firehose" section is written (a relative path is from
#                     the repository root)
#   KEEP=1            keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

command_line=""
for var in N CLIENTS VALUE MAXRECORDS OUT; do
    [ -n "${!var:-}" ] && command_line+="$var=\"${!var}\" "
done
command_line+="integration/bench/firehose-bench.sh"

N="${N:-500000}"
CLIENTS="${CLIENTS:-50}"
VALUE="${VALUE:-100}"
MAXRECORDS="${MAXRECORDS:-0 500}"
OUT="${OUT:-BENCHMARKS.md}"

bench=firehose-bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark not found (run scripts/install-deps.sh)"

target="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${RELAYER_BIN:-}" ]; then
    relayer_bin="$RELAYER_BIN"
else
    log "building smart-relayer (release)"
    cargo build --release --bin smart-relayer
    relayer_bin="$target/release/smart-relayer"
fi
if [ -n "${FAKE_BIN:-}" ]; then
    fake_bin="$FAKE_BIN"
else
    log "building fake-firehose (release)"
    cargo build --release -p integration --bin fake-firehose
    fake_bin="$target/release/fake-firehose"
fi

hz="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The value of a counter on the relayer's metrics endpoint (0 before it exists).
metric() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
port, name = sys.argv[1], sys.argv[2]
total = 0.0
for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith(name + "{") or line.startswith(name + " "):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

results=()
rows=()
for max_records in $MAXRECORDS; do
    "$fake_bin" >"$tmp/fake-$max_records.out" 2>"$tmp/fake.log" &
    fake_pid=$!
    pids+=("$fake_pid")
    fake_port=""
    for _ in $(seq 1 100); do
        fake_port="$(sed -n 's/^listening on //p' "$tmp/fake-$max_records.out")"
        [ -n "$fake_port" ] && break
        sleep 0.05
    done
    [ -n "$fake_port" ] || die "fake-firehose did not report its port"

    port="$(free_port)"
    metrics_port="$(free_port)"
    cat >"$tmp/relayer-$max_records.toml" <<TOML
metricsListen = "127.0.0.1:$metrics_port"

[[relayer]]
protocol = "firehose"
listen = "tcp://127.0.0.1:$port"
streamName = "bench"
region = "us-east-1"
endpoint = "http://127.0.0.1:$fake_port"
maxRecords = $max_records
buffer = 100000
critical = true
TOML
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true \
        "$relayer_bin" -c "$tmp/relayer-$max_records.toml" >"$tmp/relayer-$max_records.log" 2>&1 &
    relayer_pid=$!
    pids+=("$relayer_pid")
    wait_ready smart-relayer "$port" ping

    log "maxRecords=$max_records: $N SETs of $VALUE bytes from $CLIENTS clients"
    t0="$(date +%s.%N)"
    c0="$(cpu_ticks "$relayer_pid")"
    rps="$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$N" -d "$VALUE" -r 1000000 -t set --csv 2>/dev/null \
        | awk -F'","' '/SET/ { gsub(/"/, "", $2); print $2 }')"
    delivered=0
    for _ in $(seq 1 1200); do
        delivered="$(metric "$metrics_port" relayer_firehose_delivered_total)"
        [ "$delivered" -ge "$N" ] && break
        sleep 0.1
    done
    t1="$(date +%s.%N)"
    c1="$(cpu_ticks "$relayer_pid")"
    [ "$delivered" -ge "$N" ] || die "only $delivered of $N lines delivered (log: $tmp/relayer-$max_records.log)"
    sleep 1
    stored="$(sed -n 's/^lines //p' "$tmp/fake-$max_records.out" | tail -1)"
    [ "${stored:-0}" -ge "$N" ] || die "the endpoint holds ${stored:-0} lines, expected $N"
    rows+=("$(awk -v n="$N" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v rps="$rps" -v mr="$max_records" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2f |", mr, rps, n / (t1 - t0), (c1 - c0) / hz / n * 1e6 }')")
    line="$(awk -v n="$N" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v rps="$rps" -v mr="$max_records" \
        'BEGIN { cpu = (c1 - c0) / hz; printf "maxRecords=%-4s acknowledged %9.0f SET/s   delivered %9.0f records/s   CPU %6.2f s per million records", mr, rps, n / (t1 - t0), cpu / n * 1e6 }')"
    log "$line"
    results+=("$line")
    kill "$relayer_pid" "$fake_pid" 2>/dev/null || true
    wait "$relayer_pid" "$fake_pid" 2>/dev/null || true
done

printf '\n%s\n' "firehose-bench: $N SETs, $VALUE-byte values, $CLIENTS clients ($(nproc) cores)"
printf '%s\n' "${results[@]}"

commit="$(measured_commit)"
section="$tmp/section.md"
{
    echo "## Firehose"
    echo
    echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- $N SETs with $VALUE-byte values (random keys) from $CLIENTS redis-benchmark clients into a" \
        "firehose relayer (smart-relayer $commit; \`buffer = 100000\`, \`critical = true\`), relaying to" \
        "the tests' fake Firehose endpoint (integration/src/bin/fake-firehose.rs) over loopback HTTP," \
        "all on the same $(nproc) cores"
    echo "- acknowledged: redis-benchmark's requests/s; delivered: lines per second from the first SET" \
        "until the relayer reports every line delivered; CPU: the relayer's utime+stime over that time"
    echo
    echo "| maxRecords | acknowledged (SET/s) | delivered (lines/s) | relayer CPU s per million lines |"
    echo "|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} >"$section"
case "$OUT" in /*) out_path="$OUT" ;; *) out_path="$root/$OUT" ;; esac
write_section "$out_path" "Firehose" "$section"
log "written to $out_path"
