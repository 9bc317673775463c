"""Crash safety: the server is SIGKILLed under concurrent load, ten times, and restarted on
the same data each time.

A real ``python -m homefeed serve`` runs on a real data dir (``celebrity_threshold=3``,
``timeline_cap=100``: with thousands of posts every timeline crosses the cap, and the caches
hold the last second or so, so their final state is exercised too). Six users who follow
each other (one celebrity, one author crossing the threshold up and down all the time) post
concurrently from several threads, while others read home timelines (which keeps every
timeline cached), delete their own posts and follow/unfollow, and every user replies to,
favourites and unfavourites, boosts and unboosts the newest posts, mentioning others now and
then (issue 11: the notifier is killed with the rest). The server is killed with
SIGKILL at random moments and restarted on the same data dir and port each time. The last
incarnation ends with a scripted promotion and demotion of user 1 under load.

Every request's outcome is recorded honestly (``tests/e2e/crash_kit.py``): acknowledged,
refused (no effect) or unknown (dropped by the kill). After the last restart and the drain
the whole state is read back over HTTP and compared with the oracle built from those
outcomes (nothing acknowledged lost or duplicated, nothing invented, every timeline with the
reply and boost rules, every notification list, search and counter right), and then ``homefeed audit`` — run as an operator runs it, reaching the
in-process caches through the server's admin route — must find no difference.

The outside world is killed with it (issue 12): a webhook receiver subscribed to every event
(failing a quarter of the first attempts with 503) and three accounts with an email, with a
real SMTP server. After the last restart every delivery and mail the outcomes make certain
arrived, signed, one ``webhook-id`` per event however often it was sent, nothing that no
request asked for (``tests/e2e/outside_kit.py``).
"""

from __future__ import annotations

import random
import time
import uuid

import httpx
import pytest

from tests.e2e.audit_check import run_audit
from tests.e2e.crash_kit import EmbeddedServer, Ledger, Load, check_everything, drain, make_world
from tests.e2e.fault_figures import ScenarioFigures, record
from tests.e2e.outside_kit import OutsideWorld, sqlite_set_email

pytestmark = pytest.mark.slow

KILLS = 10
#: Seconds of load on each incarnation before its kill: long enough for hundreds of writes
#: in flight across the kills, short enough to keep ten kills well under a minute.
LOAD_PER_INCARNATION = (0.3, 1.0)


@pytest.fixture
def outside():
    with OutsideWorld() as world:
        yield world


@pytest.fixture
def crash_server(tmp_path, outside: OutsideWorld):
    s = EmbeddedServer(tmp_path, outside.settings)
    s.start()
    yield s
    s.stop()


def test_sigkill_under_concurrent_load_loses_and_duplicates_nothing(crash_server: EmbeddedServer,
                                                                   outside: OutsideWorld) -> None:
    server = crash_server
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    marker = f"crash{uuid.uuid4().hex[:10]}"

    ledger = Ledger()
    outside.subscribe(server.env)  # before the first account: every event is sent
    users = make_world(server.url, "crash", ledger,
                       lambda users: outside.give_emails(users, sqlite_set_email(server.data_dir)))
    load = Load([server.url], users, marker, ledger)
    load.start()
    kill_log = []
    try:
        for k in range(KILLS):
            time.sleep(rng.uniform(*LOAD_PER_INCARNATION))
            t0 = time.monotonic()
            server.kill()
            kill_log.append(f"kill #{k + 1} after {load.ledger.counts.get('post acked', 0)} acked posts")
            time.sleep(rng.uniform(0, 0.2))
            server.start()  # same data dir, same port
            kill_log.append(f"restart #{k + 1} in {time.monotonic() - t0:.2f}s")
        time.sleep(rng.uniform(1.0, 2.0))  # load on the last incarnation too: warm caches
        load.run_finale()
        time.sleep(0.2)
    finally:
        load.finish()

    led = load.ledger
    diag = (f"seed {seed}; {kill_log}; client counts {dict(sorted(led.counts.items()))}\n"
            f"server logs:\n{server.logs()}")
    assert not led.errors, f"unexpected answers during the load: {led.errors[:10]}\n{diag}"
    assert led.counts.get("post acked", 0) > 50, f"too little load to mean anything\n{diag}"
    assert led.counts.get("unknown", 0) > 0, f"no kill caught a request in flight\n{diag}"

    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        drain(http)
        outcome = check_everything(http, load.users, led, marker, diag)
    heard = outside.check(load.users, led, outcome, diag)

    audit = run_audit(server.env, url=server.url)
    assert audit.exit_code == 0, (
        f"the audit after {KILLS} kills found differences:\n{audit.explain()}\n{diag}")
    record(ScenarioFigures(
        scenario=f"embedded: API SIGKILL x{KILLS}", faults=KILLS, requests=led.requests,
        writes_acknowledged=led.writes_acknowledged, writes_lost=outcome.lost,
        audit_divergences=audit.divergences,
        extra={**led.extra(), "unknown found": outcome.found_in_flight, **outcome.extra(led), **heard},
    ))
