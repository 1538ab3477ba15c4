#!/bin/bash
# Interleaved short wrk rounds (issue 16 cost): MAIN = a build of main without
# the accounting, MINE = this tree (release); "status" adds --status-bind and
# scrapes /metrics every second. Prints "variant requests/s" per round.
# Usage: MAIN=/path/to/old/ferricorn ROUNDS=8 benches/observe-wrk.sh
MAIN=${MAIN:?set MAIN to a ferricorn binary built from main}
MINE=${MINE:-$(dirname "$0")/../target/release/ferricorn}
run() { # name bin extra...
  local name=$1 bin=$2; shift 2
  local port=$((20000 + RANDOM % 20000)) sport=$((40000 + RANDOM % 20000))
  local extra=("$@")
  extra=("${extra[@]//SPORT/$sport}")
  $bin -w 2 -b 127.0.0.1:$port "${extra[@]}" hello >/dev/null 2>&1 &
  local pid=$!
  for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.05; done
  local scr=
  if [ "$name" = status ]; then (while kill -0 $pid 2>/dev/null; do curl -s -o /dev/null 127.0.0.1:$sport/metrics; sleep 1; done) & scr=$!; fi
  local rps=$(wrk -t2 -c32 -d3s http://127.0.0.1:$port/ | awk '/Requests\/sec/ {print $2}')
  kill $pid; wait $pid 2>/dev/null; [ -n "$scr" ] && kill $scr 2>/dev/null
  echo "$name $rps"
}
for r in $(seq ${ROUNDS:-6}); do
  run main $MAIN
  run observe $MINE
  run status $MINE --status-bind 127.0.0.1:SPORT

done
