#!/usr/bin/env bash
# benches/python.sh: ferricorn's WSGI path vs gunicorn, granian and bjoern, on
# loopback, with wrk, in one interleaved run.
#
# Apps (the same files for every server):
#   hello   tests/python/apps/hello.py (hello:application): 13-byte text/plain
#           body with Content-Length, GET /
#   django  tests/python/djangoapp (djangoproject.wsgi:application): the view
#           GET /hello/ through Django's URL resolver and middleware
#           (CommonMiddleware, CsrfViewMiddleware), DEBUG=False
#
# Servers (all on 127.0.0.1:PORT, access logs off, one app at a time):
#   ferricorn  VIRTUAL_ENV=$VENV ferricorn --workers 2 --chdir DIR APP
#   granian    granian --interface wsgi --workers 2 --working-dir DIR APP
#   bjoern     tests/python/bench/bjoern_serve.py APP HOST PORT 2 (listen, then
#              fork 2 processes that all run bjoern on the socket; best effort:
#              left out if `pip install bjoern` fails, e.g. no libev-dev)
#   gunicorn   gunicorn --worker-class sync --workers $((2 * nproc + 1)) --chdir DIR APP
#   ferricorn1 (only when named in SERVERS) ferricorn with --workers 1: the
#              layout a peer ends up with when one of its processes takes
#              every connection (see the spread line of the summary)
# ferricorn, granian and bjoern get WORKERS (2) processes, gunicorn sync the
# count its docs recommend. gunicorn's sync worker does not keep connections
# alive, so its keep-alive row measures a connection per request.
#
# Workloads (wrk, one thread; every run bounded by -d DURATION):
#   ka      keep-alive        wrk -t1 -c64 --latency
#   close   no keep-alive     wrk -t1 -c16 --latency -H 'Connection: close'
# Order: for each app, the servers are started together; then for each round,
# for each workload, every server in turn. Reported: median requests/s over
# ROUNDS, and ferricorn's ratio to each peer (median of the per-round ratios).
#
# Usage:
#   benches/python.sh                        # build, venv, 3 rounds x 5 s: ~4.5 min
#   FERRICORN_BIN=path/to/ferricorn benches/python.sh   # skip the build
#   APPS=hello SERVERS='ferricorn bjoern' ROUNDS=1 benches/python.sh
#
# Environment (all optional):
#   ROUNDS=3 DURATION=5 (s) WARMUP=1 (s, once per server, app and workload)
#   WORKERS=2  APPS='hello django'  WORKLOADS='ka close'
#   SERVERS='ferricorn granian bjoern gunicorn'
#   FERRICORN_BIN (default: cargo build --release --features python; honours
#     CARGO_TARGET_DIR)
#   BENCH_VENV (default: <repo>/target/py-bench-venv; created with
#     $PYO3_PYTHON or python3 from tests/python/requirements-bench.txt, plus
#     bjoern if it builds). Separate from the test venv (target/py-venv).
#   OUT_DIR (default: a fresh temp dir; raw wrk outputs and server logs)
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
APPS=${APPS:-hello django}
WORKLOADS=${WORKLOADS:-ka close}
SERVERS=${SERVERS:-ferricorn granian bjoern gunicorn}
VENV=${BENCH_VENV:-$ROOT/target/py-bench-venv}
GUNICORN_WORKERS=$((2 * $(nproc) + 1))
STOP_TIMEOUT_S=5

log() { printf '[python.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for t in wrk ss awk; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y wrk iproute2)"
done

# ---------------------------------------------------------------- build ----
. "$HERE/common.sh"
ferricorn_bin --features python

# ----------------------------------------------------------------- venv ----
bench_venv
if ! "$VENV/bin/python" -c 'import bjoern' 2>/dev/null; then
    log "bjoern is not installed in $VENV: left out (apt-get install -y libev-dev, then rm -r $VENV)"
    SERVERS=$(printf '%s\n' $SERVERS | grep -vx bjoern | tr '\n' ' ')
fi
REF=bjoern
case " $SERVERS " in *" bjoern "*) ;; *) REF=granian ;; esac

RUN=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-python-bench.XXXXXX")}
mkdir -p "$RUN/raw" "$RUN/logs"
RES="$RUN/results.tsv"        # server app workload round rps p99_ms errors busiest_pct
: >"$RES"

# ------------------------------------------------------------ processes ----
declare -A PID=() PORT=()
WRK_PID=""

stop_server() {
    if [ -n "${PID[$1]:-}" ]; then stop_pid "${PID[$1]}"; PID[$1]=""; fi
}

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    if [ -n "$WRK_PID" ] && is_alive "$WRK_PID"; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for name in "${!PID[@]}"; do stop_server "$name"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }
NEXT_PORT=$((23000 + ($$ % 400) * 20))   # below the ephemeral range
alloc_port() {
    while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    ALLOC=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

app_dir() { case $1 in hello) echo "$ROOT/tests/python/apps" ;; django) echo "$ROOT/tests/python/djangoapp" ;; esac; }
app_spec() { case $1 in hello) echo "hello:application" ;; django) echo "djangoproject.wsgi:application" ;; esac; }
app_path() { case $1 in hello) echo "/" ;; django) echo "/hello/" ;; esac; }

start_server() {  # start_server NAME APP PORT (returns at once)
    local name=$1 app=$2 port=$3 dir spec logf
    dir=$(app_dir "$app")
    spec=$(app_spec "$app")
    logf="$RUN/logs/$name-$app.log"
    case $name in
        ferricorn | ferricorn1)
            local n=$WORKERS
            [ "$name" = ferricorn1 ] && n=1
            VIRTUAL_ENV="$VENV" "$FERRICORN_BIN" --bind "127.0.0.1:$port" --workers "$n" \
                --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
        granian)
            "$VENV/bin/granian" --interface wsgi --workers "$WORKERS" --host 127.0.0.1 \
                --port "$port" --working-dir "$dir" --no-access-log "$spec" >>"$logf" 2>&1 &
            ;;
        bjoern)
            (cd "$dir" && exec "$VENV/bin/python" "$ROOT/tests/python/bench/bjoern_serve.py" \
                "$spec" 127.0.0.1 "$port" "$WORKERS") >>"$logf" 2>&1 &
            ;;
        gunicorn)
            "$VENV/bin/gunicorn" --worker-class sync --workers "$GUNICORN_WORKERS" \
                --bind "127.0.0.1:$port" --chdir "$dir" "$spec" >>"$logf" 2>&1 &
            ;;
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
    local name=$1 app=$2 t
    for ((t = 0; t < 300; t++)); do
        get200 "${PORT[$name]}" "$(app_path "$app")" && return 0
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

# conn_share PORT: the busiest process's share of the connections to PORT.

run_wrk() {  # run_wrk SERVER APP WORKLOAD ROUND SECONDS
    local name=$1 app=$2 wl=$3 round=$4 secs=$5 out rps p99 errs spread=
    local -a args
    case $wl in
        ka) args=(-t1 -c64 --latency) ;;
        close) args=(-t1 -c16 --latency -H 'Connection: close') ;;
        *) die "unknown workload $wl" ;;
    esac
    out="$RUN/raw/$name-$app-$wl-$round.txt"
    wrk "${args[@]}" -d "${secs}s" "http://127.0.0.1:${PORT[$name]}$(app_path "$app")" >"$out" 2>&1 &
    WRK_PID=$!
    if [ "$wl" = ka ] && [ "$round" != warmup ]; then
        # Mid-run, once all 64 connections are up: how they are spread over
        # the server's processes (a peer that leaves one process with all
        # of them has the other core to itself, next to wrk on this box).
        sleep "$(awk -v d="$secs" 'BEGIN { print d / 2 }')"
        spread=$(conn_share "${PORT[$name]}")
    fi
    wait "$WRK_PID" || log "warning: wrk exited non-zero ($out)"
    WRK_PID=""
    [ "$round" = warmup ] && return 0
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' "$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$app" "$wl" "$round" "${rps:-}" "${p99:-}" "${errs:-0}" "${spread%% *}" >>"$RES"
    log "$(printf '%-9s %-6s %-5s round %s: %10s req/s  p99 %8s ms  errors %s%s' "$name" "$app" "$wl" "$round" "${rps:-?}" "${p99:-?}" "$errs" \
        "${spread:+  busiest process: ${spread%% *}% of the connections}")"
}

# ============================================================== the run ====
log "results and raw outputs: $RUN"
log "ferricorn: $FERRICORN_BIN; venv: $VENV ($("$VENV/bin/python" -V 2>&1))"
VERSIONS=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
out = []
for p in ("Django", "gunicorn", "granian", "bjoern"):
    try:
        out.append(f"{p} {m.version(p)}")
    except m.PackageNotFoundError:
        pass
print(", ".join(out))
EOF
)
log "$VERSIONS; $(wrk -v 2>&1 | head -1)"
log "rounds=$ROUNDS duration=${DURATION}s workers=$WORKERS (gunicorn $GUNICORN_WORKERS) apps='$APPS' servers='$SERVERS' cpus=$(nproc)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

for app in $APPS; do
    for name in $SERVERS; do
        alloc_port
        PORT[$name]=$ALLOC
        start_server "$name" "$app" "$ALLOC"
    done
    for name in $SERVERS; do wait_ready "$name" "$app"; done
    log "$app: all servers answer 200"
    if [ "$WARMUP" != 0 ]; then
        for wl in $WORKLOADS; do
            for name in $SERVERS; do run_wrk "$name" "$app" "$wl" warmup "$WARMUP"; done
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for wl in $WORKLOADS; do
            for name in $SERVERS; do
                run_wrk "$name" "$app" "$wl" "$r" "$DURATION"
                sleep 0.2
            done
        done
    done
    for name in $SERVERS; do
        is_alive "${PID[$name]}" || log "warning: $name ($app) died during the run"
        stop_server "$name"
    done
done

# ============================================================== summary ====
col() {  # col SERVER APP WORKLOAD FIELD(5=rps 6=p99 7=errors 8=busiest process %)
    awk -F'\t' -v s="$1" -v a="$2" -v w="$3" -v f="$4" '$1 == s && $2 == a && $3 == w && $f != "" { print $f }' "$RES"
}
ratios() {  # ratios PEER APP WORKLOAD -> per-round ferricorn/PEER requests/s
    awk -F'\t' -v p="$1" -v a="$2" -v w="$3" '
        $2 == a && $3 == w && $1 == "ferricorn" { f[$4] = $5 }
        $2 == a && $3 == w && $1 == p { b[$4] = $5 }
        END { for (r in f) if ((r in b) && b[r] > 0 && f[r] != "") printf "%.3f\n", f[r] / b[r] }' "$RES"
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN { if (x == "") print "-"; else printf "%." p "f", x }'; }

PEERS=$(printf '%s\n' $SERVERS | grep -vx ferricorn | tr '\n' ' ')
{
    echo
    echo "== WSGI: requests/s, loopback, wrk -t1, median of $ROUNDS x ${DURATION}s =="
    printf '%-6s %-5s |' app load
    for name in $SERVERS; do printf ' %10s' "$name"; done
    printf ' |'
    for p in $PEERS; do printf ' %12s' "f/$p"; done
    printf ' | %s\n' "errors"
    for app in $APPS; do
        for wl in $WORKLOADS; do
            printf '%-6s %-5s |' "$app" "$wl"
            for name in $SERVERS; do printf ' %10s' "$(fmt "$(col "$name" "$app" "$wl" 5 | median)" 0)"; done
            printf ' |'
            for p in $PEERS; do printf ' %12s' "$(fmt "$(ratios "$p" "$app" "$wl" | median)" 2)"; done
            printf ' |'
            for name in $SERVERS; do printf ' %s' "$(col "$name" "$app" "$wl" 7 | awk '{ s += $1 } END { print s + 0 }')"; done
            printf '\n'
        done
    done
    echo "(f/X = median of per-round ferricorn/X; ka = keep-alive -c64, close = Connection: close -c16;"
    echo " errors = wrk socket errors + non-2xx per server, in the column order, summed over rounds;"
    echo " reference peer: $REF; gunicorn sync has $GUNICORN_WORKERS workers, the others $WORKERS)"
    echo
    echo "p99 latency (ms), median:"
    for app in $APPS; do
        for wl in $WORKLOADS; do
            printf '  %-6s %-5s |' "$app" "$wl"
            for name in $SERVERS; do printf ' %s %s;' "$name" "$(fmt "$(col "$name" "$app" "$wl" 6 | median)" 2)"; done
            printf '\n'
        done
    done
    if printf '%s\n' $WORKLOADS | grep -qx ka; then
        echo
        echo "keep-alive: the busiest process's share of wrk's 64 connections (ss mid-run;"
        echo "50% = even over 2 processes), min-max over rounds:"
        for app in $APPS; do
            printf '  %-6s ka    |' "$app"
            for name in $SERVERS; do
                printf ' %s %s;' "$name" "$(col "$name" "$app" ka 8 | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s-%s%%", lo, hi; else print "-" }')"
            done
            printf '\n'
        done
    fi
    echo
    echo "$VERSIONS; $("$VENV/bin/python" -V 2>&1)"
    echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cpus); $((SECONDS - T0)) s"
    echo "raw wrk outputs, per-round table ($RES) and server logs: $RUN"
} | tee "$RUN/summary.txt"
