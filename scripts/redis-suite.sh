#!/usr/bin/env bash
# Runs units of Redis' own test suite (tests/unit/*.tcl of the installed redis-server's source)
# twice per unit: against a redis-server directly, then against the same kind of server through
# the relayer in sync mode, and prints per unit the tests passed and failed each way, and the
# names of the tests that fail only through the relayer.
#
# The source is Debian's source package of the installed version (the upstream tarball and
# Debian's patches, checked against the .dsc), downloaded once into $REDIS_SUITE_DIR (default
# target/redis-suite). The suite runs in its external-server mode (`runtest --host --port`), which
# skips the tests tagged external:skip (those that restart servers, read their logs, replicate).
# Every unit gets a fresh redis-server and relayer, and a time limit. The tests listed in
# scripts/redis-suite.skip, which hang through the relayer or leave the server busy for the rest
# of their unit, are skipped both ways.
#
# Usage: scripts/redis-suite.sh [unit/type/string ...]
# Environment: RELAYER (a binary; default target/debug/smart-relayer, built first), UNIT_TIMEOUT
# (seconds per unit and way, default 240), REDIS_SUITE_DIR, KEEP_LOGS=1 (keep the runs' output),
# SKIP (a skip file, default scripts/redis-suite.skip; empty: skip nothing), WAYS (default
# "direct relayer"), EXPECT (a file of the tests known to fail only through the relayer, one
# "unit: test" a line, scripts/redis-suite.expected for CI): with it, the script exits 1 when a
# unit times out or stops early through the relayer, or a test not listed fails only through the
# relayer (a unit is run once more before it is called a failure: timing tests of the suite can
# fail once on a loaded machine).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${REDIS_SUITE_DIR:-$root/target/redis-suite}"
relayer="${RELAYER:-$root/target/debug/smart-relayer}"
unit_timeout="${UNIT_TIMEOUT:-240}"
skip="${SKIP-$root/scripts/redis-suite.skip}"
read -r -a ways <<<"${WAYS:-direct relayer}"
units=("$@")
if [ ${#units[@]} -eq 0 ]; then
    units=(unit/type/string unit/type/hash unit/type/set unit/type/zset unit/type/list
        unit/multi unit/keyspace unit/expire unit/scripting unit/pubsub unit/info-command)
fi

log() { printf 'redis-suite: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

# --- the source of the installed version -----------------------------------------------------

# Debian's version without its epoch (7.0.15-1~deb12u10), or upstream's when redis-server did
# not come from a Debian package (then without Debian's patches).
deb_version="$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null || true)"
deb_version="${deb_version#*:}"
upstream="$(redis-server --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')"
[ -n "$upstream" ] || die "cannot read the version of redis-server (is it installed?)"
src="$cache/redis-${deb_version:-$upstream}"

# A file of Debian's pool: the main archive has the release's packages, the security archive
# the updates'.
fetch() {
    local file=$1 pool
    for pool in http://deb.debian.org/debian/pool/main/r/redis \
        http://deb.debian.org/debian-security/pool/updates/main/r/redis; do
        if curl -fsS -m 120 -o "$cache/$file" "$pool/$file" 2>/dev/null; then
            return 0
        fi
    done
    die "cannot download $file from deb.debian.org"
}

if [ ! -x "$src/runtest" ]; then
    mkdir -p "$cache"
    orig="redis_$upstream.orig.tar.gz"
    [ -f "$cache/$orig" ] || fetch "$orig"
    rm -rf "$src.tmp"
    mkdir -p "$src.tmp"
    if [ -n "$deb_version" ]; then
        dsc="redis_$deb_version.dsc"
        debian="redis_$deb_version.debian.tar.xz"
        [ -f "$cache/$dsc" ] || fetch "$dsc"
        [ -f "$cache/$debian" ] || fetch "$debian"
        for f in "$orig" "$debian"; do
            want="$(awk -v f="$f" '/^Checksums-Sha256:/ {on = 1; next} /^[^ ]/ {on = 0} on && $3 == f {print $1}' "$cache/$dsc")"
            got="$(sha256sum "$cache/$f" | cut -d' ' -f1)"
            [ -n "$want" ] && [ "$want" = "$got" ] || die "$f: sha256 $got, the .dsc says '$want'"
        done
    fi
    tar -xzf "$cache/$orig" -C "$src.tmp" --strip-components=1
    if [ -n "$deb_version" ]; then
        # Debian's patches carry its security fixes, some with tests: the suite of the binary.
        tar -xJf "$cache/$debian" -C "$src.tmp"
        grep -v '^\s*#' "$src.tmp/debian/patches/series" | while read -r patch _; do
            [ -n "$patch" ] || continue
            patch -d "$src.tmp" -p1 -s <"$src.tmp/debian/patches/$patch" || die "patch $patch does not apply"
        done
    fi
    mv "$src.tmp" "$src"
    log "source of redis ${deb_version:-$upstream} in $src"
fi

# runtest looks for tclsh8.5 to 8.7 by those names.
if ! command -v tclsh8.6 >/dev/null && ! command -v tclsh8.5 >/dev/null && ! command -v tclsh8.7 >/dev/null; then
    log "installing tcl"
    "${SUDO[@]}" apt-get install -y -q tcl >/dev/null
fi

# The default binary is the checkout's, built so that the suite runs the code as it is.
if [ -z "${RELAYER:-}" ]; then
    (cd "$root" && cargo build -q --bin smart-relayer)
fi

# --- servers ---------------------------------------------------------------------------------

work="$(mktemp -d)"
pids=()
# SIGKILL after 5 s: a redis-server running a script that never ends does not stop on SIGTERM.
stop_all() {
    local p i
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for i in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_all; [ -n "${KEEP_LOGS:-}" ] || rm -rf "$work"' EXIT
skip_args=()
if [ -n "$skip" ]; then
    grep -v '^#' "$skip" | grep . >"$work/skip" || true
    skip_args=(--skipfile "$work/skip")
fi

# A port nothing listens on, from a range the kernel does not hand out for outgoing connections.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
            echo "$p"
            return
        }
    done
}

wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on port $1 (see $work)"
}

# Starts a redis-server, and the relayer in front of it when $1 is "relayer"; sets $port to the
# port the suite talks to. (Not in a subshell: stop_all must know the processes.)
start() {
    local way=$1 dir="$work/$2" redis_port
    mkdir -p "$dir"
    redis_port="$(free_port)"
    # The suite needs DEBUG (enable-debug-command) and nothing persisted.
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        --enable-debug-command yes --logfile "$dir/redis.log" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$redis_port"
    port=$redis_port
    if [ "$way" = relayer ]; then
        port="$(free_port)"
        cat >"$dir/relayer.toml" <<EOF
[[relayer]]
protocol = "redis"
mode = "sync"
listen = "tcp://127.0.0.1:$port"
url = "redis://127.0.0.1:$redis_port"
EOF
        "$relayer" -c "$dir/relayer.toml" >"$dir/relayer.log" 2>&1 &
        pids+=($!)
        wait_port "$port"
    fi
}

# --- the runs --------------------------------------------------------------------------------

# Runs one unit one way; its output goes to $work/<unit>.<way>.out. The suite runs each test
# client in a process of its own: timeout signals the whole process group.
run_unit() {
    local unit=$1 way=$2 name="${1//\//_}" out rc=0
    out="$work/$name.$way.out"
    start "$way" "$name.$way"
    (cd "$src" && TERM=dumb timeout -k 5 "$unit_timeout" ./runtest --host 127.0.0.1 --port "$port" \
        --singledb --clients 1 --durable --timeout "$unit_timeout" "${skip_args[@]}" --single "$unit") \
        >"$out" 2>&1 </dev/null || rc=$?
    stop_all
    case $rc in
    0) ;;
    124 | 137) echo "[relayer-suite]: timed out after ${unit_timeout}s" >>"$out" ;;
    # runtest exits with 1 when a test failed; without "The End" it stopped early.
    *) grep -q 'The End' "$out" || echo "[relayer-suite]: runtest stopped early ($rc)" >>"$out" ;;
    esac
}

# "passed/failed", and whether the unit ran to its end; "-" for a way not run.
counts() {
    local ok err end=""
    [ -f "$1" ] || {
        echo "-"
        return
    }
    ok="$(grep -c '^\[ok\]: ' "$1" || true)"
    err="$(grep -c '^\[err\]: \|^\[exception\]: ' "$1" || true)"
    grep -q '^\[relayer-suite\]: timed out' "$1" && end=" (timed out)"
    grep -q '^\[exception\]: \|^\[relayer-suite\]: runtest stopped' "$1" && end=" (aborted)"
    echo "$ok/$err$end"
}

# The names of the failed tests of an output, one a line.
failed_names() {
    [ -f "$1" ] || return 0
    sed -n 's/^\[err\]: \(.*\) in tests\/.*/\1/p; s/^\[exception\]: \(.*\)/exception: \1/p' "$1" | sort -u
}

# The first line of what the suite said about failed test $2 in output $1.
reason() {
    awk -v t="[err]: $2 in tests/" 'index($0, t) == 1 {getline; print substr($0, 1, 110); exit}' "$1"
}

# The tests of $1 that fail only through the relayer and are not expected, one a line; and a
# line "(timed out)" or "(aborted)" when the relayer's run did not end.
unexpected() {
    local name="${1//\//_}"
    [ -n "${EXPECT:-}" ] || return 0
    case "$(counts "$work/$name.relayer.out")" in
    *"("*) echo "(did not end)" ;;
    esac
    comm -13 <(failed_names "$work/$name.direct.out") <(failed_names "$work/$name.relayer.out") |
        while IFS= read -r t; do
            grep -qxF "$1: $t" "$EXPECT" || echo "$t"
        done
}

started=$SECONDS
printf '%-20s %-18s %-18s %-8s %s\n' unit "direct ok/failed" "relayer ok/failed" skipped seconds
only_relayer=()
failures=()
for unit in "${units[@]}"; do
    [ -f "$src/tests/$unit.tcl" ] || die "no unit $unit in $src/tests"
    t0=$SECONDS
    for way in "${ways[@]}"; do
        run_unit "$unit" "$way"
    done
    if [ -n "${EXPECT:-}" ] && [ -n "$(unexpected "$unit")" ]; then
        log "$unit: unexpected results through the relayer, run again: $(unexpected "$unit" | tr '\n' ';')"
        for way in "${ways[@]}"; do
            run_unit "$unit" "$way"
        done
    fi
    while IFS= read -r t; do
        [ -z "$t" ] || failures+=("$unit: $t")
    done < <(unexpected "$unit")
    name="${unit//\//_}"
    skipped="$(cat "$work/$name".*.out | grep -c '^\[skip\]: ' || true)"
    printf '%-20s %-18s %-18s %-8s %s\n' "$unit" "$(counts "$work/$name.direct.out")" \
        "$(counts "$work/$name.relayer.out")" "$((skipped / ${#ways[@]}))" $((SECONDS - t0))
    while IFS= read -r t; do
        [ -n "$t" ] || continue
        only_relayer+=("$unit: $t")
        why="$(reason "$work/$name.relayer.out" "$t")"
        [ -z "$why" ] || only_relayer+=("    $why")
    done < <(comm -13 <(failed_names "$work/$name.direct.out") <(failed_names "$work/$name.relayer.out"))
done
printf '\ntotal %ss\n' $((SECONDS - started))
if [ ${#only_relayer[@]} -gt 0 ]; then
    printf '\nfailing only through the relayer:\n'
    printf '  %s\n' "${only_relayer[@]}"
fi
[ -z "${KEEP_LOGS:-}" ] || log "outputs in $work"
if [ ${#failures[@]} -gt 0 ]; then
    printf '\nunexpected through the relayer (not in %s):\n' "${EXPECT:-EXPECT}"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
