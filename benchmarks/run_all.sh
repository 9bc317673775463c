#!/bin/sh
# Every benchmark behind benchmarks/RESULTS.md, in the order run. ~30 minutes on 2 cores.
# Worlds live in /tmp/hfbench (hundreds of MB); results in benchmarks/results, charts in
# benchmarks/charts. Every server is started on 127.0.0.1 and stopped by the bench itself.
set -e
cd "$(dirname "$0")/.."
HF=.venv/bin/homefeed
R=benchmarks/results
mkdir -p $R benchmarks/charts /tmp/hfbench

# 1. the 100,000-user power-law world (exponent 2.1, 30 follows per user on average, 500k posts)
[ -f /tmp/hfbench/w100k/world.json ] || \
  $HF bench world --data-dir /tmp/hfbench/w100k --users 100000 --mean-following 30 --posts 500000 --seed 1 \
    > $R/world_100k.log 2>&1

# 2. pull vs push vs hybrid: capacity (home p99 < 50 ms, 65 home reads : 1 post) and server
#    CPU per request at 200 req/s; 3 repeats, strategy order rotated
$HF bench compare --world /tmp/hfbench/w100k --work-dir /tmp/hfbench/runs --active 5000 --repeat 3 \
  --step 5 --max-steps 6 --start-rate 250 --cpu-rate 200 --cpu-seconds 10 --retries 1 \
  --out $R/compare_100k.json --charts benchmarks/charts > $R/compare_100k.log 2>&1

# 3. micro-benchmarks beside their engines' ceilings, 3 repeats
$HF bench micro --repeat 3 --budget 3 --followers 10000 --concurrency 64 --out $R/micro.json > $R/micro.log 2>&1

# 4. fan-out delay on the 100k world, hybrid and push, under a 300 req/s background workload
$HF bench fanout --world /tmp/hfbench/w100k --work-dir /tmp/hfbench/runs --active 5000 \
  --strategies hybrid,push --per-bucket 3 --probes 10 --repeat 3 --background-rate 300 \
  --out $R/fanout_100k.json --charts benchmarks/charts > $R/fanout_100k.log 2>&1

# 5. hybrid, home reads only, p99 < 10 ms; and posts only over HTTP, p99 < 50 ms (3 each)
for i in 1 2 3; do
  $HF bench capacity --world /tmp/hfbench/w100k --work-dir /tmp/hfbench/runs --active 5000 --strategy hybrid \
    --mix home_timeline=1 --kind home_timeline --target-ms 10 --start-rate 250 --step 5 --max-steps 6 \
    --out $R/capacity_home10ms_$i.json > $R/capacity_home10ms_$i.log 2>&1
  $HF bench capacity --world /tmp/hfbench/w100k --work-dir /tmp/hfbench/runs --active 5000 --strategy hybrid \
    --mix post=1 --kind post --target-ms 50 --start-rate 250 --step 5 --max-steps 6 \
    --out $R/capacity_posts_$i.json > $R/capacity_posts_$i.log 2>&1
done

# 6. where the time goes: py-spy on the server at a sustainable rate
.venv/bin/python benchmarks/profile_server.py --world /tmp/hfbench/w100k --strategy hybrid --rate 600 \
  --out $R/profile_hybrid > $R/profile_hybrid.log 2>&1
.venv/bin/python benchmarks/profile_server.py --world /tmp/hfbench/w100k --strategy pull --rate 600 \
  --out $R/profile_pull > $R/profile_pull.log 2>&1

# 7. the largest "huge account" world that loads here: 1,000,000 users, u0 followed by all
[ -f /tmp/hfbench/w1m/world.json ] || \
  $HF bench world --data-dir /tmp/hfbench/w1m --users 1000000 --mean-following 3 --posts 300000 \
    --star 999999 --seed 2 > $R/world_1m.log 2>&1
$HF bench fanout --world /tmp/hfbench/w1m --work-dir /tmp/hfbench/runs --active 10000 \
  --strategies hybrid,push --per-bucket 1 --probes 10 --repeat 3 --timeout 15 \
  --out $R/fanout_1m.json > $R/fanout_1m.log 2>&1
echo done

# 8. (added after the first pass) server CPU per request, idle loops subtracted, at a fixed
#    1,000 req/s (65 : 1) for 10 s per strategy, 3 repeats, no capacity search
.venv/bin/homefeed bench compare --world /tmp/hfbench/w100k --work-dir /tmp/hfbench/runs --active 5000 \
  --repeat 3 --max-steps 0 --cpu-rate 1000 --cpu-seconds 10 \
  --out benchmarks/results/cpu_100k.json > benchmarks/results/cpu_100k.log 2>&1
# 9. where a post's time goes over HTTP: posts only at 300/s
.venv/bin/python benchmarks/profile_server.py --world /tmp/hfbench/w100k --strategy hybrid --rate 300 \
  --mix post=1 --out benchmarks/results/profile_posts > benchmarks/results/profile_posts.log 2>&1

# 10. issue 14 (re-measured on the code of issue 11 + 14): the per-request table beside a bare
#     Starlette route, the in-process CPU per request, and hybrid against pull by followees
[ -f /tmp/hf14world/demo-tokens.tsv ] || .venv/bin/homefeed demo --no-serve --data-dir /tmp/hf14world > /dev/null 2>&1
.venv/bin/python benchmarks/issue14_table.py --world /tmp/hf14world --rounds 3 --seconds 6 --warmup 4 \
  --json $R/issue14_table.json > $R/issue14_table.txt 2>&1
.venv/bin/python benchmarks/inproc_request_cost.py --world /tmp/hf14world --rounds 5 --n 2000 --old-route-order \
  > $R/issue14_inproc.txt 2>&1
.venv/bin/python benchmarks/hybrid_vs_pull.py --rounds 5 --reads 300 --chart benchmarks/charts/hybrid_vs_pull.png \
  --json $R/hybrid_vs_pull.json > $R/hybrid_vs_pull.txt 2>&1

# 11. issue 14, second pass (2026-12-07): /healthz and the post path, the kept home pages
#     (--fresh: the same requests with them off, same run), the fan-out side and memory per entry
.venv/bin/python benchmarks/inproc_request_cost.py --world /tmp/hf14world --rounds 7 --n 2000 --fresh \
  > $R/issue14_home_inproc.txt 2>&1
.venv/bin/python benchmarks/inproc_post_cost.py --world /tmp/hf14world --rounds 3 --n 1500 > $R/issue14_inproc_post.txt 2>&1
.venv/bin/python -m homefeed bench micro --only fanout_redis,fanout_memory --budget 6 --repeat 1 \
  --out $R/issue14_micro_fanout.json > $R/issue14_micro_fanout.log 2>&1
.venv/bin/python benchmarks/memory_per_entry.py --json $R/issue14_memory_per_entry.json > $R/issue14_memory_per_entry.txt 2>&1
.venv/bin/python benchmarks/fanout_cost.py --rounds 3 --budget 1 --json $R/issue14_fanout_cost.json \
  --chart benchmarks/charts/fanout_cost.png > $R/issue14_fanout_cost.txt 2>&1
.venv/bin/python benchmarks/fanout_1m.py --dir /tmp/hfbench/f1m --rounds 10 --json $R/issue14_fanout_1m.json > $R/issue14_fanout_1m.txt 2>&1
# 12. issue 14, sixth pass (2026-12-07, session 9): the table with every read measured warm and
#     re-read after each round's posts, and the home reads while a paced poster posts
.venv/bin/python benchmarks/issue14_table.py --world /tmp/hf14world --rounds 3 --seconds 6 --warmup 10 \
  --warm-all --rewarm --accept-encoding gzip --json $R/issue14_table_rewarm.json > $R/issue14_table_rewarm.txt 2>&1
.venv/bin/python benchmarks/reads_under_posts.py --world /tmp/hf14world --rounds 3 --seconds 8 \
  > $R/issue14_reads_under_posts.txt 2>&1
# 13. issue 14, seventh pass (2026-12-07, session 10): posts against home reads on the scale-out
#     profile (API process, worker, PostgreSQL, Redis), CPU per request by tier
.venv/bin/python benchmarks/scaleout_posts.py --rounds 3 --seconds 8 > $R/issue14_scaleout_posts.txt 2>&1
# 14. issue 14, eighth pass (2026-12-07, session 11): the same below saturation (4 connections,
#     10 ms between posts: each post a batch of one for the consumers, where the outbox
#     stream's shared tail and grouped acknowledgements save most)
.venv/bin/python benchmarks/scaleout_posts.py --rounds 3 --seconds 6 --paced 10 > $R/issue14_scaleout_posts_paced.txt 2>&1
# 15. issue 14, tenth pass (2026-12-08, session 13): the floor under the posts goal: a durable
#     JSON write over HTTP with none of homefeed's work (benchmarks/floor_app.py) beside the
#     home read, and where that floor's cost goes
.venv/bin/python benchmarks/issue14_table.py --world /tmp/hf14world --rounds 3 --seconds 6 --warmup 10 \
  --warm-all --rewarm --accept-encoding gzip --floor --json $R/issue14_table_floor.json > $R/issue14_table_floor.txt 2>&1
benchmarks/floor_parts.sh /tmp/hf14world 3 > $R/issue14_floor_parts.txt 2>&1
.venv/bin/python benchmarks/inproc_post_cost.py --world /tmp/hf14world --split --n 3000 > $R/issue14_inproc_post_split.txt 2>&1
