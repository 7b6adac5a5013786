#!/usr/bin/env bash
# Runs every test: formatting and clippy, unit tests, integration tests (they start their own
# redis-server processes and the relayer binary, and run the PHP examples in examples/php through
# it), and doctests. Installs what is missing first (scripts/install-deps.sh).
#
# Environment: TEST_THREADS (default 4) is nextest's --test-threads; REDIS_SUITE=0 leaves out
# Redis' own test suite (scripts/redis-suite.sh); extra arguments are passed
# to `cargo nextest run` (e.g. a test name filter: `relay::` runs that area of the integration
# tests, `-E 'test(/^smart::sigterm/)'` part of one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

step "install dependencies"
scripts/install-deps.sh

# The integration tests spawn target/debug/smart-relayer: build every binary first.
step "cargo build --workspace --bins"
cargo build --workspace --bins

# The checks below all run even when one fails, so a run reports everything; the script then
# exits non-zero naming the ones that failed.
failed=()
check() {
    local name=$1
    shift
    step "$name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

check "cargo fmt --check" cargo fmt --all -- --check
check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
check "cargo nextest run" \
    cargo nextest run --workspace --no-fail-fast --test-threads "${TEST_THREADS:-4}" "$@"

# Redis' own test units, directly and through the relayer (about 4 minutes): on a full run only,
# and not with REDIS_SUITE=0. It fails on a test failing only through the relayer that
# scripts/redis-suite.expected does not list (see docs/operations.md).
if [ $# -eq 0 ] && [ "${REDIS_SUITE:-1}" != 0 ]; then
    check "Redis' test suite through the relayer" \
        env EXPECT="$root/scripts/redis-suite.expected" scripts/redis-suite.sh
fi

# nextest does not run doctests; run them only where there are any.
if grep -rqs --include='*.rs' -E '^\s*//[!/].*```' src actors/src integration/src; then
    check "cargo test --doc" cargo test --workspace --doc
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\n==> FAILED:' >&2
    printf ' [%s]' "${failed[@]}" >&2
    printf '\n' >&2
    exit 1
fi
step "all tests passed"
