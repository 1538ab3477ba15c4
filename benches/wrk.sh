#!/usr/bin/env bash
# benches/wrk.sh: ferricorn vs nginx on loopback, with wrk, in one interleaved run.
#
# Both servers answer GET / with "Hello, World!" (13 bytes, text/plain):
#   ferricorn  target/release/ferricorn --bind 127.0.0.1:PORT --workers 2 hello
#   nginx      worker_processes 2; `return 200 "Hello, World!"` (private prefix in
#              a temp dir, daemon off, access log off)
#
# Workloads (wrk, one thread; every run bounded by -d DURATION):
#   ka      keep-alive        wrk -t1 -c64 --latency
#   pipe16  pipelined x16     wrk -t1 -c64 --latency -s benches/pipeline.lua -- 16
#   close   no keep-alive     wrk -t1 -c16 --latency -H 'Connection: close'
# Order: for each round, for each workload: ferricorn, nginx (F N F N ...).
# Reported: the median over ROUNDS of requests/s and p99 latency per server, and
# the ferricorn/nginx ratio (median of the per-round ratios, so slow drifts of
# the machine cancel out). For p99 a ratio above 1 means ferricorn is slower.
#
# Also measured (ferricorn; nginx alongside where it is cheap):
#   idle RSS     VmRSS of the master and of each worker (/proc/PID/status), after
#                start-up and before any load
#   launch       exec -> first "200" response, polled with a tight bash loop of
#                connect + GET (no forks in the loop); LAUNCHES launches, median
#   spread       during every keep-alive run, wrk's 64 ESTABLISHED connections are
#                counted per server process (`ss -tnp`, sampled mid-run); reported:
#                the busiest worker's share of the 64 (50% = perfectly even for 2
#                workers, 100% = one worker holds every connection)
#
# Usage:
#   benches/wrk.sh                         # build --release, 3 rounds x 5 s (~2.5 min)
#   ROUNDS=5 DURATION=10 benches/wrk.sh
#   WORKLOADS='ka pipe16' benches/wrk.sh
#   FERRICORN_BIN=path/to/ferricorn benches/wrk.sh     # skip the build
#
# Environment (all optional):
#   ROUNDS=3  DURATION=5 (s per wrk run)  WORKERS=2  LAUNCHES=5
#   WORKLOADS='ka pipe16 close'  WARMUP=1 (s, once per server and workload)
#   FERRICORN_BIN (default: build with cargo; CARGO_TARGET_DIR is honoured)
#   OUT_DIR (default: a fresh temp dir; raw wrk outputs and server logs stay there)
#
# Only loopback is used. Every process started here is stopped by PID (TERM, then
# KILL after 5 s) on exit, error or Ctrl-C. Needs: wrk, nginx, ss (iproute2),
# cargo unless FERRICORN_BIN is set. Run as root for `ss -p` to see the owning
# processes (otherwise the spread column is empty).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WORKERS=${WORKERS:-2}
LAUNCHES=${LAUNCHES:-5}
WARMUP=${WARMUP:-1}
WORKLOADS=${WORKLOADS:-ka pipe16 close}
SERVERS="ferricorn nginx"
STOP_TIMEOUT_S=5

log() { printf '[wrk.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for t in wrk nginx ss awk; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y wrk nginx-light iproute2)"
done

# ---------------------------------------------------------------- build ----
. "$HERE/common.sh"
ferricorn_bin

RUN=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ferricorn-wrk.XXXXXX")}
mkdir -p "$RUN/raw" "$RUN/logs"
RES="$RUN/results.tsv"        # server workload round rps p99_ms errors spread_pct
: >"$RES"

# ------------------------------------------------------------ processes ----
declare -A PID=()             # server name -> pid of the process we launched
WRK_PID=""

descendants() {  # all descendants of the given PIDs (via /proc/PID/task/*/children)
    local p c
    for p in "$@"; do
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
            echo "$c"
            descendants "$c"
        done
    done
}

stop_pid() {  # stop_pid PID: TERM, wait up to STOP_TIMEOUT_S, then KILL it and its children
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
    for k in $kids; do
        if is_alive "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    wait "$p" 2>/dev/null || true
}

stop_server() {
    local name=$1
    if [ -n "${PID[$name]:-}" ]; then stop_pid "${PID[$name]}"; PID[$name]=""; fi
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

# ---------------------------------------------------------------- ports ----
port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }
NEXT_PORT=$((21000 + ($$ % 400) * 20))   # below the ephemeral range
alloc_port() {
    while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    ALLOC=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# ---------------------------------------------------------------- nginx ----
NGX_PREFIX="$RUN/nginx"
mkdir -p "$NGX_PREFIX/logs"
USER_LINE=""
if [ "$(id -u)" = 0 ]; then USER_LINE="user root;"; fi   # workers can read the temp prefix
write_nginx_conf() {  # write_nginx_conf PORT
    cat >"$NGX_PREFIX/nginx.conf" <<EOF
$USER_LINE
worker_processes $WORKERS;
daemon off;
pid $NGX_PREFIX/nginx.pid;
error_log $NGX_PREFIX/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX_PREFIX/client_body;
    proxy_temp_path $NGX_PREFIX/proxy;
    fastcgi_temp_path $NGX_PREFIX/fastcgi;
    uwsgi_temp_path $NGX_PREFIX/uwsgi;
    scgi_temp_path $NGX_PREFIX/scgi;
    # default 1000: nginx would close busy keep-alive connections mid-run
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$1;
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
}

start_server() {  # start_server NAME PORT (returns at once; see wait_ready)
    local name=$1 port=$2
    case $name in
        ferricorn)
            "$FERRICORN_BIN" --bind "127.0.0.1:$port" --workers "$WORKERS" hello \
                >>"$RUN/logs/ferricorn.log" 2>&1 &
            ;;
        nginx)
            write_nginx_conf "$port"
            nginx -p "$NGX_PREFIX" -c "$NGX_PREFIX/nginx.conf" >>"$RUN/logs/nginx.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
}

# get200 PORT: one connect + GET; true if the status line is "HTTP/1.x 200".
# Pure bash (/dev/tcp), so polling costs no fork per attempt.
get200() {
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 2>/dev/null || { exec 3<&-; return 1; }
    read -r -t 5 line <&3 || true
    exec 3<&-
    [[ $line == HTTP/1.?" 200"* ]]
}

# wait_ready NAME PORT T0_US: poll until the first 200; prints ms since T0_US.
wait_ready() {
    local name=$1 port=$2 t0=$3 now
    while :; do
        if get200 "$port"; then
            now=${EPOCHREALTIME/[.,]/}
            awk -v d=$((now - t0)) 'BEGIN { printf "%.2f\n", d / 1000 }'
            return 0
        fi
        if ! is_alive "${PID[$name]}"; then log "$name exited; see $RUN/logs/$name.log"; return 1; fi
        now=${EPOCHREALTIME/[.,]/}
        if ((now - t0 > 10000000)); then log "$name not ready after 10 s"; return 1; fi
    done
}

# ---------------------------------------------------------------- stats ----
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print ""; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# conn_share PORT: the busiest process's share of the connections to PORT.

to_ms() {  # wrk latency ("812.00us", "1.23ms", "2.00s", "1.00m") -> ms
    awk -v x="$1" 'BEGIN {
        if (x ~ /us$/) { sub(/us$/, "", x); printf "%.3f", x / 1000 }
        else if (x ~ /ms$/) { sub(/ms$/, "", x); printf "%.3f", x }
        else if (x ~ /m$/) { sub(/m$/, "", x); printf "%.3f", x * 60000 }
        else if (x ~ /s$/) { sub(/s$/, "", x); printf "%.3f", x * 1000 }
        else printf "" }'
}

wrk_args() {  # wrk_args WORKLOAD -> the workload's wrk flags (one per line)
    case $1 in
        ka) printf '%s\n' -t1 -c64 --latency ;;
        pipe16) printf '%s\n' -t1 -c64 --latency -s "$HERE/pipeline.lua" ;;
        close) printf '%s\n' -t1 -c16 --latency -H 'Connection: close' ;;
        *) die "unknown workload $1" ;;
    esac
}

# run_wrk SERVER WORKLOAD ROUND SECONDS: one wrk run; appends a row to $RES
# unless ROUND is "warmup".
run_wrk() {
    local name=$1 wl=$2 round=$3 secs=$4 out spread="" rps p99 errs
    local -a args
    mapfile -t args < <(wrk_args "$wl")
    out="$RUN/raw/$name-$wl-$round.txt"
    local -a tail=()
    if [ "$wl" = pipe16 ]; then tail=(-- 16); fi
    wrk "${args[@]}" -d "${secs}s" "http://127.0.0.1:${PORT[$name]}/" "${tail[@]}" >"$out" 2>&1 &
    WRK_PID=$!
    if [ "$wl" = ka ] && [ "$round" != warmup ]; then
        # sample the spread mid-run, once all 64 connections are up
        sleep "$(awk -v d="$secs" 'BEGIN { print d / 2 }')"
        spread=$(conn_share "${PORT[$name]}")
        echo "$spread" >"$RUN/raw/$name-$wl-$round.spread"
    fi
    wait "$WRK_PID" || log "warning: wrk exited non-zero ($out)"
    WRK_PID=""
    [ "$round" = warmup ] && return 0
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' "$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wl" "$round" "${rps:-}" "${p99:-}" "${errs:-0}" "${spread%% *}" >>"$RES"
    log "$(printf '%-9s %-6s round %s: %10s req/s  p99 %8s ms%s' "$name" "$wl" "$round" "${rps:-?}" "${p99:-?}" \
        "${spread:+  (busiest process: ${spread%% *}% of the connections)}")"
}

# ============================================================== the run ====
log "results and raw outputs: $RUN"
log "ferricorn: $FERRICORN_BIN ($("$FERRICORN_BIN" --version 2>/dev/null || echo '?'))"
log "$(nginx -v 2>&1); $(wrk -v 2>&1 | head -1)"
log "rounds=$ROUNDS duration=${DURATION}s workers=$WORKERS workloads='$WORKLOADS' cpus=$(nproc)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE"
{
    echo "date: $(date -Is)"
    echo "uname: $(uname -srm)"
    echo "cpus: $(nproc)"
    echo "ferricorn: $FERRICORN_BIN"
    echo "rounds=$ROUNDS duration=$DURATION workers=$WORKERS workloads=$WORKLOADS"
} >"$RUN/meta.txt"

# ---- launch time: exec -> first 200, LAUNCHES times each (one server at a time)
declare -A PORT=() LAUNCH_MS=()
for name in $SERVERS; do
    ms_list=""
    for ((i = 1; i <= LAUNCHES; i++)); do
        alloc_port
        t0=${EPOCHREALTIME/[.,]/}
        start_server "$name" "$ALLOC"
        ms=$(wait_ready "$name" "$ALLOC" "$t0") || die "$name did not start"
        ms_list="$ms_list $ms"
        PORT[$name]=$ALLOC
        if ((i < LAUNCHES)); then stop_server "$name"; fi
    done
    LAUNCH_MS[$name]=$(printf '%s\n' $ms_list | median)
    log "$name launch -> first 200 (ms):$ms_list; median ${LAUNCH_MS[$name]}"
    echo "launch_ms $name$ms_list" >>"$RUN/meta.txt"
done

# ---- idle RSS (both servers up, no load yet; give the workers a moment to settle)
sleep 0.5
declare -A RSS_LINE=()
for name in $SERVERS; do
    m=${PID[$name]}
    line="master $m: $(rss_kb "$m") kB"
    total=$(rss_kb "$m")
    for w in $(cat /proc/"$m"/task/*/children 2>/dev/null); do
        kb=$(rss_kb "$w")
        line="$line; worker $w: $kb kB"
        total=$((total + kb))
    done
    RSS_LINE[$name]="$line; total $total kB"
    log "$name idle RSS: ${RSS_LINE[$name]}"
    echo "rss $name ${RSS_LINE[$name]}" >>"$RUN/meta.txt"
done

# ---- warm-up, then ROUNDS interleaved rounds
if [ "$WARMUP" != 0 ]; then
    for wl in $WORKLOADS; do
        for name in $SERVERS; do run_wrk "$name" "$wl" warmup "$WARMUP"; done
    done
fi
for ((r = 1; r <= ROUNDS; r++)); do
    for wl in $WORKLOADS; do
        for name in $SERVERS; do
            run_wrk "$name" "$wl" "$r" "$DURATION"
            sleep 0.2
        done
    done
done

for name in $SERVERS; do
    if ! is_alive "${PID[$name]}"; then log "warning: $name died during the run"; fi
done

# ============================================================== summary ====
col() {  # col SERVER WORKLOAD FIELD(4=rps 5=p99 6=errors 7=spread) -> values, one per line
    awk -F'\t' -v s="$1" -v w="$2" -v f="$3" '$1 == s && $2 == w && $f != "" { print $f }' "$RES"
}
ratios() {  # ratios WORKLOAD FIELD -> per-round ferricorn/nginx
    awk -F'\t' -v w="$1" -v f="$2" '
        $2 == w && $1 == "ferricorn" { a[$3] = $f }
        $2 == w && $1 == "nginx" { b[$3] = $f }
        END { for (r in a) if ((r in b) && b[r] > 0 && a[r] != "") printf "%.3f\n", a[r] / b[r] }' "$RES"
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN { if (x == "") print "-"; else printf "%." p "f", x }'; }

{
    echo
    echo "== ferricorn vs nginx: loopback, wrk -t1, $WORKERS workers each, median of $ROUNDS x ${DURATION}s =="
    printf '%-8s | %12s %12s %7s | %10s %10s %7s | %6s %6s\n' \
        workload "ferricorn/s" "nginx/s" "ratio" "f p99 ms" "n p99 ms" "ratio" "f err" "n err"
    printf '%s\n' "---------+-----------------------------------+--------------------------------+--------------"
    for wl in $WORKLOADS; do
        printf '%-8s | %12s %12s %7s | %10s %10s %7s | %6s %6s\n' "$wl" \
            "$(fmt "$(col ferricorn "$wl" 4 | median)" 0)" \
            "$(fmt "$(col nginx "$wl" 4 | median)" 0)" \
            "$(fmt "$(ratios "$wl" 4 | median)" 2)" \
            "$(fmt "$(col ferricorn "$wl" 5 | median)" 2)" \
            "$(fmt "$(col nginx "$wl" 5 | median)" 2)" \
            "$(fmt "$(ratios "$wl" 5 | median)" 2)" \
            "$(col ferricorn "$wl" 6 | awk '{ s += $1 } END { print s + 0 }')" \
            "$(col nginx "$wl" 6 | awk '{ s += $1 } END { print s + 0 }')"
    done
    echo "(ratio = median of per-round ferricorn/nginx; for p99, > 1 means ferricorn is slower;"
    echo " err = wrk socket errors + non-2xx responses, summed over rounds)"
    echo
    printf '%-10s | %16s | %-60s\n' server "launch->200 ms" "idle RSS (VmRSS)"
    for name in $SERVERS; do
        printf '%-10s | %16s | %s\n' "$name" "${LAUNCH_MS[$name]}" "${RSS_LINE[$name]}"
    done
    echo "(launch: median of $LAUNCHES launches, exec -> first 200, polled by connect+GET)"
    echo
    for name in $SERVERS; do
        if ls "$RUN"/raw/"$name"-ka-*.spread >/dev/null 2>&1; then
            per=$(for f in "$RUN"/raw/"$name"-ka-*.spread; do
                read -r pct m n k <"$f" || true
                [ -n "${pct:-}" ] && printf '%s%% (%s of %s conns, %s procs)  ' "$pct" "$m" "$n" "$k"
            done)
            med=$(cat "$RUN"/raw/"$name"-ka-*.spread | awk 'NF { print $1 }' | median)
            printf 'keep-alive spread, %-9s: busiest process median %s%%; per round: %s\n' "$name" "${med:--}" "$per"
        fi
    done
    echo "(ss -tnp mid-run: share of wrk's 64 established connections held by the busiest worker;"
    echo " 50% is an even split over 2 workers)"
    echo
    echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cpus)"
    echo "raw wrk outputs, per-round table ($RES) and server logs: $RUN"
} | tee "$RUN/summary.txt"
