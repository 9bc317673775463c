"""The JetStream event stream and the outbox relay, against a real nats-server (JetStream on)
and a real SQLite outbox (record store + OutboxEventStream on a temporary file).

Every test uses its own stream and subject prefix and deletes them afterwards.

Without a reachable nats-server these tests skip (saying how to start one); with CI=true
they fail instead. The nats-server restart test restarts the local server, so it runs only
with CI=true or HOMEFEED_TEST_NATS_RESTART=1, and only when the running server's command line
is the one below (so that restarting it gives back the same server).

Throughput figures: ``pytest tests/integration/test_jetstream.py -k throughput -s``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, TypeVar
from urllib.parse import urlparse

import pytest

try:
    import nats  # noqa: F401  (nats-py: the JetStream client)
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("nats-py is not installed (pip install nats-py)", allow_module_level=True)

from homefeed.service_layer.consumers import CONSUMERS
from homefeed.adapters.jetstream import JetStreamEventStream
from homefeed.adapters.outbox_stream import OutboxEventStream
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Event
from homefeed.service_layer.relay import FileLeader, OutboxRelay, sqlite_relay_leader

T = TypeVar("T")

NATS_URL = os.environ.get("HOMEFEED_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_ARGS = [
    "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", "4222", "-js",
    "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
]
START_CMD = (
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    + " ".join(NATS_ARGS[1:])
)
ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def _reachable(url: str = NATS_URL, timeout: float = 1.0) -> bool:
    u = urlparse(url.split(",")[0])
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _nats_server() -> None:
    if _reachable():
        return
    msg = (
        f"nats-server with JetStream is not reachable at {NATS_URL}; start it with:\n  {START_CMD}"
        "\n(or set HOMEFEED_TEST_NATS_URL)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run(aw: Awaitable[T]) -> T:
    return asyncio.run(aw)  # type: ignore[arg-type]


# -- fixtures: unique stream names, a SQLite outbox -------------------------------------------
@dataclass
class Names:
    stream: str
    prefix: str

    def make(self, **kw: Any) -> JetStreamEventStream:
        kw.setdefault("ack_wait", 30)
        return JetStreamEventStream(NATS_URL, stream=self.stream, subject_prefix=self.prefix, **kw)


@pytest.fixture
def names() -> Any:
    tag = uuid.uuid4().hex[:10]
    n = Names(stream=f"HFTEST_{tag}", prefix=f"hftest{tag}.events")
    yield n

    async def cleanup() -> None:
        if not _reachable():
            return
        js = n.make(connect_timeout=5)
        await js.open()
        try:
            await js.delete_streams()
        finally:
            await js.close()

    run(cleanup())


class Outbox:
    """A record store and its outbox EventStream on one SQLite file (one 'process')."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDatabase(path, synchronous="NORMAL")
        self.store = SqliteRecordStore(self.db)
        self.stream = OutboxEventStream(self.db)

    async def __aenter__(self) -> "Outbox":
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    def rows(self) -> list[tuple[int, str]]:
        return [tuple(r) for r in self.db.query("SELECT seq, type FROM outbox ORDER BY seq")]  # type: ignore[misc]


async def write_events(store: SqliteRecordStore, posts: int, delete_every: int = 0, tag: str = "") -> int:
    """Users, a follow, posts and some deletes: returns the number of outbox events made."""
    a = await store.create_user(f"a{tag}{uuid.uuid4().hex[:6]}", "A", os.urandom(16))
    b = await store.create_user(f"b{tag}{uuid.uuid4().hex[:6]}", "B", os.urandom(16))
    await store.follow(b.id, a.id)
    n = 3
    for i in range(posts):
        p = await store.create_post(a.id, a.handle, f"post {i} #{tag}")
        n += 1
        if delete_every and i % delete_every == 0:
            await store.delete_post(p.id, a.id)
            n += 1
    return n


async def consume(
    js: JetStreamEventStream, consumer: str, count: int, timeout: float = 15.0, batch: int = 256
) -> list[Event]:
    """Fetch and ack until ``count`` events arrived (or the timeout)."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        events = await js.fetch(consumer, batch, timeout=0.5)
        if events:
            await js.ack(consumer, events)
            got.extend(events)
    return got


# -- tests ---------------------------------------------------------------------------------
def test_open_unreachable_server_raises_unavailable() -> None:
    async def main() -> None:
        js = JetStreamEventStream("nats://127.0.0.1:1", connect_timeout=1.5)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="nats-server"):
            await js.open()
        assert time.monotonic() - t0 < 5

    run(main())


def test_order_preserved_relay_to_stream_to_consumers(names: Names, tmp_path: Path) -> None:
    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            n = await write_events(ob.store, posts=300, delete_every=7)
            expected = ob.rows()
            assert len(expected) == n
            async with names.make() as js:
                relay = OutboxRelay(ob.stream, js, batch=64)
                assert await relay.lag() == n
                assert await relay.drain() == n
                assert await relay.lag() == 0
                assert relay.stats.new == n and relay.stats.batches == -(-n // 64)
                assert (await js.stream_state())["messages"] == n
                assert await js.head() == expected[-1][0]
                for consumer in CONSUMERS:
                    got = await consume(js, consumer, n, batch=100)
                    assert [(e.seq, e.type) for e in got] == expected
                    assert all(e.deliveries == 1 for e in got)
                    assert await js.lag(consumer) == 0
                # the payload round-trips
                created = next(e for e in got if e.type == "post_created")
                assert set(created.data) == {"post_id", "author_id", "author_handle", "text", "visibility",
                                             "in_reply_to_id", "in_reply_to_account_id", "reblog_of_id",
                                             "mention_ids"}
                # nothing more, and an empty fetch respects its timeout
                t0 = time.monotonic()
                assert await js.fetch("fanout", 10, timeout=0.3) == []
                assert time.monotonic() - t0 < 2
                assert await js.fetch("fanout", 10, timeout=0) == []

    run(main())


def test_fetch_without_ack_is_redelivered_after_ack_wait(names: Names, tmp_path: Path) -> None:
    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            for i in range(4):
                await ob.store.create_post(a.id, "alice", f"p{i}")
            async with names.make(ack_wait=3.0) as js:  # room for a loaded machine before the redelivery
                await OutboxRelay(ob.stream, js).drain()
                first = await js.fetch("fanout", 10, timeout=1)
                assert [e.seq for e in first] == [1, 2, 3, 4, 5]
                assert [e.deliveries for e in first] == [1] * 5
                # not acknowledged: not delivered again before ack_wait ...
                assert await js.fetch("fanout", 10, timeout=0.3) == []
                assert await js.lag("fanout") == 5
                await asyncio.sleep(3.0)
                # ... and delivered again after it, marked as a redelivery
                again = await consume(js, "fanout", 5, timeout=5)
                assert [e.seq for e in again] == [1, 2, 3, 4, 5]
                assert [e.deliveries for e in again] == [2] * 5
                assert await js.lag("fanout") == 0
                await asyncio.sleep(3.2)
                assert await js.fetch("fanout", 10, timeout=0.3) == []

    run(main())


def test_relay_crash_between_publish_and_ack_creates_no_duplicate(names: Names, tmp_path: Path) -> None:
    path = tmp_path / "hf.db"

    async def main() -> None:
        async with Outbox(path) as ob:
            n = await write_events(ob.store, posts=100)
            expected = ob.rows()
            # relay 1 publishes a batch, then "dies" before acknowledging it on the outbox
            async with names.make() as js1:
                relay1 = OutboxRelay(ob.stream, js1, batch=40)
                await relay1.step()  # one whole batch relayed: offset 40
                events = await relay1.fetch()
                assert [e.seq for e in events] == list(range(41, 81))
                assert await relay1.publish(events) == 40  # stored ...
                # ... no ack: crash
        # a new relay process: new database handle, new connection
        async with Outbox(path) as ob2, names.make() as js2:
            relay2 = OutboxRelay(ob2.stream, js2, batch=40)
            assert await relay2.lag() == n - 40
            assert await relay2.drain() == n - 40
            assert relay2.stats.new == n - 80  # the 40 resent were answered "duplicate"
            assert (await js2.stats())["duplicates"] == 40
            assert (await js2.stream_state())["messages"] == n
            got = await consume(js2, "fanout", n)
            assert [(e.seq, e.type) for e in got] == expected
            assert await js2.fetch("fanout", 100, timeout=0.5) == []

    run(main())


def test_publish_keeps_commit_order_when_a_message_is_lost_in_flight(names: Names) -> None:
    """A message lost on the wire (a connection that dropped) must not let the later ones
    of the pipelined batch be stored before it: they are refused (expected last msg id) and
    the batch is resent from the lost one."""

    async def main() -> None:
        async with names.make(ack_timeout=0.5) as js:
            real_send = js._send
            sends: dict[str, int] = {}
            dropped: list[str] = []
            drop = {("5", 1), ("12", 2)}  # 5 on its first send, 12 on its second

            async def lossy_send(subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future:
                mid = headers["Nats-Msg-Id"]
                sends[mid] = sends.get(mid, 0) + 1
                if (mid, sends[mid]) in drop:
                    dropped.append(mid)
                    return asyncio.get_running_loop().create_future()  # never reaches the server
                return await real_send(subject, payload, headers)

            js._send = lossy_send  # type: ignore[method-assign]
            events = [Event(i, "post_created", {"i": i}) for i in range(1, 21)]
            assert await js.publish(events) == 20
            assert dropped == ["5", "12"] and (await js.stats())["publish_retries"] == 2
            got = await consume(js, "fanout", 20)
            assert [e.seq for e in got] == list(range(1, 21))
            assert (await js.stream_state())["messages"] == 20

    run(main())


RELAY_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from homefeed.adapters.jetstream import JetStreamEventStream
    from homefeed.adapters.outbox_stream import OutboxEventStream
    from homefeed.adapters.sqlite_db import SqliteDatabase
    from homefeed.service_layer.relay import OutboxRelay, sqlite_relay_leader

    db_path, url, stream, prefix, die_after = sys.argv[1:6]
    die_after = int(die_after)

    class DyingSink:
        # publishes, then dies by SIGKILL before the relay acknowledges the batch
        def __init__(self, js):
            self.js, self.batches = js, 0
        async def publish(self, events):
            n = await self.js.publish(events)
            self.batches += 1
            if die_after and self.batches >= die_after:
                print("DYING", events[0].seq, events[-1].seq, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return n

    async def main():
        db = SqliteDatabase(db_path, synchronous="NORMAL")
        db.open()
        js = JetStreamEventStream(url, stream=stream, subject_prefix=prefix)
        await js.open()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        relay = OutboxRelay(OutboxEventStream(db), DyingSink(js), sqlite_relay_leader(db_path, 0.05),
                            batch=25, poll_timeout=0.1)
        print("READY", flush=True)
        await relay.run(stop)
        await js.close()
        db.close()

    asyncio.run(main())
    """
)


def _lock_holder(db_path: Path) -> int | None:
    try:
        text = Path(f"{db_path}.relay.lock").read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def test_relay_processes_sigkill_and_takeover_no_loss_no_duplicate(names: Names, tmp_path: Path) -> None:
    """Two relay processes behind the file lock; the active one is SIGKILLed right after a
    publish and before its ack (twice), and once at a random moment; the standby takes
    over each time. Every event reaches the stream once, in commit order."""
    path = tmp_path / "hf.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs: list[subprocess.Popen] = []

    def spawn(die_after: int) -> subprocess.Popen:
        p = subprocess.Popen(
            [PYTHON, "-c", RELAY_CHILD, str(path), NATS_URL, names.stream, names.prefix, str(die_after)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        return p

    def wait_holder(exclude: set[int], timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = _lock_holder(path)
            if pid and pid not in exclude and any(p.pid == pid and p.poll() is None for p in procs):
                return pid
            time.sleep(0.02)
        raise AssertionError("no relay took the lead")

    async def main() -> None:
        async with Outbox(path) as ob:
            n = await write_events(ob.store, posts=20)  # some events before any relay runs
            dead: set[int] = set()
            # 1) the first leader dies after its 2nd publish, before acking it
            spawn(die_after=2)
            first = wait_holder(dead)
            spawn(die_after=0)  # standby
            n += await write_events(ob.store, posts=60, tag="x")
            deadline = time.monotonic() + 15
            while procs[0].poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert procs[0].returncode == -signal.SIGKILL
            dead.add(first)
            second = wait_holder(dead)
            assert second == procs[1].pid
            # 2) a new standby that dies after one publish once it leads; kill the leader at random
            spawn(die_after=1)
            for i in range(5):
                n += await write_events(ob.store, posts=10, tag=f"y{i}")
            os.kill(second, signal.SIGKILL)
            procs[1].wait(5)
            # the standby takes over and dies after its first publish, before the ack
            n += await write_events(ob.store, posts=30, tag="z")
            procs[2].wait(15)
            assert procs[2].returncode == -signal.SIGKILL
            assert procs[2].stdout is not None and procs[2].stdout.readline().startswith("DYING")
            # 3) a last relay finishes the job
            spawn(die_after=0)
            expected = ob.rows()
            assert len(expected) == n
            async with names.make() as js:
                got = await consume(js, "fanout", n, timeout=30)
                assert [(e.seq, e.type) for e in got] == expected
                assert (await js.stream_state())["messages"] == n
                assert await js.fetch("fanout", 50, timeout=0.5) == []
            deadline = time.monotonic() + 10
            while await ob.stream.lag("relay") and time.monotonic() < deadline:
                ob.stream._offsets.pop("relay", None)  # re-read the offset the relays wrote
                await asyncio.sleep(0.05)

    try:
        run(main())
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_a_batch_slower_than_ack_wait_is_applied_once_by_the_worker_that_holds_it(
    names: Names, tmp_path: Path
) -> None:
    """Two workers share the fan-out consumer; one gets a batch that takes 2.5 x ``ack_wait``
    to apply (a loaded machine). It reports the batch in progress while it works, so JetStream
    does not give it to the other worker: every event is applied once, on its first
    delivery, and nothing goes towards ``max_deliver`` (2 here, so a single redelivery would
    dead-letter it). Without the reports the other worker applied the batch a second time,
    beside the first, and the events were dead-lettered."""
    from homefeed.service_layer.consumers import FANOUT, Consumers

    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            for i in range(6):
                await ob.store.create_post(a.id, "alice", f"p{i}")
            # ack_wait 2 s: the reports go out every ~0.67 s, so a stall of the loop (a loaded
            # machine) shorter than ~1.3 s does not let JetStream redeliver the batch
            async with names.make(ack_wait=2.0, max_deliver=2) as js1, \
                    names.make(ack_wait=2.0, max_deliver=2) as js2:
                await OutboxRelay(ob.stream, js1).drain()
                applied: list[tuple[str, int, int]] = []  # (worker, seq, deliveries)
                slow_done = asyncio.Event()

                def worker(name: str, js: JetStreamEventStream) -> Consumers:
                    c = Consumers(None, js, None)  # type: ignore[arg-type]  # the handler needs neither
                    c.handlers.clear()

                    async def handle(batch: Any) -> None:
                        if not slow_done.is_set():
                            await asyncio.sleep(5.0)  # the first batch: 2.5 x ack_wait
                            slow_done.set()
                        applied.extend((name, e.seq, e.deliveries) for e in batch)
                    c.register(FANOUT, handle)
                    return c

                w1, w2 = worker("w1", js1), worker("w2", js2)
                w1.start([FANOUT])
                await asyncio.sleep(0.3)  # w1 fetches first, and takes every event there is
                w2.start([FANOUT])
                await slow_done.wait()
                await asyncio.sleep(3.0)  # past another ack_wait: a redelivery would be in
                await w1.stop()
                await w2.stop()
                assert sorted(seq for _, seq, _ in applied) == [1, 2, 3, 4, 5, 6, 7]
                assert {d for _, _, d in applied} == {1}
                assert await js1.lag(FANOUT) == 0
                assert await js1.dead_letters() == []

    run(main())


def test_dead_letter_after_max_deliver_then_retry(names: Names, tmp_path: Path) -> None:
    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            for i in range(4):
                await ob.store.create_post(a.id, "alice", f"p{i}")
            async with names.make(max_deliver=3, ack_wait=5) as js:
                await OutboxRelay(ob.stream, js).drain()
                poison = 3
                attempts = 0
                # a consumer whose handler fails on one event: nak until the last try,
                # then dead-letter it; the others are acked
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not (await js.stats())["dead_lettered"]:
                    for e in await js.fetch("fanout", 10, timeout=0.5):
                        if e.seq != poison:
                            await js.ack("fanout", [e])
                            continue
                        attempts += 1
                        assert e.deliveries == attempts
                        if e.deliveries >= js.max_deliver:
                            await js.dead_letter("fanout", e, "ValueError: boom")
                        else:
                            await js.nak("fanout", [e])
                assert attempts == 3
                assert await js.lag("fanout") == 0
                dls = await js.dead_letters()
                assert len(dls) == 1
                dl = dls[0]
                assert (dl.consumer, dl.reason, dl.deliveries, dl.source) == ("fanout", "ValueError: boom", 3, "consumer")
                assert dl.event is not None and dl.event.seq == poison and dl.event.type == "post_created"
                assert await js.dead_letters("indexer") == []
                # another consumer is not affected
                assert [e.seq for e in await consume(js, "indexer", 5)] == [1, 2, 3, 4, 5]
                # retry: the event comes back for "fanout" only
                assert await js.retry_dead_letters("fanout") == 1
                assert await js.dead_letters() == []
                back = await consume(js, "fanout", 1)
                assert [(e.seq, e.deliveries) for e in back] == [(poison, 1)]
                assert back[0].data == dl.event.data
                assert await js.fetch("indexer", 10, timeout=0.5) == []  # skipped, acked
                assert await js.lag("indexer") == 0
                assert await js.lag("fanout") == 0

    run(main())


def test_unanswered_message_reaches_dead_letters_through_advisory(names: Names, tmp_path: Path) -> None:
    """A worker that dies on an event every time never naks it: the server gives up after
    max_deliver, and its advisory lands in the dead-letter stream, resolved to the event."""

    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            await ob.store.create_post(a.id, "alice", "poison")
            async with names.make(max_deliver=2, ack_wait=0.5) as js:
                await OutboxRelay(ob.stream, js).drain()
                await js.ack("fanout", [e for e in await js.fetch("fanout", 1, timeout=1)])  # seq 1 fine
                seen = []
                deadline = time.monotonic() + 10
                dls: list = []
                while time.monotonic() < deadline and not dls:
                    seen += [(e.seq, e.deliveries) for e in await js.fetch("fanout", 10, timeout=0.6)]
                    dls = await js.dead_letters("fanout")
                assert seen == [(2, 1), (2, 2)]
                assert len(dls) == 1
                dl = dls[0]
                assert dl.source == "max_deliver" and dl.deliveries == 2
                assert dl.event is not None and dl.event.seq == 2 and dl.event.data["text"] == "poison"
                assert await js.lag("fanout") == 0
                retried = await js.retry_dead_letter(dl.id)
                assert retried.event == dl.event
                back = await consume(js, "fanout", 1)
                assert [e.seq for e in back] == [2]

    run(main())


def test_lag_numbers(names: Names, tmp_path: Path) -> None:
    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            for i in range(10):
                await ob.store.create_post(a.id, "alice", f"p{i}")
            async with names.make() as js:
                relay = OutboxRelay(ob.stream, js, batch=4)
                assert await relay.lag() == 11
                assert await relay.step() == 4
                assert await relay.lag() == 7
                assert await js.lag("fanout") == 4  # a new consumer starts at the beginning
                await relay.drain()
                assert await relay.lag() == 0
                assert relay.report()["relayed"] == 11
                assert await js.lag("fanout") == 11
                got = await js.fetch("fanout", 4, timeout=1)
                assert len(got) == 4
                # 7 never delivered + 4 delivered and not yet acknowledged
                stats = await js.consumer_stats("fanout")
                assert (stats["pending"], stats["ack_pending"]) == (7, 4)
                assert await js.lag("fanout") == 11
                await js.ack("fanout", got)
                assert await js.lag("fanout") == 7
                assert len(await consume(js, "fanout", 7)) == 7
                assert await js.lag("fanout") == 0
                assert await js.lag("indexer") == 11  # independent consumers

    run(main())


async def _until(done: Any, timeout: float = 10.0) -> None:
    """Wait until ``done()`` holds (the caller asserts it after)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_two_relays_one_active_the_other_takes_over(names: Names, tmp_path: Path) -> None:
    path = tmp_path / "hf.db"

    async def main() -> None:
        async with Outbox(path) as writer, Outbox(path) as ob_a, Outbox(path) as ob_b:
            async with names.make() as js_a, names.make() as js_b, names.make() as reader:
                leader = sqlite_relay_leader(path, poll_interval=0.05)
                ra = OutboxRelay(ob_a.stream, js_a, leader, batch=20, poll_timeout=0.1)
                rb = OutboxRelay(ob_b.stream, js_b, leader, batch=20, poll_timeout=0.1)
                stop_a, stop_b = asyncio.Event(), asyncio.Event()
                ta = asyncio.create_task(ra.run(stop_a))
                await asyncio.sleep(0.3)
                tb = asyncio.create_task(rb.run(stop_b))
                await asyncio.sleep(0.3)
                assert ra.stats.leader and not rb.stats.leader
                n = await write_events(writer.store, posts=50)
                got = await consume(reader, "fanout", n)
                assert len(got) == n
                # (a relay counts a batch once the outbox has its acknowledgement, a commit
                # after the publish that the reader may already have consumed)
                await _until(lambda: ra.stats.relayed == n)
                assert ra.stats.relayed == n and rb.stats.relayed == 0
                # the active relay stops: the other one takes over
                stop_a.set()
                await asyncio.wait_for(ta, 5)
                deadline = time.monotonic() + 5
                while not rb.stats.leader and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert rb.stats.leader
                m = await write_events(writer.store, posts=50, tag="b")
                got += await consume(reader, "fanout", m)
                assert [(e.seq, e.type) for e in got] == writer.rows()
                await _until(lambda: rb.stats.relayed == m)
                assert rb.stats.relayed == m and ra.stats.relayed == n
                assert (await reader.stream_state())["messages"] == n + m
                stop_b.set()
                await asyncio.wait_for(tb, 5)
                assert not rb.stats.leader

    run(main())


class _LostLeadership(Exception):
    pass


class _RevocableLeader:
    """A leader lock shaped like the PostgreSQL one: on loss it sets ``lost``, cancels the
    task that entered it, and ``__aexit__`` raises."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.lost = asyncio.Event()
        self.body: asyncio.Task | None = None

    async def __aenter__(self) -> "_RevocableLeader":
        while self.state["holder"] is not None:
            await asyncio.sleep(0.01)
        self.state["holder"] = self
        self.state["terms"] += 1
        self.body = asyncio.current_task()
        return self

    def revoke(self) -> None:
        self.lost.set()
        self.state["holder"] = None
        assert self.body is not None
        self.body.cancel()

    async def __aexit__(self, *exc: object) -> None:
        if self.state["holder"] is self:
            self.state["holder"] = None
        if self.lost.is_set():
            raise _LostLeadership()


def test_relay_that_loses_leadership_mid_stream_competes_again(names: Names, tmp_path: Path) -> None:
    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob, names.make() as js, names.make() as reader:
            state: dict[str, Any] = {"holder": None, "terms": 0}
            relay = OutboxRelay(ob.stream, js, lambda: _RevocableLeader(state), batch=10, poll_timeout=0.05)
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop))
            writer = asyncio.create_task(write_events(ob.store, posts=300))
            while relay.stats.relayed < 50:
                await asyncio.sleep(0.005)
            state["holder"].revoke()  # in the middle of relaying
            n = await writer
            got = await consume(reader, "fanout", n)
            assert [(e.seq, e.type) for e in got] == ob.rows()
            assert state["terms"] == 2 and relay.stats.leader
            assert "_LostLeadership" in relay.stats.last_error
            assert (await reader.stream_state())["messages"] == n
            stop.set()
            await asyncio.wait_for(task, 5)
            assert state["holder"] is None and not relay.stats.leader

    run(main())


def test_file_leader_is_exclusive_and_released(tmp_path: Path) -> None:
    async def main() -> None:
        lock = tmp_path / "x.lock"
        a, b = FileLeader(lock, 0.01), FileLeader(lock, 0.01)
        async with a:
            assert not b.try_acquire()
            waiter = asyncio.create_task(b.__aenter__())
            await asyncio.sleep(0.05)
            assert not waiter.done()
        await asyncio.wait_for(waiter, 1)
        assert b.held and int(lock.read_text()) == os.getpid()
        await b.__aexit__(None, None, None)
        # a waiting relay is stopped cleanly
        async with FileLeader(lock):
            relay = OutboxRelay(None, None, lambda: FileLeader(lock, 0.01))  # type: ignore[arg-type]
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop))
            await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 1)
            assert not relay.stats.leader

    run(main())


# -- nats-server restart ---------------------------------------------------------------------
def _nats_pid() -> int | None:
    out = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if len(out) == 1 else None


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _start_nats() -> None:
    subprocess.run(START_CMD.split(), check=True)
    deadline = time.monotonic() + 20
    while not _reachable() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _reachable(), f"nats-server did not come back; start it with: {START_CMD}"


@pytest.mark.slow
@pytest.mark.serial  # it stops the machine's nats-server, which tests in other processes use
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_consumer_and_relay_ride_out_a_nats_server_restart(names: Names, tmp_path: Path, sig: int) -> None:
    """Posts are written all along; the server is stopped while publishes, fetches and acks
    are in flight, and started again. Nothing is lost, nothing is stored twice, the stream
    keeps commit order, the relay and the consumer loop never die."""
    if not (os.environ.get("CI") == "true" or os.environ.get("HOMEFEED_TEST_NATS_RESTART") == "1"):
        pytest.skip("restarts the local nats-server: set HOMEFEED_TEST_NATS_RESTART=1 (on in CI)")
    pid = _nats_pid()
    if pid is None or _cmdline(pid) != NATS_ARGS or NATS_URL != "nats://127.0.0.1:4222":
        pytest.skip(f"the running nats-server is not the one started by: {START_CMD}")

    async def main() -> None:
        async with Outbox(tmp_path / "hf.db") as ob, names.make(ack_wait=2) as js_relay, names.make(ack_wait=2) as js:
            relay = OutboxRelay(ob.stream, js_relay, batch=50, poll_timeout=0.1)
            stop = asyncio.Event()
            relay_task = asyncio.create_task(relay.run(stop))
            seen: list[int] = []
            loop_errors: list[BaseException] = []

            async def consumer_loop() -> None:  # the shape of Consumers._run
                while not stop.is_set():
                    try:
                        events = await js.fetch("fanout", 100, timeout=0.3)
                        if events:
                            seen.extend(e.seq for e in events)
                            await js.ack("fanout", events)
                    except Exception as exc:  # an ack during the outage: redelivered later
                        loop_errors.append(exc)
                        await asyncio.sleep(0.1)

            cons_task = asyncio.create_task(consumer_loop())
            n = await write_events(ob.store, posts=100)
            deadline = time.monotonic() + 15
            while len(set(seen)) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert sorted(set(seen)) == list(range(1, n + 1))

            # keep writing; stop the server in the middle of it; fetches return empty meanwhile
            writing = asyncio.Event()
            writing.set()

            async def writer() -> int:
                a = await ob.store.create_user(f"w{uuid.uuid4().hex[:6]}", "W", os.urandom(16))
                made = 1
                while writing.is_set():
                    await ob.store.create_post(a.id, a.handle, f"w{made}")
                    made += 1
                    await asyncio.sleep(0.002)
                return made

            writer_task = asyncio.create_task(writer())
            await asyncio.sleep(0.3)
            os.kill(pid, sig)
            deadline = time.monotonic() + 15
            while _nats_pid() is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert _nats_pid() is None
            t0 = time.monotonic()
            assert await js.fetch("indexer", 10, timeout=0.5) == []
            assert time.monotonic() - t0 < 3
            await asyncio.sleep(1.0)
            assert not cons_task.done() and not relay_task.done()
            await asyncio.to_thread(_start_nats)
            await asyncio.sleep(0.5)
            writing.clear()
            n += await writer_task

            deadline = time.monotonic() + 40
            while len(set(seen)) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(asyncio.gather(relay_task, cons_task), 10)
            assert sorted(set(seen)) == list(range(1, n + 1))
            # commit order in the stream, and no duplicate stored
            assert (await js.stream_state())["messages"] == n
            first = list(dict.fromkeys(seen))
            assert first == sorted(first)
            assert (await js.stats())["reconnects"] >= 1 and (await js_relay.stats())["reconnects"] >= 1
            assert relay.stats.relayed == n

    try:
        run(main())
    finally:
        if not _reachable():
            _start_nats()


# -- throughput ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_throughput(names: Names, tmp_path: Path, loop: str) -> None:
    """Publish (pipelined, acks awaited), consume+ack, and relay from SQLite; prints events/s."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
    N = int(os.environ.get("HOMEFEED_JS_BENCH_EVENTS", "20000"))

    async def main() -> dict[str, float]:
        data = {"post_id": 1 << 60, "author_id": 1 << 58, "author_handle": "someone", "text": "x" * 100}
        events = [Event(i, "post_created", data) for i in range(1, N + 1)]
        out: dict[str, float] = {}
        async with names.make() as js:
            t0 = time.perf_counter()
            for i in range(0, N, 1000):
                assert await js.publish(events[i : i + 1000]) == 1000
            out["publish (batches of 1000) events/s"] = N / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert await js.publish(events) == 0  # all duplicates
            out["re-publish, all duplicates, events/s"] = N / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = await consume(js, "fanout", N, timeout=120, batch=1000)
            out["consume+ack (fetch 1000) events/s"] = len(got) / (time.perf_counter() - t0)
            assert len(got) == N
            t0 = time.perf_counter()
            got = await consume(js, "indexer", N, timeout=120, batch=256)
            out["consume+ack (fetch 256) events/s"] = len(got) / (time.perf_counter() - t0)
            await js.delete_streams()
        async with Outbox(tmp_path / "hf.db") as ob, names.make() as js:
            a = await ob.store.create_user("alice", "A", os.urandom(16))
            await asyncio.gather(*(ob.store.create_post(a.id, "alice", "x" * 100) for _ in range(N)))
            relay = OutboxRelay(ob.stream, js, batch=1024)
            t0 = time.perf_counter()
            assert await relay.drain() == N + 1
            out["relay SQLite outbox -> JetStream events/s"] = (N + 1) / (time.perf_counter() - t0)
        return out

    figures = uvloop.run(main()) if loop == "uvloop" else run(main())
    print(f"\n  [{loop}, {N} events of ~200 bytes]")
    for k, v in figures.items():
        print(f"  {k:45s} {v:10,.0f}")
    assert all(v > 500 for v in figures.values()), figures
