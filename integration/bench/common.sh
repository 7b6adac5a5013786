# Shared by the benchmark scripts (sourced after they set $bench): logging, a temporary
# directory and the processes to stop on exit, free loopback ports, and waiting for a server.
# shellcheck shell=bash

log() { printf '%s: %s\n' "${bench:?set bench before sourcing common.sh}" "$*" >&2; }
die() { log "$*"; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/$bench.XXXXXX")"
pids=()
redis_port=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
        # Not our child (a daemonized server): `wait` returns at once, so poll, for up
        # to 5 s, lest it still writes into $tmp while that is removed.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    if [ -n "$redis_port" ]; then
        redis-cli -h 127.0.0.1 -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        log "logs and configs kept in $tmp"
    else
        rm -rf "$tmp" || log "could not remove $tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback TCP port nobody listens on (and not handed out twice by this script). Taken below
# the kernel's ephemeral range when there is room: a port that some outgoing connection holds as
# its local port answers no probe, yet a listener cannot bind it.
read -r ephemeral_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral_lo=32768
if [ "$ephemeral_lo" -gt 15000 ]; then
    port_base=10000 port_span=$((ephemeral_lo - 10000))
else
    port_base=20000 port_span=40000
fi
used_ports=" "
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((port_base + RANDOM % port_span))
        case "$used_ports" in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            used_ports="$used_ports$port "
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# Waits until `redis-cli -p PORT CMD...` succeeds.
wait_ready() {
    local name=$1 port=$2
    shift 2
    local out=""
    for _ in $(seq 1 100); do
        if out="$(redis-cli -h 127.0.0.1 -p "$port" "$@" 2>&1)" && [[ "$out" != ERR* ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name on port $port does not answer '$*': $out"
    for f in "$tmp"/*.log; do
        [ -f "$f" ] && { log "--- $f"; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# The "## TITLE" section of report REPORT (a path) becomes the contents of file SECTION (which
# starts with that heading): replaced where it is (up to the next "## "), or appended. Used by
# the benchmarks that own one section of BENCHMARKS.md (cluster-bench.sh, firehose-bench.sh);
# bench.sh rewrites the rest and keeps theirs.
write_section() {
    local report=$1 title=$2 section=$3
    if [ -f "$report" ] && grep -qxF "## $title" "$report"; then
        awk -v title="## $title" -v section="$section" '
            $0 == title { while ((getline line < section) > 0) print line; skip = 1; next }
            skip && /^## / { skip = 0; print ""; }
            !skip { print }
        ' "$report" >"$tmp/report.new"
    else
        { [ -f "$report" ] && { cat "$report"; echo; }; cat "$section"; } >"$tmp/report.new"
    fi
    cp "$tmp/report.new" "$report"
}

# The sections of BENCHMARKS.md written by other scripts than bench.sh.
owned_sections=("Redis Cluster" "Streams")

# The commit measured, for a report: its short hash, and a warning when the tree differs from it
# (the report file $OUT itself aside).
measured_commit() {
    local commit
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    git -C "$root" diff --quiet HEAD -- . ":(exclude)$OUT" 2>/dev/null || commit="$commit, with uncommitted changes"
    echo "$commit"
}
