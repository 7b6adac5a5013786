#!/usr/bin/env bash
# Installs what smart-relayer's scripts and tests need, on Debian (bookworm) with the Rust
# toolchain already present: redis-server, redis-cli and redis-benchmark, php-cli with the
# phpredis extension, openssl (certificates for the TLS tests), supervisor (supervisord and
# supervisorctl, for the reload test under a real supervisord), cargo-nextest, and moto and
# redis-py in venvs under <target>/tools. Idempotent: everything is checked first, so a second
# run installs nothing, runs no `apt-get update`, and takes well under a second.
#
# Debian's redis-server package would start a system service on 6379. While installing, a
# temporary policy-rc.d forbids starting services (unless the machine already has one), so
# nothing depends on a service: scripts/run.sh and the tests start their own redis-server.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        SUDO=(__no_root__)
    fi
fi

as_root() {
    if [ "${SUDO[0]:-}" = "__no_root__" ]; then
        log "need root (or sudo) to run: $*"
        exit 1
    fi
    "${SUDO[@]}" "$@"
}

have() { command -v "$1" >/dev/null 2>&1; }

# Not `php -m | grep -q`: grep exits at the first match, and php's SIGPIPE would fail the pipe
# under pipefail.
php_has_redis() { have php && grep -qi '^redis$' <<<"$(php -m 2>/dev/null)"; }

# Debian packages, each added only when what it provides is missing.
packages=()
have redis-server || packages+=(redis-server)
{ have redis-cli && have redis-benchmark; } || packages+=(redis-tools)
have php || packages+=(php-cli)
php_has_redis || packages+=(php-redis)
{ have supervisord && have supervisorctl; } || packages+=(supervisor)
# The TLS tests make their certificates with it.
have openssl || packages+=(openssl)

if [ "${#packages[@]}" -gt 0 ]; then
    if ! have apt-get; then
        log "missing ${packages[*]} and no apt-get: install them by hand"
        exit 1
    fi
    log "installing ${packages[*]}"

    # Keep the package scripts from starting services (redis-server on 6379, supervisord) during the
    # install.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        policy_added=1
    fi
    remove_policy() {
        if [ "$policy_added" -eq 1 ]; then
            as_root rm -f /usr/sbin/policy-rc.d || true
        fi
    }
    trap remove_policy EXIT

    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null

    remove_policy
    policy_added=0
    trap - EXIT

    # A fresh php-redis must be enabled for the CLI; Debian's postinst does it, but check.
    if ! php_has_redis; then
        if have phpenmod; then as_root phpenmod redis || true; fi
    fi
    if ! php_has_redis; then
        log "php-redis installed but 'php -m' does not list redis"
        exit 1
    fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

# moto's server for the Firehose, Kinesis and SQS end-to-end tests (integration/src/moto.rs
# starts <target>/tools/moto/bin/moto_server). `moto[server]` brings boto3 (the tests' reader and
# SDK, integration/src/boto3.rs) and flask; Kinesis and SQS need no extra of their own. Pinned:
# 5.2.5's Firehose writes the records of each PutRecord(Batch) call of a DirectPut stream with an
# ExtendedS3 destination to one S3 object, and what its Kinesis and SQS do and do not check is
# written down in integration/src/moto.rs. <target> is CARGO_TARGET_DIR (relative
# to the repository root) or target/, as in integration::target_dir().
MOTO_VERSION=5.2.5
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac
moto_venv="$target_dir/tools/moto"

# True when the venv runs, holds the pinned moto and what its server imports (checked without
# importing moto, which takes half a second).
moto_ok() {
    [ -x "$moto_venv/bin/moto_server" ] && [ -x "$moto_venv/bin/python" ] &&
        "$moto_venv/bin/python" - "$MOTO_VERSION" >/dev/null 2>&1 <<'PY'
import importlib.metadata as m, importlib.util as u, sys
assert m.version("moto") == sys.argv[1]
assert all(u.find_spec(x) for x in ("moto", "boto3", "botocore", "flask", "flask_cors", "werkzeug"))
PY
}

make_venv() {
    rm -rf "$moto_venv"
    mkdir -p "$(dirname "$moto_venv")"
    python3 -m venv "$moto_venv" >/dev/null 2>&1
}

if ! moto_ok; then
    log "installing moto[server]==$MOTO_VERSION into $moto_venv"
    if ! have python3 || ! make_venv; then
        # Debian's python3 has no venv module (ensurepip) without python3-venv.
        if ! have apt-get; then
            log "python3 -m venv failed and there is no apt-get: install python3-venv by hand"
            exit 1
        fi
        log "installing python3 python3-venv"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 python3-venv >/dev/null
        make_venv || { log "python3 -m venv $moto_venv failed"; exit 1; }
    fi
    "$moto_venv/bin/python" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    moto_ok || { log "moto installed in $moto_venv but its check fails"; exit 1; }
fi

# redis-py for examples/python/redis_py_check.py and redis_py_clients.py (integration/tests/all/
# clients.rs runs them with <target>/tools/redis-py*/bin/python). Pinned: the transcripts the
# tests compare and the connection handshake (CLIENT SETINFO LIB-NAME and LIB-VER) are these
# versions'. 7.4 is the last line that speaks RESP2 by default; redis-py 8 opens every
# connection with HELLO 3 (RESP3), as most new clients do.
install_redis_py() { # VERSION VENV
    local version="$1" venv="$2"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$version" >/dev/null 2>&1 <<'PY'
import importlib.metadata as m, sys
assert m.version("redis") == sys.argv[1]
PY
    then
        return 0
    fi
    log "installing redis==$version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || { log "python3 -m venv $venv failed"; exit 1; }
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "redis==$version"
    "$venv/bin/python" -c "import redis" || { log "redis-py installed in $venv but does not import"; exit 1; }
}
install_redis_py 7.4.1 "$target_dir/tools/redis-py"
install_redis_py 8.1.0 "$target_dir/tools/redis-py8"

for cmd in redis-server redis-cli redis-benchmark php supervisord supervisorctl; do
    have "$cmd" || { log "$cmd still missing"; exit 1; }
done
