"""What the crash, drain and outage scenarios share: a restartable embedded server, the
concurrent clients with an honest ledger of what each request did, and the final check
against an oracle built from that ledger.

Every request's outcome is recorded as the client saw it:

- an answer: 2xx means the write happened (acknowledged); any other answer is an error,
  unless the scenario's :meth:`Load._server_error` takes a 5xx as the documented answer of
  an outage (``tests/e2e/test_outages.py``): then the write's outcome is *unknown*;
- the connection could not be opened (refused): the request never reached a server, it had
  no effect, and the client tries another API process (or waits, when there is none);
- the connection dropped after the request may have been sent (a kill): *unknown*, the
  write may or may not exist.

:func:`check_everything` then reads everything back over HTTP, after the drain:

- every acknowledged post exists exactly once unless an acknowledged delete removed it; an
  acknowledged delete is never undone;
- every post that exists was either acknowledged or in flight (never invented, never stored
  twice: texts are unique per request);
- the follow graph is one that the acknowledged and in-flight follows/unfollows allow;
- every user's whole home timeline, paged to the end (large and small pages, across the
  cap), equals the oracle: the existing posts and boosts of the user and of everyone they
  follow, newest first, with the reply and boost rules applied (docs/conversations.md);
  search finds every existing post exactly once; counters agree;
- the conversation writes (issue 11; the talkers: replies, mentions, favourites and
  unfavourites, boosts and unboosts, through ``/v1/posts`` and the Mastodon API): every
  reply replies to what it was sent to, every (user, post) favourite and boost is in a
  state its requests allow (an acknowledged one is there, with the boost id it answered),
  nothing exists that nobody asked for, a post answered 404 is gone; every user's
  notification list equals the function of those records (each once: ids unique, nothing
  missing, nothing extra) and every touched post's counters equal the records.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

from tests.e2e import conversation_kit as ck

ROOT = Path(__file__).resolve().parents[2]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable

THRESHOLD = 3
CAP = 100
STARTUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 30.0

# user index -> the users they follow for the whole test (0 is a celebrity: 5 followers;
# 1 has 2 fixed followers and churning ones, so it crosses the threshold up and down)
BASE_FOLLOWS = {
    0: [1, 2],
    1: [0, 2, 3],
    2: [0, 1],
    3: [0, 4],
    4: [0, 3, 5],
    5: [0, 4],
}
CHURN = [(3, 1), (4, 1), (5, 1), (5, 2)]  # (follower, followee) toggled under the faults
POSTERS = [0, 1, 2, 3, 4, 5]
READERS = [0, 1, 2, 3, 4, 5]  # reads keep every home timeline cached: pushes land in them
DELETERS = [1, 4]
TALKERS = [0, 1, 2, 3, 4, 5]  # replies, favourites, boosts (and mentions in texts): issue 11
#: The talkers act on the newest acknowledged posts: the boost rule's window decides often.
TALK_WINDOW = 30

#: The request never reached a server: no effect.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# the embedded server, restartable on the same data dir and port
# --------------------------------------------------------------------------------------------


class EmbeddedServer:
    """``python -m homefeed serve`` on a data dir of its own; each start logs to its own file."""

    def __init__(self, base: Path, settings: dict[str, str] | None = None) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.data_dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = {"HOMEFEED_CELEBRITY_THRESHOLD": str(THRESHOLD),
                         "HOMEFEED_TIMELINE_CAP": str(CAP), **(settings or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        """The ``HOMEFEED_*`` variables of this server: an operator's command (``homefeed
        audit``) run with them sees the same data and settings."""
        return {**self.settings, "HOMEFEED_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
        env.update(self.settings)
        env["PYTHONUNBUFFERED"] = "1"
        self.starts += 1
        log = self.base / f"server.{self.starts}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "homefeed", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server start #{self.starts} exited\n{self.logs()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server start #{self.starts} not ready\n{self.logs()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        assert self.proc is not None and self.proc.poll() is None, "the server died by itself"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, without waiting: the test watches what happens next."""
        assert self.proc is not None and self.proc.poll() is None, "the server died by itself"
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def logs(self, max_chars: int = 4000) -> str:
        parts = []
        for p in sorted(self.base.glob("server.*.log")):
            text = p.read_text(errors="replace")
            parts.append(f"----- {p.name} -----\n{text[-max_chars:]}")
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# what the clients saw
# --------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, tuple[int, str]] = field(default_factory=dict)  # post id -> (user, text)
    in_flight: dict[str, int] = field(default_factory=dict)  # text -> user: outcome unknown
    deleted: set[int] = field(default_factory=set)  # acknowledged deletes
    maybe_deleted: set[int] = field(default_factory=set)  # delete in flight at a fault
    targeted: set[int] = field(default_factory=set)  # posts a delete is (being) sent for
    # (follower, followee) -> the follow states the requests so far allow, in order
    follow_ops: dict[tuple[int, int], list[tuple[bool, bool]]] = field(default_factory=dict)
    # the conversation writes (issue 11): text -> the post a reply was sent to (acknowledged
    # or not); (user, post) -> the favourite / boost states the requests allow, in order,
    # each (state, acknowledged, the boost's id when an acknowledged boost answered one)
    reply_to: dict[str, int] = field(default_factory=dict)
    fav_ops: dict[tuple[int, int], list[tuple[bool, bool]]] = field(default_factory=dict)
    boost_ops: dict[tuple[int, int], list[tuple[bool, bool, int | None]]] = field(default_factory=dict)
    #: posts a conversation write was answered 404 for (they must be gone at the end)
    not_found: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)

    # -- the figures --------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        """Requests that reached a server or may have (answered, or dropped in flight)."""
        return self.counts.get("answered", 0) + self.counts.get("unknown", 0)

    @property
    def writes_acknowledged(self) -> int:
        kinds = ("post acked", "delete acked", "follow acked", "setup acked", "reply acked",
                 "favourite acked", "unfavourite acked", "reblog acked", "unreblog acked")
        return sum(self.counts.get(k, 0) for k in kinds)

    def extra(self) -> dict[str, int]:
        return {"unknown": self.counts.get("unknown", 0), "refused": self.counts.get("refused", 0),
                "5xx": self.counts.get("5xx", 0)}

    def conversation_acked(self) -> dict[str, int]:
        """The acknowledged conversation writes, by kind (the figures' extra column)."""
        return {k: self.counts.get(f"{k} acked", 0)
                for k in ("reply", "favourite", "unfavourite", "reblog", "unreblog")}


class Clients:
    """One load thread's connections, one pool per API process. ``send`` tries the API
    processes in a random order: a refused connection had no effect, so the next one is
    tried; an answer or a drop ends the request."""

    def __init__(self, urls: Sequence[str], ledger: Ledger, rng: random.Random,
                 timeout: float = 15.0) -> None:
        self.ledger = ledger
        self.rng = rng
        self.http = [httpx.Client(base_url=u, timeout=timeout) for u in urls]

    def close(self) -> None:
        for c in self.http:
            c.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, url: str, **kw: Any) -> httpx.Response | None:
        """The answer, or None when every API process refused the connection (nothing was
        sent). Raises ``httpx.TransportError`` when the request may have been sent but no
        answer came (its outcome is unknown)."""
        led = self.ledger
        for i in self.rng.sample(range(len(self.http)), len(self.http)):
            try:
                r = self.http[i].request(method, url, **kw)
            except NOT_SENT:
                led.count("refused")
                continue
            except httpx.TransportError:
                led.count("unknown")
                raise
            led.count("answered")
            if r.status_code >= 500:
                led.count("5xx")
            return r
        time.sleep(0.01)  # every API process is down: wait for a restart
        return None


class Load:
    """The concurrent clients of the crash scenarios: posters, deleters, readers and a
    follow churner, each thread with its own connections to every API process.

    Other fault scenarios reuse these clients through four hooks: :meth:`_server_error`
    (whether a 5xx answer may be the fault's documented answer), :meth:`_acked` and
    :meth:`_read_ok` (what is counted) and :meth:`_targets` (more client threads)."""

    def __init__(self, urls: Sequence[str], users: list[dict[str, Any]], marker: str,
                 ledger: Ledger | None = None) -> None:
        self.urls = list(urls)
        self.users = users
        self.marker = marker
        self.ledger = ledger if ledger is not None else Ledger()
        self.stop = threading.Event()
        self.finale = threading.Event()
        self.threads: list[threading.Thread] = []

    def _clients(self, seed: int) -> Clients:
        return Clients(self.urls, self.ledger, random.Random(seed))

    def _auth(self, u: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.users[u]['token']}"}

    # -- hooks --------------------------------------------------------------------------------
    def _server_error(self, r: httpx.Response, what: str) -> bool:
        """True when ``r`` is a server error that this scenario takes as "the request may or
        may not have happened" (the caller then records its outcome as unknown); an override
        records whatever else it finds wrong with it as an error. Here never: in the crash
        scenarios any answer but the expected one is an error."""
        return False

    def _acked(self, kind: str) -> None:
        """A write of ``kind`` (post, delete, follow) was acknowledged."""
        self.ledger.count(f"{kind} acked")

    def _read_ok(self, route: str) -> None:
        """A read of ``route`` was answered with a well-formed page."""
        self.ledger.count("read ok")

    def _targets(self) -> list[tuple[Callable[..., None], tuple]]:
        """The client threads to start: what each runs, with which arguments."""
        targets: list[tuple[Callable[..., None], tuple]] = [(self.poster, (u,)) for u in POSTERS]
        targets += [(self.deleter, (u,)) for u in DELETERS]
        targets += [(self.reader, (u,)) for u in READERS]
        targets += [(self.talker, (u,)) for u in TALKERS]
        targets.append((self.churner, ()))
        return targets

    # -- the clients --------------------------------------------------------------------------
    def poster(self, u: int) -> None:
        rng = random.Random(u)
        led = self.ledger
        with self._clients(1000 + u) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                text = f"{self.marker} from {self.users[u]['handle']} n{n} #tag{n % 3}{self._mention(rng, u, n)} {uuid.uuid4().hex[:8]}"
                try:
                    r = http.send("POST", "/v1/posts", json={"text": text}, headers=self._auth(u))
                except httpx.TransportError as exc:
                    with led.lock:
                        led.in_flight[text] = u
                    led.count(f"post unknown: {type(exc).__name__}")
                    continue
                if r is None:
                    continue
                if self._server_error(r, "POST /v1/posts"):
                    with led.lock:
                        led.in_flight[text] = u  # may have committed before its connection died
                    led.count("post unavailable")
                    continue
                if r.status_code != 201:
                    led.error(f"POST /v1/posts -> {r.status_code} {r.text[:300]}")
                    continue
                body = r.json()
                if body.get("text") != text or body.get("author", {}).get("id") != self.users[u]["id"]:
                    led.error(f"POST /v1/posts answered {body} for {text!r}")
                with led.lock:
                    led.acked[int(body["id"])] = (u, text)
                self._acked("post")
                time.sleep(rng.uniform(0, 0.01))

    def deleter(self, u: int) -> None:
        rng = random.Random(100 + u)
        led = self.ledger
        with self._clients(1100 + u) as http:
            while not self.stop.is_set():
                time.sleep(rng.uniform(0.02, 0.08))
                with led.lock:
                    mine = [pid for pid, (a, _) in led.acked.items() if a == u and pid not in led.targeted]
                    if not mine:
                        continue
                    pid = rng.choice(mine)
                    # before the send: a reader may find the post gone before the answer comes
                    led.targeted.add(pid)
                try:
                    r = http.send("DELETE", f"/v1/posts/{pid}", headers=self._auth(u))
                except httpx.TransportError as exc:
                    with led.lock:
                        led.maybe_deleted.add(pid)
                    led.count(f"delete unknown: {type(exc).__name__}")
                    continue
                if r is None:
                    with led.lock:
                        led.targeted.discard(pid)  # never sent: it may be chosen again
                    continue
                if self._server_error(r, f"DELETE /v1/posts/{pid}"):
                    with led.lock:
                        led.maybe_deleted.add(pid)
                    continue
                if r.status_code != 204:
                    led.error(f"DELETE /v1/posts/{pid} (acknowledged, never deleted) -> "
                              f"{r.status_code} {r.text[:300]}")
                    continue
                with led.lock:
                    led.deleted.add(pid)
                self._acked("delete")

    def _mention(self, rng: random.Random, u: int, n: int) -> str:
        """Every third text mentions someone (now and then its own author: no notification)."""
        if n % 3:
            return ""
        return f" @{self.users[rng.choice([v for v in POSTERS if v != u or rng.random() < 0.2])]['handle']}"

    # -- the conversation writes (issue 11) ----------------------------------------------------
    def talker(self, u: int) -> None:
        """Replies (a third of them mentioning someone), favourites and unfavourites, boosts
        and unboosts by user ``u``, of the newest acknowledged posts (so that the boost rule's
        window decides often), some of them being deleted meanwhile (then 404 is the right
        answer). One thread per user: the requests on one (user, post) pair are sequential,
        so their order is the server's, as the follow churner's are."""
        rng = random.Random(500 + u)
        led = self.ledger
        faved: dict[int, bool] = {}
        boosted: dict[int, bool] = {}
        with self._clients(1500 + u) as http:
            n = 0
            while not self.stop.is_set():
                time.sleep(rng.uniform(0.01, 0.04))
                with led.lock:
                    recent = list(itertools.islice(reversed(led.acked), TALK_WINDOW))
                    fresh = [p for p in recent if p not in led.targeted]
                if not recent:
                    continue
                pid = rng.choice(fresh if fresh and rng.random() < 0.9 else recent)
                r = rng.random()
                if r < 0.3:
                    n += 1
                    self._reply(http, u, pid, n, rng)
                elif r < 0.65:
                    pid = self._undo_now_and_then(rng, faved, pid)
                    state = not faved.get(pid, False)
                    if self._favourite(http, u, pid, state):
                        faved[pid] = state
                else:
                    pid = self._undo_now_and_then(rng, boosted, pid)
                    state = not boosted.get(pid, False)
                    if self._boost(http, u, pid, state):
                        boosted[pid] = state

    @staticmethod
    def _undo_now_and_then(rng: random.Random, done: dict[int, bool], pid: int) -> int:
        """Four times in ten, a post this talker favourited (boosted) last: undone next."""
        on = [p for p, state in done.items() if state]
        return rng.choice(on[-TALK_WINDOW:]) if on and rng.random() < 0.4 else pid

    def _gone_answer(self, r: httpx.Response, pid: int, what: str) -> bool:
        """A 404 for a write on ``pid``: right only if a delete of it was sent (it must be
        gone at the end: ``check_everything``)."""
        led = self.ledger
        if r.status_code != 404:
            return False
        with led.lock:
            targeted = pid in led.targeted
            led.not_found.add(pid)
        if not targeted:
            led.error(f"{what} -> 404 for a post nobody deleted: {r.text[:200]}")
        led.count("conversation 404")
        return True

    def _reply(self, http: Clients, u: int, pid: int, n: int, rng: random.Random) -> None:
        led = self.ledger
        text = (f"{self.marker} reply from {self.users[u]['handle']} n{n} to {pid}"
                f"{self._mention(rng, u, n)} {uuid.uuid4().hex[:8]}")
        with led.lock:
            led.reply_to[text] = pid
        what = f"reply by user {u} to {pid}"
        try:
            r = http.send("POST", "/v1/posts", json={"text": text, "in_reply_to_id": str(pid)},
                          headers=self._auth(u))
        except httpx.TransportError as exc:
            with led.lock:
                led.in_flight[text] = u
            led.count(f"reply unknown: {type(exc).__name__}")
            return
        if r is None:
            return
        if self._server_error(r, what):
            with led.lock:
                led.in_flight[text] = u
            return
        if self._gone_answer(r, pid, what):
            return
        if r.status_code != 201:
            led.error(f"{what} -> {r.status_code} {r.text[:300]}")
            return
        body = r.json()
        if body.get("text") != text or body.get("in_reply_to_id") != str(pid):
            led.error(f"{what} answered {body}")
        with led.lock:
            led.acked[int(body["id"])] = (u, text)
        self._acked("reply")

    def _favourite(self, http: Clients, u: int, pid: int, state: bool) -> bool:
        """One favourite or unfavourite, its outcome recorded; False if never sent."""
        led = self.ledger
        verb = "favourite" if state else "unfavourite"
        what = f"{verb} {pid} by user {u}"
        pair = (u, pid)
        try:
            r = http.send("POST", f"/api/v1/statuses/{pid}/{verb}", headers=self._auth(u))
        except httpx.TransportError as exc:
            with led.lock:
                led.fav_ops.setdefault(pair, []).append((state, False))
            led.count(f"{verb} unknown: {type(exc).__name__}")
            return True
        if r is None:
            return False
        if self._server_error(r, what):
            with led.lock:
                led.fav_ops.setdefault(pair, []).append((state, False))
            return True
        if self._gone_answer(r, pid, what):
            return True
        if r.status_code != 200:
            led.error(f"{what} -> {r.status_code} {r.text[:300]}")
            return True
        body = r.json()
        if body.get("id") != str(pid) or body.get("favourited") is not state:
            with led.lock:  # an earlier request of this pair with no answer may still run
                unsettled = any(not acked for _, acked in led.fav_ops.get(pair, []))
                targeted = pid in led.targeted
            if body.get("id") == str(pid) and unsettled:
                led.count(f"{verb} answered after an earlier request left unanswered")
            else:  # a delete racing the write is answered 404, never the opposite flag
                led.error(f"{what} answered id {body.get('id')} favourited {body.get('favourited')}"
                          f" (a delete of it was sent: {targeted})")
        with led.lock:
            led.fav_ops.setdefault(pair, []).append((state, True))
        self._acked(verb)
        return True

    def _boost(self, http: Clients, u: int, pid: int, state: bool) -> bool:
        """One boost or unboost, its outcome recorded; False if never sent."""
        led = self.ledger
        verb = "reblog" if state else "unreblog"
        what = f"{verb} {pid} by user {u}"
        pair = (u, pid)
        try:
            r = http.send("POST", f"/api/v1/statuses/{pid}/{verb}", headers=self._auth(u))
        except httpx.TransportError as exc:
            with led.lock:
                led.boost_ops.setdefault(pair, []).append((state, False, None))
            led.count(f"{verb} unknown: {type(exc).__name__}")
            return True
        if r is None:
            return False
        if self._server_error(r, what):
            with led.lock:
                led.boost_ops.setdefault(pair, []).append((state, False, None))
            return True
        if self._gone_answer(r, pid, what):
            return True
        if r.status_code != 200:
            led.error(f"{what} -> {r.status_code} {r.text[:300]}")
            return True
        body = r.json()
        boost_id: int | None = None
        if state:  # the wrapper: its own id, ``reblog`` the original, by the booster
            if ((body.get("reblog") or {}).get("id") != str(pid)
                    or body.get("account", {}).get("id") != self.users[u]["id"]):
                led.error(f"{what} answered {str(body)[:300]}")
            boost_id = int(body["id"])
        elif body.get("id") != str(pid) or body.get("reblogged") is not False:  # the original
            with led.lock:  # an earlier request of this pair with no answer may still run
                unsettled = any(not op[1] for op in led.boost_ops.get(pair, []))
            if body.get("id") == str(pid) and unsettled:
                led.count(f"{verb} answered after an earlier request left unanswered")
            else:
                led.error(f"{what} answered id {body.get('id')} reblogged {body.get('reblogged')}")
        with led.lock:
            led.boost_ops.setdefault(pair, []).append((state, True, boost_id))
        self._acked(verb)
        return True

    def _set_follow(self, http: Clients, pair: tuple[int, int], state: bool) -> bool:
        """One follow or unfollow request, its outcome recorded; False if never sent."""
        led = self.ledger
        a, b = pair
        handle = self.users[b]["handle"]
        try:
            r = http.send("POST" if state else "DELETE", f"/v1/users/{handle}/follow", headers=self._auth(a))
        except httpx.TransportError as exc:
            with led.lock:
                led.follow_ops.setdefault(pair, []).append((state, False))
            led.count(f"follow unknown: {type(exc).__name__}")
            return True
        if r is None:
            return False
        if self._server_error(r, f"follow {pair} -> {state}"):
            with led.lock:
                led.follow_ops.setdefault(pair, []).append((state, False))
            return True
        if r.status_code != 200 or r.json() != {"following": state}:
            led.error(f"follow {pair} -> {state}: {r.status_code} {r.text[:300]}")
            return True
        with led.lock:
            led.follow_ops.setdefault(pair, []).append((state, True))
        self._acked("follow")
        return True

    def churner(self) -> None:
        """Toggles the churning follows at random (user 1 crosses the threshold up and down)
        until the finale: then everyone churning follows (user 1 is a celebrity while the
        posters go on), and everyone unfollows (user 1 is demoted with warm caches)."""
        rng = random.Random(7)
        want = {pair: False for pair in CHURN}
        with self._clients(1200) as http:
            while not self.stop.is_set() and not self.finale.is_set():
                time.sleep(rng.uniform(0.01, 0.05))
                pair = rng.choice(CHURN)
                if self._set_follow(http, pair, not want[pair]):
                    want[pair] = not want[pair]
            if self.finale.is_set():
                for state in (True, False):
                    for pair in CHURN:
                        while not self._set_follow(http, pair, state):
                            pass
                    time.sleep(0.3)

    def reader(self, u: int) -> None:
        """Home timelines, paged a little during the faults: every page must be well formed."""
        rng = random.Random(200 + u)
        led = self.ledger
        with self._clients(1300 + u) as http:
            while not self.stop.is_set():
                time.sleep(rng.uniform(0.01, 0.06))
                before = None
                for _ in range(rng.randint(1, 4)):
                    params: dict[str, Any] = {"limit": rng.randint(1, 8)}
                    if before:
                        params["before"] = before
                    try:
                        r = http.send("GET", "/v1/timelines/home", params=params, headers=self._auth(u))
                    except httpx.TransportError:
                        led.count("read dropped")
                        break
                    if r is None or self._server_error(r, f"GET home {params}"):
                        break
                    if r.status_code != 200:
                        led.error(f"GET home {params} -> {r.status_code} {r.text[:300]}")
                        break
                    body = r.json()
                    ids = [int(p["id"]) for p in body["posts"]]
                    if ids != sorted(set(ids), reverse=True) or (before and ids and ids[0] >= int(before)):
                        led.error(f"GET home {params}: page out of order or repeated: {ids}")
                    if len(ids) < params["limit"] and body["next"] is not None:
                        led.error(f"GET home {params}: short page with a next cursor")
                    self._read_ok("home")
                    before = body["next"]
                    if before is None:
                        break

    # -- the run ------------------------------------------------------------------------------
    def start(self) -> None:
        for fn, args in self._targets():
            t = threading.Thread(target=fn, args=args, daemon=True, name=f"{fn.__name__}{args}")
            t.start()
            self.threads.append(t)

    def run_finale(self) -> None:
        """A last promotion and demotion of user 1 under load (the churner does it)."""
        self.finale.set()
        for t in self.threads:
            if t.name.startswith("churner"):
                t.join(timeout=30)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), f"client thread {t.name} did not stop"


# --------------------------------------------------------------------------------------------
# the world, and reading everything back
# --------------------------------------------------------------------------------------------


def make_world(url: str, prefix: str, ledger: Ledger | None = None,
               before_follows: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Six users following each other as ``BASE_FOLLOWS`` says (acknowledged writes, counted
    in ``ledger``); the registration answers, tokens included. ``before_follows(users)`` runs
    between the registrations and the follows (an operator giving some users an email)."""
    users: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=15.0) as http:
        for i in range(len(POSTERS)):
            r = http.post("/v1/users", json={"handle": f"{prefix}{i}_{uuid.uuid4().hex[:8]}"})
            assert r.status_code == 201, r.text
            users.append(r.json())
        if before_follows is not None:
            before_follows(users)
        for a, followees in BASE_FOLLOWS.items():
            for b in followees:
                r = http.post(f"/v1/users/{users[b]['handle']}/follow",
                              headers={"Authorization": f"Bearer {users[a]['token']}"})
                assert r.status_code == 200, r.text
    if ledger is not None:
        n = len(users) + sum(len(v) for v in BASE_FOLLOWS.values())
        ledger.count("setup acked", n)
        ledger.count("answered", n)
    return users


def walk(http: httpx.Client, url: str, limit: int, headers: dict | None = None,
         **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before: str | None = None
    for _ in range(20_000):
        q = {"limit": limit, **params}
        if before is not None:
            q["before"] = before
        r = http.get(url, params=q, headers=headers)
        assert r.status_code == 200, f"GET {url} {q} -> {r.status_code} {r.text[:300]}"
        body = r.json()
        page, nxt = body["posts"], body["next"]
        assert len(page) <= limit
        if len(page) < limit:
            assert nxt is None, f"GET {url} {q}: short page with next={nxt}"
        out.extend(page)
        if nxt is None:
            break
        assert before is None or int(nxt) < int(before), f"GET {url}: cursor did not move"
        before = nxt
    ids = [int(p["id"]) for p in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, f"GET {url} (limit {limit}): posts repeated while paging: {dup}"
    assert ids == sorted(ids, reverse=True), f"GET {url} (limit {limit}): not newest first"
    return out


def drain(http: httpx.Client, timeout: float = DRAIN_TIMEOUT) -> dict[str, Any]:
    """Wait until ``/healthz`` says every consumer is at the head (embedded profile)."""
    deadline = time.monotonic() + timeout
    while True:
        body = http.get("/healthz").json()
        consumers = body.get("consumers") or {}
        if consumers and all(c.get("behind") == 0 for c in consumers.values()):
            return body
        assert time.monotonic() < deadline, f"consumers still behind after {timeout}s: {body}"
        time.sleep(0.02)


def allowed_states(initial: bool, ops: list[tuple[bool, bool]], late: bool = False) -> set[bool]:
    """Follow states the outcomes allow: an acknowledged request sets the state; one in
    flight at a fault may or may not have. ``late``: a request the client gave up on may
    still be waiting in the server (for a database that is down) and land after later
    ones, so its state stays possible whatever came after it."""
    allowed = {initial}
    for state, acked in ops:
        allowed = {state} if acked else allowed | {state}
    if late:
        allowed |= {state for state, acked in ops if not acked}
    return allowed


@dataclass
class Records:
    """The records :func:`check_everything` read back and checked (users by index)."""

    present: dict[int, tuple[int, str]]  # post id -> (author, text): posts and replies
    boosts: dict[int, tuple[int, int]]  # boost id -> (booster, original)
    favourites: set[tuple[int, int]]  # (user, post)
    follows: set[tuple[int, int]]  # (follower, followee)


@dataclass
class Outcome:
    """What :func:`check_everything` found (it asserts that nothing was lost first)."""

    present: int  # posts that exist at the end
    found_in_flight: int  # of those, posts whose request's outcome was unknown
    lost: int  # acknowledged posts missing: always 0 once the check passed
    conversation: ck.ConversationFigures = field(default_factory=ck.ConversationFigures)
    #: what was read back, for checks of what the outside world heard (``outside_kit``)
    records: Records | None = None

    def extra(self, led: Ledger) -> dict[str, int]:
        """The figures' extra column for the conversation side: writes acknowledged by kind,
        and notifications checked at the end."""
        return {**led.conversation_acked(), "notifications": self.conversation.notifications}


def check_everything(http: httpx.Client, users: list[dict[str, Any]], led: Ledger, marker: str,
                     diag: str) -> Outcome:
    uid = {int(u["id"]): i for i, u in enumerate(users)}
    auth = [{"Authorization": f"Bearer {u['token']}"} for u in users]

    # -- what exists: every user's posts and boosts, paged to the end ----------------------
    present: dict[int, tuple[int, str]] = {}
    boosts: dict[int, tuple[int, int]] = {}  # boost id -> (booster, original)
    replies: dict[int, int] = {}  # post id -> the post it replies to
    for i, u in enumerate(users):
        for p in walk(http, f"/v1/users/{u['handle']}/posts", 100):
            pid = int(p["id"])
            assert uid.get(int(p["author"]["id"])) == i, f"post {p} listed under {u['handle']}\n{diag}"
            assert pid not in present and pid not in boosts, f"post {pid} listed twice\n{diag}"
            if p.get("reblog_of_id") is not None:
                boosts[pid] = (i, int(p["reblog_of_id"]))
                continue
            present[pid] = (i, p["text"])
            if p.get("in_reply_to_id") is not None:
                replies[pid] = int(p["in_reply_to_id"])

    texts = [t for _, t in present.values()]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    assert not twice, f"a request stored more than one post: {twice[:5]}\n{diag}"

    found_in_flight = 0
    for pid, (author, text) in present.items():
        if pid in led.acked:
            assert led.acked[pid] == (author, text), f"post {pid}: {present[pid]} != {led.acked[pid]}"
        else:
            assert led.in_flight.get(text) == author, (
                f"post {pid} {text!r} by user {author} exists, but was neither acknowledged nor "
                f"in flight at a fault\n{diag}")
            found_in_flight += 1
            r = http.get(f"/v1/posts/{pid}")
            assert r.status_code == 200 and r.json()["text"] == text, f"GET /v1/posts/{pid}: {r.text}"

    lost = sorted(pid for pid in led.acked
                  if pid not in present and pid not in led.deleted and pid not in led.maybe_deleted)
    assert not lost, f"acknowledged posts lost: {lost[:10]} ({len(lost)})\n{diag}"
    undeleted = sorted(pid for pid in led.deleted if pid in present)
    assert not undeleted, f"acknowledged deletes undone: {undeleted}\n{diag}"

    for pid, (author, text) in led.acked.items():
        r = http.get(f"/v1/posts/{pid}")
        if pid in present:
            assert r.status_code == 200, f"GET /v1/posts/{pid} -> {r.status_code}\n{diag}"
            body = r.json()
            assert body["text"] == text and body["author"]["id"] == users[author]["id"], body
        else:
            assert r.status_code == 404, f"GET deleted /v1/posts/{pid} -> {r.status_code}\n{diag}"

    # -- the follow graph: fixed edges, churned edges within what the outcomes allow -------
    follows: set[tuple[int, int]] = {(a, b) for a, bs in BASE_FOLLOWS.items() for b in bs}
    for i, u in enumerate(users):
        r = http.get(f"/v1/users/{u['handle']}/following", params={"limit": 100})
        assert r.status_code == 200, r.text
        got = {uid[int(x["id"])] for x in r.json()["users"]}
        for b in range(len(users)):
            pair = (i, b)
            if pair in CHURN:
                allowed = allowed_states(False, led.follow_ops.get(pair, []))
                assert (b in got) in allowed, (
                    f"user {i} {'follows' if b in got else 'does not follow'} user {b}; "
                    f"requests {led.follow_ops.get(pair)} allow only {allowed}\n{diag}")
                if b in got:
                    follows.add(pair)
            else:
                assert (b in got) == (pair in follows), f"fixed follow {pair} changed\n{diag}"

    # -- replies, boosts, favourites: what the acknowledged writes allow --------------------
    conv = check_conversation_records(http, users, led, present, boosts, replies, diag)

    # -- derived views equal the oracle -----------------------------------------------------
    newest_first = sorted(present, reverse=True)
    for i, u in enumerate(users):
        following = {b for a, b in follows if a == i}
        want = ck.home(conv.records, i, following)
        for limit in (100, 7) if i in (0, 1, 3) else (100,):
            got = [int(p["id"]) for p in walk(http, "/v1/timelines/home", limit, headers=auth[i])]
            if got != want:
                missing = [p for p in want if p not in got]
                extra = [p for p in got if p not in want]
                raise AssertionError(
                    f"home of user {i} (limit {limit}) != oracle: {len(got)} vs {len(want)} posts; "
                    f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]} ({len(extra)})\n{diag}")

        r = http.get(f"/v1/users/{u['handle']}")
        assert r.status_code == 200
        prof = r.json()
        want_counts = (sum(1 for _, b in follows if b == i), sum(1 for a, _ in follows if a == i),
                       sum(1 for a, _ in present.values() if a == i) + sum(1 for a, _ in boosts.values() if a == i))
        got_counts = (prof["followers_count"], prof["following_count"], prof["posts_count"])
        assert got_counts == want_counts, f"counters of user {i}: {got_counts} != {want_counts}\n{diag}"

    got = [int(p["id"]) for p in walk(http, "/v1/search/posts", 100, q=marker)]
    assert got == newest_first, (
        f"search {marker!r}: {len(got)} posts, {len(newest_first)} exist; "
        f"missing {sorted(set(newest_first) - set(got))[:10]}, "
        f"extra {sorted(set(got) - set(newest_first))[:10]}\n{diag}")
    want_tag = [pid for pid in newest_first if "#tag1" in present[pid][1].split()]
    got = [int(p["id"]) for p in walk(http, "/v1/search/posts", 100, q=f"{marker} #tag1")]
    assert got == want_tag, f"search '#tag1' != oracle\n{diag}"

    check_conversation_views(http, users, led, conv, follows, diag)
    return Outcome(present=len(present), found_in_flight=found_in_flight, lost=len(lost),
                   conversation=conv.figures, records=Records(present, boosts, conv.favourites, follows))


@dataclass
class Conversation:
    """The records of replies, boosts and favourites read back (``check_conversation_records``)."""

    records: dict[int, ck.Rec]
    favourites: set[tuple[int, int]]  # (user, post)
    figures: ck.ConversationFigures


def check_conversation_records(http: httpx.Client, users: list[dict[str, Any]], led: Ledger,
                               present: dict[int, tuple[int, str]], boosts: dict[int, tuple[int, int]],
                               replies: dict[int, int], diag: str) -> Conversation:
    """The records of the conversation writes are the ones the outcomes allow: every reply
    replies to the post it was sent to; a (user, post) pair is favourited / boosted in a state
    its requests allow (an acknowledged one sets it, one in flight at a fault may or may not
    have), at most one boost per pair, an acknowledged boost that was the pair's last request
    is there with the id it was answered with, a post's boosts and favourites are gone with it,
    nothing exists that no request asked for, and a post answered 404 is gone."""
    figs = ck.ConversationFigures()
    # replies: to the post asked for, and only those
    for pid, (author, text) in present.items():
        want = led.reply_to.get(text)
        assert replies.get(pid) == want, (
            f"post {pid} {text!r}: in_reply_to_id {replies.get(pid)}, the request said {want}\n{diag}")
        figs.replies += want is not None
        figs.mentions += "@" in text
    regone = sorted(pid for pid in led.not_found if pid in present)
    assert not regone, f"writes on posts {regone} were answered 404, and the posts exist\n{diag}"

    # boosts
    pairs: dict[tuple[int, int], int] = {}
    for bid, (booster, orig) in boosts.items():
        assert orig in present, f"boost {bid} of {orig} exists, its original does not\n{diag}"
        assert (booster, orig) not in pairs, f"user {booster} boosted {orig} twice: {bid}, {pairs[(booster, orig)]}"
        pairs[(booster, orig)] = bid
        ops = led.boost_ops.get((booster, orig), [])
        assert any(state for state, _, _ in ops), f"boost {bid} of {orig} by user {booster}: nobody asked\n{diag}"
    for pair, ops in led.boost_ops.items():
        if pair[1] not in present:
            continue
        allowed = allowed_states(False, [(state, acked) for state, acked, _ in ops], late=True)
        assert (pair in pairs) in allowed, (
            f"user {pair[0]} {'boosts' if pair in pairs else 'does not boost'} {pair[1]}; "
            f"requests {ops} allow only {allowed}\n{diag}")
        state, acked, boost_id = ops[-1]
        if state and acked and all(a for _, a, _ in ops[:-1]):  # no earlier one may land late
            assert pairs.get(pair) == boost_id, (
                f"acknowledged boost {boost_id} of {pair[1]} by user {pair[0]}: found {pairs.get(pair)}\n{diag}")
    figs.boosts = len(boosts)

    # favourites, as each user's list shows them
    favourites: set[tuple[int, int]] = set()
    for i, u in enumerate(users):
        for pid in ck.favourites_of(http, u["token"]):
            assert (i, pid) not in favourites, f"user {i}'s favourites list {pid} twice\n{diag}"
            assert pid in present, f"user {i}'s favourites list {pid}, which is gone\n{diag}"
            assert any(state for state, _ in led.fav_ops.get((i, pid), [])), (
                f"user {i} favourited {pid}: nobody asked\n{diag}")
            favourites.add((i, pid))
    for pair, fops in led.fav_ops.items():
        if pair[1] in present:
            allowed = allowed_states(False, fops, late=True)
            assert (pair in favourites) in allowed, (
                f"user {pair[0]} {'favourites' if pair in favourites else 'does not favourite'} {pair[1]}; "
                f"requests {fops} allow only {allowed}\n{diag}")
    figs.favourites = len(favourites)

    records: dict[int, ck.Rec] = {}
    for pid, (author, text) in present.items():
        to = replies.get(pid)
        records[pid] = ck.Rec(pid, author, text, to, led.acked[to][0] if to is not None else None)
    for bid, (booster, orig) in boosts.items():
        records[bid] = ck.Rec(bid, booster, reblog_of=orig)
    return Conversation(records, favourites, figs)


def check_conversation_views(http: httpx.Client, users: list[dict[str, Any]], led: Ledger,
                             conv: Conversation, follows: set[tuple[int, int]], diag: str) -> None:
    """Every user's notifications, and the counters of every post a conversation write
    touched, equal what the records make."""
    handles = {u["handle"].lower(): i for i, u in enumerate(users)}
    accounts = {u["id"]: i for i, u in enumerate(users)}
    want = ck.expected_notifications(conv.records, follows, conv.favourites, handles)
    errors = []
    for i, u in enumerate(users):
        got, problems = ck.notification_keys(ck.notifications_of(http, u["token"]), accounts)
        conv.figures.notifications += sum(got.values())
        errors += [f"user {i}: {p}" for p in problems]
        wrong = ck.compare_notifications(got, want.get(i, Counter()))
        if wrong:
            errors.append(f"notifications of user {i}: {wrong}")
    counts = ck.expected_counts(conv.records, conv.favourites)
    touched = ({pid for _, pid in led.fav_ops} | {pid for _, pid in led.boost_ops}
               | set(led.reply_to.values()) | set(counts))
    for pid in sorted(touched):
        if pid not in conv.records or conv.records[pid].reblog_of is not None:
            continue
        got_c = ck.status_counts(http, pid)
        if got_c != counts.get(pid, (0, 0, 0)):
            errors.append(f"post {pid}: (replies, reblogs, favourites) {got_c} != records {counts.get(pid, (0, 0, 0))}")
    assert not errors, "\n".join(errors[:20]) + f"\n({len(errors)} differences)\n{diag}"
