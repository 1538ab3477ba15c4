#!/usr/bin/env bash
# benches/asgi.sh: ferricorn's ASGI worker vs uvicorn, granian and gunicorn
# with the uvicorn worker, on loopback, in one interleaved run (issue 15).
#
# Apps (the same files for every server):
#   hello    tests/python/apps/asgi_hello.py (asgi_hello:application), raw
#            ASGI 3: 13-byte text/plain body with Content-Length, GET /
#   fastapi  tests/python/apps/asgi_fastapi.py (asgi_fastapi:app): GET /json,
#            {"message":"Hello, World!"} through FastAPI's routing and JSON
#   django   tests/python/djangoapp (djangoproject.asgi:application): the
#            async view GET /async/hello/ through Django's URL resolver and
#            middleware (CommonMiddleware, CsrfViewMiddleware), DEBUG=False
#   ws       asgi_hello.py's WebSocket echo (/ws): round trips per second,
#            one 16-byte text message in flight per connection
#   wsrust   (only when named in APPS) the same peers against ferricorn's
#            built-in Rust `echo` app's /ws: the ceiling of ferricorn's
#            WebSocket layer without Python, not an ASGI figure
#
# Servers (all on 127.0.0.1:PORT, WORKERS (2) processes, access logs off):
#   ferricorn  VIRTUAL_ENV=$VENV ferricorn -k asgi --workers 2 --chdir DIR APP
#              (n/a when the binary has no ASGI worker, or, for ws, when it
#              does not accept the WebSocket upgrade)
#   uvicorn    uvicorn --workers 2 --http httptools --loop uvloop --app-dir DIR APP
#   granian    granian --interface asgi --workers 2 --working-dir DIR APP
#   gunicorn   gunicorn -k uvicorn_worker.UvicornWorker -w 2 --chdir DIR APP
#              (HTTP apps only; the ws row compares ferricorn, uvicorn, granian)
#
# Load, one client thread each (a second would take the servers' core):
#   HTTP  wrk -t1 -c64 --latency -d DURATION (keep-alive)
#   ws    ws_echo -c 64 -s 16 -d DURATION (benches/ws_echo.rs: upgrade, then
#         send a masked text frame, wait for its echo, check it, repeat)
# Order: for each app, its servers are started together; a 1 s warm-up per
# server; then ROUNDS rounds, each running every server in turn. Reported:
# median requests (round trips)/s over ROUNDS, and ferricorn's ratio to each
# peer (median of the per-round ratios), next to issue 15's targets.
#
# Usage:
#   benches/asgi.sh                          # build, venv, 3 rounds x 5 s: ~5 min
#   ROUNDS=3 DURATION=3 benches/asgi.sh      # a quick check of the script
#   FERRICORN_BIN=path/to/ferricorn APPS='hello ws' benches/asgi.sh
#
# Environment (all optional):
#   ROUNDS=3 DURATION=5 (s) WARMUP=1 (s, once per server and app)  WORKERS=2
#   APPS='hello fastapi django ws'  SERVERS='ferricorn uvicorn granian gunicorn'
#   CONNECTIONS=64  WS_SIZE=16 (bytes per message)
#   FERRICORN_BIN (default: cargo build --release --features python; honours
#     CARGO_TARGET_DIR)  WS_ECHO_BIN (default: cargo bench --bench ws_echo --no-run)
#   BENCH_VENV (default: <repo>/target/py-bench-venv, shared with python.sh and
#     threads.sh, from tests/python/requirements-bench.txt)
#   OUT_DIR (default: a fresh temp dir; raw outputs and server logs)
#
# Loopback only. Every process started here is stopped by PID (TERM, then KILL
# of it and its descendants after 5 s) on exit, error or Ctrl-C.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
WORKERS=${WORKERS:-2}
APPS=${APPS:-hello fastapi django ws}
SERVERS=${SERVERS:-ferricorn uvicorn granian gunicorn}
CONNECTIONS=${CONNECTIONS:-64}
WS_SIZE=${WS_SIZE:-16}
VENV=${BENCH_VENV:-$ROOT/target/py-bench-venv}
STOP_TIMEOUT_S=5

log() { printf '[asgi.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for t in wrk ss awk; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y wrk iproute2)"
done

# ---------------------------------------------------------------- build ----
. "$HERE/common.sh"
ferricorn_bin --features python
if [ -z "${WS_ECHO_BIN:-}" ] && [[ " $APPS " == *" ws"* ]]; then
    log "building benches/ws_echo.rs (cargo bench --bench ws_echo --no-run)"
    # In a target dir of its own: cargo bench builds the package's binary too,
    # without --features python, into the same target/release/ferricorn that
    # ferricorn_bin built (or that FERRICORN_BIN names), and the ASGI server
    # would then refuse the app.
    WS_ECHO_BIN=$(cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/ws-echo" \
        cargo bench --bench ws_echo --no-run --message-format=json 2>/dev/null \
        | grep '"executable":"[^"]*ws_echo' | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -1) \
        || die "cargo bench --bench ws_echo --no-run failed"
    [ -x "$WS_ECHO_BIN" ] || die "no ws_echo executable (cargo bench --bench ws_echo --no-run)"
fi

# ----------------------------------------------------------------- venv ----
bench_venv

# Does this ferricorn have an ASGI worker? Its settings are in --help.
FERRICORN_ASGI=yes
if ! "$FERRICORN_BIN" --help 2>&1 | grep -q -- '--interface'; then
    FERRICORN_ASGI=no
    log "ferricorn ($FERRICORN_BIN) has no ASGI worker (no --interface in --help): its column is n/a"
fi

RUN=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-asgi-bench.XXXXXX")}
mkdir -p "$RUN/raw" "$RUN/logs"
RES="$RUN/results.tsv"        # server app round rps p99_ms errors
: >"$RES"

# ------------------------------------------------------------ processes ----
declare -A PID=() PORT=()
CLIENT_PID=""

stop_server() {
    if [ -n "${PID[$1]:-}" ]; then stop_pid "${PID[$1]}"; PID[$1]=""; fi
}

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    if [ -n "$CLIENT_PID" ] && is_alive "$CLIENT_PID"; then kill -TERM "$CLIENT_PID" 2>/dev/null || true; fi
    for name in "${!PID[@]}"; do stop_server "$name"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }
NEXT_PORT=$((24000 + ($$ % 400) * 20))   # below the ephemeral range
alloc_port() {
    while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    ALLOC=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

app_dir() { case $1 in django) echo "$ROOT/tests/python/djangoapp" ;; *) echo "$ROOT/tests/python/apps" ;; esac; }
app_spec() {
    case $1 in
        hello | ws | wsrust) echo "asgi_hello:application" ;;
        fastapi) echo "asgi_fastapi:app" ;;
        django) echo "djangoproject.asgi:application" ;;
    esac
}
app_path() { case $1 in fastapi) echo "/json" ;; django) echo "/async/hello/" ;; ws | wsrust) echo "/ws" ;; *) echo "/" ;; esac; }
is_ws() { [ "$1" = ws ] || [ "$1" = wsrust ]; }
# The servers that run an app: gunicorn's uvicorn worker is left out of the
# WebSocket rows (it is uvicorn's protocol code again); ferricorn without an
# ASGI worker runs only the built-in Rust echo.
app_servers() {
    local drop=""
    is_ws "$1" && drop=gunicorn
    [ "$FERRICORN_ASGI" = no ] && [ "$1" != wsrust ] && drop="$drop ferricorn"
    printf '%s\n' $SERVERS | awk -v drop=" $drop " 'index(drop, " " $0 " ") == 0' | tr '\n' ' '
}

start_server() {  # start_server NAME APP PORT (returns at once)
    local name=$1 app=$2 port=$3 dir spec logf
    dir=$(app_dir "$app")
    spec=$(app_spec "$app")
    logf="$RUN/logs/$name-$app.log"
    case $name in
        ferricorn)
            if [ "$app" = wsrust ]; then
                "$FERRICORN_BIN" --bind "127.0.0.1:$port" --workers "$WORKERS" echo >>"$logf" 2>&1 &
                PID[$name]=$!
                return
            fi
            VIRTUAL_ENV="$VENV" "$FERRICORN_BIN" -k asgi --bind "127.0.0.1:$port" \
                --workers "$WORKERS" --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
        uvicorn)
            "$VENV/bin/uvicorn" --workers "$WORKERS" --http httptools --loop uvloop \
                --host 127.0.0.1 --port "$port" --app-dir "$dir" --no-access-log \
                --log-level warning "$spec" >>"$logf" 2>&1 &
            ;;
        granian)
            "$VENV/bin/granian" --interface asgi --workers "$WORKERS" --host 127.0.0.1 \
                --port "$port" --working-dir "$dir" --no-access-log "$spec" >>"$logf" 2>&1 &
            ;;
        gunicorn)
            "$VENV/bin/gunicorn" -k uvicorn_worker.UvicornWorker -w "$WORKERS" \
                --bind "127.0.0.1:$port" --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
    esac
    PID[$name]=$!
}

get200() {  # get200 PORT PATH: one connect + GET (pure bash, no fork)
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3 2>/dev/null || { exec 3<&-; return 1; }
    read -r -t 5 line <&3 || true
    exec 3<&-
    [[ $line == HTTP/1.?" 200"* ]]
}

wait_ready() {  # wait_ready NAME APP
    local name=$1 app=$2 t path
    path=$(app_path "$app")
    is_ws "$app" && path=/   # the same apps answer HTTP on any path
    for ((t = 0; t < 300; t++)); do
        get200 "${PORT[$name]}" "$path" && return 0
        is_alive "${PID[$name]}" || die "$name ($app) exited; see $RUN/logs/$name-$app.log"
        sleep 0.05
    done
    die "$name ($app) not ready after 15 s; see $RUN/logs/$name-$app.log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print ""; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

to_ms() {
    awk -v x="$1" 'BEGIN {
        if (x ~ /us$/) { sub(/us$/, "", x); printf "%.3f", x / 1000 }
        else if (x ~ /ms$/) { sub(/ms$/, "", x); printf "%.3f", x }
        else if (x ~ /m$/) { sub(/m$/, "", x); printf "%.3f", x * 60000 }
        else if (x ~ /s$/) { sub(/s$/, "", x); printf "%.3f", x * 1000 }
        else printf "" }'
}

run_load() {  # run_load SERVER APP ROUND SECONDS
    local name=$1 app=$2 round=$3 secs=$4 out rps p99 errs url
    out="$RUN/raw/$name-$app-$round.txt"
    if is_ws "$app"; then
        "$WS_ECHO_BIN" "127.0.0.1:${PORT[$name]}" /ws -c "$CONNECTIONS" -d "$secs" -s "$WS_SIZE" >"$out" 2>&1 &
    else
        url="http://127.0.0.1:${PORT[$name]}$(app_path "$app")"
        wrk -t1 -c"$CONNECTIONS" --latency -d "${secs}s" "$url" >"$out" 2>&1 &
    fi
    CLIENT_PID=$!
    wait "$CLIENT_PID" || log "warning: the client exited non-zero ($out)"
    CLIENT_PID=""
    [ "$round" = warmup ] && return 0
    if is_ws "$app"; then
        rps=$(awk '/^Round trips\/sec:/ { print $3 }' "$out")
        p99=$(awk '/^Latency ms:/ { print $6 }' "$out")
        errs=$(awk '/^Errors:/ { print $2 }' "$out")
        [ -n "$rps" ] || errs=1   # no result line: the upgrade failed (ws_echo says why)
    else
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' "$out")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$app" "$round" "${rps:-}" "${p99:-}" "${errs:-0}" >>"$RES"
    log "$(printf '%-9s %-7s round %s: %10s /s  p99 %8s ms  errors %s' "$name" "$app" "$round" "${rps:-?}" "${p99:-?}" "${errs:-0}")"
}

# ============================================================== the run ====
log "results and raw outputs: $RUN"
log "ferricorn: $FERRICORN_BIN (ASGI worker: $FERRICORN_ASGI); venv: $VENV ($("$VENV/bin/python" -V 2>&1))"
VERSIONS=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
out = []
for p in ("uvicorn", "granian", "gunicorn", "uvicorn-worker", "uvloop", "httptools",
          "websockets", "fastapi", "starlette", "Django"):
    try:
        out.append(f"{p} {m.version(p)}")
    except m.PackageNotFoundError:
        pass
print(", ".join(out))
EOF
)
log "$VERSIONS; $(wrk -v 2>&1 | head -1)"
log "rounds=$ROUNDS duration=${DURATION}s workers=$WORKERS connections=$CONNECTIONS apps='$APPS' servers='$SERVERS' cpus=$(nproc)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

for app in $APPS; do
    servers=$(app_servers "$app")
    for name in $servers; do
        alloc_port
        PORT[$name]=$ALLOC
        start_server "$name" "$app" "$ALLOC"
    done
    for name in $servers; do wait_ready "$name" "$app"; done
    log "$app: all servers answer 200"
    if [ "$WARMUP" != 0 ]; then
        for name in $servers; do run_load "$name" "$app" warmup "$WARMUP"; done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for name in $servers; do
            run_load "$name" "$app" "$r" "$DURATION"
            sleep 0.2
        done
    done
    for name in $servers; do
        is_alive "${PID[$name]}" || log "warning: $name ($app) died during the run"
        stop_server "$name"
    done
done

# ============================================================== summary ====
col() {  # col SERVER APP FIELD(4=rps 5=p99 6=errors)
    awk -F'\t' -v s="$1" -v a="$2" -v f="$3" '$1 == s && $2 == a && $f != "" { print $f }' "$RES"
}
ratios() {  # ratios PEER APP -> per-round ferricorn/PEER
    awk -F'\t' -v p="$1" -v a="$2" '
        $2 == a && $1 == "ferricorn" && $4 != "" { f[$3] = $4 }
        $2 == a && $1 == p && $4 != "" { b[$3] = $4 }
        END { for (r in f) if ((r in b) && b[r] > 0) printf "%.3f\n", f[r] / b[r] }' "$RES"
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN { if (x == "") print "n/a"; else printf "%." p "f", x }'; }
target() {  # issue 15's target for ferricorn/PEER on APP, or -
    case "$1/$2" in
        hello/granian | fastapi/granian) echo ">=1.2" ;;
        hello/uvicorn | fastapi/uvicorn) echo ">=1.5" ;;
        ws/granian) echo ">=1.0" ;;
        *) echo "-" ;;
    esac
}

ALL="ferricorn uvicorn granian gunicorn"
{
    echo
    echo "== ASGI: requests/s (ws: round trips/s), loopback, 1 client thread, -c$CONNECTIONS, $WORKERS workers, median of $ROUNDS x ${DURATION}s =="
    printf '%-8s |' app
    for name in $ALL; do printf ' %10s' "$name"; done
    printf ' | %9s %9s %9s | %s\n' f/uvicorn f/granian f/gunicorn "errors (per server, summed over rounds)"
    for app in $APPS; do
        printf '%-8s |' "$app"
        for name in $ALL; do printf ' %10s' "$(fmt "$(col "$name" "$app" 4 | median)" 0)"; done
        printf ' |'
        for p in uvicorn granian gunicorn; do printf ' %9s' "$(fmt "$(ratios "$p" "$app" | median)" 2)"; done
        printf ' |'
        for name in $ALL; do
            e=$(col "$name" "$app" 6 | awk '{ s += $1 } END { if (NR) print s + 0 }')
            [ -n "$e" ] && printf ' %s %s;' "$name" "$e"
        done
        printf '\n'
    done
    echo "(f/X = median of per-round ferricorn/X; n/a = not run: ferricorn without an ASGI"
    echo " worker, or gunicorn on ws. hello = raw ASGI, fastapi = GET /json, django = async"
    echo " view GET /async/hello/, ws = WebSocket echo of 16-byte text messages; wsrust = the"
    echo " same peers, ferricorn running its built-in Rust echo app instead of ASGI.)"
    echo
    echo "issue 15's targets (ferricorn/peer):"
    for app in $APPS; do
        for p in uvicorn granian; do
            t=$(target "$app" "$p")
            [ "$t" = - ] && continue
            printf '  %-8s vs %-8s %-6s measured %s\n' "$app" "$p" "$t" "$(fmt "$(ratios "$p" "$app" | median)" 2)"
        done
    done
    echo
    echo "p99 latency (ms), median:"
    for app in $APPS; do
        printf '  %-8s |' "$app"
        for name in $ALL; do printf ' %s %s;' "$name" "$(fmt "$(col "$name" "$app" 5 | median)" 2)"; done
        printf '\n'
    done
    echo
    echo "$VERSIONS; $("$VENV/bin/python" -V 2>&1)"
    echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cpus); $((SECONDS - T0)) s"
    echo "raw outputs, per-round table ($RES) and server logs: $RUN"
} | tee "$RUN/summary.txt"
