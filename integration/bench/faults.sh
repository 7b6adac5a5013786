#!/usr/bin/env bash
# The fault matrix: evidence that "acknowledged means delivered".
#
# Builds the release binaries (the relayer and the integration crate's `faults` driver), then runs
# the driver: for every row (a fault) and for a single Redis and a Redis Cluster where it applies,
# a fresh backend and a smart relayer with clients writing numbered SETs and RPUSHes through it
# while the fault is injected; afterwards the backend is read and compared with what every client
# was acknowledged and with what the relayer counted as not delivered. Each row is printed as it
# finishes; the table, the machine, the date and the commit go to RELIABILITY.md at the
# repository root (see that file for what the columns and invariants mean). Exits 1 when a row
# breaks an invariant (the report is written first). Every process a row starts is stopped by the
# driver. The same rows, short, are integration/tests/all/fault_matrix.rs.
#
# Environment (each also a flag of the driver; extra arguments are passed on to it):
#   QUICK=1            the tests' sizes: a smoke run of a few minutes
#   ROWS=a,b           rows to run (default: all; `target/release/faults --help` lists them)
#   BACKENDS=single    single, cluster or both (default: both)
#   CLIENTS=4          writing clients
#   PRELOAD=1000000    keys the single Redis loads after the kill -9
#   KEY_LOAD_DELAY=0   redis-server --key-load-delay at that restart
#   PIPELINE=300000    commands of each kind a whole-pipeline client writes before reading
#   HANG=120           seconds after which a step is reported as a hang
#   OUT=RELIABILITY.md the report (a relative path is from the repository root; - for none)
#   RELAYER_BIN=...    use this relayer binary instead of target/release/smart-relayer
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

log() { printf 'faults: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command_line=""
for var in QUICK ROWS BACKENDS CLIENTS PRELOAD KEY_LOAD_DELAY PIPELINE HANG OUT; do
    [ -n "${!var:-}" ] && command_line+="$var=${!var} "
done
command_line+="integration/bench/faults.sh${*:+ $*}"

for cmd in redis-server redis-cli; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (run scripts/install-deps.sh)"
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
log "building the relayer and the driver (release)"
cargo build --release --workspace --bins
relayer_bin="${RELAYER_BIN:-$target_dir/release/smart-relayer}"
[ -x "$relayer_bin" ] || die "no relayer binary at $relayer_bin"

args=()
[ "${QUICK:-0}" = 1 ] && args+=(--quick)
[ -n "${ROWS:-}" ] && args+=(--rows "$ROWS")
case "${BACKENDS:-both}" in
    both) ;;
    *) args+=(--backends "$BACKENDS") ;;
esac
[ -n "${CLIENTS:-}" ] && args+=(--clients "$CLIENTS")
[ -n "${PRELOAD:-}" ] && args+=(--preload "$PRELOAD")
[ -n "${KEY_LOAD_DELAY:-}" ] && args+=(--key-load-delay "$KEY_LOAD_DELAY")
[ -n "${PIPELINE:-}" ] && args+=(--pipeline "$PIPELINE")
[ -n "${HANG:-}" ] && args+=(--hang "$HANG")
[ -n "${OUT:-}" ] && args+=(--out "$OUT")

log "relayer $relayer_bin"
SMART_RELAYER_BIN="$relayer_bin" FAULTS_COMMAND="$command_line" \
    "$target_dir/release/faults" "${args[@]}" "$@"
