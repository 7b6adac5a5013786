#!/usr/bin/env bash
# Installs what integration/bench/bench.sh needs beyond the Rust toolchain, on Debian (bookworm):
# redis-server, redis-cli and redis-benchmark, php-cli with phpredis (the smart-mode PHP loop),
# python3 (the idle-clients tool), nutcracker (twemproxy) and haproxy (TCP mode), the proxies
# compared against, valgrind (callgrind.sh) and linux-perf (perf, for profiling by hand). Idempotent like install-deps.sh:
# everything is checked first, so a second run installs nothing and runs no `apt-get update`.
#
# Debian's redis-server, nutcracker and haproxy packages would start system services. While
# installing, a temporary policy-rc.d forbids starting services (unless the machine already has
# one): the benchmarks start their own redis-server, nutcracker and haproxy on free loopback ports.
set -euo pipefail

log() { printf 'install-bench-deps: %s\n' "$*" >&2; }

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
have python3 || packages+=(python3)
have nutcracker || packages+=(nutcracker)
have haproxy || packages+=(haproxy)
{ have valgrind && have callgrind_annotate; } || packages+=(valgrind)
have perf || packages+=(linux-perf)

if [ "${#packages[@]}" -gt 0 ]; then
    if ! have apt-get; then
        log "missing ${packages[*]} and no apt-get: install them by hand"
        exit 1
    fi
    log "installing ${packages[*]}"

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

    if ! php_has_redis; then
        if have phpenmod; then as_root phpenmod redis || true; fi
    fi
fi

php_has_redis || { log "php-redis installed but 'php -m' does not list redis"; exit 1; }
for cmd in redis-server redis-cli redis-benchmark php python3 nutcracker haproxy valgrind callgrind_annotate perf; do
    have "$cmd" || { log "$cmd still missing"; exit 1; }
done
