"""``/admin/{op}``: operations that must run inside the serving process (its in-process
cache and consumers): audit of timelines, rebuild, replay. Bearer: the admin token, not a
user's. The operations themselves are ``entrypoints/ops.py``'s."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.entrypoints.routes._request import json_response, read_json, service


async def admin_op(request: Request) -> Response:
    # Imported here, as before the split: ops pulls in the CLI's argument parsing, which
    # the request path of a plain API process never needs.
    from homefeed.entrypoints import ops

    hf = service(request)
    ops.check_admin(hf.settings, request.headers.get("authorization"))
    return json_response(await ops.admin(hf, request.path_params["op"], await read_json(request)))


routes = [
    Route("/admin/{op}", admin_op, methods=["POST"]),
]
