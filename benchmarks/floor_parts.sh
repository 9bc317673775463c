#!/bin/bash
# Where the floor of a durable post goes (benchmarks/floor_app.py): POST /v1/posts with
# --write none (HTTP and the JSON parse), unsynced (+ homefeed's SQLite writer thread and
# the commit, no fsync) and durable (+ the fsync), wrk -t1 -c32 -d6s (wrk/post.lua), in
# turns, ROUNDS times; per run: req/s and the server's CPU per request (user + system).
#   benchmarks/floor_parts.sh /tmp/hf14world 3
set -eu
WORLD=$1; ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'pkill -f "floor_app.py --port 8197" 2>/dev/null || true; rm -rf "$TMP"' EXIT
sed -n 2,3001p "$WORLD/demo-tokens.tsv" | cut -f2 > "$TMP/tokens.txt"
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq 1 "$ROUNDS"); do
  for write in none unsynced durable; do
    rm -rf "$TMP/data"
    PYTHONPATH=$ROOT/src "$ROOT/.venv/bin/python" "$ROOT/benchmarks/floor_app.py" --port 8197 \
      --data-dir "$TMP/data" --write "$write" > "$TMP/server.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 60); do curl -s -o /dev/null http://127.0.0.1:8197/healthz && break; sleep 0.25; done
    TOKENS=$TMP/tokens.txt wrk -t1 -c32 -d2s -s "$ROOT/benchmarks/wrk/post.lua" http://127.0.0.1:8197 > /dev/null
    c0=$(cpu $PID)
    out=$(TOKENS=$TMP/tokens.txt wrk -t1 -c32 -d6s -s "$ROOT/benchmarks/wrk/post.lua" http://127.0.0.1:8197)
    c1=$(cpu $PID)
    n=$(echo "$out" | awk '/requests in/{print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    echo "round $r $write: $rps req/s, $(( (c1 - c0) * 1000000 / TICK / n )) µs of server CPU per request"
    kill $PID; wait $PID 2>/dev/null || true
  done
done
