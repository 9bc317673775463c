"""The hypothesis oracle, through the Mastodon routes, against a real server in both profiles.

A ``RuleBasedStateMachine`` signs up a few accounts through ``POST /api/v1/accounts`` and then
posts (``public`` and ``unlisted``), follows, unfollows and deletes through the Mastodon
routes only, with bodies form-encoded (as Mastodon.py sends them: ``1``/``0`` booleans) or
as JSON (as toot sends them: ``true``/``false``), and asks someone else to delete a status
(404, nothing changes). The oracle is a model of the records the machine wrote
(``mastodon_kit.HomeOracle``), never read back from the server. Settings as in the other
e2e tests: ``HOMEFEED_CELEBRITY_THRESHOLD=3`` (a "fans follow" rule makes celebrities and
unmakes them) and ``HOMEFEED_TIMELINE_CAP=5``, so pushed, pulled and past-the-cap paths are
all walked.

- Without draining, a home page must still be well-formed: newest first, nothing twice, at
  most ``limit`` statuses, and a ``Link`` header exactly ``<…max_id=…>; rel="next", <…min_id=…>;
  rel="prev"`` (next first: toot needs it) on a non-empty page, none on an empty one.
- After draining, every account's WHOLE home timeline, followed through ``rel="next"`` with
  a drawn ``limit``, equals the oracle's; following ``rel="prev"`` from the last page walks
  the same pages back; ``/api/v1/accounts/:id/statuses`` equals the author's statuses.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tests.e2e import mastodon_kit as kit
from tests.e2e.mastodon_kit import target  # noqa: F401  (the server fixture, per profile)

USERS = 5
LINK = re.compile(r'^<([^>]+)>; rel="next", <([^>]+)>; rel="prev"$')


def body_kw(encoding: str, data: dict[str, Any]) -> dict[str, Any]:
    """Mastodon.py's form (booleans as 1/0) or toot's JSON (booleans as true/false)."""
    if encoding == "json":
        return {"json": data}
    return {"data": {k: ("1" if v else "0") if isinstance(v, bool) else v for k, v in data.items()}}


class MastodonRoutesMachine(RuleBasedStateMachine):
    target: kit.Target  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.http = [httpx.Client(base_url=u, timeout=30.0) for u in self.target.urls]
        self.oracle = kit.HomeOracle()
        self.ids: list[str] = []
        self.tokens: list[str] = []
        self.step = 0

    def teardown(self) -> None:
        for c in self.http:
            c.close()

    # -- http ----------------------------------------------------------------------------
    def req(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        self.step += 1
        c = self.http[self.step % len(self.http)]  # scale-out: alternate API processes
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = c.request(method, path, headers=headers, **kw)
        assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:800]}"
        return r

    # -- set-up --------------------------------------------------------------------------
    @initialize(encodings=st.lists(st.sampled_from(["form", "json"]), min_size=USERS, max_size=USERS))
    def sign_up(self, encodings: list[str]) -> None:
        r = self.req("POST", "/api/v1/apps", data={"client_name": "oracle", "redirect_uris": kit.OOB,
                                                   "scopes": "read write follow push"})
        assert r.status_code == 200, r.text
        kit.check_entity("credential_application", r.json())
        app = r.json()
        r = self.req("POST", "/oauth/token", data={"grant_type": "client_credentials", "client_id": app["client_id"],
                                                   "client_secret": app["client_secret"], "scope": "read write"})
        assert r.status_code == 200, r.text
        app_token = r.json()["access_token"]
        for enc in encodings:
            username = kit.unique_username("o")
            r = self.req("POST", "/api/v1/accounts", token=app_token, **body_kw(enc, {
                "username": username, "email": kit.email_of(username), "password": kit.PASSWORD,
                "agreement": True, "locale": "en"}))
            assert r.status_code == 200, r.text
            kit.check_entity("token", r.json())
            token = r.json()["access_token"]
            me = self.req("GET", "/api/v1/accounts/verify_credentials", token=token)
            assert me.status_code == 200 and me.json()["username"] == username, me.text
            self.ids.append(me.json()["id"])
            self.tokens.append(token)
            self.oracle.account(me.json()["id"])

    # -- writes --------------------------------------------------------------------------
    @rule(a=st.integers(0, USERS - 1), enc=st.sampled_from(["form", "json"]),
          visibility=st.sampled_from(["public", "public", "unlisted"]), n=st.integers(1, 3))
    def post(self, a: int, enc: str, visibility: str, n: int) -> None:
        for _ in range(n):
            r = self.req("POST", "/api/v1/statuses", token=self.tokens[a],
                         **body_kw(enc, {"status": f"status by {a} #{kit.unique_word('o')}",
                                         "visibility": visibility, "sensitive": False}))
            assert r.status_code == 200, r.text
            s = kit.check_entity("status", r.json())
            assert s["account"]["id"] == self.ids[a] and s["visibility"] == visibility
            self.oracle.post(self.ids[a], s["id"])

    @rule(a=st.integers(0, USERS - 1), b=st.integers(0, USERS - 1), enc=st.sampled_from(["form", "json"]))
    def follow(self, a: int, b: int, enc: str) -> None:
        if a == b:
            return
        r = self.req("POST", f"/api/v1/accounts/{self.ids[b]}/follow", token=self.tokens[a],
                     **body_kw(enc, {"reblogs": True, "notify": False}))
        assert r.status_code == 200, r.text
        rel = kit.check_entity("relationship", r.json())
        assert rel["following"] is True and rel["id"] == self.ids[b]
        self.oracle.follow(self.ids[a], self.ids[b])

    @rule(b=st.integers(0, USERS - 1))
    def fans_follow(self, b: int) -> None:
        """Everyone follows b: b is a celebrity (more followers than the threshold)."""
        for a in range(USERS):
            if a != b:
                r = self.req("POST", f"/api/v1/accounts/{self.ids[b]}/follow", token=self.tokens[a])
                assert r.status_code == 200, r.text
                self.oracle.follow(self.ids[a], self.ids[b])

    @rule(a=st.integers(0, USERS - 1), b=st.integers(0, USERS - 1))
    def unfollow(self, a: int, b: int) -> None:
        if a == b:
            return
        r = self.req("POST", f"/api/v1/accounts/{self.ids[b]}/unfollow", token=self.tokens[a])
        assert r.status_code == 200, r.text
        assert kit.check_entity("relationship", r.json())["following"] is False
        self.oracle.unfollow(self.ids[a], self.ids[b])

    @rule(a=st.integers(0, USERS - 1), k=st.integers(0, 50))
    def delete_own(self, a: int, k: int) -> None:
        mine = self.oracle.by(self.ids[a])
        if not mine:
            return
        sid = mine[k % len(mine)]
        r = self.req("DELETE", f"/api/v1/statuses/{sid}", token=self.tokens[a])
        assert r.status_code == 200, r.text
        s = kit.check_entity("status", r.json())
        assert s["id"] == sid and s.get("text", "").startswith(f"status by {a} "), s
        self.oracle.delete(sid)

    @rule(a=st.integers(0, USERS - 1), k=st.integers(0, 50))
    def delete_someone_elses(self, a: int, k: int) -> None:
        theirs = [s for s, au in self.oracle.authors.items() if au != self.ids[a] and s not in self.oracle.deleted]
        if not theirs:
            return
        sid = sorted(theirs)[k % len(theirs)]
        r = self.req("DELETE", f"/api/v1/statuses/{sid}", token=self.tokens[a])
        assert r.status_code == 404, r.text
        kit.check_entity("error", r.json())

    # -- reads ---------------------------------------------------------------------------
    def page(self, a: int, **params: Any) -> tuple[list[str], str | None, str | None]:
        r = self.req("GET", "/api/v1/timelines/home", token=self.tokens[a], params=params)
        assert r.status_code == 200, r.text
        statuses = kit.check_entity("status[]", r.json())
        ids = [s["id"] for s in statuses]
        assert len(ids) <= int(params.get("limit", 20)), ids
        assert ids == sorted(set(ids), key=int, reverse=True), f"not newest first / twice: {ids}"
        link = r.headers.get("link")
        if not ids:
            assert link is None, f"empty page with a Link header: {link}"
            return ids, None, None
        assert link is not None, f"a page of {len(ids)} without a Link header"
        m = LINK.match(link)
        assert m, f"Link header not in Mastodon's form: {link!r}"
        nxt, prev = m.group(1), m.group(2)
        assert re.search(rf"[?&]max_id={ids[-1]}(&|$)", nxt), (nxt, ids)
        assert re.search(rf"[?&]min_id={ids[0]}(&|$)", prev), (prev, ids)
        return ids, nxt, prev

    @rule(a=st.integers(0, USERS - 1), limit=st.integers(1, 6))
    def read_home_now(self, a: int, limit: int) -> None:
        """Without draining: a well-formed page of statuses that exist or existed."""
        ids, _, _ = self.page(a, limit=limit)
        unknown = [i for i in ids if i not in self.oracle.authors]
        assert not unknown, f"statuses nobody posted: {unknown}"

    def walk(self, a: int, limit: int) -> list[list[str]]:
        pages: list[list[str]] = []
        params: dict[str, Any] = {"limit": limit}
        for _ in range(300):
            ids, nxt, _ = self.page(a, **params)
            if not ids:
                break
            pages.append(ids)
            params = dict(httpx.URL(nxt).params)
            assert params.get("limit") == str(limit), f"next link lost the limit: {nxt}"
        return pages

    @rule(limit=st.integers(1, 7))
    def drain_and_check(self, limit: int) -> None:
        self.target.drain()
        for a in range(USERS):
            want = self.oracle.home(self.ids[a])
            pages = self.walk(a, limit)
            got = [i for p in pages for i in p]
            assert got == want, (f"home of {a} (limit {limit}): {pages}\n want {want}\n"
                                 f" missing {[i for i in want if i not in got]}, extra {[i for i in got if i not in want]}")
            assert all(len(p) == limit for p in pages[:-1]), pages
            if len(pages) >= 2:  # rel="prev" from the last page gives the page before it
                _, _, prev = self.page(a, limit=limit, max_id=pages[-2][-1])
                back = self.req("GET", prev, token=self.tokens[a])
                assert [s["id"] for s in back.json()] == pages[-2], (prev, pages)
            r = self.req("GET", f"/api/v1/accounts/{self.ids[a]}/statuses", params={"limit": 40},
                         token=self.tokens[(a + 1) % USERS])
            assert r.status_code == 200, r.text
            assert [s["id"] for s in r.json()] == self.oracle.by(self.ids[a])[:40]


@pytest.mark.slow
def test_mastodon_routes_against_the_oracle(target) -> None:
    MastodonRoutesMachine.target = target
    run_state_machine_as_test(MastodonRoutesMachine, settings=settings(
        max_examples=12, stateful_step_count=30, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck), database=None))
