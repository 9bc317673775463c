"""Backend outages under load, scale-out profile (issue 5): Redis stopped for 10 s, and
PostgreSQL stopped for several seconds, while users write and read over HTTP.

The deployment is ``tests/e2e/scaleout.py``'s: two API processes, two workers (fan-out,
indexer, and the outbox relay under a PostgreSQL advisory lock), a private Redis and a
private NATS, and for the PostgreSQL scenario a private PostgreSQL cluster
(``private_pg_deployment``: the shared server is never stopped). The load is
``tests/e2e/crash_kit.py``'s (six users, posters, deleters, a follow churner, home-timeline
readers, and talkers that reply, mention, favourite and boost: issue 11) plus readers of
users' posts, search and single posts, each request's outcome recorded honestly:

- 2xx: acknowledged;
- 503 (the documented answer of an outage: ``Retry-After`` and ``{"error": {"code":
  "unavailable"}}``, or Mastodon's ``{"error": "..."}`` on the Mastodon API): the write's
  outcome is *unknown* to the client (a statement whose connection died may have
  committed), exactly like a dropped connection;
- any other 5xx, or a 503 without its header or body: an error, the scenario fails.

Then, after the fault is repaired and the consumers have drained, the same final checks as
the crash test (``check_everything``: every acknowledged write present exactly once, nothing
invented, the follow graph, favourites and boosts within what the outcomes allow, every home
timeline, notification list, search and counter equal to the oracle), no dead letters
(nothing was the event's fault), one stream message per outbox event, no API or worker
process restarted, no errors logged (one warning per outage and backend, one "recovered"
line), and last ``homefeed audit`` finds nothing.

- Redis stopped for 10 s (SIGTERM, then started again empty): no 5xx at all, on any route;
  home timelines, users' posts, search and single posts keep answering (from PostgreSQL;
  counted) and posts, deletes and follows keep being acknowledged.
- PostgreSQL stopped (``pg_ctl -m fast``) for about 6 s: writes get 503 + Retry-After, never
  a 500; reads that the caches can answer still do; when it is back the service resumes by
  itself (writes acknowledged again, no process restarted). The outside world goes through
  it too (issue 12): a webhook receiver subscribed to every event (failing a quarter of the
  first attempts with 503) and three accounts with an email, with a real SMTP server; the
  deliveries and mails live in PostgreSQL, so the dispatchers and mail loops lose their
  store mid-burst. After the recovery every delivery and mail the outcomes make certain
  arrived, signed, one ``webhook-id`` per event however often it was sent, nothing that no
  request asked for (``tests/e2e/outside_kit.py``).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from typing import Any, Callable

import httpx
import pytest

from tests.e2e.audit_check import run_audit
from tests.e2e.crash_kit import Ledger, Load, check_everything, make_world
from tests.e2e.fault_figures import ScenarioFigures, record
from tests.e2e.outside_kit import OutsideWorld
from tests.e2e.scaleout import Deployment, deployment, private_pg_deployment

# serial: the parallel pass of `make test` leaves these out and they run alone afterwards (a
# stopped PostgreSQL under load must never overlap other tests that use PostgreSQL)
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SETTINGS = {"HOMEFEED_CELEBRITY_THRESHOLD": "3", "HOMEFEED_TIMELINE_CAP": "5"}
REDIS_OUTAGE_S = 10.0
PG_OUTAGE_S = 6.0
#: A hang guard for "the load made progress" (not a speed assertion).
PROGRESS_TIMEOUT = 30.0
#: How long after the repair a process may take to log "recovered" (its backoff, then QUIET).
RECOVERY_LOG_TIMEOUT = 10.0


def _error_code(r: httpx.Response) -> str | None:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _documented_body(r: httpx.Response) -> bool:
    """The body of an outage's 503: ``{"error": {"code": "unavailable"}}`` on ``/v1``; on
    the Mastodon API, Mastodon's error shape, ``{"error": "<a sentence>"}``."""
    if r.request.url.path.startswith("/api/"):
        try:
            return isinstance(r.json()["error"], str)
        except (ValueError, KeyError, TypeError):
            return False
    return _error_code(r) == "unavailable"


class OutageLoad(Load):
    """``crash_kit.Load`` whose clients also accept the documented 503 of an outage (its
    write's outcome unknown), count answers by phase, and read users' posts, search and
    single posts too (``browser``)."""

    #: Which part of the scenario answers are counted in: "before", "outage" or "after".
    phase: str = "before"

    def _server_error(self, r: httpx.Response, what: str) -> bool:
        """True for a 5xx (recorded by phase); an error unless it is the documented 503."""
        if r.status_code < 500:
            return False
        self.ledger.count(f"{r.status_code} {self.phase}")
        retry_after = r.headers.get("retry-after", "")
        if not (r.status_code == 503 and retry_after.isdigit() and int(retry_after) >= 1
                and _documented_body(r)):
            self.ledger.error(f"{what} -> {r.status_code} Retry-After={retry_after!r} {r.text[:300]}")
        time.sleep(0.05)  # a client honouring Retry-After would wait longer; keep the load up
        return True

    def _acked(self, kind: str) -> None:
        super()._acked(kind)
        self.ledger.count(f"{kind} acked {self.phase}")

    def _read_ok(self, route: str) -> None:
        super()._read_ok(route)
        self.ledger.count(f"read ok {self.phase}")
        self.ledger.count(f"read ok {self.phase} {route}")

    def _targets(self) -> list[tuple[Callable[..., None], tuple]]:
        return [*super()._targets(), *((self.browser, (k,)) for k in range(2))]

    def browser(self, k: int) -> None:
        """Users' posts, search and single posts."""
        rng = random.Random(400 + k)
        led = self.ledger
        with self._clients(1400 + k) as http:
            while not self.stop.is_set():
                time.sleep(rng.uniform(0.01, 0.05))
                route = rng.choice(("user_posts", "search", "post"))
                if route == "user_posts":
                    url, params = f"/v1/users/{rng.choice(self.users)['handle']}/posts", {"limit": 5}
                elif route == "search":
                    url, params = "/v1/search/posts", {"q": f"{self.marker} #tag{rng.randrange(3)}", "limit": 5}
                else:
                    with led.lock:
                        if not led.acked:
                            continue
                        pid = rng.choice(list(led.acked))
                    url, params = f"/v1/posts/{pid}", {}
                try:
                    r = http.send("GET", url, params=params)
                except httpx.TransportError:
                    continue
                if r is None or self._server_error(r, f"GET {url} {params}"):
                    continue
                gone = route == "post" and r.status_code == 404 and pid in led.targeted
                if r.status_code != 200 and not gone:
                    led.error(f"GET {url} {params} -> {r.status_code} {r.text[:300]}")
                    continue
                self._read_ok(route)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _wait_for(load: OutageLoad, key: str, more: int, what: str) -> None:
    """Let the load run until ``more`` more of ``key`` are counted (a progress guard)."""
    led = load.ledger
    target = led.counts.get(key, 0) + more
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    while led.counts.get(key, 0) < target:
        assert time.monotonic() < deadline, f"no progress: {what}; counts {dict(sorted(led.counts.items()))}"
        assert all(t.is_alive() for t in load.threads), "a load thread died"
        time.sleep(0.02)


def _readiness(dep: Deployment) -> tuple[int, list[str]]:
    """``/readyz`` of an API process: its status and the backends it names as failing."""
    r = httpx.get(dep.urls[0] + "/readyz", timeout=10.0)
    return r.status_code, r.json()["failing"]


def _ready_again(dep: Deployment) -> None:
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    while _readiness(dep) != (200, []):
        assert time.monotonic() < deadline, f"/readyz still failing: {_readiness(dep)}"
        time.sleep(0.1)


def _hold(seconds: float, since: float) -> None:
    time.sleep(max(0.0, since + seconds - time.monotonic()))


def _start_load(dep: Deployment, before_follows: Callable[[list[dict[str, Any]]], None] | None = None) -> OutageLoad:
    """Six users as ``make_world`` makes them (counted), drained, and the load running."""
    ledger = Ledger()
    users = make_world(dep.urls[0], "o", ledger, before_follows)
    load = OutageLoad(dep.urls, users, f"out{uuid.uuid4().hex[:10]}", ledger)
    dep.drain()
    load.start()
    return load


def _outage_under_load(dep: Deployment, backend: str, seconds: float, stop: Callable[[], None],
                       start: Callable[[], None],
                       while_down: Callable[[OutageLoad], None],
                       before_follows: Callable[[list[dict[str, Any]]], None] | None = None,
                       ) -> tuple[OutageLoad, float]:
    """The scenario's run: the load warmed up, ``backend`` stopped for ``seconds`` (while
    ``while_down`` checks what users and probes see), started again, and the load let run
    until writes are acknowledged and home timelines read again and ``/readyz`` is green.
    Returns the stopped load and how long the backend was down."""
    load = _start_load(dep, before_follows)
    try:
        _wait_for(load, "post acked", 40, "warm-up posts")
        load.phase = "outage"
        down = time.monotonic()
        stop()
        while_down(load)
        _hold(seconds, down)
        start()
        outage_s = time.monotonic() - down
        load.phase = "after"
        _wait_for(load, "post acked after", 40, f"posts after {backend} returned (no process restarted)")
        _wait_for(load, "read ok after home", 20, f"home reads after {backend} returned")
        _ready_again(dep)
    finally:
        load.finish()
    return load, outage_s


def _diag(dep: Deployment, load: OutageLoad, *more: str) -> str:
    return "\n".join([f"counts {dict(sorted(load.ledger.counts.items()))}", dep.logs(), *more])


def _server_errors(load: OutageLoad) -> dict[str, int]:
    """The 5xx answers counted, by status and phase: {"503 outage": n, ...}."""
    return {k: v for k, v in load.ledger.counts.items() if re.fullmatch(r"5\d\d \w+", k)}


def _final_checks(dep: Deployment, load: OutageLoad, backend: str, diag: str) -> tuple[Any, Any]:
    """After the repair: drained, the oracle, no dead letters, nothing relayed twice or
    lost, no process restarted, no error logged, the outage logged once per process and
    ``backend`` with its recovery, and the audit clean (last)."""
    led = load.ledger
    dep.drain()
    outcome = check_everything(dep.client(0), load.users, led, load.marker, diag)
    assert not dep.dead_letters(), f"dead letters after an outage: {dep.dead_letters()}\n{diag}"
    assert not dep.grep_logs(r"dead-lettered"), dep.grep_logs(r"dead-lettered")
    outbox = dep.sql("SELECT count(*) FROM outbox")[0][0]
    stream = dep.stream_info()["state"]["messages"]
    assert stream == outbox, f"JetStream holds {stream} messages for {outbox} outbox events"
    restarted = [p.name for p in [*dep.apis, *dep.workers] if p.runs != 1 or not p.alive]
    assert not restarted, f"processes restarted or dead: {restarted}"
    bad = dep.grep_logs(r"Traceback|\bERROR\b|\bCRITICAL\b")
    assert not bad, "errors logged during the outage:\n" + "\n".join(bad[:20])
    # A process logs "recovered" after its first call that works and QUIET seconds without a
    # failure: a worker in backoff (up to 2 s) makes that call a moment after the others.
    deadline = time.monotonic() + RECOVERY_LOG_TIMEOUT
    lines = _outage_lines(dep, backend)
    while any(w and not r for w, r in lines.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        lines = _outage_lines(dep, backend)
    assert any(w for w, _ in lines.values()), f"no process logged the outage: {lines}"
    assert all(w <= 2 and r <= w for w, r in lines.values()), f"outage log lines per process: {lines}"
    assert all(r >= 1 for w, r in lines.values() if w), f"an outage without its recovery line: {lines}"
    audit = run_audit(dep.env)
    assert audit.exit_code == 0, audit.explain()
    return outcome, audit


def _outage_lines(dep: Deployment, backend: str) -> dict[str, tuple[int, int]]:
    """Per API/worker process: (warnings that ``backend`` is unavailable, "recovered" lines)."""
    out = {}
    for p in [*dep.apis, *dep.workers]:
        text = p.log_text(all_runs=True)
        out[p.name] = (len(re.findall(rf"{backend} is unavailable", text)),
                       len(re.findall(rf"{backend} recovered after", text)))
    return out


def _record(scenario: str, load: OutageLoad, outcome: Any, audit: Any, outage_s: float,
            **extra: int) -> None:
    """The scenario's figures; ``extra`` goes between the shared ones and the outage's length."""
    led = load.ledger
    record(ScenarioFigures(
        scenario=scenario, faults=1, requests=led.requests, writes_acknowledged=led.writes_acknowledged,
        writes_lost=outcome.lost, audit_divergences=audit.divergences,
        extra={"5xx": led.counts.get("5xx", 0),
               "503": sum(v for k, v in _server_errors(load).items() if k.startswith("503 ")),
               "reads_during_outage": led.counts.get("read ok outage", 0),
               **extra, **outcome.extra(led), "outage_s": round(outage_s, 1)}))


# --------------------------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------------------------


def test_redis_stopped_for_10s_under_load_no_5xx_reads_from_postgresql(tmp_path) -> None:
    with deployment(tmp_path, SETTINGS) as dep:
        def while_down(load: OutageLoad) -> None:
            _wait_for(load, "post acked outage", 10, "posts while Redis is down")
            _wait_for(load, "read ok outage home", 20, "home reads while Redis is down")
            assert _readiness(dep) == (503, ["cache"])  # /readyz names the backend that is down

        load, outage_s = _outage_under_load(dep, "Redis", REDIS_OUTAGE_S, stop=dep.stop_redis,
                                            start=dep.start_redis,  # started again empty
                                            while_down=while_down)
        led = load.ledger
        diag = _diag(dep, load)
        assert not led.errors, f"unexpected answers: {led.errors[:10]}\n{diag}"
        assert led.counts.get("5xx", 0) == 0, diag
        for route in ("home", "user_posts", "search", "post"):
            assert led.counts.get(f"read ok outage {route}", 0) > 0, f"no {route} read answered during the outage"
        fallbacks = dep.grep_logs(r"Redis is unavailable", dep.apis)
        assert fallbacks, "the API processes never saw Redis down"
        outcome, audit = _final_checks(dep, load, "Redis", diag)
        _record(f"scale-out: Redis stopped {REDIS_OUTAGE_S:g} s under load", load, outcome, audit, outage_s,
                posts_acked_during_outage=led.counts.get("post acked outage", 0))


def _pg_set_email(dep: Deployment) -> Callable[[int, str], None]:
    """An operator's way to give a user an email address, in the record store."""
    def set_email(uid: int, address: str) -> None:
        assert dep.sql("UPDATE users SET email = %s, email_key = %s WHERE id = %s RETURNING id",
                       (address, address.lower(), uid)) == [(uid,)]
    return set_email


def test_postgresql_stopped_under_load_503_with_retry_after_then_resumes_by_itself(tmp_path) -> None:
    with OutsideWorld() as outside, private_pg_deployment(tmp_path, {**SETTINGS, **outside.settings}) as dep:
        outside.subscribe(dep.env)  # before the first account: every event is sent
        def while_down(load: OutageLoad) -> None:
            _wait_for(load, "post unavailable", 5, "posts answered 503 while PostgreSQL is down")
            status, failing = _readiness(dep)
            assert status == 503 and "store" in failing and "cache" not in failing, failing
            # liveness stays 200: a probe must not restart a process that waits for its database
            live = httpx.get(dep.urls[0] + "/healthz", timeout=10.0)
            assert live.status_code == 200 and "lag_error" in live.json(), live.text

        load, outage_s = _outage_under_load(dep, "PostgreSQL", PG_OUTAGE_S,
                                            stop=lambda: dep.stop_postgres("fast"),
                                            start=dep.start_postgres, while_down=while_down,
                                            before_follows=lambda users: outside.give_emails(
                                                users, _pg_set_email(dep)))
        led = load.ledger
        diag = _diag(dep, load, dep.pg.log_tail())
        # every 5xx was a 503 with Retry-After and {"error": {"code": "unavailable"}}: else an error
        assert not led.errors, f"unexpected answers: {led.errors[:10]}\n{diag}"
        five = _server_errors(load)
        assert set(k.split()[0] for k in five) == {"503"}, five
        assert five.get("503 before", 0) == 0, five
        outcome, audit = _final_checks(dep, load, "PostgreSQL", diag)
        heard = outside.check(load.users, led, outcome, diag)
        _record(f"scale-out: PostgreSQL stopped ~{PG_OUTAGE_S:g} s under load", load, outcome, audit, outage_s,
                writes_503=led.counts.get("post unavailable", 0), **heard)
