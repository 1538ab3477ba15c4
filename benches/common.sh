# benches/common.sh: helpers shared by wrk.sh, python.sh and threads.sh (sourced).

# conn_share PORT: the busiest process's share (in %) of the established
# connections to PORT, then its count, the total and the number of
# processes ("62.5 40 64 2"); empty when none are seen. Needs root for
# `ss -p` to name the owning processes.
conn_share() {
    { ss -Htnp state established "( sport = :$1 )" 2>/dev/null || true; } \
        | grep -o 'pid=[0-9]*' | sort | uniq -c \
        | awk '{ n += $1; k++; if ($1 > m) { m = $1; p = $2 } }
               END { if (n) printf "%.1f %d %d %d\n", 100 * m / n, m, n, k; else print "" }' \
        || true  # no connections (gunicorn sync between requests): empty, not an error
}

# ferricorn_bin [CARGO_FLAGS...]: set FERRICORN_BIN, building the release
# binary with those flags (e.g. --features python) unless it is already set.
# Needs ROOT and the calling script's log/die.
ferricorn_bin() {
    if [ -z "${FERRICORN_BIN:-}" ]; then
        log "building ferricorn --release $*"
        (cd "$ROOT" && cargo build --release --quiet "$@" --bin ferricorn) \
            || die "cargo build failed"
        FERRICORN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/ferricorn"
    fi
    [ -x "$FERRICORN_BIN" ] || die "no ferricorn binary at $FERRICORN_BIN"
}

# bench_venv: create (or refresh, when tests/python/requirements-bench.txt
# changed) the peers' venv $VENV with $PYO3_PYTHON (else python3), the Python
# ferricorn links; plus bjoern, best effort (it needs libev-dev). One venv for
# python.sh, threads.sh and asgi.sh (same stamp file). Needs ROOT, VENV and
# the calling script's log/die.
bench_venv() {
    local reqs="$ROOT/tests/python/requirements-bench.txt" want
    want=$(cat "$reqs" | cksum)
    if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.ferricorn-bench" 2>/dev/null)" != "$want" ]; then
        log "creating $VENV"
        "${PYO3_PYTHON:-python3}" -m venv "$VENV"
        "$VENV/bin/pip" install --disable-pip-version-check -q -r "$reqs" || die "pip install failed"
        if ! "$VENV/bin/pip" install --disable-pip-version-check -q bjoern >"$VENV/bjoern-install.log" 2>&1; then
            log "bjoern did not build (needs libev-dev); see $VENV/bjoern-install.log"
        fi
        echo "$want" >"$VENV/.ferricorn-bench"
    fi
}

# Stopping what a bench started, by PID: is_alive PID (not a zombie),
# descendants PID... (every process below, from /proc), stop_pid PID (TERM,
# wait up to $STOP_TIMEOUT_S, then KILL it and its descendants). Need the
# calling script's log and STOP_TIMEOUT_S.
is_alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

descendants() {
    local p c
    for p in "$@"; do
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
            echo "$c"
            descendants "$c"
        done
    done
}

stop_pid() {  # TERM, wait up to STOP_TIMEOUT_S, then KILL it and its descendants
    local p=$1 kids t
    [ -n "$p" ] || return 0
    kids=$(descendants "$p")
    kill -TERM "$p" 2>/dev/null || true
    for ((t = 0; t < STOP_TIMEOUT_S * 20; t++)); do
        is_alive "$p" || break
        sleep 0.05
    done
    if is_alive "$p"; then
        log "warning: pid $p still running after ${STOP_TIMEOUT_S}s, sending SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
    fi
    for k in $kids $(descendants "$p"); do
        if is_alive "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    wait "$p" 2>/dev/null || true
}
