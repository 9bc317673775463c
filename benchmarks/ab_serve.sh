#!/bin/bash
# One A/B leg: `homefeed serve` from a source tree on a copy of a demo world, then
# /healthz, the native home and the Mastodon home (identity), wrk -t1 -c32 -d6s each.
# Run legs of two trees in turns and compare medians (this is how session 12 chose
# entrypoints/coalesce.py; benchmarks/results/issue14_table_s12.txt):
#   git archive <commit> src | tar -x -C /tmp/base
#   for i in 1 2 3; do benchmarks/ab_serve.sh /tmp/hf14world /tmp/base/src 8301
#                      benchmarks/ab_serve.sh /tmp/hf14world "$PWD/src" 8302; done
# The world: .venv/bin/homefeed demo --no-serve --data-dir /tmp/hf14world
set -eu
WORLD=$1; SRC=$2; PORT=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
cp "$WORLD"/homefeed.db* "$TMP"/
sed -n 2,3001p "$WORLD/demo-tokens.tsv" | cut -f2 > "$TMP/tokens.txt"
PYTHONPATH=$SRC HOMEFEED_LOG_LEVEL=WARNING "$ROOT/.venv/bin/python" -m homefeed serve \
  --data-dir "$TMP" --port "$PORT" > "$TMP/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
rate() { awk '/Requests\/sec/{print $2}'; }
TOKENS=$TMP/tokens.txt wrk -t1 -c32 -d4s -s "$ROOT/benchmarks/wrk/home.lua" "http://127.0.0.1:$PORT" > /dev/null  # warm
H=$(wrk -t1 -c32 -d6s "http://127.0.0.1:$PORT/healthz" | rate)
T=$(TOKENS=$TMP/tokens.txt wrk -t1 -c32 -d6s -s "$ROOT/benchmarks/wrk/home.lua" "http://127.0.0.1:$PORT" | rate)
M=$(TOKENS=$TMP/tokens.txt wrk -t1 -c32 -d6s -s "$ROOT/benchmarks/wrk/mastodon_home.lua" "http://127.0.0.1:$PORT" | rate)
echo "healthz $H home $T mastodon $M"
