"""Discovery: ``/api/v1/instance``, ``/api/v2/instance`` (with and without the trailing
slash Mastodon.py uses), ``/.well-known/nodeinfo`` and ``/nodeinfo/2.0``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import homefeed
from homefeed.domain.mastodon import entities as E
from homefeed.entrypoints.mastodon._common import answer, hf_of, urls

_COUNTS: dict[int, tuple[float, int]] = {}


async def _info(request: Request) -> E.InstanceInfo:
    hf = hf_of(request)
    got = _COUNTS.get(id(hf))
    if got is None or got[0] < time.monotonic():
        got = (time.monotonic() + 60, await hf.store.count_users())
        _COUNTS[id(hf)] = got
    registrations = hf.settings.registrations
    return E.InstanceInfo(
        homefeed_version=homefeed.__version__,
        max_characters=hf.settings.max_post_length,
        registrations_open=registrations != "closed",
        user_count=got[1],
    )


async def v1(request: Request) -> Response:
    return answer(E.instance_v1(await _info(request), urls(request)))


async def v2(request: Request) -> Response:
    return answer(E.instance_v2(await _info(request), urls(request)))


async def nodeinfo_links(request: Request) -> Response:
    return answer(E.nodeinfo_links(urls(request)))


async def nodeinfo(request: Request) -> Response:
    return answer(E.nodeinfo_2_0(await _info(request)))


routes = [
    Route("/api/v1/instance", v1, methods=["GET"]),
    Route("/api/v1/instance/", v1, methods=["GET"]),
    Route("/api/v2/instance", v2, methods=["GET"]),
    Route("/api/v2/instance/", v2, methods=["GET"]),
    Route("/.well-known/nodeinfo", nodeinfo_links, methods=["GET"]),
    Route("/nodeinfo/2.0", nodeinfo, methods=["GET"]),
]
