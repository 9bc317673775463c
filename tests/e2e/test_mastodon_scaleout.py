"""The Mastodon timelines on the scale-out profile (PostgreSQL, Redis, NATS JetStream; two
API processes, two workers): the home timeline paged with ``Link`` headers through either
API equals the ``/v1`` oracle past the cap with a celebrity pulled; the public timeline
(Redis's cached ``public`` list, pushed by the workers) holds public posts only, pages past
the cap, and loses a deleted post."""

from __future__ import annotations

import httpx

from tests.e2e.scaleout import deployment
from tests.e2e.test_mastodon_client_api import LINK_RE

CAP = 5
SMALL = {"HOMEFEED_CELEBRITY_THRESHOLD": "3", "HOMEFEED_TIMELINE_CAP": str(CAP)}


def _walk(client: httpx.Client, url: str, token: str | None, limit: int, pages: int = 100) -> list[str]:
    out: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.get(url, params={"limit": limit}, headers=headers)
    for _ in range(pages):
        assert r.status_code == 200, r.text
        items = r.json()
        if not items:
            assert "link" not in r.headers
            break
        out.extend(s["id"] for s in items)
        r = client.get(LINK_RE.match(r.headers["link"]).group(1), headers=headers)
    assert len(out) == len(set(out))
    return out


def test_mastodon_home_and_public_on_scale_out(tmp_path):
    with deployment(tmp_path, SMALL) as dep:
        c = [httpx.Client(base_url=u, timeout=30.0) for u in dep.urls]
        try:
            def user(h: str, via: int = 0) -> tuple[str, str]:
                r = c[via].post("/v1/users", json={"handle": h})
                assert r.status_code == 201, r.text
                return r.json()["id"], r.json()["token"]

            def auth(t: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {t}"}

            reader, tr = user("reader")
            star, ts = user("star", 1)
            friend, tf = user("friend")
            for i in range(3):
                _, t = user(f"fan{i}", i % 2)
                assert c[i % 2].post(f"/api/v1/accounts/{star}/follow", headers=auth(t)).status_code == 200
            for who in (star, friend):
                assert c[1].post(f"/api/v1/accounts/{who}/follow", headers=auth(tr)).status_code == 200
            posted: dict[str, str] = {}
            by_star: set[str] = set()
            for i in range(3 * CAP):
                for t, vis in ((ts, "public"), (tf, "unlisted" if i % 2 else "public")):
                    r = c[i % 2].post("/api/v1/statuses", data={"status": f"s{i}", "visibility": vis},
                                      headers=auth(t))
                    assert r.status_code == 200, r.text
                    posted[r.json()["id"]] = vis
                    if t == ts:
                        by_star.add(r.json()["id"])
            dep.drain()
            oracle: list[str] = []
            before = None
            while True:
                page = c[0].get("/v1/timelines/home", params={"limit": 100, "before": before}
                                if before else {"limit": 100}, headers=auth(tr)).json()
                oracle += [p["id"] for p in page["posts"]]
                if page["next"] is None:
                    break
                before = page["next"]
            assert set(oracle) == set(posted)
            for via in (0, 1):
                for limit in (3, 40):
                    assert _walk(c[via], "/api/v1/timelines/home", tr, limit) == oracle
            public = [i for i in _walk(c[1], "/api/v1/timelines/public", None, 4)]
            assert public == [i for i in oracle if posted[i] == "public"]
            victim = next(i for i in public if i in by_star)
            r = c[0].delete(f"/api/v1/statuses/{victim}", headers=auth(ts))
            assert r.status_code == 200 and r.json()["text"]
            dep.drain()
            for via in (0, 1):
                got = c[via].get("/api/v1/timelines/public?limit=40").json()
                assert [s["id"] for s in got] == [i for i in public if i != victim]
        finally:
            for x in c:
                x.close()
