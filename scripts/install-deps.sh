#!/usr/bin/env bash
# Installs what smart-relayer's scripts and tests need, on Debian (bookworm) with the Rust
# toolchain already present: redis-server, redis-cli and redis-benchmark, php-cli with the
# phpredis extension, supervisor (supervisord and supervisorctl, for the reload test under a
# real supervisord), and cargo-nextest. Idempotent: everything is checked first, so a second
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

php_has_redis() { have php && php -m 2>/dev/null | grep -qi '^redis$'; }

# Debian packages, each added only when what it provides is missing.
packages=()
have redis-server || packages+=(redis-server)
{ have redis-cli && have redis-benchmark; } || packages+=(redis-tools)
have php || packages+=(php-cli)
php_has_redis || packages+=(php-redis)
{ have supervisord && have supervisorctl; } || packages+=(supervisor)

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

for cmd in redis-server redis-cli redis-benchmark php supervisord supervisorctl; do
    have "$cmd" || { log "$cmd still missing"; exit 1; }
done
