"""SIGTERM drains (issue 5, "Safety for clients"): in-flight requests finish, consumers
finish and acknowledge what they hold, then the process exits 0; nothing acknowledged is
lost.

Each request of the load is timed from the client's side: ``sent`` is the moment its last
byte was written (httpcore's trace), ``done`` the moment its whole answer was read. A
request sent before the SIGTERM was in flight at the signal: it must get a complete answer
(no reset, no 5xx). Requests sent after it may be refused (no effect: the client tries the
other API process, if any) and, if dropped, are "unknown" for the oracle.

- Embedded: ``homefeed serve`` under concurrent posting, replying, favouriting and boosting
  (issue 11) and big home-timeline reads gets SIGTERM; it exits 0; restarted on the same
  data, every acknowledged write is there exactly once, every timeline (reply and boost
  rules), notification list, search and counter equals the oracle, and ``homefeed audit``
  is clean.
- Scale-out: the one worker gets SIGTERM while the fan-out consumer holds events (a
  celebrity-ish author's posts to hundreds of cached timelines): it goes on applying them
  (its log shows fan-outs done after "stopping"), acknowledges them and exits 0; JetStream
  never redelivers anything (the fan-out was complete) and every follower's cached
  timeline is right. Meanwhile a few fans favourite and unfavourite the star's posts: the
  star's notifications and the posts' counters equal the favourites their requests allow. Then an API process gets SIGTERM under load: every request in flight
  at the signal is answered, it exits 0, and after a restart and the drain the records, the
  timelines, the search and the audit agree with the oracle.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import httpx
import pytest

from tests.e2e.audit_check import run_audit
from tests.e2e import conversation_kit as ck
from tests.e2e.crash_kit import (
    NOT_SENT,
    POSTERS,
    EmbeddedServer,
    Ledger,
    allowed_states,
    check_everything,
    drain,
    make_world,
    walk,
)
from tests.e2e.fault_figures import ScenarioFigures, record
from tests.e2e.scaleout import Deployment, deployment

pytestmark = pytest.mark.slow

#: Requests in flight (sent, not answered) the load must have before the SIGTERM is sent.
IN_FLIGHT_AT_SIGNAL = 4
_BAD_LOG = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


# --------------------------------------------------------------------------------------------
# requests timed from the client's side
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Attempt:
    """One HTTP request as its client saw it."""

    what: str
    api: int
    sent: float | None = None  # monotonic time its last byte was written
    done: float | None = None  # monotonic time its whole answer was read
    status: int | None = None
    failure: str | None = None  # "refused" (never sent) or the transport error's name
    response: httpx.Response | None = None


@dataclass
class Traffic:
    """Every attempt of the load threads, and which ones are in flight right now."""

    urls: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[Attempt] = field(default_factory=list)
    active: set[Attempt] = field(default_factory=set)
    ledger: Ledger = field(default_factory=Ledger)

    def clients(self, timeout: float = 30.0) -> list[httpx.Client]:
        return [httpx.Client(base_url=u, timeout=timeout) for u in self.urls]

    def send(self, http: list[httpx.Client], api: int, what: str, method: str, url: str,
             **kw: Any) -> Attempt:
        a = Attempt(what, api)

        def trace(event: str, info: dict) -> None:
            if event == "http11.send_request_body.complete":
                a.sent = time.monotonic()

        with self.lock:
            self.attempts.append(a)
            self.active.add(a)
        try:
            a.response = http[api].request(method, url, extensions={"trace": trace}, **kw)
            a.status = a.response.status_code
        except NOT_SENT:
            a.failure = "refused"
        except httpx.TransportError as exc:
            a.failure = type(exc).__name__
        finally:
            a.done = time.monotonic()
            with self.lock:
                self.active.discard(a)
        return a

    def send_anywhere(self, http: list[httpx.Client], rng: random.Random, what: str, method: str,
                      url: str, **kw: Any) -> Attempt | None:
        """Try the API processes in a random order until one takes the connection; None if
        every one refused it (nothing was sent)."""
        for api in rng.sample(range(len(http)), len(http)):
            a = self.send(http, api, what, method, url, **kw)
            if a.failure != "refused":
                return a
        time.sleep(0.01)
        return None

    def in_flight(self, api: int | None = None) -> int:
        with self.lock:
            return sum(1 for a in self.active if a.sent is not None and (api is None or a.api == api))

    def wait_in_flight(self, n: int, api: int | None = None, timeout: float = 30.0) -> None:
        """Until at least ``n`` requests (to ``api``) are sent and not yet answered."""
        deadline = time.monotonic() + timeout
        while self.in_flight(api) < n:
            assert time.monotonic() < deadline, f"never {n} requests in flight at once"
            time.sleep(0.001)

    # -- the verdict on a SIGTERM --------------------------------------------------------------
    def check_signal(self, signalled: float, api: int | None = None) -> int:
        """Every request sent (to ``api``) before ``signalled`` got a whole answer, 2xx;
        returns how many of them were still in flight at the signal."""
        with self.lock:
            before = [a for a in self.attempts if a.sent is not None and a.sent < signalled
                      and (api is None or a.api == api)]
        bad = [a for a in before if a.failure is not None or a.status is None or not 200 <= a.status < 300]
        assert not bad, ("requests in flight at the SIGTERM without a whole 2xx answer: "
                         + "; ".join(f"{a.what} to api{a.api}: {a.failure or a.status} "
                                     f"{a.response.text[:200] if a.response is not None else ''}"
                                     for a in bad[:10]))
        caught = sum(1 for a in before if a.done is not None and a.done > signalled)
        assert caught >= 1, "no request was in flight at the SIGTERM: the test proved nothing"
        return caught

    def figures(self) -> dict[str, int]:
        with self.lock:
            done = [a for a in self.attempts if a.failure != "refused"]
            return {
                "requests": len(done),
                "refused": sum(1 for a in self.attempts if a.failure == "refused"),
                "unknown": sum(1 for a in done if a.failure is not None),
                "5xx": sum(1 for a in done if a.status is not None and a.status >= 500),
            }


def poster(traffic: Traffic, users: Sequence[dict[str, Any]], author: int, marker: str,
           seed: int, pause: float = 0.0) -> Callable[[threading.Event], None]:
    """Posts as ``users[author]`` until stopped (``pause`` seconds apart, at most), each
    outcome in the traffic's ledger (acknowledged, or in flight when dropped)."""

    def run(stop: threading.Event) -> None:
        rng = random.Random(seed)
        led = traffic.ledger
        http = traffic.clients()
        headers = {"Authorization": f"Bearer {users[author]['token']}"}
        try:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"{marker} by {users[author]['handle']} n{n} #tag{n % 3} {uuid.uuid4().hex[:8]}"
                a = traffic.send_anywhere(http, rng, "post", "POST", "/v1/posts", json={"text": text},
                                          headers=headers)
                if a is None:
                    continue
                if a.failure is not None:
                    with led.lock:
                        led.in_flight[text] = author
                    continue
                if a.status != 201:
                    led.error(f"POST /v1/posts -> {a.status} {a.response.text[:300]}")
                    continue
                body = a.response.json()
                if body.get("text") != text:
                    led.error(f"POST /v1/posts answered {body} for {text!r}")
                with led.lock:
                    led.acked[int(body["id"])] = (author, text)
                led.count("post acked")
                if pause:
                    time.sleep(rng.uniform(0, pause))
        finally:
            for c in http:
                c.close()

    return run


def talker(traffic: Traffic, users: Sequence[dict[str, Any]], who: int, marker: str, seed: int,
           pause: float = 0.0, kinds: Sequence[str] = ("reply", "favourite", "reblog"),
           ) -> Callable[[threading.Event], None]:
    """As ``users[who]``, replies (mentioning the author replied to), favourites and
    unfavourites, boosts and unboosts of the newest acknowledged posts (issue 11), each outcome
    in the ledger as ``crash_kit``'s talkers record it (``check_everything`` then checks the
    records, every home with the reply and boost rules, the notifications and counters).
    Nothing is deleted in these scenarios: any answer but 2xx is an error."""

    def run(stop: threading.Event) -> None:
        rng = random.Random(seed)
        led = traffic.ledger
        http = traffic.clients()
        headers = {"Authorization": f"Bearer {users[who]['token']}"}
        on: dict[tuple[str, int], bool] = {}
        try:
            n = 0
            while not stop.is_set():
                if pause:
                    time.sleep(rng.uniform(0, pause))
                with led.lock:
                    recent = list(itertools.islice(reversed(led.acked), 30))
                if not recent:
                    time.sleep(0.01)
                    continue
                pid = rng.choice(recent)
                kind = rng.choice(kinds)
                undo = [p for (k, p), state in on.items() if k == kind and state]
                if undo and rng.random() < 0.4:  # undone next, now and then
                    pid = rng.choice(undo[-30:])
                if kind == "reply":
                    n += 1
                    author = led.acked[pid][0]
                    text = f"{marker} reply by {users[who]['handle']} n{n} @{users[author]['handle']} {uuid.uuid4().hex[:8]}"
                    with led.lock:
                        led.reply_to[text] = pid
                    a = traffic.send_anywhere(http, rng, "reply", "POST", "/v1/posts", headers=headers,
                                              json={"text": text, "in_reply_to_id": str(pid)})
                    if a is None:
                        continue
                    if a.failure is not None:
                        with led.lock:
                            led.in_flight[text] = who
                    elif a.status != 201:
                        led.error(f"reply -> {a.status} {a.response.text[:300]}")
                    else:
                        with led.lock:
                            led.acked[int(a.response.json()["id"])] = (who, text)
                        led.count("reply acked")
                    continue
                state = not on.get((kind, pid), False)
                verb = kind if state else f"un{kind}"
                a = traffic.send_anywhere(http, rng, verb, "POST", f"/api/v1/statuses/{pid}/{verb}",
                                          headers=headers)
                if a is None:
                    continue
                ops = led.fav_ops if kind == "favourite" else led.boost_ops
                if a.failure is not None:
                    op: tuple = (state, False) if kind == "favourite" else (state, False, None)
                elif a.status != 200:
                    led.error(f"{verb} {pid} -> {a.status} {a.response.text[:300]}")
                    continue
                else:
                    body = a.response.json()
                    op = (state, True) if kind == "favourite" else (state, True, int(body["id"]) if state else None)
                    led.count(f"{verb} acked")
                with led.lock:
                    ops.setdefault((who, pid), []).append(op)  # type: ignore[arg-type]
                on[(kind, pid)] = state
        finally:
            for c in http:
                c.close()

    return run


def reader(traffic: Traffic, users: Sequence[dict[str, Any]], who: int, seed: int,
           ) -> Callable[[threading.Event], None]:
    """Big pages (the slow requests): a home timeline and an author's posts, 100 at a time."""

    def run(stop: threading.Event) -> None:
        rng = random.Random(seed)
        http = traffic.clients()
        headers = {"Authorization": f"Bearer {users[who]['token']}"}
        try:
            while not stop.is_set():
                a = traffic.send_anywhere(http, rng, "home read", "GET", "/v1/timelines/home",
                                          params={"limit": 100}, headers=headers)
                if a is not None and a.status is not None and a.status != 200:
                    traffic.ledger.error(f"GET home -> {a.status} {a.response.text[:300]}")
                a = traffic.send_anywhere(http, rng, "posts read", "GET",
                                          f"/v1/users/{users[rng.randrange(len(users))]['handle']}/posts",
                                          params={"limit": 100})
                if a is not None and a.status is not None and a.status != 200:
                    traffic.ledger.error(f"GET posts -> {a.status} {a.response.text[:300]}")
        finally:
            for c in http:
                c.close()

    return run


class Threads:
    """Load threads ``fn(stop)``; the first exception is re-raised by :meth:`finish`."""

    def __init__(self, fns: Sequence[Callable[[threading.Event], None]]) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True) for fn in fns]
        for t in self.threads:
            t.start()

    def _run(self, fn: Callable[[threading.Event], None]) -> None:
        try:
            fn(self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish()
            self.errors.append(exc)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"
        if self.errors:
            raise self.errors[0]


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def clean_log(text: str) -> list[str]:
    return [line for line in text.splitlines() if _BAD_LOG.search(line)]


# --------------------------------------------------------------------------------------------
# embedded
# --------------------------------------------------------------------------------------------


def test_sigterm_of_embedded_serve_answers_every_request_in_flight(tmp_path) -> None:
    server = EmbeddedServer(tmp_path)
    server.start()
    try:
        marker = f"drain{uuid.uuid4().hex[:10]}"
        traffic = Traffic([server.url])
        users = make_world(server.url, "drain", traffic.ledger)
        led = traffic.ledger
        load = Threads([poster(traffic, users, k % len(POSTERS), marker, k) for k in range(16)]
                       + [talker(traffic, users, k, marker, 300 + k) for k in range(len(POSTERS))]
                       + [reader(traffic, users, k, 100 + k) for k in range(4)])
        try:
            wait_for("200 acknowledged posts", lambda: led.counts.get("post acked", 0) >= 200)
            traffic.wait_in_flight(IN_FLIGHT_AT_SIGNAL)
            signalled = time.monotonic()
            server.terminate()
            rc = server.proc.wait(timeout=30)
        finally:
            load.finish()
        stopped_log = server.logs(max_chars=100_000)
        assert rc == 0, f"homefeed serve exited {rc} on SIGTERM\n{server.logs()}"
        caught = traffic.check_signal(signalled)
        assert not led.errors, led.errors[:10]
        assert not clean_log(stopped_log), f"errors logged while draining: {clean_log(stopped_log)[:10]}"

        server.start()  # the same data dir: what was acknowledged must all be there
        diag = f"client figures {traffic.figures()}\n{server.logs()}"
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            drain(http)
            outcome = check_everything(http, users, led, marker, diag)
        audit = run_audit(server.env, url=server.url)
        assert audit.exit_code == 0, f"audit after the SIGTERM drain:\n{audit.explain()}\n{diag}"
        figures = traffic.figures()
        record(ScenarioFigures(
            scenario="embedded: API SIGTERM drain", faults=1,
            requests=figures.pop("requests") + led.requests,  # + the setup's
            writes_acknowledged=led.writes_acknowledged, writes_lost=outcome.lost,
            audit_divergences=audit.divergences,
            extra={"in flight at SIGTERM": caught, **figures, **outcome.extra(led)},
        ))
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# scale-out
# --------------------------------------------------------------------------------------------

FANS = 150
#: Seconds between one poster's posts, at most: the one worker keeps up with the posters.
POST_PAUSE = 0.04
CAP = 5
#: Worker SIGTERMs (each followed by a restart): at least the first number, and more, up to
#: the second, until one has found fan-out events to finish (applied after the signal).
WORKER_ROUNDS = (3, 8)
#: Fans that favourite and unfavourite the star's newest posts during the SIGTERMs (issue 11:
#: the notifier drains too). Favourites only: the fans' homes stay the star's posts.
FAVOURITING_FANS = 4


def register_fans(dep: Deployment, n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``star`` and ``n`` fans following it, over both API processes; every fan's home
    timeline read once, so that it is cached and the star's posts are pushed into it."""
    star: dict[str, Any] = {}
    fans: list[dict[str, Any]] = []
    with httpx.Client(timeout=30.0) as http:
        r = http.post(dep.urls[0] + "/v1/users", json={"handle": f"star_{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
        star = r.json()
        for i in range(n):
            base = dep.urls[i % len(dep.urls)]
            r = http.post(base + "/v1/users", json={"handle": f"fan{i}_{uuid.uuid4().hex[:8]}"})
            assert r.status_code == 201, r.text
            fan = r.json()
            r = http.post(f"{base}/v1/users/{star['handle']}/follow",
                          headers={"Authorization": f"Bearer {fan['token']}"})
            assert r.status_code == 200, r.text
            fans.append(fan)
        dep.drain()
        for i, fan in enumerate(fans):
            r = http.get(dep.urls[i % len(dep.urls)] + "/v1/timelines/home", params={"limit": 1},
                         headers={"Authorization": f"Bearer {fan['token']}"})
            assert r.status_code == 200, r.text
    return star, fans


def fanouts_after_stopping(log: str) -> int:
    """Fan-outs the worker applied after it logged that it was stopping (SIGTERM)."""
    _, found, after = log.partition("stopping: finishing the batch in hand")
    return after.count('"fan-out done"') if found else 0


def redeliveries(dep: Deployment, consumer: str) -> int:
    """Deliveries beyond the first of each message (the stream holds nothing but events,
    every one for this consumer, so the consumer sequence runs ahead of the stream's only
    by redeliveries)."""
    info = dep.consumer_info(consumer)
    return info["delivered"]["consumer_seq"] - info["delivered"]["stream_seq"]


def test_scaleout_sigterm_drains_worker_and_api(tmp_path) -> None:
    settings = {"HOMEFEED_CELEBRITY_THRESHOLD": "100000", "HOMEFEED_TIMELINE_CAP": str(CAP)}
    # One worker, so that whatever the fan-out consumer has in hand is in its hands; an
    # ack_wait far longer than the test's steps, so that any redelivery means "left unacked".
    with deployment(tmp_path, settings, workers=1, ack_wait=30.0) as dep:
        star, fans = register_fans(dep, FANS)
        marker = f"drain{uuid.uuid4().hex[:10]}"
        traffic = Traffic(list(dep.urls))
        led = traffic.ledger
        led.count("setup acked", 1 + 2 * FANS)
        led.count("answered", 1 + 3 * FANS)
        authors = [star]
        load = Threads([poster(traffic, authors, 0, marker, k, POST_PAUSE) for k in range(8)]
                       + [talker(traffic, fans, k, marker, 300 + k, POST_PAUSE, kinds=("favourite",))
                          for k in range(FAVOURITING_FANS)]
                       + [reader(traffic, [fans[k], star], 0, 200 + k) for k in range(2)])
        worker = dep.workers[0]
        rounds: list[str] = []
        try:
            # -- the worker: SIGTERM while the fan-out holds events ---------------------------
            caught_mid_batch = False
            for k in range(WORKER_ROUNDS[1]):
                target = led.counts.get("post acked", 0) + 20
                wait_for("20 more posts", lambda: led.counts.get("post acked", 0) >= target)
                wait_for("fan-out events in hand",
                         lambda: dep.consumer_info("fanout")["num_ack_pending"] > 0)
                worker.signal(signal.SIGTERM)
                rc = worker.popen.wait(timeout=30)
                assert rc == 0, f"worker exited {rc} on SIGTERM\n{worker.log_tail()}"
                held = dep.consumer_info("fanout")["num_ack_pending"]
                assert held == 0, (
                    f"the worker exited holding {held} unacknowledged events\n{worker.log_tail()}")
                applied = fanouts_after_stopping(worker.log_text())
                rounds.append(f"SIGTERM {len(rounds) + 1}: {applied} fan-outs applied after it")
                worker.start()
                caught_mid_batch = caught_mid_batch or applied > 0
                if caught_mid_batch and k + 1 >= WORKER_ROUNDS[0]:
                    break
            assert caught_mid_batch, f"no SIGTERM found fan-out events to finish: {rounds}"

            # -- an API process: SIGTERM under load ----------------------------------------
            api = dep.apis[0]
            traffic.wait_in_flight(IN_FLIGHT_AT_SIGNAL // 2, api=0)
            signalled = time.monotonic()
            api.signal(signal.SIGTERM)
            rc = api.popen.wait(timeout=30)
            assert rc == 0, f"API process exited {rc} on SIGTERM\n{api.log_tail()}"
            caught = traffic.check_signal(signalled, api=0)
            target = led.counts.get("post acked", 0) + 20
            wait_for("20 more posts on the other API", lambda: led.counts.get("post acked", 0) >= target)
            api.start()
            target = led.counts.get("post acked", 0) + 20
            wait_for("20 more posts", lambda: led.counts.get("post acked", 0) >= target)
        finally:
            load.finish()
        assert not led.errors, led.errors[:10]
        diag = f"{rounds}; client figures {traffic.figures()}"

        dep.drain()
        assert redeliveries(dep, "fanout") == 0, (
            f"JetStream redelivered fan-out events: a SIGTERM left some unacknowledged; {diag}\n"
            f"{dep.consumer_info('fanout')}")
        lost = check_scaleout_records(dep, led, diag)
        check_fans(dep, star, fans, marker, diag)
        notifications = check_favourites(dep, star, fans, led, diag)
        bad = [line for p in [*dep.apis, *dep.workers] for line in clean_log(p.log_text(all_runs=True))]
        assert not bad, f"errors logged around the SIGTERMs: {bad[:10]}"

        audit = run_audit({k: v for k, v in dep.env.items() if k.startswith("HOMEFEED_")})
        assert audit.exit_code == 0, f"audit after the SIGTERM drains:\n{audit.explain()}\n{diag}"
        figures = traffic.figures()
        requests = figures.pop("requests") + led.requests
        record(ScenarioFigures(
            scenario=f"scale-out: worker SIGTERM mid-fan-out x{len(rounds)}, API SIGTERM",
            faults=len(rounds) + 1, requests=requests, writes_acknowledged=led.writes_acknowledged,
            writes_lost=lost, audit_divergences=audit.divergences,
            extra={"API in flight at SIGTERM": caught, "redeliveries": 0, **figures,
                   **led.conversation_acked(), "notifications": notifications},
        ))


def check_scaleout_records(dep: Deployment, led: Ledger, diag: str) -> int:
    """The system of record holds every acknowledged post once, and nothing but those and
    posts whose request was dropped; the stream one message per outbox event; no dead
    letters. Returns the number of acknowledged posts lost (0, or it fails)."""
    rows = dep.sql("SELECT id, text FROM posts")
    present = {int(i): t for i, t in rows}
    texts = [t for _, t in rows]
    assert len(texts) == len(set(texts)), f"a request stored more than one post; {diag}"
    lost = sorted(pid for pid in led.acked if present.get(pid) != led.acked[pid][1])
    assert not lost, f"acknowledged posts lost: {lost[:10]} ({len(lost)}); {diag}"
    invented = [t for pid, t in present.items() if pid not in led.acked and t not in led.in_flight]
    assert not invented, f"posts neither acknowledged nor in flight: {invented[:5]}; {diag}"
    outbox = dep.sql("SELECT count(*) FROM outbox")[0][0]
    stream = dep.stream_info()["state"]["messages"]
    assert stream == outbox, f"JetStream holds {stream} messages for {outbox} outbox events"
    assert not dep.dead_letters(), dep.dead_letters()
    return len(lost)


def check_favourites(dep: Deployment, star: dict[str, Any], fans: list[dict[str, Any]], led: Ledger,
                     diag: str) -> int:
    """The favourites of the favouriting fans are in the states their requests allow, the
    star's notifications are exactly a follow per fan and a favourite per favourite (each
    once), and every favourited post counts its favourites. Returns the notifications read."""
    errors: list[str] = []
    favs: set[tuple[int, int]] = set()
    with httpx.Client(base_url=dep.urls[0], timeout=30.0) as http:
        for i in sorted({i for i, _ in led.fav_ops}):
            for pid in ck.favourites_of(http, fans[i]["token"]):
                if not any(state for state, _ in led.fav_ops.get((i, pid), [])):
                    errors.append(f"fan {i} favourited {pid}: nobody asked")
                favs.add((i, pid))
        for pair, ops in led.fav_ops.items():
            if (pair in favs) not in allowed_states(False, ops):
                errors.append(f"fan {pair[0]}, post {pair[1]}: favourited {pair in favs}, requests {ops}")
        got, problems = ck.notification_keys(ck.notifications_of(http, star["token"]),
                                             {f["id"]: i for i, f in enumerate(fans)})
        want = Counter([("follow", i, None, None) for i in range(len(fans))]
                       + [("favourite", i, pid, None) for i, pid in favs])
        wrong = ck.compare_notifications(got, want)
        errors += problems + ([f"the star's notifications: {wrong}"] if wrong else [])
        for pid in sorted({pid for _, pid in led.fav_ops}):
            want_c = (0, 0, sum(1 for _, p in favs if p == pid))
            got_c = ck.status_counts(http, pid)
            if got_c != want_c:
                errors.append(f"post {pid}: (replies, reblogs, favourites) {got_c} != records {want_c}")
    assert not errors, "\n".join(errors[:15]) + f"\n({len(errors)} differences); {diag}"
    return sum(got.values())


def check_fans(dep: Deployment, star: dict[str, Any], fans: list[dict[str, Any]], marker: str,
               diag: str) -> None:
    """Every fan's cached first page (pushed ids only) and, for a sample, the whole
    timeline, equal the star's posts; the search finds every post once."""
    newest = sorted((int(r[0]) for r in dep.sql("SELECT id FROM posts WHERE text LIKE %s",
                                                (f"{marker} %",))), reverse=True)
    errors = []
    with httpx.Client(timeout=30.0) as http:
        for i, fan in enumerate(fans):
            base = dep.urls[i % len(dep.urls)]
            auth = {"Authorization": f"Bearer {fan['token']}"}
            r = http.get(base + "/v1/timelines/home", params={"limit": CAP}, headers=auth)
            assert r.status_code == 200, r.text
            got = [int(p["id"]) for p in r.json()["posts"]]
            if got != newest[:CAP]:
                errors.append(f"first page of fan {i}: {got} != {newest[:CAP]}")
        for i, fan in enumerate(fans[:: FANS // 5]):
            with httpx.Client(base_url=dep.urls[i % len(dep.urls)], timeout=30.0) as api:
                got = [int(p["id"]) for p in walk(api, "/v1/timelines/home", 100,
                                                  headers={"Authorization": f"Bearer {fan['token']}"})]
            if got != newest:
                errors.append(f"home of {fan['handle']}: {len(got)} posts, {len(newest)} exist; "
                              f"missing {sorted(set(newest) - set(got))[:5]}")
        with httpx.Client(base_url=dep.urls[0], timeout=30.0) as api:
            got = [int(p["id"]) for p in walk(api, "/v1/search/posts", 100, q=marker)]
        if got != newest:
            errors.append(f"search {marker}: {len(got)} posts, {len(newest)} exist")
    assert not errors, "\n".join(errors[:10]) + f"\n({len(errors)} wrong); {diag}"
