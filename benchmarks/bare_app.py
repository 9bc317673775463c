"""The reference for issue 14's table: a bare Starlette route on uvicorn, nothing else.

    uvicorn --app-dir benchmarks bare_app:app --port 8090 --no-access-log --log-level warning
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ok(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/", ok)])
