"""Webhook deliveries per second to a fast local receiver, and the fan-out rate with and
without 10 subscriptions active, measured in the same run (embedded profile, in process).

Run:

    .venv/bin/python benchmarks/webhooks.py [--users 2000 --followers 100 --posts 2000 --rounds 2]

A world of ``--users`` accounts, each followed by ``--followers`` others, every home
timeline cached (fan-out pushes into cached timelines only). Each round, twice: with no
subscription ("off") and with 10 subscriptions to ``status.created`` on a receiver in
another process ("on"): ``--posts`` posts are written while the consumers are stopped, then
the consumers (fanout, indexer, webhooks, mailer, and the dispatcher) start together and
the clock runs until the fan-out has applied every post (fan-out rate: posts/s and
timeline writes/s) and until the receiver has every message (deliveries/s, 10 per post).
The receiver is a minimal asyncio HTTP/1.1 server answering ``204`` at once, with keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECEIVER = r'''
import asyncio, sys
count = 0
async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            count += 1
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def report(reader, writer):
    writer.write(str(count).encode()); await writer.drain(); writer.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", 0)
    r = await asyncio.start_server(report, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], r.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
'''


async def received(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await reader.read()
    writer.close()
    return int(data)


async def main(args: argparse.Namespace) -> None:
    from homefeed.bootstrap import CONSUMERS, build, webhook_store
    from homefeed.config import Settings
    from homefeed.service_layer.webhooks import WebhookAdmin

    rx = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert rx.stdout is not None
    hook_port, count_port = map(int, rx.stdout.readline().split())
    tmp = Path(tempfile.mkdtemp(prefix="hf-bench-webhooks-"))
    settings = Settings(data_dir=tmp, webhooks_allow_private=True, sqlite_synchronous="NORMAL",
                        celebrity_threshold=10 ** 9, cache_max_timelines=10 ** 6)
    hf = build(settings, node=0)
    await hf.start(consumers=())
    rng = random.Random(1)
    n, f = args.users, args.followers
    ids = list(range(1, n + 1))
    follows = []
    fid = 1
    for u in ids:
        for v in rng.sample(ids, f + 1):
            if v != u and len([1]) and fid:
                follows.append((v, u, fid))
                fid += 1
    await hf.store.bulk_load(((u, f"u{u}", f"u{u}", os.urandom(16)) for u in ids), follows, [])
    for u in ids:  # cache every home timeline: fan-out pushes into cached ones only
        await hf.feed.read_home(u, None, 20)
    writes_per_post = len(follows) / n
    print(f"world: {n} users, {len(follows)} follows ({writes_per_post:.0f} followers per author), every home cached",
          flush=True)

    lines = []
    for rnd in range(args.rounds):
        for mode in ("off", "on"):
            subs = []
            if mode == "on":
                admin = WebhookAdmin(webhook_store(hf), True)
                subs = [await admin.add(f"http://127.0.0.1:{hook_port}/h{i}", "status.created") for i in range(10)]
            authors = [rng.choice(ids) for _ in range(args.posts)]
            for k in range(0, len(authors), 200):
                await asyncio.gather(*(hf.create_post(a, f"post {rnd} {mode} {k + j} #bench")
                                       for j, a in enumerate(authors[k:k + 200])))
            base = await received(count_port)
            t0 = time.perf_counter()
            hf.consumers.start(CONSUMERS)
            fan = deliv = recorded = None
            want = len(subs) * args.posts
            while fan is None or deliv is None or recorded is None:
                now = time.perf_counter()
                if fan is None and await hf.stream.lag("fanout") == 0:
                    fan = now - t0
                if recorded is None and await hf.stream.lag("webhooks") == 0:
                    recorded = now - t0
                if deliv is None and await received(count_port) - base >= want:
                    deliv = now - t0
                await asyncio.sleep(0.005)
            await hf.drain(120)
            await hf.consumers.stop()
            for s in subs:
                await WebhookAdmin(webhook_store(hf), True).remove(s["id"])
            line = (f"round {rnd + 1} subscriptions {mode:>3}: fan-out {args.posts / fan:8.0f} posts/s"
                    f" ({args.posts * writes_per_post / fan:9.0f} timeline writes/s)")
            if want:
                line += (f"; webhooks {want / deliv:7.0f} deliveries/s ({want} in {deliv:.2f} s; the consumer"
                         f" had recorded them all after {recorded:.2f} s)")
            dispatcher = getattr(hf.consumers.companions["webhooks"], "__self__", None)
            if want and dispatcher is not None:
                line += f"; {dispatcher.sender.connects} connections opened so far"
            print(line, flush=True)
            lines.append(line)
    await hf.close()
    rx.terminate()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--followers", type=int, default=100)
    p.add_argument("--posts", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(p.parse_args()))
