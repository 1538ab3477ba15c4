#!/usr/bin/env bash
# conf/nginx/check.sh: validate the nginx fragments in this directory with
# `nginx -t`, each on its own and all together, after filling in their
# {{PLACEHOLDERS}} with temporary values.
#
# Usage: conf/nginx/check.sh [FRAGMENT.conf ...]   (default: every *.conf here)
# Exit status: 0 if every check passed. Nothing is started: `nginx -t` only
# parses the configuration (with a private prefix in a temp dir, removed at
# the end). Needs nginx (apt-get install -y nginx-light).
#
# Placeholders filled in (a test can do the same with sed):
#   {{LISTEN}}       127.0.0.1:<a distinct port per fragment>
#   {{SERVER_NAME}}  localhost
#   {{SOCKET}}       <tmp>/ferricorn.sock
#   {{PORT}}         18000
#   {{BACKEND_A}} {{BACKEND_B}} {{BACKEND_C}}   127.0.0.1:18001 .. 18003
#   {{STATIC_ROOT}}  <tmp>/static
# A placeholder left over after this (a new one, not listed here) fails the check.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
command -v nginx >/dev/null || { echo "nginx not found" >&2; exit 2; }

if [ $# -gt 0 ]; then FRAGS=("$@"); else FRAGS=("$HERE"/*.conf); fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-nginx-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/static" "$TMP/logs"

fill() {  # fill FRAGMENT PORT OUT
    sed -e "s|{{LISTEN}}|127.0.0.1:$2|g" \
        -e "s|{{SERVER_NAME}}|localhost|g" \
        -e "s|{{SOCKET}}|$TMP/ferricorn.sock|g" \
        -e "s|{{PORT}}|18000|g" \
        -e "s|{{BACKEND_A}}|127.0.0.1:18001|g" \
        -e "s|{{BACKEND_B}}|127.0.0.1:18002|g" \
        -e "s|{{BACKEND_C}}|127.0.0.1:18003|g" \
        -e "s|{{STATIC_ROOT}}|$TMP/static|g" "$1" >"$3"
    if grep -n '{{[A-Z_]*}}' "$3" >&2; then
        echo "FAIL $(basename "$1"): unknown placeholder(s) above" >&2
        return 1
    fi
}

wrap() {  # wrap OUT FRAGMENT... : a minimal nginx.conf including the fragments
    {
        echo "worker_processes 1;"
        echo "pid $TMP/nginx.pid;"
        echo "error_log $TMP/logs/error.log;"
        echo "events { worker_connections 64; }"
        echo "http {"
        echo "    access_log $TMP/logs/access.log;"
        for d in client_body proxy fastcgi uwsgi scgi; do echo "    ${d}_temp_path $TMP/$d;"; done
        shift
        for f in "$@"; do echo "    include $f;"; done
        echo "}"
    } >"$1"
}

fail=0 port=18100 all=()
for frag in "${FRAGS[@]}"; do
    name=$(basename "$frag" .conf)
    port=$((port + 1))
    if ! fill "$frag" "$port" "$TMP/$name.filled"; then fail=1; continue; fi
    all+=("$TMP/$name.filled")
    wrap "$TMP/$name.nginx.conf" "$TMP/$name.filled"
    if out=$(nginx -t -q -p "$TMP" -c "$TMP/$name.nginx.conf" 2>&1); then
        echo "ok   $(basename "$frag")"
    else
        echo "FAIL $(basename "$frag")"; echo "$out" | sed 's/^/     /'; fail=1
    fi
done
# All together in one http {}: upstream names must not clash.
if [ "${#all[@]}" -gt 1 ]; then
    wrap "$TMP/all.nginx.conf" "${all[@]}"
    if out=$(nginx -t -q -p "$TMP" -c "$TMP/all.nginx.conf" 2>&1); then
        echo "ok   all ${#all[@]} fragments in one http {}"
    else
        echo "FAIL all fragments together"; echo "$out" | sed 's/^/     /'; fail=1
    fi
fi
exit "$fail"
