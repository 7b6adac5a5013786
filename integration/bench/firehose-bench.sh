#!/usr/bin/env bash
# Records per second into local Firehose, Kinesis and SQS endpoints, and the relayer's CPU per
# million records.
#
# Builds the relayer and the tests' fake AWS endpoints (release, integration/src/bin/fake-aws.rs),
# then, for each run of SERVICES, starts a fake endpoint and a relayer with one stream entry
# pointing at it (Firehose and Kinesis: `endpoint`; SQS: a queue URL on the fake), on free
# loopback ports, sends N SETs with VALUE-byte values from CLIENTS redis-benchmark connections
# (random keys, each client pipelining as PIPELINES says) and waits until the relayer reports
# every line delivered (relayer_<protocol>_delivered_total on its metrics endpoint). Prints, per
# run: the clients' requests/s (acknowledgements), records/s end to end (first SET to last line
# delivered), and the relayer's CPU seconds (utime+stime from /proc) per million records; the
# calls the endpoint received, and the lines the relayer resent (relayer_<protocol>_retries_total).
# The endpoint's own count of lines stored is checked against N at the end of each run.
#
# Environment:
#   N=500000          SETs per run
#   CLIENTS=50        redis-benchmark connections
#   PIPELINES="1 16"  redis-benchmark -P values, every run with each: at -P 1 the relayer's CPU per
#                     line is mostly the socket work of one request per read and reply per write
#   VALUE=100         bytes per value
#   SERVICES="firehose kinesis sqs sqs-fifo"  the runs, in this order: firehose (one per MAXRECORDS
#                     value), kinesis (partitionKey "hash", 500 records a call), sqs (a standard
#                     queue) and sqs-fifo (a FIFO queue, one call in flight); the entries' other
#                     keys are their defaults
#   MAXRECORDS="0 500"  Firehose's maxRecords values (lines packed per record)
#   RELAYER_BIN=...   use this relayer binary instead of building target/release/smart-relayer
#   FAKE_BIN=...      use this fake-aws binary instead of building it
#   OUT=BENCHMARKS.md the report whose "Streams" section is written (a relative path is from the
#                     repository root)
#   KEEP=1            keep the temporary directory (configs and logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

command_line=""
for var in N CLIENTS PIPELINES VALUE SERVICES MAXRECORDS OUT; do
    [ -n "${!var:-}" ] && command_line+="$var=\"${!var}\" "
done
command_line+="integration/bench/firehose-bench.sh"

N="${N:-500000}"
CLIENTS="${CLIENTS:-50}"
VALUE="${VALUE:-100}"
SERVICES="${SERVICES:-firehose kinesis sqs sqs-fifo}"
PIPELINES="${PIPELINES:-1 16}"
MAXRECORDS="${MAXRECORDS:-0 500}"
OUT="${OUT:-BENCHMARKS.md}"

bench=firehose-bench
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark not found (run scripts/install-deps.sh)"

# The runs, by name: firehose-<maxRecords>, kinesis, sqs, sqs-fifo.
runs=()
for service in $SERVICES; do
    case "$service" in
        firehose)
            for max_records in $MAXRECORDS; do
                [[ "$max_records" =~ ^[0-9]+$ ]] || die "MAXRECORDS: '$max_records' is not a number"
                runs+=("firehose-$max_records")
            done
            ;;
        kinesis | sqs | sqs-fifo) runs+=("$service") ;;
        *) die "SERVICES: unknown service '$service' (firehose, kinesis, sqs, sqs-fifo)" ;;
    esac
done
[ "${#runs[@]}" -gt 0 ] || die "SERVICES names no run"

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
    log "building fake-aws (release)"
    cargo build --release -p integration --bin fake-aws
    fake_bin="$target/release/fake-aws"
fi

hz="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The sum of a counter's series on the relayer's metrics endpoint (0 before it exists): an
# HTTP/1.0 GET through bash's /dev/tcp read by awk, lighter on the measured cores than starting
# a python3 or curl ten times a second.
metric() {
    local port=$1 name=$2
    {
        printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$port" >&3
        awk -v name="$name" '
            index($0, name "{") == 1 || index($0, name " ") == 1 { total += $NF }
            END { printf "%.0f\n", total }
        ' <&3
    } 3<>"/dev/tcp/127.0.0.1/$port"
}

# The last "lines N calls M" the fake printed to FILE, as "N M" ("0 0" before any).
fake_counts() {
    sed -n 's/^lines \([0-9]*\) calls \([0-9]*\)$/\1 \2/p' "$1" | tail -1 | grep . || echo "0 0"
}

results=()
rows=()
for pipeline in $PIPELINES; do
    for run in "${runs[@]}"; do
        case "$run" in
            firehose-*) protocol=firehose service=firehose ;;
            kinesis) protocol=kinesis service=kinesis ;;
            sqs | sqs-fifo) protocol=sqs service=sqs ;;
        esac
        "$fake_bin" "$service" >"$tmp/fake-$run.out" 2>"$tmp/fake-$run.log" &
        fake_pid=$!
        pids+=("$fake_pid")
        fake_port=""
        for _ in $(seq 1 100); do
            fake_port="$(sed -n 's/^listening on //p' "$tmp/fake-$run.out")"
            [ -n "$fake_port" ] && break
            sleep 0.05
        done
        [ -n "$fake_port" ] || die "fake-aws $service did not report its port (log: $tmp/fake-$run.log)"

        # What the entry is, for the report, and its service's own keys.
        case "$run" in
            firehose-*)
                max_records="${run#firehose-}"
                label="Firehose, \`maxRecords = $max_records\`"
                keys="streamName = \"bench\"
endpoint = \"http://127.0.0.1:$fake_port\"
maxRecords = $max_records"
                ;;
            kinesis)
                label="Kinesis, \`partitionKey = \"hash\"\`"
                keys="streamName = \"bench\"
endpoint = \"http://127.0.0.1:$fake_port\""
                ;;
            sqs)
                label="SQS, standard queue"
                keys="url = \"http://127.0.0.1:$fake_port/123456789012/bench\""
                ;;
            sqs-fifo)
                label="SQS, FIFO queue"
                keys="url = \"http://127.0.0.1:$fake_port/123456789012/bench.fifo\"
groupID = \"bench\""
                ;;
        esac

        port="$(free_port)"
        metrics_port="$(free_port)"
        cat >"$tmp/relayer-$run.toml" <<TOML
metricsListen = "127.0.0.1:$metrics_port"

[[relayer]]
protocol = "$protocol"
listen = "tcp://127.0.0.1:$port"
region = "us-east-1"
$keys
buffer = 100000
critical = true
TOML
        AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true \
            "$relayer_bin" -c "$tmp/relayer-$run.toml" >"$tmp/relayer-$run.log" 2>&1 &
        relayer_pid=$!
        pids+=("$relayer_pid")
        wait_ready smart-relayer "$port" ping

        log "$run: $N SETs of $VALUE bytes from $CLIENTS clients, -P $pipeline"
        t0="$(date +%s.%N)"
        c0="$(cpu_ticks "$relayer_pid")"
        rps="$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -P "$pipeline" -n "$N" -d "$VALUE" -r 1000000 -t set --csv 2>/dev/null \
            | awk -F'","' '/SET/ { gsub(/"/, "", $2); print $2 }')"
        [ -n "$rps" ] || die "$run: redis-benchmark reported nothing (log: $tmp/relayer-$run.log)"
        # Until every line is delivered, or nothing more is for 60 s.
        delivered=0 last=-1 still=0
        while [ "$delivered" -lt "$N" ] && [ "$still" -lt 600 ]; do
            sleep 0.1
            delivered="$(metric "$metrics_port" "relayer_${protocol}_delivered_total")" ||
                die "$run: no answer from the relayer's metrics endpoint (log: $tmp/relayer-$run.log)"
            if [ "$delivered" = "$last" ]; then still=$((still + 1)); else still=0 last="$delivered"; fi
        done
        t1="$(date +%s.%N)"
        c1="$(cpu_ticks "$relayer_pid")"
        [ "$delivered" -ge "$N" ] || die "$run: only $delivered of $N lines delivered (log: $tmp/relayer-$run.log)"
        resent="$(metric "$metrics_port" "relayer_${protocol}_retries_total")" ||
            die "$run: no answer from the relayer's metrics endpoint (log: $tmp/relayer-$run.log)"
        # The fake prints its counts every tenth of a second.
        stored=0 calls=0
        for _ in $(seq 1 50); do
            read -r stored calls < <(fake_counts "$tmp/fake-$run.out")
            [ "$stored" -ge "$N" ] && break
            sleep 0.1
        done
        [ "$stored" -ge "$N" ] || die "$run: the endpoint holds $stored lines, expected $N"
        [ "$stored" -eq "$N" ] || log "$run: the endpoint holds $stored lines for $N sent: $((stored - N)) duplicates"

        stats=(-v n="$N" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v rps="$rps" -v calls="$calls")
        rows+=("$(awk "${stats[@]}" -v label="$label" -v p="$pipeline" -v stored="$stored" -v resent="$resent" 'BEGIN {
            printf "| %s | %d | %d | %.1f | %.0f | %.0f | %.2f | %d | %d |", label, p, calls, n / calls, rps, n / (t1 - t0),
                (c1 - c0) / hz / n * 1e6, resent, stored
        }')")
        line="$(awk "${stats[@]}" -v run="$run -P $pipeline" 'BEGIN {
            printf "%-17s %7d calls (%5.1f lines a call)   acknowledged %7.0f SET/s   delivered %7.0f lines/s   CPU %6.2f s per million lines",
                run, calls, n / calls, rps, n / (t1 - t0), (c1 - c0) / hz / n * 1e6
        }')"
        [ "$resent" -eq 0 ] || line+="   ($resent lines resent)"
        log "$line"
        results+=("$line")
        kill "$relayer_pid" "$fake_pid" 2>/dev/null || true
        wait "$relayer_pid" "$fake_pid" 2>/dev/null || true
    done
done

printf '\n%s\n' "firehose-bench: $N SETs, $VALUE-byte values, $CLIENTS clients ($(nproc) cores)"
printf '%s\n' "${results[@]}"

commit="$(measured_commit)"
section="$tmp/section.md"
{
    echo "## Streams"
    echo
    echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- $N SETs with $VALUE-byte values (random keys) from $CLIENTS redis-benchmark clients" \
        "(\`-P\`: each client's pipeline) into a" \
        "stream relayer (smart-relayer $commit; \`buffer = 100000\`, \`critical = true\`, the other keys" \
        "their defaults), relaying to the tests' fake endpoint of its service" \
        "(integration/src/bin/fake-aws.rs) over loopback HTTP, a fresh relayer and endpoint per run," \
        "all on the same $(nproc) cores; one run each, in one sitting, on cores other work may share:" \
        "compare rows of the same sitting"
    echo "- calls: the calls the endpoint received (PutRecordBatch, PutRecords, SendMessageBatch);" \
        "acknowledged: redis-benchmark's requests/s; delivered: lines per second from the first SET" \
        "until the relayer reports every line delivered; CPU: the relayer's utime+stime over that" \
        "time; resent: relayer_<protocol>_retries_total; stored: the lines (Firehose), records" \
        "(Kinesis) or messages (SQS) the endpoint holds at the end"
    echo
    echo "| relayer | \`-P\` | calls | lines a call | acknowledged (SET/s) | delivered (lines/s) | relayer CPU s per million lines | resent | stored |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} >"$section"
case "$OUT" in /*) out_path="$OUT" ;; *) out_path="$root/$OUT" ;; esac
write_section "$out_path" "Streams" "$section"
log "written to $out_path"
