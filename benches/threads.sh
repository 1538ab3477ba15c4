#!/usr/bin/env bash
# benches/threads.sh: `--threads` (gunicorn's gthread worker) against
# gunicorn -k gthread and granian's blocking threads, plus what threads cost
# where they do not help; loopback, wrk, short interleaved rounds.
#
# Cases (each: its servers started together, then for each round every
# server in turn, wrk -t1 -c64 keep-alive for DURATION seconds):
#   sleep  tests/python/apps/threads_app.py, GET /sleep?0.02: a WSGI view
#          that sleeps 20 ms (2 workers x 8 threads allow 800 requests/s)
#            ferricorn  --workers 2 --threads 8
#            gunicorn   -k gthread --workers 2 --threads 8
#            granian    --interface wsgi --workers 2 --blocking-threads 8
#   db     tests/python/djangoapp, GET /db/: a Django view running one query
#          (SELECT pg_backend_pid(), pg_sleep(0)) on PostgreSQL, started here
#          with initdb + postgres on a Unix socket in a temporary directory
#          (Debian's /usr/lib/postgresql/*/bin; as the postgres user when
#          run as root); same three servers
#   cpu    the Django view GET /hello/ (CPU only):
#            ferricorn-t4 (--workers 2 --threads 4) vs ferricorn-t1 (--threads 1)
#   hello  the built-in Rust app `hello`: ferricorn-t4 vs ferricorn-t1
# Reported: median requests/s over ROUNDS and the first server's ratio to
# each other one (median of the per-round ratios); and the CPU time each
# server (master, workers and their threads) spent per request in the same
# rounds, with the other's CPU per request over the first's ("cpu x": above
# 1 the first needs less CPU per request). On a machine shared with other
# work the requests/s ratio also measures how the kernel shares the CPU
# (a server with more runnable threads gets a larger share of a busy
# machine); the CPU per request does not.
#
# Usage:
#   benches/threads.sh                  # build, venv, 3 rounds x 3 s
#   FERRICORN_BIN=target/release/ferricorn CASES='sleep db' ROUNDS=5 benches/threads.sh
#
# Environment (all optional): ROUNDS=3 DURATION=3 (s) WARMUP=1 (s)
#   CASES='sleep db cpu hello' CONNS=64
#   FERRICORN_BIN (default: cargo build --release --features python)
#   BENCH_VENV (default <repo>/target/py-bench-venv, from
#     tests/python/requirements-bench.txt: Django, gunicorn, granian, psycopg)
#   OUT_DIR (default: a fresh temp dir; raw wrk outputs and server logs)
#
# Every process started here (servers, postgres, wrk) is stopped by PID on
# exit, error or Ctrl-C.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
CASES=${CASES:-sleep db cpu hello}
VENV=${BENCH_VENV:-$ROOT/target/py-bench-venv}
STOP_TIMEOUT_S=5

log() { printf '[threads.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for t in wrk ss awk; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y wrk iproute2)"
done

. "$HERE/common.sh"
ferricorn_bin --features python

REQS="$ROOT/tests/python/requirements-bench.txt"
want=$(cksum <"$REQS")
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.ferricorn-bench" 2>/dev/null)" != "$want" ]; then
    log "creating $VENV"
    "${PYO3_PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQS" || die "pip install failed"
    echo "$want" >"$VENV/.ferricorn-bench"
fi

RUN=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-threads-bench.XXXXXX")}
mkdir -p "$RUN/raw" "$RUN/logs"
RES="$RUN/results.tsv"   # case server round rps errors cpu_us_per_request switches_per_request
: >"$RES"

# ------------------------------------------------------------ processes ----
declare -A PID=() PORT=()
WRK_PID="" PG_PID="" PG_DIR=""

stop_pid() {  # stop_pid PID [SIGNAL]: signal, wait, then KILL it and its descendants
    local p=$1 sig=${2:-TERM} kids t
    [ -n "$p" ] || return 0
    kids=$(descendants "$p")
    kill "-$sig" "$p" 2>/dev/null || true
    for ((t = 0; t < STOP_TIMEOUT_S * 20; t++)); do
        is_alive "$p" || break
        sleep 0.05
    done
    is_alive "$p" && kill -KILL "$p" 2>/dev/null || true
    for k in $kids $(descendants "$p"); do
        if is_alive "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    wait "$p" 2>/dev/null || true
}
stop_servers() {
    local name
    for name in "${!PID[@]}"; do
        [ -n "${PID[$name]}" ] && stop_pid "${PID[$name]}"
        PID[$name]=""
    done
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$WRK_PID" ] && is_alive "$WRK_PID"; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    stop_servers
    # SIGQUIT: PostgreSQL's immediate shutdown.
    [ -n "$PG_PID" ] && stop_pid "$PG_PID" QUIT
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }
NEXT_PORT=$((25000 + ($$ % 400) * 20))
alloc_port() {
    while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    ALLOC=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# ------------------------------------------------------------- postgres ----
start_postgres() {
    local bin as=()
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$bin/postgres" ] || die "PostgreSQL not found (apt-get install -y postgresql)"
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-bench-pg.XXXXXX")
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_DIR"
        as=(setpriv --reuid=postgres --regid=postgres --clear-groups)
    fi
    "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-sync \
        >"$RUN/logs/initdb.log" 2>&1 || die "initdb failed: $RUN/logs/initdb.log"
    "${as[@]}" "$bin/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -c listen_addresses= \
        -c fsync=off -c max_connections=200 >"$RUN/logs/postgres.log" 2>&1 &
    PG_PID=$!
    local t
    for ((t = 0; t < 300; t++)); do
        "$bin/pg_isready" -q -h "$PG_DIR" && return 0
        is_alive "$PG_PID" || die "postgres exited: $RUN/logs/postgres.log"
        sleep 0.1
    done
    die "postgres not ready after 30 s"
}

# -------------------------------------------------------------- servers ----
case_servers() {
    case $1 in
        sleep | db) echo "ferricorn gunicorn granian" ;;
        cpu | hello) echo "ferricorn-t4 ferricorn-t1" ;;
    esac
}
case_path() {
    case $1 in
        sleep) echo "/sleep?0.02" ;;
        db) echo "/db/" ;;
        cpu) echo "/hello/" ;;
        hello) echo "/" ;;
    esac
}

start_server() {  # start_server CASE NAME PORT
    local c=$1 name=$2 port=$3 dir spec logf="$RUN/logs/$1-$2.log"
    case $c in
        sleep) dir="$ROOT/tests/python/apps" spec="threads_app:application" ;;
        db | cpu) dir="$ROOT/tests/python/djangoapp" spec="djangoproject.wsgi:application" ;;
        hello) dir="$ROOT" spec="hello" ;;
    esac
    local pg=()
    [ "$c" = db ] && pg=(env "FERRICORN_PG_HOST=$PG_DIR")
    case $name in
        ferricorn | ferricorn-t4 | ferricorn-t1)
            local threads=8
            [ "$name" = ferricorn-t4 ] && threads=4
            [ "$name" = ferricorn-t1 ] && threads=1
            "${pg[@]}" env VIRTUAL_ENV="$VENV" "$FERRICORN_BIN" --bind "127.0.0.1:$port" \
                --workers 2 --threads "$threads" --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
        gunicorn)
            "${pg[@]}" "$VENV/bin/gunicorn" -k gthread --workers 2 --threads 8 \
                --bind "127.0.0.1:$port" --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
        granian)
            "${pg[@]}" "$VENV/bin/granian" --interface wsgi --workers 2 --blocking-threads 8 \
                --host 127.0.0.1 --port "$port" --working-dir "$dir" --no-access-log \
                "$spec" >>"$logf" 2>&1 &
            ;;
    esac
    PID[$name]=$!
}

get200() {  # get200 PORT PATH
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$2" >&3 2>/dev/null || { exec 3<&-; return 1; }
    read -r -t 5 line <&3 || true
    exec 3<&-
    [[ $line == HTTP/1.?" 200"* ]]
}
wait_ready() {  # wait_ready CASE NAME
    local t
    for ((t = 0; t < 300; t++)); do
        get200 "${PORT[$2]}" "$(case_path "$1")" && return 0
        is_alive "${PID[$2]}" || die "$2 ($1) exited; see $RUN/logs/$1-$2.log"
        sleep 0.05
    done
    die "$2 ($1) not ready after 15 s; see $RUN/logs/$1-$2.log"
}

CLK_TCK=$(getconf CLK_TCK)
tree_cpu() {  # tree_cpu PID: user+system clock ticks of PID and its descendants (all threads)
    local p t=0 v
    for p in "$1" $(descendants "$1"); do
        # Fields after "pid (comm) ": the comm may hold spaces.
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

tree_switches() {  # tree_switches PID: context switches (voluntary + not) of PID's and its descendants' threads
    local p
    for p in "$1" $(descendants "$1"); do
        cat /proc/"$p"/task/*/status 2>/dev/null
    done | awk '/ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

run_wrk() {  # run_wrk CASE SERVER ROUND SECONDS
    local c=$1 name=$2 round=$3 secs=$4 out rps errs reqs cpu0 cpu1 cpu cs0 cs1 cs
    out="$RUN/raw/$c-$name-$round.txt"
    cs0=$(tree_switches "${PID[$name]}")
    cpu0=$(tree_cpu "${PID[$name]}")
    wrk -t1 -c"$CONNS" -d "${secs}s" -H 'Host: localhost' \
        "http://127.0.0.1:${PORT[$name]}$(case_path "$c")" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || log "warning: wrk exited non-zero ($out)"
    WRK_PID=""
    cpu1=$(tree_cpu "${PID[$name]}")
    cs1=$(tree_switches "${PID[$name]}")
    [ "$round" = warmup ] && return 0
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' "$out")
    reqs=$(awk '/ requests in / { print $1 }' "$out")
    cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="${reqs:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n }')
    cs=$(awk -v d=$((cs1 - cs0)) -v n="${reqs:-0}" 'BEGIN { if (n > 0) printf "%.2f", d / n }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$name" "$round" "${rps:-}" "$errs" "$cpu" "$cs" >>"$RES"
    log "$(printf '%-6s %-13s round %s: %10s req/s  errors %s  cpu %s us/req  %s switches/req' "$c" "$name" "$round" "${rps:-?}" "$errs" "${cpu:-?}" "${cs:-?}")"
}

# ============================================================== the run ====
log "results and raw outputs: $RUN"
VERSIONS=$("$VENV/bin/python" -c '
import importlib.metadata as m
print(", ".join(f"{p} {m.version(p)}" for p in ("Django", "gunicorn", "granian", "psycopg")))')
log "$VERSIONS; $("$VENV/bin/python" -V 2>&1); $(wrk -v 2>&1 | head -1)"
log "rounds=$ROUNDS duration=${DURATION}s conns=$CONNS cases='$CASES' cpus=$(nproc)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
case " $CASES " in *" db "*) start_postgres ;; esac

for c in $CASES; do
    for name in $(case_servers "$c"); do
        alloc_port
        PORT[$name]=$ALLOC
        start_server "$c" "$name" "$ALLOC"
    done
    for name in $(case_servers "$c"); do wait_ready "$c" "$name"; done
    if [ "$WARMUP" != 0 ]; then
        for name in $(case_servers "$c"); do run_wrk "$c" "$name" warmup "$WARMUP"; done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for name in $(case_servers "$c"); do
            run_wrk "$c" "$name" "$r" "$DURATION"
        done
    done
    stop_servers
done

# ============================================================== summary ====
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print ""; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() {  # col CASE SERVER [FIELD]
    awk -F'\t' -v c="$1" -v s="$2" -v f="${3:-4}" '$1 == c && $2 == s && $f != "" { print $f }' "$RES"
}
ratios() {  # ratios CASE A B [FIELD] -> per-round A/B
    awk -F'\t' -v c="$1" -v a="$2" -v b="$3" -v f="${4:-4}" '
        $1 == c && $2 == a { x[$3] = $f } $1 == c && $2 == b { y[$3] = $f }
        END { for (r in x) if ((r in y) && x[r] > 0 && y[r] > 0) printf "%.3f\n", x[r] / y[r] }' "$RES"
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN { if (x == "") print "-"; else printf "%." p "f", x }'; }
{
    echo
    echo "== --threads: requests/s, loopback, wrk -t1 -c$CONNS keep-alive, median of $ROUNDS x ${DURATION}s;"
    echo "   second line: CPU time per request (server processes, all threads) and its ratio =="
    for c in $CASES; do
        set -- $(case_servers "$c")
        first=$1
        printf '%-6s' "$c"
        for name in "$@"; do printf '  %s %s' "$name" "$(fmt "$(col "$c" "$name" | median)" 0)"; done
        shift
        for name in "$@"; do printf '  | %s/%s %s' "$first" "$name" "$(fmt "$(ratios "$c" "$first" "$name" | median)" 2)"; done
        printf '  | errors %s\n' "$(awk -F'\t' -v c="$c" '$1 == c { n += $5 } END { print n + 0 }' "$RES")"
        printf '%-6s' ""
        for name in $(case_servers "$c"); do printf '  %s %s us/req' "$name" "$(fmt "$(col "$c" "$name" 6 | median)" 1)"; done
        for name in "$@"; do printf '  | cpu x %s/%s %s' "$name" "$first" "$(fmt "$(ratios "$c" "$name" "$first" 6 | median)" 2)"; done
        printf '\n'
    done
    echo
    echo "$VERSIONS; $("$VENV/bin/python" -V 2>&1)"
    echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cpus); $((SECONDS - T0)) s"
    echo "raw outputs, per-round table ($RES) and logs: $RUN"
} | tee "$RUN/summary.txt"
